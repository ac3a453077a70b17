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
