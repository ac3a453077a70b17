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
import { DATA_LIST_SIZE, estimateCost } from "./cost.js";
import { compileExpression } from "./compiler.js";
import { CelCostLimitError, CelEvalError, positionAt, type CelCompileError } from "./errors.js";
import type { DeclaredType, StaticType } from "./functions.js";
import { parseCel, ParseError } from "./parser.js";
import { compileReference, type ReferenceProgram } from "./reference.js";
import { REFER, type Frame } from "./runtime.js";
import type { Activation, CelValue } from "./values.js";
import type { CostBudget } from "./variables.js";

export type { CelValue, Activation, CelMapValue } from "./values.js";
export { Optional, ReferenceValue } from "./values.js";
export { Variables, type VariableTable } from "./variables.js";
export { CelEvalError, CelCostLimitError, formatCompileError, positionAt } from "./errors.js";
export type { CelCompileError, SourcePosition } from "./errors.js";
export type { DeclaredType, StaticType } from "./functions.js";

/** Kubernetes' per-expression runtime cost limit (cel.PerCallLimit). */
export const DEFAULT_COST_LIMIT = 1_000_000;

/**
 * What a set of evaluations may spend together (one admission decision, as Kubernetes
 * gives each ValidatingAdmissionPolicyBinding a budget): each evaluation is stopped at its
 * own limit or at what is left of the budget, whichever comes first, and takes what it
 * spent from it.
 */
export type { CostBudget };

export function costBudget(total: number): CostBudget {
  return { remaining: total, total };
}

export { DATA_LIST_SIZE, DATA_STRING_SIZE, estimateCost } from "./cost.js";

export interface CompileOptions {
  /** Variables the expression may reference; any other identifier is a compile error. */
  readonly variables: readonly string[];
  /** Report overload mismatches between statically known types (default true). */
  readonly typeCheck?: boolean;
  /** Cost units one evaluation may spend before it is stopped (default 1,000,000). */
  readonly costLimit?: number;
  /** An expression whose estimated cost (cost.ts) is above this is refused (default 1,000,000). */
  readonly estimatedCostLimit?: number;
  /**
   * Names the expression may use as `variables.<name>` (a policy's spec.variables). The
   * activation then binds `variables` to a Variables object, which evaluates each on
   * first use; any other `variables.<name>` is a compile error.
   */
  readonly variableNames?: readonly string[];
  /** Variables whose type is known (Kubernetes' AdmissionRequest, …): an undeclared field is an error. */
  readonly declarations?: Readonly<Record<string, DeclaredType>>;
  /** Kubernetes' stricter checks: homogeneous list and map literals, one type for both branches of a conditional. */
  readonly strict?: boolean;
  /** Why a name is not declared, for its error (`params`: the policy declares no params). */
  readonly undeclaredReasons?: Readonly<Record<string, string>>;
}

export interface CelProgram {
  readonly source: string;
  /** Which evaluator runs this program. */
  readonly engine: "compiled" | "reference";
  /** The result type as far as it is known statically (`dyn` when it depends on the data). */
  readonly resultType: StaticType;
  /** An upper bound of one evaluation's cost (see cost.ts): never above the estimated-cost limit. */
  readonly estimatedCost: number;
  /**
   * Evaluates the program on JSON-shaped variables. Throws CelEvalError when CEL defines the
   * result as an error, CelCostLimitError when the cost limit, or the budget, is reached.
   */
  evaluate(activation: Activation, budget?: CostBudget): CelValue;
  /** Evaluates on the reference evaluator; the activation may hold ReferenceValues. */
  evaluateReference(activation: Activation, budget?: CostBudget): CelValue;
}

export type CompileResult =
  | { readonly ok: true; readonly program: CelProgram }
  | { readonly ok: false; readonly error: CelCompileError };

/**
 * Runs one evaluation under its limit and what is left of the budget: `run` gets the cap
 * and a way to report what it spent. Stopped by the budget (not its own limit), the error
 * says so.
 */
function metered(budget: CostBudget | undefined, limit: number, run: (cap: number, spent: (cost: number) => void) => CelValue): CelValue {
  if (budget === undefined) return run(limit, () => undefined);
  const cap = Math.min(limit, budget.remaining);
  try {
    return run(cap, (cost) => {
      budget.remaining = Math.max(0, budget.remaining - cost);
    });
  } catch (error) {
    if (error instanceof CelCostLimitError && cap < limit) throw new CelCostLimitError(`the decision's cost budget of ${budget.total} is spent`);
    throw error;
  }
}

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
      declarations: options.declarations,
      strict: options.strict,
      undeclaredReasons: options.undeclaredReasons,
    });
    const limit = options.costLimit ?? DEFAULT_COST_LIMIT;
    const estimatedCost = estimateCost(ast);
    const estimatedLimit = options.estimatedCostLimit ?? DEFAULT_COST_LIMIT;
    if (estimatedCost > estimatedLimit) {
      return fail(
        "cost",
        `its estimated cost, ${estimatedCost}, is over the limit of ${estimatedLimit} for one evaluation (${(estimatedCost / estimatedLimit).toFixed(1)} times): comprehensions nested over lists from the request multiply their costs (each such list is taken to hold up to ${DATA_LIST_SIZE} items)`,
        0,
      );
    }
    let reference: ReferenceProgram;
    try {
      // A compiled expression rarely needs the reference: plan it on first use.
      reference = compileReference(ast, !check.compiled, check.qualifiedVariables);
    } catch (error) {
      return fail("unsupported", (error as Error).message, 0);
    }
    const evaluateReference = (activation: Activation, budget?: CostBudget) => metered(budget, limit, (cap, spent) => reference(activation, cap, spent));
    if (!check.compiled) {
      return {
        ok: true,
        program: { source, engine: "reference", resultType: check.type, estimatedCost, evaluate: evaluateReference, evaluateReference },
      };
    }
    const compiled = compileExpression(ast, check, variables);
    // One frame per program, reused: evaluation is synchronous and a program never re-enters itself.
    const frame: Frame = { vars: new Array<unknown>(compiled.slots).fill(null), cost: 0, limit };
    const run = compiled.evaluate;
    const count = variables.length;
    const evaluate = (activation: Activation, budget?: CostBudget): CelValue =>
      metered(budget, limit, (cap, spent) => {
        frame.cost = 0;
        frame.limit = cap;
        for (let i = 0; i < count; i++) {
          const value = activation[variables[i]!];
          if (value === undefined) throw new CelEvalError(`no value for variable '${variables[i]}'`);
          frame.vars[i] = value;
        }
        try {
          return run(frame) as CelValue;
        } catch (error) {
          // Handed to the reference, the evaluation starts again: the compiled attempt's cost is its own.
          if (error === REFER) {
            const used = frame.cost;
            frame.cost = 0;
            spent(used);
            return reference(activation, cap, spent);
          }
          throw error;
        } finally {
          if (frame.cost > 0) spent(frame.cost);
          frame.cost = 0;
        }
      });
    return { ok: true, program: { source, engine: "compiled", resultType: check.type, estimatedCost, evaluate, evaluateReference } };
  } catch (error) {
    if (error instanceof ParseError) return fail("syntax", error.message, error.pos);
    if (error instanceof CheckError) return fail("type", error.message, error.pos);
    throw error;
  }
}
