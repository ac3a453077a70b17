/** Clusters on a hub: registration, labels, join tokens, and what the hub knows of each. */
import { z } from "zod";
import { clusterFacts } from "../intents/facts.js";
import { labels, name, ttlSeconds } from "./fields.js";

/** `facts`: what the cluster can hold (README, "Intents"); a change its facts refuse is refused before rollout. */
export const registerRequest = z.strictObject({ name, region: name, labels: labels.optional(), facts: clusterFacts.optional() });
export type RegisterRequest = z.infer<typeof registerRequest>;
/** Many clusters in one change: one plan, one transaction, one publication of their bundles. */
export const registerManyRequest = z.strictObject({ items: z.array(registerRequest).min(1).max(10_000) });

export const relabelRequest = z.strictObject({ labels });
export type RelabelRequest = z.infer<typeof relabelRequest>;

export const joinTokenRequest = z.strictObject({ ttlSeconds: ttlSeconds.optional() });
export type JoinTokenRequest = z.infer<typeof joinTokenRequest>;

export interface EffectiveSummary {
  readonly hash?: string;
  readonly policies?: number;
  readonly exceptions?: number;
  /** Why the cluster's layers do not combine, when they do not. */
  readonly error?: string;
}

export interface AgentSummary {
  readonly reportedAt: string;
  readonly bundleVersion: number | null;
  readonly bundleHash: string | null;
  readonly stale: boolean | null;
  /** The agent enforces the bundle the hub expects, and reported within the last minute. */
  readonly inSync: boolean;
}

/** A registered cluster: its identity and registration. */
export interface ClusterRecord {
  readonly name: string;
  readonly region: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly revokedAt: string | null;
}

export interface ClusterView extends ClusterRecord {
  readonly effective: EffectiveSummary;
  readonly bundle: number | null;
  readonly agent: AgentSummary | null;
}

export interface JoinToken {
  readonly cluster: string;
  /** Shown once. */
  readonly token: string;
  readonly expiresAt: string;
}
