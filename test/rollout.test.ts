/**
 * Staged rollouts, end to end: a real hub and real agents (TLS on loopback, their webhooks
 * deciding real AdmissionReviews) take a change canary → waves → the rest, each stage once
 * its gates held for the soak time; a change that makes the canary's denial rate jump is
 * rolled back by itself at a higher version, and says why; a silent cluster is skipped or
 * waited for by the stage's rule; a hub restarted mid-stage carries on; and bad inputs get a
 * clear refusal.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reviewAllowed } from "./support/reviews.js";
import { eventually, sleep } from "./support/eventually.js";
import { startAgent, type RunningAgent } from "../src/agent/index.js";
import type { ApplyResult } from "../src/api/layers.js";
import type { RolloutView } from "../src/api/rollouts.js";
import type { AuditEntry } from "../src/audit/entry.js";
import { call, closeConnections } from "../src/client/http.js";
import { startHub } from "../src/hub/index.js";
import { openDatabase } from "../src/store/database.js";
import { example, HubFixture, joinToken, refused, ROOT, type TestHub } from "./support/hubs.js";

const OPERATOR_KEY = "rollout-test-operator-key-0123456789abc";
const GLOBAL = example("global.yaml");
const REGION_EU = example("region-eu-west.yaml");
const REGION_US = example("region-us-east.yaml");
const COMPLIANT = readFileSync(join(ROOT, "examples/reviews/compliant-pod.json"), "utf8");

/** The global layer with one more policy: every pod names its owner (compliant-pod.json does not). */
const globalWith = (enforcement: "deny" | "warn", name = "require-owner-label", locked = false) => ({
  name: GLOBAL.name,
  content: `${GLOBAL.content.trimEnd()}
---
apiVersion: polity.dev/v1
kind: Policy
metadata: { name: ${name}, owner: platform-team }
spec:
  domain: workload-security
  match: { kinds: [Pod] }
  validations:
    - name: owner-label
      expression: "has(object.metadata.labels) && 'owner' in object.metadata.labels"
      message: "pods must carry an owner label"
  enforcement: ${enforcement}
${locked ? "  locked: true\n" : ""}`,
});

/** The eu-west region layer with another replica bound. */
const regionEu = (replicas: number) => ({ ...REGION_EU, content: REGION_EU.content.replace("value: 80", `value: ${replicas}`) });

const hubs = new HubFixture("polity-rollout-test-", OPERATOR_KEY);
afterAll(() => closeConnections());


const CLUSTERS = [
  ["eu-west-1", "eu-west", "staging"],
  ["eu-west-2", "eu-west", "prod"],
  ["eu-west-3", "eu-west", "prod"],
  ["us-east-1", "us-east", "prod"],
] as const;

/** A federation of four clusters, each with a running agent that reports every 200 ms. */
async function federation(name: string, options: { rolloutIntervalMs?: number } = {}) {
  const h = await hubs.startCopy(name, { rolloutIntervalMs: options.rolloutIntervalMs ?? 200 });
  await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, REGION_US] });
  const agents = new Map<string, RunningAgent>();
  for (const [cluster, region, env] of CLUSTERS) {
    await call(h.admin, "POST", "/v1/clusters", { name: cluster, region, labels: { env } });
    agents.set(
      cluster,
      await startAgent({ dataDir: join(h.dir, `agent-${cluster}`), hubUrl: h.hub.url, caPem: h.hub.caPem, cluster, joinToken: await joinToken(h, cluster), webhookPort: 0, pollWaitSeconds: 1, statusIntervalMs: 200 }),
    );
  }
  // Every agent enforces its first bundle before a rollout starts.
  for (const [cluster, agent] of agents) await eventually(`${cluster}'s first bundle`, async () => (agent.health().bundleVersion !== null ? true : undefined));
  return { h, agents };
}

const rollout = (h: TestHub, id: string) => call<RolloutView>(h.admin, "GET", `/v1/rollouts/${id}`).then((r) => r.body);
const until = (h: TestHub, id: string, state: RolloutView["state"], timeoutMs = 30_000) =>
  eventually(`rollout ${id} ${state}`, async () => {
    const view = await rollout(h, id);
    return view.state === state ? view : undefined;
  }, timeoutMs);

async function logged(h: TestHub, query: string): Promise<AuditEntry[]> {
  await h.hub.context.audit.integrate();
  return (await call<{ items: { entry: AuditEntry }[] }>(h.admin, "GET", `/v1/audit/entries?limit=1000${query}`)).body.items.map((i) => i.entry);
}

describe("a change rolled out in stages", () => {
  let h: TestHub;
  let agents: Map<string, RunningAgent>;
  beforeAll(async () => {
    ({ h, agents } = await federation("stages"));
  }, 60_000);
  afterAll(async () => {
    for (const agent of agents.values()) await agent.close();
  });

  it("goes canary → waves → the rest, each stage once its gates held for the soak time, and the clusters not reached keep the previous content", async () => {
    const before = new Map([...agents].map(([c, a]) => [c, a.health()]));
    const applied = await call<ApplyResult>(h.admin, "POST", "/v1/apply", {
      files: [globalWith("warn", "suggest-owner-label")],
      rollout: { canary: { clusters: ["eu-west-1"] }, waves: [{ selector: { region: "eu-west" } }], maxClusters: 1, soakSeconds: 1 },
    });
    expect(applied.status).toBe(201);
    const id = applied.body.rollout!;
    expect(id).toMatch(/^[0-9a-f]{12}$/);
    const started = await rollout(h, id);
    expect(started.stages.map((s) => [s.name, s.clusters])).toEqual([
      ["canary", ["eu-west-1"]],
      ["wave 1 (region=eu-west) part 1/2", ["eu-west-2"]],
      ["wave 1 (region=eu-west) part 2/2", ["eu-west-3"]],
      ["rest", ["us-east-1"]],
    ]);
    // Only the canary's bundle moved with the change; the others keep theirs, signed and valid.
    const canaryHash = applied.body.clusters.find((c) => c.cluster === "eu-west-1")!.after;
    await eventually("the canary's new bundle", async () => (agents.get("eu-west-1")!.health().bundleHash === canaryHash ? true : undefined));
    for (const cluster of ["eu-west-2", "eu-west-3", "us-east-1"]) expect(agents.get(cluster)!.health().bundleHash).toBe(before.get(cluster)!.bundleHash);
    const done = await until(h, id, "completed");
    expect(done.stages.every((s) => s.state === "done")).toBe(true);
    expect(done.clusters.every((c) => c.state === "acknowledged")).toBe(true);
    expect(done.gates.map((g) => g.gate).sort()).toEqual(["acknowledged", "denial-rate", "errors", "p99"]);
    for (const [cluster, agent] of agents) {
      await eventually(`${cluster} on the new content`, async () => (agent.health().bundleVersion! > before.get(cluster)!.bundleVersion! ? true : undefined));
    }
    const entries = await logged(h, `&correlation=${applied.body.correlationId}`);
    const kinds = entries.map((e) => e.kind);
    expect(kinds.filter((k) => k === "rollout.stage-started")).toHaveLength(4);
    expect(kinds).toContain("rollout.started");
    expect(kinds).toContain("rollout.completed");
    // Each stage started after the one before it soaked.
    const starts = entries.filter((e) => e.kind === "rollout.stage-started").map((e) => Date.parse(e.time));
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(1000);
  }, 60_000);

  it("rolls a change that makes the canary's denial rate jump back by itself, at a higher version, and says why", async () => {
    const canary = agents.get("eu-west-2")!;
    // The canary's baseline: compliant pods, allowed.
    for (let i = 0; i < 5; i++) expect(await reviewAllowed(canary, COMPLIANT)).toBe(true);
    await sleep(400); // reported
    const before = new Map([...agents].map(([c, a]) => [c, a.health()]));
    const globalBefore = (await call<{ version: number }>(h.admin, "GET", "/v1/layers/global")).body.version;
    const applied = await call<ApplyResult>(h.admin, "POST", "/v1/apply", {
      files: [globalWith("deny")],
      rollout: { canary: { clusters: ["eu-west-2"] }, soakSeconds: 60, minRequests: 5 },
    });
    const id = applied.body.rollout!;
    const newHash = applied.body.clusters.find((c) => c.cluster === "eu-west-2")!.after;
    await eventually("the canary's new bundle", async () => (canary.health().bundleHash === newHash ? true : undefined));
    // The same pods are now denied: 100% against a baseline of 0%.
    for (let i = 0; i < 6; i++) expect(await reviewAllowed(canary, COMPLIANT)).toBe(false);
    const ended = await until(h, id, "rolled-back");
    expect(ended.reason).toMatch(/^gate failed in stage 0 \(canary\): cluster eu-west-2: denial-rate 100% \(6 of 6 denied\), bound ≤ 10% \(baseline 0% of 5 \+ 10%\)$/);
    expect(ended.clusters.find((c) => c.cluster === "eu-west-2")).toMatchObject({ state: "failed" });
    // The previous content, as a new version of the layer, at a higher bundle version.
    const layer = (await call<{ version: number; contentHash: string }>(h.admin, "GET", "/v1/layers/global")).body;
    expect(layer.version).toBe(globalBefore + 2);
    await eventually("the canary back on the previous content", async () => {
      const now = canary.health();
      return now.bundleHash === before.get("eu-west-2")!.bundleHash && now.bundleVersion! > before.get("eu-west-2")!.bundleVersion! + 1 ? true : undefined;
    });
    expect(await reviewAllowed(canary, COMPLIANT)).toBe(true);
    // The clusters the rollout never reached never got a bundle.
    for (const cluster of ["eu-west-1", "eu-west-3", "us-east-1"]) expect(agents.get(cluster)!.health().bundleVersion).toBe(before.get(cluster)!.bundleVersion);
    const [entry] = (await logged(h, `&kind=rollout.rolled-back&correlation=${applied.body.correlationId}`));
    expect(entry!.data).toMatchObject({ rollout: id, layer: "global", reason: ended.reason });
    // The CLI says why.
    const config = hubs.cliConfig("admin", h.admin);
    const shown = await hubs.cli(["rollout", "status", id], { config });
    expect(shown.err).toBe("");
    expect(shown.out).toContain("rolled-back");
    expect(shown.out).toContain("denial-rate 100% (6 of 6 denied)");
    expect(shown.out).toMatch(/eu-west-2\s+failed/);
    expect(shown.out).toMatch(/0\. canary \[rolled-back\]/);
    expect(shown.out).toMatch(/1\. rest \[not-reached\]\n\s+eu-west-1\s+not-reached/);
  }, 60_000);
});

describe("silent clusters, restarts and bad input", () => {
  let h: TestHub;
  let agents: Map<string, RunningAgent>;
  beforeAll(async () => {
    ({ h, agents } = await federation("faults"));
    // A cluster that never reports: registered, no agent.
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-9", region: "eu-west", labels: { env: "prod" } });
  }, 60_000);
  afterAll(async () => {
    for (const agent of agents.values()) await agent.close();
  });

  it("refuses a canary selector that matches nothing, and a canary cluster the change does not reach (422), applying nothing", async () => {
    const nothing = await refused(call(h.admin, "POST", "/v1/apply", { files: [regionEu(70)], rollout: { canary: { selector: { env: "qa" } } } }));
    expect(nothing.status).toBe(422);
    expect(nothing.message).toMatch(/the canary selector env=qa matches none of the 4 clusters the change reaches/);
    const elsewhere = await refused(call(h.admin, "POST", "/v1/apply", { files: [regionEu(70)], rollout: { canary: { clusters: ["us-east-1"] } } }));
    expect(elsewhere.status).toBe(422);
    expect(elsewhere.message).toMatch(/canary cluster "us-east-1" is not one the change reaches/);
    const dry = await refused(call(h.admin, "POST", "/v1/apply", { files: [regionEu(70)], dryRun: true, rollout: { canary: { selector: { env: "qa" } } } }));
    expect(dry.status).toBe(422);
    const odd = await refused(call(h.admin, "POST", "/v1/apply", { files: [regionEu(70)], rollout: { canary: { clusters: ["eu-west-1"] }, onSilent: "ignore" } }));
    expect(odd.status).toBe(400);
    expect((await call<{ version: number }>(h.admin, "GET", "/v1/layers/region/eu-west")).body.version).toBe(1);
  });

  it("skips a cluster that does not report within the timeout (onSilent: skip), and says so", async () => {
    const applied = await call<ApplyResult>(h.admin, "POST", "/v1/apply", {
      files: [regionEu(75)],
      rollout: { canary: { clusters: ["eu-west-9"] }, soakSeconds: 0, reportTimeoutSeconds: 1, onSilent: "skip" },
    });
    const done = await until(h, applied.body.rollout!, "completed");
    expect(done.clusters.find((c) => c.cluster === "eu-west-9")).toMatchObject({ state: "skipped" });
    const [skipped] = await logged(h, `&kind=rollout.cluster-skipped&correlation=${applied.body.correlationId}`);
    expect(skipped).toMatchObject({ cluster: "eu-west-9", data: { reason: expect.stringMatching(/no report for 1s after its stage started: skipped/) } });
  }, 30_000);

  it("waits for a silent cluster (onSilent: wait), refuses a second rollout or a change of the layer meanwhile (409), pauses, resumes, and rolls back while it waits", async () => {
    const applied = await call<ApplyResult>(h.admin, "POST", "/v1/apply", {
      files: [regionEu(74)],
      rollout: { canary: { clusters: ["eu-west-9"] }, reportTimeoutSeconds: 1, onSilent: "wait" },
    });
    const id = applied.body.rollout!;
    const waiting = await eventually("eu-west-9 waited for", async () => {
      const view = await rollout(h, id);
      return view.clusters.find((c) => c.cluster === "eu-west-9")?.state === "silent" ? view : undefined;
    });
    expect(waiting.state).toBe("running");
    expect(waiting.clusters.find((c) => c.cluster === "eu-west-9")!.note).toMatch(/waited for \(onSilent: wait\)/);
    const second = await refused(call(h.admin, "POST", "/v1/apply", { files: [regionEu(73)], rollout: { canary: { clusters: ["eu-west-1"] } } }));
    expect(second.status).toBe(409);
    expect(second.message).toContain(`rollout ${id}`);
    const direct = await refused(call(h.admin, "POST", "/v1/apply", { files: [regionEu(73)] }));
    expect(direct.status).toBe(409);
    expect(direct.message).toMatch(/layer region\/eu-west is being rolled out/);
    // Pause and resume; pausing twice is a conflict.
    expect((await call<RolloutView>(h.admin, "POST", `/v1/rollouts/${id}/pause`, {})).body.state).toBe("paused");
    expect((await refused(call(h.admin, "POST", `/v1/rollouts/${id}/pause`, {}))).status).toBe(409);
    expect((await call<RolloutView>(h.admin, "POST", `/v1/rollouts/${id}/resume`, {})).body.state).toBe("running");
    const version = (await call<{ version: number }>(h.admin, "GET", "/v1/layers/region/eu-west")).body.version;
    const back = await call<RolloutView>(h.admin, "POST", `/v1/rollouts/${id}/rollback`, { reason: "wrong bound" });
    expect(back.body).toMatchObject({ state: "rolled-back", reason: expect.stringMatching(/^rolled back by .*: wrong bound$/) });
    expect((await call<{ version: number; files: { content: string }[] }>(h.admin, "GET", "/v1/layers/region/eu-west")).body).toMatchObject({ version: version + 1 });
    expect((await refused(call(h.admin, "POST", `/v1/rollouts/${id}/abort`, {}))).status).toBe(409);
    expect((await refused(call(h.admin, "GET", "/v1/rollouts/nope"))).status).toBe(400);
  }, 30_000);

  it("rolls back while a stage is soaking: the canary returns to the previous content at a higher bundle version", async () => {
    const canary = agents.get("eu-west-1")!;
    const before = canary.health();
    const version = (await call<{ version: number }>(h.admin, "GET", "/v1/layers/region/eu-west")).body.version;
    const applied = await call<ApplyResult>(h.admin, "POST", "/v1/apply", { files: [regionEu(68)], rollout: { canary: { clusters: ["eu-west-1"] }, soakSeconds: 600 } });
    const id = applied.body.rollout!;
    await eventually("the canary soaking", async () => ((await rollout(h, id)).soakSince !== null ? true : undefined));
    const during = canary.health();
    expect(during.bundleHash).not.toBe(before.bundleHash);
    const back = (await call<RolloutView>(h.admin, "POST", `/v1/rollouts/${id}/rollback`, {})).body;
    expect(back.state).toBe("rolled-back");
    expect((await call<{ version: number }>(h.admin, "GET", "/v1/layers/region/eu-west")).body.version).toBe(version + 2);
    await eventually("the canary back", async () => {
      const now = canary.health();
      return now.bundleHash === before.bundleHash && now.bundleVersion! > during.bundleVersion! ? true : undefined;
    });
    // Ended: nothing more to do to it.
    expect((await refused(call(h.admin, "POST", `/v1/rollouts/${id}/resume`, {}))).status).toBe(409);
  }, 30_000);

  it("lets only a fix to the locked baseline skip the gates (an emergency), and records it as such", async () => {
    const unlocked = await refused(call(h.admin, "POST", "/v1/apply", { files: [globalWith("deny")], rollout: { canary: { clusters: ["eu-west-1"] }, emergency: true } }));
    expect(unlocked.status).toBe(422);
    expect(unlocked.message).toBe("an emergency rollout (gates skipped) is for fixes to the locked baseline only: it adds or changes require-owner-label, which is not locked");
    const regional = await refused(call(h.admin, "POST", "/v1/apply", { files: [regionEu(71)], rollout: { canary: { clusters: ["eu-west-1"] }, emergency: true } }));
    expect(regional.message).toMatch(/it changes layer region\/eu-west, not the global layer$/);
    const fix = globalWith("deny", "require-owner-label", true);
    const applied = await call<ApplyResult>(h.admin, "POST", "/v1/apply", { files: [fix], rollout: { canary: { clusters: ["eu-west-1"] }, emergency: true, soakSeconds: 3600, reportTimeoutSeconds: 1 } });
    // Denials do not hold it back, nor does the hour of soak: each stage moves on once acknowledged.
    for (let i = 0; i < 6; i++) expect(await reviewAllowed(agents.get("eu-west-1")!, COMPLIANT)).toBe(false);
    const done = await until(h, applied.body.rollout!, "completed");
    expect(done.emergency).toBe(true);
    const [started] = await logged(h, `&kind=rollout.started&correlation=${applied.body.correlationId}`);
    expect(started!.data).toMatchObject({ emergency: true, layer: "global" });
  }, 30_000);

  it("rolls out an approved proposal in stages, its state and the rollout's start in one change", async () => {
    const eli = await call<{ token: string }>(h.admin, "POST", "/v1/tokens", { name: "eli", role: "team-member", subject: "eli@example.com", groups: ["eu-west-operators"] });
    const asEli = { ...h.anonymous, token: eli.body.token };
    const proposed = await call<{ id: string; correlationId: string }>(h.admin, "POST", "/v1/proposals", { files: [regionEu(69)], title: "69 replicas in eu-west" });
    await call(asEli, "POST", `/v1/proposals/${proposed.body.id}/approve`, {});
    const config = hubs.cliConfig("faults-admin", h.admin);
    const run = await hubs.cli(["proposal", "apply", proposed.body.id, "--canary", "eu-west-1", "--soak", "0s", "--report-timeout", "1s"], { config });
    expect(run.err).toBe("");
    expect(run.out).toContain("state       applied");
    const listed = await hubs.cli(["rollout", "list", "-o", "json"], { config });
    const rollouts = (JSON.parse(listed.out) as { items: RolloutView[] }).items;
    const mine = rollouts.find((r) => r.correlationId === proposed.body.correlationId)!;
    expect(mine).toMatchObject({ layer: "region/eu-west" });
    await until(h, mine.id, "completed");
    const kinds = (await logged(h, `&correlation=${proposed.body.correlationId}`)).map((e) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining(["proposal.applied", "rollout.started", "rollout.completed"]));
  }, 30_000);

  it("takes the stages a layer declares in its Layer document, when the apply gives none", async () => {
    const declared = regionEu(67);
    const file = { ...declared, content: declared.content.replace("  owners: [eu-platform]\n", "  owners: [eu-platform]\n  rollout: { canary: { clusters: [eu-west-1] }, soakSeconds: 0, reportTimeoutSeconds: 1 }\n") };
    expect(file.content).toContain("rollout:");
    const applied = await call<ApplyResult>(h.admin, "POST", "/v1/apply", { files: [file] });
    const done = await until(h, applied.body.rollout!, "completed");
    expect(done.stages.map((s) => s.name)).toEqual(["canary", "rest"]);
    expect(done.stages[0]!.clusters).toEqual(["eu-west-1"]);
    const bad = await refused(call(h.admin, "POST", "/v1/apply", { files: [{ ...file, content: file.content.replace("soakSeconds: 0", "soakSeconds: -1") }] }));
    expect(bad.status).toBe(422);
    expect(bad.causes.map((c) => c.field)).toContain("spec.rollout.soakSeconds");
  }, 30_000);

  it("carries on after a hub restart in the middle of a stage", async () => {
    const applied = await call<ApplyResult>(h.admin, "POST", "/v1/apply", {
      files: [regionEu(72)],
      rollout: { canary: { clusters: ["eu-west-1"] }, soakSeconds: 2, maxClusters: 5, reportTimeoutSeconds: 2 },
    });
    const id = applied.body.rollout!;
    await eventually("the canary soaking", async () => ((await rollout(h, id)).soakSince !== null ? true : undefined));
    const port = h.hub.port;
    await h.hub.close();
    hubs.running.splice(hubs.running.indexOf(h.hub), 1);
    h = await hubs.startAt(h.dir, { port, rolloutIntervalMs: 200 });
    const done = await until(h, id, "completed", 40_000);
    expect(done.stages.map((s) => s.state)).toEqual(["done", "done"]);
    // eu-west-9 never reports: skipped in the rest's stage, after its timeout.
    expect(done.clusters.find((c) => c.cluster === "eu-west-9")).toMatchObject({ state: "skipped" });
  }, 60_000);
});

const DATABASE_URL = process.env.DATABASE_URL;

describe.skipIf(DATABASE_URL === undefined || DATABASE_URL === "")("two hubs on one PostgreSQL", () => {
  const schema = `polity_rollout_test_${randomBytes(4).toString("hex")}`;
  let a: TestHub;
  let b: TestHub;
  const agents: RunningAgent[] = [];
  beforeAll(async () => {
    const first = await startHub({ dataDir: join(hubs.root, "pg-a"), databaseUrl: DATABASE_URL!, schema, port: 0, operatorKey: OPERATOR_KEY, rolloutIntervalMs: 100 });
    hubs.running.push(first);
    const token = readFileSync(first.adminTokenFile!, "utf8").trim();
    a = { hub: first, clock: { offsetMs: 0 }, dir: join(hubs.root, "pg-a"), admin: { url: first.url, caPem: first.caPem, token }, anonymous: { url: first.url, caPem: first.caPem } };
    const second = await startHub({ dataDir: join(hubs.root, "pg-b"), databaseUrl: DATABASE_URL!, schema, port: 0, operatorKey: OPERATOR_KEY, rolloutIntervalMs: 100 });
    hubs.running.push(second);
    b = { hub: second, clock: { offsetMs: 0 }, dir: join(hubs.root, "pg-b"), admin: { url: second.url, caPem: second.caPem, token }, anonymous: { url: second.url, caPem: second.caPem } };
    await call(a.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, REGION_US] });
    for (const [cluster, region, env] of CLUSTERS.slice(0, 3)) {
      await call(b.admin, "POST", "/v1/clusters", { name: cluster, region, labels: { env } });
      agents.push(await startAgent({ dataDir: join(a.dir, `agent-${cluster}`), hubUrl: a.hub.url, caPem: a.hub.caPem, cluster, joinToken: await joinToken(a, cluster), webhookPort: 0, pollWaitSeconds: 1, statusIntervalMs: 200 }));
    }
    for (const agent of agents) await eventually("a first bundle", async () => (agent.health().bundleVersion !== null ? true : undefined));
  }, 60_000);
  afterAll(async () => {
    for (const agent of agents) await agent.close();
    // Both hubs stopped first: their loops' queries would deadlock with the schema's drop.
    await b?.hub.close();
    await a?.hub.close();
    const db = await openDatabase({ url: DATABASE_URL! });
    try {
      await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    } finally {
      await db.close();
    }
  });

  it("moves a rollout once, whichever hub judges first, and refuses a second rollout of the layer through the other hub", async () => {
    const before = agents.map((agent) => agent.health().bundleVersion!);
    const applied = await call<ApplyResult>(a.admin, "POST", "/v1/apply", {
      files: [globalWith("warn", "suggest-owner-label")],
      rollout: { canary: { clusters: ["eu-west-1"] }, soakSeconds: 1 },
    });
    const id = applied.body.rollout!;
    const second = await refused(call(b.admin, "POST", "/v1/apply", { files: [globalWith("deny")], rollout: { canary: { clusters: ["eu-west-2"] } } }));
    expect(second.status).toBe(409);
    expect((await until(b, id, "completed")).stages.map((s) => s.state)).toEqual(["done", "done"]);
    const entries = await logged(a, `&correlation=${applied.body.correlationId}`);
    const kinds = entries.map((e) => e.kind);
    expect(kinds.filter((k) => k === "rollout.stage-started")).toHaveLength(2);
    expect(kinds.filter((k) => k === "rollout.completed")).toHaveLength(1);
    // One new bundle per cluster: no stage was published twice.
    expect(entries.filter((e) => e.kind === "bundles.published").reduce((sum, e) => sum + Number(e.data.bundles), 0)).toBe(3);
    for (const [i, agent] of agents.entries()) await eventually("the new bundle", async () => (agent.health().bundleVersion === before[i]! + 1 ? true : undefined));
  }, 60_000);
});
