/**
 * A region's certificate authority: an intermediate under the federation CA, allowed to
 * issue only its region's identities. Its certificate carries
 *
 *   - BasicConstraints CA, pathLen 0 (it issues leaves, never another CA), critical;
 *   - KeyUsage keyCertSign and cRLSign, critical;
 *   - NameConstraints (RFC 5280 4.2.1.10), critical, permitting only the URI subtree
 *     `spiffe://<federation>/region/<region>/`.
 *
 * @peculiar/x509 has no class for NameConstraints: the extension is written here in DER.
 *
 * RFC 5280 defines URI name constraints on the host part only ("a fully qualified domain
 * name"); a path prefix such as the region's is Polity's own use of the field. OpenSSL (and
 * so Node's TLS) does check URI constraints, by host: a leaf whose URI host is not the
 * constraint's is refused, and a constraint that is not a bare host, like ours, refuses
 * every URI leaf (see the README, "Trust model": the region's intermediate is therefore not
 * presented to OpenSSL in a chain; Polity checks the chain itself). leafWithinConstraints
 * is that check: every certificate in the chain signed by the next, each CA's permitted URI
 * prefixes holding the leaf's SPIFFE IDs, pathLen respected, the chain ending at a trusted
 * root. Hubs and agents accept a certificate issued by an intermediate only through it.
 */
import { createPublicKey, X509Certificate } from "node:crypto";
import * as der from "./der.js";
import { readElement } from "./der.js";
import type { CertificateAuthority } from "./ca.js";
import { newSerial } from "./ca.js";
import { EC_SIGNING, webcrypto, x509 } from "./x509.js";

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const NAME_CONSTRAINTS = "2.5.29.30";

export class RegionalCaError extends Error {
  override readonly name = "RegionalCaError";
}

/** The URI prefix a region's identities have, and its intermediate is constrained to. */
export function regionPrefix(federation: string, region: string): string {
  return `spiffe://${federation}/region/${region}/`;
}

/** NameConstraints with permitted URI subtrees only (DER, the extension's value). */
export function nameConstraintsValue(permittedUris: readonly string[]): Buffer {
  const subtrees = permittedUris.map((uri) => der.sequence(der.tlv(0x86, Buffer.from(uri, "ascii"))));
  return der.sequence(der.tlv(0xa0, Buffer.concat(subtrees)));
}

/**
 * An intermediate CA certificate for `region`, for the ECDSA P-256 public key the regional
 * hub made and keeps (SPKI PEM), signed by the federation CA.
 */
export async function issueRegionalCa(ca: CertificateAuthority, region: string, publicKeyPem: string, now: Date, ttlMs: number): Promise<{ certificatePem: string; serial: string; notAfter: Date }> {
  if (!NAME.test(region)) throw new RegionalCaError(`region ${JSON.stringify(region).slice(0, 80)} cannot be part of a SPIFFE ID`);
  let spki: Buffer;
  try {
    const key = createPublicKey(publicKeyPem);
    if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") throw new RegionalCaError("a regional CA's key must be ECDSA P-256");
    spki = key.export({ type: "spki", format: "der" });
  } catch (error) {
    if (error instanceof RegionalCaError) throw error;
    throw new RegionalCaError("the regional CA's public key is not an SPKI PEM");
  }
  const publicKey = await webcrypto.subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: "P-256" }, true, ["verify"]);
  const serial = newSerial();
  const notAfter = new Date(Math.min(now.getTime() + ttlMs, ca.certificate.notAfter.getTime()));
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `CN=Polity region ${region} CA, OU=${region}, O=polity`,
    issuer: ca.certificate.subject,
    notBefore: new Date(now.getTime() - 5 * 60 * 1000),
    notAfter,
    publicKey,
    signingKey: ca.privateKey,
    signingAlgorithm: EC_SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.Extension(NAME_CONSTRAINTS, true, nameConstraintsValue([regionPrefix(ca.federation, region)])),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
    ],
  });
  return { certificatePem: certificate.toString("pem"), serial, notAfter };
}

// ---------------------------------------------------------------------------------------
// Checking a chain.

export type ChainVerdict = { readonly ok: true; readonly uris: readonly string[] } | { readonly ok: false; readonly reason: string };

/** The permitted and excluded URI subtrees of a certificate's NameConstraints, if it has one. */
export function uriConstraints(certificate: X509Certificate): { permitted: string[]; excluded: string[]; other: boolean } | undefined {
  const parsed = new x509.X509Certificate(certificate.raw);
  const extension = parsed.extensions.find((e) => e.type === NAME_CONSTRAINTS);
  if (extension === undefined) return undefined;
  const value = Buffer.from(extension.value);
  const result = { permitted: [] as string[], excluded: [] as string[], other: false };
  const outer = readElement(value, 0);
  let offset = outer.start;
  while (offset < outer.end) {
    const trees = readElement(value, offset);
    const into = trees.tag === 0xa0 ? result.permitted : trees.tag === 0xa1 ? result.excluded : undefined;
    let inner = trees.start;
    while (inner < trees.end) {
      const subtree = readElement(value, inner);
      const base = readElement(value, subtree.start);
      if (base.tag === 0x86 && into !== undefined) into.push(value.subarray(base.start, base.end).toString("ascii"));
      else result.other = true;
      inner = subtree.end;
    }
    offset = trees.end;
  }
  return result;
}

function urisOf(certificate: X509Certificate): string[] {
  const san = certificate.subjectAltName ?? "";
  return san
    .split(", ")
    .filter((n) => n.startsWith("URI:"))
    .map((n) => n.slice(4));
}

function issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  return child.checkIssued(parent) && child.verify(parent.publicKey);
}

/**
 * Whether `chain` (PEMs: the leaf, then intermediates, in order) leads to one of `roots`
 * (the federation CA certificates trusted now), each certificate valid at `now`, each CA a
 * CA within its pathLen, and the leaf's URI SANs inside every URI NameConstraints of the
 * CAs above it (a prefix match on the whole URI, Polity's SPIFFE path scoping). A URI that
 * is not a SPIFFE ID without `..`, `%`, `?`, `#` or empty segments is refused outright.
 */
export function leafWithinConstraints(chain: readonly string[], roots: readonly string[], now: Date): ChainVerdict {
  let certs: X509Certificate[];
  let anchors: X509Certificate[];
  try {
    certs = chain.map((pem) => new X509Certificate(pem));
    anchors = roots.map((pem) => new X509Certificate(pem));
  } catch {
    return { ok: false, reason: "the chain is not PEM certificates" };
  }
  const leaf = certs[0];
  if (leaf === undefined) return { ok: false, reason: "the chain is empty" };
  if (certs.length > 4) return { ok: false, reason: "the chain is longer than Polity issues" };
  const uris = urisOf(leaf);
  for (const uri of uris) {
    if (!/^spiffe:\/\/[a-z0-9.-]+(\/[a-z0-9.-]+)+$/.test(uri) || uri.split("/").some((s) => s === "..")) return { ok: false, reason: `the leaf names ${JSON.stringify(uri)}, not a plain SPIFFE ID` };
  }
  for (const cert of certs) {
    if (Date.parse(cert.validFrom) > now.getTime() || Date.parse(cert.validTo) <= now.getTime()) return { ok: false, reason: `certificate ${cert.subject.replace(/\n/g, ", ")} is not valid at ${now.toISOString()}` };
  }
  for (let i = 0; i < certs.length; i++) {
    const child = certs[i]!;
    const parent = certs[i + 1];
    if (parent !== undefined) {
      if (!parent.ca) return { ok: false, reason: `${parent.subject.replace(/\n/g, ", ")} is not a CA` };
      if (!issuedBy(child, parent)) return { ok: false, reason: `${child.subject.replace(/\n/g, ", ")} is not signed by the certificate after it` };
      const limit = pathLength(parent);
      if (limit !== undefined && i > limit) return { ok: false, reason: `${parent.subject.replace(/\n/g, ", ")} may not issue CA certificates (pathLen ${limit})` };
      const constraints = uriConstraints(parent);
      if (constraints !== undefined) {
        for (const uri of uris) {
          if (constraints.permitted.length > 0 && !constraints.permitted.some((p) => uri.startsWith(p))) {
            return { ok: false, reason: `${uri} is outside what ${parent.subject.replace(/\n/g, ", ")} may issue (${constraints.permitted.join(", ")})` };
          }
          if (constraints.excluded.some((p) => uri.startsWith(p))) return { ok: false, reason: `${uri} is excluded by ${parent.subject.replace(/\n/g, ", ")}` };
        }
      }
      continue;
    }
    const anchor = anchors.find((a) => issuedBy(child, a) || a.raw.equals(child.raw));
    if (anchor === undefined) return { ok: false, reason: `the chain does not lead to a federation CA trusted here` };
  }
  return { ok: true, uris };
}

function pathLength(certificate: X509Certificate): number | undefined {
  const parsed = new x509.X509Certificate(certificate.raw);
  const basic = parsed.getExtension(x509.BasicConstraintsExtension);
  return basic?.pathLength;
}
