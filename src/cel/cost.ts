/**
 * Cost before evaluation: an upper bound of what an expression may spend, in the units the
 * evaluators meter (one per node evaluated, each comprehension iteration charged the nodes
 * of its body), so that an expression built to be slow is refused when it is written, as
 * Kubernetes refuses one whose estimated cost exceeds its budget, instead of being stopped
 * at every request.
 *
 * Sizes are what the estimate must assume: a list or map written in the expression has its
 * own size; one that comes from the request (`object.spec.containers`) is assumed to hold
 * at most `DATA_LIST_SIZE` items, and a string from it `DATA_STRING_SIZE` characters. A pod
 * holds a few dozen containers at most, so a comprehension over its containers, even one
 * nested in another, stays far below the limit; three nested comprehensions over lists
 * from the request do not. Larger data is still bounded at run time: by the per-expression
 * limit and by the budget of the whole decision.
 *
 * Pure: the syntax tree in, a number out.
 */
import type { Expr } from "./ast.js";
import { qualifiedFunction } from "./checker.js";
import { namedFormat } from "./kubernetes/format.js";

/** How many items a list or map from the request is assumed to hold, for estimates. */
export const DATA_LIST_SIZE = 100;
/** How long a string from the request is assumed to be, for estimates. */
export const DATA_STRING_SIZE = 100;

/** Functions whose cost grows with the length of the strings they read (0.1 a character, as metered). */
const STRING_FUNCTIONS = new Set(["matches", "contains", "startsWith", "endsWith", "split", "replace", "lowerAscii", "upperAscii", "trim", "find", "findAll", "indexOf", "lastIndexOf", "substring", "_+_"]);

/** How many items a comprehension over `range` may visit. */
function sizeOf(range: Expr): number {
  switch (range.kind) {
    case "list":
      return range.elements.length;
    case "map":
      return range.entries.length;
    case "comprehension":
      // map and filter yield at most as many items as they visit.
      return sizeOf(range.range);
    default:
      return DATA_LIST_SIZE;
  }
}

/** An upper bound of the cost of one evaluation of `expr`. */
export function estimateCost(expr: Expr | undefined): number {
  if (expr === undefined) return 0;
  switch (expr.kind) {
    case "literal":
    case "ident":
      return 1;
    case "select":
    case "has":
      return 1 + estimateCost(expr.operand);
    case "index":
      return 1 + estimateCost(expr.operand) + estimateCost(expr.index);
    case "call": {
      let cost = 1 + estimateCost(expr.target) + expr.args.reduce((n, a) => n + estimateCost(a), 0);
      if (expr.name === "@in") cost += sizeOf(expr.args[1] ?? expr.args[0]!);
      const library = libraryCost(expr);
      if (library !== undefined) cost += library;
      else if (STRING_FUNCTIONS.has(expr.name)) cost += DATA_STRING_SIZE / 10;
      return cost;
    }
    case "list":
      return 1 + expr.elements.reduce((n, e) => n + estimateCost(e.value), 0);
    case "map":
      return 1 + expr.entries.reduce((n, e) => n + estimateCost(e.key) + estimateCost(e.value), 0);
    case "struct":
      return 1 + expr.fields.reduce((n, f) => n + estimateCost(f.value), 0);
    case "comprehension":
      return 1 + estimateCost(expr.range) + sizeOf(expr.range) * (1 + estimateCost(expr.predicate) + estimateCost(expr.transform));
    case "bind":
      return 1 + estimateCost(expr.init) + estimateCost(expr.body);
  }
}

/** The length of a string `expr` may give: its own when written in the expression. */
function stringSize(expr: Expr | undefined): number {
  return expr?.kind === "literal" && expr.literal.type === "string" ? expr.literal.value.length : DATA_STRING_SIZE;
}

const traversal = (size: number, factor = 0.1) => Math.ceil(size * factor);

const PARSES_ITS_ARGUMENT = new Set(["quantity", "isQuantity", "semver", "isSemver", "url", "isURL", "isIP", "cidr", "isCIDR"]);
const NOMINAL = new Set([
  "sign", "asInteger", "isInteger", "asApproximateFloat", "isGreaterThan", "isLessThan", "compareTo", "add", "sub", "major", "minor", "patch",
  "getScheme", "getHostname", "getHost", "getPort", "getEscapedPath", "getQuery", "masked", "prefixLength", "family", "isUnspecified",
  "isLoopback", "isLinkLocalMulticast", "isLinkLocalUnicast", "isGlobalUnicast", "format.named", "first", "last",
]);

/**
 * What a call of the Kubernetes libraries costs beyond its node, as Kubernetes estimates it
 * (library/cost.go): a traversal of the strings it parses, one unit per element of the
 * lists it reads, the string times a quarter of the pattern for find and findAll.
 * Undefined for other functions.
 */
function libraryCost(expr: Expr & { kind: "call" }): number | undefined {
  const name = qualifiedFunction(expr) ?? expr.name;
  const [a, b] = expr.args;
  if (PARSES_ITS_ARGUMENT.has(name)) return traversal(stringSize(a));
  if (NOMINAL.has(name)) return 1;
  switch (name) {
    case "ip":
      return expr.target !== undefined && expr.args.length === 0 ? 1 : traversal(stringSize(a));
    case "ip.isCanonical":
      return traversal(stringSize(a), 0.2);
    case "find":
    case "findAll":
      return traversal(1 + stringSize(expr.target)) * traversal(stringSize(a), 0.25);
    case "containsIP":
    case "containsCIDR":
      // A CIDR is at most 16 bytes of address; a string argument is parsed too.
      return traversal(32) + traversal(16) + 1 + (a?.kind === "literal" || a === undefined ? traversal(stringSize(a)) : traversal(DATA_STRING_SIZE));
    case "validate": {
      const target = expr.target;
      const format = target?.kind === "call" ? namedFormat(qualifiedFunction(target)?.replace(/^format\./, "") ?? "") : undefined;
      return traversal(1 + stringSize(a)) * Math.ceil((format?.maxRegexSize ?? 1_080) * 0.25);
    }
    case "isSorted":
    case "sum":
    case "min":
    case "max":
    case "indexOf":
    case "lastIndexOf":
      // One unit an element, and the strings' traversal when they are strings.
      return expr.target === undefined ? undefined : sizeOf(expr.target) * (1 + traversal(DATA_STRING_SIZE));
    case "reverse":
    case "slice":
    case "flatten":
      return expr.target === undefined ? undefined : sizeOf(expr.target);
    case "lists.range":
      return a?.kind === "literal" && a.literal.type === "int" ? Math.max(1, Number(a.literal.value)) : DATA_LIST_SIZE;
    case "sets.contains":
    case "sets.equivalent":
    case "sets.intersects":
      return a === undefined || b === undefined ? undefined : sizeOf(a) * sizeOf(b);
    default:
      return undefined;
  }
}
