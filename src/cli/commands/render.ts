/**
 * `polity policy render`: what a cluster would receive: the objects its intents make, its
 * CEL policies as ValidatingAdmissionPolicies, the policies that cannot be one and why,
 * and every problem its facts raise (README, "Intents").
 */
import { stringify } from "yaml";
import { PolityError, type Problem } from "../../errors.js";
import { readDocuments } from "../../files/read.js";
import { clusterFacts, formatIntentProblem, renderCluster, type ClusterFacts } from "../../intents/index.js";
import { effectivePolicySet } from "../../layering/effective.js";
import { outputFormat, parseLabels, stringOption, type Command, type Parsed } from "../command.js";
import { EXIT, UsageError } from "../io.js";
import { LAYER_HELP, LAYER_OPTIONS, loadLayers } from "../layers.js";

/** The cluster's facts: a file, or flags over the stated defaults. */
function factsOf(parsed: Parsed): ClusterFacts {
  const file = stringOption(parsed, "facts");
  let value: unknown;
  if (file !== undefined) {
    const docs = readDocuments(file);
    if (docs.length !== 1) throw new UsageError(`--facts ${file}: expected one document, found ${docs.length}`);
    value = docs[0]!.value;
  } else {
    const network = stringOption(parsed, "network-policy") ?? "enforced";
    if (network !== "enforced" && network !== "ignored") throw new UsageError(`--network-policy must be enforced or ignored, got ${JSON.stringify(network)}`);
    const zones = stringOption(parsed, "zones");
    const capacity = stringOption(parsed, "capacity");
    value = {
      kubernetesVersion: stringOption(parsed, "kubernetes-version") ?? "1.31",
      networkPolicy: network === "enforced",
      ...(capacity === undefined ? {} : { capacity: parseLabels(capacity, "--capacity") }),
      ...(zones === undefined ? {} : { zones: zones.split(",").filter((z) => z !== "") }),
    };
  }
  const parsedFacts = clusterFacts.safeParse(value);
  if (!parsedFacts.success) {
    const problems: Problem[] = parsedFacts.error.issues.map((i) => ({ message: i.message, path: i.path.join("."), location: { file: file ?? "--facts", line: 0, column: 0 } }));
    throw new PolityError("invalid", problems);
  }
  return parsedFacts.data;
}

export const policyRenderCommand: Command = {
  name: "policy render",
  summary: "print the Kubernetes objects a cluster would receive: intents' manifests and ValidatingAdmissionPolicies",
  usage:
    "polity policy render [--layer tier=path …] [--cluster name --region r --labels k=v,…] [--facts file | --kubernetes-version v --network-policy enforced|ignored --zones a,b --capacity cpu=96,memory=384Gi] [-o yaml|json|canonical]",
  options: {
    ...LAYER_OPTIONS,
    facts: { type: "string" },
    "kubernetes-version": { type: "string" },
    "network-policy": { type: "string" },
    zones: { type: "string" },
    capacity: { type: "string" },
    output: { type: "string", short: "o" },
  },
  help: `Translates the cluster's effective policy set into the objects it would hold: the
NetworkPolicies, ResourceQuotas, LimitRanges, Roles and bindings its intents (policies with
spec.generate) make, and each CEL policy as a ValidatingAdmissionPolicy with its binding and
params (Kubernetes 1.30 and later). Lists the policies that cannot be expressed as one, and
why. Every object is checked against the Kubernetes schemas and the cluster's facts; a
problem names the cluster, the intent and the field.

${LAYER_HELP}

Cluster facts:
      --facts <file>                        YAML or JSON: kubernetesVersion, networkPolicy (true|false),
                                            capacity {cpu, memory, …}, zones [..]
      --kubernetes-version <v>              default 1.31
      --network-policy enforced|ignored     whether the network plugin enforces NetworkPolicy (default enforced)
      --zones <a,b,…>                       zones of the cluster's nodes (default: none known, so residency is refused)
      --capacity <cpu=96,memory=384Gi>      allocatable capacity (default: unknown, not checked)

Output:
  -o yaml        the objects, in apply order, as YAML documents; what is not expressible as comments (default)
  -o json        {"hash", "manifests", "notExpressible", "problems"}
  -o canonical   the canonical bytes (RFC 8785 JSON) whose SHA-256 is the hash

Examples:
  polity policy render --layer global=examples/layers/global.yaml \\
      --layer region=examples/layers/region-eu-west.yaml --layer cluster=examples/layers/cluster-eu-west-1.yaml \\
      --labels env=prod --zones eu-west-1a,eu-west-1b --capacity cpu=96,memory=384Gi

Exit status: 0 when the cluster can hold every object, 1 when its facts or the schemas
refuse some (listed on stderr), 2 when the layers or facts cannot be read.`,
  run(parsed, io) {
    const format = outputFormat(parsed, ["yaml", "json", "canonical"] as const, "yaml");
    const { layers, cluster } = loadLayers(parsed);
    const facts = factsOf(parsed);
    const rendering = renderCluster(cluster.name, effectivePolicySet(layers, cluster), facts);
    if (format === "canonical") {
      io.out(rendering.canonical);
    } else if (format === "json") {
      io.out(`${JSON.stringify({ hash: rendering.hash, manifests: rendering.document.manifests, notExpressible: rendering.notExpressible, problems: rendering.problems }, null, 2)}\n`);
    } else {
      const manifests = rendering.document.manifests;
      io.out(`# cluster ${cluster.name}: ${manifests.length} object${manifests.length === 1 ? "" : "s"}, ${rendering.hash}\n`);
      for (const n of rendering.notExpressible) io.out(`# not a ValidatingAdmissionPolicy: ${n.policy}: ${n.reason}\n`);
      io.out(manifests.map((m) => `---\n${stringify(m, { lineWidth: 0 })}`).join(""));
    }
    for (const problem of rendering.problems) io.err(`polity: ${formatIntentProblem(problem)}\n`);
    return rendering.problems.length === 0 ? EXIT.ok : EXIT.failed;
  },
};
