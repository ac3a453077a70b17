/**
 * Renewal at any hub: an agent whose regional hub is down renews its certificate with the
 * global hub (its next `--hub`), and its regional hub, back, knows that certificate (the
 * mirror carries what the parent issued for the region's clusters).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, type RunningAgent } from "../src/agent/index.js";
import { call, type HubEndpoint } from "../src/client/http.js";
import { startHub, type RunningHub } from "../src/hub/index.js";
import { loadCredentials, renew } from "../src/identity/enrollment.js";
import { eventually } from "./support/eventually.js";
import { example, HubFixture, type TestHub } from "./support/hubs.js";

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
    const held = loadCredentials(join(scratch, "agent", "identity"))!;
    expect(held.certificatePem).toBe(renewedAtGlobal);
    const renewed = await renew(regional.url, held);
    expect(renewed.certificatePem.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
  }, 120_000);
});
