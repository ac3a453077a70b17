/**
 * The certificate a parent hub issues to a regional hub when it enrols, for a key the
 * regional hub made and keeps: `spiffe://<federation>/region/<r>/hub`, serving (to its
 * clusters) and client (to its parent). Its region's CA, an intermediate name-constrained to
 * the region's SPIFFE path, is the trust module's (src/identity/regional-ca.ts).
 *
 * Pure but for the clock and randomness, which are passed in or drawn here explicitly.
 */
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

function x509NormalSerial(serial: string): string {
  return serial.toLowerCase().replace(/^0+(?=.)/, "");
}
