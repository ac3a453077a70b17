/**
 * Drift on the wire: what an agent's drift watcher found on an object Polity manages, and
 * what it did, sent to its hub in batches (POST /v1/agent/drift), and what the hub answers
 * (GET /v1/drift). Events name the object and the drifted fields by path only, never a
 * value: a live object may hold what its writer put there.
 *
 * Every field is bounded and checked here, at the hub's boundary: names as Kubernetes
 * accepts them, paths and reasons without control or bidirectional formatting characters,
 * and an outcome that fits the remediation (`inform` only reports; `enforce` re-applies,
 * fails, or stops in a fight).
 */
import { z } from "zod";
import { DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN } from "../policy/names.js";
import { agentTimestamp, displayName } from "./fields.js";

export const MAX_DRIFT_FIELDS = 32;
export const MAX_DRIFT_EVENTS_PER_BATCH = 500;
/** What an agent can have dropped or suppressed between two batches: its buffer's bound (src/agent/drift/reporter.ts). */
export const MAX_DRIFT_DROPPED_PER_BATCH = 2000;
const perBatch = z.number().int().min(0).max(MAX_DRIFT_DROPPED_PER_BATCH);
const MAX_COUNT = 1_000_000_000;
const count = z.number().int().min(0).max(MAX_COUNT);

export const DRIFT_OUTCOMES = ["remediated", "reported", "fight", "failed"] as const;
export type DriftOutcome = (typeof DRIFT_OUTCOMES)[number];

export const driftObject = z.strictObject({
  apiVersion: z.string().regex(/^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?v[0-9][a-z0-9]{0,19}$/, "is not a Kubernetes apiVersion"),
  kind: z.string().regex(/^[A-Za-z][A-Za-z0-9]{0,62}$/, "is not a Kubernetes kind"),
  namespace: z.string().regex(new RegExp(DNS_LABEL_PATTERN), "is not a namespace name").optional(),
  name: z.string().regex(new RegExp(DNS_SUBDOMAIN_PATTERN), "is not a Kubernetes object name"),
});
export type DriftObject = z.infer<typeof driftObject>;

export const driftEvent = z
  .strictObject({
    /** Unique per event, so that a batch sent twice stores each once. */
    id: z.string().regex(/^[0-9a-f]{16,64}$/, "is not an event id (16 to 64 hex digits)"),
    /** When the watcher acted, by the agent's clock (the hub keeps it clamped: src/api/fields.ts). */
    at: agentTimestamp,
    object: driftObject,
    /** The policy that made it (its `polity.dev/policy` label), when it has one. */
    policy: displayName(253).nullable(),
    /** The object was deleted (fields is then empty). */
    missing: z.boolean(),
    /** The owned fields that differed, as paths (`spec.hard.pods`); never their values. */
    fields: z.array(displayName(512)).max(MAX_DRIFT_FIELDS),
    /** Drifted fields left out of `fields` to keep the event bounded. */
    omittedFields: count,
    remediation: z.enum(["enforce", "inform"]),
    /** remediated: re-applied; reported: inform only; failed: the re-apply was refused; fight: the bound was reached, re-applies stop for the rest of the minute. */
    outcome: z.enum(DRIFT_OUTCOMES),
    /** Re-applies of this object in the current window (a minute), this one included. */
    reapplies: z.number().int().min(0).max(10_000),
    /** The other writer, from the object's managedFields, when the server names one. */
    otherManager: displayName(128).optional(),
    /** Why a re-apply failed (the API server's status and message). */
    reason: displayName(300).optional(),
  })
  .refine((e) => (e.remediation === "inform") === (e.outcome === "reported"), { message: "an inform object's drift is reported, and only it is", path: ["outcome"] })
  .refine((e) => e.missing === (e.fields.length === 0 && e.omittedFields === 0), { message: "a missing object has no fields, and a changed one names at least one", path: ["fields"] });
export type DriftEvent = z.infer<typeof driftEvent>;

export const driftBatch = z.strictObject({
  batch: z.string().regex(/^[A-Za-z0-9-]{8,64}$/, "is not a batch id"),
  events: z.array(driftEvent).max(MAX_DRIFT_EVENTS_PER_BATCH),
  /** Events the agent's buffer dropped since its last batch (its bound). */
  dropped: perBatch,
  /** Drift of inform objects past the per-object bound: counted, not sent one by one. */
  suppressed: perBatch,
});
export type DriftBatch = z.infer<typeof driftBatch>;

/** GET /v1/drift: a stored event with where it happened. */
export interface StoredDriftEvent extends DriftEvent {
  readonly cluster: string;
  readonly region: string;
  readonly receivedAt: string;
}

/** Per cluster, what its agent reported in all (the compliance matrix shows it). */
export interface DriftTotals {
  readonly remediated: number;
  readonly reported: number;
  readonly fights: number;
  readonly failed: number;
  readonly dropped: number;
  readonly lastAt: string | null;
}
