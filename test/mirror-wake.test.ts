/**
 * A regional hub's link woken by its parent: the link pulls the mirror on its interval
 * (level-triggered), and as soon as the parent's global or region layer moves (a long poll
 * of `/v1/region/mirror/changes`), so a global change does not wait for the next round.
 * Real hubs, real mutual TLS; the regional hub's interval is set far longer than the test
 * waits, so only the wake can bring the change in time.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, type HubEndpoint } from "../src/client/http.js";
import { startHub, type RunningHub } from "../src/hub/index.js";
import { parentEndpoint } from "../src/hub/regional/credentials.js";
import { eventually } from "./support/eventually.js";
import { example, HubFixture, refused, type TestHub } from "./support/hubs.js";

const OPERATOR_KEY = "mirror-wake-test-operator-key-0123456789";
const REGION = "eu-west";
const GLOBAL = example("global.yaml");
const GLOBAL_V2 = { name: GLOBAL.name, content: GLOBAL.content.replace('message: "pods must carry a non-empty \\"team\\" label"', 'message: "pods must carry a team label (v2)"') };

const hubs = new HubFixture("polity-mirror-wake-", OPERATOR_KEY);

describe("a regional hub's link, woken by its parent", () => {
  let global: TestHub;
  let regional: RunningHub;
  let regionalAdmin: HubEndpoint;
  let scratch = "";
  const globalAt = async () => (await call<{ files: { content: string }[] }>(regionalAdmin, "GET", "/v1/layers/global")).body.files[0]?.content;

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), "polity-mirror-wake-scratch-"));
    global = await hubs.startCopy("global");
    await call(global.admin, "POST", "/v1/apply", { files: [GLOBAL, example("region-eu-west.yaml")] });
    const { token } = (await call<{ token: string }>(global.admin, "POST", `/v1/regions/${REGION}/tokens`, { allowLoopback: true })).body;
    const dataDir = join(scratch, "regional");
    // An interval of ten minutes: the first round runs at start, the next ones only when woken.
    regional = await startHub({ dataDir, port: 0, operatorKey: OPERATOR_KEY, regional: { region: REGION, parentUrl: global.hub.url, parentCaPem: global.hub.caPem, token, linkIntervalMs: 600_000 } });
    regionalAdmin = { url: regional.url, caPem: regional.caPem, token: readFileSync(join(dataDir, "admin.token"), "utf8").trim() };
    await eventually("the regional hub holds the global layer (its first round)", async () => (await globalAt()) === GLOBAL.content);
  }, 60_000);

  afterAll(async () => {
    await regional?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("pulls a global change at once, not at its next round", async () => {
    const start = Date.now();
    await call(global.admin, "POST", "/v1/apply", { files: [GLOBAL_V2] });
    await eventually("the regional hub holds the changed global layer", async () => (await globalAt()) === GLOBAL_V2.content, 15_000);
    expect(Date.now() - start).toBeLessThan(15_000);
  }, 30_000);

  it("answers a regional hub with the versions of its two layers, and waits for them to move", async () => {
    const endpoint = parentEndpoint(regional.context.regional!.credentials);
    const now = (await call<{ versions: string }>(endpoint, "GET", "/v1/region/mirror/changes")).body.versions;
    expect(now).toMatch(/^\d+\.\d+$/);
    // Unchanged: the long poll ends with the same versions when its wait is over.
    const started = Date.now();
    expect((await call<{ versions: string }>(endpoint, "GET", `/v1/region/mirror/changes?after=${now}&wait=1`)).body.versions).toBe(now);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    // Moved: answered at once.
    expect((await call<{ versions: string }>(endpoint, "GET", "/v1/region/mirror/changes?after=0.0&wait=30")).body.versions).toBe(now);
  });

  it("refuses versions that are not two numbers, and anyone but a regional hub", async () => {
    const endpoint = parentEndpoint(regional.context.regional!.credentials);
    const bad = await refused(call(endpoint, "GET", "/v1/region/mirror/changes?after=1.1%26x%3D1"));
    expect([bad.status, bad.message]).toEqual([400, expect.stringMatching(/is not <global version>\.<region version>/)]);
    const admin = await refused(call(global.admin, "GET", "/v1/region/mirror/changes"));
    expect([admin.status, admin.message]).toEqual([403, expect.stringMatching(/mirror changes are for a regional hub/)]);
  });
});
