/**
 * Governance as pure rules: teams and membership, who may change what, what an exception
 * request may ask and who answers it, and what a proposal needs.
 */
import { describe, expect, it } from "vitest";
import { effectivePolicySet } from "../layering/effective.js";
import { buildLayer, type Layer } from "../policy/layer.js";
import { parseDocuments } from "../source/parse.js";
import {
  approvalRefusal,
  approvalsNeeded,
  approvingRule,
  changeRefusal,
  isMember,
  requestProblems,
  teamsOf,
  undeclaredOwners,
  type Actor,
  type ExceptionAsked,
  type PolicyOwnership,
} from "./index.js";

const team = (name: string, spec: string) => `apiVersion: polity.dev/v1\nkind: Team\nmetadata: { name: ${name} }\nspec: ${spec}\n`;
const policy = (name: string, owner: string | undefined, spec = "") =>
  `apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: ${name}${owner === undefined ? "" : `, owner: ${owner}`} }\nspec:\n  domain: workload-security\n  match: { kinds: [Pod] }\n  validations:\n    - name: labelled\n      expression: "has(object.metadata.labels)"\n  enforcement: warn\n${spec}`;

function layer(header: string, ...docs: string[]): Layer {
  return buildLayer(parseDocuments([header, ...docs].join("---\n"), "layer.yaml"), { tier: "global", assumed: true });
}

const GLOBAL_HEADER = "apiVersion: polity.dev/v1\nkind: Layer\nmetadata: { name: global }\nspec: { tier: global, owners: [security] }\n";
const REGION_HEADER = "apiVersion: polity.dev/v1\nkind: Layer\nmetadata: { name: eu }\nspec: { tier: region, region: eu, owners: [eu-ops] }\n";

const GLOBAL = layer(
  GLOBAL_HEADER,
  team("security", "{ members: [sam@x], groups: [oncall], escalateAfter: 48h }"),
  policy("locked-rule", "security", "  locked: true\n  exceptions: { maxLifetime: 7d, scopes: [clusters, namespaces] }\n"),
  policy("closed-rule", "security", "  exceptions: { allowed: false }\n"),
);
const REGION = layer(REGION_HEADER, team("eu-ops", "{ members: [eve@x] }"), policy("eu-rule", "eu-ops"), policy("unowned", undefined));

const actor = (subject: string, groups: string[] = [], admin = false): Actor => ({ subject, groups, admin });
const teams = teamsOf([GLOBAL, REGION]).teams;

describe("teams", () => {
  it("makes members of the subjects and groups a team lists", () => {
    expect(isMember(actor("sam@x"), teams.get("security"))).toBe(true);
    expect(isMember(actor("someone@x", ["oncall"]), teams.get("security"))).toBe(true);
    expect(isMember(actor("eve@x"), teams.get("security"))).toBe(false);
    expect(isMember(actor("eve@x"), undefined)).toBe(false);
    expect(teams.get("security")!.escalateAfterMs).toBe(48 * 3600_000);
    expect(teams.get("eu-ops")!.escalateAfterMs).toBe(72 * 3600_000);
  });

  it("refuses a team a lower tier declares again", () => {
    const again = layer(REGION_HEADER, team("eu-ops", "{ members: [eve@x] }"), team("security", "{ members: [eve@x] }"));
    expect(teamsOf([again, GLOBAL]).problems.map((p) => p.message)).toEqual([
      'team "security" is declared by layer "global" (tier global); layer "eu" may not declare it again',
    ]);
  });

  it("names owners that are not declared teams", () => {
    const orphan = layer(REGION_HEADER.replace("[eu-ops]", "[eu-ops, ghosts]"), policy("p", "ghosts"));
    expect(undeclaredOwners(orphan, teams).map((p) => p.message)).toEqual([
      'owner "ghosts" of layer "eu" is not a declared team: declare it with a Team document (kind: Team) in this layer or the global layer',
      'owner "ghosts" of policy "p" is not a declared team',
    ]);
  });
});

describe("who may change a layer", () => {
  const both = { before: teams, after: teams };
  const changed = layer(REGION_HEADER, team("eu-ops", "{ members: [eve@x] }"), policy("eu-rule", "eu-ops", "  failurePolicy: Ignore\n"), policy("unowned", undefined));

  it("lets a member of the policy's owner team change it, and a global admin anything", () => {
    expect(changeRefusal(actor("eve@x"), REGION, changed, both)).toBeUndefined();
    expect(changeRefusal(actor("root", [], true), REGION, changed, both)).toBeUndefined();
    expect(changeRefusal(actor("sam@x"), REGION, changed, both)).toMatch(/policy "eu-rule" is owned by team "eu-ops", and sam@x is not a member/);
  });

  it("leaves a policy that names no owner to its layer's first owner", () => {
    const unowned = layer(REGION_HEADER, team("eu-ops", "{ members: [eve@x] }"), policy("eu-rule", "eu-ops"), policy("unowned", undefined, "  failurePolicy: Ignore\n"));
    expect(changeRefusal(actor("eve@x"), REGION, unowned, both)).toBeUndefined();
    expect(changeRefusal(actor("sam@x"), REGION, unowned, both)).toMatch(/policy "unowned" is owned by team "eu-ops", and sam@x is not a member/);
  });

  it("judges membership by the teams as they are: nobody joins a team and uses it in one change", () => {
    const joined = layer(REGION_HEADER, team("eu-ops", "{ members: [eve@x, mallory@x] }"), policy("eu-rule", "eu-ops", "  failurePolicy: Ignore\n"), policy("unowned", undefined));
    const after = teamsOf([GLOBAL, joined]).teams;
    expect(changeRefusal(actor("mallory@x"), REGION, joined, { before: teams, after })).toMatch(/only its owners \(or a global admin\) change its owners, teams and exception rules/);
  });

  it("refuses an exception written in a layer file by anyone but a global admin", () => {
    const smuggled = layer(
      REGION_HEADER,
      team("eu-ops", "{ members: [eve@x] }"),
      policy("eu-rule", "eu-ops"),
      policy("unowned", undefined),
      "apiVersion: polity.dev/v1\nkind: Exception\nmetadata: { name: forever }\nspec:\n  policy: eu-rule\n  scope: { namespaces: [a] }\n  justification: trust me, it is fine\n  approvedBy: eu-ops\n  expiresAt: \"2999-01-01T00:00:00Z\"\n",
    );
    expect(changeRefusal(actor("eve@x"), REGION, smuggled, both)).toMatch(/exception "forever": only a global admin writes an exception in a layer file/);
    expect(changeRefusal(actor("root", [], true), REGION, smuggled, both)).toBeUndefined();
  });
});

describe("exception requests", () => {
  const NOW = Date.parse("2026-12-01T00:00:00Z");
  const cluster = { name: "eu-1", region: "eu", labels: { env: "staging" } };
  const set = effectivePolicySet([GLOBAL, REGION], cluster);
  const owned = (name: string): PolicyOwnership => ({
    policy: set.document.policies.find((p) => p.name === name)!,
    defining: GLOBAL,
    document: GLOBAL.policies.find((p) => p.document.metadata.name === name)!,
  });
  const asked = (over: Partial<ExceptionAsked> = {}): ExceptionAsked => ({
    policy: "locked-rule",
    scope: { clusters: ["eu-1"], namespaces: ["legacy"] },
    justification: "a legacy workload being migrated",
    expiresAt: new Date(NOW + 24 * 3600_000).toISOString(),
    ...over,
  });

  it("accepts a request within its policy's bounds", () => {
    expect(requestProblems(asked(), owned("locked-rule"), NOW)).toEqual([]);
  });

  it("names every way a request exceeds its policy's bounds", () => {
    const problems = requestProblems(asked({ rules: ["colour"], scope: { regions: ["eu"], names: ["x"] }, expiresAt: new Date(NOW + 10 * 86_400_000).toISOString() }), owned("locked-rule"), NOW);
    expect(problems).toEqual([
      'policy "locked-rule" has no rule "colour" (its rules: labelled)',
      'it would last 10 days; exceptions to policy "locked-rule" last at most 7 days (spec.exceptions.maxLifetime: 7d)',
      'policy "locked-rule" allows exceptions scoped by clusters, namespaces only, not by regions, names',
    ]);
    expect(requestProblems(asked({ policy: "closed-rule" }), owned("closed-rule"), NOW)).toEqual(['policy "closed-rule" takes no exceptions (its owners say so: spec.exceptions.allowed: false)']);
    expect(requestProblems(asked({ expiresAt: new Date(NOW).toISOString() }), owned("locked-rule"), NOW)).toEqual([`it would expire at ${new Date(NOW).toISOString()}, which is not in the future`]);
  });

  it("is answered by the owner team, never by its requester, and by a global admin once escalated", () => {
    const request = { requestedBy: "eve@x", team: "security", escalated: false };
    expect(approvalRefusal(actor("sam@x"), request, teams)).toBeUndefined();
    expect(approvalRefusal(actor("eve@x", ["oncall"]), request, teams)).toMatch(/nobody approves their own request/);
    expect(approvalRefusal(actor("pat@x"), request, teams)).toMatch(/pat@x is not a member of team "security"/);
    expect(approvalRefusal(actor("root", [], true), request, teams)).toMatch(/once it is escalated/);
    expect(approvalRefusal(actor("root", [], true), { ...request, escalated: true }, teams)).toBeUndefined();
  });

  it("is approved by a risk rule only when the enforcement, every named cluster and the lifetime all fit", () => {
    const ruled = layer(
      GLOBAL_HEADER.replace("owners: [security] }", "owners: [security], exceptionRules: [{ name: quick, enforcement: [warn], clusterSelector: { matchLabels: { env: staging } }, maxLifetime: 24h }] }"),
      team("security", "{ members: [sam@x] }"),
      policy("locked-rule", "security"),
    );
    const ownedBy = { ...owned("locked-rule"), defining: ruled };
    const labels = (name: string) => (name === "eu-1" ? { env: "staging" } : name === "eu-2" ? { env: "prod" } : undefined);
    expect(approvingRule(asked(), ownedBy, labels, NOW)?.name).toBe("quick");
    expect(approvingRule(asked({ scope: { clusters: ["eu-1", "eu-2"], namespaces: ["a"] } }), ownedBy, labels, NOW)).toBeUndefined();
    expect(approvingRule(asked({ scope: { namespaces: ["a"] } }), ownedBy, labels, NOW)).toBeUndefined();
    expect(approvingRule(asked({ expiresAt: new Date(NOW + 25 * 3600_000).toISOString() }), ownedBy, labels, NOW)).toBeUndefined();
  });
});

describe("what a proposal needs", () => {
  it("needs the owners of what it touches, and of a locked policy a lower layer refines", () => {
    const refined = layer(REGION_HEADER, team("eu-ops", "{ members: [eve@x] }"), policy("eu-rule", "eu-ops"), policy("unowned", undefined), "apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: locked-rule, owner: eu-ops }\nspec:\n  enforcement: deny\n");
    const upper = (_id: string, name: string) => GLOBAL.policies.filter((p) => p.document.metadata.name === name);
    expect(approvalsNeeded([{ id: "region/eu", before: REGION, after: refined }], upper)).toEqual([
      { team: "eu-ops", why: "it adds policy locked-rule of layer region/eu, and would own it" },
      { team: "security", why: "policy locked-rule is locked by its owner, and layer region/eu refines it" },
    ]);
  });

  it("needs the layer's owners for a change of its own governance", () => {
    const retitled = layer(REGION_HEADER, team("eu-ops", "{ members: [eve@x, eli@x] }"), policy("eu-rule", "eu-ops"), policy("unowned", undefined));
    expect(approvalsNeeded([{ id: "region/eu", before: REGION, after: retitled }], () => [])).toEqual([
      { team: "eu-ops", why: "it changes the owners, teams or exception rules of layer region/eu, which eu-ops own" },
    ]);
  });
});
