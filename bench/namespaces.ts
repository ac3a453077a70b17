/**
 * The admission hot path with the request's Namespace, as the agent's webhook decides in a
 * cluster: parse the review, look its namespace up in the namespace cache (a Map of
 * 10,000 Namespaces shaped by namespaceForDecision, as the informer keeps them), decide
 * through decideReview. Against the same floor as bench/decision.ts (JSON.parse of the
 * request plus JSON.stringify of a response), for:
 * (e) builtin:pod-security/restricted and a deny policy scoped by a namespace label;
 * (f) builtin:pod-security/baseline as a floor reading the namespace's Pod Security labels
 *     (spec.podSecurity.namespaceLabels: enforce), the namespace asking for restricted.
 * And the namespace cache's memory for 10,000 namespaces.
 */
import { decideReview, parseReviewBytes } from "../src/decision/review.js";
import { effectivePolicySet, type EffectivePolicySet } from "../src/layering/effective.js";
import { namespaceForDecision } from "../src/kube/namespaces.js";
import { buildLayer } from "../src/policy/layer.js";
import { deploymentPodReview, fmt, percentile, sample } from "./fixtures.js";

const gc = () => (globalThis as { gc?: () => void }).gc?.();

function setOf(docs: readonly unknown[]): EffectivePolicySet {
  const layer = buildLayer(
    docs.map((value, index) => ({ file: "bench.yaml", index, value, locate: () => ({ file: "bench.yaml", line: 0, column: 0 }) })),
    { tier: "global", name: "global", owners: ["bench"] },
  );
  return effectivePolicySet([layer], { name: "bench", region: "bench", labels: {} });
}

const policy = (name: string, spec: Record<string, unknown>) => ({ apiVersion: "polity.dev/v1", kind: "Policy", metadata: { name, owner: "bench" }, spec });

/** 10,000 Namespaces as the API server lists them, shaped as the cache keeps them. */
function namespaces(count: number): Map<string, unknown> {
  const cache = new Map<string, unknown>();
  for (let i = 0; i < count; i++) {
    const name = i === 0 ? "shop" : `team-${i}`;
    cache.set(
      name,
      namespaceForDecision({
        apiVersion: "v1",
        kind: "Namespace",
        metadata: {
          name,
          uid: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
          resourceVersion: String(1000 + i),
          creationTimestamp: "2026-01-01T00:00:00Z",
          labels: { "kubernetes.io/metadata.name": name, env: i % 2 === 0 ? "prod" : "dev", team: `team-${i % 50}`, "pod-security.kubernetes.io/enforce": "restricted" },
          annotations: { "scheduler.alpha.kubernetes.io/node-selector": "pool=general" },
          managedFields: [{ manager: "kubectl", operation: "Update" }],
        },
        spec: { finalizers: ["kubernetes"] },
        status: { phase: "Active" },
      }),
    );
  }
  return cache;
}

export function benchNamespaces(samples = 50_000): Record<string, number> {
  const body = Buffer.from(JSON.stringify(deploymentPodReview()), "utf8");
  const now = Date.now();
  const scoped = setOf([
    policy("pod-security", { builtin: "pod-security/restricted", enforcement: "deny" }),
    policy("prod-images", {
      domain: "workload-security",
      scope: { namespaceSelector: { matchLabels: { env: "prod" } } },
      match: { kinds: ["Pod"] },
      validations: [{ name: "pinned", expression: "object.spec.containers.all(c, c.image.contains('@sha256:') || !c.image.endsWith(':latest'))" }],
      enforcement: "deny",
    }),
  ]);
  const labelled = setOf([policy("pod-security", { builtin: "pod-security/baseline", podSecurity: { namespaceLabels: "enforce" }, enforcement: "deny", locked: true })]);

  gc();
  const before = process.memoryUsage().heapUsed;
  const cache = namespaces(10_000);
  gc();
  const cacheBytes = process.memoryUsage().heapUsed - before;

  const withNamespace = (set: EffectivePolicySet) => () => {
    const review = parseReviewBytes(body);
    const found = cache.get(review.request.namespace ?? "");
    sink += decideReview(set, review, { now, namespace: () => found }).response.length;
  };
  let sink = 0;
  for (const set of [scoped, labelled]) {
    const decision = decideReview(set, parseReviewBytes(body), { now, namespace: (name) => cache.get(name) }).decision;
    if (!decision.allowed) throw new Error(`the benchmark pod should be allowed: ${JSON.stringify(decision.violations)}`);
  }
  const response = { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: { uid: "b0e5c0de-5b6f-4c8e-9a58-0c6c7e3f9a11", allowed: true } };
  const floor = () => {
    const parsed = JSON.parse(body.toString("utf8")) as { request: { uid: string } };
    sink += Buffer.from(JSON.stringify({ ...response, response: { ...response.response, uid: parsed.request.uid } }), "utf8").length;
  };
  const e: number[] = [];
  const f: number[] = [];
  const b: number[] = [];
  const rounds = 5;
  for (let r = 0; r < rounds; r++) {
    e.push(...sample(withNamespace(scoped), samples / rounds, r === 0 ? 10_000 : 1_000));
    f.push(...sample(withNamespace(labelled), samples / rounds, r === 0 ? 10_000 : 1_000));
    b.push(...sample(floor, samples / rounds, r === 0 ? 10_000 : 1_000));
  }
  for (const list of [e, f, b]) list.sort((x, y) => x - y);
  if (sink === 0) throw new Error("unreachable");
  const result = {
    namespacedP50: percentile(e, 50),
    namespacedP99: percentile(e, 99),
    labelledP50: percentile(f, 50),
    labelledP99: percentile(f, 99),
    floorP50: percentile(b, 50),
    floorP99: percentile(b, 99),
    cacheBytes,
  };
  console.log(`\nAdmission decision with the namespace lookup (cache of 10,000 namespaces), ${body.length}-byte AdmissionReview, ${samples} samples`);
  console.log(`  (e) restricted + a namespace-label-scoped policy   p50 ${fmt(result.namespacedP50)} µs   p99 ${fmt(result.namespacedP99)} µs`);
  console.log(`  (f) baseline floor + namespace PSA labels (restricted asked)   p50 ${fmt(result.labelledP50)} µs   p99 ${fmt(result.labelledP99)} µs`);
  console.log(`  (b) JSON.parse + stringify                          p50 ${fmt(result.floorP50)} µs   p99 ${fmt(result.floorP99)} µs`);
  console.log(`  ratio (e)/(b)   p50 ${(result.namespacedP50 / result.floorP50).toFixed(2)}   p99 ${(result.namespacedP99 / result.floorP99).toFixed(2)}`);
  console.log(`  ratio (f)/(b)   p50 ${(result.labelledP50 / result.floorP50).toFixed(2)}   p99 ${(result.labelledP99 / result.floorP99).toFixed(2)}`);
  console.log(`  namespace cache, 10,000 namespaces: ${(cacheBytes / 1024 / 1024).toFixed(1)} MiB of heap (${Math.round(cacheBytes / 10_000)} bytes each)`);
  return result;
}
