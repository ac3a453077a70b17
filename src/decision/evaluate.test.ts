/**
 * evaluate: one admission request, decided from an effective policy set alone. Deny
 * refuses, warn warns, audit annotates; a rule that cannot be evaluated follows its
 * failure policy; an exception relaxes a rule strictly before it expires.
 */
import { describe, expect, it } from "vitest";
import { effectiveSet, exception, policy, type Doc } from "../../test/support/policy-sets.js";
import { evaluate, type Decision } from "./evaluate.js";
import { requestForResource } from "./request.js";

const NOW = Date.parse("2026-06-01T00:00:00Z");
const EXPIRES = "2026-06-02T00:00:00Z";

const TEAM_LABEL = { name: "team-label", expression: "has(object.metadata.labels) && 'team' in object.metadata.labels", message: "pods need a team label" };

function pod(labels: Record<string, string> = {}, where: { namespace?: string; name?: string } = {}): Doc {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: where.name ?? "web", namespace: where.namespace ?? "shop", labels },
    spec: { containers: [{ name: "app", image: "registry.example.com/app:1.0" }] },
  };
}

function decide(docs: readonly Doc[], object: unknown, context: { now?: number; namespaceObject?: unknown } = {}): Decision {
  return evaluate(effectiveSet(docs), requestForResource(object, "CREATE"), { now: context.now ?? NOW, namespaceObject: context.namespaceObject });
}

describe("a decision", () => {
  it("allows what no policy matches, with nothing to report", () => {
    expect(decide([], pod())).toEqual({ allowed: true, violations: [], warnings: [], auditAnnotations: {}, exemptions: [] });
  });

  it("allows a request every rule accepts", () => {
    expect(decide([policy("team", { validations: [TEAM_LABEL] })], pod({ team: "payments" })).allowed).toBe(true);
  });

  it("denies a request a deny rule refuses, naming the policy, the rule and its message", () => {
    const decision = decide([policy("team", { validations: [TEAM_LABEL] })], pod());
    expect(decision.allowed).toBe(false);
    expect(decision.violations).toEqual([{ policy: "team", rule: "team-label", message: "pods need a team label", enforcement: "deny" }]);
    expect(decision.warnings).toEqual([]);
  });

  it("allows with a warning what a warn rule refuses", () => {
    const decision = decide([policy("team", { enforcement: "warn", validations: [TEAM_LABEL] })], pod());
    expect(decision.allowed).toBe(true);
    expect(decision.warnings).toEqual(["team: pods need a team label"]);
    expect(decision.violations).toEqual([expect.objectContaining({ enforcement: "warn" })]);
  });

  it("allows and annotates for audit what an audit rule refuses", () => {
    const decision = decide([policy("team", { enforcement: "audit", validations: [TEAM_LABEL] })], pod());
    expect(decision.allowed).toBe(true);
    expect(decision.warnings).toEqual([]);
    expect(decision.auditAnnotations).toEqual({ "audit-violations": "team/team-label: pods need a team label" });
  });

  it("words a violation with the rule's message expression, its message, or the failed expression", () => {
    const rules = [
      { name: "by-expression", expression: "false", messageExpression: "'pod ' + object.metadata.name + ' refused'", message: "not this one" },
      { name: "by-message", expression: "false", message: "a plain message" },
      { name: "by-default", expression: "1 > 2" },
    ];
    expect(decide([policy("words", { validations: rules })], pod()).violations.map((v) => v.message)).toEqual([
      "pod web refused",
      "a plain message",
      "failed expression: 1 > 2",
    ]);
  });

  it("judges only the kinds and operations a policy matches, and the main resource unless told", () => {
    const docs = [policy("team", { validations: [TEAM_LABEL] })];
    const set = effectiveSet(docs);
    const configMap = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "c", namespace: "shop" } };
    expect(evaluate(set, requestForResource(configMap), { now: NOW }).allowed).toBe(true);
    expect(evaluate(set, requestForResource(pod(), "DELETE"), { now: NOW }).allowed).toBe(true);
    expect(evaluate(set, { ...requestForResource(pod(), "UPDATE", pod()), subResource: "status" }, { now: NOW }).allowed).toBe(true);
    expect(evaluate(set, requestForResource(pod(), "UPDATE", pod()), { now: NOW }).allowed).toBe(false);
  });

  it("judges the pod template of a workload with its Pod policies, marking the violation", () => {
    const deployment = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web", namespace: "shop", labels: { team: "payments" } },
      spec: { template: { metadata: { labels: {} }, spec: { containers: [{ name: "app", image: "x:1" }] } } },
    };
    const decision = decide([policy("team", { validations: [TEAM_LABEL] })], deployment);
    expect(decision.allowed).toBe(false);
    expect(decision.violations).toEqual([{ policy: "team", rule: "team-label", message: "pods need a team label", enforcement: "deny", target: "pod template" }]);
  });

  it("selects policies by the namespace's labels, or by its name alone when the Namespace is not known", () => {
    const docs = [policy("prod-only", { validations: [TEAM_LABEL], scope: { namespaceSelector: { matchLabels: { env: "prod" } } } })];
    const namespace = (labels: Record<string, string>) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name: "shop", labels } });
    expect(decide(docs, pod(), { namespaceObject: namespace({ env: "prod" }) }).allowed).toBe(false);
    expect(decide(docs, pod(), { namespaceObject: namespace({ env: "dev" }) }).allowed).toBe(true);
    const byName = [policy("shop-only", { validations: [TEAM_LABEL], scope: { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "shop" } } } })];
    expect(decide(byName, pod()).allowed).toBe(false);
    expect(decide(byName, pod({}, { namespace: "other" })).allowed).toBe(true);
  });

  it("fails closed under its failure policy when its namespace selector needs labels that are not known, never allowing silently", () => {
    const scope = { namespaceSelector: { matchLabels: { env: "prod" } } };
    const denied = decide([policy("prod-only", { validations: [TEAM_LABEL], scope })], pod());
    expect(denied.allowed).toBe(false);
    expect(denied.violations).toEqual([
      {
        policy: "prod-only",
        rule: "namespaceSelector",
        message: "the labels of namespace shop are not known here, and the policy selects namespaces by env: refused under its failure policy (Fail)",
        enforcement: "deny",
      },
    ]);
    // A pod template of a workload in that namespace: the same.
    const deployment = { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "web", namespace: "shop" }, spec: { template: pod() } };
    expect(decide([policy("prod-only", { validations: [TEAM_LABEL], scope })], deployment).violations).toEqual([expect.objectContaining({ rule: "namespaceSelector", target: "pod template" })]);
    // Under failurePolicy Ignore it is skipped, and says so in the audit annotations.
    const ignored = decide([policy("prod-only", { validations: [TEAM_LABEL], scope, failurePolicy: "Ignore" })], pod());
    expect(ignored.allowed).toBe(true);
    expect(ignored.auditAnnotations["evaluation-errors"]).toMatch(/^prod-only\/namespaceSelector: the labels of namespace shop are not known here, .*skipped under its failure policy \(Ignore\)$/);
    // Selecting by name alone needs nothing unknown; nor does a cluster-scoped object.
    expect(decide([policy("not-system", { validations: [TEAM_LABEL], scope: { namespaceSelector: { matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "NotIn", values: ["kube-system"] }] } } })], pod({ team: "a" })).allowed).toBe(true);
  });
});

describe("a decision whose Namespace is not known", () => {
  // A guard that would pass with namespaceObject null: it must not allow silently.
  const guarded = { name: "prod-team", expression: "namespaceObject == null || !has(namespaceObject.metadata.labels) || namespaceObject.metadata.labels['env'] != 'prod' || 'team' in object.metadata.labels" };

  it("fails closed under its failure policy when a policy's expressions read namespaceObject, saying why", () => {
    const denied = evaluate(effectiveSet([policy("reads-namespace", { validations: [guarded] })]), requestForResource(pod(), "CREATE"), {
      now: NOW,
      namespaceUnknown: "namespace shop is not in the agent's namespace cache, and reading it from the API server failed: no answer within 2000 ms",
    });
    expect(denied.allowed).toBe(false);
    expect(denied.violations).toEqual([
      {
        policy: "reads-namespace",
        rule: "namespaceObject",
        message:
          "namespace shop is not in the agent's namespace cache, and reading it from the API server failed: no answer within 2000 ms, and the policy's expressions read namespaceObject: refused under its failure policy (Fail)",
        enforcement: "deny",
      },
    ]);
    const ignored = decide([policy("reads-namespace", { validations: [guarded], failurePolicy: "Ignore" })], pod());
    expect(ignored.allowed).toBe(true);
    expect(ignored.auditAnnotations["evaluation-errors"]).toMatch(/^reads-namespace\/namespaceObject: .*skipped under its failure policy \(Ignore\)$/);
  });

  it("decides by the Namespace once it is known, and needs none for a cluster-scoped object", () => {
    const docs = [policy("reads-namespace", { validations: [guarded] })];
    const prod = { apiVersion: "v1", kind: "Namespace", metadata: { name: "shop", labels: { env: "prod" } } };
    expect(decide(docs, pod(), { namespaceObject: prod }).allowed).toBe(false);
    expect(decide(docs, pod({ team: "a" }), { namespaceObject: prod }).allowed).toBe(true);
    const clusterScoped = [policy("reads-namespace", { match: { kinds: ["ClusterRole"] }, validations: [{ name: "null", expression: "namespaceObject == null" }] })];
    expect(decide(clusterScoped, { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", metadata: { name: "r" } }).allowed).toBe(true);
  });
});

describe("a rule that cannot be evaluated", () => {
  const broken = { name: "replicas", expression: "object.spec.replicas > 1" };

  it("is a violation under failurePolicy Fail, the default, saying why", () => {
    const decision = decide([policy("broken", { validations: [broken] })], pod());
    expect(decision.allowed).toBe(false);
    expect(decision.violations).toEqual([expect.objectContaining({ rule: "replicas", message: expect.stringMatching(/^rule could not be evaluated: /) })]);
  });

  it("is skipped and noted for audit under failurePolicy Ignore", () => {
    const decision = decide([policy("broken", { validations: [broken], failurePolicy: "Ignore" })], pod());
    expect(decision.allowed).toBe(true);
    expect(decision.violations).toEqual([]);
    expect(decision.auditAnnotations["evaluation-errors"]).toMatch(/^broken\/replicas: rule could not be evaluated: /);
  });

  it("in a match condition refuses the request under Fail and skips the policy under Ignore", () => {
    const conditions = [{ name: "scaled", expression: "object.spec.replicas > 1" }];
    expect(decide([policy("p", { validations: [TEAM_LABEL], matchConditions: conditions })], pod({ team: "a" })).violations).toEqual([
      expect.objectContaining({ rule: "scaled", message: expect.stringMatching(/^match condition could not be evaluated: /) }),
    ]);
    const ignored = decide([policy("p", { validations: [TEAM_LABEL], matchConditions: conditions, failurePolicy: "Ignore" })], pod());
    expect(ignored.allowed).toBe(true);
    expect(ignored.auditAnnotations["evaluation-errors"]).toMatch(/^p\/scaled: /);
  });
});

describe("an exception", () => {
  const docs = (scope: Doc, rules?: string[]) => [
    policy("team", { validations: [TEAM_LABEL, { name: "named", expression: "object.metadata.name != 'web'", message: "not web" }] }),
    exception("legacy-shop", EXPIRES, { policy: "team", scope, ...(rules === undefined ? {} : { rules }) }),
  ];

  it("turns off the rules it names in its scope before it expires, and says so", () => {
    const decision = decide(docs({ namespaces: ["shop"] }, ["team-label"]), pod(), { now: Date.parse(EXPIRES) - 1 });
    expect(decision.violations.map((v) => v.rule)).toEqual(["named"]);
    expect(decision.exemptions).toEqual([{ policy: "team", rule: "team-label", exception: "legacy-shop", expiresAt: EXPIRES }]);
    expect(decision.auditAnnotations.exemptions).toBe(`team/team-label by exception legacy-shop (expires ${EXPIRES})`);
  });

  it("turns off every rule of the policy when it names none", () => {
    const decision = decide(docs({ namespaces: ["shop"] }), pod());
    expect(decision.allowed).toBe(true);
    expect(decision.exemptions.map((e) => e.rule)).toEqual(["team-label", "named"]);
  });

  it("stops applying at the instant it expires", () => {
    const decision = decide(docs({ namespaces: ["shop"] }), pod(), { now: Date.parse(EXPIRES) });
    expect(decision.allowed).toBe(false);
    expect(decision.exemptions).toEqual([]);
    expect(decision.auditAnnotations).toEqual({});
  });

  it("applies only inside its scope: namespaces, names, object labels", () => {
    expect(decide(docs({ namespaces: ["other"] }), pod()).allowed).toBe(false);
    expect(decide(docs({ names: ["web"] }), pod()).allowed).toBe(true);
    expect(decide(docs({ names: ["api"] }), pod()).allowed).toBe(false);
    expect(decide(docs({ objectSelector: { matchLabels: { legacy: "true" } } }), pod({ legacy: "true" })).allowed).toBe(true);
    expect(decide(docs({ objectSelector: { matchLabels: { legacy: "true" } } }), pod()).allowed).toBe(false);
  });
});

describe("the cost of one decision", () => {
  const heavy = (name: string, extra: Record<string, unknown> = {}) =>
    policy(name, { match: { kinds: ["ConfigMap"] }, validations: [{ name: "pairs", expression: "object.data.items.all(x, object.data.items.all(y, x + y >= 0))" }], ...extra });
  const configMap = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "big", namespace: "shop" }, data: { items: Array.from({ length: 300 }, (_, i) => i) } };

  it("is bounded by its budget: once it is spent, every rule left fails by its failure policy, saying so", () => {
    const docs = Array.from({ length: 60 }, (_, i) => heavy(`heavy-${String(i).padStart(2, "0")}`));
    const unbounded = evaluate(effectiveSet(docs), requestForResource(configMap, "CREATE"), { now: NOW, costBudget: Number.MAX_SAFE_INTEGER });
    expect(unbounded.allowed).toBe(true);
    const bounded = decide(docs, configMap);
    expect(bounded.allowed).toBe(false);
    const spent = bounded.violations.filter((v) => v.message === "rule could not be evaluated: the decision's cost budget of 10000000 is spent");
    expect(spent.length).toBeGreaterThan(0);
    expect(spent.length).toBe(bounded.violations.length);
    // The rules before the budget ran out were decided.
    expect(bounded.violations.length).toBeLessThan(60);
  });

  it("skips, under failurePolicy Ignore, what it cannot afford, and notes it", () => {
    const docs = Array.from({ length: 60 }, (_, i) => heavy(`lenient-${String(i).padStart(2, "0")}`, { failurePolicy: "Ignore" }));
    const decision = decide(docs, configMap);
    expect(decision.allowed).toBe(true);
    expect(decision.auditAnnotations["evaluation-errors"]).toMatch(/the decision's cost budget of 10000000 is spent/);
  });
});

