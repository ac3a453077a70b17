/**
 * The compiled evaluator: turns a checked expression into a tree of JavaScript closures
 * that run directly on JSON-shaped values. It is what makes a Pod Security decision take
 * microseconds: no per-request conversion, no interpretation of the syntax tree, variables
 * in numbered slots, constant sub-expressions built once.
 *
 * It decides only what it can decide exactly (see runtime.ts): every other case throws
 * REFER and the reference evaluator answers for the whole expression.
 */
import { countNodes, type Comprehension, type Expr } from "./ast.js";
import { CheckError, qualifiedFunction, type CheckResult } from "./checker.js";
import { CelCostLimitError, CelEvalError } from "./errors.js";
import { KUBERNETES_FUNCTIONS, libraryString, NO_OVERLOAD } from "./kubernetes/library.js";
import { Optional, ReferenceValue, type CelValue } from "./values.js";
import { Variables } from "./variables.js";
import {
  addNumbers,
  celEquals,
  celSize,
  charge,
  compare,
  compileRegex,
  distinctList,
  divideNumbers,
  flattenList,
  hasOwn,
  isInt,
  isMap,
  isZeroValue,
  lowerAscii,
  moduloNumbers,
  multiplyNumbers,
  noSuchKey,
  REFER,
  sizeCost,
  sortList,
  stringCost,
  subtractNumbers,
  upperAscii,
  type CelMap,
  type CompiledRegex,
  type Frame,
} from "./runtime.js";

export type Evaluator = (frame: Frame) => unknown;

export interface CompiledExpression {
  readonly evaluate: Evaluator;
  /** Number of variable slots a frame needs. */
  readonly slots: number;
}

export function compileExpression(expr: Expr, check: CheckResult, variables: readonly string[]): CompiledExpression {
  const compiler = new Compiler(check, variables);
  const evaluate = compiler.compile(expr, []);
  return { evaluate, slots: compiler.maxSlots };
}

/** A CEL runtime error raised by the compiled evaluator, with where in the expression. */
function errorAt(error: CelEvalError, pos: number): CelEvalError {
  if (error.offset === undefined) error.offset = pos;
  return error;
}

/** Whether a thrown value is a CEL error that logical operators may absorb. */
function isAbsorbable(error: unknown): error is CelEvalError {
  return error instanceof CelEvalError && !(error instanceof CelCostLimitError);
}

function setEntry(map: CelMap, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    map[key] = value;
  }
}

class Compiler {
  maxSlots: number;

  constructor(
    private readonly check: CheckResult,
    private readonly variables: readonly string[],
  ) {
    this.maxSlots = variables.length;
  }

  /** `locals` are comprehension and bind variables in scope, innermost last; local i lives in slot variables.length + i. */
  compile(expr: Expr, locals: readonly string[]): Evaluator {
    switch (expr.kind) {
      case "literal":
        return this.literal(expr);
      case "ident":
        return this.ident(expr.name, locals);
      case "select":
        return this.select(expr, locals);
      case "has":
        return this.has(expr, locals);
      case "index":
        return this.index(expr, locals);
      case "list":
        return this.list(expr, locals);
      case "map":
        return this.map(expr, locals);
      case "comprehension":
        return this.comprehension(expr, locals);
      case "bind": {
        const init = this.compile(expr.init, locals);
        const slot = this.slotFor(locals.length);
        const body = this.compile(expr.body, [...locals, expr.name]);
        return (f) => {
          f.vars[slot] = init(f);
          return body(f);
        };
      }
      case "call":
        return this.call(expr, locals);
      case "struct":
        throw new Error("messages are evaluated by the reference evaluator");
    }
  }

  private slotFor(localIndex: number): number {
    const slot = this.variables.length + localIndex;
    this.maxSlots = Math.max(this.maxSlots, slot + 1);
    return slot;
  }

  private literal(expr: Expr & { kind: "literal" }): Evaluator {
    const literal = expr.literal;
    let value: unknown;
    switch (literal.type) {
      case "int":
        value = Number(literal.value);
        break;
      case "double":
      case "string":
      case "bool":
        value = literal.value;
        break;
      case "null":
        value = null;
        break;
      default:
        throw new Error(`${literal.type} literals are evaluated by the reference evaluator`);
    }
    return () => value;
  }

  private ident(name: string, locals: readonly string[]): Evaluator {
    if (!name.startsWith(".")) {
      const local = locals.lastIndexOf(name);
      if (local >= 0) {
        const slot = this.variables.length + local;
        return (f) => f.vars[slot];
      }
    }
    const slot = this.variables.indexOf(name.startsWith(".") ? name.slice(1) : name);
    if (slot < 0) throw new Error(`unresolved identifier ${name}`);
    return (f) => f.vars[slot];
  }

  private select(expr: Expr & { kind: "select" }, locals: readonly string[]): Evaluator {
    const qualified = this.check.qualifiedVariables.get(expr);
    if (qualified !== undefined) return this.ident(qualified, []);
    const operand = this.compile(expr.operand, locals);
    const field = expr.field;
    const pos = expr.pos;
    const index = this.check.variableIndex.get(expr);
    if (expr.optional) {
      // `a.?f`: optional.of(a.f) when a has f, else optional.none().
      return (f) => {
        let v = operand(f);
        if (v instanceof Optional) {
          if (!v.present) return v;
          v = v.value;
        }
        if (v instanceof Variables) return v.has(field) ? Optional.of(v.get(field)) : Optional.NONE;
        if (isMap(v)) return hasOwn.call(v, field) ? Optional.of(v[field] as CelValue) : Optional.NONE;
        throw REFER;
      };
    }
    if (index !== undefined) {
      // `variables.<name>`: straight to the variable's slot.
      return (f) => {
        const v = operand(f);
        if (v instanceof Variables) return v.at(index, field);
        if (isMap(v)) {
          if (hasOwn.call(v, field)) return v[field];
          throw errorAt(noSuchKey(field), pos);
        }
        if (v instanceof Optional) return optionalField(v, field);
        throw REFER;
      };
    }
    return (f) => {
      const v = operand(f);
      if (isMap(v)) {
        if (hasOwn.call(v, field)) return v[field];
        throw errorAt(noSuchKey(field), pos);
      }
      if (v instanceof Optional) return optionalField(v, field);
      throw REFER;
    };
  }

  private has(expr: Expr & { kind: "has" }, locals: readonly string[]): Evaluator {
    const operand = this.compile(expr.operand, locals);
    const field = expr.field;
    return (f) => {
      const v = operand(f);
      if (v instanceof Variables) return v.has(field);
      if (isMap(v)) return hasOwn.call(v, field);
      if (v instanceof Optional) {
        // has() through an optional: false for none, else whether the value has the field.
        if (!v.present) return false;
        if (isMap(v.value)) return hasOwn.call(v.value, field);
      }
      throw REFER;
    };
  }

  private index(expr: Expr & { kind: "index" }, locals: readonly string[]): Evaluator {
    const operand = this.compile(expr.operand, locals);
    const index = this.compile(expr.index, locals);
    const pos = expr.pos;
    if (expr.optional) {
      return (f) => {
        const v = operand(f);
        return optionalIndex(v instanceof Optional ? v : Optional.of(v as CelValue), index(f));
      };
    }
    return (f) => {
      const v = operand(f);
      const i = index(f);
      if (Array.isArray(v)) {
        if (!isInt(i)) throw REFER;
        if (i < 0 || i >= v.length) throw errorAt(new CelEvalError(`index out of range: ${i}`), pos);
        return v[i];
      }
      if (isMap(v) && typeof i === "string") {
        if (hasOwn.call(v, i)) return v[i];
        throw errorAt(noSuchKey(i), pos);
      }
      if (v instanceof Optional) return optionalIndex(v, i);
      throw REFER;
    };
  }

  private list(expr: Expr & { kind: "list" }, locals: readonly string[]): Evaluator {
    const elements = expr.elements.map((e) => this.compile(e.value, locals));
    if (expr.elements.some((e) => e.optional)) {
      // `[?x]`: x's value when x is optional.of(…), nothing when it is optional.none().
      const optional = expr.elements.map((e) => e.optional);
      return (f) => {
        const out: unknown[] = [];
        for (let i = 0; i < elements.length; i++) {
          const v = elements[i]!(f);
          if (!optional[i]) out.push(v);
          else if (!(v instanceof Optional)) throw REFER;
          else if (v.present) out.push(v.value);
        }
        return out;
      };
    }
    if (expr.elements.every((e) => e.value.kind === "literal")) {
      const constant = Object.freeze(elements.map((e) => e(undefined as unknown as Frame)));
      return () => constant;
    }
    return (f) => elements.map((e) => e(f));
  }

  private map(expr: Expr & { kind: "map" }, locals: readonly string[]): Evaluator {
    const entries = expr.entries.map((e) => [this.compile(e.key, locals), this.compile(e.value, locals), e.optional] as const);
    const pos = expr.pos;
    const build = (f: Frame) => {
      const out: CelMap = {};
      for (const [key, value, optional] of entries) {
        const k = key(f);
        if (typeof k !== "string") throw REFER;
        if (hasOwn.call(out, k)) throw errorAt(new CelEvalError(`map literal repeats the key ${JSON.stringify(k)}`), pos);
        let v = value(f);
        if (optional) {
          // `{?k: x}`: the entry only when x is optional.of(…).
          if (!(v instanceof Optional)) throw REFER;
          if (!v.present) continue;
          v = v.value;
        }
        setEntry(out, k, v);
      }
      return out;
    };
    if (expr.entries.every((e) => e.key.kind === "literal" && e.value.kind === "literal")) {
      // A constant map, such as the `{}` of `has(x.f) ? x.f : {}`, is built once.
      let constant: unknown;
      try {
        constant = Object.freeze(build(undefined as unknown as Frame));
      } catch {
        return build;
      }
      return () => constant;
    }
    return build;
  }

  private comprehension(expr: Comprehension, locals: readonly string[]): Evaluator {
    if (expr.variable2 !== undefined || expr.macro.startsWith("transform")) return this.twoVariableComprehension(expr, locals);
    const range = this.compile(expr.range, locals);
    const slot = this.slotFor(locals.length);
    const inner = [...locals, expr.variable];
    const predicate = expr.predicate === undefined ? undefined : this.compile(expr.predicate, inner);
    const transform = expr.transform === undefined ? undefined : this.compile(expr.transform, inner);
    // Each iteration costs what its body may evaluate, as cel-go counts it.
    const perIteration = 1 + countNodes(expr.predicate) + countNodes(expr.transform);
    const elements = (f: Frame): readonly unknown[] => {
      const v = range(f);
      if (Array.isArray(v)) return v;
      if (isMap(v)) return Object.keys(v);
      throw REFER;
    };
    switch (expr.macro) {
      case "all":
      case "exists": {
        // all: false wins over errors; exists: true wins over errors (CEL's commutative && and ||).
        const decisive = expr.macro === "exists";
        const test = predicate!;
        return (f) => {
          const items = elements(f);
          let error: CelEvalError | undefined;
          for (let i = 0; i < items.length; i++) {
            charge(f, perIteration);
            f.vars[slot] = items[i];
            let r: unknown;
            try {
              r = test(f);
            } catch (e) {
              if (!isAbsorbable(e)) throw e;
              error ??= e;
              continue;
            }
            if (r === decisive) return decisive;
            if (r !== !decisive) throw REFER;
          }
          if (error !== undefined) throw error;
          return !decisive;
        };
      }
      case "exists_one": {
        const test = predicate!;
        return (f) => {
          const items = elements(f);
          let count = 0;
          for (let i = 0; i < items.length; i++) {
            charge(f, perIteration);
            f.vars[slot] = items[i];
            const r = test(f);
            if (r === true) count++;
            else if (r !== false) throw REFER;
          }
          return count === 1;
        };
      }
      default: {
        const keep = predicate;
        const produce = transform;
        return (f) => {
          const items = elements(f);
          const out: unknown[] = [];
          for (let i = 0; i < items.length; i++) {
            charge(f, perIteration);
            f.vars[slot] = items[i];
            if (keep !== undefined) {
              const r = keep(f);
              if (r === false) continue;
              if (r !== true) throw REFER;
            }
            out.push(produce === undefined ? items[i] : produce(f));
          }
          return out;
        };
      }
    }
  }

  /**
   * Two-variable comprehensions (index and element of a list, key and value of a map) and
   * the transform macros: all, exists, existsOne, transformList, transformMap,
   * transformMapEntry.
   */
  private twoVariableComprehension(expr: Comprehension, locals: readonly string[]): Evaluator {
    const range = this.compile(expr.range, locals);
    const slot = this.slotFor(locals.length);
    const slot2 = this.slotFor(locals.length + 1);
    const inner = [...locals, expr.variable, expr.variable2 ?? ""];
    const predicate = expr.predicate === undefined ? undefined : this.compile(expr.predicate, inner);
    const transform = expr.transform === undefined ? undefined : this.compile(expr.transform, inner);
    const perIteration = 1 + countNodes(expr.predicate) + countNodes(expr.transform);
    const pos = expr.pos;
    /** Runs `step` for each index and element, or key and value, until it returns something. */
    const loop = (f: Frame, step: () => unknown): unknown => {
      const v = range(f);
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          charge(f, perIteration);
          f.vars[slot] = i;
          f.vars[slot2] = v[i];
          const out = step();
          if (out !== undefined) return out;
        }
      } else if (isMap(v)) {
        const keys = Object.keys(v);
        for (let i = 0; i < keys.length; i++) {
          charge(f, perIteration);
          f.vars[slot] = keys[i];
          f.vars[slot2] = v[keys[i]!];
          const out = step();
          if (out !== undefined) return out;
        }
      } else {
        throw REFER;
      }
      return undefined;
    };
    const kept = (f: Frame): boolean => {
      if (predicate === undefined) return true;
      const r = predicate(f);
      if (typeof r !== "boolean") throw REFER;
      return r;
    };
    switch (expr.macro) {
      case "all":
      case "exists": {
        const decisive = expr.macro === "exists";
        const test = predicate!;
        return (f) => {
          let error: CelEvalError | undefined;
          const out = loop(f, () => {
            let r: unknown;
            try {
              r = test(f);
            } catch (e) {
              if (!isAbsorbable(e)) throw e;
              error ??= e;
              return undefined;
            }
            if (r === decisive) return decisive;
            if (r !== !decisive) throw REFER;
            return undefined;
          });
          if (out !== undefined) return out;
          if (error !== undefined) throw error;
          return !decisive;
        };
      }
      case "exists_one":
        return (f) => {
          let count = 0;
          loop(f, () => {
            if (kept(f)) count++;
            return undefined;
          });
          return count === 1;
        };
      case "transformList":
        return (f) => {
          const out: unknown[] = [];
          loop(f, () => {
            if (kept(f)) out.push(transform!(f));
            return undefined;
          });
          return out;
        };
      case "transformMap":
      case "transformMapEntry": {
        const entry = expr.macro === "transformMapEntry";
        return (f) => {
          const out: CelMap = {};
          loop(f, () => {
            if (!kept(f)) return undefined;
            const produced = transform!(f);
            if (!entry) {
              const key = f.vars[slot];
              // A list's indexes are ints: only the reference builds maps with int keys.
              if (typeof key !== "string") throw REFER;
              setEntry(out, key, produced);
              return undefined;
            }
            if (!isMap(produced)) throw REFER;
            for (const k of Object.keys(produced)) {
              if (hasOwn.call(out, k)) throw errorAt(new CelEvalError(`insert failed: key ${k} already exists`), pos);
              setEntry(out, k, produced[k]);
            }
            return undefined;
          });
          return out;
        };
      }
      default:
        throw new Error(`${expr.macro}() takes one variable`);
    }
  }

  private call(expr: Expr & { kind: "call" }, locals: readonly string[]): Evaluator {
    const args = expr.args.map((a) => this.compile(a, locals));
    const qualified = qualifiedFunction(expr);
    if (qualified !== undefined) return this.qualified(qualified, args, expr.pos);
    const target = expr.target === undefined ? undefined : this.compile(expr.target, locals);
    const [a, b, c] = args as [Evaluator, Evaluator, Evaluator];
    switch (expr.name) {
      case "_&&_":
        return logical(a, b, false);
      case "_||_":
        return logical(a, b, true);
      case "!_":
        return (f) => {
          const v = a(f);
          if (typeof v === "boolean") return !v;
          throw REFER;
        };
      case "-_":
        return (f) => {
          const v = a(f);
          if (typeof v !== "number" || !Number.isSafeInteger(-v) && Number.isInteger(v)) throw REFER;
          return v === 0 ? 0 : -v;
        };
      case "_?_:_":
        return (f) => {
          const v = a(f);
          if (v === true) return b(f);
          if (v === false) return c(f);
          throw REFER;
        };
      case "_==_":
      case "_!=_":
        return equality(expr, a, b, expr.name === "_!=_");
      case "_<_":
        return ordering(a, b, (r) => r < 0);
      case "_<=_":
        return ordering(a, b, (r) => r <= 0);
      case "_>_":
        return ordering(a, b, (r) => r > 0);
      case "_>=_":
        return ordering(a, b, (r) => r >= 0);
      case "@in":
        return (f) => {
          const x = a(f);
          const container = b(f);
          if (Array.isArray(container)) {
            charge(f, container.length);
            for (let i = 0; i < container.length; i++) {
              if (celEquals(x, container[i])) return true;
            }
            return false;
          }
          if (isMap(container) && typeof x === "string") return hasOwn.call(container, x);
          throw REFER;
        };
      case "_+_":
        return (f) => {
          const x = a(f);
          const y = b(f);
          if (typeof x === "number" && typeof y === "number") return addNumbers(x, y);
          if (typeof x === "string" && typeof y === "string") {
            charge(f, stringCost(x) + stringCost(y));
            return x + y;
          }
          if (Array.isArray(x) && Array.isArray(y)) {
            charge(f, x.length + y.length);
            return x.concat(y);
          }
          throw REFER;
        };
      case "_-_":
        return numeric(a, b, subtractNumbers);
      case "_*_":
        return numeric(a, b, multiplyNumbers);
      case "_/_":
        return numeric(a, b, divideNumbers);
      case "_%_":
        return numeric(a, b, moduloNumbers);
      default:
        return this.function(expr, target, args);
    }
  }

  /** A namespaced global function: `optional.of(x)`. */
  private qualified(name: string, args: readonly Evaluator[], pos: number): Evaluator {
    const [a] = args as [Evaluator];
    switch (name) {
      case "optional.of":
        return (f) => Optional.of(a(f) as CelValue);
      case "optional.none":
        return () => Optional.NONE;
      case "optional.ofNonZeroValue":
        return (f) => {
          const v = a(f);
          const zero = isZeroValue(v);
          if (zero === undefined) throw REFER;
          return zero ? Optional.NONE : Optional.of(v as CelValue);
        };
      default:
        return this.library(name, undefined, args, pos);
    }
  }

  /** A function of the Kubernetes libraries; what it cannot decide goes to the reference. */
  private library(name: string, target: Evaluator | undefined, args: readonly Evaluator[], pos: number): Evaluator {
    const library = KUBERNETES_FUNCTIONS.get(name);
    if (library === undefined) {
      return () => {
        throw REFER;
      };
    }
    return (f) => {
      const receiver = target === undefined ? undefined : target(f);
      const values = args.map((a) => a(f));
      let result: CelValue | typeof NO_OVERLOAD;
      try {
        result = library.call(receiver, values, (units) => charge(f, units));
      } catch (error) {
        if (error instanceof CelEvalError) throw errorAt(error, pos);
        throw error;
      }
      if (result === NO_OVERLOAD || result instanceof ReferenceValue) throw REFER;
      return result;
    };
  }

  private function(expr: Expr & { kind: "call" }, target: Evaluator | undefined, args: readonly Evaluator[]): Evaluator {
    const [a, b] = args as [Evaluator, Evaluator];
    const receiver = target ?? a;
    switch (expr.name) {
      case "hasValue":
        return (f) => {
          const o = receiver(f);
          if (o instanceof Optional) return o.present;
          throw REFER;
        };
      case "value": {
        const pos = expr.pos;
        return (f) => {
          const o = receiver(f);
          if (!(o instanceof Optional)) throw REFER;
          if (!o.present) throw errorAt(new CelEvalError("optional.none() dereference"), pos);
          return o.value;
        };
      }
      case "or":
      case "orValue": {
        // Short-circuiting, as in cel-go: the alternative is evaluated only when needed.
        const unwrap = expr.name === "orValue";
        return (f) => {
          const o = receiver(f);
          if (!(o instanceof Optional)) throw REFER;
          if (o.present) return unwrap ? o.value : o;
          const alternative = a(f);
          if (!unwrap && !(alternative instanceof Optional)) throw REFER;
          return alternative;
        };
      }
      case "size":
        return (f) => {
          const v = receiver(f);
          if (typeof v === "string") charge(f, stringCost(v));
          return celSize(v);
        };
      case "contains":
      case "startsWith":
      case "endsWith": {
        const name = expr.name;
        return (f) => {
          const s = receiver(f);
          const x = a(f);
          if (typeof s !== "string" || typeof x !== "string") throw REFER;
          charge(f, stringCost(s));
          return name === "contains" ? s.includes(x) : name === "startsWith" ? s.startsWith(x) : s.endsWith(x);
        };
      }
      case "matches": {
        const patternExpr = target === undefined ? expr.args[1]! : expr.args[0]!;
        const pattern = target === undefined ? b : a;
        let fixed: CompiledRegex | undefined;
        if (patternExpr.kind === "literal" && patternExpr.literal.type === "string") {
          try {
            fixed = compileRegex(patternExpr.literal.value);
          } catch (error) {
            throw new CheckError((error as Error).message, patternExpr.pos);
          }
        }
        return (f) => {
          const s = receiver(f);
          if (typeof s !== "string") throw REFER;
          let re = fixed;
          if (re === undefined) {
            const p = pattern(f);
            if (typeof p !== "string") throw REFER;
            re = compileRegex(p);
          }
          charge(f, stringCost(s));
          return re.test(s);
        };
      }
      case "dyn":
        return a;
      case "int":
        return (f) => {
          const v = a(f);
          if (isInt(v)) return v;
          // strconv.ParseInt(s, 10, 64), as cel-go: optional sign, decimal digits, nothing else.
          if (typeof v === "string" && /^[+-]?[0-9]{1,15}$/.test(v)) return Number(v) || 0;
          throw REFER;
        };
      case "string":
        return (f) => {
          const v = a(f);
          if (typeof v === "string") return v;
          if (typeof v === "boolean" || Number.isSafeInteger(v)) return String(v);
          const library = libraryString(v);
          if (library !== undefined) return library;
          throw REFER;
        };
      case "lowerAscii":
      case "upperAscii": {
        const convert = expr.name === "lowerAscii" ? lowerAscii : upperAscii;
        return (f) => {
          const s = receiver(f);
          if (typeof s !== "string") throw REFER;
          charge(f, stringCost(s));
          return convert(s);
        };
      }
      case "split":
        if (args.length !== 1) break;
        return (f) => {
          const s = receiver(f);
          const separator = a(f);
          if (typeof s !== "string" || typeof separator !== "string" || separator === "") throw REFER;
          charge(f, stringCost(s));
          return s.split(separator);
        };
      case "flatten":
      case "distinct":
      case "sort": {
        if (args.length > 0) break;
        const op = expr.name === "flatten" ? flattenList : expr.name === "distinct" ? distinctList : sortList;
        return (f) => {
          const list = receiver(f);
          if (!Array.isArray(list)) throw REFER;
          charge(f, expr.name === "distinct" ? list.length * list.length : list.length);
          return op(list);
        };
      }
      case "join":
        return (f) => {
          const list = receiver(f);
          const separator = args.length === 1 ? a(f) : "";
          if (!Array.isArray(list) || typeof separator !== "string") throw REFER;
          for (const item of list) if (typeof item !== "string") throw REFER;
          charge(f, list.length);
          return list.join(separator);
        };
      default:
        break;
    }
    return this.library(expr.name, target, args, expr.pos);
  }
}

/** `o.f` through an optional: none stays none; a present value's field, if it has it, is optional.of it. */
function optionalField(o: Optional, field: string): Optional {
  if (!o.present) return o;
  const v = o.value;
  if (isMap(v)) return hasOwn.call(v, field) ? Optional.of(v[field] as CelValue) : Optional.NONE;
  throw REFER;
}

/** `o[i]` through an optional, and `a[?i]`: optional.of the element or entry, none when absent. */
function optionalIndex(o: Optional, i: unknown): Optional {
  if (!o.present) return o;
  const v = o.value;
  if (Array.isArray(v)) {
    if (!isInt(i)) throw REFER;
    return i >= 0 && i < v.length ? Optional.of(v[i] as CelValue) : Optional.NONE;
  }
  if (isMap(v) && typeof i === "string") return hasOwn.call(v, i) ? Optional.of(v[i] as CelValue) : Optional.NONE;
  throw REFER;
}

function logical(a: Evaluator, b: Evaluator, decisive: boolean): Evaluator {
  return (f) => {
    let x: unknown;
    try {
      x = a(f);
    } catch (error) {
      if (!isAbsorbable(error)) throw error;
      const y = b(f);
      if (y === decisive) return decisive;
      if (y === !decisive) throw error;
      throw REFER;
    }
    if (x === decisive) return decisive;
    if (x !== !decisive) throw REFER;
    const y = b(f);
    if (typeof y === "boolean") return y;
    throw REFER;
  };
}

function equality(expr: Expr & { kind: "call" }, a: Evaluator, b: Evaluator, negate: boolean): Evaluator {
  const constant = [expr.args[1], expr.args[0]].find(
    (arg) => arg?.kind === "literal" && (arg.literal.type === "string" || arg.literal.type === "bool" || arg.literal.type === "null"),
  );
  if (constant !== undefined && constant.kind === "literal") {
    // Comparing with a string, bool or null literal is strict equality in every case.
    const value = constant.literal.type === "null" ? null : (constant.literal as { value: unknown }).value;
    const other = constant === expr.args[1] ? a : b;
    return negate ? (f) => other(f) !== value : (f) => other(f) === value;
  }
  return (f) => {
    const x = a(f);
    const y = b(f);
    if (typeof x === "object" && x !== null) charge(f, sizeCost(x));
    return celEquals(x, y) !== negate;
  };
}

function ordering(a: Evaluator, b: Evaluator, test: (r: number) => boolean): Evaluator {
  return (f) => {
    const r = compare(a(f), b(f));
    if (r === undefined) throw REFER;
    return test(r);
  };
}

function numeric(a: Evaluator, b: Evaluator, op: (x: number, y: number) => number): Evaluator {
  return (f) => {
    const x = a(f);
    const y = b(f);
    if (typeof x === "number" && typeof y === "number") return op(x, y);
    throw REFER;
  };
}
