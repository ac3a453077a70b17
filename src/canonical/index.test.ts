/**
 * RFC 8785 canonical JSON: the examples of the RFC's section 3.2.2 and 3.2.3, sorting by
 * UTF-16 code units, and errors that say where a value has no JSON form.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalJson, contentHash } from "./index.js";

describe("canonicalJson", () => {
  it("writes RFC 8785's sample (section 3.2.2) exactly", () => {
    const sample = {
      // eslint-disable-next-line no-loss-of-precision -- the RFC's own literal, which rounds
      numbers: [333333333.33333329, 1e30, 4.5, 2e-3, 0.000000000000000000000000001],
      string: "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"/",
      literals: [null, true, false],
    };
    expect(canonicalJson(sample)).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it("sorts keys by UTF-16 code units (RFC 8785 section 3.2.3), at every depth", () => {
    const value = { "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis" };
    const order = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\ud83d\ude00", "\ufb33"] as const;
    const expected = `{${order.map((key) => `${JSON.stringify(key)}:${JSON.stringify(value[key])}`).join(",")}}`;
    expect(canonicalJson({ nested: [value] })).toBe(`{"nested":[${expected}]}`);
  });

  it("leaves out fields that are undefined, as JSON.stringify does", () => {
    expect(canonicalJson({ b: 1, a: undefined, c: { d: undefined } })).toBe('{"b":1,"c":{}}');
  });

  it("names the path of a value with no JSON form", () => {
    expect(() => canonicalJson({ a: [1, { b: Number.NaN }] })).toThrow("$.a[1].b: NaN has no JSON form");
    expect(() => canonicalJson({ z: 1, f: () => 1 })).toThrow("$.f: a function has no JSON form");
    expect(() => canonicalJson([1, undefined])).toThrow("$[1]: a undefined has no JSON form");
    expect(() => canonicalJson(Infinity)).toThrow("$: Infinity has no JSON form");
  });

  it("gives the same bytes as sorted JSON.stringify for any JSON value, whatever the key order", () => {
    const sorted = (value: unknown): unknown =>
      Array.isArray(value)
        ? value.map(sorted)
        : value !== null && typeof value === "object"
          ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [k, sorted(v)]))
          : value;
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = canonicalJson(value);
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value)));
        // Object.fromEntries puts integer-like keys first, so compare through a re-encode.
        expect(canonicalJson(sorted(value))).toBe(text);
      }),
    );
  });

  it("hashes as sha256:<hex>", () => {
    expect(contentHash("")).toBe("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  });

  it("hashes text as its UTF-8 bytes, and content in parts as the parts joined", () => {
    expect(contentHash("é€")).toBe(contentHash(new TextEncoder().encode("é€")));
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string({ unit: "grapheme" }), fc.uint8Array())), (parts) => {
        const joined = Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : Buffer.from(p))));
        expect(contentHash(parts)).toBe(contentHash(joined));
      }),
    );
  });
});
