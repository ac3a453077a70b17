/**
 * What the compiled evaluator calls at run time: CEL equality and ordering on
 * JSON-shaped values, sizes, string functions, regular expressions and cost metering.
 *
 * Anything whose CEL result is not certain on JSON-shaped values (a type mismatch that
 * CEL reports as "no matching overload", an int beyond 2^53, an integral double) is not
 * decided here: it throws REFER, and the whole expression is evaluated again by the
 * reference evaluator, which knows the exact answer.
 */
import { RE2JS } from "@bufbuild/re2";
import { CelCostLimitError, CelEvalError } from "./errors.js";
import { KubernetesValue, OpaqueValue, Optional } from "./values.js";

/** Thrown (not an Error: no stack is captured) to hand an evaluation to the reference evaluator. */
export const REFER: unique symbol = Symbol("polity.cel.refer");

export type Refer = typeof REFER;

/** Per-evaluation state of a compiled program. */
export interface Frame {
  /** Comprehension and cel.bind variables, by slot. Slots 0..n-1 hold the activation's variables. */
  vars: unknown[];
  /** Cost spent so far in this evaluation. */
  cost: number;
  /** Where this evaluation stops: the expression's limit, or what is left of the decision's budget. */
  limit: number;
}

/** Cost units, after cel-go's model: one per node evaluated, 0.1 per byte of a string traversed. */
export function charge(frame: Frame, units: number): void {
  frame.cost += units;
  if (frame.cost > frame.limit) {
    throw new CelCostLimitError(`evaluation exceeded its cost limit of ${frame.limit}`);
  }
}

export function stringCost(s: string): number {
  return Math.ceil(s.length * 0.1);
}

export type CelMap = Record<string, unknown>;

export function isMap(v: unknown): v is CelMap {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof OpaqueValue);
}

export const hasOwn = Object.prototype.hasOwnProperty;

export function isInt(v: unknown): v is number {
  return Number.isInteger(v);
}

/** CEL equality on JSON-shaped values: heterogeneous types are unequal, numbers compare by value. */
export function celEquals(a: unknown, b: unknown): boolean {
  if (a === b) return typeof a !== "number" || !Number.isNaN(a);
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (a instanceof KubernetesValue || b instanceof KubernetesValue) {
    return a instanceof KubernetesValue && b instanceof KubernetesValue && a.typeName === b.typeName && a.key() === b.key();
  }
  if (a instanceof Optional || b instanceof Optional) {
    return a instanceof Optional && b instanceof Optional && a.present === b.present && celEquals(a.value, b.value);
  }
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) {
      if (!celEquals(a[i], b[i])) return false;
    }
    return true;
  }
  if (Array.isArray(b)) return false;
  const ak = Object.keys(a);
  if (ak.length !== Object.keys(b).length) return false;
  for (const key of ak) {
    if (!hasOwn.call(b, key)) return false;
    if (!celEquals((a as CelMap)[key], (b as CelMap)[key])) return false;
  }
  return true;
}

/** Shallow size of a value, for cost: list length, map size, string length / 10. */
export function sizeCost(v: unknown): number {
  if (typeof v === "string") return stringCost(v);
  if (Array.isArray(v)) return v.length;
  if (isMap(v)) return Object.keys(v).length;
  return 1;
}

/**
 * Orders two strings by Unicode code point, as CEL does, where JavaScript's `<` orders by
 * UTF-16 code unit. The two differ only between surrogate pairs and U+E000..U+FFFF.
 */
export function compareStrings(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointKey(x) - codePointKey(y);
  }
  return a.length - b.length;
}

function codePointKey(unit: number): number {
  if (unit >= 0xe000) return unit - 0x800;
  if (unit >= 0xd800) return unit + 0x2000;
  return unit;
}

/** -1, 0, 1, or undefined when CEL defines no ordering (or NaN is involved) for these values. */
export function compare(a: unknown, b: unknown): number | undefined {
  if (typeof a === "number" && typeof b === "number") {
    if (a < b) return -1;
    if (a > b) return 1;
    return a === b ? 0 : Number.NaN;
  }
  if (typeof a === "string" && typeof b === "string") return Math.sign(compareStrings(a, b));
  if (typeof a === "boolean" && typeof b === "boolean") return Number(a) - Number(b);
  return undefined;
}

export function codePointLength(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xdc00 && c <= 0xdfff) n--;
  }
  return n;
}

export function celSize(v: unknown): number {
  if (typeof v === "string") return codePointLength(v);
  if (Array.isArray(v)) return v.length;
  if (isMap(v)) return Object.keys(v).length;
  throw REFER;
}

/** Regular expressions are RE2: linear in the input, whatever the pattern. */
export interface CompiledRegex {
  test(input: string): boolean;
}

const regexCache = new Map<string, CompiledRegex>();
const REGEX_CACHE_LIMIT = 1024;

export function compileRegex(pattern: string): CompiledRegex {
  let re = regexCache.get(pattern);
  if (re === undefined) {
    try {
      re = RE2JS.compile(pattern);
    } catch (error) {
      throw new CelEvalError(`invalid regular expression ${JSON.stringify(pattern)}: ${(error as Error).message}`);
    }
    if (regexCache.size >= REGEX_CACHE_LIMIT) regexCache.clear();
    regexCache.set(pattern, re);
  }
  return re;
}

export function lowerAscii(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

export function upperAscii(s: string): string {
  return s.replace(/[a-z]+/g, (m) => m.toUpperCase());
}

export function noSuchKey(key: unknown): CelEvalError {
  return new CelEvalError(`no such key: ${typeof key === "string" ? key : JSON.stringify(key)}`);
}

/** Exact int64 arithmetic while results stay within 2^53; beyond that, the reference decides. */
export function addNumbers(a: number, b: number): number {
  const r = a + b;
  return checkNumber(a, b, r);
}

export function subtractNumbers(a: number, b: number): number {
  return checkNumber(a, b, a - b);
}

export function multiplyNumbers(a: number, b: number): number {
  return checkNumber(a, b, a * b);
}

function checkNumber(a: number, b: number, r: number): number {
  const ai = Number.isInteger(a);
  if (ai !== Number.isInteger(b)) throw REFER; // int with double: no matching overload
  if (ai ? !Number.isSafeInteger(r) : Number.isInteger(r)) throw REFER;
  return r;
}

export function divideNumbers(a: number, b: number): number {
  const ai = Number.isInteger(a);
  if (ai !== Number.isInteger(b)) throw REFER;
  if (ai) {
    if (b === 0) throw new CelEvalError("division by zero");
    const q = Math.trunc(a / b);
    if (!Number.isSafeInteger(q) || Math.abs(a - q * b) >= Math.abs(b)) throw REFER;
    return q === 0 ? 0 : q;
  }
  const r = a / b;
  if (Number.isInteger(r)) throw REFER;
  return r;
}

export function moduloNumbers(a: number, b: number): number {
  if (!Number.isInteger(a) || !Number.isInteger(b)) throw REFER;
  if (b === 0) throw new CelEvalError("modulus by zero");
  const r = a % b;
  return r === 0 ? 0 : r;
}

/** `[1, [2, 3]].flatten()` is `[1, 2, 3]`: one level, as cel-go's lists extension. */
export function flattenList(list: readonly unknown[]): unknown[] {
  const out: unknown[] = [];
  for (const item of list) {
    if (Array.isArray(item)) out.push(...(item as unknown[]));
    else out.push(item);
  }
  return out;
}

/** The list without repeated elements (CEL equality), first occurrences kept in order. */
export function distinctList(list: readonly unknown[]): unknown[] {
  const out: unknown[] = [];
  for (const item of list) {
    if (!out.some((seen) => celEquals(seen, item))) out.push(item);
  }
  return out;
}

/** Ascending order; every element must be of one orderable type (numbers, strings or bools). */
export function sortList(list: readonly unknown[]): unknown[] {
  if (list.length === 0) return [];
  const kind = typeof list[0];
  if ((kind !== "number" && kind !== "string" && kind !== "boolean") || list.some((item) => typeof item !== kind)) {
    throw REFER;
  }
  return [...list].sort((a, b) => compare(a, b) ?? 0);
}

/** optional.ofNonZeroValue: none for null, false, 0, "", an empty list or map. */
export function isZeroValue(v: unknown): boolean | undefined {
  if (v === null || v === false || v === 0 || v === "") return true;
  if (Array.isArray(v)) return v.length === 0;
  if (isMap(v)) return Object.keys(v).length === 0;
  if (v === true || typeof v === "number" || typeof v === "string") return false;
  return undefined;
}
