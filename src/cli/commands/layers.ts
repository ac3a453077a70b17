/** `polity apply`, `polity diff`, `polity history`, `polity get layers|layer`: layers on a hub. */
import { readFileSync } from "node:fs";
import type { ApplyResult, DeprecationView, DiffResult, LayerHistory, LayerSummary, LayerVersion } from "../../api/layers.js";
import { listDocumentFiles, displayPath } from "../../files/read.js";
import { flag, outputFormat, stringOption, stringsOption, type Command, type Parsed } from "../command.js";
import { printable } from "../../policy/names.js";
import { parseDuration } from "../time.js";
import { colors, EXIT, UsageError, type Io } from "../io.js";
import { age, changeCall, endpoint, hubCall, HUB_HELP, HUB_OPTIONS, table } from "../hub-access.js";
import { ROLLOUT_HELP, ROLLOUT_OPTIONS, rolloutFromFlags } from "./rollouts.js";

/** The files of `-f <file|folder>…` (and positional paths), as the hub reads them. */
export function layerFiles(parsed: Parsed): { name: string; content: string }[] {
  const paths = [...stringsOption(parsed, "filename"), ...parsed.positionals];
  if (paths.length === 0) throw new UsageError("give the layer files or folders with -f <file|folder>");
  const out: { name: string; content: string }[] = [];
  for (const path of paths) {
    for (const file of listDocumentFiles(path)) out.push({ name: displayPath(file), content: readFileSync(file, "utf8") });
  }
  if (out.length === 0) throw new UsageError(`no YAML or JSON files under ${paths.join(", ")}`);
  return out;
}

export const applyCommand: Command = {
  name: "apply",
  summary: "apply layer files to the hub: a new version of each changed layer",
  usage: "polity apply -f <file|folder>… [--dry-run] [--canary <cluster,…> [--wave <k=v,…>]… [--soak 60s] …]",
  options: { ...HUB_OPTIONS, ...ROLLOUT_OPTIONS, filename: { type: "string", short: "f", multiple: true }, "dry-run": { type: "boolean" } },
  help: `Sends layer files (YAML or JSON) to the hub. Each Layer document says which layer its
files describe (global, a region, a cluster); a folder may hold several layers, one per
file. The hub validates every document and expression, then combines each changed layer
with the others for every registered cluster it reaches; if any cluster's layers would not
combine (a weakened lock, a param out of bounds, a protected domain set from above), the
whole apply is refused with the engine's errors, file:line:column and all. Otherwise each
changed layer gets a new version, by you; unchanged layers are left as they are.

Flags:
  -f, --filename <file|folder>   layer files (repeatable)
      --dry-run                  validate and show the effect, write nothing

${ROLLOUT_HELP}

${HUB_HELP}

Examples:
  polity apply -f examples/layers/
  polity apply -f region-eu-west.yaml --dry-run
  polity apply -f global.yaml --canary eu-west-1 --wave region=eu-west --soak 30s

The change goes with an Idempotency-Key: when the hub cannot be reached or its answer is
lost, it is sent again (up to three times) with the same key, and the hub, which commits
a key's change once, answers a repeat with what it committed. So the command always says
whether the change went through.

Exit status: 0 when applied (or valid, with --dry-run), 2 when refused or unreachable.`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const rollout = rolloutFromFlags(parsed);
    const result = await changeCall<ApplyResult>(endpoint(parsed, io), "/v1/apply", { files: layerFiles(parsed), dryRun: flag(parsed, "dry-run"), ...(rollout === undefined ? {} : { rollout }) }, io);
    if (format === "json") {
      io.out(`${JSON.stringify(result, null, 2)}\n`);
      return EXIT.ok;
    }
    const c = colors(io);
    for (const layer of result.layers) {
      const what = layer.unchanged ? c.dim("unchanged") : result.dryRun ? `would become version ${layer.version}` : c.green(`version ${layer.version}`);
      io.out(`layer ${layer.id}: ${what}\n`);
    }
    if (result.replayed === true) {
      io.out(`committed (the hub's first answer was lost; this is the change it committed, correlation id ${result.correlationId ?? "-"})\n`);
      return EXIT.ok;
    }
    const changed = result.clusters.filter((x) => x.changed);
    io.out(`${result.clusters.length} cluster${result.clusters.length === 1 ? "" : "s"} reached, ${changed.length} with a new effective policy set${result.dryRun ? " (dry run: nothing written)" : ""}\n`);
    if (result.rollout !== undefined) io.out(`rollout ${result.rollout} started: the canary first, then stage by stage (polity rollout status ${result.rollout})\n`);
    return EXIT.ok;
  },
};

export const diffCommand: Command = {
  name: "diff",
  summary: "what applying layer files would do to each cluster's effective policy set",
  usage: "polity diff -f <file|folder>… [--impact [--impact-timeout 10s]]",
  options: { ...HUB_OPTIONS, filename: { type: "string", short: "f", multiple: true }, impact: { type: "boolean" }, "impact-timeout": { type: "string" } },
  help: `Computes, without writing anything, each registered cluster's effective policy set
with the given layer files applied, and prints per cluster the policies that would be
added, removed or changed (and which of their fields). A change that would be refused
prints the refusal instead.

With --impact, also what the change would do: the hub sends each changed cluster's
candidate set to its agent, which decides its recorded admission requests (its own window:
the last 24 hours or 100,000 requests, encrypted on its disk; they never leave the cluster)
under the set it enforces and under the candidate, and answers with the requests newly
denied, newly allowed and newly warned, per policy and rule, with a few examples named by
kind, namespace and name. Clusters whose agent does not answer within --impact-timeout are
named.

Flags:
  -f, --filename <file|folder>   layer files (repeatable)
      --impact                   ask the agents what the change would do to their recorded requests
      --impact-timeout <dur>     how long to wait for their answers (default 10s, at most 60s)

${HUB_HELP}

Examples:
  polity diff -f examples/layers/region-eu-west.yaml
  polity diff -f examples/changes/deny-unowned-pods.yaml --impact

Exit status: 0 when nothing would change, 1 when something would, 2 when the change would be refused.`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const impact = flag(parsed, "impact");
    const rawTimeout = stringOption(parsed, "impact-timeout");
    if (rawTimeout !== undefined && !impact) throw new UsageError("--impact-timeout goes with --impact");
    const timeoutSeconds = rawTimeout === undefined ? 10 : Math.round(parseDuration(rawTimeout, "--impact-timeout") / 1000);
    if (timeoutSeconds < 1 || timeoutSeconds > 60) throw new UsageError(`--impact-timeout must be from 1s to 60s, got ${JSON.stringify(rawTimeout)}`);
    const result = await hubCall<DiffResult>(endpoint(parsed, io), "POST", "/v1/diff", { files: layerFiles(parsed), ...(impact ? { impact: { timeoutSeconds } } : {}) }, { timeoutMs: (timeoutSeconds + 30) * 1000 });
    const changes = result.clusters.filter((x) => x.before !== x.after);
    if (format === "json") {
      io.out(`${JSON.stringify(result, null, 2)}\n`);
      return changes.length === 0 ? EXIT.ok : EXIT.failed;
    }
    printDiff(io, result, timeoutSeconds);
    return changes.length === 0 ? EXIT.ok : EXIT.failed;
  },
};

function layerPath(id: string): string {
  if (id === "global") return "/v1/layers/global";
  const m = /^(region|cluster)\/([a-z0-9][-a-z0-9.]*)$/.exec(id);
  if (m === null) throw new UsageError(`a layer is global, region/<name> or cluster/<name>, got ${JSON.stringify(id)}`);
  return `/v1/layers/${m[1]}/${m[2]}`;
}

export const historyCommand: Command = {
  name: "history",
  summary: "every version of a layer: who changed it, when, its content hash",
  usage: "polity history <global|region/<name>|cluster/<name>> [--version <n>]",
  options: { ...HUB_OPTIONS, version: { type: "string" } },
  help: `Lists the versions of a layer, oldest first. With --version, prints that version's files.

${HUB_HELP}

Examples:
  polity history global
  polity history region/eu-west --version 2

Exit status: 0, or 2 when the layer does not exist or the hub cannot be reached.`,
  async run(parsed, io) {
    const id = parsed.positionals[0];
    if (id === undefined || parsed.positionals.length > 1) throw new UsageError("give one layer: global, region/<name> or cluster/<name>");
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const ep = endpoint(parsed, io);
    const version = parsed.values.version;
    if (typeof version === "string") {
      const v = await hubCall<LayerVersion>(ep, "GET", `${layerPath(id)}/versions/${encodeURIComponent(version)}`);
      if (format === "json") io.out(`${JSON.stringify(v, null, 2)}\n`);
      else for (const f of v.files) io.out(`# ${f.name} (version ${v.version}, by ${v.author}, ${v.createdAt})\n${f.content}${f.content.endsWith("\n") ? "" : "\n"}`);
      return EXIT.ok;
    }
    const h = await hubCall<LayerHistory>(ep, "GET", `${layerPath(id)}/history`);
    if (format === "json") io.out(`${JSON.stringify(h, null, 2)}\n`);
    else table(io, ["VERSION", "AGE", "AUTHOR", "CONTENT", "FILES"], h.items.map((i) => [String(i.version), age(i.createdAt), i.author, `${i.contentHash.slice(0, 19)}…`, i.deleted ? "(deleted)" : i.files.join(", ")]));
    return EXIT.ok;
  },
};

export const getLayersCommand: Command = {
  name: "get layers",
  summary: "the layers on the hub and their current versions",
  usage: "polity get layers [-o text|json]",
  options: { ...HUB_OPTIONS },
  help: `Lists the layers you may read, with their current version, author and size.

${HUB_HELP}

Example:
  polity get layers`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const r = await hubCall<{ items: LayerSummary[] }>(endpoint(parsed, io), "GET", "/v1/layers");
    if (format === "json") io.out(`${JSON.stringify(r, null, 2)}\n`);
    else table(io, ["LAYER", "VERSION", "POLICIES", "EXCEPTIONS", "AGE", "AUTHOR"], r.items.map((l) => [l.id, String(l.version), l.deleted ? "-" : String(l.policies), l.deleted ? "-" : String(l.exceptions), age(l.createdAt), l.author]));
    return EXIT.ok;
  },
};

export const getDeprecationsCommand: Command = {
  name: "get deprecations",
  summary: "policies on their way out: when each is retired, what replaces it, why",
  usage: "polity get deprecations [-o text|json]",
  options: { ...HUB_OPTIONS },
  help: `Lists the policies whose defining document carries spec.deprecation, soonest first. Until
its date, every decision a deprecated policy takes part in carries a warning naming its
replacement; after it, applying its layer is refused until the policy is removed or given a
new date.

  spec:
    deprecation: { after: "2027-06-30", replacement: pod-security, reason: "PSA covers it" }

${HUB_HELP}

Example:
  polity get deprecations`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const r = await hubCall<{ items: DeprecationView[] }>(endpoint(parsed, io), "GET", "/v1/deprecations");
    if (format === "json") io.out(`${JSON.stringify(r, null, 2)}\n`);
    else if (r.items.length === 0) io.out("no policy is deprecated\n");
    else
      table(
        io,
        ["POLICY", "LAYER", "OWNER", "RETIRED AFTER", "", "REPLACEMENT", "REASON"],
        r.items.map((d) => [d.policy, d.layer, d.owner ?? "", d.after, d.retired ? "(past: apply refuses to keep it)" : age(new Date(Date.parse(d.after)).toISOString()), d.replacement ?? "", d.reason ?? ""]),
      );
    return EXIT.ok;
  },
};

export const getLayerCommand: Command = {
  name: "get layer",
  summary: "a layer's current files",
  usage: "polity get layer <global|region/<name>|cluster/<name>> [-o text|json]",
  options: { ...HUB_OPTIONS },
  help: `Prints the files of a layer's current version, as applied.

${HUB_HELP}

Example:
  polity get layer region/eu-west`,
  async run(parsed, io) {
    const id = parsed.positionals[0];
    if (id === undefined) throw new UsageError("give a layer: global, region/<name> or cluster/<name>");
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const r = await hubCall<LayerVersion>(endpoint(parsed, io), "GET", layerPath(id));
    if (format === "json") io.out(`${JSON.stringify(r, null, 2)}\n`);
    else for (const f of r.files) io.out(`# ${f.name} (version ${r.version}, by ${r.author})\n${f.content}${f.content.endsWith("\n") ? "" : "\n"}`);
    return EXIT.ok;
  },
};

/** A diff as text: per cluster, the policies added, removed and changed, and, when asked, the impact its agent answered. */
export function printDiff(io: Io, result: DiffResult, timeoutSeconds: number): void {
  const changes = result.clusters.filter((x) => x.before !== x.after);
  const c = colors(io);
  for (const layer of result.layers) io.out(`layer ${layer.id}: ${layer.unchanged ? "unchanged" : layer.baseVersion === 0 ? "new" : `changes version ${layer.baseVersion}`}\n`);
  for (const x of result.clusters) {
    if (x.before === x.after) continue;
    io.out(`cluster ${c.bold(x.cluster)}: ${x.before?.slice(0, 19) ?? "(none)"}… → ${x.after.slice(0, 19)}…\n`);
    for (const p of x.added) io.out(`  ${c.green("+")} ${p}\n`);
    for (const p of x.removed) io.out(`  ${c.red("-")} ${p}\n`);
    for (const p of x.changed) io.out(`  ${c.yellow("~")} ${p.policy} (${p.fields.join(", ")})\n`);
    if (x.exceptions.before !== x.exceptions.after) io.out(`  ${c.yellow("~")} exceptions ${x.exceptions.before} → ${x.exceptions.after}\n`);
    const answer = result.impact?.clusters.find((i) => i.cluster === x.cluster);
    if (answer === undefined) continue;
    const i = answer.impact;
    if (i === null) {
      io.out(`  impact: ${c.yellow("its agent did not answer in time")}\n`);
      continue;
    }
    io.out(`  impact over ${i.requests} recorded request${i.requests === 1 ? "" : "s"}: ${i.newlyDenied} newly denied, ${i.newlyAllowed} newly allowed, ${i.newlyWarned} newly warned${i.undecidable > 0 ? `, ${i.undecidable} undecidable` : ""}\n`);
    for (const r of i.byRule) {
      const counts = [r.newlyDenied > 0 ? c.red(`${r.newlyDenied} newly denied`) : "", r.newlyAllowed > 0 ? c.green(`${r.newlyAllowed} newly allowed`) : "", r.newlyWarned > 0 ? c.yellow(`${r.newlyWarned} newly warned`) : ""].filter((t) => t !== "").join(", ");
      const examples = r.examples.map((e) => `${e.kind} ${[e.namespace, e.name].filter((t) => t !== null).map((t) => printable(t)).join("/")}`).join(", ");
      io.out(`    ${printable(r.policy)}/${printable(r.rule)}: ${counts}${examples === "" ? "" : ` (e.g. ${examples})`}\n`);
    }
  }
  if (result.impact !== undefined && result.impact.unanswered.length > 0) io.out(`no impact from ${result.impact.unanswered.join(", ")}: their agents did not answer within ${timeoutSeconds}s\n`);
  io.out(`${changes.length} of ${result.clusters.length} cluster${result.clusters.length === 1 ? "" : "s"} would change\n`);
}
