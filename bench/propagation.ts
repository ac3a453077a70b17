/**
 * A global change at scale, measured against real processes: one hub (embedded PGlite) or
 * several on one PostgreSQL (`POLITY_BENCH_HUBS=4`, `POLITY_BENCH_DATABASE_URL`), and N
 * lightweight agents in this process's worker threads (bench/fleet.ts; `POLITY_BENCH_AGENTS`, default 1,000), each with its
 * own key, certificate, mutual-TLS connection and long poll, checking the signature and the
 * hash of every bundle. Printed:
 * - enrolment, step by step: registering the clusters, minting their join tokens, making
 *   their keys and CSRs (this process's work, not the hub's), and enrolling them; the time
 *   per cluster, and where the hub's time went (src/hub/timings.ts);
 * - a change of the global layer: p50/p99/max from the commit's start to each agent holding
 *   the verified bundle, the apply call, when the hub woke the long polls, and where the
 *   hub's time went (plan, transaction: sign, store, audit; reload);
 * - the hubs' resident memory.
 * `POLITY_BENCH_PROFILE=<dir>` writes CPU profiles of the (first) hub for the enrolment and
 * the change.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import type { IssuedCertificate } from "../src/api/identity.js";
import { call, closeConnections, HubError, type HubEndpoint } from "../src/client/http.js";
import type { TimingsSnapshot } from "../src/hub/timings.js";
import { createCsr, type Credentials } from "../src/identity/enrollment.js";
import { parseClusterSpiffeId } from "../src/identity/spiffe.js";
import { Fleet } from "./fleet.js";
import { fmt, percentile } from "./fixtures.js";
import { startHubProcess, stopProcess, type HubProcess } from "./processes.js";

const EXAMPLES = fileURLToPath(new URL("../../examples/", import.meta.url));
export const files = (names: string[]) => names.map((n) => ({ name: n, content: readFileSync(join(EXAMPLES, "layers", n), "utf8") }));

export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? "0") / 1024;
}

/** CPU seconds a process has used, user and system (Linux /proc; ticks of 10 ms). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // After the command's name: state (field 3) first, so utime and stime (fields 14, 15) are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * The CPU the hub processes and this process (its agents' threads) use from now until the
 * function returned is called, and the wall time: on two cores, what the simulated fleet
 * takes from the hubs.
 */
export function cpuWindow(pids: readonly number[]): () => string {
  const total = () => pids.reduce((t, pid) => t + cpuSeconds(pid), 0);
  const hubs = total();
  const self = process.cpuUsage();
  const start = performance.now();
  return () => {
    const used = process.cpuUsage(self);
    const wall = (performance.now() - start) / 1000;
    return `CPU from before the apply to the last agent's bundle (${wall.toFixed(1)} s of wall time, ${(wall * cpus().length).toFixed(1)} core-seconds on ${cpus().length} cores): the hubs ${(total() - hubs).toFixed(1)} s, the simulated agents (this process) ${((used.user + used.system) / 1e6).toFixed(1)} s`;
  };
}

/** Runs `work(i)` for i in [0, n), `parallel` at a time; returns the seconds it took. */
export async function inParallel(n: number, parallel: number, work: (i: number) => Promise<void>, progress?: string): Promise<number> {
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) {
        const i = next++;
        await work(i);
        if (progress !== undefined && n > 2000 && (i + 1) % 2000 === 0) console.log(`    … ${progress}: ${i + 1} of ${n} (${((performance.now() - start) / 1000).toFixed(0)} s)`);
      }
    }),
  );
  return (performance.now() - start) / 1000;
}

/** The phases of a snapshot, largest first, as `name total ms (per item)`. */
export function where(snapshot: TimingsSnapshot, per: number, prefixes: readonly string[]): string {
  return Object.entries(snapshot.phases)
    .filter(([name]) => prefixes.some((p) => name.startsWith(p)))
    .sort((a, b) => b[1].ms - a[1].ms)
    .map(([name, t]) => `${name} ${fmt(t.ms)} ms${per > 1 ? ` (${((t.ms / per) * 1000).toFixed(0)} µs a cluster)` : t.count > 1 ? ` (${t.count} times)` : ""}`)
    .join(", ");
}

/** Clusters registered per change by registerFleet. */
export const FLEET_CHANGE = 2000;

/** Registers clusters 0…n-1 (`item(i)`) in changes of FLEET_CHANGE, one after another; returns the seconds it took. */
export async function registerFleet(admin: HubEndpoint, n: number, item: (i: number) => { name: string; region: string; labels: Record<string, string> }): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < n; i += FLEET_CHANGE) {
    const items = Array.from({ length: Math.min(FLEET_CHANGE, n - i) }, (_, k) => item(i + k));
    await again(() => call(admin, "POST", "/v1/cluster-registrations", { items }, { timeoutMs: 300_000 }));
    if (n > FLEET_CHANGE) console.log(`    … registered: ${i + items.length} of ${n} (${((performance.now() - start) / 1000).toFixed(0)} s)`);
  }
  return (performance.now() - start) / 1000;
}

/**
 * A change sent again while the hub answers 409 "send it again": on PostgreSQL, changes
 * through several hubs (and their level-triggered bundle refreshes) race for the generation.
 */
export async function again<T>(send: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (error) {
      if (!(error instanceof HubError && error.status === 409 && /send it again/.test(error.message)) || attempt >= 20) throw error;
      await new Promise((r) => setTimeout(r, 10 * attempt));
    }
  }
}

export const sum = (snapshots: readonly TimingsSnapshot[]): TimingsSnapshot => {
  const phases: Record<string, { ms: number; count: number }> = {};
  const moments: Record<string, number> = {};
  for (const s of snapshots) {
    for (const [name, t] of Object.entries(s.phases)) phases[name] = { ms: (phases[name]?.ms ?? 0) + t.ms, count: (phases[name]?.count ?? 0) + t.count };
    for (const [name, at] of Object.entries(s.moments)) moments[name] = Math.max(moments[name] ?? 0, at);
  }
  return { phases, moments };
};

export async function benchPropagation(): Promise<Record<string, number>> {
  const n = Number(process.env.POLITY_BENCH_AGENTS ?? "1000");
  const hubCount = Math.max(1, Number(process.env.POLITY_BENCH_HUBS ?? "1"));
  const databaseUrl = process.env.POLITY_BENCH_DATABASE_URL ?? (hubCount > 1 ? "postgres://postgres@127.0.0.1:5432/test" : undefined);
  const profileDir = process.env.POLITY_BENCH_PROFILE;
  const root = mkdtempSync(join(tmpdir(), "polity-bench-propagation-"));
  const schema = `bench_${process.pid}`;
  const hubs: HubProcess[] = [];
  const results: Record<string, number> = {};
  let fleet: Fleet | undefined;
  try {
    for (let h = 0; h < hubCount; h++) hubs.push(await startHubProcess(join(root, `hub-${h}`), databaseUrl === undefined ? {} : { databaseUrl, schema }));
    const first = hubs[0]!;
    const admin: HubEndpoint = { url: first.url, caPem: first.caPem, token: first.adminToken };
    const all = () => Promise.all(hubs.map((h) => h.timings())).then(sum);
    const where_ = databaseUrl === undefined ? "embedded PGlite" : `${hubCount} hub process(es) on one PostgreSQL`;
    console.log(`\nPropagation at scale: ${n} agents (${where_}; agents in this process's ${process.env.POLITY_BENCH_AGENT_THREADS ?? 2} worker threads, one mutual-TLS connection and long poll each, spread over the hubs)`);
    await again(() => call(admin, "POST", "/v1/apply", { files: files(["global.yaml", "region-eu-west.yaml", "region-us-east.yaml"]) }));
    const regions = ["eu-west", "us-east"];
    await all();

    // Enrolment, step by step.
    const profile = (name: string) => profileDir !== undefined && first.tell(`profile ${join(profileDir, `${name}.cpuprofile`)}`);
    const profileStop = () => profileDir !== undefined && first.tell("profile-stop");
    profile("register");
    const register = await registerFleet(admin, n, (i) => ({ name: `p-${i}`, region: regions[i % 2]!, labels: { env: ["prod", "staging"][i % 2]! } }));
    profileStop();
    const registerHub = await all();
    profile("mint");
    const tokens: string[] = [];
    const minting = await inParallel(n, 16, async (i) => {
      tokens[i] = (await call<{ token: string }>(admin, "POST", `/v1/clusters/p-${i}/join-tokens`, {})).body.token;
    });
    profileStop();
    await all();
    const keys: string[] = [];
    const csrs: string[] = [];
    const making = await inParallel(n, 4, async (i) => {
      keys[i] = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }) as string;
      csrs[i] = await createCsr(`p-${i}`, keys[i]!);
    }, "keys and CSRs made");
    profile("enrol");
    const creds: Credentials[] = [];
    const enrolment = await inParallel(n, 16, async (i) => {
      const hub = hubs[i % hubCount]!;
      const issued = (await call<IssuedCertificate>({ url: hub.url, caPem: hub.caPem }, "POST", "/v1/enroll", { joinToken: tokens[i], csr: csrs[i] })).body;
      creds[i] = { cluster: `p-${i}`, privateKeyPem: keys[i]!, certificatePem: issued.certificate, caPem: issued.ca, spiffeId: issued.spiffeId, serial: issued.serial, notAfter: issued.notAfter, renewAfter: issued.renewAfter, bundleKeyPem: issued.bundleKey.publicKeyPem };
    }, "enrolled");
    profileStop();
    const enrolHub = await all();
    results.registerMsEach = (register / n) * 1000;
    results.enrolSeconds = enrolment;
    results.enrolMsEach = (enrolment / n) * 1000;
    console.log(`  register ${n} clusters, in changes of up to ${FLEET_CHANGE} (POST /v1/cluster-registrations): ${register.toFixed(1)} s (${results.registerMsEach.toFixed(2)} ms a cluster); hub: ${where(registerHub, n, ["change.", "bundles.", "audit."])}`);
    console.log(`  mint ${n} join tokens: ${minting.toFixed(1)} s; make ${n} keys and CSRs (this process): ${making.toFixed(1)} s`);
    console.log(`  enrol ${n} clusters (join token + CSR → certificate), 16 in flight: ${enrolment.toFixed(1)} s (${results.enrolMsEach.toFixed(2)} ms each, ${(n / enrolment).toFixed(0)} per second); hub (wall time of each step, summed over the 16 in flight): ${where(enrolHub, n, ["enrol.", "audit."])}`);

    // Every agent long-polling, each through its hub.
    fleet = await Fleet.open(creds.map((c, i) => ({ url: hubs[i % hubCount]!.url, creds: c, bundleKeyPem: c.bundleKeyPem, federation: "polity", region: parseClusterSpiffeId(c.spiffeId)?.region ?? "" })));
    const initialSeconds = await fleet.start();
    await all();

    profile("change");
    const change = globalChange();
    const cpu = cpuWindow(hubs.map((h) => h.process.pid!));
    const { t0, applyMs, times, allVerifiedMs, refused } = await fleet.change(() => again(() => call(admin, "POST", "/v1/apply", { files: [{ name: "global.yaml", content: change }] })));
    const used = cpu();
    profileStop();
    // The change's audit entries (served once under a signed head, within a second or two).
    await new Promise((r) => setTimeout(r, 2500));
    const { items } = (await call<{ items: { entry: { data: { bundles: number; targets: number } } }[] }>(admin, "GET", `/v1/audit/entries?kind=bundles.published&limit=1000&start=0&since=${new Date(t0 - 1000).toISOString()}`)).body;
    const bundles = items.reduce((total, i) => total + i.entry.data.bundles, 0);
    const targets = items.reduce((total, i) => total + i.entry.data.targets, 0);
    const changeHub = await all();
    const rss = hubs.reduce((total, h) => total + rssMiB(h.process.pid!), 0);
    const woken = changeHub.moments["bundles.woken"];
    const answered = changeHub.moments["bundles.answered"];
    results[`propagationP50_${n}`] = percentile(times, 50);
    results[`propagationP99_${n}`] = percentile(times, 99);
    results.hubRssMiB = rss;
    console.log(`  first bundles to all ${n} agents (each a new mutual-TLS connection, started 1,000 at a time): ${initialSeconds.toFixed(1)} s`);
    console.log(`  the change published ${bundles} bundles over ${targets} distinct target(s), recorded in ${items.length} audit entries (one per region)`);
    console.log(
      `  a global layer change reached ${times.length} of ${n} (each agent: its bundle's arrival plus its own verification, timed alone): p50 ${fmt(percentile(times, 50))} ms, p99 ${fmt(percentile(times, 99))} ms, max ${fmt(times[times.length - 1] ?? Number.NaN)} ms (the apply call ${fmt(applyMs)} ms); hub RSS ${rss.toFixed(0)} MiB${hubCount > 1 ? ` (${hubCount} hubs)` : ""}   (target: p99 ≤ 5 s at 10,000, < 2 s at 1,000)`,
    );
    console.log(
      `  where the time went: long polls woken ${woken === undefined ? "?" : fmt(woken - t0)} ms after the apply was sent, the last of them answered by the hub at ${answered === undefined ? "?" : fmt(answered - t0)} ms, the last bundle verified ${fmt((times[times.length - 1] ?? 0) - (woken === undefined ? 0 : woken - t0))} ms after that; hub: ${where(changeHub, 1, ["change.", "bundles.", "audit.", "standing."])}`,
    );
    console.log(
      `  this process had verified all ${n} bundles, one after another on each of its ${fleet.threadCount} threads, ${fmt(allVerifiedMs)} ms after the apply was sent; refused: ${refused}`,
    );
    console.log(`  ${used}`);
  } finally {
    await fleet?.close();
    closeConnections();
    for (const h of hubs) await stopProcess(h.process);
    rmSync(root, { recursive: true, force: true });
    if (databaseUrl !== undefined) {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    }
  }
  return results;
}

/** The change the propagation benchmarks make: a new version of the global layer. */
export const globalChange = (): string => readFileSync(join(EXAMPLES, "changes", "global.yaml"), "utf8");
