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

export type MacroName = "all" | "exists" | "exists_one" | "map" | "filter";

/** A comprehension macro over a list (its elements) or a map (its keys). */
export interface Comprehension {
  readonly kind: "comprehension";
  readonly pos: number;
  readonly macro: MacroName;
  readonly range: Expr;
  readonly variable: string;
  /** The predicate of all/exists/exists_one/filter, and the filter of a three-argument map. */
  readonly predicate: Expr | undefined;
  /** The transform of map. */
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
