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
  it("keeps reported facts beside the declared ones, signs the effective ones into the bundle with the manifests' hash, and shows what reality cannot hold without refusing unrelated changes", async () => {
    const h = await hubs.startCopy("reported");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, CLUSTER_EU1] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" }, facts: FACTS });
    const agent = clusterEndpoint(h.hub.url, await enroll(h.hub, "eu-west-1", await joinToken(h, "eu-west-1")));
    // The nodes moved out of every zone the residency intent allows.
    const reported = { kubernetesVersion: "v1.32.4", zones: ["us-east-1a"], capacity: { cpu: "64", memory: "256Gi" }, nodes: 4 };
    expect((await call<{ changed: boolean }>(agent, "POST", "/v1/agent/facts", reported)).body).toEqual({ changed: true });
    expect((await call<{ changed: boolean }>(agent, "POST", "/v1/agent/facts", reported)).body).toEqual({ changed: false });
    const status = (await call<IntentsStatus>(h.admin, "GET", "/v1/clusters/eu-west-1/intents")).body;
    expect(status.facts.declared).toEqual(FACTS);
    expect(status.facts.effective).toEqual({ kubernetesVersion: "v1.32.4", networkPolicy: true, capacity: { cpu: "64", memory: "256Gi" }, zones: ["us-east-1a"] });
    expect(status.problems.some((p) => p.includes("no node of the cluster is in an allowed zone"))).toBe(true);
    // The bundle carries the effective facts and the hash the agent's own rendering must give.
    const bundle = decodeBundle((await call<Buffer>(agent, "GET", "/v1/agent/bundle", undefined, { raw: true, binary: true })).body);
    expect(bundle.envelope.signed.facts).toEqual(status.facts.effective);
    const rendering = renderCluster("eu-west-1", effectivePolicySetFromBytes(bundle.target), status.facts.effective as never);
    expect(bundle.envelope.signed.manifestsHash).toBe(rendering.hash);
    expect(status.bundle).toEqual({ version: bundle.envelope.signed.version, manifestsHash: rendering.hash });
    // An unrelated change is not refused for what reality broke before it.
    const fewerPods = { ...CLUSTER_EU1, content: CLUSTER_EU1.content.replace('pods: "200"', 'pods: "150"') };
    expect((await call(h.admin, "POST", "/v1/apply", { files: [fewerPods] })).status).toBe(201);
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
