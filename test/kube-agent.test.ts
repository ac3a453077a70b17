/**
 * The agent in a cluster: the real `polity agent` process, given a kubeconfig for the test
 * API server (test/support/kube/), decides every AdmissionReview with its namespace's labels
 * and namespaceObject, the namespaces known only from the API server.
 *
 * The security defect this closes: before, the webhook decided with no namespaceObject, so
 * a deny policy scoped by `namespaceSelector: {matchLabels: {env: prod}}` under failure
 * policy Ignore never matched, and a privileged pod in a prod namespace was allowed;
 * under failure policy Fail it denied in every namespace alike. `polity eval` with the
 * Namespace among its inputs denied the one and allowed the other: so does the agent now.
 *
 * And the faults a real API server shows (a stream cut mid-event, 410 Gone, a 429 storm,
 * 500s, garbage) never crash the agent and never allow what the policy denies.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { eventually, sleep } from "./support/eventually.js";
import { call } from "../src/client/http.js";
import { BIN, HubFixture, joinToken, type TestHub } from "./support/hubs.js";
import { TestApiServer } from "./support/kube/api-server.js";
import { run } from "./support/processes.js";

const OPERATOR_KEY = "kube-agent-test-operator-key-0123456789";
const CLUSTER = "eu-west-1";

const GLOBAL = {
  name: "global.yaml",
  content: `apiVersion: polity.dev/v1
kind: Layer
metadata: { name: global }
spec: { tier: global, owners: [platform-security] }
---
apiVersion: polity.dev/v1
kind: Team
metadata: { name: platform-security }
spec: { members: [sam@example.com] }
---
# Scoped by a namespace label, under failure policy Ignore: the defect let it fail open.
apiVersion: polity.dev/v1
kind: Policy
metadata: { name: no-privileged-in-prod, owner: platform-security }
spec:
  domain: workload-security
  scope: { namespaceSelector: { matchLabels: { env: prod } } }
  match: { kinds: [Pod] }
  failurePolicy: Ignore
  validations:
    - name: privileged
      expression: "object.spec.containers.all(c, !has(c.securityContext) || !has(c.securityContext.privileged) || c.securityContext.privileged == false)"
      message: "privileged containers are not allowed in prod namespaces"
  enforcement: deny
---
# Scoped by a namespace label, under failure policy Fail: without the namespace it refuses.
apiVersion: polity.dev/v1
kind: Policy
metadata: { name: pci-owner, owner: platform-security }
spec:
  domain: workload-security
  scope: { namespaceSelector: { matchLabels: { compliance: pci } } }
  match: { kinds: [Pod] }
  validations:
    - name: owner
      expression: "has(object.metadata.labels) && 'owner' in object.metadata.labels"
      message: "pods in PCI namespaces name their owner"
  enforcement: deny
`,
};

const hubs = new HubFixture("polity-kube-agent-", OPERATOR_KEY);
let api: TestApiServer;
let hub: TestHub;
let dir: string;
const children: ChildProcess[] = [];

interface Agent {
  readonly child: ChildProcess;
  readonly url: string;
  readonly dataDir: string;
  readonly caPem: string;
  output(): string;
  stop(): Promise<void>;
}

/**
 * The real `polity agent` of `at` (default: the file's hub), enrolled with a fresh join
 * token unless `enrol` is false, with `env` (KUBECONFIG…) and `args`.
 */
async function spawnAgent(name: string, args: readonly string[], env: Record<string, string> = {}, options: { enrol?: boolean; at?: TestHub } = {}): Promise<Agent> {
  const buildError = inject("distBuildError");
  if (buildError !== null) throw new Error(buildError);
  const at = options.at ?? hub;
  const dataDir = join(dir, name);
  const caFile = join(dir, `${name}-hub-ca.pem`);
  writeFileSync(caFile, at.hub.caPem);
  const enrol = options.enrol === false ? [] : ["--ca", caFile, "--join-token", await joinToken(at, CLUSTER)];
  const { DATABASE_URL: _d, KUBECONFIG: _k, KUBERNETES_SERVICE_HOST: _h, ...base } = process.env;
  const child = spawn(process.execPath, [BIN, "agent", "--hub", at.hub.url, "--cluster", CLUSTER, "--data", dataDir, "--listen", "127.0.0.1:0", "--poll-wait", "2", ...enrol, ...args], {
    env: { ...base, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
  child.stderr!.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
  const url = await eventually("the agent's webhook", () => /webhook (https:\/\/\S+\/validate)/.exec(out)?.[1] ?? (child.exitCode !== null ? Promise.reject(new Error(`the agent exited: ${out}`)) : undefined), 30_000);
  return {
    child,
    url,
    dataDir,
    caPem: readFileSync(join(dataDir, "webhook", "ca.pem"), "utf8"),
    output: () => out,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

function https(agent: Agent, method: string, path: string, body?: string): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, agent.url);
    const req = request(url, { method, ca: agent.caPem, headers: body === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
      let text = "";
      res.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
      res.on("end", () => {
        try {
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) });
        } catch (error) {
          reject(error);
        }
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

interface Health {
  readonly bundleVersion: number | null;
  readonly errors: Record<string, string>;
  readonly enrolled: boolean;
  readonly kube: { source: string; server: string | null; message: string; webhookConfiguration?: unknown; lease: { leader: boolean; holder: string | null; identity: string } | null; identitySecret: { secret: string; inSync: boolean; lastError: string | null } | null; namespaces: { synced: boolean; fresh: boolean; objects: number; resourceVersion: string | null; lists: number; watches: number; malformed: number; fetches: number } | null };
}
const health = async (agent: Agent) => (await https(agent, "GET", "/healthz")).json as Health;

let uid = 0;
/** The privileged pod of examples/reviews, in `namespace`: the webhook's answer. */
async function decide(agent: Agent, namespace: string, labels: Record<string, string> = { team: "payments" }): Promise<{ allowed: boolean; message?: string }> {
  const body = JSON.parse(PRIVILEGED) as { request: { uid: string; namespace: string; object: { metadata: { namespace: string; labels: Record<string, string> } } } };
  body.request.uid = `00000000-0000-0000-0000-${String(++uid).padStart(12, "0")}`;
  body.request.namespace = namespace;
  body.request.object.metadata.namespace = namespace;
  body.request.object.metadata.labels = labels;
  const answer = await https(agent, "POST", "/validate", JSON.stringify(body));
  const response = (answer.json as { response: { allowed: boolean; status?: { message: string } } }).response;
  return { allowed: response.allowed, ...(response.status === undefined ? {} : { message: response.status.message }) };
}

const PRIVILEGED = readFileSync(join(new URL("..", import.meta.url).pathname, "examples/reviews/privileged-pod.json"), "utf8");

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "polity-kube-agent-"));
  api = await TestApiServer.start({ bookmarkIntervalMs: 500 });
  for (const [name, labels] of [
    ["shop-prod", { env: "prod" }],
    ["shop-dev", {}],
    ["payments", { env: "prod", compliance: "pci" }],
  ] as const) {
    api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name, labels } });
  }
  hub = await hubs.startCopy("kube");
  await call(hub.admin, "POST", "/v1/apply", { files: [GLOBAL] });
  await call(hub.admin, "POST", "/v1/clusters", { name: CLUSTER, region: "eu-west", labels: { env: "prod" } });
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("an agent with a kubeconfig for its cluster", () => {
  let agent: Agent;

  beforeAll(async () => {
    agent = await spawnAgent("agent", ["--kubeconfig", api.writeKubeconfig(join(dir, "kubeconfig"))]);
    await eventually("a bundle and the namespaces listed", async () => {
      const h = await health(agent);
      return h.bundleVersion !== null && h.kube.namespaces?.synced === true;
    });
  });

  afterAll(async () => {
    await agent?.stop();
  });

  it("denies a privileged pod in a namespace labelled env=prod, and allows it in an unlabelled one, the labels known only from the API server", async () => {
    expect(await decide(agent, "shop-prod")).toEqual({ allowed: false, message: "denied by Polity: no-privileged-in-prod: privileged containers are not allowed in prod namespaces" });
    expect(await decide(agent, "shop-dev")).toEqual({ allowed: true });
  });

  it("says in /healthz and /readyz where its API server is and that the namespaces are listed", async () => {
    const h = await health(agent);
    expect(h.kube).toMatchObject({ source: "kubeconfig", server: api.url, namespaces: { synced: true, objects: 3 } });
    expect((await https(agent, "GET", "/readyz")).status).toBe(200);
    expect(agent.output()).toContain(`Kubernetes API server ${api.url} (kubeconfig, context test)`);
  });

  it("follows a namespace's labels as they change, by its watch", async () => {
    api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "shop-dev", labels: { env: "prod" } } });
    await eventually("the new label", async () => !(await decide(agent, "shop-dev")).allowed);
    api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "shop-dev", labels: { env: "dev" } } });
    await eventually("the label removed", async () => (await decide(agent, "shop-dev")).allowed);
  });

  it("reads a namespace made a moment ago from the API server before deciding, when its watch has not brought it yet", async () => {
    // The watch is held down, so only the one-time read can know the new namespace.
    api.fail({ path: /^\/api\/v1\/namespaces$/, watch: true, times: Infinity, action: { kind: "hang-up" } });
    api.dropWatches();
    api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "brand-new", labels: { env: "prod" } } });
    try {
      expect(await decide(agent, "brand-new")).toMatchObject({ allowed: false, message: expect.stringContaining("no-privileged-in-prod") });
    } finally {
      api.clearFaults();
    }
  });

  it("fails closed, saying why, for a namespace the API server does not know, under the policy that needs its labels", async () => {
    await eventually("the cache in step with the API server", async () => (await health(agent)).kube.namespaces!.fresh);
    const answer = await decide(agent, "ghost", { team: "payments", owner: "pia" });
    expect(answer.allowed).toBe(false);
    expect(answer.message).toBe(
      "denied by Polity: pci-owner: namespace ghost is not in the agent's namespace cache, and reading it from the API server failed: the API server does not know it (404), and the policy selects namespaces by compliance: refused under its failure policy (Fail)",
    );
  });

  it("never crashes and never allows a privileged pod in a prod namespace through dropped streams, 410, a 429 storm, 500s and garbage", async () => {
    const prodNamespaces = ["shop-prod", "payments"];
    const before = (await health(agent)).kube.namespaces!;
    const faults: (() => void)[] = [
      () => api.dropWatches({ midEvent: true }),
      () => {
        // History compacted past where the informer was: its watch gets a 410 Expired event.
        api.fail({ path: /^\/api\/v1\/namespaces$/, watch: true, times: 1, action: { kind: "hang-up" } });
        api.dropWatches();
        api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "while-down", labels: { env: "prod" } } });
        api.compact();
      },
      () => {
        api.fail({ path: /^\/api\/v1\/namespaces$/, watch: true, times: 1, action: { kind: "status", code: 410 } });
        api.dropWatches();
      },
      () => {
        api.fail({ path: /^\/api\/v1\/namespaces$/, times: 20, action: { kind: "status", code: 429, retryAfterSeconds: 1 } });
        api.dropWatches();
      },
      () => {
        api.fail({ path: /^\/api\/v1\/namespaces/, times: 5, action: { kind: "status", code: 500 } });
        api.dropWatches();
      },
      () => {
        api.fail({ path: /^\/api\/v1\/namespaces$/, times: 4, action: { kind: "garbage" } });
        api.dropWatches();
      },
    ];
    for (const fault of faults) {
      fault();
      for (let i = 0; i < 5; i++) {
        for (const namespace of prodNamespaces) expect((await decide(agent, namespace)).allowed, `${namespace} after a fault`).toBe(false);
        await sleep(100);
      }
    }
    api.clearFaults();
    // It recovers: a new label reaches it by a watch again, and it says what happened.
    api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "after-faults", labels: { env: "prod" } } });
    // In step again: the cache's resourceVersion reaches the server's (events and bookmarks by a watch).
    await eventually("the cache in step again", async () => (await health(agent)).kube.namespaces!.resourceVersion === api.resourceVersion, 30_000);
    const after = (await health(agent)).kube.namespaces!;
    expect(after.lists).toBeGreaterThan(before.lists);
    expect(after.watches).toBeGreaterThan(before.watches);
    expect(agent.child.exitCode).toBeNull();
    expect(agent.output()).toMatch(/"msg":"namespaces (list|watch): /);
    expect((await decide(agent, "after-faults")).allowed).toBe(false);
    // Known from the watch, not from a read on the decision's path.
    expect((await health(agent)).kube.namespaces!.fetches).toBe(after.fetches);
  }, 60_000);
});

describe("an agent whose API server does not list its namespaces yet", () => {
  it("is not ready until the first list has synced, and denies meanwhile what needs the labels", async () => {
    api.fail({ path: /^\/api\/v1\/namespaces$/, watch: false, times: Infinity, action: { kind: "status", code: 503 } });
    const agent = await spawnAgent("agent-unsynced", ["--kubeconfig", api.writeKubeconfig(join(dir, "kubeconfig-unsynced"))]);
    try {
      await eventually("a bundle", async () => (await health(agent)).bundleVersion !== null);
      expect((await https(agent, "GET", "/readyz")).status).toBe(503);
      expect((await health(agent)).errors.namespaces).toMatch(/^namespaces list: 503 /);
      api.clearFaults();
      await eventually("ready", async () => (await https(agent, "GET", "/readyz")).status === 200, 40_000);
      expect((await decide(agent, "shop-prod")).allowed).toBe(false);
    } finally {
      api.clearFaults();
      await agent.stop();
    }
  }, 60_000);
});

describe("an agent without an API server", () => {
  it("runs as before and says so in /healthz; a policy that needs namespace labels fails closed, saying why", async () => {
    const agent = await spawnAgent("agent-without-kube", []);
    try {
      await eventually("a bundle", async () => (await health(agent)).bundleVersion !== null);
      const h = await health(agent);
      expect(h.kube).toMatchObject({ source: "none", server: null, namespaces: null, message: expect.stringMatching(/^no Kubernetes API server configured/) });
      expect((await https(agent, "GET", "/readyz")).status).toBe(200);
      const answer = await decide(agent, "payments", { team: "payments", owner: "pia" });
      expect(answer).toEqual({ allowed: false, message: expect.stringMatching(/pci-owner: the labels of namespace payments are not known here, and the policy selects namespaces by compliance: refused under its failure policy \(Fail\)$/) });
    } finally {
      await agent.stop();
    }
  });

  it("takes KUBECONFIG when --kubeconfig is not given, and exits with status 2 for a configuration it will not use", async () => {
    const agent = await spawnAgent("agent-env", [], { KUBECONFIG: api.writeKubeconfig(join(dir, "env-kubeconfig")) });
    try {
      await eventually("the namespaces listed", async () => (await health(agent)).kube.namespaces?.synced === true);
      expect((await health(agent)).kube.source).toBe("KUBECONFIG");
    } finally {
      await agent.stop();
    }
    const { DATABASE_URL: _d, ...env } = process.env;
    const refused = await run(process.execPath, [BIN, "agent", "--hub", hub.hub.url, "--cluster", CLUSTER, "--data", join(dir, "agent-env"), "--kubeconfig", join(dir, "missing")], { env });
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/--kubeconfig .*missing: no such file/);
  });
});

describe("an agent's identity in a Secret", () => {
  const SECRET = "polity-agent-identity";
  const secretKey = () => {
    const secret = api.get("v1", "Secret", SECRET, "polity-system") as { type?: string; data?: Record<string, string> } | undefined;
    return secret?.data?.["key.pem"] === undefined ? undefined : Buffer.from(secret.data["key.pem"], "base64").toString("utf8");
  };

  beforeAll(() => {
    api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "polity-system" } });
  });

  it("is written to the Secret at enrolment, and a rescheduled agent without its volume resumes with it, no join token needed", async () => {
    const kubeconfig = api.writeKubeconfig(join(dir, "kubeconfig-identity"));
    const args = ["--kubeconfig", kubeconfig, "--identity-secret", `polity-system/${SECRET}`];
    const first = await spawnAgent("identity-first", args);
    let key: string;
    try {
      key = await eventually("the identity in its Secret", () => secretKey());
      expect(key).toBe(readFileSync(join(first.dataDir, "identity", "key.pem"), "utf8"));
      expect(api.get("v1", "Secret", SECRET, "polity-system")).toMatchObject({ type: "polity.dev/agent-identity", data: { "cert.pem": expect.any(String), "ca.pem": expect.any(String), "bundle-key.pem": expect.any(String), "identity.json": expect.any(String) } });
      expect((await health(first)).kube.identitySecret).toEqual({ secret: `Secret polity-system/${SECRET}`, inSync: true, lastError: null });
      expect(first.output()).not.toContain("PRIVATE KEY");
    } finally {
      await first.stop();
    }
    // Another pod, another (empty) data folder, no join token: the same cluster again.
    const second = await spawnAgent("identity-second", args, {}, { enrol: false });
    try {
      await eventually("the rescheduled agent enforcing", async () => {
        const h = await health(second);
        return h.enrolled && h.bundleVersion !== null;
      });
      expect(readFileSync(join(second.dataDir, "identity", "key.pem"), "utf8")).toBe(key);
      expect((await decide(second, "shop-prod")).allowed).toBe(false);
    } finally {
      await second.stop();
    }
  }, 60_000);

  it("refuses, saying why, a Secret edited by hand that holds no usable identity, and a rescheduled agent without it asks for a join token", async () => {
    const edited = "polity-agent-identity-edited";
    api.put({ apiVersion: "v1", kind: "Secret", type: "polity.dev/agent-identity", metadata: { name: edited, namespace: "polity-system" }, data: { "key.pem": Buffer.from("-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n").toString("base64") } });
    const { DATABASE_URL: _d, KUBECONFIG: _k, ...env } = process.env;
    const refused = await run(process.execPath, [BIN, "agent", "--hub", hub.hub.url, "--cluster", CLUSTER, "--data", join(dir, "identity-edited"), "--kubeconfig", api.writeKubeconfig(join(dir, "kubeconfig-edited")), "--identity-secret", `polity-system/${edited}`], { env });
    expect(refused.code).toBe(2);
    expect(refused.err).toContain(`Secret polity-system/${edited} is not a Polity identity this agent can use: data.cert.pem, data.ca.pem, data.bundle-key.pem, data.identity.json missing`);
    expect(refused.err).not.toContain("bm9wZQ");
  });

  it("makes a new key at each renewal and writes it to the Secret", async () => {
    const shortLived = await hubs.startCopy("kube-rotation", { certificateTtlMs: 6000 });
    await call(shortLived.admin, "POST", "/v1/apply", { files: [GLOBAL] });
    await call(shortLived.admin, "POST", "/v1/clusters", { name: CLUSTER, region: "eu-west", labels: { env: "prod" } });
    const rotating = "polity-agent-identity-rotating";
    const agent = await spawnAgent("identity-rotating", ["--kubeconfig", api.writeKubeconfig(join(dir, "kubeconfig-rotating")), "--identity-secret", `polity-system/${rotating}`], {}, { at: shortLived });
    const keyIn = () => {
      const secret = api.get("v1", "Secret", rotating, "polity-system") as { data?: Record<string, string> } | undefined;
      return secret?.data?.["key.pem"] === undefined ? undefined : Buffer.from(secret.data["key.pem"], "base64").toString("utf8");
    };
    try {
      const first = await eventually("the first key in the Secret", () => keyIn());
      const second = await eventually("a renewal with a new key", () => {
        const now = keyIn();
        return now !== undefined && now !== first ? now : undefined;
      }, 20_000);
      expect(readFileSync(join(agent.dataDir, "identity", "key.pem"), "utf8")).toBe(second);
      expect((await health(agent)).errors.identity).toBeUndefined();
    } finally {
      await agent.stop();
    }
  }, 60_000);
});

describe("two replicas sharing one identity", () => {
  it("both serve the webhook, one holds the Lease, and the other takes it over when the first stops", async () => {
    api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "polity-system" } });
    const args = ["--kubeconfig", api.writeKubeconfig(join(dir, "kubeconfig-replicas")), "--identity-secret", "polity-system/polity-agent-replicas", "--lease", "polity-system/polity-agent"];
    const first = await spawnAgent("replica-1", args);
    const agents = [first];
    try {
      await eventually("the identity in its Secret", () => api.get("v1", "Secret", "polity-agent-replicas", "polity-system"));
      agents.push(await spawnAgent("replica-2", args, {}, { enrol: false }));
      const leaders = async () => (await Promise.all(agents.map((a) => health(a)))).map((h) => h.kube.lease?.leader === true);
      await eventually("one leader", async () => (await leaders()).filter(Boolean).length === 1);
      for (let i = 0; i < 5; i++) {
        expect((await leaders()).filter(Boolean)).toHaveLength(1);
        await sleep(300);
      }
      for (const agent of agents) expect((await decide(agent, "shop-prod")).allowed).toBe(false);
      const [leader, other] = (await leaders())[0] ? [agents[0]!, agents[1]!] : [agents[1]!, agents[0]!];
      const lease = api.get("coordination.k8s.io/v1", "Lease", "polity-agent", "polity-system") as { spec: { holderIdentity: string } };
      expect(lease.spec.holderIdentity).toBe((await health(leader)).kube.lease!.identity);
      await leader.stop();
      await eventually("the other replica leads", async () => (await health(other)).kube.lease?.leader === true, 10_000);
    } finally {
      for (const agent of agents) await agent.stop();
    }
  }, 60_000);
});

describe("the agent's own webhook registration", () => {
  it("keeps the ValidatingWebhookConfiguration with its CA and rules only for what its bundle's policies match, following layer changes", async () => {
    const agent = await spawnAgent("registering", ["--kubeconfig", api.writeKubeconfig(join(dir, "kubeconfig-registering")), "--register-webhook", "polity-system/polity-agent"]);
    type Config = { webhooks: { clientConfig: { caBundle: string; service: unknown }; rules: { apiGroups: string[]; resources: string[] }[] }[] };
    const config = () => api.get("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "polity") as Config | undefined;
    try {
      const applied = await eventually("the configuration", () => config()).catch((error: unknown) => { throw new Error(`${String(error)}\n${agent.output()}`); });
      const webhook = applied.webhooks[0]!;
      expect(Buffer.from(webhook.clientConfig.caBundle, "base64").toString("utf8")).toBe(agent.caPem);
      expect(webhook.clientConfig.service).toEqual({ namespace: "polity-system", name: "polity-agent", path: "/validate", port: 443 });
      const resources = (c: Config) => c.webhooks[0]!.rules.flatMap((r) => r.resources).sort();
      expect(resources(applied)).toEqual(["cronjobs", "daemonsets", "deployments", "jobs", "pods", "podtemplates", "replicasets", "replicationcontrollers", "statefulsets"]);
      // A policy on ConfigMaps reaches the agent in its next bundle, and its registration with it.
      const withConfigMaps = { name: GLOBAL.name, content: `${GLOBAL.content}---
apiVersion: polity.dev/v1
kind: Policy
metadata: { name: configmap-size, owner: platform-security }
spec:
  domain: workload-security
  match: { kinds: [ConfigMap] }
  validations: [{ name: small, expression: "!has(object.data) || size(object.data) < 100" }]
  enforcement: deny
` };
      await call(hub.admin, "POST", "/v1/apply", { files: [withConfigMaps] });
      await eventually("configmaps registered", () => (resources(config()!).includes("configmaps") ? true : undefined), 20_000);
      expect((await health(agent)).kube).toMatchObject({ webhookConfiguration: { applied: true, lastError: null } });
      await call(hub.admin, "POST", "/v1/apply", { files: [GLOBAL] });
    } finally {
      await agent.stop();
    }
  }, 60_000);
});

describe("Pod Security labels of namespaces, within a locked floor, through the agent", () => {
  const PSA_LAYER = {
    name: "global.yaml",
    content: `apiVersion: polity.dev/v1
kind: Layer
metadata: { name: global }
spec: { tier: global, owners: [platform-security] }
---
apiVersion: polity.dev/v1
kind: Team
metadata: { name: platform-security }
spec: { members: [sam@example.com] }
---
apiVersion: polity.dev/v1
kind: Policy
metadata: { name: pod-security, owner: platform-security }
spec:
  builtin: pod-security/baseline
  podSecurity: { namespaceLabels: enforce }
  enforcement: deny
  locked: true
`,
  };

  /** The example pod in `namespace`, its container's securityContext replaced. */
  async function decidePod(agent: Agent, namespace: string, securityContext: Record<string, unknown>): Promise<{ allowed: boolean; message?: string }> {
    const body = JSON.parse(PRIVILEGED) as { request: { uid: string; namespace: string; object: { metadata: { namespace: string }; spec: { containers: { securityContext?: unknown }[] } } } };
    body.request.uid = `00000000-0000-0000-0001-${String(++uid).padStart(12, "0")}`;
    body.request.namespace = namespace;
    body.request.object.metadata.namespace = namespace;
    body.request.object.spec.containers[0]!.securityContext = securityContext;
    const response = ((await https(agent, "POST", "/validate", JSON.stringify(body))).json as { response: { allowed: boolean; status?: { message: string } } }).response;
    return { allowed: response.allowed, ...(response.status === undefined ? {} : { message: response.status.message }) };
  }

  it("lets a namespace ask for restricted above the baseline floor, never for less, and takes an invalid level as restricted", async () => {
    const psaHub = await hubs.startCopy("kube-psa");
    await call(psaHub.admin, "POST", "/v1/apply", { files: [PSA_LAYER] });
    await call(psaHub.admin, "POST", "/v1/clusters", { name: CLUSTER, region: "eu-west", labels: { env: "prod" } });
    for (const [name, level] of [["psa-restricted", "restricted"], ["psa-privileged", "privileged"], ["psa-bogus", "Restricted"]] as const) {
      api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name, labels: { "pod-security.kubernetes.io/enforce": level } } });
    }
    const agent = await spawnAgent("psa", ["--kubeconfig", api.writeKubeconfig(join(dir, "kubeconfig-psa"))], {}, { at: psaHub });
    try {
      await eventually("a bundle and the namespaces", async () => {
        const h = await health(agent);
        return h.bundleVersion !== null && h.kube.namespaces?.synced === true;
      });
      // Baseline, not restricted: allowed where the floor alone applies.
      expect(await decidePod(agent, "psa-privileged", {})).toEqual({ allowed: true });
      expect(await decidePod(agent, "shop-dev", {})).toEqual({ allowed: true });
      const restricted = await decidePod(agent, "psa-restricted", {});
      expect(restricted.allowed).toBe(false);
      expect(restricted.message).toMatch(/^denied by Polity: pod-security: allowPrivilegeEscalation != false \(container "shell" must set securityContext.allowPrivilegeEscalation=false\)/);
      expect((await decidePod(agent, "psa-bogus", {})).allowed).toBe(false);
      // privileged asked under a baseline floor: the floor still denies a privileged container.
      expect(await decidePod(agent, "psa-privileged", { privileged: true })).toEqual({ allowed: false, message: 'denied by Polity: pod-security: privileged (container "shell" must not set securityContext.privileged=true)' });
    } finally {
      await agent.stop();
    }
  }, 60_000);
});
