/**
 * Agents, measured against real processes (propagation to many agents is bench/propagation.ts,
 * which uses the lightweight agent defined here):
 * - the webhook: AdmissionReviews per second and latency at 64 concurrent requests over
 *   HTTPS keep-alive, from this process to a `polity agent` process (a closed loop), then
 *   latency at a fixed 2,000 reviews per second sent on a schedule (an open loop);
 * - an agent's boot with the hub down: from start to the first decision served from disk.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Agent, request } from "node:https";
import { tmpdir } from "node:os";
import { gunzipSync } from "node:zlib";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { decodeBundle, MAX_BUNDLE_BYTES, verifyBundle, type Trust } from "../src/bundle/index.js";
import { call, closeConnections, type HubEndpoint } from "../src/client/http.js";
import type { Credentials } from "../src/identity/enrollment.js";
import { fmt, median, percentile } from "./fixtures.js";
import { startHubProcess, stopProcess } from "./processes.js";

const BIN = fileURLToPath(new URL("../../bin/polity.js", import.meta.url));
const EXAMPLES = fileURLToPath(new URL("../../examples/", import.meta.url));

interface Hub {
  readonly process: ChildProcess;
  readonly url: string;
  readonly caPem: string;
  readonly admin: HubEndpoint;
}

async function startHub(dataDir: string, token?: string): Promise<Hub> {
  const info = await startHubProcess(dataDir);
  return { process: info.process, url: info.url, caPem: info.caPem, admin: { url: info.url, caPem: info.caPem, token: token ?? info.adminToken } };
}


const files = (names: string[]) => names.map((n) => ({ name: n, content: readFileSync(join(EXAMPLES, "layers", n), "utf8") }));

/**
 * Verifications that many agents in one thread leave for later: each agent's bundle is
 * decompressed, decoded, its signature and hash checked, and the time that took measured
 * for it alone, two per turn of the event loop, so that reading the sockets waits behind no
 * more than two of them. On a
 * fleet every agent verifies on its own machine at once; in one thread they would queue
 * behind each other and the last agent's time would be the sum of them all (10,000 × about
 * 0.5 ms on one core here), which says nothing of the hub.
 */
export class Verifications {
  private readonly queue: { agent: LightAgent; body: Buffer; gzip: boolean; arrived: number }[] = [];
  private scheduled = false;
  /** When the last queued verification finished (Date.now()). */
  lastDone = 0;

  add(agent: LightAgent, body: Buffer, gzip: boolean, arrived: number): void {
    this.queue.push({ agent, body, gzip, arrived });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.run());
    }
  }

  private run(): void {
    // Two a turn: the sockets are read between them (a turn with nothing to read passes at once).
    for (const item of this.queue.splice(0, 2)) {
      const start = performance.now();
      const ok = item.agent.verify(item.body, item.gzip);
      if (ok !== undefined) item.agent.onBundle?.(ok.version, item.arrived + (performance.now() - start));
    }
    this.lastDone = Date.now();
    if (this.queue.length > 0) setImmediate(() => this.run());
    else this.scheduled = false;
  }
}

/** A lightweight agent: its credentials, a keep-alive connection, a long-poll loop that verifies every bundle. */
export class LightAgent {
  version = 0;
  /** The policy-set hash of the bundle held (a rollout's acknowledgement names it). */
  hash = "";
  /** The version verified last: the long poll asks for newer than the version received, verified or not yet. */
  private verified = 0;
  private readonly agent: Agent;
  private stopped = false;
  /** Called with the version verified, and when the agent held it (Date.now() scale; see Verifications). */
  onBundle: ((version: number, at: number) => void) | undefined;
  /** Bundles that failed verification (none, unless something is wrong). */
  refused = 0;

  constructor(
    private readonly url: string,
    private readonly creds: Credentials,
    private readonly trust: Trust,
    /** Verified later, each timed alone (see Verifications); verified at once when absent. */
    private readonly verifications?: Verifications,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: 1, ca: creds.caPem, cert: creds.certificatePem, key: creds.privateKeyPem });
  }

  private poll(): Promise<{ status: number; body: Buffer; gzip: boolean; etag: number }> {
    return new Promise((resolve, reject) => {
      const req = request(
        new URL("/v1/agent/bundle?wait=60", this.url),
        { agent: this.agent, headers: { "accept-encoding": "gzip", ...(this.version === 0 ? {} : { "if-none-match": `"${this.version}"` }) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          // Decompressed with the verification (verify), as the agent's own work.
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), gzip: res.headers["content-encoding"] === "gzip", etag: Number(/^(?:W\/)?"(\d+)"$/.exec(String(res.headers.etag))?.[1] ?? 0) }),
          );
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end();
    });
  }

  /**
   * Decompresses (as the agent's client does, src/client/http.ts: within the bundle limit),
   * decodes and verifies a bundle against the one verified before; the metadata, or
   * undefined (counted in `refused`).
   */
  verify(received: Buffer, gzip: boolean): { version: number } | undefined {
    try {
      const body = gzip ? gunzipSync(received, { maxOutputLength: MAX_BUNDLE_BYTES }) : received;
      const metadata = verifyBundle(decodeBundle(body), this.trust, this.verified === 0 ? undefined : { version: this.verified, targetHash: "" }, new Date());
      this.verified = metadata.version;
      this.hash = metadata.targetHash;
      return metadata;
    } catch {
      this.refused++;
      return undefined;
    }
  }

  async run(): Promise<void> {
    while (!this.stopped) {
      try {
        const { status, body, gzip, etag } = await this.poll();
        if (status !== 200) continue;
        if (this.verifications === undefined) {
          const metadata = this.verify(body, gzip);
          if (metadata === undefined) throw new Error("refused");
          this.version = metadata.version;
          this.onBundle?.(metadata.version, Date.now());
        } else {
          // Polls again at once (for newer than the version in the ETag), as an agent does
          // after its check; the check is timed apart.
          const arrived = Date.now();
          this.version = etag;
          this.verifications.add(this, body, gzip, arrived);
        }
      } catch {
        if (!this.stopped) await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.agent.destroy();
  }
}

interface AgentProcess {
  readonly process: ChildProcess;
  readonly url: string;
  readonly caPem: string;
}

async function spawnAgent(args: string[], dataDir: string): Promise<AgentProcess> {
  const child = spawn(process.execPath, [BIN, "agent", ...args, "--data", dataDir, "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "ignore"] });
  const url = await new Promise<string>((resolve, reject) => {
    let buffer = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      const m = /webhook (https:\/\/\S+)/.exec(buffer);
      if (m !== null) resolve(m[1]!);
    });
    child.on("exit", (code) => reject(new Error(`the agent exited with ${code}`)));
  });
  return { process: child, url, caPem: readFileSync(join(dataDir, "webhook", "ca.pem"), "utf8") };
}

function post(agent: Agent, url: string, body: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "POST", agent, headers: { "content-type": "application/json", "content-length": body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** The load generator: `concurrency` keep-alive connections, each sending review after review. */
async function load(url: string, caPem: string, body: Buffer, concurrency: number, seconds: number): Promise<{ perSecond: number; p50: number; p99: number; errors: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency, ca: caPem });
  const latencies: number[] = [];
  let errors = 0;
  const until = (ms: number) => performance.now() + ms;
  const run = async (end: number, record: boolean) =>
    Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < end) {
          const start = performance.now();
          try {
            const r = await post(agent, url, body);
            if (r.status !== 200) errors++;
          } catch {
            errors++;
          }
          if (record) latencies.push((performance.now() - start) * 1000);
        }
      }),
    );
  await run(until(2000), false);
  const start = performance.now();
  await run(until(seconds * 1000), true);
  const elapsed = (performance.now() - start) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return { perSecond: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99), errors };
}

/**
 * The open-loop load generator: reviews sent on a fixed schedule, `rate` per second, whether
 * or not the answers keep up. A closed loop waits for each answer before the next request,
 * so a slow answer also delays the requests that would have met it (coordinated omission);
 * here each request's latency is measured from the time it was due to be sent, so time
 * spent waiting to be sent counts too. The first second warms the connections and is not
 * recorded.
 */
async function openLoad(url: string, caPem: string, body: Buffer, rate: number, seconds: number): Promise<{ sent: number; answered: number; p50: number; p99: number; max: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 64, ca: caPem });
  const warmup = rate;
  const total = warmup + rate * seconds;
  const interval = 1000 / rate;
  const latencies: number[] = [];
  let answered = 0;
  const inFlight: Promise<void>[] = [];
  const start = performance.now();
  await new Promise<void>((done) => {
    let sent = 0;
    // Timers fire at best every millisecond: each tick sends every request whose time has come.
    const tick = () => {
      const now = performance.now();
      for (; sent < total && start + sent * interval <= now; sent++) {
        const due = start + sent * interval;
        const recorded = sent >= warmup;
        inFlight.push(
          post(agent, url, body).then(
            (r) => {
              if (!recorded || r.status !== 200) return;
              answered++;
              latencies.push(performance.now() - due);
            },
            () => undefined,
          ),
        );
      }
      if (sent < total) setTimeout(tick, 1);
      else done();
    };
    tick();
  });
  // An answer still missing 30 s after the last send counts as not answered.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(inFlight), new Promise((r) => (timer = setTimeout(r, 30_000)))]);
  clearTimeout(timer);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return { sent: total - warmup, answered, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies[latencies.length - 1] ?? Number.NaN };
}

export async function benchAgents(): Promise<Record<string, number>> {
  const root = mkdtempSync(join(tmpdir(), "polity-bench-agents-"));
  const results: Record<string, number> = {};
  try {
    // A real agent process and its webhook.
    const hub = await startHub(join(root, "hub-webhook"));
    const agentDir = join(root, "agent");
    let agent: AgentProcess | undefined;
    try {
      await call(hub.admin, "POST", "/v1/apply", { files: files(["global.yaml", "region-eu-west.yaml", "cluster-eu-west-1.yaml"]) });
      await call(hub.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod", residency: "eu" } });
      const { token } = (await call<{ token: string }>(hub.admin, "POST", "/v1/clusters/eu-west-1/join-tokens", {})).body;
      const caFile = join(root, "ca.pem");
      (await import("node:fs")).writeFileSync(caFile, hub.caPem);
      agent = await spawnAgent(["--hub", hub.url, "--cluster", "eu-west-1", "--ca", caFile, "--join-token", token], agentDir);
      const review = readFileSync(join(EXAMPLES, "reviews", "compliant-pod.json"));
      const probe = new Agent({ keepAlive: false, ca: agent.caPem });
      for (let i = 0; i < 200; i++) {
        const r = await post(probe, agent.url, review).catch(() => ({ status: 0, text: "" }));
        if (r.status === 200 && r.text.includes('"allowed":true')) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      const w = await load(agent.url, agent.caPem, review, 64, 10);
      results.webhookPerSecond = w.perSecond;
      results.webhookP50Ms = w.p50 / 1000;
      results.webhookP99Ms = w.p99 / 1000;
      console.log(`\nWebhook (a polity agent process; 64 concurrent requests over HTTPS keep-alive from this process; a 1.9 KB AdmissionReview, builtin restricted and 6 more policies)`);
      console.log(`  ${w.perSecond.toFixed(0)} AdmissionReviews per second, p50 ${fmt(w.p50 / 1000)} ms, p99 ${fmt(w.p99 / 1000)} ms, ${w.errors} errors   (target: ≥ 5,000/s, p99 < 10 ms)`);
      const o = await openLoad(agent.url, agent.caPem, review, 2000, 5);
      results.webhookOpenP50Ms = o.p50;
      results.webhookOpenP99Ms = o.p99;
      results.webhookOpenMaxMs = o.max;
      console.log(`  open loop, 2,000 reviews per second on a schedule for 5 s, latency from each one's scheduled send: ${o.answered} of ${o.sent} answered, p50 ${fmt(o.p50)} ms, p99 ${fmt(o.p99)} ms, max ${fmt(o.max)} ms`);
      await stopProcess(agent.process);
      agent = undefined;

      // Boot with the hub down: from spawn to the first decision served from the bundle on disk.
      await stopProcess(hub.process, "SIGKILL");
      const boots: number[] = [];
      for (let run = 0; run < 5; run++) {
        const start = performance.now();
        const child = spawn(process.execPath, [BIN, "agent", "--hub", hub.url, "--cluster", "eu-west-1", "--data", agentDir, "--listen", "127.0.0.1:9399"], { stdio: "ignore" });
        const quick = new Agent({ keepAlive: false, ca: readFileSync(join(agentDir, "webhook", "ca.pem"), "utf8") });
        for (;;) {
          const r = await post(quick, "https://127.0.0.1:9399/validate", review).catch(() => undefined);
          if (r !== undefined && r.status === 200 && r.text.includes('"allowed":true')) break;
          await new Promise((res) => setTimeout(res, 5));
        }
        boots.push(performance.now() - start);
        await stopProcess(child);
      }
      results.bootMs = median(boots);
      console.log(`\nAgent boot with the hub down, from process start to the first decision from the bundle on disk: median ${fmt(results.bootMs)} ms over 5 starts (each: ${boots.map((b) => fmt(b)).join(", ")} ms)   (target: < 1 s)`);
    } finally {
      if (agent !== undefined) await stopProcess(agent.process);
      await stopProcess(hub.process);
      closeConnections();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return results;
}
