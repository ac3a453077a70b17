/** Pieces the feature routes share: who is acting, the targets of a cluster or a layer, the engine's errors. */
import { PolityError } from "../../errors.js";
import { actorOf, requestedCorrelationId } from "../audit-events.js";
import { newCorrelationId, type AuditContext } from "../audit-log.js";
import type { Target } from "../principal.js";
import type { Call, Hub } from "../route.js";
import { fromPolityError, notFound } from "../status.js";

/** Who is acting, and the correlation id the change's events share (the caller's X-Correlation-Id, or a new one). */
export function auditContext(call: Call): AuditContext {
  return { actor: actorOf(call.principal), correlationId: requestedCorrelationId(call.headers["x-correlation-id"]) ?? newCorrelationId() };
}

/** The cluster whose agent calls an agent route (the route's requirement admitted only cluster certificates). */
export function callingCluster(call: Call<unknown>): { readonly cluster: string; readonly region: string } {
  if (call.principal.kind !== "cluster") throw new Error("an agent route was called without a cluster certificate");
  return call.principal;
}

/** A registered cluster as a target; 404 when there is none of that name. */
export function clusterTarget(hub: Hub, name: string): Target & { kind: "cluster" } {
  const record = hub.federation.clusters.get(name);
  if (record === undefined) throw notFound(`no cluster named ${JSON.stringify(name)}`);
  return { kind: "cluster", cluster: name, region: record.region };
}

/**
 * For a cluster of a region with its own hub, the bundle that hub signed, as mirrored here
 * (`bundle` undefined: none yet); undefined when this hub signs the cluster's bundles.
 */
export async function mirroredBundleOf(hub: Hub, cluster: string): Promise<{ bundle: { version: number; bytes: Buffer } | undefined } | undefined> {
  if (hub.regions === undefined || !(await hub.regions.hasHub(hub.federation.clusters.get(cluster)!.region))) return undefined;
  return { bundle: await hub.regions.bundleFor(cluster) };
}

/** A layer as a target: the federation (global), a region, or a cluster (in its region). */
export function layerTarget(hub: Hub, id: string, region: string | undefined): Target {
  if (id === "global") return { kind: "federation" };
  const [tier, name] = id.split("/") as [string, string];
  if (tier === "region") return { kind: "region", region: name };
  const registered = hub.federation.clusters.get(name);
  if (registered !== undefined) return { kind: "cluster", cluster: name, region: registered.region };
  return { kind: "cluster", cluster: name, region: region ?? "", unregistered: true };
}

/** Runs engine work; its PolityError becomes the API's error (422 invalid, 409 refused, …) under `summary`. */
export function engine<T>(summary: string, work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof PolityError) throw fromPolityError(error, summary);
    throw error;
  }
}
