/**
 * The propagation benchmarks' fleet: lightweight agents (bench/agent.ts) spread over worker
 * threads (`POLITY_BENCH_AGENT_THREADS`, default 2: this machine's cores), so that reading
 * ten thousand answers, decompressing and verifying them is not one thread's queue. A real
 * fleet reads and verifies on ten thousand machines at once; one thread made the last agent
 * wait for every other agent's work, which measured the benchmark, not the hub. The threads
 * still share the machine's cores with the hubs, so the figures stay pessimistic.
 *
 * Times cross threads as Date.now() (one clock for every thread of the process).
 */
import { Worker } from "node:worker_threads";
import type { Credentials } from "../src/identity/enrollment.js";

/** One agent of the fleet: the hub it long-polls, its credentials, and what its bundles must name. */
export interface FleetMember {
  readonly url: string;
  readonly creds: Credentials;
  readonly bundleKeyPem: string;
  readonly federation: string;
  readonly region: string;
}

/** What a worker is asked (bench/fleet-worker.ts answers each with the same id). */
export type FleetRequest =
  | { readonly id: number; readonly op: "add"; readonly members: readonly FleetMember[] }
  /** Starts the long polls of its agents from..to (its own numbering) and answers when each holds a bundle. */
  | { readonly id: number; readonly op: "start"; readonly from: number; readonly to: number }
  /** Notes the version each agent holds; from then on, the time each one holds a newer one. */
  | { readonly id: number; readonly op: "arm" }
  /** Answers when every agent holds a newer version than when armed, or after `ms`: the times (NaN: none), and the bundles refused. */
  | { readonly id: number; readonly op: "arrivals"; readonly ms: number }
  | { readonly id: number; readonly op: "stop" };

export interface FleetAnswer {
  readonly id: number;
  readonly arrived?: number[];
  /** When the worker's last queued verification finished (Date.now()). */
  readonly lastDone?: number;
  readonly refused?: number;
}

const WAVE = 1000;

class Thread {
  private next = 1;
  private readonly pending = new Map<number, (answer: FleetAnswer) => void>();
  readonly members: number[] = [];

  constructor(readonly worker: Worker) {
    worker.on("message", (answer: FleetAnswer) => {
      this.pending.get(answer.id)?.(answer);
      this.pending.delete(answer.id);
    });
    worker.on("error", (error) => {
      console.error(`a fleet thread failed: ${error.message}`);
      for (const answer of this.pending.values()) answer({ id: 0 });
      this.pending.clear();
    });
  }

  ask(request: FleetRequest extends infer R ? (R extends unknown ? Omit<R, "id"> : never) : never): Promise<FleetAnswer> {
    const id = this.next++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.worker.postMessage({ ...request, id });
    });
  }
}

export class Fleet {
  private constructor(
    private readonly threads: readonly Thread[],
    private readonly size: number,
  ) {}

  get threadCount(): number {
    return this.threads.length;
  }

  /** The fleet's agents (member i on thread i mod threads), not yet polling. */
  static async open(members: readonly FleetMember[], threadCount = Math.max(1, Number(process.env.POLITY_BENCH_AGENT_THREADS ?? "2"))): Promise<Fleet> {
    const threads = Array.from({ length: threadCount }, () => new Thread(new Worker(new URL("./fleet-worker.js", import.meta.url))));
    members.forEach((_, i) => threads[i % threadCount]!.members.push(i));
    await Promise.all(threads.map((t) => t.ask({ op: "add", members: t.members.map((i) => members[i]!) })));
    return new Fleet(threads, members.length);
  }

  /**
   * Starts every agent's long poll, in waves of 1,000 (ten thousand handshakes at once
   * overflow a hub's accept backlog), waits for each to hold its first bundle, then for the
   * long polls to be parked; the seconds the first bundles took.
   */
  async start(): Promise<number> {
    const begin = performance.now();
    const per = Math.ceil(WAVE / this.threads.length);
    const longest = Math.max(...this.threads.map((t) => t.members.length));
    for (let from = 0; from < longest; from += per) await Promise.all(this.threads.map((t) => t.ask({ op: "start", from, to: Math.min(from + per, t.members.length) })));
    const seconds = (performance.now() - begin) / 1000;
    await new Promise((r) => setTimeout(r, Math.max(1000, this.size / 5)));
    return seconds;
  }

  /**
   * Makes a change (`apply`) and waits (at most 3 minutes) for every agent to hold a newer
   * verified bundle than it held: when each did (by fleet index; NaN: not), and the times
   * from the change being sent, sorted.
   */
  async change(apply: () => Promise<unknown>): Promise<{ t0: number; applyMs: number; arrived: number[]; times: number[]; allVerifiedMs: number; refused: number }> {
    await Promise.all(this.threads.map((t) => t.ask({ op: "arm" })));
    const t0 = Date.now();
    await apply();
    const applyMs = Date.now() - t0;
    const answers = await Promise.all(this.threads.map((t) => t.ask({ op: "arrivals", ms: 180_000 - (Date.now() - t0) })));
    const arrived = new Array<number>(this.size).fill(Number.NaN);
    this.threads.forEach((t, k) => t.members.forEach((i, j) => (arrived[i] = answers[k]!.arrived?.[j] ?? Number.NaN)));
    const allVerifiedMs = Math.max(...answers.map((a) => a.lastDone ?? 0)) - t0;
    const times = arrived.map((t) => t - t0).filter((t) => !Number.isNaN(t)).sort((a, b) => a - b);
    const refused = answers.reduce((total, a) => total + (a.refused ?? 0), 0);
    return { t0, applyMs, arrived, times, allVerifiedMs, refused };
  }

  /** Stops every agent and thread. */
  async close(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.ask({ op: "stop" })));
    await Promise.all(this.threads.map((t) => t.worker.terminate()));
  }
}
