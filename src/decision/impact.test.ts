import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { effectiveSet, policy } from "../../test/support/policy-sets.js";
import { podReview } from "../../test/support/reviews.js";
import { impactOf } from "./impact.js";

const ownerRule = (enforcement: "deny" | "warn") =>
  policy("require-owner", { enforcement, validations: [{ name: "owner", expression: "has(object.metadata.labels) && 'owner' in object.metadata.labels", message: "name an owner" }] });
const noLatest = policy("no-latest", { validations: [{ name: "tag", expression: "object.spec.containers.all(c, !c.image.endsWith(':latest'))", message: "pin images" }] });

const pod = (name: string, labels: Record<string, string>, image = "registry.example.com/app:1.0") =>
  podReview({ metadata: { name, namespace: "shop", labels }, spec: { containers: [{ name: "app", image }] } });

describe("the impact of a change over recorded requests", () => {
  it("counts what the candidate newly denies, allows and warns, per policy and rule, with examples", () => {
    const reviews = [pod("a", {}), pod("b", { owner: "x" }), pod("c", {}, "registry.example.com/app:latest")];
    const tightened = impactOf(effectiveSet([noLatest]), effectiveSet([noLatest, ownerRule("deny")]), reviews, 0);
    expect(tightened).toMatchObject({ requests: 3, newlyDenied: 1, newlyAllowed: 0, newlyWarned: 0, undecidable: 0 });
    expect(tightened.byRule).toEqual([{ policy: "require-owner", rule: "owner", newlyDenied: 1, newlyAllowed: 0, newlyWarned: 0, examples: [{ kind: "Pod", namespace: "shop", name: "a", operation: "CREATE" }] }]);
    const loosened = impactOf(effectiveSet([noLatest]), effectiveSet([]), reviews, 0);
    expect(loosened).toMatchObject({ newlyDenied: 0, newlyAllowed: 1 });
    expect(loosened.byRule.map((r) => [r.policy, r.newlyAllowed])).toEqual([["no-latest", 1]]);
    const warned = impactOf(effectiveSet([]), effectiveSet([ownerRule("warn")]), reviews, 0);
    expect(warned).toMatchObject({ newlyDenied: 0, newlyWarned: 2 });
  });

  it("counts a request neither set can decide as undecidable", () => {
    expect(impactOf(effectiveSet([]), effectiveSet([noLatest]), [new TextEncoder().encode("{not json")], 0)).toMatchObject({ requests: 0, undecidable: 1 });
  });

  it("finds no impact between a set and itself, whatever the requests (property)", () => {
    const set = effectiveSet([noLatest, ownerRule("deny")]);
    fc.assert(
      fc.property(fc.array(fc.record({ name: fc.stringMatching(/^[a-z]{1,8}$/), owner: fc.boolean(), latest: fc.boolean() }), { maxLength: 20 }), (pods) => {
        const impact = impactOf(set, set, pods.map((p) => pod(p.name, p.owner ? { owner: "x" } : {}, `r.example.com/app:${p.latest ? "latest" : "1"}`)), 0);
        expect(impact).toMatchObject({ requests: pods.length, newlyDenied: 0, newlyAllowed: 0, newlyWarned: 0, byRule: [] });
      }),
      { numRuns: 50 },
    );
  });
});
