/**
 * Polity's one canonical JSON encoding: RFC 8785 (JSON Canonicalization Scheme). Keys are
 * sorted by UTF-16 code units, there is no whitespace, and numbers and strings are written
 * as ECMAScript's JSON.stringify writes them, which is what RFC 8785 specifies. The same
 * value always gives the same bytes, so hashes and signatures over them are reproducible.
 */
import { createHash } from "node:crypto";

export type Json = null | boolean | number | string | readonly Json[] | { readonly [key: string]: Json };

export function canonicalJson(value: unknown): string {
  try {
    return encode(value);
  } catch (error) {
    // Found fast without tracking where; found again, slowly, to say where.
    if (error instanceof TypeError) throw new TypeError(`${pathOfUnencodable(value, "$") ?? "$"}: ${error.message}`);
    throw error;
  }
}

/** The hot path (every bundle, every audit entry): no path strings, one string built up. */
function encode(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`${value} has no JSON form`);
      return JSON.stringify(value);
    case "string":
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) {
        let out = "[";
        for (let i = 0; i < value.length; i++) out += (i === 0 ? "" : ",") + encode(value[i]);
        return out + "]";
      }
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record).sort();
      let out = "{";
      for (const key of keys) {
        const inner = record[key];
        if (inner === undefined) continue;
        out += (out.length === 1 ? "" : ",") + JSON.stringify(key) + ":" + encode(inner);
      }
      return out + "}";
    }
    default:
      throw new TypeError(`a ${typeof value} has no JSON form`);
  }
}

/** Where in `value` the first thing without a JSON form is, as `$.a[2].b`. */
function pathOfUnencodable(value: unknown, path: string): string | undefined {
  if (value === null) return undefined;
  switch (typeof value) {
    case "boolean":
    case "string":
      return undefined;
    case "number":
      return Number.isFinite(value) ? undefined : path;
    case "object": {
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const found = pathOfUnencodable(value[i], `${path}[${i}]`);
          if (found !== undefined) return found;
        }
        return undefined;
      }
      const record = value as Record<string, unknown>;
      for (const key of Object.keys(record).sort()) {
        if (record[key] === undefined) continue;
        const found = pathOfUnencodable(record[key], `${path}.${key}`);
        if (found !== undefined) return found;
      }
      return undefined;
    }
    default:
      return path;
  }
}

export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), "utf8");
}

/** Bytes, or text hashed as its UTF-8 bytes. */
export type HashInput = Uint8Array | string;

/**
 * Polity's one content hash, `sha256:<hex>`: of layer files, bundle targets, effective
 * policy sets and audit entries. Content may come in parts, hashed as their concatenation,
 * so that a document assembled from cached pieces is hashed without joining them first.
 */
export function contentHash(content: HashInput | readonly HashInput[]): string {
  const hash = createHash("sha256");
  if (typeof content === "string" || content instanceof Uint8Array) hash.update(content);
  else for (const part of content) hash.update(part);
  return `sha256:${hash.digest("hex")}`;
}
