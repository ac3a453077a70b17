/**
 * Intents on the wire between an agent and its hub: the facts an agent observes in its
 * cluster (README, "Intents"), and the result of each apply of its bundle's manifests. Every
 * field is bounded and checked here, at the hub's boundary; what a person reads (objects,
 * reasons) may not hold characters that move a terminal's cursor.
 */
import { z } from "zod";
import { agentTimestamp, displayName } from "./fields.js";

const quantity = z.string().regex(/^[+]?[0-9.]+([eE][-+]?[0-9]+|[numkKMGTPE]i?)?$/, "must be a quantity such as 500m, 2Gi or 10");
const MAX_COUNT = 1_000_000;

/**
 * What an agent observes of its cluster: the API server's version (GET /version), the
 * zones its nodes carry (topology.kubernetes.io/zone) and the sum of their allocatable cpu
 * and memory. Whether the network plugin enforces NetworkPolicy cannot be observed: the
 * declared value stays.
 */
export const reportedFacts = z.strictObject({
  kubernetesVersion: z.string().max(64).regex(/^v?1\.[0-9]{1,3}(\.[0-9]+)?([-+][0-9A-Za-z.+-]*)?$/, "must be a Kubernetes version such as v1.31.2"),
  zones: z.array(z.string().min(1).max(63).regex(/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/, "is not a label value")).max(256),
  capacity: z.strictObject({ cpu: quantity.optional(), memory: quantity.optional() }),
  /** How many nodes the sums are over. */
  nodes: z.number().int().min(0).max(MAX_COUNT),
});
export type ReportedFacts = z.infer<typeof reportedFacts>;

const object = displayName(600);
const reason = displayName(4096);

/** A field another manager owns, which an apply would have changed (Kubernetes' 409 Conflict). */
export const applyConflict = z.strictObject({ object, field: displayName(1024), manager: displayName(256) });
export type ApplyConflict = z.infer<typeof applyConflict>;

/**
 * One apply of a bundle's manifests: `applied` (every object applied), `failed` (one failed:
 * the version was rolled back), `refused` (the agent's rendering differs from the hash the
 * hub signed: nothing applied), `waiting` (the bundle carries no facts: nothing to render).
 */
export const applyReport = z.strictObject({
  bundleVersion: z.number().int().min(0),
  manifestsHash: z.string().max(100).nullable(),
  outcome: z.enum(["applied", "failed", "refused", "waiting"]),
  /** Applied on a bundle the agent loaded from its disk: nothing was deleted. */
  fromDisk: z.boolean(),
  /** When the agent applied, by its clock (the hub keeps it clamped: src/api/fields.ts). */
  at: agentTimestamp,
  applied: z.number().int().min(0).max(MAX_COUNT),
  deleted: z.number().int().min(0).max(MAX_COUNT),
  failed: z.strictObject({ object, reason }).nullable(),
  rolledBack: z.boolean(),
  rollbackFailures: z.array(z.strictObject({ object, reason })).max(100),
  conflicts: z.array(applyConflict).max(100),
  /** Why nothing was applied (outcome refused or waiting). */
  message: reason.nullable(),
});
export type ApplyReport = z.infer<typeof applyReport>;

/** What the hub shows of a cluster's intents: its facts, the last apply, and the problems its facts raise. */
export interface IntentsStatus {
  readonly cluster: string;
  readonly facts: {
    readonly declared: unknown;
    readonly reported: (ReportedFacts & { readonly reportedAt: string }) | null;
    /** What its manifests are rendered with: declared, with reported values where present. */
    readonly effective: unknown;
    /**
     * The agent's latest report when the hub did not sign it: it would have dropped objects
     * the last good facts render, or brought new problems. The last good facts stay.
     */
    readonly withheld: { readonly facts: ReportedFacts; readonly reportedAt: string; readonly problems: readonly string[] } | null;
  };
  readonly bundle: { readonly version: number | null; readonly manifestsHash: string | null };
  readonly lastApply: (ApplyReport & { readonly reportedAt: string }) | null;
  /** What its effective facts cannot hold, and why its latest reported facts were withheld (prefixed "reported facts not signed:"). */
  readonly problems: readonly string[];
}
