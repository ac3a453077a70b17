/**
 * Renewal at any hub: an agent whose regional hub is down renews its certificate with the
 * global hub (its next `--hub`), and its regional hub, back, knows that certificate (the
 * mirror carries what the parent issued for the region's clusters).
 */
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, type RunningAgent } from "../src/agent/index.js";
import { call, type HubEndpoint } from "../src/client/http.js";
import { startHub, type RunningHub } from "../src/hub/index.js";
import { loadCredentials, renew } from "../src/identity/enrollment.js";
import { eventually, sleep } from "./support/eventually.js";
import { example, HubFixture, refused, type TestHub } from "./support/hubs.js";

const OPERATOR_KEY = "regional-renewal-operator-key-0123456789";
const REGION = "eu-west";
const CLUSTER = "eu-west-1";
const hubs = new HubFixture("polity-regional-renewal-", OPERATOR_KEY);

describe("renewal at the global hub while the regional hub is down", () => {
  let global: TestHub;
  let regional: RunningHub;
  let regionalAdmin: HubEndpoint;
  let agent: RunningAgent | undefined;
  let scratch = "";
  const startRegional = (token?: string, port = 0) =>
    startHub({
      dataDir: join(scratch, "regional"),
      port,
      operatorKey: OPERATOR_KEY,
      // Short certificates: the agent renews two thirds of the way through, 6 s after it got one.
      certificateTtlMs: 9_000,
      regional: { region: REGION, parentUrl: global.hub.url, parentCaPem: global.hub.caPem, ...(token === undefined ? {} : { token }), linkIntervalMs: 300 },
    });
  const certificate = () => readFileSync(join(scratch, "agent", "identity", "cert.pem"), "utf8");

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), "polity-regional-renewal-"));
    global = await hubs.startCopy("global");
    await call(global.admin, "POST", "/v1/apply", { files: [example("global.yaml"), example("region-eu-west.yaml")] });
    await call(global.admin, "POST", "/v1/clusters", { name: CLUSTER, region: REGION });
    const minted = (await call<{ token: string }>(global.admin, "POST", `/v1/regions/${REGION}/tokens`, { allowLoopback: true })).body;
    regional = await startRegional(minted.token);
    regionalAdmin = { url: regional.url, caPem: regional.caPem, token: readFileSync(join(scratch, "regional", "admin.token"), "utf8").trim() };
    await eventually("the regional hub holds its cluster", async () => (await call<{ items: unknown[] }>(regionalAdmin, "GET", "/v1/clusters")).body.items.length === 1);
  });

  afterAll(async () => {
    await agent?.close();
    await regional?.close().catch(() => undefined);
    rmSync(scratch, { recursive: true, force: true });
  });

  it("renews with the global hub, and is served by its regional hub again when it returns", async () => {
    const joinToken = (await call<{ token: string }>(regionalAdmin, "POST", `/v1/clusters/${CLUSTER}/join-tokens`, {})).body.token;
    agent = await startAgent({ dataDir: join(scratch, "agent"), hubUrl: regional.url, fallbackUrls: [global.hub.url], caPem: regional.caPem, cluster: CLUSTER, joinToken, webhookPort: 0, pollWaitSeconds: 1 });
    await eventually("the agent enforces a bundle from its regional hub", () => agent!.health().bundleHub === regional.url && agent!.health().bundleVersion !== null);
    // Issued by the region's CA: the leaf and the intermediate.
    expect(certificate().match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    const issued = certificate();
    await eventually("the global hub knows the certificate the region issued", async () => (await global.hub.context.identity.certificatesOf(CLUSTER)).length > 0);
    const port = regional.port;
    await regional.close();

    await eventually("the agent renews with the global hub", () => certificate() !== issued && certificate().match(/BEGIN CERTIFICATE/g)!.length === 1, 30_000);
    expect(agent.health().errors.identity).toBeUndefined();
    const renewedAtGlobal = certificate();

    regional = await startRegional(undefined, port);
    const synced = agent.health().lastSync;
    await eventually(
      "the agent is served by its regional hub again, with the certificate the global hub issued",
      () => agent!.health().bundleHub === regional.url && agent!.health().lastSync !== synced && agent!.health().errors.bundle === undefined,
      30_000,
    );
    // And can renew there in turn (the regional hub knows the certificate its parent issued).
    // (The mirror carries a certificate down once it is 10 s old: one issued earlier cannot commit after it.)
    const held = loadCredentials(join(scratch, "agent", "identity"))!;
    expect(held.certificatePem).toBe(renewedAtGlobal);
    const renewed = await eventually("the regional hub renews the certificate its parent issued", () => renew(regional.url, held), 30_000);
    expect(renewed.certificatePem.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
  }, 120_000);

  it("carries a revocation made on the regional hub to the global hub, which refuses the cluster from then on", async () => {
    const held = loadCredentials(join(scratch, "agent", "identity"))!;
    await call(regionalAdmin, "POST", `/v1/clusters/${CLUSTER}/revoke`, {});
    await eventually(
      "the global hub holds the cluster revoked",
      async () => (await call<{ items: { name: string; revokedAt: string | null }[] }>(global.admin, "GET", "/v1/clusters")).body.items.find((c) => c.name === CLUSTER)?.revokedAt ? true : undefined,
      30_000,
    );
    const atGlobal = await refused(renew(global.hub.url, held));
    expect([atGlobal.status, atGlobal.message]).toEqual([401, expect.stringMatching(/revoked/)]);
  }, 120_000);
});

describe("a regional hub's delegation and CA, renewed before they expire", () => {
  let global: TestHub;
  let regional: RunningHub;
  let agent: RunningAgent | undefined;
  let scratch = "";

  afterAll(async () => {
    await agent?.close();
    await regional?.close().catch(() => undefined);
    rmSync(scratch, { recursive: true, force: true });
  });

  it("renews both for the same keys with a third of their life left, and its agent takes bundles past the first delegation's expiry", async () => {
    scratch = mkdtempSync(join(tmpdir(), "polity-regional-delegation-"));
    // A delegation and a region CA of one minute: renewed about 40 s in.
    global = await hubs.startCopy("global-short", { trust: { delegationValidityMs: 60_000, regionalCaTtlMs: 60_000 } });
    await call(global.admin, "POST", "/v1/apply", { files: [example("global.yaml"), example("region-eu-west.yaml")] });
    await call(global.admin, "POST", "/v1/clusters", { name: CLUSTER, region: REGION });
    const minted = (await call<{ token: string }>(global.admin, "POST", `/v1/regions/${REGION}/tokens`, { allowLoopback: true })).body;
    regional = await startHub({
      dataDir: join(scratch, "regional"),
      port: 0,
      operatorKey: OPERATOR_KEY,
      regional: { region: REGION, parentUrl: global.hub.url, parentCaPem: global.hub.caPem, token: minted.token, linkIntervalMs: 300 },
    });
    const enrolledAt = Date.now();
    const regionalAdmin: HubEndpoint = { url: regional.url, caPem: regional.caPem, token: readFileSync(join(scratch, "regional", "admin.token"), "utf8").trim() };
    await eventually("the regional hub holds its cluster", async () => (await call<{ items: unknown[] }>(regionalAdmin, "GET", "/v1/clusters")).body.items.length === 1);
    const first = JSON.parse(readFileSync(join(scratch, "regional", "regional.json"), "utf8")) as { caCertificatePem: string };
    const joinToken = (await call<{ token: string }>(regionalAdmin, "POST", `/v1/clusters/${CLUSTER}/join-tokens`, {})).body.token;
    agent = await startAgent({ dataDir: join(scratch, "agent"), hubUrl: regional.url, fallbackUrls: [global.hub.url], caPem: regional.caPem, cluster: CLUSTER, joinToken, webhookPort: 0, pollWaitSeconds: 1 });
    await eventually("the agent enforces a bundle", () => agent!.health().bundleVersion ?? undefined);

    await eventually(
      "the regional hub renewed its CA (a new intermediate for the same key)",
      () => (JSON.parse(readFileSync(join(scratch, "regional", "regional.json"), "utf8")) as { caCertificatePem: string }).caCertificatePem !== first.caCertificatePem,
      60_000,
    );
    const renewed = JSON.parse(readFileSync(join(scratch, "regional", "regional.json"), "utf8")) as { caCertificatePem: string };
    const key = (pem: string) => new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" }).toString("hex");
    expect(key(renewed.caCertificatePem)).toBe(key(first.caCertificatePem));
    // Past the first delegation's end, a change still reaches the agent under the extended one.
    await sleep(Math.max(0, enrolledAt + 62_000 - Date.now()));
    const held = agent.health().bundleVersion!;
    await call(global.admin, "POST", "/v1/apply", { files: [{ ...example("global.yaml"), content: example("global.yaml").content.replace('message: "pods must carry a non-empty \\"team\\" label"', 'message: "pods must carry a team label (renewed)"') }] });
    await eventually("the agent takes the change", () => agent!.health().bundleVersion! > held, 30_000);
    expect(agent.health().lastRefusal).toBeNull();
    const issued = (await call<{ items: { entry: { data: Record<string, unknown> } }[] }>(global.admin, "GET", "/v1/audit/entries?kind=region.ca-issued")).body.items;
    expect(issued.length).toBeGreaterThanOrEqual(2);
  }, 180_000);
});
