/**
 * Admission requests: what a decision is about. Polity speaks Kubernetes AdmissionReview
 * `admission.k8s.io/v1`; a plain resource (from a file) becomes the CREATE request the API
 * server would send for it.
 *
 * The checks here run on every webhook call, so they are hand-written and allocate
 * nothing on the success path.
 */
import { PolityError } from "../errors.js";
import type { Operation } from "../policy/schema.js";

export interface GroupVersionKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
}

/** An AdmissionRequest as the API server sends it (only the fields Polity reads are typed). */
export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: GroupVersionKind;
  readonly resource?: { readonly group: string; readonly version: string; readonly resource: string };
  readonly subResource?: string;
  readonly name?: string;
  readonly namespace?: string;
  readonly operation: Operation;
  readonly userInfo?: Readonly<Record<string, unknown>>;
  readonly object: unknown;
  readonly oldObject: unknown;
  readonly dryRun?: boolean;
  readonly options?: unknown;
}

export interface AdmissionReview {
  readonly apiVersion: "admission.k8s.io/v1";
  readonly kind: "AdmissionReview";
  readonly request: AdmissionRequest;
}

const OPERATION_SET = new Set<string>(["CREATE", "UPDATE", "DELETE", "CONNECT"]);

function fail(message: string): never {
  throw PolityError.of("invalid", message);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Whether a document is an AdmissionReview (of any version), as opposed to a plain resource. */
export function looksLikeAdmissionReview(value: unknown): boolean {
  return isRecord(value) && value.kind === "AdmissionReview";
}

/** Validates an AdmissionReview v1 request at the boundary; throws a PolityError naming the field. */
export function parseAdmissionReview(value: unknown): AdmissionReview {
  if (!isRecord(value)) fail("an AdmissionReview must be a JSON object");
  if (value.kind !== "AdmissionReview") fail(`kind must be "AdmissionReview", got ${JSON.stringify(value.kind)}`);
  if (value.apiVersion !== "admission.k8s.io/v1") {
    fail(`apiVersion must be "admission.k8s.io/v1", got ${JSON.stringify(value.apiVersion)} (register the webhook with admissionReviewVersions: ["v1"])`);
  }
  const request = value.request;
  if (!isRecord(request)) fail("request: is required (an AdmissionRequest object)");
  if (typeof request.uid !== "string" || request.uid === "") fail("request.uid: must be a non-empty string");
  const kind = request.kind;
  if (!isRecord(kind) || typeof kind.group !== "string" || typeof kind.version !== "string" || typeof kind.kind !== "string" || kind.kind === "") {
    fail("request.kind: must be {group, version, kind} strings");
  }
  if (typeof request.operation !== "string" || !OPERATION_SET.has(request.operation)) {
    fail(`request.operation: must be one of CREATE, UPDATE, DELETE, CONNECT, got ${JSON.stringify(request.operation)}`);
  }
  for (const field of ["name", "namespace", "subResource"] as const) {
    if (request[field] !== undefined && typeof request[field] !== "string") fail(`request.${field}: must be a string`);
  }
  for (const field of ["object", "oldObject"] as const) {
    const v = request[field];
    if (v !== undefined && v !== null && !isRecord(v)) fail(`request.${field}: must be an object or null`);
  }
  if (request.operation === "CREATE" && !isRecord(request.object)) fail("request.object: a CREATE request carries the object");
  if (request.operation === "UPDATE" && (!isRecord(request.object) || !isRecord(request.oldObject))) {
    fail("request.object and request.oldObject: an UPDATE request carries both");
  }
  if (request.userInfo !== undefined && !isRecord(request.userInfo)) fail("request.userInfo: must be an object");
  return value as unknown as AdmissionReview;
}

/** Built-in kinds that live outside namespaces; any other kind read from a file without a namespace is in "default", as kubectl would put it. */
const CLUSTER_SCOPED_KINDS = new Set([
  "Namespace",
  "Node",
  "PersistentVolume",
  "ClusterRole",
  "ClusterRoleBinding",
  "StorageClass",
  "CustomResourceDefinition",
  "ValidatingWebhookConfiguration",
  "MutatingWebhookConfiguration",
  "ValidatingAdmissionPolicy",
  "ValidatingAdmissionPolicyBinding",
  "MutatingAdmissionPolicy",
  "MutatingAdmissionPolicyBinding",
  "PriorityClass",
  "RuntimeClass",
  "IngressClass",
  "CSIDriver",
  "CSINode",
  "VolumeAttachment",
  "APIService",
  "CertificateSigningRequest",
  "FlowSchema",
  "PriorityLevelConfiguration",
]);

/** The group/version/kind of a resource's apiVersion and kind. */
export function groupVersionKind(resource: Record<string, unknown>): GroupVersionKind {
  const apiVersion = typeof resource.apiVersion === "string" ? resource.apiVersion : "";
  const slash = apiVersion.indexOf("/");
  return {
    group: slash < 0 ? "" : apiVersion.slice(0, slash),
    version: slash < 0 ? apiVersion : apiVersion.slice(slash + 1),
    kind: typeof resource.kind === "string" ? resource.kind : "",
  };
}

/** The AdmissionRequest the API server would send when `resource` is created (or updated from `old`). */
export function requestForResource(resource: unknown, operation: Operation = "CREATE", old?: unknown, uid = "polity-eval"): AdmissionRequest {
  if (!isRecord(resource)) fail("a resource must be a map with apiVersion, kind and metadata");
  const gvk = groupVersionKind(resource);
  if (gvk.kind === "" || gvk.version === "") fail("a resource needs apiVersion and kind");
  const metadata = isRecord(resource.metadata) ? resource.metadata : {};
  const name = typeof metadata.name === "string" ? metadata.name : typeof metadata.generateName === "string" ? metadata.generateName : "";
  const namespace =
    typeof metadata.namespace === "string" ? metadata.namespace : CLUSTER_SCOPED_KINDS.has(gvk.kind) ? undefined : "default";
  return {
    uid,
    kind: gvk,
    name,
    ...(namespace === undefined ? {} : { namespace }),
    operation,
    userInfo: { username: "polity-eval" },
    object: operation === "DELETE" ? null : resource,
    oldObject: operation === "DELETE" ? resource : operation === "UPDATE" ? (old ?? null) : null,
  };
}

/**
 * Fields that Kubernetes' Go types declare without `omitempty` and that can be nil (slices,
 * maps, pointers), by `group/Kind`: the API server encodes them as `null` whether the
 * request left them out or set them to null, so its webhooks see `"rules": null` for a
 * Role without rules. `[]` steps into every item of a list.
 */
const SERIALIZED_NULLS: ReadonlyMap<string, readonly (readonly string[])[]> = new Map(
  Object.entries({
    "/Pod": ["spec.containers"],
    "/PodTemplate": ["template.spec.containers"],
    "apps/Deployment": ["spec.selector", "spec.template.spec.containers"],
    "apps/ReplicaSet": ["spec.selector", "spec.template.spec.containers"],
    "apps/StatefulSet": ["spec.selector", "spec.template.spec.containers"],
    "apps/DaemonSet": ["spec.selector", "spec.template.spec.containers"],
    "batch/Job": ["spec.template.spec.containers"],
    "batch/CronJob": ["spec.jobTemplate.spec.template.spec.containers"],
    "rbac.authorization.k8s.io/Role": ["rules", "rules[].verbs"],
    "rbac.authorization.k8s.io/ClusterRole": ["rules", "rules[].verbs"],
  }).map(([kind, paths]) => [kind, paths.map((path) => path.split("."))]),
);

/**
 * A resource as the API server decodes it before admission and encodes it for its
 * webhooks: a field set to null is the same as an absent one (`securityContext:` with
 * nothing after it, in hand-written YAML), except where Kubernetes serializes a nil field
 * as null (SERIALIZED_NULLS), which is null whether it was written or not. `polity eval`
 * judges a file's resource in this form, so that it gives the verdict the webhook gives.
 */
export function decidedResource(value: unknown): unknown {
  const out = withoutNulls(value);
  if (!isRecord(out)) return out;
  const gvk = groupVersionKind(out);
  for (const path of SERIALIZED_NULLS.get(`${gvk.group}/${gvk.kind}`) ?? []) serializedNull(out, path);
  return out;
}

/** Sets the field at `path` to null where it is absent (null fields were dropped before). */
function serializedNull(out: Record<string, unknown>, path: readonly string[]): void {
  const [step, ...rest] = path as [string, ...string[]];
  const list = step.endsWith("[]");
  const key = list ? step.slice(0, -2) : step;
  if (rest.length === 0) {
    if (!hasOwnField(out, key)) out[key] = null;
    return;
  }
  const next = out[key];
  if (list && Array.isArray(next)) {
    for (const item of next) if (isRecord(item)) serializedNull(item, rest);
  } else if (!list && isRecord(next)) {
    serializedNull(next, rest);
  }
}

function hasOwnField(value: Record<string, unknown>, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(value, key);
}

function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (!isRecord(value)) return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const v = value[key];
    if (v === null) continue;
    if (key === "__proto__") {
      Object.defineProperty(out, key, { value: withoutNulls(v), enumerable: true, writable: true, configurable: true });
    } else {
      out[key] = withoutNulls(v);
    }
  }
  return out;
}
