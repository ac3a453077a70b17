/**
 * The federation's certificate authority: ECDSA P-256, created once, its private key kept
 * sealed (secrets.ts). It issues short-lived client certificates to clusters, whose URI
 * SAN is their SPIFFE ID, serving certificates to hubs, and a revocation list. Everything
 * is standard X.509 that openssl, curl and any TLS stack accept.
 *
 * Pure but for the clock and randomness, which are passed in or drawn here explicitly.
 */
import { randomBytes } from "node:crypto";
import { clusterSpiffeId, type ClusterSpiffeId } from "./spiffe.js";
import { EC_SIGNING, generateKeyPair, privateKeyPem, publicKeyFingerprint, x509, type CryptoKey } from "./x509.js";

export interface CertificateAuthority {
  readonly federation: string;
  readonly certificate: x509.X509Certificate;
  readonly certificatePem: string;
  readonly privateKey: CryptoKey;
}

export interface IssuedCertificate {
  readonly pem: string;
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly publicKeySha256: string;
}

/** X.509 times have whole seconds: times are cut to them before issuing, so that what is reported is what is in the certificate. */
function seconds(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000);
}

/** Certificates start a few minutes in the past, so that a peer whose clock is behind accepts them. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;

/** A positive 128-bit serial number, as lowercase hex without leading zeros. */
export function newSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  if (bytes[0] === 0) bytes[0] = 1;
  return normalizeSerial(bytes.toString("hex"));
}

/** Serial numbers compared as the same text whoever printed them (case, leading zeros). */
export function normalizeSerial(serial: string): string {
  return serial.toLowerCase().replace(/^0+(?=.)/, "");
}

export async function createCertificateAuthority(
  federation: string,
  now: Date,
): Promise<{ authority: CertificateAuthority; privateKeyPem: string }> {
  const keys = await generateKeyPair();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: newSerial(),
    name: `CN=Polity federation ${federation} CA, O=polity`,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + 10 * 365 * 24 * 3600 * 1000),
    keys,
    signingAlgorithm: EC_SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: `spiffe://${federation}` }]),
    ],
  });
  return {
    authority: { federation, certificate, certificatePem: certificate.toString("pem"), privateKey: keys.privateKey },
    privateKeyPem: await privateKeyPem(keys.privateKey),
  };
}

export class CsrError extends Error {}

export interface CsrContents {
  readonly request: x509.Pkcs10CertificateRequest;
  readonly commonName: string | undefined;
  readonly uris: readonly string[];
  readonly publicKeySha256: string;
}

/** Parses a PEM CSR and checks its self-signature (the requester holds the key). */
export async function readCsr(pem: string): Promise<CsrContents> {
  let request: x509.Pkcs10CertificateRequest;
  try {
    request = new x509.Pkcs10CertificateRequest(pem);
  } catch {
    throw new CsrError("the CSR is not a PEM or DER PKCS #10 certificate request");
  }
  if (!(await request.verify())) throw new CsrError("the CSR's signature does not verify: it was not signed by the key it carries");
  const algorithm = request.publicKey.algorithm as { name: string; namedCurve?: string };
  if (algorithm.name !== "ECDSA" || algorithm.namedCurve !== "P-256") {
    throw new CsrError(`the CSR's key must be ECDSA P-256, not ${algorithm.name}${algorithm.namedCurve === undefined ? "" : ` ${algorithm.namedCurve}`}`);
  }
  const cn = request.subjectName.getField("CN")[0];
  const san = request.extensions.find((e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension);
  const uris = san === undefined ? [] : san.names.items.filter((n) => n.type === "url").map((n) => n.value);
  return { request, commonName: cn, uris, publicKeySha256: await publicKeyFingerprint(request.publicKey) };
}

/**
 * A client certificate for a cluster, from its CSR. The CSR must name the cluster (its
 * common name, and its SPIFFE ID if it carries a URI); the key never leaves the cluster.
 */
export async function issueClusterCertificate(
  ca: CertificateAuthority,
  csr: CsrContents,
  identity: Omit<ClusterSpiffeId, "federation">,
  now: Date,
  ttlMs: number,
): Promise<IssuedCertificate> {
  const spiffe = clusterSpiffeId({ federation: ca.federation, ...identity });
  if (csr.commonName !== identity.cluster) {
    throw new CsrError(`the CSR is for ${csr.commonName === undefined ? "no common name" : `cluster ${JSON.stringify(csr.commonName)}`}, but the token is for cluster ${JSON.stringify(identity.cluster)}`);
  }
  for (const uri of csr.uris) {
    if (uri !== spiffe) throw new CsrError(`the CSR asks for ${JSON.stringify(uri)}, but this cluster is ${spiffe}`);
  }
  const serial = newSerial();
  const notBefore = seconds(now.getTime() - CLOCK_SKEW_MS);
  const notAfter = seconds(now.getTime() + ttlMs);
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `CN=${identity.cluster}, OU=${identity.region}, O=polity`,
    issuer: ca.certificate.subject,
    notBefore,
    notAfter,
    publicKey: csr.request.publicKey,
    signingKey: ca.privateKey,
    signingAlgorithm: EC_SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: spiffe }], true),
      await x509.SubjectKeyIdentifierExtension.create(csr.request.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
    ],
  });
  return { pem: certificate.toString("pem"), serial, notBefore, notAfter, publicKeySha256: csr.publicKeySha256 };
}

/** A serving certificate for a hub (or an agent's webhook): DNS names and IP addresses. */
export async function issueServerCertificate(
  ca: CertificateAuthority,
  names: { readonly dns: readonly string[]; readonly ips: readonly string[]; readonly uri?: string },
  now: Date,
  ttlMs: number,
): Promise<{ certificatePem: string; privateKeyPem: string; notAfter: Date }> {
  const keys = await generateKeyPair();
  const notAfter = new Date(now.getTime() + ttlMs);
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: newSerial(),
    subject: `CN=${names.dns[0] ?? names.ips[0] ?? "polity"}, O=polity`,
    issuer: ca.certificate.subject,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.privateKey,
    signingAlgorithm: EC_SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...names.dns.map((value) => ({ type: "dns" as const, value })),
        ...names.ips.map((value) => ({ type: "ip" as const, value })),
        ...(names.uri === undefined ? [] : [{ type: "url" as const, value: names.uri }]),
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
    ],
  });
  return { certificatePem: certificate.toString("pem"), privateKeyPem: await privateKeyPem(keys.privateKey), notAfter };
}

/** The revocation list: every revoked certificate's serial, signed by the CA. */
export async function createRevocationList(
  ca: CertificateAuthority,
  revoked: readonly { serial: string; revokedAt: Date }[],
  now: Date,
  validityMs: number,
): Promise<string> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: ca.certificate.subject,
    thisUpdate: now,
    nextUpdate: new Date(now.getTime() + validityMs),
    signingKey: ca.privateKey,
    signingAlgorithm: EC_SIGNING,
    entries: revoked.map((r) => ({ serialNumber: r.serial, revocationDate: r.revokedAt, reason: x509.X509CrlReason.cessationOfOperation })),
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(ca.certificate)],
  });
  // "X509 CRL" is the label openssl, Node's TLS and proxies read (RFC 7468).
  return x509.PemConverter.encode(crl.rawData, "X509 CRL");
}
