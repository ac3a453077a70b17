/**
 * Network namespaces for the partition tests (test/partition.test.ts). Each part of a
 * federation runs in a namespace of its own, joined to its peers by veth pairs on /30
 * subnets, with no default route: a process reaches only the peers it has a link to, and
 * a link set down is a real partition (the kernel drops what is sent; nobody closes the
 * processes' sockets for them). Names are resolved by a hosts file per namespace
 * (`ip netns exec` mounts /etc/netns/<ns>/hosts over /etc/hosts).
 *
 * The test reaches each namespace over a management link from its own (the root)
 * namespace, which it never cuts. Every name carries a run id (the test process's pid in
 * base 36), so that runs on one machine do not meet; `close()` removes everything, and a
 * later run removes what a killed run left (namespaces whose run id names no live process).
 * Needs root and iproute2: `netnsUnavailable()` says why not, for a skip with a reason.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";

const PREFIX = "polity-";

/** Why network namespaces cannot be made here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "network namespaces need root (ip netns add)";
  const probe = `${PREFIX}probe-${process.pid.toString(36)}`;
  const added = spawnSync("ip", ["netns", "add", probe], { encoding: "utf8" });
  if (added.error !== undefined) return `the ip command (iproute2) cannot run: ${added.error.message}`;
  if (added.status !== 0) return `ip netns add is not permitted here: ${added.stderr.trim()}`;
  spawnSync("ip", ["netns", "del", probe]);
  return undefined;
}

function ip(...args: string[]): string {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim() || r.error?.message || `exit ${r.status}`}`);
  return r.stdout;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes what runs that no longer live left behind: their namespaces, hosts files and management links. */
function sweep(): void {
  const names = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout.split("\n").map((l) => l.split(" ")[0] ?? "");
  const dead = new Set<string>();
  for (const name of names) {
    const m = /^polity-([0-9a-z]{1,5})-[a-z]{1,3}$/.exec(name);
    if (m === null || alive(parseInt(m[1]!, 36))) continue;
    dead.add(m[1]!);
    spawnSync("ip", ["netns", "del", name]);
    rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
  }
  if (dead.size === 0) return;
  const links = spawnSync("ip", ["-o", "link", "show"], { encoding: "utf8" }).stdout;
  for (const m of links.matchAll(/^\d+: (pt([0-9a-z]{1,5})m-[a-z]{1,3})[@:]/gm)) {
    if (dead.has(m[2]!)) spawnSync("ip", ["link", "del", m[1]!]);
  }
}

export interface Namespace {
  /** Its short name (at most 3 letters), as the test calls it. */
  readonly name: string;
  /** Its name for `ip netns`. */
  readonly ns: string;
}

/** A veth pair between two namespaces, on a /30 of its own. */
export interface VethLink {
  /** The address of `ns`'s end. */
  addressOf(ns: Namespace): string;
  /** Sets both ends down: from now on the kernel drops what either side sends. */
  cut(): void;
  heal(): void;
}

/** A process started in a namespace: its output goes to `log`, and is kept for `waitFor`. */
export class NamespacedProcess {
  private output = "";

  constructor(
    readonly child: ChildProcess,
    readonly log: string,
  ) {
    const keep = (chunk: Buffer) => {
      this.output += chunk.toString("utf8");
      appendFileSync(log, chunk);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
  }

  /** The first match of `pattern` in its output, or an error with the log's tail when it exits first or `timeoutMs` pass. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const tail = () => this.output.split("\n").slice(-15).join("\n");
      const check = () => {
        const m = pattern.exec(this.output);
        if (m === null) return false;
        done();
        resolve(m);
        return true;
      };
      const exited = (code: number | null, signal: string | null) => {
        done();
        reject(new Error(`exited (${signal ?? `code ${code}`}) before printing ${pattern}; ${this.log}:\n${tail()}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`printed no ${pattern} within ${timeoutMs} ms; ${this.log}:\n${tail()}`));
      }, timeoutMs);
      const onData = () => void check();
      const done = () => {
        clearTimeout(timer);
        this.child.stdout?.off("data", onData);
        this.child.off("exit", exited);
      };
      if (check()) return;
      this.child.stdout?.on("data", onData);
      this.child.once("exit", exited);
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
}

/** The namespaces, links and processes of one test file, removed together by `close()`. */
export class Network {
  /** The run id every name carries. */
  readonly id = process.pid.toString(36);
  private readonly namespaces: Namespace[] = [];
  private readonly processes: NamespacedProcess[] = [];
  private links = 0;
  private managed = 0;
  /** The management subnets' first two octets after 10., from the run id (the root namespace is shared by runs). */
  private readonly management = [200 + (process.pid % 50), Math.floor(process.pid / 50) % 256] as const;
  private readonly onExit = () => this.removeNow();

  constructor() {
    sweep();
    process.once("exit", this.onExit);
  }

  namespace(name: string): Namespace {
    if (!/^[a-z]{1,3}$/.test(name) || name === "m") throw new Error(`namespace name ${name}: 1 to 3 letters, not "m"`);
    const ns = { name, ns: `${PREFIX}${this.id}-${name}` };
    ip("netns", "add", ns.ns);
    this.namespaces.push(ns);
    ip("-n", ns.ns, "link", "set", "lo", "up");
    return ns;
  }

  /** A veth pair between `a` and `b`, up, on 10.77.x.y/30. */
  link(a: Namespace, b: Namespace): VethLink {
    const n = this.links++;
    const base = `10.77.${Math.floor(n / 64)}.${(n % 64) * 4}`.split(".").map(Number);
    const address = (host: number) => `${base[0]}.${base[1]}.${base[2]}.${base[3]! + host}`;
    const ends = [
      { ns: a, dev: `pt${this.id}${a.name}-${b.name}`, address: address(1) },
      { ns: b, dev: `pt${this.id}${b.name}-${a.name}`, address: address(2) },
    ];
    ip("link", "add", ends[0]!.dev, "netns", a.ns, "type", "veth", "peer", "name", ends[1]!.dev, "netns", b.ns);
    for (const end of ends) {
      ip("-n", end.ns.ns, "addr", "add", `${end.address}/30`, "dev", end.dev);
      ip("-n", end.ns.ns, "link", "set", end.dev, "up");
    }
    const set = (state: "up" | "down") => {
      for (const end of ends) ip("-n", end.ns.ns, "link", "set", end.dev, state);
    };
    return {
      addressOf(ns) {
        const end = ends.find((e) => e.ns.ns === ns.ns);
        if (end === undefined) throw new Error(`the link ${ends[0]!.dev} does not reach ${ns.ns}`);
        return end.address;
      },
      cut: () => set("down"),
      heal: () => set("up"),
    };
  }

  /** A link from the test's own namespace to `ns`, never cut; the address of `ns`'s end. */
  manage(ns: Namespace): string {
    const n = this.managed++;
    const [x, y] = this.management;
    const root = { dev: `pt${this.id}m-${ns.name}`, address: `10.${x}.${y}.${n * 4 + 1}` };
    const inside = { dev: `pt${this.id}${ns.name}-m`, address: `10.${x}.${y}.${n * 4 + 2}` };
    ip("link", "add", root.dev, "type", "veth", "peer", "name", inside.dev, "netns", ns.ns);
    ip("addr", "add", `${root.address}/30`, "dev", root.dev);
    ip("link", "set", root.dev, "up");
    ip("-n", ns.ns, "addr", "add", `${inside.address}/30`, "dev", inside.dev);
    ip("-n", ns.ns, "link", "set", inside.dev, "up");
    return inside.address;
  }

  /** The hosts file of `ns`: localhost, and each name at its address. */
  hosts(ns: Namespace, names: Readonly<Record<string, string>>): void {
    mkdirSync(`/etc/netns/${ns.ns}`, { recursive: true });
    const lines = ["127.0.0.1 localhost", "::1 localhost", ...Object.entries(names).map(([name, address]) => `${address} ${name}`)];
    writeFileSync(`/etc/netns/${ns.ns}/hosts`, `${lines.join("\n")}\n`);
  }

  /** The default route of `ns`, if it has one (it should not). */
  defaultRoute(ns: Namespace): string {
    return ip("-n", ns.ns, "route", "show", "default").trim();
  }

  /** The namespace `pid` runs in, as `ip netns identify` names it. */
  identify(pid: number): string {
    return ip("netns", "identify", String(pid)).trim();
  }

  /** Runs `node <args>` in `ns` (`ip netns exec` execs it: the child's pid is node's). */
  spawn(ns: Namespace, args: readonly string[], options: { env: NodeJS.ProcessEnv; log: string }): NamespacedProcess {
    writeFileSync(options.log, "");
    const child = spawn("ip", ["netns", "exec", ns.ns, process.execPath, ...args], { env: options.env, stdio: ["ignore", "pipe", "pipe"] });
    const started = new NamespacedProcess(child, options.log);
    this.processes.push(started);
    return started;
  }

  /** Stops every process (SIGTERM, SIGKILL after 5 s), then removes the namespaces, their hosts files and the management links. */
  async close(): Promise<void> {
    await Promise.all(
      this.processes.map(
        ({ child }) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const kill = setTimeout(() => child.kill("SIGKILL"), 5000);
            child.once("exit", () => {
              clearTimeout(kill);
              resolve();
            });
            child.kill("SIGTERM");
          }),
      ),
    );
    this.removeNow();
    process.off("exit", this.onExit);
  }

  /** What close() removes, synchronously (also at the test process's exit, should afterAll not run). */
  private removeNow(): void {
    for (const { child } of this.processes) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    for (const ns of this.namespaces) {
      spawnSync("ip", ["netns", "del", ns.ns]);
      if (existsSync(`/etc/netns/${ns.ns}`)) rmSync(`/etc/netns/${ns.ns}`, { recursive: true, force: true });
      // Deleting a namespace deletes the veth ends in it, and with them their peers; this is for a namespace still held.
      spawnSync("ip", ["link", "del", `pt${this.id}m-${ns.name}`], { stdio: "ignore" });
    }
    this.namespaces.length = 0;
  }
}
