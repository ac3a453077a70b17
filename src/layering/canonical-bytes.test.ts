/**
 * The bytes of an effective policy set are what the hub signs and every agent hashes, so
 * they must be exactly the canonical encoding of its document. effectivePolicySet builds
 * them from cached pieces rather than encoding the whole document again; these properties
 * hold it to the canonical encoder's output, for any layers.
 */
import { unshowableProblem } from "../policy/names.js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalJson, contentHash } from "../canonical/index.js";
import { PolityError } from "../errors.js";
import { buildLayer, type Layer } from "../policy/layer.js";
import type { SourceDocument } from "../source/parse.js";
import { effectivePolicySet, effectivePolicySetFromBytes, type ClusterIdentity } from "./effective.js";

type Doc = Record<string, unknown>;

const sources = (file: string, docs: readonly Doc[]): SourceDocument[] =>
  docs.map((value, index) => ({ file, index, value, locate: () => ({ file, line: 0, column: 0 }) }));

const RULES = [
  "has(object.metadata.labels)",
  "object.metadata.name.size() < 64",
  "!has(object.spec.replicas) || object.spec.replicas <= 10",
  "object.kind == 'Pod' || true",
  "params == null || true",
];
const ENFORCEMENT = fc.constantFrom("deny", "warn", "audit");
const LABEL_KEYS = ["env", "team", "app.kubernetes.io/name", "tier"];
const LABEL_VALUES = ["prod", "dev", "a", "payments", ""];

/** Any text: the encoder's hard cases (escapes, non-ASCII, astral characters) live in strings. */
const text = fc.string({ unit: "binary", maxLength: 20 });
/** Text people read (a justification): the same, without the control and bidirectional characters the schema refuses there. */
const shown = text.filter((t) => unshowableProblem(t) === undefined);
const labels = fc.dictionary(fc.constantFrom(...LABEL_KEYS), fc.constantFrom(...LABEL_VALUES), { maxKeys: 3 });
/** Mostly none, so that most policies reach the cluster; sometimes labels the cluster may lack. */
const selector = fc.oneof({ arbitrary: fc.constant(undefined), weight: 3 }, { arbitrary: fc.record({ matchLabels: labels }), weight: 1 });
const validations = (prefix: string) =>
  fc.uniqueArray(fc.record({ rule: fc.constantFrom(...RULES), message: fc.option(text, { nil: undefined }) }), { minLength: 1, maxLength: 3, selector: (v) => v.rule }).map((list) =>
    list.map((v, i) => ({ name: `${prefix}-${i}`, expression: v.rule, ...(v.message === undefined ? {} : { message: v.message }) })),
  );

/** A complete policy the global tier defines. */
const definition = (name: string) =>
  fc.record({
    description: fc.option(text, { nil: undefined }),
    enforcement: ENFORCEMENT,
    failurePolicy: fc.constantFrom("Fail", "Ignore"),
    locked: fc.boolean(),
    kinds: fc.uniqueArray(fc.constantFrom("Pod", "apps/Deployment", "ConfigMap", "*"), { minLength: 1, maxLength: 2 }),
    params: fc.dictionary(fc.constantFrom("maxReplicas", "registries", "note"), fc.jsonValue({ maxDepth: 2, stringUnit: "binary" }), { maxKeys: 2 }),
    clusterSelector: selector,
    namespaceSelector: selector,
    validations: validations("rule"),
  }).map((p): Doc => ({
    apiVersion: "polity.dev/v1",
    kind: "Policy",
    metadata: { name, owner: "platform", ...(p.description === undefined ? {} : { description: p.description }) },
    spec: {
      domain: "workload-security",
      match: { kinds: p.kinds },
      enforcement: p.enforcement,
      failurePolicy: p.failurePolicy,
      locked: p.locked,
      params: Object.fromEntries(Object.entries(p.params).map(([k, v]) => [k, { default: v }])),
      scope: { ...(p.clusterSelector === undefined ? {} : { clusterSelector: p.clusterSelector }), ...(p.namespaceSelector === undefined ? {} : { namespaceSelector: p.namespaceSelector }) },
      validations: p.validations,
    },
  }));

/** What a lower tier may do to a policy it did not define: add rules, and tighten to deny. */
const refinement = (name: string, tier: string) =>
  fc.record({ deny: fc.boolean(), validations: validations(tier) }).map(
    (r): Doc => ({ apiVersion: "polity.dev/v1", kind: "Policy", metadata: { name, owner: "platform" }, spec: { ...(r.deny ? { enforcement: "deny" } : {}), validations: r.validations } }),
  );

const NAMES = ["alpha", "beta", "gamma.delta", "epsilon-zeta"];

const layers = fc
  .record({
    defined: fc.subarray(NAMES, { minLength: 1 }),
    regionRefines: fc.subarray(NAMES),
    clusterRefines: fc.subarray(NAMES),
    exceptionNames: fc.option(fc.record({ reason: shown, namespaces: fc.uniqueArray(fc.constantFrom("shop", "billing"), { minLength: 1 }) }), { nil: undefined }),
    clusterLabels: labels,
  })
  .chain((shape) =>
    fc.record({
      global: fc.tuple(...shape.defined.map(definition)),
      region: fc.tuple(...shape.regionRefines.filter((n) => shape.defined.includes(n)).map((n) => refinement(n, "region"))),
      cluster: fc.tuple(...shape.clusterRefines.filter((n) => shape.defined.includes(n)).map((n) => refinement(n, "cluster"))),
      shape: fc.constant(shape),
    }),
  )
  .map(({ global, region, cluster, shape }) => {
    const exceptions: Doc[] =
      shape.exceptionNames === undefined
        ? []
        : [
            {
              apiVersion: "polity.dev/v1",
              kind: "Exception",
              metadata: { name: "relax" },
              spec: {
                policy: shape.defined[0],
                scope: { namespaces: shape.exceptionNames.namespaces },
                justification: `a reviewed need: ${shape.exceptionNames.reason}`,
                approvedBy: "platform",
                expiresAt: "2026-12-31T00:00:00Z",
              },
            },
          ];
    const identity: ClusterIdentity = { name: "eu-west-1", region: "eu-west", labels: shape.clusterLabels };
    const built: Layer[] = [
      buildLayer(sources("global.yaml", [...global, ...exceptions]), { tier: "global", name: "global", owners: ["platform"] }),
      buildLayer(sources("region.yaml", region), { tier: "region", region: "eu-west", name: "eu-west", owners: ["platform"] }),
      buildLayer(sources("cluster.yaml", cluster), { tier: "cluster", region: "eu-west", cluster: "eu-west-1", name: "eu-west-1", owners: ["platform"] }),
    ];
    return { layers: built, cluster: identity };
  });

describe("an effective policy set's bytes", () => {
  it("are the canonical encoding of its document, and its hash the content hash of those bytes, for any layers", () => {
    let combined = 0;
    fc.assert(
      fc.property(layers, ({ layers, cluster }) => {
        let set;
        try {
          set = effectivePolicySet(layers, cluster);
        } catch (error) {
          // A refinement of a policy scoped away from this cluster is refused; not this property's concern.
          if (error instanceof PolityError && error.code === "merge-refused") return;
          throw error;
        }
        combined++;
        const canonical = canonicalJson(set.document);
        expect(set.canonical).toBe(canonical);
        expect(set.bytes.equals(Buffer.from(canonical, "utf8"))).toBe(true);
        expect(set.hash).toBe(contentHash(Buffer.from(canonical, "utf8")));
      }),
      { numRuns: 300 },
    );
    expect(combined).toBeGreaterThan(150);
  });

  it("give back the same document and hash when an agent reads them from a bundle", () => {
    fc.assert(
      fc.property(layers, ({ layers, cluster }) => {
        let set;
        try {
          set = effectivePolicySet(layers, cluster);
        } catch (error) {
          if (error instanceof PolityError && error.code === "merge-refused") return;
          throw error;
        }
        const read = effectivePolicySetFromBytes(Buffer.from(set.bytes));
        expect(read.hash).toBe(set.hash);
        expect(canonicalJson(read.document)).toBe(set.canonical);
      }),
      { numRuns: 100 },
    );
  });

  it("do not depend on the order documents were written in", () => {
    fc.assert(
      fc.property(layers, fc.boolean(), ({ layers, cluster }, reverse) => {
        const reordered = layers.map((layer) => ({ ...layer, policies: reverse ? [...layer.policies].reverse() : layer.policies }));
        let a;
        let b;
        try {
          a = effectivePolicySet(layers, cluster);
          b = effectivePolicySet(reordered, cluster);
        } catch (error) {
          if (error instanceof PolityError && error.code === "merge-refused") return;
          throw error;
        }
        expect(b.hash).toBe(a.hash);
      }),
      { numRuns: 100 },
    );
  });
});
