/**
 * The CEL programs of policies: every expression is compiled once per process, when the
 * layer that holds it is loaded, and shared by every cluster's effective policy set that
 * uses it. The cache is keyed by the expression and the variables it may see.
 */
import { compileCel, formatCompileError, type CompileOptions, type CompileResult, type DeclaredType } from "../cel/index.js";
import { NAMESPACE_TYPE, paramsType, REQUEST_TYPE } from "./admission-types.js";
import type { Param } from "./schema.js";

/** The variables Kubernetes gives a ValidatingAdmissionPolicy expression. */
export const POLICY_VARIABLES = ["object", "oldObject", "request", "params", "namespaceObject"] as const;

export type ExpressionPurpose = "validation" | "message" | "variable";

const cache = new Map<string, CompileResult>();
const CACHE_LIMIT = 100_000;

/**
 * What a policy document tells of its params when its expressions are checked: the params
 * it declares (typed by their defaults), none (a complete definition without params, whose
 * `params` is undeclared, as in a ValidatingAdmissionPolicy without paramKind), or unknown
 * (a refinement: the params are the defining policy's, in another layer).
 */
export type ParamsDeclaration = { readonly declared: Readonly<Record<string, Param>> } | "none" | "unknown";

/**
 * @param variableNames the policy's variables this expression may use as `variables.<name>`
 *   (for a variable's own expression: the ones declared before it)
 * @param params when given, the expression is checked as Kubernetes checks it: `request`
 *   and `namespaceObject` typed, `params` typed or undeclared, literals homogeneous. Without
 *   it (an effective set being prepared), only what every expression must pass.
 */
export function compilePolicyExpression(source: string, variableNames: readonly string[], params?: ParamsDeclaration): CompileResult {
  const typing = params === undefined ? "" : params === "none" || params === "unknown" ? params : JSON.stringify(params.declared);
  const key = `${typing}\n${variableNames.join(",")}\n${source}`;
  let result = cache.get(key);
  if (result === undefined) {
    result = compileCel(source, params === undefined ? { variables: POLICY_VARIABLES, variableNames } : strictOptions(variableNames, params));
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(key, result);
  }
  return result;
}

function strictOptions(variableNames: readonly string[], params: ParamsDeclaration): CompileOptions {
  const declarations: Record<string, DeclaredType> = { request: REQUEST_TYPE, namespaceObject: NAMESPACE_TYPE };
  if (typeof params === "object") declarations.params = paramsType(params.declared);
  return {
    variables: params === "none" ? POLICY_VARIABLES.filter((v) => v !== "params") : POLICY_VARIABLES,
    variableNames,
    declarations,
    strict: true,
    undeclaredReasons: params === "none" ? { params: "the policy declares no params (spec.params)" } : undefined,
  };
}

/** Compiles an expression and checks what it yields; returns the problem in words, or undefined. */
export function checkPolicyExpression(source: string, variableNames: readonly string[], purpose: ExpressionPurpose, params: ParamsDeclaration = "unknown"): string | undefined {
  const result = compilePolicyExpression(source, variableNames, params);
  if (!result.ok) {
    const kinds = { syntax: "syntax error", type: "type error", cost: "too costly", unsupported: "cannot compile" } as const;
    const kind = kinds[result.error.kind];
    return `${kind} at ${formatCompileError(source, result.error)}`;
  }
  const type = result.program.resultType;
  if (purpose === "validation" && type !== "bool" && type !== "dyn") {
    return `must evaluate to a bool, but evaluates to ${type}`;
  }
  if (purpose === "message" && type !== "string" && type !== "dyn") {
    return `must evaluate to a string, but evaluates to ${type}`;
  }
  return undefined;
}
