/**
 * What a regional hub's summary claims, judged on the global hub before anything is stored:
 * the bundles it signed (kept here as a mirror for its agents' fallback) and the conflicts
 * it found. A region is trusted for nothing the root does not give it:
 *
 * - a bundle is decoded, and its cluster, region, federation and version are read from its
 *   signed metadata (never from the summary); it must be signed by a key the current root
 *   allows for that region (its delegation, or the federation's bundles role; not revoked),
 *   for a cluster the registry puts in that region, and its version may not jump further
 *   than MAX_VERSION_JUMP above the copy held (a bogus huge version would pin the copy);
 * - a conflict must be about the region's own layer (`region/<region>`), and a region keeps
 *   at most MAX_CONFLICTS_PER_REGION of them here; it is recorded as the region's claim.
 *
 * - a certificate must be one of the region's CAs issued, for one of its clusters, with the
 *   serial and key the summary names (certificateRefusal).
 *
 * Pure: the root, the registry, the region's CAs and the copies held are passed in.
 */
import { createHash, X509Certificate } from "node:crypto";
import { BundleError, decodeBundle, verifyBundle, type Bundle } from "../../bundle/index.js";
import { normalizeSerial } from "../../identity/ca.js";
import { certificatePublicKeyInfo } from "../../identity/der.js";
import { parseClusterSpiffeId } from "../../identity/spiffe.js";
import { rootAuthorizer, type RootMetadata } from "../../trust/index.js";

/** How far above the copy held (or above 0) a region's bundle version may be. */
export const MAX_VERSION_JUMP = 1_000_000;
/** How many reported conflicts one region keeps on the global hub. */
export const MAX_CONFLICTS_PER_REGION = 10_000;

export type BundleClaim = { readonly ok: true; readonly cluster: string; readonly version: number } | { readonly ok: false; readonly cluster: string; readonly reason: string };

export interface ClaimContext {
  readonly region: string;
  readonly federation: string;
  readonly root: RootMetadata;
  /** The region the registry puts a cluster in, if it knows the cluster. */
  readonly regionOf: (cluster: string) => string | undefined;
  /** The version of the copy held for a cluster, if any. */
  readonly heldVersion: (cluster: string) => number | undefined;
  readonly now: Date;
}

/**
 * A bundle a region sent up, whole or decoded (`claimed`: the cluster its summary names, for
 * the refusal's wording only; `targetHash`: its target's hash, when the caller computed it).
 */
export function judgeBundle(bundle: Bundle | Buffer, claimed: string, context: ClaimContext, targetHash?: string): BundleClaim {
  const { region, federation, root } = context;
  try {
    if (Buffer.isBuffer(bundle)) bundle = decodeBundle(bundle);
    const signed = bundle.envelope.signed;
    const cluster = signed.cluster;
    if (signed.region !== region) return { ok: false, cluster, reason: `the bundle for cluster ${cluster} names region ${signed.region}, not ${region}` };
    const registered = context.regionOf(cluster);
    if (registered !== region) return { ok: false, cluster, reason: `cluster ${cluster} is ${registered === undefined ? "not registered here" : `in region ${registered}`}, not in region ${region}` };
    if (claimed !== cluster) return { ok: false, cluster, reason: `the summary names cluster ${claimed}, but the bundle's signed metadata names ${cluster}` };
    // Its signer must be allowed for the region by the current root (checked as an agent of
    // that region checks it), the federation and cluster its own; expiry is the agent's to judge.
    verifyBundle(bundle, { authorize: rootAuthorizer(root, context.now), federation, region, cluster }, undefined, undefined, targetHash);
    const held = context.heldVersion(cluster) ?? 0;
    if (signed.version > held + MAX_VERSION_JUMP) return { ok: false, cluster, reason: `the bundle for cluster ${cluster} is version ${signed.version}, more than ${MAX_VERSION_JUMP} above the copy held (${held})` };
    return { ok: true, cluster, version: signed.version };
  } catch (error) {
    const why = error instanceof BundleError ? `${error.problem}: ${error.message}` : error instanceof Error ? error.message : String(error);
    return { ok: false, cluster: claimed, reason: `the bundle sent for cluster ${claimed} does not verify under root version ${root.version} (${why})` };
  }
}

/** Why a conflict a region reports is refused, or undefined when it may be recorded. */
export function conflictRefusal(region: string, layerId: string, held: number): string | undefined {
  if (layerId !== `region/${region}`) return `a region reports conflicts about its own layer region/${region} only, not ${JSON.stringify(layerId.slice(0, 200))}`;
  if (held >= MAX_CONFLICTS_PER_REGION) return `region ${region} already has ${held} conflicts recorded here (at most ${MAX_CONFLICTS_PER_REGION})`;
  return undefined;
}

/** Who a conflict recorded on the global hub is said to come from: the region's claim, not the global hub's finding. */
export function reportedBy(region: string): string {
  return `region ${region}`;
}

/** A certificate a region says its CA issued, as its summary sends it. */
export interface CertificateClaim {
  readonly serial: string;
  readonly cluster: string;
  readonly publicKeySha256: string;
  readonly certificatePem: string;
}

/**
 * Why a certificate a region reports is not one its CA issued for one of its clusters (or
 * undefined when it is): its PEM must parse, carry the serial, key and cluster the summary
 * names, name the cluster's SPIFFE ID in this region, and be signed by one of the region's
 * CAs the global hub issued and has not revoked (`authorities`). Nothing else is recorded
 * as the region's: the global hub renews what it records.
 */
export function certificateRefusal(claim: CertificateClaim, context: Pick<ClaimContext, "region" | "federation" | "regionOf">, authorities: readonly X509Certificate[]): string | undefined {
  const { region, federation } = context;
  if (context.regionOf(claim.cluster) !== region) return `certificate ${claim.serial.slice(0, 16)}: cluster ${claim.cluster} is not a cluster of region ${region}`;
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(claim.certificatePem);
  } catch {
    return `certificate ${claim.serial.slice(0, 16)}: not a certificate in PEM`;
  }
  if (normalizeSerial(certificate.serialNumber) !== normalizeSerial(claim.serial)) return `certificate ${claim.serial.slice(0, 16)}: its PEM carries serial ${certificate.serialNumber.toLowerCase()}`;
  const keyHash = createHash("sha256").update(certificatePublicKeyInfo(certificate.raw)).digest("hex");
  if (keyHash !== claim.publicKeySha256) return `certificate ${claim.serial.slice(0, 16)}: its key is not the one the summary names`;
  const uri = (certificate.subjectAltName ?? "").split(", ").find((n) => n.startsWith("URI:"))?.slice(4);
  const id = uri === undefined ? undefined : parseClusterSpiffeId(uri);
  if (id === undefined || id.federation !== federation || id.region !== region || id.cluster !== claim.cluster) return `certificate ${claim.serial.slice(0, 16)}: it does not name cluster ${claim.cluster} of region ${region}`;
  if (!authorities.some((ca) => signedBy(certificate, ca))) return `certificate ${claim.serial.slice(0, 16)}: not signed by a CA of region ${region} that this hub issued and has not revoked`;
  return undefined;
}

function signedBy(certificate: X509Certificate, ca: X509Certificate): boolean {
  try {
    return certificate.checkIssued(ca) && certificate.verify(ca.publicKey);
  } catch {
    return false;
  }
}
