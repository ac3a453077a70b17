/**
 * Text → documents. One reader for every YAML or JSON input Polity takes (policies, layers,
 * resources, AdmissionReviews, tests): multi-document YAML, JSON, and Kubernetes `List`s,
 * with limits on size and nesting, and locations for every field so that a schema error
 * can say `file:line:column`.
 */
import { Composer, LineCounter, Parser, isMap, isNode, isScalar, type Document } from "yaml";
import { PolityError, type SourceLocation } from "../errors.js";

/** Largest input file or stream Polity reads. */
export const MAX_INPUT_BYTES = 16 * 1024 * 1024;
/** Deepest nesting of objects and arrays accepted in a document. */
export const MAX_DEPTH = 100;

export interface SourceDocument {
  readonly file: string;
  /** 0-based position among the documents of the file. */
  readonly index: number;
  readonly value: unknown;
  /** Where a field's value is, or the nearest enclosing field that exists. */
  locate(path: readonly (string | number)[]): SourceLocation;
  /** Where a map entry's key is (`foo:`), for problems with the entry itself such as an unknown field. */
  locateKey?(path: readonly (string | number)[]): SourceLocation;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

export function decodeText(bytes: Uint8Array, file: string): string {
  if (bytes.length > MAX_INPUT_BYTES) {
    throw PolityError.of("too-large", `input is ${bytes.length} bytes; the limit is ${MAX_INPUT_BYTES} bytes (16 MiB)`, {
      location: { file, line: 0, column: 0 },
    });
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw PolityError.of("invalid", "input is not UTF-8 text (binary data?)", { location: { file, line: 0, column: 0 } });
  }
  const nul = text.indexOf("\u0000");
  if (nul >= 0) {
    throw PolityError.of("invalid", "input contains a NUL character: binary data is not YAML or JSON", {
      location: { file, line: 0, column: 0 },
    });
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * Refuses text nested deeper than the limit before any parser sees it: a YAML parser
 * recurses per level, and thousands of levels exhaust its stack or its memory. Counts
 * flow brackets outside quotes, block sequence dashes at the start of a line, and
 * indentation.
 */
function checkTextNesting(text: string, file: string): void {
  let depth = 0;
  let quote = "";
  let line = 1;
  let lineStart = true;
  let dashes = 0;
  let indent = 0;
  const fail = () => {
    throw PolityError.of("too-large", `input is nested more than ${MAX_DEPTH} levels deep`, { location: { file, line, column: 1 } });
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "\n") {
      line++;
      lineStart = true;
      dashes = 0;
      indent = 0;
      continue;
    }
    if (lineStart) {
      if (c === " ") {
        if (++indent > MAX_DEPTH * 8) fail();
        continue;
      }
      if (c === "-" && (text[i + 1] === " " || text[i + 1] === "\t")) {
        if (++dashes > MAX_DEPTH) fail();
        i++;
        continue;
      }
      lineStart = false;
    }
    if (quote !== "") {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = "";
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === "#") {
      while (i + 1 < text.length && text[i + 1] !== "\n") i++;
    } else if (c === "[" || c === "{") {
      if (++depth > MAX_DEPTH) fail();
    } else if (c === "]" || c === "}") {
      depth = Math.max(0, depth - 1);
    }
  }
}

/** Parses every document of a YAML or JSON text; empty documents are skipped. */
export function parseDocuments(text: string, file: string): SourceDocument[] {
  return [...documentsOf(text, file)];
}

/**
 * The documents of a text, one at a time as the parser reaches them: a caller that must not
 * hold its thread for a large input (the hub, parsing a change of many MiB while it serves
 * others) can pause between them. Throws as parseDocuments does.
 */
export function* documentsOf(text: string, file: string): Generator<SourceDocument, void> {
  if (text.length > MAX_INPUT_BYTES) {
    throw PolityError.of("too-large", `input is longer than ${MAX_INPUT_BYTES} bytes (16 MiB)`, {
      location: { file, line: 0, column: 0 },
    });
  }
  checkTextNesting(text, file);
  const lines = new LineCounter();
  const at = (offset: number): SourceLocation => {
    const pos = lines.linePos(offset);
    return { file, line: pos.line, column: pos.col };
  };
  const parsed = new Composer<never, true>({ uniqueKeys: true, prettyErrors: false }).compose(new Parser(lines.addNewLine).parse(text)) as Generator<Document.Parsed>;
  let index = 0;
  for (;;) {
    let next: IteratorResult<Document.Parsed>;
    try {
      next = parsed.next();
    } catch (error) {
      throw nestingError(error, file);
    }
    if (next.done === true) return;
    const doc = next.value;
    const problem = doc.errors[0];
    if (problem !== undefined && /call stack/i.test(problem.message)) {
      throw PolityError.of("too-large", `input is nested too deeply (the limit is ${MAX_DEPTH} levels)`, { location: at(problem.pos[0]) });
    }
    if (problem !== undefined) {
      const message = problem.message.split("\n")[0] ?? problem.message;
      throw PolityError.of("invalid", `not valid YAML or JSON: ${message}`, { location: at(problem.pos[0]) });
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (error) {
      throw nestingError(error, file, at(doc.range[0]));
    }
    if (value === null || value === undefined) continue;
    checkDepth(value, file, at(doc.range[0]));
    const locate = (path: readonly (string | number)[]): SourceLocation => {
      for (let n = path.length; n >= 0; n--) {
        const node = doc.getIn(path.slice(0, n), true);
        if (isNode(node) && node.range !== undefined && node.range !== null) return at(node.range[0]);
      }
      return at(doc.range[0]);
    };
    const locateKey = (path: readonly (string | number)[]): SourceLocation => {
      const last = path[path.length - 1];
      if (typeof last === "string") {
        const parent = doc.getIn(path.slice(0, -1), true);
        if (isMap(parent)) {
          const pair = parent.items.find((item) => isScalar(item.key) && item.key.value === last);
          if (pair !== undefined && isNode(pair.key) && pair.key.range) return at(pair.key.range[0]);
        }
      }
      return locate(path);
    };
    for (const item of expandLists(value)) {
      yield {
        file,
        index: index++,
        value: item.value,
        locate: (path) => locate([...item.prefix, ...path]),
        locateKey: (path) => locateKey([...item.prefix, ...path]),
      };
    }
  }
}

function nestingError(error: unknown, file: string, location?: SourceLocation): PolityError {
  if (error instanceof RangeError) {
    return PolityError.of("too-large", `input is nested too deeply (the limit is ${MAX_DEPTH} levels)`, {
      location: location ?? { file, line: 0, column: 0 },
    });
  }
  if (error instanceof Error) {
    return PolityError.of("invalid", `not valid YAML or JSON: ${error.message}`, { location: location ?? { file, line: 0, column: 0 } });
  }
  throw error;
}

/** Rejects values nested deeper than MAX_DEPTH, iteratively so that the check itself cannot overflow. */
export function checkDepth(value: unknown, file: string, location: SourceLocation): void {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (depth > MAX_DEPTH) {
      throw PolityError.of("too-large", `document is nested more than ${MAX_DEPTH} levels deep`, { location });
    }
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === "object" && child !== null) stack.push([child, depth + 1]);
    }
  }
}

/** A Kubernetes `List` (what `kubectl get -o yaml` prints) stands for its items. */
function expandLists(value: unknown): { value: unknown; prefix: (string | number)[] }[] {
  if (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as { kind?: unknown }).kind === "string" &&
    /List$/.test((value as { kind: string }).kind) &&
    Array.isArray((value as { items?: unknown }).items)
  ) {
    return ((value as { items: unknown[] }).items).map((item, i) => ({ value: item, prefix: ["items", i] }));
  }
  return [{ value, prefix: [] }];
}

/**
 * Parses JSON without locations, for request bodies. With `checkNesting`, the same depth
 * limit as documents; without it (the admission hot path), callers catch RangeError.
 */
export function parseJson(text: string, file: string, checkNesting = true): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    if (error instanceof RangeError) throw nestingError(error, file);
    const message = (error as Error).message;
    const position = /position (\d+)/.exec(message);
    const location: SourceLocation = position !== null ? offsetLocation(text, file, Number(position[1])) : { file, line: 0, column: 0 };
    throw PolityError.of("invalid", `not valid JSON: ${message.replace(/ in JSON at position \d+.*$/, "")}`, { location });
  }
  if (checkNesting) checkDepth(value, file, { file, line: 0, column: 0 });
  return value;
}

function offsetLocation(text: string, file: string, offset: number): SourceLocation {
  let line = 1;
  let column = 1;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      column = 1;
    } else {
      column++;
    }
  }
  return { file, line, column };
}

