/**
 * The agent makes its cluster hold what its bundle's intents make, end to end: a hub, the
 * real `polity agent` process with a kubeconfig for the test API server (which tracks field
 * ownership as server-side apply does), the example federation's layers.
 *
 * The story: the agent reports its cluster's facts (version, zones, capacity from Nodes),
 * the hub signs them into the cluster's bundle with the hash of its manifests; the agent
 * renders the same manifests and applies them. A version one object of which fails is
 * rolled back and the hub shows the failure (and audits it); a field another manager took
 * is a conflict, reported and not forced, until the intent says forceConflicts; an intent
 * removed deletes the objects Polity made, and nothing else.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { IntentsStatus } from "../src/api/intents.js";
import { call } from "../src/client/http.js";
import { eventually } from "./support/eventually.js";
import { BIN, example, HubFixture, joinToken, type TestHub } from "./support/hubs.js";
import { TestApiServer } from "./support/kube/api-server.js";
import { INTENT_TYPES, SECOND_LINE_TYPES } from "./support/kube/resources.js";
import { run } from "./support/processes.js";

const CLUSTER = "eu-west-1";
const FACTS = { kubernetesVersion: "1.31", networkPolicy: true, capacity: { cpu: "96", memory: "384Gi" }, zones: ["eu-west-1a", "eu-west-1b"] };
const [GLOBAL, REGION, CLUSTER_LAYER] = [example("global.yaml"), example("region-eu-west.yaml"), example("cluster-eu-west-1.yaml")];
const KUBECTL = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0;

const hubs = new HubFixture("polity-agent-apply-", "agent-apply-test-operator-key-0123456789");
let api: TestApiServer;
let hub: TestHub;
let dir: string;
let kubeconfig: string;
let agent: ChildProcess;
let output = "";

const status = async () => (await call<IntentsStatus>(hub.admin, "GET", `/v1/clusters/${CLUSTER}/intents`)).body;
/** The hub's status once the agent reported an apply of the hub's current bundle. */
const appliedCurrent = (outcome: string) =>
  eventually(`the agent's apply of the current bundle (${outcome})`, async () => {
    const s = await status();
    return s.lastApply !== null && s.lastApply.bundleVersion === s.bundle.version && s.lastApply.outcome === outcome ? s : undefined;
  }, 30_000).catch((error: unknown) => {
    throw new Error(`${String(error)}\nagent output:\n${output.slice(-4000)}`);
  });

const quota = () => api.get("v1", "ResourceQuota", "polity-payments-quota", "payments") as { spec: { hard: Record<string, string> }; metadata: { managedFields: { manager: string }[] } } | undefined;
const networkPolicies = () => api.list("networking.k8s.io/v1", "NetworkPolicy", "payments").map((o) => (o.metadata as { name: string }).name);
const node = (name: string, zone: string) => ({ apiVersion: "v1", kind: "Node", metadata: { name, labels: { "topology.kubernetes.io/zone": zone } }, status: { allocatable: { cpu: "48", memory: "192Gi", pods: "110" } } });
const auditKinds = async (kind: string) => (await call<{ items: { entry: { kind: string; data: Record<string, unknown> } }[] }>(hub.admin, "GET", `/v1/audit/entries?limit=1000&kind=${kind}&cluster=${CLUSTER}`)).body.items.map((i) => i.entry);

beforeAll(async () => {
  const buildError = inject("distBuildError");
  if (buildError !== null) throw new Error(buildError);
  dir = mkdtempSync(join(tmpdir(), "polity-agent-apply-"));
  api = await TestApiServer.start();
  for (const type of [...INTENT_TYPES, ...SECOND_LINE_TYPES]) api.serve(type);
  for (const name of ["payments", "billing", "gateway"]) api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name } });
  api.put(node("node-a", "eu-west-1a"));
  api.put(node("node-b", "eu-west-1b"));
  // The payments team's own NetworkPolicy: not Polity's, whatever Polity does.
  api.put({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "team-own", namespace: "payments" }, spec: { podSelector: {}, policyTypes: ["Ingress"] } }, "payments-team");
  kubeconfig = api.writeKubeconfig(join(dir, "kubeconfig"));

  hub = await hubs.startCopy("hub");
  await call(hub.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION, CLUSTER_LAYER] });
  await call(hub.admin, "POST", "/v1/clusters", { name: CLUSTER, region: "eu-west", labels: { env: "prod" }, facts: FACTS });
  const caFile = join(dir, "hub-ca.pem");
  writeFileSync(caFile, hub.hub.caPem);
  const { DATABASE_URL: _d, KUBECONFIG: _k, KUBERNETES_SERVICE_HOST: _h, ...env } = process.env;
  agent = spawn(
    process.execPath,
    [BIN, "agent", "--hub", hub.hub.url, "--cluster", CLUSTER, "--data", join(dir, "agent"), "--listen", "127.0.0.1:0", "--poll-wait", "2", "--ca", caFile, "--join-token", await joinToken(hub, CLUSTER), "--kubeconfig", kubeconfig, "--facts-interval", "1", "--apply-retry", "2"],
    { env: { ...env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  agent.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  agent.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
}, 60_000);

afterAll(async () => {
  if (agent !== undefined && agent.exitCode === null && agent.signalCode === null) {
    const exited = new Promise((resolve) => agent.once("exit", resolve));
    agent.kill("SIGTERM");
    await exited;
  }
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("an agent with a hub and an API server", () => {
  it("reports its cluster's facts, which reach the hub beside the declared ones and into its signed bundle", async () => {
    const s = await eventually("the facts reported", async () => ((await status()).facts.reported?.nodes === 2 ? status() : undefined), 30_000);
    expect(s.facts.reported).toMatchObject({ kubernetesVersion: "v1.33.0-polity-test", zones: ["eu-west-1a", "eu-west-1b"], capacity: { cpu: "96", memory: String(2 * 192 * 1024 ** 3) }, nodes: 2 });
    expect(s.facts.declared).toEqual(FACTS);
    // Reported values where present; NetworkPolicy enforcement stays as declared.
    expect(s.facts.effective).toEqual({ kubernetesVersion: "v1.33.0-polity-test", networkPolicy: true, capacity: { cpu: "96", memory: String(2 * 192 * 1024 ** 3) }, zones: ["eu-west-1a", "eu-west-1b"] });
    expect(s.problems).toEqual([]);
    expect(s.bundle.manifestsHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    const bundle = (await call<Buffer>(hub.admin, "GET", `/v1/clusters/${CLUSTER}/bundle`, undefined, { raw: true, binary: true }).catch(() => undefined))?.body;
    if (bundle !== undefined) expect(JSON.parse(bundle.toString("utf8").split("\n", 1)[0]!).signed).toMatchObject({ facts: s.facts.effective, manifestsHash: s.bundle.manifestsHash });
    await eventually("the facts audited", async () => (await auditKinds("cluster.facts-reported")).length > 0);
  });

  it("applies its bundle's manifests with server-side apply as field manager polity, and the hub shows it", async () => {
    const s = await appliedCurrent("applied");
    expect(s.lastApply).toMatchObject({ manifestsHash: s.bundle.manifestsHash, fromDisk: false, failed: null, rolledBack: false, conflicts: [] });
    expect(s.lastApply!.applied).toBe(26);
    expect(quota()!.spec.hard).toEqual({ "requests.cpu": "20", "requests.memory": "64Gi", pods: "200" });
    expect(quota()!.metadata.managedFields.map((f) => f.manager)).toContain("polity");
    expect(networkPolicies()).toEqual(expect.arrayContaining(["team-own", "polity-payments-segmentation.default-deny"]));
    expect(api.list("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy").length).toBe(6);
    const cli = await hubs.cli(["cluster", "status", CLUSTER], { config: hubs.cliConfig("admin", hub.admin) });
    expect(cli.code, cli.err).toBe(0);
    expect(cli.out).toContain(`last apply v${s.bundle.version} applied 26 object(s), deleted 0`);
    expect(cli.out).toContain("reported   Kubernetes v1.33.0-polity-test; zones eu-west-1a,eu-west-1b");
  });

  it("rolls back a version one object of which fails, and the hub shows and audits the failure; the version is tried again", async () => {
    api.fail({ method: "PATCH", path: /\/networkpolicies\/polity-payments-segmentation\.default-deny$/, times: Infinity, action: { kind: "status", code: 500 } });
    try {
      const fewerPods = { ...CLUSTER_LAYER, content: CLUSTER_LAYER.content.replace('pods: "200"', 'pods: "150"') };
      expect(fewerPods.content).not.toBe(CLUSTER_LAYER.content);
      await call(hub.admin, "POST", "/v1/apply", { files: [fewerPods] });
      const s = await appliedCurrent("failed");
      // The previous version's copy of the failing object cannot be restored either (the fault holds): said, not hidden.
      expect(s.lastApply).toMatchObject({
        rolledBack: true,
        failed: { object: "NetworkPolicy payments/polity-payments-segmentation.default-deny", reason: expect.stringContaining("500") },
        rollbackFailures: [{ object: "NetworkPolicy payments/polity-payments-segmentation.default-deny", reason: expect.stringContaining("500") }],
      });
      // Rolled back: the quota holds the previous version's value.
      expect(quota()!.spec.hard.pods).toBe("200");
      const audited = await eventually("the failure audited", async () => (await auditKinds("intents.apply-failed")).find((e) => e.data.bundleVersion === s.bundle.version));
      expect(audited.data).toMatchObject({ outcome: "failed", rolledBack: true });
      const cli = await hubs.cli(["cluster", "status", CLUSTER], { config: hubs.cliConfig("admin", hub.admin) });
      expect(cli.code).toBe(1);
      expect(cli.out).toContain("FAILED at NetworkPolicy payments/polity-payments-segmentation.default-deny");
      expect(cli.out).toContain("rolled back to the previous objects");
    } finally {
      api.clearFaults();
    }
    await appliedCurrent("applied");
    expect(quota()!.spec.hard.pods).toBe("150");
  }, 60_000);

  it("puts back a field it manages that someone changed (drift, enforce), and the hub hears of it", async () => {
    const q = quota()!;
    const pods = q.spec.hard.pods;
    api.put({ ...q, spec: { hard: { ...q.spec.hard, pods: "999" } } }, "kubectl-edit");
    expect(quota()!.spec.hard.pods).toBe("999");
    await eventually("the quota restored", () => quota()!.spec.hard.pods === pods, 20_000);
    const drift = await eventually("the drift at the hub", async () => {
      const events = (await call<{ items: { cluster: string; object: { name: string }; outcome: string; fields: string[] }[] }>(hub.admin, "GET", "/v1/drift")).body.items;
      return events.find((e) => e.cluster === CLUSTER && e.object.name === "polity-payments-quota" && e.outcome === "remediated");
    }, 20_000);
    expect(drift.fields.join(" ")).toContain("hard.pods");
  }, 60_000);

  it.skipIf(!KUBECTL)(`reports a field another field manager took as a conflict and does not force it, until the intent says forceConflicts${KUBECTL ? "" : " (skipped: no kubectl)"}`, async () => {
    // The quota intent informs (warn): drift reports the field another manager takes and leaves
    // it (an enforcing intent's field is taken back, as the test above shows).
    const informing = { ...CLUSTER_LAYER, content: CLUSTER_LAYER.content.replace(/(metadata: \{ name: payments-quota[\s\S]*?enforcement: )deny/, "$1warn") };
    expect(informing.content).not.toBe(CLUSTER_LAYER.content);
    await call(hub.admin, "POST", "/v1/apply", { files: [informing] });
    await appliedCurrent("applied");
    const since = api.requests.length;
    const { KUBECONFIG: _k, ...env } = process.env;
    const taken = await run("kubectl", ["--kubeconfig", kubeconfig, "apply", "--server-side", "--field-manager=ops", "--force-conflicts", "--validate=false", "-f", "-"], {
      env,
      input: 'apiVersion: v1\nkind: ResourceQuota\nmetadata: { name: polity-payments-quota, namespace: payments }\nspec:\n  hard: { requests.cpu: "5" }\n',
      timeoutMs: 30_000,
    });
    expect(taken.code, taken.err).toBe(0);
    // New facts (a node in another zone) make a new bundle, which the agent applies.
    const version = (await status()).bundle.version!;
    api.put(node("node-c", "eu-west-1c"));
    await eventually("the new zone at the hub", async () => (await status()).facts.reported?.zones.includes("eu-west-1c"), 20_000).catch((error: unknown) => {
      throw new Error(`${String(error)}\n${output.split("\n").filter((l) => l.includes("facts")).join("\n")}`);
    });
    const s = await appliedCurrent("failed");
    expect(s.bundle.version).toBeGreaterThan(version);
    expect(s.facts.effective).toMatchObject({ zones: ["eu-west-1a", "eu-west-1b", "eu-west-1c"], capacity: { cpu: "144" } });
    expect(s.lastApply!.conflicts).toEqual([{ object: "ResourceQuota payments/polity-payments-quota", field: ".spec.hard.requests.cpu", manager: "ops" }]);
    expect(s.lastApply!.failed!.reason).toContain("field .spec.hard.requests.cpu of ResourceQuota payments/polity-payments-quota is owned by manager ops");
    expect(quota()!.spec.hard["requests.cpu"]).toBe("5");
    expect(api.requests.slice(since).filter((r) => r.query.fieldManager === "polity").every((r) => r.query.force !== "true")).toBe(true);
    const compliance = (await call<{ items: { cluster: string; apply: { outcome: string; conflicts: number } | null }[] }>(hub.admin, "GET", "/v1/compliance")).body;
    expect(compliance.items.find((i) => i.cluster === CLUSTER)?.apply).toMatchObject({ outcome: "failed", conflicts: 1 });

    const forcing = { ...informing, content: informing.content.replace('pods: "200"', 'pods: "150"').replace("  generate:\n    quota:", "  generate:\n    forceConflicts: true\n    quota:") };
    expect(forcing.content).toContain("forceConflicts: true");
    await call(hub.admin, "POST", "/v1/apply", { files: [forcing] });
    await appliedCurrent("applied");
    expect(quota()!.spec.hard["requests.cpu"]).toBe("20");
    expect(api.requests.some((r) => r.query.fieldManager === "polity" && r.query.force === "true" && r.path.endsWith("/resourcequotas/polity-payments-quota"))).toBe(true);
  }, 60_000);

  it("deletes the objects of an intent removed, and only those Polity made", async () => {
    const before = networkPolicies();
    expect(before.filter((n) => n.startsWith("polity-")).length).toBe(4);
    const withoutSegmentation = { ...GLOBAL, content: GLOBAL.content.replace(/# An intent: Kubernetes objects every production cluster holds[\s\S]*?\n---\n/, "") };
    expect(withoutSegmentation.content).not.toContain("payments-segmentation");
    await call(hub.admin, "POST", "/v1/apply", { files: [withoutSegmentation] });
    const s = await appliedCurrent("applied");
    expect(s.lastApply!.deleted).toBe(4);
    expect(networkPolicies()).toEqual(["team-own"]);
    // The drift watcher held still during the apply: nothing deleted comes back.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(networkPolicies()).toEqual(["team-own"]);
    expect(quota()).toBeDefined();
  }, 60_000);

  it("keeps what it applied in its data folder; restarted with its hub unreachable, it applies the bundle on its disk again and deletes nothing", async () => {
    const record = JSON.parse(readFileSync(join(dir, "agent", "intents", "applied.json"), "utf8")) as { manifests: { kind: string }[] };
    expect(record.manifests.some((m) => m.kind === "NetworkPolicy")).toBe(false);
    expect(record.manifests.some((m) => m.kind === "ResourceQuota")).toBe(true);
    const exited = new Promise((resolve) => agent.once("exit", resolve));
    agent.kill("SIGTERM");
    await exited;
    await hub.hub.close();
    // Someone deleted a quota meanwhile. And the record names an object Polity owns that the
    // bundle on disk does not have: a newly verified bundle would delete it; this start may not.
    api.remove("v1", "ResourceQuota", "polity-payments-quota", "payments");
    const leftover = { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "polity-leftover", namespace: "payments", labels: { "app.kubernetes.io/managed-by": "polity", "polity.dev/policy": "gone" } }, spec: { podSelector: {} } };
    api.put(leftover, "polity");
    const file = join(dir, "agent", "intents", "applied.json");
    const held = JSON.parse(readFileSync(file, "utf8")) as { manifests: unknown[] };
    writeFileSync(file, JSON.stringify({ ...held, manifests: [...held.manifests, leftover] }));
    const since = Date.now();
    output = "";
    const { DATABASE_URL: _d, KUBECONFIG: _k, KUBERNETES_SERVICE_HOST: _h, ...env } = process.env;
    agent = spawn(process.execPath, [BIN, "agent", "--hub", hub.hub.url, "--cluster", CLUSTER, "--data", join(dir, "agent"), "--listen", "127.0.0.1:0", "--poll-wait", "2", "--kubeconfig", kubeconfig, "--facts-interval", "1"], {
      env: { ...env, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    agent.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    agent.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    await eventually("the quota applied again from the bundle on disk", () => quota(), 30_000).catch((error: unknown) => {
      throw new Error(`${String(error)}\n${output.slice(-3000)}`);
    });
    await eventually("the apply from disk logged", () => output.includes('"msg":"applied the bundle\'s manifests"') && output.includes('"fromDisk":true'), 20_000);
    // (The background scan prunes its own policy reports as always: not an intent's object.)
    expect(api.requests.filter((r) => r.at >= since && r.method === "DELETE" && !r.path.includes("/policyreports/")).map((r) => r.path)).toEqual([]);
    expect(networkPolicies()).toEqual(["polity-leftover", "team-own"]);
    // Still owned: the next bundle from the hub may delete it.
    expect((JSON.parse(readFileSync(file, "utf8")) as { manifests: { metadata: { name: string } }[] }).manifests.some((m) => m.metadata.name === "polity-leftover")).toBe(true);
  }, 60_000);
});
