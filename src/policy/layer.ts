/**
 * A layer: the documents one tier writes (global, a region, or a cluster), validated,
 * with built-in policies expanded and every CEL expression compiled. Everything wrong with
 * a layer is reported at once, each problem with its file, line, column and field path.
 */
import { PolityError, type Problem, type SourceLocation } from "../errors.js";
import { resolveBuiltin } from "./library/index.js";
import type { SourceDocument } from "../source/parse.js";
import { complete, type Steps } from "../source/steps.js";
import { checkPolicyExpression, type ExpressionPurpose, type ParamsDeclaration } from "./programs.js";
import type { ExceptionDocument, ExceptionRule, LayerDocument, PolicyDocument, TeamDocument, Tier } from "./schema.js";
import { validateDocument } from "./validate.js";

export interface Origin {
  readonly file: string;
  locate(path: readonly (string | number)[]): SourceLocation;
}

export interface LayerPolicy {
  /** The policy, with any `spec.builtin` expanded into match, variables and validations. */
  readonly document: PolicyDocument;
  readonly origin?: Origin;
}

export interface LayerException {
  readonly document: ExceptionDocument;
  readonly origin?: Origin;
}

export interface LayerTeam {
  readonly document: TeamDocument;
  readonly origin?: Origin;
}

export interface Layer {
  readonly name: string;
  readonly tier: Tier;
  readonly region?: string;
  readonly cluster?: string;
  readonly owners: readonly string[];
  /** Sorted by name: the order documents were written in never matters. */
  readonly policies: readonly LayerPolicy[];
  readonly exceptions: readonly LayerException[];
  /** Teams this layer declares (sorted by name): who owns its policies and may approve exceptions to them. */
  readonly teams: readonly LayerTeam[];
  /** Risk rules under which requests for exceptions to its policies are approved without a person. */
  readonly exceptionRules: readonly ExceptionRule[];
}

/** A layer's id in the federation: `global`, `region/<region>` or `cluster/<cluster>`. */
export function layerId(layer: Pick<Layer, "tier" | "region" | "cluster">): string {
  if (layer.tier === "global") return "global";
  return layer.tier === "region" ? `region/${layer.region}` : `cluster/${layer.cluster}`;
}

/** What a layer is when its files carry no Layer document (a `--layer region=…` flag, a plain policy file). */
export interface LayerDefaults {
  readonly tier: Tier;
  /** The tier (and region, cluster) are a fallback: a Layer document in the files decides. */
  readonly assumed?: boolean;
  readonly name?: string;
  readonly region?: string;
  readonly cluster?: string;
  readonly owners?: readonly string[];
}

function problemAt(origin: Origin | undefined, path: (string | number)[], message: string, fieldPath?: string): Problem {
  return origin === undefined
    ? { message, path: fieldPath }
    : { message, path: fieldPath, location: origin.locate(path) };
}

function pathString(path: (string | number)[]): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}

/** Builds a layer from parsed documents; throws a PolityError listing every problem. */
export function buildLayer(sources: readonly SourceDocument[], defaults: LayerDefaults): Layer {
  return complete(buildLayerSteps(sources, defaults));
}

/** buildLayer, pausing after each document it validates and each policy it compiles. */
export function* buildLayerSteps(sources: readonly SourceDocument[], defaults: LayerDefaults): Steps<Layer> {
  const problems: Problem[] = [];
  let layerDoc: { document: LayerDocument; origin: Origin } | undefined;
  const policies: LayerPolicy[] = [];
  const exceptions: LayerException[] = [];
  const teams: LayerTeam[] = [];
  for (const source of sources) {
    yield;
    const validated = validateDocument(source);
    if (!validated.ok) {
      problems.push(...validated.problems);
      continue;
    }
    const origin: Origin = { file: source.file, locate: source.locate };
    const document = validated.document;
    switch (document.kind) {
      case "Layer":
        if (layerDoc !== undefined) {
          problems.push(
            problemAt(origin, [], `a layer has one Layer document; another is at ${layerDoc.origin.file}`, "kind"),
          );
        } else {
          layerDoc = { document, origin };
        }
        break;
      case "Policy":
        policies.push({ document, origin });
        break;
      case "Exception":
        if (document.spec.approvedBy === undefined) {
          problems.push(problemAt(origin, ["spec"], "an exception in a layer file names who approved it (spec.approvedBy); or request one from the hub: polity exception request", "spec.approvedBy"));
        }
        exceptions.push({ document, origin });
        break;
      case "Team":
        teams.push({ document, origin });
        break;
      case "PolicyTest":
        problems.push(problemAt(origin, ["kind"], "a PolicyTest belongs in a test folder (polity policy test), not in a layer", "kind"));
        break;
    }
  }
  const spec = layerDoc?.document.spec;
  const tier = spec?.tier ?? defaults.tier;
  if (layerDoc !== undefined && spec !== undefined && defaults.assumed !== true) {
    const mismatch = (field: "tier" | "region" | "cluster", expected: string | undefined) => {
      const actual = spec[field];
      if (expected !== undefined && actual !== undefined && actual !== expected) {
        problems.push(
          problemAt(layerDoc!.origin, ["spec", field], `this layer is for ${field} ${JSON.stringify(actual)}, but was given as ${field} ${JSON.stringify(expected)}`, `spec.${field}`),
        );
      }
    };
    mismatch("tier", defaults.tier);
    mismatch("region", defaults.region);
    mismatch("cluster", defaults.cluster);
  }
  const owners = spec?.owners ?? defaults.owners ?? [];
  const layer = {
    name: layerDoc?.document.metadata.name ?? defaults.name ?? tier,
    tier,
    region: spec?.region ?? (tier === "global" ? undefined : defaults.region),
    cluster: spec?.cluster ?? (tier === "cluster" ? defaults.cluster : undefined),
    owners,
  };

  const expanded: LayerPolicy[] = [];
  const seen = new Map<string, LayerPolicy>();
  for (const policy of policies) {
    yield;
    const name = policy.document.metadata.name;
    const previous = seen.get(name);
    if (previous !== undefined) {
      problems.push(
        problemAt(policy.origin, ["metadata", "name"], `policy ${JSON.stringify(name)} is defined twice in layer ${JSON.stringify(layer.name)} (also in ${previous.origin?.file ?? "this layer"})`, "metadata.name"),
      );
      continue;
    }
    seen.set(name, policy);
    const owner = policy.document.metadata.owner;
    if (owner !== undefined && owners.length > 0 && !owners.includes(owner)) {
      problems.push(
        problemAt(policy.origin, ["metadata", "owner"], `${JSON.stringify(owner)} is not an owner of layer ${JSON.stringify(layer.name)} (owners: ${owners.join(", ")})`, "metadata.owner"),
      );
    }
    const withBuiltin = expandBuiltin(policy, problems);
    const document: PolicyDocument = {
      ...withBuiltin.document,
      metadata: { ...withBuiltin.document.metadata, owner: owner ?? owners[0] ?? "unowned" },
    };
    problems.push(...compileExpressions({ document, origin: policy.origin }));
    expanded.push({ document, origin: policy.origin });
  }

  const teamNames = new Set<string>();
  for (const team of teams) {
    const name = team.document.metadata.name;
    if (teamNames.has(name)) problems.push(problemAt(team.origin, ["metadata", "name"], `team ${JSON.stringify(name)} is declared twice in this layer`, "metadata.name"));
    teamNames.add(name);
  }

  const exceptionNames = new Set<string>();
  for (const exception of exceptions) {
    const name = exception.document.metadata.name;
    if (exceptionNames.has(name)) {
      problems.push(problemAt(exception.origin, ["metadata", "name"], `exception ${JSON.stringify(name)} is defined twice in this layer`, "metadata.name"));
    }
    exceptionNames.add(name);
  }

  if (problems.length > 0) throw new PolityError("invalid", problems);
  const byName = <T extends { document: { metadata: { name: string } } }>(a: T, b: T) =>
    a.document.metadata.name < b.document.metadata.name ? -1 : a.document.metadata.name > b.document.metadata.name ? 1 : 0;
  return {
    ...layer,
    policies: expanded.sort(byName),
    exceptions: [...exceptions].sort(byName),
    teams: [...teams].sort(byName),
    exceptionRules: spec?.exceptionRules ?? [],
  };
}

function expandBuiltin(policy: LayerPolicy, problems: Problem[]): LayerPolicy {
  const spec = policy.document.spec;
  if (spec.builtin === undefined) {
    // A definition (domain and match of its own) cannot read labels for a built-in it does not include; a refinement that tries is refused when layers combine.
    if (spec.podSecurity !== undefined && spec.domain !== undefined && spec.match !== undefined) problems.push(problemAt(policy.origin, ["spec", "podSecurity"], "spec.podSecurity needs spec.builtin: pod-security/baseline or pod-security/restricted (the floor)", "spec.podSecurity"));
    return policy;
  }
  const builtin = resolveBuiltin(spec.builtin, spec.podSecurity?.namespaceLabels);
  if (typeof builtin === "string") {
    problems.push(problemAt(policy.origin, ["spec", "builtin"], builtin, "spec.builtin"));
    return policy;
  }
  return {
    ...policy,
    document: {
      ...policy.document,
      spec: {
        ...spec,
        domain: spec.domain ?? builtin.domain,
        match: spec.match ?? builtin.match,
        matchConditions: [...builtin.matchConditions, ...(spec.matchConditions ?? [])],
        variables: [...builtin.variables, ...(spec.variables ?? [])],
        validations: [...builtin.validations, ...(spec.validations ?? [])],
      },
    },
  };
}

/** Compiles every expression of a policy, naming the policy, the rule and the position of each error. */
function compileExpressions(policy: LayerPolicy): Problem[] {
  const problems: Problem[] = [];
  const spec = policy.document.spec;
  const name = policy.document.metadata.name;
  const fromLibrary = spec.builtin === undefined ? undefined : resolveBuiltin(spec.builtin, spec.podSecurity?.namespaceLabels);
  const libraryCount = (field: string) =>
    typeof fromLibrary !== "object" ? 0 : field === "variables"
        ? fromLibrary.variables.length
        : field === "matchConditions"
          ? fromLibrary.matchConditions.length
          : fromLibrary.validations.length;
  const variableNames: string[] = [];
  // A complete definition without params has none; a refinement's are its base's, elsewhere.
  const complete = spec.domain !== undefined && spec.match !== undefined && (spec.validations?.length ?? 0) > 0;
  const params: ParamsDeclaration = spec.params !== undefined ? { declared: spec.params } : complete ? "none" : "unknown";
  const check = (path: (string | number)[], source: string, purpose: ExpressionPurpose, what: string) => {
    const problem = checkPolicyExpression(source, variableNames, purpose, params);
    if (problem !== undefined) {
      // An error in an expression that came from the library points at spec.builtin.
      const fromBuiltin = typeof path[2] === "number" && path[2] < libraryCount(String(path[1]));
      const location = fromBuiltin ? ["spec", "builtin"] : path;
      problems.push(problemAt(policy.origin, location, `policy ${JSON.stringify(name)}, ${what}: ${problem}`, pathString(path)));
    }
  };
  (spec.variables ?? []).forEach((variable, i) => {
    if (variableNames.includes(variable.name)) {
      problems.push(problemAt(policy.origin, ["spec", "variables", i, "name"], `variable ${JSON.stringify(variable.name)} is defined twice`, `spec.variables[${i}].name`));
    }
    check(["spec", "variables", i, "expression"], variable.expression, "variable", `variable ${JSON.stringify(variable.name)}`);
    variableNames.push(variable.name);
  });
  const conditionNames = new Set<string>();
  (spec.matchConditions ?? []).forEach((condition, i) => {
    if (conditionNames.has(condition.name)) {
      problems.push(problemAt(policy.origin, ["spec", "matchConditions", i, "name"], `match condition ${JSON.stringify(condition.name)} is defined twice`, `spec.matchConditions[${i}].name`));
    }
    conditionNames.add(condition.name);
    check(["spec", "matchConditions", i, "expression"], condition.expression, "validation", `match condition ${JSON.stringify(condition.name)}`);
  });
  const ruleNames = new Set<string>();
  (spec.validations ?? []).forEach((validation, i) => {
    const rule = validation.name ?? `rule-${i + 1}`;
    if (ruleNames.has(rule)) {
      problems.push(problemAt(policy.origin, ["spec", "validations", i, "name"], `rule name ${JSON.stringify(rule)} is used twice`, `spec.validations[${i}].name`));
    }
    ruleNames.add(rule);
    check(["spec", "validations", i, "expression"], validation.expression, "validation", `rule ${JSON.stringify(rule)}`);
    if (validation.messageExpression !== undefined) {
      check(["spec", "validations", i, "messageExpression"], validation.messageExpression, "message", `rule ${JSON.stringify(rule)}`);
    }
  });
  return problems;
}
