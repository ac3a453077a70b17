/**
 * What a security review of the namespace cache broke, each fixed and kept fixed: faults of
 * the API server (or of a proxy in front of it) must never let a decision use a namespace's
 * old labels beyond a bound, and nothing shown of a failure may hold a credential. Against
 * the test API server (test/support/kube/) with the unmodified official client, over real
 * HTTPS on loopback; the cache is the agent's (src/kube/namespaces.ts).
 *
 * Each test relabels or recreates the namespace `flip` from env=dev to env=prod while the
 * cache cannot follow, and asks what a decision would see: it must be env=prod (read from
 * the API server) or unknown (the decision fails closed), never env=dev.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "./support/eventually.js";
import { stringify as stringifyYaml } from "yaml";
import { loadKubeAccess, NamespaceCache, type KubeAccess, type NamespaceLookup } from "../src/kube/index.js";
import { TestApiServer } from "./support/kube/api-server.js";

let api: TestApiServer;
let dir: string;
let access: KubeAccess;
let stop: AbortController | undefined;
let logs: string[] = [];

const log = { info: (m: string, f?: object) => logs.push(JSON.stringify({ m, ...f })), warn: (m: string, f?: object) => logs.push(JSON.stringify({ m, ...f })) };
const namespace = (name: string, labels: Record<string, unknown>) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name, labels } });
const envOf = (found: NamespaceLookup) => (found.namespace as { metadata?: { labels?: Record<string, string> } } | undefined)?.metadata?.labels?.env;

/** A cache that trusts itself for 3 s without contact and calls a watch silent for 2 s stuck. */
async function startCache(kube: KubeAccess = access): Promise<NamespaceCache> {
  const cache = new NamespaceCache(kube, log, { maxStalenessMs: 3000, progressTimeoutMs: 2000, backoffMs: { first: 50, cap: 200 } });
  stop = new AbortController();
  void cache.run(stop.signal);
  return cache;
}

beforeAll(async () => {
  api = await TestApiServer.start({ bookmarkIntervalMs: 200 });
  dir = mkdtempSync(join(tmpdir(), "polity-kube-faults-"));
  access = loadKubeAccess({ kubeconfig: api.writeKubeconfig(join(dir, "kubeconfig")), env: {} })!;
});

afterEach(() => {
  stop?.abort();
  api.clearFaults();
  api.dropWatches();
  api.put(namespace("flip", { env: "dev" }));
  logs = [];
});

afterAll(async () => {
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("a namespace cache that cannot follow its API server", () => {
  it("ends a watch that answers and then says nothing (a stuck proxy), and stops trusting its cache", async () => {
    api.put(namespace("flip", { env: "dev" }));
    api.fail({ path: /^\/api\/v1\/namespaces$/, watch: true, times: Infinity, action: { kind: "silent" } });
    const cache = await startCache();
    await cache.whenSynced();
    expect(envOf(await cache.lookup("flip"))).toBe("dev");
    api.put(namespace("flip", { env: "prod" }));
    // Within the bound (3 s here, 90 s by default), decisions read the namespace again.
    const seen = await eventually("env=prod, read from the API server", async () => ((await cache.lookup("flip")).namespace === undefined ? "unknown" : envOf(await cache.lookup("flip")) === "prod" ? "prod" : undefined), 8000);
    expect(seen).toBe("prod");
    expect(cache.health()).toMatchObject({ fresh: false });
    await eventually("the stuck watch in health", () => /the watch is stuck/.test(cache.health().lastError ?? ""), 8000);
  });

  it("after a 410, with every list failing, reads the namespace instead of trusting what it held", async () => {
    const cache = await startCache();
    await eventually("flip as env=dev", async () => envOf(await cache.lookup("flip")) === "dev");
    api.fail({ path: /^\/api\/v1\/namespaces$/, watch: true, times: 3, action: { kind: "hang-up" } });
    api.dropWatches();
    api.put(namespace("flip", { env: "prod" })); // missed by the cache
    api.compact(); // and its resume is now too old: 410
    api.fail({ path: /^\/api\/v1\/namespaces$/, watch: false, times: Infinity, action: { kind: "status", code: 500 } });
    await eventually("a failed list", () => /namespaces list: 500/.test(cache.health().lastError ?? ""));
    expect(envOf(await cache.lookup("flip"))).toBe("prod");
    expect(cache.health().behind).toBe(true);
  });

  it("does not decide a namespace deleted and recreated with other labels by the old one's, while its watches are refused", async () => {
    const cache = await startCache();
    await eventually("flip as env=dev", async () => envOf(await cache.lookup("flip")) === "dev");
    api.fail({ path: /^\/api\/v1\/namespaces$/, watch: true, times: Infinity, action: { kind: "hang-up" } });
    api.dropWatches();
    api.remove("v1", "Namespace", "flip");
    api.put(namespace("flip", { env: "prod" }));
    await eventually("a refused watch", () => cache.health().behind);
    expect(envOf(await cache.lookup("flip"))).toBe("prod");
  });

  it("takes a namespace whose update does not parse out of the cache, so that the decision fails closed", async () => {
    const cache = await startCache();
    await eventually("flip as env=dev", async () => envOf(await cache.lookup("flip")) === "dev");
    api.put(namespace("flip", { env: "prod", weird: 5 }));
    await eventually("the update refused", () => /does not parse: taken out of the cache/.test(cache.health().lastError ?? ""));
    const found = await cache.lookup("flip");
    expect(found.namespace).toBeUndefined();
    expect(found.unknown).toMatch(/^namespace flip /);
  });

  it("refuses a watch event older than the state it holds (a replay)", async () => {
    const cache = await startCache();
    await eventually("flip as env=dev", async () => envOf(await cache.lookup("flip")) === "dev");
    const old = api.get("v1", "Namespace", "flip")!;
    api.put(namespace("flip", { env: "prod" }));
    await eventually("flip as env=prod", async () => envOf(await cache.lookup("flip")) === "prod");
    api.replay("MODIFIED", old);
    await eventually("the replay refused", () => /is older than the .* held: refused/.test(cache.health().lastError ?? ""));
    expect(envOf(await cache.lookup("flip"))).toBe("prod");
  });
});

describe("what is shown of a failure", () => {
  const SECRET = "SUPERSECRET-TOKEN-7f3a9c";
  const kubeconfigWith = (name: string, user: Record<string, unknown>, server = api.url) => {
    const path = join(dir, name);
    writeFileSync(
      path,
      stringifyYaml({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "c", cluster: { server, "certificate-authority-data": Buffer.from(api.caPem).toString("base64") } }],
        users: [{ name: "u", user }],
        contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
        "current-context": "x",
      }),
    );
    return path;
  };

  it("never holds what an exec credential plugin printed, on its error output or instead of a credential", async () => {
    for (const script of [`echo "refresh failed for ${SECRET}" >&2; exit 1`, `echo ${SECRET}`]) {
      const kube = loadKubeAccess({ kubeconfig: kubeconfigWith("exec", { exec: { apiVersion: "client.authentication.k8s.io/v1", command: "sh", args: ["-c", script], interactiveMode: "Never" } }), env: {} })!;
      const cache = await startCache(kube);
      await eventually("a failed list", () => cache.health().lastError ?? undefined);
      const found = await cache.lookup("flip");
      stop!.abort();
      const shown = JSON.stringify([cache.health(), found, logs]);
      expect(shown).not.toContain(SECRET);
      expect(shown).not.toContain(SECRET.slice(0, 10));
    }
  });

  it("refuses a server URL with credentials in it without showing them, and quotes no line of a kubeconfig that does not parse", () => {
    const withUserinfo = kubeconfigWith("userinfo", { token: "t" }, api.url.replace("https://", `https://admin:${SECRET}@`));
    expect(() => loadKubeAccess({ kubeconfig: withUserinfo, env: {} })).toThrow(/server URL with credentials in it/);
    try {
      loadKubeAccess({ kubeconfig: withUserinfo, env: {} });
    } catch (error) {
      expect(String(error)).not.toContain(SECRET);
    }
    const broken = join(dir, "broken");
    for (const text of [`apiVersion: v1\nusers:\n- name: u\n  user:\n    token: ${SECRET}\n   bad: [\n`, `{"apiVersion":"v1","users":[{"name":"u","user":{"token":"${SECRET}"}}], oops}`]) {
      writeFileSync(broken, text);
      let message = "";
      try {
        loadKubeAccess({ kubeconfig: broken, env: {} });
      } catch (error) {
        message = `${String(error)} ${JSON.stringify((error as { problems?: unknown }).problems ?? "")}`;
      }
      expect(message).toMatch(/the Kubernetes configuration/);
      expect(message).not.toContain(SECRET);
    }
  });
});
