/**
 * Preparing an effective set for decisions: compiled once per set, policies found by kind,
 * operation and subresource, pod policies found for workloads' templates.
 */
import { describe, expect, it } from "vitest";
import { effectiveSet, exception, policy } from "../../test/support/policy-sets.js";
import { candidatesFor, podCandidatesFor, prepare } from "./prepare.js";

const RULE = { name: "r", expression: "true" };

const set = effectiveSet([
  policy("pods", { match: { kinds: ["Pod"] }, validations: [RULE] }),
  policy("core-pods", { match: { kinds: ["core/Pod"], operations: ["CREATE"] }, validations: [RULE] }),
  policy("deployments", { match: { kinds: ["apps/Deployment"] }, validations: [RULE] }),
  policy("everything", { match: { kinds: ["*"], operations: ["CREATE", "UPDATE", "DELETE"] }, validations: [RULE] }),
  policy("ephemeral", { match: { kinds: ["Pod"], subresources: ["ephemeralcontainers"] }, validations: [RULE] }),
  exception("pods-in-shop", "2026-06-02T00:00:00Z", { policy: "pods", rules: ["r"], scope: { namespaces: ["shop"] } }),
]);

const names = (list: readonly { policy: { name: string } }[]) => list.map((p) => p.policy.name);

describe("prepare", () => {
  it("prepares a set once and hands back the same preparation after", () => {
    expect(prepare(set)).toBe(prepare(set));
  });

  it("compiles every rule and parses each exception's expiry and scope", () => {
    const pods = prepare(set).policies.find((p) => p.policy.name === "pods")!;
    expect(pods.rules.map((r) => [r.name, typeof r.program.evaluate])).toEqual([["r", "function"]]);
    expect(pods.exceptions).toEqual([
      expect.objectContaining({ expiresAtMs: Date.parse("2026-06-02T00:00:00Z"), rules: new Set(["r"]), namespaces: new Set(["shop"]), names: undefined }),
    ]);
  });
});

describe("candidatesFor", () => {
  const prepared = prepare(set);

  it("finds the policies of a kind in any group, or in its group only when one is named, in name order", () => {
    expect(names(candidatesFor(prepared, "", "Pod", "CREATE", ""))).toEqual(["core-pods", "ephemeral", "everything", "pods"]);
    expect(names(candidatesFor(prepared, "apps", "Deployment", "CREATE", ""))).toEqual(["deployments", "everything"]);
    expect(names(candidatesFor(prepared, "other.example.com", "Deployment", "CREATE", ""))).toEqual(["everything"]);
  });

  it("finds only the policies of the operation", () => {
    expect(names(candidatesFor(prepared, "", "Pod", "UPDATE", ""))).toEqual(["ephemeral", "everything", "pods"]);
    expect(names(candidatesFor(prepared, "", "Pod", "DELETE", ""))).toEqual(["everything"]);
  });

  it("finds for a subresource only the policies that name it", () => {
    expect(names(candidatesFor(prepared, "", "Pod", "UPDATE", "ephemeralcontainers"))).toEqual(["ephemeral"]);
    expect(names(candidatesFor(prepared, "", "Pod", "UPDATE", "status"))).toEqual([]);
  });

  it("remembers what it found for a kind, operation and subresource", () => {
    expect(candidatesFor(prepared, "", "Pod", "CREATE", "")).toBe(candidatesFor(prepared, "", "Pod", "CREATE", ""));
  });
});

describe("podCandidatesFor", () => {
  it("finds the Pod policies that judge a workload's pod template for an operation", () => {
    const prepared = prepare(set);
    expect(names(podCandidatesFor(prepared, "CREATE"))).toEqual(["core-pods", "ephemeral", "pods"]);
    expect(names(podCandidatesFor(prepared, "UPDATE"))).toEqual(["ephemeral", "pods"]);
    expect(names(podCandidatesFor(prepared, "DELETE"))).toEqual([]);
  });
});
