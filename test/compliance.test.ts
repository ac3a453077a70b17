/**
 * Compliance at the hub: agents send a compact summary of their last scan with their
 * status; the hub keeps the matrix clusters × policies and how it changed, answers
 * /v1/compliance with filters, shows a region operator their region only, and refuses a
 * summary that breaks its bounds. `polity get compliance` prints it. A real hub over mutual
 * TLS, clusters enrolled with real certificates, the built CLI.
 */
import { describe, expect, it, beforeAll } from "vitest";
import { MAX_COMPLIANCE_EXAMPLES, MAX_COMPLIANCE_POLICIES, type ComplianceChange, type ComplianceMatrix, type ComplianceSummary } from "../src/api/compliance.js";
import { call, type HubEndpoint } from "../src/client/http.js";
import { clusterEndpoint, enroll } from "../src/identity/enrollment.js";
import { HubFixture, joinToken, mint, refused, type Minted, type TestHub } from "./support/hubs.js";

const fixture = new HubFixture("polity-compliance-", "compliance-test-operator-key-0123456789");

const summary = (scannedAt: string, policies: ComplianceSummary["policies"], extra: Partial<ComplianceSummary> = {}): ComplianceSummary => ({
  scannedAt,
  bundleVersion: 1,
  objects: policies.reduce((n, p) => Math.max(n, p.pass + p.fail + p.warn), 0),
  policies,
  omittedPolicies: 0,
  ...extra,
});

const status = (compliance?: unknown) => ({ bundleVersion: null, bundleHash: null, ...(compliance === undefined ? {} : { compliance }) });

describe("compliance at the hub", () => {
  let h: TestHub;
  const agents: Record<string, HubEndpoint> = {};
  let euOperator: Minted;

  beforeAll(async () => {
    h = await fixture.startCopy("hub");
    for (const [name, region] of [
      ["eu-west-1", "eu-west"],
      ["eu-west-2", "eu-west"],
      ["us-east-1", "us-east"],
      ["us-east-2", "us-east"],
    ] as const) {
      await call(h.admin, "POST", "/v1/clusters", { name, region, labels: {} });
      agents[name] = clusterEndpoint(h.hub.url, await enroll(h.hub, name, await joinToken(h, name)));
    }
    euOperator = await mint(h, { name: "eu ops", role: "region-operator", region: "eu-west", ttlSeconds: 3600 });
    await call(agents["eu-west-1"]!, "POST", "/v1/agent/status", status(summary("2026-12-01T10:00:00.000Z", [
      { policy: "pod-security", pass: 40, fail: 2, warn: 0, examples: [{ kind: "Pod", namespace: "shop", name: "cart-7d9f", result: "fail" }, { kind: "Deployment", namespace: "shop", name: "cart", result: "fail" }] },
      { policy: "require-team-label", pass: 30, fail: 0, warn: 12, examples: [{ kind: "Deployment", namespace: "legacy", name: "old-app", result: "warn" }] },
    ])));
    await call(agents["eu-west-2"]!, "POST", "/v1/agent/status", status(summary("2026-12-01T10:00:00.000Z", [
      { policy: "pod-security", pass: 25, fail: 0, warn: 0, examples: [] },
      { policy: "require-team-label", pass: 25, fail: 0, warn: 0, examples: [] },
    ])));
    await call(agents["us-east-1"]!, "POST", "/v1/agent/status", status(summary("2026-12-01T10:00:00.000Z", [{ policy: "pod-security", pass: 9, fail: 1, warn: 0, examples: [{ kind: "Pod", namespace: "web", name: "debug", result: "fail" }] }])));
    // us-east-2's agent reports status but has not scanned yet.
    await call(agents["us-east-2"]!, "POST", "/v1/agent/status", status());
  });

  it("keeps the matrix clusters × policies, every readable cluster a row, those not scanned yet with no cells", async () => {
    const m = (await call<ComplianceMatrix>(h.admin, "GET", "/v1/compliance")).body;
    expect(m.policies).toEqual(["pod-security", "require-team-label"]);
    expect(m.items.map((r) => [r.cluster, r.region, r.scannedAt, r.policies.map((p) => `${p.policy}:${p.state}`)])).toEqual([
      ["eu-west-1", "eu-west", "2026-12-01T10:00:00.000Z", ["pod-security:fail", "require-team-label:warn"]],
      ["eu-west-2", "eu-west", "2026-12-01T10:00:00.000Z", ["pod-security:pass", "require-team-label:pass"]],
      ["us-east-1", "us-east", "2026-12-01T10:00:00.000Z", ["pod-security:fail"]],
      ["us-east-2", "us-east", null, []],
    ]);
    expect(m.items[0]!.policies[0]).toEqual({
      policy: "pod-security",
      pass: 40,
      fail: 2,
      warn: 0,
      state: "fail",
      examples: [
        { kind: "Pod", namespace: "shop", name: "cart-7d9f", result: "fail" },
        { kind: "Deployment", namespace: "shop", name: "cart", result: "fail" },
      ],
    });
  });

  it("filters by region, cluster and policy", async () => {
    const get = async (q: string) => (await call<ComplianceMatrix>(h.admin, "GET", `/v1/compliance?${q}`)).body;
    expect((await get("region=us-east")).items.map((r) => r.cluster)).toEqual(["us-east-1", "us-east-2"]);
    expect((await get("cluster=eu-west-2")).items.map((r) => r.cluster)).toEqual(["eu-west-2"]);
    const column = await get("policy=require-team-label");
    expect(column.policies).toEqual(["require-team-label"]);
    expect(column.items.map((r) => r.policies.map((p) => p.policy))).toEqual([["require-team-label"], ["require-team-label"], [], []]);
    expect((await refused(get("cluster=nowhere"))).status).toBe(404);
    expect((await refused(get("policy=%1b%5b2J"))).status).toBe(400);
  });

  it("shows a region operator their region only, and refuses them another region or its clusters", async () => {
    const m = (await call<ComplianceMatrix>(euOperator.endpoint, "GET", "/v1/compliance")).body;
    expect(m.items.map((r) => r.cluster)).toEqual(["eu-west-1", "eu-west-2"]);
    const region = await refused(call(euOperator.endpoint, "GET", "/v1/compliance?region=us-east"));
    expect(region.status).toBe(403);
    expect(region.message).toMatch(/region operator of eu-west may not read region us-east/);
    expect((await refused(call(euOperator.endpoint, "GET", "/v1/compliance?cluster=us-east-1"))).status).toBe(403);
    const history = (await call<{ items: ComplianceChange[] }>(euOperator.endpoint, "GET", "/v1/compliance/history")).body.items;
    expect(new Set(history.map((c) => c.region))).toEqual(new Set(["eu-west"]));
    // A cluster reads its own row only.
    expect((await call<ComplianceMatrix>(agents["us-east-1"]!, "GET", "/v1/compliance")).body.items.map((r) => r.cluster)).toEqual(["us-east-1"]);
    expect((await refused(call(h.anonymous, "GET", "/v1/compliance"))).status).toBe(401);
  });

  it("keeps history when a cell's counts change, not at every report, and ignores an older scan sent late", async () => {
    const agent = agents["us-east-1"]!;
    const same = summary("2026-12-01T10:00:00.000Z", [{ policy: "pod-security", pass: 9, fail: 1, warn: 0, examples: [] }]);
    await call(agent, "POST", "/v1/agent/status", status(same));
    await call(agent, "POST", "/v1/agent/status", status({ ...same, scannedAt: "2026-12-01T10:05:00.000Z" }));
    await call(agent, "POST", "/v1/agent/status", status(summary("2026-12-01T10:10:00.000Z", [{ policy: "pod-security", pass: 10, fail: 0, warn: 0, examples: [] }])));
    // Late, from before the last one: ignored.
    await call(agent, "POST", "/v1/agent/status", status(summary("2026-12-01T10:07:00.000Z", [{ policy: "pod-security", pass: 0, fail: 10, warn: 0, examples: [] }])));
    const history = (await call<{ items: ComplianceChange[] }>(h.admin, "GET", "/v1/compliance/history?cluster=us-east-1")).body.items;
    expect(history.map((c) => [c.at, c.pass, c.fail])).toEqual([
      ["2026-12-01T10:10:00.000Z", 10, 0],
      ["2026-12-01T10:00:00.000Z", 9, 1],
    ]);
    const row = (await call<ComplianceMatrix>(h.admin, "GET", "/v1/compliance?cluster=us-east-1")).body.items[0]!;
    expect(row.policies).toEqual([{ policy: "pod-security", pass: 10, fail: 0, warn: 0, examples: [], state: "pass" }]);
    expect(row.scannedAt).toBe("2026-12-01T10:10:00.000Z");
  });

  describe("refuses a summary beyond its bounds, with the field that breaks them, and keeps what it had", () => {
    const cases: [string, unknown, RegExp][] = [
      ["too many examples", summary("2026-12-02T00:00:00.000Z", [{ policy: "p", pass: 0, fail: 9, warn: 0, examples: Array.from({ length: MAX_COMPLIANCE_EXAMPLES + 1 }, (_, i) => ({ kind: "Pod", namespace: "a", name: `p${i}`, result: "fail" })) }]), /compliance\.policies\.0\.examples/],
      ["too many policies", summary("2026-12-02T00:00:00.000Z", Array.from({ length: MAX_COMPLIANCE_POLICIES + 1 }, (_, i) => ({ policy: `p${i}`, pass: 1, fail: 0, warn: 0, examples: [] }))), /compliance\.policies/],
      ["object contents in an example", summary("2026-12-02T00:00:00.000Z", [{ policy: "p", pass: 0, fail: 1, warn: 0, examples: [{ kind: "Pod", namespace: "a", name: "x", result: "fail", object: { spec: {} } } as never] }]), /compliance\.policies\.0\.examples\.0\.object: unknown field/],
      ["a terminal escape in a name", summary("2026-12-02T00:00:00.000Z", [{ policy: "p", pass: 0, fail: 1, warn: 0, examples: [{ kind: "Pod", namespace: "a", name: "x\u001b[2J", result: "fail" }] }]), /compliance\.policies\.0\.examples\.0\.name: must not contain control/],
      ["a negative count", summary("2026-12-02T00:00:00.000Z", [{ policy: "p", pass: -1, fail: 0, warn: 0, examples: [] }]), /compliance\.policies\.0\.pass/],
      ["a policy twice", summary("2026-12-02T00:00:00.000Z", [{ policy: "p", pass: 1, fail: 0, warn: 0, examples: [] }, { policy: "p", pass: 1, fail: 0, warn: 0, examples: [] }]), /names a policy twice/],
      ["a namespace that is no namespace name", summary("2026-12-02T00:00:00.000Z", [{ policy: "p", pass: 0, fail: 1, warn: 0, examples: [{ kind: "Pod", namespace: "../etc", name: "x", result: "fail" }] }]), /namespace/],
      ["a date that is not one", { ...summary("x", []), scannedAt: "yesterday" }, /compliance\.scannedAt/],
    ];
    for (const [what, body, message] of cases) {
      it(what, async () => {
        const error = await refused(call(agents["eu-west-2"]!, "POST", "/v1/agent/status", status(body)));
        expect(error.status).toBe(400);
        expect(error.message).toMatch(message);
        const row = (await call<ComplianceMatrix>(h.admin, "GET", "/v1/compliance?cluster=eu-west-2")).body.items[0]!;
        expect(row.scannedAt).toBe("2026-12-01T10:00:00.000Z");
      });
    }
  });

  it("prints the matrix with polity get compliance, and -o json", async () => {
    const config = fixture.cliConfig("admin", h.admin);
    const text = await fixture.cli(["get", "compliance"], { config });
    expect(text.code, text.err).toBe(0);
    const lines = text.out.split("\n");
    expect(lines[0]).toMatch(/^CLUSTER\s+REGION\s+SCANNED\s+OBJECTS\s+DRIFT\s+POD-SECURITY\s+REQUIRE-TEAM-LABEL$/);
    // No drift reported by these agents: "-" in the DRIFT column.
    expect(lines.find((l) => l.startsWith("eu-west-1"))).toMatch(/eu-west-1\s+eu-west\s+\S+ ago\s+42\s+-\s+fail 2\s+warn 12/);
    expect(lines.find((l) => l.startsWith("us-east-2"))).toMatch(/us-east-2\s+us-east\s+never\s+0\s+-\s+-\s+-/);
    expect(text.out).toContain("eu-west-1 pod-security: Pod shop/cart-7d9f (fail), Deployment shop/cart (fail)\n");
    expect(text.out).toContain("eu-west-1 require-team-label: Deployment legacy/old-app (warn), and 11 more\n");
    const json = await fixture.cli(["get", "compliance", "--region", "us-east", "-o", "json"], { config });
    expect(json.code, json.err).toBe(0);
    expect((JSON.parse(json.out) as ComplianceMatrix).items.map((r) => r.cluster)).toEqual(["us-east-1", "us-east-2"]);
    const history = await fixture.cli(["get", "compliance", "--cluster", "us-east-1", "--history"], { config });
    expect(history.out.split("\n")[0]).toMatch(/^AT\s+CLUSTER\s+REGION\s+POLICY\s+PASS\s+FAIL\s+WARN$/);
    const operator = await fixture.cli(["get", "compliance", "--region", "us-east"], { config: fixture.cliConfig("eu-ops", euOperator.endpoint) });
    expect(operator.code).toBe(2);
    expect(operator.err).toMatch(/may not read region us-east/);
  });
});
