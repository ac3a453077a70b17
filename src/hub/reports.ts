/**
 * What agents report: their status (what they enforce, how fresh, how fast) and their
 * decision logs. A status report's first mention of a bundle version is its
 * acknowledgement, and a batch's denials go into the audit log, each in the transaction
 * that stores the report. This module owns `agent_status`, `decision_batches` and
 * `decision_logs`.
 */
import type { DecisionBatch, DecisionBatchStored, StatusReport } from "../api/agent.js";
import type { Json } from "../canonical/index.js";
import type { AuditEvent } from "../audit/entry.js";
import type { Database } from "../store/database.js";
import { newCorrelationId, type AuditLog } from "./audit-log.js";
import { badRequest } from "./status.js";

export interface AgentStatus {
  readonly cluster: string;
  readonly reportedAt: Date;
  readonly status: { readonly bundleVersion?: number | null; readonly bundleHash?: unknown; readonly stale?: unknown };
}

/** Denials per audit entry: a burst becomes several entries of bounded size. */
const DENIALS_PER_ENTRY = 500;

const text = (value: unknown, max = 253): string | null => (typeof value === "string" ? value.slice(0, max) : null);

/**
 * The denials of a decision-log batch, as the audit log keeps them: who asked for what,
 * and which policies and rules said no. Not the messages: a message may quote the object,
 * and the log keeps no workload data.
 */
function denialsOf(entries: readonly Readonly<Record<string, unknown>>[]): { [key: string]: Json }[] {
  const out: { [key: string]: Json }[] = [];
  for (const e of entries) {
    if (e.allowed !== false) continue;
    const violations: unknown[] = Array.isArray(e.violations) ? e.violations : [];
    out.push({
      time: text(e.time, 40),
      uid: text(e.uid, 128),
      operation: text(e.operation, 16),
      kind: text(e.kind),
      namespace: text(e.namespace),
      name: text(e.name),
      user: text(e.user),
      bundleVersion: typeof e.bundleVersion === "number" ? e.bundleVersion : null,
      // Whether the agent authenticated the caller (the API server): only those raise anomalies.
      authenticated: e.authenticated === true,
      violations: violations.slice(0, 64).map((v) => {
        const r: Readonly<Record<string, unknown>> = typeof v === "object" && v !== null ? Object.fromEntries(Object.entries(v)) : {};
        return { policy: text(r.policy), rule: text(r.rule), enforcement: text(r.enforcement, 16) };
      }),
    });
  }
  return out;
}

/**
 * JSON as PostgreSQL's jsonb can hold it: U+0000 in a value becomes U+FFFD; a field name
 * holding U+0000 is refused (400, naming where), since renaming a field would change what
 * was reported.
 */
function storable(value: unknown, what: string): string {
  if (hasNulFieldName(value)) throw badRequest(`${what} has a field name with a NUL character (U+0000), which cannot be stored`);
  return JSON.stringify(value, (_key, inner: unknown) => (typeof inner === "string" ? inner.replaceAll("\u0000", "\ufffd") : inner));
}

function hasNulFieldName(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasNulFieldName);
  if (typeof value !== "object" || value === null) return false;
  return Object.entries(value).some(([key, inner]) => key.includes("\u0000") || hasNulFieldName(inner));
}

export class Reports {
  constructor(
    private readonly db: Database,
    private readonly audit: AuditLog,
    private readonly now: () => Date,
  ) {}

  /**
   * Keeps an agent's latest status. A report of the bundle the hub published for this
   * cluster (its version and policy-set hash) is that bundle's acknowledgement, logged once:
   * a version or hash the hub never published for it acknowledges nothing.
   */
  async recordStatus(cluster: string, region: string, report: StatusReport): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.query(
        "INSERT INTO agent_status (cluster, reported_at, status) VALUES ($1, $2, $3) ON CONFLICT (cluster) DO UPDATE SET reported_at = EXCLUDED.reported_at, status = EXCLUDED.status",
        [cluster, this.now(), storable(report, "the status report")],
      );
      const hash = report.bundleHash;
      if (report.bundleVersion === null || typeof hash !== "string") return;
      const [acknowledged] = await tx.query<{ correlation_id: string | null }>(
        `INSERT INTO bundle_acknowledgements (cluster, version, target_hash, acknowledged_at)
         SELECT cluster, version, target_hash, $4 FROM bundles WHERE cluster = $1 AND version = $2 AND target_hash = $3
         ON CONFLICT DO NOTHING
         RETURNING (SELECT correlation_id FROM bundles WHERE cluster = $1) AS correlation_id`,
        [cluster, report.bundleVersion, hash, this.now()],
      );
      if (acknowledged === undefined) return;
      // An acknowledgement, joined to the change that made the bundle.
      await this.audit.record(tx, [
        {
          kind: "bundle.acknowledged",
          actor: `cluster:${cluster}`,
          cluster,
          region,
          correlationId: acknowledged.correlation_id ?? newCorrelationId(),
          data: { version: report.bundleVersion, bundleHash: hash },
        },
      ]);
    });
  }

  async statuses(clusters: readonly string[]): Promise<Map<string, AgentStatus>> {
    const rows = await this.db.query<{ cluster: string; reported_at: Date; status: AgentStatus["status"] }>("SELECT cluster, reported_at, status FROM agent_status WHERE cluster = ANY($1)", [clusters]);
    return new Map(rows.map((r) => [r.cluster, { cluster: r.cluster, reportedAt: new Date(r.reported_at), status: r.status }]));
  }

  /** Stores a batch once (by its id), and its denials in the audit log. Throws 503 while the audit log is too far behind. */
  async storeDecisions(cluster: string, region: string, batch: DecisionBatch): Promise<DecisionBatchStored> {
    const { entries, dropped } = batch;
    const serialized = entries.map((entry, i) => storable(entry, `entries[${i}]`));
    const denials = denialsOf(entries);
    // Back-pressure: refused with 503 and Retry-After while the audit log catches up; the agent keeps the batch.
    if (denials.length > 0) await this.audit.admit(Math.ceil(denials.length / DENIALS_PER_ENTRY));
    const stored = await this.db.transaction(async (tx) => {
      const at = this.now();
      const fresh = await tx.query("INSERT INTO decision_batches (cluster, batch, received_at, entries, dropped) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING batch", [
        cluster,
        batch.batch,
        at,
        entries.length,
        dropped,
      ]);
      if (fresh.length === 0) return false;
      for (let i = 0; i < serialized.length; i += 500) {
        const params: unknown[] = [];
        const values = serialized.slice(i, i + 500).map((entry) => {
          params.push(cluster, batch.batch, at, entry);
          const n = params.length;
          return `($${n - 3}, $${n - 2}, $${n - 1}, $${n})`;
        });
        await tx.query(`INSERT INTO decision_logs (cluster, batch, received_at, entry) VALUES ${values.join(", ")}`, params);
      }
      if (denials.length > 0) {
        const [bundle] = await tx.query<{ version: string; correlation_id: string | null }>("SELECT version::text AS version, correlation_id FROM bundles WHERE cluster = $1", [cluster]);
        const versions = new Set(denials.map((d) => d.bundleVersion));
        // Denials made under the current bundle join the change that made it.
        const correlationId = versions.size === 1 && bundle?.correlation_id != null && String([...versions][0]) === bundle.version ? bundle.correlation_id : newCorrelationId();
        const events: AuditEvent[] = [];
        for (let i = 0; i < denials.length; i += DENIALS_PER_ENTRY) {
          const part = denials.slice(i, i + DENIALS_PER_ENTRY);
          const authenticated = part.filter((d) => d.authenticated === true).length;
          events.push({ kind: "agent.denials", actor: `cluster:${cluster}`, cluster, region, correlationId, data: { batch: batch.batch, count: part.length, authenticated, denials: part } });
        }
        await this.audit.record(tx, events);
      }
      return true;
    });
    return { batch: batch.batch, stored: entries.length, duplicate: !stored };
  }

  /** A cluster's decision logs, newest first, and how many its agent dropped in all. */
  async decisions(cluster: string, limit: number): Promise<{ items: unknown[]; dropped: number }> {
    const rows = await this.db.query<{ entry: unknown }>("SELECT entry FROM decision_logs WHERE cluster = $1 ORDER BY id DESC LIMIT $2", [cluster, limit]);
    const [dropped] = await this.db.query<{ dropped: string | null }>("SELECT sum(dropped)::text AS dropped FROM decision_batches WHERE cluster = $1", [cluster]);
    return { items: rows.map((r) => r.entry), dropped: Number(dropped?.dropped ?? 0) };
  }
}
