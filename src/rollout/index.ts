/**
 * Staged rollouts, the pure part: the stages a rollout cuts the clusters a change reaches
 * into (canary, waves, the rest), and the judgement of a stage from what its clusters'
 * agents report (acknowledged, evaluation errors, denial rate against the cluster's own
 * baseline, webhook p99), held for a soak time. No clock, no I/O: `now` and the reports are
 * passed in; the hub's shell (src/hub/rollouts.ts) stores, publishes and acts.
 */
import type { BundleCounts, ClusterRolloutState, GateMeasure, RolloutSettings } from "../api/rollouts.js";
import type { Problem } from "../errors.js";

export interface RolloutCluster {
  readonly name: string;
  readonly region: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface Stage {
  readonly name: string;
  readonly clusters: readonly string[];
}

/** Decisions under the bundle a cluster held before its stage: its baseline. */
export interface Baseline {
  readonly allowed: number;
  readonly denied: number;
}

/** A cluster's progress, as the rollout keeps it. */
export interface ClusterProgress {
  readonly stage: number;
  /** The policy-set hash its stage published (null until its stage starts). */
  readonly target: string | null;
  readonly baseline: Baseline | null;
  /** The first bundle version it reported with the target hash. */
  readonly ackedVersion: number | null;
  readonly skipped: boolean;
}

/** What the hub knows of an agent's latest status report. */
export interface AgentReport {
  readonly reportedAt: number;
  readonly bundleVersion: number | null;
  readonly bundleHash: string | null;
  readonly byBundle: BundleCounts;
  readonly p99Micros: number | null;
  readonly latencySamples: number;
}

const selectorText = (selector: Readonly<Record<string, string>>) =>
  Object.entries(selector)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");

/** Whether a cluster carries every label of a selector; `region` is its region. */
export function matchesLabels(selector: Readonly<Record<string, string>>, cluster: RolloutCluster): boolean {
  return Object.entries(selector).every(([key, value]) => (key === "region" ? cluster.region === value : cluster.labels[key] === value));
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * The stages of a rollout over `reached` (the clusters the change reaches): the canary, each
 * wave cut into stages of at most `maxClusters`, then the rest, cut the same way. A canary
 * or a wave that matches none of the clusters left to it is a problem, as is a change that
 * reaches no cluster.
 */
export function planStages(settings: RolloutSettings, reached: readonly RolloutCluster[]): { stages: Stage[]; problems: Problem[] } {
  const problems: Problem[] = [];
  const sorted = [...reached].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (sorted.length === 0) return { stages: [], problems: [{ message: "the change reaches no registered cluster: there is nothing to roll out (apply it without stages)" }] };
  const names = new Set(sorted.map((c) => c.name));
  let canary: string[];
  if (settings.canary.clusters !== undefined) {
    const unknown = settings.canary.clusters.filter((c) => !names.has(c));
    for (const c of unknown) problems.push({ path: "rollout.canary.clusters", message: `canary cluster ${JSON.stringify(c)} is not one the change reaches (it reaches ${sorted.map((r) => r.name).join(", ")})` });
    canary = [...new Set(settings.canary.clusters.filter((c) => names.has(c)))].sort();
  } else {
    const selector = settings.canary.selector!;
    canary = sorted.filter((c) => matchesLabels(selector, c)).map((c) => c.name);
    if (canary.length === 0) problems.push({ path: "rollout.canary.selector", message: `the canary selector ${selectorText(selector)} matches none of the ${sorted.length} clusters the change reaches` });
  }
  const stages: Stage[] = [{ name: "canary", clusters: canary }];
  const taken = new Set(canary);
  settings.waves.forEach((wave, i) => {
    const members = sorted.filter((c) => !taken.has(c.name) && matchesLabels(wave.selector, c)).map((c) => c.name);
    if (members.length === 0) {
      problems.push({ path: `rollout.waves[${i}].selector`, message: `wave ${i + 1} (${selectorText(wave.selector)}) matches no cluster the change reaches that an earlier stage left` });
      return;
    }
    for (const c of members) taken.add(c);
    const parts = chunks(members, settings.maxClusters);
    parts.forEach((part, k) => stages.push({ name: `wave ${i + 1} (${selectorText(wave.selector)})${parts.length > 1 ? ` part ${k + 1}/${parts.length}` : ""}`, clusters: part }));
  });
  const rest = chunks(
    sorted.filter((c) => !taken.has(c.name)).map((c) => c.name),
    settings.maxClusters,
  );
  rest.forEach((part, k) => stages.push({ name: `rest${rest.length > 1 ? ` part ${k + 1}/${rest.length}` : ""}`, clusters: part }));
  return { stages, problems };
}

/** A cluster's decisions under its agent's current bundle version, the baseline its stage is judged against. */
export function baselineOf(report: AgentReport | undefined): Baseline {
  const held = report?.byBundle.find((b) => b.version === report.bundleVersion);
  return { allowed: held?.allowed ?? 0, denied: held?.denied ?? 0 };
}

export type Outcome =
  | { readonly kind: "wait" }
  | { readonly kind: "soak"; readonly since: number }
  | { readonly kind: "advance" }
  | { readonly kind: "rollback"; readonly reason: string };

export interface Judgement {
  readonly outcome: Outcome;
  readonly gates: GateMeasure[];
  /** Clusters seen acknowledging for the first time (the version they reported). */
  readonly acknowledged: ReadonlyMap<string, number>;
  /** Clusters silent past the timeout, skipped by the stage's rule. */
  readonly skipped: readonly string[];
  /** Each cluster of the stage: its state and a note. */
  readonly states: ReadonlyMap<string, { state: ClusterRolloutState; note: string | null }>;
}

const percent = (x: number) => `${Math.round(x * 1000) / 10}%`;

/**
 * Judges the current stage: every cluster that is not skipped must have acknowledged its
 * target, then hold every gate; once all hold, the soak starts, and when it has lasted
 * `soakSeconds` the stage is done. A gate that fails rolls back (an emergency rollout judges
 * acknowledgement only). A cluster that has not reported since the stage started, past
 * `reportTimeoutSeconds`, is skipped or waited for by `onSilent`.
 */
export function judgeStage(input: {
  readonly settings: RolloutSettings;
  readonly stage: Stage;
  readonly stageStartedAt: number;
  readonly soakSince: number | null;
  readonly clusters: ReadonlyMap<string, ClusterProgress>;
  readonly reports: ReadonlyMap<string, AgentReport>;
  readonly now: number;
}): Judgement {
  const { settings, stage, stageStartedAt, clusters, reports, now } = input;
  const gates: GateMeasure[] = [];
  const acknowledged = new Map<string, number>();
  const skipped: string[] = [];
  const states = new Map<string, { state: ClusterRolloutState; note: string | null }>();
  let failure: string | undefined;
  let waiting = false;
  for (const name of stage.clusters) {
    const progress = clusters.get(name);
    if (progress === undefined || progress.skipped) {
      states.set(name, { state: "skipped", note: "did not report in time" });
      continue;
    }
    const report = reports.get(name);
    let ackedVersion = progress.ackedVersion;
    if (ackedVersion === null && report !== undefined && report.bundleHash === progress.target && report.bundleVersion !== null) {
      ackedVersion = report.bundleVersion;
      acknowledged.set(name, ackedVersion);
    }
    if (ackedVersion === null) {
      const silent = (report === undefined || report.reportedAt < stageStartedAt) && now - stageStartedAt >= settings.reportTimeoutSeconds * 1000;
      const holding = report?.bundleVersion == null ? "no bundle" : `bundle version ${report.bundleVersion}`;
      gates.push({ cluster: name, gate: "acknowledged", measured: report === undefined ? "never reported" : `enforces ${holding}`, bound: `policy set ${progress.target?.slice(0, 19) ?? "?"}…`, holds: false });
      if (silent && settings.onSilent === "skip") {
        skipped.push(name);
        states.set(name, { state: "skipped", note: `no report for ${settings.reportTimeoutSeconds}s after its stage started: skipped (onSilent: skip)` });
        continue;
      }
      waiting = true;
      states.set(name, silent ? { state: "silent", note: `no report for ${settings.reportTimeoutSeconds}s after its stage started: waited for (onSilent: wait)` } : { state: "updating", note: null });
      continue;
    }
    gates.push({ cluster: name, gate: "acknowledged", measured: `bundle version ${ackedVersion}`, bound: `policy set ${progress.target?.slice(0, 19) ?? "?"}…`, holds: true });
    const since = (report?.byBundle ?? []).filter((b) => b.version >= ackedVersion);
    const counts = since.reduce((sum, b) => ({ allowed: sum.allowed + b.allowed, denied: sum.denied + b.denied, errors: sum.errors + b.errors }), { allowed: 0, denied: 0, errors: 0 });
    const checks: GateMeasure[] = [];
    checks.push({ cluster: name, gate: "errors", measured: `${counts.errors} since version ${ackedVersion}`, bound: `≤ ${settings.maxErrors}`, holds: counts.errors <= settings.maxErrors });
    const decided = counts.allowed + counts.denied;
    const baseline = progress.baseline ?? { allowed: 0, denied: 0 };
    const baseDecided = baseline.allowed + baseline.denied;
    const baseRate = baseDecided === 0 ? 0 : baseline.denied / baseDecided;
    const bound = Math.min(1, baseRate + settings.maxDenialIncrease);
    const boundText = `≤ ${percent(bound)} (baseline ${percent(baseRate)} of ${baseDecided} + ${percent(settings.maxDenialIncrease)})`;
    if (decided < settings.minRequests) {
      checks.push({ cluster: name, gate: "denial-rate", measured: `${decided} decided since version ${ackedVersion} (judged from ${settings.minRequests})`, bound: boundText, holds: true });
    } else {
      const rate = counts.denied / decided;
      checks.push({ cluster: name, gate: "denial-rate", measured: `${percent(rate)} (${counts.denied} of ${decided} denied)`, bound: boundText, holds: rate <= bound + 1e-9 });
    }
    const p99 = report?.p99Micros ?? null;
    const samples = report?.latencySamples ?? 0;
    checks.push({ cluster: name, gate: "p99", measured: p99 === null || samples === 0 ? "no decisions timed" : `${p99} µs`, bound: `≤ ${settings.maxP99Micros} µs`, holds: p99 === null || samples === 0 || p99 <= settings.maxP99Micros });
    gates.push(...checks);
    const failed = settings.emergency ? undefined : checks.find((c) => !c.holds);
    if (failed !== undefined) {
      failure ??= `cluster ${name}: ${failed.gate} ${failed.measured}, bound ${failed.bound}`;
      states.set(name, { state: "failed", note: `${failed.gate} ${failed.measured}` });
    } else {
      states.set(name, { state: "acknowledged", note: null });
    }
  }
  if (failure !== undefined) return { outcome: { kind: "rollback", reason: failure }, gates, acknowledged, skipped, states };
  if (waiting) return { outcome: { kind: "wait" }, gates, acknowledged, skipped, states };
  if (settings.emergency) return { outcome: { kind: "advance" }, gates, acknowledged, skipped, states };
  const soakSince = input.soakSince ?? now;
  const outcome: Outcome = now - soakSince >= settings.soakSeconds * 1000 ? { kind: "advance" } : { kind: "soak", since: soakSince };
  return { outcome, gates, acknowledged, skipped, states };
}
