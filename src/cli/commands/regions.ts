/** `polity region token`, `polity get regions`, `polity get conflicts`: the regional hub role from the command line. */
import type { Conflict } from "../../api/regions.js";
import { outputFormat, stringOption, stringsOption, type Command } from "../command.js";
import { EXIT, UsageError } from "../io.js";
import { age, endpoint, hubCall, HUB_HELP, HUB_OPTIONS, table } from "../hub-access.js";
import { parseDuration } from "../time.js";

export const regionTokenCommand: Command = {
  name: "region token",
  summary: "mint a one-time token for a region's hub to enrol with this hub (global admins only)",
  usage: "polity region token <region> [--hostname <name>]... [--allow-loopback] [--ttl 1h]",
  options: { ...HUB_OPTIONS, ttl: { type: "string" }, hostname: { type: "string", multiple: true }, "allow-loopback": { type: "boolean" } },
  help: `Mints a one-time token with which the regional hub of <region> enrols with this hub
(its parent): it gets its hub certificate, its region's CA (an intermediate name-constrained
to spiffe://<federation>/region/<region>/) and a root version that delegates its region's
bundles to its own key. The token is printed once; the hub stores only its hash.

The names the regional hub's certificate carries are fixed here, not by the hub: it may ask
only for these (a hub asking for another name is refused). Loopback (localhost, 127.0.0.1,
::1) only with --allow-loopback, for a hub on one machine.

Flags:
      --hostname <name>    a DNS name its clusters and operators reach it by (repeatable)
      --allow-loopback     also localhost and the loopback addresses
      --ttl <d>            how long the token is valid (default 1h, at most 7d)

${HUB_HELP}

Example:
  TOKEN=$(polity region token eu-west --hostname hub.eu-west.example)
  polity hub --region eu-west --parent https://global.example:8443 --parent-ca ca.pem --region-token "$TOKEN" --data .polity/eu-west`,
  async run(parsed, io) {
    const region = parsed.positionals[0];
    if (region === undefined) throw new UsageError("give the region: polity region token <region>");
    const ttl = parseDuration(stringOption(parsed, "ttl") ?? "1h", "--ttl");
    const r = await hubCall<{ id: string; token: string; expiresAt: string }>(endpoint(parsed, io), "POST", `/v1/regions/${encodeURIComponent(region)}/tokens`, {
      ttlSeconds: Math.round(ttl / 1000),
      hostnames: stringsOption(parsed, "hostname"),
      allowLoopback: parsed.values["allow-loopback"] === true,
    });
    io.out(`${r.token}\n`);
    io.err(`region token ${r.id} for ${region}, expires ${r.expiresAt}; it admits one enrolment and is not shown again\n`);
    return EXIT.ok;
  },
};

export const getRegionsCommand: Command = {
  name: "get regions",
  summary: "the regional hubs enrolled with this hub: last heard from, counts, their log's recorded head",
  usage: "polity get regions [-o text|json]",
  options: { ...HUB_OPTIONS, output: { type: "string", short: "o" } },
  help: `Lists the regional hubs enrolled with this hub: when each was last heard from, the counts
of its last summary (clusters, stale, acknowledgements; compliance passes, failures,
warnings: nothing more leaves the region), and the size of its audit log's newest signed
head recorded here (each checked against the one before by a consistency proof).

${HUB_HELP}`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"], "text");
    const r = await hubCall<{ items: { region: string; enrolledAt: string; lastSeen: string | null; summary: { status?: Record<string, number>; compliance?: Record<string, number> } | null; headSize: number }[] }>(endpoint(parsed, io), "GET", "/v1/regions");
    if (format === "json") {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
      return EXIT.ok;
    }
    table(
      io,
      ["REGION", "LAST SEEN", "CLUSTERS", "STALE", "FAILING", "LOG HEAD"],
      r.items.map((i) => [i.region, i.lastSeen === null ? "never" : `${age(i.lastSeen)} ago`, String(i.summary?.status?.clusters ?? "-"), String(i.summary?.status?.stale ?? "-"), String(i.summary?.compliance?.fail ?? "-"), String(i.headSize)]),
    );
    return EXIT.ok;
  },
};

export const getConflictsCommand: Command = {
  name: "get conflicts",
  summary: "regional changes that broke the global layer, each reverted in its region",
  usage: "polity get conflicts [--region <r>] [-o text|json]",
  options: { ...HUB_OPTIONS, region: { type: "string" }, output: { type: "string", short: "o" } },
  help: `Lists the conflicts found when a regional hub reconciled with its parent: a region-layer
change made while the link was down that breaks the global layer (a lock set meanwhile).
The global layer wins; the regional change is reverted in the region as a new version (the
reverted one stays in the layer's history) and recorded in both hubs' audit logs. Ask the
global hub for every region's, or a regional hub for its own.

${HUB_HELP}`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"], "text");
    const region = stringOption(parsed, "region");
    const r = await hubCall<{ items: Conflict[] }>(endpoint(parsed, io), "GET", `/v1/conflicts${region === undefined ? "" : `?region=${encodeURIComponent(region)}`}`);
    if (format === "json") {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
      return EXIT.ok;
    }
    if (r.items.length === 0) {
      io.out("no conflicts\n");
      return EXIT.ok;
    }
    table(
      io,
      ["REGION", "LAYER", "REVERTED", "DETECTED", "REASON"],
      r.items.map((c) => [c.region, c.layerId, c.revertedVersion === null ? "-" : `v${c.revertedVersion}`, `${age(c.detectedAt)} ago`, c.reason.length > 100 ? `${c.reason.slice(0, 97)}...` : c.reason]),
    );
    return EXIT.ok;
  },
};
