/**
 * Processes the benchmarks drive: a hub in a process of its own (bench/hub-process.ts), so
 * that the load generated here does not share its event loop.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { RegionalOptions } from "../src/hub/regional/open.js";
import type { TimingsSnapshot } from "../src/hub/timings.js";

export interface HubProcess {
  readonly process: ChildProcess;
  readonly url: string;
  readonly caPem: string;
  readonly adminToken: string;
  /** Sends a command line (see hub-process.ts). */
  tell(line: string): void;
  /** What the hub's work cost since the last call, phase by phase (src/hub/timings.ts). */
  timings(): Promise<TimingsSnapshot>;
}

export interface HubProcessOptions {
  /** A PostgreSQL URL and schema shared by several hub processes (default: embedded PGlite in dataDir). */
  readonly databaseUrl?: string;
  readonly schema?: string;
  /** Run as a region's hub under a parent (its enrolment's region token, the parent's URL and CA). */
  readonly regional?: RegionalOptions;
}

/** Starts a hub on `dataDir` and waits for the line in which it says where it listens. */
export async function startHubProcess(dataDir: string, options: HubProcessOptions = {}): Promise<HubProcess> {
  // POLITY_BENCH_HUB_NODE_ARGS: flags for the hub's node.
  const nodeArgs = (process.env.POLITY_BENCH_HUB_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
  const args = [...nodeArgs, fileURLToPath(new URL("./hub-process.js", import.meta.url)), dataDir];
  if (options.databaseUrl !== undefined) args.push(options.databaseUrl, options.schema ?? "public");
  const env = options.regional === undefined ? process.env : { ...process.env, POLITY_BENCH_REGIONAL: JSON.stringify(options.regional) };
  const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "inherit"], env });
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  lines.on("line", (line) => waiting.shift()?.(line));
  const next = () => new Promise<string>((resolve) => waiting.push(resolve));
  const line = await new Promise<string>((resolve, reject) => {
    void next().then(resolve);
    child.on("exit", (code) => reject(new Error(`the hub exited with ${code}`)));
  });
  const info = JSON.parse(line) as { url: string; caPem: string; adminToken: string };
  const tell = (command: string) => void child.stdin!.write(`${command}\n`);
  return {
    process: child,
    ...info,
    tell,
    async timings() {
      const answer = next();
      tell("timings");
      return JSON.parse(await answer) as TimingsSnapshot;
    },
  };
}

/** Stops a child process (SIGTERM unless said) and waits for it to exit. */
export function stopProcess(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill(signal);
  });
}
