/**
 * The layering engine through its public API: which documents a region or a cluster may
 * write over the global layer, what each refusal says, which clusters a policy reaches,
 * and the properties every merge keeps (determinism, order independence, monotonic
 * strictness, exceptions that only ever relax, scope that is respected).
 *
 * Tests marked `it.fails` record a known defect of the implementation: they pass while
 * the defect exists and start failing (as a reminder to drop `.fails`) once it is fixed.
 */
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { evaluate, type Decision } from "../decision/evaluate.js";
import { requestForResource } from "../decision/request.js";
import { PolityError } from "../errors.js";
import { buildLayer, type Layer } from "../policy/layer.js";
import { LOCAL_PROTECTED_DOMAINS } from "../policy/schema.js";
import type { SourceDocument } from "../source/parse.js";
import { effectivePolicySet, type ClusterIdentity, type EffectivePolicySet } from "./effective.js";

// ---------------------------------------------------------------------------------------
// Documents and layers

type Doc = Record<string, unknown>;

const EU_1: ClusterIdentity = { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } };
const EU_2: ClusterIdentity = { name: "eu-west-2", region: "eu-west", labels: { env: "dev" } };
const US_1: ClusterIdentity = { name: "us-east-1", region: "us-east", labels: { env: "prod" } };

/** A day before every exception below expires, and a day after. */
const NOW = Date.parse("2026-06-01T00:00:00Z");
const EXPIRES = "2026-06-02T00:00:00Z";
const AFTER_EXPIRY = Date.parse("2026-06-03T00:00:00Z");

function policy(name: string, owner: string, spec: Doc): Doc {
  return { apiVersion: "polity.dev/v1", kind: "Policy", metadata: { name, owner }, spec };
}

function exception(name: string, spec: Doc): Doc {
  return {
    apiVersion: "polity.dev/v1",
    kind: "Exception",
    metadata: { name },
    spec: { justification: "a reviewed, time-boxed need", approvedBy: "platform-team", expiresAt: EXPIRES, ...spec },
  };
}

function sources(file: string, docs: readonly unknown[]): SourceDocument[] {
  return docs.map((value, index) => ({ file, index, value, locate: () => ({ file, line: 0, column: 0 }) }));
}

function globalLayer(...docs: Doc[]): Layer {
  return buildLayer(sources("global.yaml", docs), { tier: "global", name: "global" });
}

function regionLayer(region: string, ...docs: Doc[]): Layer {
  return buildLayer(sources(`${region}.yaml`, docs), { tier: "region", region, name: region });
}

function clusterLayer(cluster: ClusterIdentity, ...docs: Doc[]): Layer {
  return buildLayer(sources(`${cluster.name}.yaml`, docs), { tier: "cluster", region: cluster.region, cluster: cluster.name, name: cluster.name });
}

/** The merge-refused error a merge throws; fails the test when the merge succeeds. */
function refusal(run: () => unknown): PolityError {
  try {
    run();
  } catch (error) {
    if (error instanceof PolityError && error.code === "merge-refused") return error;
    throw error;
  }
  throw new Error("expected the layers to be refused");
}

/** The `[rule: …]` id at the end of each problem. */
function rulesOf(error: PolityError): string[] {
  return error.problems.map((p) => /\[rule: ([a-z-]+)\]$/.exec(p.message)?.[1] ?? `(no rule in: ${p.message})`);
}

function policyNamed(set: EffectivePolicySet, name: string) {
  const found = set.document.policies.find((p) => p.name === name);
  if (found === undefined) throw new Error(`policy ${name} is not in the effective set`);
  return found;
}

function names(set: EffectivePolicySet): string[] {
  return set.document.policies.map((p) => p.name);
}

// Owners of the three tiers in the examples below.
const PLATFORM = "platform-security";
const EU_PLATFORM = "eu-platform";
const PAYMENTS = "payments-sre";

const TEAM_RULE = { name: "team-label", expression: "has(object.metadata.labels) && 'team' in object.metadata.labels" };
const REPLICAS_RULE = { name: "replicas", expression: "!has(object.spec.replicas) || object.spec.replicas <= params.maxReplicas" };

function teamLabel(extra: Doc = {}): Doc {
  return policy("require-team-label", PLATFORM, {
    domain: "workload-security",
    match: { kinds: ["Pod"] },
    validations: [TEAM_RULE],
    enforcement: "deny",
    ...extra,
  });
}

function maxReplicas(override: Doc | undefined, extra: Doc = {}): Doc {
  return policy("max-replicas", PLATFORM, {
    domain: "workload-security",
    match: { kinds: ["apps/Deployment"] },
    params: { maxReplicas: override === undefined ? { default: 50 } : { default: 50, override } },
    validations: [REPLICAS_RULE],
    ...extra,
  });
}

function refinement(name: string, owner: string, spec: Doc): Doc {
  return policy(name, owner, spec);
}

// ---------------------------------------------------------------------------------------
// Requests

function pod(labels: Record<string, string>, where: { namespace?: string; name?: string } = {}): Doc {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: where.name ?? "web", namespace: where.namespace ?? "default", labels },
    spec: { containers: [{ name: "app", image: "registry.example.com/app:1.0" }] },
  };
}

function deployment(replicas: number, labels: Record<string, string>, where: { namespace?: string; name?: string } = {}): Doc {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: where.name ?? "web", namespace: where.namespace ?? "default", labels },
    spec: {
      replicas,
      template: { metadata: { labels }, spec: { containers: [{ name: "app", image: "registry.example.com/app:1.0" }] } },
    },
  };
}

function decide(set: EffectivePolicySet, object: unknown, now = NOW): Decision {
  return evaluate(set, requestForResource(object, "CREATE"), { now });
}

// =======================================================================================
// A. Behaviour, one rule at a time

describe("a lower tier adds and tightens", () => {
  it("lets a region add a policy of its own next to the global ones", () => {
    const residency = policy("data-residency", EU_PLATFORM, {
      domain: "data-residency",
      match: { kinds: ["Pod"] },
      validations: [{ name: "residency", expression: "has(object.metadata.labels) && 'residency' in object.metadata.labels" }],
    });
    const set = effectivePolicySet([globalLayer(teamLabel()), regionLayer("eu-west", residency)], EU_1);
    expect(names(set)).toEqual(["data-residency", "require-team-label"]);
    const added = policyNamed(set, "data-residency");
    expect(added.tier).toBe("region");
    expect(added.owner).toBe(EU_PLATFORM);
    expect(added.provenance).toEqual([{ tier: "region", layer: "eu-west", owner: EU_PLATFORM }]);
  });

  it("lets a region tighten a locked policy from warn to deny", () => {
    const set = effectivePolicySet(
      [globalLayer(teamLabel({ enforcement: "warn", locked: true })), regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { enforcement: "deny" }))],
      EU_1,
    );
    const merged = policyNamed(set, "require-team-label");
    expect(merged.enforcement).toBe("deny");
    expect(merged.owner).toBe(PLATFORM);
    expect(merged.locked).toBe(true);
    expect(merged.lockedAt).toBe("global");
    expect(merged.provenance.map((p) => p.layer)).toEqual(["global", "eu-west"]);
  });

  it("lets a region add a rule to a locked policy, which then applies as strictly as the others", () => {
    const set = effectivePolicySet(
      [
        globalLayer(teamLabel({ locked: true })),
        regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { validations: [{ name: "no-debug", expression: "!('tier' in object.metadata.labels) || object.metadata.labels['tier'] != 'debug'" }] })),
      ],
      EU_1,
    );
    expect(policyNamed(set, "require-team-label").validations.map((v) => [v.name, v.tier])).toEqual([
      ["team-label", "global"],
      ["no-debug", "region"],
    ]);
    expect(decide(set, pod({ team: "a", tier: "debug" })).allowed).toBe(false);
    expect(decide(set, pod({ team: "a", tier: "web" })).allowed).toBe(true);
  });

  it("lets a region widen the match of a locked policy", () => {
    const set = effectivePolicySet(
      [globalLayer(teamLabel({ locked: true })), regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { match: { kinds: ["Pod", "apps/StatefulSet"] } }))],
      EU_1,
    );
    expect(policyNamed(set, "require-team-label").match.kinds).toEqual(["Pod", "apps/StatefulSet"]);
  });

  it("binds the clusters of a region to a lock the region adds", () => {
    const error = refusal(() =>
      effectivePolicySet(
        [
          globalLayer(teamLabel()),
          regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { locked: true })),
          clusterLayer(EU_1, refinement("require-team-label", PAYMENTS, { enforcement: "audit" })),
        ],
        EU_1,
      ),
    );
    expect(rulesOf(error)).toEqual(["locked-enforcement"]);
  });
});

describe("a locked policy is never weakened", () => {
  const locked = () => globalLayer(teamLabel({ locked: true }));

  it("refuses a region that turns a locked deny into warn, naming both policies, both owners and the rule", () => {
    const error = refusal(() =>
      effectivePolicySet([locked(), regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { enforcement: "warn" }))], EU_1),
    );
    expect(error.code).toBe("merge-refused");
    expect(error.problems).toHaveLength(1);
    const [problem] = error.problems;
    expect(problem?.message).toContain(`policy "require-team-label" of layer "eu-west" (tier region, owner "${EU_PLATFORM}")`);
    expect(problem?.message).toContain(`policy "require-team-label" of layer "global" (tier global, owner "${PLATFORM}")`);
    expect(problem?.message).toContain("deny → warn");
    expect(problem?.message).toMatch(/\[rule: locked-enforcement\]$/);
    expect(problem?.path).toBe("spec.enforcement");
    expect(problem?.location?.file).toBe("eu-west.yaml");
    expect(error.message).toMatch(/\[rule: locked-enforcement\]$/);
  });

  it.each([
    ["narrows its match to fewer kinds", { match: { kinds: ["apps/Deployment"] } }, "locked-match"],
    ["narrows its match to fewer operations", { match: { kinds: ["Pod"], operations: ["CREATE"] } }, "locked-match"],
    ["adds match conditions that would narrow where it applies", { matchConditions: [{ name: "only_prod", expression: "true" }] }, "locked-match"],
    ["narrows its scope to fewer clusters", { scope: { clusterSelector: { matchLabels: { env: "dev" } } } }, "locked-scope"],
    ["narrows its scope to fewer namespaces", { scope: { namespaceSelector: { matchLabels: { team: "x" } } } }, "locked-scope"],
    ["unlocks it", { locked: false }, "locked-unlock"],
    ["turns its failure policy from Fail to Ignore", { failurePolicy: "Ignore" }, "locked-failure-policy"],
    ["lowers it to audit", { enforcement: "audit" }, "locked-enforcement"],
  ])("refuses a region that %s", (_what, spec, rule) => {
    const error = refusal(() => effectivePolicySet([locked(), regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, spec))], EU_1));
    expect(rulesOf(error)).toEqual([rule]);
  });

  it("refuses a cluster that weakens a policy locked two tiers up", () => {
    const error = refusal(() => effectivePolicySet([locked(), clusterLayer(EU_1, refinement("require-team-label", PAYMENTS, { enforcement: "warn" }))], EU_1));
    expect(error.message).toContain(`owner "${PAYMENTS}"`);
    expect(error.message).toContain(`owner "${PLATFORM}"`);
    expect(rulesOf(error)).toEqual(["locked-enforcement"]);
  });

  it("reports every refusal of a merge at once, not only the first", () => {
    const error = refusal(() =>
      effectivePolicySet(
        [locked(), regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { enforcement: "warn", locked: false, match: { kinds: ["Service"] } }))],
        EU_1,
      ),
    );
    expect(rulesOf(error).sort()).toEqual(["locked-enforcement", "locked-match", "locked-unlock"]);
  });

  it("lets a region restate the scope of a locked policy unchanged", () => {
    const scope = { regions: ["eu-west", "us-east"] };
    const set = effectivePolicySet([globalLayer(teamLabel({ locked: true, scope })), regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { scope }))], EU_1);
    expect(names(set)).toEqual(["require-team-label"]);
  });

  // Defect (a false refusal, not a weakening): scopes are compared as JSON, so the same
  // regions listed in another order count as a changed scope, while match kinds are
  // compared as sets.
  it("lets a region restate the scope of a locked policy with its regions in another order", () => {
    const set = effectivePolicySet(
      [globalLayer(teamLabel({ locked: true, scope: { regions: ["eu-west", "us-east"] } })), regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { scope: { regions: ["us-east", "eu-west"] } }))],
      EU_1,
    );
    expect(names(set)).toEqual(["require-team-label"]);
  });
});

describe("an unlocked policy is the upper tier's default, not a floor", () => {
  it("lets a region weaken an unlocked policy's enforcement, match and scope", () => {
    const set = effectivePolicySet(
      [
        globalLayer(teamLabel({ match: { kinds: ["Pod", "apps/Deployment"] } })),
        regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { enforcement: "warn", match: { kinds: ["Pod"] }, failurePolicy: "Ignore" })),
      ],
      EU_1,
    );
    const merged = policyNamed(set, "require-team-label");
    expect(merged.enforcement).toBe("warn");
    expect(merged.match.kinds).toEqual(["Pod"]);
    expect(merged.failurePolicy).toBe("Ignore");
    expect(decide(set, pod({})).allowed).toBe(true);
    expect(decide(set, pod({})).warnings).toHaveLength(1);
  });

  it("lets a region scope an unlocked policy away from some of its clusters", () => {
    const layers = [
      globalLayer(teamLabel()),
      regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { scope: { clusterSelector: { matchLabels: { env: "prod" } } } })),
    ];
    expect(names(effectivePolicySet(layers, EU_1))).toEqual(["require-team-label"]);
    expect(names(effectivePolicySet(layers, EU_2))).toEqual([]);
  });
});

describe("params are tuned only where an upper tier opened them, inside the bounds", () => {
  const opened = { allowedTiers: ["region"], min: 1, max: 100 };

  it("lets a region set a param the global layer opened to regions", () => {
    const set = effectivePolicySet([globalLayer(maxReplicas(opened)), regionLayer("eu-west", refinement("max-replicas", EU_PLATFORM, { params: { maxReplicas: { value: 80 } } }))], EU_1);
    expect(policyNamed(set, "max-replicas").params).toEqual({ maxReplicas: 80 });
    expect(decide(set, deployment(70, {})).allowed).toBe(true);
    expect(decide(set, deployment(81, {})).allowed).toBe(false);
  });

  it("uses the declared default where nobody sets the param", () => {
    const set = effectivePolicySet([globalLayer(maxReplicas(opened))], EU_1);
    expect(policyNamed(set, "max-replicas").params).toEqual({ maxReplicas: 50 });
    expect(decide(set, deployment(51, {})).allowed).toBe(false);
  });

  it("refuses a cluster that sets a param opened only to regions", () => {
    const error = refusal(() => effectivePolicySet([globalLayer(maxReplicas(opened)), clusterLayer(EU_1, refinement("max-replicas", PAYMENTS, { params: { maxReplicas: { value: 10 } } }))], EU_1));
    expect(rulesOf(error)).toEqual(["param-not-overridable"]);
    expect(error.message).toContain("overridable by region, not by cluster");
  });

  it("refuses any lower tier that sets a param declared without override", () => {
    const error = refusal(() => effectivePolicySet([globalLayer(maxReplicas(undefined)), regionLayer("eu-west", refinement("max-replicas", EU_PLATFORM, { params: { maxReplicas: { value: 10 } } }))], EU_1));
    expect(rulesOf(error)).toEqual(["param-not-overridable"]);
  });

  it.each([
    ["above the maximum", { allowedTiers: ["region"], max: 100 }, 101],
    ["below the minimum", { allowedTiers: ["region"], min: 1 }, 0],
    ["outside the allowed values", { allowedTiers: ["region"], allowedValues: [50, 80] }, 60],
    ["of another type than the default", { allowedTiers: ["region"] }, "80"],
  ])("refuses a region that sets a param %s", (_what, override, value) => {
    const error = refusal(() => effectivePolicySet([globalLayer(maxReplicas(override)), regionLayer("eu-west", refinement("max-replicas", EU_PLATFORM, { params: { maxReplicas: { value } } }))], EU_1));
    expect(rulesOf(error)).toEqual([typeof value === "string" ? "param-type" : "param-out-of-bounds"]);
  });

  it("accepts the bounds themselves", () => {
    for (const value of [1, 100]) {
      const set = effectivePolicySet([globalLayer(maxReplicas(opened)), regionLayer("eu-west", refinement("max-replicas", EU_PLATFORM, { params: { maxReplicas: { value } } }))], EU_1);
      expect(policyNamed(set, "max-replicas").params).toEqual({ maxReplicas: value });
    }
  });

  it("lets a region narrow the bounds, and holds its clusters to the narrower ones", () => {
    const global = globalLayer(maxReplicas({ allowedTiers: ["region", "cluster"], min: 1, max: 100 }));
    const region = regionLayer("eu-west", refinement("max-replicas", EU_PLATFORM, { params: { maxReplicas: { override: { allowedTiers: ["cluster"], min: 1, max: 60 } } } }));
    const within = effectivePolicySet([global, region, clusterLayer(EU_1, refinement("max-replicas", PAYMENTS, { params: { maxReplicas: { value: 60 } } }))], EU_1);
    expect(policyNamed(within, "max-replicas").params).toEqual({ maxReplicas: 60 });
    const error = refusal(() => effectivePolicySet([global, region, clusterLayer(EU_1, refinement("max-replicas", PAYMENTS, { params: { maxReplicas: { value: 80 } } }))], EU_1));
    expect(rulesOf(error)).toEqual(["param-out-of-bounds"]);
  });

  it.each([
    ["raises the maximum", { allowedTiers: ["region"], min: 1, max: 200 }],
    ["drops the minimum", { allowedTiers: ["region"], max: 100 }],
    ["opens the param to another tier", { allowedTiers: ["region", "cluster"], min: 1, max: 100 }],
  ])("refuses a region that %s", (_what, override) => {
    const error = refusal(() => effectivePolicySet([globalLayer(maxReplicas(opened)), regionLayer("eu-west", refinement("max-replicas", EU_PLATFORM, { params: { maxReplicas: { override } } }))], EU_1));
    expect(rulesOf(error)).toEqual(["param-bounds-widened"]);
  });

  it("refuses a lower tier that sets a param the policy does not declare", () => {
    const error = refusal(() => effectivePolicySet([globalLayer(maxReplicas(opened)), regionLayer("eu-west", refinement("max-replicas", EU_PLATFORM, { params: { maxPods: { value: 10 } } }))], EU_1));
    expect(rulesOf(error)).toEqual(["param-undeclared"]);
    expect(error.message).toContain('"maxPods"');
  });

  it("refuses a lower tier that changes a param's default instead of setting its value", () => {
    const error = refusal(() => effectivePolicySet([globalLayer(maxReplicas(opened)), regionLayer("eu-west", refinement("max-replicas", EU_PLATFORM, { params: { maxReplicas: { default: 80 } } }))], EU_1));
    expect(rulesOf(error)).toEqual(["param-default"]);
  });
});

describe("a policy is defined once, by the highest tier that writes it", () => {
  it("refuses a refinement of a policy that no upper tier defines", () => {
    const error = refusal(() => effectivePolicySet([globalLayer(teamLabel()), regionLayer("eu-west", refinement("max-replicas", EU_PLATFORM, { enforcement: "deny" }))], EU_1));
    expect(rulesOf(error)).toEqual(["refinement-without-base"]);
    expect(error.message).toContain('"max-replicas"');
  });

  it("ignores a refinement of a policy whose definition does not reach the cluster", () => {
    const set = effectivePolicySet(
      [globalLayer(teamLabel({ scope: { regions: ["us-east"] } })), regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { enforcement: "deny" }))],
      EU_1,
    );
    expect(names(set)).toEqual([]);
  });

  it("refuses a lower tier that moves a policy to another domain", () => {
    const error = refusal(() => effectivePolicySet([globalLayer(teamLabel()), regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { domain: "network" }))], EU_1));
    expect(rulesOf(error)).toEqual(["domain-mismatch"]);
  });

  it("refuses a lower tier that redefines a rule of the upper policy", () => {
    const error = refusal(() =>
      effectivePolicySet([globalLayer(teamLabel()), regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { validations: [{ name: "team-label", expression: "true" }] }))], EU_1),
    );
    expect(rulesOf(error)).toEqual(["rule-redefined"]);
  });
});

describe("local-protected domains belong to regions and clusters", () => {
  const quota = (owner: string, extra: Doc = {}) =>
    policy("namespace-quota", owner, {
      domain: "quota",
      match: { kinds: ["ResourceQuota"] },
      params: { maxPods: { default: 200 } },
      validations: [{ name: "pods", expression: "!has(object.spec.hard) || !('pods' in object.spec.hard) || int(object.spec.hard['pods']) <= params.maxPods" }],
      ...extra,
    });

  it.each([...LOCAL_PROTECTED_DOMAINS])("refuses a global policy in the %s domain that no lower layer delegates", (domain) => {
    const error = refusal(() => effectivePolicySet([globalLayer(quota(PLATFORM, { domain }))], EU_1));
    expect(rulesOf(error)).toEqual(["protected-domain"]);
    expect(error.message).toContain(`owner "${PLATFORM}"`);
  });

  it("refuses a global policy in a protected domain where the owning region defines it without delegating", () => {
    const error = refusal(() => effectivePolicySet([globalLayer(quota(PLATFORM, { enforcement: "deny" })), regionLayer("eu-west", quota(EU_PLATFORM))], EU_1));
    expect(rulesOf(error)).toEqual(["protected-domain"]);
    expect(error.message).toContain(`owner "${PLATFORM}"`);
    expect(error.message).toContain(`owner "${EU_PLATFORM}"`);
  });

  it("lets a global policy refine a protected one where the owning region delegates it with delegate: [global]", () => {
    const set = effectivePolicySet(
      [
        globalLayer(refinement("namespace-quota", PLATFORM, { validations: [{ name: "has-pods", expression: "has(object.spec.hard) && 'pods' in object.spec.hard" }] })),
        regionLayer("eu-west", quota(EU_PLATFORM, { delegate: ["global"] })),
      ],
      EU_1,
    );
    const merged = policyNamed(set, "namespace-quota");
    expect(merged.owner).toBe(EU_PLATFORM);
    expect(merged.tier).toBe("region");
    expect(merged.provenance.map((p) => p.tier)).toEqual(["region", "global"]);
    expect(merged.validations.map((v) => v.name)).toEqual(["pods", "has-pods"]);
  });

  it("gives a region's protected policy to every cluster of the region that does not define its own", () => {
    const set = effectivePolicySet([regionLayer("eu-west", quota(EU_PLATFORM))], EU_1);
    expect(policyNamed(set, "namespace-quota").owner).toBe(EU_PLATFORM);
  });

  it("lets a cluster that defines the same protected policy without delegating take it over, refusing the region's", () => {
    const error = refusal(() => effectivePolicySet([regionLayer("eu-west", quota(EU_PLATFORM)), clusterLayer(EU_1, quota(PAYMENTS))], EU_1));
    expect(rulesOf(error)).toEqual(["protected-domain"]);
    expect(error.message).toContain(`owner "${EU_PLATFORM}"`);
    expect(error.message).toContain(`owner "${PAYMENTS}"`);
    // The cluster's neighbour, which defines nothing, still gets the region's.
    expect(policyNamed(effectivePolicySet([regionLayer("eu-west", quota(EU_PLATFORM)), clusterLayer(EU_1, quota(PAYMENTS))], EU_2), "namespace-quota").owner).toBe(EU_PLATFORM);
  });

  it("lets a cluster that delegates to its region keep the region's settings on top of its own", () => {
    const set = effectivePolicySet(
      [regionLayer("eu-west", refinement("namespace-quota", EU_PLATFORM, { enforcement: "warn" })), clusterLayer(EU_1, quota(PAYMENTS, { delegate: ["region"] }))],
      EU_1,
    );
    const merged = policyNamed(set, "namespace-quota");
    expect(merged.owner).toBe(PAYMENTS);
    expect(merged.enforcement).toBe("warn");
    expect(merged.provenance.map((p) => p.tier)).toEqual(["cluster", "region"]);
  });

  it("refuses delegate on a policy outside the local-protected domains", () => {
    const error = refusal(() => effectivePolicySet([regionLayer("eu-west", policy("data-residency", EU_PLATFORM, { domain: "data-residency", match: { kinds: ["Pod"] }, validations: [TEAM_RULE], delegate: ["global"] }))], EU_1));
    expect(rulesOf(error)).toEqual(["delegate-owner-only"]);
  });

  // Defect: the lowest tier with *any* document for a protected policy is taken as its
  // owner, so a cluster's refinement that only tunes a param the region opened to clusters
  // is refused as an incomplete definition; `override.allowedTiers: [cluster]` on a
  // region-owned protected policy can never be used.
  it("lets a cluster tune a param of its region's protected policy that the region opened to clusters", () => {
    const set = effectivePolicySet(
      [
        regionLayer("eu-west", quota(EU_PLATFORM, { params: { maxPods: { default: 200, override: { allowedTiers: ["cluster"], max: 500 } } } })),
        clusterLayer(EU_1, refinement("namespace-quota", PAYMENTS, { params: { maxPods: { value: 300 } } })),
      ],
      EU_1,
    );
    expect(policyNamed(set, "namespace-quota").params).toEqual({ maxPods: 300 });
  });
});

describe("scope decides which clusters a policy reaches", () => {
  it("limits a policy with scope.regions to the clusters of those regions", () => {
    const layers = [globalLayer(teamLabel({ scope: { regions: ["eu-west"] } }))];
    expect(names(effectivePolicySet(layers, EU_1))).toEqual(["require-team-label"]);
    expect(names(effectivePolicySet(layers, US_1))).toEqual([]);
  });

  const cases: [string, Doc, Record<string, string>, boolean][] = [
    ["matchLabels matches the same value", { matchLabels: { env: "prod" } }, { env: "prod" }, true],
    ["matchLabels does not match another value", { matchLabels: { env: "prod" } }, { env: "dev" }, false],
    ["matchLabels does not match an absent label", { matchLabels: { env: "prod" } }, {}, false],
    ["In matches one of the values", { matchExpressions: [{ key: "env", operator: "In", values: ["prod", "staging"] }] }, { env: "staging" }, true],
    ["In does not match another value", { matchExpressions: [{ key: "env", operator: "In", values: ["prod"] }] }, { env: "dev" }, false],
    ["In does not match an absent label", { matchExpressions: [{ key: "env", operator: "In", values: ["prod"] }] }, {}, false],
    ["NotIn matches another value", { matchExpressions: [{ key: "env", operator: "NotIn", values: ["prod"] }] }, { env: "dev" }, true],
    ["NotIn does not match one of the values", { matchExpressions: [{ key: "env", operator: "NotIn", values: ["prod"] }] }, { env: "prod" }, false],
    ["NotIn matches an absent label", { matchExpressions: [{ key: "env", operator: "NotIn", values: ["prod"] }] }, {}, true],
    ["Exists matches a present label", { matchExpressions: [{ key: "gpu", operator: "Exists" }] }, { gpu: "a100" }, true],
    ["Exists matches a present empty label", { matchExpressions: [{ key: "gpu", operator: "Exists" }] }, { gpu: "" }, true],
    ["Exists does not match an absent label", { matchExpressions: [{ key: "gpu", operator: "Exists" }] }, {}, false],
    ["DoesNotExist matches an absent label", { matchExpressions: [{ key: "gpu", operator: "DoesNotExist" }] }, { env: "prod" }, true],
    ["DoesNotExist does not match a present label", { matchExpressions: [{ key: "gpu", operator: "DoesNotExist" }] }, { gpu: "" }, false],
    ["matchLabels and matchExpressions are ANDed (both hold)", { matchLabels: { env: "prod" }, matchExpressions: [{ key: "gpu", operator: "Exists" }] }, { env: "prod", gpu: "a" }, true],
    ["matchLabels and matchExpressions are ANDed (one fails)", { matchLabels: { env: "prod" }, matchExpressions: [{ key: "gpu", operator: "Exists" }] }, { env: "prod" }, false],
    ["expressions are ANDed with each other", { matchExpressions: [{ key: "env", operator: "In", values: ["prod"] }, { key: "legacy", operator: "DoesNotExist" }] }, { env: "prod", legacy: "yes" }, false],
    ["an empty selector matches every cluster", {}, {}, true],
  ];
  it.each(cases)("clusterSelector: %s", (_what, clusterSelector, labels, applies) => {
    const set = effectivePolicySet([globalLayer(teamLabel({ scope: { clusterSelector } }))], { name: "c", region: "eu-west", labels });
    expect(names(set)).toEqual(applies ? ["require-team-label"] : []);
  });

  it("requires both scope.regions and scope.clusterSelector to hold", () => {
    const layers = [globalLayer(teamLabel({ scope: { regions: ["eu-west"], clusterSelector: { matchLabels: { env: "prod" } } } }))];
    expect(names(effectivePolicySet(layers, EU_1))).toEqual(["require-team-label"]);
    expect(names(effectivePolicySet(layers, EU_2))).toEqual([]);
    expect(names(effectivePolicySet(layers, US_1))).toEqual([]);
  });

  it("applies a region layer only to the clusters of its region, and a cluster layer only to its cluster", () => {
    const own = (name: string, owner: string) => policy(name, owner, { domain: "workload-security", match: { kinds: ["Pod"] }, validations: [TEAM_RULE] });
    const layers = [globalLayer(), regionLayer("eu-west", own("eu-rule", EU_PLATFORM)), clusterLayer(EU_1, own("eu-1-rule", PAYMENTS))];
    expect(names(effectivePolicySet(layers, EU_1))).toEqual(["eu-1-rule", "eu-rule"]);
    expect(names(effectivePolicySet(layers, EU_2))).toEqual(["eu-rule"]);
    expect(names(effectivePolicySet(layers, US_1))).toEqual([]);
  });
});

describe("exceptions relax one policy, narrowly, and only where the tier may", () => {
  const legacy = (rules: string[] | undefined = ["team-label"]) =>
    exception("legacy-billing", { policy: "require-team-label", ...(rules === undefined ? {} : { rules }), scope: { namespaces: ["billing"], names: ["legacy-billing"] } });

  it("relaxes the named rule in its scope, and only until it expires", () => {
    const set = effectivePolicySet([globalLayer(teamLabel()), clusterLayer(EU_1, legacy())], EU_1);
    expect(set.document.exceptions.map((e) => [e.name, e.tier, e.layer])).toEqual([["legacy-billing", "cluster", "eu-west-1"]]);
    const covered = pod({}, { namespace: "billing", name: "legacy-billing" });
    const decision = decide(set, covered);
    expect(decision.allowed).toBe(true);
    expect(decision.exemptions.map((e) => e.exception)).toEqual(["legacy-billing"]);
    expect(decide(set, pod({}, { namespace: "billing", name: "other" })).allowed).toBe(false);
    expect(decide(set, pod({}, { namespace: "default", name: "legacy-billing" })).allowed).toBe(false);
    expect(decide(set, covered, AFTER_EXPIRY).allowed).toBe(false);
  });

  it("refuses an exception against a locked policy written in a tier below the lock", () => {
    const error = refusal(() => effectivePolicySet([globalLayer(teamLabel({ locked: true })), regionLayer("eu-west", legacy())], EU_1));
    expect(rulesOf(error)).toEqual(["exception-locked"]);
    expect(error.message).toContain('exception "legacy-billing"');
    expect(error.message).toContain(`owner "${PLATFORM}"`);
  });

  it("refuses an exception below a lock that a region added, but keeps one written by the region itself", () => {
    const layers = (where: "region" | "cluster") => [
      globalLayer(teamLabel()),
      regionLayer("eu-west", refinement("require-team-label", EU_PLATFORM, { locked: true }), ...(where === "region" ? [legacy()] : [])),
      clusterLayer(EU_1, ...(where === "cluster" ? [legacy()] : [])),
    ];
    expect(effectivePolicySet(layers("region"), EU_1).document.exceptions).toHaveLength(1);
    expect(rulesOf(refusal(() => effectivePolicySet(layers("cluster"), EU_1)))).toEqual(["exception-locked"]);
  });

  it("keeps an exception against a locked policy written in the tier that locked it", () => {
    const set = effectivePolicySet([globalLayer(teamLabel({ locked: true }), legacy())], EU_1);
    expect(set.document.exceptions.map((e) => e.name)).toEqual(["legacy-billing"]);
  });

  it("refuses an exception naming a policy that no layer of the cluster defines", () => {
    const error = refusal(() =>
      effectivePolicySet([globalLayer(teamLabel()), clusterLayer(EU_1, exception("typo", { policy: "require-team-labels", scope: { namespaces: ["billing"] } }))], EU_1),
    );
    expect(rulesOf(error)).toEqual(["exception-unknown-policy"]);
    expect(error.message).toContain('"require-team-labels"');
  });

  it("refuses an exception naming a rule the policy does not have", () => {
    const error = refusal(() => effectivePolicySet([globalLayer(teamLabel()), clusterLayer(EU_1, legacy(["team"]))], EU_1));
    expect(rulesOf(error)).toEqual(["exception-unknown-rule"]);
    expect(error.message).toContain("team-label");
  });

  it("skips an exception scoped to other clusters", () => {
    const set = effectivePolicySet(
      [globalLayer(teamLabel()), regionLayer("eu-west", exception("eu-2-only", { policy: "require-team-label", scope: { clusters: ["eu-west-2"], namespaces: ["billing"] } }))],
      EU_1,
    );
    expect(set.document.exceptions).toEqual([]);
  });

  // Defect: the unknown-policy check runs before the exception's own cluster/region scope
  // is consulted, so an exception written for another region's policy (which this
  // cluster's stack cannot know) makes every cluster outside that region unmergeable.
  it("does not refuse the clusters of one region over an exception scoped to another region", () => {
    const layers = [
      globalLayer(exception("eu-residency-batch", { policy: "eu-residency", scope: { regions: ["eu-west"], namespaces: ["batch"] } })),
      regionLayer("eu-west", policy("eu-residency", EU_PLATFORM, { domain: "data-residency", match: { kinds: ["Pod"] }, validations: [TEAM_RULE] })),
    ];
    expect(effectivePolicySet(layers, EU_1).document.exceptions).toHaveLength(1);
    expect(effectivePolicySet(layers, US_1).document.exceptions).toEqual([]);
  });

  // The same defect, one tier down: an exception a region writes for one cluster's own
  // policy breaks every other cluster of the region.
  it("does not refuse a cluster over an exception scoped to a sibling cluster's own policy", () => {
    const layers = [
      regionLayer("eu-west", exception("eu-2-batch", { policy: "eu-2-rule", scope: { clusters: ["eu-west-2"], namespaces: ["batch"] } })),
      clusterLayer(EU_2, policy("eu-2-rule", PAYMENTS, { domain: "workload-security", match: { kinds: ["Pod"] }, validations: [TEAM_RULE] })),
    ];
    expect(effectivePolicySet(layers, EU_2).document.exceptions).toHaveLength(1);
    expect(effectivePolicySet(layers, EU_1).document.exceptions).toEqual([]);
  });
});

describe("one layer per tier, one canonical result", () => {
  it.each([
    ["global", () => [globalLayer(), buildLayer([], { tier: "global", name: "global-copy" })]],
    ["region", () => [regionLayer("eu-west"), buildLayer([], { tier: "region", region: "eu-west", name: "eu-west-copy" })]],
    ["cluster", () => [clusterLayer(EU_1), buildLayer([], { tier: "cluster", region: "eu-west", cluster: "eu-west-1", name: "eu-west-1-copy" })]],
  ])("refuses two %s layers for one cluster", (tier, layers) => {
    const error = refusal(() => effectivePolicySet(layers(), EU_1));
    expect(rulesOf(error)).toEqual(["one-layer-per-tier"]);
    expect(error.message).toContain(`2 ${tier} layers`);
  });

  it("does not count the layers of other regions and clusters", () => {
    const set = effectivePolicySet([globalLayer(), regionLayer("eu-west"), regionLayer("us-east"), clusterLayer(EU_1), clusterLayer(EU_2)], EU_1);
    expect(set.document.kind).toBe("EffectivePolicySet");
  });

  it("names no cluster: two clusters whose layers give the same policies share one set, byte for byte", () => {
    const layers = [globalLayer(teamLabel()), regionLayer("eu-west")];
    const one = effectivePolicySet(layers, EU_1);
    const two = effectivePolicySet(layers, { ...EU_1, name: "eu-west-9", labels: { ...EU_1.labels, other: "label" } });
    expect(two.hash).toBe(one.hash);
    expect(two.canonical).toBe(one.canonical);
    expect(one.canonical).not.toContain(EU_1.name);
  });

  it("hashes the canonical bytes with sha256", () => {
    const set = effectivePolicySet([globalLayer(teamLabel(), maxReplicas({ allowedTiers: ["region"], max: 100 })), regionLayer("eu-west", refinement("max-replicas", EU_PLATFORM, { params: { maxReplicas: { value: 80 } } }))], EU_1);
    expect(set.hash).toBe(`sha256:${createHash("sha256").update(Buffer.from(set.canonical, "utf8")).digest("hex")}`);
    expect(JSON.parse(set.canonical)).toEqual(JSON.parse(JSON.stringify(set.document)));
  });

  it("sorts policies by name and does not depend on the order layers are given in", () => {
    const layers = [globalLayer(teamLabel(), maxReplicas(undefined)), regionLayer("eu-west", refinement("max-replicas", EU_PLATFORM, { enforcement: "warn" }))];
    const forward = effectivePolicySet(layers, EU_1);
    const backward = effectivePolicySet([...layers].reverse(), EU_1);
    expect(names(forward)).toEqual(["max-replicas", "require-team-label"]);
    expect(backward.hash).toBe(forward.hash);
  });
});

// =======================================================================================
// B. Properties over generated layers

const POLICY_NAMES = ["p-alpha", "p-beta", "p-gamma"] as const;
const OWNERS = { global: PLATFORM, region: EU_PLATFORM, cluster: PAYMENTS } as const;
type GenTier = keyof typeof OWNERS;
/** Rule names per tier, so that refinements add rules rather than collide by accident. */
const RULES: Record<GenTier, readonly string[]> = { global: ["global-1", "global-2"], region: ["region-1", "region-2"], cluster: ["cluster-1", "cluster-2"] };
const ALL_RULES = [...RULES.global, ...RULES.region, ...RULES.cluster];

const EXPRESSIONS = [
  "!has(object.spec.replicas) || object.spec.replicas <= params.maxReplicas",
  "!has(object.spec.replicas) || object.spec.replicas <= 30",
  "has(object.metadata.labels) && 'team' in object.metadata.labels",
  "!has(object.metadata.labels) || !('tier' in object.metadata.labels) || object.metadata.labels['tier'] != 'debug'",
] as const;

/** The region and cluster the generated lower layers are written for. */
const GEN_REGION = "eu";
const GEN_CLUSTER: ClusterIdentity = { name: "c1", region: GEN_REGION, labels: { env: "prod" } };

/** Drops undefined fields, so that generated documents are plain JSON, as parsed YAML is. */
function compact(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(compact);
  if (typeof value !== "object" || value === null) return value;
  const out: Doc = {};
  for (const [key, v] of Object.entries(value)) if (v !== undefined) out[key] = compact(v);
  return out;
}

/** `arb`'s value in `percent` of the cases, otherwise absent (which shrinks first). */
function maybe<T>(arb: fc.Arbitrary<T>, percent = 50): fc.Arbitrary<T | undefined> {
  return fc.oneof({ weight: 100 - percent, arbitrary: fc.constant(undefined) }, { weight: percent, arbitrary: arb });
}

const arbRequirement: fc.Arbitrary<Doc> = fc.oneof(
  fc.record({ key: fc.constantFrom("env", "tier"), operator: fc.constantFrom("In", "NotIn"), values: fc.subarray(["prod", "dev", "gold"], { minLength: 1 }) }),
  fc.record({ key: fc.constantFrom("env", "tier"), operator: fc.constantFrom("Exists", "DoesNotExist") }),
);

const arbSelector: fc.Arbitrary<Doc> = fc.record({
  matchLabels: maybe(fc.constantFrom({ env: "prod" }, { env: "dev" }, { tier: "gold" })),
  matchExpressions: maybe(fc.array(arbRequirement, { minLength: 1, maxLength: 2 })),
});

const arbScope: fc.Arbitrary<Doc> = fc.record({ regions: maybe(fc.subarray(["eu", "us"], { minLength: 1 })), clusterSelector: maybe(arbSelector) });

const arbKinds = fc.constantFrom(["Pod"], ["apps/Deployment"], ["Pod", "apps/Deployment"]);

const arbEnforcement = fc.constantFrom("deny", "warn", "audit");

/** One or two rules, named `<tier>-1`, `<tier>-2`. */
function arbValidations(tier: GenTier): fc.Arbitrary<Doc[]> {
  return fc
    .array(fc.constantFrom(...EXPRESSIONS), { minLength: 1, maxLength: 2 })
    .map((expressions) => expressions.map((expression, i) => ({ name: RULES[tier][i]!, expression })));
}

/** A param declaration whose default lies inside its own bounds. */
const arbParamDeclaration: fc.Arbitrary<Doc> = fc
  .record({
    value: fc.integer({ min: 1, max: 100 }),
    below: maybe(fc.integer({ min: 0, max: 40 })),
    above: maybe(fc.integer({ min: 0, max: 60 })),
    tiers: maybe(fc.subarray(["region", "cluster"], { minLength: 1 }), 70),
  })
  .map(({ value, below, above, tiers }) => ({
    default: value,
    override: tiers === undefined ? undefined : { allowedTiers: tiers, min: below === undefined ? undefined : value - below, max: above === undefined ? undefined : value + above },
  }));

/** A lower tier's touch on a param: a value, or narrower (sometimes wider) bounds. */
const arbParamRefinement: fc.Arbitrary<Doc> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ value: fc.integer({ min: 0, max: 150 }) }) },
  { weight: 1, arbitrary: fc.record({ override: fc.record({ allowedTiers: fc.subarray(["region", "cluster"], { minLength: 1 }), max: maybe(fc.integer({ min: 10, max: 150 })) }) }) },
);

/** A complete definition; below the global tier, mostly of a name the tiers above leave free. */
function arbDefinition(tier: GenTier, known: readonly string[], locks: { locked?: boolean; enforcement?: string } = {}): fc.Arbitrary<Doc> {
  const free = POLICY_NAMES.filter((n) => !known.includes(n));
  const name = free.length === 0 ? fc.constantFrom(...POLICY_NAMES) : fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...free) }, { weight: 1, arbitrary: fc.constantFrom(...POLICY_NAMES) });
  return fc
    .record({
      name,
      domain: fc.oneof({ weight: 6, arbitrary: fc.constantFrom("workload-security", "network") }, { weight: 1, arbitrary: fc.constantFrom("quota", "caching") }),
      kinds: arbKinds,
      operations: maybe(fc.constantFrom(["CREATE"], ["CREATE", "UPDATE"])),
      scope: maybe(arbScope, 30),
      param: maybe(arbParamDeclaration, 60),
      validations: arbValidations(tier),
      enforcement: maybe(arbEnforcement, 75),
      failurePolicy: maybe(fc.constantFrom("Fail", "Ignore"), 25),
      locked: maybe(fc.boolean(), 60),
      delegate: tier === "global" ? fc.constant(undefined) : maybe(fc.subarray(["global", "region"], { minLength: 1 }), 70),
    })
    .map((p) =>
      compact(
        policy(p.name, OWNERS[tier], {
          domain: p.domain,
          scope: p.scope,
          match: { kinds: p.kinds, operations: p.operations },
          // A definition whose rules read params.maxReplicas declares it (an undeclared param is a compile error).
          params: p.param !== undefined ? { maxReplicas: p.param } : p.validations.some((v) => String(v.expression).includes("params.")) ? { maxReplicas: { default: 50 } } : undefined,
          validations: p.validations,
          enforcement: locks.enforcement ?? p.enforcement,
          failurePolicy: p.failurePolicy,
          locked: locks.locked ?? p.locked,
          // Only the owner of a local-protected policy delegates it.
          delegate: p.domain === "quota" || p.domain === "caching" ? p.delegate : undefined,
        }),
      ) as Doc,
    );
}

/** Mostly a name an upper tier defines, sometimes any name of the pool. */
function arbKnownName(known: readonly string[]): fc.Arbitrary<string> {
  return known.length === 0
    ? fc.constantFrom(...POLICY_NAMES)
    : fc.oneof({ weight: 15, arbitrary: fc.constantFrom(...known) }, { weight: 1, arbitrary: fc.constantFrom(...POLICY_NAMES) });
}

function arbRefinement(tier: GenTier, known: readonly string[]): fc.Arbitrary<Doc> {
  return fc
    .record({
      name: arbKnownName(known),
      enforcement: maybe(arbEnforcement, 60),
      locked: maybe(fc.boolean(), 30),
      failurePolicy: maybe(fc.constantFrom("Fail", "Ignore"), 20),
      param: maybe(arbParamRefinement, 30),
      validations: maybe(arbValidations(tier), 40),
      scope: maybe(arbScope, 15),
      kinds: maybe(arbKinds, 20),
    })
    .map((r) =>
      compact(
        policy(r.name, OWNERS[tier], {
          enforcement: r.enforcement,
          locked: r.locked,
          failurePolicy: r.failurePolicy,
          params: r.param === undefined ? undefined : { maxReplicas: r.param },
          validations: r.validations,
          scope: r.scope,
          match: r.kinds === undefined ? undefined : { kinds: r.kinds },
        }),
      ) as Doc,
    );
}

function arbException(names: readonly string[], known: readonly string[]): fc.Arbitrary<Doc> {
  return fc
    .record({
      name: fc.constantFrom(...names),
      policy: fc.oneof({ weight: 20, arbitrary: arbKnownName(known) }, { weight: 1, arbitrary: fc.constant("p-unknown") }),
      rules: maybe(fc.oneof({ weight: 6, arbitrary: fc.constant(["global-1"]) }, { weight: 1, arbitrary: fc.subarray(ALL_RULES, { minLength: 1, maxLength: 2 }) })),
      namespaces: maybe(fc.constantFrom(["default"], ["billing"])),
      names: maybe(fc.constantFrom(["web"], ["legacy"]), 30),
      objectSelector: maybe(fc.constant({ matchLabels: { exempt: "yes" } })),
      clusters: maybe(fc.constantFrom(["c1"], ["c2"]), 20),
      expired: fc.boolean(),
    })
    .map((e) =>
      compact(
        exception(e.name, {
          policy: e.policy,
          rules: e.rules,
          scope: {
            clusters: e.clusters,
            namespaces: e.namespaces ?? (e.names === undefined && e.objectSelector === undefined ? ["default"] : undefined),
            names: e.names,
            objectSelector: e.objectSelector,
          },
          expiresAt: e.expired ? "2026-05-01T00:00:00Z" : EXPIRES,
        }),
      ) as Doc,
    );
}

const docName = (d: Doc): string => (d.metadata as { name: string }).name;

/** The names a layer's documents define (rather than refine). */
function definedNames(docs: readonly Doc[]): string[] {
  return docs.filter((d) => d.kind === "Policy" && (d.spec as Doc).validations !== undefined && (d.spec as Doc).domain !== undefined).map(docName);
}

/** One layer's documents; `known` are the names the layers above define, which refinements mostly pick. */
function arbLayerDocs(tier: GenTier, known: readonly string[]): fc.Arbitrary<Doc[]> {
  const policyDoc =
    tier === "global"
      ? fc.oneof({ weight: 30, arbitrary: arbDefinition(tier, known) }, { weight: 1, arbitrary: arbRefinement(tier, known) })
      : fc.oneof({ weight: 1, arbitrary: arbDefinition(tier, known) }, { weight: 3, arbitrary: arbRefinement(tier, known) });
  return fc.uniqueArray(policyDoc, { selector: docName, minLength: tier === "global" ? 1 : 0, maxLength: tier === "global" ? 3 : 2 }).chain((policies) =>
    fc
      .uniqueArray(arbException([`${tier}-e1`, `${tier}-e2`], [...known, ...definedNames(policies)]), { selector: docName, maxLength: 1 })
      .map((exceptions) => [...policies, ...exceptions]),
  );
}

interface Scenario {
  readonly global: readonly Doc[];
  readonly region: readonly Doc[];
  readonly cluster: readonly Doc[];
}

/** Lower layers generated after, and mostly about, the policies of the layers above (`focus` above all). */
function arbLowerLayers(global: readonly Doc[], focus?: string): fc.Arbitrary<Scenario> {
  const known = [...definedNames(global), ...(focus === undefined ? [] : [focus])];
  return arbLayerDocs("region", known).chain((region) =>
    arbLayerDocs("cluster", [...known, ...definedNames(region)]).map((cluster) => ({ global, region, cluster })),
  );
}

const arbScenario: fc.Arbitrary<Scenario> = arbLayerDocs("global", []).chain((global) => arbLowerLayers(global));

function layersOf(s: Scenario): Layer[] {
  return [
    buildLayer(sources("global.yaml", s.global), { tier: "global", name: "global" }),
    buildLayer(sources("eu.yaml", s.region), { tier: "region", region: GEN_REGION, name: "eu" }),
    buildLayer(sources("c1.yaml", s.cluster), { tier: "cluster", region: GEN_REGION, cluster: GEN_CLUSTER.name, name: "c1" }),
  ];
}

type Outcome = { readonly ok: true; readonly set: EffectivePolicySet } | { readonly ok: false; readonly error: string };

/** The merge, or the refusal's message; any other error fails the property. */
function outcome(layers: readonly Layer[], cluster: ClusterIdentity = GEN_CLUSTER): Outcome {
  try {
    return { ok: true, set: effectivePolicySet(layers, cluster) };
  } catch (error) {
    if (error instanceof PolityError && error.code === "merge-refused") return { ok: false, error: error.message };
    throw error;
  }
}

function summary(o: Outcome): string {
  return o.ok ? `${o.set.hash}\n${o.set.canonical}` : `refused: ${o.error}`;
}

const arbLabels = fc
  .record({ team: maybe(fc.constant("payments")), tier: maybe(fc.constantFrom("debug", "web")), exempt: maybe(fc.constant("yes")) })
  .map((l) => compact(l) as Record<string, string>);

interface RequestShape {
  readonly kind: "Pod" | "Deployment";
  readonly replicas: number;
  readonly labels: Record<string, string>;
  readonly namespace: string;
  readonly name: string;
}

const arbRequestShape: fc.Arbitrary<RequestShape> = fc.record({
  kind: fc.constantFrom("Pod", "Deployment"),
  replicas: fc.integer({ min: 0, max: 120 }),
  labels: arbLabels,
  namespace: fc.constantFrom("default", "billing"),
  name: fc.constantFrom("web", "legacy"),
});

function resource(r: RequestShape): Doc {
  return r.kind === "Pod" ? pod(r.labels, r) : deployment(r.replicas, r.labels, r);
}

const arbRequestObject: fc.Arbitrary<Doc> = arbRequestShape.map(resource);

/** The request moved inside an exception's scope (its namespace, name and selected labels). */
function inScopeOf(r: RequestShape, e: Doc): RequestShape {
  const scope = (e.spec as Doc).scope as { namespaces?: string[]; names?: string[]; objectSelector?: { matchLabels?: Record<string, string> } };
  return {
    ...r,
    namespace: scope.namespaces?.[0] ?? r.namespace,
    name: scope.names?.[0] ?? r.name,
    labels: { ...r.labels, ...scope.objectSelector?.matchLabels },
  };
}

/** Violations as comparable keys; `deny` ones alone decide `allowed`. */
function violationKeys(d: Decision, only?: "deny"): string[] {
  return d.violations.filter((v) => only === undefined || v.enforcement === only).map((v) => `${v.policy}/${v.rule}/${v.enforcement}/${v.target ?? "object"}`);
}

function multisetIncludes(big: readonly string[], small: readonly string[]): boolean {
  const counts = new Map<string, number>();
  for (const k of big) counts.set(k, (counts.get(k) ?? 0) + 1);
  for (const k of small) {
    const n = counts.get(k) ?? 0;
    if (n === 0) return false;
    counts.set(k, n - 1);
  }
  return true;
}

/** Kubernetes label-selector semantics, written out independently of the engine, as the oracle for scope. */
function selects(selector: Doc | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (selector === undefined) return true;
  const matchLabels = (selector.matchLabels ?? {}) as Record<string, string>;
  if (Object.entries(matchLabels).some(([k, v]) => labels[k] !== v)) return false;
  const expressions = (selector.matchExpressions ?? []) as { key: string; operator: string; values?: string[] }[];
  return expressions.every(({ key, operator, values = [] }) => {
    const value = Object.hasOwn(labels, key) ? labels[key] : undefined;
    if (operator === "In") return value !== undefined && values.includes(value);
    if (operator === "NotIn") return value === undefined || !values.includes(value);
    if (operator === "Exists") return value !== undefined;
    return value === undefined;
  });
}

function scopeIncludes(scope: Doc | undefined, cluster: ClusterIdentity): boolean {
  if (scope === undefined) return true;
  const regions = scope.regions as string[] | undefined;
  if (regions !== undefined && !regions.includes(cluster.region)) return false;
  return selects(scope.clusterSelector as Doc | undefined, cluster.labels);
}

const RUNS = 200;

describe("properties of the merge", () => {
  it("is deterministic: the same layers give the same bytes and hash, also after a JSON round trip", () => {
    let merged = 0;
    fc.assert(
      fc.property(arbScenario, (s) => {
        const first = outcome(layersOf(s));
        const second = outcome(layersOf(s));
        const roundTripped = JSON.parse(JSON.stringify(s)) as Scenario;
        const third = outcome(layersOf(roundTripped));
        expect(summary(second)).toBe(summary(first));
        expect(summary(third)).toBe(summary(first));
        if (first.ok) {
          merged++;
          expect(first.set.hash).toBe(`sha256:${createHash("sha256").update(first.set.canonical).digest("hex")}`);
        }
      }),
      { numRuns: RUNS },
    );
    expect(merged).toBeGreaterThan(RUNS / 10);
  });

  it("does not depend on the order of the documents within a layer", () => {
    const shuffled = arbScenario.chain((s) =>
      fc.record({
        original: fc.constant(s),
        shuffled: fc.record({
          global: fc.shuffledSubarray([...s.global], { minLength: s.global.length }),
          region: fc.shuffledSubarray([...s.region], { minLength: s.region.length }),
          cluster: fc.shuffledSubarray([...s.cluster], { minLength: s.cluster.length }),
        }),
      }),
    );
    fc.assert(
      fc.property(shuffled, ({ original, shuffled }) => {
        expect(summary(outcome(layersOf(shuffled)))).toBe(summary(outcome(layersOf(original))));
      }),
      { numRuns: RUNS },
    );
  });

  it("is monotonically strict: no lower layer turns a denial by a locked global policy into an allowance", () => {
    // P is locked deny and declares no overridable param: the lower tiers get no bound to
    // loosen, so whatever P denies on its own must stay denied (DESIGN.md section 3).
    // Half of the time P bounds Deployment replicas by its param, the bound a lower tier
    // would most like to loosen.
    const arbLocked = fc
      .tuple(arbDefinition("global", [], { locked: true, enforcement: "deny" }), fc.boolean(), fc.integer({ min: 1, max: 100 }))
      .map(([p, bounded, fallback]) => {
        const spec = p.spec as Doc;
        const params = spec.params as Record<string, Doc> | undefined;
        const declared = params?.maxReplicas?.default ?? (bounded ? fallback : undefined);
        const validations = spec.validations as Doc[];
        return compact({
          ...p,
          spec: {
            ...spec,
            domain: "workload-security",
            match: bounded ? { ...(spec.match as Doc), kinds: ["apps/Deployment"] } : spec.match,
            validations: bounded ? [{ name: "global-1", expression: EXPRESSIONS[0] }, ...validations.slice(1)] : validations,
            params: declared === undefined ? undefined : { maxReplicas: { default: declared } },
          },
        }) as Doc;
      });
    const arbGlobal = fc
      .tuple(arbLocked, arbLayerDocs("global", []))
      .map(([locked, others]) => [locked, ...others.filter((d) => d.kind !== "Policy" || docName(d) !== docName(locked))]);
    const arbCase = fc.record({
      // The lower layers mostly refine P.
      scenario: arbGlobal.chain((global) => arbLowerLayers(global, docName(global[0]!))),
      requests: fc.array(arbRequestObject, { minLength: 1, maxLength: 10 }),
    });
    let checked = 0;
    fc.assert(
      fc.property(arbCase, ({ scenario, requests }) => {
        const name = docName(scenario.global[0]!);
        const [global, region, cluster] = layersOf(scenario) as [Layer, Layer, Layer];
        const alone = outcome([global]);
        if (!alone.ok) return;
        // Both lower layers, and each on its own: every combination that merges is held to P.
        for (const lower of [[region, cluster], [region], [cluster]]) {
          const merged = outcome([global, ...lower]);
          if (!merged.ok) continue;
          for (const object of requests) {
            const before = decide(alone.set, object);
            if (!before.violations.some((v) => v.policy === name && v.enforcement === "deny")) continue;
            checked++;
            const after = decide(merged.set, object);
            expect(after.allowed).toBe(false);
            expect(after.violations.some((v) => v.policy === name && v.enforcement === "deny")).toBe(true);
          }
        }
      }),
      { numRuns: RUNS },
    );
    expect(checked).toBeGreaterThan(RUNS / 15);
  });

  it("never becomes more permissive when an exception is removed", () => {
    const arbCase = arbScenario.chain((scenario) =>
      fc.record({
        scenario: fc.constant(scenario),
        // Mostly live and meant for this cluster, so that it has something to relax.
        extra: fc
          .tuple(arbException(["extra-exception"], definedNames([...scenario.global, ...scenario.region, ...scenario.cluster])), fc.nat(3))
          .map(([e, k]) => (k === 0 ? e : (compact({ ...e, spec: { ...(e.spec as Doc), expiresAt: EXPIRES, scope: { ...((e.spec as Doc).scope as Doc), clusters: undefined } } }) as Doc))),
        tier: fc.constantFrom<GenTier>("global", "region", "cluster"),
        // Half of the requests are moved into the exception's scope.
        requests: fc.array(fc.tuple(arbRequestShape, fc.boolean()), { minLength: 1, maxLength: 8 }),
      }),
    );
    let relaxed = 0;
    fc.assert(
      fc.property(arbCase, ({ scenario, extra, tier, requests }) => {
        const withExtra: Scenario = { ...scenario, [tier]: [...scenario[tier], extra] };
        const without = outcome(layersOf(scenario));
        const withIt = outcome(layersOf(withExtra));
        if (!without.ok || !withIt.ok) return;
        for (const object of requests.map(([r, aim]) => resource(aim ? inScopeOf(r, extra) : r))) {
          const a = decide(without.set, object);
          const b = decide(withIt.set, object);
          if (a.allowed) expect(b.allowed).toBe(true);
          expect(multisetIncludes(violationKeys(a, "deny"), violationKeys(b, "deny"))).toBe(true);
          expect(multisetIncludes(violationKeys(a), violationKeys(b))).toBe(true);
          if (b.exemptions.length > a.exemptions.length) relaxed++;
        }
      }),
      { numRuns: RUNS },
    );
    expect(relaxed).toBeGreaterThan(RUNS / 30);
  });

  it("never puts a policy into the set of a cluster its scope excludes", () => {
    const arbCluster: fc.Arbitrary<ClusterIdentity> = fc.record({
      name: fc.constantFrom("c1", "c2"),
      region: fc.constantFrom("eu", "us"),
      labels: fc.record({ env: maybe(fc.constantFrom("prod", "dev")), tier: maybe(fc.constant("gold")) }).map((l) => compact(l) as Record<string, string>),
    });
    let seen = 0;
    fc.assert(
      fc.property(arbScenario, arbCluster, (s, cluster) => {
        const result = outcome(layersOf(s), cluster);
        if (!result.ok) return;
        const docs: Record<string, readonly Doc[]> = { global: s.global, eu: s.region, c1: s.cluster };
        for (const p of result.set.document.policies) {
          seen++;
          const shaping = p.provenance.map((source) => {
            const doc = docs[source.layer]?.find((d) => d.kind === "Policy" && docName(d) === p.name);
            if (doc === undefined) throw new Error(`no document of ${p.name} in layer ${source.layer}`);
            return (doc.spec as Doc).scope as Doc | undefined;
          });
          // The defining document must reach the cluster, and so must the scope in force at the end.
          expect(scopeIncludes(shaping[0], cluster)).toBe(true);
          const last = [...shaping].reverse().find((scope) => scope !== undefined);
          expect(scopeIncludes(last, cluster)).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
    expect(seen).toBeGreaterThan(RUNS / 10);
  });
});

describe("resource rules in the merge", () => {
  const EXEC = { apiGroups: [""], apiVersions: ["v1"], resources: ["pods/exec"], operations: ["CONNECT"] };
  const noExec = (extra: Doc = {}) =>
    policy("no-exec", PLATFORM, { domain: "workload-security", match: { resourceRules: [EXEC] }, validations: [TEAM_RULE], locked: true, ...extra });

  it("carry the rules, sorted and with their scope, and leave a policy without any as it was", () => {
    const set = effectivePolicySet([globalLayer(noExec(), teamLabel())], EU_1);
    expect(policyNamed(set, "no-exec").match).toEqual({ kinds: [], operations: ["CREATE", "UPDATE"], subresources: [], resourceRules: [{ ...EXEC, scope: "*" }] });
    expect(policyNamed(set, "require-team-label").match).not.toHaveProperty("resourceRules");
  });

  it("refuse a lower tier dropping a locked policy's resource rule, or excluding what it matches", () => {
    const dropped = refusal(() =>
      effectivePolicySet([globalLayer(noExec()), regionLayer("eu-west", refinement("no-exec", EU_PLATFORM, { match: { kinds: ["Pod"] } }))], EU_1),
    );
    expect(dropped.message).toMatch(/drops resource rule/);
    const excluded = refusal(() =>
      effectivePolicySet(
        [globalLayer(noExec()), regionLayer("eu-west", refinement("no-exec", EU_PLATFORM, { match: { resourceRules: [EXEC], excludeResourceRules: [EXEC] } }))],
        EU_1,
      ),
    );
    expect(excluded.message).toMatch(/\(by excluding\) resource rule/);
  });
});
