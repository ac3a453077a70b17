/**
 * Regional hubs, end to end: a global hub and a regional hub (each a real HTTPS server with
 * its own database), an agent of the region, real mutual TLS. The link between the regional
 * hub and its parent goes through a TCP link the tests cut and heal (test/support/link.ts).
 */
import { createPublicKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, type RunningAgent } from "../src/agent/index.js";
import type { SourceFile } from "../src/api/fields.js";
import type { Conflict } from "../src/api/regions.js";
import { call, type HubEndpoint } from "../src/client/http.js";
import { loadCredentials, renew } from "../src/identity/enrollment.js";
import { generateKeyPair, privateKeyPem } from "../src/identity/x509.js";
import { cpSync } from "node:fs";
import { startHub, type RunningHub } from "../src/hub/index.js";
import { eventually } from "./support/eventually.js";
import { example, HubFixture, refused, type TestHub } from "./support/hubs.js";
import { Link } from "./support/link.js";

const OPERATOR_KEY = "regional-test-operator-key-0123456789";
const REGION = "eu-west";
const CLUSTER = "eu-west-1";

const GLOBAL = example("global.yaml");
/** The global layer before pod-security was locked. */
const GLOBAL_UNLOCKED: SourceFile = { name: GLOBAL.name, content: GLOBAL.content.replace("locked: true", "locked: false") };
const GLOBAL_WITH_TEAM_RULE: SourceFile = { name: GLOBAL.name, content: GLOBAL_UNLOCKED.content.replace('message: "pods must carry a non-empty \\"team\\" label"', 'message: "pods must carry a team label (v2)"') };
const REGION_EU = example("region-eu-west.yaml");
const REGION_EU_WEAKENED: SourceFile = {
  name: REGION_EU.name,
  content: `${REGION_EU.content.trimEnd()}\n---\napiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: pod-security, owner: eu-platform }\nspec:\n  enforcement: warn\n`,
};
const REGION_EU_EXTRA: SourceFile = {
  name: REGION_EU.name,
  content: `${REGION_EU.content.trimEnd()}\n---\napiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: no-host-network, owner: eu-platform }\nspec:\n  domain: workload-security\n  match: { kinds: [Pod] }\n  validations:\n    - expression: "!has(object.spec.hostNetwork) || object.spec.hostNetwork == false"\n      message: "no host network in eu-west"\n  enforcement: deny\n`,
};

const hubs = new HubFixture("polity-regional-", OPERATOR_KEY);

describe("a regional hub", () => {
  let global: TestHub;
  let globalPort = 0;
  let link: Link;
  let regional: RunningHub;
  let regionalDir = "";
  let regionalAdmin: HubEndpoint;
  let agent: RunningAgent | undefined;
  let scratch = "";

  /** The regional hub's clock, which a test moves (a certificate expired during a partition). */
  const regionalClock = { offsetMs: 0 };
  const startRegional = async (options: { token?: string; port?: number } = {}) =>
    startHub({
      dataDir: regionalDir,
      port: options.port ?? 0,
      operatorKey: OPERATOR_KEY,
      now: () => new Date(Date.now() + regionalClock.offsetMs),
      regional: { region: REGION, parentUrl: link.url, parentCaPem: global.hub.caPem, ...(options.token === undefined ? {} : { token: options.token }), linkIntervalMs: 300 },
    });
  const policies = () => agent?.bundle.current?.set.document.policies ?? [];
  const layerAt = async (endpoint: HubEndpoint, id: string) => (await call<{ version: number; files: SourceFile[] }>(endpoint, "GET", `/v1/layers/${id}`)).body;

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), "polity-regional-scratch-"));
    regionalDir = join(scratch, "regional");
    global = await hubs.startCopy("global");
    globalPort = global.hub.port;
    link = await Link.open(globalPort);
    await call(global.admin, "POST", "/v1/apply", { files: [GLOBAL_UNLOCKED, REGION_EU] });
    await call(global.admin, "POST", "/v1/clusters", { name: CLUSTER, region: REGION, labels: { env: "prod" } });
    await call(global.admin, "POST", "/v1/clusters", { name: "us-east-1", region: "us-east" });
  });

  afterAll(async () => {
    await agent?.close();
    await regional?.close().catch(() => undefined);
    await link?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("enrols with the global hub with a region token, and mirrors the global layer and its region's clusters", async () => {
    const minted = (await call<{ token: string; region: string }>(global.admin, "POST", `/v1/regions/${REGION}/tokens`, { allowLoopback: true })).body;
    expect(minted.region).toBe(REGION);
    // Until it enrols, the hub has no regional hubs: the mirror refuses a hub certificate it does not know (no certificate: 401).
    expect((await refused(call(global.anonymous, "GET", "/v1/region/mirror"))).status).toBe(401);
    regional = await startRegional({ token: minted.token });
    regionalAdmin = { url: regional.url, caPem: regional.caPem, token: readFileSync(join(regionalDir, "admin.token"), "utf8").trim() };
    // The same federation, the same root: what clusters trust does not change with the hub they talk to.
    expect(regional.federation).toBe(global.hub.federation);
    expect(regional.caPem).toBe(global.hub.caPem);
    await eventually("the regional hub holds the global layer", async () => (await layerAt(regionalAdmin, "global")).files[0]?.content === GLOBAL_UNLOCKED.content);
    await eventually("and its region layer", async () => (await layerAt(regionalAdmin, `region/${REGION}`)).files[0]?.content === REGION_EU.content);
    const clusters = (await call<{ items: { name: string }[] }>(regionalAdmin, "GET", "/v1/clusters")).body.items.map((c) => c.name);
    expect(clusters).toEqual([CLUSTER]);
    const state = (await call<{ connected: boolean; globalVersion: number }>(regionalAdmin, "GET", "/v1/region")).body;
    expect(state).toMatchObject({ connected: true, globalVersion: 1 });
    // The token admits one enrolment.
    const again = await refused(call(global.anonymous, "POST", "/v1/regions/enrol", { token: minted.token, region: REGION, hubPublicKeyPem: "x", caPublicKeyPem: "x", bundleKeyPem: "x", auditKeyPem: "x" }));
    expect([again.status, again.message]).toEqual([401, expect.stringMatching(/already used/)]);
    // The global hub's log holds the token and the enrolment (entries reach the log asynchronously).
    const logged = await eventually("the enrolment in the global hub's log", async () => {
      const entries = (await call<{ items: { entry: { kind: string; region: string | null } }[] }>(global.admin, "GET", "/v1/audit/entries?limit=1000")).body.items.map((i) => i.entry);
      const found = entries.filter((e) => e.kind === "region-token.created" || e.kind === "regional-hub.enrolled").map((e) => [e.kind, e.region]);
      return found.length >= 2 ? found : undefined;
    });
    expect(logged).toEqual(expect.arrayContaining([["region-token.created", REGION], ["regional-hub.enrolled", REGION]]));
  });

  it("refuses a change of the global layer made on it: the global layer is its parent's", async () => {
    const error = await refused(call(regionalAdmin, "POST", "/v1/apply", { files: [GLOBAL] }));
    expect([error.status, error.message]).toEqual([403, expect.stringMatching(/the global layer is mirrored from the parent hub/)]);
  });

  it("enrols its cluster and serves it a bundle signed with its own key, which the agent verifies", async () => {
    const join = (await call<{ token: string }>(regionalAdmin, "POST", `/v1/clusters/${CLUSTER}/join-tokens`, {})).body.token;
    agent = await startAgent({ dataDir: join_(scratch, "agent"), hubUrl: regional.url, fallbackUrls: [global.hub.url], caPem: regional.caPem, cluster: CLUSTER, joinToken: join, webhookPort: 0, pollWaitSeconds: 2 });
    await eventually("the agent enforces a bundle", () => agent!.health().bundleVersion ?? undefined);
    expect(policies().map((p) => p.name)).toContain("require-team-label");
    // Newer than the one the global hub signed at its registration, before the region had a
    // hub, which an agent of the cluster could hold (an older one it would refuse as a rollback).
    expect(agent.health().bundleVersion).toBeGreaterThan(global.hub.context.bundles.version(CLUSTER)!);
    expect(agent.health().bundleHub).toBe(regional.url);
    // Its certificate was issued by the region's CA (an intermediate under the federation's root).
    const certificate = readFileSync(join_(scratch, "agent", "identity", "cert.pem"), "utf8");
    expect(certificate.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
  });

  it("makes no root of its own: it serves the global hub's roots, its agent pins the global root version 1, and its bundles name a global root version that delegates its region", async () => {
    const roots = async (endpoint: HubEndpoint) => (await call<{ items: { signed: { version: number } }[] }>(endpoint, "GET", "/v1/trust/roots?after=0")).body.items;
    const globalRoots = await roots(global.anonymous);
    const regionalRoots = await roots({ url: regional.url, caPem: regional.caPem });
    expect(regionalRoots[0]).toEqual(globalRoots[0]);
    expect(globalRoots).toEqual(expect.arrayContaining(regionalRoots));
    const pinned = JSON.parse(loadCredentials(join_(scratch, "agent", "identity"))!.rootJson!) as unknown;
    expect(pinned).toEqual(globalRoots[0]);
    const named = agent!.bundle.current!.metadata.rootVersion!;
    const root = globalRoots.find((r) => r.signed.version === named) as unknown as { signed: { delegations: { region: string }[] } } | undefined;
    expect(root?.signed.delegations.map((d) => d.region)).toContain(REGION);
  });

  it("carries a global change to the regional agent", async () => {
    await call(global.admin, "POST", "/v1/apply", { files: [GLOBAL_WITH_TEAM_RULE] });
    await eventually(
      "the agent enforces the new global rule",
      () => policies().some((p) => JSON.stringify(p).includes("(v2)")),
      20_000,
    );
  });

  it("streams up summaries: the global hub records the region's signed heads, its certificates and bundles", async () => {
    await eventually("the global hub knows the regional hub's log", async () => {
      const items = (await call<{ items: { region: string; headSize: number; lastSeen: string | null }[] }>(global.admin, "GET", "/v1/regions")).body.items;
      return items.find((i) => i.region === REGION && i.headSize > 0 && i.lastSeen !== null);
    });
    await eventually("and the bundle its regional hub signed", async () => (await global.hub.context.regions!.bundleFor(CLUSTER))?.version === agent!.health().bundleVersion);
  });

  it("lets its agent fall back to the global hub while it is down, and come back to it", async () => {
    const port = regional.port;
    await regional.close();
    await eventually("the agent asks the global hub", () => agent!.health().bundleHub === global.hub.url, 20_000);
    const synced = agent!.health().lastSync;
    await eventually("and the global hub answers it", () => agent!.health().lastSync !== synced && agent!.health().errors.bundle === undefined, 20_000);
    regional = await startRegional({ port });
    await eventually("the agent is back on its regional hub", () => agent!.health().bundleHub === regional.url, 30_000);
  }, 90_000);

  it("keeps serving with its parent down, accepts a region-layer change, and sends it up when the parent returns", async () => {
    await global.hub.close();
    await eventually("the regional hub sees its parent is gone", async () => !(await call<{ connected: boolean }>(regionalAdmin, "GET", "/v1/region")).body.connected);
    await call(regionalAdmin, "POST", "/v1/apply", { files: [REGION_EU_EXTRA] });
    await eventually("the agent enforces the regional change", () => policies().some((p) => p.name === "no-host-network"));
    global = await hubs.startAt(global.dir, { port: globalPort });
    await eventually("the region layer reaches the global hub", async () => (await layerAt(global.admin, `region/${REGION}`)).files[0]?.content === REGION_EU_EXTRA.content, 30_000);
    await eventually("the link is up again", async () => {
      const state = (await call<{ connected: boolean; lastError: string | null }>(regionalAdmin, "GET", "/v1/region")).body;
      if (!state.connected) throw new Error(state.lastError ?? "not connected");
      return true;
    });
  }, 90_000);

  it("reverts a regional change that breaks a global lock set meanwhile, and reports the conflict on both sides", async () => {
    link.cut();
    await eventually("the regional hub sees the link is cut", async () => !(await call<{ connected: boolean }>(regionalAdmin, "GET", "/v1/region")).body.connected);
    // Meanwhile: the global hub locks pod-security, and the region weakens it (valid against the global layer it holds).
    await call(global.admin, "POST", "/v1/apply", { files: [GLOBAL] });
    await call(regionalAdmin, "POST", "/v1/apply", { files: [REGION_EU_WEAKENED] });
    await eventually("the agent holds the weakened policy", () => policies().find((p) => p.name === "pod-security")?.enforcement === "warn");
    link.heal();
    const conflicts = await eventually("the regional hub reports the conflict", async () => {
      const items = (await call<{ items: Conflict[] }>(regionalAdmin, "GET", "/v1/conflicts")).body.items;
      return items.length > 0 ? items : undefined;
    }, 30_000);
    expect(conflicts[0]).toMatchObject({ region: REGION, layerId: `region/${REGION}` });
    expect(conflicts[0]!.reason).toMatch(/pod-security/);
    await eventually("the agent enforces pod-security with deny again", () => policies().find((p) => p.name === "pod-security")?.enforcement === "deny", 30_000);
    await eventually("the global hub has the conflict too", async () => (await call<{ items: Conflict[] }>(global.admin, "GET", "/v1/conflicts")).body.items.find((c) => c.id === conflicts[0]!.id), 30_000);
    for (const endpoint of [regionalAdmin, global.admin]) {
      await eventually("an audit entry of the conflict", async () => (await call<{ items: unknown[] }>(endpoint, "GET", "/v1/audit/entries?kind=region.conflict")).body.items.length > 0);
    }
    // Nothing deleted: the reverted version stays in the region layer's history.
    const history = (await call<{ items: { version: number }[] }>(regionalAdmin, "GET", `/v1/layers/region/${REGION}/history`)).body.items;
    expect(history.map((h) => h.version)).toContain(conflicts[0]!.revertedVersion);
  }, 90_000);

  it("refuses a parent that comes back with an older global layer (restored from a backup), audits it, and keeps the newer one", async () => {
    const backup = join(scratch, "global-backup");
    await global.hub.close();
    cpSync(global.dir, backup, { recursive: true });
    global = await hubs.startAt(global.dir, { port: globalPort });
    await call(global.admin, "POST", "/v1/apply", { files: [GLOBAL_WITH_TEAM_RULE] });
    const newer = (await layerAt(global.admin, "global")).version;
    await eventually("the regional hub holds the newer global layer", async () => (await call<{ globalVersion: number }>(regionalAdmin, "GET", "/v1/region")).body.globalVersion === newer, 30_000);
    // The parent restored from the backup: an older global layer.
    await global.hub.close();
    rmSync(global.dir, { recursive: true, force: true });
    cpSync(backup, global.dir, { recursive: true });
    global = await hubs.startAt(global.dir, { port: globalPort });
    const refusal = await eventually(
      "the regional hub audits the refusal",
      async () => (await call<{ items: { entry: { data: { what: string; why: string } } }[] }>(regionalAdmin, "GET", "/v1/audit/entries?kind=regional-hub.refused")).body.items.find((i) => i.entry.data.what === "global layer"),
      30_000,
    );
    expect(refusal.entry.data.why).toMatch(/older than version/);
    expect((await layerAt(regionalAdmin, "global")).files[0]?.content).toBe(GLOBAL_WITH_TEAM_RULE.content);
    expect(policies().some((p) => JSON.stringify(p).includes("(v2)"))).toBe(true);
  }, 120_000);

  it("renews, with its parent unreachable, a certificate that expired during the partition (within the grace window)", async () => {
    link.cut();
    await eventually("the regional hub sees the link is cut", async () => !(await call<{ connected: boolean }>(regionalAdmin, "GET", "/v1/region")).body.connected);
    const held = loadCredentials(join(scratch, "agent", "identity"))!;
    // A day and an hour later, by the regional hub's clock: the certificate expired an hour ago.
    regionalClock.offsetMs = Date.parse(held.notAfter) - Date.now() + 3600_000;
    try {
      const renewed = await renew(regional.url, held);
      expect(renewed.serial).not.toBe(held.serial);
      expect(Date.parse(renewed.notAfter)).toBeGreaterThan(Date.parse(held.notAfter));
      expect(renewed.certificatePem.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    } finally {
      regionalClock.offsetMs = 0;
      link.heal();
    }
  }, 60_000);

  it("is caught by the global hub when it rewrites its log (restored from a backup): the head is refused and audited, the recorded one kept", async () => {
    const backup = join(scratch, "regional-backup");
    const port = regional.port;
    await regional.close();
    cpSync(regionalDir, backup, { recursive: true });
    regional = await startRegional({ port });
    // More entries, and their head recorded by the global hub.
    await call(regionalAdmin, "POST", "/v1/apply", { files: [REGION_EU] });
    const recorded = await eventually("the global hub records a head past the backup", async () => {
      const size = (await call<{ items: { region: string; headSize: number }[] }>(global.admin, "GET", "/v1/regions")).body.items.find((i) => i.region === REGION)?.headSize ?? 0;
      const local = (await call<{ treeSize: number }>(regionalAdmin, "GET", "/v1/audit/head")).body.treeSize;
      return size === local && size > 0 ? size : undefined;
    }, 30_000);
    // The regional hub's data restored from the backup: its log forks from the one the global hub saw.
    await regional.close();
    rmSync(regionalDir, { recursive: true, force: true });
    cpSync(backup, regionalDir, { recursive: true });
    regional = await startRegional({ port });
    await call(regionalAdmin, "POST", "/v1/apply", { files: [REGION_EU_EXTRA] });
    const refusal = await eventually(
      "the global hub audits the refused head",
      async () => (await call<{ items: { entry: { region: string; data: { what: string; why: string } } }[] }>(global.admin, "GET", "/v1/audit/entries?kind=regional-hub.refused")).body.items.find((i) => i.entry.data.what === "signed tree head"),
      30_000,
    );
    expect(refusal.entry.region).toBe(REGION);
    expect(refusal.entry.data.why).toMatch(/smaller than the head recorded before|forked|root|proof/);
    const state = (await call<{ items: { region: string; headSize: number }[] }>(global.admin, "GET", "/v1/regions")).body.items.find((i) => i.region === REGION);
    expect(state?.headSize).toBe(recorded);
  }, 120_000);
});

function join_(...parts: string[]): string {
  return join(...parts);
}

describe("a regional hub's certificate", () => {
  let parent: TestHub;
  beforeAll(async () => {
    parent = await hubs.startCopy("names");
  });

  /** The public halves a regional hub sends when it enrols, for keys made here. */
  const keys = async () => {
    const ec = async () => createPublicKey(await privateKeyPem((await generateKeyPair()).privateKey)).export({ type: "spki", format: "pem" }).toString();
    const ed = () => generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString();
    return { hubPublicKeyPem: await ec(), caPublicKeyPem: await ec(), bundleKeyPem: ed(), auditKeyPem: ed() };
  };
  const sans = (pem: string) => new X509Certificate(pem).subjectAltName ?? "";

  it("names only the hostnames the global admin fixed in the region token, and no loopback unless the token allows it", async () => {
    const minted = (await call<{ token: string }>(parent.admin, "POST", "/v1/regions/ap-south/tokens", { hostnames: ["hub.ap-south.example"] })).body;
    // A hub asking for another hub's name (the global hub's, another region's) is refused.
    const greedy = await refused(call(parent.anonymous, "POST", "/v1/regions/enrol", { token: minted.token, region: "ap-south", ...(await keys()), hostnames: ["hub.ap-south.example", "global.polity.example"] }));
    expect([greedy.status, greedy.message]).toEqual([403, expect.stringMatching(/global\.polity\.example.*not one the region token admits/)]);
    const enrolled = (await call<{ hubCertificatePem: string }>(parent.anonymous, "POST", "/v1/regions/enrol", { token: minted.token, region: "ap-south", ...(await keys()), hostnames: [] })).body;
    const names = sans(enrolled.hubCertificatePem);
    expect(names).toContain("DNS:hub.ap-south.example");
    expect(names).toContain("URI:spiffe://");
    expect(names).not.toMatch(/localhost|127\.0\.0\.1|IP Address/);
  });

  it("refuses a region token for a hostname that is not a DNS name", async () => {
    const error = await refused(call(parent.admin, "POST", "/v1/regions/ap-east/tokens", { hostnames: ["*.example"] }));
    expect(error.status).toBe(400);
  });
});
