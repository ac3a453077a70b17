/**
 * The whole path of a background scan, with real processes: the `polity agent` process,
 * given a kubeconfig for the test API server, judges the pods and Deployments already in
 * the cluster against the example global layer, writes PolicyReports there (read back with
 * kubectl where it is installed), and sends its compliance summary with its status, which
 * `polity get compliance` then shows from the hub.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ComplianceMatrix } from "../src/api/compliance.js";
import { call } from "../src/client/http.js";
import { BIN, example, HubFixture, joinToken, type TestHub } from "./support/hubs.js";
import { TestApiServer } from "./support/kube/api-server.js";
import { run } from "./support/processes.js";

const CLUSTER = "eu-west-1";
const hubs = new HubFixture("polity-scan-agent-", "scan-agent-test-operator-key-0123456789");
let api: TestApiServer;
let hub: TestHub;
let dir: string;
let kubeconfig: string;
let agent: ChildProcess | undefined;
let output = "";

async function eventually<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const goodPod = (name: string, ns: string) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: ns, labels: { team: "payments" } },
  spec: {
    securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
    containers: [{ name: "app", image: "registry.example.com/app:1.0", securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } } }],
  },
});
const rootPod = (name: string, ns: string) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: ns },
  spec: { containers: [{ name: "app", image: "docker.io/library/nginx:latest", securityContext: { privileged: true } }] },
});

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "polity-scan-agent-"));
  api = await TestApiServer.start({ bookmarkIntervalMs: 500 });
  for (const ns of ["shop", "web"]) api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns, labels: { "kubernetes.io/metadata.name": ns } } });
  api.put(goodPod("api", "shop"));
  api.put(rootPod("debug", "shop"));
  api.put({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "front", namespace: "web" }, spec: { replicas: 2, selector: { matchLabels: { app: "front" } }, template: { metadata: { labels: { app: "front" } }, spec: rootPod("front", "web").spec } } });
  kubeconfig = api.writeKubeconfig(join(dir, "kubeconfig"));
  hub = await hubs.startCopy("hub");
  await call(hub.admin, "POST", "/v1/apply", { files: [example("global.yaml")] });
  await call(hub.admin, "POST", "/v1/clusters", { name: CLUSTER, region: "eu-west", labels: { env: "prod" } });
  const buildError = inject("distBuildError");
  if (buildError !== null) throw new Error(buildError);
  const caFile = join(dir, "hub-ca.pem");
  writeFileSync(caFile, hub.hub.caPem);
  const { DATABASE_URL: _d, KUBECONFIG: _k, KUBERNETES_SERVICE_HOST: _h, ...base } = process.env;
  agent = spawn(
    process.execPath,
    [BIN, "agent", "--hub", hub.hub.url, "--cluster", CLUSTER, "--data", join(dir, "agent"), "--listen", "127.0.0.1:0", "--poll-wait", "2", "--ca", caFile, "--join-token", await joinToken(hub, CLUSTER), "--kubeconfig", kubeconfig],
    { env: { ...base, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  agent.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  agent.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
});

afterAll(async () => {
  if (agent !== undefined && agent.exitCode === null) {
    const exited = new Promise((resolve) => agent!.once("exit", resolve));
    agent.kill("SIGTERM");
    await exited;
  }
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("an agent in a cluster scans what already runs", () => {
  it("writes a PolicyReport per namespace, judged as its webhook judges", async () => {
    const shop = await eventually("the shop PolicyReport", () => api.get("wgpolicyk8s.io/v1alpha2", "PolicyReport", "polity", "shop") as { summary: Record<string, number>; results: { policy: string; result: string; resources: { name: string }[] }[] } | undefined);
    const failing = shop.results.filter((r) => r.result === "fail").map((r) => `${r.policy} ${r.resources[0]!.name}`);
    expect(failing).toEqual(expect.arrayContaining(["pod-security debug", "require-team-label debug", "trusted-images debug"]));
    expect(failing.some((f) => f.endsWith(" api"))).toBe(false);
    const web = await eventually("the web PolicyReport", () => api.get("wgpolicyk8s.io/v1alpha2", "PolicyReport", "polity", "web") as { results: { policy: string; result: string; resources: { kind: string }[] }[] } | undefined);
    expect(web.results.filter((r) => r.result === "fail").map((r) => `${r.policy} ${r.resources[0]!.kind}`)).toEqual(expect.arrayContaining(["pod-security Deployment", "trusted-images Deployment"]));
  });

  it("sends its compliance summary to the hub, and polity get compliance shows the matrix", async () => {
    const row = await eventually("the cluster's row at the hub", async () => {
      const m = (await call<ComplianceMatrix>(hub.admin, "GET", `/v1/compliance?cluster=${CLUSTER}`)).body;
      return m.items[0]?.scannedAt === null ? undefined : m.items[0];
    });
    const cells = Object.fromEntries(row!.policies.map((p) => [p.policy, p]));
    expect(cells["pod-security"]).toMatchObject({ pass: 1, fail: 2, state: "fail" });
    expect(cells["pod-security"]!.examples).toEqual(expect.arrayContaining([{ kind: "Pod", namespace: "shop", name: "debug", result: "fail" }]));
    expect(row!.objects).toBe(3);
    const text = await hubs.cli(["get", "compliance"], { config: hubs.cliConfig("admin", hub.admin) });
    expect(text.code, text.err).toBe(0);
    expect(text.out).toMatch(new RegExp(`^${CLUSTER}\\s+eu-west\\s+\\S+ ago\\s+3\\s+`, "m"));
    expect(text.out).toContain(`${CLUSTER} pod-security: `);
  });

  it("logs each scan it writes", () => {
    expect(output).toMatch(/background scan written/);
  });

  const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0;
  it.skipIf(!kubectl)(`kubectl get policyreports -A lists them${kubectl ? "" : " (skipped: kubectl is not installed)"}`, async () => {
    const out = await run("kubectl", ["--kubeconfig", kubeconfig, "get", "policyreports", "-A"], { timeoutMs: 20_000 });
    expect(out.code, out.err).toBe(0);
    expect(out.out).toMatch(/^shop\s+polity\b/m);
    expect(out.out).toMatch(/^web\s+polity\b/m);
  });
});

describe("the identity Secret deploy/agent ships empty", () => {
  it("is taken as no identity yet: the agent enrols with its join token and fills it", async () => {
    api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "polity-system" } });
    api.put({ apiVersion: "v1", kind: "Secret", type: "polity.dev/agent-identity", metadata: { name: "polity-agent-identity", namespace: "polity-system" } });
    const caFile = join(dir, "hub-ca.pem");
    const { DATABASE_URL: _d, KUBECONFIG: _k, KUBERNETES_SERVICE_HOST: _h, ...base } = process.env;
    const child = spawn(
      process.execPath,
      [BIN, "agent", "--hub", hub.hub.url, "--cluster", CLUSTER, "--data", join(dir, "agent-secret"), "--listen", "127.0.0.1:0", "--poll-wait", "2", "--ca", caFile, "--join-token", await joinToken(hub, CLUSTER), "--kubeconfig", kubeconfig, "--identity-secret", "polity-system/polity-agent-identity"],
      { env: { ...base, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
    try {
      const secret = await eventually("the Secret filled", () => {
        const s = api.get("v1", "Secret", "polity-agent-identity", "polity-system") as { data?: Record<string, string> } | undefined;
        return s?.data?.["key.pem"] === undefined ? undefined : s;
      });
      // root-1.json: root version 1 of the root of trust, pinned at enrolment (README, Trust model).
      expect(Object.keys(secret.data!).sort()).toEqual(["bundle-key.pem", "ca.pem", "cert.pem", "identity.json", "key.pem", "root-1.json"]);
      expect(out).not.toMatch(/is not a Polity identity/);
    } finally {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    }
  }, 40_000);
});
