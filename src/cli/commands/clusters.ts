/** `polity cluster …` and `polity get clusters|cluster|effective`: clusters on a hub. */
import type { ClusterView, JoinToken } from "../../api/clusters.js";
import { parseLabels, stringOption, type Command } from "../command.js";
import { colors, EXIT, UsageError } from "../io.js";
import { age, endpoint, hubCall, HUB_HELP, HUB_OPTIONS, table } from "../hub-access.js";
import { parseDuration } from "../time.js";
import { outputFormat } from "../command.js";
import { readDocuments } from "../../files/read.js";

function agentText(x: ClusterView): string {
  if (x.agent === undefined || x.agent === null) return "no report";
  if (x.agent.inSync) return `in sync (${x.agent.stale === true ? "stale, " : ""}reported ${age(x.agent.reportedAt)} ago)`;
  return `behind: v${x.agent.bundleVersion ?? "-"}${x.agent.stale === true ? ", stale" : ""} (reported ${age(x.agent.reportedAt)} ago)`;
}

function one(positionals: readonly string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`give one ${what}`);
  return positionals[0]!;
}

const labelsText = (labels: Record<string, string>) => Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(",") || "<none>";

export const clusterRegisterCommand: Command = {
  name: "cluster register",
  summary: "register a cluster (name, region, labels)",
  usage: "polity cluster register <name> --region <region> [--labels k=v,…] [--facts file]\n       polity cluster register --file <clusters.yaml>",
  options: { ...HUB_OPTIONS, region: { type: "string" }, labels: { type: "string" }, facts: { type: "string" }, file: { type: "string" } },
  help: `Registers a cluster in a region, with labels that scopes and cluster selectors match.
The hub refuses it if the layers that would apply to it do not combine. Then mint a join
token (polity cluster join-token) for its agent to enrol with.

--facts <file> declares what the cluster can hold, as YAML or JSON: kubernetesVersion,
networkPolicy (whether its network plugin enforces NetworkPolicy), capacity and zones.
The hub then refuses any change (this registration included) whose intents the cluster
could not hold, naming the cluster, the intent and the field (polity policy render shows
what it would receive). Once its agent reads the API server it reports the version, zones
and capacity it sees, which the hub uses where present; networkPolicy stays as declared
(polity cluster status shows both).

--file <file> registers many clusters in one change, all or none: a YAML or JSON list of
clusters (or one per document), each with name, region and, optionally, labels (a map) and
facts (as above). At most 10,000 clusters and 8 MiB a file. One change plans, commits and signs their bundles
together: far faster than one registration each for a fleet.

${HUB_HELP}

Examples:
  polity cluster register eu-west-1 --region eu-west --labels env=prod,residency=eu
  polity cluster register --file fleet.yaml
    (fleet.yaml:  - {name: eu-west-1, region: eu-west, labels: {env: prod}}
                  - {name: us-east-1, region: us-east})`,
  async run(parsed, io) {
    const file = stringOption(parsed, "file");
    if (file !== undefined) return registerFile(file, parsed, io);
    const name = one(parsed.positionals, "cluster name");
    const region = stringOption(parsed, "region");
    if (region === undefined) throw new UsageError("give --region <region>");
    const labels = parseLabels(stringOption(parsed, "labels") ?? "", "--labels");
    const factsFile = stringOption(parsed, "facts");
    let facts: unknown;
    if (factsFile !== undefined) {
      const docs = readDocuments(factsFile);
      if (docs.length !== 1) throw new UsageError(`--facts ${factsFile}: expected one document, found ${docs.length}`);
      facts = docs[0]!.value;
    }
    const r = await hubCall<ClusterView>(endpoint(parsed, io), "POST", "/v1/clusters", { name, region, labels, ...(facts === undefined ? {} : { facts }) });
    io.out(`cluster ${r.name} registered in region ${r.region} (${r.effective.policies ?? 0} policies apply, ${r.effective.hash ?? ""})\n`);
    return EXIT.ok;
  },
};

/** `polity cluster register --file`: the clusters a file lists, in one change. */
async function registerFile(file: string, parsed: Parameters<Command["run"]>[0], io: Parameters<Command["run"]>[1]): Promise<number> {
  if (parsed.positionals.length > 0 || ["region", "labels", "facts"].some((o) => stringOption(parsed, o) !== undefined)) {
    throw new UsageError("--file lists the clusters with their regions, labels and facts: give no cluster name, --region, --labels or --facts with it");
  }
  const items = readDocuments(file).flatMap((d) => (Array.isArray(d.value) ? (d.value as unknown[]) : [d.value]));
  if (items.length === 0) throw new UsageError(`--file ${file}: no clusters in it`);
  if (items.length > 10_000) throw new UsageError(`--file ${file}: ${items.length} clusters; at most 10,000 a change (split the file)`);
  const bytes = Buffer.byteLength(JSON.stringify({ items }));
  if (bytes > 8 * 1024 * 1024) throw new UsageError(`--file ${file}: ${bytes} bytes as JSON; a change takes at most 8 MiB of clusters (split the file)`);
  const r = await hubCall<{ items: ClusterView[] }>(endpoint(parsed, io), "POST", "/v1/cluster-registrations", { items }, { timeoutMs: 300_000 });
  const regions = [...new Set(r.items.map((x) => x.region))].sort();
  io.out(`${r.items.length} cluster${r.items.length === 1 ? "" : "s"} registered in one change (region${regions.length === 1 ? "" : "s"} ${regions.join(", ")})\n`);
  return EXIT.ok;
}

export const clusterRelabelCommand: Command = {
  name: "cluster relabel",
  summary: "replace a cluster's labels",
  usage: "polity cluster relabel <name> --labels k=v,…",
  options: { ...HUB_OPTIONS, labels: { type: "string" } },
  help: `Replaces the cluster's labels (all of them: give the full set). The hub refuses the change
if the cluster's layers would not combine with the new labels.

${HUB_HELP}

Example:
  polity cluster relabel eu-west-1 --labels env=prod,residency=eu,tier=gold`,
  async run(parsed, io) {
    const name = one(parsed.positionals, "cluster name");
    const text = stringOption(parsed, "labels");
    if (text === undefined) throw new UsageError("give --labels k=v,… (the complete set; --labels '' removes them all)");
    const r = await hubCall<ClusterView>(endpoint(parsed, io), "PATCH", `/v1/clusters/${encodeURIComponent(name)}`, { labels: parseLabels(text, "--labels") });
    io.out(`cluster ${r.name} relabelled: ${labelsText(r.labels)} (${r.effective.hash ?? r.effective.error})\n`);
    return EXIT.ok;
  },
};

export const clusterRemoveCommand: Command = {
  name: "cluster remove",
  summary: "remove a cluster (its identity is revoked)",
  usage: "polity cluster remove <name>",
  options: { ...HUB_OPTIONS },
  help: `Removes a cluster: its certificates are revoked and its join tokens void. Its cluster layer,
if it has one, stays (with its history).

${HUB_HELP}

Example:
  polity cluster remove eu-west-1`,
  async run(parsed, io) {
    const name = one(parsed.positionals, "cluster name");
    await hubCall(endpoint(parsed, io), "DELETE", `/v1/clusters/${encodeURIComponent(name)}`);
    io.out(`cluster ${name} removed\n`);
    return EXIT.ok;
  },
};

export const clusterJoinTokenCommand: Command = {
  name: "cluster join-token",
  summary: "mint a one-time join token for a cluster's agent",
  usage: "polity cluster join-token <name> [--ttl 1h]",
  options: { ...HUB_OPTIONS, ttl: { type: "string" } },
  help: `Mints a join token bound to the cluster: it admits one enrolment, before it expires
(default in 1 h). It is printed once; the hub keeps only its hash.

${HUB_HELP}

Example:
  polity cluster join-token eu-west-1 --ttl 30m`,
  async run(parsed, io) {
    const name = one(parsed.positionals, "cluster name");
    const ttl = parseDuration(stringOption(parsed, "ttl") ?? "1h", "--ttl");
    const r = await hubCall<JoinToken>(endpoint(parsed, io), "POST", `/v1/clusters/${encodeURIComponent(name)}/join-tokens`, { ttlSeconds: Math.round(ttl / 1000) });
    if (stringOption(parsed, "output") === "json") io.out(`${JSON.stringify(r)}\n`);
    else {
      io.out(`${r.token}\n`);
      io.err(`join token for cluster ${name}, single use, expires ${r.expiresAt}\n`);
    }
    return EXIT.ok;
  },
};

export const clusterRevokeCommand: Command = {
  name: "cluster revoke",
  summary: "revoke a cluster's identity at once, on every hub",
  usage: "polity cluster revoke <name>",
  options: { ...HUB_OPTIONS },
  help: `Revokes the cluster's certificates: every hub refuses them from the next request on, and
the revocation list (GET /v1/crl) carries their serials. The cluster stays registered.

${HUB_HELP}

Example:
  polity cluster revoke eu-west-1`,
  async run(parsed, io) {
    const name = one(parsed.positionals, "cluster name");
    const r = await hubCall<{ certificates: number }>(endpoint(parsed, io), "POST", `/v1/clusters/${encodeURIComponent(name)}/revoke`);
    io.out(`cluster ${name} revoked (${r.certificates} certificate${r.certificates === 1 ? "" : "s"})\n`);
    return EXIT.ok;
  },
};

export const getClustersCommand: Command = {
  name: "get clusters",
  summary: "registered clusters, with labels and effective-set hashes",
  usage: "polity get clusters [-o text|json]",
  options: { ...HUB_OPTIONS },
  help: `Lists the clusters you may read.

${HUB_HELP}

Example:
  polity get clusters`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const r = await hubCall<{ items: ClusterView[] }>(endpoint(parsed, io), "GET", "/v1/clusters");
    if (format === "json") io.out(`${JSON.stringify(r, null, 2)}\n`);
    else {
      const c = colors(io);
      table(
        io,
        ["NAME", "REGION", "LABELS", "POLICIES", "EFFECTIVE", "BUNDLE", "AGENT", "AGE"],
        r.items.map((x) => [
          x.revokedAt === null ? x.name : `${x.name} ${c.red("(revoked)")}`,
          x.region,
          labelsText(x.labels),
          String(x.effective.policies ?? "-"),
          x.effective.hash === undefined ? `error: ${x.effective.error}` : `${x.effective.hash.slice(0, 19)}…`,
          x.bundle === undefined || x.bundle === null ? "-" : `v${x.bundle}`,
          agentText(x),
          age(x.createdAt),
        ]),
      );
    }
    return EXIT.ok;
  },
};

export const getClusterCommand: Command = {
  name: "get cluster",
  summary: "one cluster: labels, identity, effective set",
  usage: "polity get cluster <name> [-o text|json]",
  options: { ...HUB_OPTIONS },
  help: `Shows a cluster with its latest certificates.

${HUB_HELP}

Example:
  polity get cluster eu-west-1`,
  async run(parsed, io) {
    const name = one(parsed.positionals, "cluster name");
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const r = await hubCall<ClusterView & { certificates: { serial: string; notAfter: string; revokedAt: string | null }[] }>(endpoint(parsed, io), "GET", `/v1/clusters/${encodeURIComponent(name)}`);
    if (format === "json") io.out(`${JSON.stringify(r, null, 2)}\n`);
    else {
      io.out(`name       ${r.name}\nregion     ${r.region}\nlabels     ${labelsText(r.labels)}\nregistered ${r.createdAt}${r.revokedAt === null ? "" : `\nrevoked    ${r.revokedAt}`}\n`);
      io.out(`effective  ${r.effective.hash ?? `error: ${r.effective.error}`} (${r.effective.policies ?? 0} policies)\n`);
      io.out(`bundle     ${r.bundle === undefined || r.bundle === null ? "-" : `v${r.bundle}`}; agent: ${agentText(r)}\n`);
      for (const cert of r.certificates) io.out(`certificate ${cert.serial} until ${cert.notAfter}${cert.revokedAt === null ? "" : " (revoked)"}\n`);
    }
    return EXIT.ok;
  },
};

export const getEffectiveCommand: Command = {
  name: "get effective",
  summary: "a cluster's effective policy set, as the hub computes it",
  usage: "polity get effective <cluster> [-o text|json]",
  options: { ...HUB_OPTIONS },
  help: `Prints the cluster's effective policy set and its hash (the same as polity policy
effective computes from files).

${HUB_HELP}

Example:
  polity get effective eu-west-1 -o json`,
  async run(parsed, io) {
    const name = one(parsed.positionals, "cluster name");
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const r = await hubCall<{ hash: string; effectivePolicySet: { policies: { name: string; enforcement: string; locked: boolean; tier: string }[] } }>(endpoint(parsed, io), "GET", `/v1/clusters/${encodeURIComponent(name)}/effective`);
    if (format === "json") io.out(`${JSON.stringify(r, null, 2)}\n`);
    else {
      io.out(`${r.hash}\n`);
      table(io, ["POLICY", "ENFORCEMENT", "LOCKED", "FROM"], r.effectivePolicySet.policies.map((p) => [p.name, p.enforcement, p.locked ? "yes" : "", p.tier]));
    }
    return EXIT.ok;
  },
};
