/**
 * Kubernetes resource quantities (`k8s.io/apimachinery/pkg/api/resource`), as the
 * `kubernetes.quantity` CEL library exposes them: `quantity('1.5Gi')`, exact arithmetic
 * and comparison, conversion to int or double.
 *
 * A quantity is an exact rational number here (numerator and denominator as bigints), so
 * `quantity('200M').compareTo(quantity('0.2G')) == 0` holds as it does in Go, where
 * `inf.Dec` keeps quantities exact.
 */
import { KubernetesValue } from "../values.js";

const FORMAT = /^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$/;
export const QUANTITY_FORMAT_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const MAX_INT64 = 9223372036854775807n;
const MIN_INT64 = -9223372036854775808n;

const DECIMAL_SUFFIXES: Readonly<Record<string, number>> = { n: -9, u: -6, m: -3, "": 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const BINARY_SUFFIXES: Readonly<Record<string, number>> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };

function gcd(a: bigint, b: bigint): bigint {
  a = a < 0n ? -a : a;
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

export class Quantity extends KubernetesValue {
  readonly typeName = "kubernetes.Quantity";
  /** numerator / denominator, reduced, denominator > 0. */
  private constructor(
    readonly numerator: bigint,
    readonly denominator: bigint,
  ) {
    super();
  }

  static of(numerator: bigint, denominator = 1n): Quantity {
    if (denominator < 0n) [numerator, denominator] = [-numerator, -denominator];
    const d = gcd(numerator, denominator) || 1n;
    return new Quantity(numerator / d, denominator / d);
  }

  key(): string {
    return `quantity:${this.numerator}/${this.denominator}`;
  }

  sign(): number {
    return this.numerator === 0n ? 0 : this.numerator < 0n ? -1 : 1;
  }

  compare(other: Quantity): number {
    const a = this.numerator * other.denominator;
    const b = other.numerator * this.denominator;
    return a < b ? -1 : a > b ? 1 : 0;
  }

  add(other: Quantity): Quantity {
    return Quantity.of(this.numerator * other.denominator + other.numerator * this.denominator, this.denominator * other.denominator);
  }

  sub(other: Quantity): Quantity {
    return Quantity.of(this.numerator * other.denominator - other.numerator * this.denominator, this.denominator * other.denominator);
  }

  /** The value as an int64, when it is an integer that fits (resource.Quantity.AsInt64). */
  asInt64(): bigint | undefined {
    if (this.denominator !== 1n || this.numerator > MAX_INT64 || this.numerator < MIN_INT64) return undefined;
    return this.numerator;
  }

  asApproximateFloat(): number {
    return Number(this.numerator) / Number(this.denominator);
  }
}

/**
 * resource.ParseQuantity: a number (sign, digits, one optional point) and a suffix: a
 * decimal SI one (n u m k M G T P E), a binary one (Ki … Ei) or an exponent (e3, E-2).
 * Values beyond int64 are capped at its bounds, as Kubernetes caps them.
 */
export function parseQuantity(text: string): Quantity {
  if (text.length === 0) throw new Error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
  const match = FORMAT.exec(text);
  if (match === null) throw new Error(QUANTITY_FORMAT_ERROR);
  let number = match[1]!;
  let suffix = match[2]!;
  // The number's own grammar: [+-] digits [. digits]; whatever follows belongs to the suffix.
  const numeric = /^([+-]?)([0-9]*)(?:\.([0-9]*))?/.exec(number)!;
  if (numeric[0].length < number.length) {
    suffix = number.slice(numeric[0].length) + suffix;
    number = numeric[0];
  }
  const negative = numeric[1] === "-";
  const whole = numeric[2] ?? "";
  const fraction = numeric[3] ?? "";
  if (whole === "" && fraction === "" && !/[0-9]/.test(number)) throw new Error(QUANTITY_FORMAT_ERROR);
  let base = 10;
  let exponent: number;
  if (Object.hasOwn(DECIMAL_SUFFIXES, suffix)) {
    exponent = DECIMAL_SUFFIXES[suffix]!;
  } else if (Object.hasOwn(BINARY_SUFFIXES, suffix)) {
    base = 2;
    exponent = BINARY_SUFFIXES[suffix]!;
  } else if (/^[eE][-+]?[0-9]+$/.test(suffix)) {
    exponent = Number.parseInt(suffix.slice(1), 10);
    if (!Number.isSafeInteger(exponent) || Math.abs(exponent) > 1_000_000) throw new Error("unable to parse quantity's suffix");
  } else {
    throw new Error("unable to parse quantity's suffix");
  }
  let numerator = BigInt((whole || "0") + fraction);
  let denominator = 10n ** BigInt(fraction.length);
  if (base === 2) numerator *= 2n ** BigInt(exponent);
  else if (exponent >= 0) numerator *= 10n ** BigInt(exponent);
  else denominator *= 10n ** BigInt(-exponent);
  if (negative) numerator = -numerator;
  const value = Quantity.of(numerator, denominator);
  if (value.compare(Quantity.of(MAX_INT64)) > 0) return Quantity.of(MAX_INT64);
  if (value.compare(Quantity.of(-MAX_INT64)) < 0) return Quantity.of(-MAX_INT64);
  return value;
}
