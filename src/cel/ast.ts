/**
 * The abstract syntax tree of a CEL expression, after macro expansion.
 *
 * Every node carries `pos`, the UTF-16 offset in the source where it starts (or, for
 * operators and calls, where the operator or function name is), so that compile and
 * runtime errors can point into the expression.
 */

export type Literal =
  | { readonly type: "int"; readonly value: bigint }
  | { readonly type: "uint"; readonly value: bigint }
  | { readonly type: "double"; readonly value: number }
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "bytes"; readonly value: Uint8Array }
  | { readonly type: "bool"; readonly value: boolean }
  | { readonly type: "null" };

export type Expr =
  | { readonly kind: "literal"; readonly pos: number; readonly literal: Literal }
  | { readonly kind: "ident"; readonly pos: number; readonly name: string }
  | {
      readonly kind: "select";
      readonly pos: number;
      readonly operand: Expr;
      readonly field: string;
      /** `a.?b`: an optional field selection. */
      readonly optional: boolean;
    }
  /** `has(a.b)`: whether the field or key is present. */
  | { readonly kind: "has"; readonly pos: number; readonly operand: Expr; readonly field: string }
  | {
      readonly kind: "index";
      readonly pos: number;
      readonly operand: Expr;
      readonly index: Expr;
      /** `a[?b]`: an optional index. */
      readonly optional: boolean;
    }
  | {
      readonly kind: "call";
      readonly pos: number;
      /** Function or operator name: `size`, `_+_`, `_&&_`, `@in`, `!_`, `-_`, `_?_:_`, `_[_]`. */
      readonly name: string;
      readonly target: Expr | undefined;
      readonly args: readonly Expr[];
    }
  | { readonly kind: "list"; readonly pos: number; readonly elements: readonly Element[] }
  | { readonly kind: "map"; readonly pos: number; readonly entries: readonly MapEntry[] }
  | {
      readonly kind: "struct";
      readonly pos: number;
      readonly typeName: string;
      readonly fields: readonly FieldInit[];
    }
  | Comprehension
  /** `cel.bind(name, init, body)`: evaluates `init` once and names it inside `body`. */
  | {
      readonly kind: "bind";
      readonly pos: number;
      readonly name: string;
      readonly init: Expr;
      readonly body: Expr;
    };

export interface Element {
  readonly value: Expr;
  readonly optional: boolean;
}

export interface MapEntry {
  readonly key: Expr;
  readonly value: Expr;
  readonly optional: boolean;
}

export interface FieldInit {
  readonly name: string;
  readonly value: Expr;
  readonly optional: boolean;
}

export type MacroName = "all" | "exists" | "exists_one" | "map" | "filter" | "transformList" | "transformMap" | "transformMapEntry";

/**
 * A comprehension macro over a list (its elements) or a map (its keys). With two variables
 * (cel-go's two-variable comprehensions), the first is a list's index or a map's key and
 * the second the element or the value.
 */
export interface Comprehension {
  readonly kind: "comprehension";
  readonly pos: number;
  readonly macro: MacroName;
  readonly range: Expr;
  readonly variable: string;
  /** The second variable of a two-variable comprehension. */
  readonly variable2: string | undefined;
  /** The predicate of all/exists/exists_one/filter, and the filter of a map or transform with one. */
  readonly predicate: Expr | undefined;
  /** The transform of map, transformList, transformMap, transformMapEntry. */
  readonly transform: Expr | undefined;
}

/** Number of nodes: the static part of an expression's evaluation cost. */
export function countNodes(expr: Expr | undefined): number {
  if (expr === undefined) return 0;
  switch (expr.kind) {
    case "literal":
    case "ident":
      return 1;
    case "select":
    case "has":
      return 1 + countNodes(expr.operand);
    case "index":
      return 1 + countNodes(expr.operand) + countNodes(expr.index);
    case "call":
      return 1 + countNodes(expr.target) + expr.args.reduce((n, a) => n + countNodes(a), 0);
    case "list":
      return 1 + expr.elements.reduce((n, e) => n + countNodes(e.value), 0);
    case "map":
      return 1 + expr.entries.reduce((n, e) => n + countNodes(e.key) + countNodes(e.value), 0);
    case "struct":
      return 1 + expr.fields.reduce((n, f) => n + countNodes(f.value), 0);
    case "comprehension":
      return 1 + countNodes(expr.range) + countNodes(expr.predicate) + countNodes(expr.transform);
    case "bind":
      return 1 + countNodes(expr.init) + countNodes(expr.body);
  }
}

/** Whether `test` holds for `expr` or any expression inside it. */
export function someNode(expr: Expr | undefined, test: (e: Expr) => boolean): boolean {
  if (expr === undefined) return false;
  if (test(expr)) return true;
  const some = (e: Expr | undefined) => someNode(e, test);
  switch (expr.kind) {
    case "literal":
    case "ident":
      return false;
    case "select":
    case "has":
      return some(expr.operand);
    case "index":
      return some(expr.operand) || some(expr.index);
    case "call":
      return some(expr.target) || expr.args.some(some);
    case "list":
      return expr.elements.some((e) => some(e.value));
    case "map":
      return expr.entries.some((e) => some(e.key) || some(e.value));
    case "struct":
      return expr.fields.some((f) => some(f.value));
    case "comprehension":
      return some(expr.range) || some(expr.predicate) || some(expr.transform);
    case "bind":
      return some(expr.init) || some(expr.body);
  }
}
