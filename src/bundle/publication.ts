/**
 * What one change published in one region, as the audit log proves it: the list of its
 * bundles (cluster, version, the SHA-256 of the bundle's metadata line, the target's hash),
 * in canonical bytes. The audit log records one `bundles.published` entry per change and
 * region that names the list by its hash; the hub keeps the list itself
 * (`GET /v1/audit/bundles/<hash>`), so every bundle stays provable: the entry is in the
 * Merkle tree (an inclusion proof), the list hashes to what the entry names, and the bundle's
 * first line hashes to the `envelopeHash` its row names.
 *
 * Pure.
 */
import { canonicalJson, contentHash } from "../canonical/index.js";

export const PUBLICATION_KIND = "BundlePublication";

export interface PublishedBundle {
  readonly cluster: string;
  readonly version: number;
  /** `sha256:<hex>` of the bundle's first line (its canonical envelope, without the newline). */
  readonly envelopeHash: string;
  /** `sha256:<hex>` of the target, the effective policy set. */
  readonly targetHash: string;
}

export interface Publication {
  readonly apiVersion: "polity.dev/v1";
  readonly kind: typeof PUBLICATION_KIND;
  readonly region: string;
  readonly correlationId: string;
  readonly expires: string;
  /** Sorted by cluster. */
  readonly bundles: readonly PublishedBundle[];
}

/** The list's canonical bytes and their hash (what the audit entry names). */
export function encodePublication(region: string, correlationId: string, expires: string, bundles: readonly PublishedBundle[]): { readonly publication: Publication; readonly bytes: string; readonly hash: string } {
  const sorted = [...bundles].sort((a, b) => (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0));
  const publication: Publication = { apiVersion: "polity.dev/v1", kind: PUBLICATION_KIND, region, correlationId, expires, bundles: sorted };
  const bytes = canonicalJson(publication);
  return { publication, bytes, hash: contentHash(bytes) };
}

/** The list from its bytes, if they hash to `hash` and hold a publication; undefined otherwise. */
export function decodePublication(bytes: string, hash: string): Publication | undefined {
  if (contentHash(bytes) !== hash) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(bytes);
  } catch {
    return undefined;
  }
  const p = value as Partial<Publication> | null;
  if (p === null || typeof p !== "object" || p.kind !== PUBLICATION_KIND || !Array.isArray(p.bundles)) return undefined;
  return p as Publication;
}
