/** Drift: agents send what their drift watchers found and did; people read it for the clusters they may read. */
import { driftBatch } from "../../api/drift.js";
import { route } from "../route.js";
import { ApiError } from "../status.js";
import { clustersFor } from "./compliance.js";
import { keptElsewhere } from "./residency.js";
import { auditContext, callingCluster } from "./shared.js";

export const DRIFT_ROUTES = [
  route({
    method: "POST",
    path: "/v1/agent/drift",
    summary:
      "A batch of an agent's drift events (an object Polity manages found changed or deleted: the fields by path, the remediation, and the outcome: remediated, reported, failed, or a fight with another controller), with how many it dropped or suppressed. Idempotent by batch id.",
    access: { kind: "agent", why: "drift is reported by a cluster's agent" },
    bodyLimit: 2 * 1024 * 1024,
    body: driftBatch,
    async handle(hub, call) {
      const { cluster, region } = callingCluster(call);
      await hub.residency.admit(cluster, region, "drift reports", auditContext(call), call.regionHasHub);
      return { status: 202, body: await hub.drift.record(cluster, region, call.body) };
    },
  }),
  route({
    method: "GET",
    path: "/v1/drift",
    summary: "Drift events of the clusters the caller may read, newest first (?limit=, at most 1000; filters ?region=, ?cluster=). A region operator sees the clusters of their region only.",
    access: { kind: "authenticated" },
    async handle(hub, call) {
      const raw = call.query.limit ?? "100";
      const limit = Number(raw);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new ApiError(400, "BadRequest", "?limit must be a whole number from 1 to 1000");
      const clusters = clustersFor(hub, call);
      await keptElsewhere(hub, call, "drift reports");
      return { body: { items: await hub.drift.events(clusters, limit), totals: Object.fromEntries(await hub.drift.totals(clusters.map((c) => c.name))) } };
    },
  }),
];
