/**
 * The CEL programs of policies: every expression is compiled once per process, when the
 * layer that holds it is loaded, and shared by every cluster's effective policy set that
 * uses it. The cache is keyed by the expression and the variables it may see.
 */
import { compileCel, formatCompileError, type CompileResult } from "../cel/index.js";

/** The variables Kubernetes gives a ValidatingAdmissionPolicy expression. */
export const POLICY_VARIABLES = ["object", "oldObject", "request", "params", "namespaceObject"] as const;

export type ExpressionPurpose = "validation" | "message" | "variable";

const cache = new Map<string, CompileResult>();
const CACHE_LIMIT = 100_000;

/**
 * @param variableNames the policy's variables this expression may use as `variables.<name>`
 *   (for a variable's own expression: the ones declared before it)
 */
export function compilePolicyExpression(source: string, variableNames: readonly string[]): CompileResult {
  const key = variableNames.length === 0 ? source : `${variableNames.join(",")}\n${source}`;
  let result = cache.get(key);
  if (result === undefined) {
    result = compileCel(source, { variables: POLICY_VARIABLES, variableNames });
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(key, result);
  }
  return result;
}

/** Compiles an expression and checks what it yields; returns the problem in words, or undefined. */
export function checkPolicyExpression(source: string, variableNames: readonly string[], purpose: ExpressionPurpose): string | undefined {
  const result = compilePolicyExpression(source, variableNames);
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
