/** Staged rollouts on the wire: how an apply asks for one, and how the hub shows one. */
import { z } from "zod";

export { rolloutRequest, SILENT_RULES, type RolloutRequest, type RolloutSettings } from "../policy/rollout.js";
import type { RolloutSettings } from "../policy/rollout.js";

export const ROLLOUT_STATES = ["running", "paused", "completed", "rolled-back", "aborted"] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];
export const isRolloutState = (value: string): value is RolloutState => (ROLLOUT_STATES as readonly string[]).includes(value);

/** A cluster's place in a rollout. */
export type ClusterRolloutState = "pending" | "updating" | "acknowledged" | "silent" | "skipped" | "failed" | "rolled-back" | "not-reached";

export interface GateMeasure {
  readonly cluster: string;
  readonly gate: "acknowledged" | "errors" | "denial-rate" | "p99";
  /** What was measured, in words (`12 of 40 denied: 30%`). */
  readonly measured: string;
  readonly bound: string;
  readonly holds: boolean;
}

export interface RolloutView {
  readonly id: string;
  readonly layer: string;
  readonly fromVersion: number;
  readonly toVersion: number;
  readonly state: RolloutState;
  readonly emergency: boolean;
  readonly stage: number;
  readonly stageStartedAt: string;
  readonly soakSince: string | null;
  readonly settings: RolloutSettings;
  readonly stages: readonly { readonly name: string; readonly clusters: readonly string[]; readonly state: "done" | "current" | "waiting" | "rolled-back" | "not-reached" }[];
  readonly clusters: readonly { readonly cluster: string; readonly stage: number; readonly state: ClusterRolloutState; readonly note: string | null }[];
  readonly gates: readonly GateMeasure[];
  /** What the hub's last judgement of the stage cost (reading the reports, evaluating the gates), in ms. */
  readonly judgedInMs: number | null;
  readonly reason: string | null;
  readonly correlationId: string;
  readonly createdBy: string;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** What a status report says of the decisions made under each recent bundle version. */
export const bundleCounts = z
  .array(
    z.strictObject({
      version: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
      allowed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
      denied: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
      errors: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    }),
  )
  .max(8);
export type BundleCounts = z.infer<typeof bundleCounts>;
