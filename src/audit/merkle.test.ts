import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CompactRange,
  EMPTY_ROOT,
  ProofError,
  assembleProof,
  consistencyRanges,
  foldRange,
  inclusionRanges,
  leafHash,
  nodeHash,
  proofNodes,
  rangeNodes,
  rootOf,
  verifyConsistency,
  verifyInclusion,
  type NodeId,
} from "./merkle.js";

const VECTORS = resolve(dirname(fileURLToPath(import.meta.url)), "../../../shared/vectors/merkle-reference.json");
const HAVE_VECTORS = existsSync(VECTORS);
if (!HAVE_VECTORS) console.warn(`skipping the RFC 6962 reference vectors: ${VECTORS} does not exist (no ../shared beside the project)`);

interface Reference {
  hasherVectors: { kind: string; dataHex?: string; leftHex?: string; rightHex?: string; want: string }[];
  tree: { leavesHex: string[]; nodeHashesByLevel: string[][]; rootsBySize: string[] };
  referenceInclusionProofs: { index: number; size: number; proof: string[] }[];
  referenceConsistencyProofs: { size1: number; size2: number; proof: string[] }[];
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const unhex = (s: string): Buffer => Buffer.from(s, "hex");

/** A store of every perfect subtree of a tree, as the hub keeps them. */
function buildTree(leaves: readonly Buffer[]): { size: number; lookup: (node: NodeId) => Buffer; root: (size: number) => Buffer } {
  const nodes = new Map<string, Buffer>();
  const range = new CompactRange(0, []);
  for (const leaf of leaves) for (const node of range.append(leaf)) nodes.set(`${node.level}/${node.index}`, node.hash);
  const lookup = (node: NodeId): Buffer => {
    const hash = nodes.get(`${node.level}/${node.index}`);
    if (hash === undefined) throw new Error(`no node ${node.level}/${node.index}`);
    return hash;
  };
  return { size: leaves.length, lookup, root: (size) => foldRange(rangeNodes({ begin: 0, end: size }).map(lookup)) };
}

const leavesOf = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`entry ${i}`)));

describe.skipIf(!HAVE_VECTORS)(`the RFC 6962 reference tree${HAVE_VECTORS ? "" : " (skipped: ../shared/vectors is absent)"}`, () => {
  const reference = (HAVE_VECTORS ? JSON.parse(readFileSync(VECTORS, "utf8")) : undefined) as Reference;

  it("hashes leaves, nodes and the empty tree as the reference does", () => {
    for (const vector of reference.hasherVectors) {
      const got =
        vector.kind === "emptyRoot" ? EMPTY_ROOT : vector.kind === "leaf" ? leafHash(unhex(vector.dataHex!)) : nodeHash(unhex(vector.leftHex!), unhex(vector.rightHex!));
      expect(hex(got), vector.kind).toBe(vector.want);
    }
  });

  it("gives the reference root for every size from 0 to 8, by the compact range and by the reference computation", () => {
    const leaves = reference.tree.leavesHex.map((d) => leafHash(unhex(d)));
    const tree = buildTree(leaves);
    reference.tree.rootsBySize.forEach((want, size) => {
      expect(hex(rootOf(leaves.slice(0, size))), `size ${size}`).toBe(want);
      expect(hex(tree.root(size)), `size ${size}`).toBe(want);
    });
    reference.tree.nodeHashesByLevel.forEach((level, l) => level.forEach((want, i) => expect(hex(tree.lookup({ level: l, index: i }))).toBe(want)));
  });

  it("produces the reference inclusion proofs, and each verifies against the reference root", () => {
    const leaves = reference.tree.leavesHex.map((d) => leafHash(unhex(d)));
    const tree = buildTree(leaves);
    for (const vector of reference.referenceInclusionProofs) {
      const proof = assembleProof(inclusionRanges(vector.index, vector.size), tree.lookup);
      expect(proof.map(hex), `leaf ${vector.index} of ${vector.size}`).toEqual(vector.proof);
      verifyInclusion(vector.index, vector.size, leaves[vector.index]!, vector.proof.map(unhex), unhex(reference.tree.rootsBySize[vector.size]!));
    }
  });

  it("produces the reference consistency proofs, and each verifies between the reference roots", () => {
    const leaves = reference.tree.leavesHex.map((d) => leafHash(unhex(d)));
    const tree = buildTree(leaves);
    for (const vector of reference.referenceConsistencyProofs) {
      const proof = assembleProof(consistencyRanges(vector.size1, vector.size2), tree.lookup);
      expect(proof.map(hex), `${vector.size1} → ${vector.size2}`).toEqual(vector.proof);
      const roots = reference.tree.rootsBySize;
      verifyConsistency(vector.size1, vector.size2, unhex(roots[vector.size1]!), unhex(roots[vector.size2]!), vector.proof.map(unhex));
    }
  });
});

describe("inclusion proofs", () => {
  const leaves = leavesOf(300);
  const tree = buildTree(leaves);

  it("verify for every leaf of every tree size up to 300, and the compact range's root is the reference root", () => {
    for (let size = 1; size <= 300; size++) {
      const root = tree.root(size);
      expect(hex(root)).toBe(hex(rootOf(leaves.slice(0, size))));
      for (let index = 0; index < size; index++) {
        const proof = assembleProof(inclusionRanges(index, size), tree.lookup);
        verifyInclusion(index, size, leaves[index]!, proof, root);
      }
    }
  });

  it("read at most two perfect subtrees per level of the tree: O(log n)", () => {
    for (const size of [1, 2, 3, 255, 256, 257, 1_000_000, 2 ** 40 + 12345]) {
      for (const index of [0, Math.floor(size / 2), size - 1]) {
        expect(proofNodes(inclusionRanges(index, size)).length).toBeLessThanOrEqual(2 * Math.ceil(Math.log2(size + 1)));
      }
    }
  });

  it("fail when any hash, the index or the root is changed, or a hash is added or removed (the size is bound by the signed tree head, not the path)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.nat(), fc.nat(), fc.nat({ max: 255 }), (size, at, which, bit) => {
        const index = at % size;
        const root = tree.root(size);
        const proof = assembleProof(inclusionRanges(index, size), tree.lookup);
        const fails = (mutate: () => void): void => expect(mutate).toThrow(ProofError);
        if (proof.length > 0) {
          const flipped = proof.map((p) => Buffer.from(p));
          const target = flipped[which % proof.length]!;
          target[bit % 32] = target[bit % 32]! ^ (1 << (bit % 8));
          fails(() => verifyInclusion(index, size, leaves[index]!, flipped, root));
          fails(() => verifyInclusion(index, size, leaves[index]!, proof.slice(1), root));
        }
        fails(() => verifyInclusion(index, size, leaves[index]!, [...proof, leaves[0]!], root));
        fails(() => verifyInclusion(index, size, leafHash(Buffer.from("forged")), proof, root));
        fails(() => verifyInclusion(index, size, leaves[index]!, proof, nodeHash(root, root)));
        if (size > 1) fails(() => verifyInclusion((index + 1) % size, size, leaves[index]!, proof, root));
      }),
      { numRuns: 500 },
    );
  });

  it("refuse malformed proofs: an index outside the tree, hashes of the wrong size, negative or fractional numbers", () => {
    const root = tree.root(8);
    const proof = assembleProof(inclusionRanges(3, 8), tree.lookup);
    expect(() => verifyInclusion(8, 8, leaves[3]!, proof, root)).toThrow(/outside a tree of size 8/);
    expect(() => verifyInclusion(0, 0, leaves[0]!, [], EMPTY_ROOT)).toThrow(/outside a tree of size 0/);
    expect(() => verifyInclusion(3, 8, leaves[3]!.subarray(0, 31), proof, root)).toThrow(/leaf hash is 31 bytes/);
    expect(() => verifyInclusion(3, 8, leaves[3]!, [proof[0]!, Buffer.concat([proof[1]!, Buffer.from([0])]), proof[2]!], root)).toThrow(/proof\[1\] is 33 bytes/);
    expect(() => verifyInclusion(3, 8, leaves[3]!, proof, root.subarray(1))).toThrow(/root is 31 bytes/);
    expect(() => verifyInclusion(-1, 8, leaves[3]!, proof, root)).toThrow(/whole number/);
    expect(() => verifyInclusion(1.5, 8, leaves[3]!, proof, root)).toThrow(/whole number/);
    expect(() => verifyInclusion(3, 8, leaves[3]!, [], root)).toThrow(/too few/);
  });
});

describe("consistency proofs", () => {
  const leaves = leavesOf(200);
  const tree = buildTree(leaves);

  it("verify between every pair of tree sizes up to 200", () => {
    for (let size2 = 1; size2 <= 200; size2++) {
      const root2 = tree.root(size2);
      for (let size1 = 1; size1 <= size2; size1++) {
        const proof = assembleProof(consistencyRanges(size1, size2), tree.lookup);
        verifyConsistency(size1, size2, tree.root(size1), root2, proof);
      }
    }
  });

  it("fail when any hash, size1 or either root is changed, or a hash is added or removed", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 200 }), fc.nat(), fc.nat({ max: 255 }), (a, b, which, bit) => {
        const [size1, size2] = a <= b ? [a, b] : [b, a];
        const root1 = tree.root(size1);
        const root2 = tree.root(size2);
        const proof = assembleProof(consistencyRanges(size1, size2), tree.lookup);
        const fails = (mutate: () => void): void => expect(mutate).toThrow(ProofError);
        if (proof.length > 0) {
          const flipped = proof.map((p) => Buffer.from(p));
          const target = flipped[which % proof.length]!;
          target[bit % 32] = target[bit % 32]! ^ (1 << (bit % 8));
          fails(() => verifyConsistency(size1, size2, root1, root2, flipped));
          fails(() => verifyConsistency(size1, size2, root1, root2, proof.slice(0, -1)));
        }
        fails(() => verifyConsistency(size1, size2, root1, root2, [...proof, leaves[0]!]));
        fails(() => verifyConsistency(size1, size2, nodeHash(root1, root1), root2, proof));
        fails(() => verifyConsistency(size1, size2, root1, nodeHash(root2, root2), proof));
        if (size1 < size2) fails(() => verifyConsistency(size1 + 1, size2, root1, root2, proof));
      }),
      { numRuns: 500 },
    );
  });

  it("refuse a proof from the empty tree, a shrinking log, hashes of the wrong size and a fork of equal size", () => {
    const proof = assembleProof(consistencyRanges(3, 7), tree.lookup);
    expect(() => verifyConsistency(0, 7, EMPTY_ROOT, tree.root(7), [])).toThrow(/from the empty tree/);
    expect(() => verifyConsistency(0, 7, EMPTY_ROOT, tree.root(7), proof)).toThrow(/from the empty tree/);
    expect(() => verifyConsistency(7, 3, tree.root(7), tree.root(3), proof)).toThrow(/cannot shrink/);
    expect(() => verifyConsistency(3, 7, tree.root(3), tree.root(7), [proof[0]!.subarray(0, 16), ...proof.slice(1)])).toThrow(/proof\[0\] is 16 bytes/);
    expect(() => verifyConsistency(3, 7, tree.root(3), tree.root(7), [])).toThrow(/empty proof/);
    expect(() => verifyConsistency(5, 5, tree.root(5), tree.root(6), [])).toThrow(/forked/);
    expect(() => verifyConsistency(5, 5, tree.root(5), tree.root(5), proof)).toThrow(/empty proof/);
    expect(() => consistencyRanges(0, 4)).toThrow(/empty tree/);
  });
});

describe("the compact range", () => {
  it("yields each perfect subtree exactly once, about two per leaf, and resumes from its stored edge", () => {
    const leaves = leavesOf(1000);
    const whole = new CompactRange(0, []);
    let stored = 0;
    for (const leaf of leaves.slice(0, 600)) stored += whole.append(leaf).length;
    const resumed = new CompactRange(600, whole.nodes());
    for (const leaf of leaves.slice(600)) {
      stored += whole.append(leaf).length;
      resumed.append(leaf);
    }
    expect(stored).toBe(1000 + 500 + 250 + 125 + 62 + 31 + 15 + 7 + 3 + 1);
    expect(hex(resumed.root())).toBe(hex(rootOf(leaves)));
    expect(() => new CompactRange(600, whole.nodes())).toThrow(/right edge/);
  });
});
