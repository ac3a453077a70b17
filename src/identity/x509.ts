/**
 * @peculiar/x509 set up once: it needs reflect-metadata loaded first and a WebCrypto
 * provider. Every module that uses X.509 imports it from here.
 */
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509, webcrypto };

export const EC_KEY = { name: "ECDSA", namedCurve: "P-256" } as const;
export const EC_SIGNING = { name: "ECDSA", hash: "SHA-256" } as const;

export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** PKCS #8 PEM of a private key, as Node's TLS and openssl take it. */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

export async function importPrivateKeyPem(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decode(pem)[0];
  if (der === undefined) throw new Error("not a PEM private key");
  return webcrypto.subtle.importKey("pkcs8", der, EC_KEY, true, ["sign"]);
}

/** SHA-256 (hex) of a public key's SubjectPublicKeyInfo: what binds a certificate to its key. */
export async function publicKeyFingerprint(publicKey: x509.PublicKey): Promise<string> {
  return Buffer.from(await publicKey.getThumbprint("SHA-256")).toString("hex");
}
