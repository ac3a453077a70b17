/** What agents ask and tell: their bundle (a long poll), their status, facts and apply results, their decision logs; and those logs and intents status, read back. */
import { decisionBatch, statusReport } from "../../api/agent.js";
import { impactAnswer } from "../../api/impact.js";
import { applyReport, reportedFacts } from "../../api/intents.js";
import { BUNDLE_MEDIA_TYPE, decodeBundle } from "../../bundle/index.js";
import { describePrincipal } from "../principal.js";
import { route, type Answer } from "../route.js";
import { ApiError } from "../status.js";
import { auditContext, callingCluster, clusterTarget, mirroredBundleOf } from "./shared.js";
import type { Regions } from "../regional/parent.js";
import { sleep } from "../../client/retry.js";
import { timings } from "../timings.js";

/** A bundle a regional hub signed, as this hub mirrors it; a long poll checks for a newer one every second (for at most 10 s). */
async function mirroredBundle(regions: Regions, cluster: string, region: string, wanted: string | undefined, wait: number, signal: AbortSignal): Promise<Answer> {
  const until = Date.now() + Math.min(wait, 10) * 1000;
  for (;;) {
    const bundle = await regions.bundleFor(cluster);
    if (bundle === undefined) throw new ApiError(503, "Unavailable", `no bundle for cluster ${cluster} yet: region ${region}'s hub signs its bundles, and has not sent this one up`);
    if (wanted === undefined || Number(wanted) !== bundle.version) {
      return { body: bundle.bytes, type: BUNDLE_MEDIA_TYPE, headers: { etag: `"${bundle.version}"`, "cache-control": "no-cache" } };
    }
    if (Date.now() >= until || signal.aborted) return { status: 304, body: "", headers: { etag: `"${bundle.version}"` } };
    await sleep(1000, signal);
  }
}

/** Whether an Accept-Encoding header accepts gzip (RFC 9110 §12.5.3: listed, or by `*`, without q=0). */
function acceptsGzip(header: string | string[] | undefined): boolean {
  const value = Array.isArray(header) ? header.join(",") : (header ?? "");
  let star = false;
  for (const part of value.split(",")) {
    const [coding = "", ...params] = part.trim().toLowerCase().split(";").map((p) => p.trim());
    const q = params.find((p) => p.startsWith("q="));
    const refused = q !== undefined && Number(q.slice(2)) === 0;
    if (coding === "gzip" || coding === "x-gzip") return !refused;
    if (coding === "*") star = !refused;
  }
  return star;
}

export const AGENT_ROUTES = [
  route({
    method: "GET",
    path: "/v1/agent/bundle",
    summary:
      "The calling cluster's signed bundle. With If-None-Match: \"<version>\" and ?wait=<seconds> (at most 60), a long poll: answered as soon as a newer bundle exists, or 304 when the wait ends.",
    access: { kind: "agent", why: "this endpoint is for a cluster's agent (mutual TLS with its certificate)" },
    async handle(hub, call): Promise<Answer> {
      const { cluster, region } = callingCluster(call);
      // Compared weakly (RFC 9110 §13.1.2): the compressed answer's tag is W/"<version>".
      const wanted = /^(?:W\/)?"(\d+)"$/.exec(String(call.headers["if-none-match"] ?? ""))?.[1];
      const wait = Math.min(60, Math.max(0, Number(call.query.wait ?? 0) || 0));
      // A cluster of a region with its own hub has bundles that hub signed: this hub serves them as a mirror.
      if (hub.regions !== undefined && (call.regionHasHub ?? (await hub.regions.hasHub(region)))) return mirroredBundle(hub.regions, cluster, region, wanted, wait, call.signal);
      if (wanted !== undefined) {
        const held = Number(wanted);
        if (hub.bundles.version(cluster) === held && wait > 0) {
          const aborted = new Promise<undefined>((resolve) => call.signal.addEventListener("abort", () => resolve(undefined), { once: true }));
          await Promise.race([hub.bundles.waitForNewer(cluster, held, wait * 1000), aborted]);
        }
        if (hub.bundles.version(cluster) === held) return { status: 304, body: "", headers: { etag: `"${held}"` } };
      }
      const gzip = acceptsGzip(call.headers["accept-encoding"]);
      let bundle = hub.bundles.bundleBytes(cluster, gzip);
      if (bundle === undefined) {
        await hub.bundles.refresh([cluster]);
        bundle = hub.bundles.bundleBytes(cluster, gzip);
      }
      if (bundle === undefined) throw new ApiError(503, "Unavailable", `no bundle for cluster ${cluster}: its layers do not combine; ask its operators`);
      timings.moment("bundles.answered");
      return {
        body: bundle.bytes,
        type: BUNDLE_MEDIA_TYPE,
        // A strong tag names one representation (RFC 9110 §8.8.3): the compressed one is weak.
        headers: { etag: gzip ? `W/"${bundle.version}"` : `"${bundle.version}"`, "cache-control": "no-cache", vary: "accept-encoding", ...(gzip ? { "content-encoding": "gzip" } : {}) },
      };
    },
  }),
  route({
    method: "POST",
    path: "/v1/agent/status",
    summary:
      "An agent's status report: bundle version and hash, last sync, staleness, decision counts and latency, certificate expiry, and the compliance summary of its last scan (per policy: pass, fail and warn counts, a few failing objects by kind, namespace and name).",
    access: { kind: "agent", why: "status is reported by a cluster's agent" },
    // A full compliance summary (500 policies with 3 examples each) fits.
    bodyLimit: 2 * 1024 * 1024,
    body: statusReport,
    async handle(hub, call) {
      const { cluster, region } = callingCluster(call);
      await hub.residency.admit(cluster, region, "agent status", auditContext(call), call.regionHasHub);
      const { compliance, ...status } = call.body;
      await hub.reports.recordStatus(cluster, region, status);
      if (compliance !== undefined) await hub.compliance.record(cluster, compliance);
      return { status: 204, body: "" };
    },
  }),
  route({
    method: "POST",
    path: "/v1/agent/facts",
    summary:
      "Facts an agent observed of its cluster (Kubernetes version, node zones, allocatable cpu and memory, node count). The latest report is kept. When its effective facts change, the cluster's bundle is signed again with them (changed: true), unless they would drop objects the last good facts render or bring new problems: then they are withheld (withheld: true), shown in the cluster's intents status and audited once.",
    access: { kind: "agent", why: "facts are reported by a cluster's agent" },
    bodyLimit: 64 * 1024,
    body: reportedFacts,
    async handle(hub, call) {
      const { cluster, region } = callingCluster(call);
      return { body: await hub.intents.reportFacts(cluster, region, call.body) };
    },
  }),
  route({
    method: "POST",
    path: "/v1/agent/apply",
    summary:
      "The result of an agent's apply of its bundle's manifests: bundle version, manifests hash, outcome (applied, failed, refused, waiting), counts, the failed object and why, rollback, conflicts with other field managers.",
    access: { kind: "agent", why: "apply results are reported by a cluster's agent" },
    bodyLimit: 256 * 1024,
    body: applyReport,
    async handle(hub, call) {
      const { cluster, region } = callingCluster(call);
      await hub.intents.recordApply(cluster, region, call.body);
      return { status: 204, body: "" };
    },
  }),
  route({
    method: "POST",
    path: "/v1/agent/decisions",
    summary:
      "A batch of an agent's decision logs (denials in full, allowed decisions as counted samples), with how many it dropped. Idempotent by batch id: a batch sent twice is stored once.",
    access: { kind: "agent", why: "decision logs are sent by a cluster's agent" },
    bodyLimit: 8 * 1024 * 1024,
    body: decisionBatch,
    async handle(hub, call) {
      const { cluster, region } = callingCluster(call);
      await hub.residency.admit(cluster, region, "decision logs", auditContext(call), call.regionHasHub);
      return { status: 202, body: await hub.reports.storeDecisions(cluster, region, call.body) };
    },
  }),
  route({
    method: "GET",
    path: "/v1/agent/impact",
    summary: "The next impact request for the calling cluster's agent (a candidate effective set to evaluate its recorded requests against); ?wait=<seconds> (at most 60) long-polls; 204 when there is none.",
    access: { kind: "agent", why: "impact requests are for a cluster's agent" },
    async handle(hub, call): Promise<Answer> {
      const { cluster } = callingCluster(call);
      const wait = Math.min(60, Math.max(0, Number(call.query.wait ?? 0) || 0));
      const next = await hub.impacts.next(cluster, wait * 1000, call.signal);
      return next === undefined ? { status: 204, body: "" } : { body: next };
    },
  }),
  route({
    method: "POST",
    path: "/v1/agent/impact/:id",
    summary: "An agent's answer to an impact request it was sent: newly denied, allowed and warned requests per policy and rule over its window, with a few examples.",
    access: { kind: "agent", why: "impact is reported by a cluster's agent" },
    bodyLimit: 1024 * 1024,
    body: impactAnswer,
    async handle(hub, call) {
      const { cluster } = callingCluster(call);
      const id = call.params.id!;
      if (!/^[0-9a-f]{16}$/.test(id)) throw new ApiError(400, "BadRequest", `${JSON.stringify(id)} is not an impact request id (16 hex digits)`);
      await hub.impacts.answer(cluster, id, call.body);
      return { status: 204, body: "" };
    },
  }),
  route({
    method: "GET",
    path: "/v1/clusters/:name/intents",
    summary: "A cluster's intents status: its facts (declared, reported by its agent, effective), the manifests hash its bundle names, its agent's last apply, and what its facts cannot hold.",
    access: { kind: "access", access: "read" },
    targets: (hub, call) => [clusterTarget(hub, call.params.name!)],
    async handle(hub, call) {
      const name = call.params.name!;
      const status = await hub.intents.status(name);
      // A region with its own hub: the bundle its agent holds is that hub's (this hub signs none for it).
      const mirrored = await mirroredBundleOf(hub, name);
      if (mirrored === undefined) return { body: status };
      const signed = mirrored.bundle === undefined ? undefined : decodeBundle(mirrored.bundle.bytes).envelope.signed;
      return { body: { ...status, bundle: { version: signed?.version ?? null, manifestsHash: signed?.manifestsHash ?? null } } };
    },
  }),
  route({
    method: "POST",
    path: "/v1/clusters/:name/facts/accept",
    summary:
      "Sign the facts a cluster's agent reported and the hub withheld (they would drop objects the last good facts render, or bring new problems): an operator's word that they are the cluster's reality. 409 when none are withheld.",
    access: { kind: "access", access: "write" },
    targets: (hub, call) => [clusterTarget(hub, call.params.name!)],
    async handle(hub, call) {
      const name = call.params.name!;
      const region = hub.federation.clusters.get(name)!.region;
      if (!(await hub.intents.acceptFacts(name, region, describePrincipal(call.principal)))) throw new ApiError(409, "Conflict", `cluster ${name} has no withheld facts to accept`);
      return { body: await hub.intents.status(name) };
    },
  }),
  route({
    method: "GET",
    path: "/v1/clusters/:name/decisions",
    summary: "A cluster's decision logs, newest first (?limit=, at most 1000).",
    access: { kind: "access", access: "read" },
    targets: (hub, call) => [clusterTarget(hub, call.params.name!)],
    async handle(hub, call) {
      const limit = Math.min(1000, Math.max(1, Number(call.query.limit ?? 100) || 100));
      await hub.residency.readable(hub.federation.clusters.get(call.params.name!)!.region, call.params.name!, "decision logs", auditContext(call));
      return { body: await hub.reports.decisions(call.params.name!, limit) };
    },
  }),
];
