/**
 * The real `polity agent` as a process (from the built binary), enrolled with a join token
 * or restarted on its data folder, and its /healthz read over its webhook's TLS.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { inject } from "vitest";
import type { AgentHealth } from "../../src/agent/index.js";
import { BIN, joinToken, type TestHub } from "./hubs.js";

export interface AgentProcess {
  readonly child: ChildProcess;
  readonly webhookUrl: string;
  readonly webhookCaPem: string;
  readonly dataDir: string;
  output(): string;
}

/** Starts cluster `cluster`'s agent against `h` (enrolling unless `enrol` is false); `processes` collects it for the file's cleanup. */
export async function spawnAgent(h: TestHub, dataDir: string, options: { readonly cluster: string; readonly processes: ChildProcess[]; readonly enrol?: boolean }): Promise<AgentProcess> {
  const buildError = inject("distBuildError");
  if (buildError !== null) throw new Error(buildError);
  const enrolment = options.enrol === false ? [] : ["--ca", h.hub.caFile, "--join-token", await joinToken(h, options.cluster)];
  const args = ["agent", "--hub", h.hub.url, "--cluster", options.cluster, "--data", dataDir, "--listen", "127.0.0.1:0", "--poll-wait", "2", ...enrolment];
  const { DATABASE_URL: _ignored, ...env } = process.env;
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  options.processes.push(child);
  let out = "";
  child.stderr!.on("data", (c: Buffer) => (out += c.toString("utf8")));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the agent was not ready in 30 s:\n${out}`)), 30_000);
    child.stdout!.on("data", (c: Buffer) => {
      out += c.toString("utf8");
      const m = /webhook (https:\/\/\S+\/validate)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.on("exit", (code) => reject(new Error(`the agent exited (${code}):\n${out}`)));
  });
  return { child, webhookUrl: url, webhookCaPem: readFileSync(join(dataDir, "webhook", "ca.pem"), "utf8"), dataDir, output: () => out };
}

/** The agent's /healthz. */
export function agentHealth(agent: AgentProcess): Promise<AgentHealth> {
  const url = new URL("/healthz", agent.webhookUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, ca: agent.webhookCaPem, agent: false }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString("utf8")));
      res.on("end", () => resolve(JSON.parse(body) as AgentHealth));
    });
    req.on("error", reject);
    req.end();
  });
}
