/**
 * Drift, end to end: the agent's drift watcher against the test API server with the
 * official client (list and watch over real TLS), and its reports reaching a real hub over
 * mutual TLS. A managed field changed is put back within seconds; an unmanaged field or
 * status is left alone; an inform object is reported, not touched; a deleted object is
 * recreated; a controller that keeps reverting is fought five times a minute, then named
 * and left; the hub stores the events, counts them per cluster, logs them, and
 * `polity get drift` shows them.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubernetesObjectApi, PatchStrategy, type KubernetesObject } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DriftEvent, DriftTotals, StoredDriftEvent } from "../src/api/drift.js";
import type { ComplianceMatrix } from "../src/api/compliance.js";
import { DriftReporter, DriftWatcher, ownedType, serverSideApply } from "../src/agent/drift/index.js";
import { DRIFT_AUDIT_BUDGET } from "../src/hub/drift.js";
import { call, type HubEndpoint } from "../src/client/http.js";
import { clusterEndpoint, enroll } from "../src/identity/enrollment.js";
import { renderCluster, type Manifest } from "../src/intents/index.js";
import { loadKubeAccess, type KubeAccess } from "../src/kube/index.js";
import { effectivePolicySet } from "../src/layering/effective.js";
import { layersFromFiles } from "../src/policy/layer-files.js";
import { eventually, sleep } from "./support/eventually.js";
import { HubFixture, joinToken, type TestHub } from "./support/hubs.js";
import { TestApiServer } from "./support/kube/api-server.js";
import { INTENT_TYPES } from "./support/kube/resources.js";

const ROOT = join(import.meta.dirname, "..");
const KINDS = ["NetworkPolicy", "ResourceQuota", "LimitRange", "ClusterRole", "ClusterRoleBinding"];
const fixture = new HubFixture("polity-drift-", "drift-test-operator-key-0123456789abcdef");

function exampleObjects(): Manifest[] {
  const files = ["global.yaml", "region-eu-west.yaml", "cluster-eu-west-1.yaml"].map((name) => ({ name, content: readFileSync(join(ROOT, "examples/layers", name), "utf8") }));
  const set = effectivePolicySet(layersFromFiles(files).map((l) => l.layer), { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } });
  return renderCluster("eu-west-1", set, { kubernetesVersion: "1.31", networkPolicy: true, zones: ["eu-west-1a"] }).document.manifests.filter((m) => KINDS.includes(m.kind));
}

let api: TestApiServer;
let dir: string;
let access: KubeAccess;
let watcher: DriftWatcher;
let reporter: DriftReporter;
let hubEndpoint: HubEndpoint | undefined;
const events: DriftEvent[] = [];
let desired: Manifest[];

type Json = Record<string, unknown>;
const stored = (m: Manifest) => api.get(m.apiVersion, m.kind, m.metadata.name, m.metadata.namespace) as (Json & { spec: Json; metadata: Json }) | undefined;
const objectName = (m: Manifest) => `${m.metadata.namespace ?? ""}/${m.metadata.name}`;
const eventsFor = (m: Manifest) => events.filter((e) => `${e.object.namespace ?? ""}/${e.object.name}` === objectName(m) && e.object.kind === m.kind);
/** Polity's server-side applies of one object, as the API server saw them. */
const appliesTo = (m: Manifest, since = 0) => api.requests.filter((r) => r.method === "PATCH" && r.query.fieldManager === "polity" && r.path.endsWith(`/${m.metadata.name}`) && r.path.includes(`/${m.metadata.namespace ?? ""}`) && r.at >= since);
/** Another client's write: replaces the stored object as kubectl edit would. */
const edit = (m: Manifest, change: (live: Json & { spec: Json; metadata: Json }) => void) => {
  const live = stored(m)!;
  change(live);
  api.put(live);
};

const quota = () => desired.find((m) => m.kind === "ResourceQuota" && m.metadata.namespace === "payments")!;
const limits = () => desired.find((m) => m.kind === "LimitRange" && m.metadata.namespace === "payments")!;
const informNetpol = () => desired.find((m) => m.kind === "NetworkPolicy" && m.metadata.annotations?.["polity.dev/remediation"] === "inform")!;

beforeAll(async () => {
  api = await TestApiServer.start({ bookmarkIntervalMs: 500 });
  for (const type of INTENT_TYPES) api.serve(type);
  for (const name of ["payments", "billing"]) api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name } });
  dir = mkdtempSync(join(tmpdir(), "polity-drift-"));
  access = loadKubeAccess({ kubeconfig: api.writeKubeconfig(join(dir, "kubeconfig")), env: {} })!;
  // One of the segmentation's NetworkPolicies as an inform object (a warn policy's would be).
  const objects = exampleObjects();
  const netpol = objects.find((m) => m.kind === "NetworkPolicy" && m.metadata.name.endsWith(".dns"))!;
  desired = objects.map((m) => (m === netpol ? { ...m, metadata: { ...m.metadata, annotations: { "polity.dev/remediation": "inform" } } } : m));
  // Applied as the apply loop would (server-side apply, field manager polity), the manifests sent as they are.
  for (const m of desired) await serverSideApply(access.config, (await ownedType(access.config, m.apiVersion, m.kind, new AbortController().signal))!, m, { force: false });
  reporter = new DriftReporter({ hub: () => hubEndpoint });
  watcher = new DriftWatcher({
    kube: access,
    sink: {
      add: (event) => {
        events.push(event);
        reporter.add(event);
      },
      suppressed: () => reporter.suppressed(),
    },
  });
  watcher.start();
  watcher.setDesired(desired);
  await watcher.whenSynced();
});

afterAll(async () => {
  await watcher?.stop();
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the drift watcher", () => {
  it("watches the kinds Polity owns, selecting its objects by label, and finds nothing to do when they hold", async () => {
    expect(watcher.health()).toMatchObject({ desired: desired.length, synced: true, unserved: [] });
    expect(watcher.health().watching).toHaveLength(KINDS.length);
    const watches = await eventually("a watch per kind", () => {
      const open = api.requests.filter((r) => r.query.watch === "true");
      return open.length >= KINDS.length && open;
    });
    expect(watches.every((r) => r.query.labelSelector === "app.kubernetes.io/managed-by=polity")).toBe(true);
    await sleep(500);
    expect(events).toEqual([]);
  });

  it("puts a changed managed field back within seconds, by server-side apply as polity, and reports it remediated", async () => {
    const m = quota();
    const before = Date.now();
    edit(m, (live) => ((live.spec.hard as Json).pods = "999"));
    await eventually("the quota's pods restored", () => (stored(m)!.spec.hard as Json).pods === "200", 5000);
    const restoredInMs = Date.now() - before;
    expect(restoredInMs).toBeLessThan(5000);
    const event = await eventually("a drift event", () => eventsFor(m)[0]);
    expect(event).toMatchObject({ remediation: "enforce", outcome: "remediated", missing: false, fields: ["spec.hard.pods"], policy: "payments-quota", reapplies: 1 });
    const applies = appliesTo(m, before);
    expect(applies).toHaveLength(1);
    expect(applies[0]!.query.force).toBe("true");
  });

  it("leaves a field Polity does not set alone: another team's quota key and label stay, nothing is applied", async () => {
    const m = quota();
    const before = Date.now();
    edit(m, (live) => {
      (live.spec.hard as Json).secrets = "10";
      live.metadata.labels = { ...(live.metadata.labels as Json), team: "billing" };
    });
    await sleep(1500);
    expect(appliesTo(m, before)).toEqual([]);
    expect(eventsFor(m)).toHaveLength(1);
    expect((stored(m)!.spec.hard as Json).secrets).toBe("10");
  });

  it("ignores status, which the API server writes", async () => {
    const m = limits();
    const before = Date.now();
    edit(m, (live) => (live.status = { observed: "by the server" }));
    await sleep(1500);
    expect(appliesTo(m, before)).toEqual([]);
    expect(eventsFor(m)).toEqual([]);
  });

  it("reports drift on an inform object once, and leaves it as it is", async () => {
    const m = informNetpol();
    const before = Date.now();
    edit(m, (live) => (live.spec.policyTypes = ["Ingress", "Egress"]));
    const event = await eventually("an inform event", () => eventsFor(m)[0]);
    expect(event).toMatchObject({ remediation: "inform", outcome: "reported", fields: ["spec.policyTypes"], reapplies: 0 });
    // A second change of something else on the same object: unchanged drift is not reported again.
    edit(m, (live) => (live.metadata.labels = { ...(live.metadata.labels as Json), seen: "yes" }));
    await sleep(1000);
    expect(eventsFor(m)).toHaveLength(1);
    expect(appliesTo(m, before)).toEqual([]);
    expect(stored(m)!.spec.policyTypes).toEqual(["Ingress", "Egress"]);
  });

  it("recreates a deleted object under enforce and reports it missing", async () => {
    const m = limits();
    api.remove(m.apiVersion, m.kind, m.metadata.name, m.metadata.namespace);
    await eventually("the LimitRange recreated", () => stored(m) !== undefined, 5000);
    expect(stored(m)!.spec).toEqual(m.spec);
    const event = await eventually("a missing event", () => eventsFor(m).find((e) => e.missing));
    expect(event).toMatchObject({ remediation: "enforce", outcome: "remediated", missing: true, fields: [] });
  });

  it("fights a controller that keeps reverting at most five times a minute, then reports the fight naming it, and stops", async () => {
    const m = desired.find((d) => d.kind === "ResourceQuota" && d.metadata.namespace === "billing")!;
    const rivalApi = KubernetesObjectApi.makeApiClient(access.config);
    const before = Date.now();
    let stop = false;
    let reverts = 0;
    // The rival: whenever pods is not its value, it applies its own, as its field manager.
    const rival = (async () => {
      while (!stop) {
        if ((stored(m)!.spec.hard as Json).pods !== "50") {
          await rivalApi.patch({ apiVersion: "v1", kind: "ResourceQuota", metadata: { name: m.metadata.name, namespace: "billing" }, spec: { hard: { pods: "50" } } } as KubernetesObject, undefined, undefined, "quota-autoscaler", true, PatchStrategy.ServerSideApply);
          reverts++;
        }
        await sleep(30);
      }
    })();
    try {
      const fight = await eventually("a fight reported", () => eventsFor(m).find((e) => e.outcome === "fight"), 15_000);
      expect(fight).toMatchObject({ remediation: "enforce", otherManager: "quota-autoscaler", reapplies: 5, fields: ["spec.hard.pods"] });
      await sleep(2000);
    } finally {
      stop = true;
      await rival;
    }
    expect(reverts).toBeGreaterThanOrEqual(5);
    expect(appliesTo(m, before)).toHaveLength(5);
    const forObject = eventsFor(m);
    expect(forObject.filter((e) => e.outcome === "remediated").map((e) => e.reapplies)).toEqual([1, 2, 3, 4, 5]);
    expect(forObject.filter((e) => e.outcome === "fight")).toHaveLength(1);
    expect(watcher.health().counts.fights).toBe(1);
    // The rival won for this minute: its value stands.
    expect((stored(m)!.spec.hard as Json).pods).toBe("50");
  });
});

describe("drift at the hub", () => {
  let h: TestHub;

  beforeAll(async () => {
    h = await fixture.startCopy("hub");
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: {} });
    hubEndpoint = clusterEndpoint(h.hub.url, await enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1")));
  });

  it("takes the agent's events over mutual TLS, once per batch, and shows them with polity get drift", async () => {
    expect(events.length).toBeGreaterThanOrEqual(9);
    expect(await reporter.flush()).toBe(true);
    expect(reporter.health()).toMatchObject({ buffered: 0, sent: events.length, dropped: 0 });
    const r = (await call<{ items: StoredDriftEvent[]; totals: Record<string, DriftTotals> }>(h.admin, "GET", "/v1/drift?cluster=eu-west-1")).body;
    expect(r.items).toHaveLength(events.length);
    expect(r.totals["eu-west-1"]).toMatchObject({ remediated: events.filter((e) => e.outcome === "remediated").length, reported: 1, fights: 1, failed: 0 });
    expect(r.items.find((e) => e.outcome === "fight")).toMatchObject({ cluster: "eu-west-1", region: "eu-west", otherManager: "quota-autoscaler", object: { kind: "ResourceQuota", namespace: "billing" } });
    // The compliance matrix counts them per cluster.
    const matrix = (await call<ComplianceMatrix>(h.admin, "GET", "/v1/compliance?cluster=eu-west-1")).body;
    expect(matrix.items[0]!.drift).toMatchObject({ fights: 1, reported: 1 });
    const config = fixture.cliConfig("admin", h.admin);
    const text = await fixture.cli(["get", "drift", "--cluster", "eu-west-1"], { config });
    expect(text.code, text.err).toBe(0);
    expect(text.out.split("\n")[0]).toMatch(/^AGE\s+CLUSTER\s+OBJECT\s+POLICY\s+REMEDIATION\s+FIELDS\s+OUTCOME$/);
    expect(text.out).toMatch(/eu-west-1\s+ResourceQuota billing\/polity-payments-quota\s+payments-quota\s+enforce\s+spec\.hard\.pods\s+fight with quota-autoscaler \(5 re-applies/);
    expect(text.out).toMatch(/NetworkPolicy payments\/\S+\.dns\s+\S+\s+inform\s+spec\.policyTypes\s+reported/);
    expect(text.out).toMatch(/LimitRange payments\/polity-payments-quota\s+payments-quota\s+enforce\s+\(deleted\)\s+re-applied/);
    const help = await fixture.cli(["get", "drift", "--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toContain("fight            another controller kept changing it back");
  });

  it("writes an audit entry per event, a fight as one entry, and stores a batch sent again once", async () => {
    const entries = await eventually("the entries searchable", async () => {
      const page = (await call<{ items: { entry: { kind: string; data: Json } }[] }>(h.admin, "GET", "/v1/audit/entries?kind=agent.drift&cluster=eu-west-1&limit=1000")).body;
      return page.items.length === events.length ? page.items : undefined;
    });
    expect(entries.filter((e) => e.entry.data.outcome === "fight")).toHaveLength(1);
    // Paths, never values: the value someone wrote ("999") is in no entry.
    expect(entries.every((e) => !JSON.stringify(e.entry.data).includes('"999"'))).toBe(true);
    const batch = { batch: "resent-batch-0001", events: events.slice(0, 2), dropped: 0, suppressed: 0 };
    const first = await call<{ stored: number; duplicate: boolean }>(hubEndpoint!, "POST", "/v1/agent/drift", batch);
    expect(first.body).toEqual({ stored: 0, duplicate: false });
    const again = await call<{ stored: number; duplicate: boolean }>(hubEndpoint!, "POST", "/v1/agent/drift", batch);
    expect(again.body).toEqual({ stored: 0, duplicate: true });
  });

  it("refuses a malformed event at the boundary, naming the field", async () => {
    const bad = { ...events[0]!, outcome: "remediated", remediation: "inform", fields: ["spec\u001b[2J"] };
    const refusal = await call(hubEndpoint!, "POST", "/v1/agent/drift", { batch: "bad-batch-0001", events: [bad], dropped: 0, suppressed: 0 }).catch((error: unknown) => error as { status: number; message: string; causes: { field?: string }[] });
    expect((refusal as { status: number }).status).toBe(400);
    const fields = (refusal as { causes: { field?: string }[] }).causes.map((c) => c.field);
    expect(fields).toEqual(expect.arrayContaining(["events.0.fields.0"]));
    // A person's token is not an agent's certificate.
    const person = await call(h.admin, "POST", "/v1/agent/drift", { batch: "person-batch-01", events: [], dropped: 0, suppressed: 0 }).catch((error: unknown) => error as { status: number });
    expect((person as { status: number }).status).toBe(403);
  });
});

describe("drift at the hub, from agents that send too much or lie about time", () => {
  let h: TestHub;
  const agents = new Map<string, HubEndpoint>();
  let serial = 0;
  const event = (at: string, outcome: "remediated" | "fight" = "remediated") => ({
    id: (++serial).toString(16).padStart(16, "0"),
    at,
    object: { apiVersion: "v1", kind: "ResourceQuota", namespace: "payments", name: "polity-payments-quota" },
    policy: "payments-quota",
    missing: false,
    fields: ["spec.hard.pods"],
    omittedFields: 0,
    remediation: "enforce",
    outcome,
    reapplies: 1,
  });
  const send = (cluster: string, events: unknown[], extra: Record<string, unknown> = {}) =>
    call<{ stored: number }>(agents.get(cluster)!, "POST", "/v1/agent/drift", { batch: `batch-${++serial}-0000`, events, dropped: 0, suppressed: 0, ...extra });
  const refusal = (work: Promise<unknown>) => work.then(() => ({ status: 200, causes: [] as { field?: string }[] }), (error: unknown) => error as { status: number; causes: { field?: string }[] });

  beforeAll(async () => {
    h = await fixture.startCopy("hub-abuse");
    for (const name of ["noisy-1", "quiet-1"]) {
      await call(h.admin, "POST", "/v1/clusters", { name, region: "eu-west", labels: {} });
      agents.set(name, clusterEndpoint(h.hub.url, await enroll(h.hub, name, await joinToken(h, name))));
    }
  });

  it("orders drift by when the hub received it: a cluster dating its events in the far future hides no other cluster's", async () => {
    await send("noisy-1", Array.from({ length: 100 }, () => event("2999-01-01T00:00:00Z")));
    await send("quiet-1", [event(new Date().toISOString())]);
    const listed = (await call<{ items: StoredDriftEvent[] }>(h.admin, "GET", "/v1/drift")).body.items;
    expect(listed).toHaveLength(100);
    expect(listed.some((e) => e.cluster === "quiet-1")).toBe(true);
    // A time ahead of the hub's clock is kept as when the hub received it.
    const noisy = listed.find((e) => e.cluster === "noisy-1")!;
    expect(noisy.at).toBe(noisy.receivedAt);
  });

  it("refuses a time the database cannot hold and counts above an agent's buffer, naming the field, never with a 500", async () => {
    for (const [events, extra, field] of [
      [[event("0000-01-01T00:00:00Z")], {}, "events.0.at"],
      [[event("9999-12-31T23:59:59Z")], {}, "events.0.at"],
      [[], { dropped: 1e9 }, "dropped"],
      [[], { suppressed: 2001 }, "suppressed"],
    ] as const) {
      const r = await refusal(send("quiet-1", [...events], extra));
      expect(r.status, field).toBe(400);
      expect(r.causes.map((c) => c.field), field).toContain(field);
    }
  });

  it("keeps each cluster's drift audit entries within a budget a minute, the rest counted in one entry per batch", async () => {
    for (let i = 0; i < 5; i++) await send("noisy-1", Array.from({ length: 100 }, () => event(new Date().toISOString())));
    const search = async () => (await call<{ items: { entry: { data: Json } }[] }>(h.admin, "GET", "/v1/audit/entries?kind=agent.drift&cluster=noisy-1&limit=1000")).body.items;
    const counted = (items: { entry: { data: Json } }[]) => items.filter((e) => typeof e.entry.data.aggregated === "number");
    const all = await eventually("the entries searchable", async () => {
      const items = await search();
      return counted(items).reduce((n, e) => n + (e.entry.data.aggregated as number), 0) >= 600 - DRIFT_AUDIT_BUDGET && items;
    }, 10_000);
    const aggregated = counted(all);
    expect(all.length - aggregated.length).toBe(DRIFT_AUDIT_BUDGET);
    expect(aggregated.reduce((n, e) => n + (e.entry.data.aggregated as number), 0)).toBe(600 - DRIFT_AUDIT_BUDGET);
    expect(aggregated.length).toBeLessThanOrEqual(6);
  });
});
