/** Clusters: register, relabel, remove, revoke (through the change use case); join tokens; what the hub knows of each. */
import { joinTokenRequest, registerManyRequest, registerRequest, relabelRequest, type RegisterRequest, type ClusterView, type EffectiveSummary, type JoinToken } from "../../api/clusters.js";
import { BUNDLE_MEDIA_TYPE } from "../../bundle/index.js";
import type { EffectivePolicySet } from "../../layering/effective.js";
import { denial, describePrincipal } from "../principal.js";
import type { AgentStatus } from "../reports.js";
import { route, type Call, type Hub } from "../route.js";
import { notFound } from "../status.js";
import { auditContext, clusterTarget, engine, mirroredBundleOf } from "./shared.js";

const summarize = (set: EffectivePolicySet): EffectiveSummary => ({ hash: set.hash, policies: set.document.policies.length, exceptions: set.document.exceptions.length });

/**
 * The bundle version each of these clusters' agents should hold: this hub's, or, for a
 * region with its own hub, the version of that hub's bundle as mirrored here (this hub signs
 * none for them).
 */
async function bundleVersions(hub: Hub, names: readonly string[]): Promise<(name: string) => number | undefined> {
  if (hub.regions === undefined) return (name) => hub.bundles.version(name);
  const { regions, versions } = await hub.regions.mirroredVersions(names);
  return (name) => (regions.has(hub.federation.clusters.get(name)!.region) ? versions.get(name) : hub.bundles.version(name));
}

function clusterView(hub: Hub, name: string, versionOf: (name: string) => number | undefined, status?: AgentStatus): ClusterView {
  const record = hub.federation.clusters.get(name)!;
  let effective: EffectiveSummary;
  try {
    effective = summarize(hub.federation.effectiveFor(name));
  } catch (error) {
    effective = { error: error instanceof Error ? error.message : String(error) };
  }
  const bundle = versionOf(name);
  const agent =
    status === undefined
      ? null
      : {
          reportedAt: status.reportedAt.toISOString(),
          bundleVersion: status.status.bundleVersion ?? null,
          bundleHash: typeof status.status.bundleHash === "string" ? status.status.bundleHash : null,
          stale: typeof status.status.stale === "boolean" ? status.status.stale : null,
          // In sync: the agent enforces the bundle the hub expects it to, and reported recently.
          inSync: status.status.bundleHash === effective.hash && status.status.bundleVersion === bundle && hub.now().getTime() - status.reportedAt.getTime() < 60_000,
        };
  return { ...record, effective, bundle: bundle ?? null, agent };
}

/** Registers clusters in one change; their views, with the effective sets the change gave them. */
async function register(hub: Hub, call: Call<unknown>, items: readonly RegisterRequest[], refusal: string): Promise<ClusterView[]> {
  const change = {
    kind: "register",
    clusters: items.map((c) => ({ cluster: { name: c.name, region: c.region, labels: c.labels ?? {} }, ...(c.facts === undefined ? {} : { facts: c.facts }) })),
  } as const;
  const plan = engine(refusal, () => hub.changes.plan(change));
  await hub.changes.apply(change, describePrincipal(call.principal), auditContext(call), plan);
  const versionOf = await bundleVersions(hub, plan.affected.map((a) => a.cluster));
  return plan.affected.map((a) => ({ ...clusterView(hub, a.cluster, versionOf), effective: summarize(a.after) }));
}

/** The cluster a call names in its path, as its target. */
const named = <B>(hub: Hub, call: Call<B>) => [clusterTarget(hub, call.params.name!)];

export const CLUSTER_ROUTES = [
  route({
    method: "GET",
    path: "/v1/clusters",
    summary: "Registered clusters the caller may read, with labels, identity status and effective-set hash.",
    access: { kind: "authenticated" },
    async handle(hub, call) {
      const visible = [...hub.federation.clusters.values()]
        .filter((c) => denial(call.principal, "read", { kind: "cluster", cluster: c.name, region: c.region }) === undefined)
        .sort((a, b) => (a.name < b.name ? -1 : 1));
      const names = visible.map((c) => c.name);
      const [statuses, versionOf] = await Promise.all([hub.reports.statuses(names), bundleVersions(hub, names)]);
      return { body: { items: visible.map((c) => clusterView(hub, c.name, versionOf, statuses.get(c.name))) } };
    },
  }),
  route({
    method: "POST",
    path: "/v1/clusters",
    summary: "Register a cluster (name, region, labels, facts); refused if its layers would not combine or its facts cannot hold its intents.",
    access: { kind: "access", access: "write" },
    body: registerRequest,
    targets: (_hub, call) => [{ kind: "cluster", cluster: call.body.name, region: call.body.region }],
    async handle(hub, call) {
      const [view] = await register(hub, call, [call.body], `cluster ${call.body.name} cannot be registered`);
      return { status: 201, body: view };
    },
  }),
  route({
    method: "POST",
    path: "/v1/cluster-registrations",
    summary:
      "Register many clusters in one change ({\"items\": [{name, region, labels, facts}, …]}, at most 10,000), all or none: one plan, one transaction, one publication of their bundles. Refused if any cluster's layers would not combine, its facts cannot hold its intents, or its name is taken or listed twice.",
    access: { kind: "access", access: "write" },
    body: registerManyRequest,
    bodyLimit: 8 * 1024 * 1024,
    targets: (_hub, call) => call.body.items.map((c) => ({ kind: "cluster", cluster: c.name, region: c.region })),
    async handle(hub, call) {
      return { status: 201, body: { items: await register(hub, call, call.body.items, `the ${call.body.items.length} clusters cannot be registered`) } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/clusters/:name",
    summary: "One cluster: labels, identity status, effective-set hash.",
    access: { kind: "access", access: "read" },
    targets: named,
    async handle(hub, call) {
      const name = call.params.name!;
      const [statuses, versionOf] = await Promise.all([hub.reports.statuses([name]), bundleVersions(hub, [name])]);
      return { body: { ...clusterView(hub, name, versionOf, statuses.get(name)), certificates: await hub.identity.certificatesOf(name) } };
    },
  }),
  route({
    method: "PATCH",
    path: "/v1/clusters/:name",
    summary: "Relabel a cluster; refused if its layers would not combine with the new labels.",
    access: { kind: "access", access: "write" },
    body: relabelRequest,
    targets: named,
    async handle(hub, call) {
      const name = call.params.name!;
      const change = { kind: "relabel", cluster: name, labels: call.body.labels } as const;
      const plan = engine(`cluster ${name} cannot be relabelled`, () => hub.changes.plan(change));
      await hub.changes.apply(change, describePrincipal(call.principal), auditContext(call), plan);
      return { body: clusterView(hub, name, await bundleVersions(hub, [name])) };
    },
  }),
  route({
    method: "DELETE",
    path: "/v1/clusters/:name",
    summary: "Remove a cluster: its identity is revoked and its join tokens void. Its layer, if any, stays.",
    access: { kind: "access", access: "write" },
    targets: named,
    async handle(hub, call) {
      const name = call.params.name!;
      await hub.changes.apply({ kind: "remove", cluster: name }, describePrincipal(call.principal), auditContext(call));
      return { body: { removed: name } };
    },
  }),
  route({
    method: "POST",
    path: "/v1/clusters/:name/join-tokens",
    summary: "Mint a one-time join token bound to the cluster, with an expiry (default 1 h). Shown once.",
    access: { kind: "access", access: "write" },
    body: joinTokenRequest,
    targets: named,
    async handle(hub, call) {
      const cluster = call.params.name!;
      const { token, expiresAt } = await hub.identity.mintJoinToken(cluster, (call.body.ttlSeconds ?? 3600) * 1000, describePrincipal(call.principal), auditContext(call));
      return { status: 201, body: { cluster, token, expiresAt } satisfies JoinToken };
    },
  }),
  route({
    method: "POST",
    path: "/v1/clusters/:name/revoke",
    summary: "Revoke a cluster's identity: every hub refuses its certificates from the next request on, and the revocation list carries them.",
    access: { kind: "access", access: "write" },
    targets: named,
    async handle(hub, call) {
      const cluster = call.params.name!;
      const { certificates } = await hub.changes.apply({ kind: "revoke", cluster }, describePrincipal(call.principal), auditContext(call));
      return { body: { cluster, revoked: true, certificates } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/clusters/:name/effective",
    summary: "A cluster's effective policy set and its hash (a cluster may read its own).",
    access: { kind: "access", access: "read" },
    targets: named,
    async handle(hub, call) {
      const set = engine(`cluster ${call.params.name}'s layers do not combine`, () => hub.federation.effectiveFor(call.params.name!));
      return { body: { hash: set.hash, effectivePolicySet: set.document } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/clusters/:name/bundle",
    summary:
      "A cluster's current signed bundle (a cluster may read its own; anyone may verify it with the hub's bundle key). For a region with its own hub: the bundle that hub signed, as mirrored here.",
    access: { kind: "access", access: "read" },
    targets: named,
    async handle(hub, call) {
      const name = call.params.name!;
      const mirrored = await mirroredBundleOf(hub, name);
      const bundle = mirrored === undefined ? hub.bundles.bundleBytes(name) : mirrored.bundle;
      if (bundle === undefined) throw notFound(`cluster ${call.params.name} has no bundle yet`);
      return { body: bundle.bytes, type: BUNDLE_MEDIA_TYPE, headers: { etag: `"${bundle.version}"` } };
    },
  }),
];
