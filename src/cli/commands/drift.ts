/** `polity get drift`: what the agents' drift watchers found on the objects Polity manages, and what they did. */
import type { DriftTotals, StoredDriftEvent } from "../../api/drift.js";
import { printable } from "../../policy/names.js";
import { outputFormat, stringOption, type Command } from "../command.js";
import { EXIT, UsageError } from "../io.js";
import { age, endpoint, hubCall, HUB_HELP, HUB_OPTIONS, table } from "../hub-access.js";

const OUTCOME: Readonly<Record<StoredDriftEvent["outcome"], string>> = {
  remediated: "re-applied",
  reported: "reported",
  failed: "re-apply failed",
  fight: "fight",
};

/** What happened, in a few words: `fight with hpa-controller (5 re-applies)`. */
function outcomeText(e: StoredDriftEvent): string {
  if (e.outcome === "fight") return `fight${e.otherManager === undefined ? "" : ` with ${printable(e.otherManager)}`} (${e.reapplies} re-applies, stopped for the minute)`;
  if (e.outcome === "failed") return `re-apply failed: ${printable(e.reason ?? "")}`;
  return OUTCOME[e.outcome];
}

export const getDriftCommand: Command = {
  name: "get drift",
  summary: "drift on the objects Polity's intents made: what changed, and whether the agent put it back",
  usage: "polity get drift [--cluster <c>] [--region <r>] [--limit <n>] [-o text|json]",
  options: { ...HUB_OPTIONS, region: { type: "string" }, cluster: { type: "string" }, limit: { type: "string" } },
  help: `Prints the drift the clusters' agents found, newest first: objects Polity applied (from
the intents of their bundles) whose owned fields someone changed, or that someone deleted.
Only the fields Polity's manifest sets count; status, defaults and other controllers' fields
never do. Each line says what the agent did, as the object's remediation says:

  re-applied       remediation enforce (deny policies): the object was put back, within seconds
  reported         remediation inform (warn and audit policies): left as it is, reported
  re-apply failed  the API server refused the re-apply (the reason follows)
  fight            another controller kept changing it back: after 5 re-applies in a minute
                   the agent stops for the rest of that minute and names the other manager
                   (from the object's managedFields) when the server says who it is

Fields are paths (spec.hard.pods), never values. Below the events, each cluster's totals.
The same totals are a column of 'polity get compliance'; every event is in the audit log
(kind agent.drift). A region operator sees the clusters of their region only.

Flags:
      --cluster <c>    only this cluster
      --region <r>     only the clusters of this region
      --limit <n>      at most this many events (default 100, at most 1000)
  -o, --output <f>     text (default) or json

${HUB_HELP}

Examples:
  polity get drift
  polity get drift --cluster eu-west-1
  polity get drift --region eu-west --limit 20 -o json

Exit status: 0 printed; 2 bad usage, a hub that refuses (another region's clusters for a
region operator, a cluster it does not know) or cannot be reached.`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument ${parsed.positionals[0]}: filter with --cluster or --region`);
    const params = new URLSearchParams();
    for (const name of ["cluster", "region", "limit"]) {
      const value = stringOption(parsed, name);
      if (value !== undefined) params.set(name, value);
    }
    const limit = params.get("limit");
    if (limit !== null && !/^\d{1,4}$/.test(limit)) throw new UsageError(`--limit ${limit}: a whole number from 1 to 1000`);
    const query = params.toString();
    const r = await hubCall<{ items: StoredDriftEvent[]; totals: Record<string, DriftTotals> }>(endpoint(parsed, io), "GET", `/v1/drift${query === "" ? "" : `?${query}`}`);
    if (format === "json") {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
      return EXIT.ok;
    }
    if (r.items.length === 0) io.out("no drift reported\n");
    else
      table(
        io,
        ["AGE", "CLUSTER", "OBJECT", "POLICY", "REMEDIATION", "FIELDS", "OUTCOME"],
        r.items.map((e) => [
          age(e.at),
          e.cluster,
          `${e.object.kind} ${e.object.namespace === undefined ? "" : `${e.object.namespace}/`}${e.object.name}`,
          e.policy === null ? "-" : printable(e.policy),
          e.remediation,
          e.missing ? "(deleted)" : `${e.fields.map(printable).join(", ")}${e.omittedFields > 0 ? `, and ${e.omittedFields} more` : ""}`,
          outcomeText(e),
        ]),
      );
    const totals = Object.entries(r.totals).filter(([, t]) => t.lastAt !== null || t.dropped > 0);
    if (totals.length > 0) {
      io.out("\n");
      table(
        io,
        ["CLUSTER", "RE-APPLIED", "REPORTED", "FIGHTS", "FAILED", "DROPPED", "LAST"],
        totals.map(([cluster, t]) => [cluster, String(t.remediated), String(t.reported), String(t.fights), String(t.failed), String(t.dropped), t.lastAt === null ? "-" : `${age(t.lastAt)} ago`]),
      );
    }
    return EXIT.ok;
  },
};
