/**
 * Processes the benchmarks drive: a hub in a process of its own (bench/hub-process.ts), so
 * that the load generated here does not share its event loop.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export interface HubProcess {
  readonly process: ChildProcess;
  readonly url: string;
  readonly caPem: string;
  readonly adminToken: string;
}

/** Starts a hub on `dataDir` and waits for the line in which it says where it listens. */
export async function startHubProcess(dataDir: string): Promise<HubProcess> {
  const child = spawn(process.execPath, [fileURLToPath(new URL("./hub-process.js", import.meta.url)), dataDir], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve, reject) => {
    let buffer = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      const nl = buffer.indexOf("\n");
      if (nl >= 0) resolve(buffer.slice(0, nl));
    });
    child.on("exit", (code) => reject(new Error(`the hub exited with ${code}`)));
  });
  const info = JSON.parse(line) as { url: string; caPem: string; adminToken: string };
  return { process: child, ...info };
}

/** Stops a child process (SIGTERM unless said) and waits for it to exit. */
export function stopProcess(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill(signal);
  });
}
