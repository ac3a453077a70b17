/**
 * The CEL lexer, after the grammar of the CEL specification (langdef.md, "Syntax").
 * It turns source text into tokens with their offsets; literal values are decoded here so
 * that a malformed escape or an out-of-range number is reported where it is.
 */
import type { Literal } from "./ast.js";

export type TokenKind =
  | "ident"
  | "escaped-ident"
  | "literal"
  | "punct"
  | "reserved"
  | "eof";

export interface Token {
  readonly kind: TokenKind;
  /** For ident, reserved and punct: the text. For literal: the source text. */
  readonly text: string;
  readonly pos: number;
  readonly end: number;
  readonly literal?: Literal;
}

export class LexError extends Error {
  constructor(
    message: string,
    readonly pos: number,
  ) {
    super(message);
  }
}

const RESERVED = new Set([
  "as",
  "break",
  "const",
  "continue",
  "else",
  "for",
  "function",
  "if",
  "import",
  "let",
  "loop",
  "package",
  "namespace",
  "return",
  "var",
  "void",
  "while",
]);

const PUNCTUATION = [
  "==",
  "!=",
  "<=",
  ">=",
  "&&",
  "||",
  "<",
  ">",
  "+",
  "-",
  "*",
  "/",
  "%",
  "!",
  "?",
  ":",
  ".",
  ",",
  "(",
  ")",
  "[",
  "]",
  "{",
  "}",
];

const INT64_MAX = 9223372036854775807n;
const UINT64_MAX = 18446744073709551615n;

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "9";
}

function isHexDigit(c: string | undefined): boolean {
  return c !== undefined && /^[0-9a-fA-F]$/.test(c);
}

function isIdentStart(c: string | undefined): boolean {
  return c !== undefined && (c === "_" || (c >= "a" && c <= "z") || (c >= "A" && c <= "Z"));
}

function isIdentPart(c: string | undefined): boolean {
  return isIdentStart(c) || isDigit(c);
}

export function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const n = source.length;
  while (i < n) {
    const c = source[i]!;
    if (c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f") {
      i++;
      continue;
    }
    if (c === "/" && source[i + 1] === "/") {
      while (i < n && source[i] !== "\n") i++;
      continue;
    }
    const start = i;
    // String and bytes literals, with r/b prefixes in either order.
    const prefix = /^(?:[rR][bB]?|[bB][rR]?)?(?="|')/.exec(source.slice(i, i + 3));
    if (prefix !== null && (prefix[0].length > 0 || c === '"' || c === "'")) {
      const flags = prefix[0].toLowerCase();
      const token = lexString(source, start, i + flags.length, flags.includes("r"), flags.includes("b"));
      tokens.push(token);
      i = token.end;
      continue;
    }
    if (isIdentStart(c)) {
      while (i < n && isIdentPart(source[i])) i++;
      const text = source.slice(start, i);
      if (text === "true" || text === "false") {
        tokens.push({ kind: "literal", text, pos: start, end: i, literal: { type: "bool", value: text === "true" } });
      } else if (text === "null") {
        tokens.push({ kind: "literal", text, pos: start, end: i, literal: { type: "null" } });
      } else if (text === "in") {
        tokens.push({ kind: "punct", text, pos: start, end: i });
      } else {
        tokens.push({ kind: RESERVED.has(text) ? "reserved" : "ident", text, pos: start, end: i });
      }
      continue;
    }
    if (c === "`") {
      const close = source.indexOf("`", i + 1);
      if (close < 0) throw new LexError("unterminated quoted identifier", start);
      const text = source.slice(i + 1, close);
      if (!/^[_a-zA-Z0-9.\-/ ]+$/.test(text)) {
        throw new LexError(`invalid quoted identifier \`${text}\``, start);
      }
      tokens.push({ kind: "escaped-ident", text, pos: start, end: close + 1 });
      i = close + 1;
      continue;
    }
    if (isDigit(c) || (c === "." && isDigit(source[i + 1]))) {
      const token = lexNumber(source, start);
      tokens.push(token);
      i = token.end;
      continue;
    }
    const punct = PUNCTUATION.find((p) => source.startsWith(p, i));
    if (punct !== undefined) {
      tokens.push({ kind: "punct", text: punct, pos: start, end: i + punct.length });
      i += punct.length;
      continue;
    }
    const codePoint = source.codePointAt(i) ?? 0;
    throw new LexError(`unexpected character '${String.fromCodePoint(codePoint)}'`, start);
  }
  tokens.push({ kind: "eof", text: "end of expression", pos: n, end: n });
  return tokens;
}

function lexNumber(source: string, start: number): Token {
  let i = start;
  const n = source.length;
  if (source[i] === "0" && (source[i + 1] === "x" || source[i + 1] === "X") && isHexDigit(source[i + 2])) {
    i += 2;
    while (i < n && isHexDigit(source[i])) i++;
    const digits = source.slice(start + 2, i);
    return integerToken(source, start, i, BigInt("0x" + digits));
  }
  while (i < n && isDigit(source[i])) i++;
  let isFloat = false;
  if (source[i] === "." && isDigit(source[i + 1])) {
    isFloat = true;
    i++;
    while (i < n && isDigit(source[i])) i++;
  }
  if ((source[i] === "e" || source[i] === "E") && (isDigit(source[i + 1]) || ((source[i + 1] === "+" || source[i + 1] === "-") && isDigit(source[i + 2])))) {
    isFloat = true;
    i += 2;
    while (i < n && isDigit(source[i])) i++;
  }
  const text = source.slice(start, i);
  if (isFloat) {
    return { kind: "literal", text, pos: start, end: i, literal: { type: "double", value: Number(text) } };
  }
  return integerToken(source, start, i, BigInt(text));
}

function integerToken(source: string, start: number, end: number, value: bigint): Token {
  if (source[end] === "u" || source[end] === "U") {
    if (value > UINT64_MAX) throw new LexError("uint literal out of range", start);
    return { kind: "literal", text: source.slice(start, end + 1), pos: start, end: end + 1, literal: { type: "uint", value } };
  }
  // Range is checked by the parser, which knows whether a minus sign precedes the literal.
  return { kind: "literal", text: source.slice(start, end), pos: start, end, literal: { type: "int", value } };
}

/** Whether an int literal's magnitude fits int64 with the given sign. */
export function intLiteralInRange(value: bigint, negative: boolean): boolean {
  return negative ? value <= INT64_MAX + 1n : value <= INT64_MAX;
}

function lexString(source: string, start: number, quoteAt: number, raw: boolean, bytes: boolean): Token {
  const q = source[quoteAt]!;
  const triple = source.startsWith(q.repeat(3), quoteAt);
  const delimiter = triple ? q.repeat(3) : q;
  let i = quoteAt + delimiter.length;
  const n = source.length;
  const codePoints: number[] = [];
  const octets: number[] = [];
  const pushCodePoint = (cp: number) => {
    if (bytes) {
      for (const b of Buffer.from(String.fromCodePoint(cp), "utf8")) octets.push(b);
    } else {
      codePoints.push(cp);
    }
  };
  while (true) {
    if (i >= n) throw new LexError("unterminated string literal", start);
    if (source.startsWith(delimiter, i)) {
      i += delimiter.length;
      break;
    }
    const c = source[i]!;
    if (!triple && (c === "\n" || c === "\r")) throw new LexError("unterminated string literal", start);
    if (c === "\\" && !raw) {
      const escapeAt = i;
      const e = source[i + 1];
      i += 2;
      switch (e) {
        case "a": pushCodePoint(7); break;
        case "b": pushCodePoint(8); break;
        case "f": pushCodePoint(12); break;
        case "n": pushCodePoint(10); break;
        case "r": pushCodePoint(13); break;
        case "t": pushCodePoint(9); break;
        case "v": pushCodePoint(11); break;
        case "\\": case "'": case '"': case "?": case "`":
          pushCodePoint(e.charCodeAt(0));
          break;
        case "x": case "X": {
          const hex = source.slice(i, i + 2);
          if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new LexError("invalid \\x escape: expected two hex digits", escapeAt);
          i += 2;
          if (bytes) octets.push(parseInt(hex, 16));
          else codePoints.push(parseInt(hex, 16));
          break;
        }
        case "u": case "U": {
          const width = e === "u" ? 4 : 8;
          const hex = source.slice(i, i + width);
          if (!new RegExp(`^[0-9a-fA-F]{${width}}$`).test(hex)) {
            throw new LexError(`invalid \\${e} escape: expected ${width} hex digits`, escapeAt);
          }
          i += width;
          const cp = parseInt(hex, 16);
          if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
            throw new LexError(`invalid \\${e} escape: U+${hex.toUpperCase()} is not a Unicode scalar value`, escapeAt);
          }
          pushCodePoint(cp);
          break;
        }
        case "0": case "1": case "2": case "3": {
          const oct = source.slice(i - 1, i + 2);
          if (!/^[0-3][0-7]{2}$/.test(oct)) throw new LexError("invalid octal escape: expected three octal digits", escapeAt);
          i += 2;
          if (bytes) octets.push(parseInt(oct, 8));
          else codePoints.push(parseInt(oct, 8));
          break;
        }
        default:
          throw new LexError(`invalid escape sequence \\${e ?? ""}`, escapeAt);
      }
      continue;
    }
    const cp = source.codePointAt(i)!;
    i += cp > 0xffff ? 2 : 1;
    pushCodePoint(cp);
  }
  const text = source.slice(start, i);
  const literal: Literal = bytes
    ? { type: "bytes", value: Uint8Array.from(octets) }
    : { type: "string", value: fromCodePoints(codePoints) };
  return { kind: "literal", text, pos: start, end: i, literal };
}

function fromCodePoints(codePoints: readonly number[]): string {
  let out = "";
  for (let i = 0; i < codePoints.length; i += 4096) {
    out += String.fromCodePoint(...codePoints.slice(i, i + 4096));
  }
  return out;
}
