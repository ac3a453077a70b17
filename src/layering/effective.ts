/**
 * effectivePolicySet: the policies that apply to one cluster, from the global layer, the
 * cluster's region layer and the cluster's own layer (DESIGN.md section 3).
 *
 * One pure, deterministic function: the same layers and cluster give the same canonical
 * bytes and hash. Layers combine like constraints: a policy is defined once, by the
 * highest tier that writes it, and each lower tier's document of the same name refines it:
 * - it may add validations and variables, and tighten;
 * - it may set params only where an upper tier declared them overridable, inside the bounds;
 * - a locked policy is never weakened (enforcement, failure policy, scope, match, lock);
 * - local-protected domains (quota, scheduling, node-pools, network-overlays, caching)
 *   belong to regions and clusters: the lowest tier that defines such a policy owns it,
 *   and a tier above may set it only where the owner delegates to it.
 * Whatever may not be combined is a MergeError naming both policies, both owners and the
 * rule that forbids it. Nothing is dropped silently.
 */
import { canonicalJson, contentHash } from "../canonical/index.js";
import { PolityError, type Problem } from "../errors.js";
import type { Layer, LayerException, LayerPolicy, Origin } from "../policy/layer.js";
import {
  LOCAL_PROTECTED_DOMAINS,
  type Deprecation,
  type Enforcement,
  type LabelSelector,
  type Match,
  type Operation,
  type Param,
  type Scope,
  type Tier,
} from "../policy/schema.js";
import type { GenerateSpec } from "../policy/generate.js";
import { matchesSelector, type Labels } from "./selector.js";
import type { ResourceRule } from "../policy/schema.js";

export interface ClusterIdentity {
  readonly name: string;
  readonly region: string;
  readonly labels: Labels;
}

export interface Provenance {
  readonly tier: Tier;
  readonly layer: string;
  readonly owner: string;
}

export interface EffectiveValidation {
  readonly name: string;
  readonly expression: string;
  readonly message?: string;
  readonly messageExpression?: string;
  /** The tier whose document added this rule. */
  readonly tier: Tier;
}

/** A resource rule with its lists sorted and its scope explicit. */
export interface EffectiveResourceRule {
  readonly apiGroups: readonly string[];
  readonly apiVersions: readonly string[];
  readonly resources: readonly string[];
  readonly operations: readonly string[];
  readonly scope: "Namespaced" | "Cluster" | "*";
}

export interface EffectiveMatch {
  readonly kinds: readonly string[];
  readonly operations: readonly Operation[];
  readonly subresources: readonly string[];
  /** Present only when the policy has resource rules (so sets without them keep their bytes). */
  readonly resourceRules?: readonly EffectiveResourceRule[];
  readonly excludeResourceRules?: readonly EffectiveResourceRule[];
}

export interface EffectivePolicy {
  readonly name: string;
  readonly owner: string;
  readonly domain: string;
  /** The tier that defines the policy (its owner's tier). */
  readonly tier: Tier;
  readonly match: EffectiveMatch;
  readonly namespaceSelector?: LabelSelector;
  /** CEL conditions that must all hold for the policy to apply. */
  readonly matchConditions: readonly { readonly name: string; readonly expression: string }[];
  readonly params: Readonly<Record<string, unknown>>;
  readonly variables: readonly { readonly name: string; readonly expression: string }[];
  readonly validations: readonly EffectiveValidation[];
  readonly enforcement: Enforcement;
  readonly failurePolicy: "Fail" | "Ignore";
  readonly locked: boolean;
  /** The tier that locked it, when locked. */
  readonly lockedAt?: Tier;
  /** Every document that shaped it, defining one first. */
  readonly provenance: readonly Provenance[];
  /** On its way out, as its defining document says: decisions warn, and past `after` apply refuses to keep it. */
  readonly deprecation?: Deprecation;
  /** An intent's objects, as its defining document writes them (params resolved by src/intents). */
  readonly generate?: GenerateSpec;
}

export interface EffectiveException {
  readonly name: string;
  readonly policy: string;
  /** Rules it relaxes; absent = every rule of the policy. */
  readonly rules?: readonly string[];
  readonly namespaces?: readonly string[];
  readonly names?: readonly string[];
  readonly objectSelector?: LabelSelector;
  readonly justification: string;
  /** Who approved it: for a request, the approver's authenticated subject (or `rule:<name>`); in a layer file, as written there. */
  readonly approvedBy: string;
  /** The exception request it was granted by (absent: written in a layer file). */
  readonly request?: string;
  /** RFC 3339; the exception applies strictly before this time. */
  readonly expiresAt: string;
  readonly tier: Tier;
  readonly layer: string;
}

/**
 * What applies to a cluster, and nothing that names it: clusters whose layers give the same
 * policies and exceptions have the same set, byte for byte, so that one signed target
 * serves them all. What binds a bundle to its cluster is the bundle's signed metadata
 * (src/bundle/index.ts), which the agent checks before it reads the set.
 */
export interface EffectivePolicySetDocument {
  readonly apiVersion: "polity.dev/v1";
  readonly kind: "EffectivePolicySet";
  /** Sorted by name. */
  readonly policies: readonly EffectivePolicy[];
  /** Sorted by policy, then name. */
  readonly exceptions: readonly EffectiveException[];
}

export interface EffectivePolicySet {
  readonly document: EffectivePolicySetDocument;
  /** `sha256:<hex>` of the canonical bytes. */
  readonly hash: string;
  /** The canonical JSON (RFC 8785) of the document. */
  readonly canonical: string;
  /** The same, as UTF-8 bytes (assembled on first use). */
  readonly bytes: Buffer;
  /** How many bytes: known without assembling them. */
  readonly byteLength: number;
}

const TIER_ORDER: Record<Tier, number> = { global: 0, region: 1, cluster: 2 };
const STRENGTH: Record<Enforcement, number> = { audit: 0, warn: 1, deny: 2 };
const DEFAULT_OPERATIONS: readonly Operation[] = ["CREATE", "UPDATE"];
const PROTECTED = new Set<string>(LOCAL_PROTECTED_DOMAINS);

interface Definition {
  readonly tier: Tier;
  readonly layer: Layer;
  readonly policy: LayerPolicy;
}

class MergeProblems {
  readonly list: Problem[] = [];

  add(origin: Origin | undefined, field: (string | number)[], message: string, rule: string): void {
    const path = field.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
    this.list.push({
      message: `${message} [rule: ${rule}]`,
      path: path === "" ? undefined : path,
      location: origin?.locate(field),
    });
  }
}

function describe(d: Definition): string {
  return `policy ${JSON.stringify(d.policy.document.metadata.name)} of layer ${JSON.stringify(d.layer.name)} (tier ${d.tier}, owner ${JSON.stringify(d.policy.document.metadata.owner)})`;
}

/** The layers that concern a cluster, one per tier, in order; more than one per tier is an error. */
function stackFor(layers: readonly Layer[], cluster: ClusterIdentity): Layer[] {
  const pick = (tier: Tier, applies: (layer: Layer) => boolean): Layer | undefined => {
    const found = layers.filter((l) => l.tier === tier && applies(l));
    if (found.length > 1) {
      throw PolityError.of(
        "merge-refused",
        `cluster ${JSON.stringify(cluster.name)} has ${found.length} ${tier} layers (${found.map((l) => JSON.stringify(l.name)).join(", ")}); a tier has one layer per cluster [rule: one-layer-per-tier]`,
      );
    }
    return found[0];
  };
  for (const layer of layers) {
    if ((layer.tier === "region" && layer.region === undefined) || (layer.tier === "cluster" && layer.cluster === undefined)) {
      throw PolityError.of(
        "merge-refused",
        `layer ${JSON.stringify(layer.name)} is a ${layer.tier} layer but names no ${layer.tier}: say which in its Layer document (spec.${layer.tier}) [rule: layer-target]`,
      );
    }
  }
  const own = pick("cluster", (l) => l.cluster === cluster.name);
  if (own?.region !== undefined && own.region !== cluster.region) {
    throw PolityError.of(
      "merge-refused",
      `layer ${JSON.stringify(own.name)} is for cluster ${JSON.stringify(cluster.name)} in region ${JSON.stringify(own.region)}, but the cluster is in region ${JSON.stringify(cluster.region)} [rule: layer-target]`,
    );
  }
  return [pick("global", () => true), pick("region", (l) => l.region === cluster.region), own].filter((l): l is Layer => l !== undefined);
}

function appliesToCluster(scope: Scope | undefined, cluster: ClusterIdentity): boolean {
  if (scope === undefined) return true;
  if (scope.regions !== undefined && !scope.regions.includes(cluster.region)) return false;
  return matchesSelector(scope.clusterSelector, cluster.labels);
}

/** A defining document: a domain, and a match with validations, or an intent's generate section (or both). */
function isComplete(policy: LayerPolicy): boolean {
  const spec = policy.document.spec;
  return spec.domain !== undefined && ((spec.match !== undefined && (spec.validations?.length ?? 0) > 0) || spec.generate !== undefined);
}

/** An intent that judges no request matches nothing. */
const NO_MATCH: EffectiveMatch = { kinds: [], operations: [], subresources: [] };

/** Mutable state of one policy while its definitions are applied. */
interface Merged {
  name: string;
  owner: string;
  domain: string;
  tier: Tier;
  match: EffectiveMatch;
  scope: Scope | undefined;
  matchConditions: { name: string; expression: string }[];
  params: Map<string, { value: unknown; override: Param["override"] }>;
  variables: { name: string; expression: string }[];
  validations: EffectiveValidation[];
  enforcement: Enforcement;
  failurePolicy: "Fail" | "Ignore";
  locked: boolean;
  lockedAt: Tier | undefined;
  provenance: Provenance[];
  delegate: readonly Tier[];
  deprecation: Deprecation | undefined;
  generate: GenerateSpec | undefined;
  base: Definition;
}

function normalizeMatch(match: Match): Merged["match"] {
  const rules = (list: readonly ResourceRule[] | undefined): EffectiveResourceRule[] | undefined => {
    if (list === undefined) return undefined;
    const normalized = list.map((r) => ({
      apiGroups: [...new Set(r.apiGroups)].sort(),
      apiVersions: [...new Set(r.apiVersions)].sort(),
      resources: [...new Set(r.resources)].sort(),
      operations: [...new Set(r.operations)].sort(),
      scope: r.scope ?? "*",
    }));
    const unique = new Map(normalized.map((r) => [JSON.stringify(r), r]));
    return [...unique.keys()].sort().map((k) => unique.get(k)!);
  };
  const resourceRules = rules(match.resourceRules);
  const excludeResourceRules = rules(match.excludeResourceRules);
  return {
    kinds: [...new Set(match.kinds)].sort(),
    operations: [...new Set(match.operations ?? DEFAULT_OPERATIONS)].sort() as Operation[],
    subresources: [...new Set(match.subresources ?? [])].sort(),
    ...(resourceRules === undefined ? {} : { resourceRules }),
    ...(excludeResourceRules === undefined ? {} : { excludeResourceRules }),
  };
}

/** A scope with its lists in a canonical order, so that restating it in another order is not a change. */
function normalizeScope(scope: Scope | undefined): unknown {
  if (scope === undefined) return null;
  const selector = (s: LabelSelector | undefined) =>
    s === undefined
      ? null
      : {
          matchLabels: s.matchLabels ?? {},
          matchExpressions: (s.matchExpressions ?? [])
            .map((r) => ({ key: r.key, operator: r.operator, values: [...new Set(r.values ?? [])].sort() }))
            .sort((a, b) => (canonicalJson(a) < canonicalJson(b) ? -1 : 1)),
        };
  return {
    regions: scope.regions === undefined ? null : [...new Set(scope.regions)].sort(),
    clusterSelector: selector(scope.clusterSelector),
    namespaceSelector: selector(scope.namespaceSelector),
  };
}

function sameJson(a: unknown, b: unknown): boolean {
  return canonicalJson(a ?? null) === canonicalJson(b ?? null);
}

function typeOf(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "list" : typeof v;
}

function withinBounds(value: unknown, override: NonNullable<Param["override"]>): string | undefined {
  if (override.allowedValues !== undefined && !override.allowedValues.some((allowed) => sameJson(allowed, value))) {
    return `${JSON.stringify(value)} is not one of the allowed values ${JSON.stringify(override.allowedValues)}`;
  }
  if (override.min !== undefined || override.max !== undefined) {
    if (typeof value !== "number") return `${JSON.stringify(value)} is not a number, but the param has numeric bounds`;
    if (override.min !== undefined && value < override.min) return `${value} is below the minimum ${override.min}`;
    if (override.max !== undefined && value > override.max) return `${value} is above the maximum ${override.max}`;
  }
  return undefined;
}

function startPolicy(base: Definition, problems: MergeProblems): Merged {
  const doc = base.policy.document;
  const spec = doc.spec;
  const params = new Map<string, { value: unknown; override: Param["override"] }>();
  for (const [key, param] of Object.entries(spec.params ?? {})) {
    if (param.value !== undefined) {
      problems.add(base.policy.origin, ["spec", "params", key, "value"], `${describe(base)} defines param ${JSON.stringify(key)}: a defining policy gives it a default, not a value`, "param-default");
    }
    if (param.override !== undefined && param.default !== undefined) {
      const outside = withinBounds(param.default, param.override);
      if (outside !== undefined) {
        problems.add(base.policy.origin, ["spec", "params", key, "default"], `${describe(base)}: the default of param ${JSON.stringify(key)} is outside its own bounds: ${outside}`, "param-out-of-bounds");
      }
    }
    params.set(key, { value: param.default ?? null, override: param.override });
  }
  const enforcement = spec.enforcement ?? "deny";
  const locked = spec.locked ?? false;
  return {
    name: doc.metadata.name,
    owner: doc.metadata.owner ?? "unowned",
    domain: spec.domain!,
    tier: base.tier,
    match: spec.match === undefined ? NO_MATCH : normalizeMatch(spec.match),
    scope: spec.scope,
    matchConditions: [...(spec.matchConditions ?? [])],
    params,
    variables: [...(spec.variables ?? [])],
    validations: (spec.validations ?? []).map((v, i) => ({
      name: v.name ?? `rule-${i + 1}`,
      expression: v.expression,
      ...(v.message === undefined ? {} : { message: v.message }),
      ...(v.messageExpression === undefined ? {} : { messageExpression: v.messageExpression }),
      tier: base.tier,
    })),
    enforcement,
    failurePolicy: spec.failurePolicy ?? "Fail",
    locked,
    lockedAt: locked ? base.tier : undefined,
    provenance: [{ tier: base.tier, layer: base.layer.name, owner: doc.metadata.owner ?? "unowned" }],
    delegate: spec.delegate ?? [],
    deprecation: spec.deprecation,
    generate: spec.generate,
    base,
  };
}

/** Applies a lower (or, for protected domains, delegated) tier's document to the policy. */
function refine(merged: Merged, def: Definition, problems: MergeProblems): void {
  const spec = def.policy.document.spec;
  const who = `${describe(def)} may not`;
  const base = describe(merged.base);
  const lockedRule = (what: string) => `${who} ${what} ${base}, which is locked`;
  if (spec.builtin !== undefined) {
    problems.add(def.policy.origin, ["spec", "builtin"], `${who} include a built-in into ${base}: only the defining document includes one`, "refinement-builtin");
  }
  if (spec.podSecurity !== undefined) {
    problems.add(def.policy.origin, ["spec", "podSecurity"], `${who} set spec.podSecurity of ${base}: only the defining document chooses which namespace labels it reads`, "refinement-builtin");
  }
  if (spec.domain !== undefined && spec.domain !== merged.domain) {
    problems.add(def.policy.origin, ["spec", "domain"], `${who} move ${base} from domain ${JSON.stringify(merged.domain)} to ${JSON.stringify(spec.domain)}`, "domain-mismatch");
  }
  if (spec.delegate !== undefined) {
    problems.add(def.policy.origin, ["spec", "delegate"], `${who} delegate ${base}: only the owner of a local-protected policy delegates it`, "delegate-owner-only");
  }
  if (spec.deprecation !== undefined) {
    problems.add(def.policy.origin, ["spec", "deprecation"], `${who} deprecate ${base}: only the document that defines a policy deprecates it`, "deprecation-owner-only");
  }
  if (spec.generate !== undefined) {
    problems.add(def.policy.origin, ["spec", "generate"], `${who} rewrite what ${base} generates: only the defining document writes generate; lower tiers tune its params within their bounds`, "generate-owner-only");
  }
  if (spec.exceptions !== undefined) {
    problems.add(def.policy.origin, ["spec", "exceptions"], `${who} set the exception bounds of ${base}: only the document that defines a policy sets them`, "exceptions-owner-only");
  }
  if (spec.match !== undefined) {
    const next = normalizeMatch(spec.match);
    if (merged.locked) {
      const ruleKeys = (list: readonly EffectiveResourceRule[] | undefined) => (list ?? []).map((r) => JSON.stringify(r));
      const missing = [
        ...merged.match.kinds.filter((k) => !next.kinds.includes(k)).map((k) => `kind ${k}`),
        ...merged.match.operations.filter((o) => !next.operations.includes(o)).map((o) => `operation ${o}`),
        ...merged.match.subresources.filter((s) => !next.subresources.includes(s)).map((s) => `subresource ${s}`),
        ...ruleKeys(merged.match.resourceRules).filter((r) => !ruleKeys(next.resourceRules).includes(r)).map((r) => `resource rule ${r}`),
        ...ruleKeys(next.excludeResourceRules).filter((r) => !ruleKeys(merged.match.excludeResourceRules).includes(r)).map((r) => `(by excluding) resource rule ${r}`),
      ];
      if (missing.length > 0) {
        problems.add(def.policy.origin, ["spec", "match"], `${lockedRule("match less than")}: it drops ${missing.join(", ")}`, "locked-match");
      } else {
        merged.match = next;
      }
    } else {
      merged.match = next;
    }
  }
  if (spec.matchConditions !== undefined && spec.matchConditions.length > 0) {
    if (merged.locked) {
      problems.add(def.policy.origin, ["spec", "matchConditions"], `${lockedRule("add match conditions to")}: they would narrow where it applies`, "locked-match");
    } else {
      merged.matchConditions.push(...spec.matchConditions);
    }
  }
  if (spec.scope !== undefined) {
    if (merged.locked && !sameJson(normalizeScope(spec.scope), normalizeScope(merged.scope))) {
      problems.add(def.policy.origin, ["spec", "scope"], lockedRule("change the scope of"), "locked-scope");
    } else {
      merged.scope = spec.scope;
    }
  }
  if (spec.enforcement !== undefined) {
    if (merged.locked && STRENGTH[spec.enforcement] < STRENGTH[merged.enforcement]) {
      problems.add(def.policy.origin, ["spec", "enforcement"], `${lockedRule("weaken")}: enforcement ${merged.enforcement} → ${spec.enforcement}`, "locked-enforcement");
    } else {
      merged.enforcement = spec.enforcement;
    }
  }
  if (spec.failurePolicy !== undefined) {
    if (merged.locked && merged.failurePolicy === "Fail" && spec.failurePolicy === "Ignore") {
      problems.add(def.policy.origin, ["spec", "failurePolicy"], `${lockedRule("weaken")}: failurePolicy Fail → Ignore`, "locked-failure-policy");
    } else {
      merged.failurePolicy = spec.failurePolicy;
    }
  }
  if (spec.locked === false && merged.locked) {
    problems.add(def.policy.origin, ["spec", "locked"], lockedRule("unlock"), "locked-unlock");
  } else if (spec.locked === true && !merged.locked) {
    merged.locked = true;
    merged.lockedAt = def.tier;
  }
  for (const [key, param] of Object.entries(spec.params ?? {})) {
    const declared = merged.params.get(key);
    if (declared === undefined) {
      problems.add(def.policy.origin, ["spec", "params", key], `${who} set param ${JSON.stringify(key)}: ${base} declares no such param`, "param-undeclared");
      continue;
    }
    if (param.default !== undefined) {
      problems.add(def.policy.origin, ["spec", "params", key, "default"], `${who} change the default of param ${JSON.stringify(key)} of ${base}; set value instead, where the bounds allow`, "param-default");
    }
    if (param.value !== undefined) {
      const override = declared.override;
      if (override === undefined || !(override.allowedTiers as readonly string[]).includes(def.tier)) {
        const allowed = override === undefined ? "no tier" : override.allowedTiers.join(" and ");
        problems.add(def.policy.origin, ["spec", "params", key, "value"], `${who} set param ${JSON.stringify(key)} of ${base}: it is overridable by ${allowed}, not by ${def.tier}`, "param-not-overridable");
      } else if (declared.value !== null && param.value !== null && typeOf(param.value) !== typeOf(declared.value)) {
        problems.add(def.policy.origin, ["spec", "params", key, "value"], `${who} set param ${JSON.stringify(key)} of ${base} to a ${typeOf(param.value)}: it is a ${typeOf(declared.value)}`, "param-type");
      } else {
        const outside = withinBounds(param.value, override);
        if (outside !== undefined) {
          problems.add(def.policy.origin, ["spec", "params", key, "value"], `${who} set param ${JSON.stringify(key)} of ${base} out of bounds: ${outside}`, "param-out-of-bounds");
        } else {
          declared.value = param.value;
        }
      }
    }
    if (param.override !== undefined) {
      const previous = declared.override;
      const narrowed = param.override;
      const wider =
        previous === undefined ||
        narrowed.allowedTiers.some((t) => !previous.allowedTiers.includes(t)) ||
        (previous.min !== undefined && (narrowed.min === undefined || narrowed.min < previous.min)) ||
        (previous.max !== undefined && (narrowed.max === undefined || narrowed.max > previous.max)) ||
        (previous.allowedValues !== undefined &&
          (narrowed.allowedValues === undefined || narrowed.allowedValues.some((v) => !previous.allowedValues!.some((p) => sameJson(p, v)))));
      if (wider) {
        problems.add(def.policy.origin, ["spec", "params", key, "override"], `${who} widen the bounds of param ${JSON.stringify(key)} of ${base}; a lower tier may only narrow them`, "param-bounds-widened");
      } else {
        const outside = withinBounds(declared.value, narrowed);
        if (outside !== undefined) {
          problems.add(def.policy.origin, ["spec", "params", key, "override"], `${who} narrow param ${JSON.stringify(key)} of ${base} so that its current value is excluded: ${outside}`, "param-out-of-bounds");
        } else {
          declared.override = narrowed;
        }
      }
    }
  }
  for (const [i, variable] of (spec.variables ?? []).entries()) {
    if (merged.variables.some((v) => v.name === variable.name)) {
      problems.add(def.policy.origin, ["spec", "variables", i, "name"], `${who} redefine variable ${JSON.stringify(variable.name)} of ${base}`, "variable-redefined");
    } else {
      merged.variables.push(variable);
    }
  }
  for (const [i, validation] of (spec.validations ?? []).entries()) {
    const name = validation.name ?? `rule-${merged.validations.length + 1}`;
    if (merged.validations.some((v) => v.name === name)) {
      problems.add(def.policy.origin, ["spec", "validations", i, "name"], `${who} redefine rule ${JSON.stringify(name)} of ${base}; a lower tier adds rules under new names`, "rule-redefined");
      continue;
    }
    merged.validations.push({
      name,
      expression: validation.expression,
      ...(validation.message === undefined ? {} : { message: validation.message }),
      ...(validation.messageExpression === undefined ? {} : { messageExpression: validation.messageExpression }),
      tier: def.tier,
    });
  }
  merged.provenance.push({ tier: def.tier, layer: def.layer.name, owner: def.policy.document.metadata.owner ?? "unowned" });
}

function freeze(merged: Merged): EffectivePolicy {
  const params: Record<string, unknown> = {};
  for (const key of [...merged.params.keys()].sort()) params[key] = merged.params.get(key)!.value;
  return {
    name: merged.name,
    owner: merged.owner,
    domain: merged.domain,
    tier: merged.tier,
    match: merged.match,
    ...(merged.scope?.namespaceSelector === undefined ? {} : { namespaceSelector: merged.scope.namespaceSelector }),
    matchConditions: merged.matchConditions,
    params,
    variables: merged.variables,
    validations: merged.validations,
    enforcement: merged.enforcement,
    failurePolicy: merged.failurePolicy,
    locked: merged.locked,
    ...(merged.lockedAt === undefined ? {} : { lockedAt: merged.lockedAt }),
    provenance: merged.provenance,
    ...(merged.deprecation === undefined ? {} : { deprecation: merged.deprecation }),
    ...(merged.generate === undefined ? {} : { generate: merged.generate }),
  };
}

/**
 * Merging depends only on the chain of documents (the defining one, then its
 * refinements), not on the cluster: the result is computed once per chain and shared by
 * every cluster whose layers give the same chain (10,000 clusters of a region share it).
 */
interface ChainResult {
  readonly merged: Merged | undefined;
  readonly problems: readonly Problem[];
  /** The policy as it appears in effective sets, and its canonical JSON (UTF-8). */
  readonly policy: EffectivePolicy | undefined;
  readonly canonical: Buffer | undefined;
}

type Trie = WeakMap<object, { next: Trie; result?: ChainResult }>;
const chains: Trie = new WeakMap();

function memoizedChain(chain: readonly Definition[], protectedDomain: boolean, compute: () => ChainResult): ChainResult {
  let level = chains;
  let node: { next: Trie; result?: ChainResult } | undefined;
  for (const def of chain) {
    node = level.get(def.policy);
    if (node === undefined) level.set(def.policy, (node = { next: new WeakMap() }));
    level = node.next;
  }
  // Protected and ordinary merges of the same documents differ; key the kind too.
  const kind = protectedDomain ? PROTECTED_KEY : ORDINARY_KEY;
  let leaf = level.get(kind);
  if (leaf === undefined) level.set(kind, (leaf = { next: new WeakMap() }));
  leaf.result ??= compute();
  return leaf.result;
}
const PROTECTED_KEY = {};
const COMMA = Buffer.from(",");
const CLOSE = Buffer.from("]}");
const ORDINARY_KEY = {};

function mergeChain(chain: readonly Definition[], protectedDomain: boolean): ChainResult {
  return memoizedChain(chain, protectedDomain, () => {
    const problems = new MergeProblems();
    const [base, ...rest] = chain;
    const merged = startPolicy(base!, problems);
    if (!protectedDomain && base!.policy.document.spec.delegate !== undefined) {
      problems.add(base!.policy.origin, ["spec", "delegate"], `${describe(base!)} delegates, but domain ${JSON.stringify(merged.domain)} is not local-protected; delegate applies to ${LOCAL_PROTECTED_DOMAINS.join(", ")}`, "delegate-owner-only");
    }
    for (const def of rest) {
      // Above the owner, only the tiers it delegates to; below it, refinements as for any policy.
      if (protectedDomain && TIER_ORDER[def.tier] < TIER_ORDER[base!.tier] && !merged.delegate.includes(def.tier)) {
        problems.add(def.policy.origin, ["spec"], `${describe(def)} may not set ${describe(base!)}: domain ${JSON.stringify(merged.domain)} is local-protected and its owner delegates to ${merged.delegate.length === 0 ? "no tier" : merged.delegate.join(" and ")}`, "protected-domain");
        continue;
      }
      refine(merged, def, problems);
    }
    const policy = problems.list.length === 0 ? freeze(merged) : undefined;
    return { merged, problems: problems.list, policy, canonical: policy === undefined ? undefined : Buffer.from(canonicalJson(policy), "utf8") };
  });
}

/** Merges the definitions of one policy name for a cluster; undefined when it does not apply there. */
function mergePolicy(name: string, definitions: readonly Definition[], cluster: ClusterIdentity, problems: MergeProblems): ChainResult | undefined {
  // The first domain any definition names (run for every policy of every cluster: nothing allocated).
  let domain: string | undefined;
  for (let i = 0; i < definitions.length && domain === undefined; i++) domain = definitions[i]!.policy.document.spec.domain;
  if (domain !== undefined && PROTECTED.has(domain)) return mergeProtected(name, definitions, domain, cluster, problems);
  let base = -1;
  let scopedAway = false;
  for (let i = 0; i < definitions.length && base < 0; i++) {
    const def = definitions[i]!;
    if (!isComplete(def.policy)) {
      if (!scopedAway) {
        problems.add(def.policy.origin, ["spec"], `${describe(def)} refines policy ${JSON.stringify(name)}, which no upper tier defines for cluster ${JSON.stringify(cluster.name)}; a defining policy needs spec.domain, spec.match and spec.validations`, "refinement-without-base");
      }
      continue;
    }
    if (!appliesToCluster(def.policy.document.spec.scope, cluster)) {
      scopedAway = true;
      continue;
    }
    base = i;
  }
  if (base < 0) return undefined;
  const result = mergeChain(definitions.slice(base), false);
  problems.list.push(...result.problems);
  if (result.merged === undefined || !appliesToCluster(result.merged.scope, cluster)) return undefined;
  return result;
}

/**
 * Local-protected domains: the lowest tier that defines the policy owns it; tiers above may
 * define it only where the owner's `delegate` names them, and their documents refine the
 * owner's, nearest tier first.
 */
function mergeProtected(
  name: string,
  definitions: readonly Definition[],
  domain: string,
  cluster: ClusterIdentity,
  problems: MergeProblems,
): ChainResult | undefined {
  const applicable = definitions.filter((d) => appliesToCluster(d.policy.document.spec.scope, cluster) || !isComplete(d.policy));
  if (applicable.length === 0) return undefined;
  // The owner is the lowest tier that defines the policy; a lower tier's incomplete document tunes it.
  const complete = applicable.filter((d) => isComplete(d.policy));
  const owner = complete[complete.length - 1] ?? applicable[applicable.length - 1]!;
  if (owner.tier === "global") {
    problems.add(owner.policy.origin, ["spec", "domain"], `${describe(owner)} sets domain ${JSON.stringify(domain)}, which belongs to regions and clusters: the global tier may set it only where a region or cluster layer defines ${JSON.stringify(name)} with delegate: [global]`, "protected-domain");
    return undefined;
  }
  if (!isComplete(owner.policy)) {
    problems.add(owner.policy.origin, ["spec"], `${describe(owner)} owns the local-protected policy ${JSON.stringify(name)} and must define it completely (spec.domain, spec.match, spec.validations)`, "refinement-without-base");
    return undefined;
  }
  const ownerAt = applicable.indexOf(owner);
  const above = applicable.slice(0, ownerAt).reverse();
  const below = applicable.slice(ownerAt + 1);
  const result = mergeChain([owner, ...above, ...below], true);
  problems.list.push(...result.problems);
  if (result.merged === undefined || !appliesToCluster(result.merged.scope, cluster)) return undefined;
  return result;
}

/** The annotation naming the exception request a granted exception comes from. */
export const REQUEST_ANNOTATION = "polity.dev/exception-request";

function effectiveException(e: LayerException, layer: Layer): EffectiveException {
  const spec = e.document.spec;
  const request = e.document.metadata.annotations?.[REQUEST_ANNOTATION];
  return {
    name: e.document.metadata.name,
    policy: spec.policy,
    ...(spec.rules === undefined ? {} : { rules: [...spec.rules].sort() }),
    ...(spec.scope.namespaces === undefined ? {} : { namespaces: [...spec.scope.namespaces].sort() }),
    ...(spec.scope.names === undefined ? {} : { names: [...spec.scope.names].sort() }),
    ...(spec.scope.objectSelector === undefined ? {} : { objectSelector: spec.scope.objectSelector }),
    justification: spec.justification,
    approvedBy: spec.approvedBy ?? "",
    ...(request === undefined ? {} : { request }),
    expiresAt: spec.expiresAt,
    tier: layer.tier,
    layer: layer.name,
  };
}

/**
 * The hash of a set's bytes, kept per sequence of merged policies (the same objects, see
 * memoizedChain) and exceptions: the clusters of a region share their set's policies, and
 * hashing them again for each was most of the work of computing a set.
 */
type HashTrie = WeakMap<ChainResult, { next: HashTrie; hashes?: Map<string, string> }>;
const setHashes: HashTrie = new WeakMap();
const HASHES_PER_SEQUENCE = 1024;

function setHash(results: readonly ChainResult[], exceptionsJson: string, parts: readonly Buffer[]): string {
  let level = setHashes;
  let node: { next: HashTrie; hashes?: Map<string, string> } | undefined;
  for (const result of results) {
    node = level.get(result);
    if (node === undefined) level.set(result, (node = { next: new WeakMap() }));
    level = node.next;
  }
  if (node === undefined) return contentHash(parts);
  node.hashes ??= new Map();
  let hash = node.hashes.get(exceptionsJson);
  if (hash === undefined) {
    hash = contentHash(parts);
    if (node.hashes.size >= HASHES_PER_SEQUENCE) node.hashes.clear();
    node.hashes.set(exceptionsJson, hash);
  }
  return hash;
}

export function effectivePolicySet(layers: readonly Layer[], cluster: ClusterIdentity): EffectivePolicySet {
  const stack = stackFor(layers, cluster);
  const problems = new MergeProblems();
  const byName = new Map<string, Definition[]>();
  for (const layer of stack) {
    for (const policy of layer.policies) {
      const name = policy.document.metadata.name;
      let list = byName.get(name);
      if (list === undefined) byName.set(name, (list = []));
      list.push({ tier: layer.tier, layer, policy });
    }
  }
  const results: ChainResult[] = [];
  const merged = new Map<string, Merged>();
  for (const name of [...byName.keys()].sort()) {
    const result = mergePolicy(name, byName.get(name)!, cluster, problems);
    if (result?.merged !== undefined) {
      merged.set(name, result.merged);
      results.push(result);
    }
  }
  const exceptions: EffectiveException[] = [];
  for (const layer of stack) {
    for (const exception of layer.exceptions) {
      const spec = exception.document.spec;
      const who = `exception ${JSON.stringify(exception.document.metadata.name)} of layer ${JSON.stringify(layer.name)} (tier ${layer.tier}, approved by ${JSON.stringify(spec.approvedBy)})`;
      if (spec.scope.clusters !== undefined && !spec.scope.clusters.includes(cluster.name)) continue;
      if (spec.scope.regions !== undefined && !spec.scope.regions.includes(cluster.region)) continue;
      if (!byName.has(spec.policy)) {
        problems.add(exception.origin, ["spec", "policy"], `${who} names policy ${JSON.stringify(spec.policy)}, which no layer of cluster ${JSON.stringify(cluster.name)} defines`, "exception-unknown-policy");
        continue;
      }
      const policy = merged.get(spec.policy);
      if (policy === undefined) continue; // the policy does not apply to this cluster, so neither does its exception
      if (policy.locked && TIER_ORDER[layer.tier] > TIER_ORDER[policy.lockedAt!]) {
        problems.add(exception.origin, ["spec", "policy"], `${who} may not relax ${describe(policy.base)}, locked at tier ${policy.lockedAt}: exceptions to a locked policy are written in the layer that locked it or above`, "exception-locked");
        continue;
      }
      const unknown = (spec.rules ?? []).filter((rule) => !policy.validations.some((v) => v.name === rule));
      if (unknown.length > 0) {
        problems.add(exception.origin, ["spec", "rules"], `${who} names rule(s) ${unknown.map((r) => JSON.stringify(r)).join(", ")} that ${describe(policy.base)} does not have (it has ${policy.validations.map((v) => v.name).join(", ")})`, "exception-unknown-rule");
        continue;
      }
      exceptions.push(effectiveException(exception, layer));
    }
  }
  if (problems.list.length > 0) throw new PolityError("merge-refused", problems.list);
  exceptions.sort((a, b) => (a.policy === b.policy ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.policy < b.policy ? -1 : 1));
  const document: EffectivePolicySetDocument = {
    apiVersion: "polity.dev/v1",
    kind: "EffectivePolicySet",
    policies: results.map((r) => r.policy!),
    exceptions,
  };
  // The canonical bytes of the whole document, assembled from each policy's cached
  // canonical JSON: exactly canonicalJson(document) (keys in sorted order), without
  // encoding shared policies again for every cluster.
  const exceptionsJson = canonicalJson(exceptions);
  const parts: Buffer[] = [Buffer.from(`{"apiVersion":"polity.dev/v1","exceptions":${exceptionsJson},"kind":"EffectivePolicySet","policies":[`, "utf8")];
  results.forEach((r, i) => {
    if (i > 0) parts.push(COMMA);
    parts.push(r.canonical!);
  });
  parts.push(CLOSE);
  const hash = setHash(results, exceptionsJson, parts);
  const byteLength = parts.reduce((n, part) => n + part.length, 0);
  let bytes: Buffer | undefined;
  let canonical: string | undefined;
  return {
    document,
    hash,
    get bytes() {
      return (bytes ??= Buffer.concat(parts, byteLength));
    },
    byteLength,
    get canonical() {
      return (canonical ??= this.bytes.toString("utf8"));
    },
  };
}

/**
 * An effective policy set from its canonical bytes, as a bundle carries it (the bundle's
 * signature and target hash vouch for them; the shape is checked here).
 */
export function effectivePolicySetFromBytes(bytes: Buffer): EffectivePolicySet {
  let document: EffectivePolicySetDocument;
  try {
    document = JSON.parse(bytes.toString("utf8")) as EffectivePolicySetDocument;
  } catch {
    throw PolityError.of("invalid", "the effective policy set is not JSON");
  }
  if (document?.kind !== "EffectivePolicySet" || document.apiVersion !== "polity.dev/v1" || !Array.isArray(document.policies) || !Array.isArray(document.exceptions)) {
    throw PolityError.of("invalid", "not an effective policy set");
  }
  const hash = contentHash(bytes);
  return {
    document,
    hash,
    bytes,
    byteLength: bytes.length,
    get canonical() {
      return bytes.toString("utf8");
    },
  };
}
