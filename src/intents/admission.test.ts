/**
 * The native second line gives the same verdicts as the policies it comes from: each
 * emitted ValidatingAdmissionPolicy, with its binding and params object, is read back with
 * `polity import` (Kubernetes' semantics, as Polity implements them) and judged by Polity's
 * CEL evaluator on the same fixtures as the original policies: the same rules fail, with the
 * same messages and enforcement. And a residency rule holds pods to their zones.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { evaluate } from "../decision/evaluate.js";
import { requestForResource } from "../decision/request.js";
import { effectivePolicySet, type ClusterIdentity, type EffectivePolicySet } from "../layering/effective.js";
import { importPolicies } from "../policy/import.js";
import { layersFromFiles } from "../policy/layer-files.js";
import { buildLayer } from "../policy/layer.js";
import { parseDocuments, type SourceDocument } from "../source/parse.js";
import { residencyExpression } from "./admission.js";
import { renderCluster, type ClusterFacts, type Manifest } from "./index.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const read = (path: string) => readFileSync(resolve(ROOT, path), "utf8");
const EU_1: ClusterIdentity = { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } };
const FACTS: ClusterFacts = { kubernetesVersion: "1.31", networkPolicy: true, capacity: { cpu: "96", memory: "384Gi" }, zones: ["eu-west-1a", "eu-west-1b"] };
const NOW = Date.parse("2026-12-01T00:00:00Z");

/** The emitted VAPs, bindings and params as a Polity effective set, through `polity import`. */
function secondLineAsPolity(manifests: readonly Manifest[]): { set: EffectivePolicySet; origin: Map<string, string> } {
  const result = importPolicies(manifests.map((m, i) => ({ source: `emitted[${i}]`, value: JSON.parse(JSON.stringify(m)) as unknown })), { owner: "platform-security" });
  expect(result.refusals).toEqual([]);
  const origin = new Map<string, string>();
  const docs = result.policies.map((p) => {
    const name = String((p.document.metadata as { name: string }).name);
    origin.set(name, name.replace(/^polity-/, ""));
    return p.document;
  });
  const sources: SourceDocument[] = docs.map((value, index) => ({ file: "emitted.yaml", index, value, locate: () => ({ file: "emitted.yaml", line: 0, column: 0 }) }));
  const layer = buildLayer(sources, { tier: "global", name: "emitted" });
  return { set: effectivePolicySet([layer], EU_1), origin };
}

/** A decision as comparable verdicts: policy, rule position, message, enforcement. */
function verdicts(set: EffectivePolicySet, object: unknown, rename: (policy: string) => string | undefined): string[] {
  const decision = evaluate(set, requestForResource(object, "CREATE"), { now: NOW });
  const byPolicy = new Map(set.document.policies.map((p) => [p.name, p]));
  return decision.violations
    .filter((v) => v.target === undefined)
    .flatMap((v) => {
      const policy = rename(v.policy);
      if (policy === undefined) return [];
      const index = byPolicy.get(v.policy)!.validations.findIndex((r) => r.name === v.rule);
      return [`${policy}[${index}] ${v.enforcement}: ${v.message}`];
    })
    .sort();
}

function compare(original: EffectivePolicySet, fixtures: readonly unknown[]): { compared: number; refused: number; notExpressible: string[] } {
  const rendering = renderCluster("eu-west-1", original, FACTS);
  const emitted = rendering.document.manifests.filter((m) => m.metadata.labels["polity.dev/policy"] !== undefined || m.kind === "PolicyParams");
  const second = secondLineAsPolity(emitted.filter((m) => !String(m.metadata.name).startsWith("polity-eu-residency")));
  const expressible = new Set(second.origin.values());
  let compared = 0;
  let refused = 0;
  for (const object of fixtures) {
    const want = verdicts(original, object, (p) => (expressible.has(p) ? p : undefined));
    const got = verdicts(second.set, object, (p) => second.origin.get(p));
    expect(got, JSON.stringify((object as { metadata?: unknown }).metadata)).toEqual(want);
    compared += 1;
    if (want.length > 0) refused += 1;
  }
  return { compared, refused, notExpressible: rendering.notExpressible.map((n) => n.policy) };
}

const objectsOf = (path: string): unknown[] => parseDocuments(read(path), path).map((d) => d.value);

describe("the ValidatingAdmissionPolicies Polity emits", () => {
  it("judge the example federation's fixtures as its policies do", () => {
    const layers = layersFromFiles(["global.yaml", "region-eu-west.yaml", "cluster-eu-west-1.yaml"].map((name) => ({ name, content: read(`examples/layers/${name}`) }))).map((l) => l.layer);
    const set = effectivePolicySet(layers, EU_1);
    const fixtures = ["root-pod.yaml", "legacy-billing.yaml", "good-deployment.yaml", "scaled-deployment.yaml"].flatMap((f) => objectsOf(`examples/resources/${f}`));
    const pods = fixtures.filter((o) => (o as { kind?: string }).kind === "Pod");
    expect(pods.length).toBeGreaterThan(0);
    const result = compare(set, pods);
    expect(result).toEqual({ compared: pods.length, refused: expect.any(Number), notExpressible: ["require-team-label"] });
    expect(result.refused).toBeGreaterThan(0);
  });

  it("judge the workload policies' test cases as the policies do: optionals, quantities, semver, URLs", () => {
    const docs = parseDocuments(read("examples/policies/workloads.yaml"), "workloads.yaml");
    const layer = buildLayer(docs, { tier: "global", name: "global" });
    const set = effectivePolicySet([layer], EU_1);
    const test = parseDocuments(read("examples/tests/workloads.test.yaml"), "workloads.test.yaml")[0]!.value as { spec: { cases: { object?: unknown }[] } };
    const objects = test.spec.cases.map((c) => c.object).filter((o): o is Record<string, unknown> => o !== undefined && (o as { kind?: string }).kind === "Pod");
    expect(objects.length).toBeGreaterThan(2);
    const result = compare(set, objects);
    expect(result).toEqual({ compared: objects.length, refused: expect.any(Number), notExpressible: [] });
    expect(result.refused).toBeGreaterThan(1);
  });
});

describe("a residency rule", () => {
  const expression = residencyExpression("topology.kubernetes.io/zone", ["eu-west-1b", "eu-west-1a"]);
  const doc = {
    apiVersion: "polity.dev/v1",
    kind: "Policy",
    metadata: { name: "residency", owner: "t" },
    spec: { domain: "data-residency", match: { kinds: ["Pod"] }, validations: [{ name: "zone", expression }] },
  };
  const set = effectivePolicySet([buildLayer([{ file: "r.yaml", index: 0, value: doc, locate: () => ({ file: "r.yaml", line: 0, column: 0 }) }], { tier: "global", name: "g" })], EU_1);
  const pod = (spec: Record<string, unknown>) => ({ apiVersion: "v1", kind: "Pod", metadata: { name: "p", namespace: "eu", labels: { residency: "eu" } }, spec: { containers: [{ name: "c", image: "i" }], ...spec } });
  const allowed = (spec: Record<string, unknown>) => evaluate(set, requestForResource(pod(spec)), { now: NOW }).allowed;
  const term = (values: string[]) => ({ matchExpressions: [{ key: "topology.kubernetes.io/zone", operator: "In", values }] });
  const affinity = (...terms: unknown[]) => ({ affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } } } });

  it("allows a pod whose nodeSelector names an allowed zone", () => expect(allowed({ nodeSelector: { "topology.kubernetes.io/zone": "eu-west-1a" } })).toBe(true));
  it("refuses a pod with no zone constraint, or another zone", () => {
    expect(allowed({})).toBe(false);
    expect(allowed({ nodeSelector: { "topology.kubernetes.io/zone": "us-east-1a" } })).toBe(false);
  });
  it("allows one required node-affinity term that keeps to allowed zones; refuses another zone, or terms the scheduler could take elsewhere", () => {
    expect(allowed(affinity(term(["eu-west-1a", "eu-west-1b"])))).toBe(true);
    expect(allowed(affinity(term(["eu-west-1a", "us-east-1a"])))).toBe(false);
    expect(allowed(affinity(term(["eu-west-1a"]), term(["us-east-1a"])))).toBe(false);
  });
});
