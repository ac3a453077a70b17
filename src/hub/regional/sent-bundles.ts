/**
 * The bundles a region's summary carries (src/hub/regional/role.ts sends them), judged and
 * stored by its parent, which serves them as a mirror (`regional_bundles`, owned by
 * parent.ts): each as its metadata line and the hash of its target, the targets once each,
 * or whole from an older regional hub. Each target is hashed once and each bundle judged
 * against it as an agent of the region would judge it, but for expiry and rollback, which
 * are the agent's (claims.ts), with no copy of the target per bundle; a summary is judged
 * up to SUMMARY_ASSEMBLED_BYTES put together (a region naming one large target from thousands
 * of bundles gets the rest refused, not the parent's memory). The newest bundle of each
 * cluster is stored as it came, its metadata line and its target's hash, each target once
 * (`regional_targets`), in statements of at most STATEMENT_BYTES (2,500 statements a region
 * after each change, then 2,500 copies of its target, made the parent's database the
 * slowest part of a summary at scale); put together again when served.
 */
import { SUMMARY_ASSEMBLED_BYTES, type RegionalSummary } from "../../api/regions.js";
import { BundleError, decodeBundle, type Bundle } from "../../bundle/index.js";
import { contentHash } from "../../canonical/index.js";
import type { Queryable } from "../../store/database.js";
import { judgeBundle, type ClaimContext } from "./claims.js";

const STATEMENT_BYTES = 32 * 1024 * 1024;
const TARGETS_LOCK = 7_346_232; // "polity" regional targets (the other hub locks: 201 to 204, 215, 221, 231)

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
  // Each kept as its two parts (the whole bytes and nothing, from an older regional hub).
  const newest = new Map<string, { version: number; head: Buffer; target: Buffer; targetHash?: string }>();
  let assembled = 0;
  for (const b of summary.bundles) {
    let parts: { head: Buffer; target: Buffer; targetHash?: string };
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
      // The metadata line and nothing after it: what is judged is what is kept and served.
      if (head.indexOf(10) !== head.length - 1) {
        refusals.push({ what: "bundle", why: `the metadata sent for cluster ${b.cluster} is not one line ending in a newline` });
        continue;
      }
      let bundle: Bundle;
      try {
        bundle = { envelope: decodeBundle(head).envelope, target };
      } catch (error) {
        refusals.push({ what: "bundle", why: `the metadata sent for cluster ${b.cluster} is malformed (${error instanceof BundleError ? error.message : String(error)})` });
        continue;
      }
      parts = { head, target, targetHash: b.target! };
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
  // Each bundle stored as it came: its metadata line and the hash of its target, each target
  // once (a region's 2,500 bundles of one change name a few targets: 1.7 MB to write, not 82 MB).
  let rows: { c: string; v: number; b: string | null; e: string | null; t: string | null }[] = [];
  let size = 0;
  const flush = async () => {
    if (rows.length === 0) return;
    await tx.query(
      `INSERT INTO regional_bundles (cluster, region, version, bytes, envelope, target_hash, received_at)
       SELECT c, $2, v, decode(b, 'base64'), decode(e, 'base64'), t, $3 FROM json_to_recordset($1::json) AS j (c text, v bigint, b text, e text, t text)
       ON CONFLICT (cluster) DO UPDATE SET version = EXCLUDED.version, bytes = EXCLUDED.bytes, envelope = EXCLUDED.envelope, target_hash = EXCLUDED.target_hash, received_at = EXCLUDED.received_at
       WHERE regional_bundles.version < EXCLUDED.version`,
      [JSON.stringify(rows), claims.region, now],
    );
    rows = [];
    size = 0;
  };
  if (newest.size > 0) await lockTargets(tx);
  const used = new Set<string>();
  for (const [cluster, { version, head, target, targetHash }] of newest) {
    const row =
      targetHash === undefined
        ? { c: cluster, v: version, b: head.toString("base64"), e: null, t: null }
        : { c: cluster, v: version, b: null, e: head.toString("base64"), t: targetHash };
    const length = (row.b ?? row.e ?? "").length + (targetHash !== undefined && !used.has(targetHash) ? target.length : 0);
    if (size + length > STATEMENT_BYTES) await flush();
    if (targetHash !== undefined && !used.has(targetHash)) {
      used.add(targetHash);
      await tx.query("INSERT INTO regional_targets (hash, bytes, received_at) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING", [targetHash, target, now]);
    }
    rows.push(row);
    size += length;
  }
  await flush();
  if (newest.size > 0) await dropUnusedTargets(tx);
  return refusals;
}

/**
 * Writers of targets one at a time, until their transaction ends (several hub processes on
 * one PostgreSQL): otherwise one region's clean-up, not seeing another's bundles not yet
 * committed, could delete a target those bundles name (regions with equal sets share one).
 */
async function lockTargets(tx: Queryable): Promise<void> {
  await tx.query("SELECT pg_advisory_xact_lock($1)", [TARGETS_LOCK]);
}

/** Deletes the targets no mirrored bundle names any more (a region's next change, its hub cut off or enrolled again). */
export async function dropUnusedTargets(tx: Queryable): Promise<void> {
  await lockTargets(tx);
  await tx.query("DELETE FROM regional_targets t WHERE NOT EXISTS (SELECT 1 FROM regional_bundles b WHERE b.target_hash = t.hash)");
}

/**
 * A region's copies no longer served (its hub cut off or enrolled again): each row's version
 * stays, which the bundles signed for its clusters from now on pass. The clusters dropped.
 */
export async function dropRegionCopies(tx: Queryable, region: string): Promise<string[]> {
  const dropped = await tx.query<{ cluster: string }>(
    "UPDATE regional_bundles SET bytes = NULL, envelope = NULL, target_hash = NULL WHERE region = $1 AND (bytes IS NOT NULL OR envelope IS NOT NULL) RETURNING cluster",
    [region],
  );
  await dropUnusedTargets(tx);
  return dropped.map((r) => r.cluster);
}

/** The version of each of a region's clusters' bundles as kept here (served or dropped). */
export async function regionVersions(q: Queryable, region: string): Promise<Map<string, number>> {
  const rows = await q.query<{ cluster: string; version: string }>("SELECT cluster, version::text AS version FROM regional_bundles WHERE region = $1", [region]);
  return new Map(rows.map((r) => [r.cluster, Number(r.version)]));
}

/** The bundle a region's hub signed for this cluster, as this hub keeps it; undefined when there is none. */
export async function storedBundle(q: Queryable, cluster: string): Promise<{ version: number; bytes: Buffer } | undefined> {
  const [row] = await q.query<{ version: string; bytes: Uint8Array | null; envelope: Uint8Array | null; target: Uint8Array | null }>(
    "SELECT b.version::text AS version, b.bytes, b.envelope, t.bytes AS target FROM regional_bundles b LEFT JOIN regional_targets t ON t.hash = b.target_hash WHERE b.cluster = $1",
    [cluster],
  );
  if (row === undefined) return undefined;
  if (row.bytes !== null) return { version: Number(row.version), bytes: Buffer.from(row.bytes) };
  if (row.envelope === null || row.target === null) return undefined;
  return { version: Number(row.version), bytes: Buffer.concat([row.envelope, row.target]) };
}
