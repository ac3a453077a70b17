/**
 * The audit log as the hub keeps it, in its database (Trillian's split, in one process):
 *
 * - `record` appends entries in the caller's own transaction, so an event is logged if
 *   and only if the change it describes is committed. Indexes come from one locked row:
 *   dense, in commit order, whichever hub appends.
 * - `integrate` (every second, and when a backlog builds) folds new entries into the
 *   Merkle tree: it stores the perfect subtrees they complete, 256 hashes to a tile row,
 *   and signs a tree head. Integrators on several hubs take turns under an advisory lock.
 * - Proofs read the O(log n) perfect subtrees they need, in one query, 32 bytes each,
 *   through a cache of nodes read before (which never change).
 */
import { createPublicKey, randomUUID } from "node:crypto";
import { lookback, detectAnomalies, type IndexedEntry } from "../audit/anomalies.js";
import type { AuditEntry, AuditEvent } from "../audit/entry.js";
import { decodePublication, type Publication } from "../bundle/publication.js";
import { consistencyRanges, inclusionRanges, type CompactRange, type StoredNode } from "../audit/merkle.js";
import type { ConsistencyProof, InclusionProof } from "../audit/proof.js";
import { noteKeyId, signTreeHead, type SignedTreeHead } from "../audit/tree-head.js";
import type { Database, Queryable } from "../store/database.js";
import { appendEntries } from "./audit-append.js";
import { AuditTiles } from "./audit-tiles.js";
import type { SigningKey } from "./keys.js";
import { ApiError, badRequest } from "./status.js";
import { timings } from "./timings.js";

const INTEGRATE_LOCK = 7_346_204;

export interface AuditOptions {
  /** The log's name in its tree heads: `<federation>/audit`. */
  readonly origin: string;
  readonly now: () => Date;
  /** How often new entries are integrated and a head signed (default 1 s). */
  readonly integrateEveryMs: number;
  /** A head is signed at least this often, even with nothing new (default 60 s). */
  readonly headEveryMs: number;
  /** Entries integrated per transaction (default 100,000). */
  readonly batch: number;
  /** Entries waiting for the tree beyond which bulk appends are refused with 503 (default 500,000). */
  readonly maxBacklog: number;
  /** How often the anomaly detectors run (default 60 s; 0: never on a timer). */
  readonly detectEveryMs: number;
}

export const DEFAULT_AUDIT_OPTIONS: Omit<AuditOptions, "origin" | "now"> = {
  integrateEveryMs: 1000,
  headEveryMs: 60_000,
  batch: 100_000,
  maxBacklog: 500_000,
  detectEveryMs: 60_000,
};

/** Who did something, as entries name them. */
export type Actor = string;

export interface AuditContext {
  readonly actor: Actor;
  readonly correlationId: string;
}

export { appendEntries };

export function newCorrelationId(): string {
  return randomUUID();
}

export class AuditLog {
  private readonly tiles: AuditTiles;
  private latest: SignedTreeHead | undefined;
  private appended = 0;
  private integrating: Promise<SignedTreeHead | undefined> | undefined;
  private timers: NodeJS.Timeout[] = [];
  keyId: string;

  constructor(
    private readonly db: Database,
    public key: SigningKey,
    private readonly options: AuditOptions,
  ) {
    this.keyId = noteKeyId(options.origin, createPublicKey(key.privateKey));
    this.tiles = new AuditTiles(db);
  }

  /** Signs the next tree heads with `key` (the audit-log key rotated: the root lists it first). */
  useKey(key: SigningKey): void {
    this.key = key;
    this.keyId = noteKeyId(this.options.origin, createPublicKey(key.privateKey));
  }

  get origin(): string {
    return this.options.origin;
  }

  /**
   * Appends events in the caller's transaction. Call it last in the transaction: it
   * locks the log's index row until commit, and every writer locks in the same order.
   */
  async record(tx: Queryable, events: readonly AuditEvent[]): Promise<void> {
    if (events.length === 0) return;
    await timings.timeAsync("audit.append", () => appendEntries(tx, events, this.options.now()));
    this.appended += events.length;
    if (this.appended >= 10_000) {
      // A burst: integrate without waiting for the timer.
      this.appended = 0;
      setImmediate(() => void this.integrate().catch(() => undefined));
    }
  }

  /** Appends events in a transaction of their own. */
  async append(events: readonly AuditEvent[]): Promise<void> {
    await this.db.transaction((tx) => this.record(tx, events));
  }

  /** Entries appended and not yet in the tree; bulk writers refuse more past `maxBacklog`. */
  async backlog(): Promise<number> {
    const [row] = await this.db.query<{ backlog: string }>("SELECT ((SELECT size FROM audit_state) - (SELECT size FROM audit_tree))::text AS backlog");
    return Number(row!.backlog);
  }

  /** Throws 503 with Retry-After when the tree is too far behind: the caller keeps its entries and sends them later. */
  async admit(entries: number): Promise<void> {
    const backlog = await this.backlog();
    if (backlog + entries > this.options.maxBacklog) {
      throw new ApiError(503, "Unavailable", `the audit log has ${backlog} entries waiting to be integrated (at most ${this.options.maxBacklog}); keep these and send them again shortly`, [], {
        "retry-after": "5",
      });
    }
  }

  start(): void {
    const tick = () => void this.integrate().catch(() => undefined);
    this.timers.push(setInterval(tick, this.options.integrateEveryMs));
    if (this.options.detectEveryMs > 0) this.timers.push(setInterval(() => void this.detect().catch(() => undefined), this.options.detectEveryMs));
    for (const timer of this.timers) timer.unref();
  }

  async stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    await this.integrating?.catch(() => undefined);
  }

  /** Folds waiting entries into the tree (all of them, batch by batch) and signs a head. */
  integrate(): Promise<SignedTreeHead | undefined> {
    if (this.integrating !== undefined) return this.integrating;
    const run = (async () => {
      let head: SignedTreeHead | undefined;
      for (;;) {
        const step = await this.integrateBatch();
        if (step.head !== undefined) head = step.head;
        if (!step.more) return head;
      }
    })();
    this.integrating = run;
    const clear = () => {
      this.integrating = undefined;
    };
    run.then(clear, clear);
    return run;
  }

  private async integrateBatch(): Promise<{ head: SignedTreeHead | undefined; more: boolean }> {
    try {
      return await this.integrateInTransaction();
    } catch (error) {
      // Rolled back: the edge in memory may be ahead of the database; reload it next time.
      this.tiles.forget();
      throw error;
    }
  }

  private async integrateInTransaction(): Promise<{ head: SignedTreeHead | undefined; more: boolean }> {
    const result = await this.db.transaction(async (tx) => {
      const [locked] = await tx.query<{ ok: boolean }>("SELECT pg_try_advisory_xact_lock($1) AS ok", [INTEGRATE_LOCK]);
      if (locked?.ok !== true) return { head: undefined, more: false };
      const [sizes] = await tx.query<{ tree: string; log: string }>("SELECT (SELECT size FROM audit_tree)::text AS tree, (SELECT size FROM audit_state)::text AS log");
      const treeSize = Number(sizes!.tree);
      const logSize = Number(sizes!.log);
      const range = await this.tiles.edge(tx, treeSize);
      const now = this.options.now();
      if (logSize === treeSize) {
        const last = this.latest ?? (await this.loadLatest(tx));
        if (last !== undefined && last.treeSize === treeSize && now.getTime() - Date.parse(last.time) < this.options.headEveryMs) return { head: undefined, more: false };
        return { head: await this.publish(tx, range, now), more: false };
      }
      const end = Math.min(logSize, treeSize + this.options.batch);
      const leaves = await tx.query<{ leaf_hash: string }>("SELECT encode(leaf_hash, 'hex') AS leaf_hash FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx", [treeSize, end]);
      if (leaves.length !== end - treeSize) throw new Error(`the audit log has ${leaves.length} entries between ${treeSize} and ${end}, not ${end - treeSize}: entries are missing`);
      const made: StoredNode[] = [];
      for (const leaf of leaves) made.push(...range.append(Buffer.from(leaf.leaf_hash, "hex")));
      await this.tiles.writeTiles(tx, made);
      await tx.query("UPDATE audit_tree SET size = $1", [end]);
      return { head: await this.publish(tx, range, now), more: end < logSize };
    });
    if (result.head !== undefined) this.latest = result.head;
    return result;
  }

  private async publish(tx: Queryable, range: CompactRange, now: Date): Promise<SignedTreeHead> {
    const head = signTreeHead({ origin: this.options.origin, treeSize: range.size, rootHash: range.root().toString("hex"), time: now.toISOString() }, this.key.privateKey, this.keyId);
    await tx.query("INSERT INTO audit_heads (tree_size, root_hash, at, key_id, signature) VALUES ($1, decode($2, 'hex'), $3, $4, $5) ON CONFLICT DO NOTHING", [
      head.treeSize,
      head.rootHash,
      now,
      head.keyId,
      head.signature,
    ]);
    return head;
  }

  private async loadLatest(q: Queryable): Promise<SignedTreeHead | undefined> {
    const [row] = await q.query<{ tree_size: string; root_hash: string; at: Date; key_id: string; signature: string }>(
      "SELECT tree_size::text AS tree_size, encode(root_hash, 'hex') AS root_hash, at, key_id, signature FROM audit_heads ORDER BY tree_size DESC, at DESC LIMIT 1",
    );
    if (row === undefined) return undefined;
    return {
      origin: this.options.origin,
      treeSize: Number(row.tree_size),
      rootHash: row.root_hash,
      time: new Date(row.at).toISOString(),
      keyId: row.key_id,
      signature: row.signature,
    };
  }

  /** The newest signed tree head (signing the first one if the log has none yet). */
  async latestHead(): Promise<SignedTreeHead> {
    const stored = await this.loadLatest(this.db);
    if (stored !== undefined && (this.latest === undefined || stored.treeSize >= this.latest.treeSize)) this.latest = stored;
    if (this.latest === undefined) {
      await this.integrate();
      this.latest = this.latest ?? (await this.loadLatest(this.db));
    }
    if (this.latest === undefined) throw new ApiError(503, "Unavailable", "the audit log has no tree head yet; try again in a second");
    return this.latest;
  }

  /** The size of the tree the newest head covers: proofs are served up to it. */
  private async servedSize(): Promise<number> {
    return (await this.latestHead()).treeSize;
  }

  private async checkSize(what: string, size: number): Promise<void> {
    // A head once signed stays: a size within the newest head this process knows needs no read.
    if (this.latest !== undefined && size <= this.latest.treeSize) return;
    const served = await this.servedSize();
    if (size > served) throw badRequest(`${what} ${size} is beyond the newest tree head (size ${served}); entries are integrated within about a second`);
  }

  async inclusionProof(leafIndex: number, treeSize: number): Promise<InclusionProof> {
    if (leafIndex >= treeSize) throw badRequest(`entry ${leafIndex} is not in a tree of size ${treeSize}`);
    await this.checkSize("treeSize", treeSize);
    const ranges = inclusionRanges(leafIndex, treeSize);
    const { proof, roots, leaf } = await this.tiles.prove(ranges, [treeSize], leafIndex);
    return { type: "inclusion", leafIndex, treeSize, leafHash: leaf!.toString("hex"), proof: proof.map(hex), root: hex(roots[0]!) };
  }

  async consistencyProof(size1: number, size2: number): Promise<ConsistencyProof> {
    if (size1 === 0) throw badRequest("there is no consistency proof from the empty tree: size1 must be at least 1");
    if (size1 > size2) throw badRequest(`size1 (${size1}) must not exceed size2 (${size2})`);
    await this.checkSize("size2", size2);
    const { proof, roots } = await this.tiles.prove(consistencyRanges(size1, size2), [size1, size2]);
    return { type: "consistency", size1, size2, root1: hex(roots[0]!), root2: hex(roots[1]!), proof: proof.map(hex) };
  }

  /** A tile as stored (hashes of level `level`, nodes 256·chunk onwards), for verifiers. */
  tile(level: number, chunk: number): Promise<Buffer | undefined> {
    return this.tiles.tile(level, chunk);
  }

  /** Runs the anomaly detectors over the recent log and records each new finding. */
  async detect(): Promise<number> {
    const now = this.options.now();
    const since = new Date(now.getTime() - lookback());
    const rows = await this.db.query<{ idx: string; entry: string }>(
      "SELECT idx::text AS idx, entry FROM audit_entries WHERE at >= $1 AND kind IN ('agent.denials', 'enrolment.failed', 'bundles.published', 'bundle.acknowledged', 'anomaly.found') ORDER BY audit_entries.idx",
      [since],
    );
    const entries: IndexedEntry[] = rows.map((r) => ({ ...(JSON.parse(r.entry) as AuditEntry), index: Number(r.idx) }));
    const known = new Set(entries.filter((e) => e.kind === "anomaly.found").map((e) => String(e.data.key)));
    const hashes = entries.filter((e) => e.kind === "bundles.published").map((e) => String(e.data.listHash));
    const lists = new Map<string, { cluster: string; version: number }[]>();
    if (hashes.length > 0) {
      for (const row of await this.db.query<{ list_hash: string; list: string }>("SELECT list_hash, list FROM bundle_publications WHERE list_hash = ANY($1)", [hashes])) {
        const publication = decodePublication(row.list, row.list_hash);
        if (publication !== undefined) lists.set(row.list_hash, publication.bundles.map((b) => ({ cluster: b.cluster, version: b.version })));
      }
    }
    const findings = detectAnomalies(entries, now, known, undefined, lists);
    await this.append(
      findings.map((f) => ({
        kind: "anomaly.found",
        actor: "hub",
        cluster: f.cluster,
        region: f.region,
        correlationId: newCorrelationId(),
        data: { detector: f.detector, key: f.key, summary: f.summary, evidence: [...f.evidence] },
      })),
    );
    return findings.length;
  }

  /**
   * Entries in index order from `filter.start`, at most `filter.limit`, matching every
   * filter given; only entries under a signed head are served (everything listed can be
   * proved). `region` restricts to one region's entries (a region operator's view).
   */
  async search(filter: EntrySearch): Promise<{ items: { index: number; entry: unknown }[]; next: number | null }> {
    const where: string[] = ["idx >= $1"];
    const params: unknown[] = [filter.start];
    const add = (clause: string, value: unknown) => {
      params.push(value);
      where.push(clause.replace("?", `$${params.length}`));
    };
    if (filter.since !== undefined) add("at >= ?", filter.since);
    if (filter.until !== undefined) add("at < ?", filter.until);
    for (const [column, value] of [
      ["actor", filter.actor],
      ["cluster", filter.cluster],
      ["kind", filter.kind],
      ["correlation_id", filter.correlation],
      ["region", filter.region],
      ["region", filter.scope],
    ] as const) {
      if (value !== undefined) add(`${column} = ?`, value);
    }
    add("idx < ?", (await this.latestHead()).treeSize);
    params.push(filter.limit + 1);
    // Ordered by the column, not the text alias of the same name: "10" sorts before "2".
    const rows = await this.db.query<{ idx: string; entry: string }>(
      `SELECT idx::text AS idx, entry FROM audit_entries WHERE ${where.join(" AND ")} ORDER BY audit_entries.idx LIMIT $${params.length}`,
      params,
    );
    const items = rows.slice(0, filter.limit).map((r) => ({ index: Number(r.idx), entry: JSON.parse(r.entry) as unknown }));
    return { items, next: rows.length > filter.limit ? items[items.length - 1]!.index + 1 : null };
  }

  /** A list of published bundles by its hash (what a `bundles.published` entry names), with its region; undefined when there is none. */
  async publication(hash: string): Promise<{ publication: Publication; bytes: string; region: string } | undefined> {
    const [row] = await this.db.query<{ list: string; region: string }>("SELECT list, region FROM bundle_publications WHERE list_hash = $1", [hash]);
    if (row === undefined) return undefined;
    const publication = decodePublication(row.list, hash);
    return publication === undefined ? undefined : { publication, bytes: row.list, region: row.region };
  }

  /** One entry and the region it belongs to, or undefined. */
  async entry(index: number): Promise<{ entry: unknown; region: string | null } | undefined> {
    const [row] = await this.db.query<{ entry: string; region: string | null }>("SELECT entry, region FROM audit_entries WHERE idx = $1", [index]);
    return row === undefined ? undefined : { entry: JSON.parse(row.entry) as unknown, region: row.region };
  }
}

/** What `search` filters on; absent filters match everything. */
export interface EntrySearch {
  readonly start: number;
  readonly limit: number;
  readonly since?: Date;
  readonly until?: Date;
  readonly actor?: string;
  readonly cluster?: string;
  readonly kind?: string;
  readonly correlation?: string;
  readonly region?: string;
  /** Only this region's entries, whatever else is asked. */
  readonly scope?: string;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
