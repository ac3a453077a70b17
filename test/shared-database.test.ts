/**
 * Hubs of two federations on one PostgreSQL database, a schema each: they share the
 * server's notification channels, and neither may take the other's news for its own.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { call, type HubEndpoint } from "../src/client/http.js";
import { startHub, type RunningHub } from "../src/hub/index.js";
import { eventually } from "./support/eventually.js";

const DATABASE_URL = process.env.DATABASE_URL;
const skip = DATABASE_URL === undefined || DATABASE_URL === "" ? "skipped: set DATABASE_URL (postgres://…) to run it against a PostgreSQL server" : undefined;

describe.skipIf(skip !== undefined)(`two federations' hubs on one database, a schema each${skip === undefined ? "" : ` (${skip})`}`, () => {
  const scratch = mkdtempSync(join(tmpdir(), "polity-shared-db-"));
  const running: RunningHub[] = [];
  const run = `${process.pid.toString(36)}${Date.now().toString(36)}`;

  async function start(name: string): Promise<HubEndpoint> {
    const dir = join(scratch, name);
    const hub = await startHub({ dataDir: dir, port: 0, operatorKey: "shared-database-operator-key-0123456789", federation: name, databaseUrl: DATABASE_URL!, schema: `shared_${name}_${run}` });
    running.push(hub);
    return { url: hub.url, caPem: hub.caPem, token: readFileSync(join(dir, "admin.token"), "utf8").trim() };
  }

  afterAll(async () => {
    await Promise.allSettled(running.map((h) => h.close()));
    rmSync(scratch, { recursive: true, force: true });
  });

  it("each sees its own changes, however far ahead the other's generation runs", async () => {
    const busy = await start("busy");
    const quiet = await start("quiet");
    for (let i = 0; i < 25; i++) await call(busy, "POST", "/v1/clusters", { name: `busy-${i}`, region: "eu-west" });
    // The busy federation's notifications (generation 25 and more) reached the quiet hub too.
    await call(quiet, "POST", "/v1/clusters", { name: "quiet-1", region: "eu-west" });
    await call(quiet, "POST", "/v1/clusters", { name: "quiet-2", region: "eu-west" });
    const names = async (hub: HubEndpoint) => (await call<{ items: { name: string }[] }>(hub, "GET", "/v1/clusters")).body.items.map((c) => c.name).sort();
    await eventually("the quiet hub lists its own clusters", async () => (await names(quiet)).length === 2 && (await names(quiet)).join() === "quiet-1,quiet-2", 10_000);
    expect(await names(busy)).toHaveLength(25);
  });
});
