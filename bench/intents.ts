/**
 * Intents at federation scale: a global layer of 200 intents (network segmentation, access,
 * residency) translated and validated for 1,000 clusters whose facts differ (Kubernetes
 * 1.28 to 1.32, NetworkPolicy enforced or not, zones, capacity): effective set, manifests,
 * schema and fact checks, canonical bytes and hash, per cluster.
 */
import { renderCluster, type ClusterFacts } from "../src/intents/index.js";
import { effectivePolicySet, type ClusterIdentity } from "../src/layering/effective.js";
import { buildLayer } from "../src/policy/layer.js";
import { parseDocuments } from "../src/source/parse.js";
import { fmt, median } from "./fixtures.js";

const REGIONS = ["eu-west", "eu-central", "us-east", "us-west"];

export function intentLayerYaml(count: number): string {
  const docs = ["apiVersion: polity.dev/v1\nkind: Layer\nmetadata: { name: global }\nspec: { tier: global, owners: [platform] }"];
  for (let i = 0; i < count; i++) {
    const head = `apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: intent-${i}, owner: platform }\nspec:\n`;
    if (i % 3 === 0) {
      docs.push(`${head}  domain: network
  locked: true
  generate:
    network:
      namespaces: [team-${i}, team-${i}-batch]
      ingress: [{ name: web, namespace: team-${i}, podSelector: { app: web }, from: [{ namespace: gateway }], ports: [{ port: 8443 }] }]
      egress: [{ name: db, namespace: team-${i}, cidrs: [10.${i % 250}.0.0/16], ports: [{ port: 5432 }] }]`);
    } else if (i % 3 === 1) {
      docs.push(`${head}  domain: access-control
  generate:
    access:
      grants:
        - { name: read, groups: [team-${i}-readers], namespaces: [team-${i}], rules: [{ apiGroups: ["", apps], resources: [pods, deployments], verbs: [get, list, watch] }] }
        - { name: ops, groups: [team-${i}-ops], rules: [{ apiGroups: [""], resources: [nodes], verbs: [get, list] }] }`);
    } else {
      const region = REGIONS[i % REGIONS.length]!;
      docs.push(`${head}  domain: data-residency
  scope: { regions: [${region}] }
  generate:
    residency:
      selector: { residency: r${i} }
      zones: [${region}-1a, ${region}-1b]`);
    }
  }
  return docs.join("\n---\n");
}

function factsOf(i: number, region: string): ClusterFacts {
  return {
    kubernetesVersion: `1.${28 + (i % 5)}.${i % 7}`,
    networkPolicy: i % 10 !== 0,
    capacity: { cpu: String(64 + (i % 64)), memory: `${256 + (i % 256)}Gi` },
    zones: i % 4 === 0 ? [`${region}-1a`] : [`${region}-1a`, `${region}-1b`, `${region}-1c`],
  };
}

export function benchIntents(): void {
  const layer = buildLayer(parseDocuments(intentLayerYaml(200), "intents.yaml"), { tier: "global", name: "global" });
  const clusters = Array.from({ length: 1000 }, (_, i) => {
    const region = REGIONS[i % REGIONS.length]!;
    const identity: ClusterIdentity = { name: `cluster-${i}`, region, labels: { env: i % 2 === 0 ? "prod" : "dev", index: String(i) } };
    return { identity, facts: factsOf(i, region) };
  });
  const runs: number[] = [];
  let manifests = 0;
  let problems = 0;
  let bytes = 0;
  const hashes = new Set<string>();
  for (let run = 0; run < 4; run++) {
    manifests = 0;
    problems = 0;
    bytes = 0;
    hashes.clear();
    const start = performance.now();
    for (const { identity, facts } of clusters) {
      const rendering = renderCluster(identity.name, effectivePolicySet([layer], identity), facts);
      manifests += rendering.document.manifests.length;
      problems += rendering.problems.length;
      // The hash is made when first read: read it, as a bundle would. It reads every byte, from
      // the pieces they are kept in; one buffer of them is made only for who asks for it.
      bytes += rendering.byteLength;
      hashes.add(rendering.hash);
    }
    runs.push(performance.now() - start);
  }
  console.log("\nIntents");
  console.log(`  translate and validate 200 intents for 1,000 clusters with different facts (${manifests.toLocaleString("en")} manifests in ${fmt(bytes / 1e6)} MB of canonical JSON, ${hashes.size.toLocaleString("en")} hashes; ${problems.toLocaleString("en")} problems found)`);
  console.log(`      first pass ${fmt(runs[0]!)} ms, then median ${fmt(median(runs.slice(1)))} ms   (target: < 2 s)`);
}
