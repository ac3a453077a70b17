/**
 * The bundles a region's summary carries (src/hub/regional/role.ts sends them), judged and
 * stored by its parent, which serves them as a mirror (`regional_bundles`, owned by
 * parent.ts): each as its metadata line and the hash of its target, the targets once each,
 * or whole from an older regional hub. Every bundle is put together and judged as an agent
 * of the region would judge it (claims.ts), then the newest of each cluster is stored in one
 * statement (2,500 statements a region after each change made the parent's database the
 * slowest part of a summary at scale).
 */
import type { RegionalSummary } from "../../api/regions.js";
import type { Queryable } from "../../store/database.js";
import { judgeBundle, type ClaimContext } from "./claims.js";

/** Stores what verifies; returns why the others were refused. */
export async function storeSentBundles(tx: Queryable, summary: RegionalSummary, claims: ClaimContext, now: Date): Promise<{ what: "bundle"; why: string }[]> {
  const refusals: { what: "bundle"; why: string }[] = [];
  const targets = new Map((summary.targets ?? []).map((t) => [t.hash, Buffer.from(t.bytes, "base64")]));
  const newest = new Map<string, { version: number; bytes: Buffer }>();
  for (const b of summary.bundles) {
    const target = b.target === undefined ? undefined : targets.get(b.target);
    if (b.target !== undefined && target === undefined) {
      refusals.push({ what: "bundle", why: `the bundle for cluster ${b.cluster} names target ${b.target}, which the summary does not carry` });
      continue;
    }
    const bytes = b.bytes !== undefined ? Buffer.from(b.bytes, "base64") : Buffer.concat([Buffer.from(b.envelope!, "base64"), target!]);
    const judged = judgeBundle(bytes, b.cluster, claims);
    if (!judged.ok) {
      refusals.push({ what: "bundle", why: judged.reason.slice(0, 1000) });
      continue;
    }
    if ((newest.get(judged.cluster)?.version ?? 0) < judged.version) newest.set(judged.cluster, { version: judged.version, bytes: judged.bytes });
  }
  const rows = [...newest].map(([cluster, { version, bytes }]) => ({ c: cluster, v: version, b: bytes.toString("base64") }));
  for (let i = 0; i < rows.length; i += 1000) {
    await tx.query(
      `INSERT INTO regional_bundles (cluster, region, version, bytes, received_at)
       SELECT c, $2, v, decode(b, 'base64'), $3 FROM json_to_recordset($1::json) AS j (c text, v bigint, b text)
       ON CONFLICT (cluster) DO UPDATE SET version = EXCLUDED.version, bytes = EXCLUDED.bytes, received_at = EXCLUDED.received_at WHERE regional_bundles.version < EXCLUDED.version`,
      [JSON.stringify(rows.slice(i, i + 1000)), claims.region, now],
    );
  }
  return refusals;
}
