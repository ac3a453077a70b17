/**
 * What the hub knows of each cluster's intents beyond its policies: the facts its agent
 * reports, and the result of the agent's last apply of its bundle's manifests.
 *
 * Reported facts are written to `clusters.reported_facts` (Federation reads them with the
 * clusters, facts.ts combines them with the declared ones) in a change of the federation's
 * generation, so that every hub process reloads them; the cluster's bundle is then signed
 * again with the new facts and the hash of the manifests they make. A report that says
 * nothing new writes nothing. An apply that failed, was refused, or rolled back is audited
 * once per bundle version and outcome. This module owns `apply_status`.
 */
import type { ApplyReport, IntentsStatus, ReportedFacts } from "../api/intents.js";
import type { AuditEvent } from "../audit/entry.js";
import type { Database, Queryable } from "../store/database.js";
import { newCorrelationId, type AuditLog } from "./audit-log.js";
import type { BundleService } from "./bundles.js";
import type { Federation } from "./federation.js";
import { intentProblems } from "./intents.js";

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

  /** Keeps what an agent observed of its cluster; true when it changed what the hub held (and so the cluster's bundle). */
  async reportFacts(cluster: string, region: string, facts: ReportedFacts): Promise<boolean> {
    await this.federation.sync();
    if (!this.federation.facts.changes(cluster, facts)) return false;
    const before = this.federation.facts.reported(cluster)?.facts ?? null;
    await this.federation.transaction(undefined, async (tx) => {
      await tx.query("UPDATE clusters SET reported_facts = $2, facts_reported_at = $3 WHERE name = $1", [cluster, JSON.stringify(facts), this.now()]);
      await this.audit.record(tx, [{ kind: "cluster.facts-reported", actor: `cluster:${cluster}`, cluster, region, correlationId: newCorrelationId(), data: { before, after: facts } }]);
    });
    await this.bundles.refresh([cluster]);
    return true;
  }

  /** Keeps the result of an agent's apply; a failure, refusal or rollback new to the hub is audited. */
  async recordApply(cluster: string, region: string, report: ApplyReport): Promise<void> {
    await this.db.transaction(async (tx) => {
      const [held] = await tx.query<{ bundle_version: string; outcome: string; report: ApplyReport }>("SELECT bundle_version::text AS bundle_version, outcome, report FROM apply_status WHERE cluster = $1 FOR UPDATE", [cluster]);
      await tx.query(
        `INSERT INTO apply_status (cluster, reported_at, bundle_version, outcome, report) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (cluster) DO UPDATE SET reported_at = EXCLUDED.reported_at, bundle_version = EXCLUDED.bundle_version, outcome = EXCLUDED.outcome, report = EXCLUDED.report`,
        [cluster, this.now(), report.bundleVersion, report.outcome, JSON.stringify(report)],
      );
      const bad = report.outcome === "failed" || report.outcome === "refused" || report.rolledBack;
      const repeat = held !== undefined && Number(held.bundle_version) === report.bundleVersion && held.outcome === report.outcome && held.report.at === report.at;
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
          failed: report.failed,
          rolledBack: report.rolledBack,
          rollbackFailures: report.rollbackFailures,
          conflicts: report.conflicts,
          message: report.message,
        },
      };
      await this.audit.record(tx, [event]);
    });
  }

  /** A cluster's facts (declared, reported, effective), its last apply, and what its facts cannot hold. */
  async status(cluster: string): Promise<IntentsStatus> {
    const [row] = await this.db.query<{ reported_at: Date; report: ApplyReport }>("SELECT reported_at, report FROM apply_status WHERE cluster = $1", [cluster]);
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
    const envelope = this.bundles.signedMetadata(cluster);
    return {
      cluster,
      facts: { declared: this.federation.facts.declared(cluster) ?? null, reported: reported === undefined ? null : { ...reported.facts, reportedAt: reported.at }, effective: facts ?? null },
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
