/**
 * What the hub knows of each cluster's intents beyond its policies: the facts its agent
 * reports, and the result of the agent's last apply of its bundle's manifests.
 *
 * Every report is kept in `facts_reports` (the latest, shown by `polity cluster status`).
 * A report whose EFFECTIVE facts (facts.ts: the node count is not one) differ from the
 * signed ones is signed only when it brings no new problem and drops no object
 * (intents.ts, `withheldProblems`): facts come from the cluster, where a kubelet labels its
 * own node's zone, so they must not remove enforcement. Such facts are written to
 * `clusters.reported_facts` in a change of the federation's generation, so that every hub
 * process reloads them, and the cluster's bundle is signed again; others are withheld (the
 * last good facts stay signed), shown, and audited once per distinct facts. A report that
 * changes nothing effective bumps no generation and is not audited.
 *
 * An apply that failed, was refused, or rolled back is audited once per bundle version,
 * manifests hash, outcome and failed object (not per report: its time is the agent's), in
 * an entry of bounded size. This module owns `apply_status` and `facts_reports`.
 */
import { agentTime } from "../api/fields.js";
import type { ApplyReport, IntentsStatus, ReportedFacts } from "../api/intents.js";
import type { AuditEvent } from "../audit/entry.js";
import { canonicalJson } from "../canonical/index.js";
import type { Database, Queryable } from "../store/database.js";
import { newCorrelationId, type AuditLog } from "./audit-log.js";
import type { BundleService } from "./bundles.js";
import type { Federation } from "./federation.js";
import { effectiveFacts } from "./facts.js";
import { intentProblems, withheldProblems } from "./intents.js";

/** How much of a failed apply an audit entry keeps: the first objects of each list (with how many more), each text clipped. */
const AUDITED_LIST = 10;
const AUDITED_TEXT = 300;
const clip = (text: string) => (text.length <= AUDITED_TEXT ? text : `${text.slice(0, AUDITED_TEXT)}… (${text.length - AUDITED_TEXT} more characters)`);

/** What makes a failed apply the same one again: never its time, which the agent chooses. */
const applyKey = (r: ApplyReport) => canonicalJson([r.bundleVersion, r.manifestsHash, r.outcome, r.failed?.object ?? null]);

interface Withheld {
  readonly facts: ReportedFacts;
  readonly reportedAt: string;
  readonly problems: string[];
}

export class ClusterIntents {
  constructor(
    private readonly db: Database,
    private readonly federation: Federation,
    private readonly bundles: BundleService,
    private readonly audit: AuditLog,
    private readonly now: () => Date,
  ) {}

  private async correlationOf(tx: Queryable, cluster: string): Promise<string> {
    const [row] = await tx.query<{ correlation_id: string | null }>("SELECT correlation_id FROM bundles WHERE cluster = $1", [cluster]);
    return row?.correlation_id ?? newCorrelationId();
  }

  /**
   * Keeps what an agent observed of its cluster. `changed`: its effective facts changed and
   * were signed into its bundle; `withheld`: they changed but were not signed (see above).
   */
  async reportFacts(cluster: string, region: string, facts: ReportedFacts): Promise<{ changed: boolean; withheld: boolean }> {
    await this.federation.sync();
    const book = this.federation.facts;
    const current = book.get(cluster);
    const candidate = effectiveFacts(book.declared(cluster), facts)!;
    const key = canonicalJson(candidate);
    const same = key === book.key(cluster);
    let problems: string[] = [];
    if (!same) {
      try {
        problems = withheldProblems(cluster, this.federation.effectiveFor(cluster), current, candidate);
      } catch {
        problems = []; // layers that do not combine get no bundle: there is nothing to drop
      }
    }
    const now = this.now();
    const withheld: Withheld | null = problems.length === 0 ? null : { facts, reportedAt: now.toISOString(), problems };
    await this.db.transaction(async (tx) => {
      const [held] = await tx.query<{ withheld_key: string | null }>("SELECT withheld_key FROM facts_reports WHERE cluster = $1 FOR UPDATE", [cluster]);
      await tx.query(
        `INSERT INTO facts_reports (cluster, facts, reported_at, withheld, withheld_key) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (cluster) DO UPDATE SET facts = EXCLUDED.facts, reported_at = EXCLUDED.reported_at, withheld = EXCLUDED.withheld, withheld_key = EXCLUDED.withheld_key`,
        [cluster, JSON.stringify(facts), now, withheld === null ? null : JSON.stringify(withheld), withheld === null ? null : key],
      );
      if (withheld === null || held?.withheld_key === key) return;
      const data = { before: book.reported(cluster)?.facts ?? null, after: facts, signed: false, problems: problems.slice(0, AUDITED_LIST).map(clip), problemsOmitted: Math.max(0, problems.length - AUDITED_LIST) };
      await this.audit.record(tx, [{ kind: "cluster.facts-reported", actor: `cluster:${cluster}`, cluster, region, correlationId: newCorrelationId(), data }]);
    });
    if (same || withheld !== null) return { changed: false, withheld: withheld !== null };
    await this.sign(cluster, region, facts, now, `cluster:${cluster}`);
    return { changed: true, withheld: false };
  }

  /** Signs a cluster's withheld facts at an operator's word (`actor`); false when none are withheld. */
  async acceptFacts(cluster: string, region: string, actor: string): Promise<boolean> {
    await this.federation.sync();
    const [row] = await this.db.query<{ facts: ReportedFacts; reported_at: Date; withheld: Withheld | null }>("SELECT facts, reported_at, withheld FROM facts_reports WHERE cluster = $1", [cluster]);
    if (row?.withheld == null) return false;
    await this.sign(cluster, region, row.withheld.facts, new Date(row.reported_at), actor);
    return true;
  }

  /** Writes reported facts as the cluster's signed ones (a change of the generation: every hub reloads them) and signs its bundle again. */
  private async sign(cluster: string, region: string, facts: ReportedFacts, reportedAt: Date, actor: string): Promise<void> {
    const before = this.federation.facts.reported(cluster)?.facts ?? null;
    await this.federation.transaction(undefined, async (tx) => {
      await tx.query("UPDATE clusters SET reported_facts = $2, facts_reported_at = $3 WHERE name = $1", [cluster, JSON.stringify(facts), reportedAt]);
      await tx.query("UPDATE facts_reports SET withheld = NULL, withheld_key = NULL WHERE cluster = $1", [cluster]);
      await this.audit.record(tx, [{ kind: "cluster.facts-reported", actor, cluster, region, correlationId: newCorrelationId(), data: { before, after: facts, signed: true } }]);
    });
    await this.bundles.refresh([cluster]);
  }

  /** Keeps the result of an agent's apply; a failure, refusal or rollback new to the hub is audited. */
  async recordApply(cluster: string, region: string, report: ApplyReport): Promise<void> {
    await this.db.transaction(async (tx) => {
      const [held] = await tx.query<{ bundle_version: string; outcome: string; report: ApplyReport }>("SELECT bundle_version::text AS bundle_version, outcome, report FROM apply_status WHERE cluster = $1 FOR UPDATE", [cluster]);
      await tx.query(
        `INSERT INTO apply_status (cluster, reported_at, bundle_version, outcome, report) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (cluster) DO UPDATE SET reported_at = EXCLUDED.reported_at, bundle_version = EXCLUDED.bundle_version, outcome = EXCLUDED.outcome, report = EXCLUDED.report`,
        [cluster, this.now(), report.bundleVersion, report.outcome, JSON.stringify({ ...report, at: agentTime(report.at, this.now()) })],
      );
      const bad = report.outcome === "failed" || report.outcome === "refused" || report.rolledBack;
      const repeat = held !== undefined && applyKey(held.report) === applyKey(report);
      if (!bad || repeat) return;
      const event: AuditEvent = {
        kind: "intents.apply-failed",
        actor: `cluster:${cluster}`,
        cluster,
        region,
        correlationId: await this.correlationOf(tx, cluster),
        data: {
          bundleVersion: report.bundleVersion,
          manifestsHash: report.manifestsHash,
          outcome: report.outcome,
          failed: report.failed === null ? null : { object: clip(report.failed.object), reason: clip(report.failed.reason) },
          rolledBack: report.rolledBack,
          rollbackFailures: report.rollbackFailures.slice(0, AUDITED_LIST).map((f) => ({ object: clip(f.object), reason: clip(f.reason) })),
          rollbackFailuresOmitted: Math.max(0, report.rollbackFailures.length - AUDITED_LIST),
          conflicts: report.conflicts.slice(0, AUDITED_LIST).map((c) => ({ object: clip(c.object), field: clip(c.field), manager: clip(c.manager) })),
          conflictsOmitted: Math.max(0, report.conflicts.length - AUDITED_LIST),
          message: report.message === null ? null : clip(report.message),
        },
      };
      await this.audit.record(tx, [event]);
    });
  }

  /** A cluster's facts (declared, reported, effective), its last apply, and what its facts cannot hold. */
  async status(cluster: string): Promise<IntentsStatus> {
    const [row] = await this.db.query<{ reported_at: Date; report: ApplyReport }>("SELECT reported_at, report FROM apply_status WHERE cluster = $1", [cluster]);
    const [latest] = await this.db.query<{ facts: ReportedFacts; reported_at: Date; withheld: Withheld | null }>("SELECT facts, reported_at, withheld FROM facts_reports WHERE cluster = $1", [cluster]);
    const facts = this.federation.facts.get(cluster);
    const reported = this.federation.facts.reported(cluster);
    let problems: string[] = [];
    if (facts !== undefined) {
      try {
        problems = intentProblems(cluster, this.federation.effectiveFor(cluster), facts).map((p) => p.message);
      } catch (error) {
        problems = [`its layers do not combine: ${error instanceof Error ? error.message : String(error)}`];
      }
    }
    if (latest?.withheld != null) problems = [...problems, ...latest.withheld.problems];
    const envelope = this.bundles.signedMetadata(cluster);
    return {
      cluster,
      facts: {
        declared: this.federation.facts.declared(cluster) ?? null,
        reported: latest !== undefined ? { ...latest.facts, reportedAt: new Date(latest.reported_at).toISOString() } : reported === undefined ? null : { ...reported.facts, reportedAt: reported.at },
        effective: facts ?? null,
        withheld: latest?.withheld ?? null,
      },
      bundle: { version: envelope?.version ?? null, manifestsHash: envelope?.manifestsHash ?? null },
      lastApply: row === undefined ? null : { ...row.report, reportedAt: new Date(row.reported_at).toISOString() },
      problems,
    };
  }

  /** The last apply of each of these clusters (for the compliance summary). */
  async lastApplies(clusters: readonly string[]): Promise<Map<string, ApplyReport>> {
    const rows = await this.db.query<{ cluster: string; report: ApplyReport }>("SELECT cluster, report FROM apply_status WHERE cluster = ANY($1)", [clusters]);
    return new Map(rows.map((r) => [r.cluster, r.report]));
  }
}
