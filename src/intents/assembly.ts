/**
 * The manifests list of a rendering: the objects a cluster receives in apply order, each
 * checked against the Kubernetes schemas of the cluster's version, and their canonical JSON
 * as the `manifests` array of `canonicalJson(ClusterManifestsDocument)` (without its brackets).
 * Two objects with one identity (group, kind, namespace, name) are a problem naming both intents.
 *
 * It depends on the effective set, the cluster's minor version and which residency rules
 * its zones allow, never on anything else of the cluster: clusters that share these three
 * (a region's clusters on one version) share one assembly, kept while it is recent. What
 * depends only on one manifest (its version-independent schema problems and its bytes) is
 * kept as long as the manifest lives.
 */
import { canonicalJson } from "../canonical/index.js";
import { PARAMS_KIND, POLICY_PARAMS_CRD } from "./admission.js";
import { describeObject, schemaProblems, servedSince } from "./schemas.js";
import { compareManifests, POLICY_LABEL, type IntentProblem, type Manifest } from "./translate.js";

export interface Assembly {
  /** In apply order (see APPLY_ORDER), then namespace and name. */
  readonly manifests: readonly Manifest[];
  /** Their canonical JSON, comma-separated, as UTF-8. */
  readonly listed: Buffer;
  /** Their schema problems for the version, in the manifests' order. */
  readonly problems: readonly Omit<IntentProblem, "cluster">[];
}

interface Checked {
  readonly problems: ReturnType<typeof schemaProblems>;
  /**
   * `,` then canonicalJson(manifest), as UTF-8 (the first of a list drops the comma): kept as
   * bytes, since a string built up by the encoder is a rope that every join would walk again.
   */
  readonly listed: Buffer;
}
const checkedManifests = new WeakMap<Manifest, Checked>();

/** Schema problems for Kubernetes 1.`minor` and the canonical bytes of a manifest; the version-independent part kept per manifest. */
function checked(manifest: Manifest, minor: number): Checked {
  let c = checkedManifests.get(manifest);
  if (c === undefined) checkedManifests.set(manifest, (c = { problems: schemaProblems(manifest, Number.MAX_SAFE_INTEGER), listed: Buffer.from(`,${canonicalJson(manifest)}`, "utf8") }));
  return servedSince(manifest) > minor ? { problems: schemaProblems(manifest, minor), listed: c.listed } : c;
}

const intentOf = (manifest: Manifest): string => manifest.metadata.labels[POLICY_LABEL] ?? "(polity)";

/** The API group without its version: `rbac.authorization.k8s.io/v1` → `rbac.authorization.k8s.io`, `v1` → ``. */
const groupOf = (apiVersion: string): string => apiVersion.slice(0, Math.max(0, apiVersion.lastIndexOf("/")));

/**
 * One object on the cluster: the same group, kind, namespace and name (whatever the version,
 * which the API server converts between). Two manifests for one object would each replace the
 * other at apply, so a rendering that holds them is refused (it would let a lower layer's
 * intent take over a locked one's object).
 */
function sameObject(a: Manifest, b: Manifest): boolean {
  return a.kind === b.kind && a.metadata.name === b.metadata.name && (a.metadata.namespace ?? "") === (b.metadata.namespace ?? "") && groupOf(a.apiVersion) === groupOf(b.apiVersion);
}

/** Recent assemblies, least recently used first, up to a budget of bytes (a few hundred clusters' worth of distinct ones). */
const recent = new Map<string, Assembly>();
const BUDGET = 64 * 1024 * 1024;
let kept = 0;

/**
 * The assembly of `blocks` (each intent's or policy's objects, in the set's order; the
 * definition of PolicyParams joins them when one is there) for Kubernetes 1.`minor`. `key` must name everything the blocks were chosen from: the set's
 * hash, the minor version and the residency rules the zones allow.
 */
export function assemble(key: string, minor: number, blocks: readonly (readonly Manifest[])[]): Assembly {
  const found = recent.get(key);
  if (found !== undefined) {
    recent.delete(key);
    recent.set(key, found);
    return found;
  }
  const manifests = blocks.flat();
  if (manifests.some((m) => m.kind === PARAMS_KIND)) manifests.push(POLICY_PARAMS_CRD);
  manifests.sort(compareManifests);
  const parts: Buffer[] = [];
  const problems: Omit<IntentProblem, "cluster">[] = [];
  // Sorted by kind, namespace and name: two objects with one identity are neighbours.
  let previous: Manifest | undefined;
  for (const manifest of manifests) {
    if (previous !== undefined && sameObject(previous, manifest)) {
      problems.push({
        intent: intentOf(manifest),
        field: `${describeObject(manifest)}: metadata.name`,
        message: `also made by intent ${JSON.stringify(intentOf(previous))}: two objects with one name, the one applied last would replace the other`,
      });
    }
    previous = manifest;
    const c = checked(manifest, minor);
    parts.push(parts.length === 0 ? c.listed.subarray(1) : c.listed);
    for (const p of c.problems) problems.push({ intent: intentOf(manifest), field: `${p.object}: ${p.field}`, message: p.message });
  }
  const assembly: Assembly = { manifests, listed: Buffer.concat(parts), problems };
  recent.set(key, assembly);
  kept += assembly.listed.length;
  for (const [oldest, a] of recent) {
    if (kept <= BUDGET || recent.size === 1) break;
    recent.delete(oldest);
    kept -= a.listed.length;
  }
  return assembly;
}
