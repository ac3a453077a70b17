/**
 * Static checks of a parsed expression, before anything runs:
 * - every identifier is a declared variable, a comprehension or cel.bind variable, or a type name;
 * - every function exists with that many arguments, and where argument types are known
 *   statically (literals, operators over them) an overload matches them;
 * - which evaluator will run it: the compiled one, unless the expression uses something only
 *   the reference evaluator implements (uint, bytes, timestamps, optionals, messages, …).
 *
 * Admission data is dynamic (`object` is whatever was sent), so most types are `dyn` here;
 * what can be known is checked, as cel-go's checker would with an untyped object.
 */
import type { Expr } from "./ast.js";
import { assignable, FUNCTIONS, staticTypeOf, TYPE_NAMES, type DeclaredType, type StaticType } from "./functions.js";
import { compileRegex } from "./runtime.js";

export class CheckError extends Error {
  constructor(
    message: string,
    readonly pos: number,
  ) {
    super(message);
  }
}

export interface CheckResult {
  readonly type: StaticType;
  /** Whether the compiled evaluator implements everything the expression uses. */
  readonly compiled: boolean;
  /** Select nodes that name a variable with a dotted name (`a.b.c` declared as such). */
  readonly qualifiedVariables: WeakMap<Expr, string>;
  /** `variables.<name>` select nodes, with the name's declaration index. */
  readonly variableIndex: WeakMap<Expr, number>;
}

export interface CheckOptions {
  readonly variables: ReadonlySet<string>;
  /** Report overload mismatches between statically known types (on by default). */
  readonly typeCheck: boolean;
  /** When `variables` holds a policy's variables: the names defined. */
  readonly variableNames?: ReadonlySet<string>;
  /** Variables whose type is known: selecting a field their type does not have is an error. */
  readonly declarations?: Readonly<Record<string, DeclaredType>>;
  /**
   * Kubernetes' stricter checks: list and map literals of one type (cel-go's
   * HomogeneousAggregateLiterals), and conditionals whose branches have one type.
   */
  readonly strict?: boolean;
  /** Why a variable that is not declared here is not (`params` of a policy without params). */
  readonly undeclaredReasons?: Readonly<Record<string, string>>;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

const ARITHMETIC: Record<string, readonly (readonly [StaticType, StaticType, StaticType])[]> = {
  "_+_": [
    ["int", "int", "int"],
    ["uint", "uint", "uint"],
    ["double", "double", "double"],
    ["string", "string", "string"],
    ["bytes", "bytes", "bytes"],
    ["list", "list", "list"],
    ["timestamp", "duration", "timestamp"],
    ["duration", "timestamp", "timestamp"],
    ["duration", "duration", "duration"],
  ],
  "_-_": [
    ["int", "int", "int"],
    ["uint", "uint", "uint"],
    ["double", "double", "double"],
    ["timestamp", "timestamp", "duration"],
    ["timestamp", "duration", "timestamp"],
    ["duration", "duration", "duration"],
  ],
  "_*_": [
    ["int", "int", "int"],
    ["uint", "uint", "uint"],
    ["double", "double", "double"],
  ],
  "_/_": [
    ["int", "int", "int"],
    ["uint", "uint", "uint"],
    ["double", "double", "double"],
  ],
  "_%_": [
    ["int", "int", "int"],
    ["uint", "uint", "uint"],
  ],
};

const ORDERED = new Set<StaticType>(["int", "uint", "double", "string", "bytes", "bool", "timestamp", "duration"]);
const NUMERIC = new Set<StaticType>(["int", "uint", "double"]);

export function checkExpression(expr: Expr, options: CheckOptions): CheckResult {
  const checker = new Checker(options);
  const type = checker.check(expr, []);
  return { type, compiled: checker.compiled, qualifiedVariables: checker.qualifiedVariables, variableIndex: checker.variableIndex };
}

class Checker {
  compiled = true;
  /** The declared types of the expressions that have one (from options.declarations). */
  private readonly declared = new WeakMap<Expr, DeclaredType>();
  readonly qualifiedVariables = new WeakMap<Expr, string>();
  readonly variableIndex = new WeakMap<Expr, number>();

  constructor(private readonly options: CheckOptions) {}

  private reference(): void {
    this.compiled = false;
  }

  private mismatch(name: string, pos: number, types: readonly StaticType[], target?: StaticType): never {
    const display = name.replace(/^_(.*)_$/, "$1").replace(/^@in$/, "in");
    const args = `(${types.join(", ")})`;
    throw new CheckError(
      `found no matching overload for '${display}' applied to '${target === undefined ? args : `${target}.${args}`}'`,
      pos,
    );
  }

  check(expr: Expr, locals: readonly string[]): StaticType {
    switch (expr.kind) {
      case "literal":
        return this.literal(expr);
      case "ident": {
        const type = this.ident(expr.name, expr.pos, locals);
        const declared = expr.name.startsWith(".") || locals.includes(expr.name) ? undefined : this.options.declarations?.[expr.name.replace(/^\./, "")];
        if (declared === undefined) return type;
        this.declared.set(expr, declared);
        return staticTypeOf(declared);
      }
      case "select": {
        this.checkVariableName(expr, locals);
        const qualified = expr.optional ? undefined : this.resolveQualified(expr, locals);
        if (qualified !== undefined) return "dyn";
        const operand = this.check(expr.operand, locals);
        if (this.options.typeCheck && operand !== "dyn" && operand !== "map" && operand !== "optional") {
          throw new CheckError(`type '${operand}' does not support field selection`, expr.pos);
        }
        const field = this.declaredField(expr.operand, expr.field, expr.pos);
        // Through an optional, a selection is optional too (optional chaining).
        if (expr.optional || operand === "optional") return "optional";
        if (field === undefined) return "dyn";
        this.declared.set(expr, field);
        return staticTypeOf(field);
      }
      case "has": {
        this.checkVariableName(expr, locals);
        const operand = this.check(expr.operand, locals);
        if (this.options.typeCheck && operand !== "dyn" && operand !== "map" && operand !== "optional") {
          throw new CheckError(`type '${operand}' does not support field selection`, expr.pos);
        }
        this.declaredField(expr.operand, expr.field, expr.pos);
        return "bool";
      }
      case "index": {
        const operand = this.check(expr.operand, locals);
        const index = this.check(expr.index, locals);
        if (this.options.typeCheck) {
          if (operand === "list" && !assignable("int", index) && index !== "uint" && index !== "double") {
            this.mismatch("_[_]", expr.pos, [operand, index]);
          }
          if (operand !== "list" && operand !== "map" && operand !== "dyn" && operand !== "optional") {
            this.mismatch("_[_]", expr.pos, [operand, index]);
          }
        }
        if (expr.optional || operand === "optional") return "optional";
        const element = this.declared.get(expr.operand);
        if (element !== undefined && typeof element !== "string" && !("object" in element)) {
          const type = "list" in element ? element.list : element.map;
          this.declared.set(expr, type);
          return staticTypeOf(type);
        }
        return "dyn";
      }
      case "list": {
        const types: [StaticType, number][] = [];
        for (const element of expr.elements) {
          const type = this.check(element.value, locals);
          if (element.optional) this.optionalEntry(type, element.value.pos);
          else types.push([type, element.value.pos]);
        }
        this.homogeneous(types);
        return "list";
      }
      case "map": {
        const keys: [StaticType, number][] = [];
        const values: [StaticType, number][] = [];
        for (const entry of expr.entries) {
          const key = this.check(entry.key, locals);
          if (this.options.typeCheck && !["dyn", "string", "int", "uint", "bool"].includes(key)) {
            throw new CheckError(`unsupported map key type '${key}'`, entry.key.pos);
          }
          keys.push([key, entry.key.pos]);
          const type = this.check(entry.value, locals);
          if (entry.optional) this.optionalEntry(type, entry.value.pos);
          else values.push([type, entry.value.pos]);
        }
        this.homogeneous(keys);
        this.homogeneous(values);
        return "map";
      }
      case "struct":
        this.reference();
        for (const field of expr.fields) this.check(field.value, locals);
        return "dyn";
      case "comprehension": {
        const range = this.check(expr.range, locals);
        if (this.options.typeCheck && range !== "dyn" && range !== "list" && range !== "map") {
          throw new CheckError(`${expr.macro}() needs a list or a map, not '${range}'`, expr.pos);
        }
        const inner = expr.variable2 === undefined ? [...locals, expr.variable] : [...locals, expr.variable, expr.variable2];
        let predicate: StaticType = "bool";
        if (expr.predicate !== undefined) predicate = this.check(expr.predicate, inner);
        const transform = expr.transform === undefined ? undefined : this.check(expr.transform, inner);
        if (this.options.typeCheck && !assignable("bool", predicate)) {
          throw new CheckError(`the predicate of ${expr.macro}() must be a bool, not '${predicate}'`, expr.predicate!.pos);
        }
        if (this.options.typeCheck && expr.macro === "transformMapEntry" && transform !== undefined && !assignable("map", transform)) {
          throw new CheckError(`the transform of transformMapEntry() must be a map, not '${transform}'`, expr.transform!.pos);
        }
        switch (expr.macro) {
          case "map":
          case "filter":
          case "transformList":
            return "list";
          case "transformMap":
          case "transformMapEntry":
            return "map";
          default:
            return "bool";
        }
      }
      case "bind":
        this.check(expr.init, locals);
        return this.check(expr.body, [...locals, expr.name]);
      case "call":
        return this.call(expr, locals);
    }
  }

  /** The declared type of `operand`'s field, when `operand`'s type is declared; an undeclared field is an error. */
  private declaredField(operand: Expr, field: string, pos: number): DeclaredType | undefined {
    const type = this.declared.get(operand);
    if (type === undefined || typeof type === "string" || "list" in type) return undefined;
    if ("map" in type) return type.map;
    if (!Object.hasOwn(type.fields, field)) {
      throw new CheckError(`undefined field '${field}' (${type.object} has ${Object.keys(type.fields).join(", ")})`, pos);
    }
    return type.fields[field];
  }

  /** Under strict checks, the elements (or keys, or values) of a literal have one type, as in Kubernetes. */
  private homogeneous(types: readonly [StaticType, number][]): void {
    if (!this.options.strict) return;
    const known = types.filter(([t]) => t !== "dyn" && t !== "null");
    const first = known[0];
    const other = known.find(([t]) => t !== first?.[0]);
    if (first !== undefined && other !== undefined) {
      throw new CheckError(`expected type '${first[0]}' but found '${other[0]}': the elements of a list or map literal must have one type (wrap one in dyn() to mix them)`, other[1]);
    }
  }

  /** `[?x]`, `{?k: x}`: x must be an optional. */
  private optionalEntry(type: StaticType, pos: number): void {
    if (this.options.typeCheck && type !== "optional" && type !== "dyn") {
      throw new CheckError(`an optional entry ('?') needs an optional value, not '${type}'`, pos);
    }
  }

  /** `variables.<name>` must name a defined variable. */
  private checkVariableName(expr: Expr & { kind: "select" | "has" }, locals: readonly string[]): void {
    const names = this.options.variableNames;
    if (names === undefined || expr.operand.kind !== "ident" || expr.operand.name !== "variables" || locals.includes("variables")) return;
    if (!names.has(expr.field)) {
      const known = names.size === 0 ? "none are defined" : `defined: ${[...names].join(", ")}`;
      throw new CheckError(`variables.${expr.field} is not defined (${known})`, expr.pos);
    }
    if (expr.kind === "select") this.variableIndex.set(expr, [...names].indexOf(expr.field));
  }

  private literal(expr: Expr & { kind: "literal" }): StaticType {
    const literal = expr.literal;
    switch (literal.type) {
      case "int":
        if (literal.value > MAX_SAFE || literal.value < -MAX_SAFE) this.reference();
        return "int";
      case "double":
        // JSON cannot tell 2.0 from 2: an integral double is only exact on the reference.
        if (Number.isInteger(literal.value)) this.reference();
        return "double";
      case "uint":
      case "bytes":
        this.reference();
        return literal.type;
      case "string":
      case "bool":
        return literal.type;
      case "null":
        return "null";
    }
  }

  private ident(name: string, pos: number, locals: readonly string[]): StaticType {
    if (!name.startsWith(".") && locals.includes(name)) return "dyn";
    const bare = name.startsWith(".") ? name.slice(1) : name;
    if (this.options.variables.has(bare)) return "dyn";
    if (TYPE_NAMES.has(bare)) {
      this.reference();
      return "type";
    }
    const reason = this.options.undeclaredReasons?.[bare];
    if (reason !== undefined) throw new CheckError(`undeclared reference to '${bare}': ${reason}`, pos);
    if (bare === "authorizer" || bare === "paramsAuthorizer") {
      throw new CheckError(
        `the Kubernetes authorizer library is not available: a Polity decision is made from the request and the policies alone, and cannot ask the API server's authorizer (authorizer.group(…).resource(…).check(…)); check request.userInfo.groups or request.userInfo.username instead`,
        pos,
      );
    }
    if (!this.options.typeCheck) {
      this.reference();
      return "dyn";
    }
    throw new CheckError(`undeclared reference to '${bare}'`, pos);
  }

  /**
   * `a.b.c` may name a variable declared with a dotted name; CEL resolves the longest
   * declared prefix. Comprehension variables shadow such names.
   */
  private resolveQualified(expr: Expr & { kind: "select" }, locals: readonly string[]): string | undefined {
    const parts: string[] = [];
    let node: Expr = expr;
    while (node.kind === "select" && !node.optional) {
      parts.unshift(node.field);
      node = node.operand;
    }
    if (node.kind !== "ident") return undefined;
    const root = node.name.startsWith(".") ? node.name.slice(1) : node.name;
    if (!node.name.startsWith(".") && locals.includes(root)) return undefined;
    const full = [root, ...parts].join(".");
    if (this.options.variables.has(full)) {
      this.qualifiedVariables.set(expr, full);
      return full;
    }
    return undefined;
  }

  private call(expr: Expr & { kind: "call" }, locals: readonly string[]): StaticType {
    // A qualified global function such as strings.quote(s) parses as a method on an identifier.
    const qualified = qualifiedFunction(expr);
    const target = expr.target === undefined || qualified ? undefined : this.check(expr.target, locals);
    const args = expr.args.map((arg) => this.check(arg, locals));
    const typeCheck = this.options.typeCheck;
    const [a, b] = args as [StaticType, StaticType];
    switch (expr.name) {
      case "_&&_":
      case "_||_":
        if (typeCheck && (!assignable("bool", a) || !assignable("bool", b))) this.mismatch(expr.name, expr.pos, args);
        return "bool";
      case "!_":
        if (typeCheck && !assignable("bool", a)) this.mismatch(expr.name, expr.pos, args);
        return "bool";
      case "-_":
        if (typeCheck && a !== "dyn" && a !== "int" && a !== "double" && a !== "duration") this.mismatch(expr.name, expr.pos, args);
        return a === "dyn" ? "dyn" : a;
      case "_?_:_": {
        if (typeCheck && !assignable("bool", a)) this.mismatch(expr.name, expr.pos, args);
        const [, t, f] = args as [StaticType, StaticType, StaticType];
        if (this.options.strict && t !== f && t !== "dyn" && f !== "dyn" && t !== "null" && f !== "null") {
          throw new CheckError(`the two branches of a conditional must have one type, not '${t}' and '${f}' (wrap one in dyn() to mix them)`, expr.pos);
        }
        return t === f ? t : "dyn";
      }
      case "_==_":
      case "_!=_":
        return "bool";
      case "_<_":
      case "_<=_":
      case "_>_":
      case "_>=_":
        if (typeCheck && a !== "dyn" && b !== "dyn") {
          const comparable = a === b || (NUMERIC.has(a) && NUMERIC.has(b));
          if (!comparable || !ORDERED.has(a)) this.mismatch(expr.name, expr.pos, args);
        }
        return "bool";
      case "@in":
        if (typeCheck && b !== "dyn" && b !== "list" && b !== "map") this.mismatch(expr.name, expr.pos, args);
        return "bool";
      default:
        break;
    }
    const arithmetic = ARITHMETIC[expr.name];
    if (arithmetic !== undefined) {
      if (a === "dyn" || b === "dyn") {
        if (a === "uint" || b === "uint" || a === "timestamp" || b === "timestamp" || a === "duration" || b === "duration") {
          this.reference();
        }
        return a === "dyn" ? b === "list" || b === "string" ? b : "dyn" : a === "list" || a === "string" ? a : "dyn";
      }
      const overload = arithmetic.find(([x, y]) => x === a && y === b);
      if (overload === undefined) {
        if (typeCheck) this.mismatch(expr.name, expr.pos, args);
        return "dyn";
      }
      if (!["int", "double", "string", "list"].includes(overload[2])) this.reference();
      return overload[2];
    }
    return this.function(expr, target, args);
  }

  private function(expr: Expr & { kind: "call" }, target: StaticType | undefined, args: readonly StaticType[]): StaticType {
    const name = qualifiedFunction(expr) ?? (expr.name.startsWith(".") ? expr.name.slice(1) : expr.name);
    const decl = FUNCTIONS.get(name);
    if (decl === undefined) {
      if (!this.options.typeCheck) {
        // Unchecked, as cel-go without its checker: an unknown function is a runtime error.
        this.reference();
        return "dyn";
      }
      throw new CheckError(`undeclared reference to function '${name}'`, expr.pos);
    }
    const shaped = decl.overloads.filter(
      (overload) => (overload.target === undefined) === (target === undefined) && overload.args.length === args.length,
    );
    if (shaped.length === 0) {
      const style = target === undefined ? "a function" : "a method";
      throw new CheckError(
        `'${name}' cannot be called as ${style} with ${args.length} argument${args.length === 1 ? "" : "s"}`,
        expr.pos,
      );
    }
    const matching = shaped.filter(
      (overload) =>
        (overload.target === undefined || assignable(overload.target, target!)) &&
        overload.args.every((t, i) => assignable(t, args[i]!)),
    );
    if (matching.length === 0) {
      if (this.options.typeCheck) this.mismatch(name, expr.pos, args, target);
      this.reference();
      return "dyn";
    }
    if (!decl.compiled) this.reference();
    if ((name === "find" || name === "findAll") && expr.args[0]?.kind === "literal" && expr.args[0].literal.type === "string") {
      // As Kubernetes validates regular expression literals when an expression is compiled.
      try {
        compileRegex(expr.args[0].literal.value);
      } catch (error) {
        throw new CheckError((error as Error).message, expr.args[0].pos);
      }
    }
    const results = new Set(matching.map((overload) => overload.result));
    return results.size === 1 ? [...results][0]! : "dyn";
  }
}

/** `strings.quote(s)`: the name of a namespaced global function called through its namespace. */
export function qualifiedFunction(expr: Expr & { kind: "call" }): string | undefined {
  if (expr.target?.kind !== "ident") return undefined;
  const name = `${expr.target.name}.${expr.name}`;
  return FUNCTIONS.has(name) ? name : undefined;
}
