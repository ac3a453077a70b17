/** `polity propose`, `polity proposal list|show|approve|reject|apply`: changes reviewed by the teams they touch. */
import type { ProposalView } from "../../api/proposals.js";
import { PROPOSAL_STATES } from "../../api/proposals.js";
import { printable } from "../../policy/names.js";
import { flag, outputFormat, stringOption, type Command, type Parsed } from "../command.js";
import { EXIT, UsageError, type Io } from "../io.js";
import { age, endpoint, hubCall, HUB_HELP, HUB_OPTIONS, table } from "../hub-access.js";
import type { DiffResult } from "../../api/layers.js";
import { parseDuration } from "../time.js";
import { layerFiles, printDiff } from "./layers.js";
import { ROLLOUT_HELP, ROLLOUT_OPTIONS, rolloutFromFlags } from "./rollouts.js";

function describe(p: ProposalView): string {
  const lines = [`proposal ${p.id}${p.title === null ? "" : `: ${printable(p.title)}`}`, `  state       ${p.state}${p.stale ? " (stale: a layer it changes moved on; propose it again)" : ""}`];
  lines.push(`  proposed by ${p.proposedBy}, ${p.proposedAt}`);
  for (const l of p.layers) {
    const what = [...l.added.map((d) => `+${d}`), ...l.removed.map((d) => `-${d}`), ...l.changed.map((d) => `~${d}`)].join(" ");
    lines.push(`  layer       ${l.id} (proposed on version ${l.baseVersion}${l.currentVersion === l.baseVersion ? "" : `, now at ${l.currentVersion}`}): ${what === "" ? "its files change, no document does" : what}`);
  }
  for (const n of p.needs) lines.push(`  needs       ${n.team}: ${n.approvedBy === null ? "not yet approved" : `approved by ${n.approvedBy}, ${n.approvedAt}`} (${n.why})`);
  if (p.decidedBy !== null) lines.push(`  ${p.state.padEnd(11)} by ${p.decidedBy}, ${p.decidedAt}${p.reason === null ? "" : `: ${printable(p.reason)}`}`);
  lines.push(`  audit       polity audit search --correlation ${p.correlationId}`);
  return `${lines.join("\n")}\n`;
}

function print(io: Io, parsed: Parsed, p: ProposalView): number {
  if (outputFormat(parsed, ["text", "json"] as const, "text") === "json") io.out(`${JSON.stringify(p, null, 2)}\n`);
  else io.out(describe(p));
  return EXIT.ok;
}

function oneId(parsed: Parsed): string {
  const id = parsed.positionals[0];
  if (id === undefined || parsed.positionals.length > 1) throw new UsageError("give one proposal id (polity proposal list shows them)");
  return id;
}

export const proposeCommand: Command = {
  name: "propose",
  summary: "propose a change of layers, for the teams it touches to approve",
  usage: "polity propose -f <file|folder>… [--title <text>]",
  options: { ...HUB_OPTIONS, filename: { type: "string", short: "f", multiple: true }, title: { type: "string" } },
  help: `Records a proposed change of layers (the same files 'polity apply' takes) with its diff, the
version of each layer it changes, and the teams whose approval it needs: the owner team of
every policy it adds, changes or removes, the layer's owners when it changes the layer's
owners, teams, exception rules or exceptions, and the owner of every locked (or delegated)
policy it refines. A region's change to its own policies needs only its own team.

A member of each team approves (never the proposer): polity proposal approve <id>. Then the
proposer, an approver or a global admin applies it: polity proposal apply <id>. If a layer it
changes gets a new version meanwhile, the proposal is stale: rebase the files and propose
again. A global admin may still apply directly with 'polity apply' (recorded as such).

Options:
  -f, --filename <file|folder>   layer files (repeatable)
  --title <text>                 what the change is for, in a line

${HUB_HELP}

Example:
  polity propose -f region-eu-west.yaml --title "tighten eu replicas to 60"`,
  async run(parsed, io) {
    const title = stringOption(parsed, "title");
    const proposed = await hubCall<ProposalView>(endpoint(parsed, io), "POST", "/v1/proposals", { files: layerFiles(parsed), ...(title === undefined ? {} : { title }) });
    print(io, parsed, proposed);
    io.err(`waiting for ${proposed.needs.map((n) => n.team).join(", ")}: polity proposal approve ${proposed.id}\n`);
    return EXIT.ok;
  },
};

const actCommand = (what: "approve" | "reject" | "apply"): Command => ({
  name: `proposal ${what}`,
  summary:
    what === "approve"
      ? "approve a proposal for the teams you are a member of"
      : what === "reject"
        ? "reject a proposal (or withdraw your own), saying why"
        : "apply a proposal that has every approval it needs",
  usage: `polity proposal ${what} <id>${what === "reject" ? " [--reason <text>]" : what === "apply" ? " [--canary <cluster,…> [--wave <k=v,…>]… [--soak 60s] …]" : ""}`,
  options: what === "reject" ? { ...HUB_OPTIONS, reason: { type: "string" } } : what === "apply" ? { ...HUB_OPTIONS, ...ROLLOUT_OPTIONS } : { ...HUB_OPTIONS },
  help: `${
    what === "approve"
      ? "Approves the proposal for every team it still needs that you are a member of. Nobody approves\ntheir own proposal; a stale one cannot be approved."
      : what === "reject"
        ? "Rejects the proposal (a member of a team it needs, or a global admin), or withdraws it (its\nproposer). It can no longer be approved or applied."
        : `Applies the proposal as one change (its layers, their bundles and its audit entries together,\nunder the proposal's correlation id). Refused until every team it needs has approved, and when\na layer it changes moved on since it was proposed. With --canary, as a staged rollout.\n\n${ROLLOUT_HELP}`
  }

${HUB_HELP}

Example:
  polity proposal ${what} 3f9c0a1b2c4d`,
  async run(parsed, io) {
    const id = oneId(parsed);
    const reason = stringOption(parsed, "reason");
    const rollout = what === "apply" ? rolloutFromFlags(parsed) : undefined;
    const body = what === "apply" ? (rollout === undefined ? undefined : { rollout }) : reason === undefined ? {} : { reason };
    return print(io, parsed, await hubCall<ProposalView>(endpoint(parsed, io), "POST", `/v1/proposals/${encodeURIComponent(id)}/${what}`, body));
  },
});

export const proposalApproveCommand = actCommand("approve");
export const proposalRejectCommand = actCommand("reject");
export const proposalApplyCommand = actCommand("apply");

export const proposalShowCommand: Command = {
  name: "proposal show",
  summary: "one proposal: its diff, the approvals it needs and has, and its files with -o json",
  usage: "polity proposal show <id> [--impact [--impact-timeout 10s]] [-o text|json]",
  options: { ...HUB_OPTIONS, impact: { type: "boolean" }, "impact-timeout": { type: "string" } },
  help: `Shows one proposal. With --impact, also what it would do, as 'polity diff --impact' says
it: each changed cluster's agent decides its recorded requests under the proposal, and
answers what would be newly denied, allowed and warned (clusters that do not answer within
--impact-timeout are named).

${HUB_HELP}

Example:
  polity proposal show 3f9c0a1b2c4d`,
  async run(parsed, io) {
    const ep = endpoint(parsed, io);
    const view = await hubCall<ProposalView>(ep, "GET", `/v1/proposals/${encodeURIComponent(oneId(parsed))}`);
    const rawTimeout = stringOption(parsed, "impact-timeout");
    if (!flag(parsed, "impact")) {
      if (rawTimeout !== undefined) throw new UsageError("--impact-timeout goes with --impact");
      return print(io, parsed, view);
    }
    const timeoutSeconds = rawTimeout === undefined ? 10 : Math.round(parseDuration(rawTimeout, "--impact-timeout") / 1000);
    if (timeoutSeconds < 1 || timeoutSeconds > 60) throw new UsageError(`--impact-timeout must be from 1s to 60s, got ${JSON.stringify(rawTimeout)}`);
    const diff = await hubCall<DiffResult>(ep, "POST", "/v1/diff", { files: view.files ?? [], impact: { timeoutSeconds } }, { timeoutMs: (timeoutSeconds + 30) * 1000 });
    if (outputFormat(parsed, ["text", "json"] as const, "text") === "json") {
      io.out(`${JSON.stringify({ ...view, impact: diff.impact }, null, 2)}\n`);
      return EXIT.ok;
    }
    io.out(describe(view));
    printDiff(io, diff, timeoutSeconds);
    return EXIT.ok;
  },
};

export const proposalListCommand: Command = {
  name: "proposal list",
  summary: "proposals: open, applied, rejected, withdrawn",
  usage: `polity proposal list [--state ${PROPOSAL_STATES.join("|")}] [-o text|json]`,
  options: { ...HUB_OPTIONS, state: { type: "string" } },
  help: `Lists the proposals you may read, oldest first.

${HUB_HELP}

Example:
  polity proposal list --state open`,
  async run(parsed, io) {
    const state = stringOption(parsed, "state");
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const r = await hubCall<{ items: ProposalView[] }>(endpoint(parsed, io), "GET", `/v1/proposals${state === undefined ? "" : `?state=${encodeURIComponent(state)}`}`);
    if (format === "json") io.out(`${JSON.stringify(r, null, 2)}\n`);
    else
      table(
        io,
        ["ID", "STATE", "LAYERS", "NEEDS", "PROPOSED BY", "AGE", "TITLE"],
        r.items.map((p) => [
          p.id,
          p.stale ? "open (stale)" : p.state,
          p.layers.map((l) => l.id).join(","),
          p.needs.map((n) => `${n.team}${n.approvedBy === null ? "" : "✓"}`).join(","),
          p.proposedBy,
          age(p.proposedAt),
          printable(p.title ?? ""),
        ]),
      );
    return EXIT.ok;
  },
};
