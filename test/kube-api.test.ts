/**
 * The agent's Kubernetes access, with the unmodified official client against the test API
 * server (test/support/kube/) over real HTTPS on loopback: where the configuration comes
 * from, what the test API server answers as a Kubernetes API server would, and the
 * namespace informer (list, watch from the list's version with bookmarks, resume after a
 * dropped stream, re-list on 410, back off on 429 and 5xx honouring Retry-After), which
 * never crashes and never fills its cache with what does not parse.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, CoordinationV1Api, KubernetesObjectApi, PatchStrategy, Watch } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { describeKubeAccess, loadKubeAccess, NamespaceCache, namespaceForDecision, type KubeAccess } from "../src/kube/index.js";
import { LeaderElection } from "../src/kube/lease.js";
import { TestApiServer } from "./support/kube/api-server.js";

let api: TestApiServer;
let dir: string;
let kubeconfig: string;
let access: KubeAccess;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
async function eventually<T>(what: string, probe: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(25);
  }
}

const quiet = { info: () => undefined, warn: () => undefined };
const namespace = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name, labels } });

beforeAll(async () => {
  api = await TestApiServer.start({ bookmarkIntervalMs: 200 });
  dir = mkdtempSync(join(tmpdir(), "polity-kube-"));
  kubeconfig = api.writeKubeconfig(join(dir, "kubeconfig"));
  access = loadKubeAccess({ kubeconfig, env: {} })!;
});

afterAll(async () => {
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("where the agent finds its API server", () => {
  it("takes --kubeconfig first, then KUBECONFIG, then the in-cluster service account, and none without them", () => {
    expect(describeKubeAccess(loadKubeAccess({ kubeconfig, env: { KUBECONFIG: "/nonexistent" } }))).toEqual({ source: "kubeconfig", server: api.url, context: "test" });
    expect(describeKubeAccess(loadKubeAccess({ env: { KUBECONFIG: `/nonexistent:${kubeconfig}` } }))).toEqual({ source: "KUBECONFIG", server: api.url, context: "test" });
    expect(loadKubeAccess({ env: {} })).toBeUndefined();
    expect(describeKubeAccess(undefined)).toEqual({ source: "none", server: null, context: null });
  });

  it("refuses a missing file, a plain-HTTP server and a configuration that skips TLS verification, saying which", () => {
    expect(() => loadKubeAccess({ kubeconfig: join(dir, "missing"), env: {} })).toThrow(/--kubeconfig .*missing: no such file/);
    const plain = join(dir, "plain");
    writeFileSync(plain, `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: secret-token-value}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n`);
    expect(() => loadKubeAccess({ kubeconfig: plain, env: {} })).toThrow(/must be reached over HTTPS/);
    const skip = join(dir, "skip");
    writeFileSync(skip, `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: secret-token-value}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n`);
    let message = "";
    try {
      loadKubeAccess({ kubeconfig: skip, env: {} });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/insecure-skip-tls-verify/);
    expect(message).not.toContain("secret-token-value");
  });
});

describe("the test API server, spoken to by the official client", () => {
  it("serves discovery: /api, /apis and each group version's resources", async () => {
    const core = access.config.makeApiClient(CoreV1Api);
    expect((await core.getAPIResources()).resources.map((r) => r.name)).toContain("namespaces");
    const objects = KubernetesObjectApi.makeApiClient(access.config);
    // The generic client finds a resource's plural and scope by discovery.
    await objects.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "discovery" } });
    const listed = await objects.list("wgpolicyk8s.io/v1alpha2", "PolicyReport", "discovery");
    expect(listed.items).toEqual([]);
  });

  it("creates, reads, updates with optimistic concurrency, patches, applies server-side and deletes", async () => {
    const core = access.config.makeApiClient(CoreV1Api);
    const created = await core.createNamespace({ body: { metadata: { name: "crud", labels: { env: "dev" } } } });
    expect(created.metadata?.labels).toEqual({ env: "dev", "kubernetes.io/metadata.name": "crud" });
    await expect(core.createNamespace({ body: { metadata: { name: "crud" } } })).rejects.toMatchObject({ code: 409 });
    const leases = access.config.makeApiClient(CoordinationV1Api);
    const lease = await leases.createNamespacedLease({ namespace: "crud", body: { metadata: { name: "leader" }, spec: { holderIdentity: "a" } } });
    await leases.replaceNamespacedLease({ name: "leader", namespace: "crud", body: { ...lease, spec: { holderIdentity: "b" } } });
    // The same update again carries a stale resourceVersion: refused, as Leases need.
    await expect(leases.replaceNamespacedLease({ name: "leader", namespace: "crud", body: { ...lease, spec: { holderIdentity: "c" } } })).rejects.toMatchObject({ code: 409 });
    const objects = KubernetesObjectApi.makeApiClient(access.config);
    const report = { apiVersion: "wgpolicyk8s.io/v1alpha2", kind: "PolicyReport", metadata: { name: "polity", namespace: "crud" }, summary: { pass: 1, fail: 0 }, results: [] };
    await objects.patch(report, undefined, undefined, "polity-agent", true, PatchStrategy.ServerSideApply);
    await objects.patch({ ...report, summary: { pass: 2, fail: 1 } }, undefined, undefined, "polity-agent", true, PatchStrategy.ServerSideApply);
    expect(api.get("wgpolicyk8s.io/v1alpha2", "PolicyReport", "polity", "crud")).toMatchObject({ summary: { pass: 2, fail: 1 }, metadata: { managedFields: [{ manager: "polity-agent", operation: "Apply" }] } });
    await objects.patch({ apiVersion: "v1", kind: "Namespace", metadata: { name: "crud", labels: { env: "prod" } } }, undefined, undefined, undefined, undefined, PatchStrategy.MergePatch);
    expect((await core.readNamespace({ name: "crud" })).metadata?.labels?.env).toBe("prod");
    await core.deleteNamespace({ name: "crud" });
    await expect(core.readNamespace({ name: "crud" })).rejects.toMatchObject({ code: 404 });
  });

  it("watches from a resourceVersion with bookmarks, and answers an expired one with a 410 Expired event", async () => {
    const core = access.config.makeApiClient(CoreV1Api);
    const rv = (await core.listNamespace()).metadata!.resourceVersion!;
    await core.createNamespace({ body: { metadata: { name: "watched" } } });
    const events: { type: string; name?: string; code?: number }[] = [];
    const controller = await new Watch(access.config).watch("/api/v1/namespaces", { resourceVersion: rv, allowWatchBookmarks: true }, (type, object: { metadata?: { name?: string }; code?: number }) => events.push({ type, name: object.metadata?.name, code: object.code }), () => undefined);
    await eventually("an ADDED event and a bookmark", () => events.some((e) => e.type === "ADDED" && e.name === "watched") && events.some((e) => e.type === "BOOKMARK"));
    controller.abort();
    api.compact();
    const expired: { type: string; code?: number; reason?: string }[] = [];
    await new Watch(access.config).watch("/api/v1/namespaces", { resourceVersion: rv }, (type, object: { code?: number; reason?: string }) => expired.push({ type, code: object.code, reason: object.reason }), () => undefined);
    await eventually("a 410 event", () => expired.length > 0);
    expect(expired).toEqual([{ type: "ERROR", code: 410, reason: "Expired" }]);
  });

  it("refuses a client without the bearer token with 401", async () => {
    const wrong = loadKubeAccess({ kubeconfig: api.writeKubeconfig(join(dir, "wrong-token"), { token: "not-the-token" }), env: {} })!;
    await expect(wrong.config.makeApiClient(CoreV1Api).listNamespace()).rejects.toMatchObject({ code: 401 });
  });
});

describe("the namespace informer", () => {
  let stop: AbortController;
  let cache: NamespaceCache;

  const start = (options: ConstructorParameters<typeof NamespaceCache>[2] = {}) => {
    stop = new AbortController();
    cache = new NamespaceCache(access, quiet, { backoffMs: { first: 50, cap: 400 }, ...options });
    void cache.run(stop.signal);
    return cache;
  };

  afterEach(() => {
    stop?.abort();
    api.clearFaults();
  });

  it("lists, then watches from the list's resourceVersion asking for bookmarks", async () => {
    api.put(namespace("shop", { env: "prod" }));
    const since = api.requests.length;
    start();
    await cache.whenSynced();
    expect(cache.cached("shop")).toMatchObject({ apiVersion: "v1", kind: "Namespace", metadata: { name: "shop", labels: { env: "prod", "kubernetes.io/metadata.name": "shop" } } });
    const list = api.requests.slice(since).find((r) => r.path === "/api/v1/namespaces" && r.query.watch === undefined)!;
    await eventually("a watch", () => api.requests.slice(since).find((r) => r.query.watch === "true"));
    const watch = api.requests.slice(since).find((r) => r.query.watch === "true")!;
    expect(list.status).toBe(200);
    expect(watch.query).toMatchObject({ allowWatchBookmarks: "true", resourceVersion: expect.stringMatching(/^\d+$/) });
    api.put(namespace("shop", { env: "dev" }));
    await eventually("the change", () => (cache.cached("shop") as { metadata: { labels: { env: string } } }).metadata.labels.env === "dev");
    await eventually("a bookmark moves the cache's resourceVersion", () => cache.health().resourceVersion === api.resourceVersion);
  });

  it("resumes from where it was after a stream is cut mid-event, without listing again", async () => {
    start();
    await cache.whenSynced();
    await eventually("a watch", () => api.watchCount > 0);
    const lists = cache.health().lists;
    api.dropWatches({ midEvent: true });
    api.put(namespace("after-drop", { team: "a" }));
    await eventually("the namespace made while the stream was down", () => cache.cached("after-drop"));
    expect(cache.health().lists).toBe(lists);
  });

  it("lists again when its watch is answered 410 Gone", async () => {
    start({ watchTimeoutSeconds: () => 1 });
    await cache.whenSynced();
    await eventually("a watch", () => api.watchCount > 0);
    stop.abort();
    // Stopped, then history compacted past it, then restarted from a stale version: 410.
    api.compact();
    api.put(namespace("after-compaction"));
    api.fail({ path: /^\/api\/v1\/namespaces$/, watch: true, action: { kind: "status", code: 410 } });
    start();
    await eventually("the namespace after compaction", () => cache.cached("after-compaction"));
    expect(cache.health().lists).toBeGreaterThanOrEqual(1);
  });

  it("honours Retry-After on a 429 storm, and keeps what it holds", async () => {
    api.fail({ path: /^\/api\/v1\/namespaces$/, watch: false, times: 3, action: { kind: "status", code: 429, retryAfterSeconds: 1 } });
    const since = api.requests.length;
    start();
    await cache.whenSynced();
    const lists = api.requests.slice(since).filter((r) => r.path === "/api/v1/namespaces" && r.query.watch === undefined);
    expect(lists.map((r) => r.status)).toEqual([429, 429, 429, 200]);
    for (let i = 1; i < lists.length; i++) expect(lists[i]!.at - lists[i - 1]!.at).toBeGreaterThanOrEqual(950);
  });

  it("backs off on 500 and garbage, counting what does not parse, and syncs once the server is sane", async () => {
    api.fail({ path: /^\/api\/v1\/namespaces$/, watch: false, times: 2, action: { kind: "status", code: 500 } });
    api.fail({ path: /^\/api\/v1\/namespaces$/, watch: false, times: 1, action: { kind: "garbage" } });
    api.fail({ path: /^\/api\/v1\/namespaces$/, watch: true, times: 2, action: { kind: "garbage" } });
    start();
    await cache.whenSynced();
    expect(cache.health().synced).toBe(true);
    api.put(namespace("after-garbage"));
    await eventually("the namespace after garbage watches", () => cache.cached("after-garbage"));
  });

  it("reads a namespace it does not hold once, with a short timeout, and says why when it cannot", async () => {
    start();
    await cache.whenSynced();
    api.fail({ path: /^\/api\/v1\/namespaces$/, watch: true, times: Infinity, action: { kind: "hang-up" } });
    api.dropWatches();
    api.put(namespace("fresh", { env: "prod" }));
    const found = await cache.lookup("fresh");
    expect(found.namespace).toMatchObject({ metadata: { name: "fresh", labels: { env: "prod" } } });
    const missing = await cache.lookup("nowhere");
    expect(missing).toEqual({ unknown: expect.stringMatching(/^namespace nowhere is not in the agent's namespace cache, and reading it from the API server failed: the API server does not know it \(404\)$/) });
    api.fail({ path: /^\/api\/v1\/namespaces\/slow$/, action: { kind: "slow", delayMs: 1500 } });
    const quick = new NamespaceCache(access, quiet, { fetchTimeoutMs: 300 });
    const started = Date.now();
    expect(await quick.lookup("slow")).toEqual({ unknown: expect.stringMatching(/no answer within 300 ms$/) });
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe("leader election on a Lease", () => {
  const candidate = (identity: string) =>
    new LeaderElection(access, { namespace: "leases", name: "polity-agent", identity, leaseDurationMs: 1500, renewDeadlineMs: 1000, retryPeriodMs: 150 }, quiet);

  beforeAll(() => {
    api.put(namespace("leases"));
  });

  afterEach(() => api.clearFaults());

  it("lets exactly one of two candidates lead, hands over at once when it stops, and never lets two lead together", async () => {
    const a = candidate("replica-a");
    const b = candidate("replica-b");
    const stopA = new AbortController();
    const stopB = new AbortController();
    const running = [a.run(stopA.signal), b.run(stopB.signal)];
    try {
      await eventually("a leader", () => a.isLeader() || b.isLeader());
      for (let i = 0; i < 20; i++) {
        expect([a.isLeader(), b.isLeader()].filter(Boolean)).toHaveLength(1);
        await sleep(50);
      }
      const [leader, stopLeader, other] = a.isLeader() ? [a, stopA, b] : [b, stopB, a];
      const lease = api.get("coordination.k8s.io/v1", "Lease", "polity-agent", "leases") as { spec: { holderIdentity: string; renewTime: string; leaseDurationSeconds: number } };
      expect(lease.spec).toMatchObject({ holderIdentity: leader.health().identity, leaseDurationSeconds: 2 });
      expect(lease.spec.renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
      stopLeader.abort();
      await running[leader === a ? 0 : 1];
      expect(leader.isLeader()).toBe(false);
      const started = Date.now();
      await eventually("the other leads", () => other.isLeader());
      // Released, not lapsed: the other takes over within a few retry periods, not a lease duration.
      expect(Date.now() - started).toBeLessThan(1500);
    } finally {
      stopA.abort();
      stopB.abort();
      await Promise.all(running);
    }
  });

  it("stops leading when it cannot renew within the deadline, before its Lease can lapse", async () => {
    const a = candidate("replica-c");
    const stop = new AbortController();
    const running = a.run(stop.signal);
    try {
      await eventually("leading", () => a.isLeader());
      api.fail({ path: /\/leases\/polity-agent$/, times: Infinity, action: { kind: "status", code: 500 } });
      const failedAt = Date.now();
      await eventually("no longer leading", () => !a.isLeader());
      expect(Date.now() - failedAt).toBeLessThan(1500);
      expect(a.health().lastError).toMatch(/^Lease leases\/polity-agent: 500 /);
      api.clearFaults();
      await eventually("leading again", () => a.isLeader(), 5000);
    } finally {
      stop.abort();
      await running;
    }
  });
});

describe("a namespace as decisions see it", () => {
  it("keeps name, uid, labels, annotations, creation time, finalizers and phase, and refuses labels that are not strings", () => {
    const typed = { metadata: { name: "a", uid: "u", labels: { env: "prod" }, creationTimestamp: new Date("2026-01-02T03:04:05Z"), managedFields: [{ manager: "x" }] }, spec: { finalizers: ["kubernetes"] }, status: { phase: "Active" } };
    expect(namespaceForDecision(typed)).toEqual({ apiVersion: "v1", kind: "Namespace", metadata: { name: "a", uid: "u", labels: { env: "prod" }, creationTimestamp: "2026-01-02T03:04:05Z" }, spec: { finalizers: ["kubernetes"] }, status: { phase: "Active" } });
    expect(namespaceForDecision({ metadata: { name: "a", labels: { env: 1 } } })).toBeUndefined();
    expect(namespaceForDecision({ metadata: {} })).toBeUndefined();
  });
});
