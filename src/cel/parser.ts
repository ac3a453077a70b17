/**
 * The CEL parser: recursive descent over the grammar of the CEL specification, with the
 * standard macros (has, all, exists, exists_one, map, filter) and cel.bind expanded.
 *
 * Errors are precise: they name what was expected and what was found, at the offset
 * where parsing could not continue. Expressions are bounded in size and nesting so that a
 * hostile policy cannot exhaust the stack, here or in the compiler.
 */
import type { Element, Expr, FieldInit, MacroName, MapEntry } from "./ast.js";
import { intLiteralInRange, LexError, tokenize, type Token } from "./lexer.js";

/** Upper bounds of cel-go's defaults: 100,000 code points, 250 levels of nesting. */
export const MAX_EXPRESSION_CODE_POINTS = 100_000;
export const MAX_NESTING = 250;

export class ParseError extends Error {
  constructor(
    message: string,
    readonly pos: number,
  ) {
    super(message);
  }
}

const RELATIONS: Record<string, string> = {
  "<": "_<_",
  "<=": "_<=_",
  ">": "_>_",
  ">=": "_>=_",
  "==": "_==_",
  "!=": "_!=_",
  in: "@in",
};
const ADDITIVE: Record<string, string> = { "+": "_+_", "-": "_-_" };
const MULTIPLICATIVE: Record<string, string> = { "*": "_*_", "/": "_/_", "%": "_%_" };

export function parseCel(source: string): Expr {
  let codePoints = 0;
  for (let i = 0; i < source.length; i++) {
    const c = source.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff) codePoints++;
  }
  if (codePoints > MAX_EXPRESSION_CODE_POINTS) {
    throw new ParseError(`expression is ${codePoints} code points long; the limit is ${MAX_EXPRESSION_CODE_POINTS}`, 0);
  }
  let tokens: Token[];
  try {
    tokens = tokenize(source);
  } catch (error) {
    if (error instanceof LexError) throw new ParseError(error.message, error.pos);
    throw error;
  }
  return new Parser(tokens).parseAll();
}

function describe(token: Token): string {
  switch (token.kind) {
    case "eof":
      return "end of expression";
    case "literal":
      return `literal ${token.text}`;
    case "reserved":
      return `reserved word '${token.text}'`;
    default:
      return `'${token.text}'`;
  }
}

class Parser {
  private index = 0;
  /** How deep the parser itself has recursed (parentheses nest without building nodes). */
  private recursion = 0;
  /** Nesting depth of each node, to bound recursion in every later pass. */
  private readonly depth = new WeakMap<Expr, number>();

  constructor(private readonly tokens: Token[]) {}

  parseAll(): Expr {
    const expr = this.expr();
    const next = this.peek();
    if (next.kind !== "eof") {
      throw new ParseError(`unexpected ${describe(next)} after a complete expression`, next.pos);
    }
    return expr;
  }

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.index + offset, this.tokens.length - 1)]!;
  }

  private next(): Token {
    const token = this.peek();
    if (token.kind !== "eof") this.index++;
    return token;
  }

  private isPunct(text: string, offset = 0): boolean {
    const token = this.peek(offset);
    return token.kind === "punct" && token.text === text;
  }

  private accept(text: string): Token | undefined {
    return this.isPunct(text) ? this.next() : undefined;
  }

  private expect(text: string, context: string): Token {
    const token = this.peek();
    if (token.kind === "punct" && token.text === text) return this.next();
    throw new ParseError(`expected '${text}' ${context}, found ${describe(token)}`, token.pos);
  }

  private node<E extends Expr>(expr: E, ...children: (Expr | undefined)[]): E {
    let d = 0;
    for (const child of children) {
      if (child !== undefined) d = Math.max(d, this.depth.get(child) ?? 0);
    }
    d += 1;
    if (d > MAX_NESTING) {
      throw new ParseError(`expression nests more than ${MAX_NESTING} levels deep`, expr.pos);
    }
    this.depth.set(expr, d);
    return expr;
  }

  private call(name: string, pos: number, args: Expr[], target?: Expr): Expr {
    return this.node({ kind: "call", pos, name, target, args }, target, ...args);
  }

  // expr : conditionalOr ('?' conditionalOr ':' expr)?
  private expr(): Expr {
    if (++this.recursion > MAX_NESTING) {
      throw new ParseError(`expression nests more than ${MAX_NESTING} levels deep`, this.peek().pos);
    }
    try {
      return this.conditional();
    } finally {
      this.recursion--;
    }
  }

  private conditional(): Expr {
    const condition = this.conditionalOr();
    const question = this.accept("?");
    if (question === undefined) return condition;
    const whenTrue = this.conditionalOr();
    this.expect(":", "in a conditional expression");
    const whenFalse = this.expr();
    return this.call("_?_:_", question.pos, [condition, whenTrue, whenFalse]);
  }

  private conditionalOr(): Expr {
    return this.logicalChain("||", "_||_", () => this.conditionalAnd());
  }

  private conditionalAnd(): Expr {
    return this.logicalChain("&&", "_&&_", () => this.relation());
  }

  /** `a && b && c …` is built as a balanced tree, as cel-go does: the operators are associative. */
  private logicalChain(op: string, name: string, operand: () => Expr): Expr {
    const terms = [operand()];
    const positions: number[] = [];
    let token: Token | undefined;
    while ((token = this.accept(op)) !== undefined) {
      positions.push(token.pos);
      terms.push(operand());
    }
    const balance = (lo: number, hi: number): Expr => {
      if (lo === hi) return terms[lo]!;
      const mid = Math.floor((lo + hi + 1) / 2);
      return this.call(name, positions[mid - 1]!, [balance(lo, mid - 1), balance(mid, hi)]);
    };
    return balance(0, terms.length - 1);
  }

  private relation(): Expr {
    let left = this.addition();
    for (;;) {
      const token = this.peek();
      const name = token.kind === "punct" ? RELATIONS[token.text] : undefined;
      if (name === undefined) return left;
      this.next();
      left = this.call(name, token.pos, [left, this.addition()]);
    }
  }

  private addition(): Expr {
    let left = this.multiplication();
    for (;;) {
      const token = this.peek();
      const name = token.kind === "punct" ? ADDITIVE[token.text] : undefined;
      if (name === undefined) return left;
      this.next();
      left = this.call(name, token.pos, [left, this.multiplication()]);
    }
  }

  private multiplication(): Expr {
    let left = this.unary();
    for (;;) {
      const token = this.peek();
      const name = token.kind === "punct" ? MULTIPLICATIVE[token.text] : undefined;
      if (name === undefined) return left;
      this.next();
      left = this.call(name, token.pos, [left, this.unary()]);
    }
  }

  // unary : member | '!'+ member | '-'+ member. An even run of the same operator cancels out
  // (as in cel-go); a minus directly before a numeric literal is part of the literal.
  private unary(): Expr {
    const first = this.peek();
    if (this.isPunct("!")) {
      let count = 0;
      while (this.accept("!")) count++;
      const operand = this.member();
      return count % 2 === 0 ? operand : this.call("!_", first.pos, [operand]);
    }
    if (this.isPunct("-")) {
      let count = 0;
      while (this.accept("-")) count++;
      const literal = this.peek();
      let operand: Expr;
      if (literal.kind === "literal" && (literal.literal?.type === "int" || literal.literal?.type === "double")) {
        count--;
        operand = this.member(true);
      } else {
        operand = this.member();
      }
      return count % 2 === 0 ? operand : this.call("-_", first.pos, [operand]);
    }
    return this.member();
  }

  private member(negativeLiteral = false): Expr {
    let expr = this.primary(negativeLiteral);
    for (;;) {
      const token = this.peek();
      if (token.kind !== "punct") return expr;
      if (token.text === ".") {
        this.next();
        const optional = this.accept("?") !== undefined;
        const name = this.peek();
        // Reserved words are valid field and method names: `{'if': 1}.if`.
        if (name.kind !== "ident" && name.kind !== "escaped-ident" && name.kind !== "reserved") {
          throw new ParseError(`expected a field or method name after '.', found ${describe(name)}`, name.pos);
        }
        this.next();
        if (!optional && name.kind !== "escaped-ident" && this.isPunct("(")) {
          const open = this.next();
          const args = this.argumentList(")", open);
          expr = this.memberCall(name.text, name.pos, expr, args);
        } else {
          expr = this.node({ kind: "select", pos: token.pos, operand: expr, field: name.text, optional }, expr);
        }
        continue;
      }
      if (token.text === "[") {
        this.next();
        const optional = this.accept("?") !== undefined;
        const index = this.expr();
        this.expect("]", `to close '[' at offset ${token.pos}`);
        expr = this.node({ kind: "index", pos: token.pos, operand: expr, index, optional }, expr, index);
        continue;
      }
      if (token.text === "{" && this.qualifiedName(expr) !== undefined) {
        expr = this.struct(this.qualifiedName(expr)!, token);
        continue;
      }
      return expr;
    }
  }

  /** The dotted name of `a.b.c` (or `.a.b`) when the expression is nothing but names. */
  private qualifiedName(expr: Expr): string | undefined {
    if (expr.kind === "ident") return expr.name;
    if (expr.kind === "select" && !expr.optional) {
      const base = this.qualifiedName(expr.operand);
      return base === undefined ? undefined : `${base}.${expr.field}`;
    }
    return undefined;
  }

  private primary(negativeLiteral: boolean): Expr {
    const token = this.peek();
    switch (token.kind) {
      case "literal": {
        this.next();
        const literal = token.literal!;
        if (literal.type === "int") {
          if (!intLiteralInRange(literal.value, negativeLiteral)) {
            throw new ParseError(`int literal ${negativeLiteral ? "-" : ""}${token.text} is out of range`, token.pos);
          }
          const value = negativeLiteral ? -literal.value : literal.value;
          return this.node({ kind: "literal", pos: token.pos, literal: { type: "int", value } });
        }
        if (literal.type === "double" && negativeLiteral) {
          return this.node({ kind: "literal", pos: token.pos, literal: { type: "double", value: -literal.value } });
        }
        return this.node({ kind: "literal", pos: token.pos, literal });
      }
      case "reserved":
        throw new ParseError(`'${token.text}' is a reserved word and cannot be used as an identifier`, token.pos);
      case "ident":
        this.next();
        if (this.isPunct("(")) {
          const open = this.next();
          return this.globalCall(token.text, token.pos, this.argumentList(")", open));
        }
        return this.node({ kind: "ident", pos: token.pos, name: token.text });
      case "punct":
        break;
      default:
        throw new ParseError(`expected an expression, found ${describe(token)}`, token.pos);
    }
    switch (token.text) {
      case ".": {
        this.next();
        const name = this.peek();
        if (name.kind !== "ident") {
          throw new ParseError(`expected an identifier after a leading '.', found ${describe(name)}`, name.pos);
        }
        this.next();
        if (this.isPunct("(")) {
          const open = this.next();
          return this.globalCall(`.${name.text}`, name.pos, this.argumentList(")", open));
        }
        return this.node({ kind: "ident", pos: token.pos, name: `.${name.text}` });
      }
      case "(": {
        this.next();
        const inner = this.expr();
        this.expect(")", `to close '(' at offset ${token.pos}`);
        return inner;
      }
      case "[": {
        this.next();
        const elements: Element[] = [];
        while (!this.isPunct("]")) {
          const optional = this.accept("?") !== undefined;
          elements.push({ value: this.expr(), optional });
          if (!this.accept(",")) break;
        }
        this.expect("]", `to close the list opened at offset ${token.pos}`);
        return this.node({ kind: "list", pos: token.pos, elements }, ...elements.map((e) => e.value));
      }
      case "{": {
        this.next();
        const entries: MapEntry[] = [];
        while (!this.isPunct("}")) {
          const optional = this.accept("?") !== undefined;
          const key = this.expr();
          this.expect(":", "between a map key and its value");
          entries.push({ key, value: this.expr(), optional });
          if (!this.accept(",")) break;
        }
        this.expect("}", `to close the map opened at offset ${token.pos}`);
        return this.node({ kind: "map", pos: token.pos, entries }, ...entries.flatMap((e) => [e.key, e.value]));
      }
      default:
        throw new ParseError(`expected an expression, found ${describe(token)}`, token.pos);
    }
  }

  private struct(typeName: string, open: Token): Expr {
    this.next();
    const fields: FieldInit[] = [];
    while (!this.isPunct("}")) {
      const optional = this.accept("?") !== undefined;
      const name = this.peek();
      if (name.kind !== "ident" && name.kind !== "escaped-ident") {
        throw new ParseError(`expected a field name, found ${describe(name)}`, name.pos);
      }
      this.next();
      this.expect(":", "after a field name");
      fields.push({ name: name.text, value: this.expr(), optional });
      if (!this.accept(",")) break;
    }
    this.expect("}", `to close the message opened at offset ${open.pos}`);
    return this.node({ kind: "struct", pos: open.pos, typeName, fields }, ...fields.map((f) => f.value));
  }

  private argumentList(close: string, open: Token): Expr[] {
    const args: Expr[] = [];
    if (this.accept(close)) return args;
    for (;;) {
      args.push(this.expr());
      if (this.accept(close)) return args;
      const token = this.peek();
      if (!this.accept(",")) {
        throw new ParseError(`expected ',' or '${close}' in the argument list opened at offset ${open.pos}, found ${describe(token)}`, token.pos);
      }
    }
  }

  private globalCall(name: string, pos: number, args: Expr[]): Expr {
    if (name === "has" && args.length === 1) {
      const arg = args[0]!;
      if (arg.kind !== "select" || arg.optional) {
        throw new ParseError("invalid argument to has() macro: expected a field selection such as has(a.b)", arg.pos);
      }
      return this.node({ kind: "has", pos, operand: arg.operand, field: arg.field }, arg.operand);
    }
    return this.call(name, pos, args);
  }

  private memberCall(name: string, pos: number, target: Expr, args: Expr[]): Expr {
    const macro = macroFor(name, args.length);
    if (macro !== undefined) {
      const variable = this.macroVariable(name, args[0]!);
      const twoVariables = macro.variables === 2;
      const variable2 = twoVariables ? this.macroVariable(name, args[1]!) : undefined;
      if (variable2 !== undefined && variable2 === variable) {
        throw new ParseError(`${name}(): the two variables must have different names, both are '${variable}'`, args[1]!.pos);
      }
      const body = args.slice(macro.variables);
      const transforms = macro.name === "map" || macro.name.startsWith("transform");
      const predicate = transforms ? (body.length === 2 ? body[0] : undefined) : body[0];
      const transform = transforms ? body[body.length - 1] : undefined;
      return this.node(
        { kind: "comprehension", pos, macro: macro.name, range: target, variable, variable2, predicate, transform },
        target,
        predicate,
        transform,
      );
    }
    if (name === "bind" && args.length === 3 && target.kind === "ident" && target.name === "cel") {
      const variable = args[0]!;
      if (variable.kind !== "ident" || variable.name.startsWith(".")) {
        throw new ParseError("the first argument of cel.bind() must be a simple name", variable.pos);
      }
      return this.node({ kind: "bind", pos, name: variable.name, init: args[1]!, body: args[2]! }, args[1], args[2]);
    }
    if ((name === "optMap" || name === "optFlatMap") && args.length === 2) return this.optionalMap(name, pos, target, args);
    return this.call(name, pos, args, target);
  }

  private macroVariable(macro: string, variable: Expr): string {
    if (variable.kind !== "ident" || variable.name.startsWith(".")) {
      throw new ParseError(`the variables of ${macro}() must be simple names`, variable.pos);
    }
    return variable.name;
  }

  /**
   * `o.optMap(x, e)` is `o.hasValue() ? optional.of(e with x = o.value()) : optional.none()`
   * (optFlatMap leaves out the optional.of), as cel-go expands it; `o` is evaluated once,
   * bound to a name no expression can write.
   */
  private optionalMap(name: string, pos: number, target: Expr, args: Expr[]): Expr {
    const variable = this.macroVariable(name, args[0]!);
    const held: Expr = { kind: "ident", pos, name: OPTIONAL_TARGET };
    const value = this.call("value", pos, [], held);
    const mapped = this.node({ kind: "bind", pos, name: variable, init: value, body: args[1]! }, value, args[1]);
    const optionalNs: Expr = { kind: "ident", pos, name: "optional" };
    const some = name === "optMap" ? this.call("of", pos, [mapped], optionalNs) : mapped;
    const none = this.call("none", pos, [], optionalNs);
    const choice = this.call("_?_:_", pos, [this.call("hasValue", pos, [], held), some, none]);
    return this.node({ kind: "bind", pos, name: OPTIONAL_TARGET, init: target, body: choice }, target, choice);
  }
}

/** The name optMap and optFlatMap bind their target to: no identifier can start with '@'. */
export const OPTIONAL_TARGET = "@optional";

function macroFor(name: string, arity: number): { name: MacroName; variables: 1 | 2 } | undefined {
  switch (name) {
    case "all":
    case "exists":
    case "filter":
      if (arity === 2) return { name, variables: 1 };
      return arity === 3 && name !== "filter" ? { name, variables: 2 } : undefined;
    case "exists_one":
      return arity === 2 ? { name: "exists_one", variables: 1 } : undefined;
    case "existsOne":
      if (arity === 2) return { name: "exists_one", variables: 1 };
      return arity === 3 ? { name: "exists_one", variables: 2 } : undefined;
    case "map":
      return arity === 2 || arity === 3 ? { name: "map", variables: 1 } : undefined;
    case "transformList":
    case "transformMap":
    case "transformMapEntry":
      return arity === 3 || arity === 4 ? { name, variables: 2 } : undefined;
    default:
      return undefined;
  }
}
