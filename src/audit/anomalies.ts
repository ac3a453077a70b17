/**
 * Simple, explained detectors over the audit log. Each is a pure function of recent
 * entries and the time; each finding says what it saw in words and names its evidence
 * (entry indexes), and carries a key so that the same finding is logged once.
 */
import type { AuditEntry } from "./entry.js";

export interface IndexedEntry extends AuditEntry {
  readonly index: number;
}

export type Detector = "denial-spike" | "token-out-of-scope" | "repeated-failed-enrolments" | "bundle-unacknowledged";

export interface Finding {
  readonly detector: Detector;
  /** Stable across runs: the same finding is logged once. */
  readonly key: string;
  readonly cluster: string | null;
  readonly region: string | null;
  readonly summary: string;
  /** Entry indexes that show it (at most `MAX_EVIDENCE`, the first ones). */
  readonly evidence: readonly number[];
}

export interface DetectorOptions {
  /** The window a spike is measured over (default 5 min). */
  readonly windowMs: number;
  /** How many earlier windows make a cluster's baseline (default 12: an hour). */
  readonly baselineWindows: number;
  /** A spike is at least this many denials (default 50)… */
  readonly minDenials: number;
  /** …and this many times the baseline's mean per window (default 5). */
  readonly spikeFactor: number;
  /** Failed enrolments for one cluster within `failureWindowMs` that make a finding (default 3). */
  readonly maxFailedEnrolments: number;
  readonly failureWindowMs: number;
  /** How long agents have to acknowledge a bundle before it counts as missing (default 10 min). */
  readonly acknowledgeWithinMs: number;
}

export const DEFAULT_DETECTOR_OPTIONS: DetectorOptions = {
  windowMs: 5 * 60_000,
  baselineWindows: 12,
  minDenials: 50,
  spikeFactor: 5,
  maxFailedEnrolments: 3,
  failureWindowMs: 10 * 60_000,
  acknowledgeWithinMs: 10 * 60_000,
};

/** How far back the detectors look: what the caller should pass in. */
export function lookback(options: DetectorOptions = DEFAULT_DETECTOR_OPTIONS): number {
  return Math.max(options.windowMs * (options.baselineWindows + 1), options.failureWindowMs, options.acknowledgeWithinMs * 6);
}

export const MAX_EVIDENCE = 50;

const time = (e: AuditEntry) => Date.parse(e.time);
const evidence = (entries: readonly IndexedEntry[]) => entries.slice(0, MAX_EVIDENCE).map((e) => e.index);

function groupBy<T>(items: readonly T[], key: (item: T) => string | null): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    if (k === null) continue;
    const list = groups.get(k);
    if (list === undefined) groups.set(k, [item]);
    else list.push(item);
  }
  return groups;
}

/** Authenticated denials in a cluster's current window, against its own mean over the windows before. */
export function denialSpikes(entries: readonly IndexedEntry[], now: Date, options: DetectorOptions = DEFAULT_DETECTOR_OPTIONS): Finding[] {
  const findings: Finding[] = [];
  const windowStart = Math.floor(now.getTime() / options.windowMs) * options.windowMs;
  const baselineStart = windowStart - options.baselineWindows * options.windowMs;
  for (const [cluster, list] of groupBy(
    entries.filter((e) => e.kind === "agent.denials"),
    (e) => e.cluster,
  )) {
    // Only denials whose caller the agent authenticated (the API server, by its client
    // certificate) count: anyone who reaches a webhook can make it deny, and forged
    // denials must not raise a finding on their own.
    const count = (e: IndexedEntry) => (typeof e.data.authenticated === "number" ? e.data.authenticated : 0);
    const current = list.filter((e) => time(e) >= windowStart);
    const denials = current.reduce((n, e) => n + count(e), 0);
    const before = list.filter((e) => time(e) >= baselineStart && time(e) < windowStart).reduce((n, e) => n + count(e), 0);
    const mean = before / options.baselineWindows;
    if (denials < options.minDenials || denials < options.spikeFactor * mean) continue;
    findings.push({
      detector: "denial-spike",
      key: `denial-spike/${cluster}/${new Date(windowStart).toISOString()}`,
      cluster,
      region: current[0]!.region,
      summary: `cluster ${cluster} denied ${denials} requests since ${new Date(windowStart).toISOString()}, against a mean of ${mean.toFixed(1)} per ${options.windowMs / 60_000} minutes over the hour before (at least ${options.spikeFactor}× and ${options.minDenials} make a spike)`,
      evidence: evidence(current),
    });
  }
  return findings;
}

/** A join token used for a cluster other than the one it was minted for. */
export function tokensOutOfScope(entries: readonly IndexedEntry[]): Finding[] {
  return entries
    .filter((e) => e.kind === "enrolment.failed" && e.data.reason === "wrong-cluster")
    .map((e) => ({
      detector: "token-out-of-scope" as const,
      key: `token-out-of-scope/${e.index}`,
      cluster: e.cluster,
      region: e.region,
      summary: `a join token of cluster ${e.cluster} was presented to enrol ${JSON.stringify(e.data.requested)}: a credential used outside its scope`,
      evidence: [e.index],
    }));
}

/** Several failed enrolments for one cluster (or with unknown tokens) within a short window. */
export function repeatedFailedEnrolments(entries: readonly IndexedEntry[], now: Date, options: DetectorOptions = DEFAULT_DETECTOR_OPTIONS): Finding[] {
  const since = now.getTime() - options.failureWindowMs;
  const findings: Finding[] = [];
  for (const [target, all] of groupBy(
    entries.filter((e) => e.kind === "enrolment.failed"),
    (e) => e.cluster ?? "(unknown token)",
  )) {
    const first = all.findIndex((e) => time(e) >= since);
    if (first === -1) continue;
    const list = all.slice(first).filter((e) => time(e) >= since);
    if (list.length < options.maxFailedEnrolments) continue;
    // Keyed by the first failure of the run (failures less than a window apart), not of the
    // window: a run that goes on while the window slides stays one finding.
    let start = first;
    while (start > 0 && time(all[start]!) - time(all[start - 1]!) < options.failureWindowMs) start--;
    findings.push({
      detector: "repeated-failed-enrolments",
      key: `repeated-failed-enrolments/${target}/${all[start]!.index}`,
      cluster: list[0]!.cluster,
      region: list[0]!.region,
      summary: `${list.length} failed enrolments ${target === "(unknown token)" ? "with unknown join tokens" : `for cluster ${target}`} within ${options.failureWindowMs / 60_000} minutes (${options.maxFailedEnrolments} make a finding): ${[...new Set(list.map((e) => String(e.data.reason)))].join(", ")}`,
      evidence: evidence(list),
    });
  }
  return findings;
}

/** The bundles a `bundles.published` entry lists, by the list's hash: what the caller read from the hub's lists. */
export type PublishedLists = ReadonlyMap<string, readonly { readonly cluster: string; readonly version: number }[]>;

/**
 * Bundles published by one change and not acknowledged, within the grace period, by as
 * many clusters as they were published to. Each `bundles.published` entry names its list
 * by hash; `lists` holds them (an entry whose list is missing counts as none published).
 */
export function unacknowledgedBundles(entries: readonly IndexedEntry[], now: Date, options: DetectorOptions = DEFAULT_DETECTOR_OPTIONS, lists: PublishedLists = new Map()): Finding[] {
  const findings: Finding[] = [];
  const acknowledged = new Map<string, number>();
  for (const e of entries) {
    if (e.kind !== "bundle.acknowledged" || e.cluster === null || typeof e.data.version !== "number") continue;
    acknowledged.set(e.cluster, Math.max(acknowledged.get(e.cluster) ?? 0, e.data.version));
  }
  for (const [correlationId, entriesOfChange] of groupBy(
    entries.filter((e) => e.kind === "bundles.published"),
    (e) => e.correlationId,
  )) {
    const last = Math.max(...entriesOfChange.map(time));
    if (now.getTime() - last < options.acknowledgeWithinMs) continue;
    const published = entriesOfChange.flatMap((e) => (lists.get(String(e.data.listHash)) ?? []).map((b) => ({ ...b, entry: e })));
    const missing = published.filter((b) => (acknowledged.get(b.cluster) ?? 0) < b.version);
    if (missing.length === 0) continue;
    const names = missing.map((b) => b.cluster).sort();
    const shown = [...new Set(missing.map((b) => b.entry))];
    findings.push({
      detector: "bundle-unacknowledged",
      key: `bundle-unacknowledged/${correlationId}`,
      cluster: names.length === 1 ? names[0]! : null,
      region: new Set(shown.map((e) => e.region)).size === 1 ? shown[0]!.region : null,
      summary: `change ${correlationId} published ${published.length} bundles; ${published.length - missing.length} were acknowledged within ${options.acknowledgeWithinMs / 60_000} minutes, ${missing.length} were not: ${names.slice(0, 10).join(", ")}${names.length > 10 ? ` and ${names.length - 10} more` : ""}`,
      evidence: evidence(shown),
    });
  }
  return findings;
}

/** Every detector; findings whose key is in `known` (already logged) are left out. */
export function detectAnomalies(given: readonly IndexedEntry[], now: Date, known: ReadonlySet<string>, options: DetectorOptions = DEFAULT_DETECTOR_OPTIONS, lists: PublishedLists = new Map()): Finding[] {
  // In log order whatever order they came in: keys and evidence name the first entries.
  const entries = [...given].sort((a, b) => a.index - b.index);
  return [
    ...denialSpikes(entries, now, options),
    ...tokensOutOfScope(entries),
    ...repeatedFailedEnrolments(entries, now, options),
    ...unacknowledgedBundles(entries, now, options, lists),
  ].filter((f) => !known.has(f.key));
}
