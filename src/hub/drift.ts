/**
 * Drift at the hub: the events agents send (POST /v1/agent/drift), kept per cluster (the
 * newest DRIFT_EVENTS_PER_CLUSTER), totalled per cluster for the compliance matrix, and
 * each written to the audit log (`agent.drift`) in the transaction that stores it. A
 * well-behaved agent bounds them (per object at most five re-applies a minute, then one
 * `fight` event for the rest of the minute); the hub does not rely on it: each cluster may
 * add DRIFT_AUDIT_BUDGET entries a minute, and a batch's events past that are counted in
 * one entry (`aggregated`, with counts per outcome). Events are listed in the order the
 * hub received them: an agent's `at` is its clock (kept clamped, src/api/fields.ts). A
 * batch is taken once by its id. This module owns `drift_events`, `drift_totals` and
 * `drift_batches`.
 */
import type { DriftBatch, DriftTotals, StoredDriftEvent } from "../api/drift.js";
import { agentTime } from "../api/fields.js";
import type { AuditEvent } from "../audit/entry.js";
import type { Database } from "../store/database.js";
import { newCorrelationId, type AuditLog } from "./audit-log.js";

export const DRIFT_EVENTS_PER_CLUSTER = 1000;
/** Audit entries of one cluster's drift a minute, events one by one; the rest are counted. */
export const DRIFT_AUDIT_BUDGET = 100;
const AUDIT_WINDOW_MS = 60_000;
/** How long a batch id is remembered (a batch is resent within seconds, not days). */
const BATCH_MEMORY_MS = 24 * 3600 * 1000;

interface ClusterRef {
  readonly name: string;
  readonly region: string;
}

type EventRow = {
  cluster: string;
  id: string;
  at: Date;
  received_at: Date;
  api_version: string;
  kind: string;
  namespace: string | null;
  name: string;
  policy: string | null;
  missing: boolean;
  fields: string[];
  omitted_fields: number;
  remediation: "enforce" | "inform";
  outcome: StoredDriftEvent["outcome"];
  reapplies: number;
  other_manager: string | null;
  reason: string | null;
};

const EMPTY: DriftTotals = { remediated: 0, reported: 0, fights: 0, failed: 0, dropped: 0, lastAt: null };

export class Drift {
  constructor(
    private readonly db: Database,
    private readonly audit: AuditLog,
    private readonly now: () => Date,
  ) {}

  /** Stores a batch once (by its id): its events, the cluster's totals, an audit entry per event. Throws 503 while the audit log is too far behind. */
  async record(cluster: string, region: string, batch: DriftBatch): Promise<{ stored: number; duplicate: boolean }> {
    if (batch.events.length > 0) await this.audit.admit(Math.min(batch.events.length, DRIFT_AUDIT_BUDGET + 1));
    return this.db.transaction(async (tx) => {
      const at = this.now();
      const fresh = await tx.query("INSERT INTO drift_batches (cluster, batch, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING batch", [cluster, batch.batch, at]);
      if (fresh.length === 0) return { stored: 0, duplicate: true };
      await tx.query("DELETE FROM drift_batches WHERE cluster = $1 AND received_at < $2", [cluster, new Date(at.getTime() - BATCH_MEMORY_MS)]);
      const rows = batch.events.map((e) => ({
        id: e.id,
        at: agentTime(e.at, at),
        api_version: e.object.apiVersion,
        kind: e.object.kind,
        namespace: e.object.namespace ?? null,
        name: e.object.name,
        policy: e.policy,
        missing: e.missing,
        fields: e.fields,
        omitted_fields: e.omittedFields,
        remediation: e.remediation,
        outcome: e.outcome,
        reapplies: e.reapplies,
        other_manager: e.otherManager ?? null,
        reason: e.reason ?? null,
      }));
      const inserted =
        rows.length === 0
          ? []
          : await tx.query<{ id: string }>(
              `INSERT INTO drift_events (cluster, id, at, received_at, api_version, kind, namespace, name, policy, missing, fields, omitted_fields, remediation, outcome, reapplies, other_manager, reason)
               SELECT $1, x.id, x.at, $2, x.api_version, x.kind, x.namespace, x.name, x.policy, x.missing, x.fields, x.omitted_fields, x.remediation, x.outcome, x.reapplies, x.other_manager, x.reason
               FROM jsonb_to_recordset($3::jsonb) AS x(id text, at timestamptz, api_version text, kind text, namespace text, name text, policy text, missing boolean, fields jsonb,
                 omitted_fields integer, remediation text, outcome text, reapplies integer, other_manager text, reason text)
               ON CONFLICT DO NOTHING RETURNING id`,
              [cluster, at, JSON.stringify(rows)],
            );
      const stored = new Set(inserted.map((r) => r.id));
      const events = batch.events.filter((e) => stored.has(e.id));
      const n = (outcome: string) => events.filter((e) => e.outcome === outcome).length;
      const lastAt = events.length === 0 ? null : new Date(Math.max(...events.map((e) => Date.parse(agentTime(e.at, at)))));
      await tx.query(
        `INSERT INTO drift_totals (cluster, remediated, reported, fights, failed, dropped, last_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (cluster) DO UPDATE SET remediated = drift_totals.remediated + EXCLUDED.remediated, reported = drift_totals.reported + EXCLUDED.reported,
           fights = drift_totals.fights + EXCLUDED.fights, failed = drift_totals.failed + EXCLUDED.failed, dropped = drift_totals.dropped + EXCLUDED.dropped,
           last_at = GREATEST(drift_totals.last_at, EXCLUDED.last_at)`,
        [cluster, n("remediated"), n("reported"), n("fight"), n("failed"), batch.dropped, lastAt],
      );
      if (events.length > 0) {
        await tx.query(
          `DELETE FROM drift_events d USING (
             SELECT id FROM (SELECT id, row_number() OVER (ORDER BY received_at DESC, at DESC, id) AS n FROM drift_events WHERE cluster = $1) ranked WHERE n > $2
           ) old WHERE d.cluster = $1 AND d.id = old.id`,
          [cluster, DRIFT_EVENTS_PER_CLUSTER],
        );
      }
      // One entry per event within the cluster's budget for the minute; one entry counting the rest.
      const [budget] = await tx.query<{ audit_window: Date | null; audit_spent: number }>("SELECT audit_window, audit_spent FROM drift_totals WHERE cluster = $1 FOR UPDATE", [cluster]);
      const newWindow = budget?.audit_window == null || at.getTime() - new Date(budget.audit_window).getTime() >= AUDIT_WINDOW_MS;
      const spent = newWindow ? 0 : budget!.audit_spent;
      const oneByOne = events.slice(0, Math.max(0, DRIFT_AUDIT_BUDGET - spent));
      const rest = events.slice(oneByOne.length);
      await tx.query("UPDATE drift_totals SET audit_window = $2, audit_spent = $3 WHERE cluster = $1", [cluster, newWindow ? at : budget!.audit_window, spent + oneByOne.length]);
      const correlationId = newCorrelationId();
      const entries: AuditEvent[] = oneByOne.map((e) => ({
        kind: "agent.drift",
        actor: `cluster:${cluster}`,
        cluster,
        region,
        correlationId,
        data: {
          batch: batch.batch,
          id: e.id,
          at: agentTime(e.at, at),
          object: { ...e.object },
          policy: e.policy,
          missing: e.missing,
          fields: [...e.fields],
          omittedFields: e.omittedFields,
          remediation: e.remediation,
          outcome: e.outcome,
          reapplies: e.reapplies,
          otherManager: e.otherManager ?? null,
          reason: e.reason ?? null,
        },
      }));
      if (rest.length > 0) {
        const outcomes = Object.fromEntries(["remediated", "reported", "fight", "failed"].map((o) => [o, rest.filter((e) => e.outcome === o).length]));
        entries.push({ kind: "agent.drift", actor: `cluster:${cluster}`, cluster, region, correlationId, data: { batch: batch.batch, aggregated: rest.length, outcomes, budget: DRIFT_AUDIT_BUDGET } });
      }
      await this.audit.record(tx, entries);
      return { stored: events.length, duplicate: false };
    });
  }

  /** The events these clusters sent last, newest first by when the hub received them. */
  async events(clusters: readonly ClusterRef[], limit: number): Promise<StoredDriftEvent[]> {
    const regions = new Map(clusters.map((c) => [c.name, c.region]));
    const rows = await this.db.query<EventRow>("SELECT * FROM drift_events WHERE cluster = ANY($1) ORDER BY received_at DESC, at DESC, cluster, id LIMIT $2", [[...regions.keys()], limit]);
    return rows.map((r) => ({
      cluster: r.cluster,
      region: regions.get(r.cluster)!,
      receivedAt: new Date(r.received_at).toISOString(),
      id: r.id,
      at: new Date(r.at).toISOString(),
      object: { apiVersion: r.api_version, kind: r.kind, ...(r.namespace === null ? {} : { namespace: r.namespace }), name: r.name },
      policy: r.policy,
      missing: r.missing,
      fields: r.fields,
      omittedFields: r.omitted_fields,
      remediation: r.remediation,
      outcome: r.outcome,
      reapplies: r.reapplies,
      ...(r.other_manager === null ? {} : { otherManager: r.other_manager }),
      ...(r.reason === null ? {} : { reason: r.reason }),
    }));
  }

  /** Each cluster's totals (zeros for a cluster that reported none). */
  async totals(clusters: readonly string[]): Promise<Map<string, DriftTotals>> {
    const rows = await this.db.query<{ cluster: string; remediated: string; reported: string; fights: string; failed: string; dropped: string; last_at: Date | null }>(
      "SELECT cluster, remediated::text, reported::text, fights::text, failed::text, dropped::text, last_at FROM drift_totals WHERE cluster = ANY($1)",
      [clusters],
    );
    const found = new Map(
      rows.map((r) => [
        r.cluster,
        { remediated: Number(r.remediated), reported: Number(r.reported), fights: Number(r.fights), failed: Number(r.failed), dropped: Number(r.dropped), lastAt: r.last_at === null ? null : new Date(r.last_at).toISOString() },
      ]),
    );
    return new Map(clusters.map((c) => [c, found.get(c) ?? EMPTY]));
  }
}
