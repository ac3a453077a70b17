/**
 * Importing Kubernetes admission policies: a ValidatingAdmissionPolicy with its binding and
 * params, or a Kyverno CEL ValidatingPolicy, becomes a Polity policy that decides as it
 * does; what cannot be expressed is refused with the reason.
 */
import { describe, expect, it } from "vitest";
import { effectiveSet } from "../../test/support/policy-sets.js";
import { evaluate } from "../decision/evaluate.js";
import { requestForResource } from "../decision/request.js";
import { importPolicies, type ImportInput } from "./import.js";

const NOW = Date.parse("2026-06-01T00:00:00Z");
const input = (...values: unknown[]): ImportInput[] => values.map((value, i) => ({ source: `in.yaml[${i}]`, value }));

const RULES = [{ apiGroups: ["apps"], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["deployments"] }];

const vap = (spec: Record<string, unknown>, name = "replica-limit") => ({
  apiVersion: "admissionregistration.k8s.io/v1",
  kind: "ValidatingAdmissionPolicy",
  metadata: { name },
  spec: { matchConstraints: { resourceRules: RULES }, ...spec },
});

const binding = (spec: Record<string, unknown>, name = "replica-limit-prod") => ({
  apiVersion: "admissionregistration.k8s.io/v1",
  kind: "ValidatingAdmissionPolicyBinding",
  metadata: { name },
  spec: { policyName: "replica-limit", validationActions: ["Deny"], ...spec },
});

const configMap = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "replica-limits", namespace: "default" }, data: { maxReplicas: "5" } };

const deployment = (replicas: number, ownerKind?: string) => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "web", namespace: "shop", ...(ownerKind === undefined ? {} : { ownerReferences: [{ kind: ownerKind, name: "x", apiVersion: "batch/v1", uid: "u" }] }) },
  spec: { replicas },
});

describe("importing a ValidatingAdmissionPolicy", () => {
  const replicaLimit = vap({
    paramKind: { apiVersion: "v1", kind: "ConfigMap" },
    matchConditions: [{ name: "not-created-by-cronjob", expression: "!has(object.metadata.ownerReferences) || !object.metadata.ownerReferences.exists(r, r.kind == 'CronJob')" }],
    validations: [{ expression: "object.spec.replicas <= int(params.data.maxReplicas)", messageExpression: "'replicas must be no greater than ' + params.data.maxReplicas" }],
  });

  it("makes one policy per binding that decides as the policy bound with its params", () => {
    const result = importPolicies(input(replicaLimit, binding({ paramRef: { name: "replica-limits", namespace: "default" } }), configMap));
    expect(result.refusals).toEqual([]);
    expect(result.policies.map((p) => p.document.metadata)).toEqual([{ name: "replica-limit-prod", description: "Imported from ValidatingAdmissionPolicy replica-limit and its binding replica-limit-prod." }]);
    const set = effectiveSet(result.policies.map((p) => p.document));
    const decide = (object: unknown) => evaluate(set, requestForResource(object), { now: NOW });
    expect(decide(deployment(3)).allowed).toBe(true);
    expect(decide(deployment(9)).violations.map((v) => v.message)).toEqual(["replicas must be no greater than 5"]);
    expect(decide(deployment(9, "CronJob")).allowed).toBe(true);
  });

  it("turns validationActions into the enforcement, a namespace selector into the scope, an object selector into a match condition", () => {
    const result = importPolicies(
      input(
        vap({ validations: [{ expression: "object.spec.replicas <= 3" }] }),
        binding({ validationActions: ["Warn", "Audit"], matchResources: { namespaceSelector: { matchLabels: { env: "prod" } }, objectSelector: { matchExpressions: [{ key: "tier", operator: "In", values: ["web"] }] } } }),
      ),
    );
    expect(result.refusals).toEqual([]);
    expect(result.policies[0]!.document.spec).toMatchObject({
      enforcement: "warn",
      scope: { namespaceSelector: { matchLabels: { env: "prod" } } },
      matchConditions: [{ name: "binding-object-selector", expression: `("tier" in object.metadata.?labels.orValue({}) && object.metadata.?labels.orValue({})["tier"] in ["web"])` }],
    });
  });

  it("imports a policy without a binding as bound everywhere with Deny, and says so", () => {
    const result = importPolicies(input(vap({ validations: [{ expression: "object.spec.replicas <= 3" }] })));
    expect(result.policies[0]!.document.spec).toMatchObject({ enforcement: "deny" });
    expect(result.notes.map((n) => n.reason)).toEqual(["no ValidatingAdmissionPolicyBinding among the inputs: imported as bound everywhere, with validationActions [Deny]"]);
  });

  it("refuses what Polity cannot express, saying why", () => {
    const refusal = (...values: unknown[]) => importPolicies(input(...values)).refusals.map((r) => `${r.field ?? "policy"}: ${r.reason}`);
    expect(refusal(replicaLimit, binding({ paramRef: { selector: { matchLabels: { a: "b" } } } }))).toEqual([
      "policy: paramRef.selector evaluates the policy once per matching params object: Polity evaluates a policy once, with one set of params",
    ]);
    expect(refusal(replicaLimit, binding({ paramRef: { name: "missing" } }))).toEqual(["policy: its params, ConfigMap missing, are not among the inputs"]);
    expect(refusal(vap({ validations: [{ expression: "authorizer.group('').resource('pods').check('create').allowed()" }] }), binding({}))[0]).toMatch(
      /^policy: spec\.validations\[0\]\.expression: type error at 1:1: the Kubernetes authorizer library is not available/,
    );
    expect(refusal(vap({ validations: [{ expression: "true" }], auditAnnotations: [{ key: "k", valueExpression: "'v'" }] }), binding({}))).toEqual([
      "spec.auditAnnotations: audit annotations computed by CEL are not expressed: Polity's audit annotations carry its violations, exemptions and evaluation errors",
    ]);
    expect(refusal(binding({}, "orphan"))).toEqual(["policy: its policy, replica-limit, is not among the inputs"]);
  });
});

describe("importing a Kyverno CEL ValidatingPolicy", () => {
  const kyverno = (spec: Record<string, unknown>) => ({
    apiVersion: "policies.kyverno.io/v1alpha1",
    kind: "ValidatingPolicy",
    metadata: { name: "require-labels" },
    spec: { matchConstraints: { resourceRules: [{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"] }] }, ...spec },
  });

  it("keeps its expressions, and its validationActions as the enforcement", () => {
    const result = importPolicies(input(kyverno({ validationActions: ["Audit"], validations: [{ expression: "object.metadata.?labels[?'app'].hasValue()", message: "label app" }] })));
    expect(result.refusals).toEqual([]);
    expect(result.policies[0]!.document.spec).toMatchObject({ enforcement: "audit", validations: [{ expression: "object.metadata.?labels[?'app'].hasValue()", message: "label app" }] });
  });

  it("refuses Kyverno's own libraries, which need the cluster", () => {
    const result = importPolicies(input(kyverno({ validations: [{ expression: "resource.Get('v1', 'configmaps', 'default', 'x').data.a == 'b'" }] })));
    expect(result.policies).toEqual([]);
    expect(result.refusals[0]!.reason).toMatch(/undeclared reference to 'resource'/);
  });
});
