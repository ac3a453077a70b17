/**
 * Compliance on the wire: the compact summary an agent sends with its status (per policy,
 * how many objects pass, fail and warn, and a few of the failing ones by kind, namespace
 * and name; never their contents), and the matrix the hub answers with.
 *
 * Every field is bounded here, at the hub's boundary: a summary of at most
 * MAX_COMPLIANCE_POLICIES policies with at most MAX_COMPLIANCE_EXAMPLES examples each fits
 * the status route's body limit, and names that could move a terminal's cursor are refused.
 */
import { z } from "zod";
import { MAX_COMPLIANCE_EXAMPLES, MAX_COMPLIANCE_POLICIES } from "../decision/scan.js";
import { DNS_LABEL_PATTERN } from "../policy/names.js";
import type { DriftTotals } from "./drift.js";
import { displayName as showable } from "./fields.js";

export { MAX_COMPLIANCE_EXAMPLES, MAX_COMPLIANCE_POLICIES };
/** A count no real cluster reaches, still exact in a double and in PostgreSQL's bigint. */
const MAX_COUNT = 1_000_000_000;

const count = z.number().int().min(0).max(MAX_COUNT);

/** One object a policy judged, by reference only. */
export const complianceExample = z.strictObject({
  kind: z.string().regex(/^[A-Za-z][A-Za-z0-9]{0,62}$/, "is not a Kubernetes kind"),
  namespace: z.string().regex(new RegExp(DNS_LABEL_PATTERN), "is not a namespace name").optional(),
  name: showable(253),
  result: z.enum(["fail", "warn"]),
});
export type ComplianceExample = z.infer<typeof complianceExample>;

export const policyCompliance = z.strictObject({
  policy: showable(253),
  pass: count,
  fail: count,
  warn: count,
  examples: z.array(complianceExample).max(MAX_COMPLIANCE_EXAMPLES),
});
export type PolicyCompliance = z.infer<typeof policyCompliance>;

export const complianceSummary = z
  .strictObject({
    /** When the scan these counts come from ended. */
    scannedAt: z.iso.datetime(),
    /** The bundle the scan judged against. */
    bundleVersion: z.number().int().min(0).nullable(),
    /** Objects judged in all. */
    objects: count,
    policies: z.array(policyCompliance).max(MAX_COMPLIANCE_POLICIES),
    /** Policies left out to keep the summary bounded (those with the fewest failures). */
    omittedPolicies: count,
  })
  .refine((s) => new Set(s.policies.map((p) => p.policy)).size === s.policies.length, { message: "names a policy twice", path: ["policies"] });
export type ComplianceSummary = z.infer<typeof complianceSummary>;

/** pass: nothing fails or warns; fail: something fails; warn: something warns, nothing fails. */
export type ComplianceState = "pass" | "fail" | "warn";

export const complianceState = (p: { fail: number; warn: number }): ComplianceState => (p.fail > 0 ? "fail" : p.warn > 0 ? "warn" : "pass");

/** One cluster's row of the matrix. */
export interface ClusterCompliance {
  readonly cluster: string;
  readonly region: string;
  /** Null until its agent reported a scan. */
  readonly scannedAt: string | null;
  readonly reportedAt: string | null;
  readonly bundleVersion: number | null;
  readonly objects: number;
  readonly omittedPolicies: number;
  readonly policies: readonly (PolicyCompliance & { readonly state: ComplianceState })[];
  /** What its agent's drift watcher reported in all (GET /v1/compliance adds it; see api/drift.ts). */
  readonly drift?: DriftTotals;
  /** Its agent's last apply of the bundle's manifests (polity cluster status has the rest); null before any. */
  readonly apply?: { readonly bundleVersion: number; readonly outcome: string; readonly failed: string | null; readonly conflicts: number } | null;
}

/** GET /v1/compliance: clusters × policies, for the clusters the caller may read. */
export interface ComplianceMatrix {
  /** Every policy some row names, sorted: the matrix's columns. */
  readonly policies: readonly string[];
  readonly items: readonly ClusterCompliance[];
}

/** GET /v1/compliance/history: how a cell changed, newest first. */
export interface ComplianceChange {
  readonly cluster: string;
  readonly region: string;
  readonly policy: string;
  readonly at: string;
  readonly pass: number;
  readonly fail: number;
  readonly warn: number;
}
