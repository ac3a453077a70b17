/**
 * The hub's signing keys (Ed25519), one per purpose: bundles, and the audit log's tree
 * heads. Each is created once, by whichever hub process gets there first, and kept in the
 * database sealed under the operator's key (AES-256-GCM). This module owns `signing_keys`.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { keyIdOf } from "../bundle/index.js";
import { seal, unseal, type Sealed } from "../identity/secrets.js";
import type { Database } from "../store/database.js";

export interface SigningKey {
  readonly keyId: string;
  readonly privateKey: KeyObject;
  readonly publicKeyPem: string;
}

/** What a hub signs, each with its own key. */
export type KeyPurpose = "bundles" | "audit-log";

const KEYS_LOCK = 7_346_203;

/** The key for `purpose`: loaded and unsealed, or made and sealed at the very first start. */
export async function loadSigningKey(db: Database, operatorKey: string, purpose: KeyPurpose): Promise<SigningKey> {
  return db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock($1)", [KEYS_LOCK]);
    const [row] = await tx.query<{ public_key_pem: string; private_key_sealed: Sealed }>(
      "SELECT public_key_pem, private_key_sealed FROM signing_keys WHERE purpose = $1 ORDER BY created_at DESC LIMIT 1",
      [purpose],
    );
    if (row !== undefined) {
      const privateKey = createPrivateKey(unseal(row.private_key_sealed, operatorKey).toString("utf8"));
      return { keyId: keyIdOf(createPublicKey(privateKey)), privateKey, publicKeyPem: row.public_key_pem };
    }
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const publicKeyPem = publicKey.export({ type: "spki", format: "pem" }).toString();
    const keyId = keyIdOf(publicKey);
    const sealed = seal(privateKey.export({ type: "pkcs8", format: "pem" }).toString(), operatorKey);
    await tx.query("INSERT INTO signing_keys (id, purpose, public_key_pem, private_key_sealed) VALUES ($1, $2, $3, $4)", [keyId, purpose, publicKeyPem, JSON.stringify(sealed)]);
    return { keyId, privateKey, publicKeyPem };
  });
}
