/**
 * Field ownership for the test API server, from the Kubernetes documentation ("Server-Side
 * Apply": field management, conflicts, managers, managedFields in FieldsV1):
 *
 * - every object's `metadata.managedFields` lists, per manager and operation (Apply or
 *   Update), the fields it owns in FieldsV1 (`{"f:spec":{"f:hard":{"f:cpu":{}}}}`);
 * - an apply owns exactly the fields its configuration sets. A field another manager owns
 *   with a different value is a conflict: 409 Conflict, reason FieldManagerConflict per
 *   field, unless `force=true`, which takes the field over. With the same value, the field
 *   is shared. A field the manager applied before and no longer sets is removed from the
 *   object, unless another manager owns it too;
 * - an update (PUT, merge or JSON patch, create) takes every field it changes for its
 *   manager (`fieldManager`, else one derived from the client as the API server derives it),
 *   away from every other manager.
 *
 * Simplifications, said here so that no test relies on more: lists are atomic (one field,
 * as `x-kubernetes-list-type: atomic`; Kubernetes keys some lists by a field), and of
 * `metadata` only labels and annotations are tracked.
 */

type Json = Record<string, unknown>;
type Path = readonly string[];

const isRecord = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);

export interface ManagedFieldsEntry {
  manager: string;
  operation: "Apply" | "Update";
  apiVersion: string;
  time: string;
  fieldsType: "FieldsV1";
  fieldsV1: Json;
}

export interface FieldConflict {
  readonly manager: string;
  /** `.spec.hard.cpu`, as Kubernetes prints a field in a conflict. */
  readonly field: string;
}

const key = (path: Path) => JSON.stringify(path);

/** The leaf fields an object sets (lists and empty objects are leaves). */
export function leafPaths(object: Json): Path[] {
  const out: Path[] = [];
  const walk = (value: unknown, path: string[]) => {
    if (isRecord(value) && Object.keys(value).length > 0) {
      for (const [k, v] of Object.entries(value)) walk(v, [...path, k]);
    } else out.push(path);
  };
  for (const [k, v] of Object.entries(object)) {
    if (k === "apiVersion" || k === "kind" || k === "status") continue;
    if (k === "metadata") {
      if (!isRecord(v)) continue;
      for (const tracked of ["labels", "annotations"]) if (isRecord(v[tracked])) for (const [lk, lv] of Object.entries(v[tracked])) walk(lv, ["metadata", tracked, lk]);
      continue;
    }
    walk(v, [k]);
  }
  return out;
}

function valueAt(object: unknown, path: Path): unknown {
  let at = object;
  for (const step of path) at = isRecord(at) ? at[step] : undefined;
  return at;
}

function removeAt(object: Json, path: Path): void {
  let at: unknown = object;
  for (const step of path.slice(0, -1)) at = isRecord(at) ? at[step] : undefined;
  if (isRecord(at)) delete at[path[path.length - 1]!];
}

export function toFieldsV1(paths: readonly Path[]): Json {
  const root: Json = {};
  for (const path of paths) {
    let at = root;
    for (const step of path) at = (at[`f:${step}`] ??= {}) as Json;
  }
  return root;
}

export function fromFieldsV1(fields: unknown): Path[] {
  const out: Path[] = [];
  const walk = (node: unknown, path: string[]) => {
    const children = isRecord(node) ? Object.keys(node).filter((k) => k.startsWith("f:")) : [];
    if (children.length === 0) {
      if (path.length > 0) out.push(path);
      return;
    }
    for (const child of children) walk((node as Json)[child], [...path, child.slice(2)]);
  };
  walk(fields, []);
  return out;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const timestamp = () => new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
const entriesOf = (object: Json | undefined): ManagedFieldsEntry[] => (isRecord(object?.metadata) && Array.isArray(object.metadata.managedFields) ? (object.metadata.managedFields as ManagedFieldsEntry[]) : []);

/** Deep merge of an applied configuration into the live object: objects merge, lists and scalars are replaced. */
function merge(live: unknown, config: unknown): unknown {
  if (!isRecord(config) || !isRecord(live)) return structuredClone(config);
  const out: Json = { ...live };
  for (const [k, v] of Object.entries(config)) out[k] = merge(out[k], v);
  return out;
}

function withEntry(entries: ManagedFieldsEntry[], manager: string, operation: "Apply" | "Update", apiVersion: string, paths: readonly Path[]): ManagedFieldsEntry[] {
  const rest = entries.filter((e) => !(e.manager === manager && e.operation === operation));
  if (paths.length === 0) return rest;
  return [...rest, { manager, operation, apiVersion, time: timestamp(), fieldsType: "FieldsV1", fieldsV1: toFieldsV1(paths) }];
}

function without(entries: ManagedFieldsEntry[], taken: ReadonlySet<string>, except: (e: ManagedFieldsEntry) => boolean): ManagedFieldsEntry[] {
  return entries.flatMap((e) => {
    if (except(e)) return [e];
    const kept = fromFieldsV1(e.fieldsV1).filter((p) => !taken.has(key(p)));
    return kept.length === 0 ? [] : [{ ...e, fieldsV1: toFieldsV1(kept) }];
  });
}

/**
 * Server-side apply of `config` by `manager` onto `live` (undefined: the object is new):
 * the object to store, or the conflicts that refuse it.
 */
export function applyWithOwnership(live: Json | undefined, config: Json, manager: string, apiVersion: string, force: boolean): { object: Json } | { conflicts: FieldConflict[] } {
  const entries = entriesOf(live);
  const applied = leafPaths(config);
  const appliedKeys = new Set(applied.map(key));
  const conflicts: FieldConflict[] = [];
  const taken = new Set<string>();
  for (const entry of entries) {
    if (entry.manager === manager) continue;
    for (const path of fromFieldsV1(entry.fieldsV1)) {
      if (!appliedKeys.has(key(path)) || same(valueAt(live, path), valueAt(config, path))) continue;
      conflicts.push({ manager: entry.manager, field: `.${path.join(".")}` });
      taken.add(key(path));
    }
  }
  if (conflicts.length > 0 && !force) return { conflicts };
  const { metadata: configMeta, ...configRest } = config;
  const liveMeta = isRecord(live?.metadata) ? live.metadata : {};
  const meta = isRecord(configMeta) ? configMeta : {};
  const object = merge(structuredClone(live ?? {}), configRest) as Json;
  object.metadata = { ...liveMeta, ...(isRecord(meta.labels) ? { labels: { ...(isRecord(liveMeta.labels) ? liveMeta.labels : {}), ...meta.labels } } : {}), ...(isRecord(meta.annotations) ? { annotations: { ...(isRecord(liveMeta.annotations) ? liveMeta.annotations : {}), ...meta.annotations } } : {}), name: meta.name ?? liveMeta.name, ...(meta.namespace === undefined ? {} : { namespace: meta.namespace }) };
  // What this manager applied before and applies no more is removed, unless another manager owns it.
  const before = entries.find((e) => e.manager === manager && e.operation === "Apply");
  const othersOwn = new Set(entries.filter((e) => e.manager !== manager).flatMap((e) => fromFieldsV1(e.fieldsV1).map(key)));
  for (const path of before === undefined ? [] : fromFieldsV1(before.fieldsV1)) {
    if (!appliedKeys.has(key(path)) && !othersOwn.has(key(path))) removeAt(object, path);
  }
  const next = withEntry(without(entries, taken, (e) => e.manager === manager), manager, "Apply", apiVersion, applied);
  (object.metadata as Json).managedFields = next;
  return { object };
}

/** An update (create, PUT, patch) by `manager`: the managedFields of `after`, every field it changed now its own. */
export function updateOwnership(before: Json | undefined, after: Json, manager: string, apiVersion: string): ManagedFieldsEntry[] {
  const entries = entriesOf(before);
  const afterPaths = leafPaths(after);
  const afterKeys = new Set(afterPaths.map(key));
  const changed = afterPaths.filter((p) => before === undefined || !same(valueAt(before, p), valueAt(after, p)));
  const gone = new Set((before === undefined ? [] : leafPaths(before)).filter((p) => !afterKeys.has(key(p))).map(key));
  const taken = new Set([...changed.map(key), ...gone]);
  const rest = without(entries, taken, () => false);
  const mine = rest.find((e) => e.manager === manager && e.operation === "Update");
  const owned = [...(mine === undefined ? [] : fromFieldsV1(mine.fieldsV1)), ...changed];
  const unique = [...new Map(owned.map((p) => [key(p), p])).values()];
  return withEntry(rest, manager, "Update", apiVersion, unique);
}

/** The 409 Kubernetes answers a conflicting apply with. */
export function conflictStatus(conflicts: readonly FieldConflict[], apiVersion: string): Json {
  const lines = conflicts.map((c) => `conflict with "${c.manager}" using ${apiVersion}: ${c.field}`);
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message: `Apply failed with ${conflicts.length} conflict${conflicts.length === 1 ? "" : "s"}: ${lines.join("\n")}`,
    reason: "Conflict",
    details: { causes: conflicts.map((c) => ({ reason: "FieldManagerConflict", message: `conflict with "${c.manager}" using ${apiVersion}`, field: c.field })) },
    code: 409,
  };
}

/** The manager of an update that names none: as the API server derives it from the client's User-Agent (`kubectl-edit`). */
export function defaultManager(userAgent: string | undefined): string {
  const agent = (userAgent ?? "").split("/")[0]!.trim();
  return agent === "" ? "unknown" : agent.slice(0, 128);
}
