/**
 * The Merkle tree of the audit log, exactly as RFC 6962 §2.1 and RFC 9162 §2.1 define it:
 * leaf hash `SHA-256(0x00 || entry)`, node hash `SHA-256(0x01 || left || right)`, a tree of
 * n leaves split at the largest power of two below n, and the empty tree's hash
 * `SHA-256("")`. Pure functions: no storage, no clock.
 *
 * Storage keeps the hashes of *perfect* subtrees (`NodeId`: 2^level leaves starting at
 * `index * 2^level`). Every subtree a proof needs is a run of at most log2(n) perfect ones,
 * so a proof is planned here (which nodes), read in one go by the caller, and assembled
 * here: O(log n) reads.
 */
import { createHash, hash } from "node:crypto";

export const HASH_SIZE = 32;

/**
 * How the log stores and serves node hashes: tiles of 256 consecutive perfect subtrees of
 * one level (level L, tile T: nodes (L, 256·T) to (L, 256·T + 255)).
 */
export const TILE_WIDTH = 256;

/** SHA-256 of the empty string: the root of the tree with no leaves. */
export const EMPTY_ROOT: Buffer = createHash("sha256").digest();

const LEAF_PREFIX = Buffer.from([0]);
const NODE_PREFIX = Buffer.from([1]);

// One-shot hashing of one buffer is about twice as fast as a Hash object for inputs this small.
export function leafHash(entry: Uint8Array): Buffer {
  return hash("sha256", Buffer.concat([LEAF_PREFIX, entry]), "buffer");
}

/** 0x01 || left || right, filled in place: hashing is synchronous, so one buffer serves every call. */
const NODE_INPUT = Buffer.alloc(65, 1);

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  if (left.length !== 32 || right.length !== 32) return hash("sha256", Buffer.concat([NODE_PREFIX, left, right]), "buffer");
  NODE_INPUT.set(left, 1);
  NODE_INPUT.set(right, 33);
  return hash("sha256", NODE_INPUT, "buffer");
}

/** A perfect subtree: leaves `[index * 2^level, (index + 1) * 2^level)`. */
export interface NodeId {
  readonly level: number;
  readonly index: number;
}

/** Leaves `[begin, end)`: a subtree of the RFC 6962 tree, whose hash is MTH(D[begin:end]). */
export interface Range {
  readonly begin: number;
  readonly end: number;
}

/** Largest power of two strictly below n (n ≥ 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * The perfect subtrees whose hashes make up MTH(D[begin:end]), left to right: the binary
 * digits of the range's size, largest first. Valid for every range the proofs below ask
 * for, because RFC 6962's recursion only ever produces ranges aligned to their size.
 */
export function rangeNodes(range: Range): NodeId[] {
  const nodes: NodeId[] = [];
  let at = range.begin;
  let left = range.end - range.begin;
  while (left > 0) {
    // The largest power of two in what is left (log2 may round up just below a power).
    let level = Math.floor(Math.log2(left));
    if (2 ** level > left) level--;
    const size = 2 ** level;
    if (at % size !== 0) throw new RangeError(`leaves [${range.begin}, ${range.end}) are not a subtree of an RFC 6962 tree`);
    nodes.push({ level, index: at / size });
    at += size;
    left -= size;
  }
  return nodes;
}

/** MTH of a range from the hashes of its `rangeNodes`, in the same order. */
export function foldRange(hashes: readonly Uint8Array[]): Buffer {
  if (hashes.length === 0) return EMPTY_ROOT;
  let hash: Buffer = Buffer.from(hashes[hashes.length - 1]!);
  for (let i = hashes.length - 2; i >= 0; i--) hash = nodeHash(hashes[i]!, hash);
  return hash;
}

/** MTH(D[0:n]) from the n leaf hashes: the reference computation, O(n). */
export function rootOf(leafHashes: readonly Uint8Array[]): Buffer {
  if (leafHashes.length === 0) return EMPTY_ROOT;
  let level: Uint8Array[] = [...leafHashes];
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(nodeHash(level[i]!, level[i + 1]!));
    // An odd node out is promoted unchanged: the same tree as the RFC's split, built bottom up.
    if (level.length % 2 === 1) next.push(level[level.length - 1]!);
    level = next;
  }
  return Buffer.from(level[0]!);
}

function checkSize(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number ≥ 0, not ${value}`);
}

/** RFC 9162 §2.1.3.1 PATH(m, D[n]): the subtrees whose hashes prove leaf m is in the tree of size n, leaf side first. */
export function inclusionRanges(leafIndex: number, treeSize: number): Range[] {
  checkSize("leaf index", leafIndex);
  checkSize("tree size", treeSize);
  if (leafIndex >= treeSize) throw new RangeError(`leaf ${leafIndex} is not in a tree of size ${treeSize}`);
  const ranges: Range[] = [];
  let begin = 0;
  let end = treeSize;
  while (end - begin > 1) {
    const k = splitPoint(end - begin);
    if (leafIndex < begin + k) {
      ranges.push({ begin: begin + k, end });
      end = begin + k;
    } else {
      ranges.push({ begin, end: begin + k });
      begin += k;
    }
  }
  return ranges.reverse();
}

/** RFC 9162 §2.1.4.1 PROOF(m, D[n]): the subtrees whose hashes prove the tree of size m is a prefix of the tree of size n. */
export function consistencyRanges(size1: number, size2: number): Range[] {
  checkSize("size1", size1);
  checkSize("size2", size2);
  if (size1 === 0) throw new RangeError("there is no consistency proof from the empty tree");
  if (size1 > size2) throw new RangeError(`a tree of size ${size1} cannot be a prefix of one of size ${size2}`);
  const ranges: Range[] = [];
  let begin = 0;
  let end = size2;
  let m = size1;
  let whole = true;
  // SUBPROOF(m, D[begin:end], whole), unrolled: each step records a sibling and descends.
  while (m !== end - begin) {
    const k = splitPoint(end - begin);
    if (m <= k) {
      ranges.push({ begin: begin + k, end });
      end = begin + k;
    } else {
      ranges.push({ begin, end: begin + k });
      begin += k;
      m -= k;
      whole = false;
    }
  }
  if (!whole) ranges.push({ begin, end });
  return ranges.reverse();
}

/** Where proof verification failed, in words. */
export class ProofError extends Error {
  override readonly name = "ProofError";
}

function checkHash(what: string, hash: Uint8Array): void {
  if (hash.length !== HASH_SIZE) throw new ProofError(`${what} is ${hash.length} bytes; a SHA-256 hash is ${HASH_SIZE}`);
}

function checkProofSizes(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new ProofError(`${what} must be a whole number ≥ 0, not ${value}`);
}

/**
 * The root that an inclusion proof leads to (RFC 9162 §2.1.3.2). Throws ProofError for a
 * malformed proof: an index outside the tree, a hash of the wrong size, a path too long
 * or too short for the tree.
 */
export function rootFromInclusionProof(leafIndex: number, treeSize: number, leaf: Uint8Array, proof: readonly Uint8Array[]): Buffer {
  checkProofSizes("leafIndex", leafIndex);
  checkProofSizes("treeSize", treeSize);
  if (leafIndex >= treeSize) throw new ProofError(`leafIndex ${leafIndex} is outside a tree of size ${treeSize}`);
  checkHash("the leaf hash", leaf);
  proof.forEach((p, i) => checkHash(`proof[${i}]`, p));
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of proof) {
    if (sn === 0) throw new ProofError(`the proof has ${proof.length} hashes: too many for leaf ${leafIndex} of a tree of size ${treeSize}`);
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new ProofError(`the proof has ${proof.length} hashes: too few for leaf ${leafIndex} of a tree of size ${treeSize}`);
  return r;
}

export function verifyInclusion(leafIndex: number, treeSize: number, leaf: Uint8Array, proof: readonly Uint8Array[], root: Uint8Array): void {
  checkHash("the root", root);
  const computed = rootFromInclusionProof(leafIndex, treeSize, leaf, proof);
  if (!computed.equals(root)) {
    throw new ProofError(`the proof leads to root ${computed.toString("hex")}, not ${Buffer.from(root).toString("hex")}: leaf ${leafIndex} is not in this tree`);
  }
}

/**
 * Checks that the tree of size1 with root1 is a prefix of the tree of size2 with root2
 * (RFC 9162 §2.1.4.2). Equal sizes need an empty proof and equal roots; a proof from the
 * empty tree proves nothing and is refused.
 */
export function verifyConsistency(size1: number, size2: number, root1: Uint8Array, root2: Uint8Array, proof: readonly Uint8Array[]): void {
  checkProofSizes("size1", size1);
  checkProofSizes("size2", size2);
  checkHash("root1", root1);
  checkHash("root2", root2);
  proof.forEach((p, i) => checkHash(`proof[${i}]`, p));
  if (size1 === 0) throw new ProofError("a consistency proof from the empty tree proves nothing");
  if (size2 < size1) throw new ProofError(`size2 (${size2}) is smaller than size1 (${size1}): the log cannot shrink`);
  if (size1 === size2) {
    if (proof.length !== 0) throw new ProofError(`trees of the same size need an empty proof, not ${proof.length} hashes`);
    if (!Buffer.from(root1).equals(root2)) throw new ProofError(`two trees of size ${size1} with different roots: the log forked`);
    return;
  }
  if (proof.length === 0) throw new ProofError(`an empty proof cannot show that size ${size1} is a prefix of size ${size2}`);
  // When size1 is a power of two, its root is the first node of the path.
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : proof;
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = Buffer.from(path[0]!);
  for (const c of path.slice(1)) {
    if (sn === 0) throw new ProofError(`the proof has ${proof.length} hashes: too many for sizes ${size1} and ${size2}`);
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new ProofError(`the proof has ${proof.length} hashes: too few for sizes ${size1} and ${size2}`);
  if (!fr.equals(root1)) throw new ProofError(`the proof does not lead to root1: the tree of size ${size1} is not a prefix of this log`);
  if (!sr.equals(root2)) throw new ProofError(`the proof does not lead to root2: the tree of size ${size2} does not extend the tree of size ${size1}`);
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(Math.log2(n));
}

/** Hashes of the subtrees a proof names, from a lookup of perfect-subtree hashes. */
export function assembleProof(ranges: readonly Range[], lookup: (node: NodeId) => Uint8Array): Buffer[] {
  return ranges.map((range) => foldRange(rangeNodes(range).map(lookup)));
}

/** Every perfect subtree a proof reads, without repeats. */
export function proofNodes(ranges: readonly Range[]): NodeId[] {
  const seen = new Map<string, NodeId>();
  for (const range of ranges) for (const node of rangeNodes(range)) seen.set(`${node.level}/${node.index}`, node);
  return [...seen.values()];
}

export interface StoredNode extends NodeId {
  readonly hash: Buffer;
}

/**
 * The right edge of a growing tree: the perfect subtrees of `rangeNodes({0, size})`. Each
 * appended leaf yields the perfect subtrees it completes, which is all a store needs to
 * keep (about two hashes per leaf), and the root of any size is a fold of the edge.
 */
export class CompactRange {
  private readonly edge: StoredNode[];
  private count: number;

  /** `edge` is the hashes of `rangeNodes({begin: 0, end: size})`, left to right. */
  constructor(size: number, edge: readonly StoredNode[]) {
    checkSize("size", size);
    const expected = rangeNodes({ begin: 0, end: size });
    if (edge.length !== expected.length || expected.some((node, i) => node.level !== edge[i]!.level || node.index !== edge[i]!.index)) {
      throw new RangeError(`the right edge of a tree of size ${size} is ${expected.length} perfect subtrees, not the ${edge.length} given`);
    }
    this.edge = [...edge];
    this.count = size;
  }

  get size(): number {
    return this.count;
  }

  /** Appends a leaf; returns the perfect subtrees it completes, the leaf itself first. */
  append(leaf: Buffer): StoredNode[] {
    const made: StoredNode[] = [{ level: 0, index: this.count, hash: leaf }];
    let node = made[0]!;
    while (this.edge.length > 0 && this.edge[this.edge.length - 1]!.level === node.level) {
      const left = this.edge.pop()!;
      node = { level: node.level + 1, index: left.index / 2, hash: nodeHash(left.hash, node.hash) };
      made.push(node);
    }
    this.edge.push(node);
    this.count += 1;
    return made;
  }

  root(): Buffer {
    return foldRange(this.edge.map((node) => node.hash));
  }

  nodes(): readonly StoredNode[] {
    return this.edge;
  }
}
