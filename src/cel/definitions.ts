/**
 * `variables.<name>`: named sub-expressions, as a Kubernetes ValidatingAdmissionPolicy
 * declares them in spec.variables. Each reference is bound once per evaluation: the
 * expression is wrapped in cel.bind for every definition it uses (directly or through
 * another definition), in declaration order.
 */
import type { Expr } from "./ast.js";
import { parseCel, ParseError } from "./parser.js";

export class DefinitionError extends Error {
  constructor(
    /** The definition the error is in; undefined when it is in the expression itself. */
    readonly definition: string | undefined,
    readonly kind: "syntax" | "type",
    message: string,
  ) {
    super(message);
  }
}

/** The local name a definition is bound to: not writable in CEL source, so it cannot clash. */
function localName(name: string): string {
  return `@variables.${name}`;
}

export function withDefinitions(expr: Expr, definitions: readonly { name: string; source: string }[]): Expr {
  if (definitions.length === 0) return expr;
  const parsed = new Map<string, Expr>();
  const uses = new Map<string, Set<string>>();
  for (const definition of definitions) {
    let ast: Expr;
    try {
      ast = parseCel(definition.source);
    } catch (error) {
      if (error instanceof ParseError) throw new DefinitionError(definition.name, "syntax", error.message);
      throw error;
    }
    const used = new Set<string>();
    const rewritten = rewrite(ast, new Set(parsed.keys()), used, []);
    for (const name of used) {
      if (!parsed.has(name)) throw new DefinitionError(definition.name, "type", `uses variables.${name}, which is not defined before it`);
    }
    parsed.set(definition.name, rewritten);
    uses.set(definition.name, used);
  }
  const direct = new Set<string>();
  let body = rewrite(expr, new Set(parsed.keys()), direct, []);
  for (const name of direct) {
    if (!parsed.has(name)) throw new DefinitionError(undefined, "type", `variables.${name} is not defined`);
  }
  // Close over what the definitions themselves use.
  const needed = new Set<string>();
  const visit = (name: string) => {
    if (needed.has(name)) return;
    needed.add(name);
    for (const other of uses.get(name) ?? []) visit(other);
  };
  direct.forEach(visit);
  const order = definitions.map((d) => d.name).filter((name) => needed.has(name));
  for (let i = order.length - 1; i >= 0; i--) {
    const name = order[i]!;
    body = { kind: "bind", pos: 0, name: localName(name), init: parsed.get(name)!, body };
  }
  return body;
}

/** Replaces `variables.<name>` (where `variables` is not a comprehension variable) by the bound local. */
function rewrite(expr: Expr, defined: ReadonlySet<string>, used: Set<string>, locals: readonly string[]): Expr {
  const r = (e: Expr, inner = locals) => rewrite(e, defined, used, inner);
  switch (expr.kind) {
    case "literal":
    case "ident":
      return expr;
    case "select":
      if (
        !expr.optional &&
        expr.operand.kind === "ident" &&
        expr.operand.name === "variables" &&
        !locals.includes("variables")
      ) {
        used.add(expr.field);
        if (!defined.has(expr.field)) return expr;
        return { kind: "ident", pos: expr.pos, name: localName(expr.field) };
      }
      return { ...expr, operand: r(expr.operand) };
    case "has":
      return { ...expr, operand: r(expr.operand) };
    case "index":
      return { ...expr, operand: r(expr.operand), index: r(expr.index) };
    case "call":
      return { ...expr, target: expr.target === undefined ? undefined : r(expr.target), args: expr.args.map((a) => r(a)) };
    case "list":
      return { ...expr, elements: expr.elements.map((e) => ({ ...e, value: r(e.value) })) };
    case "map":
      return { ...expr, entries: expr.entries.map((e) => ({ ...e, key: r(e.key), value: r(e.value) })) };
    case "struct":
      return { ...expr, fields: expr.fields.map((f) => ({ ...f, value: r(f.value) })) };
    case "comprehension": {
      const inner = [...locals, expr.variable];
      return {
        ...expr,
        range: r(expr.range),
        predicate: expr.predicate === undefined ? undefined : r(expr.predicate, inner),
        transform: expr.transform === undefined ? undefined : r(expr.transform, inner),
      };
    }
    case "bind":
      return { ...expr, init: r(expr.init), body: r(expr.body, [...locals, expr.name]) };
  }
}
