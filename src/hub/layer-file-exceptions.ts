/**
 * Exceptions a global admin wrote in a layer file (not requested through the hub): shown
 * beside requests, approved until they expire, and at their expiry logged once and taken
 * out of the next bundles.
 */
import type { ExceptionView } from "../api/exceptions.js";
import type { Actor } from "../governance/index.js";
import type { AuditContext } from "./audit-log.js";
import type { Changes } from "./change.js";
import { lapsedKey, type Federation } from "./federation.js";
import { conflict } from "./status.js";

/** Who may see a request: the whole federation, or one region (a region operator's) and what they asked or must answer. */
export type Visibility = { readonly all: true } | { readonly all: false; readonly region: string; readonly actor: Actor };

/** Exceptions written in layer files that have expired: logged once each, and out of the next bundles. */
export async function lapseLayerFileExceptions(federation: Federation, changes: Changes, now: Date, context: () => AuditContext): Promise<void> {
  for (const record of federation.layers.values()) {
    for (const exception of record.layer?.exceptions ?? []) {
      const expiresAt = exception.document.spec.expiresAt;
      if (Date.parse(expiresAt) > now.getTime()) continue;
      const key = lapsedKey(record.id, exception.document.metadata.name, expiresAt);
      if (federation.granted.lapsed.has(key)) continue;
      const ctx = context();
      await changes
        .apply(
          {
            kind: "grants",
            layers: [record.id],
            grant: (current) => ({ ...current, lapsed: new Set([...current.lapsed, key]) }),
            write: async (tx) => {
              const inserted = await tx.query("INSERT INTO exception_expiries (layer_id, name, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING name", [
                record.id,
                exception.document.metadata.name,
                new Date(expiresAt),
              ]);
              if (inserted.length === 0) throw conflict("logged already");
              const cluster = record.id.startsWith("cluster/") ? record.id.slice("cluster/".length) : null;
              const region = record.id.startsWith("region/") ? record.id.slice("region/".length) : cluster === null ? null : (federation.clusters.get(cluster)?.region ?? null);
              return [
                {
                  kind: "exception.expired",
                  actor: ctx.actor,
                  cluster,
                  region,
                  correlationId: ctx.correlationId,
                  data: { layer: record.id, version: record.version, exception: exception.document.metadata.name, policy: exception.document.spec.policy, expiresAt, source: "layer file" },
                },
              ];
            },
          },
          "hub",
          ctx,
        )
        .catch(() => undefined); // another hub logged it first
    }
  }
}

/** The exceptions global admins wrote in layer files, as views: approved until they expire. */
export function layerFileExceptionViews(federation: Federation, visibility: Visibility, now: number): ExceptionView[] {
  const views: ExceptionView[] = [];
  for (const record of [...federation.layers.values()].sort((a, b) => a.id.localeCompare(b.id))) {
    const region = record.id.startsWith("region/") ? record.id.slice("region/".length) : record.layer?.region ?? null;
    if (!visibility.all && region !== visibility.region) continue;
    for (const { document } of record.layer?.exceptions ?? []) {
      const { approvedBy, ...spec } = document.spec;
      views.push({
        id: `${record.id}/${document.metadata.name}`,
        name: document.metadata.name,
        policy: spec.policy,
        layer: record.id,
        team: document.metadata.owner ?? record.layer!.owners[0] ?? "",
        source: "layer file",
        state: Date.parse(spec.expiresAt) > now ? "approved" : "expired",
        escalated: false,
        spec,
        region,
        // Who wrote it is in the layer's history (polity history), not guessed from its last version's author.
        requestedBy: `(layer file of ${record.id})`,
        requestedAt: record.createdAt,
        escalateAt: null,
        approvedBy: `(the file says ${approvedBy ?? "nobody"}; polity history ${record.id} shows who applied it)`,
        approvedAt: null,
        decidedBy: null,
        decidedAt: null,
        reason: null,
        expiresAt: spec.expiresAt,
      });
    }
  }
  return views;
}
