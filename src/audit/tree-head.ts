/**
 * Signed tree heads: the log's size and root at a time, signed by the hub's log key
 * (Ed25519). The signed bytes are a C2SP checkpoint (https://c2sp.org/tlog-checkpoint),
 * the format of Go's checksum database and Sigstore's Rekor:
 *
 *     <origin>\n<tree size, decimal>\n<root hash, base64>\ntime <RFC 3339 UTC, ms>\n
 *
 * and the whole head is a C2SP signed note: that text, a blank line, and
 * `— <origin> <base64(key hash (4 bytes) || signature (64 bytes))>\n`, where the key hash
 * is the first 4 bytes of SHA-256(origin || "\n" || 0x01 || the raw 32-byte public key).
 * A verifier needs SHA-256, base64 and Ed25519, nothing of Polity's.
 */
import { createHash, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import { HASH_SIZE } from "./merkle.js";

export interface TreeHead {
  /** The log's name: `<federation>/audit`. */
  readonly origin: string;
  readonly treeSize: number;
  /** Hex. */
  readonly rootHash: string;
  /** RFC 3339, UTC, milliseconds. */
  readonly time: string;
}

export interface SignedTreeHead extends TreeHead {
  /** Hex of the 4-byte key hash. */
  readonly keyId: string;
  /** Base64 of the 64-byte Ed25519 signature over `checkpoint(head)`. */
  readonly signature: string;
}

export class TreeHeadError extends Error {
  override readonly name = "TreeHeadError";
}

const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const ORIGIN = /^[\x21-\x7e]{1,255}$/;

/** The signed bytes. */
export function checkpoint(head: TreeHead): string {
  return `${head.origin}\n${head.treeSize}\n${Buffer.from(head.rootHash, "hex").toString("base64")}\ntime ${head.time}\n`;
}

function rawPublicKey(publicKey: KeyObject): Buffer {
  const der = publicKey.export({ type: "spki", format: "der" });
  // An Ed25519 SubjectPublicKeyInfo is a fixed 12-byte prefix and the 32-byte key.
  if (publicKey.asymmetricKeyType !== "ed25519" || der.length !== 44) throw new TreeHeadError("the log key must be an Ed25519 key");
  return der.subarray(12);
}

/** The 4-byte key hash of a C2SP signed note, as hex. */
export function noteKeyId(origin: string, publicKey: KeyObject): string {
  return createHash("sha256").update(origin).update("\n").update(Buffer.from([1])).update(rawPublicKey(publicKey)).digest().subarray(0, 4).toString("hex");
}

/** The verifier key in the signed-note text form: `<origin>+<key hash>+<base64(0x01 || key)>`. */
export function noteVerifierKey(origin: string, publicKey: KeyObject): string {
  return `${origin}+${noteKeyId(origin, publicKey)}+${Buffer.concat([Buffer.from([1]), rawPublicKey(publicKey)]).toString("base64")}`;
}

export function signTreeHead(head: TreeHead, privateKey: KeyObject, keyId = noteKeyId(head.origin, createPublicKey(privateKey))): SignedTreeHead {
  checkTreeHead(head);
  const signature = sign(null, Buffer.from(checkpoint(head), "utf8"), privateKey).toString("base64");
  return { origin: head.origin, treeSize: head.treeSize, rootHash: head.rootHash, time: head.time, keyId, signature };
}

/** The head as a C2SP signed note. */
export function signedNote(head: SignedTreeHead): string {
  const sig = Buffer.concat([Buffer.from(head.keyId, "hex"), Buffer.from(head.signature, "base64")]).toString("base64");
  return `${checkpoint(head)}\n\u2014 ${head.origin} ${sig}\n`;
}

function checkTreeHead(head: TreeHead): void {
  if (typeof head.origin !== "string" || !ORIGIN.test(head.origin)) throw new TreeHeadError("origin must be 1 to 255 printable characters without spaces");
  if (!Number.isSafeInteger(head.treeSize) || head.treeSize < 0) throw new TreeHeadError(`treeSize must be a whole number ≥ 0, not ${JSON.stringify(head.treeSize)}`);
  if (typeof head.rootHash !== "string" || !/^[0-9a-f]*$/.test(head.rootHash) || head.rootHash.length !== HASH_SIZE * 2) {
    throw new TreeHeadError(`rootHash must be ${HASH_SIZE * 2} lowercase hex digits`);
  }
  // A real instant, spelt as toISOString spells it: no February 30th, no 24:00.
  if (typeof head.time !== "string" || !TIME.test(head.time) || Number.isNaN(Date.parse(head.time)) || new Date(head.time).toISOString() !== head.time) {
    throw new TreeHeadError(`time must be an RFC 3339 UTC time with milliseconds, such as 2026-11-25T06:00:00.000Z`);
  }
}

/**
 * Checks a signed tree head's form and signature; returns it with only its own fields.
 * Throws TreeHeadError saying what is wrong.
 */
export function verifyTreeHead(value: unknown, publicKey: KeyObject): SignedTreeHead {
  const head = parseSignedTreeHead(value);
  const expected = noteKeyId(head.origin, publicKey);
  if (head.keyId !== expected) throw new TreeHeadError(`the tree head is signed by key ${head.keyId}, not the log key ${expected}`);
  const signature = Buffer.from(head.signature, "base64");
  if (signature.length !== 64 || !verify(null, Buffer.from(checkpoint(head), "utf8"), publicKey, signature)) {
    throw new TreeHeadError(`the signature of the tree head of size ${head.treeSize} does not verify with the log key: it was not signed by this log, or was changed`);
  }
  return head;
}

/** A signed tree head's shape, strictly (no verification). */
export function parseSignedTreeHead(value: unknown): SignedTreeHead {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new TreeHeadError("a tree head is a JSON object");
  const v = value as Record<string, unknown>;
  const head = { origin: v.origin, treeSize: v.treeSize, rootHash: v.rootHash, time: v.time, keyId: v.keyId, signature: v.signature } as SignedTreeHead;
  checkTreeHead(head);
  if (typeof head.keyId !== "string" || !/^[0-9a-f]{8}$/.test(head.keyId)) throw new TreeHeadError("keyId must be 8 lowercase hex digits");
  // Canonical base64 only: one spelling per signature, so a head cannot be changed and still verify.
  if (typeof head.signature !== "string" || !/^[A-Za-z0-9+/]{86}==$/.test(head.signature) || Buffer.from(head.signature, "base64").toString("base64") !== head.signature) {
    throw new TreeHeadError("signature must be the base64 of 64 bytes");
  }
  return head;
}
