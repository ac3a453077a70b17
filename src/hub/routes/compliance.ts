/** Compliance: the matrix clusters × policies from the agents' scans, and its history, for the clusters the caller may read. */
import { unshowableProblem } from "../../policy/names.js";
import { denial } from "../principal.js";
import { route, type Call, type Hub } from "../route.js";
import { ApiError, badRequest, forbidden } from "../status.js";
import { keptElsewhere } from "./residency.js";
import { clusterTarget } from "./shared.js";

const FILTERS = "Filters: ?region=, ?cluster=, ?policy=. A region operator sees the clusters of their region only.";

function filter(call: Call, name: string): string | undefined {
  const value = call.query[name];
  if (value === undefined || value === "") return undefined;
  if (typeof value !== "string" || value.length > 253) throw badRequest(`?${name} must be one name of at most 253 characters`);
  const problem = unshowableProblem(value);
  if (problem !== undefined) throw badRequest(`?${name} ${problem}`);
  return value;
}

/** The registered clusters the caller may read, narrowed by ?region= and ?cluster= (each refused with 403 when asked beyond the caller's reach). */
export function clustersFor(hub: Hub, call: Call): { name: string; region: string }[] {
  const region = filter(call, "region");
  const cluster = filter(call, "cluster");
  if (region !== undefined) {
    const why = denial(call.principal, "read", { kind: "region", region });
    if (why !== undefined) throw forbidden(why);
  }
  if (cluster !== undefined) {
    const target = clusterTarget(hub, cluster);
    const why = denial(call.principal, "read", target);
    if (why !== undefined) throw forbidden(why);
  }
  return [...hub.federation.clusters.values()]
    .filter((c) => (region === undefined || c.region === region) && (cluster === undefined || c.name === cluster))
    .filter((c) => denial(call.principal, "read", { kind: "cluster", cluster: c.name, region: c.region }) === undefined)
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((c) => ({ name: c.name, region: c.region }));
}

export const COMPLIANCE_ROUTES = [
  route({
    method: "GET",
    path: "/v1/compliance",
    summary: `The compliance matrix: for each cluster the caller may read, its agent's last scan per policy (pass, fail and warn counts, a few failing objects by kind, namespace and name, and a state), its drift totals (remediated, reported, fights, failed), and its agent's last apply of its intents' manifests. ${FILTERS}`,
    access: { kind: "authenticated" },
    async handle(hub, call) {
      const clusters = clustersFor(hub, call);
      await keptElsewhere(hub, call, "compliance details");
      const matrix = await hub.compliance.matrix(clusters, filter(call, "policy"));
      // Each row with its agent's drift totals (src/hub/drift.ts) and its last apply of its intents' manifests.
      const names = clusters.map((c) => c.name);
      const drift = await hub.drift.totals(names);
      const applies = await hub.intents.lastApplies(names);
      const apply = (name: string) => {
        const a = applies.get(name);
        return a === undefined ? null : { bundleVersion: a.bundleVersion, outcome: a.outcome, failed: a.failed === null ? null : `${a.failed.object}: ${a.failed.reason}`, conflicts: a.conflicts.length };
      };
      return { body: { ...matrix, items: matrix.items.map((row) => ({ ...row, drift: drift.get(row.cluster)!, apply: apply(row.cluster) })) } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/compliance/history",
    summary: `How the matrix's cells changed, newest first (a row each time a cell's counts changed; ?limit=, at most 1000). ${FILTERS}`,
    access: { kind: "authenticated" },
    async handle(hub, call) {
      const raw = call.query.limit ?? "100";
      const limit = Number(raw);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new ApiError(400, "BadRequest", "?limit must be a whole number from 1 to 1000");
      const policy = filter(call, "policy");
      await keptElsewhere(hub, call, "compliance details");
      return { body: { items: await hub.compliance.history(clustersFor(hub, call), { ...(policy === undefined ? {} : { policy }), limit }) } };
    },
  }),
];
