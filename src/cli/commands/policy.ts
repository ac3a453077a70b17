/**
 * `polity policy effective|lint|test`: what a cluster's effective policy set is, whether
 * policy files are sound, and whether policies decide what their tests say.
 */
import { PolityError, formatProblem, type Problem } from "../../errors.js";
import { teamsOf, undeclaredOwners } from "../../governance/index.js";
import { effectivePolicySet, type ClusterIdentity, type EffectivePolicySet } from "../../layering/effective.js";
import type { Layer } from "../../policy/layer.js";
import { filesAssumedGlobal, layersFromFiles, type LayerFile, type LayerOfFiles } from "../../policy/layer-files.js";
import { displayPath, listDocumentFiles, readInput } from "../../files/read.js";
import { outputFormat, type Command } from "../command.js";
import { colors, EXIT, UsageError, type Io } from "../io.js";
import { LAYER_HELP, LAYER_OPTIONS, loadLayers } from "../layers.js";
import { runPolicyTests } from "../policy-test.js";

export const policyEffectiveCommand: Command = {
  name: "policy effective",
  summary: "print a cluster's effective policy set and its content hash",
  usage: "polity policy effective [--layer tier=path …] [--cluster name --region r --labels k=v,…] [-o text|json|canonical]",
  options: { ...LAYER_OPTIONS, output: { type: "string", short: "o" } },
  help: `Computes the policies that apply to one cluster from the global, region and cluster
layers: lower tiers refine what upper tiers define, never weakening a locked policy, tuning
params only within their bounds, and never setting a local-protected domain from above
unless its owner delegates. A refused combination is an error naming both policies, both
owners and the rule that forbids it.

The result is deterministic: the same layers and cluster always give the same canonical
bytes (RFC 8785 JSON) and the same hash.

${LAYER_HELP}

Output:
  -o text        a summary: each policy, who defined and refined it, its params (default)
  -o json        {"hash", "effectivePolicySet"}, indented
  -o canonical   exactly the canonical bytes; \`| sha256sum\` gives the hash

Examples:
  polity policy effective --layer global=examples/layers/global.yaml \\
      --layer region=examples/layers/region-eu-west.yaml --layer cluster=examples/layers/cluster-eu-west-1.yaml \\
      --labels env=prod,residency=eu
  polity policy effective -p builtin:pod-security/restricted -o canonical | sha256sum

Exit status: 0 on success, 2 when the layers cannot be read or combined.`,
  run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json", "canonical"] as const, "text");
    const { layers, cluster } = loadLayers(parsed);
    const set = effectivePolicySet(layers, cluster);
    if (format === "canonical") io.out(set.canonical);
    else if (format === "json") io.out(JSON.stringify({ hash: set.hash, effectivePolicySet: set.document }, null, 2) + "\n");
    else printEffective(set, cluster, io);
    return EXIT.ok;
  },
};

function printEffective(set: EffectivePolicySet, cluster: ClusterIdentity, io: Io): void {
  const c = colors(io);
  const doc = set.document;
  const labels = Object.entries(cluster.labels).map(([k, v]) => `${k}=${v}`).join(",");
  io.out(`cluster ${c.bold(cluster.name)} (region ${cluster.region}${labels === "" ? "" : `, labels ${labels}`})\n`);
  io.out(`hash    ${set.hash}\n\n`);
  for (const p of doc.policies) {
    const lock = p.locked ? c.yellow(` locked at ${p.lockedAt}`) : "";
    io.out(`${c.bold(p.name)}  ${p.enforcement}${lock}  domain ${p.domain}, owner ${p.owner} (${p.tier})\n`);
    if (p.validations.length > 0) io.out(`  matches ${p.match.kinds.join(", ")} on ${p.match.operations.join(", ")}; ${p.validations.length} rule${p.validations.length === 1 ? "" : "s"}\n`);
    if (p.generate !== undefined) io.out(`  generates ${Object.keys(p.generate).join(", ")} objects (polity policy render shows them)\n`);
    if (p.provenance.length > 1) {
      io.out(`  refined by ${p.provenance.slice(1).map((r) => `${r.layer} (${r.tier}, ${r.owner})`).join(", ")}\n`);
    }
    const params = Object.entries(p.params);
    if (params.length > 0) io.out(`  params ${params.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ")}\n`);
  }
  for (const e of doc.exceptions) {
    io.out(`exception ${c.bold(e.name)} relaxes ${e.policy}${e.rules === undefined ? "" : ` (${e.rules.join(", ")})`} until ${e.expiresAt}, approved by ${e.approvedBy}\n`);
  }
  io.out(`${doc.policies.length} polic${doc.policies.length === 1 ? "y" : "ies"}, ${doc.exceptions.length} exception${doc.exceptions.length === 1 ? "" : "s"}\n`);
}

export const policyLintCommand: Command = {
  name: "policy lint",
  summary: "check policy files: schema, CEL, ownership, layering",
  usage: "polity policy lint <file|folder>…",
  options: {},
  help: `Reads every file under the given paths and groups them into layers as 'polity apply'
does: when one Layer document is among them all, every file belongs to that layer; when
there are several, each file is its own layer and must hold its Layer document. Files
with no Layer document at all are checked as the global layer (with a note on standard
error: 'polity apply' refuses them). It reports every problem at once: YAML or JSON
syntax, schema (unknown fields, wrong types, missing fields, with file:line:column and the
field path), CEL syntax and type errors (naming the policy, the rule and the position),
owners, duplicate names, and teams (declared once in the federation; every owner a
declared team, checked when the global layer is among the files). Then it combines the layers as a hub would (global, each
region, each cluster in its region) and reports every refusal: a weakened lock, a param
out of bounds, a protected domain set from above.

Examples:
  polity policy lint examples/layers/
  polity policy lint my-policy.yaml

Exit status: 0 when there is nothing to report, 1 when there are problems, 2 for bad usage.`,
  run(parsed, io) {
    if (parsed.positionals.length === 0) throw new UsageError("give one or more files or folders to lint");
    const c = colors(io);
    const problems: Problem[] = [];
    // Every file of every path first: layers are grouped across them, as one apply would.
    const files: LayerFile[] = [];
    for (const path of parsed.positionals) {
      for (const file of listDocumentFiles(path)) {
        try {
          files.push({ name: displayPath(file), content: readInput(file) });
        } catch (error) {
          if (!(error instanceof PolityError)) throw error;
          problems.push(...error.problems);
        }
      }
    }
    let grouped: LayerOfFiles[] = [];
    let assumedGlobal = false;
    if (problems.length === 0) {
      const assumed = filesAssumedGlobal(files);
      assumedGlobal = assumed.length > 0;
      if (assumed.length > 0) {
        io.err(`note: ${assumed.map((f) => f.name).join(", ")} hold no Layer document: checked as the global layer; 'polity apply' refuses files without one\n`);
      }
      try {
        grouped = layersFromFiles(files, { assumeGlobal: true });
      } catch (error) {
        if (!(error instanceof PolityError)) throw error;
        problems.push(...error.problems);
      }
    }
    const layers = grouped.map((g) => g.layer);
    const documents = grouped.reduce((sum, g) => sum + g.documents, 0);
    if (problems.length === 0) problems.push(...combinationProblems(layers, { teamsKnown: !assumedGlobal }));
    for (const problem of problems) io.out(`${c.red("✗")} ${formatProblem(problem)}\n`);
    io.out(
      problems.length === 0
        ? `${documents} document${documents === 1 ? "" : "s"} in ${layers.length} layer${layers.length === 1 ? "" : "s"}: no problems\n`
        : `${problems.length} problem${problems.length === 1 ? "" : "s"}\n`,
    );
    return problems.length === 0 ? EXIT.ok : EXIT.failed;
  },
};

/** Combines the layers as a hub would, for a cluster under each region and cluster layer. */
function combinationProblems(layers: readonly Layer[], options: { teamsKnown: boolean }): Problem[] {
  const globals = layers.filter((l) => l.tier === "global");
  const regions = layers.filter((l) => l.tier === "region");
  const clusters = layers.filter((l) => l.tier === "cluster");
  const targets: { layers: Layer[]; cluster: { name: string; region: string; labels: Record<string, string> } }[] = [];
  for (const cluster of clusters) {
    const region = regions.find((r) => r.region === cluster.region);
    targets.push({ layers: [...globals, ...(region === undefined ? [] : [region]), cluster], cluster: { name: cluster.cluster!, region: cluster.region ?? "lint", labels: {} } });
  }
  for (const region of regions) {
    if (!clusters.some((c) => c.region === region.region)) {
      targets.push({ layers: [...globals, region], cluster: { name: `${region.region}-lint`, region: region.region!, labels: {} } });
    }
  }
  if (targets.length === 0) targets.push({ layers: globals, cluster: { name: "lint", region: "lint", labels: {} } });
  const seen = new Set<string>();
  const problems: Problem[] = [];
  const report = (problem: Problem): void => {
    const key = formatProblem(problem);
    if (!seen.has(key)) problems.push(problem);
    seen.add(key);
  };
  for (const problem of teamProblems(layers, options.teamsKnown && globals.length > 0)) report(problem);
  for (const target of targets) {
    try {
      effectivePolicySet(target.layers, target.cluster);
    } catch (error) {
      if (!(error instanceof PolityError)) throw error;
      for (const problem of error.problems) {
        // Without the layers above, what a refinement refines is not known here.
        if (globals.length === 0 && problem.message.endsWith("[rule: refinement-without-base]")) continue;
        report(problem);
      }
    }
  }
  return problems;
}

/**
 * Teams as the hub checks them on apply: a team name declared once in the federation, and
 * every owner a declared team seen from its layer (its own, its region's or the global layer).
 * Without the global layer among the files, owners may be declared there: they are not checked.
 */
function teamProblems(layers: readonly Layer[], withGlobal: boolean): Problem[] {
  const problems: Problem[] = [];
  const declaredBy = new Map<string, string>();
  for (const layer of layers) {
    for (const team of layer.teams) {
      const name = team.document.metadata.name;
      const other = declaredBy.get(name);
      if (other === undefined) declaredBy.set(name, layer.name);
      else if (other !== layer.name) {
        problems.push({
          message: `team ${JSON.stringify(name)} is declared by layer ${JSON.stringify(other)} already; layer ${JSON.stringify(layer.name)} may not declare it again: team names are unique in the federation`,
          path: "metadata.name",
          ...(team.origin === undefined ? {} : { location: team.origin.locate(["metadata", "name"]) }),
        });
      }
    }
  }
  if (!withGlobal) return problems;
  const globals = layers.filter((l) => l.tier === "global");
  for (const layer of layers) {
    const region = layer.tier === "cluster" ? layers.find((l) => l.tier === "region" && l.region === layer.region) : undefined;
    const chain = layer.tier === "global" ? globals : [...globals, ...(region === undefined ? [] : [region]), layer];
    problems.push(...undeclaredOwners(layer, teamsOf(chain).teams));
  }
  return problems;
}

export const policyTestCommand: Command = {
  name: "policy test",
  summary: "run policy unit tests (PolicyTest documents)",
  usage: "polity policy test <folder|file>… [--run <pattern>]",
  options: { run: { type: "string" }, verbose: { type: "boolean", short: "v" } },
  help: `Runs every PolicyTest document found under the given paths. A PolicyTest names the
policies or layers to load (paths relative to the test file, or builtin:…), optionally a
cluster and a time, and cases: a resource or AdmissionReview (inline, or a file) with the
expected decision: allowed, and the violations and warnings (as "policy" or
"policy/rule") that must be reported. Each case passes only if the decision matches.

  apiVersion: polity.dev/v1
  kind: PolicyTest
  metadata: { name: restricted-pods }
  spec:
    policies: [builtin:pod-security/restricted]
    cases:
      - name: a root container is refused
        file: pods/root.yaml
        expect: { allowed: false, violations: [pod-security-restricted/runAsNonRoot] }

Flags:
      --run <pattern>   only cases whose "test/case" name contains the pattern
  -v, --verbose         print passing cases too

Examples:
  polity policy test examples/tests/

Exit status: 0 when every case passes, 1 when any fails, 2 for bad usage or unreadable tests.`,
  run(parsed, io) {
    if (parsed.positionals.length === 0) throw new UsageError("give one or more folders or files of PolicyTest documents");
    const pattern = typeof parsed.values.run === "string" ? parsed.values.run : undefined;
    return runPolicyTests(parsed.positionals, { pattern, verbose: parsed.values.verbose === true }, io);
  },
};
