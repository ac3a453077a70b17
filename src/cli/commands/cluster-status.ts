/** `polity cluster status NAME`: a cluster's intents as its hub knows them: facts, the last apply, problems. */
import type { IntentsStatus } from "../../api/intents.js";
import { outputFormat, type Command } from "../command.js";
import { EXIT, UsageError } from "../io.js";
import { age, endpoint, hubCall, HUB_HELP, HUB_OPTIONS } from "../hub-access.js";

function factsLine(facts: unknown): string {
  if (facts === null || typeof facts !== "object") return "-";
  const f = facts as { kubernetesVersion?: string; networkPolicy?: boolean; zones?: string[]; capacity?: Record<string, string>; nodes?: number };
  const parts = [
    f.kubernetesVersion === undefined ? undefined : `Kubernetes ${f.kubernetesVersion}`,
    f.networkPolicy === undefined ? undefined : `NetworkPolicy ${f.networkPolicy ? "enforced" : "ignored"}`,
    f.zones === undefined ? undefined : `zones ${f.zones.join(",") || "none"}`,
    f.capacity === undefined || Object.keys(f.capacity).length === 0 ? undefined : `capacity ${Object.entries(f.capacity).map(([k, v]) => `${k}=${v}`).join(",")}`,
    f.nodes === undefined ? undefined : `${f.nodes} node(s)`,
  ];
  return parts.filter((p) => p !== undefined).join("; ");
}

export const clusterStatusCommand: Command = {
  name: "cluster status",
  summary: "a cluster's intents: facts declared and reported, its agent's last apply, problems",
  usage: "polity cluster status <name> [-o text|json]",
  options: { ...HUB_OPTIONS },
  help: `Shows what a cluster's intents (policies with spec.generate) do there, as its hub knows it:

  facts      declared at registration (--facts), reported by its agent from the API server
             (Kubernetes version, node zones, allocatable cpu and memory), and the effective
             ones its manifests are rendered with (declared, reported values where present;
             whether NetworkPolicy is enforced is always the declared value); reported
             facts that would drop objects the signed facts render, or bring new problems,
             are withheld: shown, audited once (cluster.facts-reported, signed false), and
             not signed, so that relabelled nodes cannot remove a residency rule (an
             operator accepts them: POST /v1/clusters/NAME/facts/accept)
  bundle     the bundle version and the hash of the manifests it makes the agent apply
  last apply the agent's last apply of them: applied (with objects applied and deleted),
             failed (the object and why, whether the version was rolled back, and the fields
             another field manager owns), refused (the agent rendered another hash than the
             hub signed: nothing applied), or waiting (no facts yet: nothing rendered)
  problems   what the effective facts cannot hold of its intents (a zone gone, capacity
             lost): reported here, since reality cannot be refused; a change that would
             add problems is refused before rollout

A failed or refused apply is also in the audit log (kind intents.apply-failed).

${HUB_HELP}

Exit status: 0 when the last apply succeeded (or there is nothing to apply) and the facts
raise no problem, 1 otherwise, 2 for bad usage or an unreachable hub.

Examples:
  polity cluster status eu-west-1
  polity cluster status eu-west-1 -o json | jq .lastApply`,
  async run(parsed, io) {
    if (parsed.positionals.length !== 1) throw new UsageError("give one cluster name");
    const name = parsed.positionals[0]!;
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const r = await hubCall<IntentsStatus>(endpoint(parsed, io), "GET", `/v1/clusters/${encodeURIComponent(name)}/intents`);
    const last = r.lastApply;
    const healthy = r.problems.length === 0 && (last === null || last.outcome === "applied" || last.outcome === "waiting");
    if (format === "json") {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
      return healthy ? EXIT.ok : EXIT.failed;
    }
    io.out(`cluster    ${r.cluster}\n`);
    io.out(`declared   ${factsLine(r.facts.declared)}\n`);
    io.out(`reported   ${r.facts.reported === null ? "-" : `${factsLine(r.facts.reported)} (${age(r.facts.reported.reportedAt)} ago)`}\n`);
    const w = r.facts.withheld;
    if (w !== null) io.out(`withheld   ${factsLine(w.facts)} (${age(w.reportedAt)} ago): not signed, the effective facts below stay\n`);
    io.out(`effective  ${r.facts.effective === null ? "none: its agent applies nothing until facts are declared or reported" : factsLine(r.facts.effective)}\n`);
    io.out(`bundle     ${r.bundle.version === null ? "-" : `v${r.bundle.version}`}${r.bundle.manifestsHash === null ? "" : `, manifests ${r.bundle.manifestsHash}`}\n`);
    if (last === null) io.out("last apply none reported\n");
    else {
      const what =
        last.outcome === "applied"
          ? `applied ${last.applied} object(s), deleted ${last.deleted}${last.fromDisk ? " (from the bundle on disk: nothing deleted)" : ""}`
          : last.outcome === "failed" && last.failed !== null
            ? `FAILED at ${last.failed.object}: ${last.failed.reason}${last.rolledBack ? "; rolled back to the previous objects" : ""}`
            : `${last.outcome.toUpperCase()}: ${last.message ?? ""}`;
      io.out(`last apply v${last.bundleVersion} ${what} (${age(last.reportedAt)} ago)\n`);
      for (const c of last.conflicts) io.out(`  conflict: field ${c.field} of ${c.object} is owned by manager ${c.manager}\n`);
      for (const f of last.rollbackFailures) io.out(`  not restored: ${f.object}: ${f.reason}\n`);
    }
    if (r.problems.length === 0) io.out("problems   none\n");
    else for (const p of r.problems) io.out(`problem    ${p}\n`);
    return healthy ? EXIT.ok : EXIT.failed;
  },
};
