/**
 * The cluster agent, over real TLS and real sockets: it enrols, pulls its signed bundle and
 * decides AdmissionReviews from it; a layer change reaches it by long poll; it outlives its
 * hub (killed with SIGKILL) and its own restart, deciding from its disk; it refuses a
 * tampered cache, a replayed, expired, foreign or forged bundle; it answers malformed
 * reviews with a Status and keeps serving; its decision logs reach the hub exactly once;
 * and it prints the webhook registration that points the API server at it.
 *
 * Creating a federation runs initdb (~5 s), so one is made once, with the example layers
 * and two clusters, and its data folder copied for every hub (~1 s each). Agents are the
 * real `polity agent` processes, except where a test offers bundles to an agent's
 * active bundle directly or moves its clock (then startAgent runs in this process). The hub
 * runs in this process, except where it must die (then it is the real `polity hub`).
 *
 * Bugs found are kept as `it.fails` reproductions, each with a BUG comment saying what is
 * expected and what happens; flip one to `it` when its bug is fixed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { connect as tlsConnect } from "node:tls";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { eventually, sleep } from "./support/eventually.js";
import { parse as parseYaml } from "yaml";
import { hugeAnswers, type Impostor } from "./support/impostor.js";
import { startAgent, type AgentHealth, type RunningAgent } from "../src/agent/index.js";
import { batchesOf } from "../src/agent/logs/batches.js";
import { DecisionLog, DEFAULT_LOG_OPTIONS } from "../src/agent/logs/buffer.js";
import { decodeBundle, encodeBundle, signBundle, type Bundle, type BundleMetadata } from "../src/bundle/index.js";
import { call, closeConnections, HubError, type HubEndpoint } from "../src/client/http.js";
import type { AdmissionReviewResponse } from "../src/decision/review.js";
import { startHub, type RunningHub } from "../src/hub/index.js";
import { clusterEndpoint, loadCredentials } from "../src/identity/credentials.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "bin/polity.js");
const OPERATOR_KEY = "agent-test-operator-key-0123456789abcdef";
const FEDERATION = "polity";
const CLUSTER = "eu-west-1";
/** Another cluster of the same region: its bundle is not eu-west-1's to read or enforce. */
const OTHER = "eu-west-2";
const VECTORS = join(ROOT, "../shared/vectors/admission");

// ---- layers and reviews ------------------------------------------------------------------

interface SourceFile {
  readonly name: string;
  readonly content: string;
}

const layer = (name: string): SourceFile => ({ name, content: readFileSync(join(ROOT, "examples/layers", name), "utf8") });
const GLOBAL = layer("global.yaml");
const LAYERS = [GLOBAL, layer("region-eu-west.yaml"), layer("cluster-eu-west-1.yaml")];

/** The global layer with one more deny policy: every pod names its owner (compliant-pod.json does not). */
const GLOBAL_WITH_OWNER: SourceFile = {
  name: GLOBAL.name,
  content: `${GLOBAL.content.trimEnd()}
---
apiVersion: polity.dev/v1
kind: Policy
metadata: { name: require-owner-label, owner: platform-team }
spec:
  domain: workload-security
  match: { kinds: [Pod] }
  validations:
    - name: owner-label
      expression: "has(object.metadata.labels) && 'owner' in object.metadata.labels"
      message: "pods must carry an owner label"
  enforcement: deny
`,
};

/** The global layer with one more warn policy (a change that denies nothing new). */
const GLOBAL_WITH_WARNING: SourceFile = {
  name: GLOBAL.name,
  content: `${GLOBAL.content.trimEnd()}
---
apiVersion: polity.dev/v1
kind: Policy
metadata: { name: suggest-owner-label, owner: platform-team }
spec:
  domain: workload-security
  match: { kinds: [Pod] }
  validations:
    - name: owner-label
      expression: "has(object.metadata.labels) && 'owner' in object.metadata.labels"
      message: "pods should carry an owner label"
  enforcement: warn
`,
};

const PRIVILEGED = readFileSync(join(ROOT, "examples/reviews/privileged-pod.json"), "utf8");
const COMPLIANT = readFileSync(join(ROOT, "examples/reviews/compliant-pod.json"), "utf8");

/** A review file with its request uid replaced (so that each decision can be found in the logs). */
function withUid(review: string, uid: string): string {
  const parsed = JSON.parse(review) as { request: { uid: string } };
  parsed.request.uid = uid;
  return JSON.stringify(parsed);
}

const uidOf = (review: string): string => (JSON.parse(review) as { request: { uid: string } }).request.uid;

/** What the privileged pod violates under the restricted Pod Security Standard. */
const PRIVILEGED_DENIAL = /^denied by Polity: pod-security: .*privileged/;

// ---- waiting ------------------------------------------------------------------------------


// ---- hubs ---------------------------------------------------------------------------------

let root: string;
let template: string;
const hubs: RunningHub[] = [];
const agents: RunningAgent[] = [];
const processes: ChildProcess[] = [];

interface Federation {
  readonly dir: string;
  readonly admin: HubEndpoint;
  readonly caFile: string;
}

/** A copy of the template federation's data folder, for one hub (in this process or spawned). */
function copyFederation(name: string, url = ""): Federation & { token: string } {
  const dir = join(root, name);
  cpSync(template, dir, { recursive: true });
  const token = readFileSync(join(dir, "admin.token"), "utf8").trim();
  return { dir, token, caFile: join(dir, "ca.pem"), admin: { url, caPem: readFileSync(join(dir, "ca.pem"), "utf8"), token } };
}

async function startCopy(name: string): Promise<Federation & { hub: RunningHub }> {
  const copy = copyFederation(name);
  const hub = await startHub({ dataDir: copy.dir, port: 0, operatorKey: OPERATOR_KEY });
  hubs.push(hub);
  return { ...copy, hub, admin: { url: hub.url, caPem: hub.caPem, token: copy.token } };
}

async function joinToken(admin: HubEndpoint, cluster: string): Promise<string> {
  return (await call<{ token: string }>(admin, "POST", `/v1/clusters/${cluster}/join-tokens`, {})).body.token;
}

// ---- the real binary ----------------------------------------------------------------------

interface Spawned {
  readonly child: ChildProcess;
  readonly output: () => string;
  /** SIGTERM, then the exit code (SIGKILL after 10 s). */
  stop(): Promise<number | null>;
  /** SIGKILL, and wait for the process to be gone. */
  kill(): Promise<void>;
}

/** Spawns `polity <args>` and resolves once its stdout matches `ready`. */
function spawnPolity(args: readonly string[], ready: RegExp, env: Record<string, string> = {}): Promise<Spawned & { match: RegExpExecArray }> {
  const buildError = inject("distBuildError");
  if (buildError !== null) throw new Error(buildError);
  const { DATABASE_URL: _ignored, ...base } = process.env;
  const child = spawn(process.execPath, [BIN, ...args], { cwd: root, env: { ...base, NO_COLOR: "1", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  processes.push(child);
  let out = "";
  let err = "";
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`polity ${args.join(" ")} was not ready within 30 s:\n${out}${err}`));
    }, 30_000);
    child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString("utf8")));
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8");
      const match = ready.exec(out);
      if (match === null) return;
      clearTimeout(timer);
      resolve({
        child,
        match,
        output: () => out + err,
        async stop() {
          if (!gone()) child.kill("SIGTERM");
          const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
          const code = await exited;
          clearTimeout(kill);
          return code;
        },
        async kill() {
          if (!gone()) child.kill("SIGKILL");
          await exited;
        },
      });
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`polity ${args.join(" ")} exited (${code}) before it was ready:\n${out}${err}`));
    });
  });
}

/** Runs a one-shot `polity <args>` to its end. */
function runPolity(args: readonly string[]): Promise<{ code: number | null; out: string; err: string }> {
  const buildError = inject("distBuildError");
  if (buildError !== null) throw new Error(buildError);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: root, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
    processes.push(child);
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString("utf8")));
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

interface HubProcess extends Spawned {
  readonly url: string;
  readonly port: number;
}

async function spawnHub(dataDir: string, port = 0): Promise<HubProcess> {
  const hub = await spawnPolity(["hub", "--data", dataDir, "--listen", `127.0.0.1:${port}`, "--quiet"], /listening on (https:\/\/\S+)/, { POLITY_HUB_KEY: OPERATOR_KEY });
  const url = hub.match[1]!;
  return { ...hub, url, port: Number(new URL(url).port) };
}

interface AgentProcess extends Spawned {
  readonly webhookUrl: string;
  readonly webhookCaPem: string;
  readonly dataDir: string;
}

/** The real `polity agent`; with a join token and the CA it enrols, without them it starts from its data folder. */
async function spawnAgent(options: { hubUrl: string; dataDir: string; cluster?: string; caFile?: string; joinToken?: string; pollWait?: number; logLimitMiB?: number }): Promise<AgentProcess> {
  const cluster = options.cluster ?? CLUSTER;
  const args = ["agent", "--hub", options.hubUrl, "--cluster", cluster, "--data", options.dataDir, "--listen", "127.0.0.1:0", "--poll-wait", String(options.pollWait ?? 2)];
  if (options.logLimitMiB !== undefined) args.push("--decision-log-limit", String(options.logLimitMiB));
  if (options.caFile !== undefined) args.push("--ca", options.caFile);
  if (options.joinToken !== undefined) args.push("--join-token", options.joinToken);
  const agent = await spawnPolity(args, new RegExp(`agent of cluster ${cluster}: webhook (https://\\S+/validate)`));
  return { ...agent, webhookUrl: agent.match[1]!, webhookCaPem: readFileSync(join(options.dataDir, "webhook", "ca.pem"), "utf8"), dataDir: options.dataDir };
}

/** A loopback port nobody listens on: a hub that is down. */
async function deadPort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== "object" || address === null) throw new Error("no port");
  return address.port;
}

// ---- the webhook, over raw HTTPS ------------------------------------------------------------

interface Webhook {
  readonly webhookUrl: string;
  readonly webhookCaPem: string;
}

interface RawAnswer {
  readonly status: number;
  readonly text: string;
  readonly json: unknown;
}

/**
 * One request to an agent's webhook server, on a fresh TLS connection, spoken by hand: a
 * server that answers before it has read a huge body closes the connection under the
 * upload, and Node's client would then report the broken pipe instead of the answer. So
 * the body is written in pieces until the answer arrives, and the answer is read whatever
 * happens to the upload. `headersOnly` sends the head alone (as a client waiting for
 * 100 Continue would), `chunked` streams the body without a declared length, and
 * `sendAtMost` stops the upload after that many bytes to wait for the answer.
 */
function send(
  agent: Webhook,
  options: { method?: string; path?: string; body?: string | Buffer; contentType?: string; chunked?: boolean; headersOnly?: boolean; sendAtMost?: number; client?: { cert: string; key: string } } = {},
): Promise<RawAnswer> {
  const url = new URL(options.path ?? "/validate", agent.webhookUrl);
  const body = options.body === undefined ? undefined : Buffer.isBuffer(options.body) ? options.body : Buffer.from(options.body, "utf8");
  const method = options.method ?? (body === undefined ? "GET" : "POST");
  const head = [
    `${method} ${url.pathname} HTTP/1.1`,
    `host: ${url.host}`,
    "connection: close",
    ...(body === undefined ? [] : [`content-type: ${options.contentType ?? "application/json"}`]),
    ...(body === undefined ? [] : options.chunked === true ? ["transfer-encoding: chunked"] : [`content-length: ${body.length}`]),
  ].join("\r\n");
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: url.hostname, port: Number(url.port), ca: agent.webhookCaPem, ...(options.client ?? {}) });
    let received = Buffer.alloc(0);
    let answer: RawAnswer | undefined;
    const parse = (): RawAnswer | undefined => {
      const end = received.indexOf("\r\n\r\n");
      if (end < 0) return undefined;
      const lines = received.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? "")?.[1] ?? 0);
      const length = Number(lines.find((l) => /^content-length:/i.test(l))?.split(":")[1]?.trim() ?? "NaN");
      if (!Number.isFinite(length) || received.length < end + 4 + length) return undefined;
      const text = received.subarray(end + 4, end + 4 + length).toString("utf8");
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status, text, json };
    };
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      answer ??= parse();
      if (answer !== undefined) {
        resolve(answer);
        socket.destroy();
      }
    });
    // A broken pipe under the upload is not the end: the answer may already be in, or still arrive.
    let failure: Error | undefined;
    socket.on("error", (error) => (failure = error));
    socket.on("close", () => {
      answer ??= parse();
      if (answer !== undefined) resolve(answer);
      else reject(new Error(`no complete answer from the webhook (${failure?.message ?? "closed"}): ${JSON.stringify(received.toString("utf8").slice(0, 200))}`));
    });
    socket.once("secureConnect", () => {
      void (async () => {
        const write = (data: Buffer | string) =>
          new Promise<void>((done) => {
            if (answer !== undefined || socket.destroyed) return done();
            if (socket.write(data)) done();
            else socket.once("drain", () => done());
          });
        await write(`${head}\r\n\r\n`);
        if (body === undefined || options.headersOnly === true) return;
        const piece = 256 * 1024;
        const last = Math.min(body.length, options.sendAtMost ?? body.length);
        for (let i = 0; i < last && answer === undefined && !socket.destroyed; i += piece) {
          const part = body.subarray(i, i + piece);
          await write(options.chunked === true ? Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from("\r\n")]) : part);
        }
        if (options.chunked === true && last === body.length) await write("0\r\n\r\n");
      })();
    });
  });
}

/** Sends an AdmissionReview and returns the AdmissionReview answered (fails on anything but 200). */
async function review(agent: Webhook, body: string): Promise<AdmissionReviewResponse> {
  const answer = await send(agent, { body });
  expect(answer.status, answer.text).toBe(200);
  return answer.json as AdmissionReviewResponse;
}

async function health(agent: Webhook, path = "/healthz"): Promise<AgentHealth & { httpStatus: number }> {
  const answer = await send(agent, { path });
  return { ...(answer.json as AgentHealth), httpStatus: answer.status };
}

interface StatusBody {
  readonly kind: string;
  readonly apiVersion: string;
  readonly status: string;
  readonly code: number;
  readonly reason: string;
  readonly message: string;
}

function expectStatus(answer: RawAnswer, code: number, message: RegExp): StatusBody {
  expect(answer.status, answer.text).toBe(code);
  const status = answer.json as StatusBody;
  expect(status).toMatchObject({ kind: "Status", apiVersion: "v1", status: "Failure", code });
  expect(status.message).toMatch(message);
  return status;
}

/** The exact answer to the privileged pod: its uid, 403 Forbidden, and why. */
function expectDenied(answer: AdmissionReviewResponse, uid: string, message = PRIVILEGED_DENIAL): void {
  expect(answer).toMatchObject({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: { uid, allowed: false, status: { code: 403, reason: "Forbidden" } } });
  expect(Object.keys(answer).sort()).toEqual(["apiVersion", "kind", "response"]);
  expect(answer.response.status?.message).toMatch(message);
}

function expectAllowed(answer: AdmissionReviewResponse, uid: string): void {
  expect(answer).toEqual({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: { uid, allowed: true } });
}

// ---- the hub's view -------------------------------------------------------------------------

interface ClusterView {
  readonly name: string;
  readonly bundle: number | null;
  readonly effective: { readonly hash?: string };
  readonly agent: { readonly bundleVersion: number | null; readonly bundleHash: string | null; readonly stale: boolean | null; readonly inSync: boolean } | null;
}

interface DecisionEntry {
  readonly uid: string;
  readonly allowed: boolean;
  readonly represents?: number;
  readonly bundleVersion: number | null;
  readonly violations?: readonly { readonly policy: string; readonly message: string }[];
}

async function decisionsAtHub(admin: HubEndpoint, cluster = CLUSTER): Promise<{ items: DecisionEntry[]; dropped: number }> {
  return (await call<{ items: DecisionEntry[]; dropped: number }>(admin, "GET", `/v1/clusters/${cluster}/decisions?limit=1000`)).body;
}

// ---- the template federation ----------------------------------------------------------------

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "polity-agent-test-"));
  template = join(root, "template");
  const first = await startHub({ dataDir: template, port: 0, operatorKey: OPERATOR_KEY, federation: FEDERATION });
  try {
    const admin: HubEndpoint = { url: first.url, caPem: first.caPem, token: readFileSync(first.adminTokenFile!, "utf8").trim() };
    await call(admin, "POST", "/v1/apply", { files: LAYERS });
    await call(admin, "POST", "/v1/clusters", { name: CLUSTER, region: "eu-west", labels: { env: "prod" } });
    await call(admin, "POST", "/v1/clusters", { name: OTHER, region: "eu-west", labels: { env: "prod" } });
  } finally {
    await first.close();
  }
});

afterAll(async () => {
  closeConnections();
  for (const child of processes) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await Promise.allSettled(agents.map((agent) => agent.close()));
  await Promise.allSettled(hubs.map((hub) => hub.close()));
  rmSync(root, { recursive: true, force: true });
});

// ---- 1. an agent in step with its hub ----------------------------------------------------------

describe("an agent in step with its hub", () => {
  let fed: Federation & { hub: RunningHub };
  let agent: AgentProcess;

  beforeAll(async () => {
    fed = await startCopy("sync");
    agent = await spawnAgent({ hubUrl: fed.hub.url, dataDir: join(root, "sync-agent"), caFile: fed.caFile, joinToken: await joinToken(fed.admin, CLUSTER), pollWait: 20 });
    await eventually("the agent holds a bundle", async () => ((await health(agent)).bundleVersion === null ? undefined : true));
  });

  afterAll(async () => {
    await agent?.stop();
  });

  it("enrols with its join token and pulls its cluster's bundle from the hub", async () => {
    const held = await health(agent);
    const view = (await call<ClusterView>(fed.admin, "GET", `/v1/clusters/${CLUSTER}`)).body;
    expect(held).toMatchObject({ cluster: CLUSTER, enrolled: true, bundleSource: "hub", bundleVersion: view.bundle, bundleHash: view.effective.hash, stale: false, lastRefusal: null });
    expect(held.httpStatus).toBe(200);
    expect((await health(agent, "/readyz")).httpStatus).toBe(200);
  });

  it("denies privileged-pod.json with its uid, 403 Forbidden and a message naming the policy and each violation", async () => {
    expect(await review(agent, PRIVILEGED)).toEqual({
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      response: {
        uid: "5b1c6f9e-0d1a-4a57-9f0e-6a1f1a2b3c4d",
        allowed: false,
        status: {
          code: 403,
          reason: "Forbidden",
          message:
            'denied by Polity: pod-security: privileged (container "shell" must not set securityContext.privileged=true), ' +
            'allowPrivilegeEscalation != false (container "shell" must set securityContext.allowPrivilegeEscalation=false), ' +
            'unrestricted capabilities (container "shell" must set securityContext.capabilities.drop=["ALL"]), ' +
            'runAsNonRoot != true (pod or container "shell" must set securityContext.runAsNonRoot=true), ' +
            'seccompProfile (pod or container "shell" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")',
        },
        // The eu-west region's residency policy warns (its enforcement is warn): the API server shows it to the user.
        warnings: ["data-residency: production pods in eu-west must be labelled residency=eu"],
      },
    });
  });

  it("allows compliant-pod.json with its uid and nothing else", async () => {
    expect(await review(agent, COMPLIANT)).toEqual({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: { uid: "0f3e2d1c-7b6a-4c5d-8e9f-1a2b3c4d5e6f", allowed: true } });
  });

  it("answers AdmissionReviews captured from real API servers with their own uid", async (context) => {
    let files: string[];
    try {
      files = ["pod-create-kind.kyverno.json", "pod-create-gke.kube-rs.json", "pod-delete-kind.kyverno.json"].map((f) => readFileSync(join(VECTORS, f), "utf8"));
    } catch {
      context.skip(`the captured AdmissionReviews are not in ${VECTORS}`);
      return;
    }
    for (const file of files) {
      const answer = await review(agent, file);
      expect(answer).toMatchObject({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: { uid: uidOf(file) } });
      expect(typeof answer.response.allowed).toBe("boolean");
    }
  });

  it("receives a layer change within two seconds by long poll, shows its version in /healthz and decides by it", async () => {
    const before = (await health(agent)).bundleVersion!;
    const applied = Date.now();
    await call(fed.admin, "POST", "/v1/apply", { files: [GLOBAL_WITH_OWNER] });
    const after = await eventually("the new bundle reaches the agent", async () => {
      const h = await health(agent);
      return h.bundleVersion !== null && h.bundleVersion > before ? h : undefined;
    }, 5000);
    expect(Date.now() - applied).toBeLessThan(2000);
    const view = (await call<ClusterView>(fed.admin, "GET", `/v1/clusters/${CLUSTER}`)).body;
    expect(after).toMatchObject({ bundleVersion: view.bundle, bundleHash: view.effective.hash, bundleSource: "hub", stale: false });
    expectDenied(await review(agent, COMPLIANT), uidOf(COMPLIANT), /^denied by Polity: require-owner-label: pods must carry an owner label$/);
  });

  it("is listed by the hub as in sync once it has reported its status", async () => {
    const listed = await eventually("GET /v1/clusters shows the agent in sync", async () => {
      const items = (await call<{ items: ClusterView[] }>(fed.admin, "GET", "/v1/clusters")).body.items;
      const mine = items.find((c) => c.name === CLUSTER);
      return mine?.agent?.inSync === true ? mine : undefined;
    }, 12_000);
    expect(listed.agent).toMatchObject({ bundleVersion: listed.bundle, bundleHash: listed.effective.hash, stale: false });
    // The other cluster has no agent: nothing reported, never in sync.
    const items = (await call<{ items: ClusterView[] }>(fed.admin, "GET", "/v1/clusters")).body.items;
    expect(items.find((c) => c.name === OTHER)?.agent).toBeNull();
  });

  // A decision-log segment is whatever gathered in memory in one second (up to 4 MiB), but
  // the hub takes at most 10,000 entries a batch: a burst of more than 10,000 short denials
  // within a second makes a segment that the agent sends in parts. Here the burst is written
  // by the agent's own DecisionLog into the data folder of eu-west-2's agent before it starts.
  it("uploads the decision logs of a burst of more than 10,000 denials in one second, and the ones after it", async () => {
    const dir = join(root, "burst-agent");
    const burst = new DecisionLog(join(dir, "decisions"), DEFAULT_LOG_OPTIONS);
    for (let i = 0; i < 10_001; i++) {
      burst.denied({ time: new Date().toISOString(), uid: `burst-${i}`, kind: "Pod", namespace: "shop", operation: "CREATE", allowed: false, bundleVersion: 1, authenticated: true, violations: [{ policy: "require-team-label", rule: "team-label", message: "pods must carry a non-empty \"team\" label", enforcement: "deny" }] });
    }
    burst.flush();
    const other = await spawnAgent({ hubUrl: fed.hub.url, cluster: OTHER, dataDir: dir, caFile: fed.caFile, joinToken: await joinToken(fed.admin, OTHER) });
    try {
      await eventually("the agent holds a bundle", async () => ((await health(other)).bundleVersion === null ? undefined : true));
      expectDenied(await review(other, withUid(PRIVILEGED, "after-the-burst")), "after-the-burst", /^denied by Polity: /);
      await eventually("the denial after the burst reaches the hub", async () => {
        const uids = new Set((await decisionsAtHub(fed.admin, OTHER)).items.map((e) => e.uid));
        return uids.has("after-the-burst") ? true : undefined;
      }, 6000);
      // The hub lists only the newest 1,000 entries, so the burst is counted in its store: every entry, once.
      const [burstAtHub] = await fed.hub.context.db.query<{ entries: string; uids: string }>(
        "SELECT count(*)::text AS entries, count(DISTINCT entry->>'uid')::text AS uids FROM decision_logs WHERE cluster = $1 AND entry->>'uid' LIKE 'burst-%'",
        [OTHER],
      );
      expect(burstAtHub).toEqual({ entries: "10001", uids: "10001" });
      expect((await health(other)).logs).toMatchObject({ segments: 0, dropped: 0 });
    } finally {
      await other.stop();
    }
  });

  it("keeps a batch its hub refuses on disk, retrying it, and says so in /healthz while its bundle polls succeed", async () => {
    const dir = join(root, "refused-batch-agent");
    // A denial with a field name holding a NUL character: the hub cannot store it (its JSON
    // column refuses \u0000) and answers 400. The agent itself never writes such an entry.
    mkdirSync(join(dir, "decisions"), { recursive: true });
    const entry = { time: new Date().toISOString(), uid: "unstorable", kind: "Pod", operation: "CREATE", user: "eve", "x\u0000": 1, allowed: false, bundleVersion: 1 };
    writeFileSync(join(dir, "decisions", "000000000001-00000000-0000-4000-8000-000000000001.ndjson"), `${JSON.stringify(entry)}\n`);
    const other = await startAgent({
      dataDir: dir,
      hubUrl: fed.hub.url,
      caPem: fed.hub.caPem,
      cluster: OTHER,
      joinToken: await joinToken(fed.admin, OTHER),
      webhookPort: 0,
      pollWaitSeconds: 1,
      logUploadIntervalMs: 100,
    });
    agents.push(other);
    try {
      const refused = await eventually("the agent says the hub refused the batch", () => other.health().errors.logs, 15_000);
      expect(refused).toMatch(/^the hub refused decision-log batch 00000000-0000-4000-8000-000000000001 \(\d{3}\); it stays on disk: /);
      // Long polls come and go (one a second here), each a success: none clears what the upload said.
      const synced = other.health().lastSync;
      await eventually("another bundle poll succeeds", () => (other.health().lastSync !== synced ? true : undefined), 5000);
      const h = other.health();
      expect(h.errors).toEqual({ logs: refused });
      expect(h.lastError).toBe(refused);
      expect(h.logs.segments).toBe(1);
    } finally {
      await other.close();
    }
  });

  describe("its identity", () => {
    it("reads its own cluster's bundle, and is refused another cluster's with 403", async () => {
      const creds = loadCredentials(join(agent.dataDir, "identity"))!;
      expect(creds.spiffeId).toBe(`spiffe://${FEDERATION}/region/eu-west/cluster/${CLUSTER}`);
      const me = clusterEndpoint(fed.hub.url, creds);
      const own = await call<Buffer>(me, "GET", `/v1/clusters/${CLUSTER}/bundle`, undefined, { raw: true, binary: true });
      expect(own.status).toBe(200);
      expect(decodeBundle(own.body).envelope.signed.cluster).toBe(CLUSTER);
      for (const path of [`/v1/clusters/${OTHER}/bundle`, `/v1/clusters/${OTHER}/effective`, `/v1/clusters/${OTHER}/decisions`]) {
        const error = await call(me, "GET", path).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error, path).toBeInstanceOf(HubError);
        expect((error as HubError).status, path).toBe(403);
      }
    });
    it("will not start as another cluster on its data folder", async () => {
      const run = await runPolity(["agent", "--hub", fed.hub.url, "--cluster", OTHER, "--data", agent.dataDir, "--listen", "127.0.0.1:0"]);
      expect(run.code).not.toBe(0);
      expect(run.out).toBe("");
      expect(run.err).toContain(`the data folder ${agent.dataDir} holds the identity of cluster ${CLUSTER}, not ${OTHER}`);
    });

    // Mistakes an operator makes and can fix are errors with exit status 2 (bad usage or
    // input) like every other command's, not "polity: internal error: …" with status 70.
    it("exits with status 2 and a plain error, not an internal error, for a data folder of another cluster or a busy webhook port", async () => {
      const wrongFolder = await runPolity(["agent", "--hub", fed.hub.url, "--cluster", OTHER, "--data", agent.dataDir, "--listen", "127.0.0.1:0"]);
      const busyPort = await runPolity(["agent", "--hub", fed.hub.url, "--cluster", OTHER, "--data", join(root, "busy-port-agent"), "--ca", fed.caFile, "--join-token", "unused", "--listen", new URL(agent.webhookUrl).host]);
      expect(busyPort.err).toMatch(/EADDRINUSE/);
      for (const run of [wrongFolder, busyPort]) {
        expect(run.err).not.toMatch(/internal error/);
        expect(run.err).toMatch(/^error: /);
        expect(run.code).toBe(2);
      }
    });
  });

  describe("its webhook, given what is not an AdmissionReview v1", () => {
    const good = () => withUid(PRIVILEGED, `after-${Date.now()}`);
    let rejectedBefore: number;

    beforeAll(async () => {
      rejectedBefore = (await health(agent)).decisions.rejected;
    });

    async function stillServing(): Promise<void> {
      const body = good();
      expectDenied(await review(agent, body), uidOf(body), /^denied by Polity: /);
    }

    it("refuses a body that is not JSON with 400 and a Status", async () => {
      expectStatus(await send(agent, { body: '{"apiVersion": "admission.k8s.io/v1", ' }), 400, /^not an AdmissionReview admission\.k8s\.io\/v1: not valid JSON/);
      expectStatus(await send(agent, { body: "" }), 400, /^not an AdmissionReview admission\.k8s\.io\/v1: /);
      await stillServing();
    });

    it("refuses JSON that is not a review with 400 naming what is wrong", async () => {
      expectStatus(await send(agent, { body: "[]" }), 400, /must be a JSON object/);
      expectStatus(await send(agent, { body: JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata: { name: "x" } }) }), 400, /kind must be "AdmissionReview", got "Pod"/);
      await stillServing();
    });

    it("refuses a v1beta1 review with 400 saying to register the webhook for v1", async () => {
      const beta = JSON.parse(PRIVILEGED) as { apiVersion: string };
      beta.apiVersion = "admission.k8s.io/v1beta1";
      expectStatus(await send(agent, { body: JSON.stringify(beta) }), 400, /apiVersion must be "admission\.k8s\.io\/v1", got "admission\.k8s\.io\/v1beta1".*admissionReviewVersions/);
      await stillServing();
    });

    it("refuses a review without a uid with 400 naming request.uid", async () => {
      const parsed = JSON.parse(PRIVILEGED) as { request: Record<string, unknown> };
      delete parsed.request.uid;
      expectStatus(await send(agent, { body: JSON.stringify(parsed) }), 400, /request\.uid: must be a non-empty string/);
      parsed.request.uid = "";
      expectStatus(await send(agent, { body: JSON.stringify(parsed) }), 400, /request\.uid/);
      await stillServing();
    });

    it("refuses a 9 MiB body with 413: by its declared length before reading it, or by counting when it is streamed", async () => {
      const huge = withUid(PRIVILEGED, "huge").replace('"debug"', `"${"x".repeat(9 * 1024 * 1024)}"`);
      expectStatus(await send(agent, { body: huge, headersOnly: true }), 413, /^the AdmissionReview is 94\d{5} bytes; the limit is 8388608$/);
      // Streamed, it is refused as soon as it passes the limit, before the rest is sent.
      expectStatus(await send(agent, { body: huge, chunked: true, sendAtMost: 8 * 1024 * 1024 + 256 * 1024 }), 413, /^the AdmissionReview is over the limit of 8388608 bytes$/);
      await stillServing();
    });

    it("refuses JSON nested 10,000 levels deep with 400, as not a review", async () => {
      expectStatus(await send(agent, { body: `${"[".repeat(10_000)}${"]".repeat(10_000)}` }), 400, /an AdmissionReview must be a JSON object/);
      expectStatus(await send(agent, { body: `${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}` }), 400, /kind must be "AdmissionReview"/);
      await stillServing();
    });

    it("decides a review whose object carries 10,000 levels of nesting where no policy looks", async () => {
      const deep = withUid(PRIVILEGED, "deep").replace('"privileged":true', `"privileged":true,"seLinuxOptions":${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}`);
      expectDenied(await review(agent, deep), "deep");
      await stillServing();
    });

    it("answers a wrong method with 405 and a wrong path with 404, each with a Status", async () => {
      expectStatus(await send(agent, { method: "GET" }), 405, /POST/);
      expectStatus(await send(agent, { method: "PUT", body: PRIVILEGED }), 405, /POST/);
      expectStatus(await send(agent, { path: "/mutate", body: PRIVILEGED }), 404, /no such endpoint \/mutate/);
      expectStatus(await send(agent, { path: "/" }), 404, /POST \/validate/);
      await stillServing();
    });

    it("counts what it refused, and still answers /healthz", async () => {
      const h = await health(agent);
      expect(h.httpStatus).toBe(200);
      // 2 not JSON, 2 not reviews, 1 v1beta1, 2 without uid, 2 too large, 2 nested arrays and objects (404 and 405 are not reviews at all).
      expect(h.decisions.rejected - rejectedBefore).toBe(11);
      expect(agent.child.exitCode).toBeNull();
    });

    // Closing the socket at once after the 413, with the client's upload still unread in its
    // buffers, would reset the connection, and a client still writing would often get
    // EPIPE/ECONNRESET instead of the 413: the webhook does a lingering close (RFC 9112
    // section 9.6).
    it("answers every 9 MiB review sent whole with a declared length with 413, never a reset connection", async () => {
      const huge = withUid(PRIVILEGED, "huge").replace('"debug"', `"${"x".repeat(9 * 1024 * 1024)}"`);
      const answers: string[] = [];
      for (let i = 0; i < 12; i++) answers.push(await send(agent, { body: huge }).then((a) => String(a.status), (e: unknown) => String(e)));
      expect(answers).toEqual(Array.from({ length: 12 }, () => "413"));
    });
  });

  describe("polity agent webhook-config", () => {
    interface WebhookConfiguration {
      readonly apiVersion: string;
      readonly kind: string;
      readonly webhooks: readonly {
        readonly name: string;
        readonly admissionReviewVersions: readonly string[];
        readonly sideEffects: string;
        readonly failurePolicy: string;
        readonly clientConfig: { readonly caBundle: string; readonly url?: string; readonly service?: { namespace: string; name: string; path: string } };
        readonly namespaceSelector: { readonly matchExpressions: readonly { key: string; operator: string; values: readonly string[] }[] };
      }[];
    }

    async function webhookConfig(...extra: string[]): Promise<WebhookConfiguration> {
      const run = await runPolity(["agent", "webhook-config", "--cluster", CLUSTER, "--data", agent.dataDir, ...extra]);
      expect(run.code, run.err).toBe(0);
      return parseYaml(run.out) as WebhookConfiguration;
    }

    it("prints a ValidatingWebhookConfiguration for v1 reviews, trusting the agent's webhook CA, exempting the system namespaces", async () => {
      const config = await webhookConfig();
      expect(config).toMatchObject({ apiVersion: "admissionregistration.k8s.io/v1", kind: "ValidatingWebhookConfiguration" });
      expect(config.webhooks).toHaveLength(1);
      const hook = config.webhooks[0]!;
      expect(hook.admissionReviewVersions).toEqual(["v1"]);
      expect(hook.sideEffects).toBe("None");
      expect(hook.failurePolicy).toBe("Fail");
      expect(hook.clientConfig.caBundle).toBe(readFileSync(join(agent.dataDir, "webhook", "ca.pem")).toString("base64"));
      expect(Buffer.from(hook.clientConfig.caBundle, "base64").toString("utf8")).toBe(agent.webhookCaPem);
      expect(hook.clientConfig.service).toEqual({ namespace: "polity-system", name: "polity-agent", path: "/validate", port: 443 });
      const exempt = hook.namespaceSelector.matchExpressions.find((e) => e.key === "kubernetes.io/metadata.name");
      expect(exempt?.operator).toBe("NotIn");
      expect(exempt?.values).toEqual(expect.arrayContaining(["kube-system", "polity-system"]));
    });

    it("points at a URL when given one", async () => {
      const config = await webhookConfig("--url", agent.webhookUrl.replace(/\/validate$/, ""));
      expect(config.webhooks[0]!.clientConfig.url).toBe(agent.webhookUrl);
    });
  });
});

// ---- who calls the webhook ------------------------------------------------------------------

describe("the webhook's callers", () => {
  let fed: Federation & { hub: RunningHub };
  let agent: RunningAgent;
  let apiServer: { cert: string; key: string };
  let stranger: { cert: string; key: string };
  let dataDir: string;

  /** A client certificate issued by a CA of its own (as a cluster's API server holds for webhooks). */
  async function clientCertificate(caName: string) {
    const { createCertificateAuthority, issueClusterCertificate, readCsr } = await import("../src/identity/ca.js");
    const { createCsr, newPrivateKey } = await import("../src/identity/enrollment.js");
    const { authority } = await createCertificateAuthority(caName, new Date());
    const key = await newPrivateKey();
    const issued = await issueClusterCertificate(authority, await readCsr(await createCsr("kube-apiserver", key)), { region: "r", cluster: "kube-apiserver" }, new Date(), 3600_000);
    return { ca: authority.certificatePem, client: { cert: issued.pem, key } };
  }

  beforeAll(async () => {
    fed = await startCopy("callers");
    const trusted = await clientCertificate("api-server-client-ca");
    apiServer = trusted.client;
    stranger = (await clientCertificate("someone-else")).client;
    dataDir = join(root, "callers-agent");
    agent = await startAgent({ dataDir, hubUrl: fed.hub.url, caPem: fed.hub.caPem, cluster: CLUSTER, joinToken: await joinToken(fed.admin, CLUSTER), webhookPort: 0, pollWaitSeconds: 2, callerCaPem: trusted.ca });
    agents.push(agent);
    await eventually("the agent holds a bundle", () => agent.health().bundleVersion ?? undefined);
  });

  it("records whether each decision's caller presented a certificate of its caller CA", async () => {
    for (const [uid, client] of [
      ["from-the-api-server", apiServer],
      ["from-a-stranger", stranger],
      ["from-anyone", undefined],
    ] as const) {
      const answer = await send(agent, { body: withUid(PRIVILEGED, uid), ...(client === undefined ? {} : { client }) });
      expectDenied(answer.json as AdmissionReviewResponse, uid);
    }
    const entries = await eventually("the denials reach the hub", async () => {
      const { items } = await decisionsAtHub(fed.admin);
      return items.length >= 3 ? items : undefined;
    });
    const byUid = new Map(entries.map((e) => [e.uid, (e as DecisionEntry & { authenticated?: boolean }).authenticated]));
    expect(Object.fromEntries(byUid)).toMatchObject({ "from-the-api-server": true, "from-a-stranger": false, "from-anyone": false });
  });

  it("refuses callers without such a certificate with 401 when told to require one", async () => {
    await agent.close();
    const strict = await startAgent({ dataDir, hubUrl: fed.hub.url, cluster: CLUSTER, webhookPort: 0, callerCaPem: (await clientCertificate("unused")).ca, requireAuthenticatedCaller: true });
    agents.push(strict);
    try {
      expectStatus(await send(strict, { body: withUid(PRIVILEGED, "strict") }), 401, /takes reviews only from a caller with a client certificate of its caller CA/);
      expectStatus(await send(strict, { body: withUid(PRIVILEGED, "strict"), client: stranger }), 401, /caller CA/);
      expect(strict.health().decisions).toMatchObject({ denied: 0, rejected: 2 });
    } finally {
      await strict.close();
    }
  });
});

// ---- a decision that would cost too much ---------------------------------------------------------

describe("a decision whose policies would cost more than its budget", () => {
  let fed: Federation & { hub: RunningHub };
  let agent: RunningAgent;

  beforeAll(async () => {
    fed = await startCopy("costly");
    // 200 policies, each under the limit of one expression, together far over a decision's budget.
    const heavy = Array.from(
      { length: 200 },
      (_, i) =>
        `---\napiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: pairs-${i}, owner: platform-team }\nspec:\n  domain: workload-security\n  match: { kinds: [ConfigMap] }\n  validations:\n    - name: pairs\n      expression: "object.data.items.all(x, object.data.items.all(y, x + y >= 0))"\n  enforcement: deny\n`,
    ).join("");
    await call(fed.admin, "POST", "/v1/apply", { files: [{ name: GLOBAL.name, content: `${GLOBAL.content.trimEnd()}\n${heavy}` }] });
    agent = await startAgent({ dataDir: join(root, "costly-agent"), hubUrl: fed.hub.url, caPem: fed.hub.caPem, cluster: CLUSTER, joinToken: await joinToken(fed.admin, CLUSTER), webhookPort: 0, pollWaitSeconds: 2 });
    agents.push(agent);
    await eventually("the agent holds the costly bundle", () => ((agent.health().bundleVersion ?? 0) > 0 && agent.health().bundleHash !== null ? true : undefined));
  });

  afterAll(async () => {
    await agent.close();
  });

  it("stops at the budget and fails the rules left by their failure policy, and /healthz answers while reviews are in flight", async () => {
    const configMap = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "big", namespace: "shop" }, data: { items: Array.from({ length: 300 }, (_, i) => i) } };
    const body = (uid: string) =>
      JSON.stringify({
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        request: { uid, kind: { group: "", version: "v1", kind: "ConfigMap" }, resource: { group: "", version: "v1", resource: "configmaps" }, namespace: "shop", operation: "CREATE", userInfo: { username: "u" }, object: configMap },
      });
    const reviews = Array.from({ length: 5 }, (_, i) => review(agent, body(`costly-${i}`)));
    const healthz = health(agent);
    const answers = await Promise.all(reviews);
    for (const answer of answers) {
      expect(answer.response.allowed).toBe(false);
      expect(answer.response.status?.message).toMatch(/the decision's cost budget of 10000000 is spent/);
    }
    expect((await healthz).httpStatus).toBe(200);
  });
});

// ---- decision logs on disk, cut into batches the hub takes ----------------------------------

describe("decision logs on disk", () => {
  const denial = (uid: string, message = "pods must carry an owner label") => ({
    time: "2025-01-01T00:00:00.000Z",
    uid,
    kind: "Pod",
    operation: "CREATE",
    allowed: false,
    bundleVersion: 1,
    authenticated: true,
    violations: [{ policy: "require-owner-label", rule: "owner-label", message, enforcement: "deny" }],
  });

  it("cuts lines into batches in order, none over the limits unless a single line is, the same lines always the same way", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 40 }), { maxLength: 60 }), fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 200 }), (lines, entries, bytes) => {
        const batches = batchesOf(lines, { entries, bytes });
        expect(batches.flat()).toEqual(lines);
        expect(batchesOf(lines, { entries, bytes })).toEqual(batches);
        for (const batch of batches) {
          expect(batch.length).toBeGreaterThan(0);
          expect(batch.length).toBeLessThanOrEqual(entries);
          if (batch.length > 1) expect(batch.reduce((sum, l) => sum + Buffer.byteLength(l) + 1, 0)).toBeLessThanOrEqual(bytes);
        }
      }),
    );
  });

  it("sends a segment of 25,000 entries as three batches with ids of its own, and after a restart resumes at the batch the hub does not have yet, under the same id", () => {
    const dir = join(root, "segment-parts");
    const options = DEFAULT_LOG_OPTIONS;
    const first = new DecisionLog(dir, options);
    for (let i = 0; i < 25_000; i++) first.denied(denial(`part-${i}`));
    first.flush();
    const part0 = first.nextBatch()!;
    expect(part0.batch).toMatch(/^[0-9a-f-]{36}\.0$/);
    expect(part0.entries).toHaveLength(10_000);
    expect(Buffer.byteLength(JSON.stringify({ batch: part0.batch, entries: part0.entries, dropped: part0.dropped }))).toBeLessThan(8 * 1024 * 1024);
    // Not acknowledged: asked again (or after a crash), the same batch under the same id.
    expect(new DecisionLog(dir, options).nextBatch()).toMatchObject({ batch: part0.batch, entries: part0.entries });
    part0.done();
    // A restart after the first part: the second, then the third, each once.
    const second = new DecisionLog(dir, options);
    const part1 = second.nextBatch()!;
    expect(part1.batch).toBe(part0.batch.replace(/0$/, "1"));
    expect((part1.entries[0] as { uid: string }).uid).toBe("part-10000");
    part1.done();
    const part2 = second.nextBatch()!;
    expect(part2.batch).toBe(part0.batch.replace(/0$/, "2"));
    expect(part2.entries.map((e) => (e as { uid: string }).uid)).toEqual(Array.from({ length: 5000 }, (_, i) => `part-${20_000 + i}`));
    part2.done();
    expect(second.nextBatch()).toBeUndefined();
    expect(second.stats()).toMatchObject({ segments: 0, dropped: 0 });
  });

  it("keeps a segment that fits one batch under the segment's own id, and counts lines on disk that are not entries as dropped", () => {
    const dir = join(root, "segment-whole");
    const log = new DecisionLog(dir, DEFAULT_LOG_OPTIONS);
    log.denied(denial("whole-1"));
    log.denied(denial("whole-2"));
    log.flush();
    const [segment] = readdirSync(dir).filter((n) => n.endsWith(".ndjson"));
    writeFileSync(join(dir, segment!), `${readFileSync(join(dir, segment!), "utf8")}[1,2]\n{"torn\n`);
    const batch = log.nextBatch()!;
    expect(batch.batch).toBe(segment!.slice(13, 49));
    expect(batch.entries.map((e) => (e as { uid: string }).uid)).toEqual(["whole-1", "whole-2"]);
    batch.done();
    expect(log.stats()).toMatchObject({ segments: 0, dropped: 2, droppedUnreported: 2 });
  });

  it("drops, and counts, an entry larger than a batch may carry, instead of writing a segment the hub would refuse", () => {
    const dir = join(root, "entry-too-large");
    const log = new DecisionLog(dir, DEFAULT_LOG_OPTIONS);
    log.denied(denial("huge", "x".repeat(9 * 1024 * 1024)));
    log.denied(denial("small"));
    log.flush();
    const batch = log.nextBatch()!;
    expect(batch.entries.map((e) => (e as { uid: string }).uid)).toEqual(["small"]);
    expect(batch.dropped).toBe(1);
  });

  it("samples the allowed decisions not yet sampled when it is closed, and counts them on disk at every flush", () => {
    const dir = join(root, "allowed-unsampled");
    const allowed = (uid: string) => (represents: number) => ({ time: "2025-01-01T00:00:00.000Z", uid, kind: "Pod", operation: "CREATE", allowed: true, bundleVersion: 1, authenticated: true, represents });
    const first = new DecisionLog(dir, DEFAULT_LOG_OPTIONS);
    for (let i = 1; i <= 30; i++) first.allowed(allowed(`a-${i}`));
    // A crash after a flush: the 30 are counted on disk, and the next start goes on from there.
    first.flush();
    const second = new DecisionLog(dir, DEFAULT_LOG_OPTIONS);
    for (let i = 31; i <= 105; i++) second.allowed(allowed(`a-${i}`));
    second.close();
    const represented: [string, number][] = [];
    for (let batch = second.nextBatch(); batch !== undefined; batch = second.nextBatch()) {
      for (const e of batch.entries as { uid: string; represents: number }[]) represented.push([e.uid, e.represents]);
      batch.done();
    }
    expect(represented).toEqual([
      ["a-100", 100],
      ["a-105", 5],
    ]);
  });
});

// ---- 2 and 7. a partition: the hub killed, the agent restarted, the hub back ------------------

describe("an agent cut off from its hub", () => {
  let copy: Federation;
  let hub: HubProcess;
  let admin: HubEndpoint;
  let agent: AgentProcess;
  let dataDir: string;
  let held: number;
  /** Every uid the agent denied, in order. */
  const denied: string[] = [];

  async function deny(uid: string): Promise<void> {
    expectDenied(await review(agent, withUid(PRIVILEGED, uid)), uid);
    denied.push(uid);
  }

  beforeAll(async () => {
    copy = copyFederation("partition");
    dataDir = join(root, "partition-agent");
    hub = await spawnHub(copy.dir);
    admin = { ...copy.admin, url: hub.url };
    agent = await spawnAgent({ hubUrl: hub.url, dataDir, caFile: copy.caFile, joinToken: await joinToken(admin, CLUSTER), pollWait: 2 });
    held = await eventually("the agent holds a bundle from its hub", async () => (await health(agent)).bundleVersion ?? undefined);
    await deny("before-the-partition");
  });

  afterAll(async () => {
    await agent?.stop();
    await hub?.stop();
  });

  it("keeps deciding from the bundle in its memory when its hub is killed with SIGKILL", async () => {
    await hub.kill();
    expect(hub.child.signalCode).toBe("SIGKILL");
    await expect(call(admin, "GET", "/healthz", undefined, { timeoutMs: 2000 })).rejects.toThrow(/cannot reach the hub/);
    for (const uid of ["hub-down-1", "hub-down-2", "hub-down-3"]) await deny(uid);
    expectAllowed(await review(agent, COMPLIANT), uidOf(COMPLIANT));
    const h = await eventually("the agent notices its hub is gone", async () => {
      const now = await health(agent);
      return now.lastError === null ? undefined : now;
    });
    expect(h).toMatchObject({ bundleVersion: held, bundleSource: "hub", httpStatus: 200 });
    expect(h.lastError).toMatch(/unreachable|refused|ECONNREFUSED/);
  });

  it("restarted while its hub is down, decides at once from its disk, and reports itself stale", async () => {
    expect(await agent.stop()).toBe(0);
    // No join token, no CA: everything it needs is in its data folder.
    agent = await spawnAgent({ hubUrl: hub.url, dataDir });
    // The very first review after it prints its address is decided by the bundle on disk, not failed closed.
    await deny("restarted-1");
    const h = await health(agent);
    expect(h).toMatchObject({ bundleVersion: held, bundleSource: "disk", stale: true, lastSync: null, lastRefusal: null, enrolled: true, httpStatus: 200 });
    expect(h.decisions.failedClosed).toBe(0);
    expect((await health(agent, "/readyz")).httpStatus).toBe(200);
    await deny("restarted-2");
    // A hundred allowed decisions: logged as one sample that represents them all.
    for (let i = 1; i <= 100; i++) expectAllowed(await review(agent, withUid(COMPLIANT, `allowed-${i}`)), `allowed-${i}`);
  });

  it("resyncs when its hub comes back on the same data folder and address", async () => {
    hub = await spawnHub(copy.dir, hub.port);
    expect(hub.url).toBe(admin.url);
    const synced = await eventually("the agent reaches its hub again", async () => {
      const h = await health(agent);
      return h.stale === false && h.lastSync !== null ? h : undefined;
    }, 25_000);
    expect(synced).toMatchObject({ bundleVersion: held, lastError: null });
    // And it follows the hub again: a change reaches it by long poll.
    await call(admin, "POST", "/v1/apply", { files: [GLOBAL_WITH_WARNING] });
    const newer = await eventually("the change reaches the agent", async () => {
      const h = await health(agent);
      return h.bundleVersion !== null && h.bundleVersion > held ? h : undefined;
    }, 5000);
    expect(newer).toMatchObject({ bundleSource: "hub", stale: false });
    await eventually("the hub lists the agent in sync", async () => {
      const view = (await call<ClusterView>(admin, "GET", `/v1/clusters/${CLUSTER}`)).body;
      return view.agent?.inSync === true ? view : undefined;
    }, 12_000);
  }, 60_000);

  it("delivers every denial made while the hub was down, and across its own restart, to the hub exactly once", async () => {
    const logs = await eventually("every denial reaches the hub", async () => {
      const got = await decisionsAtHub(admin);
      const uids = new Set(got.items.map((e) => e.uid));
      return denied.every((uid) => uids.has(uid)) ? got : undefined;
    }, 30_000);
    const denials = logs.items.filter((e) => !e.allowed);
    expect(denials.map((e) => e.uid).sort()).toEqual([...denied].sort());
    for (const entry of denials) {
      expect(entry.bundleVersion).toBe(held);
      expect(entry.violations?.map((v) => v.policy)).toContain("pod-security");
    }
    expect(logs.dropped).toBe(0);
  }, 40_000);

  it("sends allowed decisions as samples, each saying how many decisions it represents", async () => {
    const samples = (await decisionsAtHub(admin)).items.filter((e) => e.allowed);
    // The hundredth after the restart stands for those hundred; the one compliant pod allowed
    // before the restart was sampled when the agent stopped, standing for itself.
    expect(samples.map((e) => [e.uid, e.represents]).sort()).toEqual([[uidOf(COMPLIANT), 1], ["allowed-100", 100]].sort());
    for (const sample of samples) {
      expect(sample).toMatchObject({ allowed: true, bundleVersion: held });
      expect(sample.violations).toBeUndefined();
    }
  });

  // Allowed decisions are counted until the hundredth makes a sample; those not yet sampled
  // when the agent stops are sampled then. DESIGN section 6: decision logs lose none within
  // their buffer bounds.
  it("accounts for every allowed decision across its restart: the samples' represents add up to all 101", async () => {
    const samples = (await decisionsAtHub(admin)).items.filter((e) => e.allowed);
    expect(samples.reduce((sum, e) => sum + (e.represents ?? 1), 0)).toBe(101);
  });
});

// ---- 3 and 4. bundles offered to an agent, and bundles on its disk ------------------------------

describe("bundles", () => {
  let fed: Federation & { hub: RunningHub };
  let agent: RunningAgent;
  const clock = { offsetMs: 0 };
  let dataDir: string;
  /** The agent's data folder (identity, webhook, bundles) holding version 2 as current and version 1 as previous. */
  let snapshot: string;
  let v1: Buffer;
  let v2: Buffer;
  /** Bundles the agent refused, as its log tells. */
  let refusals = 0;

  const bundleFile = (dir: string, name: "current" | "previous") => join(dir, "bundles", `${name}.bundle`);
  const metadataOf = (bytes: Buffer): BundleMetadata => decodeBundle(bytes).envelope.signed;
  const hubKey = () => fed.hub.context.bundles.key.privateKey;

  /** A bundle signed like the hub signs, with some metadata changed. */
  function forge(from: Buffer, change: Partial<Omit<BundleMetadata, "type" | "specVersion">>, key = hubKey(), target?: Buffer): Buffer {
    const { type: _type, specVersion: _specVersion, ...metadata } = metadataOf(from);
    const body = target ?? decodeBundle(from).target;
    const signed: Bundle = signBundle({ ...metadata, targetLength: body.length, ...change }, body, key);
    return encodeBundle(signed);
  }

  beforeAll(async () => {
    fed = await startCopy("bundles");
    dataDir = join(root, "bundles-agent");
    agent = await startAgent({
      dataDir,
      hubUrl: fed.hub.url,
      caPem: fed.hub.caPem,
      cluster: CLUSTER,
      joinToken: await joinToken(fed.admin, CLUSTER),
      webhookPort: 0,
      pollWaitSeconds: 2,
      now: () => new Date(Date.now() + clock.offsetMs),
      log: { info: () => undefined, warn: (message) => void (message === "refused a bundle" && refusals++) },
    });
    agents.push(agent);
    const first = await eventually("the agent holds a bundle", () => agent.health().bundleVersion ?? undefined);
    v1 = readFileSync(bundleFile(dataDir, "current"));
    await call(fed.admin, "POST", "/v1/apply", { files: [GLOBAL_WITH_WARNING] });
    await eventually("the agent holds the next bundle", () => ((agent.health().bundleVersion ?? 0) > first ? true : undefined));
    v2 = readFileSync(bundleFile(dataDir, "current"));
    expect(readFileSync(bundleFile(dataDir, "previous"))).toEqual(v1);
    snapshot = join(root, "bundles-snapshot");
    for (const part of ["identity", "webhook", "bundles"]) cpSync(join(dataDir, part), join(snapshot, part), { recursive: true });
  });

  describe("offered to a running agent", () => {
    afterAll(async () => {
      await agent.close();
    });

    it("refuses an older version (rollback) and keeps enforcing the one it holds", () => {
      expect(metadataOf(v1).version).toBeLessThan(metadataOf(v2).version);
      expect(agent.bundle.offer(v1, new Date())).toBeUndefined();
      expect(agent.health()).toMatchObject({ bundleVersion: metadataOf(v2).version, lastRefusal: { problem: "rollback" } });
      expect(agent.health().lastRefusal?.message).toMatch(/older than version/);
      expect(readFileSync(bundleFile(dataDir, "current"))).toEqual(v2);
    });

    it("refuses a newer bundle that had already expired when offered (freeze)", () => {
      const held = metadataOf(v2);
      const frozen = forge(v2, { version: held.version + 1, issuedAt: "2020-01-01T00:00:00.000Z", expires: "2020-01-02T00:00:00.000Z" });
      expect(agent.bundle.offer(frozen, new Date())).toBeUndefined();
      expect(agent.health()).toMatchObject({ bundleVersion: held.version, lastRefusal: { problem: "expired" } });
      // The time of the offer decides: a bundle offered a second after its expiry is refused too.
      const expires = Date.parse(held.expires);
      const fresh = forge(v2, { version: held.version + 1, expires: new Date(expires).toISOString() });
      expect(agent.bundle.offer(fresh, new Date(expires + 1000))).toBeUndefined();
      expect(agent.health().lastRefusal?.problem).toBe("expired");
    });

    it("refuses another cluster's bundle, though its hub signed it", async () => {
      const other = (await call<Buffer>(fed.admin, "GET", `/v1/clusters/${OTHER}/bundle`, undefined, { raw: true, binary: true })).body;
      expect(metadataOf(other).cluster).toBe(OTHER);
      expect(agent.bundle.offer(other, new Date())).toBeUndefined();
      expect(agent.health()).toMatchObject({ bundleVersion: metadataOf(v2).version, lastRefusal: { problem: "wrong-cluster" } });
      expect(agent.health().lastRefusal?.message).toContain(OTHER);
    });

    it("refuses a bundle signed by another key (untrusted-key), and one signed by another key under its hub's key id (bad-signature)", () => {
      const held = metadataOf(v2);
      const stranger = generateKeyPairSync("ed25519").privateKey;
      expect(agent.bundle.offer(forge(v2, { version: held.version + 1 }, stranger), new Date())).toBeUndefined();
      expect(agent.health().lastRefusal?.problem).toBe("untrusted-key");
      const impostor = decodeBundle(forge(v2, { version: held.version + 1 }, stranger));
      const hubKeyId = decodeBundle(v2).envelope.signatures[0]!.keyId;
      const relabelled = encodeBundle({ ...impostor, envelope: { ...impostor.envelope, signatures: [{ keyId: hubKeyId, sig: impostor.envelope.signatures[0]!.sig }] } });
      expect(agent.bundle.offer(relabelled, new Date())).toBeUndefined();
      expect(agent.health()).toMatchObject({ bundleVersion: held.version, lastRefusal: { problem: "bad-signature" } });
    });

    it("refuses its own version number with other contents (equivocation)", () => {
      const held = metadataOf(v2);
      const other = decodeBundle(v1).target;
      expect(agent.bundle.offer(forge(v2, { targetHash: metadataOf(v1).targetHash }, hubKey(), other), new Date())).toBeUndefined();
      expect(agent.health()).toMatchObject({ bundleVersion: held.version, lastRefusal: { problem: "equivocation" } });
    });

    it("keeps enforcing the bundle it holds after that bundle's expiry, and reports itself stale", async () => {
      const held = metadataOf(v2);
      clock.offsetMs = Date.parse(held.expires) - Date.now() + 3600_000;
      try {
        const h = agent.health();
        expect(h).toMatchObject({ bundleVersion: held.version, stale: true });
        const answer = await review({ webhookUrl: agent.webhookUrl, webhookCaPem: agent.webhookCaPem }, withUid(PRIVILEGED, "past-expiry"));
        expectDenied(answer, "past-expiry");
      } finally {
        clock.offsetMs = 0;
      }
      expect(agent.health().stale).toBe(false);
    });

    it("accepts a newer bundle signed by its hub's key: what it refused, it refused for the reason it gave", () => {
      const held = metadataOf(v2);
      const next = forge(v2, { version: held.version + 1 });
      expect(agent.bundle.offer(next, new Date())?.metadata.version).toBe(held.version + 1);
      expect(agent.health().bundleVersion).toBe(held.version + 1);
      expect(readFileSync(bundleFile(dataDir, "current"))).toEqual(next);
      expect(readFileSync(bundleFile(dataDir, "previous"))).toEqual(v2);
    });

    // Holding a newer version than its hub has (a hub restored from a backup, a stale
    // mirror; here the bundle just accepted), the agent asks with If-None-Match: "<held>" and
    // the hub answers at once with its older bundle (its version differs): the agent refuses
    // it as a rollback and asks again later and later, not at once, saying why.
    it("backs off when its hub keeps answering with a bundle it refuses, instead of asking again at once", async () => {
      const before = refusals;
      await sleep(2000);
      expect(refusals - before).toBeLessThanOrEqual(4);
      const why = await eventually("the agent says why it refuses its hub's bundle", () => agent.health().errors.bundle, 5000);
      expect(why).toMatch(/^refused the bundle the hub sent \(rollback\): .*older than version/);
      expect(agent.health().lastError).toMatch(/rollback/);
    });
  });

  describe("from a hub that answers with hundreds of MiB", () => {
    let impostor: Impostor;

    beforeAll(async () => {
      const serving = await fed.hub.context.identity.serverCertificate(["localhost"], ["127.0.0.1"]);
      impostor = await hugeAnswers(serving, 300, "application/vnd.polity.bundle", { etag: '"999999"' });
    });

    afterAll(() => impostor.close());

    it("refuses the answer past the bundle bound, keeps deciding from its disk, and stays up across restarts", async () => {
      const dir = join(root, "huge-answer");
      cpSync(snapshot, dir, { recursive: true });
      for (let start = 0; start < 2; start++) {
        const agent = await spawnAgent({ hubUrl: impostor.url, dataDir: dir });
        try {
          const h = await eventually("the agent refuses the answer", async () => ((await health(agent)).errors.bundle === undefined ? undefined : health(agent)), 20_000);
          expect(h.errors.bundle).toMatch(/^refused the hub's answer: larger than a bundle may be \(67108864 bytes\): GET \/v1\/agent\/bundle: the answer is over 67108864 bytes/);
          expect(h).toMatchObject({ bundleVersion: metadataOf(v2).version, bundleSource: "disk" });
          expectDenied(await review(agent, withUid(PRIVILEGED, `huge-${start}`)), `huge-${start}`);
          expect(agent.child.exitCode).toBeNull();
        } finally {
          expect(await agent.stop()).toBe(0);
        }
      }
      // It read what the bound allows and stopped: the impostor never got to send its 300 MiB twice.
      expect(impostor.sent()).toBeLessThan(600);
    });
  });

  describe("on its disk, when it restarts with its hub down", () => {
    let hubUrl: string;

    beforeAll(async () => {
      hubUrl = `https://127.0.0.1:${await deadPort()}`;
    });

    /** A copy of the agent's data folder with `tamper` applied, and the real agent started on it. */
    async function restartedOn(name: string, tamper: (dir: string) => void): Promise<AgentProcess> {
      const dir = join(root, `tampered-${name}`);
      cpSync(snapshot, dir, { recursive: true });
      tamper(dir);
      return spawnAgent({ hubUrl, dataDir: dir });
    }

    function flipTarget(path: string): void {
      const bytes = readFileSync(path);
      const at = bytes.indexOf(10) + 1 + Math.floor((bytes.length - bytes.indexOf(10)) / 2);
      bytes[at] = bytes[at]! ^ 0x01;
      writeFileSync(path, bytes);
    }

    function flipSignature(path: string): void {
      const bytes = readFileSync(path);
      const at = bytes.indexOf('"sig":"') + 7 + 10;
      bytes[at] = bytes[at] === 0x41 ? 0x42 : 0x41; // another base64 letter
      writeFileSync(path, bytes);
    }

    function flipMetadata(path: string): void {
      const bytes = readFileSync(path);
      // Not the region, which is checked before the signature (wrong-region): its issue time.
      const at = bytes.indexOf('"issuedAt":"20') + '"issuedAt":"2'.length;
      bytes[at] = bytes[at]! ^ 0x01; // 20xx -> 21xx
      writeFileSync(path, bytes);
    }

    /**
     * A refused current.bundle leaves only previous.bundle, which is older than the newest
     * bundle the agent verified: enforcing it would be a rollback, so the agent fails closed
     * until its hub answers, saying why (issue 10, item 2: it used to enforce previous.bundle).
     */
    async function expectNoRollback(agent: AgentProcess, problem: string): Promise<void> {
      const h = await health(agent);
      expect(h).toMatchObject({ bundleVersion: null, bundleSource: null, stale: true, highWater: { version: metadataOf(v2).version, confirmed: false } });
      expect(h.lastRefusal).toMatchObject({ problem: "rollback" });
      expect(h.lastRefusal?.message).toMatch(/^previous\.bundle on disk: the bundle is version \d+, older than version \d+ already held/);
      expect(agent.output()).toContain(`"problem":"${problem}"`);
      expect(agent.output()).toMatch(/"message":"current\.bundle on disk: /);
      for (const body of [withUid(PRIVILEGED, `tampered-${problem}`), COMPLIANT]) {
        expect((await review(agent, body)).response).toMatchObject({ allowed: false, status: { code: 503, message: expect.stringMatching(/holds no verified policy bundle/) } });
      }
      // previous.bundle stays where it is: it is a genuine bundle, only too old to enforce.
      expect(existsSync(bundleFile(agent.dataDir, "previous"))).toBe(true);
    }

    it("enforces current.bundle even past its expiry, and reports itself stale", async () => {
      const dir = join(root, "restarted-expired");
      cpSync(snapshot, dir, { recursive: true });
      const expires = Date.parse(metadataOf(v2).expires);
      const skew = expires + 3600_000 - Date.now();
      const late = await startAgent({ dataDir: dir, hubUrl, cluster: CLUSTER, webhookPort: 0, now: () => new Date(Date.now() + skew) });
      agents.push(late);
      try {
        expect(late.health()).toMatchObject({ bundleVersion: metadataOf(v2).version, bundleSource: "disk", stale: true, lastRefusal: null });
        expectDenied(await review(late, withUid(PRIVILEGED, "expired-on-disk")), "expired-on-disk");
      } finally {
        await late.close();
      }
    });

    it("refuses current.bundle with a byte of its policy set flipped (target-mismatch), and will not fall back to the older previous.bundle", async () => {
      const agent = await restartedOn("target", (dir) => flipTarget(bundleFile(dir, "current")));
      try {
        await expectNoRollback(agent, "target-mismatch");
      } finally {
        expect(await agent.stop()).toBe(0);
      }
    });

    it("refuses current.bundle with a byte of its signature changed (bad-signature), and will not fall back to the older previous.bundle", async () => {
      const agent = await restartedOn("signature", (dir) => flipSignature(bundleFile(dir, "current")));
      try {
        await expectNoRollback(agent, "bad-signature");
      } finally {
        expect(await agent.stop()).toBe(0);
      }
    });

    it("refuses current.bundle with a byte of its signed metadata changed (bad-signature), and will not fall back to the older previous.bundle", async () => {
      const agent = await restartedOn("metadata", (dir) => flipMetadata(bundleFile(dir, "current")));
      try {
        await expectNoRollback(agent, "bad-signature");
      } finally {
        expect(await agent.stop()).toBe(0);
      }
    });

    it("refuses previous.bundle copied over current.bundle (a rollback on disk), and fails closed", async () => {
      const agent = await restartedOn("copied-back", (dir) => cpSync(bundleFile(dir, "previous"), bundleFile(dir, "current")));
      try {
        const h = await health(agent);
        expect(h).toMatchObject({ bundleVersion: null, stale: true, lastRefusal: { problem: "rollback" } });
        expect(agent.output()).toMatch(/"message":"current\.bundle on disk: the bundle is version \d+, older than version \d+ already held/);
        expect((await review(agent, COMPLIANT)).response.allowed).toBe(false);
      } finally {
        expect(await agent.stop()).toBe(0);
      }
    });

    it("refuses bundles signed by another key when the pinned key was replaced with them, and fails closed", async () => {
      const stranger = generateKeyPairSync("ed25519");
      const agent = await restartedOn("key-replaced", (dir) => {
        writeFileSync(join(dir, "identity", "bundle-key.pem"), stranger.publicKey.export({ type: "spki", format: "pem" }));
        writeFileSync(bundleFile(dir, "current"), forge(v2, { version: metadataOf(v2).version + 100 }, stranger.privateKey));
      });
      try {
        // An agent enrolled since roots verifies against its root (README, Trust model), not the
        // pinned key: the forged bundle is refused and set aside, and previous.bundle, older
        // than the high-water mark, is refused as a rollback.
        const h = await health(agent);
        expect(h).toMatchObject({ bundleVersion: null, lastRefusal: { problem: "rollback" } });
        expect(readdirSync(join(agent.dataDir, "bundles")).some((f) => f.startsWith("current.bundle.refused-"))).toBe(true);
        expect(agent.output()).toMatch(/not signed by a key this agent's root allows for its region eu-west/);
        expect((await review(agent, withUid(PRIVILEGED, "key-replaced"))).response.allowed).toBe(false);
      } finally {
        expect(await agent.stop()).toBe(0);
      }
    });

    it("with both bundles tampered, fails closed: denies every review saying it holds no verified bundle, and is not ready", async () => {
      const agent = await restartedOn("both", (dir) => {
        flipTarget(bundleFile(dir, "current"));
        flipSignature(bundleFile(dir, "previous"));
      });
      try {
        const h = await health(agent);
        expect(h).toMatchObject({ bundleVersion: null, bundleSource: null, stale: true, httpStatus: 200 });
        expect(h.lastRefusal).toMatchObject({ problem: "bad-signature" });
        expect(h.lastRefusal?.message).toMatch(/^previous\.bundle on disk: /);
        expect((await health(agent, "/readyz")).httpStatus).toBe(503);
        for (const body of [PRIVILEGED, COMPLIANT]) {
          expect(await review(agent, body)).toEqual({
            apiVersion: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response: {
              uid: uidOf(body),
              allowed: false,
              status: { code: 503, reason: "ServiceUnavailable", message: expect.stringMatching(/holds no verified policy bundle/) },
            },
          });
        }
        expect((await health(agent)).decisions.failedClosed).toBe(2);
      } finally {
        expect(await agent.stop()).toBe(0);
      }
    });
  });

  describe("on its disk, when it restarts with its hub up", () => {
    it("moves a tampered current.bundle aside, and keeps the bundle it enforced, not the tampered one, as previous.bundle once its hub's arrives", async () => {
      const dir = join(root, "tampered-then-synced");
      cpSync(snapshot, dir, { recursive: true });
      const tampered = readFileSync(bundleFile(dir, "current"));
      tampered[tampered.length - 10] = tampered[tampered.length - 10]! ^ 0x01;
      writeFileSync(bundleFile(dir, "current"), tampered);
      // The hub holds version 2 (the newer one forged above was never the hub's): the agent
      // refuses the tampered version 2 and will not fall back to version 1 (older than the
      // newest it verified), so it fails closed until it pulls version 2 again.
      const restarted = await startAgent({ dataDir: dir, hubUrl: fed.hub.url, cluster: CLUSTER, webhookPort: 0, pollWaitSeconds: 2 });
      agents.push(restarted);
      try {
        expect(restarted.health()).toMatchObject({ bundleVersion: null, lastRefusal: { problem: "rollback" } });
        await eventually("the agent pulls its hub's bundle", () => (restarted.health().bundleVersion === metadataOf(v2).version ? true : undefined));
        // The hub, reached over mutual TLS, confirms the high-water mark at its next answer.
        await eventually("the hub confirms the high-water mark", () => (restarted.health().highWater.confirmed ? true : undefined));
        expect(restarted.health().highWater).toEqual({ version: metadataOf(v2).version, confirmed: true });
        expect(readFileSync(bundleFile(dir, "current"))).toEqual(v2);
        expect(readFileSync(bundleFile(dir, "previous"))).toEqual(v1);
        const aside = readdirSync(join(dir, "bundles")).filter((name) => name.startsWith("current.bundle.refused-"));
        expect(aside).toHaveLength(1);
        expect(readFileSync(join(dir, "bundles", aside[0]!))).toEqual(tampered);
      } finally {
        await restarted.close();
      }
    });
  });
});

// ---- decision logs through a kill -9 and an outage ---------------------------------------------

describe("decision logs of a real agent", () => {
  let copy: Federation;
  let hub: HubProcess;
  let admin: HubEndpoint;
  let dataDir: string;

  beforeAll(async () => {
    copy = copyFederation("logs-kill");
    dataDir = join(root, "logs-kill-agent");
    hub = await spawnHub(copy.dir);
    admin = { ...copy.admin, url: hub.url };
    const agent = await spawnAgent({ hubUrl: hub.url, dataDir, caFile: copy.caFile, joinToken: await joinToken(admin, CLUSTER) });
    await eventually("the agent holds a bundle", async () => (await health(agent)).bundleVersion ?? undefined);
    expect(await agent.stop()).toBe(0);
  });

  afterAll(async () => {
    await hub?.stop();
  });

  /** Denies `count` reviews, `parallel` at a time; the uids, in the order they were answered. */
  async function denyMany(agent: AgentProcess, prefix: string, count: number, parallel = 16): Promise<string[]> {
    const answered: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (next < count) {
          const uid = `${prefix}-${next++}`;
          expectDenied(await review(agent, withUid(PRIVILEGED, uid)), uid);
          answered.push(uid);
        }
      }),
    );
    return answered;
  }

  it("loses no answered denial when the agent is killed with SIGKILL right after answering", async () => {
    const agent = await spawnAgent({ hubUrl: hub.url, dataDir });
    const answered = await denyMany(agent, "killed", 600);
    await agent.kill();
    expect(agent.child.signalCode).toBe("SIGKILL");
    const restarted = await spawnAgent({ hubUrl: hub.url, dataDir });
    try {
      const atHub = await eventually(
        "every answered denial reaches the hub",
        async () => {
          const uids = new Set((await decisionsAtHub(admin)).items.map((e) => e.uid));
          return answered.every((uid) => uids.has(uid)) ? uids : undefined;
        },
        30_000,
      );
      expect(answered.filter((uid) => !atHub.has(uid))).toEqual([]);
    } finally {
      expect(await restarted.stop()).toBe(0);
    }
  });

  it("with its hub unreachable, keeps sealing segments every second and, past its disk bound, drops the oldest, counted", { timeout: 120_000 }, async () => {
    const down = `https://127.0.0.1:${await deadPort()}`;
    const agent = await spawnAgent({ hubUrl: down, dataDir, logLimitMiB: 1 });
    try {
      const first = await denyMany(agent, "outage-a", 400);
      // Sealed while the hub is down: nothing waits on an upload that cannot happen.
      const sealed = await eventually("the open segment is sealed", async () => {
        const h = await health(agent);
        return h.logs.buffered === 0 && h.logs.segments > 0 ? h : undefined;
      });
      expect(sealed.logs.dropped).toBe(0);
      const rest = await denyMany(agent, "outage-b", 6000);
      const after = await eventually("the oldest are dropped past 1 MiB", async () => {
        const h = await health(agent);
        return h.logs.buffered === 0 && h.logs.dropped > 0 ? h : undefined;
      });
      expect(after.errors.logs ?? "").toMatch(/unreachable/);
      // What is on disk is the newest: the first denials went, the last ones stayed.
      const onDisk = readdirSync(join(dataDir, "decisions"))
        .filter((name) => name.endsWith(".ndjson"))
        .flatMap((name) => readFileSync(join(dataDir, "decisions", name), "utf8").split("\n"))
        .filter((line) => line !== "")
        .map((line) => (JSON.parse(line) as { uid: string }).uid);
      expect(onDisk).toContain(rest[rest.length - 1]);
      expect(onDisk).not.toContain(first[0]);
      expect(after.logs.dropped + onDisk.filter((uid) => uid.startsWith("outage-")).length).toBe(first.length + rest.length);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  });
});
