/**
 * Kubernetes names and labels: the rules of k8s.io/apimachinery's validation at their
 * length edges, problems in words, and patterns that accept exactly what the rules accept.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DNS_LABEL_PATTERN,
  DNS_SUBDOMAIN_PATTERN,
  dnsLabelProblems,
  dnsSubdomainProblems,
  isDnsLabel,
  isDnsSubdomain,
  isLabelKey,
  isLabelValue,
  LABEL_KEY_PATTERN,
  LABEL_VALUE_PATTERN,
  labelKeyProblems,
  labelValueProblems,
} from "./names.js";

const a = (n: number) => "a".repeat(n);
/** A DNS subdomain of exactly `n` characters: labels of up to 63 joined by dots. */
const subdomain = (n: number) => {
  const labels: string[] = [];
  let left = n;
  while (left > 63) {
    const size = left - 64 >= 1 ? 63 : left - 2;
    labels.push(a(size));
    left -= size + 1;
  }
  labels.push(a(left));
  return labels.join(".");
};

describe("a DNS-1123 label", () => {
  it("has at most 63 characters", () => {
    expect(isDnsLabel(a(63))).toBe(true);
    expect(isDnsLabel(a(64))).toBe(false);
    expect(dnsLabelProblems(a(64))).toEqual(["must be no more than 63 characters"]);
  });

  it("is lowercase letters, digits and '-', starting and ending with a letter or digit", () => {
    for (const good of ["a", "0", "eu-west", "123-abc", "a--b"]) expect(isDnsLabel(good), good).toBe(true);
    for (const bad of ["", "-a", "a-", "EU", "eu_west", "eu.west", "é"]) expect(isDnsLabel(bad), bad).toBe(false);
  });

  it("says what is wrong", () => {
    expect(dnsLabelProblems("")).toEqual(["must not be empty"]);
    expect(dnsLabelProblems("EU_West")).toEqual([expect.stringMatching(/^must be a lowercase RFC 1123 label: /)]);
    expect(dnsLabelProblems(`${a(63)}_`)).toHaveLength(2);
    expect(dnsLabelProblems("eu-west")).toEqual([]);
  });
});

describe("a DNS-1123 subdomain", () => {
  it("has at most 253 characters", () => {
    expect(isDnsSubdomain(subdomain(253))).toBe(true);
    expect(isDnsSubdomain(subdomain(254))).toBe(false);
    expect(dnsSubdomainProblems(subdomain(254))).toEqual(["must be no more than 253 characters"]);
  });

  it("is DNS labels joined by dots, each label unbounded on its own, as in Kubernetes", () => {
    for (const good of ["a", "eu-west-1.example.com", a(100), "1.2.3"]) expect(isDnsSubdomain(good), good).toBe(true);
    for (const bad of ["", ".a", "a.", "a..b", "a.-b", "A.b", "a_b"]) expect(isDnsSubdomain(bad), bad).toBe(false);
  });

  it("says what is wrong", () => {
    expect(dnsSubdomainProblems("")).toEqual(["must not be empty"]);
    expect(dnsSubdomainProblems("a..b")).toEqual([expect.stringMatching(/^must be a lowercase RFC 1123 subdomain: /)]);
  });
});

describe("a label key", () => {
  it("has a name of at most 63 characters", () => {
    expect(isLabelKey(a(63))).toBe(true);
    expect(isLabelKey(a(64))).toBe(false);
    expect(labelKeyProblems(a(64))).toEqual(["name part must be no more than 63 characters"]);
  });

  it("may have a DNS subdomain prefix of at most 253 characters before a '/'", () => {
    expect(isLabelKey(`${subdomain(253)}/${a(63)}`)).toBe(true);
    expect(isLabelKey(`${subdomain(254)}/a`)).toBe(false);
    expect(labelKeyProblems(`${subdomain(254)}/a`)).toEqual(["prefix part must be no more than 253 characters"]);
    expect(isLabelKey("app.kubernetes.io/name")).toBe(true);
    expect(isLabelKey("kubernetes.io/metadata.name")).toBe(true);
  });

  it("has a name of letters, digits, '-', '_' and '.', starting and ending with a letter or digit", () => {
    for (const good of ["env", "Env", "my.name", "my_name", "123-abc", "a"]) expect(isLabelKey(good), good).toBe(true);
    for (const bad of ["", "-env", "env-", "_env", "bad key!", "é"]) expect(isLabelKey(bad), bad).toBe(false);
  });

  it("refuses an empty part, a prefix that is no subdomain, and a second '/'", () => {
    expect(labelKeyProblems("/env")).toEqual(["prefix part must not be empty"]);
    expect(labelKeyProblems("example.com/")).toEqual(["name part must not be empty"]);
    expect(labelKeyProblems("Example.com/env")).toEqual([expect.stringMatching(/^prefix part must be a lowercase RFC 1123 subdomain/)]);
    expect(labelKeyProblems("example_com/env")).toHaveLength(1);
    expect(labelKeyProblems("a/b/c")).toEqual([expect.stringMatching(/one '\/'/)]);
  });
});

describe("a label value", () => {
  it("is empty or has at most 63 characters", () => {
    expect(isLabelValue("")).toBe(true);
    expect(isLabelValue(a(63))).toBe(true);
    expect(isLabelValue(a(64))).toBe(false);
    expect(labelValueProblems(a(64))).toEqual(["must be no more than 63 characters"]);
  });

  it("is letters, digits, '-', '_' and '.', starting and ending with a letter or digit", () => {
    for (const good of ["prod", "MyValue", "my_value", "1.2.3", "a-b"]) expect(isLabelValue(good), good).toBe(true);
    for (const bad of ["-a", "a-", ".a", "a b", "a/b", "é"]) expect(isLabelValue(bad), bad).toBe(false);
    expect(labelValueProblems("a b")).toEqual([expect.stringMatching(/^must be empty or consist of alphanumeric characters/)]);
  });
});

describe("the patterns, for JSON Schema and zod elsewhere", () => {
  /** Strings from the characters the rules care about, of every length around the bounds. */
  const candidate = fc.oneof(
    fc.string({ unit: fc.constantFrom("a", "a", "a", "z", "0", "-", ".", "_", "/", "A", "é"), maxLength: 330 }),
    fc.tuple(fc.integer({ min: 0, max: 260 }), fc.integer({ min: 0, max: 70 })).map(([p, n]) => (p === 0 ? a(n) : `${subdomain(p)}/${a(n)}`)),
  );
  const rules = [
    { name: "DNS label", pattern: DNS_LABEL_PATTERN, is: isDnsLabel, problems: dnsLabelProblems },
    { name: "DNS subdomain", pattern: DNS_SUBDOMAIN_PATTERN, is: isDnsSubdomain, problems: dnsSubdomainProblems },
    { name: "label key", pattern: LABEL_KEY_PATTERN, is: isLabelKey, problems: labelKeyProblems },
    { name: "label value", pattern: LABEL_VALUE_PATTERN, is: isLabelValue, problems: labelValueProblems },
  ];

  it.each(rules)("accept a $name exactly when the rule finds no problem, with or without the u flag JSON Schema validators use", ({ pattern, is, problems }) => {
    const plain = new RegExp(pattern);
    const unicode = new RegExp(pattern, "u");
    fc.assert(
      fc.property(candidate, (text) => {
        const valid = problems(text).length === 0;
        expect(is(text)).toBe(valid);
        expect(plain.test(text)).toBe(valid);
        expect(unicode.test(text)).toBe(valid);
      }),
      { numRuns: 2000 },
    );
  });

  it("accept a Kubernetes-length edge and refuse one past it", () => {
    expect(new RegExp(LABEL_KEY_PATTERN).test(`${subdomain(253)}/${a(63)}`)).toBe(true);
    expect(new RegExp(LABEL_KEY_PATTERN).test(`${subdomain(253)}/${a(64)}`)).toBe(false);
    expect(new RegExp(LABEL_KEY_PATTERN).test(`${subdomain(254)}/${a(63)}`)).toBe(false);
    expect(new RegExp(DNS_SUBDOMAIN_PATTERN).test(subdomain(253))).toBe(true);
    expect(new RegExp(DNS_SUBDOMAIN_PATTERN).test(subdomain(254))).toBe(false);
  });
});
