/**
 * The reference evaluator: @bufbuild/cel, the most conformant CEL implementation for
 * ECMAScript (RE2 regular expressions, exact int/uint/double semantics, timestamps,
 * durations, the strings extension). Polity runs an expression here when it uses
 * something the compiled evaluator does not implement, or when a compiled evaluation
 * meets a case only the reference can decide exactly (see runtime.ts).
 *
 * Polity's own parser (better errors, cel.bind) produces the syntax tree; it is handed to
 * @bufbuild/cel's planner as the standard `cel.expr.Expr`, with cost meters woven into
 * comprehension loops and around operands, so a hostile expression is stopped here too.
 *
 * Values cross between Polity and @bufbuild/cel here and nowhere else.
 */
import { createRequire } from "node:module";
import type * as CelLibrary from "@bufbuild/cel";
import type { CelEnv, CelInput, CelList, CelValue as BufValue } from "@bufbuild/cel";
import type * as CelExtensions from "@bufbuild/cel/ext";
import type * as Protobuf from "@bufbuild/protobuf";
import type * as ProtobufWkt from "@bufbuild/protobuf/wkt";
import type * as Syntax from "@bufbuild/cel-spec/cel/expr/syntax_pb.js";
import type { Constant, Expr as ProtoExpr } from "@bufbuild/cel-spec/cel/expr/syntax_pb.js";
import { canonicalJson } from "../canonical/index.js";
import { countNodes, type Expr, type Literal } from "./ast.js";
import { qualifiedFunction } from "./checker.js";
import { FUNCTIONS } from "./functions.js";
import { CelCostLimitError, CelEvalError } from "./errors.js";
import { compileRegex, type Frame } from "./runtime.js";
import { Variables } from "./variables.js";
import { ReferenceValue, type Activation, type CelValue, type CelMapValue } from "./values.js";

/**
 * The reference evaluator's libraries are loaded on first use (their CommonJS builds, so
 * that loading stays synchronous): most processes never need them, and an agent starts
 * faster without. Their values carry Symbol.for brands, so they mix with the ES builds.
 */
const requireCjs = createRequire(import.meta.url);
let loaded:
  | { cel: typeof CelLibrary; ext: typeof CelExtensions; protobuf: typeof Protobuf; wkt: typeof ProtobufWkt; syntax: typeof Syntax }
  | undefined;
function lib() {
  loaded ??= {
    cel: requireCjs("@bufbuild/cel") as typeof CelLibrary,
    ext: requireCjs("@bufbuild/cel/ext") as typeof CelExtensions,
    protobuf: requireCjs("@bufbuild/protobuf") as typeof Protobuf,
    wkt: requireCjs("@bufbuild/protobuf/wkt") as typeof ProtobufWkt,
    syntax: requireCjs("@bufbuild/cel-spec/cel/expr/syntax_pb.js") as typeof Syntax,
  };
  return loaded;
}

const METER = "@polity_meter";
const SIZE = "@polity_size";

/** The frame of the evaluation in progress; evaluation is synchronous, so one at a time. */
let active: (Frame & { exceeded: boolean }) | undefined;

function spend(units: number): void {
  if (active === undefined) return;
  active.cost += units;
  if (active.cost > active.limit) {
    active.exceeded = true;
    throw new CelCostLimitError(`evaluation exceeded its cost limit of ${active.limit}`);
  }
}

function referenceSize(v: BufValue): number {
  if (typeof v === "string") return Math.ceil(v.length * 0.1);
  if (v instanceof Uint8Array) return Math.ceil(v.length * 0.1);
  if (lib().cel.isCelList(v) || lib().cel.isCelMap(v)) return v.size;
  return 1;
}

let environment: CelEnv | undefined;

function env(): CelEnv {
  environment ??= lib().cel.celEnv({
    funcs: [
      ...lib().ext.strings,
      lib().cel.celFunc(METER, [lib().cel.CelScalar.DYN, lib().cel.CelScalar.INT], lib().cel.CelScalar.DYN, (value, units) => {
        spend(Number(units));
        return value as CelInput;
      }),
      lib().cel.celFunc(SIZE, [lib().cel.CelScalar.DYN], lib().cel.CelScalar.DYN, (value) => {
        spend(referenceSize(value));
        return value as CelInput;
      }),
      ...listExtension(),
      // Where @bufbuild/cel departs from cel-go: the global form of matches(), and int(string)
      // accepting what strconv.ParseInt rejects ("", " 7", "0x10").
      lib().cel.celFunc("matches", [lib().cel.CelScalar.STRING, lib().cel.CelScalar.STRING], lib().cel.CelScalar.BOOL, (text, pattern) => compileRegex(pattern).test(text)),
      lib().cel.celFunc("int", [lib().cel.CelScalar.STRING], lib().cel.CelScalar.INT, (text) => {
        if (!/^[+-]?[0-9]+$/.test(text)) throw new Error(`cannot convert ${JSON.stringify(text)} to int`);
        const value = BigInt(text);
        if (value > 9223372036854775807n || value < -9223372036854775808n) throw new Error("int conversion out of range");
        return value;
      }),
    ],
  });
  return environment;
}

/** cel-go's lists extension functions that Polity's compiled evaluator also implements. */
function listExtension() {
  const list = lib().cel.listType(lib().cel.CelScalar.DYN);
  const key = (v: BufValue): string => {
    const polity = fromReference(v);
    return polity instanceof ReferenceValue ? `ref:${String(polity.value)}` : canonicalJson(polity);
  };
  return [
    lib().cel.celMethod("flatten", list, [], list, function (this: CelList) {
      const out: CelInput[] = [];
      for (const item of this) {
        if (lib().cel.isCelList(item)) for (const inner of item) out.push(inner as CelInput);
        else out.push(item as CelInput);
      }
      return lib().cel.celList(out);
    }),
    lib().cel.celMethod("distinct", list, [], list, function (this: CelList) {
      const seen = new Set<string>();
      const out: CelInput[] = [];
      for (const item of this) {
        const k = key(item);
        if (!seen.has(k)) {
          seen.add(k);
          out.push(item as CelInput);
        }
      }
      return lib().cel.celList(out);
    }),
    lib().cel.celMethod("sort", list, [], list, function (this: CelList) {
      const items = [...this];
      const kind = items.length === 0 ? "" : typeof items[0];
      if (items.some((item) => typeof item !== kind) || (items.length > 0 && !["bigint", "number", "string", "boolean"].includes(kind))) {
        throw new Error("sort() needs a list of one orderable type");
      }
      items.sort((a, b) => ((a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0));
      return lib().cel.celList(items as CelInput[]);
    }),
  ];
}

/** Evaluates on the reference; `spent` is told what the evaluation cost (stopped or not). */
export type ReferenceProgram = (activation: Activation, limit: number, spent?: (cost: number) => void) => CelValue;

/**
 * Plans `expr` on the reference evaluator: at once when `eager` (expressions that run there
 * always), else on the first evaluation that needs it (a compiled expression handing over).
 */
export function compileReference(expr: Expr, eager = true): ReferenceProgram {
  type Planned = (bindings: Record<string, CelInput>) => BufValue | CelLibrary.CelError;
  const make = (): Planned => lib().cel.plan(env(), toProto(expr, new Ids())) as Planned;
  let plannedOnce: Planned | undefined = eager ? make() : undefined;
  const planned = (bindings: Record<string, CelInput>) => (plannedOnce ??= make())(bindings);
  return (activation, limit, spent) => {
    const bindings: Record<string, CelInput> = {};
    for (const name of Object.keys(activation)) {
      bindings[name] = toReference(activation[name]);
    }
    const previous = active;
    const frame = { vars: [], cost: 0, limit, exceeded: false };
    active = frame;
    let result: BufValue | CelLibrary.CelError;
    try {
      result = planned(bindings);
    } finally {
      active = previous;
      spent?.(frame.cost);
    }
    if (frame.exceeded) throw new CelCostLimitError(`evaluation exceeded its cost limit of ${limit}`);
    if (lib().cel.isCelError(result)) throw new CelEvalError(result.message);
    return fromReference(result);
  };
}

class Ids {
  private next = 1n;
  id(): bigint {
    return this.next++;
  }
}

function node(ids: Ids, exprKind: ProtoExpr["exprKind"]): ProtoExpr {
  return lib().protobuf.create(lib().syntax.ExprSchema, { id: ids.id(), exprKind });
}

function constant(literal: Literal): Constant {
  switch (literal.type) {
    case "int":
      return lib().protobuf.create(lib().syntax.ConstantSchema, { constantKind: { case: "int64Value", value: literal.value } });
    case "uint":
      return lib().protobuf.create(lib().syntax.ConstantSchema, { constantKind: { case: "uint64Value", value: literal.value } });
    case "double":
      return lib().protobuf.create(lib().syntax.ConstantSchema, { constantKind: { case: "doubleValue", value: literal.value } });
    case "string":
      return lib().protobuf.create(lib().syntax.ConstantSchema, { constantKind: { case: "stringValue", value: literal.value } });
    case "bytes":
      return lib().protobuf.create(lib().syntax.ConstantSchema, { constantKind: { case: "bytesValue", value: literal.value } });
    case "bool":
      return lib().protobuf.create(lib().syntax.ConstantSchema, { constantKind: { case: "boolValue", value: literal.value } });
    case "null":
      return lib().protobuf.create(lib().syntax.ConstantSchema, { constantKind: { case: "nullValue", value: lib().wkt.NullValue.NULL_VALUE } });
  }
}

function call(ids: Ids, fn: string, args: ProtoExpr[], target?: ProtoExpr): ProtoExpr {
  return node(ids, { case: "callExpr", value: lib().protobuf.create(lib().syntax.Expr_CallSchema, { function: fn, args, target }) });
}

function ident(ids: Ids, name: string): ProtoExpr {
  return node(ids, { case: "identExpr", value: lib().protobuf.create(lib().syntax.Expr_IdentSchema, { name }) });
}

function literalExpr(ids: Ids, literal: Literal): ProtoExpr {
  return node(ids, { case: "constExpr", value: constant(literal) });
}

const RESULT = "@result";

/** Operands whose size makes an operation costly are passed through the size meter. */
const SIZED_CALLS = new Set(["@in", "_==_", "_!=_", "_+_", "_<_", "_<=_", "_>_", "_>=_"]);

function toProto(expr: Expr, ids: Ids): ProtoExpr {
  const sub = (e: Expr) => toProto(e, ids);
  switch (expr.kind) {
    case "literal":
      return literalExpr(ids, expr.literal);
    case "ident":
      return ident(ids, expr.name);
    case "select":
      if (expr.optional) {
        return call(ids, "_?._", [sub(expr.operand), literalExpr(ids, { type: "string", value: expr.field })]);
      }
      return node(ids, {
        case: "selectExpr",
        value: lib().protobuf.create(lib().syntax.Expr_SelectSchema, { operand: sub(expr.operand), field: expr.field, testOnly: false }),
      });
    case "has":
      return node(ids, {
        case: "selectExpr",
        value: lib().protobuf.create(lib().syntax.Expr_SelectSchema, { operand: sub(expr.operand), field: expr.field, testOnly: true }),
      });
    case "index":
      return call(ids, expr.optional ? "_[?_]" : "_[_]", [sub(expr.operand), sub(expr.index)]);
    case "list": {
      const optionalIndices = expr.elements.flatMap((e, i) => (e.optional ? [i] : []));
      return node(ids, {
        case: "listExpr",
        value: lib().protobuf.create(lib().syntax.Expr_CreateListSchema, { elements: expr.elements.map((e) => sub(e.value)), optionalIndices }),
      });
    }
    case "map":
      return node(ids, {
        case: "structExpr",
        value: lib().protobuf.create(lib().syntax.Expr_CreateStructSchema, {
          messageName: "",
          entries: expr.entries.map((e) =>
            lib().protobuf.create(lib().syntax.Expr_CreateStruct_EntrySchema, {
              id: ids.id(),
              keyKind: { case: "mapKey", value: sub(e.key) },
              value: sub(e.value),
              optionalEntry: e.optional,
            }),
          ),
        }),
      });
    case "struct":
      return node(ids, {
        case: "structExpr",
        value: lib().protobuf.create(lib().syntax.Expr_CreateStructSchema, {
          messageName: expr.typeName,
          entries: expr.fields.map((f) =>
            lib().protobuf.create(lib().syntax.Expr_CreateStruct_EntrySchema, {
              id: ids.id(),
              keyKind: { case: "fieldKey", value: f.name },
              value: sub(f.value),
              optionalEntry: f.optional,
            }),
          ),
        }),
      });
    case "bind":
      // As cel-go expands cel.bind: a comprehension over nothing whose accumulator is the name.
      return comprehension(ids, {
        iterVar: "#unused",
        iterRange: node(ids, { case: "listExpr", value: lib().protobuf.create(lib().syntax.Expr_CreateListSchema, {}) }),
        accuVar: expr.name,
        accuInit: sub(expr.init),
        loopCondition: literalExpr(ids, { type: "bool", value: false }),
        loopStep: ident(ids, expr.name),
        result: sub(expr.body),
      });
    case "comprehension":
      return expandMacro(expr, ids);
    case "call": {
      const qualified = qualifiedFunction(expr);
      const name = qualified ?? (expr.name.startsWith(".") ? expr.name.slice(1) : expr.name);
      const target = expr.target === undefined || qualified !== undefined ? undefined : sub(expr.target);
      const sized = SIZED_CALLS.has(name) || (FUNCTIONS.has(name) && name !== "dyn");
      const meter = (e: ProtoExpr) => (sized ? call(ids, SIZE, [e]) : e);
      return call(ids, name, expr.args.map((a) => meter(sub(a))), target === undefined ? undefined : meter(target));
    }
  }
}

function comprehension(ids: Ids, parts: {
  iterVar: string;
  iterRange: ProtoExpr;
  accuVar: string;
  accuInit: ProtoExpr;
  loopCondition: ProtoExpr;
  loopStep: ProtoExpr;
  result: ProtoExpr;
}): ProtoExpr {
  return node(ids, { case: "comprehensionExpr", value: lib().protobuf.create(lib().syntax.Expr_ComprehensionSchema, parts) });
}

/** The standard macro expansions of the CEL specification, with a cost meter on each iteration. */
function expandMacro(expr: Expr & { kind: "comprehension" }, ids: Ids): ProtoExpr {
  const sub = (e: Expr) => toProto(e, ids);
  const result = () => ident(ids, RESULT);
  const perIteration = 1 + countNodes(expr.predicate) + countNodes(expr.transform);
  const metered = (condition: ProtoExpr) =>
    call(ids, METER, [condition, literalExpr(ids, { type: "int", value: BigInt(perIteration) })]);
  const bool = (value: boolean) => literalExpr(ids, { type: "bool", value });
  const list = (elements: ProtoExpr[]) =>
    node(ids, { case: "listExpr", value: lib().protobuf.create(lib().syntax.Expr_CreateListSchema, { elements }) });
  const variable = () => ident(ids, expr.variable);
  let accuInit: ProtoExpr;
  let loopCondition: ProtoExpr;
  let loopStep: ProtoExpr;
  let finalResult: ProtoExpr = result();
  switch (expr.macro) {
    case "all":
      accuInit = bool(true);
      loopCondition = call(ids, "@not_strictly_false", [result()]);
      loopStep = call(ids, "_&&_", [result(), sub(expr.predicate!)]);
      break;
    case "exists":
      accuInit = bool(false);
      loopCondition = call(ids, "@not_strictly_false", [call(ids, "!_", [result()])]);
      loopStep = call(ids, "_||_", [result(), sub(expr.predicate!)]);
      break;
    case "exists_one":
      accuInit = literalExpr(ids, { type: "int", value: 0n });
      loopCondition = bool(true);
      loopStep = call(ids, "_?_:_", [
        sub(expr.predicate!),
        call(ids, "_+_", [result(), literalExpr(ids, { type: "int", value: 1n })]),
        result(),
      ]);
      finalResult = call(ids, "_==_", [result(), literalExpr(ids, { type: "int", value: 1n })]);
      break;
    case "map": {
      accuInit = list([]);
      loopCondition = bool(true);
      const append = call(ids, "_+_", [result(), list([sub(expr.transform!)])]);
      loopStep = expr.predicate === undefined ? append : call(ids, "_?_:_", [sub(expr.predicate), append, result()]);
      break;
    }
    case "filter":
      accuInit = list([]);
      loopCondition = bool(true);
      loopStep = call(ids, "_?_:_", [sub(expr.predicate!), call(ids, "_+_", [result(), list([variable()])]), result()]);
      break;
  }
  return comprehension(ids, {
    iterVar: expr.variable,
    iterRange: sub(expr.range),
    accuVar: RESULT,
    accuInit,
    loopCondition: metered(loopCondition),
    loopStep,
    result: finalResult,
  });
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
      if (value instanceof Variables) return toReference(value.evaluated());
      if (Array.isArray(value)) return lib().cel.celList(value.map(toReference));
      const entries = new Map<string, CelInput>();
      for (const key of Object.keys(value)) {
        entries.set(key, toReference((value as Record<string, unknown>)[key]));
      }
      return lib().cel.celMap(entries);
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
  if (lib().cel.isCelUint(value)) return new ReferenceValue(value);
  if (lib().cel.isCelList(value)) {
    const out: CelValue[] = [];
    for (const element of value) {
      const converted = fromReference(element);
      if (converted instanceof ReferenceValue) return new ReferenceValue(value);
      out.push(converted);
    }
    return out;
  }
  if (lib().cel.isCelMap(value)) {
    const out: Record<string, CelValue> = {};
    for (const [key, element] of value) {
      if (typeof key !== "string") return new ReferenceValue(value);
      const converted = fromReference(element);
      if (converted instanceof ReferenceValue) return new ReferenceValue(value);
      if (key === "__proto__") {
        Object.defineProperty(out, key, { value: converted, enumerable: true, writable: true, configurable: true });
      } else {
        out[key] = converted;
      }
    }
    return out as CelMapValue;
  }
  return new ReferenceValue(value);
}

