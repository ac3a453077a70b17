/**
 * The hub checks intents against each registered cluster's facts before a change goes
 * anywhere: a registration, or a change of layers, that some cluster could not hold is
 * refused (409 MergeRefused) with problems naming the cluster, the intent and the field;
 * clusters that declared no facts are not held to any. The facts survive a restart.
 */
import { describe, expect, it } from "vitest";
import { call } from "../src/client/http.js";
import { example, HubFixture, refused } from "./support/hubs.js";

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
