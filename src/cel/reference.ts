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
import { countNodes, someNode, type Expr, type Literal } from "./ast.js";
import { qualifiedFunction } from "./checker.js";
import { FUNCTIONS } from "./functions.js";
import { CelCostLimitError, CelEvalError } from "./errors.js";
import { compileRegex, type Frame } from "./runtime.js";
import { Variables } from "./variables.js";
import { KUBERNETES_FUNCTIONS, libraryString, NO_OVERLOAD, noOverload } from "./kubernetes/library.js";
import { KubernetesValue, Optional, ReferenceValue, type Activation, type CelValue, type CelMapValue } from "./values.js";

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

/**
 * An optional inside the reference evaluator, which has no optional type: it passes for a
 * list of zero or one element (so @bufbuild/cel carries it and compares two optionals as
 * CEL does), and only Polity's optional functions see it as an optional.
 */
const LIST_BRAND: unique symbol = Symbol.for("@bufbuild/cel/list");

class ReferenceOptional implements Iterable<BufValue> {
  readonly [LIST_BRAND] = {};
  constructor(
    readonly present: boolean,
    readonly value: BufValue,
  ) {}

  get size(): number {
    return this.present ? 1 : 0;
  }

  get(index: number): BufValue | undefined {
    return index === 0 && this.present ? this.value : undefined;
  }

  *values(): IterableIterator<BufValue> {
    if (this.present) yield this.value;
  }

  [Symbol.iterator](): IterableIterator<BufValue> {
    return this.values();
  }
}

const NONE = new ReferenceOptional(false, null);

function isOptional(v: unknown): v is ReferenceOptional {
  return v instanceof ReferenceOptional;
}

function optionalOperand(v: BufValue, what: string): ReferenceOptional {
  if (!isOptional(v)) throw new Error(`found no matching overload for '${what}' applied to '${lib().cel.celType(v).name}'`);
  return v;
}

/** `m.f` / `m[k]` as an optional: optional.of the entry, none when absent; through an optional when `v` is one. */
function optionalEntry(v: BufValue, key: BufValue, field: boolean): ReferenceOptional {
  if (isOptional(v)) {
    if (!v.present) return v;
    v = v.value;
  }
  const { cel } = lib();
  if (cel.isCelMap(v)) {
    const entry = v.get(key as never);
    return entry === undefined ? NONE : new ReferenceOptional(true, entry);
  }
  if (!field && cel.isCelList(v)) {
    let i: number;
    if (typeof key === "bigint") i = Number(key);
    else if (cel.isCelUint(key)) i = Number(key.value);
    else if (typeof key === "number" && Number.isInteger(key)) i = key;
    else throw new Error(`found no matching overload for '_[?_]' applied to '(list, ${cel.celType(key).name})'`);
    const element = i >= 0 && i < v.size ? v.get(i) : undefined;
    return element === undefined ? NONE : new ReferenceOptional(true, element);
  }
  throw new Error(field ? `type '${cel.celType(v).name}' does not support field selection` : `found no matching overload for '_[?_]' applied to '${cel.celType(v).name}'`);
}

/** Map keys are equal as CEL compares them: 0, 0u and 0.0 are one key. */
function sameKey(a: BufValue, b: BufValue): boolean {
  const { cel } = lib();
  const numeric = (v: BufValue) => (cel.isCelUint(v) ? v.value : typeof v === "number" && Number.isInteger(v) ? BigInt(v) : v);
  return numeric(a) === numeric(b);
}

/** Zero values, for optional.ofNonZeroValue. */
function isZero(v: BufValue): boolean {
  const { cel } = lib();
  if (v === null || v === false || v === 0 || v === 0n || v === "") return true;
  if (v instanceof Uint8Array) return v.length === 0;
  if (cel.isCelUint(v)) return v.value === 0n;
  if (cel.isCelList(v) || cel.isCelMap(v)) return v.size === 0;
  return false;
}

/** The optional library and the helpers optional chaining and two-variable comprehensions are written with. */
function optionalFunctions() {
  const { cel } = lib();
  const DYN = cel.CelScalar.DYN;
  const list = cel.listType(DYN);
  const fn = (name: string, args: CelLibrary.CelType[], impl: (...args: BufValue[]) => unknown) =>
    cel.celFunc(name, args, DYN, impl as never);
  return [
    fn("optional.of", [DYN], (v) => new ReferenceOptional(true, v)),
    fn("optional.none", [], () => NONE),
    fn("optional.ofNonZeroValue", [DYN], (v) => (isZero(v) ? NONE : new ReferenceOptional(true, v))),
    cel.celMethod("hasValue", list, [], cel.CelScalar.BOOL, function (this: BufValue) {
      return optionalOperand(this, "hasValue").present;
    }),
    cel.celMethod("value", list, [], DYN, function (this: BufValue) {
      const o = optionalOperand(this, "value");
      if (!o.present) throw new Error("optional.none() dereference");
      return o.value as CelInput;
    }),
    fn(OPT_SELECT, [DYN, DYN], (v, field) => optionalEntry(v, field, true)),
    fn(OPT_INDEX, [DYN, DYN], (v, key) => optionalEntry(v, key, false)),
    fn(IS_OPTIONAL, [DYN], (v) => isOptional(v)),
    // type(): an optional's type is optional_type, a library value's its library's type.
    fn(TYPE_OF, [DYN], (v) => {
      if (isOptional(v)) return cel.objectType("optional_type");
      if (v instanceof ReferenceKubernetesValue) return cel.objectType(v.value.typeName);
      return cel.celType(v);
    }),
    fn(OPTIONAL_TYPE, [], () => cel.objectType("optional_type")),
    fn(HAS, [DYN, DYN], (v, field) => {
      if (isOptional(v)) {
        if (!v.present) return false;
        v = v.value;
      }
      if (cel.isCelMap(v)) return v.get(field as string) !== undefined;
      throw new Error(`type '${cel.celType(v).name}' does not support field selection`);
    }),
    // `[a, ?b]` and `{?k: v}`: the optional entries that hold a value, unwrapped.
    fn(OPT_LIST, [list, list], (values, flags) => {
      const out: BufValue[] = [];
      const f = [...(flags as CelList)];
      [...(values as CelList)].forEach((v, i) => {
        if (f[i] !== true) out.push(v);
        else if (!isOptional(v)) throw new Error("cannot initialize an optional list element from a non-optional value");
        else if (v.present) out.push(v.value);
      });
      return cel.celList(out as CelInput[]);
    }),
    fn(OPT_MAP, [list, list, list], (keys, values, flags) => {
      const entries = new Map<BufValue, BufValue>();
      const k = [...(keys as CelList)];
      const f = [...(flags as CelList)];
      [...(values as CelList)].forEach((v, i) => {
        const key = k[i]!;
        if (typeof key === "number" || key === null || (typeof key === "object" && !cel.isCelUint(key))) throw new Error("unsupported key type");
        if ([...entries.keys()].some((seen) => sameKey(seen, key))) throw new Error(`map key conflict: ${String(key)}`);
        if (f[i] !== true) entries.set(key, v);
        else if (!isOptional(v)) throw new Error("cannot initialize an optional map entry from a non-optional value");
        else if (v.present) entries.set(key, v.value);
      });
      return cel.celMap(entries as never);
    }),
    // Two-variable comprehensions: iterate [index or key, element or value] pairs.
    fn(ENTRIES, [DYN], (range) => {
      if (cel.isCelList(range)) return cel.celList([...range].map((v, i) => cel.celList([BigInt(i), v as CelInput])));
      if (cel.isCelMap(range)) return cel.celList([...range.keys()].map((k) => cel.celList([k as CelInput, range.get(k as never) as CelInput])));
      throw new Error(`type mismatch: iterable vs ${cel.celType(range).name}`);
    }),
    fn(MAP_INSERT, [DYN, DYN, DYN], (map, key, value) => {
      const entries = new Map<BufValue, BufValue>(map as CelLibrary.CelMap as never);
      entries.set(key, value);
      return cel.celMap(entries as never);
    }),
    fn(MAP_MERGE, [DYN, DYN], (map, entry) => {
      if (!cel.isCelMap(entry)) throw new Error("transformMapEntry() needs its transform to give a map");
      const entries = new Map<BufValue, BufValue>(map as CelLibrary.CelMap as never);
      for (const [k, v] of entry) {
        if ((map as CelLibrary.CelMap).get(k as never) !== undefined) throw new Error(`insert failed: key ${String(k)} already exists`);
        entries.set(k, v);
      }
      return cel.celMap(entries as never);
    }),
  ];
}

/** A Kubernetes library value inside the reference evaluator: a list of its key, so that equality is the library's. */
class ReferenceKubernetesValue implements Iterable<BufValue> {
  readonly [LIST_BRAND] = {};
  constructor(readonly value: KubernetesValue) {}

  get size(): number {
    return 1;
  }

  get(index: number): BufValue | undefined {
    return index === 0 ? this.value.key() : undefined;
  }

  *values(): IterableIterator<BufValue> {
    yield this.value.key();
  }

  [Symbol.iterator](): IterableIterator<BufValue> {
    return this.values();
  }
}

/** The Kubernetes libraries (kubernetes/library.ts), on Polity's values, as @bufbuild/cel functions and methods. */
function kubernetesFunctions() {
  const { cel } = lib();
  const DYN = cel.CelScalar.DYN;
  const out: CelLibrary.CelFunc[] = [];
  for (const [name, library] of KUBERNETES_FUNCTIONS) {
    const run = (receiver: BufValue | undefined, args: BufValue[]): CelInput => {
      const r = receiver === undefined ? undefined : fromReference(receiver, true);
      const values = args.map((a) => fromReference(a, true));
      const result = library.call(r, values, spend);
      if (result === NO_OVERLOAD) throw noOverload(name, r, values);
      return toReference(result);
    };
    const arities = new Set(library.overloads.filter((x) => x.target === undefined).map((x) => x.args.length));
    for (const n of arities) {
      out.push(cel.celFunc(name, new Array<CelLibrary.CelType>(n).fill(DYN), DYN, (...args: BufValue[]) => run(undefined, args)));
    }
    const methodArities = new Set(library.overloads.filter((x) => x.target !== undefined).map((x) => x.args.length));
    for (const n of methodArities) {
      out.push(
        cel.celMethod(name, DYN, new Array<CelLibrary.CelType>(n).fill(DYN), DYN, function (this: BufValue, ...args: BufValue[]) {
          return run(this, args);
        }),
      );
    }
  }
  // string(ip), string(cidr)
  out.push(cel.celFunc("string", [DYN], cel.CelScalar.STRING, (v: BufValue) => {
    const s = libraryString(fromReference(v));
    if (s === undefined) throw noOverload("string", undefined, [fromReference(v)]);
    return s;
  }));
  return out;
}

const OPT_SELECT = "@polity_opt_select";
const OPT_INDEX = "@polity_opt_index";
const IS_OPTIONAL = "@polity_is_optional";
const TYPE_OF = "@polity_type";
const OPTIONAL_TYPE = "@polity_optional_type";
const HAS = "@polity_has";
const OPT_LIST = "@polity_opt_list";
const OPT_MAP = "@polity_opt_map";
const ENTRIES = "@polity_entries";
const MAP_INSERT = "@polity_map_insert";
const MAP_MERGE = "@polity_map_merge";
/** Names the expansions bind values to: no identifier of an expression can start with '@'. */
const HELD = "@held";
const ENTRY = "@entry";

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
      ...optionalFunctions(),
      ...kubernetesFunctions(),
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
export function compileReference(expr: Expr, eager = true, qualified?: WeakMap<Expr, string>): ReferenceProgram {
  type Planned = (bindings: Record<string, CelInput>) => BufValue | CelLibrary.CelError;
  const make = (): Planned => lib().cel.plan(env(), toProto(expr, new Ids(mayMeetOptionals(expr), qualified))) as Planned;
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
  constructor(
    /**
     * Whether selections and indexes must look for optionals (optional chaining): in
     * expressions that make or may receive optionals. Others are planned as before.
     */
    readonly chaining = false,
    /** Select nodes that name a dotted variable: selected as @bufbuild/cel resolves them. */
    readonly qualified: WeakMap<Expr, string> = new WeakMap(),
  ) {}

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

const OPTIONAL_CALLS = new Set(["hasValue", "value", "or", "orValue", "of", "none", "ofNonZeroValue"]);

/** Whether an expression makes optionals, or may receive one (from a policy's variables). */
function mayMeetOptionals(expr: Expr): boolean {
  return someNode(expr, (e) => {
    switch (e.kind) {
      case "select":
      case "index":
        return e.optional;
      case "list":
        return e.elements.some((x) => x.optional);
      case "map":
        return e.entries.some((x) => x.optional);
      case "call":
        return OPTIONAL_CALLS.has(e.name);
      case "ident":
        return e.name === "variables";
      default:
        return false;
    }
  });
}

function bindProto(ids: Ids, name: string, init: ProtoExpr, body: ProtoExpr): ProtoExpr {
  // As cel-go expands cel.bind: a comprehension over nothing whose accumulator is the name.
  return comprehension(ids, {
    iterVar: "#unused",
    iterRange: node(ids, { case: "listExpr", value: lib().protobuf.create(lib().syntax.Expr_CreateListSchema, {}) }),
    accuVar: name,
    accuInit: init,
    loopCondition: literalExpr(ids, { type: "bool", value: false }),
    loopStep: ident(ids, name),
    result: body,
  });
}

/** `operand` held once, then `whenOptional(held)` if it is an optional, else `plain(held)`. */
function chained(ids: Ids, operand: ProtoExpr, plain: (held: ProtoExpr) => ProtoExpr, whenOptional: (held: ProtoExpr) => ProtoExpr): ProtoExpr {
  const held = () => ident(ids, HELD);
  return bindProto(ids, HELD, operand, call(ids, "_?_:_", [call(ids, IS_OPTIONAL, [held()]), whenOptional(held()), plain(held())]));
}

function listProto(ids: Ids, elements: ProtoExpr[]): ProtoExpr {
  return node(ids, { case: "listExpr", value: lib().protobuf.create(lib().syntax.Expr_CreateListSchema, { elements }) });
}

function selectProto(ids: Ids, operand: ProtoExpr, field: string, testOnly: boolean): ProtoExpr {
  return node(ids, { case: "selectExpr", value: lib().protobuf.create(lib().syntax.Expr_SelectSchema, { operand, field, testOnly }) });
}

/** Operands whose size makes an operation costly are passed through the size meter. */
const SIZED_CALLS = new Set(["@in", "_==_", "_!=_", "_+_", "_<_", "_<=_", "_>_", "_>=_"]);

function toProto(expr: Expr, ids: Ids): ProtoExpr {
  const sub = (e: Expr) => toProto(e, ids);
  switch (expr.kind) {
    case "literal":
      return literalExpr(ids, expr.literal);
    case "ident":
      // A type value @bufbuild/cel does not know.
      if (expr.name === "optional_type") return call(ids, OPTIONAL_TYPE, []);
      return ident(ids, expr.name);
    case "select": {
      const field = () => literalExpr(ids, { type: "string", value: expr.field });
      if (expr.optional) return call(ids, OPT_SELECT, [sub(expr.operand), field()]);
      if (ids.chaining && !ids.qualified.has(expr)) {
        return chained(ids, sub(expr.operand), (held) => selectProto(ids, held, expr.field, false), (held) => call(ids, OPT_SELECT, [held, field()]));
      }
      return selectProto(ids, sub(expr.operand), expr.field, false);
    }
    case "has":
      if (ids.chaining) {
        const field = literalExpr(ids, { type: "string", value: expr.field });
        return chained(ids, sub(expr.operand), (held) => selectProto(ids, held, expr.field, true), (held) => call(ids, HAS, [held, field]));
      }
      return selectProto(ids, sub(expr.operand), expr.field, true);
    case "index":
      if (expr.optional) return call(ids, OPT_INDEX, [sub(expr.operand), sub(expr.index)]);
      if (ids.chaining) {
        return chained(ids, sub(expr.operand), (held) => call(ids, "_[_]", [held, sub(expr.index)]), (held) => call(ids, OPT_INDEX, [held, sub(expr.index)]));
      }
      return call(ids, "_[_]", [sub(expr.operand), sub(expr.index)]);
    case "list": {
      const elements = expr.elements.map((e) => sub(e.value));
      if (expr.elements.some((e) => e.optional)) {
        const flags = expr.elements.map((e) => literalExpr(ids, { type: "bool", value: e.optional }));
        return call(ids, OPT_LIST, [listProto(ids, elements), listProto(ids, flags)]);
      }
      return listProto(ids, elements);
    }
    case "map":
      // With optional entries, or an int and a uint key that may be the same key, the map is built by Polity.
      if (expr.entries.some((e) => e.optional || (e.key.kind === "literal" && e.key.literal.type === "uint"))) {
        const keys = expr.entries.map((e) => sub(e.key));
        const values = expr.entries.map((e) => sub(e.value));
        const flags = expr.entries.map((e) => literalExpr(ids, { type: "bool", value: e.optional }));
        return call(ids, OPT_MAP, [listProto(ids, keys), listProto(ids, values), listProto(ids, flags)]);
      }
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
      return bindProto(ids, expr.name, sub(expr.init), sub(expr.body));
    case "comprehension":
      return expandMacro(expr, ids);
    case "call": {
      if ((expr.name === "or" || expr.name === "orValue") && expr.target !== undefined && expr.args.length === 1) {
        // Short-circuiting, as in cel-go: the alternative is evaluated only when needed.
        const held = () => ident(ids, HELD);
        const present = expr.name === "or" ? held() : call(ids, "value", [], held());
        return bindProto(ids, HELD, sub(expr.target), call(ids, "_?_:_", [call(ids, "hasValue", [], held()), present, sub(expr.args[0]!)]));
      }
      if (expr.name === "type" && expr.target === undefined && expr.args.length === 1) return call(ids, TYPE_OF, [sub(expr.args[0]!)]);
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
  if (expr.variable2 !== undefined || expr.macro.startsWith("transform")) return expandTwoVariableMacro(expr, ids, metered);
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
    default:
      throw new Error(`${expr.macro}() takes two variables`);
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
      if (value instanceof KubernetesValue) return new ReferenceKubernetesValue(value) as unknown as CelInput;
      if (value instanceof Optional) return (value.present ? new ReferenceOptional(true, toReference(value.value) as BufValue) : NONE) as unknown as CelInput;
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

/**
 * Reference value → Polity value; what JSON cannot carry stays wrapped. `unsafeInts`: an
 * int beyond 2^53 becomes the nearest number, as the compiled evaluator holds one read from
 * JSON (for the Kubernetes libraries, which work on Polity's values).
 */
export function fromReference(value: BufValue, unsafeInts = false): CelValue {
  if (value === null || typeof value === "boolean" || typeof value === "string") return value;
  if (typeof value === "bigint") {
    const n = Number(value);
    return Number.isSafeInteger(n) || unsafeInts ? n : new ReferenceValue(value);
  }
  if (typeof value === "number") {
    return Number.isInteger(value) ? new ReferenceValue(value) : value;
  }
  if (lib().cel.isCelUint(value)) return new ReferenceValue(value);
  if (isOptional(value)) return value.present ? Optional.of(fromReference(value.value, unsafeInts)) : Optional.NONE;
  if (value instanceof ReferenceKubernetesValue) return value.value;
  if (lib().cel.isCelList(value)) {
    const out: CelValue[] = [];
    for (const element of value) {
      const converted = fromReference(element, unsafeInts);
      if (converted instanceof ReferenceValue) return new ReferenceValue(value);
      out.push(converted);
    }
    return out;
  }
  if (lib().cel.isCelMap(value)) {
    const out: Record<string, CelValue> = {};
    for (const [key, element] of value) {
      if (typeof key !== "string") return new ReferenceValue(value);
      const converted = fromReference(element, unsafeInts);
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


/**
 * Two-variable comprehensions, which @bufbuild/cel does not implement: the loop runs over
 * [index or key, element or value] pairs, and the body sees the two names bound to them.
 */
function expandTwoVariableMacro(expr: Expr & { kind: "comprehension" }, ids: Ids, metered: (condition: ProtoExpr) => ProtoExpr): ProtoExpr {
  const entry = (i: bigint) => call(ids, "_[_]", [ident(ids, ENTRY), literalExpr(ids, { type: "int", value: i })]);
  const body = (e: Expr) => {
    const inner = bindProto(ids, expr.variable2 ?? "#unused2", entry(1n), toProto(e, ids));
    return bindProto(ids, expr.variable, entry(0n), inner);
  };
  const result = () => ident(ids, RESULT);
  const bool = (value: boolean) => literalExpr(ids, { type: "bool", value });
  const kept = (step: ProtoExpr) => (expr.predicate === undefined ? step : call(ids, "_?_:_", [body(expr.predicate), step, result()]));
  let accuInit: ProtoExpr;
  let loopCondition: ProtoExpr = bool(true);
  let loopStep: ProtoExpr;
  let finalResult: ProtoExpr = result();
  switch (expr.macro) {
    case "all":
      accuInit = bool(true);
      loopCondition = call(ids, "@not_strictly_false", [result()]);
      loopStep = call(ids, "_&&_", [result(), body(expr.predicate!)]);
      break;
    case "exists":
      accuInit = bool(false);
      loopCondition = call(ids, "@not_strictly_false", [call(ids, "!_", [result()])]);
      loopStep = call(ids, "_||_", [result(), body(expr.predicate!)]);
      break;
    case "exists_one":
      accuInit = literalExpr(ids, { type: "int", value: 0n });
      loopStep = kept(call(ids, "_+_", [result(), literalExpr(ids, { type: "int", value: 1n })]));
      finalResult = call(ids, "_==_", [result(), literalExpr(ids, { type: "int", value: 1n })]);
      break;
    case "transformList":
      accuInit = listProto(ids, []);
      loopStep = kept(call(ids, "_+_", [result(), listProto(ids, [body(expr.transform!)])]));
      break;
    case "transformMap":
      accuInit = call(ids, OPT_MAP, [listProto(ids, []), listProto(ids, []), listProto(ids, [])]);
      loopStep = kept(call(ids, MAP_INSERT, [result(), entry(0n), body(expr.transform!)]));
      break;
    case "transformMapEntry":
      accuInit = call(ids, OPT_MAP, [listProto(ids, []), listProto(ids, []), listProto(ids, [])]);
      loopStep = kept(call(ids, MAP_MERGE, [result(), body(expr.transform!)]));
      break;
    default:
      throw new Error(`${expr.macro}() takes one variable`);
  }
  return comprehension(ids, {
    iterVar: ENTRY,
    iterRange: call(ids, ENTRIES, [toProto(expr.range, ids)]),
    accuVar: RESULT,
    accuInit,
    loopCondition: metered(loopCondition),
    loopStep,
    result: finalResult,
  });
}
