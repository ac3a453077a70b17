/**
 * Background compliance scans, as pure code: an object that already runs is judged with
 * the webhook's own evaluation (evaluate(): the same pod-template handling for workloads,
 * the same `now` for exceptions, the same namespaceObject), as the API server would send it
 * if it were created now; the results are tallied into bounded reports, one per namespace,
 * and into the compact compliance summary the agent sends its hub.
 *
 * Bounds: a report keeps at most `maxResultsPerReport` results (failures first, then
 * warnings, exemptions and passes), and its summary counts every result; a message is cut
 * to MAX_MESSAGE_LENGTH. What the tally holds per namespace is bounded the same way, so a
 * scan of 100,000 pods keeps counts, not results.
 */
import type { EffectivePolicySet } from "../layering/effective.js";
import { evaluate, type Violation } from "./evaluate.js";
import { prepare } from "./prepare.js";
import { requestForResource } from "./request.js";

/** A kind to scan: `group` undefined when the policy names the kind without its group (any group). */
export interface ScanKind {
  readonly group: string | undefined;
  readonly kind: string;
}

/** The workloads whose pod templates a policy on pods judges (workloads.ts), by the groups that serve them. */
const WORKLOADS: readonly ScanKind[] = [
  { group: "apps", kind: "Deployment" },
  { group: "apps", kind: "StatefulSet" },
  { group: "apps", kind: "DaemonSet" },
  { group: "apps", kind: "ReplicaSet" },
  { group: "batch", kind: "Job" },
  { group: "batch", kind: "CronJob" },
  { group: "", kind: "ReplicationController" },
];

/**
 * What a background scan lists and watches for a set: the kinds its policies match on
 * CREATE or UPDATE (an existing object is judged as its creation), with the workloads
 * whose pod templates the policies on pods judge. Policies matching every kind (`*`) or
 * by resource rules alone are not scanned (`unscanned` names them): listing every type of
 * a cluster would need every read permission.
 */
export function scanKinds(set: EffectivePolicySet): { readonly kinds: readonly ScanKind[]; readonly unscanned: readonly string[] } {
  const kinds = new Map<string, ScanKind>();
  const unscanned: string[] = [];
  const add = (k: ScanKind) => kinds.set(`${k.group ?? "*"}/${k.kind}`, k);
  for (const policy of prepare(set).policies) {
    if (!policy.operations.has("CREATE") && !policy.operations.has("UPDATE")) continue;
    if (policy.anyKind || (policy.kinds.length === 0 && policy.resourceRules.length > 0)) {
      unscanned.push(policy.policy.name);
      continue;
    }
    for (const k of policy.kinds) add(k);
    if (policy.matchesPods) for (const w of WORKLOADS) add(w);
  }
  return { kinds: [...kinds.values()].sort((a, b) => `${a.group ?? ""}/${a.kind}`.localeCompare(`${b.group ?? ""}/${b.kind}`)), unscanned };
}

/** A policy's verdict on one object: `skip` when an active exception exempted it. */
export type ScanResult = "pass" | "fail" | "warn" | "skip";

/** Which object, by reference only: reports and summaries never carry an object's contents. */
export interface ObjectReference {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
  readonly uid?: string;
}

export interface PolicyResult {
  readonly policy: string;
  /** The first rule that failed (or was exempted); none for a pass. */
  readonly rule?: string;
  readonly result: ScanResult;
  readonly message?: string;
  readonly category: string;
  readonly enforcement: string;
}

export interface JudgedObject {
  readonly object: ObjectReference;
  readonly results: readonly PolicyResult[];
}

/** What a compliance summary holds at most (the hub's schema, src/api/compliance.ts, enforces the same). */
export const MAX_COMPLIANCE_POLICIES = 500;
export const MAX_COMPLIANCE_EXAMPLES = 3;

/** One object a policy judged, by reference only. */
export interface ComplianceExample {
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
  readonly result: "fail" | "warn";
}

export interface PolicyCompliance {
  readonly policy: string;
  readonly pass: number;
  readonly fail: number;
  readonly warn: number;
  readonly examples: readonly ComplianceExample[];
}

/** The compact summary of a scan that the agent sends its hub with its status. */
export interface ComplianceSummary {
  /** When the scan ended. */
  readonly scannedAt: string;
  /** The bundle it judged against. */
  readonly bundleVersion: number | null;
  /** Objects judged in all. */
  readonly objects: number;
  readonly policies: readonly PolicyCompliance[];
  /** Policies left out to keep the summary bounded (those with the fewest failures). */
  readonly omittedPolicies: number;
}

export const MAX_MESSAGE_LENGTH = 256;
export const DEFAULT_MAX_RESULTS_PER_REPORT = 500;

const text = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined);

function referenceOf(object: Record<string, unknown>): ObjectReference {
  const metadata = typeof object.metadata === "object" && object.metadata !== null ? (object.metadata as Record<string, unknown>) : {};
  const namespace = text(metadata.namespace);
  const uid = text(metadata.uid);
  return {
    apiVersion: text(object.apiVersion) ?? "",
    kind: text(object.kind) ?? "",
    name: text(metadata.name) ?? "",
    ...(namespace === undefined ? {} : { namespace }),
    ...(uid === undefined ? {} : { uid }),
  };
}

const cut = (message: string) => (message.length <= MAX_MESSAGE_LENGTH ? message : `${message.slice(0, MAX_MESSAGE_LENGTH - 1)}…`);

function violationText(v: Violation): string {
  return cut(`${v.rule}${v.target === undefined ? "" : ` (${v.target})`}: ${v.message}`);
}

/**
 * One existing object, judged as the webhook would judge its creation now. `object` must
 * carry apiVersion and kind (a list's items do not: the caller sets them). Returns one
 * result per policy that applied to it.
 */
export function judgeExisting(set: EffectivePolicySet, object: Record<string, unknown>, context: { readonly now: number; readonly namespaceObject?: unknown }): JudgedObject {
  const request = requestForResource(object, "CREATE", undefined, "polity-scan");
  const applied = new Set<string>();
  const decision = evaluate(set, request, { now: context.now, ...(context.namespaceObject === undefined ? {} : { namespaceObject: context.namespaceObject }), applied });
  const byName = new Map(set.document.policies.map((p) => [p.name, p]));
  const failed = new Map<string, Violation[]>();
  for (const v of decision.violations) failed.set(v.policy, [...(failed.get(v.policy) ?? []), v]);
  const results: PolicyResult[] = [];
  const names = new Set([...applied, ...failed.keys()]);
  for (const name of [...names].sort()) {
    const policy = byName.get(name);
    const category = policy?.domain ?? "";
    const enforcement = policy?.enforcement ?? "deny";
    const violations = failed.get(name);
    if (violations !== undefined) {
      const first = violations[0]!;
      const message = violations.map(violationText).join("; ");
      results.push({ policy: name, rule: first.rule, result: first.enforcement === "warn" ? "warn" : "fail", message: cut(message), category, enforcement: first.enforcement });
      continue;
    }
    const exemption = decision.exemptions.find((e) => e.policy === name);
    if (exemption !== undefined) {
      results.push({ policy: name, rule: exemption.rule, result: "skip", message: cut(`exempted by exception ${exemption.exception} until ${exemption.expiresAt}`), category, enforcement });
      continue;
    }
    results.push({ policy: name, result: "pass", category, enforcement });
  }
  return { object: referenceOf(object), results };
}

export interface ReportSummary {
  pass: number;
  fail: number;
  warn: number;
  error: number;
  skip: number;
}

/** One namespace's report ("" for cluster-scoped objects), before it takes a Kubernetes format. */
export interface ReportContent {
  readonly namespace: string;
  readonly summary: ReportSummary;
  readonly results: readonly (PolicyResult & { readonly object: ObjectReference })[];
}

const ORDER: readonly ScanResult[] = ["fail", "warn", "skip", "pass"];

interface NamespaceTally {
  readonly summary: ReportSummary;
  /** At most `max` results of each kind: enough to fill a report in ORDER. */
  readonly kept: Record<ScanResult, (PolicyResult & { readonly object: ObjectReference })[]>;
}

interface PolicyTally {
  pass: number;
  fail: number;
  warn: number;
  readonly failing: ComplianceExample[];
  readonly warning: ComplianceExample[];
}

/** Sums a scan's judged objects into bounded reports and a compliance summary. */
export class ScanTally {
  private readonly namespaces = new Map<string, NamespaceTally>();
  private readonly policies = new Map<string, PolicyTally>();
  private judged = 0;

  constructor(private readonly maxResultsPerReport = DEFAULT_MAX_RESULTS_PER_REPORT) {}

  get objects(): number {
    return this.judged;
  }

  add(judged: JudgedObject): void {
    this.judged++;
    const namespace = judged.object.namespace ?? "";
    let ns = this.namespaces.get(namespace);
    if (ns === undefined) {
      ns = { summary: { pass: 0, fail: 0, warn: 0, error: 0, skip: 0 }, kept: { fail: [], warn: [], skip: [], pass: [] } };
      this.namespaces.set(namespace, ns);
    }
    for (const result of judged.results) {
      ns.summary[result.result]++;
      const kept = ns.kept[result.result];
      if (kept.length < this.maxResultsPerReport) kept.push({ ...result, object: judged.object });
      let p = this.policies.get(result.policy);
      if (p === undefined) {
        p = { pass: 0, fail: 0, warn: 0, failing: [], warning: [] };
        this.policies.set(result.policy, p);
      }
      // An exempted object complies with the policy as it is governed.
      if (result.result === "skip" || result.result === "pass") p.pass++;
      else {
        p[result.result]++;
        const examples = result.result === "fail" ? p.failing : p.warning;
        if (examples.length < MAX_COMPLIANCE_EXAMPLES) examples.push(example(judged.object, result.result));
      }
    }
  }

  /** One report per namespace that holds judged objects, sorted by namespace; cluster-scoped objects under "". */
  reports(): ReportContent[] {
    return [...this.namespaces.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([namespace, tally]) => {
        const results: ReportContent["results"][number][] = [];
        for (const kind of ORDER) {
          for (const r of tally.kept[kind]) {
            if (results.length >= this.maxResultsPerReport) break;
            results.push(r);
          }
        }
        return { namespace, summary: { ...tally.summary }, results };
      });
  }

  /** The compact summary for the hub: the policies with the most failures first, at most MAX_COMPLIANCE_POLICIES. */
  summary(scannedAt: string, bundleVersion: number | null): ComplianceSummary {
    const all: PolicyCompliance[] = [...this.policies.entries()].map(([policy, t]) => ({
      policy,
      pass: t.pass,
      fail: t.fail,
      warn: t.warn,
      examples: [...t.failing, ...t.warning].slice(0, MAX_COMPLIANCE_EXAMPLES),
    }));
    all.sort((a, b) => b.fail - a.fail || b.warn - a.warn || (a.policy < b.policy ? -1 : a.policy > b.policy ? 1 : 0));
    const kept = all.slice(0, MAX_COMPLIANCE_POLICIES).sort((a, b) => (a.policy < b.policy ? -1 : a.policy > b.policy ? 1 : 0));
    return { scannedAt, bundleVersion, objects: this.judged, policies: kept, omittedPolicies: all.length - kept.length };
  }
}

/** An example for the hub, with only what its schema admits (a name with control characters is shown escaped). */
function example(object: ObjectReference, result: "fail" | "warn"): ComplianceExample {
  const name = [...object.name].map((c) => (/[\p{Cc}\p{Cf}]/u.test(c) ? "?" : c)).join("").slice(0, 253) || "?";
  const kind = /^[A-Za-z][A-Za-z0-9]{0,62}$/.test(object.kind) ? object.kind : "Unknown";
  const namespace = object.namespace !== undefined && /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(object.namespace) ? object.namespace : undefined;
  return { kind, ...(namespace === undefined ? {} : { namespace }), name, result };
}
