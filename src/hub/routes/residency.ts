/** Data residency: a region's declaration of the zones its data may be kept in, and what is kept where (src/hub/residency.ts). */
import { residencyDeclaration } from "../../api/residency.js";
import { denial } from "../principal.js";
import type { RegionData } from "../residency.js";
import { route, type Call, type Hub } from "../route.js";
import { badRequest } from "../status.js";
import { auditContext } from "./shared.js";

const REGION = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * For a read of region-scoped details filtered by ?cluster= or ?region=: refused (403, with
 * where they are kept) at the global hub when that region's hub keeps them.
 */
export async function keptElsewhere(hub: Hub, call: Call, what: RegionData): Promise<void> {
  const cluster = call.query.cluster;
  const region = cluster === undefined || cluster === "" ? call.query.region : hub.federation.clusters.get(cluster)?.region;
  if (region === undefined || region === "") return;
  await hub.residency.readable(region, cluster === undefined || cluster === "" ? null : cluster, what, auditContext(call));
}

export const RESIDENCY_ROUTES = [
  route({
    method: "PUT",
    path: "/v1/regions/:region/residency",
    summary:
      "Declare the zones region <region>'s data (decision logs, compliance details, agent status, drift reports, audit entries of its clusters) may be kept in: a new version, audited, mirrored to the region's hub. A hub outside them refuses that data (403). On the global hub only.",
    access: { kind: "role", roles: ["global-admin"], why: "only a global admin declares where a region's data may be kept" },
    body: residencyDeclaration,
    async handle(hub, call) {
      const region = call.params.region!;
      if (!REGION.test(region) || region.length > 63) throw badRequest(`${JSON.stringify(region)} is not a region name (lowercase letters, digits and '-')`);
      return { body: await hub.residency.declare(region, call.body.allowedZones, call.body.baseVersion, auditContext(call)) };
    },
  }),
  route({
    method: "GET",
    path: "/v1/residency",
    summary:
      "Per region: the zones it allows, which hub keeps its data and that hub's zone, what is kept there and what goes up (counts, hashes, signed heads); and the zone of the hub answering. A region operator sees their region only.",
    access: { kind: "access", access: "read" },
    targets: () => [],
    async handle(hub, call) {
      const view = await hub.residency.view([...hub.federation.clusters.values()].map((c) => c.region));
      return { body: { ...view, items: view.items.filter((i) => denial(call.principal, "read", { kind: "region", region: i.region }) === undefined) } };
    },
  }),
];
