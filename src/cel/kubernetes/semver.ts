/**
 * Semantic versions as the `kubernetes.Semver` CEL library parses them (blang/semver v4,
 * with the library's optional normalization: a leading "v", missing minor and patch,
 * leading zeros).
 */
import { KubernetesValue } from "../values.js";

export class Semver extends KubernetesValue {
  readonly typeName = "kubernetes.Semver";
  constructor(
    readonly major: bigint,
    readonly minor: bigint,
    readonly patch: bigint,
    readonly prerelease: readonly string[],
    readonly build: readonly string[],
  ) {
    super();
  }

  /** Build metadata does not take part in equality or ordering. */
  key(): string {
    return `semver:${this.major}.${this.minor}.${this.patch}${this.prerelease.length > 0 ? `-${this.prerelease.join(".")}` : ""}`;
  }

  compare(other: Semver): number {
    for (const [a, b] of [
      [this.major, other.major],
      [this.minor, other.minor],
      [this.patch, other.patch],
    ] as const) {
      if (a !== b) return a < b ? -1 : 1;
    }
    const x = this.prerelease;
    const y = other.prerelease;
    if (x.length === 0 && y.length === 0) return 0;
    if (x.length === 0) return 1;
    if (y.length === 0) return -1;
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      const r = comparePrerelease(x[i]!, y[i]!);
      if (r !== 0) return r;
    }
    return x.length === y.length ? 0 : x.length < y.length ? -1 : 1;
  }
}

const NUMERIC = /^[0-9]+$/;

function comparePrerelease(a: string, b: string): number {
  const an = NUMERIC.test(a);
  const bn = NUMERIC.test(b);
  if (an && bn) {
    const x = BigInt(a);
    const y = BigInt(b);
    return x === y ? 0 : x < y ? -1 : 1;
  }
  if (an) return -1;
  if (bn) return 1;
  return a === b ? 0 : a < b ? -1 : 1;
}

const MAX_UINT64 = 18446744073709551615n;

function number(text: string, what: string): bigint {
  if (!/^[0-9]*$/.test(text)) throw new Error(`Invalid character(s) found in ${what} number ${JSON.stringify(text)}`);
  if (text.length > 1 && text.startsWith("0")) throw new Error(`${what[0]!.toUpperCase()}${what.slice(1)} number must not contain leading zeroes ${JSON.stringify(text)}`);
  if (text === "") throw new Error(`strconv.ParseUint: parsing "": invalid syntax`);
  const value = BigInt(text);
  if (value > MAX_UINT64) throw new Error(`strconv.ParseUint: parsing ${JSON.stringify(text)}: value out of range`);
  return value;
}

/** semver.Parse of blang/semver v4. */
export function parseSemver(text: string): Semver {
  if (text.length === 0) throw new Error("Version string empty");
  const parts = splitN(text, ".", 3);
  if (parts.length !== 3) throw new Error("No Major.Minor.Patch elements found");
  const major = number(parts[0]!, "major");
  const minor = number(parts[1]!, "minor");
  let patchText = parts[2]!;
  let build: string[] = [];
  let prerelease: string[] = [];
  const plus = patchText.indexOf("+");
  if (plus >= 0) {
    build = patchText.slice(plus + 1).split(".");
    patchText = patchText.slice(0, plus);
  }
  const dash = patchText.indexOf("-");
  if (dash >= 0) {
    prerelease = patchText.slice(dash + 1).split(".");
    patchText = patchText.slice(0, dash);
  }
  const patch = number(patchText, "patch");
  for (const part of prerelease) {
    if (part === "") throw new Error("Prerelease is empty");
    if (!/^[0-9A-Za-z-]+$/.test(part)) throw new Error(`Invalid character(s) found in prerelease ${JSON.stringify(part)}`);
    if (NUMERIC.test(part) && part.length > 1 && part.startsWith("0")) throw new Error(`Numeric PreRelease version must not contain leading zeroes ${JSON.stringify(part)}`);
  }
  for (const part of build) {
    if (part === "") throw new Error("Build meta data is empty");
    if (!/^[0-9A-Za-z-]+$/.test(part)) throw new Error(`Invalid character(s) found in build meta data ${JSON.stringify(part)}`);
  }
  return new Semver(major, minor, patch, prerelease, build);
}

/** The library's normalizeAndParse: no "v" prefix, missing minor and patch as 0, no leading zeros. */
export function parseSemverNormalized(text: string): Semver {
  const parts = splitN(text.startsWith("v") ? text.slice(1) : text, ".", 3).map((part) => {
    if (part.length <= 1) return part;
    const trimmed = part.replace(/^0+/, "");
    return trimmed === "" || !/^[0-9]/.test(trimmed) ? `0${trimmed}` : trimmed;
  });
  if (parts.length < 3) {
    if (/[+-]/.test(parts[parts.length - 1]!)) throw new Error("short version cannot contain PreRelease/Build meta data");
    while (parts.length < 3) parts.push("0");
  }
  return parseSemver(parts.join("."));
}

/** Go's strings.SplitN. */
function splitN(text: string, separator: string, n: number): string[] {
  const out: string[] = [];
  let rest = text;
  while (out.length < n - 1) {
    const at = rest.indexOf(separator);
    if (at < 0) break;
    out.push(rest.slice(0, at));
    rest = rest.slice(at + separator.length);
  }
  out.push(rest);
  return out;
}
