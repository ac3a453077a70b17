/**
 * The tamper-evident audit log, end to end: a real hub records what the federation does
 * (every kind of entry, done through the API as people and agents do it), serves signed
 * tree heads and proofs that verify from first principles, shows each reader only what
 * their role allows, pushes back on bursts, and the real `polity audit` commands check
 * proofs and catch a database that was tampered with behind the hub's back.
 *
 * Creating a federation runs initdb (~5 s), so one is created once and its data folder
 * copied for every hub. Hubs run in this process with an injected clock; the real binary
 * is spawned asynchronously for the CLI (never synchronously: the hub lives here). With
 * DATABASE_URL set, the tampering story also runs against a PostgreSQL server.
 */
import { createHash, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DecisionEntry } from "../src/agent/logs/entry.js";
import { ENTRY_KINDS, ENTRY_SCHEMA, type AuditEntry, type EntryKind } from "../src/audit/entry.js";
import { rangeNodes, verifyConsistency, verifyInclusion } from "../src/audit/merkle.js";
import type { ConsistencyProof, InclusionProof } from "../src/audit/proof.js";
import { noteKeyId, noteVerifierKey, verifyTreeHead, type SignedTreeHead } from "../src/audit/tree-head.js";
import { canonicalJson } from "../src/canonical/index.js";
import { call, closeConnections, type HubEndpoint } from "../src/client/http.js";
import type { SourceFile } from "../src/api/fields.js";
import { clusterEndpoint, enroll, renew, type Credentials } from "../src/identity/enrollment.js";
import { openDatabase, type Database, type Queryable } from "../src/store/database.js";
import type { Run } from "./support/processes.js";
import { example, HubFixture, joinToken, mint, refused, type Minted, type TestHub } from "./support/hubs.js";
import { eventually } from "./support/eventually.js";

const OPERATOR_KEY = "audit-test-operator-key-0123456789abcdef";
const FEDERATION = "polity";
const MINUTE = 60_000;
const DATABASE_URL = process.env.DATABASE_URL;

// ---- layer files -----------------------------------------------------------------------

const GLOBAL = example("global.yaml");
const REGION_EU_EXAMPLE = example("region-eu-west.yaml");
/** The example eu-west region, whose team leaves requests to the global admins after ten minutes. */
const REGION_EU: SourceFile = { ...REGION_EU_EXAMPLE, content: REGION_EU_EXAMPLE.content.replace("  groups: [eu-west-operators]\n", "  groups: [eu-west-operators]\n  escalateAfter: 10m\n") };
const REGION_US = example("region-us-east.yaml");
/** Carries the approved exception legacy-billing-root. */
const CLUSTER_EU1 = example("cluster-eu-west-1.yaml");
const CLUSTER_EU1_EXCEPTION_EXTENDED: SourceFile = { ...CLUSTER_EU1, content: CLUSTER_EU1.content.replace('expiresAt: "2027-03-31T00:00:00Z"', 'expiresAt: "2027-06-30T00:00:00Z"') };
const CLUSTER_EU1_WITHOUT_EXCEPTION: SourceFile = {
  ...CLUSTER_EU1,
  content: CLUSTER_EU1.content
    .split("\n---\n")
    .filter((doc) => !/^kind: Exception$/m.test(doc))
    .join("\n---\n"),
};

// ---- hubs ------------------------------------------------------------------------------

const hubs = new HubFixture("polity-audit-test-", OPERATOR_KEY, FEDERATION);

/** Folds what was appended into the tree and signs a head (the hub does it every second; tests do not wait). */
async function integrate(h: TestHub): Promise<SignedTreeHead> {
  await h.hub.context.audit.integrate();
  return (await call<SignedTreeHead>(h.admin, "GET", "/v1/audit/head")).body;
}

interface Listed {
  readonly index: number;
  readonly entry: AuditEntry;
}

/** Every entry a reader may see, through the API, page by page. */
async function entries(endpoint: HubEndpoint, query = ""): Promise<Listed[]> {
  const all: Listed[] = [];
  let start: number | null = 0;
  while (start !== null) {
    const page: { items: Listed[]; next: number | null } = (await call<{ items: Listed[]; next: number | null }>(endpoint, "GET", `/v1/audit/entries?start=${start}&limit=1000${query}`)).body;
    all.push(...page.items);
    start = page.next;
  }
  return all;
}

function denial(i: number, bundleVersion: number | null): DecisionEntry {
  return {
    time: new Date().toISOString(),
    uid: `uid-${i}`,
    kind: "Pod",
    namespace: "billing",
    name: `job-${i}`,
    operation: "CREATE",
    user: "system:serviceaccount:billing:deployer",
    allowed: false,
    bundleVersion,
    // Sent by an API server that presented the webhook's caller certificate.
    authenticated: true,
    // A policy's message may quote the workload: the log keeps the policy and rule, never the message.
    violations: [{ policy: "require-team-label", rule: "team-label", message: "pods must carry a team label (saw DB_PASSWORD=hunter2)", enforcement: "deny" }],
  };
}

// ---- the real binary ----------------------------------------------------------------------

/** Runs `polity …` without blocking this process's event loop (the hub under test lives here). */
const polity = (args: readonly string[], options: { config?: string; input?: string } = {}): Promise<Run> => hubs.cli(args, options);
const cliConfig = (name: string, endpoint: HubEndpoint): string => hubs.cliConfig(name, endpoint);

// ---- raw HTTPS, to see headers of a refusal -------------------------------------------------

function rawPost(endpoint: HubEndpoint, path: string, body: unknown): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; json: unknown }> {
  const payload = Buffer.from(JSON.stringify(body), "utf8");
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL(path, endpoint.url),
      {
        method: "POST",
        ca: endpoint.caPem,
        ...(endpoint.clientCertificatePem === undefined ? {} : { cert: endpoint.clientCertificatePem, key: endpoint.clientKeyPem }),
        agent: false,
        headers: { "content-type": "application/json", "content-length": String(payload.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, json: JSON.parse(Buffer.concat(chunks).toString("utf8")) }));
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

// ---- the template federation --------------------------------------------------------------

afterAll(() => closeConnections());

const sha256 = (bytes: Buffer | string) => createHash("sha256").update(bytes).digest();
const leafOf = (text: string) => sha256(Buffer.concat([Buffer.from([0]), Buffer.from(text, "utf8")]));

/** The published schema, checked by hand: required fields, no others, their types. */
function conformsToSchema(entry: AuditEntry): void {
  expect(Object.keys(entry).sort()).toEqual([...ENTRY_SCHEMA.required].sort());
  expect(entry.v).toBe(1);
  expect(Object.keys(ENTRY_KINDS)).toContain(entry.kind);
  expect(new Date(entry.time).toISOString()).toBe(entry.time);
  expect(entry.actor).toMatch(/^(user:.+|cluster:[a-z0-9-]+|join-token:[0-9a-f]+|hub|anonymous)$/);
  for (const field of [entry.cluster, entry.region]) expect(field === null || typeof field === "string").toBe(true);
  expect(entry.correlationId.length).toBeGreaterThan(0);
  expect(typeof entry.data === "object" && entry.data !== null && !Array.isArray(entry.data)).toBe(true);
}

// ---- 1. what the hub records ----------------------------------------------------------------

describe("a federation's history in its audit log", () => {
  let h: TestHub;
  let auditor: Minted;
  let euOperator: Minted;
  let eu1: Credentials;
  let earlyHead: SignedTreeHead;
  let head: SignedTreeHead;
  let log: Listed[];
  /** The change that extended the exception: its id, and the bundle version it made for eu-west-1. */
  let exceptionChange: { correlationId: string; bundleVersion: number; bundleHash: string };
  let detected: { first: number; again: number };
  /** When the story moved eleven minutes on: every entry from then on is at or after it. */
  let phase2: Date;
  const secrets: string[] = [OPERATOR_KEY];
  const startedAt = Date.now();

  const of = (kind: EntryKind) => log.filter((l) => l.entry.kind === kind);
  const one = (kind: EntryKind, where: (e: AuditEntry) => boolean = () => true) => {
    const found = of(kind).filter((l) => where(l.entry));
    expect(found, `one ${kind}`).toHaveLength(1);
    return found[0]!.entry;
  };

  beforeAll(async () => {
    // The detectors run when asked (POST /v1/audit/detect), not on their own timer.
    h = await hubs.startCopy("story", { audit: { detectEveryMs: 0 } });
    secrets.push(h.admin.token!);
    // Tokens: two that stay, one revoked.
    auditor = await mint(h, { name: "alice-auditor", role: "auditor" });
    euOperator = await mint(h, { name: "eu-ops", role: "region-operator", region: "eu-west" });
    const temporary = await mint(h, { name: "temporary", role: "global-admin", ttlSeconds: 3600 });
    secrets.push(auditor.token, euOperator.token, temporary.token);
    await call(h.admin, "DELETE", `/v1/tokens/${temporary.id}`);
    // Layers, one of them with an approved exception.
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, REGION_US, CLUSTER_EU1] });
    // Clusters: registered, relabelled, one removed, one revoked.
    for (const [name, region] of [
      ["eu-west-1", "eu-west"],
      ["eu-west-3", "eu-west"],
      ["us-east-1", "us-east"],
      ["eu-west-9", "eu-west"],
    ] as const) {
      await call(h.admin, "POST", "/v1/clusters", { name, region, labels: { env: "prod" } });
    }
    await call(h.admin, "PATCH", "/v1/clusters/eu-west-3", { labels: { env: "staging" } });
    // Exception requests: one denied by the owner team, one left to expire, one left to escalate.
    const sam = await mint(h, { name: "sam", role: "team-member", subject: "sam@example.com" });
    secrets.push(sam.token);
    const ask = (policy: string, minutes: number, cluster = "eu-west-3") =>
      call<{ id: string }>(euOperator.endpoint, "POST", "/v1/exceptions", {
        spec: {
          policy,
          scope: { clusters: [cluster], namespaces: ["legacy"] },
          justification: "A legacy workload that is being migrated this quarter.",
          expiresAt: new Date(Date.now() + minutes * MINUTE).toISOString(),
        },
      });
    const denied = await ask("pod-security", 60);
    await call(sam.endpoint, "POST", `/v1/exceptions/${denied.body.id}/deny`, { reason: "run it as a non-root user instead" });
    await ask("pod-security", 10);
    await ask("data-residency", 24 * 60, "eu-west-1");
    // Proposals: one approved by the region's team and applied, one rejected.
    const eli = await mint(h, { name: "eli", role: "team-member", subject: "eli@example.com", groups: ["eu-west-operators"] });
    secrets.push(eli.token);
    const proposal = (replicas: number) => call<{ id: string }>(euOperator.endpoint, "POST", "/v1/proposals", { files: [{ ...REGION_EU, content: REGION_EU.content.replace("value: 80", `value: ${replicas}`) }] });
    const accepted = await proposal(70);
    await call(eli.endpoint, "POST", `/v1/proposals/${accepted.body.id}/approve`, {});
    await call(euOperator.endpoint, "POST", `/v1/proposals/${accepted.body.id}/apply`);
    const declined = await proposal(60);
    await call(eli.endpoint, "POST", `/v1/proposals/${declined.body.id}/reject`, { reason: "70 is enough" });
    await call(h.admin, "DELETE", "/v1/clusters/eu-west-9");
    await call(h.admin, "POST", "/v1/clusters/us-east-1/revoke");
    // Identity: an enrolment and a renewal.
    const first = await joinToken(h, "eu-west-1");
    eu1 = await enroll(h.hub, "eu-west-1", first);
    secrets.push(first, eu1.privateKeyPem.replace(/-----[A-Z ]+-----/g, "").replace(/\s/g, ""));
    eu1 = await renew(h.hub.url, eu1);
    const agent = clusterEndpoint(h.hub.url, eu1);
    earlyHead = await integrate(h);
    // The exception is extended (one change, one correlation id), and eu-west-1's agent enforces its bundle.
    const change = await call<{ correlationId: string }>(h.admin, "POST", "/v1/apply", { files: [CLUSTER_EU1_EXCEPTION_EXTENDED] }, { headers: { "x-correlation-id": "change-2026-11-25-billing" } });
    await integrate(h);
    const [published] = await entries(h.admin, `&kind=bundles.published&cluster=eu-west-1&correlation=${change.body.correlationId}`);
    exceptionChange = { correlationId: change.body.correlationId, bundleVersion: published!.entry.data.version as number, bundleHash: published!.entry.data.targetHash as string };
    // The agent reports the bundle it enforces: the version and policy-set hash the hub published.
    const enforced = { bundleVersion: exceptionChange.bundleVersion, bundleHash: exceptionChange.bundleHash };
    await call(agent, "POST", "/v1/agent/status", enforced);
    // A repeat of the same status is not a second acknowledgement.
    await call(agent, "POST", "/v1/agent/status", enforced);
    // The agent reports its cluster's facts (its bundle is signed again with them), and an apply of its manifests that failed.
    await call(agent, "POST", "/v1/agent/facts", { kubernetesVersion: "v1.31.2", zones: ["eu-west-1a"], capacity: { cpu: "96", memory: "384Gi" }, nodes: 3 });
    const failedApply = {
      bundleVersion: exceptionChange.bundleVersion,
      manifestsHash: null,
      outcome: "failed",
      fromDisk: false,
      at: new Date().toISOString(),
      applied: 1,
      deleted: 0,
      failed: { object: "ResourceQuota payments/polity-payments-quota", reason: "500 injected" },
      rolledBack: true,
      rollbackFailures: [],
      conflicts: [],
      message: null,
    };
    await call(agent, "POST", "/v1/agent/apply", failedApply);
    // The same report again (a retry) is not audited twice.
    await call(agent, "POST", "/v1/agent/apply", failedApply);
    // Then withdrawn; and the us-east region layer deleted.
    await call(h.admin, "POST", "/v1/apply", { files: [CLUSTER_EU1_WITHOUT_EXCEPTION] });
    // Staged rollouts of the eu-west region: one paused, resumed, its silent clusters skipped,
    // completed and then rolled back by hand; another aborted.
    const staged = (replicas: number) =>
      call<{ rollout: string }>(h.admin, "POST", "/v1/apply", {
        files: [{ ...REGION_EU, content: REGION_EU.content.replace("value: 80", `value: ${replicas}`) }],
        rollout: { canary: { clusters: ["eu-west-3"] }, soakSeconds: 0, reportTimeoutSeconds: 1 },
      });
    const rolled = (await staged(75)).body.rollout;
    await call(h.admin, "POST", `/v1/rollouts/${rolled}/pause`, {});
    await call(h.admin, "POST", `/v1/rollouts/${rolled}/resume`, {});
    for (let waited = 0; (await call<{ state: string }>(h.admin, "GET", `/v1/rollouts/${rolled}`)).body.state !== "completed"; waited += 200) {
      if (waited > 20_000) throw new Error(`rollout ${rolled} did not complete`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await call(h.admin, "POST", `/v1/rollouts/${rolled}/rollback`, { reason: "75 is too few" });
    await call(h.admin, "POST", `/v1/rollouts/${(await staged(76)).body.rollout}/abort`, {});
    await call(h.admin, "DELETE", "/v1/layers/region/us-east");
    // The root of trust: a region delegated and given an intermediate CA, the root key
    // rotated (the old one retired), the bundles key rotated with the old one revoked.
    const regionKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }).toString();
    await call(h.admin, "POST", "/v1/trust/delegations", { region: "eu-west", publicKeyPem: generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString() });
    await call(h.admin, "POST", "/v1/trust/regional-ca", { region: "eu-west", publicKeyPem: regionKey });
    await call(h.admin, "POST", "/v1/keys/rotate", { purpose: "root" });
    await call(h.admin, "POST", "/v1/keys/rotate", { purpose: "bundles", revoke: [h.hub.context.bundles.key.keyId], reason: "audit test" });
    // Every bundle is made again under the new key: done here, not by the hub's ticker while later tests read the log.
    while ((await h.hub.context.bundles.refresh(h.hub.context.federation.clusters.keys())).length > 0);
    // Eleven minutes later: failed enrolments, a burst of denials, and the detectors.
    const shortLived = await joinToken(h, "eu-west-1", { ttlSeconds: 60 });
    const used = await joinToken(h, "eu-west-1");
    await enroll(h.hub, "eu-west-1", used);
    const stray = await joinToken(h, "eu-west-1");
    secrets.push(shortLived, used, stray);
    // Ten and a half minutes later, a sweep: one request escalated, one expired unanswered.
    h.clock.offsetMs = 10.5 * MINUTE;
    await h.hub.context.exceptions.sweep(() => ({ actor: "hub", correlationId: "sweep" }));
    h.clock.offsetMs = 11 * MINUTE;
    phase2 = new Date(Date.now() + 11 * MINUTE);
    expect((await refused(enroll(h.hub, "eu-west-1", "join_never-minted"))).status).toBe(401);
    expect((await refused(enroll(h.hub, "eu-west-1", used))).status).toBe(401);
    expect((await refused(enroll(h.hub, "us-east-1", stray))).status).toBe(403);
    expect((await refused(enroll(h.hub, "eu-west-1", shortLived))).status).toBe(401);
    await integrate(h);
    const bundleNow = (await entries(h.admin, "&kind=bundles.published&cluster=eu-west-1")).at(-1)!.entry.data.version as number;
    await call(agent, "POST", "/v1/agent/decisions", { batch: "batch-0001", entries: Array.from({ length: 60 }, (_, i) => denial(i, bundleNow)), dropped: 0 });
    // The agent's drift watcher lost a fight with another controller: one entry for it.
    await call(agent, "POST", "/v1/agent/drift", {
      batch: "drift-0001",
      events: [
        {
          id: "0123456789abcdef",
          at: phase2.toISOString(),
          object: { apiVersion: "v1", kind: "ResourceQuota", namespace: "payments", name: "polity-payments-quota" },
          policy: "payments-quota",
          missing: false,
          fields: ["spec.hard.pods"],
          omittedFields: 0,
          remediation: "enforce",
          outcome: "fight",
          reapplies: 5,
          otherManager: "quota-autoscaler",
        },
      ],
      dropped: 0,
      suppressed: 0,
    });
    await integrate(h);
    detected = {
      first: (await call<{ findings: number }>(h.admin, "POST", "/v1/audit/detect")).body.findings,
      again: (await call<{ findings: number }>(h.admin, "POST", "/v1/audit/detect")).body.findings,
    };
    head = await integrate(h);
    log = await entries(auditor.endpoint);
  });

  it("records one entry per change and region for the bundles it published, naming their list by a hash, so that every bundle stays provable", async () => {
    const published = of("bundles.published");
    // The region layer's change (the accepted proposal) reached eu-west's clusters: one entry for all of them.
    const many = published.find((l) => (l.entry.data.bundles as number) > 1)!;
    expect(many.entry).toMatchObject({ cluster: null, region: "eu-west" });
    const answer = await call<string>(auditor.endpoint, "GET", `/v1/audit/bundles/${String(many.entry.data.listHash)}`, undefined, { raw: true });
    const bytes = typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body);
    expect(`sha256:${sha256(bytes).toString("hex")}`).toBe(many.entry.data.listHash);
    const list = JSON.parse(bytes) as { kind: string; region: string; correlationId: string; bundles: { cluster: string; version: number; envelopeHash: string; targetHash: string }[] };
    expect(list).toMatchObject({ kind: "BundlePublication", region: "eu-west", correlationId: many.entry.correlationId });
    expect(list.bundles).toHaveLength(many.entry.data.bundles as number);
    expect(list.bundles.map((b) => b.cluster)).toEqual([...list.bundles.map((b) => b.cluster)].sort());
    expect(new Set(list.bundles.map((b) => b.targetHash)).size).toBe(many.entry.data.targets);
    // The bundle an agent holds is in a list: its first line hashes to the envelope hash its row names.
    const held = await call<Buffer>(h.admin, "GET", "/v1/clusters/eu-west-3/bundle", undefined, { raw: true, binary: true });
    const line = held.body.subarray(0, held.body.indexOf(10));
    const version = (JSON.parse(line.toString("utf8")) as { signed: { version: number } }).signed.version;
    const lists = await Promise.all(
      published.map(async (l) => JSON.parse((await call<string>(auditor.endpoint, "GET", `/v1/audit/bundles/${String(l.entry.data.listHash)}`, undefined, { raw: true })).body) as typeof list),
    );
    const row = lists.flatMap((l) => l.bundles).find((b) => b.cluster === "eu-west-3" && b.version === version)!;
    expect(row.envelopeHash).toBe(`sha256:${sha256(line).toString("hex")}`);
    // A region operator reads their region's lists, and no other's (as with entries).
    expect((await call(euOperator.endpoint, "GET", `/v1/audit/bundles/${String(many.entry.data.listHash)}`, undefined, { raw: true })).status).toBe(200);
    const usEast = published.find((l) => l.entry.region === "us-east")!;
    expect((await refused(call(euOperator.endpoint, "GET", `/v1/audit/bundles/${String(usEast.entry.data.listHash)}`))).status).toBe(404);
    expect((await refused(call(auditor.endpoint, "GET", "/v1/audit/bundles/sha256:nothing"))).status).toBe(400);
  });

  it("records every kind of entry the schema lists, by doing each thing through the API", () => {
    const kinds = new Set(log.map((l) => l.entry.kind));
    // A regional hub's kinds take a second hub: test/regional.test.ts records each of them.
    const regional = ["region-token.created", "regional-hub.enrolled", "regional-hub.refused", "region.conflict"];
    // Residency's kinds take a regional hub too: test/residency.test.ts records each of them.
    const residency = ["residency.declared", "residency.refused"];
    expect([...kinds].sort()).toEqual(Object.keys(ENTRY_KINDS).filter((k) => !regional.includes(k) && !residency.includes(k)).sort());
  });

  it("publishes the entry schema and what each kind records, and every entry conforms to it", async () => {
    const published = (await call<{ schema: unknown; kinds: unknown }>(h.anonymous, "GET", "/v1/audit/schema")).body;
    expect(published).toEqual({ schema: ENTRY_SCHEMA, kinds: ENTRY_KINDS });
    for (const { entry } of log) conformsToSchema(entry);
  });

  it("names who acted, when, and the cluster and region each entry applies to", () => {
    const admin = "user:bootstrap admin";
    const at = (e: AuditEntry) => Date.parse(e.time);
    for (const { entry } of log) {
      expect(at(entry)).toBeGreaterThanOrEqual(startedAt - 1000);
      expect(at(entry)).toBeLessThanOrEqual(Date.now() + 11 * MINUTE + 1000);
    }
    expect(one("token.created", (e) => e.data.name === "eu-ops")).toMatchObject({ actor: admin, cluster: null, region: "eu-west", data: { id: euOperator.id, role: "region-operator" } });
    expect(one("token.created", (e) => e.data.name === "alice-auditor")).toMatchObject({ actor: admin, cluster: null, region: null });
    expect(one("token.revoked")).toMatchObject({ actor: admin, data: { name: "temporary", role: "global-admin" } });
    expect(one("layer.changed", (e) => e.data.layer === "global")).toMatchObject({ actor: admin, cluster: null, region: null, data: { version: 1, baseVersion: 0 } });
    expect(one("layer.changed", (e) => e.data.layer === "region/us-east")).toMatchObject({ region: "us-east", cluster: null });
    expect(one("layer.deleted")).toMatchObject({ actor: admin, cluster: null, region: "us-east", data: { layer: "region/us-east", version: 2 } });
    expect(one("cluster.registered", (e) => e.cluster === "us-east-1")).toMatchObject({ actor: admin, region: "us-east", data: { labels: { env: "prod" } } });
    expect(one("cluster.relabelled")).toMatchObject({ actor: admin, cluster: "eu-west-3", region: "eu-west", data: { before: { env: "prod" }, after: { env: "staging" } } });
    expect(one("cluster.removed")).toMatchObject({ actor: admin, cluster: "eu-west-9", region: "eu-west" });
    expect(of("certificate.revoked").map((l) => l.entry.cluster).sort()).toEqual(["eu-west-9", "us-east-1"]);
    const enrolled = of("cluster.enrolled").map((l) => l.entry);
    expect(enrolled).toHaveLength(2);
    expect(enrolled[0]).toMatchObject({ actor: expect.stringMatching(/^join-token:[0-9a-f]{12}$/), cluster: "eu-west-1", region: "eu-west" });
    const minted = of("join-token.created").map((l) => l.entry);
    expect(minted.map((e) => [e.actor, e.cluster, e.region])).toEqual(minted.map(() => [admin, "eu-west-1", "eu-west"]));
    expect(minted.map((e) => `join-token:${String(e.data.id)}`)).toContain(enrolled[0]!.actor);
    const issued = of("certificate.issued").map((l) => l.entry);
    expect(issued.map((e) => e.data.how)).toEqual(["enrolment", "renewal", "enrolment"]);
    expect(issued[1]).toMatchObject({ actor: "cluster:eu-west-1", cluster: "eu-west-1", region: "eu-west", data: { serial: eu1.serial } });
    expect(one("bundle.acknowledged")).toMatchObject({ actor: "cluster:eu-west-1", cluster: "eu-west-1", region: "eu-west", data: { version: exceptionChange.bundleVersion, bundleHash: exceptionChange.bundleHash } });
    expect(one("agent.denials")).toMatchObject({ actor: "cluster:eu-west-1", cluster: "eu-west-1", region: "eu-west", data: { batch: "batch-0001", count: 60 } });
    expect(one("agent.drift")).toMatchObject({ actor: "cluster:eu-west-1", cluster: "eu-west-1", region: "eu-west", data: { batch: "drift-0001", outcome: "fight", reapplies: 5, otherManager: "quota-autoscaler", fields: ["spec.hard.pods"] } });
  });

  it("records a layer change with its version, content hash, the diff and the diff's hash", () => {
    const changed = one("layer.changed", (e) => e.data.layer === "cluster/eu-west-1" && e.data.version === 2);
    const diff = changed.data.diff as Record<string, unknown>;
    expect(diff).toMatchObject({ layer: "cluster/eu-west-1", fromVersion: 1, toVersion: 2, added: [], removed: [], changed: ["Exception/legacy-billing-root"] });
    expect(changed.data.diffHash).toBe(`sha256:${sha256(canonicalJson(diff)).toString("hex")}`);
    expect(changed.data.contentHash).toBe(diff.toHash);
  });

  it("records exceptions granted, changed and withdrawn, with their scope, justification, approver and expiry", () => {
    const granted = one("exception.granted");
    expect(granted).toMatchObject({ cluster: "eu-west-1", region: "eu-west", data: { layer: "cluster/eu-west-1", version: 1 } });
    expect(granted.data.exception).toEqual({
      name: "legacy-billing-root",
      policy: "require-team-label",
      rules: ["team-label"],
      scope: { namespaces: ["billing"], names: ["legacy-billing"] },
      justification: "The legacy billing job predates team labels; it is replaced in Q1.",
      approvedBy: "platform-team",
      expiresAt: "2027-03-31T00:00:00Z",
    });
    expect(one("exception.changed").data).toMatchObject({ version: 2, before: { expiresAt: "2027-03-31T00:00:00Z" }, after: { expiresAt: "2027-06-30T00:00:00Z" } });
    expect(one("exception.withdrawn").data).toMatchObject({ version: 3, exception: { name: "legacy-billing-root", expiresAt: "2027-06-30T00:00:00Z" } });
  });

  it("links a change, its bundles and their acknowledgement by the change's correlation id, which `polity audit search` finds", async () => {
    expect(exceptionChange.correlationId).toBe("change-2026-11-25-billing");
    const config = cliConfig("story-auditor", auditor.endpoint);
    const found = await polity(["audit", "search", "--correlation", exceptionChange.correlationId, "-o", "json"], { config });
    expect(found.code, found.err).toBe(0);
    const listed = (JSON.parse(found.out) as { items: Listed[] }).items;
    // The bundle signed again with the facts its agent reported keeps the change's correlation id
    // (the same policies), and the failed apply of that bundle joins the change too.
    expect(listed.map((l) => [l.entry.kind, l.entry.cluster])).toEqual([
      ["layer.changed", "eu-west-1"],
      ["exception.changed", "eu-west-1"],
      ["bundles.published", "eu-west-1"],
      ["bundle.acknowledged", "eu-west-1"],
      ["bundles.published", "eu-west-1"],
      ["intents.apply-failed", "eu-west-1"],
    ]);
    expect(listed.map((l) => l.entry.correlationId)).toEqual(listed.map(() => exceptionChange.correlationId));
    // The table names them too.
    const table = await polity(["audit", "search", "--correlation", exceptionChange.correlationId], { config });
    expect(table.out.split("\n")[0]).toMatch(/^INDEX\s+AGE\s+KIND\s+ACTOR\s+CLUSTER\s+REGION\s+CORRELATION\s+WHAT$/);
    expect(table.out).toContain("layer.changed");
    expect(table.out).toContain("bundle.acknowledged");
  });

  it("finds entries by time, actor, cluster, region and kind, and refuses filters it cannot read", async () => {
    const search = (query: string) => entries(auditor.endpoint, query);
    expect((await search("&kind=enrolment.failed")).map((l) => l.entry.data.reason)).toEqual(["unknown-token", "used-token", "wrong-cluster", "expired-token"]);
    expect(new Set((await search("&actor=cluster:eu-west-1")).map((l) => l.entry.kind))).toEqual(new Set(["certificate.issued", "bundle.acknowledged", "cluster.facts-reported", "intents.apply-failed", "agent.denials", "agent.drift"]));
    expect(await search("&kind=intents.apply-failed")).toHaveLength(1);
    const eu3 = await search("&cluster=eu-west-3");
    expect(eu3.map((l) => l.entry.cluster)).toEqual(eu3.map(() => "eu-west-3"));
    expect(eu3.map((l) => l.entry.kind)).toContain("cluster.relabelled");
    expect((await search("&region=us-east")).map((l) => l.entry.region)).toEqual(log.filter((l) => l.entry.region === "us-east").map(() => "us-east"));
    const since = await search(`&since=${phase2.toISOString()}`);
    const until = await search(`&until=${phase2.toISOString()}`);
    expect([...until, ...since].map((l) => l.index)).toEqual(log.map((l) => l.index));
    expect(new Set(since.map((l) => l.entry.kind))).toEqual(new Set(["enrolment.failed", "agent.denials", "agent.drift", "anomaly.found"]));
    const deletedOn = one("layer.deleted").time.slice(0, 10);
    expect(await search(`&kind=layer.deleted&since=${deletedOn}`)).toHaveLength(1);
    expect(await search(`&kind=layer.deleted&until=${deletedOn}`)).toHaveLength(0);
    expect((await refused(call(auditor.endpoint, "GET", "/v1/audit/entries?kind=layer.exploded"))).message).toMatch(/^kind "layer.exploded" is not one of: layer.changed, /);
    expect((await refused(call(auditor.endpoint, "GET", "/v1/audit/entries?since=yesterday"))).message).toMatch(/^since must be an RFC 3339 time/);
    // The same through the CLI, as a region operator: eu-west's refusals only (an unknown token names no region).
    const found = await polity(["audit", "search", "--kind", "enrolment.failed", "--since", phase2.toISOString(), "-o", "json"], { config: cliConfig("story-eu-ops", euOperator.endpoint) });
    expect(found.code, found.err).toBe(0);
    expect((JSON.parse(found.out) as { items: Listed[] }).items.map((l) => l.entry.data.reason)).toEqual(["used-token", "wrong-cluster", "expired-token"]);
  });

  // The bootstrap admin token is minted at the very first start, in the same transaction as its entry.
  it("records the bootstrap admin token's creation", () => {
    expect(log.some((l) => l.entry.kind === "token.created" && l.entry.data.name === "bootstrap admin")).toBe(true);
  });

  it("links the denials an agent made under a bundle to the change that made the bundle", () => {
    const denials = one("agent.denials");
    const bundle = of("bundles.published").filter((l) => l.entry.cluster === "eu-west-1").at(-1)!.entry;
    expect(denials.correlationId).toBe(bundle.correlationId);
  });

  it("records each refused enrolment with why: unknown, used, expired, or a token of another cluster", () => {
    const failed = of("enrolment.failed").map((l) => l.entry);
    expect(failed.map((e) => [e.data.reason, e.actor.replace(/[0-9a-f]{12}$/, "…"), e.cluster])).toEqual([
      ["unknown-token", "anonymous", null],
      ["used-token", "join-token:…", "eu-west-1"],
      ["wrong-cluster", "join-token:…", "eu-west-1"],
      ["expired-token", "join-token:…", "eu-west-1"],
    ]);
    expect(failed[2]!.data.requested).toBe("us-east-1");
  });

  it("keeps the agent's denials as who asked for what and which rule said no, without policy messages", () => {
    const denials = one("agent.denials").data.denials as Record<string, unknown>[];
    expect(denials).toHaveLength(60);
    expect(denials[0]).toEqual({
      time: expect.any(String),
      uid: "uid-0",
      operation: "CREATE",
      kind: "Pod",
      namespace: "billing",
      name: "job-0",
      user: "system:serviceaccount:billing:deployer",
      bundleVersion: expect.any(Number),
      // Whether the agent authenticated its caller: only authenticated denials raise anomalies.
      authenticated: true,
      violations: [{ policy: "require-team-label", rule: "team-label", enforcement: "deny" }],
    });
  });

  it("logs each detector's finding as anomaly.found, naming entries that show it, and logs it once", () => {
    expect(detected.again).toBe(0);
    const found = of("anomaly.found").map((l) => l.entry);
    expect(found).toHaveLength(detected.first);
    const byIndex = new Map(log.map((l) => [l.index, l.entry]));
    const finding = (detector: string) => found.filter((e) => e.data.detector === detector);
    for (const e of found) {
      expect(e.actor).toBe("hub");
      expect((e.data.evidence as number[]).length).toBeGreaterThan(0);
    }
    const evidence = (detector: string) => finding(detector).flatMap((e) => (e.data.evidence as number[]).map((i) => byIndex.get(i)!));
    expect(finding("denial-spike")).toHaveLength(1);
    expect(finding("denial-spike")[0]).toMatchObject({ cluster: "eu-west-1", region: "eu-west" });
    expect(evidence("denial-spike").map((e) => e.kind)).toEqual(["agent.denials"]);
    expect(evidence("token-out-of-scope").map((e) => [e.kind, e.data.reason])).toEqual([["enrolment.failed", "wrong-cluster"]]);
    expect(finding("repeated-failed-enrolments")).toHaveLength(1);
    expect(evidence("repeated-failed-enrolments").map((e) => [e.cluster, e.data.reason])).toEqual([
      ["eu-west-1", "used-token"],
      ["eu-west-1", "wrong-cluster"],
      ["eu-west-1", "expired-token"],
    ]);
    // Bundles of clusters whose agents never acknowledged them (none runs on eu-west-3).
    const unacknowledged = evidence("bundle-unacknowledged");
    expect(unacknowledged.length).toBeGreaterThan(0);
    for (const e of unacknowledged) expect(e.kind).toBe("bundles.published");
    expect(finding("bundle-unacknowledged").some((e) => String(e.data.summary).includes("eu-west-3"))).toBe(true);
    expect(finding("bundle-unacknowledged").map((e) => e.correlationId)).not.toContain(exceptionChange.correlationId);
  });

  it("keeps no secret: no bearer token, join token, cluster key or operator key appears in any entry", async () => {
    const rows = await h.hub.context.db.query<{ entry: string }>("SELECT entry FROM audit_entries");
    expect(rows.length).toBeGreaterThan(40);
    for (const secret of secrets) {
      expect(secret.length).toBeGreaterThan(20);
      for (const { entry } of rows) expect(entry.includes(secret) || entry.includes(secret.slice(-24)), `a secret in ${entry}`).toBe(false);
    }
    for (const { entry } of rows) expect(entry).not.toContain("hunter2");
  });

  it("stores each entry as its canonical JSON, with leaf hash SHA-256(0x00 || entry), in dense index order", async () => {
    const rows = await h.hub.context.db.query<{ idx: string; entry: string; leaf_hash: Uint8Array }>("SELECT idx::text AS idx, entry, leaf_hash FROM audit_entries ORDER BY audit_entries.idx");
    expect(rows.map((r) => Number(r.idx))).toEqual(rows.map((_, i) => i));
    for (const row of rows) {
      expect(canonicalJson(JSON.parse(row.entry))).toBe(row.entry);
      expect(Buffer.from(row.leaf_hash).toString("hex")).toBe(leafOf(row.entry).toString("hex"));
    }
    expect(rows.length).toBeGreaterThanOrEqual(head.treeSize);
  });

  it("signs its tree heads with the key it publishes, as C2SP signed notes", async () => {
    const key = (await call<{ origin: string; keyId: string; publicKeyPem: string; verifierKey: string }>(auditor.endpoint, "GET", "/v1/audit/key")).body;
    const publicKey = createPublicKey(key.publicKeyPem);
    expect(key.origin).toBe(`${FEDERATION}/audit`);
    expect(key.keyId).toBe(noteKeyId(key.origin, publicKey));
    expect(key.verifierKey).toBe(noteVerifierKey(key.origin, publicKey));
    const served = (await call<SignedTreeHead & { note: string }>(auditor.endpoint, "GET", "/v1/audit/head")).body;
    expect(verifyTreeHead(served, publicKey)).toMatchObject({ origin: key.origin, keyId: key.keyId });
    expect(served.note).toMatch(new RegExp(`^${key.origin}\\n${served.treeSize}\\n[A-Za-z0-9+/]{43}=\\ntime ${served.time}\\n\\n\u2014 ${key.origin} [A-Za-z0-9+/]{91}=\\n$`));
    expect(verifyTreeHead(earlyHead, publicKey).treeSize).toBeLessThan(head.treeSize);
    // The bundle key is another key.
    expect(key.publicKeyPem).not.toBe(eu1.bundleKeyPem);
  });

  it("proves every entry's inclusion in the newest signed head, each proof checked from first principles", async () => {
    const rows = await h.hub.context.db.query<{ entry: string }>("SELECT entry FROM audit_entries WHERE idx < $1 ORDER BY idx", [head.treeSize]);
    const root = Buffer.from(head.rootHash, "hex");
    for (let index = 0; index < head.treeSize; index++) {
      const proof = (await call<InclusionProof>(auditor.endpoint, "GET", `/v1/audit/proof/inclusion?index=${index}&size=${head.treeSize}`)).body;
      expect(proof).toMatchObject({ type: "inclusion", leafIndex: index, treeSize: head.treeSize, root: head.rootHash, leafHash: leafOf(rows[index]!.entry).toString("hex") });
      verifyInclusion(index, head.treeSize, leafOf(rows[index]!.entry), proof.proof.map((p) => Buffer.from(p, "hex")), root);
    }
  });

  it("serves an entry with its proof in the newest head", async () => {
    const served = (await call<{ index: number; entry: AuditEntry; treeHead: SignedTreeHead; proof: InclusionProof }>(auditor.endpoint, "GET", "/v1/audit/entries/3")).body;
    const latest = served.treeHead;
    expect(served.entry).toEqual(log[3]!.entry);
    verifyInclusion(3, latest.treeSize, leafOf(canonicalJson(served.entry)), served.proof.proof.map((p) => Buffer.from(p, "hex")), Buffer.from(latest.rootHash, "hex"));
  });

  it("proves that the newest head extends an earlier one", async () => {
    const proof = (await call<ConsistencyProof>(auditor.endpoint, "GET", `/v1/audit/proof/consistency?from=${earlyHead.treeSize}&to=${head.treeSize}`)).body;
    expect(proof).toMatchObject({ type: "consistency", size1: earlyHead.treeSize, size2: head.treeSize, root1: earlyHead.rootHash, root2: head.rootHash });
    verifyConsistency(earlyHead.treeSize, head.treeSize, Buffer.from(earlyHead.rootHash, "hex"), Buffer.from(head.rootHash, "hex"), proof.proof.map((p) => Buffer.from(p, "hex")));
    expect((await refused(call(auditor.endpoint, "GET", `/v1/audit/proof/consistency?from=0&to=${head.treeSize}`))).message).toMatch(/no consistency proof from the empty tree/);
    expect((await refused(call(auditor.endpoint, "GET", `/v1/audit/proof/consistency?from=1&to=${head.treeSize + 1000}`))).message).toMatch(/beyond the newest tree head/);
  });

  describe("who sees what", () => {
    it("shows an auditor every entry under the newest head", async () => {
      expect(log.map((l) => l.index)).toEqual(Array.from({ length: log.length }, (_, i) => i));
      expect(log.length).toBeGreaterThanOrEqual(head.treeSize);
    });

    it("lists entries in index order, page after page, each once", async () => {
      const seen: number[] = [];
      let start: number | null = 0;
      while (start !== null) {
        const page: { items: Listed[]; next: number | null } = (await call<{ items: Listed[]; next: number | null }>(auditor.endpoint, "GET", `/v1/audit/entries?start=${start}&limit=7`)).body;
        expect(page.items.length).toBeLessThanOrEqual(7);
        seen.push(...page.items.map((l) => l.index));
        start = page.next;
      }
      expect(seen).toEqual(log.map((l) => l.index));
    });

    it("shows a region operator of eu-west only eu-west's entries, and refuses it another region's entry with 403", async () => {
      const seen = await entries(euOperator.endpoint);
      const expected = log.filter((l) => l.entry.region === "eu-west" && l.index < (seen.at(-1)?.index ?? 0) + 1);
      expect(seen.length).toBeGreaterThan(10);
      expect(seen.map((l) => l.entry.region)).toEqual(seen.map(() => "eu-west"));
      expect(seen.map((l) => l.index)).toEqual(expected.map((l) => l.index));
      // Asking for another region's finds nothing.
      expect(await entries(euOperator.endpoint, "&region=us-east")).toEqual([]);
      const usEntry = log.find((l) => l.entry.region === "us-east")!;
      expect((await refused(call(euOperator.endpoint, "GET", `/v1/audit/entries/${usEntry.index}`))).status).toBe(403);
      const euEntry = seen[0]!;
      expect((await call<{ entry: AuditEntry }>(euOperator.endpoint, "GET", `/v1/audit/entries/${euEntry.index}`)).body.entry).toEqual(euEntry.entry);
    });

    it("refuses a cluster's certificate the entries with 403, but gives it heads and proofs (hashes only)", async () => {
      const agent = clusterEndpoint(h.hub.url, eu1);
      expect((await refused(call(agent, "GET", "/v1/audit/entries"))).status).toBe(403);
      expect((await refused(call(agent, "GET", "/v1/audit/entries/0"))).status).toBe(403);
      expect((await call(agent, "GET", "/v1/audit/head")).status).toBe(200);
      expect((await call(agent, "GET", "/v1/audit/proof/inclusion?index=0")).status).toBe(200);
      expect((await refused(call(h.anonymous, "GET", "/v1/audit/entries"))).status).toBe(401);
      expect((await refused(call(h.anonymous, "GET", "/v1/audit/head"))).status).toBe(401);
    });

    it("lets only a global admin run the detectors on demand", async () => {
      expect((await refused(call(auditor.endpoint, "POST", "/v1/audit/detect"))).status).toBe(403);
      expect((await refused(call(clusterEndpoint(h.hub.url, eu1), "POST", "/v1/audit/detect"))).status).toBe(403);
    });
  });

  describe("polity audit check-proof, for anyone handed a proof", () => {
    let dir: string;
    let inclusion: InclusionProof;
    let consistency: ConsistencyProof;
    const file = (name: string, content: unknown) => {
      const path = join(dir, name);
      writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content, null, 2));
      return path;
    };
    const flip = (hex: string) => `${hex.slice(0, -2)}${(parseInt(hex.slice(-2), 16) ^ 0x01).toString(16).padStart(2, "0")}`;

    beforeAll(async () => {
      dir = mkdtempSync(join(hubs.root, "proofs-"));
      const config = cliConfig("story-proofs", auditor.endpoint);
      const printed = await polity(["audit", "proof", "5", "--size", String(head.treeSize)], { config });
      expect(printed.code, printed.err).toBe(0);
      inclusion = JSON.parse(printed.out) as InclusionProof;
      consistency = (await call<ConsistencyProof>(auditor.endpoint, "GET", `/v1/audit/proof/consistency?from=${earlyHead.treeSize}&to=${head.treeSize}`)).body;
    });

    it("exits 0 for a proof the hub gave, from a file or standard input, saying what it proves", async () => {
      const [fromFile, fromStdin, fromConsistency] = await Promise.all([
        polity(["audit", "check-proof", file("inclusion.json", inclusion)]),
        polity(["audit", "check-proof", "-"], { input: JSON.stringify(inclusion) }),
        polity(["audit", "check-proof", file("consistency.json", consistency)]),
      ]);
      expect([fromFile.code, fromFile.out]).toEqual([0, `valid inclusion proof: leaf 5 (hash ${inclusion.leafHash}) is in the tree of ${head.treeSize} entries with root ${head.rootHash}\n`]);
      expect(fromStdin.code, fromStdin.err).toBe(0);
      expect([fromConsistency.code, fromConsistency.out]).toEqual([
        0,
        `valid consistency proof: the tree of ${earlyHead.treeSize} entries (root ${earlyHead.rootHash}) is a prefix of the tree of ${head.treeSize} entries (root ${head.rootHash})\n`,
      ]);
    });

    it("exits 1 for a proof that does not hold, saying why: a byte changed, the wrong index, an extra hash, from size 0", async () => {
      const cases: [string, unknown, RegExp][] = [
        ["byte", { ...inclusion, leafHash: flip(inclusion.leafHash) }, /^invalid inclusion proof: the proof leads to root [0-9a-f]{64}, not [0-9a-f]{64}: leaf 5 is not in this tree\n$/],
        ["index", { ...inclusion, leafIndex: 4 }, /^invalid inclusion proof: .*leaf 4 is not in this tree\n$/],
        ["extra", { ...inclusion, proof: [...inclusion.proof, inclusion.root] }, /^invalid inclusion proof: the proof has \d+ hashes: too many for leaf 5/],
        ["size-0", { ...consistency, size1: 0 }, /^invalid consistency proof: a consistency proof from the empty tree proves nothing\n$/],
        ["root2", { ...consistency, root2: flip(consistency.root2) }, /^invalid consistency proof: the proof does not lead to root2/],
      ];
      const runs = await Promise.all(cases.map(([name, doc]) => polity(["audit", "check-proof", file(`${name}.json`, doc)])));
      runs.forEach((r, i) => {
        expect(r.code, `${cases[i]![0]}: ${r.out}${r.err}`).toBe(1);
        expect(r.out).toMatch(cases[i]![2]);
      });
      const json = await polity(["audit", "check-proof", "-o", "json", file("index-json.json", { ...inclusion, leafIndex: 4 })]);
      expect(json.code).toBe(1);
      expect(JSON.parse(json.out)).toMatchObject({ valid: false, type: "inclusion", reason: expect.stringMatching(/leaf 4 is not in this tree/) });
    });

    it("exits 2 for a file that is not a proof: not JSON, an unknown field, text that is not hex, a missing field, a hash that is not 32 bytes", async () => {
      const { root: _root, ...withoutRoot } = inclusion;
      const cases: [string, unknown, RegExp][] = [
        ["not-json", `${JSON.stringify(inclusion).slice(0, -1)}`, /not JSON/],
        ["unknown", { ...inclusion, signature: "trust me" }, /not a proof: unknown field "signature" in an inclusion proof/],
        ["not-hex", { ...inclusion, root: `xy${inclusion.root.slice(2)}` }, /not a proof: root must be a string of hex digit pairs/],
        ["missing", withoutRoot, /not a proof: an inclusion proof needs root/],
        ["short-hash", { ...inclusion, leafHash: inclusion.leafHash.slice(2) }, /not a proof: leafHash must be a SHA-256 hash of 32 bytes \(64 hex digits\), not 31 bytes/],
      ];
      const runs = await Promise.all(cases.map(([name, doc]) => polity(["audit", "check-proof", file(`${name}.json`, doc)])));
      runs.forEach((r, i) => {
        expect(r.code, `${cases[i]![0]}: ${r.out}${r.err}`).toBe(2);
        expect(r.err).toMatch(cases[i]![2]);
        expect(r.out).toBe("");
      });
    });
  });
});

// ---- 2. tampering with the database -----------------------------------------------------------

interface Engine {
  readonly name: string;
  /** Starts (or restarts) the hub on the same data. */
  start(dir: string): Promise<TestHub>;
  /** The hub's database, opened directly (the hub is stopped). */
  open(dir: string): Promise<Database>;
  cleanup(): Promise<void>;
}

const PGLITE: Engine = {
  name: "PGlite",
  start: (dir) => hubs.startAt(dir),
  open: (dir) => openDatabase({ dataDir: join(dir, "db") }),
  cleanup: async () => undefined,
};

function postgres(url: string): Engine {
  const schema = `polity_audit_test_${randomBytes(4).toString("hex")}`;
  return {
    name: "PostgreSQL",
    // The first start creates the federation in the schema and writes its admin token; later ones find it.
    start: (dir) => hubs.startAt(dir, { databaseUrl: url, schema, federation: FEDERATION }),
    open: () => openDatabase({ url, schema }),
    async cleanup() {
      const db = await openDatabase({ url });
      try {
        await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await db.close();
      }
    },
  };
}

/** Runs `work` with the append-only triggers out of the way, as an attacker with the database's superuser would. */
async function asAttacker(db: Database, work: (tx: Queryable) => Promise<void>): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query("SET LOCAL session_replication_role = replica");
    await work(tx);
  });
}

/** Cuts the log back to `size` entries and its tree with it: tiles shortened, later heads gone, sizes lowered. */
async function truncate(tx: Queryable, size: number): Promise<void> {
  await tx.query("DELETE FROM audit_entries WHERE idx >= $1", [size]);
  await tx.query("DELETE FROM audit_heads WHERE tree_size > $1", [size]);
  await tx.query("UPDATE audit_state SET size = $1", [size]);
  await tx.query("UPDATE audit_tree SET size = $1", [size]);
  for (let level = 0; level < 40; level++) {
    const nodes = Math.floor(size / 2 ** level);
    await tx.query("DELETE FROM audit_tiles WHERE level = $1 AND chunk >= $2", [level, Math.ceil(nodes / 256)]);
    if (nodes % 256 !== 0) {
      await tx.query("UPDATE audit_tiles SET hashes = substring(hashes FROM 1 FOR $3::int) WHERE level = $1 AND chunk = $2", [level, Math.floor(nodes / 256), (nodes % 256) * 32]);
    }
  }
}

const ENGINES: { engine: () => Engine; skip: string | undefined }[] = [
  { engine: () => PGLITE, skip: undefined },
  {
    engine: () => postgres(DATABASE_URL!),
    skip: DATABASE_URL === undefined || DATABASE_URL === "" ? "skipped: set DATABASE_URL (postgres://…) to run it against a PostgreSQL server" : undefined,
  },
];

for (const { engine: makeEngine, skip } of ENGINES) {
  const label = skip === undefined ? "" : ` (${skip})`;
  describe.skipIf(skip !== undefined)(`polity audit verify, against a database tampered with behind the hub's back${label}`, () => {
    let engine: Engine;
    let dir: string;
    let h: TestHub;
    let config: string;
    let auditorToken: string;
    let savedFile: string;

    /** Stops the hub, lets `work` at its database, and starts it again on the same data (even when `work` fails). */
    async function withStoppedHub(work: (db: Database) => Promise<void>): Promise<void> {
      await h.hub.close();
      try {
        const db = await engine.open(dir);
        try {
          await work(db);
        } finally {
          await db.close();
        }
      } finally {
        h = await engine.start(dir);
        await integrate(h);
        config = cliConfig(`tamper-${engine.name}`, { ...h.anonymous, token: auditorToken });
      }
    }

    const verify = (...args: string[]) => polity(["audit", "verify", ...args], { config });

    beforeAll(async () => {
      engine = makeEngine();
      if (engine.name === "PGlite") {
        dir = join(hubs.root, "tamper-pglite");
        cpSync(hubs.template, dir, { recursive: true });
      } else {
        dir = join(hubs.root, "tamper-postgres");
      }
      h = await engine.start(dir);
      auditorToken = (await mint(h, { name: "auditor", role: "auditor" })).token;
      await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, REGION_US] });
      for (let i = 1; i <= 8; i++) await call(h.admin, "POST", "/v1/clusters", { name: `eu-west-${i}`, region: "eu-west" });
      for (let i = 0; i < 20; i++) await mint(h, { name: `ci-${i}`, role: "auditor" });
      await integrate(h);
      config = cliConfig(`tamper-${engine.name}`, { ...h.anonymous, token: auditorToken });
      savedFile = join(dir, "..", `saved-head-${engine.name}.json`);
    });

    afterAll(async () => {
      await h?.hub.close().catch(() => undefined);
      await engine?.cleanup();
    });

    it("saves the newest head with `polity audit head --save`, and the untouched log verifies against it as it grows", async () => {
      const saved = await polity(["audit", "head", "--save", savedFile], { config });
      expect(saved.code, saved.err).toBe(0);
      const file = JSON.parse(readFileSync(savedFile, "utf8")) as { treeHead: SignedTreeHead; edge: string[] };
      expect(saved.err).toBe(`saved the tree head of ${file.treeHead.treeSize} entries to ${savedFile}\n`);
      expect(file.edge).toHaveLength(rangeNodes({ begin: 0, end: file.treeHead.treeSize }).length);
      expect((await polity(["audit", "head", "--save", savedFile], { config })).code).toBe(2);
      const ok = await verify("--against", savedFile, "--entries");
      expect(ok.code, ok.out + ok.err).toBe(0);
      expect(ok.out).toMatch(/^OK: the log still holds everything your saved head covers, unchanged, and every later entry extends it$/m);
      for (let i = 20; i < 25; i++) await mint(h, { name: `ci-${i}`, role: "auditor" });
      // Entries reach the log asynchronously: wait for a signed head that covers all five.
      await eventually("a signed head covering the five new entries", async () => (await integrate(h)).treeSize >= file.treeHead.treeSize + 5);
      const grown = await verify("--against", savedFile, "--update");
      expect(grown.code, grown.out + grown.err).toBe(0);
      const moved = JSON.parse(readFileSync(savedFile, "utf8")) as { treeHead: SignedTreeHead };
      expect(moved.treeHead.treeSize).toBe(file.treeHead.treeSize + 5);
      expect(grown.err).toContain(`moved ${savedFile} forward to the head of ${moved.treeHead.treeSize} entries`);
    });

    it("refuses to change the log through the database while its append-only triggers stand", async () => {
      await withStoppedHub(async (db) => {
        for (const sql of [
          "UPDATE audit_entries SET actor = 'nobody' WHERE idx = 0",
          "DELETE FROM audit_entries WHERE idx = 0",
          "UPDATE audit_heads SET tree_size = 0",
          "DELETE FROM audit_heads",
          "UPDATE audit_tiles SET hashes = '\\x00'::bytea WHERE level = 0",
          "DELETE FROM audit_tiles WHERE level = 0",
        ]) {
          await expect(db.query(sql), sql).rejects.toThrow();
        }
      });
    });

    it("says why it refuses: the audit log is append-only", async () => {
      await withStoppedHub(async (db) => {
        await expect(db.query("UPDATE audit_entries SET actor = 'nobody' WHERE idx = 0")).rejects.toThrow("the audit log is append-only: UPDATE on audit_entries refused");
        await expect(db.query("DELETE FROM audit_heads")).rejects.toThrow("the audit log is append-only: DELETE on audit_heads refused");
      });
    });

    it("(i) catches an entry's text changed in place with its leaf hash kept: verify --entries names the entry", async () => {
      const index = 9;
      let original = "";
      await withStoppedHub(async (db) => {
        const [row] = await db.query<{ entry: string }>("SELECT entry FROM audit_entries WHERE idx = $1", [index]);
        original = row!.entry;
        await db.query("ALTER TABLE audit_entries DISABLE TRIGGER ALL");
        await db.query("UPDATE audit_entries SET entry = replace(entry, '\"user:bootstrap admin\"', '\"user:somebody else\"') WHERE idx = $1", [index]);
        await db.query("ALTER TABLE audit_entries ENABLE TRIGGER ALL");
      });
      expect(original).toContain('"user:bootstrap admin"');
      // The tree's hashes are untouched, so a check of the tree alone passes…
      expect((await verify("--against", savedFile)).code).toBe(0);
      // …and reading the entries finds the one that no longer matches its leaf.
      const caught = await verify("--against", savedFile, "--entries");
      expect(caught.code, caught.out + caught.err).toBe(1);
      expect(caught.out).toMatch(new RegExp(`^FAILED \\(entry-changed\\): entry ${index} was changed after it was logged: its content hashes to [0-9a-f]{64}, the tree holds [0-9a-f]{64}$`, "m"));
      expect(caught.out.match(/^FAILED/gm)).toHaveLength(1);
      await withStoppedHub((db) => asAttacker(db, async (tx) => void (await tx.query("UPDATE audit_entries SET entry = $1 WHERE idx = $2", [original, index]))));
      expect((await verify("--against", savedFile, "--entries")).code).toBe(0);
    });

    it("(ii) catches a truncated log, naming the entries that are gone", async () => {
      const saved = (JSON.parse(readFileSync(savedFile, "utf8")) as { treeHead: SignedTreeHead }).treeHead;
      const keep = saved.treeSize - 7;
      await withStoppedHub((db) => asAttacker(db, (tx) => truncate(tx, keep)));
      const served = (await call<SignedTreeHead>(h.admin, "GET", "/v1/audit/head")).body;
      expect(served.treeSize).toBe(keep);
      const caught = await verify("--against", savedFile);
      expect(caught.code, caught.out + caught.err).toBe(1);
      expect(caught.out).toContain(
        `FAILED (truncated): the log was truncated: it now ends at ${keep} entries, but the head you saved (${saved.time}) covers ${saved.treeSize}; entries ${keep} to ${saved.treeSize - 1} are gone\n`,
      );
    });

    it("(iii) catches a log rewritten and re-signed by the hub itself: the first subtree that differs, and the fork", async () => {
      // The auditor keeps a head of the log as it is now, and the attacker rewrites an early entry behind it.
      rmSync(savedFile);
      expect((await polity(["audit", "head", "--save", savedFile], { config })).code).toBe(0);
      const saved = (JSON.parse(readFileSync(savedFile, "utf8")) as { treeHead: SignedTreeHead }).treeHead;
      const subtrees = rangeNodes({ begin: 0, end: saved.treeSize });
      expect(subtrees.length).toBeGreaterThan(1);
      // The first entry of the second perfect subtree: the first stays intact.
      const from = 2 ** subtrees[0]!.level;
      const to = from + 2 ** subtrees[1]!.level;
      await withStoppedHub((db) =>
        asAttacker(db, async (tx) => {
          const [row] = await tx.query<{ entry: string }>("SELECT entry FROM audit_entries WHERE idx = $1", [from]);
          const forged = canonicalJson({ ...(JSON.parse(row!.entry) as AuditEntry), actor: "user:somebody else" });
          await tx.query("UPDATE audit_entries SET entry = $1, actor = 'user:somebody else', leaf_hash = $2 WHERE idx = $3", [forged, leafOf(forged), from]);
          await tx.query("DELETE FROM audit_tiles");
          await tx.query("DELETE FROM audit_heads");
          await tx.query("UPDATE audit_tree SET size = 0");
        }),
      );
      // The restarted hub rebuilt its tree from the forged leaves and signed it with its own key.
      const rebuilt = (await call<SignedTreeHead>(h.admin, "GET", "/v1/audit/head")).body;
      expect(rebuilt.treeSize).toBe(saved.treeSize);
      expect(rebuilt.rootHash).not.toBe(saved.rootHash);
      const caught = await verify("--against", savedFile, "--entries");
      expect(caught.code, caught.out + caught.err).toBe(1);
      const failures = caught.out.split("\n").filter((line) => line.startsWith("FAILED"));
      expect(failures).toEqual([
        `FAILED (rewritten): the log was rewritten: entries ${from} to ${to - 1} no longer hash to what they did when you saved the head (${saved.time}); entries 0 to ${from - 1} are unchanged`,
        expect.stringMatching(new RegExp(`^FAILED \\(forked\\): the newest head \\(${saved.treeSize} entries, .*\\) does not extend the head you saved \\(${saved.treeSize} entries\\): two trees of size ${saved.treeSize} with different roots: the log forked$`)),
      ]);
      // Its own proofs are consistent: only the head kept outside the hub shows the rewrite.
      const proof = (await call<InclusionProof>(h.admin, "GET", `/v1/audit/proof/inclusion?index=${from}`)).body;
      expect((await polity(["audit", "check-proof", "-"], { input: JSON.stringify(proof) })).code).toBe(0);
    });
  });
}

// ---- 3. a clock stepped back ----------------------------------------------------------------

describe("a hub whose clock was stepped back (NTP, or hubs with skewed clocks on one database)", () => {
  // The newest head is the largest: a head signed while the clock ran fast never outranks it.
  it("serves its largest signed head after a restart", async () => {
    const options = { audit: { integrateEveryMs: 3_600_000, detectEveryMs: 0 } };
    let h = await hubs.startCopy("clock-step", options);
    h.clock.offsetMs = 60 * MINUTE;
    await mint(h, { name: "while-fast", role: "auditor" });
    const fast = await integrate(h);
    h.clock.offsetMs = 0;
    await mint(h, { name: "after-the-step", role: "auditor" });
    const newest = await integrate(h);
    expect(newest.treeSize).toBe(fast.treeSize + 1);
    await h.hub.close();
    h = await hubs.startAt(h.dir, options);
    expect((await call<SignedTreeHead>(h.admin, "GET", "/v1/audit/head")).body.treeSize).toBe(newest.treeSize);
  });
});

// ---- 4. back-pressure -------------------------------------------------------------------------

describe("a burst of denials while the tree is behind", () => {
  let h: TestHub;
  let agent: HubEndpoint;

  beforeAll(async () => {
    // The tree is integrated only when the test says so.
    h = await hubs.startCopy("backpressure", { audit: { maxBacklog: 5, integrateEveryMs: 3_600_000, detectEveryMs: 0 } });
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west" });
    agent = clusterEndpoint(h.hub.url, await enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1")));
  });

  const denials = (n: number) => Array.from({ length: n }, (_, i) => denial(i, 1));
  const stored = async (batch: string) => ({
    batches: (await h.hub.context.db.query("SELECT 1 FROM decision_batches WHERE batch = $1", [batch])).length,
    entries: (await h.hub.context.db.query("SELECT 1 FROM audit_entries WHERE kind = 'agent.denials' AND entry LIKE $1", [`%"batch":"${batch}"%`])).length,
  });

  it("refuses a batch with denials with 503 and Retry-After, and stores none of it", async () => {
    expect(await h.hub.context.audit.backlog()).toBeGreaterThan(5);
    const answer = await rawPost(agent, "/v1/agent/decisions", { batch: "burst-0001", entries: denials(3), dropped: 0 });
    expect(answer.status).toBe(503);
    expect(answer.headers["retry-after"]).toBe("5");
    expect(answer.json).toMatchObject({ kind: "Status", code: 503, reason: "Unavailable", message: expect.stringMatching(/^the audit log has \d+ entries waiting to be integrated \(at most 5\); keep these and send them again shortly$/) });
    expect(await stored("burst-0001")).toEqual({ batches: 0, entries: 0 });
  });

  it("still takes a batch of allowed decisions, which adds nothing to the log", async () => {
    const allowed = denials(2).map((d) => ({ ...d, allowed: true, violations: [] }));
    expect((await call<{ stored: number }>(agent, "POST", "/v1/agent/decisions", { batch: "allowed-0001", entries: allowed, dropped: 0 })).body.stored).toBe(2);
  });

  it("stores the batch sent again after the tree caught up, once, however often it is sent", async () => {
    await h.hub.context.audit.integrate();
    expect(await h.hub.context.audit.backlog()).toBe(0);
    const body = { batch: "burst-0001", entries: denials(3), dropped: 0 };
    expect((await call(agent, "POST", "/v1/agent/decisions", body)).body).toEqual({ batch: "burst-0001", stored: 3, duplicate: false });
    expect((await call(agent, "POST", "/v1/agent/decisions", body)).body).toEqual({ batch: "burst-0001", stored: 3, duplicate: true });
    expect(await stored("burst-0001")).toEqual({ batches: 1, entries: 1 });
  });
});

// ---- 5. acknowledgements ------------------------------------------------------------------------

describe("acknowledgements", () => {
  let h: TestHub;
  let agent: HubEndpoint;

  beforeAll(async () => {
    h = await hubs.startCopy("acknowledgements", { audit: { detectEveryMs: 0 } });
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west" });
    agent = clusterEndpoint(h.hub.url, await enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1")));
  });

  it("acknowledges only the version and hash the hub published for the cluster, once, however often or falsely the agent reports", async () => {
    const published = await call<{ effectivePolicySet: unknown; hash: string }>(agent, "GET", "/v1/clusters/eu-west-1/effective");
    const version = (await call<Buffer>(agent, "GET", "/v1/agent/bundle", undefined, { raw: true, binary: true })).headers.etag;
    const current = Number(String(version).replace(/^W\//, "").replaceAll('"', ""));
    // Forged hashes, versions never published, and the real one, alternating: one entry in all.
    for (let i = 0; i < 10; i++) {
      await call(agent, "POST", "/v1/agent/status", { bundleVersion: current, bundleHash: `sha256:${String(i).padStart(64, "0")}` });
      await call(agent, "POST", "/v1/agent/status", { bundleVersion: current + 1 + i, bundleHash: published.body.hash });
      await call(agent, "POST", "/v1/agent/status", { bundleVersion: current, bundleHash: published.body.hash });
    }
    await integrate(h);
    const acknowledged = await entries(h.admin, "&kind=bundle.acknowledged");
    expect(acknowledged.map((e) => e.entry.data)).toEqual([{ version: current, bundleHash: published.body.hash }]);
  });
});

describe("a log key rotated: the auditor follows the root of trust", () => {
  let h: TestHub;
  afterAll(async () => {
    await h?.hub.close();
  });

  it("verifies heads signed by the new key against a head saved before the rotation, and moves the saved head to the new key and root", async () => {
    h = await hubs.startCopy("log-key-rotation", { audit: { detectEveryMs: 0 } });
    const auditor = cliConfig("log-key-auditor", { ...h.anonymous, token: (await mint(h, { name: "auditor", role: "auditor" })).token });
    const admin = cliConfig("log-key-admin", h.admin);
    await integrate(h);
    const savedFile = join(h.dir, "..", "saved-head-log-key.json");
    expect((await polity(["audit", "head", "--save", savedFile], { config: auditor })).code).toBe(0);
    const before = JSON.parse(readFileSync(savedFile, "utf8")) as { publicKeyPem: string; root: { signed: { version: number } } };
    expect(before.root.signed.version).toBeGreaterThanOrEqual(1);

    const rotated = await polity(["keys", "rotate", "--purpose", "audit-log"], { config: admin });
    expect(rotated.code, rotated.out + rotated.err).toBe(0);
    for (let i = 0; i < 3; i++) await mint(h, { name: `after-rotation-${i}`, role: "auditor" });
    // The hub signs with the new key once it has read the root that lists it.
    const next = await eventually("the hub signs its heads with the new log key", async () => {
      const head = await integrate(h);
      const { publicKeyPem } = (await call<{ publicKeyPem: string }>(h.admin, "GET", "/v1/audit/key")).body;
      if (publicKeyPem === before.publicKeyPem) throw new Error("the log key has not moved yet");
      verifyTreeHead(head, createPublicKey(publicKeyPem));
      return publicKeyPem;
    });

    const checked = await polity(["audit", "verify", "--against", savedFile, "--entries", "--update"], { config: auditor });
    expect(checked.code, checked.out + checked.err).toBe(0);
    expect(checked.out).toMatch(/^log key: +rotated from [0-9a-f]{12}… to [0-9a-f]{12}…, proven by the root chain from your saved root to version \d+$/m);
    expect(checked.out).toMatch(/^OK: /m);
    const after = JSON.parse(readFileSync(savedFile, "utf8")) as { publicKeyPem: string; root: { signed: { version: number } } };
    expect(after.publicKeyPem).toBe(next);
    expect(after.root.signed.version).toBeGreaterThan(before.root.signed.version);
    const again = await polity(["audit", "verify", "--against", savedFile], { config: auditor });
    expect(again.code, again.out + again.err).toBe(0);
    expect(again.out).not.toMatch(/rotated/);
  });
});
