/**
 * What a cluster would receive: `renderCluster(cluster, set, facts)` translates the intents of an
 * effective policy set into manifests, adds the native second line (its CEL policies as
 * ValidatingAdmissionPolicies, where its version has them), validates every object against
 * the Kubernetes schemas and the cluster's facts, and gives the whole in canonical bytes
 * with one hash. Pure and deterministic; a problem names the cluster, the intent and the
 * field, and a federation-wide check (`renderProblems`) refuses a change that any
 * registered cluster could not hold.
 *
 * Facts checked: NetworkPolicy on a network plugin that ignores it; quotas whose requests,
 * summed over every quota intent and namespace, exceed the cluster's capacity; a residency
 * rule no zone of the cluster satisfies, or on a cluster too old to hold its admission rule.
 */
import { canonicalJson, contentHash } from "../canonical/index.js";
import { parseQuantity, type Quantity } from "../cel/kubernetes/quantity.js";
import type { EffectivePolicy, EffectivePolicySet } from "../layering/effective.js";
import type { GenerateSpec } from "../policy/generate.js";
import { admissionPolicyFor, residencyPolicy, type NotExpressible } from "./admission.js";
import { assemble } from "./assembly.js";
import { minorVersion, VAP_MINOR, type ClusterFacts } from "./facts.js";
import { resolveGenerate, translateIntent, type IntentProblem, type Manifest } from "./translate.js";

export { clusterFacts, type ClusterFacts } from "./facts.js";
export { formatIntentProblem, type IntentProblem, type Manifest } from "./translate.js";

export interface ClusterManifestsDocument {
  readonly apiVersion: "polity.dev/v1";
  readonly kind: "ClusterManifests";
  readonly cluster: string;
  /** The effective set they were made from. */
  readonly effectiveHash: string;
  /** In apply order (see APPLY_ORDER), then namespace and name. */
  readonly manifests: readonly Manifest[];
}

export interface Rendering {
  readonly document: ClusterManifestsDocument;
  /** canonicalJson(document) as UTF-8, and as text; both assembled when first read. */
  readonly bytes: Buffer;
  /** How many bytes: known without assembling them. */
  readonly byteLength: number;
  readonly canonical: string;
  /** contentHash of the canonical bytes, computed (from their pieces) when first read. */
  readonly hash: string;
  /** Policies that get no ValidatingAdmissionPolicy, and why. */
  readonly notExpressible: readonly NotExpressible[];
  readonly problems: readonly IntentProblem[];
}

/** Quota keys that reserve capacity, and the capacity they reserve (limits may overcommit; requests may not). */
const RESERVING: Readonly<Record<string, string>> = { cpu: "cpu", "requests.cpu": "cpu", memory: "memory", "requests.memory": "memory" };

function quantityOr(text: string | number): Quantity | undefined {
  try {
    return parseQuantity(String(text));
  } catch {
    return undefined;
  }
}

/*
 * Translations depend on one effective policy (shared by every cluster whose layers give the
 * same chain, see effective.ts), not on the cluster: computed once per policy and kept as
 * long as it lives; the list they make, checked and encoded, is kept by assembly.ts. So
 * 1,000 clusters cost little more than one, and the checks of facts, made for each.
 */
interface Translated {
  readonly generate: GenerateSpec | undefined;
  readonly problems: readonly Omit<IntentProblem, "cluster">[];
  readonly manifests: readonly Manifest[];
}
const translated = new WeakMap<EffectivePolicy, Translated>();
const secondLines = new WeakMap<EffectivePolicy, ReturnType<typeof admissionPolicyFor>>();
function translatedOf(policy: EffectivePolicy): Translated {
  let t = translated.get(policy);
  if (t === undefined) {
    const problems: IntentProblem[] = [];
    const generate = resolveGenerate(policy, "", problems);
    const manifests =
      generate === undefined ? [] : generate.residency !== undefined ? residencyPolicy(policy, { ...generate.residency, zones: generate.residency.zones as string[] }) : translateIntent(policy, generate);
    t = { generate, problems: problems.map(({ cluster: _, ...p }) => p), manifests };
    translated.set(policy, t);
  }
  return t;
}

function secondLineOf(policy: EffectivePolicy, document: EffectivePolicySet["document"]): ReturnType<typeof admissionPolicyFor> {
  // Exceptions are the cluster's: a policy with one is decided afresh (it is refused anyway).
  if (document.exceptions.some((e) => e.policy === policy.name)) return admissionPolicyFor(policy, document);
  let v = secondLines.get(policy);
  if (v === undefined) secondLines.set(policy, (v = admissionPolicyFor(policy, document)));
  return v;
}

const CLOSE = Buffer.from("]}");

export function renderCluster(cluster: string, set: EffectivePolicySet, facts: ClusterFacts): Rendering {
  const minor = minorVersion(facts);
  const problems: IntentProblem[] = [];
  const notExpressible: NotExpressible[] = [];
  const blocks: (readonly Manifest[])[] = [];
  // Which residency rules the cluster's zones allow: with the set and the version, all that chooses its manifests.
  let allowed = "";
  const reserved = new Map<string, { total: Quantity; intents: string[] }>();
  for (const policy of set.document.policies) {
    if (policy.generate !== undefined) {
      const t = translatedOf(policy);
      for (const p of t.problems) problems.push({ cluster, ...p });
      const generate = t.generate;
      if (generate === undefined) continue;
      const problem = (field: string, message: string) => problems.push({ cluster, intent: policy.name, field: `spec.generate.${field}`, message });
      if (generate.network !== undefined && !facts.networkPolicy) {
        problem("network", "the cluster's network plugin does not enforce NetworkPolicy: the segmentation would exist on paper only");
      }
      if (generate.quota?.hard !== undefined) {
        for (const [key, value] of Object.entries(generate.quota.hard)) {
          const capacity = RESERVING[key];
          const q = quantityOr(value);
          if (q === undefined) {
            problem(`quota.hard.${key}`, `${JSON.stringify(value)} is not a quantity`);
            continue;
          }
          if (capacity === undefined) continue;
          const entry = reserved.get(capacity) ?? { total: parseQuantity("0"), intents: [] };
          for (let n = new Set(generate.quota.namespaces).size; n > 0; n--) entry.total = entry.total.add(q);
          if (!entry.intents.includes(policy.name)) entry.intents.push(policy.name);
          reserved.set(capacity, entry);
          const available = facts.capacity?.[capacity];
          const cap = available === undefined ? undefined : quantityOr(available);
          if (cap !== undefined && entry.total.compare(cap) > 0) {
            problem(`quota.hard.${key}`, `quotas reserve ${capacity} ${entry.total.asApproximateFloat()} over ${entry.intents.join(", ")}, above the cluster's capacity ${available}`);
          }
        }
      }
      if (generate.residency === undefined) {
        blocks.push(t.manifests);
      } else {
        const zones = generate.residency.zones as string[];
        const clusterZones = facts.zones ?? [];
        if (minor < VAP_MINOR) {
          problem("residency", `its admission rule is a ValidatingAdmissionPolicy, which Kubernetes 1.${minor} does not serve (1.${VAP_MINOR} and later)`);
          allowed += "0";
        } else if (!zones.some((z) => clusterZones.includes(z))) {
          problem("residency.zones", `no node of the cluster is in an allowed zone (${zones.join(", ")}); its nodes are in ${clusterZones.length === 0 ? "no reported zone" : clusterZones.join(", ")}`);
          allowed += "0";
        } else {
          blocks.push(t.manifests);
          allowed += "1";
        }
      }
    }
    if (policy.validations.length > 0) {
      if (minor < VAP_MINOR) {
        notExpressible.push({ policy: policy.name, reason: `Kubernetes 1.${minor} has no admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (GA in 1.${VAP_MINOR})` });
      } else {
        const vap = secondLineOf(policy, set.document);
        if ("reason" in vap) notExpressible.push({ policy: policy.name, reason: vap.reason });
        else blocks.push(vap.manifests);
      }
    }
  }
  const assembly = assemble(`${minor} ${allowed} ${set.hash}`, minor, blocks);
  for (const p of assembly.problems) problems.push({ cluster, ...p });
  const document: ClusterManifestsDocument = { apiVersion: "polity.dev/v1", kind: "ClusterManifests", cluster, effectiveHash: set.hash, manifests: [...assembly.manifests] };
  // canonicalJson(document), assembled from the kept canonical bytes of its manifests (keys in sorted order).
  const head = Buffer.from(`{"apiVersion":"polity.dev/v1","cluster":${canonicalJson(cluster)},"effectiveHash":${canonicalJson(set.hash)},"kind":"ClusterManifests","manifests":[`, "utf8");
  const parts = [head, assembly.listed, CLOSE];
  // The hash when first read (the hub's check before a rollout reads only the problems), from
  // the pieces; one buffer of them only for who asks for it.
  let bytes: Buffer | undefined;
  let canonical: string | undefined;
  let hash: string | undefined;
  return {
    document,
    get bytes() {
      return (bytes ??= Buffer.concat(parts));
    },
    byteLength: head.length + assembly.listed.length + CLOSE.length,
    get canonical() {
      return (canonical ??= this.bytes.toString("utf8"));
    },
    get hash() {
      return (hash ??= contentHash(parts));
    },
    notExpressible,
    problems,
  };
}

/** Every problem of every cluster: a change is refused before rollout when this is not empty. */
export function renderProblems(clusters: readonly { cluster: string; set: EffectivePolicySet; facts: ClusterFacts }[]): IntentProblem[] {
  return clusters.flatMap(({ cluster, set, facts }) => renderCluster(cluster, set, facts).problems);
}
