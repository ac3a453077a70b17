/**
 * The hub's signing keys (Ed25519), one active per purpose: the root of trust's (which signs
 * root versions, src/trust), bundles, and the audit log's tree heads. Each is created by
 * whichever hub process gets there first, and kept in the database sealed under the
 * operator's key (AES-256-GCM). A key rotates (src/hub/trust.ts): its successor becomes
 * `active`, it goes to `overlap` (still listed in the root, signing nothing), then `retired`
 * (out of the root) or, on suspicion, `revoked`. A region's delegated key is listed here
 * too, without a private key (the region keeps it). This module owns `signing_keys`.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { keyIdOf } from "../bundle/index.js";
import { seal, unseal, type Sealed } from "../identity/secrets.js";
import type { Database, Queryable } from "../store/database.js";

export interface SigningKey {
  readonly keyId: string;
  readonly privateKey: KeyObject;
  readonly publicKeyPem: string;
}

/** What a hub signs, each with its own key. */
export type KeyPurpose = "root" | "bundles" | "audit-log";

export type KeyState = "active" | "overlap" | "retired" | "revoked";

const KEYS_LOCK = 7_346_203;

/** The key for `purpose`: loaded and unsealed, or made and sealed at the very first start. */
export async function loadSigningKey(db: Database, operatorKey: string, purpose: KeyPurpose): Promise<SigningKey> {
  return db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock($1)", [KEYS_LOCK]);
    const [row] = await tx.query<{ public_key_pem: string; private_key_sealed: Sealed }>(
      "SELECT public_key_pem, private_key_sealed FROM signing_keys WHERE purpose = $1 AND state = 'active' AND private_key_sealed IS NOT NULL ORDER BY created_at DESC LIMIT 1",
      [purpose],
    );
    if (row !== undefined) {
      const privateKey = createPrivateKey(unseal(row.private_key_sealed, operatorKey).toString("utf8"));
      return { keyId: keyIdOf(createPublicKey(privateKey)), privateKey, publicKeyPem: row.public_key_pem };
    }
    return createSigningKey(tx, operatorKey, purpose);
  });
}

/** A new key for `purpose`, sealed and stored as `active` (the caller moves its predecessor on). */
export async function createSigningKey(tx: Queryable, operatorKey: string, purpose: KeyPurpose, now?: Date): Promise<SigningKey> {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const publicKeyPem = publicKey.export({ type: "spki", format: "pem" }).toString();
  const keyId = keyIdOf(publicKey);
  const sealed = seal(privateKey.export({ type: "pkcs8", format: "pem" }).toString(), operatorKey);
  await tx.query("INSERT INTO signing_keys (id, purpose, public_key_pem, private_key_sealed, created_at) VALUES ($1, $2, $3, $4, $5)", [
    keyId,
    purpose,
    publicKeyPem,
    JSON.stringify(sealed),
    now ?? new Date(),
  ]);
  return { keyId, privateKey, publicKeyPem };
}

/** A stored key by id, unsealed; undefined when it is not the federation's own (a region's) or unknown. */
export async function signingKeyById(db: Queryable, operatorKey: string, keyId: string): Promise<SigningKey | undefined> {
  const [row] = await db.query<{ public_key_pem: string; private_key_sealed: Sealed | null }>("SELECT public_key_pem, private_key_sealed FROM signing_keys WHERE id = $1", [keyId]);
  if (row === undefined || row.private_key_sealed === null) return undefined;
  return { keyId, privateKey: createPrivateKey(unseal(row.private_key_sealed, operatorKey).toString("utf8")), publicKeyPem: row.public_key_pem };
}

export interface KeyRow {
  readonly id: string;
  readonly purpose: KeyPurpose | "region";
  readonly region: string | null;
  readonly state: KeyState;
  readonly createdAt: string;
  readonly stateChangedAt: string | null;
  readonly rootVersion: number | null;
  readonly leftRootVersion: number | null;
  readonly revokeReason: string | null;
}

/** Every key the federation has listed, newest first (public data only). */
export async function listKeys(db: Queryable): Promise<KeyRow[]> {
  const rows = await db.query<{
    id: string;
    purpose: KeyPurpose | "region";
    region: string | null;
    state: KeyState;
    created_at: Date;
    state_changed_at: Date | null;
    root_version: number | null;
    left_root_version: number | null;
    revoke_reason: string | null;
  }>("SELECT id, purpose, region, state, created_at, state_changed_at, root_version, left_root_version, revoke_reason FROM signing_keys ORDER BY created_at DESC, id");
  return rows.map((r) => ({
    id: r.id,
    purpose: r.purpose,
    region: r.region,
    state: r.state,
    createdAt: new Date(r.created_at).toISOString(),
    stateChangedAt: r.state_changed_at === null ? null : new Date(r.state_changed_at).toISOString(),
    rootVersion: r.root_version,
    leftRootVersion: r.left_root_version,
    revokeReason: r.revoke_reason,
  }));
}
