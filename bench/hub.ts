/**
 * The hub at federation scale, measured against a hub in another process (embedded
 * PGlite): enrolments per second (CSR signing included), new mutual-TLS connections per
 * second, and the time from applying a layer to every affected cluster's effective set
 * being recomputed, with 10,000 registered clusters.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { call, closeConnections, type HubEndpoint } from "../src/client/http.js";
import { createCsr, enroll, newPrivateKey, type Credentials } from "../src/identity/enrollment.js";
import { openDatabase } from "../src/store/database.js";
import { fmt, median } from "./fixtures.js";
import { startHubProcess, stopProcess, type HubProcess } from "./processes.js";

async function stop(hub: HubProcess): Promise<void> {
  closeConnections();
  await stopProcess(hub.process);
}

/** Runs `work` for every item with `concurrency` in flight; returns the wall time in ms. */
async function pool<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
  return performance.now() - start;
}

/** One HTTPS request on a connection of its own (no keep-alive): a full mutual-TLS handshake. */
function freshConnection(url: string, creds: Credentials): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(new URL("/v1/whoami", url), { agent: false, ca: creds.caPem, cert: creds.certificatePem, key: creds.privateKeyPem }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.end();
  });
}

const REGIONS = ["eu-west", "eu-central", "us-east", "us-west", "ap-south", "ap-east", "sa-east", "af-south"];

function regionLayer(region: string, maxReplicas: number): { name: string; content: string } {
  return {
    name: `region-${region}.yaml`,
    content: `apiVersion: polity.dev/v1
kind: Layer
metadata: { name: ${region} }
spec: { tier: region, region: ${region}, owners: [${region}-ops] }
---
apiVersion: polity.dev/v1
kind: Policy
metadata: { name: max-replicas, owner: ${region}-ops }
spec:
  params: { maxReplicas: { value: ${maxReplicas} } }
`,
  };
}

export async function benchHub(): Promise<Record<string, number>> {
  const dataDir = mkdtempSync(join(tmpdir(), "polity-bench-hub-"));
  const results: Record<string, number> = {};
  try {
    let hub = await startHubProcess(dataDir);
    const admin: HubEndpoint = { url: hub.url, caPem: hub.caPem, token: hub.adminToken };
    const { readFileSync } = await import("node:fs");
    const examples = fileURLToPath(new URL("../../examples/layers/", import.meta.url));
    await call(admin, "POST", "/v1/apply", { files: [{ name: "global.yaml", content: readFileSync(join(examples, "global.yaml"), "utf8") }, ...REGIONS.map((r) => regionLayer(r, 60))] });

    // Enrolments: clusters registered and join tokens minted first; keys and CSRs made by the "agents" beforehand.
    const N = 400;
    const tokens: { cluster: string; token: string; key: string; csr: string }[] = [];
    for (let i = 0; i < N; i++) {
      const cluster = `enrol-${i}`;
      await call(admin, "POST", "/v1/clusters", { name: cluster, region: REGIONS[i % 8], labels: { env: "prod" } });
      const { token } = (await call<{ token: string }>(admin, "POST", `/v1/clusters/${cluster}/join-tokens`, {})).body;
      const key = await newPrivateKey();
      tokens.push({ cluster, token, key, csr: await createCsr(cluster, key) });
    }
    const anonymous: HubEndpoint = { url: hub.url, caPem: hub.caPem };
    const enrolMs = await pool(tokens, 16, async (t) => {
      await call(anonymous, "POST", "/v1/enroll", { joinToken: t.token, csr: t.csr });
    });
    results.enrolmentsPerSecond = (N / enrolMs) * 1000;

    // New mutual-TLS connections: one enrolled cluster, a new TLS connection per request.
    const { token } = (await call<{ token: string }>(admin, "POST", "/v1/clusters", { name: "handshakes", region: "eu-west", labels: {} }).then(() =>
      call<{ token: string }>(admin, "POST", "/v1/clusters/handshakes/join-tokens", {}),
    )).body;
    const creds = await enroll({ url: hub.url, caPem: hub.caPem }, "handshakes", token);
    const H = 1000;
    for (let i = 0; i < 50; i++) await freshConnection(hub.url, creds);
    const handshakeMs = await pool(Array.from({ length: H }, (_, i) => i), 8, () => freshConnection(hub.url, creds));
    results.mtlsConnectionsPerSecond = (H / handshakeMs) * 1000;
    await stop(hub);

    // 10,000 clusters: written straight into the hub's database while it is stopped (the API
    // would take minutes), then the hub restarted and every effective set computed once.
    const db = await openDatabase({ dataDir: join(dataDir, "db") });
    const CLUSTERS = 10_000;
    const batch: string[] = [];
    const params: unknown[] = [];
    for (let i = 0; i < CLUSTERS; i++) {
      params.push(`c-${i}`, REGIONS[i % 8], JSON.stringify({ env: ["prod", "staging", "dev"][i % 3], shard: String(i % 97) }));
      batch.push(`($${params.length - 2}, $${params.length - 1}, $${params.length}, 'bench')`);
      if (batch.length === 1000 || i === CLUSTERS - 1) {
        await db.transaction(async (tx) => {
          await tx.query("UPDATE federation SET generation = generation + 1");
          await tx.query(`INSERT INTO clusters (name, region, labels, created_by) VALUES ${batch.join(", ")}`, params);
        });
        batch.length = 0;
        params.length = 0;
      }
    }
    await db.close();
    hub = await startHubProcess(dataDir);
    const admin2: HubEndpoint = { url: hub.url, caPem: hub.caPem, token: admin.token! };
    let start = performance.now();
    const listed = (await call<{ items: unknown[] }>(admin2, "GET", "/v1/clusters")).body.items.length;
    results.firstComputeMs = performance.now() - start;
    const region: number[] = [];
    const global: number[] = [];
    let affectedRegion = 0;
    let affectedGlobal = 0;
    for (let run = 0; run < 3; run++) {
      start = performance.now();
      const r = (await call<{ clusters: unknown[] }>(admin2, "POST", "/v1/apply", { files: [regionLayer("eu-west", 61 + run)] })).body;
      region.push(performance.now() - start);
      affectedRegion = r.clusters.length;
      const globalText = readFileSync(join(examples, "global.yaml"), "utf8").replace("default: 50", `default: ${40 + run}`);
      start = performance.now();
      const g = (await call<{ clusters: unknown[] }>(admin2, "POST", "/v1/apply", { files: [{ name: "global.yaml", content: globalText }] })).body;
      global.push(performance.now() - start);
      affectedGlobal = g.clusters.length;
    }
    results.regionApplyMs = median(region);
    results.globalApplyMs = median(global);
    await stop(hub);

    console.log(`\nHub (embedded PGlite, in its own process; the load from this one)`);
    console.log(`  enrolments (join token + CSR → signed certificate), 16 in flight     ${results.enrolmentsPerSecond.toFixed(0)} per second (${N} enrolments)`);
    console.log(`  new mutual-TLS connections, one request each, 8 in flight           ${results.mtlsConnectionsPerSecond.toFixed(0)} per second (${H} connections)`);
    console.log(`  ${listed} registered clusters: computing every effective set at first   ${fmt(results.firstComputeMs)} ms`);
    console.log(`  apply a region layer → ${affectedRegion} affected clusters recomputed, validated, written   median ${fmt(results.regionApplyMs)} ms`);
    console.log(`  apply the global layer → ${affectedGlobal} affected clusters recomputed, validated, written  median ${fmt(results.globalApplyMs)} ms   (target: < 2 s)`);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
  return results;
}
