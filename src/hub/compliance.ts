/**
 * Compliance at the hub: the matrix clusters × policies, from the summary each agent sends
 * with its status (its last background scan), and how each cell changed over time.
 *
 * An agent repeats its last summary with every status report: a summary whose scan the
 * hub holds already, or an older one, writes nothing. A newer one replaces the cluster's
 * row of the matrix in one transaction, and adds a history row for each cell whose counts
 * changed (so history grows with change, not with reports), keeping the newest
 * HISTORY_PER_CELL of each cell. This module owns `compliance_scans`, `compliance` and
 * `compliance_history`.
 */
import { complianceState, type ClusterCompliance, type ComplianceChange, type ComplianceMatrix, type ComplianceSummary, type PolicyCompliance } from "../api/compliance.js";
import type { Database } from "../store/database.js";

export const HISTORY_PER_CELL = 100;

interface ClusterRef {
  readonly name: string;
  readonly region: string;
}

type CellRow = {
  readonly cluster: string;
  readonly policy: string;
  readonly pass: string;
  readonly fail: string;
  readonly warn: string;
  readonly examples: PolicyCompliance["examples"];
};

export class Compliance {
  constructor(
    private readonly db: Database,
    private readonly now: () => Date,
  ) {}

  /** Keeps a cluster's summary; false when it holds that scan (or a newer one) already. */
  async record(cluster: string, summary: ComplianceSummary): Promise<boolean> {
    const scannedAt = new Date(summary.scannedAt);
    return this.db.transaction(async (tx) => {
      const [held] = await tx.query<{ scanned_at: Date }>("SELECT scanned_at FROM compliance_scans WHERE cluster = $1 FOR UPDATE", [cluster]);
      if (held !== undefined && new Date(held.scanned_at).getTime() >= scannedAt.getTime()) return false;
      await tx.query(
        `INSERT INTO compliance_scans (cluster, scanned_at, reported_at, bundle_version, objects, omitted_policies) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (cluster) DO UPDATE SET scanned_at = EXCLUDED.scanned_at, reported_at = EXCLUDED.reported_at, bundle_version = EXCLUDED.bundle_version,
           objects = EXCLUDED.objects, omitted_policies = EXCLUDED.omitted_policies`,
        [cluster, scannedAt, this.now(), summary.bundleVersion, summary.objects, summary.omittedPolicies],
      );
      const before = new Map(
        (await tx.query<{ policy: string; pass: string; fail: string; warn: string }>("SELECT policy, pass::text, fail::text, warn::text FROM compliance WHERE cluster = $1", [cluster])).map((r) => [
          r.policy,
          `${r.pass}/${r.fail}/${r.warn}`,
        ]),
      );
      await tx.query("DELETE FROM compliance WHERE cluster = $1", [cluster]);
      // One statement each, the rows as one JSON document: PGlite binds parameters slowly.
      const cells = summary.policies.map((p) => ({ policy: p.policy, pass: p.pass, fail: p.fail, warn: p.warn, examples: p.examples }));
      if (cells.length > 0) {
        await tx.query(
          `INSERT INTO compliance (cluster, policy, pass, fail, warn, examples)
           SELECT $1, x.policy, x.pass, x.fail, x.warn, x.examples FROM jsonb_to_recordset($2::jsonb) AS x(policy text, pass bigint, fail bigint, warn bigint, examples jsonb)`,
          [cluster, JSON.stringify(cells)],
        );
      }
      const changed = cells.filter((c) => before.get(c.policy) !== `${c.pass}/${c.fail}/${c.warn}`).map(({ examples: _examples, ...counts }) => counts);
      if (changed.length > 0) {
        await tx.query(
          `INSERT INTO compliance_history (cluster, policy, at, pass, fail, warn)
           SELECT $1, x.policy, $2, x.pass, x.fail, x.warn FROM jsonb_to_recordset($3::jsonb) AS x(policy text, pass bigint, fail bigint, warn bigint)`,
          [cluster, scannedAt, JSON.stringify(changed)],
        );
        await tx.query(
          `DELETE FROM compliance_history h USING (
             SELECT policy, at FROM (SELECT policy, at, row_number() OVER (PARTITION BY policy ORDER BY at DESC) AS n FROM compliance_history WHERE cluster = $1) ranked WHERE n > $2
           ) old WHERE h.cluster = $1 AND h.policy = old.policy AND h.at = old.at`,
          [cluster, HISTORY_PER_CELL],
        );
      }
      return true;
    });
  }

  /** The matrix for these clusters (each appears, with no cells until its agent reported a scan), optionally one policy's column. */
  async matrix(clusters: readonly ClusterRef[], policy?: string): Promise<ComplianceMatrix> {
    const names = clusters.map((c) => c.name);
    const scans = new Map(
      (
        await this.db.query<{ cluster: string; scanned_at: Date; reported_at: Date; bundle_version: string | null; objects: string; omitted_policies: string }>(
          "SELECT cluster, scanned_at, reported_at, bundle_version::text, objects::text, omitted_policies::text FROM compliance_scans WHERE cluster = ANY($1)",
          [names],
        )
      ).map((r) => [r.cluster, r]),
    );
    const cells = await this.db.query<CellRow>(
      `SELECT cluster, policy, pass::text, fail::text, warn::text, examples FROM compliance WHERE cluster = ANY($1) ${policy === undefined ? "" : "AND policy = $2"} ORDER BY cluster, policy`,
      policy === undefined ? [names] : [names, policy],
    );
    const byCluster = new Map<string, CellRow[]>();
    for (const cell of cells) byCluster.set(cell.cluster, [...(byCluster.get(cell.cluster) ?? []), cell]);
    const items: ClusterCompliance[] = clusters.map((c) => {
      const scan = scans.get(c.name);
      return {
        cluster: c.name,
        region: c.region,
        scannedAt: scan === undefined ? null : new Date(scan.scanned_at).toISOString(),
        reportedAt: scan === undefined ? null : new Date(scan.reported_at).toISOString(),
        bundleVersion: scan?.bundle_version == null ? null : Number(scan.bundle_version),
        objects: Number(scan?.objects ?? 0),
        omittedPolicies: Number(scan?.omitted_policies ?? 0),
        policies: (byCluster.get(c.name) ?? []).map((row) => {
          const counts = { pass: Number(row.pass), fail: Number(row.fail), warn: Number(row.warn) };
          return { policy: row.policy, ...counts, examples: row.examples, state: complianceState(counts) };
        }),
      };
    });
    return { policies: [...new Set(cells.map((c) => c.policy))].sort(), items };
  }

  /** How the cells of these clusters changed, newest first. */
  async history(clusters: readonly ClusterRef[], options: { readonly policy?: string; readonly limit: number }): Promise<ComplianceChange[]> {
    const regions = new Map(clusters.map((c) => [c.name, c.region]));
    const params: unknown[] = [[...regions.keys()], options.limit];
    if (options.policy !== undefined) params.push(options.policy);
    const rows = await this.db.query<{ cluster: string; policy: string; at: Date; pass: string; fail: string; warn: string }>(
      `SELECT cluster, policy, at, pass::text, fail::text, warn::text FROM compliance_history WHERE cluster = ANY($1) ${options.policy === undefined ? "" : "AND policy = $3"}
       ORDER BY at DESC, cluster, policy LIMIT $2`,
      params,
    );
    return rows.map((r) => ({ cluster: r.cluster, region: regions.get(r.cluster)!, policy: r.policy, at: new Date(r.at).toISOString(), pass: Number(r.pass), fail: Number(r.fail), warn: Number(r.warn) }));
  }
}
