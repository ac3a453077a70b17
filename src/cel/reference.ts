/**
 * The reference evaluator: @bufbuild/cel, the most conformant CEL implementation for
 * ECMAScript (RE2 regular expressions, exact int/uint/double semantics, timestamps,
 * durations, the strings extension). Polity runs an expression here when it uses
 * something the compiled evaluator does not implement, or when a compiled evaluation
 * leaves the range where JSON numbers are exact (see compiler.ts).
 *
 * Values cross the boundary in both directions here and nowhere else.
 */
import {
  celEnv,
  celList,
  celMap,
  isCelError,
  isCelList,
  isCelMap,
  isCelUint,
  parse as bufParse,
  plan as bufPlan,
  type CelEnv,
  type CelInput,
  type CelValue as BufValue,
} from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import { CelEvalError } from "./errors.js";
import { ReferenceValue, type Activation, type CelValue, type CelMapValue } from "./values.js";

const environments = new Map<string, CelEnv>();

function environment(): CelEnv {
  let env = environments.get("");
  if (env === undefined) {
    env = celEnv({ funcs: strings });
    environments.set("", env);
  }
  return env;
}

export type ReferenceProgram = (activation: Activation) => CelValue;

/** Parses and plans `source` with the reference evaluator; throws when it cannot parse it. */
export function compileReference(source: string): ReferenceProgram {
  const planned = bufPlan(environment(), bufParse(source));
  return (activation) => {
    const bindings: Record<string, CelInput> = {};
    for (const name of Object.keys(activation)) {
      bindings[name] = toReference(activation[name]);
    }
    const result = planned(bindings);
    if (isCelError(result)) throw new CelEvalError(result.message);
    return fromReference(result);
  };
}

/** Whether the reference evaluator can parse `source`. */
export function referenceParses(source: string): boolean {
  try {
    bufParse(source);
    return true;
  } catch {
    return false;
  }
}

/** JSON-shaped value → reference input: integral numbers become int (bigint). */
export function toReference(value: unknown): CelInput {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "boolean":
    case "string":
      return value;
    case "number":
      return Number.isInteger(value) ? BigInt(value) : value;
    case "bigint":
      return value;
    case "object": {
      if (value instanceof ReferenceValue) return value.value as CelInput;
      if (Array.isArray(value)) return celList(value.map(toReference));
      const entries = new Map<string, CelInput>();
      for (const key of Object.keys(value)) {
        entries.set(key, toReference((value as Record<string, unknown>)[key]));
      }
      return celMap(entries);
    }
    default:
      throw new CelEvalError(`a ${typeof value} cannot be a CEL value`);
  }
}

/** Reference value → Polity value; what JSON cannot carry stays wrapped. */
export function fromReference(value: BufValue): CelValue {
  if (value === null || typeof value === "boolean" || typeof value === "string") return value;
  if (typeof value === "bigint") {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : new ReferenceValue(value);
  }
  if (typeof value === "number") {
    return Number.isInteger(value) ? new ReferenceValue(value) : value;
  }
  if (isCelUint(value)) return new ReferenceValue(value);
  if (isCelList(value)) {
    const out: CelValue[] = [];
    for (const element of value) {
      const converted = fromReference(element);
      if (converted instanceof ReferenceValue) return new ReferenceValue(value);
      out.push(converted);
    }
    return out;
  }
  if (isCelMap(value)) {
    const out: Record<string, CelValue> = {};
    for (const [key, element] of value) {
      if (typeof key !== "string") return new ReferenceValue(value);
      const converted = fromReference(element);
      if (converted instanceof ReferenceValue) return new ReferenceValue(value);
      out[key] = converted;
    }
    return out as CelMapValue;
  }
  return new ReferenceValue(value);
}
