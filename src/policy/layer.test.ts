/**
 * Building a layer: its Layer document (or the defaults a command line gives), its
 * policies sorted and owned, built-ins expanded, every expression compiled, and every
 * problem reported at once with its file, line, column and field path.
 */
import { describe, expect, it } from "vitest";
import { PolityError, formatProblem } from "../errors.js";
import { parseDocuments } from "../source/parse.js";
import { buildLayer, layerId, type Layer, type LayerDefaults } from "./layer.js";

const LAYER = `apiVersion: polity.dev/v1
kind: Layer
metadata: { name: eu-west }
spec: { tier: region, region: eu-west, owners: [eu-platform, eu-security] }
`;
const policy = (name: string, extra = "", owner = "eu-platform") => `apiVersion: polity.dev/v1
kind: Policy
metadata: { name: ${name}, owner: ${owner} }
spec:
  domain: workload-security
  match: { kinds: [Pod] }
  validations:
    - name: team
      expression: "has(object.metadata.labels)"
${extra}`;

/** Documents of several YAML files, each given as [name, text]. */
const files = (...entries: [string, ...string[]][]) => entries.flatMap(([name, ...docs]) => parseDocuments(docs.join("---\n"), name));

function build(entries: [string, ...string[]][], defaults: LayerDefaults = { tier: "global", assumed: true }): Layer {
  return buildLayer(files(...entries), defaults);
}

/** Every problem buildLayer reports, formatted; fails the test when it builds. */
function problems(entries: [string, ...string[]][], defaults?: LayerDefaults): string[] {
  try {
    build(entries, defaults);
  } catch (error) {
    if (error instanceof PolityError) return error.problems.map(formatProblem);
    throw error;
  }
  throw new Error("expected the layer to be refused");
}

describe("buildLayer", () => {
  it("takes the tier, region, name and owners from the Layer document", () => {
    const layer = build([["region.yaml", LAYER, policy("a")]]);
    expect(layer).toMatchObject({ name: "eu-west", tier: "region", region: "eu-west", cluster: undefined, owners: ["eu-platform", "eu-security"] });
    expect(layerId(layer)).toBe("region/eu-west");
  });

  it("takes them from the defaults when the files carry no Layer document", () => {
    const layer = build([["p.yaml", policy("a")]], { tier: "cluster", region: "eu-west", cluster: "eu-west-1", owners: ["eu-platform"] });
    expect(layer).toMatchObject({ name: "cluster", tier: "cluster", region: "eu-west", cluster: "eu-west-1" });
    expect(layerId(layer)).toBe("cluster/eu-west-1");
    expect(layerId(build([["p.yaml", policy("a")]]))).toBe("global");
  });

  it("sorts policies by name, whatever order they were written in", () => {
    const layer = build([["a.yaml", LAYER, policy("zeta"), policy("alpha")], ["b.yaml", policy("mu")]]);
    expect(layer.policies.map((p) => p.document.metadata.name)).toEqual(["alpha", "mu", "zeta"]);
  });

  it("gives a policy without an owner the layer's first owner", () => {
    const unowned = policy("a").replace("metadata: { name: a, owner: eu-platform }", "metadata: { name: a }");
    expect(build([["region.yaml", LAYER, unowned]]).policies[0]!.document.metadata.owner).toBe("eu-platform");
    expect(build([["p.yaml", unowned]]).policies[0]!.document.metadata.owner).toBe("unowned");
  });

  it("expands a built-in into its domain, match, variables and validations, keeping the document's name and enforcement", () => {
    const builtin = "apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: pods, owner: eu-platform }\nspec: { builtin: pod-security/baseline@v1.25, enforcement: warn }\n";
    const [pods] = build([["region.yaml", LAYER, builtin]]).policies;
    expect(pods!.document.metadata.name).toBe("pods");
    expect(pods!.document.spec).toMatchObject({ domain: "workload-security", enforcement: "warn", match: { kinds: ["Pod"] } });
    expect(pods!.document.spec.validations!.map((v) => v.name)).toContain("privileged");
  });

  it("keeps the origin of each policy, to locate problems found later", () => {
    const [a] = build([["region.yaml", LAYER, policy("a")]]).policies;
    expect(a!.origin?.file).toBe("region.yaml");
    expect(a!.origin?.locate(["spec", "domain"])).toEqual({ file: "region.yaml", line: 10, column: 11 });
  });
});

describe("buildLayer refuses", () => {
  it("a policy whose owner is not an owner of the layer, naming the owners", () => {
    expect(problems([["region.yaml", LAYER, policy("a", "", "payments")]])).toEqual([
      'region.yaml:8:29: metadata.owner: "payments" is not an owner of layer "eu-west" (owners: eu-platform, eu-security)',
    ]);
  });

  it("a policy defined twice in a layer, naming the other file", () => {
    expect(problems([["a.yaml", LAYER, policy("a")], ["b.yaml", policy("a")]])).toEqual([
      'b.yaml:3:19: metadata.name: policy "a" is defined twice in layer "eu-west" (also in a.yaml)',
    ]);
  });

  it("two Layer documents in one layer", () => {
    expect(problems([["a.yaml", LAYER], ["b.yaml", LAYER]])).toEqual([expect.stringMatching(/^b\.yaml:1:1: kind: a layer has one Layer document; another is at a\.yaml$/)]);
  });

  it("a PolicyTest, which belongs in a test folder", () => {
    const test = "apiVersion: polity.dev/v1\nkind: PolicyTest\nmetadata: { name: t }\nspec:\n  cases: [{ name: c, expect: { allowed: true } }]\n";
    expect(problems([["t.yaml", test]])).toEqual(["t.yaml:2:7: kind: a PolicyTest belongs in a test folder (polity policy test), not in a layer"]);
  });

  it("an unknown built-in at spec.builtin, listing the library", () => {
    const builtin = "apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: pods }\nspec: { builtin: pod-security/strict }\n";
    expect(problems([["p.yaml", builtin]])).toEqual([expect.stringMatching(/^p\.yaml:4:18: spec\.builtin: unknown Pod Security level "strict"/)]);
  });

  it("an expression that does not compile, naming the policy, the rule and the position", () => {
    const broken = policy("a").replace('expression: "has(object.metadata.labels)"', 'expression: "object.metadata.name == )"');
    expect(problems([["p.yaml", broken]])).toEqual([expect.stringMatching(/^p\.yaml:9:19: spec\.validations\[0\]\.expression: policy "a", rule "team": syntax error at 1:25: /)]);
  });

  it("a rule that is not a bool, and a message expression that is not a string", () => {
    const wrong = policy("a").replace('expression: "has(object.metadata.labels)"', 'expression: "1 + 2"\n      messageExpression: "42"');
    expect(problems([["p.yaml", wrong]])).toEqual([
      'p.yaml:9:19: spec.validations[0].expression: policy "a", rule "team": must evaluate to a bool, but evaluates to int',
      'p.yaml:10:26: spec.validations[0].messageExpression: policy "a", rule "team": must evaluate to a string, but evaluates to int',
    ]);
  });

  it("a rule name used twice and a variable defined twice", () => {
    const twice = policy("a", '    - name: team\n      expression: "true"\n  variables:\n    - { name: v, expression: "1" }\n    - { name: v, expression: "2" }\n');
    expect(problems([["p.yaml", twice]])).toEqual([
      expect.stringMatching(/spec\.variables\[1\]\.name: variable "v" is defined twice$/),
      expect.stringMatching(/spec\.validations\[1\]\.name: rule name "team" is used twice$/),
    ]);
  });

  it("a Layer document for another tier or region than the one given, unless the given one is only assumed", () => {
    expect(problems([["r.yaml", LAYER]], { tier: "region", region: "us-east" })).toEqual([
      'r.yaml:4:31: spec.region: this layer is for region "eu-west", but was given as region "us-east"',
    ]);
    expect(problems([["r.yaml", LAYER]], { tier: "cluster", cluster: "eu-west-1" })).toEqual([
      'r.yaml:4:15: spec.tier: this layer is for tier "region", but was given as tier "cluster"',
    ]);
    expect(build([["r.yaml", LAYER]], { tier: "global", assumed: true }).tier).toBe("region");
  });

  it("with every problem of every file at once", () => {
    const found = problems([
      ["a.yaml", LAYER, policy("a", "", "payments"), policy("b").replace("kinds: [Pod]", "kinds: []")],
      ["b.yaml", policy("a"), "apiVersion: polity.dev/v1\nkind: Unknown\n"],
    ]);
    expect(found.map((p) => p.split(":").slice(0, 1)[0])).toEqual(["a.yaml", "b.yaml", "a.yaml", "b.yaml"]);
    expect(found).toHaveLength(4);
  });
});

describe("expressions are type-checked as Kubernetes checks a ValidatingAdmissionPolicy's", () => {
  const rule = (expression: string, extra = "") => `apiVersion: polity.dev/v1
kind: Policy
metadata: { name: typed, owner: eu-platform }
spec:
  domain: workload-security
  match: { kinds: [Pod] }
${extra}  validations:
    - name: rule
      expression: ${JSON.stringify(expression)}
`;
  const refusedWith = (expression: string, extra = "") => problems([["region.yaml", LAYER, rule(expression, extra)]]).join("\n");
  const accepted = (expression: string, extra = "") => build([["region.yaml", LAYER, rule(expression, extra)]]);

  it("refuses a field an AdmissionRequest does not have, naming the fields it has", () => {
    expect(refusedWith("request.foo1 == 'x'")).toMatch(/type error at 1:8: undefined field 'foo1' \(kubernetes\.AdmissionRequest has kind, resource, subResource, .*userInfo, dryRun, options\)/);
    expect(refusedWith("request.userInfo.group.size() > 0")).toMatch(/undefined field 'group' \(kubernetes\.UserInfo has username, uid, groups, extra\)/);
    accepted("request.userInfo.groups.exists(g, g == 'system:masters') || request.operation == 'CREATE'");
  });

  it("types the request's fields: an operation is a string, so adding an int to it is an error", () => {
    expect(refusedWith("request.operation + 1 == 'x'")).toMatch(/found no matching overload for '\+' applied to '\(string, int\)'/);
  });

  it("refuses a field a Namespace does not have, and accepts its labels", () => {
    expect(refusedWith("namespaceObject.labels['team'] == 'a'")).toMatch(/undefined field 'labels' \(kubernetes\.Namespace has apiVersion, kind, metadata, spec, status\)/);
    accepted("namespaceObject.metadata.?labels[?'team'].orValue('') == 'a'");
  });

  it("refuses params in a policy that declares none, and an undeclared param in one that does", () => {
    expect(refusedWith("params.max > 1")).toMatch(/undeclared reference to 'params': the policy declares no params \(spec\.params\)/);
    expect(refusedWith("params.maxPods > 1", "  params: { max: { default: 3 } }\n")).toMatch(/undefined field 'maxPods' \(params has max\)/);
    expect(refusedWith("params.max.startsWith('a')", "  params: { max: { default: 3 } }\n")).toMatch(/found no matching overload for 'startsWith' applied to 'int\.\(string\)'/);
    accepted("size(object.spec.containers) <= params.max", "  params: { max: { default: 3 } }\n");
  });

  it("refuses an expression that mixes types in a literal or in the branches of a conditional", () => {
    expect(refusedWith("object.x in [1, 'one']")).toMatch(/expected type 'int' but found 'string': the elements of a list or map literal must have one type/);
    expect(refusedWith("(has(object.x) ? 1 : 'none') == 1")).toMatch(/the two branches of a conditional must have one type, not 'int' and 'string'/);
    accepted("object.x in [1, dyn('one')] || (has(object.x) ? object.x : 'none') == 1");
  });

  it("leaves params untyped in a refinement, whose params are its base policy's", () => {
    const refinement = `apiVersion: polity.dev/v1
kind: Policy
metadata: { name: max-replicas, owner: eu-platform }
spec:
  validations:
    - { name: stricter, expression: "object.spec.replicas <= params.maxReplicas - 1" }
`;
    expect(build([["region.yaml", LAYER, refinement]]).policies).toHaveLength(1);
  });
});

describe("match conditions", () => {
  const withConditions = (conditions: string) => `apiVersion: polity.dev/v1
kind: Policy
metadata: { name: conditioned, owner: eu-platform }
spec:
  domain: workload-security
  match: { kinds: [Pod] }
  matchConditions:
${conditions}  validations:
    - { name: rule, expression: "true" }
`;

  it("are named as Kubernetes names them: qualified names such as not-created-by-cronjob", () => {
    const layer = build([["region.yaml", LAYER, withConditions('    - { name: not-created-by-cronjob, expression: "true" }\n    - { name: example.com/team, expression: "true" }\n')]]);
    expect(layer.policies[0]!.document.spec.matchConditions?.map((c) => c.name)).toEqual(["not-created-by-cronjob", "example.com/team"]);
  });

  it("refuse a name that is not a qualified name, and a name given twice", () => {
    expect(problems([["region.yaml", LAYER, withConditions('    - { name: "not valid!", expression: "true" }\n')]]).join("\n")).toMatch(/spec\.matchConditions\[0\]\.name/);
    expect(problems([["region.yaml", LAYER, withConditions('    - { name: a, expression: "true" }\n    - { name: a, expression: "false" }\n')]]).join("\n")).toMatch(/match condition "a" is defined twice/);
  });
});
