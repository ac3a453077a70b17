/**
 * The audit log's Merkle tree as stored: the hashes of its perfect subtrees, 256 to a tile
 * row (C2SP tlog-tiles), written as entries are integrated and read for proofs. A node
 * never changes once it exists, so nodes read before are kept (bounded), and the right
 * edge of the tree and the last tile of each level stay in memory between integrations.
 * This module owns `audit_tiles`.
 */
import { CompactRange, TILE_WIDTH, assembleProof, foldRange, proofNodes, rangeNodes, type NodeId, type Range, type StoredNode } from "../audit/merkle.js";
import type { Database, Queryable } from "../store/database.js";

/** Node hashes kept in memory after a read: 65,536 of them, about 6 MiB. */
const NODE_CACHE = 65_536;

export class AuditTiles {
  private range: CompactRange | undefined;
  /** The last (partial) tile of each level, as stored. */
  private readonly tails = new Map<number, { chunk: number; hashes: Buffer }>();
  /** Nodes read before: a node never changes once it exists. */
  private readonly nodes = new Map<string, Buffer>();

  constructor(private readonly db: Database) {}

  /** The right edge of the tree of `size`, loaded (with the last tile of each level) when this process does not hold it. */
  async edge(tx: Queryable, size: number): Promise<CompactRange> {
    if (this.range?.size === size) return this.range;
    const edge = rangeNodes({ begin: 0, end: size });
    const hashes = await this.readNodes(tx, edge);
    this.range = new CompactRange(
      size,
      edge.map((node) => ({ ...node, hash: hashes(node) })),
    );
    this.tails.clear();
    return this.range;
  }

  /** Forgets the edge (a rolled-back integration may have moved it past the database). */
  forget(): void {
    this.range = undefined;
    this.tails.clear();
  }

  async writeTiles(tx: Queryable, made: readonly StoredNode[]): Promise<void> {
    // Group by tile; each touched tile is written whole (appending to what it held).
    const touched = new Map<string, { level: number; chunk: number; nodes: StoredNode[] }>();
    for (const node of made) {
      const chunk = Math.floor(node.index / TILE_WIDTH);
      const key = `${node.level}/${chunk}`;
      let group = touched.get(key);
      if (group === undefined) touched.set(key, (group = { level: node.level, chunk, nodes: [] }));
      group.nodes.push(node);
    }
    const rows: { level: number; chunk: number; hashes: Buffer }[] = [];
    for (const { level, chunk, nodes } of touched.values()) {
      const firstOffset = nodes[0]!.index - chunk * TILE_WIDTH;
      let before: Buffer = Buffer.alloc(0);
      if (firstOffset > 0) {
        const tail = this.tails.get(level);
        if (tail !== undefined && tail.chunk === chunk) before = tail.hashes;
        else {
          const [row] = await tx.query<{ hashes: string }>("SELECT encode(hashes, 'hex') AS hashes FROM audit_tiles WHERE level = $1 AND chunk = $2", [level, chunk]);
          before = Buffer.from(row?.hashes ?? "", "hex");
        }
        if (before.length !== firstOffset * 32) throw new Error(`audit tile ${level}/${chunk} holds ${before.length / 32} hashes, not the ${firstOffset} expected`);
      }
      const hashes = Buffer.concat([before, ...nodes.map((n) => n.hash)]);
      rows.push({ level, chunk, hashes });
      this.tails.set(level, { chunk, hashes });
    }
    for (let i = 0; i < rows.length; i += 500) {
      const params: unknown[] = [];
      const values = rows.slice(i, i + 500).map((row) => {
        params.push(row.level, row.chunk, bytea(row.hashes));
        const n = params.length;
        return `($${n - 2}, $${n - 1}, decode($${n}, 'hex'))`;
      });
      await tx.query(`INSERT INTO audit_tiles (level, chunk, hashes) VALUES ${values.join(", ")} ON CONFLICT (level, chunk) DO UPDATE SET hashes = EXCLUDED.hashes`, params);
    }
  }

  /**
   * Reads perfect-subtree hashes in one query, only the 32 bytes of each (not its tile),
   * from memory where it can: the last tile of each level as this process wrote it, and
   * nodes read before (a node never changes once it exists). Returns a lookup.
   */
  private async readNodes(q: Queryable, nodes: readonly NodeId[]): Promise<(node: NodeId) => Buffer> {
    const found = new Map<string, Buffer>();
    const wanted: NodeId[] = [];
    for (const node of nodes) {
      const key = `${node.level}/${node.index}`;
      if (found.has(key)) continue;
      const cached = this.nodes.get(key);
      if (cached !== undefined) {
        found.set(key, cached);
        continue;
      }
      // The last tile of a level, as this process last wrote it: a prefix of the stored one.
      const tail = this.tails.get(node.level);
      const offset = (node.index % TILE_WIDTH) * 32;
      if (tail !== undefined && tail.chunk === Math.floor(node.index / TILE_WIDTH) && tail.hashes.length >= offset + 32) {
        found.set(key, tail.hashes.subarray(offset, offset + 32));
        continue;
      }
      wanted.push(node);
    }
    if (wanted.length > 0) {
      // Integers written into the statement, not bound: PGlite binds parameters slowly
      // enough to double a proof's time. They are node coordinates this code computed.
      const keys = wanted.map(({ level, index }) => {
        if (!Number.isSafeInteger(level) || !Number.isSafeInteger(index) || level < 0 || index < 0) throw new Error(`invalid tree node ${level}/${index}`);
        return `(${level}::smallint, ${Math.floor(index / TILE_WIDTH)}::bigint, ${index % TILE_WIDTH}, ${index}::bigint)`;
      });
      const rows = await q.query<{ level: number; idx: string; hash: string }>(
        `SELECT t.level, k.idx::text AS idx, encode(substring(t.hashes FROM k.off * 32 + 1 FOR 32), 'hex') AS hash
         FROM audit_tiles t JOIN (VALUES ${keys.join(", ")}) AS k (level, chunk, off, idx) ON t.level = k.level AND t.chunk = k.chunk`,
      );
      for (const row of rows) {
        if (row.hash.length !== 64) continue; // past the end of a short tile: missing
        const key = `${row.level}/${row.idx}`;
        const hash = Buffer.from(row.hash, "hex");
        found.set(key, hash);
        this.remember(key, hash);
      }
    }
    return (node) => {
      const hash = found.get(`${node.level}/${node.index}`);
      if (hash === undefined) throw new Error(`the audit tree has no node ${node.level}/${node.index}: its tiles are missing or short`);
      return hash;
    };
  }

  /** Nodes read from the database, least recently stored dropped first. */
  private remember(key: string, hash: Buffer): void {
    if (this.nodes.size >= NODE_CACHE) this.nodes.delete(this.nodes.keys().next().value!);
    this.nodes.set(key, hash);
  }

  /** One read for the proof's subtrees, the roots of the given sizes, and a leaf. */
  async prove(ranges: readonly Range[], sizes: readonly number[], leafIndex?: number): Promise<{ proof: Buffer[]; roots: Buffer[]; leaf: Buffer | undefined }> {
    const rootRanges = sizes.map((size) => ({ begin: 0, end: size }));
    const leafNode: NodeId[] = leafIndex === undefined ? [] : [{ level: 0, index: leafIndex }];
    const lookup = await this.readNodes(this.db, [...proofNodes([...ranges, ...rootRanges]), ...leafNode]);
    return {
      proof: assembleProof(ranges, lookup),
      roots: rootRanges.map((range) => foldRange(rangeNodes(range).map(lookup))),
      leaf: leafIndex === undefined ? undefined : Buffer.from(lookup(leafNode[0]!)),
    };
  }

  /** A tile as stored (hashes of level `level`, nodes 256·chunk onwards), for verifiers. */
  async tile(level: number, chunk: number): Promise<Buffer | undefined> {
    const [row] = await this.db.query<{ hashes: string }>("SELECT encode(hashes, 'hex') AS hashes FROM audit_tiles WHERE level = $1 AND chunk = $2", [level, chunk]);
    return row === undefined ? undefined : Buffer.from(row.hashes, "hex");
  }
}

/**
 * Bytes go to the database as hex text, decoded there (`decode($n, 'hex')`), and come back
 * with `encode(…, 'hex')`: PGlite would otherwise convert them one byte at a time in
 * JavaScript, which costs more than everything else an append does.
 */
export const bytea = (b: Uint8Array): string => Buffer.from(b).toString("hex");
