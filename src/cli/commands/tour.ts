/**
 * `polity tour`: a guided walk through the shipped examples (examples/), with no hub: the
 * layers of a small federation, what each cluster's effective policy set is, the decisions
 * on a few workloads, a refused merge and an exception that expires.
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { evaluate } from "../../decision/evaluate.js";
import { decidedResource, requestForResource } from "../../decision/request.js";
import { PolityError, formatProblem } from "../../errors.js";
import { effectivePolicySet, type ClusterIdentity } from "../../layering/effective.js";
import { buildLayer, type Layer } from "../../policy/layer.js";
import { parseDocuments } from "../../source/parse.js";
import { displayPath, readDocuments } from "../../files/read.js";
import type { Command } from "../command.js";
import { colors, EXIT } from "../io.js";

const EXAMPLES = fileURLToPath(new URL("../../../examples/", import.meta.url));

function layer(file: string, tier: "global" | "region" | "cluster"): Layer {
  return buildLayer(readDocuments(join(EXAMPLES, "layers", file)), { tier });
}

export const tourCommand: Command = {
  name: "tour",
  summary: "a guided walk through the shipped examples, no hub needed",
  usage: "polity tour",
  options: {},
  help: `Loads the example federation in examples/ (a global layer, the eu-west region layer
and the eu-west-1 cluster layer), and shows, step by step:
  1. what each cluster's effective policy set is, and why (which tier defined and tuned what);
  2. the decisions on the example workloads in two clusters with different layers;
  3. a region trying to weaken a locked policy, and the error that refuses it;
  4. an exception that relaxes a rule until it expires.
Every step prints the polity command that reproduces it.

Example:
  polity tour`,
  run(_parsed, io) {
    const c = colors(io);
    const say = (text = "") => io.out(`${text}\n`);
    const step = (n: number, title: string) => say(`\n${c.bold(`${n}. ${title}`)}`);
    const cmd = (text: string) => say(c.dim(`   $ ${text}`));
    const ex = displayPath(EXAMPLES).replace(/\/$/, "");

    say(c.bold("Polity: one policy for many clusters, layered global → region → cluster, decided locally."));
    say(`The examples in ${ex}/ describe a small federation; this walk-through decides with the`);
    say("engine the agents use, without a hub (polity dev runs the whole federation).");

    const global = layer("global.yaml", "global");
    const euWest = layer("region-eu-west.yaml", "region");
    const euWest1 = layer("cluster-eu-west-1.yaml", "cluster");
    const clusters: { identity: ClusterIdentity; layers: Layer[]; flags: string }[] = [
      {
        identity: { name: "eu-west-1", region: "eu-west", labels: { env: "prod", residency: "eu" } },
        layers: [global, euWest, euWest1],
        flags: `--layer global=${ex}/layers/global.yaml --layer region=${ex}/layers/region-eu-west.yaml --layer cluster=${ex}/layers/cluster-eu-west-1.yaml --labels env=prod,residency=eu`,
      },
      {
        identity: { name: "us-east-1", region: "us-east", labels: { env: "staging" } },
        layers: [global],
        flags: `--layer global=${ex}/layers/global.yaml --cluster us-east-1 --region us-east --labels env=staging`,
      },
    ];

    step(1, "Each cluster's effective policy set");
    for (const cluster of clusters) {
      const set = effectivePolicySet(cluster.layers, cluster.identity);
      say(`   ${c.bold(cluster.identity.name)} (${cluster.identity.region}): ${set.document.policies.length} policies, ${set.document.exceptions.length} exception(s), ${set.hash.slice(0, 19)}…`);
      for (const p of set.document.policies) {
        const tuned = p.provenance.length > 1 ? `, tuned by ${p.provenance.slice(1).map((x) => x.layer).join(" and ")}` : "";
        const params = Object.keys(p.params).length > 0 ? ` ${c.dim(JSON.stringify(p.params))}` : "";
        say(`     ${p.locked ? "🔒" : "  "} ${p.name} (${p.enforcement}, from ${p.tier}${tuned})${params}`);
      }
      cmd(`polity policy effective ${cluster.flags}`);
    }

    step(2, "Decisions on the example workloads");
    const resources = readDocuments(join(EXAMPLES, "resources"));
    const now = Date.parse("2026-12-01T00:00:00Z");
    for (const cluster of clusters) {
      const set = effectivePolicySet(cluster.layers, cluster.identity);
      say(`   in ${c.bold(cluster.identity.name)}:`);
      for (const doc of resources) {
        const request = requestForResource(decidedResource(doc.value));
        const decision = evaluate(set, request, { now });
        const verdict = decision.allowed ? c.green("allowed") : c.red("denied ");
        const first = decision.violations.find((v) => v.enforcement === "deny") ?? decision.violations[0];
        const more = decision.violations.length > 1 ? c.dim(` (+${decision.violations.length - 1} more)`) : "";
        const why = first === undefined ? (decision.exemptions.length > 0 ? c.dim(` exempted by ${decision.exemptions[0]!.exception}`) : "") : ` ${first.policy}/${first.rule}: ${first.message}${more}`;
        say(`     ${verdict} ${request.kind.kind} ${request.namespace}/${request.name}${why}`);
      }
      cmd(`polity eval ${cluster.flags} ${ex}/resources/`);
    }

    step(3, "A region tries to weaken a locked baseline");
    const weakening = `apiVersion: polity.dev/v1
kind: Layer
metadata: { name: us-east }
spec: { tier: region, region: us-east, owners: [us-platform] }
---
apiVersion: polity.dev/v1
kind: Policy
metadata: { name: pod-security, owner: us-platform }
spec: { enforcement: warn }
`;
    say(c.dim(weakening.replace(/^/gm, "     ")));
    try {
      effectivePolicySet([global, buildLayer(parseDocuments(weakening, "us-east.yaml"), { tier: "region" })], clusters[1]!.identity);
      say("   (unexpectedly accepted)");
    } catch (error) {
      if (!(error instanceof PolityError)) throw error;
      for (const problem of error.problems) say(`   ${c.red("refused:")} ${formatProblem(problem)}`);
    }

    step(4, "An exception expires by itself");
    const set = effectivePolicySet(clusters[0]!.layers, clusters[0]!.identity);
    const legacy = resources.find((d) => (d.value as { metadata?: { name?: string } }).metadata?.name === "legacy-billing");
    if (legacy !== undefined) {
      for (const at of ["2026-12-01T00:00:00Z", "2027-04-01T00:00:00Z"]) {
        const decision = evaluate(set, requestForResource(decidedResource(legacy.value)), { now: Date.parse(at) });
        say(`   at ${at}: legacy-billing is ${decision.allowed ? c.green("allowed") : c.red("denied")}${decision.exemptions.length > 0 ? " (exception legacy-billing-root applies)" : " (the exception has expired)"}`);
      }
      cmd(`polity policy test ${ex}/tests/`);
    }

    say(`\nNext: read ${ex}/layers/*.yaml, change a policy, and run the commands above again.`);
    say("Every command explains itself: polity <command> --help.");
    return EXIT.ok;
  },
};

