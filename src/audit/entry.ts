/**
 * What the audit log records: one entry per event, canonical JSON (RFC 8785) with a
 * published schema (`ENTRY_SCHEMA`), so that anyone can recompute an entry's leaf hash
 * from its bytes. Entries name who did what, when, where, and which change it belongs
 * to; they never carry a secret value (token values, keys, CSRs' keys, policy messages
 * that could echo a workload's data).
 */
import { canonicalJson, type Json } from "../canonical/index.js";
import { leafHash } from "./merkle.js";

/** Every kind of event the hub records, with what `data` holds. */
export const ENTRY_KINDS = {
  "layer.changed": "a new version of a layer: id, version, base version, content hash, the diff and its hash",
  "layer.deleted": "a layer deleted (a new, empty version): id, version",
  "exception.requested": "an exception requested: its policy, rules, scope, justification, expiry, who asked, and which team answers",
  "exception.granted": "an exception granted: by a layer change (a global admin's layer file) or by approving a request (the authenticated approver, or the risk rule); its policy, rules, scope, justification, expiry",
  "exception.denied": "an exception request denied, by whom and why",
  "exception.escalated": "an exception request its team did not answer in time: global admins may answer it too",
  "exception.changed": "an exception changed by a layer change: as above, before and after",
  "exception.withdrawn": "an exception removed: by a layer change, or a request withdrawn (pending or granted)",
  "exception.expired": "an exception reached its expiry: it applies nowhere from then on, and leaves the next bundles",
  "proposal.created": "a change proposed: its layers, the versions it was proposed on, its diff, and the teams whose approval it needs",
  "proposal.approved": "a proposal approved for one or more teams, by an authenticated member of each",
  "proposal.rejected": "a proposal rejected by a team it needs (or a global admin), or withdrawn by its proposer, and why",
  "proposal.applied": "a proposal applied, with every approval it had: its layer changes carry the same correlation id",
  "cluster.registered": "a cluster registered: name, region, labels",
  "cluster.relabelled": "a cluster's labels changed",
  "cluster.removed": "a cluster removed (its identity revoked)",
  "join-token.created": "a one-time join token minted for a cluster (never its value): id, expiry",
  "cluster.enrolled": "a cluster enrolled with a join token",
  "enrolment.failed": "an enrolment refused: why (unknown, expired or used token, a token of another cluster, a bad CSR)",
  "certificate.issued": "a cluster certificate issued (enrolment or renewal): serial, validity, key hash",
  "certificate.revoked": "cluster certificates revoked: serials",
  "token.created": "a bearer token minted (never its value): id, name, role, region, expiry",
  "token.revoked": "a bearer token revoked: id",
  "bundles.published":
    "the signed bundles a change published in one region: how many, how many distinct targets (policy sets), expiry, and the SHA-256 of their list (cluster, version, envelope hash, policy-set hash; GET /v1/audit/bundles/<hash>); a list of one names its cluster, version and hashes in the entry too",
  "bundle.acknowledged": "an agent reported enforcing a bundle version",
  "cluster.facts-reported": "an agent reported new effective facts of its cluster (Kubernetes version, zones, capacity): before and after; signed: true when its bundle is signed again with them, false when they were withheld (they would drop objects or bring problems: listed), once per distinct facts",
  "intents.apply-failed": "an agent's apply of its bundle's manifests failed (the object and reason, rolled back or not, conflicts with other field managers) or was refused (its rendering differed from the signed hash)",
  "agent.denials": "admission denials an agent made, batched from its decision logs: time, request uid, operation, resource, policies and rules, and whether the caller was authenticated (how many in `authenticated`)",
  "agent.drift":
    "drift an agent found on an object its intents made, and what it did: the object, its policy, the drifted fields (paths, never values) or that it was deleted, the remediation (enforce or inform) and the outcome (remediated: re-applied; reported; failed, and why; fight: another controller kept writing, re-applies stopped for the rest of the minute, the other manager when known); past the cluster's budget of entries a minute, one entry per batch counts the rest (aggregated, with counts per outcome)",
  "rollout.started": "a staged rollout of a change of one layer started: the layer, its versions before and after, the stages with their clusters, the gates' bounds, and whether it is an emergency (gates skipped)",
  "rollout.stage-started": "a rollout's stage started: its clusters' bundles published (the canary's with the change itself)",
  "rollout.cluster-skipped": "a cluster that did not report within the stage's timeout, skipped by the stage's rule (onSilent: skip)",
  "rollout.paused": "a rollout paused by an operator: no stage starts or is judged",
  "rollout.resumed": "a paused rollout resumed: its stage's soak starts again",
  "rollout.completed": "every stage of a rollout held its gates: every cluster has the change",
  "rollout.rolled-back": "a rollout rolled back, by a failed gate (the measured value and its bound) or by an operator: the previous content written as a new layer version and published at higher bundle versions",
  "rollout.aborted": "a rollout aborted by an operator: every cluster returned to the previous content",
  "anomaly.found": "a detector's finding: what, why, and the entries that show it",
  "region-token.created": "a one-time token minted for a region's hub to enrol with this hub (never its value): id, region, expiry",
  "regional-hub.enrolled": "a regional hub enrolled: its region, its hub certificate's serial, the hashes of its region CA, bundle and log keys",
  "regional-hub.refused": "something a regional hub or a parent sent, refused: an older global layer from a parent, a region log that does not extend the head recorded before, a head whose signature does not verify, bundles that do not verify under the region's delegation, conflicts about another layer than the region's; and why",
  "region.conflict": "a regional change that broke the global layer (a lock set meanwhile), reverted in the region: the layer, the version reverted, why",
  "trust.root-published": "a new version of the federation's root of trust (src/trust): its version, the keys it lists by purpose, delegations, revoked keys, and the SHA-256 of its envelope",
  "key.rotated": "a signing key rotated: its purpose, the new key id (it entered the root before signing anything) and the old one (listed until retired); for the federation CA, purpose ca and the certificates' SHA-256",
  "key.retired": "a rotated-out key left the root: every agent acknowledged a bundle under its successor (a CA: and holds a certificate of the new CA), or the overlap ran out",
  "key.revoked": "a key revoked (on suspicion of compromise): its id, purpose and the reason; refused everywhere from the root version named",
  "region.delegated": "a region's key delegated by the root: region, key id, expiry (it may sign only that region's bundles and layer)",
  "region.ca-issued": "an intermediate CA certificate issued to a region, name-constrained to its SPIFFE path: serial, expiry",
  "residency.declared": "the zones a region's data may be kept in, declared by a global admin (on the global hub) or followed from the parent's mirror (on the region's hub): version, zones, the zones before",
  "residency.refused": "region-scoped data (decision logs, agent status, compliance details, drift reports) refused by a hub outside the zones its region allows, by the global hub for a region with its own hub, or read at the global hub while its region's hub keeps it: cluster, what, this hub's zone, the allowed zones, where it is kept, why; once per cluster and kind within a budget (how many were left out before)",
} as const;

export type EntryKind = keyof typeof ENTRY_KINDS;

export interface AuditEvent {
  readonly kind: EntryKind;
  /** Who: `user:<subject>` (or `user:<token name>` for a token without one), `cluster:<name>`, `join-token:<id>`, `hub`, `anonymous`. */
  readonly actor: string;
  /** The cluster and region the event applies to; null for the federation as a whole. */
  readonly cluster: string | null;
  readonly region: string | null;
  /** Links the events of one change across clusters: a layer change, its bundles, their acknowledgements. */
  readonly correlationId: string;
  readonly data: { readonly [key: string]: Json };
}

export interface AuditEntry extends AuditEvent {
  readonly v: 1;
  /** RFC 3339, UTC, milliseconds. */
  readonly time: string;
}

/** An entry as stored: its bytes (the leaf's input) and leaf hash. */
export interface EncodedEntry {
  readonly entry: AuditEntry;
  readonly bytes: string;
  readonly leafHash: Buffer;
}

export function encodeEntry(event: AuditEvent, time: Date): EncodedEntry {
  const entry: AuditEntry = { v: 1, time: time.toISOString(), ...event };
  const bytes = canonicalJson(entry);
  return { entry, bytes, leafHash: leafHash(Buffer.from(bytes, "utf8")) };
}

const SEARCH_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/;

/** Why `raw` is no bound of a search by time (RFC 3339 or a date); undefined when it is one. */
export function searchTimeProblem(name: string, raw: string): string | undefined {
  if (SEARCH_TIME.test(raw) && !Number.isNaN(Date.parse(raw))) return undefined;
  return `${name} must be an RFC 3339 time (2026-11-25T06:00:00Z) or a date (2026-11-25), not ${JSON.stringify(raw)}`;
}

/** Why `raw` is no entry kind; undefined when it is one. */
export function entryKindProblem(raw: string): string | undefined {
  if (Object.hasOwn(ENTRY_KINDS, raw)) return undefined;
  return `kind ${JSON.stringify(raw)} is not one of: ${Object.keys(ENTRY_KINDS).join(", ")}`;
}

/** JSON Schema (2020-12) of an entry: published at GET /v1/audit/schema and in the README. */
export const ENTRY_SCHEMA = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  $id: "https://polity.dev/schemas/audit-entry-v1.json",
  title: "Polity audit log entry",
  description: "An entry's leaf hash is SHA-256(0x00 || its RFC 8785 canonical JSON, UTF-8).",
  type: "object",
  required: ["v", "kind", "time", "actor", "cluster", "region", "correlationId", "data"],
  additionalProperties: false,
  properties: {
    v: { const: 1 },
    kind: { enum: Object.keys(ENTRY_KINDS) },
    time: { type: "string", format: "date-time" },
    actor: { type: "string", minLength: 1 },
    cluster: { type: ["string", "null"] },
    region: { type: ["string", "null"] },
    correlationId: { type: "string", minLength: 1 },
    data: { type: "object" },
  },
} as const;
