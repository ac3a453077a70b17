import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CompactRange, ProofError, assembleProof, consistencyRanges, foldRange, inclusionRanges, leafHash, rangeNodes, type NodeId } from "./merkle.js";
import { checkProofDocument, parseProofDocument, ProofFormatError, type ConsistencyProof, type InclusionProof } from "./proof.js";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

/** A log of `n` entries as the hub keeps it: every perfect subtree it completes. */
function tree(n: number) {
  const nodes = new Map<string, Buffer>();
  const range = new CompactRange(0, []);
  for (let i = 0; i < n; i++) for (const node of range.append(leafHash(Buffer.from(`{"entry":${i}}`)))) nodes.set(`${node.level}/${node.index}`, node.hash);
  const lookup = (node: NodeId) => nodes.get(`${node.level}/${node.index}`)!;
  const root = (size: number) => hex(foldRange(rangeNodes({ begin: 0, end: size }).map(lookup)));
  return {
    inclusion: (leafIndex: number, treeSize: number): InclusionProof => ({
      type: "inclusion",
      leafIndex,
      treeSize,
      leafHash: hex(lookup({ level: 0, index: leafIndex })),
      proof: assembleProof(inclusionRanges(leafIndex, treeSize), lookup).map(hex),
      root: root(treeSize),
    }),
    consistency: (size1: number, size2: number): ConsistencyProof => ({
      type: "consistency",
      size1,
      size2,
      root1: root(size1),
      root2: root(size2),
      proof: assembleProof(consistencyRanges(size1, size2), lookup).map(hex),
    }),
  };
}

const log = tree(100);

/** What `polity audit check-proof` does with a file's text. */
function check(text: string): void {
  checkProofDocument(parseProofDocument(JSON.parse(text)));
}

const withByteChanged = (h: string, at = 0): string => `${h.slice(0, at * 2)}${((parseInt(h.slice(at * 2, at * 2 + 2), 16) ^ 1) & 0xff).toString(16).padStart(2, "0")}${h.slice(at * 2 + 2)}`;

describe("standalone proof documents", () => {
  it("that a log produced verify after a round trip through JSON, for every kind and size (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 100 }), fc.nat(), (a, b, at) => {
        const [small, large] = a <= b ? [a, b] : [b, a];
        check(JSON.stringify(log.inclusion(at % large, large)));
        check(JSON.stringify(log.consistency(small, large)));
      }),
      { numRuns: 300 },
    );
  });

  it("read hex in either case, and keep it lowercase", () => {
    const proof = log.inclusion(5, 13);
    const upper = { ...proof, leafHash: proof.leafHash.toUpperCase(), root: proof.root.toUpperCase(), proof: proof.proof.map((p) => p.toUpperCase()) };
    expect(parseProofDocument(upper)).toEqual(proof);
    check(JSON.stringify(upper));
  });

  describe("that are malformed are refused as malformed (ProofFormatError), before any hashing", () => {
    const inclusion = log.inclusion(5, 13);
    const consistency = log.consistency(5, 13);
    const cases: [string, unknown, RegExp][] = [
      ["not an object", [inclusion], /a JSON object/],
      ["null", null, /a JSON object/],
      ["a string", "proof", /a JSON object/],
      ["no type", { ...inclusion, type: undefined }, /type must be "inclusion" or "consistency"/],
      ["an unknown type", { ...inclusion, type: "audit-path" }, /type must be/],
      ["an unknown field", { ...inclusion, comment: "from the hub" }, /unknown field "comment" in an inclusion proof/],
      ["a field of the other kind", { ...consistency, leafIndex: 3 }, /unknown field "leafIndex"/],
      ["a missing leafHash", { type: "inclusion", leafIndex: 5, treeSize: 13, proof: inclusion.proof, root: inclusion.root }, /needs leafHash/],
      ["a missing proof", { type: "consistency", size1: 5, size2: 13, root1: consistency.root1, root2: consistency.root2 }, /needs proof/],
      ["a fractional index", { ...inclusion, leafIndex: 1.5 }, /leafIndex must be a whole number/],
      ["a negative size", { ...inclusion, treeSize: -13 }, /treeSize must be a whole number/],
      ["a size as text", { ...consistency, size2: "13" }, /size2 must be a whole number/],
      ["an unsafe integer", { ...consistency, size2: 2 ** 53 }, /size2 must be a whole number/],
      ["a proof that is not a list", { ...inclusion, proof: inclusion.proof.join(",") }, /proof must be an array/],
      ["a hash that is not hex", { ...inclusion, root: `zz${inclusion.root.slice(2)}` }, /root must be a string of hex digit pairs/],
      ["a hash of an odd number of digits", { ...inclusion, leafHash: inclusion.leafHash.slice(1) }, /leafHash must be a string of hex digit pairs/],
      ["a hash in base64", { ...consistency, root1: Buffer.from(consistency.root1, "hex").toString("base64") }, /root1 must be/],
      ["a proof hash that is a number", { ...inclusion, proof: [1, ...inclusion.proof.slice(1)] }, /proof\[0\] must be/],
      // A hash of another length is not a SHA-256 hash: the file is malformed, whatever else it holds.
      ["a hash of 31 bytes", { ...inclusion, leafHash: inclusion.leafHash.slice(2) }, /leafHash must be a SHA-256 hash of 32 bytes \(64 hex digits\), not 31 bytes/],
      ["an empty root", { ...inclusion, root: "" }, /root must be a SHA-256 hash of 32 bytes \(64 hex digits\), not 0 bytes/],
      ["a proof hash of 33 bytes", { ...consistency, proof: [`${consistency.proof[0]!}00`, ...consistency.proof.slice(1)] }, /proof\[0\] must be a SHA-256 hash of 32 bytes \(64 hex digits\), not 33 bytes/],
    ];
    for (const [what, value, message] of cases) {
      it(`${what}`, () => {
        expect(() => parseProofDocument(value)).toThrow(ProofFormatError);
        expect(() => parseProofDocument(value)).toThrow(message);
      });
    }
  });

  describe("that are well-formed but do not hold are refused as invalid (ProofError), saying why", () => {
    const inclusion = log.inclusion(5, 13);
    const consistency = log.consistency(5, 13);
    const cases: [string, InclusionProof | ConsistencyProof, RegExp][] = [
      ["a byte of the leaf hash changed", { ...inclusion, leafHash: withByteChanged(inclusion.leafHash) }, /leaf 5 is not in this tree/],
      ["a byte of a proof hash changed", { ...inclusion, proof: [withByteChanged(inclusion.proof[0]!, 31), ...inclusion.proof.slice(1)] }, /is not in this tree/],
      ["a byte of the root changed", { ...inclusion, root: withByteChanged(inclusion.root, 7) }, /is not in this tree/],
      ["the wrong leaf index", { ...inclusion, leafIndex: 6 }, /is not in this tree/],
      ["an index outside the tree", { ...inclusion, leafIndex: 13 }, /outside a tree of size 13/],
      ["an extra hash", { ...inclusion, proof: [...inclusion.proof, inclusion.root] }, /too many/],
      ["a hash left out", { ...inclusion, proof: inclusion.proof.slice(0, -1) }, /too few/],
      ["a consistency proof from size 0", { ...consistency, size1: 0, root1: hex(foldRange([])) }, /from the empty tree/],
      ["a consistency proof to a smaller tree", { ...consistency, size1: 13, size2: 5, root1: consistency.root2, root2: consistency.root1 }, /cannot shrink/],
      ["a consistency proof with root1 changed", { ...consistency, root1: withByteChanged(consistency.root1) }, /root1/],
      ["a consistency proof with root2 changed", { ...consistency, root2: withByteChanged(consistency.root2) }, /root2/],
      ["two trees of one size with different roots", { ...log.consistency(13, 13), root2: consistency.root1 }, /forked/],
    ];
    for (const [what, doc, message] of cases) {
      it(`${what}`, () => {
        const parsed = parseProofDocument(JSON.parse(JSON.stringify(doc)));
        expect(() => checkProofDocument(parsed)).toThrow(ProofError);
        expect(() => checkProofDocument(parsed)).toThrow(message);
      });
    }
  });
});
