/**
 * Kubernetes' resource rules (`matchConstraints.resourceRules` of a
 * ValidatingAdmissionPolicy), matched as the API server matches them
 * (k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/rules): API group, version,
 * resource and subresource (`pods/exec`, `*\/scale`, `*` is the main resource only, `*\/*`
 * every subresource), operation, and scope (a Namespace itself is cluster-scoped).
 */
import type { EffectiveResourceRule } from "../layering/effective.js";
import type { AdmissionRequest, GroupVersionKind } from "./request.js";

export interface RequestedResource {
  readonly group: string;
  readonly version: string;
  readonly resource: string;
  readonly subresource: string;
  readonly operation: string;
  /** The request's namespace; "" for a cluster-scoped resource. */
  readonly namespace: string;
}

/** Resources whose name is not the kind's lower-cased plural as Kubernetes guesses it. */
const IRREGULAR: Readonly<Record<string, string>> = { Endpoints: "endpoints", PodSecurityPolicy: "podsecuritypolicies" };

/**
 * The resource of a kind, as Kubernetes' UnsafeGuessKindToResource names it: lower case,
 * plural with -es after an s and -ies for a final y. The API server sends the resource in
 * every AdmissionRequest; only a resource read from a file needs the guess.
 */
export function guessResource(kind: string): string {
  const irregular = IRREGULAR[kind];
  if (irregular !== undefined) return irregular;
  const singular = kind.toLowerCase();
  if (singular.endsWith("s")) return `${singular}es`;
  if (singular.endsWith("y")) return `${singular.slice(0, -1)}ies`;
  return `${singular}s`;
}

export function requestedResource(request: AdmissionRequest): RequestedResource {
  const resource = request.resource ?? resourceOfKind(request.kind);
  return {
    group: resource.group,
    version: resource.version,
    resource: resource.resource,
    subresource: request.subResource ?? "",
    operation: request.operation,
    namespace: request.namespace ?? "",
  };
}

export function resourceOfKind(kind: GroupVersionKind): { group: string; version: string; resource: string } {
  return { group: kind.group, version: kind.version, resource: guessResource(kind.kind) };
}

const anyOr = (list: readonly string[], value: string) => list.includes("*") || list.includes(value);

/** Whether `rule` matches the requested resource. */
export function ruleMatches(rule: EffectiveResourceRule, r: RequestedResource): boolean {
  if (!anyOr(rule.operations, r.operation) || !anyOr(rule.apiGroups, r.group) || !anyOr(rule.apiVersions, r.version)) return false;
  const isNamespace = r.group === "" && r.resource === "namespaces";
  if (rule.scope === "Namespaced" && (isNamespace || r.namespace === "")) return false;
  if (rule.scope === "Cluster" && !(isNamespace || r.namespace === "")) return false;
  return rule.resources.some((entry) => {
    const slash = entry.indexOf("/");
    const resource = slash < 0 ? entry : entry.slice(0, slash);
    const subresource = slash < 0 ? "" : entry.slice(slash + 1);
    return (resource === "*" || resource === r.resource) && (subresource === "*" || subresource === r.subresource);
  });
}
