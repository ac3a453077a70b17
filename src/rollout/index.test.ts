import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { rolloutRequest, type RolloutSettings } from "../api/rollouts.js";
import { judgeStage, planStages, type AgentReport, type ClusterProgress, type RolloutCluster } from "./index.js";

const settings = (extra: Record<string, unknown>): RolloutSettings => rolloutRequest.parse({ canary: { clusters: ["a"] }, ...extra });

const cluster = (name: string, region: string, labels: Record<string, string> = {}): RolloutCluster => ({ name, region, labels });

describe("the stages of a rollout", () => {
  const fleet = [cluster("a", "eu"), cluster("b", "eu", { env: "prod" }), cluster("c", "eu", { env: "prod" }), cluster("d", "us", { env: "prod" }), cluster("e", "us")];

  it("cuts the clusters into the canary, each wave in stages of at most maxClusters, then the rest", () => {
    const { stages, problems } = planStages(settings({ waves: [{ selector: { region: "eu" } }, { selector: { env: "prod" } }], maxClusters: 1 }), fleet);
    expect(problems).toEqual([]);
    expect(stages).toEqual([
      { name: "canary", clusters: ["a"] },
      { name: "wave 1 (region=eu) part 1/2", clusters: ["b"] },
      { name: "wave 1 (region=eu) part 2/2", clusters: ["c"] },
      { name: "wave 2 (env=prod)", clusters: ["d"] },
      { name: "rest", clusters: ["e"] },
    ]);
  });

  it("refuses a canary selector that matches nothing, a canary the change does not reach, and an empty wave", () => {
    expect(planStages(rolloutRequest.parse({ canary: { selector: { env: "qa" } } }), fleet).problems.map((p) => p.message)).toEqual(["the canary selector env=qa matches none of the 5 clusters the change reaches"]);
    expect(planStages(settings({ canary: { clusters: ["z"] } }), fleet).problems[0]!.message).toMatch(/^canary cluster "z" is not one the change reaches/);
    expect(planStages(settings({ waves: [{ selector: { region: "ap" } }] }), fleet).problems[0]!.message).toMatch(/^wave 1 \(region=ap\) matches no cluster/);
    expect(planStages(settings({}), []).problems[0]!.message).toMatch(/reaches no registered cluster/);
  });

  it("puts every cluster in exactly one stage, whatever the waves and the bound (property)", () => {
    const name = fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h");
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.record({ name, region: fc.constantFrom("eu", "us"), env: fc.constantFrom("prod", "dev") }), { minLength: 1, selector: (c) => c.name }),
        fc.array(fc.constantFrom({ region: "eu" }, { region: "us" }, { env: "prod" }), { maxLength: 3 }),
        fc.integer({ min: 1, max: 4 }),
        (clusters, waves, maxClusters) => {
          const reached = clusters.map((c) => cluster(c.name, c.region, { env: c.env }));
          const { stages, problems } = planStages(rolloutRequest.parse({ canary: { clusters: [reached[0]!.name] }, waves: waves.map((selector) => ({ selector })), maxClusters }), reached);
          if (problems.length > 0) return;
          const all = stages.flatMap((s) => s.clusters);
          expect(all.sort()).toEqual(reached.map((c) => c.name).sort());
          for (const stage of stages.slice(1)) expect(stage.clusters.length).toBeLessThanOrEqual(maxClusters);
        },
      ),
    );
  });
});

describe("a stage's judgement", () => {
  const progress = (extra: Partial<ClusterProgress> = {}): ClusterProgress => ({ stage: 0, target: "sha256:new", baseline: { allowed: 10, denied: 0 }, ackedVersion: null, skipped: false, ...extra });
  const report = (extra: Partial<AgentReport> = {}): AgentReport => ({ reportedAt: 1_000, bundleVersion: 7, bundleHash: "sha256:new", byBundle: [], p99Micros: 100, latencySamples: 10, ...extra });
  const judge = (reports: Map<string, AgentReport>, extra: Partial<Parameters<typeof judgeStage>[0]> = {}) =>
    judgeStage({ settings: settings({ soakSeconds: 10 }), stage: { name: "canary", clusters: ["a"] }, stageStartedAt: 0, soakSince: null, clusters: new Map([["a", progress()]]), reports, now: 2_000, ...extra });

  it("waits for an acknowledgement, then soaks, then advances once the soak time passed", () => {
    expect(judge(new Map([["a", report({ bundleHash: "sha256:old" })]])).outcome).toEqual({ kind: "wait" });
    const soaking = judge(new Map([["a", report()]]));
    expect(soaking.outcome).toEqual({ kind: "soak", since: 2_000 });
    expect(soaking.acknowledged.get("a")).toBe(7);
    expect(judge(new Map([["a", report()]]), { soakSince: 2_000, now: 12_000, clusters: new Map([["a", progress({ ackedVersion: 7 })]]) }).outcome).toEqual({ kind: "advance" });
  });

  it("rolls back when the denial rate passes the cluster's baseline by more than the bound, or an evaluation fails, or p99 is too slow", () => {
    const denied = judge(new Map([["a", report({ byBundle: [{ version: 7, allowed: 2, denied: 8, errors: 0 }] })]]));
    expect(denied.outcome).toEqual({ kind: "rollback", reason: "cluster a: denial-rate 80% (8 of 10 denied), bound ≤ 10% (baseline 0% of 10 + 10%)" });
    expect(judge(new Map([["a", report({ byBundle: [{ version: 7, allowed: 1, denied: 0, errors: 1 }] })]])).outcome.kind).toBe("rollback");
    expect(judge(new Map([["a", report({ p99Micros: 80_000 })]])).outcome.kind).toBe("rollback");
    // Fewer decisions than minRequests: not judged yet.
    expect(judge(new Map([["a", report({ byBundle: [{ version: 7, allowed: 0, denied: 4, errors: 0 }] })]])).outcome.kind).toBe("soak");
    // Denials under the version before do not count.
    expect(judge(new Map([["a", report({ byBundle: [{ version: 6, allowed: 0, denied: 40, errors: 0 }] })]])).outcome.kind).toBe("soak");
  });

  it("skips or waits for a cluster silent since its stage started, by the stage's rule", () => {
    const silent = new Map([["a", report({ reportedAt: -5, bundleHash: "sha256:old" })]]);
    const later = { now: 400_000 };
    const skipped = judge(silent, later);
    expect(skipped.skipped).toEqual(["a"]);
    expect(skipped.outcome.kind).toBe("soak");
    const waited = judge(silent, { ...later, settings: settings({ onSilent: "wait" }) });
    expect(waited.outcome).toEqual({ kind: "wait" });
    expect(waited.states.get("a")!.state).toBe("silent");
  });

  it("judges an emergency rollout by acknowledgement only", () => {
    const bad = new Map([["a", report({ byBundle: [{ version: 7, allowed: 0, denied: 50, errors: 3 }] })]]);
    expect(judge(bad, { settings: settings({ emergency: true }) }).outcome).toEqual({ kind: "advance" });
  });
});
