/**
 * Regional hubs: a parent mints region tokens, enrols its regional hubs, serves them the
 * mirror and takes their summaries; a regional hub says how its link stands. Conflicts are
 * read on either side.
 */
import { regionalEnrolment, regionalRenewal, regionalSummary, regionTokenRequest } from "../../api/regions.js";
import { listConflicts, type Regions } from "../regional/parent.js";
import { route, type Call, type Hub } from "../route.js";
import { ApiError, badRequest, notFound } from "../status.js";
import { auditContext } from "./shared.js";

const REGION = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function parent(hub: Hub): Regions {
  if (hub.regions === undefined) throw new ApiError(409, "Conflict", `this is the regional hub of ${hub.regional?.region ?? "a region"}: regional hubs enrol with the global hub`);
  return hub.regions;
}

/** The region whose hub calls a regional route (the route's requirement admitted only regional hub certificates). */
function regionOf(call: Call<unknown>): string {
  if (call.principal.kind !== "regional-hub") throw new Error("a regional route was called without a regional hub's certificate");
  return call.principal.region;
}

export const REGION_ROUTES = [
  route({
    method: "POST",
    path: "/v1/regions/:region/tokens",
    summary: "Mint a one-time token for region <region>'s hub to enrol with this hub (`polity hub --region <region> --parent <this hub> --region-token …`). Shown once.",
    access: { kind: "role", roles: ["global-admin"], why: "only a global admin admits a regional hub" },
    body: regionTokenRequest,
    async handle(hub, call) {
      const region = call.params.region!;
      if (!REGION.test(region) || region.length > 63) throw badRequest(`${JSON.stringify(region)} is not a region name (lowercase letters, digits and '-')`);
      return { status: 201, body: await parent(hub).mintToken(region, (call.body.ttlSeconds ?? 3600) * 1000, { hostnames: call.body.hostnames, allowLoopback: call.body.allowLoopback }, auditContext(call)) };
    },
  }),
  route({
    method: "POST",
    path: "/v1/regions/enrol",
    summary: "A regional hub's enrolment, with a region token and the public halves of the keys it made: its hub certificate and its region's CA come back.",
    access: { kind: "public" },
    body: regionalEnrolment,
    async handle(hub, call) {
      return { status: 201, body: await parent(hub).enrol(call.body) };
    },
  }),
  route({
    method: "GET",
    path: "/v1/regions",
    summary: "The regional hubs enrolled here: when they were last heard from, their last summary (counts only), the size of their log's newest head recorded here.",
    access: { kind: "access", access: "read" },
    targets: () => [{ kind: "federation" }],
    async handle(hub) {
      return { body: { items: await parent(hub).hubs() } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/region/mirror",
    summary: "For a regional hub: the global layer, its region layer as held here, its region's clusters, and the certificates issued here for them after `certificatesAfter`.",
    access: { kind: "regional-hub", why: "the mirror is for a regional hub (mutual TLS with its hub certificate)" },
    async handle(hub, call) {
      const after = call.query.certificatesAfter;
      const since = after === undefined ? new Date(0) : new Date(after);
      if (Number.isNaN(since.getTime())) throw badRequest("certificatesAfter must be a time (RFC 3339)");
      return { body: await parent(hub).mirror(regionOf(call), since) };
    },
  }),
  route({
    method: "POST",
    path: "/v1/region/summary",
    summary:
      "A regional hub's summary: counts (status, compliance), the certificates its CA issued and the bundles it signed (served here as a mirror), its log's signed head with a consistency proof, its region layer (applied here or refused as a conflict), the conflicts it found.",
    access: { kind: "regional-hub", why: "summaries are sent by a regional hub" },
    bodyLimit: 64 * 1024 * 1024,
    body: regionalSummary,
    async handle(hub, call) {
      await hub.residency.recordHubZone(regionOf(call), call.body.zone);
      return { body: await parent(hub).receive(regionOf(call), call.body, call.principal.kind === "regional-hub" ? call.principal.serial : undefined) };
    },
  }),
  route({
    method: "POST",
    path: "/v1/region/renew",
    summary: "A regional hub's delegation and region CA, renewed for the keys it enrolled with (a new root version extends the delegation; a new intermediate certifies the same CA key).",
    access: { kind: "regional-hub", why: "a regional hub renews its own delegation and CA" },
    body: regionalRenewal,
    async handle(hub, call) {
      return { body: await parent(hub).renew(regionOf(call)) };
    },
  }),
  route({
    method: "GET",
    path: "/v1/region",
    summary: "On a regional hub: its region, its parent, whether the link is up, the global layer version it holds, the region layer version its parent accepted.",
    access: { kind: "authenticated" },
    async handle(hub) {
      if (hub.regional === undefined) throw notFound("this hub is not a regional hub");
      return { body: await hub.regional.state() };
    },
  }),
  route({
    method: "GET",
    path: "/v1/conflicts",
    summary: "Conflicts between regional changes and the global layer, each reverted in its region: the layer, why, how it was resolved (?region= to filter).",
    access: { kind: "access", access: "read" },
    targets: (_hub, call) => [call.query.region === undefined ? { kind: "federation" } : { kind: "region", region: call.query.region }],
    async handle(hub, call) {
      return { body: { items: await listConflicts(hub.db, call.query.region) } };
    },
  }),
];
