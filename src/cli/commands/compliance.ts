/** `polity get compliance`: the matrix clusters × policies from the agents' background scans. */
import type { ComplianceChange, ComplianceMatrix } from "../../api/compliance.js";
import type { DriftTotals } from "../../api/drift.js";
import { printable } from "../../policy/names.js";
import { flag, outputFormat, stringOption, type Command } from "../command.js";
import { EXIT, UsageError } from "../io.js";
import { age, endpoint, hubCall, HUB_HELP, HUB_OPTIONS, table } from "../hub-access.js";

function query(parsed: Parameters<Command["run"]>[0], extra: Record<string, string> = {}): string {
  const params = new URLSearchParams(extra);
  for (const name of ["region", "cluster", "policy"]) {
    const value = stringOption(parsed, name);
    if (value !== undefined) params.set(name, value);
  }
  const text = params.toString();
  return text === "" ? "" : `?${text}`;
}

/** A row's drift totals in a cell: `3 fixed, 1 fight`, or `-` for none. */
function driftText(t: DriftTotals | undefined): string {
  if (t === undefined) return "-";
  const parts = [
    [t.remediated, "fixed"],
    [t.reported, "reported"],
    [t.fights, t.fights === 1 ? "fight" : "fights"],
    [t.failed, "failed"],
  ] as const;
  const text = parts.filter(([n]) => n > 0).map(([n, what]) => `${n} ${what}`);
  return text.length === 0 ? "-" : text.join(", ");
}

export const getComplianceCommand: Command = {
  name: "get compliance",
  summary: "which clusters comply with which policies, from their agents' background scans",
  usage: "polity get compliance [--region <r>] [--cluster <c>] [--policy <p>] [--history] [-o text|json]",
  options: { ...HUB_OPTIONS, region: { type: "string" }, cluster: { type: "string" }, policy: { type: "string" }, history: { type: "boolean" } },
  help: `Prints the compliance matrix: a row per cluster you may read, a column per policy. Each
agent scans what already runs in its cluster against its bundle (the webhook's own
evaluation) and reports, per policy, how many objects pass, fail and warn; a cell says
"pass", "fail N" or "warn N", and "-" where the cluster reported nothing for that policy.
Below the table, a few failing objects of each failing cell (kind, namespace/name). The
DRIFT column totals what the cluster's drift watcher did (re-applied "fixed", reported,
fights, failed; polity get drift lists the events). A region operator sees the clusters of
their region only.

Flags:
      --region <r>     only the clusters of this region
      --cluster <c>    only this cluster
      --policy <p>     only this policy
      --history        how the cells changed, newest first (one line per change)
  -o, --output <f>     text (default) or json

${HUB_HELP}

Examples:
  polity get compliance
  polity get compliance --region eu-west --policy pod-security -o json
  polity get compliance --cluster eu-west-1 --history

Exit status: 0 printed; 2 bad usage, a hub that refuses (another region's clusters for a
region operator) or cannot be reached.`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument ${parsed.positionals[0]}: filter with --region, --cluster, --policy`);
    const hub = endpoint(parsed, io);
    if (flag(parsed, "history")) {
      const r = await hubCall<{ items: ComplianceChange[] }>(hub, "GET", `/v1/compliance/history${query(parsed)}`);
      if (format === "json") io.out(`${JSON.stringify(r, null, 2)}\n`);
      else table(io, ["AT", "CLUSTER", "REGION", "POLICY", "PASS", "FAIL", "WARN"], r.items.map((x) => [x.at, x.cluster, x.region, printable(x.policy), String(x.pass), String(x.fail), String(x.warn)]));
      return EXIT.ok;
    }
    const r = await hubCall<ComplianceMatrix>(hub, "GET", `/v1/compliance${query(parsed)}`);
    if (format === "json") {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
      return EXIT.ok;
    }
    if (r.items.length === 0) {
      io.out("no clusters\n");
      return EXIT.ok;
    }
    table(
      io,
      ["CLUSTER", "REGION", "SCANNED", "OBJECTS", "DRIFT", ...r.policies.map((p) => printable(p).toUpperCase())],
      r.items.map((row) => {
        const cells = new Map(row.policies.map((p) => [p.policy, p]));
        return [
          row.cluster,
          row.region,
          row.scannedAt === null ? "never" : `${age(row.scannedAt)} ago`,
          String(row.objects),
          driftText(row.drift),
          ...r.policies.map((policy) => {
            const cell = cells.get(policy);
            if (cell === undefined) return "-";
            // Plain text: the table aligns columns by length.
            return cell.state === "fail" ? `fail ${cell.fail}` : cell.state === "warn" ? `warn ${cell.warn}` : "pass";
          }),
        ];
      }),
    );
    const failing = r.items.flatMap((row) => row.policies.filter((p) => p.examples.length > 0).map((p) => ({ cluster: row.cluster, ...p })));
    if (failing.length > 0) io.out("\n");
    for (const cell of failing) {
      const objects = cell.examples.map((e) => `${e.kind} ${e.namespace === undefined ? "" : `${e.namespace}/`}${printable(e.name)} (${e.result})`);
      const more = cell.fail + cell.warn - cell.examples.length;
      io.out(`${cell.cluster} ${printable(cell.policy)}: ${objects.join(", ")}${more > 0 ? `, and ${more} more` : ""}\n`);
    }
    for (const row of r.items) {
      if (row.apply === undefined || row.apply === null || row.apply.outcome === "applied" || row.apply.outcome === "waiting") continue;
      io.out(`${row.cluster}: intents ${row.apply.outcome} at bundle v${row.apply.bundleVersion}${row.apply.failed === null ? "" : `: ${printable(row.apply.failed)}`}${row.apply.conflicts > 0 ? ` (${row.apply.conflicts} conflict(s))` : ""} (polity cluster status ${row.cluster})
`);
    }
    const omitted = r.items.filter((row) => row.omittedPolicies > 0);
    for (const row of omitted) io.out(`${row.cluster}: ${row.omittedPolicies} policies with the fewest failures left out of its summary\n`);
    return EXIT.ok;
  },
};
