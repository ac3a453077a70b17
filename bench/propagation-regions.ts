/**
 * A global change under regional hubs, measured against real processes: one global hub and
 * four regional hubs (each `polity hub --region R --parent <global> --region-token …`, its
 * own process and its own PGlite data folder), and N lightweight agents in this process
 * (`POLITY_BENCH_AGENTS`, default 1,000; in worker threads, bench/fleet.ts), spread evenly over the four regions, each enrolled
 * with its region's hub and long-polling it over mutual TLS, checking the signature and the
 * hash of every bundle (signed by its regional hub's delegated key). Printed:
 * - bringing the fleet up: the regional hubs' enrolment, registering the clusters on the
 *   global hub (the registry is the global hub's), until every regional hub has mirrored
 *   its clusters, join tokens minted on the regional hubs, enrolment with them;
 * - a change of the global layer made on the global hub: p50/p99/max from the apply being
 *   sent to each agent holding its verified new bundle; for each regional hub, when the
 *   change reached it (its mirror link pulled the new global layer) and when it woke its
 *   long polls (after applying it: plan, sign, store in its own transaction);
 * - the hubs' resident memory.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { IssuedCertificate } from "../src/api/identity.js";
import { call, closeConnections, type HubEndpoint } from "../src/client/http.js";
import { createCsr, type Credentials } from "../src/identity/enrollment.js";
import { Fleet } from "./fleet.js";
import { fmt, percentile } from "./fixtures.js";
import { startHubProcess, stopProcess, type HubProcess } from "./processes.js";
import { cpuWindow, files, FLEET_CHANGE, globalChange, registerFleet, inParallel, rssMiB, where } from "./propagation.js";

const REGIONS = ["eu-west", "us-east", "ap-south", "eu-north"] as const;

interface Region {
  readonly name: string;
  readonly hub: HubProcess;
  readonly admin: HubEndpoint;
  /** The clusters of this region, by index into the fleet. */
  readonly members: number[];
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function benchPropagationRegions(): Promise<Record<string, number>> {
  const n = Number(process.env.POLITY_BENCH_AGENTS ?? "1000");
  const root = mkdtempSync(join(tmpdir(), "polity-bench-regions-"));
  const results: Record<string, number> = {};
  let fleet: Fleet | undefined;
  const processes: HubProcess[] = [];
  try {
    const global = await startHubProcess(join(root, "global"));
    processes.push(global);
    const admin: HubEndpoint = { url: global.url, caPem: global.caPem, token: global.adminToken };
    console.log(`\nPropagation under regional hubs: ${n} agents, one global hub and ${REGIONS.length} regional hubs (each its own process and PGlite; agents in this process's worker threads, each enrolled with its region's hub)`);
    await call(admin, "POST", "/v1/apply", { files: files(["global.yaml", "region-eu-west.yaml", "region-us-east.yaml"]) });

    // The regional hubs, each enrolled with the global hub by a region token.
    const hubsStart = performance.now();
    const regions: Region[] = await Promise.all(
      REGIONS.map(async (name) => {
        const { token } = (await call<{ token: string }>(admin, "POST", `/v1/regions/${name}/tokens`, { allowLoopback: true })).body;
        const hub = await startHubProcess(join(root, name), { regional: { region: name, parentUrl: global.url, parentCaPem: global.caPem, token } });
        processes.push(hub);
        return { name, hub, admin: { url: hub.url, caPem: hub.caPem, token: hub.adminToken }, members: [] };
      }),
    );
    const hubsSeconds = (performance.now() - hubsStart) / 1000;
    const regionOf = (i: number) => regions[i % regions.length]!;
    for (let i = 0; i < n; i++) regionOf(i).members.push(i);

    // Registered on the global hub, mirrored by each regional hub.
    const register = await registerFleet(admin, n, (i) => ({ name: `p-${i}`, region: regionOf(i).name, labels: { env: ["prod", "staging"][Math.floor(i / regions.length) % 2]! } }));
    const mirrorStart = performance.now();
    await Promise.all(
      regions.map((r) =>
        until(`region ${r.name}'s hub holds its ${r.members.length} clusters`, async () => (await call<{ items: unknown[] }>(r.admin, "GET", "/v1/clusters")).body.items.length >= r.members.length, 600_000),
      ),
    );
    const mirrored = (performance.now() - mirrorStart) / 1000;
    const tokens: string[] = [];
    const minting = await inParallel(n, 16, async (i) => {
      tokens[i] = (await call<{ token: string }>(regionOf(i).admin, "POST", `/v1/clusters/p-${i}/join-tokens`, {})).body.token;
    });
    const keys: string[] = [];
    const csrs: string[] = [];
    await inParallel(n, 4, async (i) => {
      keys[i] = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }) as string;
      csrs[i] = await createCsr(`p-${i}`, keys[i]!);
    }, "keys and CSRs made");
    const creds: Credentials[] = [];
    const enrolment = await inParallel(n, 16, async (i) => {
      const region = regionOf(i);
      const issued = (await call<IssuedCertificate>({ url: region.hub.url, caPem: region.hub.caPem }, "POST", "/v1/enroll", { joinToken: tokens[i], csr: csrs[i] })).body;
      creds[i] = { cluster: `p-${i}`, privateKeyPem: keys[i]!, certificatePem: issued.certificate, caPem: issued.ca, spiffeId: issued.spiffeId, serial: issued.serial, notAfter: issued.notAfter, renewAfter: issued.renewAfter, bundleKeyPem: issued.bundleKey.publicKeyPem };
    }, "enrolled");
    results.regionsEnrolSeconds = enrolment;
    console.log(`  ${regions.length} regional hubs started and enrolled with the global hub: ${hubsSeconds.toFixed(1)} s`);
    console.log(`  register ${n} clusters on the global hub, in changes of up to ${FLEET_CHANGE}: ${register.toFixed(1)} s (${((register / n) * 1000).toFixed(2)} ms a cluster); every regional hub holding its clusters (mirrored) ${mirrored.toFixed(1)} s after`);
    console.log(`  mint ${n} join tokens on the regional hubs: ${minting.toFixed(1)} s; enrol ${n} clusters with their regional hubs, 16 in flight: ${enrolment.toFixed(1)} s (${(n / enrolment).toFixed(0)} per second)`);

    // Every agent long-polling its regional hub.
    fleet = await Fleet.open(creds.map((c, i) => ({ url: regionOf(i).hub.url, creds: c, bundleKeyPem: c.bundleKeyPem, federation: "polity", region: regionOf(i).name })));
    const initialSeconds = await fleet.start();
    await Promise.all(processes.map((p) => p.timings()));

    const change = globalChange();
    const cpu = cpuWindow(processes.map((p) => p.process.pid!));
    const { t0, applyMs, arrived, times, allVerifiedMs, refused } = await fleet.change(() => call(admin, "POST", "/v1/apply", { files: [{ name: "global.yaml", content: change }] }));
    const used = cpu();
    const snapshots = await Promise.all(regions.map((r) => r.hub.timings()));
    const globalSnapshot = await global.timings();

    results[`regionsP50_${n}`] = percentile(times, 50);
    results[`regionsP99_${n}`] = percentile(times, 99);
    console.log(`  first bundles to all ${n} agents (each a new mutual-TLS connection to its regional hub): ${initialSeconds.toFixed(1)} s`);
    console.log(
      `  a global layer change on the global hub reached ${times.length} of ${n} agents (each: its bundle's arrival plus its own verification, timed alone): p50 ${fmt(percentile(times, 50))} ms, p99 ${fmt(percentile(times, 99))} ms, max ${fmt(times[times.length - 1] ?? Number.NaN)} ms (the apply call ${fmt(applyMs)} ms; this process's ${fleet.threadCount} threads had verified all of them ${fmt(allVerifiedMs)} ms after the apply was sent, refused ${refused})   (target: p99 ≤ 3 s at 10,000)`,
    );
    console.log(`  the global hub's part: ${where(globalSnapshot, 1, ["change.", "bundles.", "audit.", "region."])}`);
    regions.forEach((r, k) => {
      const snapshot = snapshots[k]!;
      const woken = snapshot.moments["bundles.woken"];
      const pulled = snapshot.moments["region.pulled"];
      // Its link pulled the new global layer (region.pulled), then applied it and woke its long polls.
      const last = Math.max(...r.members.map((i) => arrived[i]! - t0));
      if (process.env.POLITY_BENCH_DEBUG !== undefined) console.log(JSON.stringify(snapshot), r.members.map((i) => arrived[i]! - t0).sort((a, b) => a - b).join(" "));
      if (pulled !== undefined) results[`regionPulled_${r.name}`] = pulled - t0;
      console.log(
        `  ${r.name} (${r.members.length} agents): the new global layer pulled by its link at ${pulled === undefined ? "?" : fmt(pulled - t0)} ms, applied and its long polls woken at ${woken === undefined ? "?" : fmt(woken - t0)} ms, its last agent verified at ${fmt(last)} ms; its hub: ${where(snapshot, 1, ["change.", "bundles.", "region."])}; RSS ${rssMiB(r.hub.process.pid!).toFixed(0)} MiB`,
      );
    });
    console.log(`  global hub RSS ${rssMiB(global.process.pid!).toFixed(0)} MiB`);
    console.log(`  ${used}`);
  } finally {
    await fleet?.close();
    closeConnections();
    for (const p of processes.reverse()) await stopProcess(p.process);
    rmSync(root, { recursive: true, force: true });
  }
  return results;
}
