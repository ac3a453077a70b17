/**
 * Background scans against the test API server (test/support/kube), through the official
 * client's configuration: what already runs is judged as the webhook judges it, written as
 * bounded PolicyReports (openreports.io Reports where served), judged again when the
 * bundle changes and when objects change, and read back with the real kubectl.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Scanner, type ScanSource } from "../src/agent/scan/scanner.js";
import { loadKubeAccess, NamespaceCache, type KubeAccess } from "../src/kube/index.js";
import { effectiveSet, policy, type Doc } from "./support/policy-sets.js";
import { TestApiServer } from "./support/kube/api-server.js";
import { run } from "./support/processes.js";

const quiet = { info: () => undefined, warn: () => undefined };
const NO_PRIVILEGED = { name: "privileged", expression: "object.spec.containers.all(c, !has(c.securityContext) || !has(c.securityContext.privileged) || c.securityContext.privileged != true)", message: "no privileged containers" };
const TEAM_LABEL = { name: "team-label", expression: "has(object.metadata.labels) && 'team' in object.metadata.labels", message: "pods need a team label" };

const namespace = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name, labels: { "kubernetes.io/metadata.name": name, ...labels } } });
const pod = (name: string, ns: string, privileged = false, labels: Record<string, string> = {}) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: ns, labels },
  spec: { containers: [{ name: "app", image: "app:1", ...(privileged ? { securityContext: { privileged: true } } : {}) }] },
});
const deployment = (name: string, ns: string, privileged: boolean) => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name, namespace: ns },
  spec: { selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: pod(name, ns, privileged).spec } },
});

let api: TestApiServer;
let dir: string;
let kubeconfig: string;
let access: KubeAccess;
const stops: AbortController[] = [];

beforeAll(async () => {
  api = await TestApiServer.start({ bookmarkIntervalMs: 200 });
  dir = mkdtempSync(join(tmpdir(), "polity-scan-"));
  kubeconfig = api.writeKubeconfig(join(dir, "kubeconfig"));
  access = loadKubeAccess({ kubeconfig, env: {} })!;
});

afterEach(() => {
  for (const stop of stops.splice(0)) stop.abort();
});

afterAll(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function start(source: { current: ScanSource }, options: { maxResultsPerReport?: number; writeReports?: () => boolean } = {}): Scanner {
  const stop = new AbortController();
  stops.push(stop);
  const namespaces = new NamespaceCache(access, quiet, { backoffMs: { first: 50, cap: 200 } });
  void namespaces.run(stop.signal);
  const scanner = new Scanner({ kube: access, bundle: () => source.current, namespaces, now: () => new Date(), log: quiet, reportDelayMs: 100, ...options });
  void namespaces.whenSynced(stop.signal).then(() => scanner.run(stop.signal));
  return scanner;
}

const reports = (ns?: string) => api.list("wgpolicyk8s.io/v1alpha2", "PolicyReport", ns);
type Report = { metadata: { name: string; namespace: string }; summary: { pass: number; fail: number; warn: number; error: number; skip: number }; results: { policy: string; result: string; resources: { kind: string; name: string }[] }[] };

describe("a background scan", () => {
  const docs: Doc[] = [policy("no-privileged", { validations: [NO_PRIVILEGED] }), policy("team", { validations: [TEAM_LABEL], enforcement: "warn" })];

  it("judges pods and the pod templates of Deployments, writes one PolicyReport per namespace, and skips the exempt namespaces", async () => {
    for (const ns of ["shop", "web", "kube-system"]) api.put(namespace(ns));
    api.put(pod("cart", "shop", true));
    api.put(pod("api", "shop", false, { team: "a" }));
    api.put(deployment("front", "web", true));
    api.put(pod("kube-proxy", "kube-system", true));
    const source = { current: { set: effectiveSet(docs), version: 1 } };
    const scanner = start(source);
    const shop = await until("the shop report", () => reports("shop")[0] as Report | undefined);
    expect(shop.metadata.name).toBe("polity");
    expect(shop.summary).toEqual({ pass: 2, fail: 1, warn: 1, error: 0, skip: 0 });
    expect(shop.results.map((r) => `${r.result} ${r.policy} ${r.resources[0]!.kind}/${r.resources[0]!.name}`)).toEqual(["fail no-privileged Pod/cart", "warn team Pod/cart", "pass no-privileged Pod/api", "pass team Pod/api"]);
    const web = await until("the web report", () => reports("web")[0] as Report | undefined);
    expect(web.results.filter((r) => r.result === "fail").map((r) => `${r.resources[0]!.kind}/${r.resources[0]!.name}`)).toEqual(["Deployment/front"]);
    expect(reports("kube-system")).toEqual([]);
    const summary = await until("a summary", () => scanner.summary());
    expect(summary.policies.map((p) => [p.policy, p.pass, p.fail, p.warn])).toEqual([
      ["no-privileged", 1, 2, 0],
      ["team", 1, 0, 2],
    ]);
    // The test API server serves no ReplicationControllers: the scan says so and judges the rest.
    expect(scanner.health()).toMatchObject({ reportFormat: "wgpolicyk8s.io/v1alpha2", missingKinds: ["ReplicationController"] });
  });

  it("judges again when an object changes, and when the bundle changes", async () => {
    const source = { current: { set: effectiveSet(docs), version: 1 } };
    start(source);
    await until("the shop report", () => (reports("shop")[0] as Report | undefined)?.summary.fail === 1);
    api.put(pod("cart", "shop", false));
    await until("cart fixed", () => (reports("shop")[0] as Report | undefined)?.summary.fail === 0);
    source.current = { set: effectiveSet([policy("team", { validations: [TEAM_LABEL] })]), version: 2 };
    const after = await until("the new bundle's report", () => {
      const r = reports("shop")[0] as (Report & { metadata: { annotations: Record<string, string> } }) | undefined;
      return r?.metadata.annotations["polity.dev/bundle-version"] === "2" ? r : undefined;
    });
    expect(after.results.map((r) => `${r.result} ${r.policy} ${r.resources[0]!.name}`)).toEqual(["fail team cart", "pass team api"]);
  });

  it("caps the results of a report and counts every one in its summary", async () => {
    api.put(namespace("big"));
    for (let i = 0; i < 40; i++) api.put(pod(`p${String(i).padStart(2, "0")}`, "big", i % 4 === 0));
    start({ current: { set: effectiveSet(docs), version: 1 } }, { maxResultsPerReport: 15 });
    const big = await until("the big report", () => {
      const r = reports("big")[0] as Report | undefined;
      return r !== undefined && r.summary.pass + r.summary.fail + r.summary.warn === 80 ? r : undefined;
    });
    expect(big.results).toHaveLength(15);
    expect(big.summary).toMatchObject({ fail: 10, warn: 40, pass: 30 });
    expect(big.results.slice(0, 10).every((r) => r.result === "fail")).toBe(true);
  });

  it("writes no report on a replica without the Lease, yet has its summary; once it holds the Lease it writes them at once", async () => {
    api.put(namespace("led"));
    api.put(pod("x", "led", true));
    let leader = false;
    const scanner = start({ current: { set: effectiveSet(docs), version: 1 } }, { writeReports: () => leader });
    await until("a summary", () => scanner.summary());
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(reports("led")).toEqual([]);
    leader = true;
    await until("the led report", () => reports("led").length === 1);
  });

  it("deletes the report of a namespace that holds nothing judged any more", async () => {
    api.put(namespace("gone"));
    api.put(pod("only", "gone", true));
    start({ current: { set: effectiveSet(docs), version: 1 } });
    await until("the gone report", () => reports("gone").length === 1);
    api.remove("v1", "Pod", "only", "gone");
    await until("the report deleted", () => reports("gone").length === 0);
  });

});

describe("a background scan meeting a faulty API server", () => {
  const docs: Doc[] = [policy("no-privileged", { validations: [NO_PRIVILEGED] })];

  it("survives a list that answers garbage and report writes refused with 429 (waiting as Retry-After says), and writes its reports once they pass", async () => {
    api.put(namespace("faulty"));
    api.put(pod("bad", "faulty", true));
    api.fail({ method: "GET", path: /^\/api\/v1\/pods$/, watch: false, times: 2, action: { kind: "garbage" } });
    api.fail({ method: "PATCH", path: /policyreports\/polity$/, times: 3, action: { kind: "status", code: 429, retryAfterSeconds: 1 } });
    const scanner = start({ current: { set: effectiveSet(docs), version: 1 } });
    const errors = new Set<string>();
    const report = await until(
      "the faulty report",
      () => {
        const error = scanner.health().lastError;
        if (error !== null) errors.add(error);
        return reports("faulty")[0] as Report | undefined;
      },
      30_000,
    );
    expect(report.summary.fail).toBe(1);
    expect([...errors].join("\n")).toMatch(/429/);
    const refused = api.requests.filter((r) => r.method === "PATCH" && r.status === 429);
    expect(refused).toHaveLength(3);
    // Retry-After: 1 honoured between the refused writes, while the informers kept watching.
    for (let i = 1; i < refused.length; i++) expect(refused[i]!.at - refused[i - 1]!.at).toBeGreaterThanOrEqual(950);
    api.clearFaults();
  }, 40_000);
});

const KUBECTL = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0;
describe.skipIf(!KUBECTL)(`kubectl reads the reports${KUBECTL ? "" : " (skipped: kubectl is not installed here; apt-get install kubernetes-client)"}`, () => {
  it("kubectl get policyreports -A lists them", async () => {
    api.put(namespace("kubectl-ns"));
    api.put(pod("bad", "kubectl-ns", true));
    start({ current: { set: effectiveSet([policy("no-privileged", { validations: [NO_PRIVILEGED] })]), version: 1 } });
    await until("the report", () => reports("kubectl-ns").length === 1);
    // Asynchronously: the test API server answers from this process.
    const out = await run("kubectl", ["--kubeconfig", kubeconfig, "get", "policyreports", "-A"], { timeoutMs: 20_000 });
    expect(out.code, out.err).toBe(0);
    expect(out.out).toMatch(/^NAMESPACE\s+NAME/m);
    expect(out.out).toMatch(/^kubectl-ns\s+polity\b/m);
    const json = await run("kubectl", ["--kubeconfig", kubeconfig, "get", "policyreports", "-n", "kubectl-ns", "polity", "-o", "json"], { timeoutMs: 20_000 });
    expect(json.code, json.err).toBe(0);
    expect(JSON.parse(json.out)).toMatchObject({ kind: "PolicyReport", summary: { fail: 1 } });
  });
});

// Last: once the server serves openreports.io, every scan writes there.
describe("a background scan in a cluster serving openreports.io", () => {
  const docs: Doc[] = [policy("no-privileged", { validations: [NO_PRIVILEGED] })];

  it("writes openreports.io Reports where the cluster serves that API", async () => {
    api.serve({ group: "openreports.io", version: "v1alpha1", resource: "reports", kind: "Report", namespaced: true });
    api.serve({ group: "openreports.io", version: "v1alpha1", resource: "clusterreports", kind: "ClusterReport", namespaced: false });
    const scanner = start({ current: { set: effectiveSet(docs), version: 1 } });
    const report = await until("an openreports Report", () => api.list("openreports.io/v1alpha1", "Report", "shop")[0]);
    expect(report).toMatchObject({ apiVersion: "openreports.io/v1alpha1", kind: "Report", metadata: { name: "polity", namespace: "shop" } });
    expect(scanner.health().reportFormat).toBe("openreports.io/v1alpha1");
  });
});
