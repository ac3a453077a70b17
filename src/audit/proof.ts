/**
 * Standalone proofs, as JSON anyone can be handed and check with no hub:
 *
 *     {"type": "inclusion", "leafIndex": n, "treeSize": n, "leafHash": hex, "proof": [hex, …], "root": hex}
 *     {"type": "consistency", "size1": n, "size2": n, "root1": hex, "root2": hex, "proof": [hex, …]}
 *
 * Parsing tells a malformed document (ProofFormatError) from a well-formed proof that
 * does not hold (ProofError from verification).
 */
import { verifyConsistency, verifyInclusion } from "./merkle.js";

export interface InclusionProof {
  readonly type: "inclusion";
  readonly leafIndex: number;
  readonly treeSize: number;
  readonly leafHash: string;
  readonly proof: readonly string[];
  readonly root: string;
}

export interface ConsistencyProof {
  readonly type: "consistency";
  readonly size1: number;
  readonly size2: number;
  readonly root1: string;
  readonly root2: string;
  readonly proof: readonly string[];
}

export type ProofDocument = InclusionProof | ConsistencyProof;

export class ProofFormatError extends Error {
  override readonly name = "ProofFormatError";
}

const FIELDS = {
  inclusion: ["type", "leafIndex", "treeSize", "leafHash", "proof", "root"],
  consistency: ["type", "size1", "size2", "root1", "root2", "proof"],
} as const;

function whole(v: Record<string, unknown>, field: string): number {
  const n = v[field];
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) throw new ProofFormatError(`${field} must be a whole number ≥ 0, not ${JSON.stringify(n)}`);
  return n;
}

/** A SHA-256 hash: 32 bytes, 64 hex digits. Anything else is a malformed document, not a proof that fails. */
function hex(value: unknown, field: string): string {
  if (typeof value !== "string" || !/^([0-9a-fA-F]{2})*$/.test(value)) throw new ProofFormatError(`${field} must be a string of hex digit pairs`);
  if (value.length !== 64) throw new ProofFormatError(`${field} must be a SHA-256 hash of 32 bytes (64 hex digits), not ${value.length / 2} bytes`);
  return value.toLowerCase();
}

export function parseProofDocument(value: unknown): ProofDocument {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ProofFormatError("a proof is a JSON object");
  const v = value as Record<string, unknown>;
  if (v.type !== "inclusion" && v.type !== "consistency") throw new ProofFormatError(`type must be "inclusion" or "consistency", not ${JSON.stringify(v.type)}`);
  const allowed: readonly string[] = FIELDS[v.type];
  const what = v.type === "inclusion" ? "an inclusion proof" : "a consistency proof";
  for (const key of Object.keys(v)) if (!allowed.includes(key)) throw new ProofFormatError(`unknown field ${JSON.stringify(key)} in ${what}`);
  for (const key of allowed) if (!Object.hasOwn(v, key)) throw new ProofFormatError(`${what} needs ${key}`);
  if (!Array.isArray(v.proof)) throw new ProofFormatError("proof must be an array of hex hashes");
  const proof = v.proof.map((p, i) => hex(p, `proof[${i}]`));
  if (v.type === "inclusion") {
    return { type: "inclusion", leafIndex: whole(v, "leafIndex"), treeSize: whole(v, "treeSize"), leafHash: hex(v.leafHash, "leafHash"), proof, root: hex(v.root, "root") };
  }
  return { type: "consistency", size1: whole(v, "size1"), size2: whole(v, "size2"), root1: hex(v.root1, "root1"), root2: hex(v.root2, "root2"), proof };
}

/** Verifies a proof document; throws ProofError saying why it does not hold. */
export function checkProofDocument(doc: ProofDocument): void {
  const bytes = (h: string) => Buffer.from(h, "hex");
  if (doc.type === "inclusion") verifyInclusion(doc.leafIndex, doc.treeSize, bytes(doc.leafHash), doc.proof.map(bytes), bytes(doc.root));
  else verifyConsistency(doc.size1, doc.size2, bytes(doc.root1), bytes(doc.root2), doc.proof.map(bytes));
}
