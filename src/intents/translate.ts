/**
 * Intents to Kubernetes objects: (effective policy set, cluster facts) → manifests. Pure and
 * deterministic: the same set and facts give the same manifests in the same order, however
 * the intents' lists were ordered (namespaces, groups and rules are sorted and deduplicated).
 *
 * - network: a default-deny NetworkPolicy per namespace (ingress and egress), DNS to
 *   kube-dns unless `allowDns: false`, and one NetworkPolicy per allowed flow;
 * - quota: a ResourceQuota (and a LimitRange for containers) per namespace;
 * - access: a Role and RoleBinding per namespace, or a ClusterRole and ClusterRoleBinding,
 *   holding exactly the intent's rules for exactly its groups;
 * - residency: a ValidatingAdmissionPolicy and binding (see admission.ts), which needs
 *   facts: the zones the cluster's nodes carry.
 *
 * Every object carries `app.kubernetes.io/managed-by: polity` and `polity.dev/policy`, so
 * the agent deletes only what it made; `polity.dev/remediation` says what drift does.
 */
import type { EffectivePolicy } from "../layering/effective.js";
import { generateSpec, PARAM_REFERENCE, type AccessIntent, type GenerateSpec, type NetworkIntent, type QuotaIntent } from "../policy/generate.js";

export type Manifest = {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels: Readonly<Record<string, string>>; readonly annotations?: Readonly<Record<string, string>> };
} & Readonly<Record<string, unknown>>;

/** A problem with one intent on one cluster: `cluster "eu-1": intent "quota": spec.generate.quota.hard["cpu"]: why`. */
export interface IntentProblem {
  readonly cluster: string;
  readonly intent: string;
  /** The field, as Kubernetes prints paths. */
  readonly field: string;
  readonly message: string;
}

export function formatIntentProblem(p: IntentProblem): string {
  return `cluster ${JSON.stringify(p.cluster)}: intent ${JSON.stringify(p.intent)}: ${p.field}: ${p.message}`;
}

export const MANAGED_BY = "app.kubernetes.io/managed-by";
export const POLICY_LABEL = "polity.dev/policy";
export const REMEDIATION_ANNOTATION = "polity.dev/remediation";
/** On the objects of an intent with `forceConflicts: true`: the agent applies them with force. */
export const FORCE_CONFLICTS_ANNOTATION = "polity.dev/force-conflicts";

/** The order objects are applied in: what others refer to first. Deletion runs it backwards. */
export const APPLY_ORDER = [
  "CustomResourceDefinition",
  "PolicyParams",
  "ClusterRole",
  "Role",
  "ClusterRoleBinding",
  "RoleBinding",
  "ResourceQuota",
  "LimitRange",
  "NetworkPolicy",
  "ValidatingAdmissionPolicy",
  "ValidatingAdmissionPolicyBinding",
] as const;

const APPLY_RANK: ReadonlyMap<string, number> = new Map(APPLY_ORDER.map((kind, i) => [kind, i]));

/** Apply order, then namespace, then name. Called some 7,000 times a cluster: nothing allocated. */
export function compareManifests(a: Manifest, b: Manifest): number {
  const d = (APPLY_RANK.get(a.kind) ?? -1) - (APPLY_RANK.get(b.kind) ?? -1);
  if (d !== 0) return d;
  const an = a.metadata.namespace ?? "";
  const bn = b.metadata.namespace ?? "";
  if (an !== bn) return an < bn ? -1 : 1;
  const aname = a.metadata.name;
  const bname = b.metadata.name;
  return aname < bname ? -1 : aname > bname ? 1 : 0;
}

const sorted = <T>(list: readonly T[]): T[] => [...new Set(list)].sort();
const byJson = <T>(list: readonly T[]): T[] => {
  const unique = new Map(list.map((x) => [JSON.stringify(x), x]));
  return [...unique.keys()].sort().map((k) => unique.get(k)!);
};

/** What a policy's generate section says with its params put in; problems when a param is missing or its value does not fit. */
export function resolveGenerate(policy: EffectivePolicy, cluster: string, problems: IntentProblem[]): GenerateSpec | undefined {
  if (policy.generate === undefined) return undefined;
  const before = problems.length;
  const put = (value: unknown, path: string): unknown => {
    if (typeof value === "string") {
      const m = PARAM_REFERENCE.exec(value);
      if (m === null) return value;
      if (!Object.hasOwn(policy.params, m[1]!)) {
        problems.push({ cluster, intent: policy.name, field: path, message: `names param ${JSON.stringify(m[1])}, which the policy does not declare` });
        return value;
      }
      return policy.params[m[1]!];
    }
    if (Array.isArray(value)) return value.map((v, i) => put(v, `${path}[${i}]`));
    if (typeof value === "object" && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, put(v, `${path}.${k}`)]));
    return value;
  };
  const resolved = put(policy.generate, "spec.generate");
  if (problems.length > before) return undefined;
  const parsed = generateSpec.safeParse(resolved);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push({ cluster, intent: policy.name, field: ["spec", "generate", ...issue.path.map(String)].join("."), message: `with its params put in: ${issue.message}` });
    }
    return undefined;
  }
  return parsed.data;
}

/**
 * `polity-<policy>.<part>`: one object of several a policy makes (a grant's role, a flow's
 * network policy). A policy name is a DNS subdomain (it may hold dots) and a part one DNS
 * label (`default-deny`, `dns`, `in-<flow>`, `out-<flow>`, a grant's name: never a dot), so
 * the last dot splits the two and no two policies' parts share a name. With a dash
 * (`polity-auditors-read-read-workloads`) a lower layer's policy could spell a locked one's
 * object name, and replace it at apply.
 */
export function partName(policy: EffectivePolicy, part: string): string {
  return `polity-${policy.name}.${part}`;
}

function meta(policy: EffectivePolicy, name: string, namespace: string | undefined): Manifest["metadata"] {
  return {
    name,
    ...(namespace === undefined ? {} : { namespace }),
    labels: { [MANAGED_BY]: "polity", [POLICY_LABEL]: policy.name },
    annotations: { [REMEDIATION_ANNOTATION]: remediation(policy), ...(policy.generate?.forceConflicts === true ? { [FORCE_CONFLICTS_ANNOTATION]: "true" } : {}) },
  };
}

/** deny enforces (drift is reapplied); warn and audit inform. A locked intent cannot leave deny, so it enforces. */
export function remediation(policy: EffectivePolicy): "enforce" | "inform" {
  return policy.enforcement === "deny" ? "enforce" : "inform";
}

function selector(labels: Readonly<Record<string, string>> | undefined): { matchLabels?: Record<string, string> } {
  if (labels === undefined || Object.keys(labels).length === 0) return {};
  return { matchLabels: Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1))) };
}

function peers(list: readonly { namespace?: string; podSelector?: Record<string, string> }[] | undefined, own: string): unknown[] {
  return byJson(
    (list ?? []).map((p) => ({
      namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": p.namespace ?? own } },
      podSelector: selector(p.podSelector),
    })),
  );
}

function ports(list: readonly { protocol?: string; port: number }[] | undefined): unknown[] | undefined {
  if (list === undefined) return undefined;
  return byJson(list.map((p) => ({ protocol: p.protocol ?? "TCP", port: p.port })));
}

function network(policy: EffectivePolicy, intent: NetworkIntent): Manifest[] {
  const out: Manifest[] = [];
  // Both rule lists always stated (empty where nothing is allowed): server-side apply then owns
  // them, so re-applying takes back a rule someone added (`ingress: [{}]` opens a default-deny).
  const np = (name: string, namespace: string, spec: Record<string, unknown>): Manifest => ({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: meta(policy, name, namespace),
    spec: { ingress: [], egress: [], ...spec },
  });
  for (const namespace of sorted(intent.namespaces)) {
    out.push(np(partName(policy, "default-deny"), namespace, { podSelector: {}, policyTypes: ["Egress", "Ingress"] }));
    if (intent.allowDns !== false) {
      out.push(
        np(partName(policy, "dns"), namespace, {
          podSelector: {},
          policyTypes: ["Egress"],
          egress: [
            {
              to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } }, podSelector: { matchLabels: { "k8s-app": "kube-dns" } } }],
              ports: [
                { protocol: "TCP", port: 53 },
                { protocol: "UDP", port: 53 },
              ],
            },
          ],
        }),
      );
    }
  }
  for (const flow of intent.ingress ?? []) {
    const p = ports(flow.ports);
    out.push(
      np(partName(policy, `in-${flow.name}`), flow.namespace, {
        podSelector: selector(flow.podSelector),
        policyTypes: ["Ingress"],
        ingress: [{ from: peers(flow.from, flow.namespace), ...(p === undefined ? {} : { ports: p }) }],
      }),
    );
  }
  for (const flow of intent.egress ?? []) {
    const p = ports(flow.ports);
    const cidrs = Array.isArray(flow.cidrs) ? sorted(flow.cidrs).map((cidr) => ({ ipBlock: { cidr } })) : [];
    out.push(
      np(partName(policy, `out-${flow.name}`), flow.namespace, {
        podSelector: selector(flow.podSelector),
        policyTypes: ["Egress"],
        egress: [{ to: [...peers(flow.to, flow.namespace), ...cidrs], ...(p === undefined ? {} : { ports: p }) }],
      }),
    );
  }
  return out;
}

function resources(list: Readonly<Record<string, string | number>> | undefined): Record<string, string> | undefined {
  if (list === undefined) return undefined;
  return Object.fromEntries(
    Object.entries(list)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => [k, String(v)]),
  );
}

function quota(policy: EffectivePolicy, intent: QuotaIntent): Manifest[] {
  const out: Manifest[] = [];
  for (const namespace of sorted(intent.namespaces)) {
    const hard = resources(intent.hard);
    if (hard !== undefined) out.push({ apiVersion: "v1", kind: "ResourceQuota", metadata: meta(policy, `polity-${policy.name}`, namespace), spec: { hard } });
    if (intent.limits !== undefined) {
      const limit: Record<string, unknown> = { type: "Container" };
      for (const key of ["default", "defaultRequest", "max", "min"] as const) {
        const r = resources(intent.limits[key]);
        if (r !== undefined) limit[key] = r;
      }
      out.push({ apiVersion: "v1", kind: "LimitRange", metadata: meta(policy, `polity-${policy.name}`, namespace), spec: { limits: [limit] } });
    }
  }
  return out;
}

/** RBAC rules exactly as the intent names them, each list sorted and deduplicated. */
function rbacRules(rules: AccessIntent["grants"][number]["rules"]): unknown[] {
  return byJson(
    rules.map((r) => ({
      apiGroups: sorted(r.apiGroups),
      resources: sorted(r.resources),
      verbs: sorted(r.verbs),
      ...(r.resourceNames === undefined ? {} : { resourceNames: sorted(r.resourceNames) }),
    })),
  );
}

function access(policy: EffectivePolicy, intent: AccessIntent): Manifest[] {
  const out: Manifest[] = [];
  const RBAC = "rbac.authorization.k8s.io/v1";
  for (const grant of intent.grants) {
    const name = partName(policy, grant.name);
    const rules = rbacRules(grant.rules);
    const subjects = sorted(grant.groups).map((g) => ({ kind: "Group", apiGroup: "rbac.authorization.k8s.io", name: g }));
    if (grant.namespaces === undefined) {
      out.push({ apiVersion: RBAC, kind: "ClusterRole", metadata: meta(policy, name, undefined), rules });
      out.push({ apiVersion: RBAC, kind: "ClusterRoleBinding", metadata: meta(policy, name, undefined), subjects, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name } });
    } else {
      for (const namespace of sorted(grant.namespaces)) {
        out.push({ apiVersion: RBAC, kind: "Role", metadata: meta(policy, name, namespace), rules });
        out.push({ apiVersion: RBAC, kind: "RoleBinding", metadata: meta(policy, name, namespace), subjects, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name } });
      }
    }
  }
  return out;
}

/** The objects one intent makes (residency's admission rule is made by admission.ts). */
export function translateIntent(policy: EffectivePolicy, generate: GenerateSpec): Manifest[] {
  if (generate.network !== undefined) return network(policy, generate.network);
  if (generate.quota !== undefined) return quota(policy, generate.quota);
  if (generate.access !== undefined) return access(policy, generate.access);
  return [];
}
