/**
 * `pod-security/baseline` and `pod-security/restricted`, at any version: the checks of
 * checks.ts assembled as upstream's registry assembles them (policy/registry.go):
 * - a check applies from its first version on; each minor version uses the newest variant
 *   at or below it;
 * - restricted runs its own checks and the baseline checks they do not override;
 * - checks run in upstream's order: baseline IDs, then restricted IDs, each sorted;
 * - `latest`, and any version newer than the newest known, means the newest known;
 *   `v1.25` pins a version as the `pod-security.kubernetes.io/enforce-version` label does;
 * - with `namespaceLabels` (spec.podSecurity.namespaceLabels), the level and version are
 *   also taken per namespace from its Pod Security Admission labels, within a floor: the
 *   level and version of the reference are the floor, always judged; a namespace may ask
 *   for more (restricted, another version) and its pods are judged by that too, never less.
 */
import type { BuiltinPolicy } from "../builtin.js";
import { CHECKS, SHARED_VARIABLES, type Check, type CheckVersion, type Level } from "./checks.js";

export const POD_SECURITY_LEVELS = ["baseline", "restricted"] as const;

/** The newest minor version any check has a variant for: what `latest` means. */
export const LATEST_MINOR = Math.max(...CHECKS.flatMap((c) => c.versions.map((v) => v.minor)));

const VERSION = /^v1\.(0|[1-9][0-9]*)$/;

function variantAt(check: Check, minor: number): CheckVersion | undefined {
  let found: CheckVersion | undefined;
  for (const version of check.versions) if (version.minor <= minor) found = version;
  return found;
}

/** The checks that run for a level at a minor version, in upstream's order. */
export function checksAt(level: Level, minor: number): { check: Check; variant: CheckVersion }[] {
  const active = CHECKS.map((check) => ({ check, variant: variantAt(check, minor) })).filter(
    (c): c is { check: Check; variant: CheckVersion } => c.variant !== undefined,
  );
  const byId = (a: { check: Check }, b: { check: Check }) => (a.check.id < b.check.id ? -1 : a.check.id > b.check.id ? 1 : 0);
  const baseline = active.filter((c) => c.check.level === "baseline").sort(byId);
  if (level === "baseline") return baseline;
  const restricted = active.filter((c) => c.check.level === "restricted").sort(byId);
  const overridden = new Set(
    restricted.map((c) => c.check.overrides).filter((o) => o !== undefined && o.fromMinor <= minor).map((o) => o!.id),
  );
  return [...baseline.filter((c) => !overridden.has(c.check.id)), ...restricted];
}

/**
 * Pod Security Admission's isSignificantPodUpdate: an UPDATE is judged only when the pod's
 * seccomp annotation, the number of containers, a container's image or seccomp annotation
 * (by position), or the ephemeral containers (added, or image or annotation changed) differ.
 */
const SIGNIFICANT_UPDATE = [
  "request.operation != 'UPDATE' || oldObject == null || object == null ||",
  "cel.bind(ann, has(object.metadata) && has(object.metadata.annotations) ? object.metadata.annotations : {},",
  "cel.bind(oldAnn, has(oldObject.metadata) && has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {},",
  "cel.bind(spec, has(object.spec) ? object.spec : {}, cel.bind(oldSpec, has(oldObject.spec) ? oldObject.spec : {},",
  "cel.bind(cs, (has(spec.initContainers) ? spec.initContainers : []) + (has(spec.containers) ? spec.containers : []),",
  "cel.bind(oldCs, (has(oldSpec.initContainers) ? oldSpec.initContainers : []) + (has(oldSpec.containers) ? oldSpec.containers : []),",
  "cel.bind(ecs, has(spec.ephemeralContainers) ? spec.ephemeralContainers : [],",
  "cel.bind(oldEcs, has(oldSpec.ephemeralContainers) ? oldSpec.ephemeralContainers : [],",
  "  (('seccomp.security.alpha.kubernetes.io/pod' in ann ? ann['seccomp.security.alpha.kubernetes.io/pod'] : '') !=",
  "   ('seccomp.security.alpha.kubernetes.io/pod' in oldAnn ? oldAnn['seccomp.security.alpha.kubernetes.io/pod'] : '')) ||",
  "  size(has(spec.containers) ? spec.containers : []) != size(has(oldSpec.containers) ? oldSpec.containers : []) ||",
  "  size(has(spec.initContainers) ? spec.initContainers : []) != size(has(oldSpec.initContainers) ? oldSpec.initContainers : []) ||",
  "  cs.map(c, has(c.image) ? c.image : '') != oldCs.map(c, has(c.image) ? c.image : '') ||",
  "  cs.map(c, cel.bind(k, 'container.seccomp.security.alpha.kubernetes.io/' + c.name, k in ann ? ann[k] : '')) !=",
  "  oldCs.map(c, cel.bind(k, 'container.seccomp.security.alpha.kubernetes.io/' + c.name, k in oldAnn ? oldAnn[k] : '')) ||",
  "  ecs.exists(c, !oldEcs.exists(o, o.name == c.name && (has(o.image) ? o.image : '') == (has(c.image) ? c.image : '')) ||",
  "    cel.bind(k, 'container.seccomp.security.alpha.kubernetes.io/' + c.name, (k in ann ? ann[k] : '') != (k in oldAnn ? oldAnn[k] : '')))",
  "))))))))",
].join("\n");

/** Which Pod Security Admission labels a policy reads: `enforce` reads `pod-security.kubernetes.io/enforce` and `enforce-version`. */
export type PodSecurityMode = "enforce" | "warn" | "audit";
export const POD_SECURITY_MODES: readonly PodSecurityMode[] = ["enforce", "warn", "audit"];

const RANK = { baseline: 1, restricted: 2 } as const;

/**
 * The level a namespace's label asks for, as upstream's PolicyToEvaluate (api/helpers.go)
 * parses it: `privileged` 0, `baseline` 1, `restricted` 2; an invalid value is
 * `restricted` for enforce (fail closed) and `privileged` for warn and audit (fail open);
 * no label, the policy's own level. Then never below the floor.
 */
function namespaceLevel(mode: PodSecurityMode, floor: number): string {
  const key = `'pod-security.kubernetes.io/${mode}'`;
  const parsed =
    mode === "enforce"
      ? `variables.nsPodSecurityLabels[${key}] == 'privileged' ? 0 : variables.nsPodSecurityLabels[${key}] == 'baseline' ? 1 : 2`
      : `variables.nsPodSecurityLabels[${key}] == 'restricted' ? 2 : variables.nsPodSecurityLabels[${key}] == 'baseline' ? 1 : 0`;
  return `cel.bind(asked, !(${key} in variables.nsPodSecurityLabels) ? ${floor} : (${parsed}), asked > ${floor} ? asked : ${floor})`;
}

/**
 * The minor version a namespace's label asks for, as upstream's ParseVersion: `latest`, or
 * `v1.x` (no leading zeros); anything else is latest; a version newer than the newest known
 * is the newest known (as the reference's own version); no label, the policy's own version.
 */
function namespaceMinor(mode: PodSecurityMode, floorMinor: number): string {
  const key = `'pod-security.kubernetes.io/${mode}-version'`;
  const value = `variables.nsPodSecurityLabels[${key}]`;
  // Up to 18 digits fit an int; upstream's Atoi fails beyond, and so means latest too.
  // (split, not substring: the compiled evaluator has it, so the policy never falls back to the reference one.)
  return `!(${key} in variables.nsPodSecurityLabels) ? ${floorMinor} : ${value}.matches('^v1[.](0|[1-9][0-9]{0,17})$') ? cel.bind(asked, int(${value}.split('.')[1]), asked > ${LATEST_MINOR} ? ${LATEST_MINOR} : asked) : ${LATEST_MINOR}`;
}

/** For each level and minor version, which variant of `check` runs (its index), or -1. */
function variantIndexes(check: Check): Record<Level, number[]> {
  const out: Record<Level, number[]> = { baseline: [], restricted: [] };
  for (const level of POD_SECURITY_LEVELS) {
    for (let minor = 0; minor <= LATEST_MINOR; minor++) {
      const found = checksAt(level, minor).find((c) => c.check.id === check.id);
      out[level].push(found === undefined ? -1 : check.versions.indexOf(found.variant));
    }
  }
  return out;
}

/** `variables.nsPodSecurityMinor >= 25 ? (a) : variables.nsPodSecurityMinor >= 22 ? (b) : <none>`, from the variant of each minor. */
function byMinor(indexes: readonly number[], pick: (index: number) => string, none: string): string {
  const ranges: { from: number; index: number }[] = [];
  indexes.forEach((index, minor) => {
    if (ranges.length === 0 || ranges[ranges.length - 1]!.index !== index) ranges.push({ from: minor, index });
  });
  let out = none;
  for (const range of ranges) {
    const chosen = `(${range.index < 0 ? none : pick(range.index)})`;
    out = range.from === 0 ? chosen : `(variables.nsPodSecurityMinor >= ${range.from} ? ${chosen} : ${out})`;
  }
  return out;
}

/** The checks judged per namespace within a floor (see the file's header). */
function withNamespaceLabels(level: Level, minor: number, mode: PodSecurityMode, label: string): BuiltinPolicy {
  const floor = new Map(checksAt(level, minor).map((c) => [c.check.id, c.variant]));
  const variables = new Map<string, string>(SHARED_VARIABLES.map((v) => [v.name, v.expression]));
  const all = CHECKS.filter((check) => check.versions.some((v) => v.minor <= LATEST_MINOR));
  // Every variant of every check is in one policy here, and variants of different versions
  // may define a variable of the same name differently: such a variable is renamed for its
  // variant (`<name>_v<minor>`), in its expressions and in the variables that use it.
  const renamed = new Map<CheckVersion, CheckVersion>();
  for (const check of all) {
    for (const variant of check.versions) {
      const renames = new Map<string, string>();
      const rename = (source: string) => [...renames].reduce((text, [from, to]) => text.replace(new RegExp(`\\bvariables\\.${from}\\b`, "g"), `variables.${to}`), source);
      for (const variable of variant.variables) {
        const expression = rename(variable.expression);
        const existing = variables.get(variable.name);
        if (existing === undefined || existing === expression) {
          variables.set(variable.name, expression);
          continue;
        }
        const name = `${variable.name}_v${variant.minor}`;
        const other = variables.get(name);
        if (other !== undefined && other !== expression) throw new Error(`pod-security: variable ${name} is defined twice with different expressions`);
        renames.set(variable.name, name);
        variables.set(name, expression);
      }
      renamed.set(variant, { ...variant, expression: rename(variant.expression), messageExpression: rename(variant.messageExpression) });
    }
  }
  const byId = (a: Check, b: Check) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  const ordered = [...all.filter((c) => c.level === "baseline").sort(byId), ...all.filter((c) => c.level === "restricted").sort(byId)];
  const floorVariables: { name: string; expression: string }[] = [];
  const validations = ordered.map((check) => {
    const indexes = variantIndexes(check);
    const found = floor.get(check.id);
    const atFloor = found === undefined ? undefined : renamed.get(found);
    const floorRule = atFloor === undefined ? "true" : `(${atFloor.expression})`;
    const variant = (i: number) => renamed.get(check.versions[i]!)!;
    const nsRule = (l: Level) => byMinor(indexes[l], (i) => variant(i).expression, "true");
    const nsMessage = (l: Level) => byMinor(indexes[l], (i) => variant(i).messageExpression, "''");
    const asked = `(variables.nsPodSecurityLevel == 2 ? ${nsRule("restricted")} : ${nsRule("baseline")})`;
    const askedMessage = `(variables.nsPodSecurityLevel == 2 ? ${nsMessage("restricted")} : ${nsMessage("baseline")})`;
    if (atFloor === undefined) return { name: check.id, expression: `variables.nsPodSecurityAtFloor || ${asked}`, messageExpression: askedMessage };
    // The floor's verdict, once per decision: the rule and its message both need it.
    const passesFloor = `floor_${check.id}`;
    floorVariables.push({ name: passesFloor, expression: floorRule });
    return {
      name: check.id,
      expression: `variables.${passesFloor} && (variables.nsPodSecurityAtFloor || ${asked})`,
      messageExpression: `!variables.${passesFloor} ? (${atFloor.messageExpression}) : ${askedMessage}`,
    };
  });
  const own = [
    { name: "nsPodSecurityLabels", expression: "namespaceObject != null && has(namespaceObject.metadata) && has(namespaceObject.metadata.labels) ? namespaceObject.metadata.labels : {}" },
    { name: "nsPodSecurityLevel", expression: namespaceLevel(mode, RANK[level]) },
    { name: "nsPodSecurityMinor", expression: namespaceMinor(mode, minor) },
    { name: "nsPodSecurityAtFloor", expression: `variables.nsPodSecurityLevel == ${RANK[level]} && variables.nsPodSecurityMinor == ${minor}` },
  ];
  return {
    name: `pod-security-${level}`,
    description: `Kubernetes Pod Security Standards, at least ${label}, and per namespace what its pod-security.kubernetes.io/${mode} and ${mode}-version labels ask for above that`,
    domain: "workload-security",
    match: { kinds: ["Pod"], operations: ["CREATE", "UPDATE"], subresources: ["ephemeralcontainers", "resize"] },
    matchConditions: [{ name: "significant-update", expression: SIGNIFICANT_UPDATE }],
    variables: [...own, ...[...variables].map(([name, expression]) => ({ name, expression })), ...floorVariables],
    validations,
  };
}

export function podSecurityPolicy(level: string, version: string, namespaceLabels?: PodSecurityMode): BuiltinPolicy | string {
  if (level !== "baseline" && level !== "restricted") {
    return `unknown Pod Security level ${JSON.stringify(level)}: the levels are baseline and restricted (privileged allows everything; omit the policy)`;
  }
  let minor: number;
  if (version === "latest") {
    minor = LATEST_MINOR;
  } else {
    const m = VERSION.exec(version);
    if (m === null) return `Pod Security version must be "latest" or "v1.x" (as the enforce-version label), got ${JSON.stringify(version)}`;
    minor = Math.min(Number(m[1]), LATEST_MINOR);
  }
  const label = `${level}:${version === "latest" ? "latest" : `v1.${minor}`}`;
  if (namespaceLabels !== undefined) return withNamespaceLabels(level, minor, namespaceLabels, label);
  const checks = checksAt(level, minor);
  const variables = new Map<string, string>(SHARED_VARIABLES.map((v) => [v.name, v.expression]));
  for (const { variant } of checks) {
    for (const variable of variant.variables) {
      const existing = variables.get(variable.name);
      if (existing !== undefined && existing !== variable.expression) {
        throw new Error(`pod-security: variable ${variable.name} is defined twice with different expressions`);
      }
      variables.set(variable.name, variable.expression);
    }
  }
  return {
    name: `pod-security-${level}`,
    description: `Kubernetes Pod Security Standards, ${label} (the semantics and messages of Pod Security Admission at v1.${minor})`,
    domain: "workload-security",
    match: { kinds: ["Pod"], operations: ["CREATE", "UPDATE"], subresources: ["ephemeralcontainers", "resize"] },
    // As Pod Security Admission: an update that changes nothing security-relevant is not judged again.
    matchConditions: [{ name: "significant-update", expression: SIGNIFICANT_UPDATE }],
    variables: [...variables].map(([name, expression]) => ({ name, expression })),
    validations: checks.map(({ check, variant }) => ({
      name: check.id,
      expression: variant.expression,
      messageExpression: variant.messageExpression,
    })),
  };
}
