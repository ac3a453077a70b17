/**
 * Enrolment, the cluster's side, as a library (the agent uses it; so do tests). The
 * cluster makes its own ECDSA P-256 key, which never leaves it, sends a CSR with a
 * one-time join token, and receives a short-lived certificate. It renews two thirds of the
 * way through the certificate's life (the agent with a new key), or, after a partition,
 * within the hub's grace window after expiry (with the same key).
 */
import { createPublicKey, X509Certificate } from "node:crypto";
import type { IssuedCertificate } from "../api/identity.js";
import { call } from "../client/http.js";
import { clusterEndpoint, type Credentials } from "./credentials.js";
import { EC_KEY, EC_SIGNING, generateKeyPair, importPrivateKeyPem, privateKeyPem, webcrypto, x509 } from "./x509.js";
import { joinTokenServerIds } from "./join-token.js";


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

/**
 * A hub's answer is taken only for the key this side made and the cluster it asked for: a
 * certificate for another key (or another cluster) would leave the agent unable to prove
 * who it is, and is refused before it replaces anything held.
 */
function checkIssued(cluster: string, keyPem: string, issued: IssuedCertificate): void {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(issued.certificate);
  } catch {
    throw new Error("the hub answered with no certificate in PEM");
  }
  const ours = createPublicKey(keyPem).export({ type: "spki", format: "der" });
  if (!leaf.publicKey.export({ type: "spki", format: "der" }).equals(ours)) throw new Error("the hub answered with a certificate for another key than this cluster's");
  const uri = (leaf.subjectAltName ?? "").split(", ").find((n) => n.startsWith("URI:"))?.slice(4);
  if (uri === undefined || uri !== issued.spiffeId || !uri.endsWith(`/cluster/${cluster}`)) throw new Error(`the hub answered with a certificate that does not name cluster ${cluster}`);
}

function credentials(cluster: string, keyPem: string, issued: IssuedCertificate): Credentials {
  checkIssued(cluster, keyPem, issued);
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
    ...(issued.root === undefined || issued.root === null ? {} : { rootJson: JSON.stringify(issued.root) }),
  };
}

/** Enrols with a join token: a new key, a CSR, a certificate. */
export async function enroll(hub: { url: string; caPem: string }, cluster: string, joinToken: string, keyPem?: string): Promise<Credentials> {
  const key = keyPem ?? (await newPrivateKey());
  const csr = await createCsr(cluster, key);
  // Only the global hub or the hub of the region the token names may receive it (join-token.ts).
  const issued = (await call<IssuedCertificate>({ url: hub.url, caPem: hub.caPem, serverIds: joinTokenServerIds(joinToken) }, "POST", "/v1/enroll", { joinToken, csr })).body;
  // What the agent trusts hubs with is the CA its operator gave it, never one the answering
  // hub names (a compromised regional hub could name a CA of its own, and pose as any hub).
  return { ...credentials(cluster, key, issued), caPem: hub.caPem };
}


/**
 * Renews with the current (possibly expired, within the grace window) certificate, for the
 * same key, or with `rotateKey` for a new one made here (the agent rotates at each renewal
 * of a valid certificate). The bundle key and root version 1 stay the ones pinned at enrolment.
 */
export async function renew(url: string, creds: Credentials, options: { readonly rotateKey?: boolean; readonly serverCaPem?: string } = {}): Promise<Credentials> {
  const key = options.rotateKey === true ? await newPrivateKey() : creds.privateKeyPem;
  const csr = await createCsr(creds.cluster, key);
  // serverCaPem: the pinned CA and those of the newest verified root (src/identity/trust-bundle.ts).
  const endpoint = { ...clusterEndpoint(url, creds), ...(options.serverCaPem === undefined ? {} : { caPem: options.serverCaPem }) };
  const issued = (await call<IssuedCertificate>(endpoint, "POST", "/v1/renew", { csr })).body;
  // What was pinned at enrolment stays pinned: the CA, the bundle key, and root version 1
  // (a hub's answer never replaces what the agent trusts).
  const { rootJson: _root, ...renewed } = credentials(creds.cluster, key, issued);
  return { ...renewed, caPem: creds.caPem, bundleKeyPem: creds.bundleKeyPem, ...(creds.rootJson === undefined ? {} : { rootJson: creds.rootJson }) };
}


export { clusterEndpoint, expired, loadCredentials, renewalDue, saveCredentials, type Credentials } from "./credentials.js";
