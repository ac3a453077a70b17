/**
 * CEL for Polity: compile once, evaluate many times.
 *
 * `compileCel` parses (Polity's parser: precise errors, cel.bind), checks names, functions
 * and the types it can know, and returns a program. A program runs on the compiled
 * evaluator (closures over JSON-shaped values, microseconds) when the expression stays
 * within what that evaluator decides exactly; otherwise, and for any single evaluation
 * the compiled evaluator cannot decide exactly, on the reference evaluator
 * (@bufbuild/cel). Both meter cost, so a hostile expression is stopped, not waited for.
 */
import { checkExpression, CheckError } from "./checker.js";
import { compileExpression } from "./compiler.js";
import { CelEvalError, positionAt, type CelCompileError } from "./errors.js";
import type { StaticType } from "./functions.js";
import { parseCel, ParseError } from "./parser.js";
import { compileReference, type ReferenceProgram } from "./reference.js";
import { REFER, type Frame } from "./runtime.js";
import type { Activation, CelValue } from "./values.js";

export type { CelValue, Activation, CelMapValue } from "./values.js";
export { ReferenceValue } from "./values.js";
export { Variables, type VariableTable } from "./variables.js";
export { CelEvalError, CelCostLimitError, formatCompileError, positionAt } from "./errors.js";
export type { CelCompileError, SourcePosition } from "./errors.js";
export type { StaticType } from "./functions.js";

/** Kubernetes' per-expression runtime cost limit (cel.PerCallLimit). */
export const DEFAULT_COST_LIMIT = 1_000_000;

export interface CompileOptions {
  /** Variables the expression may reference; any other identifier is a compile error. */
  readonly variables: readonly string[];
  /** Report overload mismatches between statically known types (default true). */
  readonly typeCheck?: boolean;
  /** Cost units one evaluation may spend before it is stopped (default 1,000,000). */
  readonly costLimit?: number;
  /**
   * Names the expression may use as `variables.<name>` (a policy's spec.variables). The
   * activation then binds `variables` to a Variables object, which evaluates each on
   * first use; any other `variables.<name>` is a compile error.
   */
  readonly variableNames?: readonly string[];
}

export interface CelProgram {
  readonly source: string;
  /** Which evaluator runs this program. */
  readonly engine: "compiled" | "reference";
  /** The result type as far as it is known statically (`dyn` when it depends on the data). */
  readonly resultType: StaticType;
  /**
   * Evaluates the program on JSON-shaped variables. Throws CelEvalError when CEL defines the
   * result as an error, CelCostLimitError when the cost limit is reached.
   */
  evaluate(activation: Activation): CelValue;
  /** Evaluates on the reference evaluator; the activation may hold ReferenceValues. */
  evaluateReference(activation: Activation): CelValue;
}

export type CompileResult =
  | { readonly ok: true; readonly program: CelProgram }
  | { readonly ok: false; readonly error: CelCompileError };

export function compileCel(source: string, options: CompileOptions): CompileResult {
  const fail = (kind: CelCompileError["kind"], message: string, offset: number): CompileResult => ({
    ok: false,
    error: { kind, message, position: positionAt(source, offset) },
  });
  try {
    const ast = parseCel(source);
    const names = options.variableNames;
    const variables = names === undefined ? [...options.variables] : [...options.variables, "variables"];
    const check = checkExpression(ast, {
      variables: new Set(variables),
      typeCheck: options.typeCheck ?? true,
      variableNames: names === undefined ? undefined : new Set(names),
    });
    const limit = options.costLimit ?? DEFAULT_COST_LIMIT;
    let reference: ReferenceProgram;
    try {
      // A compiled expression rarely needs the reference: plan it on first use.
      reference = compileReference(ast, !check.compiled);
    } catch (error) {
      return fail("unsupported", (error as Error).message, 0);
    }
    const evaluateReference = (activation: Activation) => reference(activation, limit);
    if (!check.compiled) {
      return {
        ok: true,
        program: { source, engine: "reference", resultType: check.type, evaluate: evaluateReference, evaluateReference },
      };
    }
    const compiled = compileExpression(ast, check, variables);
    // One frame per program, reused: evaluation is synchronous and a program never re-enters itself.
    const frame: Frame = { vars: new Array<unknown>(compiled.slots).fill(null), cost: 0, limit };
    const run = compiled.evaluate;
    const count = variables.length;
    const evaluate = (activation: Activation): CelValue => {
      frame.cost = 0;
      for (let i = 0; i < count; i++) {
        const value = activation[variables[i]!];
        if (value === undefined) throw new CelEvalError(`no value for variable '${variables[i]}'`);
        frame.vars[i] = value;
      }
      try {
        return run(frame) as CelValue;
      } catch (error) {
        if (error === REFER) return reference(activation, limit);
        throw error;
      }
    };
    return { ok: true, program: { source, engine: "compiled", resultType: check.type, evaluate, evaluateReference } };
  } catch (error) {
    if (error instanceof ParseError) return fail("syntax", error.message, error.pos);
    if (error instanceof CheckError) return fail("type", error.message, error.pos);
    throw error;
  }
}
