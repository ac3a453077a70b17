/**
 * `pod-security/baseline` and `pod-security/restricted`, at any version: the checks of
 * checks.ts assembled as upstream's registry assembles them (policy/registry.go):
 * - a check applies from its first version on; each minor version uses the newest variant
 *   at or below it;
 * - restricted runs its own checks and the baseline checks they do not override;
 * - checks run in upstream's order: baseline IDs, then restricted IDs, each sorted;
 * - `latest`, and any version newer than the newest known, means the newest known;
 *   `v1.25` pins a version as the `pod-security.kubernetes.io/enforce-version` label does.
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

export function podSecurityPolicy(level: string, version: string): BuiltinPolicy | string {
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
  const label = `${level}:${version === "latest" ? "latest" : `v1.${minor}`}`;
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
