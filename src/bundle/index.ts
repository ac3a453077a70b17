/**
 * Bundles: what an agent enforces, signed so that any cache or mirror may serve them.
 *
 * In the spirit of The Update Framework, a bundle is small signed metadata and a target:
 * the metadata names the cluster, a monotonic version, an expiry and the SHA-256 of the
 * target, the cluster's effective policy set in canonical bytes, and, for a cluster with
 * facts, those facts and the hash of the manifests its intents make under them. (Revoked certificates are
 * refused by the hubs, which read them on every request; bundles carry no list of them.)
 * On the wire and on disk a bundle is one file:
 *
 *     {"signatures":[{"keyId":…,"sig":…}],"signed":{…}}\n<canonical effective set>
 *
 * The first line is canonical JSON (RFC 8785); the signature (Ed25519) is over the
 * canonical bytes of `signed`. An agent accepts a bundle only if the signature verifies
 * with a key its verified root allows for the agent's own region (src/trust; or, for an agent
 * enrolled before roots, the key it pinned at enrolment), the metadata is for its own cluster,
 * region and federation (the region checked first: a region's key may sign for it alone), the version is not older than the one it holds (no rollback), the bundle
 * has not expired when it arrives (no freeze), and the target's hash matches.
 *
 * Pure: keys, time and the version held are passed in.
 */
import { createHash, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import { canonicalJson, contentHash, type Json } from "../canonical/index.js";

export const BUNDLE_TYPE = "polity.dev/bundle";
export const BUNDLE_MEDIA_TYPE = "application/vnd.polity.bundle";

/**
 * The largest bundle there is: the hub refuses a change that would make a bigger one, and
 * an agent reads no more of an answer (what is larger is not a bundle of its hub's).
 */
export const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;

export interface BundleMetadata {
  readonly type: typeof BUNDLE_TYPE;
  readonly specVersion: 1;
  readonly federation: string;
  readonly region: string;
  readonly cluster: string;
  /** Monotonic per cluster: every new bundle has a higher version. */
  readonly version: number;
  readonly issuedAt: string;
  /** An agent refuses a bundle offered after this time (it keeps enforcing the one it holds). */
  readonly expires: string;
  /** `sha256:<hex>` of the target: the canonical effective policy set. */
  readonly targetHash: string;
  readonly targetLength: number;
  /**
   * The cluster's facts the hub checked its intents against (declared at registration,
   * reported by its agent), in canonical form; absent for a cluster with none. Per cluster,
   * so they live here, not in the target that clusters with the same set share: the agent
   * renders its manifests from the verified target and these signed facts.
   */
  readonly facts?: Readonly<Record<string, Json>>;
  /** The hash `renderCluster` gives for the target and `facts`: the agent applies nothing whose own rendering differs. */
  readonly manifestsHash?: string;
  /**
   * The version of the federation's root (src/trust) the signing key is listed in: an agent
   * whose root is older fetches the roots between and verifies each before this bundle.
   * Absent in bundles from before roots (verified against the pinned key only).
   */
  readonly rootVersion?: number;
}

export interface Envelope {
  readonly signatures: readonly { readonly keyId: string; readonly sig: string }[];
  readonly signed: BundleMetadata;
}

export interface Bundle {
  readonly envelope: Envelope;
  /** The canonical effective policy set. */
  readonly target: Buffer;
}

export type BundleProblem =
  | "malformed"
  | "bad-signature"
  | "untrusted-key"
  | "wrong-cluster"
  | "wrong-region"
  | "rollback"
  | "equivocation"
  | "expired"
  | "target-mismatch";

export class BundleError extends Error {
  override readonly name = "BundleError";
  constructor(
    readonly problem: BundleProblem,
    message: string,
  ) {
    super(message);
  }
}

/** Key ids already derived, per key object (a KeyObject is immutable): exporting a key costs more than verifying a signature. */
const keyIds = new WeakMap<KeyObject, string>();

/** The id of a signing key: SHA-256 (hex) of its SubjectPublicKeyInfo. */
export function keyIdOf(publicKey: KeyObject): string {
  let id = keyIds.get(publicKey);
  if (id === undefined) keyIds.set(publicKey, (id = createHash("sha256").update(publicKey.export({ type: "spki", format: "der" })).digest("hex")));
  return id;
}

/** The name src/hub/bundles.ts imports the one content hash by; new code imports contentHash. */
export { contentHash as sha256Hash } from "../canonical/index.js";

/** Signs bundle metadata; `keyId` saves deriving it again for every bundle of a batch. */
export function signBundle(metadata: Omit<BundleMetadata, "type" | "specVersion">, target: Buffer, privateKey: KeyObject, keyId = keyIdOf(createPublicKey(privateKey))): Bundle {
  return { envelope: signMetadata(metadata, privateKey, keyId), target };
}

/**
 * The signed metadata alone: what a cluster's bundle adds to a target that clusters with
 * the same effective set share (the hub signs one per cluster, and holds each target once).
 */
export function signMetadata(metadata: Omit<BundleMetadata, "type" | "specVersion">, privateKey: KeyObject, keyId = keyIdOf(createPublicKey(privateKey))): Envelope {
  const signed: BundleMetadata = { type: BUNDLE_TYPE, specVersion: 1, ...metadata };
  const sig = sign(null, Buffer.from(canonicalJson(signed), "utf8"), privateKey).toString("base64");
  return { signatures: [{ keyId, sig }], signed };
}

export function encodeBundle(bundle: Bundle): Buffer {
  return Buffer.concat([Buffer.from(`${canonicalJson(bundle.envelope)}\n`, "utf8"), bundle.target]);
}

/** Splits and parses a bundle file; throws BundleError("malformed") on anything else. */
export function decodeBundle(bytes: Uint8Array): Bundle {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const newline = buffer.indexOf(10);
  if (newline < 0) throw new BundleError("malformed", "not a bundle: no metadata line");
  let envelope: unknown;
  try {
    envelope = JSON.parse(buffer.subarray(0, newline).toString("utf8"));
  } catch {
    throw new BundleError("malformed", "not a bundle: its metadata is not JSON");
  }
  const e = envelope as Partial<Envelope> | null;
  const s = e?.signed as Partial<BundleMetadata> | undefined;
  if (
    typeof e !== "object" ||
    e === null ||
    !Array.isArray(e.signatures) ||
    typeof s !== "object" ||
    s === null ||
    s.type !== BUNDLE_TYPE ||
    s.specVersion !== 1 ||
    typeof s.cluster !== "string" ||
    typeof s.federation !== "string" ||
    typeof s.region !== "string" ||
    !Number.isSafeInteger(s.version) ||
    typeof s.expires !== "string" ||
    typeof s.issuedAt !== "string" ||
    typeof s.targetHash !== "string" ||
    !Number.isSafeInteger(s.targetLength) ||
    (s.facts !== undefined && (typeof s.facts !== "object" || s.facts === null || Array.isArray(s.facts))) ||
    (s.manifestsHash !== undefined && typeof s.manifestsHash !== "string") ||
    (s.rootVersion !== undefined && (!Number.isSafeInteger(s.rootVersion) || s.rootVersion < 1))
  ) {
    throw new BundleError("malformed", "not a bundle: its metadata lacks required fields");
  }
  return { envelope: e as Envelope, target: buffer.subarray(newline + 1) };
}

export interface Trust {
  /** The hub's bundle-signing public key, pinned at enrolment (agents from before roots). */
  readonly publicKey?: KeyObject;
  /**
   * Which key may sign a bundle for a region, and its public key: what the agent's verified
   * root allows (src/trust rootAuthorizer), when the agent holds one. Takes precedence over
   * `publicKey`.
   */
  readonly authorize?: (keyId: string, region: string) => { readonly key: KeyObject } | { readonly reason: string };
  readonly federation: string;
  /**
   * The agent's own region, from its SPIFFE ID. A bundle must name it, and its signer is
   * authorized for it: never for the region the bundle claims, which its signer chose.
   */
  readonly region: string;
  readonly cluster: string;
}

/** The key that signed `bundle` and may sign it under `trust`; throws BundleError("untrusted-key") otherwise. */
function signerOf(envelope: Envelope, trust: Trust): { keyId: string; key: KeyObject; sig: string } {
  if (trust.authorize !== undefined) {
    const reasons: string[] = [];
    for (const signature of envelope.signatures) {
      const allowed = trust.authorize(signature.keyId, trust.region);
      if ("key" in allowed) return { keyId: signature.keyId, key: allowed.key, sig: signature.sig };
      reasons.push(allowed.reason);
    }
    throw new BundleError("untrusted-key", `the bundle is not signed by a key this agent's root allows for its region ${trust.region}: ${reasons.join("; ") || "no signature"}`);
  }
  if (trust.publicKey === undefined) throw new BundleError("untrusted-key", "this agent trusts no bundle key");
  const keyId = keyIdOf(trust.publicKey);
  const signature = envelope.signatures.find((s) => s.keyId === keyId);
  if (signature === undefined) throw new BundleError("untrusted-key", "the bundle is not signed by the key this agent pinned at enrolment");
  return { keyId, key: trust.publicKey, sig: signature.sig };
}

/** The id of the key that signed a bundle verified under `trust`. */
export function signerKeyId(envelope: Envelope, trust: Trust): string {
  return signerOf(envelope, trust).keyId;
}

export interface Held {
  readonly version: number;
  readonly targetHash: string;
}

/**
 * Verifies a bundle for a cluster. `held` is the bundle the agent already enforces (for
 * rollback); `now` is the time it is offered (for freeze): pass undefined to verify a
 * bundle loaded from the agent's own disk, which is checked for everything but expiry.
 * `targetHash`: the target's content hash when the caller has computed it already (a hub
 * judging many bundles that share one target hashes it once); computed here otherwise.
 */
export function verifyBundle(bundle: Bundle, trust: Trust, held: Held | undefined, now: Date | undefined, targetHash = contentHash(bundle.target)): BundleMetadata {
  const signed = bundle.envelope.signed;
  // Before any key is asked: a region's delegated key may sign for its region only, so a
  // bundle naming another region is not this agent's, whoever signed it.
  if (signed.region !== trust.region) {
    throw new BundleError("wrong-region", `the bundle is for region ${signed.region}, not this agent's region ${trust.region}`);
  }
  const signature = signerOf(bundle.envelope, trust);
  let valid = false;
  try {
    const sig = Buffer.from(signature.sig, "base64");
    // One spelling per signature: base64 decoding ignores stray characters and the unused
    // bits of the last one, which would let an altered file pass as the same bundle.
    valid = sig.toString("base64") === signature.sig && verify(null, Buffer.from(canonicalJson(signed), "utf8"), signature.key, sig);
  } catch {
    valid = false;
  }
  if (!valid) throw new BundleError("bad-signature", "the bundle's signature does not verify: it was altered or not signed by the hub");
  if (signed.federation !== trust.federation || signed.cluster !== trust.cluster) {
    throw new BundleError("wrong-cluster", `the bundle is for cluster ${signed.cluster} of federation ${signed.federation}, not ${trust.cluster} of ${trust.federation}`);
  }
  if (bundle.target.length !== signed.targetLength || targetHash !== signed.targetHash) {
    throw new BundleError("target-mismatch", "the bundle's policy set does not match the hash its signed metadata names");
  }
  if (held !== undefined) {
    if (signed.version < held.version) throw new BundleError("rollback", `the bundle is version ${signed.version}, older than version ${held.version} already held`);
    if (signed.version === held.version && signed.targetHash !== held.targetHash) {
      throw new BundleError("equivocation", `the bundle claims version ${signed.version} with different contents than the version ${held.version} held`);
    }
  }
  if (now !== undefined && Date.parse(signed.expires) <= now.getTime()) {
    throw new BundleError("expired", `the bundle expired at ${signed.expires}, before it was offered`);
  }
  return signed;
}
