/**
 * Resource rules, matched as the API server matches a ValidatingAdmissionPolicy's
 * matchConstraints: groups, versions, resources and subresources, operations and scope.
 */
import { describe, expect, it } from "vitest";
import { effectiveSet, policy } from "../../test/support/policy-sets.js";
import type { EffectiveResourceRule } from "../layering/effective.js";
import { evaluate } from "./evaluate.js";
import { parseAdmissionReview, requestForResource, type AdmissionRequest } from "./request.js";
import { guessResource, ruleMatches, type RequestedResource } from "./resource-rules.js";

const NOW = Date.parse("2026-06-01T00:00:00Z");

const rule = (overrides: Partial<EffectiveResourceRule>): EffectiveResourceRule => ({
  apiGroups: [""],
  apiVersions: ["v1"],
  resources: ["pods"],
  operations: ["CREATE"],
  scope: "*",
  ...overrides,
});

const pods = (overrides: Partial<RequestedResource> = {}): RequestedResource => ({
  group: "",
  version: "v1",
  resource: "pods",
  subresource: "",
  operation: "CREATE",
  namespace: "shop",
  ...overrides,
});

describe("a resource rule", () => {
  it("matches its group, version, resource and operation, * matching any", () => {
    expect(ruleMatches(rule({}), pods())).toBe(true);
    expect(ruleMatches(rule({}), pods({ operation: "UPDATE" }))).toBe(false);
    expect(ruleMatches(rule({ operations: ["*"], apiVersions: ["*"] }), pods({ operation: "DELETE", version: "v2" }))).toBe(true);
    expect(ruleMatches(rule({ apiGroups: ["apps"] }), pods())).toBe(false);
  });

  it("matches a subresource only when named: pods/exec, */scale, pods/*; * alone is the main resource only", () => {
    const exec = pods({ subresource: "exec", operation: "CONNECT" });
    expect(ruleMatches(rule({ resources: ["pods/exec"], operations: ["CONNECT"] }), exec)).toBe(true);
    expect(ruleMatches(rule({ resources: ["pods"], operations: ["CONNECT"] }), exec)).toBe(false);
    expect(ruleMatches(rule({ resources: ["*"], operations: ["CONNECT"] }), exec)).toBe(false);
    expect(ruleMatches(rule({ resources: ["pods/*"], operations: ["CONNECT"] }), exec)).toBe(true);
    expect(ruleMatches(rule({ resources: ["*/*"], operations: ["CONNECT"] }), exec)).toBe(true);
    const scale = pods({ group: "apps", resource: "deployments", subresource: "scale", operation: "UPDATE" });
    expect(ruleMatches(rule({ apiGroups: ["apps"], resources: ["*/scale"], operations: ["UPDATE"] }), scale)).toBe(true);
  });

  it("tells namespaced resources from cluster-scoped ones, a Namespace being cluster-scoped", () => {
    expect(ruleMatches(rule({ scope: "Namespaced" }), pods())).toBe(true);
    expect(ruleMatches(rule({ scope: "Cluster" }), pods())).toBe(false);
    const namespace = pods({ resource: "namespaces", namespace: "shop" });
    expect(ruleMatches(rule({ resources: ["namespaces"], scope: "Cluster" }), namespace)).toBe(true);
    expect(ruleMatches(rule({ resources: ["namespaces"], scope: "Namespaced" }), namespace)).toBe(false);
    expect(ruleMatches(rule({ resources: ["nodes"], scope: "Namespaced" }), pods({ resource: "nodes", namespace: "" }))).toBe(false);
  });
});

describe("the resource of a kind read from a file", () => {
  it("is guessed as Kubernetes guesses it: lower case and plural", () => {
    expect(["Pod", "Ingress", "NetworkPolicy", "Endpoints", "ResourceQuota"].map(guessResource)).toEqual(["pods", "ingresses", "networkpolicies", "endpoints", "resourcequotas"]);
  });
});

describe("a policy that matches by resource rules", () => {
  const set = effectiveSet([
    policy("no-exec", {
      match: { resourceRules: [{ apiGroups: [""], apiVersions: ["v1"], resources: ["pods/exec", "pods/attach"], operations: ["CONNECT"] }] },
      validations: [{ name: "exec", expression: "!('system:masters' in request.userInfo.groups)", message: "no exec for cluster admins either" }],
    }),
    policy("config", {
      match: {
        resourceRules: [{ apiGroups: [""], apiVersions: ["*"], resources: ["configmaps", "secrets"], operations: ["CREATE"], scope: "Namespaced" }],
        excludeResourceRules: [{ apiGroups: [""], apiVersions: ["*"], resources: ["secrets"], operations: ["*"] }],
      },
      validations: [{ name: "labelled", expression: "has(object.metadata.labels)", message: "label it" }],
    }),
  ]);

  const execRequest = (groups: string[]): AdmissionRequest =>
    parseAdmissionReview({
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      request: {
        uid: "u",
        kind: { group: "", version: "v1", kind: "PodExecOptions" },
        resource: { group: "", version: "v1", resource: "pods" },
        subResource: "exec",
        namespace: "shop",
        name: "web",
        operation: "CONNECT",
        userInfo: { username: "alice", groups },
        object: { kind: "PodExecOptions", apiVersion: "v1", command: ["sh"] },
      },
    }).request;

  it("judges an exec into a pod, which no kind names", () => {
    expect(evaluate(set, execRequest(["system:masters"]), { now: NOW }).violations.map((v) => v.rule)).toEqual(["exec"]);
    expect(evaluate(set, execRequest(["dev"]), { now: NOW }).allowed).toBe(true);
  });

  it("judges a resource from a file by the resource its kind names, and not one an exclude rule matches", () => {
    const unlabelled = (kind: string) => ({ apiVersion: "v1", kind, metadata: { name: "c", namespace: "shop" } });
    expect(evaluate(set, requestForResource(unlabelled("ConfigMap")), { now: NOW }).violations.map((v) => `${v.policy}/${v.rule}`)).toEqual(["config/labelled"]);
    expect(evaluate(set, requestForResource(unlabelled("Secret")), { now: NOW }).allowed).toBe(true);
  });
});
