/** The root of trust and the federation's keys: what `polity keys` and regional hubs send. */
import { z } from "zod";
import { name } from "./fields.js";

const keyId = z.string().regex(/^[0-9a-f]{64}$/, "a key id is 64 hex digits");
const reason = z.string().min(1).max(500);
const publicKeyPem = z.string().min(1).max(4096);

export const KEY_PURPOSES = ["root", "bundles", "audit-log"] as const;
/** What `polity keys rotate --purpose` takes: a signing key's purpose, or the federation CA. */
export const ROTATE_PURPOSES = [...KEY_PURPOSES, "ca"] as const;

export const keyRotateRequest = z.strictObject({
  purpose: z.enum(ROTATE_PURPOSES),
  /** Keys of that purpose revoked in the same root instead of overlapping. */
  revoke: z.array(keyId).max(8).optional(),
  reason: reason.optional(),
});
export type KeyRotateRequest = z.infer<typeof keyRotateRequest>;

export const keyRevokeRequest = z.strictObject({ keyId, reason });
export type KeyRevokeRequest = z.infer<typeof keyRevokeRequest>;

/** A region's key (Ed25519 for a delegation, ECDSA P-256 for its intermediate CA), SPKI PEM. */
export const regionKeyRequest = z.strictObject({ region: name, publicKeyPem });
export type RegionKeyRequest = z.infer<typeof regionKeyRequest>;
