/**
 * The impact of a change before it ships, end to end: a real hub and a real agent whose
 * webhook decided real AdmissionReviews (kept in its encrypted window on disk), asked by
 * `polity diff --impact` what a change would newly deny; a cluster whose agent does not
 * answer is named; an agent cannot answer a request it was not sent.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reviewAllowed } from "./support/reviews.js";
import { startAgent, type RunningAgent } from "../src/agent/index.js";
import type { DiffResult } from "../src/api/layers.js";
import { call, closeConnections } from "../src/client/http.js";
import { clusterEndpoint, enroll } from "../src/identity/enrollment.js";
import { example, HubFixture, joinToken, refused, ROOT, type TestHub } from "./support/hubs.js";

const OPERATOR_KEY = "impact-test-operator-key-0123456789abcde";
const GLOBAL = example("global.yaml");
const REGION_EU = example("region-eu-west.yaml");
const COMPLIANT = readFileSync(join(ROOT, "examples/reviews/compliant-pod.json"), "utf8");
const PRIVILEGED = readFileSync(join(ROOT, "examples/reviews/privileged-pod.json"), "utf8");
const DENY_UNOWNED = { name: "global.yaml", content: readFileSync(join(ROOT, "examples/changes/deny-unowned-pods.yaml"), "utf8") };

const hubs = new HubFixture("polity-impact-test-", OPERATOR_KEY);
afterAll(() => closeConnections());

describe("polity diff --impact", () => {
  let h: TestHub;
  let agent: RunningAgent;
  beforeAll(async () => {
    h = await hubs.startCopy("impact");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } });
    // eu-west-2 is registered and has no agent: it never answers.
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-2", region: "eu-west", labels: { env: "prod" } });
    agent = await startAgent({ dataDir: join(h.dir, "agent"), hubUrl: h.hub.url, caPem: h.hub.caPem, cluster: "eu-west-1", joinToken: await joinToken(h, "eu-west-1"), webhookPort: 0, pollWaitSeconds: 1, impactPollSeconds: 1 });
    for (let i = 0; i < 100 && agent.health().bundleVersion === null; i++) await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 5; i++) expect(await reviewAllowed(agent, COMPLIANT)).toBe(true);
    expect(await reviewAllowed(agent, PRIVILEGED)).toBe(false);
  }, 60_000);
  afterAll(async () => {
    await agent.close();
  });

  it("says per cluster what a change would newly deny among its recorded requests, with examples, and which clusters did not answer", async () => {
    const result = (await call<DiffResult>(h.admin, "POST", "/v1/diff", { files: [DENY_UNOWNED], impact: { timeoutSeconds: 3 } })).body;
    expect(result.impact!.unanswered).toEqual(["eu-west-2"]);
    const mine = result.impact!.clusters.find((c) => c.cluster === "eu-west-1")!.impact!;
    expect(mine).toMatchObject({ requests: 6, newlyDenied: 5, newlyAllowed: 0, undecidable: 0 });
    expect(mine.byRule).toEqual([
      {
        policy: "require-owner-label",
        rule: "owner-label",
        newlyDenied: 5,
        newlyAllowed: 0,
        newlyWarned: 0,
        examples: [0, 1, 2].map(() => ({ kind: "Pod", namespace: "shop", name: "checkout", operation: "CREATE" })),
      },
    ]);
    // The command line prints it.
    const config = hubs.cliConfig("impact", h.admin);
    const run = await hubs.cli(["diff", "-f", join(ROOT, "examples/changes/deny-unowned-pods.yaml"), "--impact", "--impact-timeout", "3s"], { config });
    expect(run.err).toBe("");
    expect(run.out).toContain("impact over 6 recorded requests: 5 newly denied, 0 newly allowed, 0 newly warned");
    expect(run.out).toContain("require-owner-label/owner-label: 5 newly denied (e.g. Pod shop/checkout, Pod shop/checkout, Pod shop/checkout)");
    expect(run.out).toContain("no impact from eu-west-2: their agents did not answer within 3s");
  }, 30_000);

  it("keeps the recorded requests encrypted on the agent's disk", async () => {
    await agent.close();
    const dir = join(h.dir, "agent", "window");
    const segments = readdirSync(dir).filter((n) => n.endsWith(".window"));
    expect(segments.length).toBeGreaterThan(0);
    for (const name of segments) {
      const bytes = readFileSync(join(dir, name));
      expect(bytes.includes("checkout")).toBe(false);
      expect(Buffer.from(bytes.toString("utf8"), "base64").includes("checkout")).toBe(false);
    }
    agent = await startAgent({ dataDir: join(h.dir, "agent"), hubUrl: h.hub.url, cluster: "eu-west-1", webhookPort: 0, pollWaitSeconds: 1, impactPollSeconds: 1 });
  });

  it("shows a proposal's impact, from the window kept across the agent's restart", async () => {
    const proposed = await call<{ id: string }>(h.admin, "POST", "/v1/proposals", { files: [DENY_UNOWNED], title: "pods name their owner" });
    const config = hubs.cliConfig("impact-proposal", h.admin);
    const run = await hubs.cli(["proposal", "show", proposed.body.id, "--impact", "--impact-timeout", "3s"], { config });
    expect(run.err).toBe("");
    expect(run.out).toContain(`proposal ${proposed.body.id}: pods name their owner`);
    expect(run.out).toContain("impact over 6 recorded requests: 5 newly denied");
    expect(run.out).toContain("no impact from eu-west-2");
  }, 30_000);

  it("refuses an answer from an agent that was not sent the request (404)", async () => {
    const creds = await enroll(h.hub, "eu-west-2", await joinToken(h, "eu-west-2"));
    const body = { currentHash: null, requests: 0, newlyDenied: 0, newlyAllowed: 0, newlyWarned: 0, undecidable: 0, byRule: [], tookMs: 1 };
    const error = await refused(call(clusterEndpoint(h.hub.url, creds), "POST", "/v1/agent/impact/0123456789abcdef", body));
    expect([error.status, error.message]).toEqual([404, "no impact request 0123456789abcdef was sent to cluster eu-west-2"]);
    const bad = await refused(call(clusterEndpoint(h.hub.url, creds), "POST", "/v1/agent/impact/0123456789abcdef", { ...body, requests: -1 }));
    expect(bad.status).toBe(400);
  });
});
