/**
 * The resources the test API server serves, as its discovery documents describe them
 * (APIResourceList): group, version, plural name, kind, scope and verbs. A test may add
 * more (`TestApiServer.serve`), as a CustomResourceDefinition would.
 */

export interface ResourceType {
  /** "" for the core group (served under /api). */
  readonly group: string;
  readonly version: string;
  /** The plural name in paths: `pods`, `policyreports`. */
  readonly resource: string;
  readonly kind: string;
  readonly namespaced: boolean;
  readonly shortNames?: readonly string[];
}

const VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"] as const;
export const ALL_VERBS: readonly string[] = VERBS;

export const BUILT_IN: readonly ResourceType[] = [
  { group: "", version: "v1", resource: "namespaces", kind: "Namespace", namespaced: false, shortNames: ["ns"] },
  { group: "", version: "v1", resource: "nodes", kind: "Node", namespaced: false, shortNames: ["no"] },
  { group: "", version: "v1", resource: "pods", kind: "Pod", namespaced: true, shortNames: ["po"] },
  { group: "", version: "v1", resource: "secrets", kind: "Secret", namespaced: true },
  { group: "", version: "v1", resource: "configmaps", kind: "ConfigMap", namespaced: true, shortNames: ["cm"] },
  { group: "", version: "v1", resource: "services", kind: "Service", namespaced: true, shortNames: ["svc"] },
  { group: "", version: "v1", resource: "serviceaccounts", kind: "ServiceAccount", namespaced: true, shortNames: ["sa"] },
  { group: "", version: "v1", resource: "events", kind: "Event", namespaced: true, shortNames: ["ev"] },
  { group: "apps", version: "v1", resource: "deployments", kind: "Deployment", namespaced: true, shortNames: ["deploy"] },
  { group: "apps", version: "v1", resource: "statefulsets", kind: "StatefulSet", namespaced: true, shortNames: ["sts"] },
  { group: "apps", version: "v1", resource: "daemonsets", kind: "DaemonSet", namespaced: true, shortNames: ["ds"] },
  { group: "apps", version: "v1", resource: "replicasets", kind: "ReplicaSet", namespaced: true, shortNames: ["rs"] },
  { group: "batch", version: "v1", resource: "jobs", kind: "Job", namespaced: true },
  { group: "batch", version: "v1", resource: "cronjobs", kind: "CronJob", namespaced: true, shortNames: ["cj"] },
  { group: "coordination.k8s.io", version: "v1", resource: "leases", kind: "Lease", namespaced: true },
  { group: "admissionregistration.k8s.io", version: "v1", resource: "validatingwebhookconfigurations", kind: "ValidatingWebhookConfiguration", namespaced: false },
  { group: "wgpolicyk8s.io", version: "v1alpha2", resource: "policyreports", kind: "PolicyReport", namespaced: true, shortNames: ["polr"] },
  { group: "wgpolicyk8s.io", version: "v1alpha2", resource: "clusterpolicyreports", kind: "ClusterPolicyReport", namespaced: false, shortNames: ["cpolr"] },
];

export function apiVersionOf(type: ResourceType): string {
  return type.group === "" ? type.version : `${type.group}/${type.version}`;
}

/** The APIResourceList of one group version (GET /api/v1, GET /apis/apps/v1). */
export function resourceList(types: readonly ResourceType[], group: string, version: string): unknown {
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: group === "" ? version : `${group}/${version}`,
    resources: types
      .filter((t) => t.group === group && t.version === version)
      .map((t) => ({
        name: t.resource,
        singularName: t.kind.toLowerCase(),
        namespaced: t.namespaced,
        kind: t.kind,
        verbs: [...VERBS],
        ...(t.shortNames === undefined ? {} : { shortNames: [...t.shortNames] }),
      })),
  };
}

/** The APIGroupList (GET /apis): every group but the core one, each with its versions. */
export function groupList(types: readonly ResourceType[]): unknown {
  return { kind: "APIGroupList", apiVersion: "v1", groups: groupsOf(types).map((g) => apiGroup(types, g)) };
}

export function groupsOf(types: readonly ResourceType[]): string[] {
  return [...new Set(types.map((t) => t.group).filter((g) => g !== ""))].sort();
}

export function apiGroup(types: readonly ResourceType[], group: string): unknown {
  const versions = [...new Set(types.filter((t) => t.group === group).map((t) => t.version))];
  const listed = versions.map((version) => ({ groupVersion: `${group}/${version}`, version }));
  return { kind: "APIGroup", apiVersion: "v1", name: group, versions: listed, preferredVersion: listed[0] };
}

/** The kinds intents make (src/intents/translate.ts), second line aside: what apply and drift tests serve. */
export const INTENT_TYPES: readonly ResourceType[] = [
  { group: "networking.k8s.io", version: "v1", resource: "networkpolicies", kind: "NetworkPolicy", namespaced: true },
  { group: "", version: "v1", resource: "resourcequotas", kind: "ResourceQuota", namespaced: true },
  { group: "", version: "v1", resource: "limitranges", kind: "LimitRange", namespaced: true },
  { group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterroles", kind: "ClusterRole", namespaced: false },
  { group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterrolebindings", kind: "ClusterRoleBinding", namespaced: false },
];

/** The native second line's kinds: admission policies, their bindings, the params' definition and params. */
export const SECOND_LINE_TYPES: readonly ResourceType[] = [
  { group: "admissionregistration.k8s.io", version: "v1", resource: "validatingadmissionpolicies", kind: "ValidatingAdmissionPolicy", namespaced: false },
  { group: "admissionregistration.k8s.io", version: "v1", resource: "validatingadmissionpolicybindings", kind: "ValidatingAdmissionPolicyBinding", namespaced: false },
  { group: "apiextensions.k8s.io", version: "v1", resource: "customresourcedefinitions", kind: "CustomResourceDefinition", namespaced: false },
  { group: "polity.dev", version: "v1", resource: "policyparams", kind: "PolicyParams", namespaced: false },
];
