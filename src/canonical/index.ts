/**
 * Polity's one canonical JSON encoding: RFC 8785 (JSON Canonicalization Scheme). Keys are
 * sorted by UTF-16 code units, there is no whitespace, and numbers and strings are written
 * as ECMAScript's JSON.stringify writes them, which is what RFC 8785 specifies. The same
 * value always gives the same bytes, so hashes and signatures over them are reproducible.
 */
import { createHash } from "node:crypto";

export type Json = null | boolean | number | string | readonly Json[] | { readonly [key: string]: Json };

export function canonicalJson(value: unknown): string {
  return encode(value, "$");
}

function encode(value: unknown, path: string): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`${path}: ${value} has no JSON form`);
      return JSON.stringify(value);
    case "string":
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) {
        return `[${value.map((item, i) => encode(item, `${path}[${i}]`)).join(",")}]`;
      }
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record)
        .filter((key) => record[key] !== undefined)
        .sort();
      return `{${keys.map((key) => `${JSON.stringify(key)}:${encode(record[key], `${path}.${key}`)}`).join(",")}}`;
    }
    default:
      throw new TypeError(`${path}: a ${typeof value} has no JSON form`);
  }
}

export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), "utf8");
}

/** `sha256:<hex>` of the bytes. */
export function contentHash(bytes: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}
