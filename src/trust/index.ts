/**
 * The federation's root of trust, in the manner of The Update Framework (TUF): a small
 * signed document, the root metadata, that names every key the federation signs with,
 * what each may sign (roles, and delegations scoped to one region), how many signatures
 * each role needs (thresholds), and which keys are revoked. An agent pins root version 1
 * at enrolment and learns every later one by verifying it against its predecessor: a new
 * root must be signed by a threshold of the old root's root keys AND of its own, and must
 * be exactly one version newer, so that nobody can skip a rotation or roll the root back.
 *
 * On the wire and on disk a root is one canonical JSON envelope (RFC 8785), like a
 * bundle's metadata line:
 *
 *     {"signatures":[{"keyId":…,"sig":…}],"signed":{"type":"polity.dev/root",…}}
 *
 * Signatures are Ed25519 over the canonical bytes of `signed`; a key id is the SHA-256 of
 * the key's SubjectPublicKeyInfo (src/bundle keyIdOf).
 *
 * Pure: keys and time are passed in.
 */
import { createHash, createPublicKey, sign, verify, X509Certificate, type KeyObject } from "node:crypto";
import { canonicalJson } from "../canonical/index.js";
import { keyIdOf } from "../bundle/index.js";

export const ROOT_TYPE = "polity.dev/root";

/** What a key in the root is for. "region" keys appear only in delegations. */
export type KeyRole = "root" | "bundles" | "audit-log" | "region";
export const KEY_ROLES: readonly KeyRole[] = ["root", "bundles", "audit-log", "region"];

export interface RootKey {
  /** SubjectPublicKeyInfo, PEM. */
  readonly publicKey: string;
  readonly purpose: KeyRole;
}

export interface Role {
  readonly keyIds: readonly string[];
  readonly threshold: number;
}

/**
 * A region's delegation: its keys may sign bundles whose metadata names this region (and
 * the region's own layer), nothing else, until `expires`.
 */
export interface Delegation {
  readonly region: string;
  readonly keyIds: readonly string[];
  readonly threshold: 1;
  readonly expires: string;
}

/**
 * A federation CA the root vouches for (CA rotation): hubs accept client certificates
 * chaining to any CA listed, agents and the CLI a hub's serving certificate. One is
 * `active` (issues), the one it replaced `overlap` until it leaves the root. A root that
 * lists none (every root before the first CA rotation) leaves the CA pinned at enrolment
 * the only one.
 */
export interface RootCertificateAuthority {
  /** The CA's X.509 certificate, PEM. */
  readonly certificate: string;
  /** SHA-256 of its DER, lowercase hex. */
  readonly fingerprint: string;
  readonly status: "active" | "overlap";
}

export interface RootMetadata {
  readonly type: typeof ROOT_TYPE;
  readonly specVersion: 1;
  readonly federation: string;
  /** 1, 2, …: each root is signed by its predecessor's root keys as well as its own. */
  readonly version: number;
  readonly issuedAt: string;
  readonly expires: string;
  readonly keys: Readonly<Record<string, RootKey>>;
  readonly roles: { readonly root: Role; readonly bundles: Role; readonly "audit-log": Role };
  readonly delegations: readonly Delegation[];
  /** Key ids refused everywhere, whatever role or delegation still names them. */
  readonly revoked: readonly string[];
  /** The federation CAs, active first; absent until the CA first rotates. */
  readonly certificateAuthorities?: readonly RootCertificateAuthority[];
}

export interface Signature {
  readonly keyId: string;
  readonly sig: string;
}

export interface RootEnvelope {
  readonly signatures: readonly Signature[];
  readonly signed: RootMetadata;
}

export type TrustProblem =
  | "malformed"
  | "wrong-federation"
  | "version-skipped"
  | "version-not-newer"
  | "threshold-not-met"
  | "revoked-key"
  | "out-of-scope"
  | "unknown-key"
  | "expired"
  /** The roots an agent kept on its disk do not verify from version 1 (src/agent/bundle/roots.ts). */
  | "chain-broken";

export class TrustError extends Error {
  override readonly name = "TrustError";
  constructor(
    readonly problem: TrustProblem,
    message: string,
  ) {
    super(message);
  }
}

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const HEX64 = /^[0-9a-f]{64}$/;
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** The largest root there is (bytes of its envelope): an agent reads no more. */
export const MAX_ROOT_BYTES = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Parsing: everything read from the network or a disk goes through here first.

function fail(message: string): never {
  throw new TrustError("malformed", `not a root: ${message}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseRole(value: unknown, name: string, keys: Readonly<Record<string, RootKey>>): Role {
  if (!isRecord(value)) fail(`role ${name} is missing`);
  const { keyIds, threshold } = value;
  if (!Array.isArray(keyIds) || keyIds.length === 0 || !keyIds.every((k) => typeof k === "string" && HEX64.test(k))) fail(`role ${name} names no valid key ids`);
  if (new Set(keyIds).size !== keyIds.length) fail(`role ${name} names a key twice`);
  if (!Number.isSafeInteger(threshold) || (threshold as number) < 1 || (threshold as number) > keyIds.length) fail(`role ${name}'s threshold must be 1 to ${keyIds.length}`);
  for (const keyId of keyIds as string[]) if (keys[keyId] === undefined) fail(`role ${name} names key ${keyId}, which the root does not list`);
  return { keyIds: keyIds as string[], threshold: threshold as number };
}

/** Checks a root's shape (not its signatures); throws TrustError("malformed"). */
export function parseRootMetadata(value: unknown): RootMetadata {
  if (!isRecord(value)) fail("not an object");
  const s = value;
  if (s.type !== ROOT_TYPE) fail(`type must be ${ROOT_TYPE}`);
  if (s.specVersion !== 1) fail("specVersion must be 1");
  if (typeof s.federation !== "string" || !NAME.test(s.federation)) fail("federation must be a name");
  if (!Number.isSafeInteger(s.version) || (s.version as number) < 1) fail("version must be an integer from 1");
  for (const field of ["issuedAt", "expires"] as const) {
    if (typeof s[field] !== "string" || !TIME.test(s[field] as string) || Number.isNaN(Date.parse(s[field] as string))) fail(`${field} must be an RFC 3339 UTC time`);
  }
  if (!isRecord(s.keys)) fail("keys must be an object");
  const keys: Record<string, RootKey> = {};
  for (const [keyId, key] of Object.entries(s.keys)) {
    if (!HEX64.test(keyId)) fail(`key id ${JSON.stringify(keyId.slice(0, 80))} is not a SHA-256`);
    if (!isRecord(key) || typeof key.publicKey !== "string" || !KEY_ROLES.includes(key.purpose as KeyRole)) fail(`key ${keyId} needs a publicKey and a purpose (${KEY_ROLES.join(", ")})`);
    let id: string;
    try {
      const publicKey = createPublicKey(key.publicKey);
      if (publicKey.asymmetricKeyType !== "ed25519") fail(`key ${keyId} is not Ed25519`);
      id = keyIdOf(publicKey);
    } catch (error) {
      if (error instanceof TrustError) throw error;
      fail(`key ${keyId}'s publicKey is not an SPKI PEM`);
    }
    if (id !== keyId) fail(`key ${keyId} is listed under another key's id (its own is ${id})`);
    keys[keyId] = { publicKey: key.publicKey, purpose: key.purpose as KeyRole };
  }
  if (!isRecord(s.roles)) fail("roles must be an object");
  const roles = { root: parseRole(s.roles.root, "root", keys), bundles: parseRole(s.roles.bundles, "bundles", keys), "audit-log": parseRole(s.roles["audit-log"], "audit-log", keys) };
  for (const [name, role] of Object.entries(roles)) {
    for (const keyId of role.keyIds) if (keys[keyId]!.purpose !== name) fail(`role ${name} names key ${keyId}, whose purpose is ${keys[keyId]!.purpose}`);
  }
  if (!Array.isArray(s.delegations)) fail("delegations must be a list");
  const regions = new Set<string>();
  const delegations: Delegation[] = s.delegations.map((d: unknown) => {
    if (!isRecord(d) || typeof d.region !== "string" || !NAME.test(d.region)) fail("a delegation needs a region name");
    if (regions.has(d.region)) fail(`region ${d.region} is delegated twice`);
    regions.add(d.region);
    const role = parseRole({ keyIds: d.keyIds, threshold: d.threshold }, `delegation ${d.region}`, keys);
    if (role.threshold !== 1) fail(`delegation ${d.region}'s threshold must be 1`);
    for (const keyId of role.keyIds) if (keys[keyId]!.purpose !== "region") fail(`delegation ${d.region} names key ${keyId}, whose purpose is ${keys[keyId]!.purpose}`);
    if (typeof d.expires !== "string" || !TIME.test(d.expires)) fail(`delegation ${d.region}'s expires must be an RFC 3339 UTC time`);
    return { region: d.region, keyIds: role.keyIds, threshold: 1, expires: d.expires };
  });
  if (!Array.isArray(s.revoked) || !s.revoked.every((k) => typeof k === "string" && HEX64.test(k))) fail("revoked must be a list of key ids");
  const certificateAuthorities = s.certificateAuthorities === undefined ? undefined : parseCertificateAuthorities(s.certificateAuthorities);
  return {
    type: ROOT_TYPE,
    specVersion: 1,
    federation: s.federation as string,
    version: s.version as number,
    issuedAt: s.issuedAt as string,
    expires: s.expires as string,
    keys,
    roles,
    delegations,
    revoked: [...(s.revoked as string[])],
    ...(certificateAuthorities === undefined ? {} : { certificateAuthorities }),
  };
}

/** The most CAs a root lists: the active one and those it replaced, still overlapping. */
const MAX_ROOT_CAS = 4;

/** SHA-256 of a certificate's DER, lowercase hex (what a root lists a CA under). */
export function certificateFingerprint(pem: string): string {
  return createHash("sha256").update(new X509Certificate(pem).raw).digest("hex");
}

function parseCertificateAuthorities(value: unknown): RootCertificateAuthority[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_ROOT_CAS) fail(`certificateAuthorities must list 1 to ${MAX_ROOT_CAS} CAs`);
  const seen = new Set<string>();
  const cas = value.map((entry: unknown, i): RootCertificateAuthority => {
    const where = `certificateAuthorities[${i}]`;
    if (!isRecord(entry) || typeof entry.certificate !== "string" || typeof entry.fingerprint !== "string" || !HEX64.test(entry.fingerprint)) fail(`${where} needs a certificate (PEM) and its fingerprint`);
    if (entry.status !== "active" && entry.status !== "overlap") fail(`${where}.status must be active or overlap`);
    if (entry.certificate.length > 16 * 1024) fail(`${where}.certificate is too large`);
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(entry.certificate);
    } catch {
      fail(`${where}.certificate is not an X.509 certificate (PEM)`);
    }
    if (!certificate.ca) fail(`${where}.certificate is not a CA certificate`);
    const fingerprint = createHash("sha256").update(certificate.raw).digest("hex");
    if (fingerprint !== entry.fingerprint) fail(`${where} is listed under another certificate's fingerprint (its own is ${fingerprint})`);
    if (seen.has(fingerprint)) fail(`${where} lists a CA twice`);
    seen.add(fingerprint);
    return { certificate: entry.certificate, fingerprint, status: entry.status };
  });
  if (cas.filter((c) => c.status === "active").length !== 1 || cas[0]!.status !== "active") fail("certificateAuthorities must list exactly one active CA, first");
  return cas;
}

/**
 * The CA certificates (PEM) a root vouches for, active first; none for a root from before
 * the first CA rotation (the CA pinned at enrolment is then the only one).
 */
export function rootCertificateAuthorities(root: RootMetadata | undefined): string[] {
  return (root?.certificateAuthorities ?? []).map((ca) => ca.certificate);
}

/** Parses an envelope (an object or its JSON text); checks shape only. */
export function parseRootEnvelope(value: unknown): RootEnvelope {
  let v = value;
  if (typeof v === "string" || v instanceof Uint8Array) {
    const text = typeof v === "string" ? v : Buffer.from(v).toString("utf8");
    if (text.length > MAX_ROOT_BYTES) fail(`larger than ${MAX_ROOT_BYTES} bytes`);
    try {
      v = JSON.parse(text);
    } catch {
      fail("not JSON");
    }
  }
  if (!isRecord(v) || !Array.isArray(v.signatures)) fail("an envelope needs signatures and signed");
  const signatures = v.signatures.map((sig: unknown) => {
    if (!isRecord(sig) || typeof sig.keyId !== "string" || typeof sig.sig !== "string") fail("a signature needs a keyId and a sig");
    return { keyId: sig.keyId, sig: sig.sig };
  });
  return { signatures, signed: parseRootMetadata(v.signed) };
}

export function encodeRoot(envelope: RootEnvelope): string {
  return canonicalJson(envelope);
}

// ---------------------------------------------------------------------------------------
// Signing and verifying.

/** Signs root metadata with each of `privateKeys` (Ed25519); the signed part is checked first. */
export function signRoot(signed: RootMetadata, privateKeys: readonly KeyObject[]): RootEnvelope {
  const metadata = parseRootMetadata(signed);
  const bytes = Buffer.from(canonicalJson(metadata), "utf8");
  const signatures = privateKeys.map((key) => ({ keyId: keyIdOf(createPublicKey(key)), sig: sign(null, bytes, key).toString("base64") }));
  return { signatures, signed: metadata };
}

/** Whether one signature by `keyPem` over `bytes` verifies (one spelling of base64 only). */
export function signatureValid(bytes: Buffer, keyPem: string, sig: string): boolean {
  try {
    const raw = Buffer.from(sig, "base64");
    return raw.toString("base64") === sig && verify(null, bytes, createPublicKey(keyPem), raw);
  } catch {
    return false;
  }
}

/**
 * How many distinct keys of `role`, as `keysOf` lists them, signed `bytes` validly. A
 * revoked key counts for nothing.
 */
function validSigners(bytes: Buffer, signatures: readonly Signature[], role: Role, keysOf: RootMetadata): Set<string> {
  const counted = new Set<string>();
  for (const signature of signatures) {
    if (!role.keyIds.includes(signature.keyId) || counted.has(signature.keyId) || keysOf.revoked.includes(signature.keyId)) continue;
    const key = keysOf.keys[signature.keyId];
    if (key !== undefined && signatureValid(bytes, key.publicKey, signature.sig)) counted.add(signature.keyId);
  }
  return counted;
}

/** Verifies root version 1 against itself (what an agent pins at enrolment, checked once). */
export function verifyRootSelf(envelope: RootEnvelope, federation?: string): RootMetadata {
  const next = parseRootEnvelope(envelope);
  const bytes = Buffer.from(canonicalJson(next.signed), "utf8");
  const own = validSigners(bytes, next.signatures, next.signed.roles.root, next.signed);
  if (own.size < next.signed.roles.root.threshold) {
    throw new TrustError("threshold-not-met", `root version ${next.signed.version} is signed by ${own.size} of its own root keys; it needs ${next.signed.roles.root.threshold}`);
  }
  if (federation !== undefined && next.signed.federation !== federation) {
    throw new TrustError("wrong-federation", `the root is federation ${next.signed.federation}'s, not ${federation}'s`);
  }
  return next.signed;
}

/**
 * Verifies the root that follows `trusted`: exactly one version newer, same federation,
 * signed by a threshold of `trusted`'s root keys and of its own. Expiry is not checked
 * here (TUF: intermediate roots may have expired); see rootExpired for the newest one.
 */
export function verifyRootUpdate(trusted: RootMetadata, next: RootEnvelope): RootMetadata {
  const candidate = parseRootEnvelope(next);
  const signed = candidate.signed;
  if (signed.federation !== trusted.federation) {
    throw new TrustError("wrong-federation", `root version ${signed.version} is federation ${signed.federation}'s, not ${trusted.federation}'s`);
  }
  if (signed.version <= trusted.version) {
    throw new TrustError("version-not-newer", `root version ${signed.version} is not newer than version ${trusted.version} already trusted (a root never goes back)`);
  }
  if (signed.version !== trusted.version + 1) {
    throw new TrustError("version-skipped", `root version ${signed.version} skips version ${trusted.version + 1}: every root must be verified against its predecessor`);
  }
  const bytes = Buffer.from(canonicalJson(signed), "utf8");
  const byOld = validSigners(bytes, candidate.signatures, trusted.roles.root, trusted);
  if (byOld.size < trusted.roles.root.threshold) {
    throw new TrustError(
      "threshold-not-met",
      `root version ${signed.version} is signed by ${byOld.size} of version ${trusted.version}'s root keys; it needs ${trusted.roles.root.threshold}`,
    );
  }
  const byNew = validSigners(bytes, candidate.signatures, signed.roles.root, signed);
  if (byNew.size < signed.roles.root.threshold) {
    throw new TrustError("threshold-not-met", `root version ${signed.version} is signed by ${byNew.size} of its own root keys; it needs ${signed.roles.root.threshold}`);
  }
  return signed;
}

/** Verifies each root of `chain` (oldest first) against the one before it; returns the newest. */
export function verifyRootChain(trusted: RootMetadata, chain: readonly RootEnvelope[]): RootMetadata {
  let current = trusted;
  for (const envelope of chain) current = verifyRootUpdate(current, envelope);
  return current;
}

export function rootExpired(root: RootMetadata, now: Date): boolean {
  return Date.parse(root.expires) <= now.getTime();
}

// ---------------------------------------------------------------------------------------
// Scopes: which key may sign what.

export type Allowed = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/**
 * Whether `keyId` may sign a bundle for `region` under `root`: a key of the root's bundles
 * role for any region; a region's delegated key for its own region only (and, given `now`,
 * before its delegation expires); never a revoked key, nor one the root no longer lists.
 */
export function bundleKeyAllowed(root: RootMetadata, keyId: string, region: string, now?: Date): Allowed {
  const short = keyId.slice(0, 12);
  if (root.revoked.includes(keyId)) return { ok: false, reason: `key ${short}… is revoked by root version ${root.version}` };
  if (root.roles.bundles.keyIds.includes(keyId)) return { ok: true };
  const delegation = root.delegations.find((d) => d.keyIds.includes(keyId));
  if (delegation !== undefined) {
    if (delegation.region !== region) return { ok: false, reason: `key ${short}… is delegated to region ${delegation.region} only, and may not sign for region ${region}` };
    if (now !== undefined && Date.parse(delegation.expires) <= now.getTime()) return { ok: false, reason: `region ${region}'s delegation to key ${short}… expired at ${delegation.expires}` };
    return { ok: true };
  }
  if (root.keys[keyId] !== undefined) return { ok: false, reason: `key ${short}… is a ${root.keys[keyId].purpose} key, not one that signs bundles` };
  return { ok: false, reason: `key ${short}… is not in root version ${root.version} (never listed, or rotated out)` };
}

/** Whether `keyId` may sign the audit log's tree heads under `root`. */
export function auditKeyAllowed(root: RootMetadata, keyId: string): Allowed {
  if (root.revoked.includes(keyId)) return { ok: false, reason: `key ${keyId.slice(0, 12)}… is revoked by root version ${root.version}` };
  if (root.roles["audit-log"].keyIds.includes(keyId)) return { ok: true };
  return { ok: false, reason: `key ${keyId.slice(0, 12)}… is not an audit-log key of root version ${root.version}` };
}

/** The public key (PEM) a root lists under `keyId`, if any. */
export function rootKey(root: RootMetadata, keyId: string): string | undefined {
  return root.keys[keyId]?.publicKey;
}

/**
 * What src/bundle's verifyBundle asks of an agent holding `root`: the public key of a key
 * allowed to sign for a region (bundleKeyAllowed), or why not.
 */
export function rootAuthorizer(root: RootMetadata, now?: Date): (keyId: string, region: string) => { readonly key: KeyObject } | { readonly reason: string } {
  return (keyId, region) => {
    const allowed = bundleKeyAllowed(root, keyId, region, now);
    if (!allowed.ok) return { reason: allowed.reason };
    return { key: createPublicKey(root.keys[keyId]!.publicKey) };
  };
}
