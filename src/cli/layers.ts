/**
 * `--policy`, `--layer tier=path`, `--cluster`, `--region`, `--labels`: the flags every
 * policy command shares, turned into layers and a cluster identity.
 */
import { PolityError, type Problem } from "../errors.js";
import type { ClusterIdentity } from "../layering/effective.js";
import { BUILTIN_PREFIX, builtinPolicyDocument } from "../policy/library/index.js";
import { buildLayer, type Layer } from "../policy/layer.js";
import type { Tier } from "../policy/schema.js";
import type { SourceDocument } from "../source/parse.js";
import { readSomeDocuments } from "../files/read.js";
import { parseLabels, stringOption, stringsOption, type Options, type Parsed } from "./command.js";
import { UsageError } from "./io.js";

export const LAYER_OPTIONS: Options = {
  policy: { type: "string", short: "p", multiple: true },
  layer: { type: "string", short: "l", multiple: true },
  cluster: { type: "string" },
  region: { type: "string" },
  labels: { type: "string" },
};

export const LAYER_HELP = `Policies and layers:
  -p, --policy <file|folder|builtin:name>   policies of the global layer (repeatable); e.g.
                                            builtin:pod-security/restricted, builtin:pod-security/baseline@v1.25
  -l, --layer <tier>=<file|folder>          a layer: global=…, region=…, cluster=… (repeatable, one per tier)
      --cluster <name>                      the cluster to compute for (default: the cluster layer's, or "local")
      --region <name>                       its region (default: the region layer's, or "local")
      --labels <k=v,…>                      its labels, which cluster selectors match`;

/** Documents for one `--policy` value: a file, a folder, or a built-in. */
export function policySources(reference: string): SourceDocument[] {
  if (reference.startsWith(BUILTIN_PREFIX)) {
    const doc = builtinPolicyDocument(reference);
    if (typeof doc === "string") throw new UsageError(`--policy ${reference}: ${doc}`);
    return [{ file: reference, index: 0, value: doc, locate: () => ({ file: reference, line: 0, column: 0 }) }];
  }
  return readSomeDocuments(reference);
}

export interface LayerInput {
  readonly layers: Layer[];
  readonly cluster: ClusterIdentity;
}

export function loadLayers(parsed: Parsed, options: { required: boolean } = { required: true }): LayerInput {
  const byTier = new Map<Tier, SourceDocument[]>();
  const add = (tier: Tier, docs: SourceDocument[]) => byTier.set(tier, [...(byTier.get(tier) ?? []), ...docs]);
  for (const reference of stringsOption(parsed, "policy")) add("global", policySources(reference));
  const seenTiers = new Set<string>();
  for (const spec of stringsOption(parsed, "layer")) {
    const eq = spec.indexOf("=");
    const tier = spec.slice(0, eq);
    if (eq <= 0 || !["global", "region", "cluster"].includes(tier)) {
      throw new UsageError(`--layer expects <tier>=<path> with tier global, region or cluster, got ${JSON.stringify(spec)}`);
    }
    if (seenTiers.has(tier)) throw new UsageError(`--layer ${tier}=… is given twice: a cluster has one layer per tier`);
    seenTiers.add(tier);
    add(tier as Tier, spec.slice(eq + 1).split(",").flatMap((path) => policySources(path)));
  }
  if (byTier.size === 0 && options.required) {
    throw new UsageError("no policies: give --policy <file|folder|builtin:…> or --layer <tier>=<path>");
  }
  const region = stringOption(parsed, "region");
  const clusterName = stringOption(parsed, "cluster");
  const labels = parseLabels(stringOption(parsed, "labels") ?? "", "--labels");
  const problems: Problem[] = [];
  const layers: Layer[] = [];
  for (const tier of ["global", "region", "cluster"] as const) {
    const docs = byTier.get(tier);
    if (docs === undefined) continue;
    try {
      layers.push(buildLayer(docs, { tier, region, cluster: clusterName, name: tier }));
    } catch (error) {
      if (!(error instanceof PolityError)) throw error;
      problems.push(...error.problems);
    }
  }
  if (problems.length > 0) throw new PolityError("invalid", problems);
  const regionLayer = layers.find((l) => l.tier === "region");
  const clusterLayer = layers.find((l) => l.tier === "cluster");
  const cluster: ClusterIdentity = {
    name: clusterName ?? clusterLayer?.cluster ?? "local",
    region: region ?? regionLayer?.region ?? clusterLayer?.region ?? "local",
    labels,
  };
  // A region or cluster layer given on the command line is for the cluster being computed.
  const fitted = layers.map((layer) =>
    layer.tier === "region" && layer.region === undefined
      ? { ...layer, region: cluster.region }
      : layer.tier === "cluster" && layer.cluster === undefined
        ? { ...layer, cluster: cluster.name }
        : layer,
  );
  for (const layer of fitted) {
    if (layer.tier === "region" && layer.region !== cluster.region) {
      throw new UsageError(`the region layer is for region ${JSON.stringify(layer.region)}, but the cluster is in ${JSON.stringify(cluster.region)} (--region)`);
    }
    if (layer.tier === "cluster" && layer.cluster !== cluster.name) {
      throw new UsageError(`the cluster layer is for cluster ${JSON.stringify(layer.cluster)}, but the cluster is ${JSON.stringify(cluster.name)} (--cluster)`);
    }
  }
  return { layers: fitted, cluster };
}
