/**
 * The hub checks intents against each registered cluster's facts before a change goes
 * anywhere: a registration, or a change of layers, that some cluster could not hold is
 * refused (409 MergeRefused) with problems naming the cluster, the intent and the field;
 * clusters that declared no facts are not held to any. The facts survive a restart.
 *
 * Facts an agent reports (over its mutual TLS identity) are kept beside the declared ones,
 * used where present, and signed into the cluster's next bundle with the hash of its
 * manifests; reality that cannot hold the cluster's intents is shown as a problem, not
 * refused, and blocks no unrelated change. Apply results are validated field by field.
 */
import { describe, expect, it } from "vitest";
import type { IntentsStatus } from "../src/api/intents.js";
import { decodeBundle } from "../src/bundle/index.js";
import { call } from "../src/client/http.js";
import { clusterEndpoint, enroll } from "../src/identity/enrollment.js";
import { renderCluster } from "../src/intents/index.js";
import { effectivePolicySetFromBytes } from "../src/layering/effective.js";
import { eventually } from "./support/eventually.js";
import { example, HubFixture, joinToken, refused } from "./support/hubs.js";

const hubs = new HubFixture("polity-hub-intents-", "hub-intents-operator-key-0123456789abcdef");
const [GLOBAL, REGION_EU, CLUSTER_EU1] = [example("global.yaml"), example("region-eu-west.yaml"), example("cluster-eu-west-1.yaml")];
const FACTS = { kubernetesVersion: "1.31", networkPolicy: true, capacity: { cpu: "96", memory: "384Gi" }, zones: ["eu-west-1a", "eu-west-1b"] };

describe("cluster facts at the hub", () => {
  it("refuses to register a cluster whose facts cannot hold its intents, naming cluster, intent and field", async () => {
    const h = await hubs.startCopy("register");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
    const error = await refused(call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" }, facts: { ...FACTS, networkPolicy: false } }));
    expect(error.status).toBe(409);
    expect(error.message).toContain(`cluster "eu-west-1": intent "payments-segmentation": spec.generate.network: the cluster's network plugin does not enforce NetworkPolicy`);
    expect((await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" }, facts: FACTS })).status).toBe(201);
  });

  it("refuses a change of layers that a registered cluster's facts cannot hold, before any rollout; a cluster without facts is not held", async () => {
    const h = await hubs.startCopy("change");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" }, facts: { ...FACTS, capacity: { cpu: "40", memory: "384Gi" } } });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-2", region: "eu-west", labels: { env: "prod" } });
    const bigger = { ...CLUSTER_EU1, content: CLUSTER_EU1.content.replace('requests.cpu: "20"', 'requests.cpu: "30"') };
    expect(bigger.content).not.toBe(CLUSTER_EU1.content);
    const error = await refused(call(h.admin, "POST", "/v1/apply", { files: [bigger] }));
    expect(error.status).toBe(409);
    expect(error.message).toContain(`cluster "eu-west-1": intent "payments-quota": spec.generate.quota.hard.requests.cpu: quotas reserve cpu 60 over payments-quota, above the cluster's capacity 40`);
    // The facts are the database's: a restarted hub holds the cluster to them still.
    await h.hub.close();
    const again = await hubs.startAt(h.dir);
    expect((await refused(call(again.admin, "POST", "/v1/apply", { files: [bigger] }))).status).toBe(409);
  });
  it("refuses a change that makes two objects with one name for a cluster, naming the intents and the object", async () => {
    const h = await hubs.startCopy("duplicate");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" }, facts: FACTS });
    // A residency intent with CEL rules of its own: both would be its ValidatingAdmissionPolicy.
    const both = [
      "---",
      "apiVersion: polity.dev/v1",
      "kind: Policy",
      "metadata: { name: stay-home, owner: payments-sre }",
      "spec:",
      "  domain: data-residency",
      "  match: { kinds: [Pod] }",
      "  validations: [{ name: team, expression: has(object.metadata.labels) }]",
      "  generate: { residency: { selector: { residency: eu }, zones: [eu-west-1a] } }",
      "",
    ].join("\n");
    const error = await refused(call(h.admin, "POST", "/v1/apply", { files: [{ ...CLUSTER_EU1, content: `${CLUSTER_EU1.content.trimEnd()}\n${both}` }] }));
    expect(error.status).toBe(409);
    expect(error.causes.map((c) => c.message)).toContainEqual(
      expect.stringContaining(`cluster "eu-west-1": intent "stay-home": ValidatingAdmissionPolicy polity-stay-home: metadata.name: also made by intent "stay-home"`),
    );
  });
});

describe("facts an agent reports, and its apply results", () => {
  it("keeps reported facts beside the declared ones, signs the effective ones into the bundle with the manifests' hash when they bring no new problem", async () => {
    const h = await hubs.startCopy("reported");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" }, facts: FACTS });
    const agent = clusterEndpoint(h.hub.url, await enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1")));
    const reported = { kubernetesVersion: "v1.32.4", zones: ["eu-west-1a"], capacity: { cpu: "64", memory: "256Gi" }, nodes: 4 };
    expect((await call<{ changed: boolean }>(agent, "POST", "/v1/agent/facts", reported)).body).toMatchObject({ changed: true });
    expect((await call<{ changed: boolean }>(agent, "POST", "/v1/agent/facts", reported)).body).toMatchObject({ changed: false });
    const status = (await call<IntentsStatus>(h.admin, "GET", "/v1/clusters/eu-west-1/intents")).body;
    expect(status.facts.declared).toEqual(FACTS);
    expect(status.facts.effective).toEqual({ kubernetesVersion: "v1.32.4", networkPolicy: true, capacity: { cpu: "64", memory: "256Gi" }, zones: ["eu-west-1a"] });
    expect(status.problems).toEqual([]);
    expect(status.facts.withheld).toBeNull();
    // The bundle carries the effective facts and the hash the agent's own rendering must give.
    const bundle = decodeBundle((await call<Buffer>(agent, "GET", "/v1/agent/bundle", undefined, { raw: true, binary: true })).body);
    expect(bundle.envelope.signed.facts).toEqual(status.facts.effective);
    const rendering = renderCluster("eu-west-1", effectivePolicySetFromBytes(bundle.target), status.facts.effective as never);
    expect(bundle.envelope.signed.manifestsHash).toBe(rendering.hash);
    expect(status.bundle).toEqual({ version: bundle.envelope.signed.version, manifestsHash: rendering.hash });
  });

  it("does not sign reported facts that would drop the cluster's enforcement: the last good facts stay, the problem is shown and audited once per distinct facts, and an operator may accept them", async () => {
    const h = await hubs.startCopy("withheld");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" }, facts: FACTS });
    const agent = clusterEndpoint(h.hub.url, await enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1")));
    const bundleOf = async () => decodeBundle((await call<Buffer>(agent, "GET", "/v1/agent/bundle", undefined, { raw: true, binary: true })).body);
    // The bundle of the registration is signed again with the declared facts once they are loaded.
    const before = await eventually("a bundle signed with the declared facts", async () => {
      const b = await bundleOf();
      return b.envelope.signed.facts !== undefined && b;
    });
    const vaps = (facts: unknown) => renderCluster("eu-west-1", effectivePolicySetFromBytes(before.target), facts as never).document.manifests.filter((m) => m.kind === "ValidatingAdmissionPolicy").length;
    expect(vaps(before.envelope.signed.facts)).toBeGreaterThan(0);
    // Nodes relabelled out of every allowed zone (a kubelet sets its own zone label), then a version without VAPs: neither is signed.
    for (const lie of [
      { kubernetesVersion: "v1.31.2", zones: ["us-east-1a"], capacity: { cpu: "96", memory: "384Gi" }, nodes: 4 },
      { kubernetesVersion: "v1.29.0", zones: ["eu-west-1a"], capacity: { cpu: "96", memory: "384Gi" }, nodes: 4 },
    ]) {
      for (let i = 0; i < 3; i++) expect((await call<{ changed: boolean }>(agent, "POST", "/v1/agent/facts", lie)).body).toMatchObject({ changed: false, withheld: true });
      const after = await bundleOf();
      expect(after.envelope.signed.version).toBe(before.envelope.signed.version);
      expect(after.envelope.signed.facts).toEqual(before.envelope.signed.facts);
      const status = (await call<IntentsStatus>(h.admin, "GET", "/v1/clusters/eu-west-1/intents")).body;
      expect(status.facts.effective).toEqual(before.envelope.signed.facts);
      expect(status.facts.withheld).toMatchObject({ facts: lie, reportedAt: expect.any(String) });
      expect(status.problems.length).toBeGreaterThan(0);
      expect(status.problems.every((p) => p.startsWith("reported facts not signed:"))).toBe(true);
    }
    const cli = await hubs.cli(["cluster", "status", "eu-west-1"], { config: hubs.cliConfig("admin", h.admin) });
    expect(cli.code).toBe(1);
    expect(cli.out).toMatch(/withheld\s+Kubernetes v1\.29\.0/);
    // One audit entry per distinct facts, not per report.
    const withheld = async () => (await call<{ items: { entry: { data: { signed?: boolean } } }[] }>(h.admin, "GET", "/v1/audit/entries?limit=1000&kind=cluster.facts-reported&cluster=eu-west-1")).body.items.filter((e) => e.entry.data.signed === false);
    await eventually("the withheld facts audited", async () => (await withheld()).length >= 2);
    expect(await withheld()).toHaveLength(2);
    // An operator who knows the cluster really runs 1.29 accepts its facts: they are signed, and the VAPs go.
    const accepted = (await call<IntentsStatus>(h.admin, "POST", "/v1/clusters/eu-west-1/facts/accept")).body;
    expect(accepted.facts.withheld).toBeNull();
    expect(accepted.facts.effective).toMatchObject({ kubernetesVersion: "v1.29.0" });
    expect((await bundleOf()).envelope.signed.facts).toMatchObject({ kubernetesVersion: "v1.29.0" });
    expect((await refused(call(h.admin, "POST", "/v1/clusters/eu-west-1/facts/accept"))).status).toBe(409);
  });

  it("stores facts that change nothing effective (the node count of an autoscaling cluster) without a new bundle or an audit entry", async () => {
    const h = await hubs.startCopy("nodes");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" }, facts: FACTS });
    const agent = clusterEndpoint(h.hub.url, await enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1")));
    const base = { kubernetesVersion: "v1.31.2", zones: ["eu-west-1a", "eu-west-1b"], capacity: { cpu: "96", memory: "384Gi" } };
    await call(agent, "POST", "/v1/agent/facts", { ...base, nodes: 3 });
    const version = decodeBundle((await call<Buffer>(agent, "GET", "/v1/agent/bundle", undefined, { raw: true, binary: true })).body).envelope.signed.version;
    const generation = () => h.hub.context.federation.generation;
    const g0 = generation();
    for (let i = 0; i < 20; i++) expect((await call<{ changed: boolean }>(agent, "POST", "/v1/agent/facts", { ...base, nodes: 3 + (i % 2) })).body).toMatchObject({ changed: false });
    expect(generation()).toBe(g0);
    expect(decodeBundle((await call<Buffer>(agent, "GET", "/v1/agent/bundle", undefined, { raw: true, binary: true })).body).envelope.signed.version).toBe(version);
    const audited = async () => (await call<{ items: unknown[] }>(h.admin, "GET", "/v1/audit/entries?limit=1000&kind=cluster.facts-reported&cluster=eu-west-1")).body.items;
    await eventually("the first facts audited", async () => (await audited()).length > 0);
    expect(await audited()).toHaveLength(1);
    // The latest report is shown all the same.
    expect((await call<IntentsStatus>(h.admin, "GET", "/v1/clusters/eu-west-1/intents")).body.facts.reported).toMatchObject({ nodes: 4 });
  });

  it("audits a failed apply once per bundle version, manifests, outcome and failed object whatever its time, and bounds the entry", async () => {
    const h = await hubs.startCopy("apply-flood");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" }, facts: FACTS });
    const agent = clusterEndpoint(h.hub.url, await enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1")));
    const long = (n: number) => "x".repeat(n);
    const report = (i: number) => ({
      bundleVersion: 3,
      manifestsHash: "sha256:" + "0".repeat(64),
      outcome: "failed",
      fromDisk: false,
      at: new Date(Date.now() - i * 1000).toISOString(),
      applied: 2,
      deleted: 0,
      failed: { object: "ResourceQuota payments/polity-payments-quota", reason: long(4096) },
      rolledBack: true,
      rollbackFailures: Array.from({ length: 100 }, (_, j) => ({ object: `o${j}${long(200)}`, reason: long(600) })),
      conflicts: Array.from({ length: 100 }, (_, j) => ({ object: `o${j}${long(200)}`, field: long(600), manager: long(100) })),
      message: long(4096),
    });
    for (let i = 0; i < 20; i++) await call(agent, "POST", "/v1/agent/apply", report(i));
    const search = async () => (await call<{ items: { entry: { data: Record<string, unknown> } }[] }>(h.admin, "GET", "/v1/audit/entries?limit=1000&kind=intents.apply-failed&cluster=eu-west-1")).body.items;
    await eventually("the failure audited", async () => (await search()).length > 0);
    const audited = await search();
    expect(audited).toHaveLength(1);
    expect(JSON.stringify(audited[0]!.entry.data).length).toBeLessThan(16 * 1024);
    expect(audited[0]!.entry.data).toMatchObject({ conflictsOmitted: 90, rollbackFailuresOmitted: 90 });
    // An agent's clock far off is refused, naming the field.
    const future = await refused(call(agent, "POST", "/v1/agent/apply", { ...report(0), at: "9999-01-01T00:00:00Z" }));
    expect(`${future.message} ${JSON.stringify(future.causes)}`).toContain("at");
  });

  it("validates every field of an apply result and of reported facts at the boundary, and keeps the last result", async () => {
    const h = await hubs.startCopy("apply-results");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" }, facts: FACTS });
    const agent = clusterEndpoint(h.hub.url, await enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1")));
    const report = {
      bundleVersion: 3,
      manifestsHash: "sha256:" + "0".repeat(64),
      outcome: "failed",
      fromDisk: false,
      at: new Date().toISOString(),
      applied: 2,
      deleted: 0,
      failed: { object: "ResourceQuota payments/polity-payments-quota", reason: "conflict with another field manager" },
      rolledBack: true,
      rollbackFailures: [],
      conflicts: [{ object: "ResourceQuota payments/polity-payments-quota", field: ".spec.hard.requests.cpu", manager: "ops" }],
      message: null,
    };
    for (const [bad, field] of [
      [{ ...report, outcome: "exploded" }, "outcome"],
      [{ ...report, applied: -1 }, "applied"],
      [{ ...report, extra: true }, "extra"],
      [{ ...report, failed: { object: "x\u001b[2J", reason: "r" } }, "failed.object"],
      [{ ...report, conflicts: [{ object: "o", field: "f" }] }, "conflicts.0.manager"],
    ] as const) {
      const error = await refused(call(agent, "POST", "/v1/agent/apply", bad));
      expect(error.status, field).toBe(400);
      expect(`${error.message} ${JSON.stringify(error.causes)}`, field).toContain(field.split(".")[0]!);
    }
    for (const bad of [{ kubernetesVersion: "latest", zones: [], capacity: {}, nodes: 1 }, { kubernetesVersion: "v1.31.0", zones: [], capacity: { cpu: "lots" }, nodes: 1 }, { kubernetesVersion: "v1.31.0", zones: [], capacity: {}, nodes: 1, networkPolicy: false }]) {
      expect((await refused(call(agent, "POST", "/v1/agent/facts", bad))).status).toBe(400);
    }
    // Only a cluster's own agent reports: a person's token cannot.
    expect((await refused(call(h.admin, "POST", "/v1/agent/apply", report))).status).toBe(403);
    await call(agent, "POST", "/v1/agent/apply", report);
    const status = (await call<IntentsStatus>(h.admin, "GET", "/v1/clusters/eu-west-1/intents")).body;
    expect(status.lastApply).toMatchObject({ ...report, reportedAt: expect.any(String) });
  });
});
