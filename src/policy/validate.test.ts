/**
 * Schema validation of policy documents: every problem at once, each with the field path
 * Kubernetes would print and the file, line and column it is at.
 */
import { describe, expect, it } from "vitest";
import { formatProblem } from "../errors.js";
import { parseDocuments } from "../source/parse.js";
import { validateDocument } from "./validate.js";

/** The problems with the first document of a YAML text, as `file:line:column: path: message`. */
function problems(yaml: string): string[] {
  const [doc] = parseDocuments(yaml, "p.yaml");
  const result = validateDocument(doc!);
  return result.ok ? [] : result.problems.map(formatProblem);
}

const POLICY = `apiVersion: polity.dev/v1
kind: Policy
metadata: { name: require-team-label, owner: platform }
spec:
  domain: workload-security
  match: { kinds: [Pod], operations: [CREATE] }
  validations:
    - name: team
      expression: "has(object.metadata.labels)"
`;

describe("validateDocument", () => {
  it("accepts a valid document and gives it back typed", () => {
    const [doc] = parseDocuments(POLICY, "p.yaml");
    const result = validateDocument(doc!);
    expect(result.ok && result.document.kind === "Policy" && result.document.spec.validations?.[0]?.name).toBe("team");
  });

  it("refuses an unknown field at its key, with its path", () => {
    expect(problems(`${POLICY}      severity: high\n`)).toEqual(["p.yaml:10:7: spec.validations[0].severity: unknown field"]);
  });

  it("refuses a wrong type, saying what it expected and what it got", () => {
    expect(problems(POLICY.replace("  domain: workload-security\n", "  domain: workload-security\n  locked: \"yes\"\n"))).toEqual([
      'p.yaml:6:11: spec.locked: expected true or false, got the string "yes"',
    ]);
  });

  it("refuses a missing field at the object that lacks it", () => {
    expect(problems(POLICY.replace('      expression: "has(object.metadata.labels)"\n', "      message: no expression\n"))).toEqual([
      "p.yaml:8:7: spec.validations[0].expression: is required (a string)",
    ]);
  });

  it("refuses a value outside an enumeration, listing the allowed ones", () => {
    expect(problems(`${POLICY}  enforcement: block\n`)).toEqual(['p.yaml:10:16: spec.enforcement: must be one of "deny", "warn", "audit", got the string "block"']);
  });

  it("refuses a name Kubernetes would refuse, in Kubernetes' words", () => {
    expect(problems(POLICY.replace("name: require-team-label", "name: Require_Team"))).toEqual([
      expect.stringMatching(/^p\.yaml:3:19: metadata\.name: must be a lowercase RFC 1123 subdomain: /),
    ]);
  });

  it("refuses a bad label key at the key, saying why", () => {
    expect(problems(POLICY.replace("owner: platform }", `owner: platform, labels: { ${"k".repeat(64)}: v } }`))).toEqual([
      `p.yaml:3:66: metadata.labels.${"k".repeat(64)}: invalid key: name part must be no more than 63 characters`,
    ]);
  });

  it("reports every problem of a document at once", () => {
    const yaml = `${POLICY}  enforcement: block\n  locked: "yes"\n  extra: 1\n`;
    expect(problems(yaml)).toHaveLength(3);
  });

  it("names the apiVersion and kind it expects before anything else", () => {
    expect(problems("apiVersion: polity.dev/v2\nkind: Policy\n")).toEqual(['p.yaml:1:13: apiVersion: must be "polity.dev/v1", got the string "polity.dev/v2"']);
    expect(problems("kind: Policy\n")).toEqual(['p.yaml:1:1: apiVersion: must be "polity.dev/v1", got nothing']);
    expect(problems("apiVersion: polity.dev/v1\nkind: Rule\n")).toEqual(['p.yaml:2:7: kind: must be one of Layer, Policy, Exception, Team, PolicyTest, got the string "Rule"']);
    expect(problems("- a list\n")).toEqual(["p.yaml:1:1: expected a document (a map with apiVersion and kind), got a list"]);
  });

  it("requires a region layer to name its region, and a global layer to name none", () => {
    const layer = (spec: string) => `apiVersion: polity.dev/v1\nkind: Layer\nmetadata: { name: l }\nspec: { ${spec}, owners: [team-a] }\n`;
    expect(problems(layer("tier: region"))).toEqual([expect.stringMatching(/^p\.yaml:4:7: spec\.region: is required for a region layer$/)]);
    expect(problems(layer("tier: cluster, region: eu-west"))).toEqual([expect.stringMatching(/spec\.cluster: is required for a cluster layer$/)]);
    expect(problems(layer("tier: global, region: eu-west"))).toEqual([expect.stringMatching(/spec\.tier: a global layer names no region or cluster$/)]);
    expect(problems(layer("tier: region, region: eu-west"))).toEqual([]);
  });

  it("requires an exception to be narrow, justified and to expire at a real time", () => {
    const exception = (scope: string, expiresAt = "2026-12-31T00:00:00Z", justification = "legacy job, replaced in Q1") =>
      `apiVersion: polity.dev/v1\nkind: Exception\nmetadata: { name: e }\nspec:\n  policy: p\n  scope: ${scope}\n  justification: ${justification}\n  approvedBy: alice\n  expiresAt: "${expiresAt}"\n`;
    expect(problems(exception("{ namespaces: [shop] }"))).toEqual([]);
    expect(problems(exception("{ clusters: [eu-west-1] }"))).toEqual([expect.stringMatching(/spec\.scope: an exception must be narrow: name namespaces, resource names or an objectSelector that requires a label \(matchLabels, or In or Exists\)$/)]);
    // A selector that requires no label matches nearly everything: not narrow.
    expect(problems(exception("{ objectSelector: {} }"))).toEqual([expect.stringMatching(/spec\.scope: an exception must be narrow/)]);
    expect(problems(exception("{ objectSelector: { matchExpressions: [{ key: made-up, operator: DoesNotExist }] } }"))).toEqual([expect.stringMatching(/spec\.scope: an exception must be narrow/)]);
    expect(problems(exception("{ objectSelector: { matchLabels: { app: legacy } } }"))).toEqual([]);
    // Dates Date.parse would move to another day.
    expect(problems(exception("{ names: [job] }", "2027-02-30T00:00:00Z"))).toEqual([expect.stringMatching(/spec\.expiresAt: is not a valid time$/)]);
    expect(problems(exception("{ names: [job] }", "2026-12-31T24:00:00Z"))).toEqual([expect.stringMatching(/spec\.expiresAt: is not a valid time$/)]);
    // A justification is shown in terminals: no control characters.
    expect(problems(exception("{ names: [job] }", undefined, '"legacy job\\u001b[2K approved"'))).toEqual([expect.stringMatching(/spec\.justification: must not contain control or bidirectional formatting characters \(U\+001B at character 11\)$/)]);
    expect(problems(exception("{ names: [job] }", "tomorrow"))).toContainEqual(expect.stringMatching(/spec\.expiresAt: must be an RFC 3339 time such as 2026-12-31T00:00:00Z$/));
    expect(problems(exception("{ names: [job] }", "2026-13-45T00:00:00Z"))).toEqual([expect.stringMatching(/spec\.expiresAt: is not a valid time$/)]);
    expect(problems(exception("{ names: [job] }", undefined, "because"))).toEqual([expect.stringMatching(/spec\.justification: must explain why, in at least 10 characters$/)]);
  });

  it("holds label selectors to Kubernetes' semantics: values with In and NotIn, none with Exists", () => {
    const scoped = (expression: string) => `${POLICY}  scope: { clusterSelector: { matchExpressions: [${expression}] } }\n`;
    expect(problems(scoped("{ key: env, operator: In, values: [prod] }"))).toEqual([]);
    expect(problems(scoped("{ key: env, operator: In }"))).toEqual([expect.stringMatching(/spec\.scope\.clusterSelector\.matchExpressions\[0\]\.values: must be non-empty when operator is In$/)]);
    expect(problems(scoped("{ key: env, operator: Exists, values: [x] }"))).toEqual([expect.stringMatching(/\.values: must be empty when operator is Exists$/)]);
  });
});
