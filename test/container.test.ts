/**
 * The Containerfile's steps, run outside a container (no container runtime runs here): each
 * COPY copies from the checkout (or from the build stage) into a scratch folder standing
 * for the image's root, each RUN runs there as written, then the image's ENTRYPOINT starts
 * an agent that enrols with a real hub and answers /healthz.
 *
 * One substitution, said here: the build stage's `npm ci` (every dependency, only to
 * compile) is a link to this checkout's node_modules, made by `npm ci` from the same
 * lockfile. The production install (`npm ci --omit=dev`) runs for real.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { call } from "../src/client/http.js";
import { HubFixture, joinToken, ROOT } from "./support/hubs.js";

interface Step {
  readonly instruction: string;
  readonly args: string;
}

interface Stage {
  readonly name: string;
  readonly steps: Step[];
}

/** The Containerfile as stages of instructions (continuation lines joined, comments dropped). */
function stages(text: string): Stage[] {
  const lines = text.replace(/\\\n/g, " ").split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
  const out: Stage[] = [];
  for (const line of lines) {
    const [, instruction = "", args = ""] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    if (instruction === "FROM") {
      out.push({ name: /\sAS\s+(\S+)/i.exec(args)?.[1] ?? String(out.length), steps: [] });
      continue;
    }
    out.at(-1)?.steps.push({ instruction, args });
  }
  return out;
}

const CONTAINERFILE = readFileSync(join(ROOT, "Containerfile"), "utf8");
const root = mkdtempSync(join(tmpdir(), "polity-image-"));
const fixture = new HubFixture("polity-container-", "container-test-operator-key-0123456789");
const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  rmSync(root, { recursive: true, force: true });
});

/** Where an image path lands in the scratch root. */
const inImage = (path: string) => join(root, path);

function shell(command: string, cwd: string, env: NodeJS.ProcessEnv): void {
  const result = spawnSync("sh", ["-c", command], { cwd, env, encoding: "utf8", timeout: 240_000 });
  if (result.status !== 0) throw new Error(`RUN ${command} failed (${result.status ?? result.signal}):\n${result.stdout}${result.stderr}`);
}

/** Runs the Containerfile's stages; returns the final stage's entrypoint and user. */
function buildImage(): { entrypoint: string[]; user: string; env: Record<string, string> } {
  const all = stages(CONTAINERFILE);
  let entrypoint: string[] = [];
  let user = "";
  let imageEnv: Record<string, string> = {};
  for (const stage of all) {
    let workdir = "/";
    const env: Record<string, string> = {};
    for (const { instruction, args } of stage.steps) {
      switch (instruction) {
        case "WORKDIR":
          workdir = args;
          mkdirSync(inImage(workdir), { recursive: true });
          break;
        case "ENV": {
          const [key, ...value] = args.split("=");
          env[key!] = value.join("=");
          break;
        }
        case "COPY": {
          const parts = args.split(/\s+/);
          const from = parts[0]!.startsWith("--from=") ? parts.shift()!.slice("--from=".length) : undefined;
          const target = parts.pop()!;
          const dest = target.startsWith("/") ? inImage(target) : join(inImage(workdir), target);
          for (const source of parts) {
            // Every stage shares the scratch root: a path of the build stage is where it wrote it.
            const resolved = from === undefined ? join(ROOT, source) : inImage(source);
            const to = target.endsWith("/") ? join(dest, source.split("/").pop()!) : dest;
            mkdirSync(dirname(to), { recursive: true });
            cpSync(resolved, to, { recursive: true });
          }
          break;
        }
        case "RUN": {
          const command = args.replace(/^(--mount=\S+\s+)+/, "");
          const cwd = inImage(workdir);
          if (stage.name === "build" && /^npm ci\b/.test(command)) {
            symlinkSync(join(ROOT, "node_modules"), join(cwd, "node_modules"));
            break;
          }
          shell(command, cwd, { ...process.env, ...env });
          break;
        }
        case "USER":
          user = args;
          break;
        case "ENTRYPOINT":
          entrypoint = JSON.parse(args) as string[];
          break;
        case "CMD":
          break;
        default:
          throw new Error(`the test does not know the Containerfile instruction ${instruction}`);
      }
    }
    imageEnv = env;
  }
  return { entrypoint, user, env: imageEnv };
}

function healthz(url: string, caPem: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca: caPem, timeout: 5000 }, (res) => {
      let text = "";
      res.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("the Containerfile, its steps run outside a container", () => {
  let image: ReturnType<typeof buildImage>;

  it("builds: compiles in the build stage, installs production dependencies only in the image", () => {
    image = buildImage();
    expect(existsSync(inImage("app/dist/cli/main.js"))).toBe(true);
    expect(existsSync(inImage("app/bin/polity.js"))).toBe(true);
    expect(existsSync(inImage("app/node_modules/fastify"))).toBe(true);
    // No compiler, test runner or linter in the image.
    for (const dev of ["typescript", "vitest", "eslint"]) expect(existsSync(inImage(`app/node_modules/${dev}`)), dev).toBe(false);
    expect(image.user).toBe("65532:65532");
    expect(image.entrypoint).toEqual(["node", "/app/bin/polity.js"]);
  }, 300_000);

  it("starts an agent from its entrypoint that enrols with a hub and answers /healthz", async () => {
    expect(image, "the build step failed").toBeDefined();
    const h = await fixture.startCopy("hub");
    await call(h.admin, "POST", "/v1/clusters", { name: "in-image", region: "eu-west", labels: {} });
    const token = await joinToken(h, "in-image");
    const caFile = join(root, "federation-ca.pem");
    cpSync(join(h.dir, "ca.pem"), caFile);
    const [program, script, ...rest] = image.entrypoint;
    expect(program).toBe("node");
    const dataDir = join(root, "var/lib/polity");
    const child = spawn(
      process.execPath,
      [inImage(script!), ...rest, "agent", "--hub", h.hub.url, "--cluster", "in-image", "--ca", caFile, "--join-token", token, "--data", dataDir, "--listen", "127.0.0.1:0"],
      { cwd: inImage("app"), env: { ...process.env, ...image.env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(child);
    let output = "";
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the agent did not start within 30 s:\n${output}`)), 30_000);
      child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
      child.stdout!.on("data", (chunk: Buffer) => {
        output += chunk.toString("utf8");
        const match = /webhook (https:\/\/\S+)\/validate/.exec(output);
        if (match !== null) {
          clearTimeout(timer);
          resolve(match[1]!);
        }
      });
      child.on("exit", (code) => reject(new Error(`the agent exited (${code}):\n${output}`)));
    });
    const caPem = readFileSync(join(dataDir, "webhook", "ca.pem"), "utf8");
    // It answers at once, and enrols in the background.
    let health = await healthz(`${url}/healthz`, caPem);
    for (let i = 0; i < 150 && health.body.enrolled !== true; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      health = await healthz(`${url}/healthz`, caPem);
    }
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ cluster: "in-image", enrolled: true });
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  }, 60_000);
});
