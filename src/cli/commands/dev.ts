/**
 * `polity dev`: a whole federation on this machine. A global hub on the embedded store, a
 * regional hub for each of its two regions (each with its own embedded store), and four
 * clusters, each a real `polity agent` process with its webhook, enrolled with its regional
 * hub and falling back to the global hub, all over mutual TLS on loopback, loaded with the
 * example layers. State stays in a data folder: a second start resumes it (no new
 * enrolment, layers as you left them).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { get as httpsGet } from "node:https";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { hubServerPath, writeConfig, type HubEntry } from "../../client/config.js";
import { call, closeConnections, type HubEndpoint } from "../../client/http.js";
import { stringOption, type Command } from "../command.js";
import { colors, EXIT, UsageError } from "../io.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const BIN = join(ROOT, "bin", "polity.js");
const EXAMPLES = join(ROOT, "examples");

interface DevCluster {
  readonly name: string;
  readonly region: string;
  readonly labels: Record<string, string>;
}

/**
 * People to try governance as, each a token the example teams list (examples/layers): the
 * bootstrap admin stays the current hub of the configuration, and `--hub <name>` acts as one
 * of them.
 */
const PERSONAS = [
  { name: "eve", role: "region-operator", region: "eu-west", subject: "eve@example.com", groups: ["eu-west-operators"], who: "eu-west operator, team eu-platform" },
  { name: "eli", role: "team-member", subject: "eli@example.com", groups: ["eu-west-operators"], who: "team eu-platform" },
  { name: "sam", role: "team-member", subject: "sam@example.com", groups: ["security-oncall"], who: "team platform-security" },
  { name: "pat", role: "team-member", subject: "pat@example.com", who: "team platform-team" },
] as const;

/** The regional hubs, each on the port after the global hub's. */
const REGIONS = ["eu-west", "us-east"] as const;

const CLUSTERS: readonly DevCluster[] = [
  { name: "eu-west-1", region: "eu-west", labels: { env: "prod", residency: "eu" } },
  { name: "eu-west-2", region: "eu-west", labels: { env: "staging", residency: "eu" } },
  { name: "us-east-1", region: "us-east", labels: { env: "prod" } },
  { name: "us-east-2", region: "us-east", labels: { env: "dev" } },
];

function spawnPolity(args: readonly string[], logFile: string, env: Readonly<Record<string, string>> = {}): ChildProcess {
  const out = createWriteStream(logFile, { flags: "a" });
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1", ...env } });
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  return child;
}

/** The first line a child prints on standard output matching `pattern`, or its log when it dies first. */
function waitForLine(child: ChildProcess, pattern: RegExp, logFile: string, timeoutMs: number): Promise<string> {
  return new Promise((resolveLine, reject) => {
    let buffer = "";
    const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s; see ${logFile}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      const m = pattern.exec(buffer);
      if (m !== null) {
        clearTimeout(timer);
        child.stdout!.off("data", onData);
        resolveLine(m[0]);
      }
    };
    child.stdout!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      const tail = existsSync(logFile) ? readFileSync(logFile, "utf8").split("\n").slice(-8).join("\n") : "";
      reject(new Error(`exited with code ${code}:\n${tail}`));
    });
  });
}

function ready(url: string, caPem: string): Promise<boolean> {
  return new Promise((done) => {
    const req = httpsGet(url.replace(/\/validate$/, "/readyz"), { ca: caPem, timeout: 2000 }, (res) => {
      res.resume();
      done(res.statusCode === 200);
    });
    req.on("error", () => done(false));
    req.on("timeout", () => req.destroy());
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const devCommand: Command = {
  name: "dev",
  summary: "run a whole federation on this machine: a global hub, two regional hubs, four clusters with agents",
  usage: "polity dev [--data <dir>] [--port <hub port>]",
  options: { data: { type: "string" }, port: { type: "string" } },
  help: `Starts, on loopback and over real mutual TLS:
  - a global hub on the embedded store (port 8443),
  - a regional hub for each region, eu-west (8444) and us-east (8445), each with its own
    embedded store, enrolled with the global hub (see the README's "Regional hubs"), and
  - four clusters in two regions (eu-west-1, eu-west-2, us-east-1, us-east-2), each a real
    polity agent process with its admission webhook (ports 9441 to 9444), enrolled with its
    regional hub and falling back to the global hub for bundles,
loaded with the example layers (examples/layers/): a locked Pod Security baseline, regional
overrides within their bounds, a cluster-local quota the centre cannot touch. It prints
where everything listens and commands to try: a decision, a policy change reaching every
cluster, a staged rollout and one that rolls itself back, an agent enforcing with the hub
stopped.

State stays in the data folder; a second start resumes it (same identities, layers as you
left them). Processes log to <data>/logs/. Ctrl-C stops everything.

Flags:
      --data <dir>     the data folder (default .polity/dev)
      --port <port>    the global hub's port; the regional hubs use the next two, the agents
                       the ports after 9440 (default 8443)

Example:
  npm start            (runs polity dev)`,
  async run(parsed, io) {
    const c = colors(io);
    const data = resolve(stringOption(parsed, "data") ?? ".polity/dev");
    const hubPort = Number(stringOption(parsed, "port") ?? "8443");
    if (!Number.isInteger(hubPort) || hubPort < 1 || hubPort > 65535) throw new UsageError("--port must be a port number");
    if (!existsSync(BIN) || !existsSync(join(ROOT, "dist", "cli", "main.js"))) throw new UsageError("polity is not built: run npm ci (or npm run build) first");
    const logs = join(data, "logs");
    mkdirSync(logs, { recursive: true });
    const show = (path: string) => {
      const rel = relative(process.cwd(), path);
      return rel.startsWith("..") ? path : rel;
    };
    const children: ChildProcess[] = [];
    const stopAll = async () => {
      closeConnections();
      await Promise.all(
        children.map(
          (child) =>
            new Promise<void>((done) => {
              if (child.exitCode !== null || child.signalCode !== null) return done();
              child.once("exit", () => done());
              child.kill("SIGTERM");
              setTimeout(() => child.kill("SIGKILL"), 5000).unref();
            }),
        ),
      );
    };
    let interrupted = false;
    const onSignal = () => {
      interrupted = true;
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    try {
      const resumed = existsSync(join(data, "hub", "ca.pem"));
      io.out(`${c.bold("polity dev")}: ${resumed ? "resuming" : "creating"} a local federation in ${show(data)}\n`);

      // The hub.
      io.out("  starting the hub (embedded PostgreSQL; the first start takes a few seconds)…\n");
      const hubLog = join(logs, "hub.log");
      const hub = spawnPolity(["hub", "--data", join(data, "hub"), "--listen", `127.0.0.1:${hubPort}`, "--quiet"], hubLog);
      children.push(hub);
      const line = await waitForLine(hub, /listening on (https:\/\/\S+)/, hubLog, 120_000);
      const hubUrl = /https:\/\/\S+/.exec(line)![0];
      const caFile = join(data, "hub", "ca.pem");
      const caPem = readFileSync(caFile, "utf8");
      const tokenFile = join(data, "hub", "admin.token");
      if (!existsSync(tokenFile)) throw new Error(`${tokenFile} is missing: remove ${data} to start afresh`);
      const admin: HubEndpoint = { url: hubUrl, caPem, token: readFileSync(tokenFile, "utf8").trim() };
      const configFile = join(data, "config.json");
      // The personas' tokens, minted once and kept with the federation's data.
      const personasFile = join(data, "personas.json");
      let personas: Record<string, string> = existsSync(personasFile) ? (JSON.parse(readFileSync(personasFile, "utf8")) as Record<string, string>) : {};
      if (PERSONAS.some((p) => personas[p.name] === undefined)) {
        personas = {};
        for (const { who: _who, ...persona } of PERSONAS) {
          personas[persona.name] = (await call<{ token: string }>(admin, "POST", "/v1/tokens", { ...persona, ttlSeconds: 90 * 86_400 })).body.token;
        }
        writeFileSync(personasFile, JSON.stringify(personas), { mode: 0o600 });
      }
      const hubs: Record<string, HubEntry> = { dev: { url: hubUrl, ca: caPem, token: admin.token! } };
      for (const [name, token] of Object.entries(personas)) hubs[name] = { url: hubUrl, ca: caPem, token };
      writeConfig(configFile, { current: "dev", hubs });

      // Layers and clusters, the first time.
      const layers = (await call<{ items: unknown[] }>(admin, "GET", "/v1/layers")).body.items;
      if (layers.length === 0) {
        const dir = join(EXAMPLES, "layers");
        const files = readdirSync(dir)
          .filter((f) => f.endsWith(".yaml"))
          .sort()
          .map((f) => ({ name: `examples/layers/${f}`, content: readFileSync(join(dir, f), "utf8") }));
        await call(admin, "POST", "/v1/apply", { files });
        io.out(`  applied the example layers (${files.map((f) => f.name.split("/").pop()).join(", ")})\n`);
      }
      const registered = new Set((await call<{ items: { name: string }[] }>(admin, "GET", "/v1/clusters")).body.items.map((x) => x.name));
      for (const cluster of CLUSTERS) {
        if (!registered.has(cluster.name)) await call(admin, "POST", "/v1/clusters", cluster);
      }

      // The regional hubs: enrolled with the global hub (a region token, the first time).
      const regions = new Map<string, { url: string; admin: HubEndpoint; log: string; pid: number | undefined; dir: string }>();
      for (const [i, region] of REGIONS.entries()) {
        const dir = join(data, "regions", region);
        const log = join(logs, `hub-${region}.log`);
        const env: Record<string, string> = {};
        if (!existsSync(join(dir, "regional.json"))) env.POLITY_REGION_TOKEN = (await call<{ token: string }>(admin, "POST", `/v1/regions/${region}/tokens`, { ttlSeconds: 600, allowLoopback: true })).body.token;
        const child = spawnPolity(["hub", "--region", region, "--parent", hubUrl, "--parent-ca", caFile, "--data", dir, "--listen", `127.0.0.1:${hubPort + 1 + i}`, "--quiet"], log, env);
        children.push(child);
        const started = await waitForLine(child, /listening on (https:\/\/\S+)/, log, 120_000);
        const url = /https:\/\/\S+/.exec(started)![0];
        regions.set(region, { url, admin: { url, caPem, token: readFileSync(join(dir, "admin.token"), "utf8").trim(), serverIds: [hubServerPath(region)] }, log, pid: child.pid, dir });
        hubs[region] = { url, ca: caPem, token: readFileSync(join(dir, "admin.token"), "utf8").trim(), server: hubServerPath(region) };
      }
      writeConfig(configFile, { current: "dev", hubs });
      // Each regional hub mirrors its region's clusters from the global hub before it enrols them.
      for (const [region, { admin: regional }] of regions) {
        const wanted = CLUSTERS.filter((x) => x.region === region).map((x) => x.name);
        for (let i = 0; i < 150; i++) {
          const held = new Set((await call<{ items: { name: string }[] }>(regional, "GET", "/v1/clusters")).body.items.map((x) => x.name));
          if (wanted.every((name) => held.has(name))) break;
          await sleep(200);
        }
      }

      // The agents: their regional hub first, the global hub as a fallback for bundles.
      const agents: { cluster: DevCluster; url: string; caFile: string; log: string }[] = [];
      for (const [i, cluster] of CLUSTERS.entries()) {
        const dir = join(data, "agents", cluster.name);
        const regional = regions.get(cluster.region)!;
        const args = ["agent", "--hub", regional.url, "--hub", hubUrl, "--cluster", cluster.name, "--data", dir, "--listen", `127.0.0.1:${9441 + i}`, "--poll-wait", "20"];
        if (!existsSync(join(dir, "identity", "identity.json"))) {
          const { token } = (await call<{ token: string }>(regional.admin, "POST", `/v1/clusters/${cluster.name}/join-tokens`, { ttlSeconds: 600 })).body;
          mkdirSync(dir, { recursive: true, mode: 0o700 });
          writeFileSync(join(dir, "join.token"), token, { mode: 0o600 });
          args.push("--ca", caFile, "--join-token-file", join(dir, "join.token"));
        }
        const log = join(logs, `agent-${cluster.name}.log`);
        const child = spawnPolity(args, log);
        children.push(child);
        const started = await waitForLine(child, /webhook (https:\/\/\S+)/, log, 60_000);
        agents.push({ cluster, url: /https:\/\/\S+/.exec(started)![0], caFile: join(dir, "webhook", "ca.pem"), log });
      }
      for (const agent of agents) {
        const webhookCa = readFileSync(agent.caFile, "utf8");
        for (let i = 0; i < 100 && !(await ready(agent.url, webhookCa)); i++) await sleep(200);
      }
      if (interrupted) return EXIT.ok;

      const ex = show(EXAMPLES);
      const cfg = show(configFile);
      const first = agents[0]!;
      io.out(`\n${c.bold("The federation is up.")}\n`);
      io.out(`  hub        ${hubUrl}   (global; CA ${show(caFile)}, log ${show(hubLog)}, pid ${hub.pid})\n`);
      for (const [region, r] of regions) io.out(`  ${region.padEnd(10)} ${r.url}   (regional hub; log ${show(r.log)}, pid ${r.pid})\n`);
      for (const agent of agents) {
        io.out(`  ${agent.cluster.name.padEnd(10)} ${agent.url}   (${agent.cluster.region}, ${Object.entries(agent.cluster.labels).map(([k, v]) => `${k}=${v}`).join(",")}; log ${show(agent.log)})\n`);
      }
      io.out(`\n${c.bold("Try it")} (in another terminal, from ${show(process.cwd()) || "."}):\n`);
      io.out(`  export POLITY_CONFIG=${cfg}\n`);
      io.out(`  npx polity get clusters --hub eu-west   # eu-west's clusters, as their regional hub sees them\n`);
      io.out(`  npx polity get regions                  # the regional hubs: last heard from, counts, their log's head\n\n`);
      io.out(`  # A decision, by ${first.cluster.name}'s webhook, from its local bundle:\n`);
      io.out(`  curl -s --cacert ${show(first.caFile)} -H 'content-type: application/json' \\\n      --data @${ex}/reviews/privileged-pod.json ${first.url}\n\n`);
      io.out(`  # A policy change reaching every cluster (then npx polity get clusters again):\n`);
      io.out(`  npx polity diff -f ${ex}/changes/global.yaml\n  npx polity apply -f ${ex}/changes/global.yaml\n\n`);
      const second = agents[1]!;
      io.out(`  # A staged rollout: canary ${second.cluster.name}, then the eu-west wave, then the rest, each stage's gates held 20 s:\n`);
      io.out(`  npx polity apply -f ${ex}/changes/global.yaml --canary ${second.cluster.name} --wave region=eu-west --soak 20s\n`);
      io.out(`  npx polity rollout status               # each stage, each cluster, each gate against its bound\n`);
      io.out(`  # Once it completed: a change that denies what ${second.cluster.name} admitted. Its denial rate jumps, and the rollout rolls itself back:\n`);
      io.out(`  npx polity apply -f ${ex}/changes/deny-unowned-pods.yaml --canary ${second.cluster.name} --soak 60s\n`);
      io.out(`  for i in 1 2 3 4 5 6; do curl -s --cacert ${show(second.caFile)} -H 'content-type: application/json' \\\n      --data @${ex}/reviews/compliant-pod.json ${second.url} >/dev/null; done\n`);
      io.out(`  npx polity rollout status               # rolled-back, and why (within a few seconds)\n`);
      io.out(`  # Before shipping it again: what it would newly deny among the requests each cluster recorded:\n`);
      io.out(`  npx polity diff -f ${ex}/changes/deny-unowned-pods.yaml --impact\n\n`);
      io.out(`  # Governance. Acting as people the example teams list (--hub <name>): ${PERSONAS.map((p) => `${p.name} (${p.who})`).join(", ")}.\n`);
      io.out(`  # eve asks for an exception to a global policy; it waits for platform-security, and eve may not approve it herself:\n`);
      io.out(`  npx polity exception request --hub eve --policy pod-security --clusters eu-west-2 --namespaces legacy \\\n      --justification "the legacy batch job runs as root until January" --for 7d\n`);
      io.out(`  npx polity exception approve --hub sam <id>        # then: npx polity exception list --active\n`);
      io.out(`  # eve proposes a change to her region's layer; another member of eu-platform approves it:\n`);
      io.out(`  npx polity propose --hub eve -f ${ex}/layers/region-eu-west.yaml --title "…"   # edit it first\n`);
      io.out(`  npx polity proposal approve --hub eli <id> && npx polity proposal apply --hub eve <id>\n\n`);
      io.out(`  # What the federation did, in its tamper-evident log; a head kept now proves later that nothing was rewritten:\n`);
      io.out(`  npx polity audit search\n  npx polity audit head --save audit-head.json && npx polity audit verify --against audit-head.json\n\n`);
      const eu = regions.get("eu-west")!;
      io.out(`  # The global hub stopped: eu-west's regional hub keeps serving its clusters and takes a change of its region layer,\n`);
      io.out(`  # which reaches the global hub when it returns (npm start again); a change that broke a global lock meanwhile is\n`);
      io.out(`  # reverted in the region and listed by: npx polity get conflicts\n`);
      io.out(`  kill ${hub.pid}     # then: npx polity apply --hub eu-west -f ${ex}/layers/region-eu-west.yaml (edited)\n`);
      io.out(`  # eu-west's regional hub stopped: its agents fetch their bundles from the global hub (curl ${first.url.replace(/\/validate$/, "/healthz")}: bundleHub):\n`);
      io.out(`  kill ${eu.pid}\n\n`);
      io.out(`Ctrl-C stops everything; npm start again resumes.\n`);

      // Until Ctrl-C; a child that dies is reported (the hub may be stopped on purpose).
      for (const child of children) {
        child.once("exit", (code, signal) => {
          if (!interrupted) io.err(`note: ${child === hub ? "the hub" : `an agent (pid ${child.pid})`} stopped (${signal ?? `exit ${code}`})\n`);
        });
      }
      while (!interrupted) await sleep(200);
      io.out("\nstopping…\n");
      return EXIT.ok;
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      await stopAll();
    }
  },
};
