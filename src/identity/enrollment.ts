/**
 * Enrolment, the cluster's side, as a library (the agent uses it; so do tests). The
 * cluster makes its own ECDSA P-256 key, which never leaves it, sends a CSR with a
 * one-time join token, and receives a short-lived certificate. It renews with the same
 * key two thirds of the way through the certificate's life, or, after a partition, within
 * the hub's grace window after expiry.
 */
import { createPublicKey } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { call, type HubEndpoint } from "../client/http.js";
import { EC_KEY, EC_SIGNING, generateKeyPair, importPrivateKeyPem, privateKeyPem, webcrypto, x509 } from "./x509.js";

export interface Credentials {
  readonly cluster: string;
  readonly privateKeyPem: string;
  readonly certificatePem: string;
  readonly caPem: string;
  readonly spiffeId: string;
  readonly serial: string;
  readonly notAfter: string;
  readonly renewAfter: string;
  /** The hub's bundle-signing public key (PEM), pinned at enrolment. */
  readonly bundleKeyPem: string;
}

interface Issued {
  readonly certificate: string;
  readonly ca: string;
  readonly spiffeId: string;
  readonly serial: string;
  readonly notAfter: string;
  readonly renewAfter: string;
  readonly bundleKey: { readonly keyId: string; readonly publicKeyPem: string };
}

/** A CSR for `cluster`, signed with `privateKeyPem` (its public key is derived from it). */
export async function createCsr(cluster: string, keyPem: string): Promise<string> {
  const privateKey = await importPrivateKeyPem(keyPem);
  const spki = createPublicKey(keyPem).export({ type: "spki", format: "der" });
  const publicKey = await webcrypto.subtle.importKey("spki", spki, EC_KEY, true, ["verify"]);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cluster}`,
    keys: { privateKey, publicKey },
    signingAlgorithm: EC_SIGNING,
  });
  return csr.toString("pem");
}

export async function newPrivateKey(): Promise<string> {
  return privateKeyPem((await generateKeyPair()).privateKey);
}

function credentials(cluster: string, keyPem: string, issued: Issued): Credentials {
  return {
    cluster,
    privateKeyPem: keyPem,
    certificatePem: issued.certificate,
    caPem: issued.ca,
    spiffeId: issued.spiffeId,
    serial: issued.serial,
    notAfter: issued.notAfter,
    renewAfter: issued.renewAfter,
    bundleKeyPem: issued.bundleKey.publicKeyPem,
  };
}

/** Enrols with a join token: a new key, a CSR, a certificate. */
export async function enroll(hub: { url: string; caPem: string }, cluster: string, joinToken: string, keyPem?: string): Promise<Credentials> {
  const key = keyPem ?? (await newPrivateKey());
  const csr = await createCsr(cluster, key);
  const issued = (await call<Issued>({ url: hub.url, caPem: hub.caPem }, "POST", "/v1/enroll", { joinToken, csr })).body;
  return credentials(cluster, key, issued);
}

/** The endpoint a cluster reaches the hub with: its certificate and key (mutual TLS). */
export function clusterEndpoint(url: string, creds: Credentials): HubEndpoint {
  return { url, caPem: creds.caPem, clientCertificatePem: creds.certificatePem, clientKeyPem: creds.privateKeyPem };
}

/**
 * Renews with the current (possibly expired, within the grace window) certificate and the
 * same key. The bundle key stays the one pinned at enrolment.
 */
export async function renew(url: string, creds: Credentials): Promise<Credentials> {
  const csr = await createCsr(creds.cluster, creds.privateKeyPem);
  const issued = (await call<Issued>(clusterEndpoint(url, creds), "POST", "/v1/renew", { csr })).body;
  return { ...credentials(creds.cluster, creds.privateKeyPem, issued), bundleKeyPem: creds.bundleKeyPem };
}

export function renewalDue(creds: Credentials, now: Date): boolean {
  return now.getTime() >= Date.parse(creds.renewAfter);
}

export function expired(creds: Credentials, now: Date): boolean {
  return now.getTime() >= Date.parse(creds.notAfter);
}

const FILES = { key: "key.pem", certificate: "cert.pem", ca: "ca.pem", bundleKey: "bundle-key.pem", meta: "identity.json" } as const;

/** Saves credentials in a folder: the key readable by the owner only; each file replaced atomically. */
export function saveCredentials(dir: string, creds: Credentials): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const write = (name: string, content: string, mode: number) => {
    const tmp = join(dir, `.${name}.tmp`);
    writeFileSync(tmp, content, { mode });
    renameSync(tmp, join(dir, name));
  };
  write(FILES.key, creds.privateKeyPem, 0o600);
  write(FILES.certificate, creds.certificatePem, 0o644);
  write(FILES.ca, creds.caPem, 0o644);
  write(FILES.bundleKey, creds.bundleKeyPem, 0o644);
  const { privateKeyPem: _key, certificatePem: _cert, caPem: _ca, bundleKeyPem: _bundleKey, ...meta } = creds;
  write(FILES.meta, `${JSON.stringify(meta, null, 2)}\n`, 0o644);
}

export function loadCredentials(dir: string): Credentials | undefined {
  if (!existsSync(join(dir, FILES.meta))) return undefined;
  const meta = JSON.parse(readFileSync(join(dir, FILES.meta), "utf8")) as Omit<Credentials, "privateKeyPem" | "certificatePem" | "caPem" | "bundleKeyPem">;
  return {
    ...meta,
    bundleKeyPem: readFileSync(join(dir, FILES.bundleKey), "utf8"),
    privateKeyPem: readFileSync(join(dir, FILES.key), "utf8"),
    certificatePem: readFileSync(join(dir, FILES.certificate), "utf8"),
    caPem: readFileSync(join(dir, FILES.ca), "utf8"),
  };
}
