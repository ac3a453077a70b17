/**
 * A rollout as the store keeps it (`rollouts`, owned by rollouts.ts), how `rollout status`
 * shows it, and an agent's stored status as the gates read it.
 */
import { bundleCounts, type ClusterRolloutState, type GateMeasure, type RolloutSettings, type RolloutState, type RolloutView } from "../api/rollouts.js";
import type { AgentReport, ClusterProgress, Stage } from "../rollout/index.js";

export type RolloutRow = {
  id: string;
  layer_id: string;
  from_version: number;
  to_version: number;
  state: RolloutState;
  stages: Stage[];
  stage: number;
  stage_started_at: Date;
  soak_since: Date | null;
  settings: RolloutSettings;
  clusters: Record<string, ClusterProgress>;
  measured: { gates?: GateMeasure[]; states?: Record<string, { state: ClusterRolloutState; note: string | null }>; judgedInMs?: number };
  reason: string | null;
  emergency: boolean;
  correlation_id: string;
  created_by: string;
  created_at: Date;
  updated_at: Date;
  revision: string;
};

export const ACTIVE: readonly RolloutState[] = ["running", "paused"];

/** A stage as `rollout status` shows it: done, under way, waiting, or, once the rollout ended without completing, rolled back or never reached. */
function stageState(state: RolloutState, current: number, i: number): RolloutView["stages"][number]["state"] {
  if (state === "completed") return "done";
  if (state === "rolled-back" || state === "aborted") return i <= current ? "rolled-back" : "not-reached";
  return i < current ? "done" : i === current ? "current" : "waiting";
}

/** An agent's stored status, as the gates read it; what is not of the expected shape counts as not reported. */
export function reportOf(reportedAt: Date, status: Readonly<Record<string, unknown>>): AgentReport {
  const counts = bundleCounts.safeParse(status.byBundle);
  const latency = typeof status.latencyMicros === "object" && status.latencyMicros !== null ? (status.latencyMicros as Record<string, unknown>) : {};
  return {
    reportedAt: reportedAt.getTime(),
    bundleVersion: typeof status.bundleVersion === "number" ? status.bundleVersion : null,
    bundleHash: typeof status.bundleHash === "string" ? status.bundleHash : null,
    byBundle: counts.success ? counts.data : [],
    p99Micros: typeof latency.p99 === "number" ? latency.p99 : null,
    latencySamples: typeof latency.samples === "number" ? latency.samples : 0,
  };
}

/** A rollout as `polity rollout status` shows it. */
export function rolloutView(row: RolloutRow): RolloutView {
  const states = row.measured.states ?? {};
  const ended = !ACTIVE.includes(row.state);
  return {
    id: row.id,
    layer: row.layer_id,
    fromVersion: row.from_version,
    toVersion: row.to_version,
    state: row.state,
    emergency: row.emergency,
    stage: row.stage,
    stageStartedAt: new Date(row.stage_started_at).toISOString(),
    soakSince: row.soak_since === null ? null : new Date(row.soak_since).toISOString(),
    settings: row.settings,
    stages: row.stages.map((s, i) => ({ name: s.name, clusters: s.clusters, state: stageState(row.state, row.stage, i) })),
    clusters: row.stages.flatMap((s, i) =>
      s.clusters.map((cluster) => {
        const progress = row.clusters[cluster];
        const measured = states[cluster]?.state;
        let state: ClusterRolloutState;
        if (progress?.skipped === true) state = "skipped";
        else if (i > row.stage) state = ended ? "not-reached" : "pending";
        else if (row.state === "rolled-back" || row.state === "aborted") state = measured === "failed" ? "failed" : "rolled-back";
        else state = measured ?? (progress?.ackedVersion != null ? "acknowledged" : "updating");
        return { cluster, stage: i, state, note: states[cluster]?.note ?? null };
      }),
    ),
    gates: row.measured.gates ?? [],
    judgedInMs: row.measured.judgedInMs ?? null,
    reason: row.reason,
    correlationId: row.correlation_id,
    createdBy: row.created_by,
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
  };
}
