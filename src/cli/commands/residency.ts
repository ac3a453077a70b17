/** `polity region residency`, `polity get residency`: where a region's data may be kept, and where it is. */
import { ZONE, type DeclaredResidency, type RegionResidency, type ResidencyView } from "../../api/residency.js";
import { outputFormat, stringsOption, type Command } from "../command.js";
import { EXIT, UsageError } from "../io.js";
import { endpoint, hubCall, HUB_HELP, HUB_OPTIONS, table } from "../hub-access.js";

const KEPT_HELP = `What a region's hub keeps of its clusters: decision logs, compliance details (per policy,
with failing objects), agent status, drift reports and the audit entries about them. What
goes up to the global hub: counts, hashes (bundles, certificates) and its log's signed heads.`;

export const regionResidencyCommand: Command = {
  name: "region residency",
  summary: "declare the zones a region's data may be kept in (global admins, on the global hub)",
  usage: "polity region residency <region> --allow-zone <zone>... [--base-version <n>] [-o text|json]",
  options: { ...HUB_OPTIONS, "allow-zone": { type: "string", multiple: true }, "base-version": { type: "string" } },
  help: `Declares the zones region <region>'s data may be kept in: a new version of its residency,
recorded in the audit log (residency.declared) and mirrored to the region's hub. A hub whose
zone (polity hub --zone) is not one of them refuses that data with 403, audited
(residency.refused): an agent of the region sending its decision logs, status or drift
there, as one that falls back to the global hub would. The declaration replaces the one
held; it cannot be withdrawn, only changed.

${KEPT_HELP}

Flags:
      --allow-zone <zone>   a zone the region's data may be kept in (repeatable, at least one)
      --base-version <n>    refuse (409) unless the declaration held is at this version

${HUB_HELP}

Examples:
  polity region residency eu-west --allow-zone eu-central-1 --allow-zone eu-west-1
  polity get residency

Exit status: 0 declared, 2 bad usage or refused by the hub.`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"], "text");
    const region = parsed.positionals[0];
    if (region === undefined || parsed.positionals.length > 1) throw new UsageError("give one region: polity region residency <region> --allow-zone <zone>...");
    const zones = stringsOption(parsed, "allow-zone");
    if (zones.length === 0) throw new UsageError("give at least one --allow-zone <zone>: the zones the region's data may be kept in");
    for (const zone of zones) if (!ZONE.test(zone) || zone.length > 63) throw new UsageError(`--allow-zone ${zone}: not a zone name (lowercase letters, digits and '-', e.g. eu-central-1)`);
    const base = parsed.values["base-version"];
    if (base !== undefined && (typeof base !== "string" || !/^\d+$/.test(base))) throw new UsageError("--base-version must be a whole number");
    const r = await hubCall<DeclaredResidency>(endpoint(parsed, io), "PUT", `/v1/regions/${encodeURIComponent(region)}/residency`, {
      allowedZones: zones,
      ...(typeof base === "string" ? { baseVersion: Number(base) } : {}),
    });
    if (format === "json") io.out(`${JSON.stringify(r, null, 2)}\n`);
    else io.out(`region ${r.region}: its data may be kept in zone ${r.allowedZones.join(", ")} (residency version ${r.version})\n`);
    return EXIT.ok;
  },
};

function keeper(i: RegionResidency): string {
  return `${i.keptBy === "global hub" ? "the global hub" : "its regional hub"}${i.hubZone === null ? " (zone not reported yet)" : `, zone ${i.hubZone}`}`;
}

function describe(i: RegionResidency): string {
  const declared =
    i.allowedZones === null ? "nothing declared: no zone is refused" : `may be kept in zone ${i.allowedZones.join(", ")} (version ${i.version}, by ${i.declaredBy ?? "?"} at ${i.declaredAt ?? "?"})`;
  const warning = i.hubZoneAllowed === false ? `\n  WARNING: zone ${i.hubZone ?? "?"} is not allowed: that hub refuses the region's data` : "";
  const up = i.sentUp.length === 0 ? "  sent up: nothing (the global hub keeps the region's data itself)" : `  sent up to the global hub: ${i.sentUp.join(", ")}`;
  return `region ${i.region}: ${declared}${warning}\n  kept by ${keeper(i)}: ${i.kept.join(", ")}\n${up}\n`;
}

export const getResidencyCommand: Command = {
  name: "get residency",
  summary: "where each region's data may be kept, where it is kept, and what goes up",
  usage: "polity get residency [-o text|json]",
  options: { ...HUB_OPTIONS, output: { type: "string", short: "o" } },
  help: `Shows, per region: the zones its residency allows (polity region residency), which hub
keeps its data and that hub's zone (polity hub --zone), whether that zone is allowed, what
is kept there and what goes up; and the zone of the hub answering. The global hub shows
every region; a regional hub its own. A region operator sees their region only.

${KEPT_HELP}

${HUB_HELP}

Examples:
  polity get residency
  polity get residency -o json

Exit status: 0 shown, 2 bad usage or refused by the hub.`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"], "text");
    const r = await hubCall<ResidencyView>(endpoint(parsed, io), "GET", "/v1/residency");
    if (format === "json") {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
      return EXIT.ok;
    }
    const answering = r.answering.role === "global" ? "the global hub" : `region ${r.answering.region ?? "?"}'s hub`;
    io.out(`answering: ${answering}, zone ${r.answering.zone}\n\n`);
    if (r.items.length === 0) {
      io.out("no regions\n");
      return EXIT.ok;
    }
    table(
      io,
      ["REGION", "ALLOWED ZONES", "KEPT BY", "HUB ZONE", "ALLOWED"],
      r.items.map((i) => [i.region, i.allowedZones?.join(",") ?? "(any)", i.keptBy, i.hubZone ?? "-", i.hubZoneAllowed === null ? "-" : i.hubZoneAllowed ? "yes" : "NO"]),
    );
    io.out("\n");
    for (const i of r.items) io.out(describe(i));
    return EXIT.ok;
  },
};
