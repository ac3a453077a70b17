/**
 * The built-in policy library. A policy names an entry with `spec.builtin`
 * (`pod-security/restricted@v1.25`), and the CLI takes `builtin:pod-security/restricted`.
 * Entries supply the domain, match, variables and validations; the policy document that
 * uses one keeps its own name, owner, scope, enforcement and lock.
 */
import { API_VERSION, type PolicyDocument } from "../schema.js";
import type { BuiltinPolicy } from "./builtin.js";
import { podSecurityPolicy, POD_SECURITY_LEVELS, type PodSecurityMode } from "./pod-security/index.js";

export { POD_SECURITY_MODES, type PodSecurityMode } from "./pod-security/index.js";

export const BUILTIN_PREFIX = "builtin:";

/** Every entry, for `--help` and errors. */
export const BUILTIN_ENTRIES = POD_SECURITY_LEVELS.map((level) => `pod-security/${level}`);

/**
 * The entry for a reference such as `pod-security/restricted@v1.25`, or why there is none;
 * with `namespaceLabels`, a Pod Security entry also reads those labels of each namespace
 * (spec.podSecurity.namespaceLabels).
 */
export function resolveBuiltin(reference: string, namespaceLabels?: PodSecurityMode): BuiltinPolicy | string {
  const ref = reference.startsWith(BUILTIN_PREFIX) ? reference.slice(BUILTIN_PREFIX.length) : reference;
  const at = ref.indexOf("@");
  const name = at < 0 ? ref : ref.slice(0, at);
  const version = at < 0 ? "latest" : ref.slice(at + 1);
  const [family, level] = name.split("/");
  if (family === "pod-security" && level !== undefined) return podSecurityPolicy(level, version, namespaceLabels);
  if (namespaceLabels !== undefined) return `spec.podSecurity applies to the pod-security built-ins only, not ${JSON.stringify(reference)}`;
  return `unknown built-in policy ${JSON.stringify(reference)}; the library has ${BUILTIN_ENTRIES.join(", ")}`;
}

/** A complete Policy document for a `builtin:` reference given on the command line. */
export function builtinPolicyDocument(reference: string): PolicyDocument | string {
  const builtin = resolveBuiltin(reference);
  if (typeof builtin === "string") return builtin;
  const ref = reference.startsWith(BUILTIN_PREFIX) ? reference.slice(BUILTIN_PREFIX.length) : reference;
  return {
    apiVersion: API_VERSION,
    kind: "Policy",
    metadata: { name: builtin.name, owner: "polity-library", description: builtin.description },
    spec: { builtin: ref, enforcement: "deny" },
  };
}
