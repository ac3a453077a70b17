/**
 * The Kubernetes CEL libraries, through Polity's public CEL API: what Kubernetes answers,
 * on both evaluators, with its error messages, its refusals and its costs.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CelEvalError, compileCel, costBudget, formatCompileError, type CelProgram, type CelValue } from "../index.js";

function compile(source: string): CelProgram {
  const result = compileCel(source, { variables: ["object"] });
  if (!result.ok) throw new Error(formatCompileError(source, result.error));
  return result.program;
}

/** The value on the program's own evaluator, after checking the reference agrees. */
function value(source: string, object: unknown = {}): CelValue {
  const program = compile(source);
  const compiled = program.evaluate({ object });
  expect(program.evaluateReference({ object }), `${source} on the reference`).toEqual(compiled);
  return compiled;
}

/** The error message on both evaluators (they must agree). */
function error(source: string, object: unknown = {}): string {
  const program = compile(source);
  const messages = [() => program.evaluate({ object }), () => program.evaluateReference({ object })].map((run) => {
    try {
      run();
    } catch (e) {
      expect(e).toBeInstanceOf(CelEvalError);
      return (e as Error).message;
    }
    throw new Error(`expected ${source} to fail`);
  });
  expect(messages[1]).toBe(messages[0]);
  return messages[0]!;
}

function cost(source: string, object: unknown = {}): number {
  const budget = costBudget(Number.MAX_SAFE_INTEGER);
  compile(source).evaluate({ object }, budget);
  return budget.total - budget.remaining;
}

describe("quantities", () => {
  it("compare exactly across suffixes, as resource.Quantity does", () => {
    expect(value("quantity('200M').compareTo(quantity('0.2G'))")).toBe(0);
    expect(value("quantity('50M').compareTo(quantity('50Mi'))")).toBe(-1);
    expect(value("quantity('150Mi').isGreaterThan(quantity('100Mi'))")).toBe(true);
    expect(value("quantity('1.5Gi') == quantity('1536Mi')")).toBe(true);
  });

  it("add and subtract quantities and ints, and convert to int or double", () => {
    expect(value("quantity('50k').add(20).sub(quantity('100k')).sub(-50000) == quantity('20')")).toBe(true);
    expect(value("quantity('1.5Gi').asInteger()")).toBe(1610612736);
    expect(value("quantity('1.5').isInteger()")).toBe(false);
    expect(value("quantity('500m').asApproximateFloat()")).toBe(0.5);
    expect(value("quantity('-3k').sign()")).toBe(-1);
  });

  it("refuse what Kubernetes refuses, with its messages", () => {
    expect(error("quantity('1x')")).toBe("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
    expect(error("quantity('1.5').asInteger()")).toBe("cannot convert value to integer");
    expect(value("isQuantity('1x') || isQuantity('')")).toBe(false);
  });

  it("read the resources of every container of a pod on the compiled evaluator", () => {
    const pod = { spec: { containers: [{ resources: { limits: { memory: "512Mi" } } }, { resources: { limits: { memory: "2Gi" } } }] } };
    const source = "object.spec.containers.all(c, quantity(c.resources.limits.memory).isLessThan(quantity('1Gi')))";
    expect(compile(source).engine).toBe("compiled");
    expect(value(source, pod)).toBe(false);
  });

  it("give an integer the value it was written with, whatever its suffix", () => {
    fc.assert(
      fc.property(fc.integer({ min: -1_000_000, max: 1_000_000 }), fc.constantFrom(["", 1], ["k", 1000], ["Ki", 1024], ["M", 1e6]), (n, [suffix, factor]) => {
        expect(value(`quantity('${n}${suffix}').asInteger()`)).toBe(n * (factor as number) || 0);
      }),
      { numRuns: 50 },
    );
  });
});

describe("IP addresses and CIDRs", () => {
  it("parse as Go's netip does, and answer Kubernetes' questions", () => {
    expect(value("ip('127.0.0.1').family() == 4 && ip('::1').family() == 6")).toBe(true);
    expect(value("[ip('0.0.0.0').isUnspecified(), ip('::1').isLoopback(), ip('224.0.0.1').isLinkLocalMulticast(), ip('fe80::1').isLinkLocalUnicast(), ip('192.168.0.1').isGlobalUnicast(), ip('255.255.255.255').isGlobalUnicast()]")).toEqual([true, true, true, true, true, false]);
    expect(value("string(ip('2001:0db8:0000:0000:0000:0000:0000:0001'))")).toBe("2001:db8::1");
    expect(value("ip.isCanonical('2001:db8::1') && !ip.isCanonical('2001:DB8::1')")).toBe(true);
  });

  it("refuse zones, IPv4-mapped IPv6 addresses and leading zeros", () => {
    expect(error("ip('::ffff:1.2.3.4')")).toBe('IPv4-mapped IPv6 address "::ffff:1.2.3.4" is not allowed');
    expect(error("ip('fe80::1%eth0')")).toBe('IP address "fe80::1%eth0" with zone value is not allowed');
    expect(error("ip('1.2.3.04')")).toBe('IP Address "1.2.3.04" parse error during conversion from string: ParseAddr("1.2.3.04"): IPv4 field has octet with leading zero');
    expect(value("isIP('1.2.3') || isCIDR('1.2.3.4')")).toBe(false);
  });

  it("tell which addresses and networks a CIDR contains", () => {
    expect(value("cidr('192.168.0.0/16').containsCIDR('192.168.10.0/24') && !cidr('192.168.1.0/24').containsCIDR(cidr('192.168.2.0/24'))")).toBe(true);
    expect(value("cidr('192.168.0.0/24').containsIP('192.168.0.1') && !cidr('192.168.0.0/24').containsIP(ip('192.168.1.1'))")).toBe(true);
    expect(value("cidr('192.168.0.1/24').masked() == cidr('192.168.0.0/24') && cidr('192.168.0.1/24') != cidr('192.168.0.0/24')")).toBe(true);
    expect(value("cidr('::1/128').ip().family() * 100 + cidr('10.0.0.0/8').prefixLength()")).toBe(608);
  });

  it("write every IPv4 address back as it was read, and contain it in its own /24", () => {
    fc.assert(
      fc.property(fc.ipV4(), (address) => {
        expect(value(`string(ip('${address}')) == '${address}' && cidr('${address}/24').containsIP('${address}')`)).toBe(true);
      }),
      { numRuns: 50 },
    );
  });
});

describe("URLs", () => {
  it("give their parts as Go's net/url does", () => {
    expect(value("url('https://user:pass@example.com:80/path?query=val#fragment').getHost()")).toBe("example.com:80");
    expect(value("[url('https://[::1]:80/').getHostname(), url('https://[::1]:80/').getPort(), url('/path').getScheme()]")).toEqual(["::1", "80", ""]);
    expect(value("url('https://example.com/path with spaces/').getEscapedPath()")).toBe("/path%20with%20spaces/");
    expect(value("url('https://example.com/path?k1=a&k2=b&k2=c').getQuery()")).toEqual({ k1: ["a"], k2: ["b", "c"] });
  });

  it("accept only an absolute URI or an absolute path", () => {
    expect(error("url('../relative-path')")).toBe('URL parse error during conversion from string: parse "../relative-path": invalid URI for request');
    expect(value("[isURL('https://a:b:c/'), isURL('/absolute-path'), isURL('mailto:someone@example.com')]")).toEqual([false, true, true]);
  });
});

describe("regular expressions", () => {
  it("find the leftmost-first match, or all of them, as Go's regexp does", () => {
    expect(value("'abc 123 def 456'.find('[0-9]+')")).toBe("123");
    expect(value("'ab'.find('a|ab')")).toBe("a");
    expect(value("'xyz'.find('[0-9]+')")).toBe("");
    expect(value("'abc 123 def 456'.findAll('[0-9]+')")).toEqual(["123", "456"]);
    expect(value("'a1b2c3'.findAll('[0-9]', 2)")).toEqual(["1", "2"]);
    expect(value("'abc'.findAll('b*')")).toEqual(["", "b", ""]);
  });

  it("refuse an invalid literal pattern when the expression is compiled", () => {
    const result = compileCel("'x'.find('(')", { variables: [] });
    expect(result.ok).toBe(false);
  });

  it("stay linear on a pattern that makes backtracking engines exponential", () => {
    const started = performance.now();
    expect(value(`'${"a".repeat(5000)}!'.find('(a+)+$')`)).toBe("");
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it("agree with JavaScript's regular expressions on simple patterns", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[ab1 ]{0,20}$/), fc.constantFrom("[0-9]+", "a+", "ab?", "[a-z]+|1", "b"), (text, pattern) => {
        const expected = [...text.matchAll(new RegExp(pattern, "g"))].map((m) => m[0]);
        expect(value(`'${text}'.findAll('${pattern}')`)).toEqual(expected);
      }),
      { numRuns: 100 },
    );
  });
});

describe("list functions", () => {
  it("sort, sum, take extremes and positions, as Kubernetes' lists library", () => {
    expect(value("[1, 2, 3].isSorted() && !['b', 'a'].isSorted()")).toBe(true);
    expect(value("[[1, 3].sum(), [1, 3].min(), [1, 3].max(), [1, 2, 2, 3].indexOf(2), [1, 2, 2, 3].lastIndexOf(2), [].indexOf(1)]")).toEqual([4, 1, 3, 1, 2, -1]);
    expect(value("[1.5, 2.25].sum()")).toBe(3.75);
    expect(error("[].min()")).toBe("min called on empty list");
  });

  it("slice, reverse, range, flatten and take the first or last element, as cel-go's lists extension", () => {
    expect(value("[[1, 2, 3, 4].slice(1, 3), lists.range(3).reverse(), [[1, [2]], 3].flatten(2)]")).toEqual([[2, 3], [2, 1, 0], [1, 2, 3]]);
    expect(value("[1, 2].first().value() + [1, 2].last().value() + [].first().orValue(10)")).toBe(13);
    expect(error("[1, 2].slice(1, 3)")).toBe("cannot slice(1, 3), list is length 2");
  });

  it("compare lists as sets", () => {
    expect(value("[sets.contains([1, 2, 3], [3, 1]), sets.equivalent([1, 1, 2], [2, 1]), sets.intersects([1], [2])]")).toEqual([true, true, false]);
  });
});

describe("semantic versions", () => {
  it("order versions as semver.org does, prereleases first", () => {
    expect(value("semver('1.2.3-alpha').isLessThan(semver('1.2.3')) && semver('1.10.0').isGreaterThan(semver('1.9.9'))")).toBe(true);
    expect(value("semver('1.2.3+build.1') == semver('1.2.3')")).toBe(true);
    expect(value("[semver('v1.2', true).major(), semver('v1.2', true).minor(), semver('v1.2', true).patch()]")).toEqual([1, 2, 0]);
  });

  it("refuse what blang/semver refuses", () => {
    expect(error("semver('01.2.3')")).toBe('Major number must not contain leading zeroes "01"');
    expect(error("semver('1.2')")).toBe("No Major.Minor.Patch elements found");
    expect(value("isSemver('v1.0') || !isSemver('v1.0', true)")).toBe(false);
  });
});

describe("named formats", () => {
  it("validate names as apimachinery does: none when valid, else its messages", () => {
    expect(value("format.dns1123Label().validate('my-name').hasValue()")).toBe(false);
    expect(value("format.dns1123Label().validate('My_Name').value()")).toEqual([
      "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    ]);
    expect(value("format.qualifiedName().validate('example.com/MyName').hasValue() || format.labelValue().validate('').hasValue()")).toBe(false);
    expect(value("format.dns1123LabelPrefix().validate('prefix-').hasValue()")).toBe(false);
  });

  it("are found by name, none for an unknown one", () => {
    expect(value("format.named('uuid').value().validate('123e4567-e89b-12d3-a456-426614174000').hasValue()")).toBe(false);
    expect(value("format.named('date').value().validate('2021-02-30').value()")).toEqual(["invalid date"]);
    expect(value("format.named('nope').hasValue()")).toBe(false);
  });
});

describe("the authorizer library", () => {
  it("is refused when the expression is compiled, saying why and what to use instead", () => {
    const result = compileCel("authorizer.group('apps').resource('deployments').check('create').allowed()", { variables: ["object", "request"] });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.message).toMatch(/^the Kubernetes authorizer library is not available: .*request\.userInfo/);
  });
});

describe("the cost of the Kubernetes libraries", () => {
  it("is Kubernetes': a parse costs a tenth of the string, a list function one unit an element", () => {
    // One unit for the call's own node is not metered: only what the library charges.
    expect(cost("quantity(object.q)", { q: "1".repeat(95) + "100Mi" })).toBe(10);
    expect(cost("object.l.sum()", { l: [1, 2, 3, 4] })).toBe(4);
    expect(cost("object.s.find('[0-9]+')", { s: "x".repeat(99) })).toBe(10 * 2);
  });

  it("is estimated when an expression is compiled, bounding what is metered", () => {
    const program = compile("object.items.all(i, quantity(i.q).isLessThan(quantity('1Gi')) && i.name.find('[a-z]+') != '')");
    const budget = costBudget(Number.MAX_SAFE_INTEGER);
    const items = Array.from({ length: 100 }, () => ({ q: "1".repeat(100), name: "a".repeat(100) }));
    program.evaluate({ object: { items } }, budget);
    expect(budget.total - budget.remaining).toBeLessThanOrEqual(program.estimatedCost);
  });
});
