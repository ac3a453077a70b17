/** `polity rollout list|status|pause|resume|abort|rollback`, and the rollout flags of `polity apply`. */
import type { RolloutRequest, RolloutView } from "../../api/rollouts.js";
import { ROLLOUT_STATES } from "../../api/rollouts.js";
import { printable } from "../../policy/names.js";
import { flag, outputFormat, parseLabels, stringOption, stringsOption, type Command, type Options, type Parsed } from "../command.js";
import { EXIT, UsageError, type Io } from "../io.js";
import { age, endpoint, hubCall, HUB_HELP, HUB_OPTIONS, table } from "../hub-access.js";
import { parseDuration } from "../time.js";

/** The flags of `polity apply` that make its change a staged rollout. */
export const ROLLOUT_OPTIONS: Options = {
  canary: { type: "string" },
  "canary-selector": { type: "string" },
  wave: { type: "string", multiple: true },
  "max-clusters": { type: "string" },
  soak: { type: "string" },
  "report-timeout": { type: "string" },
  "on-silent": { type: "string" },
  "max-errors": { type: "string" },
  "max-denial-increase": { type: "string" },
  "min-requests": { type: "string" },
  "max-p99": { type: "string" },
  emergency: { type: "boolean" },
};

export const ROLLOUT_HELP = `Staged rollout (a change of one layer, canary → waves → the rest; see polity rollout --help):
      --canary <cluster,…>           the canary clusters, by name
      --canary-selector <k=v,…>      or by labels (region=<r> is the cluster's region)
      --wave <k=v,…>                 a wave after the canary, by labels (repeatable, in order)
      --max-clusters <n>             at most n clusters per stage of a wave or the rest (10)
      --soak <duration>              how long a stage's gates must hold (60s)
      --report-timeout <duration>    how long a cluster may stay silent in its stage (5m)
      --on-silent skip|wait          then: go on without it (skip), or wait for it
      --max-errors <n>               evaluation errors allowed per cluster (0)
      --max-denial-increase <x>      denial rate allowed above the cluster's baseline (0.10)
      --min-requests <n>             decisions needed before the denial rate is judged (5)
      --max-p99 <duration>           the webhook's p99 bound (50ms; us, ms or s)
      --emergency                    move on once acknowledged, without soak or other gates (recorded)`;

function whole(parsed: Parsed, name: string, min: number): number | undefined {
  const raw = stringOption(parsed, name);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < min) throw new UsageError(`--${name} must be a whole number of at least ${min}, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

function micros(raw: string): number {
  const m = /^(\d+)(us|ms|s)$/.exec(raw.trim());
  if (m === null) throw new UsageError(`--max-p99 must be a duration such as 800us, 50ms or 1s, got ${JSON.stringify(raw)}`);
  return Number(m[1]) * { us: 1, ms: 1000, s: 1_000_000 }[m[2] as "us" | "ms" | "s"];
}

/** The rollout `polity apply`'s flags ask for; undefined without --canary or --canary-selector. */
export function rolloutFromFlags(parsed: Parsed): RolloutRequest | undefined {
  const names = stringOption(parsed, "canary");
  const selector = stringOption(parsed, "canary-selector");
  const others = Object.keys(ROLLOUT_OPTIONS).filter((o) => o !== "canary" && o !== "canary-selector" && parsed.values[o] !== undefined);
  if (names === undefined && selector === undefined) {
    if (others.length > 0) throw new UsageError(`--${others[0]} belongs to a staged rollout: give its canary with --canary or --canary-selector`);
    return undefined;
  }
  if (names !== undefined && selector !== undefined) throw new UsageError("give the canary by --canary or by --canary-selector, not both");
  const seconds = (name: string) => {
    const raw = stringOption(parsed, name);
    return raw === undefined ? undefined : Math.round(parseDuration(raw, `--${name}`) / 1000);
  };
  const onSilent = stringOption(parsed, "on-silent");
  if (onSilent !== undefined && onSilent !== "skip" && onSilent !== "wait") throw new UsageError(`--on-silent must be skip or wait, got ${JSON.stringify(onSilent)}`);
  const increase = stringOption(parsed, "max-denial-increase");
  if (increase !== undefined && !(/^(0(\.\d+)?|1(\.0+)?)$/.test(increase))) throw new UsageError(`--max-denial-increase must be a fraction from 0 to 1 (0.1 is ten points), got ${JSON.stringify(increase)}`);
  const p99 = stringOption(parsed, "max-p99");
  const request: Record<string, unknown> = {
    canary: names !== undefined ? { clusters: names.split(",").map((n) => n.trim()).filter((n) => n !== "") } : { selector: parseLabels(selector!, "--canary-selector") },
    waves: stringsOption(parsed, "wave").map((w) => ({ selector: parseLabels(w, "--wave") })),
    maxClusters: whole(parsed, "max-clusters", 1),
    soakSeconds: seconds("soak"),
    reportTimeoutSeconds: seconds("report-timeout"),
    onSilent,
    maxErrors: whole(parsed, "max-errors", 0),
    maxDenialIncrease: increase === undefined ? undefined : Number(increase),
    minRequests: whole(parsed, "min-requests", 1),
    maxP99Micros: p99 === undefined ? undefined : micros(p99),
    emergency: flag(parsed, "emergency") ? true : undefined,
  };
  return Object.fromEntries(Object.entries(request).filter(([, v]) => v !== undefined)) as unknown as RolloutRequest;
}

function describe(r: RolloutView): string {
  const lines = [`rollout ${r.id}: layer ${r.layer}, version ${r.fromVersion} → ${r.toVersion}${r.emergency ? " (emergency: gates skipped but acknowledgement)" : ""}`];
  lines.push(`  state      ${r.state}${r.reason === null ? "" : `: ${printable(r.reason)}`}`);
  lines.push(`  started    by ${r.createdBy}, ${r.createdAt}`);
  const s = r.settings;
  lines.push(`  gates      soak ${s.soakSeconds}s; errors ≤ ${s.maxErrors}; denial rate ≤ baseline + ${Math.round(s.maxDenialIncrease * 1000) / 10}% (from ${s.minRequests} decisions); p99 ≤ ${s.maxP99Micros} µs; silent after ${s.reportTimeoutSeconds}s: ${s.onSilent}`);
  lines.push("  stages");
  r.stages.forEach((stage, i) => {
    const mark =
      stage.state === "current"
        ? r.state === "paused"
          ? "current, paused"
          : r.soakSince === null
            ? "current, waiting for acknowledgements"
            : `current, soaking since ${r.soakSince}`
        : stage.state;
    lines.push(`    ${i}. ${stage.name} [${mark}]`);
    for (const c of r.clusters.filter((x) => x.stage === i)) lines.push(`       ${c.cluster.padEnd(24)} ${c.state}${c.note === null ? "" : `  (${printable(c.note)})`}`);
  });
  if (r.gates.length > 0) {
    lines.push(`  gates of stage ${r.stage}, as last measured${r.judgedInMs === null ? "" : ` (judged in ${r.judgedInMs} ms)`}`);
    for (const g of r.gates) lines.push(`    ${g.holds ? "✓" : "✗"} ${g.cluster.padEnd(24)} ${g.gate.padEnd(12)} ${printable(g.measured)}  (bound ${printable(g.bound)})`);
  }
  lines.push(`  audit      polity audit search --correlation ${r.correlationId}`);
  return `${lines.join("\n")}\n`;
}

function print(io: Io, parsed: Parsed, r: RolloutView): number {
  if (outputFormat(parsed, ["text", "json"] as const, "text") === "json") io.out(`${JSON.stringify(r, null, 2)}\n`);
  else io.out(describe(r));
  return EXIT.ok;
}

const ROLLOUT_TEACHING = `A rollout moves a change of one layer to its clusters stage by stage: the canary, then
the waves, then the rest. It starts with 'polity apply --canary …' (see polity apply --help).
Each stage publishes its clusters' bundles, measures each cluster's baseline (its denial
rate under the bundle it had), waits until every cluster acknowledged, then holds the gates
for the soak time: no evaluation errors, the denial rate within the bound of the baseline,
the webhook's p99 within its bound. A gate that fails rolls the change back by itself: the
previous content is written as a new version of the layer and published at higher bundle
versions. A cluster silent past the report timeout is skipped or waited for.`;

/** The rollout named, or the newest (a running or paused one first). */
async function named(parsed: Parsed, io: Io): Promise<RolloutView> {
  if (parsed.positionals.length > 1) throw new UsageError("give at most one rollout id (polity rollout list shows them)");
  const id = parsed.positionals[0];
  const ep = endpoint(parsed, io);
  if (id !== undefined) return hubCall<RolloutView>(ep, "GET", `/v1/rollouts/${encodeURIComponent(id)}`);
  const { items } = await hubCall<{ items: RolloutView[] }>(ep, "GET", "/v1/rollouts");
  const newest = [...items].reverse().find((r) => r.state === "running" || r.state === "paused") ?? items.at(-1);
  if (newest === undefined) throw new UsageError("there is no rollout yet: start one with polity apply --canary <cluster> -f <files>");
  return newest;
}

export const rolloutListCommand: Command = {
  name: "rollout list",
  summary: "rollouts: running, paused, completed, rolled back, aborted",
  usage: `polity rollout list [--state ${ROLLOUT_STATES.join("|")}] [-o text|json]`,
  options: { ...HUB_OPTIONS, state: { type: "string" } },
  help: `Lists the rollouts of the layers you may read, oldest first.

${ROLLOUT_TEACHING}

${HUB_HELP}

Example:
  polity rollout list --state running`,
  async run(parsed, io) {
    const state = stringOption(parsed, "state");
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const r = await hubCall<{ items: RolloutView[] }>(endpoint(parsed, io), "GET", `/v1/rollouts${state === undefined ? "" : `?state=${encodeURIComponent(state)}`}`);
    if (format === "json") io.out(`${JSON.stringify(r, null, 2)}\n`);
    else
      table(
        io,
        ["ID", "LAYER", "VERSIONS", "STATE", "STAGE", "CLUSTERS", "AGE", "REASON"],
        r.items.map((x) => [
          x.id,
          x.layer,
          `${x.fromVersion}→${x.toVersion}`,
          x.state,
          `${Math.min(x.stage + 1, x.stages.length)}/${x.stages.length} ${x.stages[x.stage]?.name ?? ""}`,
          String(x.clusters.length),
          age(x.createdAt),
          printable(x.reason ?? ""),
        ]),
      );
    return EXIT.ok;
  },
};

export const rolloutStatusCommand: Command = {
  name: "rollout status",
  summary: "one rollout: each stage, each cluster's state, each gate against its bound",
  usage: "polity rollout status [ID] [-o text|json]",
  options: { ...HUB_OPTIONS },
  help: `Shows one rollout (the one under way, or the newest, without an ID): each stage and its
clusters, each cluster's state (pending, updating, acknowledged, silent, skipped, failed; once a
rollout ended without completing: rolled-back or not-reached),
each gate of the current stage as last measured against its bound, and why it ended.

${ROLLOUT_TEACHING}

${HUB_HELP}

Example:
  polity rollout status 3f9c0a1b2c4d`,
  async run(parsed, io) {
    return print(io, parsed, await named(parsed, io));
  },
};

const act = (what: "pause" | "resume" | "abort" | "rollback", summary: string, help: string): Command => ({
  name: `rollout ${what}`,
  summary,
  usage: `polity rollout ${what} [ID]${what === "abort" || what === "rollback" ? " [--reason <text>]" : ""}`,
  options: what === "abort" || what === "rollback" ? { ...HUB_OPTIONS, reason: { type: "string" } } : { ...HUB_OPTIONS },
  help: `${help}

Without an ID: the rollout under way (or, for rollback, the newest).

${HUB_HELP}

Example:
  polity rollout ${what} 3f9c0a1b2c4d`,
  async run(parsed, io) {
    const target = await named(parsed, io);
    const reason = stringOption(parsed, "reason");
    return print(io, parsed, await hubCall<RolloutView>(endpoint(parsed, io), "POST", `/v1/rollouts/${target.id}/${what}`, reason === undefined ? {} : { reason }));
  },
});

export const rolloutPauseCommand = act("pause", "pause a running rollout", "Pauses a running rollout: no stage starts or is judged; every cluster keeps what it has.");
export const rolloutResumeCommand = act("resume", "resume a paused rollout", "Resumes a paused rollout: its current stage's soak starts again.");
export const rolloutAbortCommand = act(
  "abort",
  "abort a rollout: every cluster back to the previous content",
  "Aborts a running or paused rollout: the layer's previous content is written as a new version\nand published to the clusters that had the new one, at higher bundle versions.",
);
export const rolloutRollbackCommand = act(
  "rollback",
  "roll a rollout back, also a completed one",
  "Rolls a rollout back, running, paused or completed (while its layer has not moved on since):\nthe layer's previous content is written as a new version and published at higher bundle versions.",
);
