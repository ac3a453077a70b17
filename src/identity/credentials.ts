/**
 * A cluster's credentials on disk: its key (readable by the owner only), certificate, the
 * federation CA, the pinned bundle-signing key and what the hub said about them. Reading
 * them needs no X.509 library, so an agent restarting during a partition starts fast.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { HubEndpoint } from "../client/http.js";
import { writeFileAtomic } from "../files/write.js";
import { parseClusterSpiffeId } from "./spiffe.js";

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
  /**
   * Root version 1 of the federation's root of trust (its signed JSON), pinned at
   * enrolment; absent for agents enrolled before roots (they pin it from their first
   * bundle that names a root, if it lists the bundle key they pinned: src/agent/bundle/roots.ts).
   */
  readonly rootJson?: string;
}

/** The endpoint a cluster reaches the hub with: its certificate and key (mutual TLS). */
export function clusterEndpoint(url: string, creds: Credentials): HubEndpoint {
  // Its own region's hub or the global hub: never another region's, whose certificate the same CA issued.
  const region = parseClusterSpiffeId(creds.spiffeId)?.region;
  const serverIds = region === undefined ? ["/hub"] : [`/region/${region}/hub`, "/hub"];
  return { url, caPem: creds.caPem, clientCertificatePem: creds.certificatePem, clientKeyPem: creds.privateKeyPem, serverIds };
}

/** When the certificate should be renewed: two thirds of its life. */
export function renewalDue(creds: Credentials, now: Date): boolean {
  return now.getTime() >= Date.parse(creds.renewAfter);
}

export function expired(creds: Credentials, now: Date): boolean {
  return now.getTime() >= Date.parse(creds.notAfter);
}

const FILES = { key: "key.pem", certificate: "cert.pem", ca: "ca.pem", bundleKey: "bundle-key.pem", root: "root-1.json", meta: "identity.json" } as const;

/** Saves credentials in a folder: the key readable by the owner only; each file replaced atomically. */
export function saveCredentials(dir: string, creds: Credentials): void {
  const write = (name: string, content: string, mode: number) => writeFileAtomic(join(dir, name), content, { mode });
  write(FILES.key, creds.privateKeyPem, 0o600);
  write(FILES.certificate, creds.certificatePem, 0o644);
  write(FILES.ca, creds.caPem, 0o644);
  write(FILES.bundleKey, creds.bundleKeyPem, 0o644);
  if (creds.rootJson !== undefined) write(FILES.root, creds.rootJson, 0o644);
  const { privateKeyPem: _key, certificatePem: _cert, caPem: _ca, bundleKeyPem: _bundleKey, rootJson: _root, ...meta } = creds;
  write(FILES.meta, `${JSON.stringify(meta, null, 2)}\n`, 0o644);
}

export function loadCredentials(dir: string): Credentials | undefined {
  if (!existsSync(join(dir, FILES.meta))) return undefined;
  const meta = JSON.parse(readFileSync(join(dir, FILES.meta), "utf8")) as Omit<Credentials, "privateKeyPem" | "certificatePem" | "caPem" | "bundleKeyPem" | "rootJson">;
  const rootPath = join(dir, FILES.root);
  return {
    ...meta,
    ...(existsSync(rootPath) ? { rootJson: readFileSync(rootPath, "utf8") } : {}),
    bundleKeyPem: readFileSync(join(dir, FILES.bundleKey), "utf8"),
    privateKeyPem: readFileSync(join(dir, FILES.key), "utf8"),
    certificatePem: readFileSync(join(dir, FILES.certificate), "utf8"),
    caPem: readFileSync(join(dir, FILES.ca), "utf8"),
  };
}
