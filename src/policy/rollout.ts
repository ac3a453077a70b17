/**
 * A staged rollout as a Layer document declares it (spec.rollout) or an apply asks for it:
 * its stages (canary, waves, the rest) and the bounds of its gates, with their defaults.
 * The hub plans and drives it (src/rollout, src/hub/rollouts.ts).
 */
import { z } from "zod";

const name = z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/, "a cluster name (DNS label characters)");
const labelKey = z.string().regex(/^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/, "a label key");
const labelValue = z.string().regex(/^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/, "a label value");
/** `key=value` pairs, all of which a cluster must carry; `region` names the cluster's region. */
const labels = z.record(labelKey, labelValue).refine((l) => Object.keys(l).length > 0 && Object.keys(l).length <= 16, "between 1 and 16 labels");

export const SILENT_RULES = ["skip", "wait"] as const;

/** What an apply asks of a rollout: its stages and the bounds of its gates. */
export const rolloutRequest = z.strictObject({
  /** The canary: clusters by name, or by labels (`region` is the cluster's region). At least one cluster must match. */
  canary: z.strictObject({ clusters: z.array(name).min(1).max(100).optional(), selector: labels.optional() }).refine((c) => (c.clusters === undefined) !== (c.selector === undefined), "give clusters or selector, one of them"),
  /** Waves after the canary, in order, each by labels (`region` is the cluster's region). */
  waves: z.array(z.strictObject({ selector: labels })).max(20).default([]),
  /** At most this many clusters in one stage of a wave or of the rest. */
  maxClusters: z.number().int().min(1).max(10_000).default(10),
  /** How long every gate of a stage must hold once all its clusters acknowledged. */
  soakSeconds: z.number().int().min(0).max(7 * 24 * 3600).default(60),
  /** How long a cluster may stay silent after its stage started before the rule applies. */
  reportTimeoutSeconds: z.number().int().min(1).max(7 * 24 * 3600).default(300),
  onSilent: z.enum(SILENT_RULES).default("skip"),
  /** Bounds of the gates. */
  maxErrors: z.number().int().min(0).max(1_000_000).default(0),
  maxDenialIncrease: z.number().min(0).max(1).default(0.1),
  minRequests: z.number().int().min(1).max(1_000_000).default(5),
  maxP99Micros: z.number().int().min(1).max(60_000_000).default(50_000),
  /** An emergency fix: stages move on as soon as they are acknowledged, without soak or other gates (recorded). */
  emergency: z.boolean().default(false),
});
export type RolloutRequest = z.input<typeof rolloutRequest>;
export type RolloutSettings = z.output<typeof rolloutRequest>;
