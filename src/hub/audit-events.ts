/**
 * The audit events of the hub's changes, built as pure functions of what changed (the
 * routes and services record them in the change's own transaction).
 */
import { canonicalJson, contentHash, type Json } from "../canonical/index.js";
import type { AuditEvent } from "../audit/entry.js";
import type { Layer } from "../policy/layer.js";
import type { AuditContext } from "./audit-log.js";
import type { LayerRecord, LayerWrite } from "./federation.js";
import type { Principal } from "./principal.js";

/**
 * How entries name a principal: `user:<subject>` for a token that names who holds it (the
 * authenticated subject, never one a request claims), `user:<token name>` for one that does
 * not, `cluster:<name>`, `anonymous`.
 */
export function actorOf(principal: Principal): string {
  switch (principal.kind) {
    case "token":
      return `user:${principal.subject ?? principal.name}`;
    case "cluster":
      return `cluster:${principal.cluster}`;
    case "regional-hub":
      return `regional-hub:${principal.region}`;
    case "anonymous":
      return "anonymous";
  }
}

const CORRELATION = /^[A-Za-z0-9._:-]{1,128}$/;

/** A caller's X-Correlation-Id when it is well-formed; otherwise undefined (and a new one is made). */
export function requestedCorrelationId(header: string | string[] | undefined): string | undefined {
  return typeof header === "string" && CORRELATION.test(header) ? header : undefined;
}

function documentsOf(layer: Layer | undefined): Map<string, string> {
  const docs = new Map<string, string>();
  for (const p of layer?.policies ?? []) docs.set(`Policy/${p.document.metadata.name}`, canonicalJson(p.document));
  for (const e of layer?.exceptions ?? []) docs.set(`Exception/${e.document.metadata.name}`, canonicalJson(e.document));
  return docs;
}

/** What changed in a layer, document by document; its hash is the entry's `diffHash`. */
export function layerDiff(before: Layer | undefined, after: Layer | undefined): { added: string[]; removed: string[]; changed: string[] } {
  const a = documentsOf(before);
  const b = documentsOf(after);
  return {
    added: [...b.keys()].filter((k) => !a.has(k)).sort(),
    removed: [...a.keys()].filter((k) => !b.has(k)).sort(),
    changed: [...b.keys()].filter((k) => a.has(k) && a.get(k) !== b.get(k)).sort(),
  };
}

function exceptionData(layer: Layer, name: string): { [key: string]: Json } {
  const spec = layer.exceptions.find((e) => e.document.metadata.name === name)!.document.spec;
  return JSON.parse(canonicalJson({ name, ...spec })) as { [key: string]: Json };
}

/**
 * The events of a committed layer change: the change itself (with the diff and its hash)
 * and each exception it grants, changes or withdraws. `region` is where the layer
 * applies (null for the global layer).
 */
export function layerChangeEvents(change: LayerWrite, before: LayerRecord | undefined, region: string | null, context: AuditContext): AuditEvent[] {
  const cluster = change.id.startsWith("cluster/") ? change.id.slice("cluster/".length) : null;
  const diff = layerDiff(before?.layer, change.layer);
  const common = { actor: context.actor, cluster, region, correlationId: context.correlationId };
  const version = change.baseVersion + 1;
  const diffDocument = { layer: change.id, fromVersion: change.baseVersion, fromHash: before?.contentHash ?? null, toVersion: version, toHash: change.contentHash, ...diff };
  const events: AuditEvent[] = [
    change.layer === undefined
      ? { kind: "layer.deleted", ...common, data: { layer: change.id, version, baseVersion: change.baseVersion } }
      : {
          kind: "layer.changed",
          ...common,
          data: { layer: change.id, version, baseVersion: change.baseVersion, contentHash: change.contentHash, diff: diffDocument, diffHash: contentHash(canonicalJson(diffDocument)) },
        },
  ];
  const exception = (key: string) => key.slice("Exception/".length);
  for (const key of diff.added.filter((k) => k.startsWith("Exception/"))) {
    events.push({ kind: "exception.granted", ...common, data: { layer: change.id, version, exception: exceptionData(change.layer!, exception(key)) } });
  }
  for (const key of diff.changed.filter((k) => k.startsWith("Exception/"))) {
    events.push({
      kind: "exception.changed",
      ...common,
      data: { layer: change.id, version, before: exceptionData(before!.layer!, exception(key)), after: exceptionData(change.layer!, exception(key)) },
    });
  }
  for (const key of diff.removed.filter((k) => k.startsWith("Exception/"))) {
    events.push({ kind: "exception.withdrawn", ...common, data: { layer: change.id, version, exception: exceptionData(before!.layer!, exception(key)) } });
  }
  return events;
}
