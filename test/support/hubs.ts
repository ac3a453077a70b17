/**
 * Hubs for the end-to-end suites: one template federation made per test file (its CA,
 * keys and bootstrap token, which take seconds to make), copied into a folder of its own
 * for each hub a test starts, each hub with a clock the test can move.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, inject } from "vitest";
import type { SourceFile } from "../../src/api/fields.js";
import { call, HubError, type HubEndpoint } from "../../src/client/http.js";
import { startHub, type HubOptions, type RunningHub } from "../../src/hub/index.js";
import { run, type Run } from "./processes.js";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const BIN = join(ROOT, "bin/polity.js");

/** One of the example layers the README walks through. */
export const example = (name: string): SourceFile => ({ name, content: readFileSync(join(ROOT, "examples/layers", name), "utf8") });

export interface Clock {
  offsetMs: number;
}

export interface TestHub {
  readonly hub: RunningHub;
  readonly clock: Clock;
  /** The bootstrap global admin. */
  readonly admin: HubEndpoint;
  /** No token, no certificate: trusts the CA, nothing more. */
  readonly anonymous: HubEndpoint;
  readonly dir: string;
}

/** Call at a test file's top level: makes the template before its tests, removes it all after. */
export class HubFixture {
  /** The file's scratch folder. */
  root = "";
  /** The data folder of the federation every hub starts from. */
  template = "";
  /** What the template's first start wrote. */
  bootstrap = { adminTokenFile: "", caPem: "" };
  readonly running: RunningHub[] = [];

  constructor(
    prefix: string,
    private readonly operatorKey: string,
    federation = "polity",
  ) {
    beforeAll(async () => {
      this.root = mkdtempSync(join(tmpdir(), prefix));
      this.template = join(this.root, "template");
      const first = await startHub({ dataDir: this.template, port: 0, operatorKey, federation });
      try {
        if (first.adminTokenFile === undefined) throw new Error("the first start of a hub wrote no bootstrap admin token");
        this.bootstrap = { adminTokenFile: first.adminTokenFile, caPem: first.caPem };
      } finally {
        await first.close();
      }
    });
    afterAll(async () => {
      await Promise.allSettled(this.running.map((hub) => hub.close()));
      rmSync(this.root, { recursive: true, force: true });
    });
  }

  /**
   * The built `polity` command, run in the file's scratch folder with the CLI configuration
   * `config` (cliConfig's), or none.
   */
  cli(args: readonly string[], options: { config?: string; input?: string } = {}): Promise<Run> {
    const buildError = inject("distBuildError");
    if (buildError !== null) throw new Error(buildError);
    const { DATABASE_URL: _ignored, ...env } = process.env;
    return run(process.execPath, [BIN, ...args], {
      cwd: this.root,
      env: { ...env, NO_COLOR: "1", POLITY_CONFIG: options.config ?? join(this.root, "no-config.json") },
      input: options.input,
      timeoutMs: 20_000,
    });
  }

  /** A CLI configuration (as `polity login` writes it) whose current hub is `name`; `more` adds hubs `--hub` picks. */
  cliConfig(name: string, endpoint: HubEndpoint, more: Readonly<Record<string, HubEndpoint>> = {}): string {
    const path = join(this.root, `${name}.config.json`);
    const entry = (e: HubEndpoint) => ({ url: e.url, ca: e.caPem, token: e.token });
    const hubs = Object.fromEntries([[name, entry(endpoint)], ...Object.entries(more).map(([n, e]) => [n, entry(e)])]);
    writeFileSync(path, JSON.stringify({ current: name, hubs }), { mode: 0o600 });
    return path;
  }

  /** A hub on a copy of the template federation, with its own clock. */
  async startCopy(name: string, options: Partial<HubOptions> = {}): Promise<TestHub> {
    const dir = join(this.root, name);
    cpSync(this.template, dir, { recursive: true });
    return this.startAt(dir, options);
  }

  /** A hub on a data folder (and database) that already holds a federation. */
  async startAt(dir: string, options: Partial<HubOptions> = {}, clock: Clock = { offsetMs: 0 }): Promise<TestHub> {
    const hub = await startHub({ dataDir: dir, port: 0, operatorKey: this.operatorKey, now: () => new Date(Date.now() + clock.offsetMs), ...options });
    this.running.push(hub);
    const token = readFileSync(join(dir, "admin.token"), "utf8").trim();
    return { hub, clock, dir, admin: { url: hub.url, caPem: hub.caPem, token }, anonymous: { url: hub.url, caPem: hub.caPem } };
  }
}

/** The HubError a request is refused with (fails the test if it succeeds). */
export async function refused(work: Promise<unknown>): Promise<HubError> {
  try {
    await work;
  } catch (error) {
    if (error instanceof HubError) return error;
    throw error;
  }
  throw new Error("expected the hub to refuse the request, but it succeeded");
}

export interface Minted {
  readonly id: string;
  readonly name: string;
  readonly role: string;
  readonly region: string | null;
  readonly expiresAt: string;
  readonly token: string;
  /** The hub, as the holder of the new token. */
  readonly endpoint: HubEndpoint;
}

/** A bearer token minted by the hub's admin. */
export async function mint(h: TestHub, body: Record<string, unknown>): Promise<Minted> {
  const minted = (await call<Omit<Minted, "endpoint">>(h.admin, "POST", "/v1/tokens", body)).body;
  return { ...minted, endpoint: { ...h.anonymous, token: minted.token } };
}

/** A join token for the cluster, minted by the hub's admin. */
export async function joinToken(h: TestHub, cluster: string, body: Record<string, unknown> = {}): Promise<string> {
  return (await call<{ token: string }>(h.admin, "POST", `/v1/clusters/${cluster}/join-tokens`, body)).body.token;
}
