import { KUBERNETES_FUNCTIONS } from "./kubernetes/library.js";
import type { StaticType } from "./types.js";

/**
 * The functions Polity's CEL environment declares: CEL's standard library and the strings
 * extension (as Kubernetes enables it). Each entry lists its overloads, for the checker's
 * "no matching overload" errors, and whether the compiled evaluator implements it; the
 * reference evaluator implements all of them.
 */

export type { DeclaredType, StaticType } from "./types.js";
export { staticTypeOf } from "./types.js";

/** An overload: the receiver type for methods (`undefined` for global functions), the argument types, the result. */
export interface Overload {
  readonly target?: StaticType;
  readonly args: readonly StaticType[];
  readonly result: StaticType;
}

export interface FunctionDecl {
  readonly overloads: readonly Overload[];
  /** Whether the compiled evaluator implements it (otherwise expressions that call it run on the reference). */
  readonly compiled: boolean;
}

const o = (target: StaticType | undefined, args: StaticType[], result: StaticType): Overload =>
  target === undefined ? { args, result } : { target, args, result };

const TIME_GETTERS = [
  "getFullYear",
  "getMonth",
  "getDayOfYear",
  "getDayOfMonth",
  "getDate",
  "getDayOfWeek",
  "getHours",
  "getMinutes",
  "getSeconds",
  "getMilliseconds",
];

const CEL_FUNCTIONS: ReadonlyMap<string, FunctionDecl> = new Map<string, FunctionDecl>([
  [
    "size",
    {
      compiled: true,
      overloads: (["string", "bytes", "list", "map"] as const).flatMap((t) => [o(undefined, [t], "int"), o(t, [], "int")]),
    },
  ],
  ["contains", { compiled: true, overloads: [o("string", ["string"], "bool")] }],
  ["startsWith", { compiled: true, overloads: [o("string", ["string"], "bool")] }],
  ["endsWith", { compiled: true, overloads: [o("string", ["string"], "bool")] }],
  ["matches", { compiled: true, overloads: [o("string", ["string"], "bool"), o(undefined, ["string", "string"], "bool")] }],
  ["dyn", { compiled: true, overloads: [o(undefined, ["dyn"], "dyn")] }],
  [
    "int",
    { compiled: true, overloads: (["int", "uint", "double", "string", "timestamp"] as const).map((t) => o(undefined, [t], "int")) },
  ],
  [
    "string",
    {
      compiled: true,
      overloads: (["int", "uint", "double", "string", "bytes", "bool", "timestamp", "duration"] as const).map((t) =>
        o(undefined, [t], "string"),
      ),
    },
  ],
  ["uint", { compiled: false, overloads: (["int", "uint", "double", "string"] as const).map((t) => o(undefined, [t], "uint")) }],
  ["double", { compiled: false, overloads: (["int", "uint", "double", "string"] as const).map((t) => o(undefined, [t], "double")) }],
  ["bytes", { compiled: false, overloads: [o(undefined, ["bytes"], "bytes"), o(undefined, ["string"], "bytes")] }],
  ["bool", { compiled: false, overloads: [o(undefined, ["bool"], "bool"), o(undefined, ["string"], "bool")] }],
  ["type", { compiled: false, overloads: [o(undefined, ["dyn"], "type")] }],
  ["duration", { compiled: false, overloads: [o(undefined, ["string"], "duration"), o(undefined, ["duration"], "duration")] }],
  [
    "timestamp",
    {
      compiled: false,
      overloads: [o(undefined, ["string"], "timestamp"), o(undefined, ["int"], "timestamp"), o(undefined, ["timestamp"], "timestamp")],
    },
  ],
  ...TIME_GETTERS.map(
    (name): [string, FunctionDecl] => [
      name,
      {
        compiled: false,
        overloads: [o("timestamp", [], "int"), o("timestamp", ["string"], "int"), o("duration", [], "int")],
      },
    ],
  ),
  // The strings extension (cel-go ext.Strings), enabled in Kubernetes.
  ["lowerAscii", { compiled: true, overloads: [o("string", [], "string")] }],
  ["upperAscii", { compiled: true, overloads: [o("string", [], "string")] }],
  ["split", { compiled: true, overloads: [o("string", ["string"], "list"), o("string", ["string", "int"], "list")] }],
  ["join", { compiled: true, overloads: [o("list", [], "string"), o("list", ["string"], "string")] }],
  ["trim", { compiled: false, overloads: [o("string", [], "string")] }],
  ["charAt", { compiled: false, overloads: [o("string", ["int"], "string")] }],
  ["indexOf", { compiled: false, overloads: [o("string", ["string"], "int"), o("string", ["string", "int"], "int")] }],
  ["lastIndexOf", { compiled: false, overloads: [o("string", ["string"], "int"), o("string", ["string", "int"], "int")] }],
  [
    "replace",
    { compiled: false, overloads: [o("string", ["string", "string"], "string"), o("string", ["string", "string", "int"], "string")] },
  ],
  ["substring", { compiled: false, overloads: [o("string", ["int"], "string"), o("string", ["int", "int"], "string")] }],
  ["reverse", { compiled: false, overloads: [o("string", [], "string")] }],
  ["format", { compiled: false, overloads: [o("string", ["list"], "string")] }],
  ["strings.quote", { compiled: false, overloads: [o(undefined, ["string"], "string")] }],
  // Optional values (cel-go's optional library, which Kubernetes enables).
  ["optional.of", { compiled: true, overloads: [o(undefined, ["dyn"], "optional")] }],
  ["optional.ofNonZeroValue", { compiled: true, overloads: [o(undefined, ["dyn"], "optional")] }],
  ["optional.none", { compiled: true, overloads: [o(undefined, [], "optional")] }],
  ["hasValue", { compiled: true, overloads: [o("optional", [], "bool")] }],
  ["value", { compiled: true, overloads: [o("optional", [], "dyn")] }],
  ["or", { compiled: true, overloads: [o("optional", ["optional"], "optional")] }],
  ["orValue", { compiled: true, overloads: [o("optional", ["dyn"], "dyn")] }],
  // From cel-go's lists extension (ext.Lists): one-level flatten, first-occurrence distinct, ascending sort.
  ["flatten", { compiled: true, overloads: [o("list", [], "list")] }],
  ["distinct", { compiled: true, overloads: [o("list", [], "list")] }],
  ["sort", { compiled: true, overloads: [o("list", [], "list")] }],
]);

/**
 * CEL's functions and the Kubernetes libraries' (kubernetes/library.ts), which the
 * compiled evaluator runs too. A name in both (indexOf on strings and on lists, string of
 * an IP) has the overloads of both.
 */
export const FUNCTIONS: ReadonlyMap<string, FunctionDecl> = (() => {
  const all = new Map(CEL_FUNCTIONS);
  for (const [name, library] of KUBERNETES_FUNCTIONS) {
    const own = all.get(name);
    all.set(name, own === undefined ? { compiled: true, overloads: library.overloads } : { compiled: own.compiled, overloads: [...own.overloads, ...library.overloads] });
  }
  // string(ip) and string(cidr)
  const string = all.get("string")!;
  all.set("string", { ...string, overloads: [...string.overloads, o(undefined, ["ip"], "string"), o(undefined, ["cidr"], "string")] });
  return all;
})();

/** Identifiers that name types: valid values in CEL (`type(x) == int`), run on the reference. */
export const TYPE_NAMES = new Set([
  "int",
  "uint",
  "double",
  "bool",
  "string",
  "bytes",
  "list",
  "map",
  "null_type",
  "type",
  "dyn",
  "optional_type",
]);

/** Whether an argument of static type `actual` may be passed where `expected` is declared. */
export function assignable(expected: StaticType, actual: StaticType): boolean {
  return expected === "dyn" || actual === "dyn" || expected === actual;
}
