/**
 * Data residency, end to end: a global hub (zone global) and the regional hub of eu-west
 * (zone eu-central-1), each a real HTTPS server with its own database; clusters enrolled for
 * real, sending their decision logs and status over mutual TLS. A region's declaration of
 * the zones its data may be kept in is made on the global hub, mirrored to its hub, and
 * enforced by both; reads at the global hub of what a region's hub keeps say where it is.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { regionalSummary } from "../src/api/regions.js";
import type { ResidencyView } from "../src/api/residency.js";
import { call, type HubEndpoint } from "../src/client/http.js";
import { clusterEndpoint, enroll, type Credentials } from "../src/identity/enrollment.js";
import { startHub, type RunningHub } from "../src/hub/index.js";
import { RefusalBudget } from "../src/hub/residency-budget.js";
import { hubPlace } from "../src/hub/residency.js";
import { eventually } from "./support/eventually.js";
import { example, HubFixture, joinToken, mint, refused, type TestHub } from "./support/hubs.js";

const OPERATOR_KEY = "residency-test-operator-key-0123456789";

const hubs = new HubFixture("polity-residency-", OPERATOR_KEY);

interface Logged {
  readonly entry: { readonly kind: string; readonly cluster: string | null; readonly region: string | null; readonly actor: string; readonly data: Record<string, unknown> };
}

const entries = async (endpoint: HubEndpoint, kind: string) => (await call<{ items: Logged[] }>(endpoint, "GET", `/v1/audit/entries?kind=${kind}&limit=1000`)).body.items.map((i) => i.entry);
const batch = (id: string) => ({ batch: id, entries: [{ decision: "deny", policy: "require-team-label" }], dropped: 0 });

describe("data residency", () => {
  let global: TestHub;
  let regional: RunningHub;
  let regionalAdmin: HubEndpoint;
  let scratch = "";
  let eu: Credentials;
  let us: Credentials;
  const residency = async (endpoint: HubEndpoint) => (await call<ResidencyView>(endpoint, "GET", "/v1/residency")).body;
  const region = async (endpoint: HubEndpoint, name: string) => (await residency(endpoint)).items.find((i) => i.region === name);

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), "polity-residency-scratch-"));
    global = await hubs.startCopy("global");
    await call(global.admin, "POST", "/v1/apply", { files: [example("global.yaml"), example("region-eu-west.yaml")] });
    await call(global.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } });
    await call(global.admin, "POST", "/v1/clusters", { name: "us-east-1", region: "us-east" });
    const minted = (await call<{ token: string }>(global.admin, "POST", "/v1/regions/eu-west/tokens", { allowLoopback: true })).body;
    const dir = join(scratch, "regional");
    regional = await startHub({ dataDir: dir, port: 0, operatorKey: OPERATOR_KEY, zone: "eu-central-1", regional: { region: "eu-west", parentUrl: global.hub.url, parentCaPem: global.hub.caPem, token: minted.token, linkIntervalMs: 300 } });
    regionalAdmin = { url: regional.url, caPem: regional.caPem, token: readFileSync(join(dir, "admin.token"), "utf8").trim() };
    const join_ = await eventually("the regional hub mirrors its cluster", async () => (await call<{ token: string }>(regionalAdmin, "POST", "/v1/clusters/eu-west-1/join-tokens", {})).body.token);
    eu = await enroll({ url: regional.url, caPem: regional.caPem }, "eu-west-1", join_);
    us = await enroll(global.hub, "us-east-1", await joinToken(global, "us-east-1"));
  }, 60_000);

  afterAll(async () => {
    await regional?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("gives each hub a zone: the one it is started with, else its region's name for a regional hub and global for the global hub", () => {
    expect(hubPlace(undefined, undefined)).toEqual({ role: "global", zone: "global" });
    expect(hubPlace(undefined, "eu-west")).toEqual({ role: "regional", region: "eu-west", zone: "eu-west" });
    expect(hubPlace("eu-central-1", "eu-west")).toEqual({ role: "regional", region: "eu-west", zone: "eu-central-1" });
    expect(() => hubPlace("EU Central", undefined)).toThrow(/not a zone name/);
    expect(global.hub.context.residency.zone).toBe("global");
    expect(regional.context.residency.zone).toBe("eu-central-1");
  });

  it("shows, per region, which hub keeps its data in which zone, what stays there and what goes up", async () => {
    const eu = await eventually("the global hub knows the zone of eu-west's hub (from its summary)", async () => {
      const item = await region(global.admin, "eu-west");
      return item?.hubZone === "eu-central-1" ? item : undefined;
    });
    expect(eu).toMatchObject({ allowedZones: null, version: 0, keptBy: "regional hub", hubZoneAllowed: true, sentUp: ["counts", "hashes", "signed heads"] });
    expect(eu.kept).toEqual(["decision logs", "compliance details", "agent status", "drift reports", "audit entries"]);
    expect(await region(global.admin, "us-east")).toMatchObject({ allowedZones: null, keptBy: "global hub", hubZone: "global", sentUp: [] });
    expect((await residency(global.admin)).answering).toEqual({ role: "global", region: null, zone: "global" });
    const atRegion = await residency(regionalAdmin);
    expect(atRegion.answering).toEqual({ role: "regional", region: "eu-west", zone: "eu-central-1" });
    expect(atRegion.items.map((i) => [i.region, i.keptBy, i.hubZone])).toEqual([["eu-west", "regional hub", "eu-central-1"]]);
    // A region operator sees their region only.
    const operator = await mint(global, { name: "us-ops", role: "region-operator", region: "us-east" });
    expect((await residency(operator.endpoint)).items.map((i) => i.region)).toEqual(["us-east"]);
  });

  it("takes a region's declaration from a global admin only, validated and versioned, audits it, and mirrors it to the region's hub", async () => {
    const put = (endpoint: HubEndpoint, body: unknown, name = "eu-west") => call<{ version: number; allowedZones: string[] }>(endpoint, "PUT", `/v1/regions/${name}/residency`, body);
    for (const body of [{ allowedZones: [] }, { allowedZones: ["EU Central"] }, { allowedZones: ["eu-central-1", "eu-central-1"] }, { allowedZones: ["eu-central-1"], extra: 1 }]) {
      expect((await refused(put(global.admin, body))).status).toBe(400);
    }
    expect((await refused(put(global.admin, { allowedZones: ["eu-central-1"] }, "Not_A_Region"))).status).toBe(400);
    const operator = await mint(global, { name: "eu-ops", role: "region-operator", region: "eu-west" });
    expect((await refused(put(operator.endpoint, { allowedZones: ["anywhere"] }))).status).toBe(403);
    const atRegion = await refused(put(regionalAdmin, { allowedZones: ["eu-central-1"] }));
    expect([atRegion.status, atRegion.message]).toEqual([403, expect.stringMatching(/declared on the global hub/)]);

    expect((await put(global.admin, { allowedZones: ["eu-west-1"] })).body).toMatchObject({ version: 1, allowedZones: ["eu-west-1"] });
    const stale = await refused(put(global.admin, { allowedZones: ["eu-central-1", "eu-west-1"], baseVersion: 0 }));
    expect([stale.status, stale.message]).toEqual([409, expect.stringMatching(/at version 1, not 0/)]);
    expect((await put(global.admin, { allowedZones: ["eu-central-1", "eu-west-1"], baseVersion: 1 })).body).toMatchObject({ version: 2 });

    const declared = await eventually("the global hub audits both versions", async () => {
      const found = (await entries(global.admin, "residency.declared")).filter((e) => e.region === "eu-west");
      return found.length === 2 ? found : undefined;
    });
    expect(declared.map((e) => e.data)).toEqual([
      { version: 1, allowedZones: ["eu-west-1"], before: null },
      { version: 2, allowedZones: ["eu-central-1", "eu-west-1"], before: ["eu-west-1"] },
    ]);
    expect(declared[0]!.actor).toBe("user:bootstrap admin");
    await eventually("the regional hub follows version 2", async () => (await region(regionalAdmin, "eu-west"))?.version === 2);
    expect(await region(regionalAdmin, "eu-west")).toMatchObject({ allowedZones: ["eu-central-1", "eu-west-1"], hubZoneAllowed: true });
    const mirrored = await eventually("and audits what it follows", async () => {
      const found = await entries(regionalAdmin, "residency.declared");
      return found.some((e) => e.data.version === 2) ? found : undefined;
    });
    expect(mirrored.find((e) => e.data.version === 2)).toMatchObject({ actor: "parent", region: "eu-west", data: { allowedZones: ["eu-central-1", "eu-west-1"], mirrored: true } });
  });

  it("keeps, on the regional hub, the declaration it holds when its parent's mirror sends an older one, another region's, or one that does not parse", async () => {
    const held = await region(regionalAdmin, "eu-west");
    const residency = regional.context.residency;
    await residency.follow({ region: "eu-west", allowedZones: ["anywhere"], version: 1, declaredAt: new Date().toISOString(), declaredBy: "user:restored-backup" });
    await residency.follow({ region: "us-east", allowedZones: ["anywhere"], version: 99, declaredAt: new Date().toISOString(), declaredBy: "user:x" });
    await residency.follow({ region: "eu-west", allowedZones: ["Not A Zone"], version: 99, declaredAt: new Date().toISOString(), declaredBy: "user:x" });
    expect(await region(regionalAdmin, "eu-west")).toEqual(held);
    const refusals = await eventually("both refusals are audited", async () => {
      const found = (await entries(regionalAdmin, "regional-hub.refused")).filter((e) => e.data.what === "residency declaration");
      return found.length === 2 ? found : undefined;
    });
    expect(refusals.map((e) => e.data.why)).toEqual([expect.stringMatching(/region us-east's, not eu-west's/), expect.stringMatching(/^not a residency declaration: allowedZones\.0: a zone name/)]);
  });

  it("refuses (403) decision logs and status an agent of a region with its own hub sends to the global hub, and audits it once per cluster and kind", async () => {
    const atRegion = clusterEndpoint(regional.url, eu);
    const atGlobal = clusterEndpoint(global.hub.url, eu);
    expect((await call(atRegion, "POST", "/v1/agent/decisions", batch("batch-eu-0001"))).status).toBe(202);
    expect((await call(atRegion, "POST", "/v1/agent/status", { bundleVersion: null })).status).toBe(204);
    // The global hub knows the certificate once the regional hub's summary carried it up.
    const first = await eventually("the global hub refuses the fallback's decision logs", async () => {
      const error = await refused(call(atGlobal, "POST", "/v1/agent/decisions", batch("batch-eu-0002")));
      return error.status === 403 ? error : undefined;
    });
    expect(first.message).toMatch(/^region eu-west has its own hub: decision logs of its clusters are kept there, not sent to the global hub; cluster eu-west-1 sends them to region eu-west's hub \(zone eu-central-1\)$/);
    expect(first.causes).toEqual([{ field: "keptIn", message: "region eu-west's hub (zone eu-central-1)" }]);
    for (let i = 3; i < 8; i++) expect((await refused(call(atGlobal, "POST", "/v1/agent/decisions", batch(`batch-eu-000${i}`)))).status).toBe(403);
    const status = await refused(call(atGlobal, "POST", "/v1/agent/status", { bundleVersion: null }));
    expect([status.status, status.message]).toEqual([403, expect.stringMatching(/agent status of its clusters are kept there/)]);
    await eventually("the status refusal is audited", async () => (await entries(global.admin, "residency.refused")).some((e) => e.cluster === "eu-west-1" && e.data.what === "agent status"));
    const refusals = (await entries(global.admin, "residency.refused")).filter((e) => e.cluster === "eu-west-1" && e.data.what === "decision logs");
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({ actor: "cluster:eu-west-1", region: "eu-west", data: { direction: "sent here", zone: "global", allowedZones: ["eu-central-1", "eu-west-1"], suppressedBefore: 0 } });
    // Nothing was stored at the global hub.
    expect((await global.hub.context.reports.decisions("eu-west-1", 100)).items).toHaveLength(0);
  });

  it("refuses, at a hub outside a region's zones, the data of its clusters: the global hub for a region without a hub, the region's own hub when its zone is left out", async () => {
    const usAgent = clusterEndpoint(global.hub.url, us);
    expect((await call(usAgent, "POST", "/v1/agent/decisions", batch("batch-us-0001"))).status).toBe(202);
    await call(global.admin, "PUT", "/v1/regions/us-east/residency", { allowedZones: ["us-east-1"] });
    const error = await refused(call(usAgent, "POST", "/v1/agent/decisions", batch("batch-us-0002")));
    expect([error.status, error.message]).toEqual([403, "region us-east keeps its data in zone us-east-1 (residency version 1): the global hub (zone global) may not hold decision logs of cluster us-east-1"]);
    expect((await refused(call(usAgent, "POST", "/v1/agent/drift", { batch: "drift-us-0001", events: [], dropped: 0, suppressed: 0 }))).status).toBe(403);
    expect(await region(global.admin, "us-east")).toMatchObject({ allowedZones: ["us-east-1"], keptBy: "global hub", hubZone: "global", hubZoneAllowed: false });
    await call(global.admin, "PUT", "/v1/regions/us-east/residency", { allowedZones: ["us-east-1", "global"] });
    expect((await call(usAgent, "POST", "/v1/agent/decisions", batch("batch-us-0003"))).status).toBe(202);

    // eu-west leaves its own hub's zone out: that hub refuses its agents' data once it follows.
    await call(global.admin, "PUT", "/v1/regions/eu-west/residency", { allowedZones: ["eu-west-1"] });
    const atRegion = clusterEndpoint(regional.url, eu);
    const own = await eventually("the regional hub refuses its own agent's decision logs", async () => {
      const e = await refused(call(atRegion, "POST", "/v1/agent/decisions", batch("batch-eu-0100")));
      return e.status === 403 ? e : undefined;
    });
    expect(own.message).toBe("region eu-west keeps its data in zone eu-west-1 (residency version 3): region eu-west's hub (zone eu-central-1) may not hold decision logs of cluster eu-west-1");
    await eventually("the regional hub audits it", async () => (await entries(regionalAdmin, "residency.refused")).find((e) => e.cluster === "eu-west-1" && e.data.zone === "eu-central-1"));
    expect(await region(global.admin, "eu-west")).toMatchObject({ hubZone: "eu-central-1", hubZoneAllowed: false });
    await call(global.admin, "PUT", "/v1/regions/eu-west/residency", { allowedZones: ["eu-central-1"] });
    await eventually("and admits them again once its zone is allowed", async () => (await call(atRegion, "POST", "/v1/agent/decisions", batch("batch-eu-0101"))).status === 202);
  }, 60_000);

  it("answers a read at the global hub of details a region's hub keeps with where they are kept, not with data", async () => {
    const decisions = await refused(call(global.admin, "GET", "/v1/clusters/eu-west-1/decisions"));
    expect([decisions.status, decisions.message]).toEqual([
      403,
      "decision logs of cluster eu-west-1 are kept in region eu-west's hub (zone eu-central-1), not here: ask that hub (polity login --region eu-west); the global hub holds only counts, hashes and signed heads of its region",
    ]);
    for (const path of ["/v1/compliance?region=eu-west", "/v1/compliance?cluster=eu-west-1", "/v1/compliance/history?cluster=eu-west-1", "/v1/drift?region=eu-west"]) {
      const error = await refused(call(global.admin, "GET", path));
      expect([error.status, error.message], path).toEqual([403, expect.stringMatching(/are kept in region eu-west's hub \(zone eu-central-1\), not here/)]);
    }
    // The regional hub answers with the data; the global hub still answers for a region without a hub.
    const kept = (await call<{ items: unknown[] }>(regionalAdmin, "GET", "/v1/clusters/eu-west-1/decisions")).body.items;
    expect(kept.length).toBeGreaterThan(0);
    expect((await call<{ items: unknown[] }>(global.admin, "GET", "/v1/clusters/us-east-1/decisions")).body.items.length).toBeGreaterThan(0);
    const audited = await eventually("the read refusal is audited", async () => (await entries(global.admin, "residency.refused")).find((e) => e.data.direction === "read here" && e.cluster === "eu-west-1"));
    expect(audited).toMatchObject({ actor: "user:bootstrap admin", region: "eu-west", data: { what: "decision logs", keptIn: "region eu-west's hub (zone eu-central-1)" } });
  });

  it("lets a region's summaries carry only counts, hashes and signed heads: the schema refuses decision logs, status or compliance details", () => {
    const base = { certificates: [], bundles: [], status: { clusters: 1, stale: 0 }, compliance: { pass: 3, fail: 1 }, conflicts: [] };
    expect(regionalSummary.safeParse(base).success).toBe(true);
    expect(regionalSummary.safeParse({ ...base, zone: "eu-central-1" }).success).toBe(true);
    expect(regionalSummary.safeParse({ ...base, decisions: [{ decision: "deny" }] }).success).toBe(false);
    expect(regionalSummary.safeParse({ ...base, auditEntries: [{ kind: "agent.denials" }] }).success).toBe(false);
    expect(regionalSummary.safeParse({ ...base, compliance: { fail: { policy: "x", failing: [{ name: "pod" }] } } }).success).toBe(false);
    expect(regionalSummary.safeParse({ ...base, status: { clusters: "eu-west-1 is stale" } }).success).toBe(false);
    expect(regionalSummary.safeParse({ ...base, zone: "Not A Zone" }).success).toBe(false);
  });

  it("shows what is kept where from the command line, in plain language and as JSON", async () => {
    const config = hubs.cliConfig("global", global.admin);
    const declared = await hubs.cli(["region", "residency", "eu-west", "--allow-zone", "eu-central-1", "--allow-zone", "eu-west-1"], { config });
    expect([declared.code, declared.out]).toEqual([0, expect.stringMatching(/^region eu-west: its data may be kept in zone eu-central-1, eu-west-1 \(residency version \d+\)\n$/)]);
    const bad = await hubs.cli(["region", "residency", "eu-west", "--allow-zone", "Nowhere"], { config });
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--allow-zone Nowhere: not a zone name/);
    const text = await hubs.cli(["get", "residency"], { config });
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/^answering: the global hub, zone global\n/);
    expect(text.out).toMatch(/^eu-west +eu-central-1,eu-west-1 +regional hub +eu-central-1 +yes$/m);
    expect(text.out).toContain("region eu-west: may be kept in zone eu-central-1, eu-west-1");
    expect(text.out).toContain("  kept by its regional hub, zone eu-central-1: decision logs, compliance details, agent status, drift reports, audit entries\n  sent up to the global hub: counts, hashes, signed heads\n");
    expect(text.out).toContain("  sent up: nothing (the global hub keeps the region's data itself)");
    const json = await hubs.cli(["get", "residency", "-o", "json"], { config });
    const view = JSON.parse(json.out) as ResidencyView;
    expect(view.items.find((i) => i.region === "eu-west")).toMatchObject({ allowedZones: ["eu-central-1", "eu-west-1"], hubZone: "eu-central-1" });
    const help = await hubs.cli(["get", "residency", "--help"]);
    expect([help.code, help.out]).toEqual([0, expect.stringMatching(/^Usage: polity get residency \[-o text\|json\]\n[\s\S]*Examples:\n {2}polity get residency\n/)]);
    const badZone = await hubs.cli(["hub", "--zone", "EU Central", "--data", join(scratch, "bad-zone")]);
    expect([badZone.code, badZone.err]).toEqual([2, expect.stringMatching(/--zone EU Central: not a zone name/)]);
    expect((await hubs.cli(["hub", "--help"])).out).toMatch(/--zone <z> +the zone this hub runs in \(default: global; a regional hub's, its\n/);
    const regionHelp = await hubs.cli(["region", "residency", "--help"]);
    expect(regionHelp.out).toMatch(/^Usage: polity region residency <region> --allow-zone <zone>\.\.\./);
  }, 60_000);
});

describe("the budget of residency audit entries", () => {
  it("audits a key once a window, counts what it leaves out, and caps the entries of a window in all", () => {
    const budget = new RefusalBudget({ windowMs: 1000, perWindow: 2, maxKeys: 10 });
    expect(budget.take("a", 0)).toEqual({ suppressedBefore: 0 });
    expect(budget.take("a", 10)).toBeUndefined();
    expect(budget.take("a", 20)).toBeUndefined();
    expect(budget.take("b", 30)).toEqual({ suppressedBefore: 0 });
    // Two a window in all: a third key waits for the next window.
    expect(budget.take("c", 40)).toBeUndefined();
    expect(budget.take("a", 1000)).toEqual({ suppressedBefore: 2 });
    expect(budget.take("c", 1001)).toEqual({ suppressedBefore: 1 });
  });
});
