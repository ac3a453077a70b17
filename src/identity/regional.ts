/**
 * The certificates a parent hub issues to a regional hub when it enrols, for keys the
 * regional hub made and keeps: its hub certificate (`spiffe://<federation>/region/<r>/hub`,
 * serving and client), and its intermediate CA (`spiffe://<federation>/region/<r>`), which
 * issues its clusters' certificates while the parent is out of reach.
 *
 * INTERIM (issue 15): the trust branch's `issueRegionalCa` (an intermediate name-constrained
 * in X.509) replaces `issueRegionalAuthority` when it lands. Until then the scope is checked
 * by the hubs themselves (`regionalIssuer`): a leaf issued by a region's CA is accepted only
 * for a cluster of that region.
 *
 * Pure but for the clock and randomness, which are passed in or drawn here explicitly.
 */
import { X509Certificate } from "node:crypto";
import { newSerial, type CertificateAuthority } from "./ca.js";
import { EC_KEY, EC_SIGNING, webcrypto, x509 } from "./x509.js";

const CLOCK_SKEW_MS = 5 * 60 * 1000;

async function importPublicKeyPem(pem: string) {
  const der = x509.PemConverter.decode(pem)[0];
  if (der === undefined) throw new Error("not a PEM public key");
  return webcrypto.subtle.importKey("spki", der, EC_KEY, true, ["verify"]);
}

export function regionalHubSpiffeId(federation: string, region: string): string {
  return `spiffe://${federation}/region/${region}/hub`;
}

export function regionalCaSpiffeId(federation: string, region: string): string {
  return `spiffe://${federation}/region/${region}`;
}

/** A regional hub's certificate: serving (its names) and client (to its parent), for its own key. */
export async function issueHubCertificate(
  root: CertificateAuthority,
  region: string,
  publicKeyPem: string,
  names: { readonly dns: readonly string[]; readonly ips: readonly string[] },
  now: Date,
  ttlMs: number,
): Promise<{ certificatePem: string; serial: string; notAfter: Date }> {
  const publicKey = await importPublicKeyPem(publicKeyPem);
  const serial = newSerial();
  const notAfter = new Date(now.getTime() + ttlMs);
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `CN=polity regional hub ${region}, OU=${region}, O=polity`,
    issuer: root.certificate.subject,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter,
    publicKey,
    signingKey: root.privateKey,
    signingAlgorithm: EC_SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...names.dns.map((value) => ({ type: "dns" as const, value })),
        ...names.ips.map((value) => ({ type: "ip" as const, value })),
        { type: "url" as const, value: regionalHubSpiffeId(root.federation, region) },
      ]),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(root.certificate),
    ],
  });
  return { certificatePem: certificate.toString("pem"), serial: x509NormalSerial(certificate.serialNumber), notAfter };
}

/** INTERIM: the region's intermediate CA (see the header), for the regional hub's own key. */
export async function issueRegionalAuthority(root: CertificateAuthority, region: string, publicKeyPem: string, now: Date, ttlMs: number): Promise<string> {
  const publicKey = await importPublicKeyPem(publicKeyPem);
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: newSerial(),
    subject: `CN=Polity federation ${root.federation} region ${region} CA, OU=${region}, O=polity`,
    issuer: root.certificate.subject,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + ttlMs),
    publicKey,
    signingKey: root.privateKey,
    signingAlgorithm: EC_SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(root.certificate),
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: regionalCaSpiffeId(root.federation, region) }]),
    ],
  });
  return certificate.toString("pem");
}

function x509NormalSerial(serial: string): string {
  return serial.toLowerCase().replace(/^0+(?=.)/, "");
}

/**
 * The region whose CA issued a presented certificate, when `issuer` (the certificate the
 * peer sent after its leaf) is a region CA signed by `root`; undefined otherwise.
 */
export function regionalIssuer(issuer: X509Certificate, root: X509Certificate, federation: string): string | undefined {
  if (!issuer.ca) return undefined;
  let signed = false;
  try {
    signed = issuer.verify(root.publicKey);
  } catch {
    return undefined;
  }
  if (!signed) return undefined;
  const uri = (issuer.subjectAltName ?? "").split(", ").find((n) => n.startsWith("URI:"))?.slice(4);
  const m = uri === undefined ? null : /^spiffe:\/\/([a-z0-9.-]+)\/region\/([a-z0-9.-]+)$/.exec(uri);
  if (m === null || m[1] !== federation) return undefined;
  return m[2];
}
