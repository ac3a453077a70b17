/**
 * The regional hub role's wire formats (src/hub/regional/): a parent's region tokens, a
 * regional hub's enrolment, the mirror it pulls, the summary it sends up, conflicts.
 */
import { z } from "zod";
import { sourceFile } from "./fields.js";
import { zoneName, type DeclaredResidency } from "./residency.js";

const name = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "a region name: lowercase letters, digits and '-'").max(63);
const pem = z.string().min(1).max(16 * 1024);
/** A DNS name (RFC 1123 labels, no wildcard, not localhost: loopback is allowLoopback's). */
const dnsName = z
  .string()
  .max(253)
  .regex(/^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/, "a DNS name: lowercase labels of letters, digits and '-', no wildcard")
  .refine((n) => n !== "localhost" && !n.endsWith(".localhost"), "localhost is not a hostname to fix: mint the token with allowLoopback");

/** A target's hash as signed metadata names it. */
const targetHash = z.string().regex(/^sha256:[0-9a-f]{64}$/);

/**
 * What one regional summary carries of bundles at most, shared by the regional hub that fills
 * it (src/hub/regional/role.ts) and the parent that takes it (sent-bundles.ts): base64 on the
 * wire (the summary route accepts 64 MiB), bytes once each bundle is put together with its
 * target (what the parent stores), distinct targets, and one target's base64.
 */
export const SUMMARY_WIRE_BYTES = 24 * 1024 * 1024;
export const SUMMARY_ASSEMBLED_BYTES = 192 * 1024 * 1024;
export const MAX_SUMMARY_TARGETS = 1000;
export const MAX_TARGET_BASE64 = 48 * 1024 * 1024;

export const regionTokenRequest = z.strictObject({
  /** Lifetime in seconds (default 1 h, at most 7 days). */
  ttlSeconds: z.number().int().min(60).max(7 * 24 * 3600).optional(),
  /**
   * The DNS names the regional hub's certificate will carry, fixed here by the global admin
   * (the hub cannot ask for others: a certificate from the federation CA for the global
   * hub's name, or another region's, would let it impersonate them).
   */
  hostnames: z.array(dnsName).max(20).default([]),
  /** Also localhost, 127.0.0.1 and ::1 (a hub on one machine: polity dev, tests). */
  allowLoopback: z.boolean().default(false),
});

export const regionalEnrolment = z.strictObject({
  token: z.string().min(1).max(256),
  region: name,
  /** The regional hub's own keys' public halves (ECDSA P-256, SPKI PEM): its hub certificate's and its region CA's. */
  hubPublicKeyPem: pem,
  caPublicKeyPem: pem,
  /** Its bundle-signing and audit-log keys (Ed25519, SPKI PEM): what its bundles and heads are checked with. */
  bundleKeyPem: pem,
  auditKeyPem: pem,
  /**
   * Names it would be reached by: each must be one its region token admits (fixed by the
   * global admin when minting it); its certificate carries the token's names, never more.
   */
  hostnames: z.array(z.string().min(1).max(253)).max(20).default([]),
});
export type RegionalEnrolment = z.infer<typeof regionalEnrolment>;

/** A renewal names no key: the parent renews for the keys the region enrolled with. */
export const regionalRenewal = z.strictObject({});

/** A regional hub's delegation and CA, renewed for the same keys (`POST /v1/region/renew`). */
export interface RegionalRenewed {
  readonly region: string;
  /** The root version that extends the region's delegation. */
  readonly rootVersion: number;
  /** A new intermediate for the region's CA key (the same key). */
  readonly caCertificatePem: string;
}

export interface RegionalEnrolled {
  readonly federation: string;
  readonly region: string;
  /** The federation's root CA: what every cluster and hub trusts. */
  readonly rootPem: string;
  readonly hubCertificatePem: string;
  /** The region's CA: an intermediate under the root, name-constrained to `spiffe://<federation>/region/<region>/` (src/hub/trust.ts issueRegionalCa). */
  readonly caCertificatePem: string;
  /** The root version that delegates the region to its hub's bundle key (src/hub/trust.ts delegateRegion). */
  readonly rootVersion: number;
  /** The parent's bundle key (agents of the region may pin it beside their regional hub's). */
  readonly parentBundleKeyPem: string;
}

export interface LayerCopy {
  readonly version: number;
  readonly contentHash: string;
  readonly files: readonly z.infer<typeof sourceFile>[];
}

/** What a regional hub mirrors from its parent. */
export interface Mirror {
  readonly federation: string;
  readonly region: string;
  readonly global: LayerCopy | null;
  /** The region layer as the parent holds it (the last the region sent and the parent accepted). */
  readonly regionLayer: LayerCopy | null;
  /** The size of the region log's newest head recorded by the parent: the next consistency proof starts there. */
  readonly headSize: number;
  readonly clusters: readonly {
    readonly name: string;
    readonly labels: Readonly<Record<string, string>>;
    readonly facts: unknown;
    readonly revoked: boolean;
    /**
     * The newest version of the cluster's bundle its agent may hold, as the parent knows it:
     * the parent's own (signed before the region had a hub, or while it was cut off) or the
     * last one a hub of the region sent up (one enrolled before). The regional hub's bundles
     * for it are newer. Absent when there is none, and from an older parent.
     */
    readonly bundleVersion?: number;
  }[];
  /**
   * Certificates the parent issued for the region's clusters after the mirror request's
   * `certificatesAfter` (oldest first, at most 1000): renewals of agents that fell back to
   * it while their regional hub was away, which the regional hub must know when they return.
   */
  readonly certificates: readonly MirroredCertificate[];
  /** The zones the region's data may be kept in, as declared on the parent (src/hub/residency.ts); absent from an older parent. */
  readonly residency?: DeclaredResidency | null;
}

export interface MirroredCertificate {
  readonly serial: string;
  readonly cluster: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly publicKeySha256: string;
  readonly certificatePem: string;
  readonly issuedAt: string;
}

const counts = z.record(z.string().max(64), z.number().int().min(0)).refine((r) => Object.keys(r).length <= 64, "at most 64 counts");

export const regionalSummary = z.strictObject({
  /** The region layer at the regional hub, when the parent has not accepted that version yet. */
  regionLayer: z.strictObject({ version: z.number().int().min(0), files: z.array(sourceFile).max(1000) }).optional(),
  /** Certificates the region's CA issued since the last summary (so that the parent knows them when an agent falls back to it). */
  certificates: z
    .array(
      z.strictObject({
        serial: z.string().regex(/^[0-9a-f]{1,64}$/),
        cluster: name,
        notBefore: z.iso.datetime(),
        notAfter: z.iso.datetime(),
        publicKeySha256: z.string().regex(/^[0-9a-f]{64}$/),
        certificatePem: pem,
      }),
    )
    .max(10_000),
  /**
   * The region's signed bundles changed since the last summary, which the parent serves as a
   * mirror: each as its metadata line (base64) and the hash of its target, the targets once
   * each in `targets` (clusters with one effective set share it); or, from an older regional
   * hub, whole (`bytes`, base64).
   */
  bundles: z
    .array(
      z
        .strictObject({
          cluster: name,
          version: z.number().int().min(1),
          bytes: z.string().max(8 * 1024 * 1024).optional(),
          envelope: z.string().max(64 * 1024).optional(),
          target: targetHash.optional(),
        })
        .refine((b) => (b.bytes === undefined) === (b.envelope !== undefined && b.target !== undefined), { message: "give either bytes, or envelope and target" }),
    )
    .max(10_000),
  /** The targets the bundles name, once each (base64). */
  targets: z.array(z.strictObject({ hash: targetHash, bytes: z.string().max(MAX_TARGET_BASE64) })).max(MAX_SUMMARY_TARGETS).optional(),
  /** The regional log's newest signed head, and a consistency proof from the head the parent acknowledged last. */
  head: z
    .strictObject({
      head: z.unknown(),
      proof: z.array(z.string().regex(/^[0-9a-f]{64}$/)).max(128),
      /** The recorded size the proof starts from (the mirror's `headSize` when the summary was made); absent from an older regional hub. */
      from: z.number().int().min(0).optional(),
    })
    .optional(),
  /** Counts only: clusters, stale clusters, acknowledgements; compliance passes, failures and warnings. */
  status: counts,
  compliance: counts,
  /** Conflicts found in the region since the last summary. */
  /** Clusters of the region revoked on its hub (its operators may revoke at once, during a partition too): revoked here as well. */
  revoked: z.array(name).max(10_000).optional(),
  conflicts: z
    .array(z.strictObject({ id: z.string().regex(/^[0-9a-f]{16}$/), layerId: z.string().max(200), reason: z.string().max(4000), resolution: z.string().max(400), revertedVersion: z.number().int().nullable(), detectedAt: z.iso.datetime() }))
    .max(100),
  /** The zone the regional hub runs in (`polity hub --zone`), shown by `polity get residency`. */
  zone: zoneName.optional(),
});
export type RegionalSummary = z.infer<typeof regionalSummary>;

export interface SummaryAnswer {
  readonly regionLayer: { readonly state: "accepted" | "unchanged" | "conflict"; readonly reason?: string };
  /** The tree size the parent recorded: the next proof starts there. */
  readonly acknowledgedSize: number;
  /** Why the head sent was refused (a log that does not extend the head recorded before): audited on the parent. */
  readonly headRefused?: string;
  /** Bundles and conflicts of the summary refused (not stored), each with why: audited on the parent (`regional-hub.refused`). */
  readonly refused?: readonly string[];
}

export interface Conflict {
  readonly id: string;
  readonly region: string;
  readonly layerId: string;
  readonly detectedAt: string;
  readonly detectedBy: string;
  readonly reason: string;
  readonly resolution: string;
  readonly revertedVersion: number | null;
}
