/** Layers on a hub: apply, diff, history. */
import { z } from "zod";
import { sourceFiles } from "./fields.js";
import type { ClusterImpact } from "./impact.js";
import { rolloutRequest } from "./rollouts.js";

export const applyRequest = z.strictObject({
  files: sourceFiles,
  dryRun: z.boolean().optional(),
  /** Stages and gates: the change reaches its clusters stage by stage (see README "Staged rollouts"). */
  rollout: rolloutRequest.optional(),
});
export type ApplyRequest = z.infer<typeof applyRequest>;

export const diffRequest = z.strictObject({
  files: sourceFiles,
  /** Ask the agents of the clusters whose set changes what it would do to their recorded requests; wait at most this long. */
  impact: z.strictObject({ timeoutSeconds: z.number().int().min(1).max(60).default(10) }).optional(),
});
export type DiffRequest = z.infer<typeof diffRequest>;

export interface ApplyResult {
  readonly dryRun: boolean;
  /** Sent again with the Idempotency-Key of a change already committed: this is that change's answer. */
  readonly replayed?: boolean;
  /** The change's correlation id in the audit log (null when nothing was written). */
  readonly correlationId: string | null;
  readonly layers: readonly { readonly id: string; readonly unchanged: boolean; readonly version: number; readonly contentHash: string }[];
  readonly clusters: readonly { readonly cluster: string; readonly before: string | null; readonly after: string; readonly changed: boolean }[];
  /** The rollout the change started (its other clusters get it stage by stage). */
  readonly rollout?: string;
}

export interface PolicySetDifference {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly changed: readonly { readonly policy: string; readonly fields: readonly string[] }[];
  readonly exceptions: { readonly before: number; readonly after: number };
}

export interface DiffResult {
  /** With impact: each cluster whose set changes, and what its agent answered (null: it did not answer in time). */
  readonly impact?: { readonly clusters: readonly ClusterImpact[]; readonly unanswered: readonly string[] };
  readonly layers: readonly { readonly id: string; readonly unchanged: boolean; readonly baseVersion: number }[];
  readonly clusters: readonly ({ readonly cluster: string; readonly before: string | null; readonly after: string } & PolicySetDifference)[];
}

export interface LayerSummary {
  readonly id: string;
  readonly version: number;
  readonly author: string;
  readonly createdAt: string;
  readonly contentHash: string;
  readonly deleted: boolean;
  readonly policies: number;
  readonly exceptions: number;
}

export interface LayerVersion {
  readonly id: string;
  readonly version: number;
  readonly author: string;
  readonly createdAt: string;
  readonly contentHash: string;
  readonly files: readonly { readonly name: string; readonly content: string }[];
}

export interface LayerHistory {
  readonly id: string;
  readonly items: readonly { readonly version: number; readonly author: string; readonly createdAt: string; readonly contentHash: string; readonly files: readonly string[]; readonly deleted: boolean }[];
}

/** A policy on its way out, as its defining layer declares it. */
export interface DeprecationView {
  readonly policy: string;
  readonly layer: string;
  readonly owner: string | null;
  /** The date after which it is retired: decisions warn until then, and apply refuses to keep it after. */
  readonly after: string;
  readonly replacement: string | null;
  readonly reason: string | null;
  /** Past its date: the next apply of its layer must remove it or give a new date. */
  readonly retired: boolean;
}
