/**
 * Drift: where a live object no longer holds what Polity applied. Pure: `driftOf(desired,
 * live)` compares only the fields Polity owns, the fields its manifest sets, as
 * server-side apply counts ownership (field manager `polity`):
 *
 * - every leaf the manifest sets, under every top-level field but `apiVersion`, `kind`,
 *   `metadata` and `status`; a map compares the keys the manifest names, never others
 *   (another manager's fields, the API server's defaults);
 * - in `metadata`, only the labels and annotations the manifest sets (name and namespace
 *   are the object's identity; uid, resourceVersion, managedFields… are the server's);
 * - a list is owned whole (the lists of the kinds Polity makes are atomic: rules, subjects,
 *   ingress and egress, limits, validations): a different length is drift, and each item
 *   is compared as a map, so a default the server fills into an item (a port's `protocol`)
 *   is not;
 * - an empty map or list (or null) in the manifest matches an absent field: API servers
 *   omit empty values when they store an object;
 * - quantities (ResourceQuota `spec.hard`, LimitRange limits) compare by value: the API
 *   server stores `1000m` as `1`;
 * - owned whole, so that what another writer adds is drift too: the fields only Polity writes
 *   (a NetworkPolicy's or admission policy's or binding's `spec`, a role's `rules` and
 *   `aggregationRule`, a binding's `subjects` and `roleRef`), and atomic structs in any kind
 *   (label selectors: `podSelector`, `namespaceSelector`, `objectSelector`; `matchConstraints`,
 *   `matchResources`). Only empty values and the defaults the API server fills in
 *   (`matchPolicy: Equivalent`, a rule's `scope: "*"`, a port's `protocol: TCP`…) are not;
 *   so `podSelector: {matchLabels: …}` or `ingress: [{}]` on a default-deny is drift;
 * - no live object at all is drift too (`missing`).
 *
 * Paths read as kubectl prints them: `spec.hard.pods`, `spec.ingress[0].ports[1].port`,
 * `metadata.labels['polity.dev/policy']`.
 */
import { parseQuantity } from "../cel/kubernetes/quantity.js";
import { REMEDIATION_ANNOTATION, type Manifest } from "./translate.js";

export type Remediation = "enforce" | "inform";

/** A path into an object: map keys and list indexes. */
export type FieldPath = readonly (string | number)[];

export type DriftFinding =
  | { readonly kind: "missing" }
  /** The owned fields whose live value differs, in the manifest's order. */
  | { readonly kind: "changed"; readonly fields: readonly FieldPath[] };

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `spec.hard['requests.cpu']`, `spec.ingress[0].from`. */
export function formatPath(path: FieldPath): string {
  let out = "";
  for (const step of path) {
    if (typeof step === "number") out += `[${step}]`;
    else if (IDENTIFIER.test(step)) out += out === "" ? step : `.${step}`;
    else out += `['${step.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}']`;
  }
  return out;
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/** Empty in the manifest: matches an absent live field. */
const isEmpty = (value: unknown): boolean => value === null || value === undefined || (Array.isArray(value) ? value.length === 0 : isRecord(value) && Object.keys(value).length === 0);

/** Maps whose values are Kubernetes quantities, by kind. */
const QUANTITY_MAPS: Readonly<Record<string, readonly string[]>> = {
  ResourceQuota: ["hard"],
  LimitRange: ["default", "defaultRequest", "max", "min", "maxLimitRequestRatio"],
};

function sameQuantity(desired: unknown, live: unknown): boolean {
  if ((typeof desired !== "string" && typeof desired !== "number") || (typeof live !== "string" && typeof live !== "number")) return false;
  try {
    return parseQuantity(String(desired)).compare(parseQuantity(String(live))) === 0;
  } catch {
    return false;
  }
}

/**
 * Fields only Polity writes, by kind: nobody else has a reason to add to a network policy,
 * an admission policy or a role Polity made, and whatever they add there changes what it
 * allows (a rule `{}` opens a default-deny, a selector narrows it). Any difference in them
 * is drift, not only in the keys the manifest names.
 */
const EXCLUSIVE: Readonly<Record<string, readonly string[]>> = {
  NetworkPolicy: ["spec"],
  ValidatingAdmissionPolicy: ["spec"],
  ValidatingAdmissionPolicyBinding: ["spec"],
  Role: ["rules"],
  ClusterRole: ["rules", "aggregationRule"],
  RoleBinding: ["subjects", "roleRef"],
  ClusterRoleBinding: ["subjects", "roleRef"],
};

/**
 * Atomic structs, in whatever kind: Kubernetes' LabelSelector (`+structType=atomic`) and
 * MatchResources are owned whole by whoever applies them, so a key added to one is drift.
 */
const ATOMIC = new Set(["podSelector", "namespaceSelector", "objectSelector", "matchConstraints", "matchResources"]);

/** What the API server fills into the fields of those kinds when the manifest leaves them out. */
const SERVER_DEFAULTS: Readonly<Record<string, unknown>> = { matchPolicy: "Equivalent", scope: "*", protocol: "TCP", failurePolicy: "Fail", parameterNotFoundAction: "Deny" };

/** A live value that says nothing the manifest did not: empty, the server's default for its key, or a map of such. */
function negligible(key: string, value: unknown): boolean {
  if (isEmpty(value) || (Object.hasOwn(SERVER_DEFAULTS, key) && SERVER_DEFAULTS[key] === value)) return true;
  return isRecord(value) && Object.entries(value).every(([k, v]) => negligible(k, v));
}

/** Keys of a live map owned whole that the manifest does not name: drift unless negligible. */
function extraKeys(desired: Record<string, unknown>, live: Record<string, unknown>, path: (string | number)[], out: FieldPath[]): void {
  for (const [key, value] of Object.entries(live)) {
    if (!Object.hasOwn(desired, key) && !negligible(key, value)) out.push([...path, key]);
  }
}

/** `whole`: the value is owned whole (an atomic struct, or a field only Polity writes), so what the live value adds is drift too. */
function compare(desired: unknown, live: unknown, path: (string | number)[], quantity: boolean, quantityKeys: readonly string[], whole: boolean, out: FieldPath[]): void {
  const last = path[path.length - 1];
  whole ||= typeof last === "string" && ATOMIC.has(last);
  if (isEmpty(desired)) {
    if (isEmpty(live)) return;
    // An empty map owned whole claims every key empty (the server's defaults aside).
    if (whole && isRecord(desired) && isRecord(live)) {
      extraKeys(desired, live, path, out);
      return;
    }
    // Not whole: an empty map in the manifest claims no key of a live map; an empty list (or null) claims the field empty.
    if (whole ? !negligible(String(last), live) : Array.isArray(desired) || desired === null || !isRecord(live)) out.push([...path]);
    return;
  }
  if (isRecord(desired)) {
    if (!isRecord(live)) {
      out.push([...path]);
      return;
    }
    // The values of a quantity map (ResourceQuota spec.hard, a LimitRange's max…) are quantities.
    const quantities = quantityKeys.includes(String(last));
    for (const [key, value] of Object.entries(desired)) {
      path.push(key);
      compare(value, live[key], path, quantities, quantityKeys, whole, out);
      path.pop();
    }
    if (whole) extraKeys(desired, live, path, out);
    return;
  }
  if (Array.isArray(desired)) {
    if (!Array.isArray(live) || live.length !== desired.length) {
      out.push([...path]);
      return;
    }
    for (let i = 0; i < desired.length; i++) {
      path.push(i);
      compare(desired[i], live[i], path, false, quantityKeys, whole, out);
      path.pop();
    }
    return;
  }
  if (desired === live || (quantity && sameQuantity(desired, live))) return;
  out.push([...path]);
}

const SKIPPED = new Set(["apiVersion", "kind", "metadata", "status"]);

/** The drift of `live` from `desired`, or undefined when every owned field holds. */
export function driftOf(desired: Manifest, live: unknown): DriftFinding | undefined {
  if (!isRecord(live)) return { kind: "missing" };
  const fields: FieldPath[] = [];
  const meta = isRecord(live.metadata) ? live.metadata : {};
  for (const part of ["labels", "annotations"] as const) {
    const wanted = desired.metadata[part] ?? {};
    const held = isRecord(meta[part]) ? meta[part] : {};
    for (const [key, value] of Object.entries(wanted)) if (held[key] !== value) fields.push(["metadata", part, key]);
  }
  const quantityKeys = QUANTITY_MAPS[desired.kind] ?? [];
  const exclusive = EXCLUSIVE[desired.kind] ?? [];
  for (const [key, value] of Object.entries(desired)) {
    if (SKIPPED.has(key)) continue;
    compare(value, live[key], [key], false, quantityKeys, exclusive.includes(key), fields);
  }
  // A field only Polity writes that its manifest leaves out (a ClusterRole's aggregationRule) is Polity's too: empty.
  for (const key of exclusive) if (!Object.hasOwn(desired, key) && !negligible(key, live[key])) fields.push([key]);
  return fields.length === 0 ? undefined : { kind: "changed", fields };
}

/**
 * What drift of this object does: its manifest's `polity.dev/remediation` annotation (the
 * translator writes `enforce` for `deny` policies, whose locks keep them there, `inform`
 * otherwise). Objects without one (the PolicyParams definition and params of the second
 * line) are Polity's own machinery and enforce.
 */
export function remediationOf(desired: Manifest): Remediation {
  return desired.metadata.annotations?.[REMEDIATION_ANNOTATION] === "inform" ? "inform" : "enforce";
}

interface ManagedFieldsEntry {
  readonly manager?: unknown;
  readonly time?: unknown;
  readonly fieldsV1?: unknown;
}

/** Whether a FieldsV1 set (`{"f:spec":{"f:hard":{"f:pods":{}}}}`) holds the path, or a map above it that it owns as a leaf. */
function ownsPath(fields: unknown, path: FieldPath): boolean {
  let node = fields;
  for (const step of path) {
    if (!isRecord(node)) return false;
    // List items are keyed by value or key (`v:`, `k:`) rather than index: ownership of the list is enough.
    if (typeof step === "number") return true;
    const next = node[`f:${step}`];
    if (next === undefined) return false;
    node = next;
  }
  return true;
}

/**
 * Who else writes the object, from its managedFields: the manager (not `polity`) whose
 * fields hold one of the drifted paths, else the one that wrote last; undefined when the
 * server names none.
 */
export function otherManager(live: unknown, fields: readonly FieldPath[], own = "polity"): string | undefined {
  const meta = isRecord(live) && isRecord(live.metadata) ? live.metadata : undefined;
  const entries = (Array.isArray(meta?.managedFields) ? (meta.managedFields as ManagedFieldsEntry[]) : []).filter(
    (e): e is ManagedFieldsEntry & { manager: string } => isRecord(e) && typeof e.manager === "string" && e.manager !== "" && e.manager !== own,
  );
  const owner = entries.find((e) => fields.some((f) => ownsPath(e.fieldsV1, f)));
  if (owner !== undefined) return owner.manager;
  const time = (e: ManagedFieldsEntry) => (typeof e.time === "string" ? Date.parse(e.time) || 0 : 0);
  return [...entries].sort((a, b) => time(b) - time(a))[0]?.manager;
}
