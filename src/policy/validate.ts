/**
 * Schema validation of parsed documents, with errors a person can act on: the file, line
 * and column, the field path, what was expected and what was there.
 */
import type { z } from "zod";
import { fieldPath, type Problem } from "../errors.js";
import type { SourceDocument } from "../source/parse.js";
import { API_VERSION, DOCUMENT_SCHEMAS, type DocumentKind, type PolityDocument } from "./schema.js";

export type Validated = { readonly ok: true; readonly document: PolityDocument } | { readonly ok: false; readonly problems: Problem[] };

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a map";
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value)}`;
  return `${typeof value} ${String(value)}`;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const segment of path) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[segment];
  }
  return v;
}

const EXPECTED: Record<string, string> = {
  string: "a string",
  number: "a number",
  boolean: "true or false",
  array: "a list",
  object: "a map",
  record: "a map",
};

function describeIssue(issue: z.core.$ZodIssue, root: unknown): { path: (string | number)[]; message: string; atKey?: boolean }[] {
  const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
  const actual = valueAt(root, path);
  switch (issue.code) {
    case "invalid_type": {
      const expected = EXPECTED[issue.expected] ?? issue.expected;
      if (actual === undefined) return [{ path, message: `is required (${expected})` }];
      return [{ path, message: `expected ${expected}, got ${typeName(actual)}` }];
    }
    case "unrecognized_keys":
      return issue.keys.map((key) => ({ path: [...path, key], message: "unknown field", atKey: true }));
    case "invalid_value":
      return [
        {
          path,
          message: `must be ${issue.values.length === 1 ? JSON.stringify(issue.values[0]) : `one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`}, got ${typeName(actual)}`,
        },
      ];
    case "too_small":
      if (issue.origin === "array") return [{ path, message: issue.message.startsWith("Too small") ? `must have at least ${String(issue.minimum)} item(s)` : issue.message }];
      if (issue.origin === "string") return [{ path, message: issue.message.startsWith("Too small") ? `must be at least ${String(issue.minimum)} characters` : issue.message }];
      return [{ path, message: issue.message }];
    case "invalid_key":
      // A map key that breaks its rule (a label key): say why, at the key.
      return issue.issues.map((inner) => ({ path, message: `invalid key: ${inner.message}`, atKey: true }));
    case "invalid_union":
      return [{ path, message: `is not a valid value: got ${typeName(actual)}` }];
    default:
      return [{ path, message: issue.message }];
  }
}

export function validateDocument(source: SourceDocument): Validated {
  const value = source.value;
  const at = (path: (string | number)[], message: string, atKey = false): Problem => ({
    message,
    path: fieldPath(path),
    location: atKey && source.locateKey !== undefined ? source.locateKey(path) : source.locate(path),
  });
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, problems: [at([], `expected a document (a map with apiVersion and kind), got ${typeName(value)}`)] };
  }
  const record = value as Record<string, unknown>;
  if (record.apiVersion !== API_VERSION) {
    return {
      ok: false,
      problems: [at(["apiVersion"], `must be ${JSON.stringify(API_VERSION)}, got ${record.apiVersion === undefined ? "nothing" : typeName(record.apiVersion)}`)],
    };
  }
  const kind = record.kind;
  if (typeof kind !== "string" || !(kind in DOCUMENT_SCHEMAS)) {
    return {
      ok: false,
      problems: [at(["kind"], `must be one of ${Object.keys(DOCUMENT_SCHEMAS).join(", ")}, got ${kind === undefined ? "nothing" : typeName(kind)}`)],
    };
  }
  const schema = DOCUMENT_SCHEMAS[kind as DocumentKind];
  const result = schema.safeParse(value);
  if (result.success) return { ok: true, document: result.data };
  const problems = result.error.issues.flatMap((issue) => describeIssue(issue, value)).map((p) => at(p.path, p.message, p.atKey));
  return { ok: false, problems };
}
