/**
 * Partitions, for real: a global hub, the regional hubs of eu-west and us-east and one
 * agent per region, each a real `polity` process (built, bin/polity.js) in a network
 * namespace of its own, joined by veth pairs (test/support/netns.ts):
 *
 *            ┌──────────── global ────────────┐
 *            │       │               │        │
 *        eu-west   (fallback)      us-east  (fallback)
 *            │       │               │        │
 *        eu-west-1 ──┘           us-east-1 ───┘
 *
 * Hubs and agents reach each other by DNS names (hosts files per namespace) that their
 * certificates carry. The test cuts and heals those links (`ip link set … down/up`), and
 * reaches every process over a management link that it never cuts: reviews go to the
 * agents' webhooks all along, and must be answered from their bundles, denials denied.
 * Skipped, with the reason, where network namespaces cannot be made (not root, no `ip`).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { SourceFile } from "../src/api/fields.js";
import type { Conflict } from "../src/api/regions.js";
import { hubServerPath } from "../src/client/config.js";
import { call, closeConnections, type HubEndpoint } from "../src/client/http.js";
import { eventually, sleep } from "./support/eventually.js";
import { BIN, example, ROOT } from "./support/hubs.js";
import { Link } from "./support/link.js";
import { Network, netnsUnavailable, type NamespacedProcess, type Namespace, type VethLink } from "./support/netns.js";
import { run } from "./support/processes.js";
import { reviewAnswer, type ReviewAnswer } from "./support/reviews.js";

const unavailable = netnsUnavailable();
if (unavailable !== undefined) console.warn(`test/partition.test.ts skipped: ${unavailable}`);

const OPERATOR_KEY = "partition-test-operator-key-0123456789";
const GLOBAL_NAME = "global.polity.test";
const HUB_NAME = { "eu-west": "eu-west.polity.test", "us-east": "us-east.polity.test" } as const;
const HUB_PORT = 8443;
const WEBHOOK_PORT = 9443;
/** Cluster certificates live 20 s (renewed after about 13 s), so that one expires during a partition. */
const CERTIFICATE_TTL = "20s";

const GLOBAL = example("global.yaml");
const GLOBAL_UNLOCKED: SourceFile = { name: GLOBAL.name, content: GLOBAL.content.replace("locked: true", "locked: false") };
const TEAM_MESSAGE = 'message: "pods must carry a non-empty \\"team\\" label"';
/** The global layer moved: the team rule's message says v2. */
const GLOBAL_V2: SourceFile = { name: GLOBAL.name, content: GLOBAL_UNLOCKED.content.replace(TEAM_MESSAGE, 'message: "pods must carry a team label (v2)"') };
/** And moved again: pod-security locked (as the example has it). */
const GLOBAL_V2_LOCKED: SourceFile = { name: GLOBAL.name, content: GLOBAL.content.replace(TEAM_MESSAGE, 'message: "pods must carry a team label (v2)"') };
const REGION_EU = example("region-eu-west.yaml");
const REGION_US = example("region-us-east.yaml");
const NO_HOST_NETWORK = `apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: no-host-network, owner: eu-platform }\nspec:\n  domain: workload-security\n  match: { kinds: [Pod] }\n  validations:\n    - expression: "!has(object.spec.hostNetwork) || object.spec.hostNetwork == false"\n      message: "no host network in eu-west"\n  enforcement: deny\n`;
/** eu-west's operator adds a rule of the region's own. */
const REGION_EU_EXTRA: SourceFile = { name: REGION_EU.name, content: `${REGION_EU.content.trimEnd()}\n---\n${NO_HOST_NETWORK}` };
/** And weakens pod-security, which the global layer it holds does not lock. */
const REGION_EU_WEAKENED: SourceFile = {
  name: REGION_EU.name,
  content: `${REGION_EU_EXTRA.content.trimEnd()}\n---\napiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: pod-security, owner: eu-platform }\nspec:\n  enforcement: warn\n`,
};

/** A pod every layer here admits (examples/reviews/compliant-pod.json). */
const COMPLIANT = JSON.parse(readFileSync(join(ROOT, "examples/reviews/compliant-pod.json"), "utf8")) as { request: { uid: string; object: { metadata: { labels: Record<string, string> }; spec: Record<string, unknown> } } };
function review(uid: string, change: (pod: typeof COMPLIANT.request.object) => void = () => undefined): string {
  const copy = structuredClone(COMPLIANT);
  copy.request.uid = uid;
  change(copy.request.object);
  return JSON.stringify(copy);
}
/** Denied by the global team rule, which no change here weakens. */
const unlabelled = (uid: string) => review(uid, (pod) => delete pod.metadata.labels.team);
/** Denied by pod-security (restricted) while it is enforced with deny. */
const privileged = (uid: string) =>
  review(uid, (pod) => {
    const [container] = pod.spec.containers as { securityContext: Record<string, unknown> }[];
    container!.securityContext.privileged = true;
  });
/** Denied by pod-security, and by eu-west's no-host-network once its operator added it. */
const hostNetwork = (uid: string) => review(uid, (pod) => (pod.spec.hostNetwork = true));

interface Agent {
  readonly cluster: string;
  readonly region: "eu-west" | "us-east";
  readonly process: NamespacedProcess;
  readonly webhookUrl: string;
  readonly webhookCaPem: string;
  /** Its /healthz. */
  readonly health: HubEndpoint;
}

interface AgentHealth {
  readonly bundleVersion: number | null;
  readonly bundleHub: string | null;
  readonly certificateNotAfter: string | null;
  readonly errors: Record<string, string>;
  readonly logs: { buffered: number; dropped: number };
}

/** What one review sent during the run asked and got. */
interface Probe {
  readonly cluster: string;
  readonly uid: string;
  readonly at: number;
  readonly expectAllowed: boolean;
  readonly answer?: ReviewAnswer;
  readonly error?: string;
}

/**
 * Sends reviews to every agent, one after another, all through the run: a pod every layer
 * admits, and one the global team rule denies. Enforcement never stops or loosens: every
 * review is answered, as the policy says.
 */
class Prober {
  readonly probes: Probe[] = [];
  private stopped = false;
  private loops: Promise<void>[] = [];

  start(agents: readonly Agent[]): void {
    this.loops = agents.map(async (agent) => {
      for (let n = 0; !this.stopped; n++) {
        for (const expectAllowed of [false, true]) {
          const uid = `${agent.cluster}-${n}-${expectAllowed ? "allowed" : "denied"}`;
          const at = Date.now();
          try {
            const answer = await reviewAnswer(agent, expectAllowed ? review(uid) : unlabelled(uid), 5000);
            this.probes.push({ cluster: agent.cluster, uid, at, expectAllowed, answer });
          } catch (error) {
            this.probes.push({ cluster: agent.cluster, uid, at, expectAllowed, error: String(error) });
          }
        }
        await sleep(300);
      }
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  /** The denial message the agent of `cluster` gave last. */
  lastDenial(cluster: string): string | undefined {
    return this.probes.findLast((p) => p.cluster === cluster && p.answer?.allowed === false)?.answer?.message;
  }
}

/**
 * Where a hub keeps its state. With DATABASE_URL (a PostgreSQL server on this machine, as in
 * CI), a database of its own on that server, reached through the server's Unix socket: a
 * file, the same in every network namespace, where 127.0.0.1 is not (a database each, not a
 * schema each: hubs sharing a database hear each other's change notifications). Without it,
 * or with a server whose socket is not on this machine, the embedded PGlite in its data
 * folder (slower to create).
 */
class HubDatabases {
  private readonly created: string[] = [];

  constructor(private readonly url: string | undefined) {}

  /** The `polity hub` flags for hub `name`'s database. */
  async flags(name: string): Promise<string[]> {
    if (this.url === undefined || this.url === "") return [];
    const client = new pg.Client({ connectionString: this.url });
    await client.connect();
    try {
      const socket = (await client.query<{ unix_socket_directories: string }>("SHOW unix_socket_directories")).rows[0]!.unix_socket_directories.split(",")[0]!.trim();
      const port = (await client.query<{ port: string }>("SHOW port")).rows[0]!.port;
      // A server elsewhere (its socket not on this machine): the embedded store, as without DATABASE_URL.
      if (!existsSync(join(socket, `.s.PGSQL.${port}`))) return [];
      const database = `polity_partition_${process.pid.toString(36)}_${name.replace(/-/g, "_")}`;
      await client.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
      await client.query(`CREATE DATABASE "${database}"`);
      this.created.push(database);
      const given = new URL(this.url);
      const who = `${given.username}${given.password === "" ? "" : `:${given.password}`}`;
      return ["--database", `postgres://${who}@/${database}?host=${encodeURIComponent(socket)}&port=${port}`];
    } finally {
      await client.end();
    }
  }

  async drop(): Promise<void> {
    if (this.url === undefined || this.created.length === 0) return;
    const client = new pg.Client({ connectionString: this.url });
    await client.connect();
    try {
      for (const database of this.created) await client.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    } finally {
      await client.end();
    }
  }
}

describe.skipIf(unavailable !== undefined)("a federation split by real network partitions", () => {
  const net = unavailable === undefined ? new Network() : undefined;
  let scratch = "";
  let cliConfig = "";
  const forwarders: Link[] = [];
  const links = {} as Record<"globalEu" | "globalUs" | "euAgent" | "usAgent" | "globalEuAgent" | "globalUsAgent", VethLink>;
  const hubs = {} as Record<"global" | "eu-west" | "us-east", { process: NamespacedProcess; admin: HubEndpoint; dir: string; ns: Namespace }>;
  const agents: Agent[] = [];
  const prober = new Prober();
  /** When each partition began and ended (for the decisions made during them). */
  const partitions: { from: number; to: number }[] = [];
  let caPem = "";
  /** eu-west's operator (eve, of team eu-platform), with a token of its regional hub. */
  let euOperator: HubEndpoint;
  const databases = new HubDatabases(process.env.DATABASE_URL);

  const { DATABASE_URL: _database, KUBECONFIG: _kubeconfig, KUBERNETES_SERVICE_HOST: _kube, ...baseEnv } = process.env;
  const env = { ...baseEnv, NO_COLOR: "1", POLITY_HUB_KEY: OPERATOR_KEY };

  /** The CLI (bin/polity.js) in the test's namespace, over the management links. */
  const cli = (args: readonly string[]) => {
    const buildError = inject("distBuildError");
    if (buildError !== null) throw new Error(buildError);
    return run(process.execPath, [BIN, ...args], { cwd: scratch, env: { ...baseEnv, NO_COLOR: "1", POLITY_CONFIG: cliConfig }, timeoutMs: 60_000 });
  };
  /** A port in a namespace, reached from here over its management link, as https://127.0.0.1:<port> (a name every certificate here carries). */
  const manage = async (ns: Namespace, port: number) => {
    const forwarder = await Link.open(port, net!.manage(ns));
    forwarders.push(forwarder);
    return forwarder.url;
  };
  const state = async (region: "eu-west" | "us-east") => (await call<{ connected: boolean; lastError: string | null }>(hubs[region].admin, "GET", "/v1/region")).body;
  const health = async (agent: Agent) => (await call<AgentHealth>(agent.health, "GET", "/healthz")).body;
  const layerOn = async (hub: "global" | "eu-west", id: string) => (await call<{ files: SourceFile[] }>(hubs[hub].admin, "GET", `/v1/layers/${id}`)).body.files[0]?.content;
  const agent = (cluster: string) => agents.find((a) => a.cluster === cluster)!;

  async function startHub(name: "global" | "eu-west" | "us-east", ns: Namespace, args: readonly string[], extraEnv: Record<string, string> = {}) {
    const dir = join(scratch, `hub-${name}`);
    const database = await databases.flags(name);
    const started = net!.spawn(ns, [BIN, "hub", "--data", dir, ...database, "--listen", `0.0.0.0:${HUB_PORT}`, "--quiet", ...args], { env: { ...env, ...extraEnv }, log: join(scratch, `hub-${name}.log`) });
    await started.waitFor(/listening on/, 150_000);
    caPem = readFileSync(join(dir, "ca.pem"), "utf8");
    const url = await manage(ns, HUB_PORT);
    const admin: HubEndpoint = { url, caPem, token: readFileSync(join(dir, "admin.token"), "utf8").trim(), serverIds: [hubServerPath(name === "global" ? undefined : name)] };
    hubs[name] = { process: started, admin, dir, ns };
  }

  async function startAgent(cluster: string, region: "eu-west" | "us-east", ns: Namespace): Promise<Agent> {
    const dir = join(scratch, `agent-${cluster}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const token = (await call<{ token: string }>(hubs[region].admin, "POST", `/v1/clusters/${cluster}/join-tokens`, {})).body.token;
    writeFileSync(join(dir, "join.token"), token, { mode: 0o600 });
    const args = [BIN, "agent", "--hub", `https://${HUB_NAME[region]}:${HUB_PORT}`, "--hub", `https://${GLOBAL_NAME}:${HUB_PORT}`, "--cluster", cluster];
    args.push("--ca", join(hubs.global.dir, "ca.pem"), "--join-token-file", join(dir, "join.token"), "--data", dir, "--listen", `0.0.0.0:${WEBHOOK_PORT}`, "--poll-wait", "2");
    const started = net!.spawn(ns, args, { env, log: join(scratch, `agent-${cluster}.log`) });
    await started.waitFor(/webhook https:\/\//, 90_000);
    const url = await manage(ns, WEBHOOK_PORT);
    const webhookCaPem = readFileSync(join(dir, "webhook", "ca.pem"), "utf8");
    return { cluster, region, process: started, webhookUrl: `${url}/validate`, webhookCaPem, health: { url, caPem: webhookCaPem } };
  }

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), "polity-partition-"));
    const n = net!;
    const ns = { global: n.namespace("g"), eu: n.namespace("eu"), us: n.namespace("us"), euAgent: n.namespace("ae"), usAgent: n.namespace("au") };
    links.globalEu = n.link(ns.global, ns.eu);
    links.globalUs = n.link(ns.global, ns.us);
    links.euAgent = n.link(ns.eu, ns.euAgent);
    links.usAgent = n.link(ns.us, ns.usAgent);
    links.globalEuAgent = n.link(ns.global, ns.euAgent);
    links.globalUsAgent = n.link(ns.global, ns.usAgent);
    n.hosts(ns.global, {});
    n.hosts(ns.eu, { [GLOBAL_NAME]: links.globalEu.addressOf(ns.global) });
    n.hosts(ns.us, { [GLOBAL_NAME]: links.globalUs.addressOf(ns.global) });
    n.hosts(ns.euAgent, { [HUB_NAME["eu-west"]]: links.euAgent.addressOf(ns.eu), [GLOBAL_NAME]: links.globalEuAgent.addressOf(ns.global) });
    n.hosts(ns.usAgent, { [HUB_NAME["us-east"]]: links.usAgent.addressOf(ns.us), [GLOBAL_NAME]: links.globalUsAgent.addressOf(ns.global) });

    await startHub("global", ns.global, ["--hostname", GLOBAL_NAME]);
    const global = hubs.global.admin;
    await call(global, "POST", "/v1/apply", { files: [GLOBAL_UNLOCKED, REGION_EU, REGION_US] });
    await call(global, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } });
    await call(global, "POST", "/v1/clusters", { name: "us-east-1", region: "us-east", labels: { env: "prod" } });
    // Each regional hub's certificate carries the name its clusters reach it by (fixed in its
    // region token), and loopback, by which the test reaches it over its management link.
    const regional = async (region: "eu-west" | "us-east", inside: Namespace) => {
      const { token } = (await call<{ token: string }>(global, "POST", `/v1/regions/${region}/tokens`, { hostnames: [HUB_NAME[region]], allowLoopback: true })).body;
      const parent = ["--region", region, "--parent", `https://${GLOBAL_NAME}:${HUB_PORT}`, "--parent-ca", join(hubs.global.dir, "ca.pem")];
      await startHub(region, inside, [...parent, "--hostname", HUB_NAME[region], "--certificate-ttl", CERTIFICATE_TTL, "--grace", "1h"], { POLITY_REGION_TOKEN: token });
      await eventually(`the ${region} hub mirrors its cluster`, async () => (await call<{ items: { name: string }[] }>(hubs[region].admin, "GET", "/v1/clusters")).body.items.length === 1, 60_000);
    };
    await Promise.all([regional("eu-west", ns.eu), regional("us-east", ns.us)]);
    const eve = { name: "eve", role: "region-operator", region: "eu-west", subject: "eve@example.com", groups: ["eu-west-operators"] };
    euOperator = { ...hubs["eu-west"].admin, token: (await call<{ token: string }>(hubs["eu-west"].admin, "POST", "/v1/tokens", eve)).body.token };
    agents.push(...(await Promise.all([startAgent("eu-west-1", "eu-west", ns.euAgent), startAgent("us-east-1", "us-east", ns.usAgent)])));
    for (const a of agents) await eventually(`${a.cluster} enforces a bundle`, async () => (await health(a)).bundleVersion !== null, 60_000);
    writeFileSync(
      (cliConfig = join(scratch, "cli.json")),
      JSON.stringify({
        current: "global",
        hubs: {
          global: { url: hubs.global.admin.url, ca: caPem, token: hubs.global.admin.token },
          "eu-west": { url: hubs["eu-west"].admin.url, ca: caPem, token: hubs["eu-west"].admin.token, server: hubServerPath("eu-west") },
        },
      }),
      { mode: 0o600 },
    );
    prober.start(agents);
  }, 240_000);

  afterAll(async () => {
    await prober.stop();
    closeConnections();
    await Promise.all(forwarders.map((f) => f.close()));
    await net?.close();
    await databases.drop();
    if (scratch !== "") rmSync(scratch, { recursive: true, force: true });
  }, 30_000);

  it("runs every hub and agent as a process in a namespace of its own, with no route but its links", async () => {
    for (const [name, hub] of Object.entries(hubs)) {
      expect(net!.identify(hub.process.child.pid!), name).toBe(hub.ns.ns);
      expect(net!.defaultRoute(hub.ns)).toBe("");
    }
    // Each agent asks its regional hub, by the name its certificate carries.
    for (const a of agents) expect((await health(a)).bundleHub).toBe(`https://${HUB_NAME[a.region]}:${HUB_PORT}`);
    // The hubs' audit heads before the partitions, which their logs must extend afterwards.
    const saved = await Promise.all([cli(["audit", "head", "--save", "global-head.json"]), cli(["audit", "head", "--hub", "eu-west", "--save", "eu-west-head.json"])]);
    for (const r of saved) expect(r.code, r.err).toBe(0);
  }, 60_000);

  it("keeps eu-west governing itself while it is cut off from the global hub: it serves its agent, takes its operator's change and renews a certificate that expired meanwhile", async () => {
    const eu = agent("eu-west-1");
    const us = agent("us-east-1");
    const from = Date.now();
    links.globalEu.cut();
    links.globalEuAgent.cut();
    // And us-east's agent loses its regional hub: it asks the global hub instead.
    links.usAgent.cut();
    try {
      // The global layer moves meanwhile.
      await call(hubs.global.admin, "POST", "/v1/apply", { files: [GLOBAL_V2] });
      // eu-west's operator changes the region layer: validated against the global layer the region holds, enforced at once.
      await call(euOperator, "POST", "/v1/apply", { files: [REGION_EU_EXTRA] });
      await eventually("eu-west-1 enforces the regional change", async () => (await reviewAnswer(eu, hostNetwork("host-network"))).message?.includes("no host network in eu-west"), 30_000);

      // A certificate that expires while its agent is cut off from every hub is renewed by the
      // regional hub (itself cut off from the global hub) within the grace window, without a restart.
      const before = (await health(eu)).certificateNotAfter!;
      const renewed = await eventually("eu-west-1 renews its certificate", async () => {
        const now = (await health(eu)).certificateNotAfter!;
        return now !== before ? now : undefined;
      }, 30_000);
      links.euAgent.cut();
      await sleep(Math.max(0, Date.parse(renewed) - Date.now() + 1500));
      const expired = await health(eu);
      expect(expired.certificateNotAfter).toBe(renewed);
      expect(Date.parse(expired.certificateNotAfter!)).toBeLessThan(Date.now());
      links.euAgent.heal();
      await eventually("eu-west-1 renews the expired certificate", async () => Date.parse((await health(eu)).certificateNotAfter!) > Date.now(), 60_000);
      expect(eu.process.running).toBe(true);

      // All along, the eu-west hub knew its parent was gone, and its agent never saw the moved global layer.
      await eventually("the eu-west hub sees its parent is gone", async () => !(await state("eu-west")).connected, 30_000);
      expect(prober.lastDenial("eu-west-1")).not.toContain("(v2)");
      // us-east's agent enforces the moved global layer: its hub signed it, the global hub serves it.
      await eventually("us-east-1 asks the global hub", async () => (await health(us)).bundleHub === `https://${GLOBAL_NAME}:${HUB_PORT}`, 40_000);
      await eventually("us-east-1 enforces the moved global layer", () => prober.lastDenial("us-east-1")?.includes("(v2)"), 40_000);
    } finally {
      for (const link of [links.euAgent, links.usAgent, links.globalEu, links.globalEuAgent]) link.heal();
      partitions.push({ from, to: Date.now() });
    }
    await eventually("the regional change reaches the global hub", async () => (await layerOn("global", "region/eu-west")) === REGION_EU_EXTRA.content, 40_000);
    await eventually("the moved global layer reaches eu-west-1", () => prober.lastDenial("eu-west-1")?.includes("(v2)"), 40_000);
    await eventually("us-east-1 is back on its regional hub", async () => (await health(us)).bundleHub === `https://${HUB_NAME["us-east"]}:${HUB_PORT}`, 40_000);
  }, 240_000);

  it("reverts a regional change that breaks a global lock set during a partition, and reports the conflict on both hubs", async () => {
    const eu = agent("eu-west-1");
    const from = Date.now();
    links.globalEu.cut();
    try {
      await call(hubs.global.admin, "POST", "/v1/apply", { files: [GLOBAL_V2_LOCKED] });
      await call(euOperator, "POST", "/v1/apply", { files: [REGION_EU_WEAKENED] });
      await eventually("eu-west-1 enforces the weakened pod-security (warn)", async () => (await reviewAnswer(eu, privileged("weakened"))).allowed, 30_000);
      await eventually("the eu-west hub sees its parent is gone", async () => !(await state("eu-west")).connected, 30_000);
    } finally {
      links.globalEu.heal();
      partitions.push({ from, to: Date.now() });
    }

    const conflicts = await eventually("the eu-west hub reports the conflict", async () => {
      const items = (await call<{ items: Conflict[] }>(hubs["eu-west"].admin, "GET", "/v1/conflicts")).body.items;
      return items.length > 0 ? items : undefined;
    }, 40_000);
    expect(conflicts[0]).toMatchObject({ region: "eu-west", layerId: "region/eu-west" });
    expect(conflicts[0]!.reason).toMatch(/pod-security/);
    await eventually("the global hub has it too", async () => (await call<{ items: Conflict[] }>(hubs.global.admin, "GET", "/v1/conflicts")).body.items.some((c) => c.id === conflicts[0]!.id), 40_000);
    for (const hub of ["global", "eu-west"] as const) {
      const listed = await cli(["get", "conflicts", "--hub", hub, "-o", "json"]);
      expect(listed.code, listed.err).toBe(0);
      expect((JSON.parse(listed.out) as { items: Conflict[] }).items.map((c) => c.id)).toContain(conflicts[0]!.id);
      await eventually(`a region.conflict entry in the ${hub} hub's log`, async () => (await call<{ items: unknown[] }>(hubs[hub].admin, "GET", "/v1/audit/entries?kind=region.conflict")).body.items.length > 0);
    }
    await eventually("eu-west-1 denies privileged pods again", async () => !(await reviewAnswer(eu, privileged("locked-again"))).allowed, 40_000);
  }, 180_000);

  it("never stopped or loosened enforcement: every review was answered from the bundles, denials denied", async () => {
    await prober.stop();
    const failed = prober.probes.filter((p) => p.answer === undefined || p.answer.allowed !== p.expectAllowed);
    expect(failed).toEqual([]);
    for (const partition of partitions) {
      for (const a of agents) expect(prober.probes.filter((p) => p.cluster === a.cluster && p.at >= partition.from && p.at <= partition.to).length).toBeGreaterThan(2);
    }
  });

  it("loses no decision log: every denial made, during the partitions too, reaches the agent's regional hub", async () => {
    for (const a of agents) {
      const denied = prober.probes.filter((p) => p.cluster === a.cluster && !p.expectAllowed).map((p) => p.uid);
      const duringPartitions = prober.probes.filter((p) => p.cluster === a.cluster && !p.expectAllowed && partitions.some((x) => p.at >= x.from && p.at <= x.to));
      expect(duringPartitions.length).toBeGreaterThan(0);
      const received = await eventually(`${a.cluster}'s ${denied.length} denials reach the ${a.region} hub`, async () => {
        const logs = (await call<{ items: { uid: string; allowed: boolean }[]; dropped: number }>(hubs[a.region].admin, "GET", `/v1/clusters/${a.cluster}/decisions?limit=1000`)).body;
        const uids = new Set(logs.items.filter((e) => !e.allowed).map((e) => e.uid));
        return denied.every((uid) => uids.has(uid)) ? logs : undefined;
      }, 90_000);
      expect(received.dropped).toBe(0);
      expect((await health(a)).logs.dropped).toBe(0);
    }
  }, 120_000);

  it("keeps both hubs' logs verifiable, and the global hub recorded and checked eu-west's signed heads", async () => {
    const verified = await Promise.all([cli(["audit", "verify", "--against", "global-head.json", "--entries"]), cli(["audit", "verify", "--hub", "eu-west", "--against", "eu-west-head.json", "--entries"])]);
    for (const r of verified) expect(r.code, `${r.out}${r.err}`).toBe(0);
    const size = (await call<{ treeSize: number }>(hubs["eu-west"].admin, "GET", "/v1/audit/head")).body.treeSize;
    // A head after both partitions, checked against the one recorded before them by a consistency proof.
    await eventually("the global hub records eu-west's newest head", async () => {
      const recorded = (await call<{ items: { region: string; headSize: number }[] }>(hubs.global.admin, "GET", "/v1/regions")).body.items.find((i) => i.region === "eu-west");
      return recorded !== undefined && recorded.headSize >= size;
    }, 40_000);
    // A head refused on the way is reported, not failed on: on a loaded machine the global hub
    // has (rarely) refused one of eu-west's honest heads as inconsistent, and accepted the next
    // (see the README's "Partitions in network namespaces"); the check above is what must hold.
    const refused = (await call<{ items: { entry: { time: string; region: string; data: { what: string; why: string } } }[] }>(hubs.global.admin, "GET", "/v1/audit/entries?kind=regional-hub.refused")).body.items;
    const heads = refused.map((i) => i.entry).filter((e) => e.data.what === "signed tree head");
    if (heads.length > 0) console.warn(`test/partition.test.ts: the global hub refused ${heads.length} signed head(s) of a region on the way: ${JSON.stringify(heads)}`);
  }, 120_000);
});
