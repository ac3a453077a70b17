/**
 * The declared types of a policy expression's variables, as Kubernetes declares them for
 * a ValidatingAdmissionPolicy (k8s.io/apiserver/pkg/admission/plugin/cel): `request` is a
 * `kubernetes.AdmissionRequest` (no object, oldObject or uid in it), `namespaceObject` a
 * Namespace with its metadata, spec and status, and `params` the policy's own params, typed
 * by their defaults. Selecting a field these types do not have is a compile error
 * (`request.foo1`), as in Kubernetes. `object` and `oldObject` are whatever was sent.
 */
import type { DeclaredType } from "../cel/index.js";
import type { Param } from "./schema.js";

const strings: DeclaredType = { list: "string" };

const groupVersionKind: DeclaredType = { object: "kubernetes.GroupVersionKind", fields: { group: "string", version: "string", kind: "string" } };
const groupVersionResource: DeclaredType = { object: "kubernetes.GroupVersionResource", fields: { group: "string", version: "string", resource: "string" } };

export const REQUEST_TYPE: DeclaredType = {
  object: "kubernetes.AdmissionRequest",
  fields: {
    kind: groupVersionKind,
    resource: groupVersionResource,
    subResource: "string",
    requestKind: groupVersionKind,
    requestResource: groupVersionResource,
    requestSubResource: "string",
    name: "string",
    namespace: "string",
    operation: "string",
    userInfo: {
      object: "kubernetes.UserInfo",
      fields: { username: "string", uid: "string", groups: strings, extra: { map: strings } },
    },
    dryRun: "bool",
    options: "dyn",
  },
};

const OBJECT_META: DeclaredType = {
  object: "kubernetes.ObjectMeta",
  fields: {
    name: "string",
    generateName: "string",
    namespace: "string",
    uid: "string",
    resourceVersion: "string",
    generation: "int",
    // Timestamps arrive as RFC 3339 strings in the JSON Polity judges.
    creationTimestamp: "dyn",
    deletionTimestamp: "dyn",
    deletionGracePeriodSeconds: "int",
    labels: { map: "string" },
    annotations: { map: "string" },
    ownerReferences: { list: "dyn" },
    finalizers: strings,
    managedFields: { list: "dyn" },
  },
};

export const NAMESPACE_TYPE: DeclaredType = {
  object: "kubernetes.Namespace",
  fields: {
    apiVersion: "string",
    kind: "string",
    metadata: OBJECT_META,
    spec: { object: "kubernetes.NamespaceSpec", fields: { finalizers: strings } },
    status: { object: "kubernetes.NamespaceStatus", fields: { phase: "string", conditions: { list: "dyn" } } },
  },
};

/** The type of a JSON value, as a param's default gives it. */
function typeOfValue(value: unknown): DeclaredType {
  if (typeof value === "string") return "string";
  if (typeof value === "boolean") return "bool";
  if (typeof value === "number") return Number.isInteger(value) ? "int" : "double";
  if (Array.isArray(value)) {
    const kinds = new Set(value.map((v) => JSON.stringify(typeOfValue(v))));
    return { list: kinds.size === 1 ? typeOfValue(value[0]) : "dyn" };
  }
  if (typeof value === "object" && value !== null) return { map: "dyn" };
  return "dyn";
}

/** `params` of a policy that declares these params: an object of exactly those fields. */
export function paramsType(params: Readonly<Record<string, Param>>): DeclaredType {
  const fields: Record<string, DeclaredType> = {};
  for (const [name, param] of Object.entries(params)) {
    const value = param.default ?? param.value;
    Object.defineProperty(fields, name, { value: value === undefined ? "dyn" : typeOfValue(value), enumerable: true });
  }
  return { object: "params", fields };
}
