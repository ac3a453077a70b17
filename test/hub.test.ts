/**
 * The hub, over real TLS and real sockets: tokens and roles, layers and their history,
 * clusters, enrolment and cluster identity (checked with the real openssl and curl),
 * renewal and revocation, bad requests, a restart of the real `polity hub` process, and
 * the OpenAPI description.
 *
 * Creating a federation runs initdb (~5 s), so one is created once and its data folder
 * copied for every hub that needs a fresh federation (~1 s each). Hubs run in this process
 * with an injected clock where a test needs another time; the real binary is spawned for
 * restarts. With DATABASE_URL set, two hub processes share one PostgreSQL schema.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { connect as connectTcp, createServer as createTcpServer, type Socket } from "node:net";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { call, closeConnections, type HubEndpoint, type HubError } from "../src/client/http.js";
import { startHub } from "../src/hub/index.js";
import { openDatabase } from "../src/store/database.js";
import type { SourceFile } from "../src/api/fields.js";
import { ROUTES } from "../src/hub/routes/index.js";
import { sha256 } from "../src/hub/tokens.js";
import { clusterEndpoint, createCsr, enroll, newPrivateKey, renew, saveCredentials, type Credentials } from "../src/identity/enrollment.js";
import { EC_SIGNING, generateKeyPair, privateKeyPem, x509 } from "../src/identity/x509.js";
import { eventually } from "./support/eventually.js";
import { hugeAnswers } from "./support/impostor.js";
import { run as runProcess, type Run, type RunOptions } from "./support/processes.js";
import { BIN, example, HubFixture, joinToken, mint, refused, type Clock, type Minted, type TestHub } from "./support/hubs.js";

const OPERATOR_KEY = "hub-test-operator-key-0123456789abcdef";
const FEDERATION = "polity";
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

// ---- layer files -----------------------------------------------------------------------

const GLOBAL = example("global.yaml");
const REGION_EU = example("region-eu-west.yaml");
const CLUSTER_EU1 = example("cluster-eu-west-1.yaml");

const REGION_US: SourceFile = {
  name: "region-us-east.yaml",
  content: `apiVersion: polity.dev/v1
kind: Layer
metadata: { name: us-east }
spec: { tier: region, region: us-east, owners: [us-platform] }
---
apiVersion: polity.dev/v1
kind: Team
metadata: { name: us-platform }
spec: { members: [uma@example.com] }
---
apiVersion: polity.dev/v1
kind: Policy
metadata: { name: max-replicas, owner: us-platform }
spec:
  params:
    maxReplicas: { value: 60 }
`,
};

/** A file with one more policy document appended. */
function withPolicy(file: SourceFile, policy: string): SourceFile {
  return { name: file.name, content: `${file.content.trimEnd()}\n---\n${policy}` };
}

/** The eu-west region turning the globally locked pod-security policy from deny to warn. */
const REGION_EU_WEAKENED = withPolicy(
  REGION_EU,
  `apiVersion: polity.dev/v1
kind: Policy
metadata: { name: pod-security, owner: eu-platform }
spec:
  enforcement: warn
`,
);

/** The global layer with one more (harmless) policy. */
const GLOBAL_WITH_COST_CENTER = withPolicy(
  GLOBAL,
  `apiVersion: polity.dev/v1
kind: Policy
metadata: { name: require-cost-center, owner: platform-team }
spec:
  domain: workload-security
  match: { kinds: [Pod] }
  validations:
    - name: cost-center
      expression: "has(object.metadata.labels) && 'cost-center' in object.metadata.labels"
      message: "pods must carry a cost-center label"
  enforcement: warn
`,
);

/** Line (1-based) of the last occurrence of `text` in a file. */
function lineOf(file: SourceFile, text: string): number {
  return file.content.split("\n").lastIndexOf(text) + 1;
}

// ---- hubs ------------------------------------------------------------------------------

const hubs = new HubFixture("polity-hub-test-", OPERATOR_KEY, FEDERATION);
const processes: ChildProcess[] = [];

/** Runs `work` with the hub's clock moved by `offsetMs`, then puts it back. */
async function atTime<T>(clock: Clock, offsetMs: number, work: () => Promise<T>): Promise<T> {
  clock.offsetMs = offsetMs;
  try {
    return await work();
  } finally {
    clock.offsetMs = 0;
  }
}

async function healthy(h: TestHub): Promise<void> {
  const health = await call<{ status: string; federation: string }>(h.anonymous, "GET", "/healthz");
  expect(health.body).toEqual({ status: "ok", federation: FEDERATION });
}

// ---- processes: openssl, curl, the real binary ------------------------------------------

/** Runs a command without blocking this process's event loop (the hub under test lives here). */
function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<Run> {
  return runProcess(command, args, { ...options, cwd: options.cwd ?? hubs.root });
}

interface HubProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly output: () => string;
  stop(): Promise<number | null>;
}

/** Starts the real `polity hub` on a free port and waits for the URL it prints. */
function spawnHub(args: readonly string[]): Promise<HubProcess> {
  const buildError = inject("distBuildError");
  if (buildError !== null) throw new Error(buildError);
  // The store is what the arguments say: embedded unless --database is given.
  const { DATABASE_URL: _ignored, ...env } = process.env;
  const child = spawn(process.execPath, [BIN, "hub", "--listen", "127.0.0.1:0", "--quiet", ...args], {
    cwd: hubs.root,
    env: { ...env, POLITY_HUB_KEY: OPERATOR_KEY, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  processes.push(child);
  let out = "";
  let err = "";
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`polity hub printed no URL within 30 s:\n${out}${err}`));
    }, 30_000);
    child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString("utf8")));
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8");
      const m = /listening on (https:\/\/\S+)/.exec(out);
      if (m === null) return;
      clearTimeout(timer);
      resolve({
        child,
        url: m[1]!,
        output: () => out + err,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
          const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
          const code = await exited;
          clearTimeout(kill);
          return code;
        },
      });
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`polity hub exited (${code}) before listening:\n${out}${err}`));
    });
  });
}

// ---- raw HTTPS, for bodies the client would never send ----------------------------------

interface RawAnswer {
  readonly status: number;
  readonly text: string;
  readonly json: unknown;
}

function raw(h: TestHub, method: string, path: string, options: { body?: string | Buffer; contentType?: string; authorization?: string } = {}): Promise<RawAnswer> {
  const url = new URL(path, h.hub.url);
  const body = options.body === undefined ? undefined : Buffer.isBuffer(options.body) ? options.body : Buffer.from(options.body, "utf8");
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpsRequest(
      url,
      {
        method,
        ca: h.hub.caPem,
        agent: false,
        headers: {
          ...(body === undefined ? {} : { "content-type": options.contentType ?? "application/json", "content-length": String(body.length) }),
          ...(options.authorization === undefined ? { authorization: `Bearer ${h.admin.token}` } : options.authorization === "" ? {} : { authorization: options.authorization }),
        },
      },
      (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, text, json });
        });
      },
    );
    // A server that answers before reading a huge body may reset the connection under the upload.
    req.on("error", (error) => {
      if (!answered) reject(error);
    });
    if (body !== undefined) req.write(body);
    req.end();
  });
}

interface StatusBody {
  readonly kind: string;
  readonly apiVersion: string;
  readonly status: string;
  readonly code: number;
  readonly reason: string;
  readonly message: string;
  readonly details?: { readonly causes?: readonly { readonly field?: string; readonly message: string; readonly location?: string }[] };
}

function expectStatus(answer: RawAnswer, code: number, message: RegExp): StatusBody {
  expect(answer.status, answer.text).toBe(code);
  const status = answer.json as StatusBody;
  expect(status).toMatchObject({ kind: "Status", apiVersion: "v1", status: "Failure", code });
  expect(status.message).toMatch(message);
  return status;
}

// ---- certificates made outside the federation --------------------------------------------

interface Forged {
  readonly certificatePem: string;
  readonly keyPem: string;
}

/** A client certificate not issued by the federation CA: self-signed, or signed by a CA of our own. */
async function foreignCertificate(options: {
  readonly spiffeId: string;
  readonly issuer: "self" | { readonly name: string };
  readonly serial?: string;
  readonly notAfter?: Date;
}): Promise<Forged> {
  const keys = await generateKeyPair();
  const notBefore = new Date(Date.now() - 3 * DAY);
  const notAfter = options.notAfter ?? new Date(Date.now() + DAY);
  const serialNumber = options.serial ?? randomBytes(16).toString("hex").replace(/^[89a-f]/, "1");
  const extensions = [
    new x509.SubjectAlternativeNameExtension([{ type: "url", value: options.spiffeId }]),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
  ];
  let certificate: x509.X509Certificate;
  if (options.issuer === "self") {
    certificate = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber, name: "CN=eu-west-1", notBefore, notAfter, keys, signingAlgorithm: EC_SIGNING, extensions });
  } else {
    const ca = await generateKeyPair();
    certificate = await x509.X509CertificateGenerator.create({
      serialNumber,
      subject: "CN=eu-west-1, OU=eu-west, O=polity",
      issuer: options.issuer.name,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: ca.privateKey,
      signingAlgorithm: EC_SIGNING,
      extensions,
    });
  }
  return { certificatePem: certificate.toString("pem"), keyPem: await privateKeyPem(keys.privateKey) };
}

function endpointWith(h: TestHub, forged: Forged): HubEndpoint {
  return { url: h.hub.url, caPem: h.hub.caPem, clientCertificatePem: forged.certificatePem, clientKeyPem: forged.keyPem };
}

// ---- after the file: processes and connections (HubFixture removes the hubs) ----------------

afterAll(() => {
  closeConnections();
  for (const child of processes) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

// ---- 1. tokens and roles ------------------------------------------------------------------

describe("tokens and roles", () => {
  let h: TestHub;
  let euOperator: Minted;
  let auditor: Minted;

  beforeAll(async () => {
    h = await hubs.startCopy("tokens");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_US] });
    await call(h.admin, "POST", "/v1/clusters", { name: "us-east-1", region: "us-east", labels: { env: "prod" } });
    euOperator = await mint(h, { name: "eu ops", role: "region-operator", region: "eu-west", ttlSeconds: 3600, groups: ["eu-west-operators"] });
    auditor = await mint(h, { name: "audit", role: "auditor" });
  });

  it("writes the bootstrap admin token to a file only its owner can read, and that token is a global admin", async () => {
    expect(statSync(hubs.bootstrap.adminTokenFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(hubs.bootstrap.adminTokenFile, "utf8")).toMatch(/^polity_\S+\n$/);
    const me = await call<{ principal: { kind: string; role: string; name: string }; description: string }>(h.admin, "GET", "/v1/whoami");
    expect(me.body.principal).toMatchObject({ kind: "token", role: "global-admin", name: "bootstrap admin" });
    expect(me.body.description).toBe("bootstrap admin (global-admin)");
  });

  it("lets a global admin mint region-operator, auditor and global-admin tokens, each with an expiry", async () => {
    const before = Date.now();
    const operator = await mint(h, { name: "eu ops 2", role: "region-operator", region: "eu-west", ttlSeconds: 3600 });
    const audit = await mint(h, { name: "audit 2", role: "auditor" });
    const admin = await mint(h, { name: "second admin", role: "global-admin", ttlSeconds: 86_400 });
    expect(operator).toMatchObject({ role: "region-operator", region: "eu-west" });
    expect(audit).toMatchObject({ role: "auditor", region: null });
    expect(admin).toMatchObject({ role: "global-admin", region: null });
    for (const t of [operator, audit, admin]) expect(t.token).toMatch(/^polity_[A-Za-z0-9_-]{32}$/);
    const expiresIn = (t: Minted) => Date.parse(t.expiresAt) - before;
    expect(expiresIn(operator)).toBeGreaterThanOrEqual(HOUR - 1000);
    expect(expiresIn(operator)).toBeLessThan(HOUR + MINUTE);
    expect(expiresIn(audit)).toBeGreaterThanOrEqual(90 * DAY - 1000); // the default: 90 days
    expect(expiresIn(audit)).toBeLessThan(90 * DAY + MINUTE);
    expect(expiresIn(admin)).toBeGreaterThanOrEqual(DAY - 1000);

    const who = async (t: { endpoint: HubEndpoint }) => (await call<{ description: string }>(t.endpoint, "GET", "/v1/whoami")).body.description;
    expect(await who(operator)).toBe("eu ops 2 (region-operator of eu-west)");
    expect(await who(audit)).toBe("audit 2 (auditor)");
    expect(await who(admin)).toBe("second admin (global-admin)");

    const listed = (await call<{ items: Record<string, unknown>[] }>(h.admin, "GET", "/v1/tokens")).body.items;
    expect(listed.find((t) => t.id === operator.id)).toMatchObject({ name: "eu ops 2", role: "region-operator", region: "eu-west", createdBy: "bootstrap admin (global-admin)", revokedAt: null });
    for (const t of listed) {
      expect(Object.keys(t).sort()).toEqual(["createdAt", "createdBy", "expiresAt", "groups", "id", "name", "region", "revokedAt", "role", "subject"]);
    }
  });

  it("binds a region-operator token to a region, and only that role", async () => {
    expect((await refused(mint(h, { name: "x", role: "region-operator" }))).message).toMatch(/bound to a region: give region/);
    expect((await refused(mint(h, { name: "x", role: "auditor", region: "eu-west" }))).status).toBe(400);
    expect((await refused(mint(h, { name: "x", role: "root" }))).status).toBe(400);
    expect((await refused(mint(h, { name: "x", role: "auditor", ttlSeconds: 5 }))).status).toBe(400);
  });

  it("stores tokens only as SHA-256 hashes: no column of any table holds a token", async () => {
    const join = await joinToken(h, "us-east-1");
    const secrets = [h.admin.token!, euOperator.token, auditor.token, join];
    const db = h.hub.context.db;
    const tables = await db.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    );
    expect(tables.map((t) => t.table_name)).toEqual(expect.arrayContaining(["tokens", "join_tokens", "certificates", "clusters"]));
    for (const { table_name } of tables) {
      const dump = JSON.stringify(await db.query(`SELECT * FROM "${table_name}"`));
      for (const secret of secrets) expect(dump, `table ${table_name}`).not.toContain(secret);
    }
    const hashes = (await db.query<{ hash: string }>("SELECT hash FROM tokens")).map((r) => r.hash);
    expect(hashes).toEqual(expect.arrayContaining([sha256(h.admin.token!), sha256(euOperator.token), sha256(auditor.token)]));
    const [joinRow] = await db.query<{ hash: string }>("SELECT hash FROM join_tokens WHERE hash = $1", [sha256(join)]);
    expect(joinRow).toBeDefined();
  });

  it("refuses a revoked token at once with 401 saying when it was revoked", async () => {
    const t = await mint(h, { name: "short-lived", role: "auditor" });
    await call(t.endpoint, "GET", "/v1/whoami");
    expect((await call(h.admin, "DELETE", `/v1/tokens/${t.id}`)).body).toEqual({ id: t.id, revoked: true });
    const error = await refused(call(t.endpoint, "GET", "/v1/whoami"));
    expect(error.status).toBe(401);
    expect(error.message).toMatch(new RegExp(`^the bearer token ${t.id} was revoked at \\d{4}-\\d\\d-\\d\\dT`));
    expect((await refused(call(h.admin, "DELETE", `/v1/tokens/${t.id}`))).status).toBe(404);
    const listed = (await call<{ items: { id: string; revokedAt: string | null }[] }>(h.admin, "GET", "/v1/tokens")).body.items;
    expect(listed.find((x) => x.id === t.id)?.revokedAt).not.toBeNull();
  });

  it("refuses an expired token with 401 saying when it expired", async () => {
    // Minted two minutes ago with a one-minute life.
    const t = await atTime(h.clock, -2 * MINUTE, () => mint(h, { name: "expired", role: "auditor", ttlSeconds: 60 }));
    expect(Date.parse(t.expiresAt)).toBeLessThan(Date.now());
    const error = await refused(call(t.endpoint, "GET", "/v1/clusters"));
    expect(error.status).toBe(401);
    expect(error.message).toBe(`the bearer token ${t.id} expired at ${t.expiresAt}`);
  });

  it("refuses an unknown token, and an Authorization header that is not a bearer token, with 401", async () => {
    const unknown = await refused(call({ ...h.anonymous, token: "polity_not-a-token" }, "GET", "/v1/whoami"));
    expect([unknown.status, unknown.message]).toEqual([401, "the bearer token is not valid"]);
    const basic = await raw(h, "GET", "/v1/whoami", { authorization: "Basic YWRtaW46YWRtaW4=" });
    expectStatus(basic, 401, /must be 'Bearer <token>'/);
    const none = await refused(call(h.anonymous, "GET", "/v1/clusters"));
    expect([none.status, none.reason]).toEqual([401, "Unauthorized"]);
    expect(none.message).toMatch(/authentication required/);
  });

  it("lets an auditor read everything but refuses every write with 403", async () => {
    const a = auditor.endpoint;
    for (const path of [
      "/v1/whoami",
      "/v1/layers",
      "/v1/layers/global",
      "/v1/layers/global/history",
      "/v1/layers/region/us-east/versions/1",
      "/v1/clusters",
      "/v1/clusters/us-east-1",
      "/v1/clusters/us-east-1/effective",
      "/v1/tokens",
    ]) {
      expect((await call(a, "GET", path)).status, path).toBe(200);
    }
    const writes: [method: "POST" | "PATCH" | "DELETE", path: string, body?: unknown][] = [
      ["POST", "/v1/apply", { files: [REGION_EU] }],
      ["DELETE", "/v1/layers/region/us-east"],
      ["POST", "/v1/clusters", { name: "eu-west-9", region: "eu-west" }],
      ["PATCH", "/v1/clusters/us-east-1", { labels: { env: "dev" } }],
      ["DELETE", "/v1/clusters/us-east-1"],
      ["POST", "/v1/clusters/us-east-1/join-tokens", {}],
      ["POST", "/v1/clusters/us-east-1/revoke"],
      ["POST", "/v1/tokens", { name: "escalate", role: "global-admin" }],
      ["DELETE", `/v1/tokens/${euOperator.id}`],
    ];
    for (const [method, path, body] of writes) {
      const error = await refused(call(a, method, path, body));
      expect([error.status, error.reason], `${method} ${path}: ${error.message}`).toEqual([403, "Forbidden"]);
    }
    // A dry run and a diff change nothing: an auditor may ask what a change would do.
    expect((await call(a, "POST", "/v1/apply", { files: [GLOBAL_WITH_COST_CENTER], dryRun: true })).status).toBe(200);
    // Nothing changed.
    expect((await call<{ labels: Record<string, string>; revokedAt: string | null }>(h.admin, "GET", "/v1/clusters/us-east-1")).body).toMatchObject({ labels: { env: "prod" }, revokedAt: null });
    expect((await call(euOperator.endpoint, "GET", "/v1/whoami")).status).toBe(200);
  });

  it("lets a region operator of eu-west apply the eu-west layer and register, relabel and remove eu-west clusters", async () => {
    const op = euOperator.endpoint;
    const applied = await call<{ layers: { id: string; version: number }[] }>(op, "POST", "/v1/apply", { files: [REGION_EU] });
    expect(applied.status).toBe(201);
    expect(applied.body.layers).toEqual([expect.objectContaining({ id: "region/eu-west", version: 1 })]);
    const history = await call<{ items: { author: string }[] }>(op, "GET", "/v1/layers/region/eu-west/history");
    expect(history.body.items.map((v) => v.author)).toEqual(["eu ops (region-operator of eu-west)"]);

    const registered = await call<{ name: string; region: string; labels: Record<string, string> }>(op, "POST", "/v1/clusters", { name: "eu-west-2", region: "eu-west", labels: { env: "dev" } });
    expect(registered.status).toBe(201);
    expect(registered.body).toMatchObject({ name: "eu-west-2", region: "eu-west", labels: { env: "dev" } });
    const relabelled = await call<{ labels: Record<string, string> }>(op, "PATCH", "/v1/clusters/eu-west-2", { labels: { env: "prod", team: "payments" } });
    expect(relabelled.body.labels).toEqual({ env: "prod", team: "payments" });
    expect((await call(op, "POST", "/v1/clusters/eu-west-2/join-tokens", {})).status).toBe(201);
    expect((await call(op, "DELETE", "/v1/clusters/eu-west-2")).body).toEqual({ removed: "eu-west-2" });

    // It sees the global layer and its own region, not another region.
    const layers = (await call<{ items: { id: string }[] }>(op, "GET", "/v1/layers")).body.items.map((l) => l.id);
    expect(layers).toEqual(["global", "region/eu-west"]);
    const clusters = (await call<{ items: { name: string }[] }>(op, "GET", "/v1/clusters")).body.items.map((c) => c.name);
    expect(clusters).not.toContain("us-east-1");
  });

  it("refuses a region operator a layer for a cluster nobody registered, which would reserve its name in another region", async () => {
    const squat: SourceFile = { name: "squat.yaml", content: CLUSTER_EU1.content.replaceAll("eu-west-1", "us-east-7") };
    expect(squat.content).toMatch(/cluster: us-east-7/);
    const error = await refused(call(euOperator.endpoint, "POST", "/v1/apply", { files: [squat] }));
    expect([error.status, error.message]).toEqual([403, "cluster us-east-7 is not registered: a region operator writes layers only for the registered clusters of their region (register it first)"]);
    // So the name stays free: a global admin registers us-east-7 in us-east.
    expect((await call(h.admin, "POST", "/v1/clusters", { name: "us-east-7", region: "us-east" })).status).toBe(201);
    expect((await call(h.admin, "DELETE", "/v1/clusters/us-east-7")).status).toBe(200);
  });

  it("refuses a region operator the global layer, another region's layer and clusters, and tokens, with 403", async () => {
    const op = euOperator.endpoint;
    const cases: [method: "GET" | "POST" | "PATCH" | "DELETE", path: string, body: unknown, message: RegExp][] = [
      ["POST", "/v1/apply", { files: [GLOBAL_WITH_COST_CENTER] }, /may not change the federation as a whole/],
      ["POST", "/v1/apply", { files: [REGION_US] }, /region operator of eu-west may not change region us-east/],
      ["DELETE", "/v1/layers/region/us-east", undefined, /may not change region us-east/],
      ["GET", "/v1/layers/region/us-east", undefined, /may not read region us-east/],
      ["POST", "/v1/clusters", { name: "us-east-2", region: "us-east" }, /may not change region us-east/],
      ["GET", "/v1/clusters/us-east-1", undefined, /may not read region us-east/],
      ["PATCH", "/v1/clusters/us-east-1", { labels: {} }, /may not change region us-east/],
      ["DELETE", "/v1/clusters/us-east-1", undefined, /may not change region us-east/],
      ["POST", "/v1/clusters/us-east-1/join-tokens", {}, /may not change region us-east/],
      ["POST", "/v1/clusters/us-east-1/revoke", undefined, /may not change region us-east/],
      ["POST", "/v1/tokens", { name: "me too", role: "region-operator", region: "us-east" }, /only a global admin mints tokens/],
      ["GET", "/v1/tokens", undefined, /listed for global admins and auditors/],
      ["DELETE", `/v1/tokens/${auditor.id}`, undefined, /only a global admin revokes tokens/],
    ];
    for (const [method, path, body, message] of cases) {
      const error = await refused(call(op, method, path, body));
      expect(error.status, `${method} ${path}: ${error.message}`).toBe(403);
      expect(error.message).toMatch(message);
    }
    expect((await call(h.admin, "GET", "/v1/clusters/us-east-1")).status).toBe(200);
  });
});

// ---- 2. layers ---------------------------------------------------------------------------

interface ApplyAnswer {
  readonly dryRun: boolean;
  readonly layers: readonly { id: string; unchanged: boolean; version: number; contentHash: string }[];
  readonly clusters: readonly { cluster: string; before: string | null; after: string; changed: boolean }[];
}

interface LayerSummary {
  readonly id: string;
  readonly version: number;
  readonly author: string;
  readonly contentHash: string;
  readonly deleted: boolean;
  readonly policies: number;
}

describe("layers", () => {
  let h: TestHub;
  const layerList = async () => new Map((await call<{ items: LayerSummary[] }>(h.admin, "GET", "/v1/layers")).body.items.map((l) => [l.id, l]));
  const effectiveHash = async (cluster: string) => (await call<{ hash: string }>(h.admin, "GET", `/v1/clusters/${cluster}/effective`)).body.hash;
  const policiesOf = async (cluster: string) =>
    (await call<{ effectivePolicySet: { policies: { name: string }[] } }>(h.admin, "GET", `/v1/clusters/${cluster}/effective`)).body.effectivePolicySet.policies.map((p) => p.name).sort();

  beforeAll(async () => {
    h = await hubs.startCopy("layers");
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } });
    await call(h.admin, "POST", "/v1/clusters", { name: "us-east-1", region: "us-east" });
  });

  it("applying layer files gives each layer its first version, with its author and content hash", async () => {
    const applied = await call<ApplyAnswer>(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
    expect(applied.status).toBe(201);
    expect(applied.body.dryRun).toBe(false);
    expect([...applied.body.layers].sort((a, b) => (a.id < b.id ? -1 : 1))).toEqual([
      { id: "cluster/eu-west-1", unchanged: false, version: 1, contentHash: expect.any(String) },
      { id: "global", unchanged: false, version: 1, contentHash: expect.any(String) },
      { id: "region/eu-west", unchanged: false, version: 1, contentHash: expect.any(String) },
    ]);
    expect(applied.body.clusters.map((c) => [c.cluster, c.changed])).toEqual([
      ["eu-west-1", true],
      ["us-east-1", true],
    ]);
    const layers = await layerList();
    for (const answered of applied.body.layers) {
      expect(layers.get(answered.id)).toMatchObject({ version: 1, author: "bootstrap admin (global-admin)", contentHash: answered.contentHash, deleted: false });
    }
    expect(layers.get("global")?.policies).toBe(6);
    const region = await call<{ files: SourceFile[]; contentHash: string }>(h.admin, "GET", "/v1/layers/region/eu-west");
    expect(region.body.files).toEqual([REGION_EU]);
    expect(new Set(applied.body.layers.map((l) => l.contentHash)).size).toBe(3);
    expect(await policiesOf("eu-west-1")).toEqual(["auditors-read", "data-residency", "eu-residency", "max-replicas", "namespace-quota", "payments-quota", "payments-segmentation", "pod-security", "require-team-label", "trusted-images"]);
  });

  it("re-applying identical files is a no-op that keeps every version", async () => {
    const before = await effectiveHash("eu-west-1");
    const again = await call<ApplyAnswer>(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
    expect(again.status).toBe(200);
    expect(again.body.layers.every((l) => l.unchanged && l.version === 1)).toBe(true);
    expect(again.body.clusters).toEqual([]);
    const history = await call<{ items: unknown[] }>(h.admin, "GET", "/v1/layers/global/history");
    expect(history.body.items).toHaveLength(1);
    expect(await effectiveHash("eu-west-1")).toBe(before);
  });

  it("hashes a layer by its content, not by where it was applied from: the same files under other paths are unchanged", async () => {
    const elsewhere = [GLOBAL, REGION_EU, CLUSTER_EU1].map((f) => ({ name: `/home/someone/checkout/policies/${f.name}`, content: f.content }));
    const again = await call<ApplyAnswer>(h.admin, "POST", "/v1/apply", { files: elsewhere });
    expect(again.status).toBe(200);
    expect(again.body.layers.every((l) => l.unchanged && l.version === 1)).toBe(true);
    const first = (await call<{ contentHash: string }>(h.admin, "GET", "/v1/layers/global")).body.contentHash;
    expect(again.body.layers.find((l) => l.id === "global")?.contentHash).toBe(first);
    // Nor does the audit log record where the files were: only the content's hash and the documents' names.
    const entries = await call<{ items: { entry: unknown }[] }>(h.admin, "GET", "/v1/audit/entries?kind=layer.changed");
    expect(JSON.stringify(entries.body.items)).not.toMatch(/global\.yaml|region-eu-west|\/home\//);
  });

  it("gives a changed layer the next version, and history lists every version with author and content hash", async () => {
    const changed = { name: REGION_EU.name, content: REGION_EU.content.replace("maxReplicas: { value: 80 }", "maxReplicas: { value: 70 }") };
    expect(changed.content).not.toBe(REGION_EU.content);
    const applied = await call<ApplyAnswer>(h.admin, "POST", "/v1/apply", { files: [GLOBAL, changed] });
    expect(applied.status).toBe(201);
    expect(applied.body.layers.map((l) => [l.id, l.unchanged, l.version])).toEqual([
      ["global", true, 1],
      ["region/eu-west", false, 2],
    ]);
    const history = await call<{ id: string; items: { version: number; author: string; createdAt: string; contentHash: string; files: string[]; deleted: boolean }[] }>(
      h.admin,
      "GET",
      "/v1/layers/region/eu-west/history",
    );
    expect(history.body.id).toBe("region/eu-west");
    expect(history.body.items.map((v) => [v.version, v.author, v.files, v.deleted])).toEqual([
      [1, "bootstrap admin (global-admin)", [REGION_EU.name], false],
      [2, "bootstrap admin (global-admin)", [REGION_EU.name], false],
    ]);
    expect(history.body.items[0]!.contentHash).not.toBe(history.body.items[1]!.contentHash);
    expect(history.body.items[1]!.contentHash).toBe(applied.body.layers[1]!.contentHash);
    const first = await call<{ files: SourceFile[] }>(h.admin, "GET", "/v1/layers/region/eu-west/versions/1");
    expect(first.body.files).toEqual([REGION_EU]);
    expect((await refused(call(h.admin, "GET", "/v1/layers/region/eu-west/versions/9"))).status).toBe(404);
    expect((await refused(call(h.admin, "GET", "/v1/layers/region/eu-west/versions/first"))).status).toBe(400);
    expect((await refused(call(h.admin, "GET", "/v1/layers/region/nowhere/history"))).status).toBe(404);
  });

  it("plans without writing on a dry run", async () => {
    const planned = await call<ApplyAnswer>(h.admin, "POST", "/v1/apply", { files: [GLOBAL_WITH_COST_CENTER], dryRun: true });
    expect(planned.status).toBe(200);
    expect(planned.body).toMatchObject({ dryRun: true, layers: [{ id: "global", unchanged: false, version: 2 }] });
    expect(planned.body.clusters.every((c) => c.changed)).toBe(true);
    expect((await layerList()).get("global")?.version).toBe(1);
    expect(await policiesOf("us-east-1")).not.toContain("require-cost-center");
  });

  it("refuses a change that weakens a locked policy with 409, naming both policies, both owners, the rule and file:line:column", async () => {
    const error = await refused(call(h.admin, "POST", "/v1/apply", { files: [REGION_EU_WEAKENED] }));
    expect([error.status, error.reason]).toEqual([409, "MergeRefused"]);
    expect(error.message).toMatch(/^the change is refused: /);
    expect(error.message).toContain('policy "pod-security" of layer "eu-west" (tier region, owner "eu-platform")');
    expect(error.message).toContain('policy "pod-security" of layer "global" (tier global, owner "platform-security")');
    expect(error.message).toContain("deny → warn");
    expect(error.message).toMatch(/\[rule: locked-enforcement\]$/);
    expect(error.causes).toHaveLength(1);
    const line = lineOf(REGION_EU_WEAKENED, "  enforcement: warn");
    expect(error.causes[0]).toMatchObject({ field: "spec.enforcement", location: expect.stringMatching(new RegExp(`^region-eu-west\\.yaml:${line}:\\d+$`)) });
    expect((await layerList()).get("region/eu-west")?.version).toBe(2);
  });

  it("writes nothing for any layer when a change is refused for one cluster", async () => {
    const layersBefore = await layerList();
    const usBefore = await effectiveHash("us-east-1");
    // The global change alone is fine for every cluster; eu-west-1's own layer weakening a lock is not.
    const clusterWeakened = withPolicy(CLUSTER_EU1, "apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: trusted-images, owner: payments-sre }\nspec:\n  enforcement: audit\n");
    const error = await refused(call(h.admin, "POST", "/v1/apply", { files: [GLOBAL_WITH_COST_CENTER, clusterWeakened] }));
    expect(error.status).toBe(409);
    expect(error.message).toMatch(/trusted-images.*\[rule: locked-enforcement\]/);
    expect(error.causes[0]?.location).toMatch(/^cluster-eu-west-1\.yaml:\d+:\d+$/);
    const layersAfter = await layerList();
    expect(layersAfter).toEqual(layersBefore);
    expect(await effectiveHash("us-east-1")).toBe(usBefore);
    expect(await policiesOf("us-east-1")).not.toContain("require-cost-center");
    const history = await call<{ items: unknown[] }>(h.admin, "GET", "/v1/layers/global/history");
    expect(history.body.items).toHaveLength(1);
  });

  it("shows with diff, per cluster, the policies a change adds, removes and changes, and writes nothing", async () => {
    // The eu-west region drops data-residency and its EU registry, and adds a rule of its own.
    const changed = withPolicy(
      {
        name: REGION_EU.name,
        content: REGION_EU.content
          .split("\n---\n")
          .filter((doc) => !doc.includes("name: data-residency") && !doc.includes("name: trusted-images"))
          .join("\n---\n"),
      },
      "apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: eu-cost-center, owner: eu-platform }\nspec:\n  domain: workload-security\n  match: { kinds: [Pod] }\n  validations:\n    - name: cost-center\n      expression: \"has(object.metadata.labels)\"\n      message: \"pods carry labels\"\n  enforcement: warn\n",
    );
    const before = await effectiveHash("eu-west-1");
    const diff = await call<{
      layers: { id: string; unchanged: boolean; baseVersion: number }[];
      clusters: { cluster: string; before: string | null; after: string; added: string[]; removed: string[]; changed: { policy: string; fields: string[] }[] }[];
    }>(h.admin, "POST", "/v1/diff", { files: [changed] });
    expect(diff.status).toBe(200);
    expect(diff.body.layers).toEqual([{ id: "region/eu-west", unchanged: false, baseVersion: 2 }]);
    expect(diff.body.clusters).toHaveLength(1); // us-east-1 is not in eu-west
    const [eu] = diff.body.clusters;
    expect(eu).toMatchObject({ cluster: "eu-west-1", before, added: ["eu-cost-center"], removed: ["data-residency"] });
    expect(eu!.after).not.toBe(before);
    expect(eu!.changed.map((c) => c.policy)).toEqual(["trusted-images"]);
    expect(eu!.changed[0]!.fields.length).toBeGreaterThan(0);
    expect((await layerList()).get("region/eu-west")?.version).toBe(2);
    expect(await effectiveHash("eu-west-1")).toBe(before);
  });

  it("deletes a region layer as an empty version, keeps its history, and its clusters fall back to the layers above", async () => {
    const deleted = await call<{ deleted: string; versions: { id: string; version: number }[]; affected: number }>(h.admin, "DELETE", "/v1/layers/region/eu-west");
    expect(deleted.body).toEqual({ deleted: "region/eu-west", versions: [{ id: "region/eu-west", version: 3 }], affected: 1, correlationId: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect((await layerList()).get("region/eu-west")).toMatchObject({ version: 3, deleted: true, policies: 0 });
    const history = await call<{ items: { version: number; deleted: boolean; files: string[] }[] }>(h.admin, "GET", "/v1/layers/region/eu-west/history");
    expect(history.body.items.map((v) => [v.version, v.deleted])).toEqual([
      [1, false],
      [2, false],
      [3, true],
    ]);
    expect(await policiesOf("eu-west-1")).not.toContain("data-residency");
    expect((await refused(call(h.admin, "DELETE", "/v1/layers/region/eu-west"))).status).toBe(404);
    // Applying it again brings it back as the next version.
    const back = await call<ApplyAnswer>(h.admin, "POST", "/v1/apply", { files: [REGION_EU] });
    expect(back.body.layers).toMatchObject([{ id: "region/eu-west", version: 4 }]);
    expect(await policiesOf("eu-west-1")).toContain("data-residency");
  });

  describe("a cluster whose name is also a word of the API (history)", () => {
    const layer: SourceFile = {
      name: "history.yaml",
      content: "apiVersion: polity.dev/v1\nkind: Layer\nmetadata: { name: history }\nspec: { tier: cluster, region: eu-west, cluster: history, owners: [x] }\n---\napiVersion: polity.dev/v1\nkind: Team\nmetadata: { name: x }\nspec: { members: [x@example.com] }\n",
    };

    it("can be registered and given a layer", async () => {
      await call(h.admin, "POST", "/v1/clusters", { name: "history", region: "eu-west" });
      const applied = await call<ApplyAnswer>(h.admin, "POST", "/v1/apply", { files: [layer] });
      expect(applied.body.layers).toMatchObject([{ id: "cluster/history", version: 1 }]);
      expect((await layerList()).get("cluster/history")?.version).toBe(1);
    });

    // BUG: GET /v1/layers/cluster/history is routed to "/v1/layers/:tier/history" (the
    // history of a layer "cluster" with no name): 404, though the layer exists. Any region
    // or cluster named "history" is affected; the route table cannot tell the two apart.
    it("has its layer read at /v1/layers/cluster/history", async () => {
      const read = await call<{ id: string }>(h.admin, "GET", "/v1/layers/cluster/history");
      expect(read.body.id).toBe("cluster/history");
    });
  });

  it("refuses layer files that do not parse with 422 and where the problem is", async () => {
    const broken = { name: "broken.yaml", content: "apiVersion: polity.dev/v1\nkind: Layer\nmetadata: { name: broken\nspec: {}\n" };
    const error = await refused(call(h.admin, "POST", "/v1/apply", { files: [broken] }));
    expect([error.status, error.reason]).toEqual([422, "Invalid"]);
    expect(error.message).toMatch(/^the layers are not valid: /);
    expect(error.causes[0]?.location).toMatch(/^broken\.yaml:\d+:\d+$/);
    // With more than one layer in an apply, each file says which layer it belongs to.
    const orphan = { name: "orphan.yaml", content: "apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: x, owner: y }\nspec: { enforcement: warn }\n" };
    const noLayer = await refused(call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, orphan] }));
    expect(noLayer.status).toBe(422);
    expect(noLayer.causes).toEqual([expect.objectContaining({ location: "orphan.yaml:1:1", message: expect.stringMatching(/^no Layer document says which layer this file belongs to/) })]);
    expect((await layerList()).get("region/eu-west")?.version).toBe(4);
  });
});

describe("a change and its bundles", () => {
  let h: TestHub;

  beforeAll(async () => {
    h = await hubs.startCopy("change-bundles");
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } });
    await call(h.admin, "POST", "/v1/clusters", { name: "us-east-1", region: "us-east" });
  });

  const bundleRows = () => h.hub.context.db.query<{ cluster: string; version: string; correlation_id: string }>("SELECT cluster, version::text AS version, correlation_id FROM bundles ORDER BY cluster");

  it("publishes the bundles of every cluster a change reaches in the change's own transaction, under its correlation id", async () => {
    const applied = await call<ApplyAnswer & { correlationId: string }>(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU] }, { headers: { "x-correlation-id": "change-one" } });
    expect(applied.body.correlationId).toBe("change-one");
    // No waiting for a timer: the answer comes after the bundles are stored.
    expect((await bundleRows()).map((r) => [r.cluster, r.correlation_id])).toEqual([
      ["eu-west-1", "change-one"],
      ["us-east-1", "change-one"],
    ]);
  });

  it("answers an apply sent again with the same Idempotency-Key with the change it committed, and commits nothing more", async () => {
    const key = "retry-0123456789";
    const first = await call<ApplyAnswer>(h.admin, "POST", "/v1/apply", { files: [GLOBAL_WITH_COST_CENTER] }, { headers: { "idempotency-key": key } });
    expect(first.status).toBe(201);
    const again = await call<ApplyAnswer & { replayed?: boolean }>(h.admin, "POST", "/v1/apply", { files: [GLOBAL_WITH_COST_CENTER] }, { headers: { "idempotency-key": key } });
    expect(again.status).toBe(200);
    expect(again.body.replayed).toBe(true);
    expect(again.body.layers).toEqual(first.body.layers);
    const history = await call<{ items: unknown[] }>(h.admin, "GET", "/v1/layers/global/history");
    expect(history.body.items).toHaveLength(2);
    // The same key for another change is a mistake the client hears about, and nothing is written.
    const other = await refused(call(h.admin, "POST", "/v1/apply", { files: [GLOBAL] }, { headers: { "idempotency-key": key } }));
    expect([other.status, other.message]).toEqual([422, `the Idempotency-Key ${key} was used for another change; send this one with a new key`]);
    expect((await call<{ items: unknown[] }>(h.admin, "GET", "/v1/layers/global/history")).body.items).toHaveLength(2);
  });

  it("polity apply whose answer is lost sends the change again with the same key, and says it was committed once", async () => {
    const hubPort = Number(new URL(h.hub.url).port);
    // A TCP relay that loses the hub's first answer: the change reaches the hub, its answer never comes back.
    let connections = 0;
    const sockets = new Set<Socket>();
    const relay = createTcpServer((client) => {
      const first = connections++ === 0;
      const upstream = connectTcp(hubPort, "127.0.0.1");
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on("error", () => undefined);
      }
      client.pipe(upstream);
      if (first) upstream.once("data", () => client.destroy());
      else upstream.pipe(client);
    });
    await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
    try {
      const address = relay.address();
      const url = `https://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`;
      const file = join(h.dir, "retried.yaml");
      writeFileSync(file, GLOBAL_WITH_COST_CENTER.content.replace("require-cost-center", "require-cost-centre"));
      const versions = () => call<{ items: unknown[] }>(h.admin, "GET", "/v1/layers/global/history").then((a) => a.body.items.length, () => 0);
      const before = await versions();
      const run = await hubs.cli(["apply", file], { config: hubs.cliConfig("relayed", { ...h.admin, url }) });
      expect(run.err).toMatch(/^warning: .*; sending the change again \(attempt 2 of 3, same Idempotency-Key\)\n/);
      expect(run.code).toBe(0);
      expect(run.out).toBe(`layer global: version ${before + 1}\n2 clusters reached, 2 with a new effective policy set\n`);
      expect(connections).toBeGreaterThanOrEqual(2);
      expect(await versions()).toBe(before + 1);
    } finally {
      for (const socket of sockets) socket.destroy();
      relay.close();
    }
  });

  it("sends a bundle gzip-compressed to an agent that accepts it: the same bytes, in a fraction of the size", async () => {
    // The example layers (applied by the first test of this group; here too when run alone), a set of about 30 KB.
    const layers = (await call<{ items: unknown[] }>(h.admin, "GET", "/v1/layers")).body.items;
    if (layers.length === 0) await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU] });
    const creds = await enroll(h.hub, "us-east-1", await joinToken(h, "us-east-1"));
    const endpoint = clusterEndpoint(h.hub.url, creds);
    const plain = await call<Buffer>(endpoint, "GET", "/v1/agent/bundle", undefined, { raw: true, binary: true, headers: { "accept-encoding": "identity" } });
    const gzipped = await call<Buffer>(endpoint, "GET", "/v1/agent/bundle", undefined, { raw: true, binary: true });
    expect(plain.headers["content-encoding"]).toBeUndefined();
    expect([gzipped.headers["content-encoding"], gzipped.headers.vary, gzipped.headers.etag]).toEqual(["gzip", "accept-encoding", `W/${String(plain.headers.etag)}`]);
    // The client decompressed it (src/client/http.ts): the signed bundle, byte for byte.
    expect(gzipped.body.equals(plain.body)).toBe(true);
    expect(Number(gzipped.headers["content-length"])).toBeLessThan(Number(plain.headers["content-length"]) / 3);
    const refusedGzip = await call<Buffer>(endpoint, "GET", "/v1/agent/bundle", undefined, { raw: true, binary: true, headers: { "accept-encoding": "gzip;q=0, br" } });
    expect(refusedGzip.headers["content-encoding"]).toBeUndefined();
  });

  it("re-signs a bundle nearing its expiry with the same policies under the correlation id of the change that made them", async () => {
    const before = await bundleRows();
    const change = before.find((r) => r.cluster === "eu-west-1")!.correlation_id;
    h.clock.offsetMs = 13 * HOUR;
    try {
      let after = before;
      for (let i = 0; i < 50 && after.find((r) => r.cluster === "eu-west-1")!.version === before.find((r) => r.cluster === "eu-west-1")!.version; i++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        after = await bundleRows();
      }
      const row = after.find((r) => r.cluster === "eu-west-1")!;
      expect(Number(row.version)).toBeGreaterThan(Number(before.find((r) => r.cluster === "eu-west-1")!.version));
      expect(row.correlation_id).toBe(change);
    } finally {
      h.clock.offsetMs = 0;
    }
  });
});

// ---- 3. clusters -----------------------------------------------------------------------

interface ClusterView {
  readonly name: string;
  readonly region: string;
  readonly labels: Record<string, string>;
  readonly revokedAt: string | null;
  readonly effective: { hash: string; policies: number } | { error: string };
}

describe("clusters", () => {
  let h: TestHub;

  beforeAll(async () => {
    h = await hubs.startCopy("clusters");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
  });

  it("registers a cluster with its region and labels, lists it, relabels it and removes it", async () => {
    const registered = await call<ClusterView>(h.admin, "POST", "/v1/clusters", { name: "eu-west-2", region: "eu-west", labels: { env: "dev" } });
    expect(registered.status).toBe(201);
    expect(registered.body).toMatchObject({ name: "eu-west-2", region: "eu-west", labels: { env: "dev" }, revokedAt: null, effective: { hash: expect.any(String), policies: 6 } });
    const list = await call<{ items: ClusterView[] }>(h.admin, "GET", "/v1/clusters");
    expect(list.body.items.map((c) => c.name)).toEqual(["eu-west-2"]);
    const one = await call<ClusterView & { certificates: unknown[] }>(h.admin, "GET", "/v1/clusters/eu-west-2");
    expect(one.body.certificates).toEqual([]);

    // data-residency and payments-segmentation are scoped to env=prod: relabelling brings them in.
    const relabelled = await call<ClusterView>(h.admin, "PATCH", "/v1/clusters/eu-west-2", { labels: { env: "prod" } });
    expect(relabelled.body.labels).toEqual({ env: "prod" });
    expect(relabelled.body.effective).toMatchObject({ policies: 8 });
    const removed = await call(h.admin, "DELETE", "/v1/clusters/eu-west-2");
    expect(removed.body).toEqual({ removed: "eu-west-2" });
    expect((await refused(call(h.admin, "GET", "/v1/clusters/eu-west-2"))).status).toBe(404);
    expect((await refused(call(h.admin, "DELETE", "/v1/clusters/eu-west-2"))).status).toBe(404);
    expect((await refused(call(h.admin, "PATCH", "/v1/clusters/eu-west-2", { labels: {} }))).status).toBe(404);
  });

  it("refuses to register a cluster twice with 409", async () => {
    await call(h.admin, "POST", "/v1/clusters", { name: "us-east-1", region: "us-east" });
    const error = await refused(call(h.admin, "POST", "/v1/clusters", { name: "us-east-1", region: "us-east" }));
    expect([error.status, error.message]).toEqual([409, "cluster us-east-1 is already registered"]);
  });

  it("refuses to register a cluster whose layers would not combine, and registers nothing", async () => {
    // cluster/eu-west-1's layer says it is in eu-west.
    const error = await refused(call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "us-east" }));
    expect(error.status).toBe(409);
    expect(error.message).toMatch(/^cluster eu-west-1 cannot be registered: .*in region "eu-west", but the cluster is in region "us-east" \[rule: layer-target\]/);
    expect((await refused(call(h.admin, "GET", "/v1/clusters/eu-west-1"))).status).toBe(404);
    // In its own region it is welcome.
    const ok = await call<ClusterView>(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } });
    expect(ok.body.effective).toMatchObject({ policies: 10 });
  });

  it("registers many clusters in one change, all or none", async () => {
    const items = [
      { name: "fleet-1", region: "eu-west", labels: { env: "prod" } },
      { name: "fleet-2", region: "us-east" },
      { name: "fleet-3", region: "us-east", labels: { env: "dev" } },
    ];
    const registered = await call<{ items: ClusterView[] }>(h.admin, "POST", "/v1/cluster-registrations", { items }, { headers: { "x-correlation-id": "fleet-change" } });
    expect(registered.status).toBe(201);
    expect(registered.body.items.map((c) => [c.name, c.region, c.labels])).toEqual([
      ["fleet-1", "eu-west", { env: "prod" }],
      ["fleet-2", "us-east", {}],
      ["fleet-3", "us-east", { env: "dev" }],
    ]);
    expect(registered.body.items.every((c) => "hash" in c.effective && typeof c.effective.hash === "string")).toBe(true);
    // One change: one correlation id, an entry per cluster registered, one bundle list per region.
    const entries = await eventually("the change's audit entries", async () => {
      const { items: found } = (await call<{ items: { entry: { kind: string; cluster: string | null } }[] }>(h.admin, "GET", "/v1/audit/entries?correlation=fleet-change&limit=100")).body;
      return found.length >= 5 ? found : undefined;
    });
    expect(entries.filter((e) => e.entry.kind === "cluster.registered").map((e) => e.entry.cluster).sort()).toEqual(["fleet-1", "fleet-2", "fleet-3"]);
    expect(entries.filter((e) => e.entry.kind === "bundles.published")).toHaveLength(2);

    // A name taken, a name listed twice, a cluster whose layers would not combine: nothing registered.
    const taken = await refused(call(h.admin, "POST", "/v1/cluster-registrations", { items: [{ name: "fleet-4", region: "eu-west" }, { name: "fleet-2", region: "us-east" }] }));
    expect([taken.status, taken.message]).toEqual([409, "cluster fleet-2 is already registered"]);
    const twice = await refused(call(h.admin, "POST", "/v1/cluster-registrations", { items: [{ name: "fleet-5", region: "eu-west" }, { name: "fleet-5", region: "eu-west" }] }));
    expect([twice.status, twice.message]).toEqual([422, "cluster fleet-5 is listed twice"]);
    // cluster/eu-west-1's layer says it is in eu-west (a test above registered it there: removed first).
    await call(h.admin, "DELETE", "/v1/clusters/eu-west-1").catch(() => undefined);
    const apart = await refused(call(h.admin, "POST", "/v1/cluster-registrations", { items: [{ name: "fleet-6", region: "eu-west" }, { name: "eu-west-1", region: "us-east" }] }));
    expect(apart.status).toBe(409);
    expect(apart.message).toMatch(/^the 2 clusters cannot be registered: .*in region "eu-west", but the cluster is in region "us-east"/);
    const names = (await call<{ items: ClusterView[] }>(h.admin, "GET", "/v1/clusters")).body.items.map((c) => c.name);
    expect(names.filter((n) => ["fleet-4", "fleet-5", "fleet-6"].includes(n))).toEqual([]);

    // Each item is checked as a single registration is, with its field path.
    const bad = await refused(call(h.admin, "POST", "/v1/cluster-registrations", { items: [{ name: "ok-1", region: "eu-west" }, { name: "Bad_Name", region: "eu-west" }] }));
    expect([bad.status, bad.causes[0]?.field]).toEqual([400, "items.1.name"]);
    expect((await refused(call(h.admin, "POST", "/v1/cluster-registrations", { items: [] }))).status).toBe(400);

    // polity cluster register --file: a YAML list.
    const file = join(h.dir, "fleet.yaml");
    writeFileSync(file, "- {name: fleet-7, region: eu-west, labels: {env: prod}}\n- name: fleet-8\n  region: us-east\n");
    const config = hubs.cliConfig("fleet", h.admin);
    const run = await hubs.cli(["cluster", "register", "--file", file], { config });
    expect([run.code, run.out]).toEqual([0, "2 clusters registered in one change (regions eu-west, us-east)\n"]);
    const mixed = await hubs.cli(["cluster", "register", "fleet-9", "--file", file], { config });
    expect(mixed.code).toBe(2);
    expect(mixed.err).toMatch(/--file lists the clusters with their regions, labels and facts/);
  });

  it("refuses names and labels that Kubernetes would not accept with 400 and the field", async () => {
    const badName = await refused(call(h.admin, "POST", "/v1/clusters", { name: "EU_West", region: "eu-west" }));
    expect(badName.status).toBe(400);
    expect(badName.causes[0]?.field).toBe("name");
    const badLabel = await refused(call(h.admin, "PATCH", "/v1/clusters/us-east-1", { labels: { "bad key!": "x" } }));
    expect(badLabel.status).toBe(400);
    expect(badLabel.message).toMatch(/labels/);
  });

  it("mints join tokens for registered clusters only, expiring after an hour unless told otherwise", async () => {
    const before = Date.now();
    const minted = await call<{ cluster: string; token: string; expiresAt: string }>(h.admin, "POST", "/v1/clusters/us-east-1/join-tokens", {});
    expect(minted.status).toBe(201);
    expect(minted.body.cluster).toBe("us-east-1");
    expect(minted.body.token).toMatch(/^join_/);
    expect(Date.parse(minted.body.expiresAt) - before).toBeGreaterThanOrEqual(HOUR - 1000);
    expect(Date.parse(minted.body.expiresAt) - before).toBeLessThan(HOUR + MINUTE);
    const short = await call<{ expiresAt: string }>(h.admin, "POST", "/v1/clusters/us-east-1/join-tokens", { ttlSeconds: 600 });
    expect(Date.parse(short.body.expiresAt) - before).toBeLessThan(11 * MINUTE);
    expect((await refused(call(h.admin, "POST", "/v1/clusters/nowhere-1/join-tokens", {}))).status).toBe(404);
    expect((await refused(call(h.admin, "POST", "/v1/clusters/us-east-1/join-tokens", { ttlSeconds: 10 }))).status).toBe(400);
  });

  // BUG: the body schema makes the (optional) body required: `curl -X POST …/join-tokens`
  // gets 400 "(body): must be object", though every field has a default and the handler
  // expects an absent body. (The CLI always sends {}.)
  it("mints a join token when the request has no body at all", async () => {
    const minted = await call<{ token: string }>(h.admin, "POST", "/v1/clusters/us-east-1/join-tokens");
    expect(minted.status).toBe(201);
  });
});

// ---- 4. enrolment and identity over real TLS ---------------------------------------------------

describe("enrolment and identity over real TLS", () => {
  let h: TestHub;
  let eu1: Credentials;
  let enrolledAt: number;
  let creds: string;

  const effective = (endpoint: HubEndpoint, cluster: string) => call<{ hash: string }>(endpoint, "GET", `/v1/clusters/${cluster}/effective`);

  beforeAll(async () => {
    h = await hubs.startCopy("identity");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
    for (const [name, region] of [
      ["eu-west-1", "eu-west"],
      ["eu-west-3", "eu-west"],
      ["us-east-1", "us-east"],
    ] as const) {
      await call(h.admin, "POST", "/v1/clusters", { name, region, labels: { env: "prod" } });
    }
    enrolledAt = Date.now();
    eu1 = await enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1"));
    creds = join(hubs.root, "identity-eu-west-1");
    saveCredentials(creds, eu1);
  });

  it("enrols a cluster with a join token and issues an ECDSA P-256 client certificate naming its SPIFFE ID, valid for about 24 hours", async () => {
    expect(eu1.spiffeId).toBe(`spiffe://${FEDERATION}/region/eu-west/cluster/eu-west-1`);
    const certificate = new x509.X509Certificate(eu1.certificatePem);
    const ca = new x509.X509Certificate(h.hub.caPem);
    const san = certificate.getExtension(x509.SubjectAlternativeNameExtension);
    expect(san?.names.items.map((n) => [n.type, n.value])).toEqual([["url", eu1.spiffeId]]);
    expect(certificate.publicKey.algorithm).toMatchObject({ name: "ECDSA", namedCurve: "P-256" });
    expect(certificate.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([CLIENT_AUTH]);
    expect(certificate.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(false);
    expect(certificate.subject).toContain("CN=eu-west-1");
    expect(certificate.issuer).toBe(ca.subject);
    expect(await certificate.verify({ publicKey: ca.publicKey, signatureOnly: true })).toBe(true);
    expect(certificate.serialNumber.toLowerCase().replace(/^0+/, "")).toBe(eu1.serial);
    // X.509 times have whole seconds (the answer's notAfter has milliseconds: see the bug below).
    expect(Math.abs(certificate.notAfter.getTime() - Date.parse(eu1.notAfter))).toBeLessThan(1000);
    const lifeFromNow = certificate.notAfter.getTime() - enrolledAt;
    expect(lifeFromNow).toBeGreaterThan(DAY - MINUTE);
    expect(lifeFromNow).toBeLessThan(DAY + MINUTE);
    // Renewal is due two thirds of the way from issuance to expiry (not from notBefore, which
    // is backdated five minutes for clock skew: a 20 s certificate would be due at once).
    const life = certificate.notAfter.getTime() - enrolledAt;
    // (Within a few seconds: the answer's times have milliseconds, the certificate's whole seconds, and enrolment takes a moment.)
    expect(Math.abs(Date.parse(eu1.renewAfter) - (enrolledAt + (2 * life) / 3))).toBeLessThan(5000);
    // The key stays with the cluster, readable by its owner only.
    expect(statSync(join(creds, "key.pem")).mode & 0o777).toBe(0o600);
    const recorded = await call<{ certificates: { serial: string }[] }>(h.admin, "GET", "/v1/clusters/eu-west-1");
    expect(recorded.body.certificates.map((c) => c.serial)).toEqual([eu1.serial]);
  });

  // BUG: the enrolment answer (and the certificates table) carry the expiry with
  // milliseconds, up to a second later than the certificate's own notAfter, so an agent
  // that trusts `notAfter` thinks its certificate valid a moment after TLS refuses it.
  it("answers an enrolment with the certificate's own notAfter", async () => {
    expect(new x509.X509Certificate(eu1.certificatePem).notAfter.toISOString()).toBe(eu1.notAfter);
  });

  it("issues certificates that openssl verifies against the federation CA", async () => {
    const verified = await run("openssl", ["verify", "-purpose", "sslclient", "-CAfile", "ca.pem", "cert.pem"], { cwd: creds });
    expect(verified.code, verified.err).toBe(0);
    expect(verified.out.trim()).toBe("cert.pem: OK");
    const text = await run("openssl", ["x509", "-in", "cert.pem", "-noout", "-text"], { cwd: creds });
    expect(text.out).toContain(`URI:${eu1.spiffeId}`);
    expect(text.out).toContain("TLS Web Client Authentication");
    expect(text.out).toContain("ASN1 OID: prime256v1");
  });

  it("lets curl with the cluster's certificate read its own effective set, and refuses it another cluster's with 403", async () => {
    const curl = (path: string, withCertificate = true) =>
      run("curl", [
        "-sS",
        "--cacert",
        "ca.pem",
        ...(withCertificate ? ["--cert", "cert.pem", "--key", "key.pem"] : []),
        "-w",
        "\n%{http_code}",
        `${h.hub.url}${path}`,
      ], { cwd: creds });
    const split = (r: Run) => {
      const lines = r.out.trimEnd().split("\n");
      return { status: Number(lines.pop()), body: JSON.parse(lines.join("\n")) as Record<string, unknown> };
    };
    const own = split(await curl("/v1/clusters/eu-west-1/effective"));
    expect(own.status).toBe(200);
    expect(own.body.hash).toBe((await effective(h.admin, "eu-west-1")).body.hash);
    const other = split(await curl("/v1/clusters/us-east-1/effective"));
    expect(other.status).toBe(403);
    expect(other.body).toMatchObject({ kind: "Status", code: 403, reason: "Forbidden", message: "cluster eu-west-1 may read only what is its own" });
    const anonymous = split(await curl("/v1/clusters/eu-west-1/effective", false));
    expect(anonymous.status).toBe(401);
  });

  it("completes a TLS handshake with openssl s_client, showing the hub's certificate chain and asking for a client certificate", async () => {
    const port = new URL(h.hub.url).port;
    const handshake = await run("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, "-CAfile", "ca.pem", "-showcerts", "-verify_return_error"], { cwd: creds, timeoutMs: 10_000 });
    expect(handshake.code, handshake.err).toBe(0);
    expect(handshake.out).toContain("Certificate chain");
    expect(handshake.out).toMatch(/ 0 s:CN = localhost, O = polity/);
    expect(handshake.out).toMatch(/i:CN = Polity federation polity CA, O = polity/);
    expect(handshake.out).toContain("Verify return code: 0 (ok)");
    expect(handshake.out).toMatch(/Acceptable client certificate CA names\n\s*CN = Polity federation polity CA, O = polity/);
    const brief = await run("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, "-CAfile", "ca.pem", "-brief", "-cert", "cert.pem", "-key", "key.pem"], { cwd: creds });
    expect(brief.code, brief.err).toBe(0);
    expect(brief.err).toContain("CONNECTION ESTABLISHED");
    expect(brief.err).toContain("Verification: OK");
    expect(brief.err).toMatch(/Peer certificate: CN = localhost, O = polity/);
  });

  it("lets a cluster read only what is its own and write nothing", async () => {
    const me = clusterEndpoint(h.hub.url, eu1);
    const who = await call<{ principal: Record<string, unknown> }>(me, "GET", "/v1/whoami");
    expect(who.body.principal).toEqual({ kind: "cluster", cluster: "eu-west-1", region: "eu-west", serial: eu1.serial, expired: false });
    expect((await call<{ items: { name: string }[] }>(me, "GET", "/v1/clusters")).body.items.map((c) => c.name)).toEqual(["eu-west-1"]);
    for (const [method, path, body] of [
      ["GET", "/v1/clusters/us-east-1", undefined],
      ["GET", "/v1/tokens", undefined],
      ["POST", "/v1/apply", { files: [CLUSTER_EU1] }],
      ["POST", "/v1/clusters/eu-west-1/join-tokens", {}],
      ["PATCH", "/v1/clusters/eu-west-1", { labels: {} }],
      ["POST", "/v1/tokens", { name: "x", role: "auditor" }],
    ] as const) {
      expect((await refused(call(me, method, path, body))).status, `${method} ${path}`).toBe(403);
    }
  });

  describe("join tokens", () => {
    it("refuses a join token that was never minted with 401", async () => {
      const error = await refused(enroll(h.hub, "eu-west-1", "join_never-minted"));
      expect([error.status, error.message]).toEqual([401, "the join token is not valid: mint one with 'polity cluster join-token <cluster>'"]);
      await healthy(h);
    });

    it("refuses an expired join token with 401 saying when it expired", async () => {
      const token = await atTime(h.clock, -2 * HOUR, () => joinToken(h, "eu-west-1"));
      const error = await refused(enroll(h.hub, "eu-west-1", token));
      expect(error.status).toBe(401);
      expect(error.message).toMatch(/^the join token expired at \d{4}-\d\d-\d\dT.*; mint a new one$/);
      await healthy(h);
    });

    it("admits one enrolment per join token: a reused token is refused with 401", async () => {
      const token = await joinToken(h, "eu-west-1");
      await enroll(h.hub, "eu-west-1", token);
      const error = await refused(enroll(h.hub, "eu-west-1", token));
      expect(error.status).toBe(401);
      expect(error.message).toMatch(/^the join token was already used \(at .*\); a join token admits one enrolment$/);
      await healthy(h);
    });

    it("admits exactly one of two simultaneous enrolments with the same join token", async () => {
      const token = await joinToken(h, "eu-west-1");
      const results = await Promise.allSettled([enroll(h.hub, "eu-west-1", token), enroll(h.hub, "eu-west-1", token)]);
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      const [rejected] = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
      expect((rejected!.reason as HubError).status).toBe(401);
    });

    // Keeping the token usable is right: the token, not the CSR, decides the cluster, so a
    // mismatched CSR gains nothing, and burning the token would make a typo cost a new one.
    it("refuses a CSR whose common name is another cluster with 403, and leaves the token usable for its own cluster", async () => {
      const token = await joinToken(h, "eu-west-1");
      const error = await refused(enroll(h.hub, "us-east-1", token));
      expect(error.status).toBe(403);
      expect(error.message).toBe('the CSR is for cluster "us-east-1", but the token is for cluster "eu-west-1"');
      const admitted = await enroll(h.hub, "eu-west-1", token);
      expect(admitted.spiffeId).toBe(eu1.spiffeId);
      await healthy(h);
    });

    it("refuses a malformed CSR, and a CSR for an RSA key, with 400", async () => {
      const token = await joinToken(h, "eu-west-1");
      const garbage = await refused(call(h.anonymous, "POST", "/v1/enroll", { joinToken: token, csr: "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----\n" }));
      expect([garbage.status, garbage.message]).toEqual([400, "the CSR is not a PEM or DER PKCS #10 certificate request"]);
      const rsa = await run("openssl", ["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "/dev/null", "-subj", "/CN=eu-west-1"]);
      expect(rsa.code, rsa.err).toBe(0);
      const wrongKey = await refused(call(h.anonymous, "POST", "/v1/enroll", { joinToken: token, csr: rsa.out }));
      expect(wrongKey.status).toBe(400);
      expect(wrongKey.message).toMatch(/^the CSR's key must be ECDSA P-256, not RSA/);
      // A bad CSR does not use the token up.
      expect((await enroll(h.hub, "eu-west-1", token)).spiffeId).toBe(eu1.spiffeId);
      await healthy(h);
    });
  });

  describe("client certificates the hub refuses", () => {
    it("refuses a client certificate from a foreign CA, or self-signed, with 401 'not issued by this federation's CA'", async () => {
      const foreign = await foreignCertificate({ spiffeId: eu1.spiffeId, issuer: { name: "CN=Some other CA" } });
      const error = await refused(call(endpointWith(h, foreign), "GET", "/v1/clusters/eu-west-1/effective"));
      expect([error.status, error.message]).toEqual([401, "client certificate refused: it was not issued by this federation's CA"]);
      const self = await foreignCertificate({ spiffeId: eu1.spiffeId, issuer: "self" });
      const selfError = await refused(call(endpointWith(h, self), "GET", "/v1/whoami"));
      expect([selfError.status, selfError.message]).toEqual([401, "client certificate refused: it was not issued by this federation's CA"]);
      // One that copies the CA's name but not its key.
      const lookalike = await foreignCertificate({ spiffeId: eu1.spiffeId, issuer: { name: "CN=Polity federation polity CA, O=polity" } });
      const lookalikeError = await refused(call(endpointWith(h, lookalike), "GET", "/v1/whoami"));
      expect([lookalikeError.status, lookalikeError.message]).toEqual([401, "client certificate refused: it was not issued by this federation's CA"]);
      const otherFederation = await foreignCertificate({ spiffeId: "spiffe://elsewhere/region/eu-west/cluster/eu-west-1", issuer: "self" });
      const otherError = await refused(call(endpointWith(h, otherFederation), "GET", "/v1/whoami"));
      expect(otherError.status).toBe(401);
      expect(otherError.message).toMatch(/names no cluster of federation polity \(it names spiffe:\/\/elsewhere\//);
      await healthy(h);
    });

    it("refuses an expired client certificate with 401 on every endpoint but renewal", async () => {
      // Issued two days ago with a one-day life: TLS, on the real clock, finds it expired.
      const expired = await atTime(h.clock, -2 * DAY, async () => enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1")));
      expect(Date.parse(expired.notAfter)).toBeLessThan(Date.now() - DAY + MINUTE);
      const me = clusterEndpoint(h.hub.url, expired);
      for (const path of ["/v1/whoami", "/v1/clusters/eu-west-1/effective", "/v1/clusters"]) {
        const error = await refused(call(me, "GET", path));
        expect(error.status, path).toBe(401);
        const notAfter = new x509.X509Certificate(expired.certificatePem).notAfter.toISOString();
        expect(error.message).toBe(`client certificate refused: it expired at ${notAfter}; renew it (POST /v1/renew) within the grace window`);
      }
      await healthy(h);
    });
  });

  describe("renewal", () => {
    it("renews a valid certificate over mutual TLS: a new serial for the same cluster and key", async () => {
      const renewed = await renew(h.hub.url, eu1);
      expect(renewed.serial).not.toBe(eu1.serial);
      expect(renewed.spiffeId).toBe(eu1.spiffeId);
      expect(renewed.privateKeyPem).toBe(eu1.privateKeyPem);
      expect(Date.parse(renewed.notAfter)).toBeGreaterThanOrEqual(Date.parse(eu1.notAfter));
      expect((await effective(clusterEndpoint(h.hub.url, renewed), "eu-west-1")).status).toBe(200);
      expect((await effective(clusterEndpoint(h.hub.url, eu1), "eu-west-1")).status).toBe(200);
    });

    it("renews a valid certificate for a new key (key rotation)", async () => {
      const key = await newPrivateKey();
      const issued = await call<{ certificate: string }>(clusterEndpoint(h.hub.url, eu1), "POST", "/v1/renew", { csr: await createCsr("eu-west-1", key) });
      const rotated: Credentials = { ...eu1, certificatePem: issued.body.certificate, privateKeyPem: key };
      expect((await effective(clusterEndpoint(h.hub.url, rotated), "eu-west-1")).status).toBe(200);
    });

    it("renews an expired certificate within the grace window for the same key", async () => {
      const expired = await atTime(h.clock, -2 * DAY, async () => enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1")));
      const renewed = await renew(h.hub.url, expired);
      expect(Date.parse(renewed.notAfter)).toBeGreaterThan(Date.now() + DAY - MINUTE);
      expect(renewed.privateKeyPem).toBe(expired.privateKeyPem);
      expect((await effective(clusterEndpoint(h.hub.url, renewed), "eu-west-1")).status).toBe(200);
    });

    it("refuses to renew an expired certificate for a different key with 403", async () => {
      const expired = await atTime(h.clock, -2 * DAY, async () => enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1")));
      const csr = await createCsr("eu-west-1", await newPrivateKey());
      const error = await refused(call(clusterEndpoint(h.hub.url, expired), "POST", "/v1/renew", { csr }));
      expect(error.status).toBe(403);
      expect(error.message).toBe("an expired certificate is renewed only for the same key: the CSR must carry the key of the certificate presented");
    });

    it("refuses renewal beyond the grace window with 401 telling the cluster to enrol again", async () => {
      const stale = await atTime(h.clock, -10 * DAY, async () => enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1")));
      const error = await refused(renew(h.hub.url, stale));
      expect(error.status).toBe(401);
      expect(error.message).toMatch(/^the certificate expired at .*, more than 168 h ago \(the grace window\): enrol again with a new join token$/);
      await healthy(h);
    });

    it("refuses renewal without a client certificate with 401, and a CSR for another cluster with 403", async () => {
      const csr = await createCsr("eu-west-1", eu1.privateKeyPem);
      const anonymous = await refused(call(h.anonymous, "POST", "/v1/renew", { csr }));
      expect([anonymous.status, anonymous.message]).toEqual([401, "renewal needs the cluster's current certificate (mutual TLS)"]);
      const withToken = await refused(call(h.admin, "POST", "/v1/renew", { csr }));
      expect(withToken.status).toBe(401);
      const other = await refused(call(clusterEndpoint(h.hub.url, eu1), "POST", "/v1/renew", { csr: await createCsr("us-east-1", eu1.privateKeyPem) }));
      expect(other.status).toBe(403);
      expect(other.message).toMatch(/the CSR is for cluster "us-east-1"/);
    });

    // BUG: an expired certificate not issued by the CA is taken for a merely expired one.
    // Node reports only OpenSSL's last verification error, CERT_HAS_EXPIRED, which hides
    // the failed signature; the hub then trusts the certificate's serial, SPIFFE ID and key.
    // Anyone who has seen a cluster's certificate (its serial is no secret) gets a genuine
    // certificate for that cluster. Remove `.fails` once the hub checks the signature
    // itself, or compares the presented key with the one recorded for the serial.
    it("refuses to renew a forged, expired certificate that copies a real serial and SPIFFE ID", async () => {
      const forged = await foreignCertificate({ spiffeId: eu1.spiffeId, issuer: "self", serial: eu1.serial, notAfter: new Date(Date.now() - HOUR) });
      const csr = await createCsr("eu-west-1", forged.keyPem);
      const error = await refused(call(endpointWith(h, forged), "POST", "/v1/renew", { csr }));
      expect(error.status).toBe(401);
      expect(error.message).toMatch(/not issued by this federation's CA/);
    });
  });

  describe("revocation", () => {
    let eu3: Credentials;

    beforeAll(async () => {
      eu3 = await enroll(h.hub, "eu-west-3", await joinToken(h, "eu-west-3"));
    });

    it("refuses a revoked cluster's certificate with 401 from the next request on, and its unused join tokens no longer admit it", async () => {
      const me = clusterEndpoint(h.hub.url, eu3);
      expect((await effective(me, "eu-west-3")).status).toBe(200); // a kept-alive connection
      const unused = await joinToken(h, "eu-west-3");
      const bundles = () => h.hub.context.db.query<{ cluster: string; version: string; envelope: string }>("SELECT cluster, version::text AS version, envelope FROM bundles WHERE cluster <> 'eu-west-3' ORDER BY cluster");
      const before = await bundles();
      expect(before.length).toBeGreaterThan(0);
      const revoked = await call(h.admin, "POST", "/v1/clusters/eu-west-3/revoke");
      expect(revoked.body).toEqual({ cluster: "eu-west-3", revoked: true, certificates: 1 });
      // Bundles carry no revocation list (nothing read it): a revocation re-signs no other cluster's bundle.
      expect((await bundles()).map((r) => [r.cluster, r.version])).toEqual(before.map((r) => [r.cluster, r.version]));
      for (const row of before) {
        const signed = (JSON.parse(row.envelope) as { signed: Record<string, unknown> }).signed;
        // …and the root version its key is listed in (README, Trust model).
        expect(Object.keys(signed).sort()).toEqual(["cluster", "expires", "federation", "issuedAt", "region", "rootVersion", "specVersion", "targetHash", "targetLength", "type", "version"]);
      }
      const error = await refused(effective(me, "eu-west-3"));
      expect([error.status, error.message]).toEqual([401, "cluster eu-west-3's identity is revoked"]);
      expect((await refused(renew(h.hub.url, eu3))).status).toBe(401);
      const again = await refused(enroll(h.hub, "eu-west-3", unused));
      expect([again.status, again.message]).toEqual([403, "cluster eu-west-3 is revoked"]);
      const mint = await refused(call(h.admin, "POST", "/v1/clusters/eu-west-3/join-tokens", {}));
      expect(mint.status).toBe(403);
      expect(mint.message).toMatch(/remove it and register it again/);
      const listed = await call<{ items: { serial: string; cluster: string }[] }>(h.anonymous, "GET", "/v1/revocations");
      expect(listed.body.items).toContainEqual(expect.objectContaining({ serial: eu3.serial, cluster: "eu-west-3" }));
      await healthy(h);
    });

    it("publishes the revoked serial in a CRL signed by the federation CA, which openssl honours", async () => {
      const pem = (await call<string>(h.anonymous, "GET", "/v1/crl", undefined, { raw: true })).body;
      const crl = new x509.X509Crl(pem);
      const ca = new x509.X509Certificate(h.hub.caPem);
      expect(await crl.verify({ publicKey: ca.publicKey })).toBe(true);
      expect(crl.issuer).toBe(ca.subject);
      expect(crl.entries.map((e) => e.serialNumber.toLowerCase().replace(/^0+/, ""))).toContain(eu3.serial);
      expect(crl.entries.map((e) => e.serialNumber.toLowerCase().replace(/^0+/, ""))).not.toContain(eu1.serial);

      // openssl reads the PEM only under its standard label (see the next test), so it gets the DER.
      const dir = join(hubs.root, "crl");
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "crl.pem"), x509.PemConverter.encode(crl.rawData, "X509 CRL"));
      writeFileSync(join(dir, "ca.pem"), h.hub.caPem);
      writeFileSync(join(dir, "revoked.pem"), eu3.certificatePem);
      writeFileSync(join(dir, "good.pem"), eu1.certificatePem);
      const text = await run("openssl", ["crl", "-in", "crl.pem", "-noout", "-text"], { cwd: dir });
      expect(text.code, text.err).toBe(0);
      const hex = eu3.serial.toUpperCase();
      expect(text.out).toContain(`Serial Number: ${hex.length % 2 === 0 ? hex : `0${hex}`}`);
      expect(text.out).toContain("Cessation Of Operation");
      const revoked = await run("openssl", ["verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "ca.pem", "revoked.pem"], { cwd: dir });
      expect(revoked.code).not.toBe(0);
      expect(revoked.out + revoked.err).toContain("certificate revoked");
      const good = await run("openssl", ["verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "ca.pem", "good.pem"], { cwd: dir });
      expect(good.out.trim()).toBe("good.pem: OK");
    });

    // BUG: /v1/crl labels its PEM "-----BEGIN CRL-----"; RFC 7468 and every tool that reads
    // CRLs (openssl, Node's tls `crl` option, nginx, Envoy) expect "-----BEGIN X509 CRL-----",
    // so `curl …/v1/crl | openssl crl` fails with "Could not read CRL".
    it("serves a CRL that openssl crl reads as it is", async () => {
      const dir = join(hubs.root, "crl-as-served");
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "crl.pem"), (await call<string>(h.anonymous, "GET", "/v1/crl", undefined, { raw: true })).body);
      const text = await run("openssl", ["crl", "-in", "crl.pem", "-noout", "-text"], { cwd: dir });
      expect(text.err).not.toContain("Could not read CRL");
      expect(text.code).toBe(0);
    });

    it("readmits a revoked cluster removed and registered again, with a new join token but not its old certificate", async () => {
      await call(h.admin, "DELETE", "/v1/clusters/eu-west-3");
      await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-3", region: "eu-west" });
      const fresh = await enroll(h.hub, "eu-west-3", await joinToken(h, "eu-west-3"));
      expect((await effective(clusterEndpoint(h.hub.url, fresh), "eu-west-3")).status).toBe(200);
      const old = await refused(effective(clusterEndpoint(h.hub.url, eu3), "eu-west-3"));
      expect(old.status).toBe(401);
    });
  });
});

// ---- 4b. several hub processes on one PostgreSQL ------------------------------------------

const DATABASE_URL = process.env.DATABASE_URL;

describe.skipIf(DATABASE_URL === undefined || DATABASE_URL === "")("hub processes sharing one PostgreSQL", () => {
  const schema = `polity_hub_test_${randomBytes(4).toString("hex")}`;
  let a: TestHub;
  let b: HubProcess;
  let bEndpoint: HubEndpoint;

  beforeAll(async () => {
    const hub = await startHub({ dataDir: join(hubs.root, "pg-a"), databaseUrl: DATABASE_URL!, schema, port: 0, operatorKey: OPERATOR_KEY });
    hubs.running.push(hub);
    const token = readFileSync(hub.adminTokenFile!, "utf8").trim();
    a = { hub, clock: { offsetMs: 0 }, dir: join(hubs.root, "pg-a"), admin: { url: hub.url, caPem: hub.caPem, token }, anonymous: { url: hub.url, caPem: hub.caPem } };
    // The second hub is the real binary, in its own process, on the same schema.
    const url = new URL(DATABASE_URL!);
    url.searchParams.set("options", `-c search_path=${schema}`);
    b = await spawnHub(["--data", join(hubs.root, "pg-b"), "--database", url.toString()]);
    bEndpoint = { url: b.url, caPem: hub.caPem, token };
  });

  afterAll(async () => {
    await b?.stop();
    await a?.hub.context.db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });

  it("serves one federation from both: the same CA, and what one writes the other reads", async () => {
    expect((await call<string>(bEndpoint, "GET", "/v1/ca", undefined, { raw: true })).body).toBe(a.hub.caPem);
    await call(a.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU] });
    await call(bEndpoint, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west" });
    expect((await call<{ items: { name: string }[] }>(a.admin, "GET", "/v1/clusters")).body.items.map((c) => c.name)).toEqual(["eu-west-1"]);
    expect((await call<{ items: { id: string }[] }>(bEndpoint, "GET", "/v1/layers")).body.items.map((l) => l.id)).toEqual(["global", "region/eu-west"]);
  });

  it("refuses a cluster revoked through one hub at once on the other", async () => {
    const creds = await enroll(a.hub, "eu-west-1", await joinToken(a, "eu-west-1"));
    const onB = clusterEndpoint(b.url, creds);
    expect((await call(onB, "GET", "/v1/clusters/eu-west-1/effective")).status).toBe(200);
    await call(a.admin, "POST", "/v1/clusters/eu-west-1/revoke");
    const error = await refused(call(onB, "GET", "/v1/clusters/eu-west-1/effective"));
    expect([error.status, error.message]).toEqual([401, "cluster eu-west-1's identity is revoked"]);
    const crl = new x509.X509Crl((await call<string>(bEndpoint, "GET", "/v1/crl", undefined, { raw: true })).body);
    expect(crl.entries.map((e) => e.serialNumber.toLowerCase().replace(/^0+/, ""))).toContain(creds.serial);
  });

  it("answers an agent's long poll on one hub as soon as a change is committed through the other", async () => {
    await call(a.admin, "POST", "/v1/clusters", { name: "eu-west-2", region: "eu-west" });
    const creds = await enroll(a.hub, "eu-west-2", await joinToken(a, "eu-west-2"));
    const onB = clusterEndpoint(b.url, creds);
    const first = await call<Buffer>(onB, "GET", "/v1/agent/bundle", undefined, { raw: true, binary: true });
    const held = String(first.headers.etag);
    const started = Date.now();
    const poll = call<Buffer>(onB, "GET", "/v1/agent/bundle?wait=30", undefined, { raw: true, binary: true, headers: { "if-none-match": held }, timeoutMs: 40_000 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await call(a.admin, "POST", "/v1/apply", { files: [GLOBAL_WITH_COST_CENTER] });
    const answered = await poll;
    expect(answered.status).toBe(200);
    // The compressed answer's tag is weak: W/"<version>".
    const version = (etag: unknown) => Number(String(etag).replace(/^W\//, "").replaceAll('"', ""));
    expect(version(answered.headers.etag)).toBeGreaterThan(version(held));
    // Woken by the other hub's notification, not by its own timer: well within the 30 s wait.
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

// ---- 5. bad requests ------------------------------------------------------------------

describe("bad requests", () => {
  let h: TestHub;

  beforeAll(async () => {
    h = await hubs.startCopy("bodies");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL] });
  });

  it("refuses a body that is not JSON with 400", async () => {
    expectStatus(await raw(h, "POST", "/v1/clusters", { body: '{"name": "eu-west-1", ' }), 400, /^the request body is not valid JSON/);
    expectStatus(await raw(h, "POST", "/v1/clusters", { body: "" }), 400, /not valid JSON|body/);
    expectStatus(await raw(h, "POST", "/v1/clusters", { body: "null" }), 400, /not valid/);
    expectStatus(await raw(h, "POST", "/v1/clusters", { body: "[]" }), 400, /not valid/);
  });

  it("refuses fields of the wrong type, and unknown fields, with 400 naming each field", async () => {
    const wrong = expectStatus(await raw(h, "POST", "/v1/clusters", { body: JSON.stringify({ name: 5, region: ["eu-west"] }) }), 400, /^the request body is not valid: /);
    expect(wrong.details?.causes?.map((c) => c.field).sort()).toEqual(["name", "region"]);
    const unknown = expectStatus(await raw(h, "POST", "/v1/clusters", { body: JSON.stringify({ name: "eu-west-1", region: "eu-west", colour: "blue" }) }), 400, /colour: unknown field/);
    expect(unknown.details?.causes).toEqual([{ field: "colour", message: "unknown field" }]);
    const missing = expectStatus(await raw(h, "POST", "/v1/apply", { body: JSON.stringify({ dryRun: "yes" }) }), 400, /files/);
    expect(missing.details?.causes?.length).toBeGreaterThanOrEqual(1);
    expectStatus(await raw(h, "POST", "/v1/apply", { body: JSON.stringify({ files: [{ name: "a.yaml", content: "x", mode: "0644" }] }) }), 400, /files\.0\.mode: unknown field/);
    expectStatus(await raw(h, "POST", "/v1/apply", { body: JSON.stringify({ files: [] }) }), 400, /files/);
  });

  it("refuses NUL and other characters a database or a terminal cannot take with 400 naming the field, never a 500", async () => {
    const nulName = expectStatus(await raw(h, "POST", "/v1/tokens", { body: JSON.stringify({ name: "ci\u0000bot", role: "auditor" }) }), 400, /^the request body is not valid: name: must not contain control/);
    expect(nulName.details?.causes).toEqual([{ field: "name", message: "must not contain control or bidirectional formatting characters (U+0000 at character 3)" }]);
    // Bidirectional overrides render a name in another order than it is stored (token list, audit log).
    expectStatus(await raw(h, "POST", "/v1/tokens", { body: JSON.stringify({ name: "admin\u202Etoor", role: "auditor" }) }), 400, /name: must not contain control or bidirectional formatting characters \(U\+202E at character 6\)/);
    expectStatus(await raw(h, "POST", "/v1/tokens", { body: JSON.stringify({ name: "isolate\u2066x", role: "auditor" }) }), 400, /U\+2066/);
    expectStatus(await raw(h, "POST", "/v1/apply", { body: JSON.stringify({ files: [{ name: "global\u0000.yaml", content: GLOBAL.content }] }) }), 400, /files\.0\.name: must not contain control/);
    expectStatus(await raw(h, "POST", "/v1/apply", { body: JSON.stringify({ files: [{ name: "global.yaml", content: `${GLOBAL.content}\u0000` }] }) }), 400, /files\.0\.content: must not contain a NUL character/);
    expectStatus(await raw(h, "GET", "/v1/layers/global/versions/9007199254740993"), 400, /^version must be a whole number from 1 to 2147483647, not "9007199254740993"$/);
    expectStatus(await raw(h, "GET", "/v1/layers/global/versions/2147483648"), 400, /version must be a whole number/);
    expectStatus(await raw(h, "GET", "/v1/audit/entries?actor=user%3Aa%00b"), 400, /^actor must not contain control or bidirectional formatting characters \(U\+0000 at character 7\)$/);
    expectStatus(await raw(h, "GET", "/v1/audit/entries?cluster=%E2%80%AEx"), 400, /^cluster must not contain/);
    // Names people read elsewhere are fine: accents, scripts, emoji.
    expect((await call(h.admin, "POST", "/v1/tokens", { name: "équipe réseau 東京 🚀", role: "auditor" })).status).toBe(201);
    await healthy(h);
  });

  it("refuses a policy whose expression is built to be slow, before it reaches any agent, naming the rule", async () => {
    const slow = withPolicy(
      GLOBAL,
      "apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: slow, owner: platform-team }\nspec:\n  domain: workload-security\n  match: { kinds: [Pod] }\n  validations:\n    - name: cubed\n      expression: \"object.spec.containers.all(a, object.spec.containers.all(b, object.spec.containers.all(c, a.name != b.name || b.name != c.name || true)))\"\n  enforcement: warn\n",
    );
    const error = await refused(call(h.admin, "POST", "/v1/apply", { files: [slow] }));
    expect([error.status, error.reason]).toEqual([422, "Invalid"]);
    expect(error.causes[0]?.message).toMatch(/^policy "slow", rule "cubed": too costly at 1:1: its estimated cost, \d+, is over the limit of 1000000 for one evaluation/);
    await healthy(h);
  });

  it("keeps answering /healthz while it parses a change of several MiB, and refuses it whole", { timeout: 120_000 }, async () => {
    const policy = (i: number) =>
      `---\napiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: p${i}, owner: platform-team }\nspec:\n  domain: workload-security\n  match: { kinds: [Pod] }\n  validations:\n    - name: r\n      expression: "object.metadata.name != 'x${i}'"\n  enforcement: warn\n`;
    const file = (name: string, from: number, count: number, tail = "") => ({ name, content: `${GLOBAL.content.trimEnd()}\n${Array.from({ length: count }, (_, i) => policy(from + i)).join("")}${tail}` });
    // The last document is wrong: the hub reads all of it before it can say so.
    const files = [file("a.yaml", 0, 6000), file("b.yaml", 6000, 6000, "---\napiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: broken, owner: platform-team }\nspec: { colour: blue }\n")];
    const pending = call(h.admin, "POST", "/v1/apply", { files }, { timeoutMs: 110_000 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    const latencies: number[] = [];
    let done = false;
    void pending.then(() => (done = true));
    while (!done) {
      const started = performance.now();
      await call(h.admin, "GET", "/healthz");
      latencies.push(performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const error = (await pending) as HubError;
    expect(error.status).toBe(422);
    expect(error.causes.some((c) => c.field === "spec.colour")).toBe(true);
    latencies.sort((a, b) => a - b);
    // While it parsed for seconds, /healthz was answered in the slices between: the median well under 100 ms.
    expect(latencies.length).toBeGreaterThan(10);
    expect(latencies[Math.floor(latencies.length / 2)]!).toBeLessThan(100);
    expect(latencies[latencies.length - 1]!).toBeLessThan(1000);
  });

  it("decides who may touch layers before it reads a change: 24 MiB that would not even parse is 403 for an auditor's apply and a cluster's apply or diff", async () => {
    const content = "{[: ".repeat(3 * 1024 * 1024);
    const files = [
      { name: "a.yaml", content },
      { name: "b.yaml", content },
    ];
    // Read, the files would be refused for their syntax (422): refused first, they are a 403.
    const auditor = await mint(h, { name: "reader", role: "auditor" });
    expectStatus(await raw(h, "POST", "/v1/apply", { body: JSON.stringify({ files }), authorization: `Bearer ${auditor.token}` }), 403, /the auditor role is read-only/);
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-9", region: "eu-west" });
    const cluster = clusterEndpoint(h.hub.url, await enroll(h.hub, "eu-west-9", await joinToken(h, "eu-west-9")));
    for (const path of ["/v1/apply", "/v1/diff"]) {
      const error = await refused(call(cluster, "POST", path, { files }));
      expect([error.status, error.message]).toEqual([403, "cluster eu-west-9 may read only what is its own"]);
    }
    // An auditor may ask what a change would do: its diff is read, and refused for what it holds.
    expect((await refused(call(auditor.endpoint, "POST", "/v1/diff", { files }))).status).toBe(422);
  });

  it("the CLI reads no answer past its bound: a hub impostor sending 200 MiB gets a clear error, not a crash", async () => {
    const impostor = await hugeAnswers(await h.hub.context.identity.serverCertificate(["localhost"], ["127.0.0.1"]), 200, "application/json");
    try {
      const url = impostor.url;
      const run = await hubs.cli(["get", "clusters"], { config: hubs.cliConfig("impostor", { url, caPem: h.hub.caPem, token: "polity_not-a-real-token" }) });
      expect(run.code).not.toBe(0);
      expect(run.err).toMatch(/GET \/v1\/clusters: the answer is over 67108864 bytes; at most 67108864 bytes are read/);
      expect(run.err).not.toMatch(/\n\s+at /); // no stack trace
      expect(impostor.sent()).toBeLessThan(200);
    } finally {
      impostor.close();
    }
  });

  it("refuses a body that is not JSON by its content type with 415", async () => {
    expectStatus(await raw(h, "POST", "/v1/clusters", { body: "name=eu-west-1", contentType: "application/x-www-form-urlencoded" }), 415, /send JSON/);
  });

  it("refuses an oversized body with 413: over 64 KiB for a cluster, over 32 MiB for an apply", async () => {
    const labels = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, "v".repeat(40)]));
    expectStatus(await raw(h, "POST", "/v1/clusters", { body: JSON.stringify({ name: "big", region: "eu-west", labels }) }), 413, /larger than this endpoint accepts/);
    const content = "#".repeat(33 * 1024 * 1024);
    expectStatus(await raw(h, "POST", "/v1/apply", { body: JSON.stringify({ files: [{ name: "huge.yaml", content }] }) }), 413, /larger than this endpoint accepts/);
    // Under the endpoint's limit, a body of that size is read (and here refused for its file's size).
    const answer = await raw(h, "POST", "/v1/apply", { body: JSON.stringify({ files: [{ name: "big.yaml", content: "#".repeat(17 * 1024 * 1024) }] }) });
    expect([400, 413, 422]).toContain(answer.status);
    await healthy(h);
  });

  it("refuses a deeply nested body and a YAML alias bomb without falling over", async () => {
    const deep = `{"files": ${"[".repeat(200_000)}${"]".repeat(200_000)}}`;
    const nested = await raw(h, "POST", "/v1/apply", { body: deep });
    expect(nested.status).toBeGreaterThanOrEqual(400);
    expect(nested.status).toBeLessThan(500);
    const bomb = [
      "apiVersion: polity.dev/v1",
      "kind: Layer",
      "metadata: { name: global }",
      "spec: { tier: global, owners: [x] }",
      "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
      ...Array.from({ length: 8 }, (_, i) => `x${i + 1}: &a${i + 1} [*a${i}, *a${i}, *a${i}, *a${i}, *a${i}, *a${i}, *a${i}, *a${i}, *a${i}]`),
    ].join("\n");
    const laughs = await raw(h, "POST", "/v1/apply", { body: JSON.stringify({ files: [{ name: "bomb.yaml", content: bomb }] }) });
    expect(laughs.status, laughs.text).toBeGreaterThanOrEqual(400);
    expect(laughs.status).toBeLessThan(500);
    await healthy(h);
  });

  it("answers an unknown endpoint with 404 pointing at the API description", async () => {
    const status = expectStatus(await raw(h, "GET", "/v1/nothing-here"), 404, /^no such endpoint: GET \/v1\/nothing-here; the API is described at \/openapi\.json$/);
    expect(status.reason).toBe("NotFound");
    expectStatus(await raw(h, "PUT", "/v1/clusters"), 404, /no such endpoint: PUT \/v1\/clusters/);
    expectStatus(await raw(h, "GET", "/v1/layers/namespace/x"), 404, /layers are global, region\/<name> and cluster\/<name>/);
  });

  it("still answers /healthz after all of it", async () => {
    await healthy(h);
    expect((await call(h.admin, "GET", "/v1/layers")).status).toBe(200);
  });
});

// ---- 6. restart ------------------------------------------------------------------------

describe("a restarted hub process", () => {
  // Killed with SIGKILL in the middle of applying a change (at six moments), the hub has
  // either not committed it, or committed it with every bundle it makes, under its
  // correlation id: never a layer version without its bundles.
  it("commits a change and its bundles together or not at all, however it is killed", { timeout: 180_000 }, async () => {
    const dir = join(hubs.root, "killed-mid-apply");
    cpSync(hubs.template, dir, { recursive: true });
    const token = readFileSync(join(dir, "admin.token"), "utf8").trim();
    let hub = await spawnHub(["--data", dir]);
    let admin: HubEndpoint = { url: hub.url, caPem: hubs.bootstrap.caPem, token };
    await call(admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU] });
    for (let i = 0; i < 30; i++) await call(admin, "POST", "/v1/clusters", { name: `eu-west-${i + 10}`, region: "eu-west", labels: { env: i % 2 === 0 ? "prod" : "dev" } });
    const outcomes: string[] = [];
    for (let trial = 0; trial < 6; trial++) {
      // A policy more in each trial: every cluster's effective set changes.
      const change = withPolicy(GLOBAL, `apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: trial-${trial}, owner: platform-team }\nspec:\n  domain: workload-security\n  match: { kinds: [Pod] }\n  validations: [{ expression: "true" }]\n  enforcement: audit\n`);
      const sent = call(admin, "POST", "/v1/apply", { files: [change] }, { headers: { "x-correlation-id": `trial-${trial}` } }).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, trial * 30));
      hub.child.kill("SIGKILL");
      await sent;
      await new Promise<void>((resolve) => (hub.child.exitCode !== null || hub.child.signalCode !== null ? resolve() : hub.child.once("exit", () => resolve())));
      const db = await openDatabase({ dataDir: join(dir, "db") });
      try {
        const [latest] = await db.query<{ correlation_id: string | null }>("SELECT correlation_id FROM layer_versions WHERE layer_id = 'global' ORDER BY version DESC LIMIT 1");
        const bundles = await db.query<{ cluster: string; correlation_id: string | null }>("SELECT cluster, correlation_id FROM bundles ORDER BY cluster");
        const committed = latest?.correlation_id === `trial-${trial}`;
        outcomes.push(committed ? "committed" : "not committed");
        expect(bundles).toHaveLength(30);
        for (const row of bundles) expect(row.correlation_id === `trial-${trial}`, `${row.cluster} after trial ${trial}`).toBe(committed);
      } finally {
        await db.close();
      }
      hub = await spawnHub(["--data", dir]);
      admin = { url: hub.url, caPem: hubs.bootstrap.caPem, token };
    }
    await hub.stop();
    // The trials did catch the hub both before and after the commit (the timing varies; say what happened).
    expect(outcomes).toHaveLength(6);
  });

  it("keeps its CA, clusters, layers and history, and the certificates it issued still work", async () => {
    const dir = join(hubs.root, "restart");
    cpSync(hubs.template, dir, { recursive: true });
    const token = readFileSync(join(dir, "admin.token"), "utf8").trim();
    const caFile = join(dir, "ca.pem");

    const first = await spawnHub(["--data", dir]);
    const admin: HubEndpoint = { url: first.url, caPem: hubs.bootstrap.caPem, token };
    const caBefore = (await call<string>(admin, "GET", "/v1/ca", undefined, { raw: true })).body;
    expect(caBefore).toBe(hubs.bootstrap.caPem);
    await call(admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
    await call(admin, "POST", "/v1/apply", { files: [GLOBAL_WITH_COST_CENTER] });
    await call(admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } });
    const join1 = (await call<{ token: string }>(admin, "POST", "/v1/clusters/eu-west-1/join-tokens", {})).body.token;
    const creds = await enroll({ url: first.url, caPem: caBefore }, "eu-west-1", join1);
    const hashBefore = (await call<{ hash: string }>(clusterEndpoint(first.url, creds), "GET", "/v1/clusters/eu-west-1/effective")).body.hash;
    const layersBefore = (await call<{ items: unknown[] }>(admin, "GET", "/v1/layers")).body.items;
    expect(await first.stop()).toBe(0);
    expect(first.output()).toContain("stopping the hub");

    const second = await spawnHub(["--data", dir]);
    expect(second.output()).not.toContain("admin token      ");
    const again: HubEndpoint = { url: second.url, caPem: hubs.bootstrap.caPem, token };
    expect((await call<string>(again, "GET", "/v1/ca", undefined, { raw: true })).body).toBe(caBefore);
    expect(readFileSync(caFile, "utf8")).toBe(caBefore);
    expect((await call<{ items: ClusterView[] }>(again, "GET", "/v1/clusters")).body.items).toMatchObject([{ name: "eu-west-1", region: "eu-west", labels: { env: "prod" } }]);
    expect((await call<{ items: unknown[] }>(again, "GET", "/v1/layers")).body.items).toEqual(layersBefore);
    const history = await call<{ items: { version: number }[] }>(again, "GET", "/v1/layers/global/history");
    expect(history.body.items.map((v) => v.version)).toEqual([1, 2]);
    // The join token was used before the restart, and stays used.
    expect((await refused(enroll({ url: second.url, caPem: caBefore }, "eu-west-1", join1))).status).toBe(401);
    const me = clusterEndpoint(second.url, creds);
    expect((await call<{ hash: string }>(me, "GET", "/v1/clusters/eu-west-1/effective")).body.hash).toBe(hashBefore);
    const renewed = await renew(second.url, creds);
    expect(renewed.serial).not.toBe(creds.serial);
    expect(await second.stop()).toBe(0);
  });
});

// ---- 7. OpenAPI ----------------------------------------------------------------------------

describe("the API description", () => {
  it("serves an OpenAPI 3.1 document that lists every route", async () => {
    const h = await hubs.startCopy("openapi");
    interface Operation {
      readonly summary: string;
      readonly security: readonly Record<string, unknown>[];
      readonly parameters?: readonly { name: string; in: string; required: boolean }[];
      readonly requestBody?: { content: Record<string, { schema: unknown }> };
      readonly responses: Record<string, unknown>;
    }
    interface Document {
      readonly openapi: string;
      readonly info: { title: string; version: string };
      readonly paths: Record<string, Record<string, Operation>>;
      readonly components: { securitySchemes: Record<string, { type: string }>; schemas: Record<string, unknown> };
    }
    const doc = (await call<Document>(h.anonymous, "GET", "/openapi.json")).body;
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.info).toMatchObject({ title: "Polity hub", version: "v1" });
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(["bearer", "clusterCertificate"]);
    expect(doc.components.securitySchemes.clusterCertificate?.type).toBe("mutualTLS");
    expect(doc.components.schemas.Status).toBeDefined();
    const listed = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).sort();
    const routes = ROUTES.map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, "{$1}")}`).sort();
    expect(listed).toEqual(routes);
    for (const must of ["GET /healthz", "POST /v1/enroll", "POST /v1/renew", "GET /v1/crl", "POST /v1/apply", "POST /v1/diff", "GET /v1/layers/{tier}/{name}/history", "POST /v1/clusters/{name}/join-tokens", "DELETE /v1/tokens/{id}"]) {
      expect(listed).toContain(must);
    }
    for (const [path, ops] of Object.entries(doc.paths)) {
      const names = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries(ops)) {
        expect(op.summary.length, `${method} ${path}`).toBeGreaterThan(10);
        expect(op.parameters?.map((p) => p.name) ?? []).toEqual(names);
        for (const requirement of op.security) for (const scheme of Object.keys(requirement)) expect(doc.components.securitySchemes).toHaveProperty(scheme);
        expect(op.responses).toHaveProperty("4XX");
      }
    }
    expect(doc.paths["/v1/healthz"]).toBeUndefined();
    expect(doc.paths["/healthz"]?.get?.security).toEqual([]);
    expect(doc.paths["/v1/clusters"]?.post?.requestBody?.content["application/json"]?.schema).toMatchObject({ additionalProperties: false, required: ["name", "region"] });
    expect((await call<Document>(h.anonymous, "GET", "/.well-known/openapi.json")).body).toEqual(doc);
  });
});
