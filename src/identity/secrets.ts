/**
 * Secrets at rest: sealed with AES-256-GCM under a key derived (scrypt) from the operator's
 * key, which the hub reads from a file or the environment and never writes or logs.
 */
import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from "node:crypto";

export interface Sealed {
  readonly alg: "AES-256-GCM";
  readonly kdf: "scrypt";
  readonly salt: string;
  readonly iv: string;
  readonly tag: string;
  readonly ciphertext: string;
}

const SCRYPT = { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

function derive(operatorKey: string, salt: Buffer): Buffer {
  return scryptSync(operatorKey, salt, 32, SCRYPT);
}

export function seal(plaintext: Buffer | string, operatorKey: string): Sealed {
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", derive(operatorKey, salt), iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return {
    alg: "AES-256-GCM",
    kdf: "scrypt",
    salt: salt.toString("base64"),
    iv: iv.toString("base64"),
    tag: cipher.getAuthTag().toString("base64"),
    ciphertext: ciphertext.toString("base64"),
  };
}

export class WrongKeyError extends Error {}

export function unseal(sealed: Sealed, operatorKey: string): Buffer {
  const decipher = createDecipheriv("aes-256-gcm", derive(operatorKey, Buffer.from(sealed.salt, "base64")), Buffer.from(sealed.iv, "base64"));
  decipher.setAuthTag(Buffer.from(sealed.tag, "base64"));
  try {
    return Buffer.concat([decipher.update(Buffer.from(sealed.ciphertext, "base64")), decipher.final()]);
  } catch {
    throw new WrongKeyError("the operator key does not open the sealed secret (a different key than the one it was sealed with?)");
  }
}
