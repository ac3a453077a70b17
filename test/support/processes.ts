/** Real processes for the end-to-end suites, run without blocking the test's event loop (hubs under test may live in it). */
import { spawn } from "node:child_process";

export interface Run {
  readonly code: number | null;
  readonly out: string;
  readonly err: string;
}

export interface RunOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Written to standard input, which is then closed (closed at once when absent). */
  readonly input?: string;
  /** Killed (SIGKILL) after this long: 10 s unless said. */
  readonly timeoutMs?: number;
}

/** Runs a program to its end and collects its exit code and output. */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString("utf8")));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 10_000);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
    // A program that exits without reading its input closes the pipe: writing then fails
    // with EPIPE, which is the program's business, not an unhandled error of the test run.
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
}
