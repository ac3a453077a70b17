/** What an agent sends its hub: status reports and decision-log batches. */
import { z } from "zod";
import { complianceSummary } from "./compliance.js";
import { bundleCounts } from "./rollouts.js";

/**
 * A status report: the hub reads the bundle it acknowledges, the decisions per bundle
 * version (which a rollout's gates judge) and the compliance summary of the agent's last
 * scan (validated field by field), and keeps the rest as sent.
 */
export const statusReport = z.looseObject({
  bundleVersion: z.number().int().nullable(),
  bundleHash: z.string().max(100).nullable().optional(),
  /** Decisions per recent bundle version, which a rollout's gates judge. */
  byBundle: bundleCounts.optional(),
  compliance: complianceSummary.optional(),
});
export type StatusReport = z.infer<typeof statusReport>;

export const decisionBatch = z.strictObject({
  batch: z.string().min(8).max(64),
  entries: z.array(z.record(z.string(), z.unknown())).max(10_000),
  dropped: z.number().int().min(0),
});
export type DecisionBatch = z.infer<typeof decisionBatch>;

export interface DecisionBatchStored {
  readonly batch: string;
  readonly stored: number;
  /** The hub had this batch already: it stored nothing new. */
  readonly duplicate: boolean;
}
