/** The impact of a change on the wire: what an agent answers, and what `polity diff --impact` shows. */
import { z } from "zod";

const text = z.string().max(253);

const ruleImpact = z.strictObject({
  policy: text,
  rule: text,
  newlyDenied: z.number().int().min(0),
  newlyAllowed: z.number().int().min(0),
  newlyWarned: z.number().int().min(0),
  examples: z.array(z.strictObject({ kind: text, namespace: text.nullable(), name: text.nullable(), operation: z.string().max(16) })).max(3),
});

/** An agent's answer to an impact request: counts over its window of recorded requests. */
export const impactAnswer = z.strictObject({
  /** The policy-set hash of what the agent evaluated against (the bundle it enforces), or null without one. */
  currentHash: z.string().max(100).nullable(),
  requests: z.number().int().min(0),
  newlyDenied: z.number().int().min(0),
  newlyAllowed: z.number().int().min(0),
  newlyWarned: z.number().int().min(0),
  undecidable: z.number().int().min(0),
  byRule: z.array(ruleImpact).max(1000),
  /** How long the evaluation took at the agent, in ms. */
  tookMs: z.number().min(0).max(3_600_000),
});
export type ImpactAnswer = z.infer<typeof impactAnswer>;

/** What an agent is asked: the candidate set (canonical JSON, base64) of a change. */
export interface ImpactRequest {
  readonly id: string;
  readonly candidate: string;
  readonly candidateHash: string;
}

export interface ClusterImpact {
  readonly cluster: string;
  /** Null when the agent did not answer in time. */
  readonly impact: ImpactAnswer | null;
}
