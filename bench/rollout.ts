/**
 * A staged rollout at scale: a hub in its own process (embedded PGlite) and 1,000
 * lightweight agents in this one (each enrolled, with its own certificate, mutual-TLS long
 * poll and signature check of every bundle, and a status report every few seconds naming
 * the bundle it holds, as a real agent's status loop does). A change of the global layer
 * goes canary (10 clusters) → four waves (by a label) with a short soak, gates judged by the
 * hub every second. Printed: the total time against the soak time the stages add up to, each
 * stage's time from its start to its last acknowledgement, and what one judgement of a
 * stage costs the hub (reading the reports of its clusters and evaluating their gates).
 */
import { createPublicKey } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Agent, request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { RolloutView } from "../src/api/rollouts.js";
import { call, closeConnections, type HubEndpoint } from "../src/client/http.js";
import { enroll, type Credentials } from "../src/identity/enrollment.js";
import { parseClusterSpiffeId } from "../src/identity/spiffe.js";
import { LightAgent } from "./agent.js";
import { fmt, median, percentile } from "./fixtures.js";
import { startHubProcess, stopProcess } from "./processes.js";

const EXAMPLES = fileURLToPath(new URL("../../examples/", import.meta.url));
const layer = (path: string) => ({ name: path.split("/").pop()!, content: readFileSync(join(EXAMPLES, path), "utf8") });

/** A status report, as an agent's status loop sends it, on the agent's own connection. */
function report(url: string, agent: Agent, body: unknown): Promise<number> {
  return new Promise((resolve) => {
    const text = JSON.stringify(body);
    const req = request(new URL("/v1/agent/status", url), { method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(text) } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", () => resolve(0));
    req.end(text);
  });
}

export async function benchRollout(): Promise<Record<string, number>> {
  const N = Number(process.env.POLITY_BENCH_ROLLOUT_AGENTS ?? "1000");
  const SOAK = 2;
  const STATUS_MS = 2_000;
  const dataDir = mkdtempSync(join(tmpdir(), "polity-bench-rollout-"));
  const hub = await startHubProcess(dataDir).catch((error: unknown) => {
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  });
  const admin: HubEndpoint = { url: hub.url, caPem: hub.caPem, token: hub.adminToken };
  const results: Record<string, number> = {};
  const agents: LightAgent[] = [];
  const loops: Promise<void>[] = [];
  let reporting = true;
  try {
    await call(admin, "POST", "/v1/apply", { files: [layer("layers/global.yaml"), layer("layers/region-eu-west.yaml"), layer("layers/region-us-east.yaml")] });
    const enrolStart = performance.now();
    const creds: Credentials[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < N) {
          const i = next++;
          const name = `r-${i}`;
          await call(admin, "POST", "/v1/clusters", { name, region: ["eu-west", "us-east"][i % 2], labels: { wave: String(1 + (i % 4)) } });
          const { token } = (await call<{ token: string }>(admin, "POST", `/v1/clusters/${name}/join-tokens`, {})).body;
          creds[i] = await enroll({ url: hub.url, caPem: hub.caPem }, name, token);
        }
      }),
    );
    const enrolSeconds = (performance.now() - enrolStart) / 1000;
    const publicKey = createPublicKey(creds[0]!.bundleKeyPem);
    for (const c of creds) agents.push(new LightAgent(hub.url, c, { publicKey, federation: "polity", region: parseClusterSpiffeId(c.spiffeId)?.region ?? "", cluster: c.cluster }));
    const first = agents.map((a) => new Promise<void>((resolve) => (a.onBundle = () => resolve())));
    for (const a of agents) loops.push(a.run());
    await Promise.all(first);
    // Each agent reports what it holds every STATUS_MS, spread over the interval.
    const statusAgents = creds.map((c) => new Agent({ keepAlive: true, maxSockets: 1, ca: c.caPem, cert: c.certificatePem, key: c.privateKeyPem }));
    agents.forEach((a, i) => {
      loops.push(
        (async () => {
          await new Promise((r) => setTimeout(r, (i / N) * STATUS_MS));
          while (reporting) {
            await report(hub.url, statusAgents[i]!, { bundleVersion: a.version, bundleHash: a.hash, byBundle: [{ version: a.version, allowed: 10, denied: 0, errors: 0 }], latencyMicros: { p99: 200, samples: 10 } });
            await new Promise((r) => setTimeout(r, STATUS_MS));
          }
        })(),
      );
    });
    await new Promise((r) => setTimeout(r, STATUS_MS + 500)); // every agent reported its first bundle

    const t0 = performance.now();
    const applied = await call<{ rollout: string }>(admin, "POST", "/v1/apply", {
      files: [{ ...layer("changes/global.yaml"), name: "global.yaml" }],
      rollout: { canary: { clusters: Array.from({ length: 10 }, (_, i) => `r-${i}`) }, waves: [1, 2, 3, 4].map((w) => ({ selector: { wave: String(w) } })), maxClusters: N, soakSeconds: SOAK, minRequests: 1000 },
    });
    const applyMs = performance.now() - t0;
    const id = applied.body.rollout;
    // One sample per judgement (each writes the row anew), of the waves' stages.
    const judgements = new Map<string, number>();
    let view: RolloutView;
    for (;;) {
      view = (await call<RolloutView>(admin, "GET", `/v1/rollouts/${id}`)).body;
      if (view.judgedInMs !== null && view.stage > 0 && view.state === "running") judgements.set(view.updatedAt, view.judgedInMs);
      if (view.state !== "running") break;
      if (performance.now() - t0 > 300_000) throw new Error("the rollout did not complete in 5 minutes");
      await new Promise((r) => setTimeout(r, 250));
    }
    const totalMs = performance.now() - t0;
    const judged = [...judgements.values()];
    const sizes = view.stages.map((s) => s.clusters.length);
    const updated = agents.filter((a) => a.version > 1).length;
    results.rolloutTotalSeconds = totalMs / 1000;
    results.rolloutSoakSeconds = SOAK * sizes.length;
    results.judgementMedianMs = median(judged);
    console.log(`\nStaged rollout (hub in its own process, embedded PGlite; ${N} lightweight agents in this process, enrolled in ${enrolSeconds.toFixed(0)} s, each reporting its bundle every ${STATUS_MS / 1000} s)`);
    console.log(`  a global change, canary ${sizes[0]} → four waves (${sizes.slice(1).join(", ")} clusters), soak ${SOAK} s per stage, gates judged every 1 s: ${view.state}, ${updated} of ${N} agents on the new bundle`);
    console.log(`  total ${(totalMs / 1000).toFixed(1)} s against ${results.rolloutSoakSeconds} s of soak (${(totalMs / 1000 / results.rolloutSoakSeconds).toFixed(2)}×); the apply itself ${fmt(applyMs)} ms`);
    console.log(`  hub cost of one judgement (reports read, gates evaluated, state written), waves of ~${sizes[1]} clusters: median ${judged.length === 0 ? "-" : median(judged).toFixed(1)} ms, p90 ${judged.length === 0 ? "-" : percentile([...judged].sort((a, b) => a - b), 90).toFixed(1)} ms (${judged.length} samples)`);
  } finally {
    reporting = false;
    for (const a of agents) a.stop();
    await Promise.allSettled(loops);
    closeConnections();
    await stopProcess(hub.process);
    rmSync(dataDir, { recursive: true, force: true });
  }
  return results;
}
