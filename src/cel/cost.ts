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
      if (STRING_FUNCTIONS.has(expr.name)) cost += DATA_STRING_SIZE / 10;
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
