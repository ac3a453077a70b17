/**
 * The federation's certificate authority: ECDSA P-256, created once, its private key kept
 * sealed (secrets.ts). It issues short-lived client certificates to clusters, whose URI
 * SAN is their SPIFFE ID, serving certificates to hubs, and a revocation list. Everything
 * is standard X.509 that openssl, curl and any TLS stack accept.
 *
 * Pure but for the clock and randomness, which are passed in or drawn here explicitly.
 */
import { createHash, createPublicKey, KeyObject, randomBytes, sign, verify } from "node:crypto";
import * as der from "./der.js";
import { readElement } from "./der.js";
import { clusterSpiffeId, type ClusterSpiffeId } from "./spiffe.js";
import { EC_SIGNING, generateKeyPair, privateKeyPem, x509, type CryptoKey } from "./x509.js";

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
  const algorithm = request.publicKey.algorithm as { name: string; namedCurve?: string };
  if (algorithm.name !== "ECDSA" || algorithm.namedCurve !== "P-256") {
    throw new CsrError(`the CSR's key must be ECDSA P-256, not ${algorithm.name}${algorithm.namedCurve === undefined ? "" : ` ${algorithm.namedCurve}`}`);
  }
  // The self-signature, checked with node:crypto (synchronous, and far cheaper than WebCrypto's
  // round trip through the thread pool): ECDSA with SHA-256 only, the one way Polity signs CSRs.
  const signing = request.signatureAlgorithm as { name?: string; hash?: { name?: string } };
  let signed = false;
  try {
    const spki = Buffer.from(request.publicKey.rawData);
    // certificationRequestInfo: the first element of the CSR's outer SEQUENCE, what its signature covers.
    const raw = Buffer.from(request.rawData);
    const outer = readElement(raw, 0);
    const info = readElement(raw, outer.start);
    const tbs = raw.subarray(outer.start, info.end);
    signed = signing.name === "ECDSA" && signing.hash?.name === "SHA-256" && verify("sha256", tbs, createPublicKey({ key: spki, format: "der", type: "spki" }), Buffer.from(request.signature));
  } catch {
    signed = false;
  }
  if (!signed) throw new CsrError("the CSR's signature does not verify: it was not signed by the key it carries");
  const cn = request.subjectName.getField("CN")[0];
  const san = request.extensions.find((e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension);
  const uris = san === undefined ? [] : san.names.items.filter((n) => n.type === "url").map((n) => n.value);
  return { request, commonName: cn, uris, publicKeySha256: createHash("sha256").update(Buffer.from(request.publicKey.rawData)).digest("hex") };
}

/** What issuing a cluster certificate needs of the CA, derived once per CA. */
interface Issuer {
  readonly name: Buffer;
  readonly key: KeyObject;
  readonly authorityKeyIdentifier: Buffer;
}

const issuers = new WeakMap<CertificateAuthority, Issuer>();

function issuerOf(ca: CertificateAuthority): Issuer {
  let issuer = issuers.get(ca);
  if (issuer === undefined) {
    const spki = Buffer.from(ca.certificate.publicKey.rawData);
    issuer = {
      name: Buffer.from(ca.certificate.subjectName.toArrayBuffer()),
      key: KeyObject.from(ca.privateKey),
      // RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits, as the CA's own certificate names it.
      authorityKeyIdentifier: keyIdentifier(spki),
    };
    issuers.set(ca, issuer);
  }
  return issuer;
}

/** SHA-1 of the subjectPublicKey BIT STRING's bits in a SubjectPublicKeyInfo (RFC 5280 4.2.1.2, method 1). */
function keyIdentifier(spki: Buffer): Buffer {
  const element = (bytes: Buffer, offset: number) => readElement(bytes, offset, () => new CsrError("the CSR's public key is not DER"));
  const outer = element(spki, 0);
  const algorithm = element(spki, outer.start);
  const bits = element(spki, algorithm.end);
  if (outer.tag !== 0x30 || algorithm.tag !== 0x30 || bits.tag !== 0x03) throw new CsrError("the CSR's public key is not a SubjectPublicKeyInfo");
  return createHash("sha1").update(spki.subarray(bits.start + 1, bits.end)).digest();
}

const EXTENSION = {
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  subjectAltName: "2.5.29.17",
  subjectKeyIdentifier: "2.5.29.14",
  authorityKeyIdentifier: "2.5.29.35",
} as const;

const extension = (oid: string, critical: boolean, value: Buffer): Buffer =>
  der.sequence(der.objectIdentifier(oid), ...(critical ? [der.boolean(true)] : []), der.octetString(value));

const ECDSA_WITH_SHA256 = der.sequence(der.objectIdentifier("1.2.840.10045.4.3.2"));

/**
 * A client certificate for a cluster, from its CSR. The CSR must name the cluster (its
 * common name, and its SPIFFE ID if it carries a URI); the key never leaves the cluster.
 *
 * X.509 v3 (RFC 5280), written directly in DER and signed with node:crypto (a general ASN.1
 * library took milliseconds per certificate): subject `CN=<cluster>, OU=<region>, O=polity`;
 * basic constraints (not a CA), key usage digitalSignature and the SAN URI (the SPIFFE ID),
 * all three critical; extended key usage clientAuth; subject and authority key identifiers.
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
  const issuer = issuerOf(ca);
  const serial = newSerial();
  const notBefore = seconds(now.getTime() - CLOCK_SKEW_MS);
  const notAfter = seconds(now.getTime() + ttlMs);
  const spki = Buffer.from(csr.request.publicKey.rawData);
  const rdn = (oid: string, value: string) => der.set(der.sequence(der.objectIdentifier(oid), der.utf8String(value)));
  const tbs = der.sequence(
    der.explicit(0, Buffer.from([0x02, 0x01, 0x02])), // v3
    der.integerFromHex(serial),
    ECDSA_WITH_SHA256,
    issuer.name,
    der.sequence(der.time(notBefore), der.time(notAfter)),
    der.sequence(rdn("2.5.4.3", identity.cluster), rdn("2.5.4.11", identity.region), rdn("2.5.4.10", "polity")),
    spki,
    der.explicit(
      3,
      der.sequence(
        extension(EXTENSION.basicConstraints, true, der.sequence()),
        extension(EXTENSION.keyUsage, true, Buffer.from([0x03, 0x02, 0x07, 0x80])), // digitalSignature
        extension(EXTENSION.extKeyUsage, false, der.sequence(der.objectIdentifier("1.3.6.1.5.5.7.3.2"))), // clientAuth
        extension(EXTENSION.subjectAltName, true, der.sequence(der.tlv(0x86, Buffer.from(spiffe, "ascii")))),
        extension(EXTENSION.subjectKeyIdentifier, false, der.octetString(keyIdentifier(spki))),
        extension(EXTENSION.authorityKeyIdentifier, false, der.sequence(der.tlv(0x80, issuer.authorityKeyIdentifier))),
      ),
    ),
  );
  const signature = sign("sha256", tbs, issuer.key); // ECDSA-Sig-Value, DER
  const certificate = der.sequence(tbs, ECDSA_WITH_SHA256, der.bitString(signature));
  const pem = `-----BEGIN CERTIFICATE-----\n${certificate.toString("base64").replace(/.{64}/g, "$&\n").replace(/\n$/, "")}\n-----END CERTIFICATE-----\n`;
  return { pem, serial, notBefore, notAfter, publicKeySha256: csr.publicKeySha256 };
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
