/** The webhook's rules, from what the bundle's policies match: nothing else is registered. */
import { describe, expect, it } from "vitest";
import { effectiveSet, policy } from "../../test/support/policy-sets.js";
import { resourceOfKind, webhookConfiguration, webhookRules } from "./webhook-config.js";

const RULE = { name: "r", expression: "true" };

describe("the webhook's rules", () => {
  it("name resources as Kubernetes does", () => {
    expect(["Pod", "NetworkPolicy", "Ingress", "Endpoints", "ConfigMap", "StorageClass", "Gateway"].map(resourceOfKind)).toEqual([
      "pods",
      "networkpolicies",
      "ingresses",
      "endpoints",
      "configmaps",
      "storageclasses",
      "gateways",
    ]);
  });

  it("register a Pod policy's pods and the workloads whose templates it judges, for its operations only", () => {
    expect(webhookRules(effectiveSet([policy("p", { validations: [RULE], match: { kinds: ["Pod"], operations: ["CREATE"] } })]))).toEqual([
      { apiGroups: [""], apiVersions: ["*"], operations: ["CREATE"], resources: ["podtemplates", "replicationcontrollers"], scope: "*" },
      { apiGroups: ["*"], apiVersions: ["*"], operations: ["CREATE"], resources: ["pods"], scope: "*" },
      { apiGroups: ["apps"], apiVersions: ["*"], operations: ["CREATE"], resources: ["daemonsets", "deployments", "replicasets", "statefulsets"], scope: "*" },
      { apiGroups: ["batch"], apiVersions: ["*"], operations: ["CREATE"], resources: ["cronjobs", "jobs"], scope: "*" },
    ]);
  });

  it("keep a kind's group, add subresources, take resource rules as written, and register everything for *", () => {
    const rules = webhookRules(
      effectiveSet([
        policy("np", { validations: [RULE], match: { kinds: ["networking.k8s.io/NetworkPolicy"], operations: ["CREATE", "UPDATE"] } }),
        policy("exec", { validations: [RULE], match: { kinds: ["Pod"], operations: ["CONNECT"], subresources: ["exec"] } }),
      ]),
    );
    expect(rules).toContainEqual({ apiGroups: ["networking.k8s.io"], apiVersions: ["*"], operations: ["CREATE", "UPDATE"], resources: ["networkpolicies"], scope: "*" });
    expect(rules).toContainEqual({ apiGroups: ["*"], apiVersions: ["*"], operations: ["CONNECT"], resources: ["pods", "pods/exec"], scope: "*" });
    expect(webhookRules(effectiveSet([policy("all", { validations: [RULE], match: { kinds: ["*"] } })]))).toEqual([
      { apiGroups: ["*"], apiVersions: ["*"], operations: ["CREATE", "UPDATE", "DELETE", "CONNECT"], resources: ["*", "*/*"], scope: "*" },
    ]);
    expect(webhookRules(effectiveSet([]))).toEqual([]);
  });

  it("are written with the CA and the exempt namespaces", () => {
    const config = webhookConfiguration({ cluster: "c", caPem: "CA", target: { namespace: "polity-system", name: "polity-agent" }, failurePolicy: "Fail", rules: [] }) as { webhooks: { clientConfig: unknown; namespaceSelector: unknown }[] };
    expect(config.webhooks[0]!.clientConfig).toEqual({ service: { namespace: "polity-system", name: "polity-agent", path: "/validate", port: 443 }, caBundle: Buffer.from("CA").toString("base64") });
    expect(JSON.stringify(config.webhooks[0]!.namespaceSelector)).toContain("kube-system");
  });
});
