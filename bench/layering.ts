/**
 * Policy as code at federation scale: compiling a layer of 500 policies, and computing
 * the effective policy sets of 10,000 clusters with different labels.
 */
import { effectivePolicySet, type ClusterIdentity } from "../src/layering/effective.js";
import { builtinPolicyDocument } from "../src/policy/library/index.js";
import { buildLayer, type Layer } from "../src/policy/layer.js";
import { parseDocuments, type SourceDocument } from "../src/source/parse.js";
import { fmt, median } from "./fixtures.js";

const REGIONS = ["eu-west", "eu-central", "us-east", "us-west", "ap-south", "ap-east", "sa-east", "af-south"];
const ENVS = ["prod", "staging", "dev"];
const PROVIDERS = ["aws", "gcp", "azure", "onprem"];

/** A layer of `count` policies, each with its own CEL (no two expressions alike), as YAML text. */
export function policyLayerYaml(count: number, salt = ""): string {
  const docs = ["apiVersion: polity.dev/v1\nkind: Layer\nmetadata: { name: global }\nspec: { tier: global, owners: [platform] }"];
  for (let i = 0; i < count; i++) {
    docs.push(`apiVersion: polity.dev/v1
kind: Policy
metadata: { name: policy-${i}${salt}, owner: platform }
spec:
  domain: workload-security
  scope:
    clusterSelector: { matchExpressions: [{ key: env, operator: In, values: [${ENVS[i % 3]}, ${ENVS[(i + 1) % 3]}] }] }
  match: { kinds: [Pod, apps/Deployment] }
  params:
    limit: { default: ${i + 10}, override: { allowedTiers: [region, cluster], min: 1, max: ${i + 100} } }
  validations:
    - name: labels
      expression: "has(object.metadata.labels) && 'team-${i}${salt}' in object.metadata.labels"
      message: "pods need the team-${i} label"
    - name: containers
      expression: "object.spec.containers.all(c, c.image.startsWith('registry-${i}.example.com/') && size(c.name) < params.limit + ${i})"
      messageExpression: "'container images must come from registry-${i}.example.com: ' + object.spec.containers.map(c, c.image).join(', ')"
  enforcement: ${i % 5 === 0 ? "warn" : "deny"}
  locked: ${i % 2 === 0}`);
  }
  return docs.join("\n---\n");
}

function builtinSource(): SourceDocument {
  const doc = builtinPolicyDocument("builtin:pod-security/restricted");
  if (typeof doc === "string") throw new Error(doc);
  const value = { ...doc, metadata: { ...doc.metadata, owner: "platform" }, spec: { ...doc.spec, locked: true } };
  return { file: "builtin", index: 0, value, locate: () => ({ file: "builtin", line: 0, column: 0 }) };
}

function regionLayer(region: string, policies: number): Layer {
  const docs = [`apiVersion: polity.dev/v1\nkind: Layer\nmetadata: { name: ${region} }\nspec: { tier: region, region: ${region}, owners: [${region}-ops] }`];
  for (let i = 0; i < policies; i++) {
    docs.push(`apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: policy-${i * 7}, owner: ${region}-ops }\nspec:\n  params: { limit: { value: ${i * 7 + 20} } }`);
    docs.push(`apiVersion: polity.dev/v1
kind: Policy
metadata: { name: ${region}-rule-${i}, owner: ${region}-ops }
spec:
  domain: data-residency
  scope: { clusterSelector: { matchLabels: { provider: ${PROVIDERS[i % 4]} } } }
  match: { kinds: [Pod] }
  validations: [{ expression: "has(object.metadata.labels) && object.metadata.labels['residency-${i}'] == '${region}'" }]`);
  }
  return buildLayer(parseDocuments(docs.join("\n---\n"), `${region}.yaml`), { tier: "region" });
}

function clusterLayer(cluster: ClusterIdentity): Layer {
  const text = `apiVersion: polity.dev/v1
kind: Layer
metadata: { name: ${cluster.name} }
spec: { tier: cluster, region: ${cluster.region}, cluster: ${cluster.name}, owners: [${cluster.name}-sre] }
---
apiVersion: polity.dev/v1
kind: Policy
metadata: { name: namespace-quota, owner: ${cluster.name}-sre }
spec:
  domain: quota
  match: { kinds: [ResourceQuota] }
  validations: [{ expression: "int(object.spec.hard['pods']) <= ${100 + (cluster.name.length % 7) * 10}" }]
---
apiVersion: polity.dev/v1
kind: Policy
metadata: { name: policy-3, owner: ${cluster.name}-sre }
spec:
  params: { limit: { value: 30 } }`;
  return buildLayer(parseDocuments(text, `${cluster.name}.yaml`), { tier: "cluster" });
}

export function federation(clusterCount: number, globalPolicies = 50, clusterLayerEvery = 5) {
  const global = buildLayer([builtinSource(), ...parseDocuments(policyLayerYaml(globalPolicies), "global.yaml").slice(1)], {
    tier: "global",
    owners: ["platform"],
  });
  const regions = REGIONS.map((r) => regionLayer(r, 6));
  const clusters: ClusterIdentity[] = [];
  for (let i = 0; i < clusterCount; i++) {
    clusters.push({
      name: `cluster-${i}`,
      region: REGIONS[i % REGIONS.length]!,
      labels: { env: ENVS[i % 3]!, provider: PROVIDERS[(i >> 2) % 4]!, tier: ["gold", "silver", "bronze"][(i >> 4) % 3]!, shard: String(i % 97) },
    });
  }
  const clusterLayers = new Map<string, Layer>();
  clusters.forEach((c, i) => {
    if (i % clusterLayerEvery === 0) clusterLayers.set(c.name, clusterLayer(c));
  });
  const layersOf = (c: ClusterIdentity): Layer[] => {
    const own = clusterLayers.get(c.name);
    const region = regions[REGIONS.indexOf(c.region)]!;
    return own === undefined ? [global, region] : [global, region, own];
  };
  return { global, regions, clusters, clusterLayers, layersOf };
}

export function benchLayering(): Record<string, number> {
  (globalThis as { gc?: () => void }).gc?.();
  const { clusters, clusterLayers, layersOf } = federation(10_000);
  const runs: number[] = [];
  let bytes = 0;
  let policies = 0;
  for (let run = 0; run < 3; run++) {
    const start = performance.now();
    for (const cluster of clusters) effectivePolicySet(layersOf(cluster), cluster);
    runs.push(performance.now() - start);
  }
  // Sizes, outside the timing: the canonical text is built only when asked for.
  for (const cluster of clusters.slice(0, 100)) {
    const set = effectivePolicySet(layersOf(cluster), cluster);
    policies += set.document.policies.length * (clusters.length / 100);
    bytes += set.canonical.length * (clusters.length / 100);
  }
  // Then compile (after, so that its 7,500 throwaway programs do not weigh on the pass above): YAML text → validated, compiled layer of 500 policies (1,500 distinct expressions).
  const compileRuns: number[] = [];
  for (let run = 0; run < 5; run++) {
    const text = policyLayerYaml(500, `-r${run}`);
    const start = performance.now();
    buildLayer(parseDocuments(text, "global.yaml"), { tier: "global" });
    compileRuns.push(performance.now() - start);
  }

  const result = {
    compile500Ms: median(compileRuns),
    effective10kColdMs: runs[0]!,
    effective10kWarmMs: median(runs.slice(1)),
  };
  console.log(`\nPolicy compilation and layering`);
  console.log(`  compile a layer of 500 policies (YAML → validated, 1,000 CEL rules + 500 messages)   median ${fmt(result.compile500Ms)} ms over 5 runs`);
  console.log(
    `  effective sets for 10,000 clusters (8 regions, ${clusterLayers.size} cluster layers, ${(policies / clusters.length).toFixed(0)} policies and ${(bytes / clusters.length / 1024).toFixed(0)} KiB canonical per cluster)`,
  );
  console.log(`      first pass ${fmt(result.effective10kColdMs)} ms, then median ${fmt(result.effective10kWarmMs)} ms   (target: < 2 s)`);
  return result;
}
