/**
 * `variables.<name>`: the named sub-expressions of a policy (spec.variables, as a Kubernetes
 * ValidatingAdmissionPolicy declares them). Each is evaluated at most once per policy
 * evaluation, on first use, and shared by the policy's match conditions, rules and
 * messages; an error is remembered too, and surfaces only where the variable is used.
 */
import type { Activation, CelValue } from "./values.js";
import { CelEvalError } from "./errors.js";

export interface VariableProgram {
  evaluate(activation: Activation, budget?: CostBudget): CelValue;
}

/** What the evaluations of one decision may spend together (see index.ts). */
export interface CostBudget {
  remaining: number;
  readonly total: number;
}

const PENDING = Symbol("pending");

/** A policy's variables: names in declaration order, and their programs. */
export interface VariableTable {
  readonly names: readonly string[];
  readonly programs: readonly VariableProgram[];
}

export class Variables {
  /** By declaration index: undefined until first use, then the value or the error. */
  private readonly values: (CelValue | CelEvalError | typeof PENDING | undefined)[];

  /** @param activation the activation the programs run in; its `variables` is this object */
  constructor(
    private readonly table: VariableTable,
    private readonly activation: Activation,
    private readonly budget?: CostBudget,
  ) {
    this.values = new Array(table.names.length);
  }

  has(name: string): boolean {
    return this.table.names.includes(name);
  }

  /** The variable at a declaration index, which the compiler resolves from the name. */
  at(index: number, name: string): CelValue {
    if (this.table.names[index] !== name) return this.get(name);
    let value = this.values[index];
    if (value === undefined) {
      this.values[index] = PENDING;
      try {
        value = this.table.programs[index]!.evaluate(this.activation, this.budget);
      } catch (error) {
        if (!(error instanceof CelEvalError)) {
          this.values[index] = undefined;
          throw error;
        }
        value = error;
      }
      this.values[index] = value;
    }
    if (value === PENDING) throw new CelEvalError(`variables.${name} refers to itself`);
    if (value instanceof CelEvalError) throw value;
    return value;
  }

  get(name: string): CelValue {
    const index = this.table.names.indexOf(name);
    if (index < 0) throw new CelEvalError(`no such key: ${name}`);
    return this.at(index, name);
  }

  /** Every variable that evaluates, by name, for the reference evaluator (which takes plain maps). */
  evaluated(): Record<string, CelValue> {
    const out: Record<string, CelValue> = {};
    this.table.names.forEach((name, i) => {
      try {
        out[name] = this.at(i, name);
      } catch (error) {
        if (!(error instanceof CelEvalError)) throw error;
      }
    });
    return out;
  }
}
