/**
 * The bundles a region's summary carries (src/hub/regional/role.ts sends them), judged and
 * stored by its parent, which serves them as a mirror (`regional_bundles`, owned by
 * parent.ts): each as its metadata line and the hash of its target, the targets once each,
 * or whole from an older regional hub. Each target is hashed once and each bundle judged
 * against it as an agent of the region would judge it, but for expiry and rollback, which
 * are the agent's (claims.ts), with no copy of the target per bundle; a summary is put
 * together up to SUMMARY_ASSEMBLED_BYTES (a region naming one large target from thousands of
 * bundles gets the rest refused, not the parent's memory), and the newest bundle of each
 * cluster stored in statements of at most STATEMENT_BYTES (2,500 statements a region after
 * each change made the parent's database the slowest part of a summary at scale).
 */
import { SUMMARY_ASSEMBLED_BYTES, type RegionalSummary } from "../../api/regions.js";
import { BundleError, decodeBundle, type Bundle } from "../../bundle/index.js";
import { contentHash } from "../../canonical/index.js";
import type { Queryable } from "../../store/database.js";
import { judgeBundle, type ClaimContext } from "./claims.js";

const STATEMENT_BYTES = 32 * 1024 * 1024;

type Refusal = { what: "bundle"; why: string };

/** Stores what verifies; returns why the others were refused. */
export async function storeSentBundles(tx: Queryable, summary: RegionalSummary, claims: ClaimContext, now: Date): Promise<Refusal[]> {
  const refusals: Refusal[] = [];
  // Each target decoded and hashed once; one whose bytes do not hash to its name is not used.
  const targets = new Map<string, Buffer>();
  for (const t of summary.targets ?? []) {
    const bytes = Buffer.from(t.bytes, "base64");
    if (contentHash(bytes) === t.hash) targets.set(t.hash, bytes);
    else refusals.push({ what: "bundle", why: `the target sent as ${t.hash} does not hash to that name: the bundles naming it are not taken` });
  }
  // Each kept as its two parts (the whole bytes and nothing, from an older regional hub), put together only to be stored.
  const newest = new Map<string, { version: number; head: Buffer; target: Buffer }>();
  let assembled = 0;
  for (const b of summary.bundles) {
    let parts: { head: Buffer; target: Buffer };
    let judge: () => ReturnType<typeof judgeBundle>;
    if (b.bytes !== undefined) {
      const whole = Buffer.from(b.bytes, "base64");
      parts = { head: whole, target: Buffer.alloc(0) };
      judge = () => judgeBundle(whole, b.cluster, claims);
    } else {
      const target = targets.get(b.target!);
      if (target === undefined) {
        refusals.push({ what: "bundle", why: `the bundle for cluster ${b.cluster} names target ${b.target}, which the summary does not carry` });
        continue;
      }
      const head = Buffer.from(b.envelope!, "base64");
      let bundle: Bundle;
      try {
        bundle = { envelope: decodeBundle(head).envelope, target };
      } catch (error) {
        refusals.push({ what: "bundle", why: `the metadata sent for cluster ${b.cluster} is malformed (${error instanceof BundleError ? error.message : String(error)})` });
        continue;
      }
      parts = { head, target };
      judge = () => judgeBundle(bundle, b.cluster, claims, b.target);
    }
    const size = parts.head.length + parts.target.length;
    if (assembled + size > SUMMARY_ASSEMBLED_BYTES) {
      refusals.push({ what: "bundle", why: `the bundle for cluster ${b.cluster} would take the summary past ${SUMMARY_ASSEMBLED_BYTES} bytes put together: send it in a later summary` });
      continue;
    }
    const judged = judge();
    if (!judged.ok) {
      refusals.push({ what: "bundle", why: judged.reason.slice(0, 1000) });
      continue;
    }
    assembled += size;
    if ((newest.get(judged.cluster)?.version ?? 0) < judged.version) newest.set(judged.cluster, { version: judged.version, ...parts });
  }
  let rows: { c: string; v: number; b: string }[] = [];
  let size = 0;
  const flush = async () => {
    if (rows.length === 0) return;
    await tx.query(
      `INSERT INTO regional_bundles (cluster, region, version, bytes, received_at)
       SELECT c, $2, v, decode(b, 'base64'), $3 FROM json_to_recordset($1::json) AS j (c text, v bigint, b text)
       ON CONFLICT (cluster) DO UPDATE SET version = EXCLUDED.version, bytes = EXCLUDED.bytes, received_at = EXCLUDED.received_at WHERE regional_bundles.version < EXCLUDED.version`,
      [JSON.stringify(rows), claims.region, now],
    );
    rows = [];
    size = 0;
  };
  for (const [cluster, { version, head, target }] of newest) {
    const b = Buffer.concat([head, target]).toString("base64");
    if (size + b.length > STATEMENT_BYTES) await flush();
    rows.push({ c: cluster, v: version, b });
    size += b.length;
  }
  await flush();
  return refusals;
}
