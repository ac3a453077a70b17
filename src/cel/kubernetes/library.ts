/**
 * The Kubernetes CEL libraries (k8s.io/apiserver/pkg/cel/library and the cel-go
 * extensions Kubernetes enables), as one table: each function's overloads, for the
 * checker, and one implementation over Polity's values, which both evaluators call (the
 * compiled one directly, the reference through @bufbuild/cel functions).
 *
 * Names, overloads, error messages and runtime costs are Kubernetes' (library/cost.go):
 * parsing a string costs a tenth of a unit per character, accessors one unit, list
 * functions one unit per element, find and findAll the string's cost times a quarter of
 * the pattern's length.
 */
import { CelEvalError } from "../errors.js";
import type { StaticType } from "../types.js";
import { celEquals, compare, isInt, isMap } from "../runtime.js";
import { KubernetesValue, Optional, ReferenceValue, type CelValue } from "../values.js";
import { Format, FORMAT_NAMES, namedFormat } from "./format.js";
import { CIDR, IPAddress, parseCIDR as parseCIDRText, parseIP as parseIPText } from "./network.js";
import { parseQuantity as parseQuantityText, Quantity } from "./quantity.js";
import { findAll, findFirst } from "./regex.js";
import { parseSemver as parseSemverText, parseSemverNormalized as parseSemverNormalizedText, Semver } from "./semver.js";
import { parseURL as parseURLText, URLValue } from "./url.js";

const CACHE_LIMIT = 1024;

/**
 * Parses are pure and their values immutable, and policies parse the same few strings
 * (`quantity('1Gi')`, a param) at every request: the last thousand outcomes are kept.
 */
function cached<T>(parse: (text: string) => T, limit = CACHE_LIMIT): (text: string) => T {
  const outcomes = new Map<string, T | Error>();
  return (text) => {
    let outcome = outcomes.get(text);
    if (outcome === undefined) {
      try {
        outcome = parse(text);
      } catch (error) {
        outcome = error as Error;
      }
      if (outcomes.size >= limit) outcomes.clear();
      outcomes.set(text, outcome);
    }
    if (outcome instanceof Error) throw outcome;
    return outcome;
  };
}

/**
 * find() and format validation on short strings (an image, a label value) remembered the
 * same way, per pattern and per format: admission traffic repeats them.
 */
const SHORT = 256;
const findsByPattern = new Map<string, (text: string) => string>();
function find(text: string, pattern: string): string {
  if (text.length > SHORT) return findFirst(text, pattern);
  let byText = findsByPattern.get(pattern);
  if (byText === undefined) {
    if (findsByPattern.size >= 64) findsByPattern.clear();
    byText = cached((t) => findFirst(t, pattern), 256);
    findsByPattern.set(pattern, byText);
  }
  return byText(text);
}

const validationsByFormat = new Map<Format, (text: string) => string[]>();
function validate(format: Format, text: string): readonly string[] {
  if (text.length > SHORT) return format.validate(text);
  let byText = validationsByFormat.get(format);
  if (byText === undefined) {
    byText = cached((t) => format.validate(t), 256);
    validationsByFormat.set(format, byText);
  }
  return byText(text);
}

const parseQuantity = cached(parseQuantityText);
const parseIP = cached(parseIPText);
const parseCIDR = cached(parseCIDRText);
const parseURL = cached(parseURLText);
const parseSemver = cached(parseSemverText);
const parseSemverNormalized = cached(parseSemverNormalizedText);

export interface LibraryOverload {
  readonly target?: StaticType;
  readonly args: readonly StaticType[];
  readonly result: StaticType;
}

/** Whether no overload applies to these values (the caller reports it, or hands over). */
export const NO_OVERLOAD: unique symbol = Symbol("no matching overload");

export type Charge = (units: number) => void;

export interface LibraryFunction {
  readonly overloads: readonly LibraryOverload[];
  /** `receiver` is undefined for a global call. Throws CelEvalError for CEL errors. */
  call(receiver: unknown, args: readonly unknown[], charge: Charge): CelValue | typeof NO_OVERLOAD;
}

const o = (target: StaticType | undefined, args: StaticType[], result: StaticType): LibraryOverload =>
  target === undefined ? { args, result } : { target, args, result };

/** Kubernetes' cost of traversing a string: a tenth of a unit per character, rounded up. */
export const traversal = (s: string, factor = 0.1) => units(s.length, factor);

/** The cost of traversing `size` bytes or characters at `factor` a unit each, rounded up. */
const units = (size: number, factor = 0.1) => Math.ceil(size * factor);

function fail(message: string): never {
  throw new CelEvalError(message);
}

/** Runs a parser, turning its refusal into the CEL error Kubernetes reports. */
function parsed<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof CelEvalError) throw error;
    return fail((error as Error).message);
  }
}

function succeeds(parse: () => unknown): boolean {
  try {
    parse();
    return true;
  } catch {
    return false;
  }
}

/** An int result: exact in JSON up to 2^53, beyond that a reference value. */
function int(value: bigint | number): CelValue {
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : new ReferenceValue(BigInt(value));
}

/** A double result: an integral double cannot be a JSON number (that would be an int). */
function double(value: number): CelValue {
  return Number.isInteger(value) ? new ReferenceValue(value) : value;
}

type Fn = LibraryFunction["call"];

const global = (overloads: LibraryOverload[], call: (args: readonly unknown[], charge: Charge) => CelValue | typeof NO_OVERLOAD): LibraryFunction => ({
  overloads,
  call: (receiver, args, charge) => (receiver === undefined ? call(args, charge) : NO_OVERLOAD),
});

const method = (overloads: LibraryOverload[], call: Fn): LibraryFunction => ({
  overloads,
  call: (receiver, args, charge) => (receiver === undefined ? NO_OVERLOAD : call(receiver, args, charge)),
});

/** A global function of one string (quantity('1Gi'), isIP('::1')): costs a traversal of it. */
function ofString(result: StaticType, run: (s: string) => CelValue, factor = 0.1): LibraryFunction {
  return global([o(undefined, ["string"], result)], ([s], charge) => {
    if (typeof s !== "string") return NO_OVERLOAD;
    charge(traversal(s, factor));
    return run(s);
  });
}

/** A method of one library type with no arguments, at nominal cost. */
function accessor<T>(type: StaticType, is: (v: unknown) => v is T, result: StaticType, run: (v: T) => CelValue): LibraryFunction {
  return method([o(type, [], result)], (v, args, charge) => {
    if (!is(v) || args.length !== 0) return NO_OVERLOAD;
    charge(1);
    return run(v);
  });
}

const isQuantity = (v: unknown): v is Quantity => v instanceof Quantity;
const isIP = (v: unknown): v is IPAddress => v instanceof IPAddress;
const isCIDR = (v: unknown): v is CIDR => v instanceof CIDR;
const isURL = (v: unknown): v is URLValue => v instanceof URLValue;
const isSemver = (v: unknown): v is Semver => v instanceof Semver;

/** The one function of a name, dispatching over several libraries' overloads in order. */
function merged(...functions: LibraryFunction[]): LibraryFunction {
  return {
    overloads: functions.flatMap((f) => f.overloads),
    call: (receiver, args, charge) => {
      for (const f of functions) {
        const result = f.call(receiver, args, charge);
        if (result !== NO_OVERLOAD) return result;
      }
      return NO_OVERLOAD;
    },
  };
}

/** Comparisons shared by Quantity and Semver: isLessThan, isGreaterThan, compareTo. */
function comparison(result: StaticType, from: (r: number) => CelValue): LibraryFunction {
  return method([o("quantity", ["quantity"], result), o("semver", ["semver"], result)], (v, [w], charge) => {
    if (v instanceof Quantity && w instanceof Quantity) {
      charge(1);
      return from(v.compare(w));
    }
    if (v instanceof Semver && w instanceof Semver) {
      charge(1);
      return from(v.compare(w));
    }
    return NO_OVERLOAD;
  });
}

function quantityArithmetic(sign: 1 | -1): LibraryFunction {
  return method([o("quantity", ["quantity"], "quantity"), o("quantity", ["int"], "quantity")], (v, [w], charge) => {
    if (!(v instanceof Quantity)) return NO_OVERLOAD;
    let other: Quantity;
    if (w instanceof Quantity) other = w;
    else if (isInt(w)) other = Quantity.of(BigInt(w));
    else if (w instanceof ReferenceValue && typeof w.value === "bigint") other = Quantity.of(w.value);
    else return NO_OVERLOAD;
    charge(1);
    return sign === 1 ? v.add(other) : v.sub(other);
  });
}

// ----- lists -----

function isList(v: unknown): v is readonly unknown[] {
  return Array.isArray(v);
}

/** Elements that CEL orders (numbers, strings, bools), all of one kind; undefined otherwise. */
function comparable(list: readonly unknown[]): boolean {
  if (list.length === 0) return true;
  const kind = typeof list[0];
  if (kind !== "number" && kind !== "string" && kind !== "boolean") return false;
  return list.every((x) => typeof x === kind && (kind !== "number" || Number.isInteger(x) === Number.isInteger(list[0])));
}

const listTraversal = (list: readonly unknown[]) => list.length + list.reduce<number>((n, x) => n + (typeof x === "string" ? traversal(x) : 0), 0);

function extreme(name: "min" | "max"): LibraryFunction {
  return method([o("list", [], "dyn")], (v, args, charge) => {
    if (!isList(v) || args.length !== 0 || !comparable(v)) return NO_OVERLOAD;
    charge(listTraversal(v));
    if (v.length === 0) fail(`${name} called on empty list`);
    let best = v[0];
    for (const x of v) {
      const r = compare(x, best);
      if (r === undefined) return NO_OVERLOAD;
      if (name === "min" ? r < 0 : r > 0) best = x;
    }
    return best as CelValue;
  });
}

function position(last: boolean): LibraryFunction {
  return method([o("list", ["dyn"], "int")], (v, [x], charge) => {
    if (!isList(v)) return NO_OVERLOAD;
    charge(listTraversal(v));
    for (let i = 0; i < v.length; i++) {
      const j = last ? v.length - 1 - i : i;
      if (celEquals(v[j], x)) return j;
    }
    return -1;
  });
}

function setsFunction(run: (a: readonly unknown[], b: readonly unknown[]) => boolean): LibraryFunction {
  return global([o(undefined, ["list", "list"], "bool")], ([a, b], charge) => {
    if (!isList(a) || !isList(b)) return NO_OVERLOAD;
    charge(Math.max(1, a.length * b.length));
    return run(a, b);
  });
}

const contains = (list: readonly unknown[], x: unknown) => list.some((y) => celEquals(x, y));

function formatConstructor(name: string): LibraryFunction {
  const format = namedFormat(name)!;
  return global([o(undefined, [], "format")], (args, charge) => {
    if (args.length !== 0) return NO_OVERLOAD;
    charge(1);
    return format;
  });
}

export const KUBERNETES_FUNCTIONS: ReadonlyMap<string, LibraryFunction> = new Map<string, LibraryFunction>([
  // kubernetes.quantity
  ["quantity", ofString("quantity", (s) => parsed(() => parseQuantity(s)))],
  ["isQuantity", ofString("bool", (s) => succeeds(() => parseQuantity(s)))],
  [
    "sign",
    {
      // Declared as a global function by Kubernetes, and documented as a method: both are accepted.
      overloads: [o(undefined, ["quantity"], "int"), o("quantity", [], "int")],
      call: (receiver, args, charge) => {
        const q = receiver ?? args[0];
        if (!(q instanceof Quantity) || args.length !== (receiver === undefined ? 1 : 0)) return NO_OVERLOAD;
        charge(1);
        return q.sign();
      },
    },
  ],
  ["isGreaterThan", comparison("bool", (r) => r > 0)],
  ["isLessThan", comparison("bool", (r) => r < 0)],
  ["compareTo", comparison("int", (r) => r)],
  ["asApproximateFloat", accessor("quantity", isQuantity, "double", (q) => double(q.asApproximateFloat()))],
  [
    "asInteger",
    accessor("quantity", isQuantity, "int", (q) => {
      const value = q.asInt64();
      return value === undefined ? fail("cannot convert value to integer") : int(value);
    }),
  ],
  ["isInteger", accessor("quantity", isQuantity, "bool", (q) => q.asInt64() !== undefined)],
  ["add", quantityArithmetic(1)],
  ["sub", quantityArithmetic(-1)],

  // kubernetes.net.ip and net.cidr
  [
    "ip",
    merged(
      ofString("ip", (s) => parsed(() => parseIP(s))),
      accessor("cidr", isCIDR, "ip", (c) => c.address),
    ),
  ],
  ["isIP", ofString("bool", (s) => succeeds(() => parseIP(s)))],
  ["ip.isCanonical", ofString("bool", (s) => parsed(() => parseIP(s)).toString() === s, 0.2)],
  ["family", accessor("ip", isIP, "int", (ip) => ip.family)],
  ["isUnspecified", accessor("ip", isIP, "bool", (ip) => ip.isUnspecified())],
  ["isLoopback", accessor("ip", isIP, "bool", (ip) => ip.isLoopback())],
  ["isLinkLocalMulticast", accessor("ip", isIP, "bool", (ip) => ip.isLinkLocalMulticast())],
  ["isLinkLocalUnicast", accessor("ip", isIP, "bool", (ip) => ip.isLinkLocalUnicast())],
  ["isGlobalUnicast", accessor("ip", isIP, "bool", (ip) => ip.isGlobalUnicast())],
  ["cidr", ofString("cidr", (s) => parsed(() => parseCIDR(s)))],
  ["isCIDR", ofString("bool", (s) => succeeds(() => parseCIDR(s)))],
  [
    "containsIP",
    method([o("cidr", ["string"], "bool"), o("cidr", ["ip"], "bool")], (c, [x], charge) => {
      if (!(c instanceof CIDR)) return NO_OVERLOAD;
      let ip: IPAddress;
      if (x instanceof IPAddress) {
        ip = x;
        charge(units(c.size() * 2));
      } else if (typeof x === "string") {
        charge(units(c.size() * 2) + traversal(x));
        ip = parsed(() => parseIP(x));
      } else {
        return NO_OVERLOAD;
      }
      return c.containsIP(ip);
    }),
  ],
  [
    "containsCIDR",
    method([o("cidr", ["string"], "bool"), o("cidr", ["cidr"], "bool")], (c, [x], charge) => {
      if (!(c instanceof CIDR)) return NO_OVERLOAD;
      const base = units(c.size() * 2) + units(c.size()) + 1;
      let other: CIDR;
      if (x instanceof CIDR) {
        other = x;
        charge(base);
      } else if (typeof x === "string") {
        charge(base + traversal(x));
        other = parsed(() => parseCIDR(x));
      } else {
        return NO_OVERLOAD;
      }
      return c.containsCIDR(other);
    }),
  ],
  ["prefixLength", accessor("cidr", isCIDR, "int", (c) => c.bits)],
  ["masked", accessor("cidr", isCIDR, "cidr", (c) => c.masked())],

  // kubernetes.urls
  ["url", ofString("url", (s) => parsed(() => parseURL(s)))],
  ["isURL", ofString("bool", (s) => succeeds(() => parseURL(s)))],
  ["getScheme", accessor("url", isURL, "string", (u) => u.scheme)],
  ["getHost", accessor("url", isURL, "string", (u) => u.host)],
  ["getHostname", accessor("url", isURL, "string", (u) => u.hostname())],
  ["getPort", accessor("url", isURL, "string", (u) => u.port())],
  ["getEscapedPath", accessor("url", isURL, "string", (u) => u.escapedPath())],
  ["getQuery", accessor("url", isURL, "map", (u) => u.query())],

  // kubernetes.regex
  [
    "find",
    method([o("string", ["string"], "string")], (s, [pattern], charge) => {
      if (typeof s !== "string" || typeof pattern !== "string") return NO_OVERLOAD;
      charge(Math.ceil((1 + s.length) * 0.1) * traversal(pattern, 0.25));
      return find(s, pattern);
    }),
  ],
  [
    "findAll",
    method([o("string", ["string"], "list"), o("string", ["string", "int"], "list")], (s, [pattern, limit], charge) => {
      if (typeof s !== "string" || typeof pattern !== "string" || (limit !== undefined && !isInt(limit))) return NO_OVERLOAD;
      charge(Math.ceil((1 + s.length) * 0.1) * traversal(pattern, 0.25));
      return findAll(s, pattern, limit ?? -1);
    }),
  ],

  // kubernetes.lists
  [
    "isSorted",
    method([o("list", [], "bool")], (v, args, charge) => {
      if (!isList(v) || args.length !== 0 || !comparable(v)) return NO_OVERLOAD;
      charge(listTraversal(v));
      for (let i = 1; i < v.length; i++) if ((compare(v[i - 1], v[i]) ?? 0) > 0) return false;
      return true;
    }),
  ],
  [
    "sum",
    method([o("list", [], "dyn")], (v, args, charge) => {
      if (!isList(v) || args.length !== 0) return NO_OVERLOAD;
      charge(listTraversal(v));
      if (v.every((x) => isInt(x))) {
        const total = v.reduce<bigint>((n, x) => n + BigInt(x as number), 0n);
        if (total > 9223372036854775807n || total < -9223372036854775808n) fail("integer overflow");
        return int(total);
      }
      if (v.every((x) => typeof x === "number")) return double(v.reduce<number>((n, x) => n + (x as number), 0));
      return NO_OVERLOAD;
    }),
  ],
  ["min", extreme("min")],
  ["max", extreme("max")],
  ["indexOf", position(false)],
  ["lastIndexOf", position(true)],

  // cel-go's lists extension (version 3 in Kubernetes 1.34): what Polity did not have yet.
  [
    "lists.range",
    global([o(undefined, ["int"], "list")], ([n], charge) => {
      if (!isInt(n)) return NO_OVERLOAD;
      charge(Math.max(1, n));
      return Array.from({ length: Math.max(0, n) }, (_, i) => i);
    }),
  ],
  [
    "reverse",
    method([o("list", [], "list")], (v, args, charge) => {
      if (!isList(v) || args.length !== 0) return NO_OVERLOAD;
      charge(v.length);
      return [...v].reverse() as CelValue;
    }),
  ],
  [
    "slice",
    method([o("list", ["int", "int"], "list")], (v, [start, end], charge) => {
      if (!isList(v) || !isInt(start) || !isInt(end)) return NO_OVERLOAD;
      if (start < 0 || end < 0) fail(`cannot slice(${start}, ${end}), negative indexes not supported`);
      if (start > end) fail(`cannot slice(${start}, ${end}), start index must be less than or equal to end index`);
      if (end > v.length) fail(`cannot slice(${start}, ${end}), list is length ${v.length}`);
      charge(end - start);
      return v.slice(start, end) as CelValue;
    }),
  ],
  ["first", method([o("list", [], "optional")], (v, args) => (!isList(v) || args.length !== 0 ? NO_OVERLOAD : v.length === 0 ? Optional.NONE : Optional.of(v[0] as CelValue)))],
  ["last", method([o("list", [], "optional")], (v, args) => (!isList(v) || args.length !== 0 ? NO_OVERLOAD : v.length === 0 ? Optional.NONE : Optional.of(v[v.length - 1] as CelValue)))],
  [
    "flatten",
    method([o("list", ["int"], "list")], (v, [depth], charge) => {
      if (!isList(v) || !isInt(depth)) return NO_OVERLOAD;
      if (depth < 0) fail("level must be non-negative");
      const flat = (list: readonly unknown[], level: number): unknown[] =>
        list.flatMap((x) => (isList(x) && level > 0 ? flat(x, level - 1) : [x]));
      const out = flat(v, depth);
      charge(out.length);
      return out as CelValue;
    }),
  ],

  // cel-go's sets extension
  ["sets.contains", setsFunction((a, b) => b.every((x) => contains(a, x)))],
  ["sets.equivalent", setsFunction((a, b) => b.every((x) => contains(a, x)) && a.every((x) => contains(b, x)))],
  ["sets.intersects", setsFunction((a, b) => a.some((x) => contains(b, x)))],

  // kubernetes.Semver
  [
    "semver",
    global([o(undefined, ["string"], "semver"), o(undefined, ["string", "bool"], "semver")], ([s, normalize], charge) => {
      if (typeof s !== "string" || (normalize !== undefined && typeof normalize !== "boolean")) return NO_OVERLOAD;
      charge(traversal(s));
      return parsed(() => (normalize === true ? parseSemverNormalized(s) : parseSemver(s)));
    }),
  ],
  [
    "isSemver",
    global([o(undefined, ["string"], "bool"), o(undefined, ["string", "bool"], "bool")], ([s, normalize], charge) => {
      if (typeof s !== "string" || (normalize !== undefined && typeof normalize !== "boolean")) return NO_OVERLOAD;
      charge(traversal(s));
      return succeeds(() => (normalize === true ? parseSemverNormalized(s) : parseSemver(s)));
    }),
  ],
  ["major", accessor("semver", isSemver, "int", (v) => int(v.major))],
  ["minor", accessor("semver", isSemver, "int", (v) => int(v.minor))],
  ["patch", accessor("semver", isSemver, "int", (v) => int(v.patch))],

  // format
  [
    "format.named",
    global([o(undefined, ["string"], "optional")], ([name], charge) => {
      if (typeof name !== "string") return NO_OVERLOAD;
      charge(1);
      const format = namedFormat(name);
      return format === undefined ? Optional.NONE : Optional.of(format);
    }),
  ],
  ...FORMAT_NAMES.map((name): [string, LibraryFunction] => [`format.${name}`, formatConstructor(name)]),
  [
    "validate",
    method([o("format", ["string"], "optional")], (f, [s], charge) => {
      if (!(f instanceof Format) || typeof s !== "string") return NO_OVERLOAD;
      charge(Math.ceil((1 + s.length) * 0.1) * Math.ceil(f.maxRegexSize * 0.25));
      const errors = validate(f, s);
      return errors.length === 0 ? Optional.NONE : Optional.of([...errors]);
    }),
  ],
]);

/** `string(ip)`, `string(cidr)`: the library values that convert to strings. */
export function libraryString(v: unknown): string | undefined {
  return v instanceof IPAddress || v instanceof CIDR ? v.toString() : undefined;
}

/** The CEL type name of a value, for "no matching overload" messages. */
export function typeNameOf(v: unknown): string {
  if (v === null) return "null_type";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "string") return "string";
  if (typeof v === "number") return Number.isInteger(v) ? "int" : "double";
  if (Array.isArray(v)) return "list";
  if (v instanceof Optional) return "optional_type";
  if (v instanceof KubernetesValue) return v.typeName;
  if (isMap(v)) return "map";
  return "dyn";
}

/** The error CEL reports when no overload applies. */
export function noOverload(name: string, receiver: unknown, args: readonly unknown[]): CelEvalError {
  const list = `(${args.map(typeNameOf).join(", ")})`;
  return new CelEvalError(`found no matching overload for '${name}' applied to '${receiver === undefined ? list : `${typeNameOf(receiver)}.${list}`}'`);
}
