/**
 * The official CEL conformance suite (@bufbuild/cel-spec, CEL spec v0.25.1), reshaped for
 * Polity: which cases Polity can run, their bindings as Polity activation values, and
 * whether a Polity result is the value a case expects.
 *
 * Values are compared in the reference evaluator's domain (`toReference`), where the
 * int / uint / double distinction Polity encodes in JSON numbers becomes explicit.
 */
import { getConformanceSuite, type IncrementalTest } from "@bufbuild/cel-spec/testdata/tests.js";
import type { SimpleTest } from "@bufbuild/cel-spec/cel/expr/conformance/test/simple_pb.js";
import type { Type } from "@bufbuild/cel-spec/cel/expr/checked_pb.js";
import { ValueSchema, type Value } from "@bufbuild/cel-spec/cel/expr/value_pb.js";
import { create, toJsonString } from "@bufbuild/protobuf";
import {
  celList,
  celMap,
  celUint,
  isCelList,
  isCelMap,
  isCelType,
  isCelUint,
  type CelUint,
  type CelValue as BufValue,
} from "@bufbuild/cel";
import { fromReference, toReference } from "./reference.js";
import { ReferenceValue, type CelValue } from "./values.js";

export const SKIP_REASONS = [
  "extension not enabled",
  "checkOnly",
  "disableMacros",
  "container",
  "typedResult",
  "unknowns",
  "proto message",
] as const;

export type SkipReason = (typeof SKIP_REASONS)[number];

/**
 * Extensions Polity's CEL environment does not enable (it enables only the strings
 * extension), so their files are outside what Polity claims to implement.
 */
const FILES_OF_DISABLED_EXTENSIONS = new Set(["bindings_ext", "block_ext", "encoders_ext", "math_ext"]);

/** Names of protobuf messages and enums the suite uses; Polity evaluates JSON, not protos. */
const PROTO_REFERENCE = new RegExp(
  [
    String.raw`google\.protobuf\.`,
    String.raw`cel\.expr\.conformance`,
    String.raw`\b(TestAllTypes|NestedTestAllTypes|GlobalEnum|NestedEnum|NestedMessage)\b`,
  ].join("|"),
);

export type Expectation = { readonly kind: "value"; readonly value: Value } | { readonly kind: "error" };

/** A conformance case Polity runs. */
export interface ConformanceCase {
  /** `file/section/test`, unique across the suite. */
  readonly name: string;
  readonly expression: string;
  /** Bound and declared variable names. */
  readonly variables: readonly string[];
  readonly typeCheck: boolean;
  /** The bindings as Polity values; see toActivationValue. */
  readonly activation: Readonly<Record<string, CelValue>>;
  /** Whether a binding is a ReferenceValue, which only evaluateReference accepts. */
  readonly bindsReferenceValues: boolean;
  readonly expected: Expectation;
}

export interface ConformanceFile {
  readonly name: string;
  readonly cases: readonly ConformanceCase[];
  readonly skipped: ReadonlyMap<SkipReason, number>;
}

/** Every file of the conformance suite, split into the cases Polity runs and skip counts. */
export function loadConformanceFiles(): ConformanceFile[] {
  return getConformanceSuite().suites.map((file) => {
    const cases: ConformanceCase[] = [];
    const skipped = new Map<SkipReason, number>();
    for (const section of file.suites) {
      for (const test of section.tests) {
        const reason = FILES_OF_DISABLED_EXTENSIONS.has(file.name)
          ? "extension not enabled"
          : skipReason(test.original);
        if (reason === undefined) {
          cases.push(toCase(`${file.name}/${section.name}/${test.name}`, test));
        } else {
          skipped.set(reason, (skipped.get(reason) ?? 0) + 1);
        }
      }
    }
    return { name: file.name, cases, skipped };
  });
}

/** The first reason, in SKIP_REASONS order, that Polity cannot run `test`. */
function skipReason(test: SimpleTest): SkipReason | undefined {
  if (test.checkOnly) return "checkOnly";
  if (test.disableMacros) return "disableMacros";
  if (test.container !== "") return "container";
  const matcher = test.resultMatcher.case;
  if (matcher === "typedResult") return "typedResult";
  if (matcher === "unknown" || matcher === "anyUnknowns") return "unknowns";
  if (needsProto(test)) return "proto message";
  return undefined;
}

function needsProto(test: SimpleTest): boolean {
  if (PROTO_REFERENCE.test(test.expr)) return true;
  for (const decl of test.typeEnv) {
    const type = decl.declKind.case === "ident" ? decl.declKind.value.type : undefined;
    if (type !== undefined && typeNeedsProto(type)) return true;
  }
  for (const binding of Object.values(test.bindings)) {
    if (binding.kind.case !== "value" || valueNeedsProto(binding.kind.value)) return true;
  }
  return test.resultMatcher.case === "value" && valueNeedsProto(test.resultMatcher.value);
}

function typeNeedsProto(type: Type): boolean {
  const kind = type.typeKind;
  switch (kind.case) {
    case "messageType":
    case "wrapper":
    case "wellKnown":
      return true;
    case "listType":
      return kind.value.elemType !== undefined && typeNeedsProto(kind.value.elemType);
    case "mapType":
      return [kind.value.keyType, kind.value.valueType].some(
        (t) => t !== undefined && typeNeedsProto(t),
      );
    default:
      return false;
  }
}

/** Messages and enums; a type value naming a message (`google.protobuf.Timestamp`) is not one. */
function valueNeedsProto(value: Value): boolean {
  const kind = value.kind;
  switch (kind.case) {
    case "objectValue":
    case "enumValue":
      return true;
    case "listValue":
      return kind.value.values.some(valueNeedsProto);
    case "mapValue":
      return kind.value.entries.some((entry) =>
        [entry.key, entry.value].some((v) => v !== undefined && valueNeedsProto(v)),
      );
    default:
      return false;
  }
}

function toCase(name: string, test: IncrementalTest): ConformanceCase {
  const original = test.original;
  const activation: Record<string, CelValue> = {};
  for (const [variable, binding] of Object.entries(original.bindings)) {
    // needsProto has already skipped bindings that are errors or unknowns.
    if (binding.kind.case === "value") activation[variable] = toActivationValue(binding.kind.value);
  }
  const declared = original.typeEnv.map((decl) => decl.name);
  const matcher = original.resultMatcher;
  let expected: Expectation;
  if (matcher.case === "value") {
    expected = { kind: "value", value: matcher.value };
  } else if (matcher.case === "evalError" || matcher.case === "anyEvalErrors") {
    expected = { kind: "error" };
  } else {
    // A SimpleTest without a matcher expects `true`.
    expected = { kind: "value", value: trueValue() };
  }
  return {
    name,
    expression: original.expr,
    variables: [...new Set([...Object.keys(activation), ...declared])],
    // Without the checker (cel-go's disable_check), mistyped operands are runtime errors.
    typeCheck: !original.disableCheck,
    activation,
    bindsReferenceValues: Object.values(activation).some((value) => value instanceof ReferenceValue),
    expected,
  };
}

function trueValue(): Value {
  return create(ValueSchema, { kind: { case: "boolValue", value: true } });
}

/**
 * A binding as a Polity activation value: JSON-shaped where JSON can express it, otherwise
 * a ReferenceValue (uint, bytes, integral doubles, ints beyond 2^53, non-string map keys).
 */
function toActivationValue(value: Value): CelValue {
  return fromReference(toBufValue(value));
}

function toBufValue(value: Value): BufValue {
  const kind = value.kind;
  switch (kind.case) {
    case "nullValue":
    case undefined:
      return null;
    case "boolValue":
    case "int64Value":
    case "doubleValue":
    case "stringValue":
    case "bytesValue":
      return kind.value;
    case "uint64Value":
      return celUint(kind.value);
    case "listValue":
      return celList(kind.value.values.map(toBufValue));
    case "mapValue": {
      const entries = new Map<bigint | string | boolean | CelUint, BufValue>();
      for (const entry of kind.value.entries) {
        const key = entry.key === undefined ? null : toBufValue(entry.key);
        if (!isMapKey(key)) {
          throw new Error(`a ${describeExpected(entry.key)} cannot be a map key`);
        }
        entries.set(key, entry.value === undefined ? null : toBufValue(entry.value));
      }
      return celMap(entries);
    }
    default:
      throw new Error(`a ${kind.case} binding needs protobuf messages`);
  }
}

function isMapKey(value: BufValue): value is bigint | string | boolean | CelUint {
  return ["bigint", "string", "boolean"].includes(typeof value) || isCelUint(value);
}

/**
 * Whether a Polity result is the expected value. Types must match exactly at every level,
 * as in the reference conformance runners (int 1 is not double 1.0 nor uint 1); map
 * entries match in any order; an expected NaN matches NaN.
 */
export function matchesExpected(actual: CelValue, expected: Value): boolean {
  return sameValue(toReference(actual), expected);
}

function sameValue(actual: unknown, expected: Value): boolean {
  const kind = expected.kind;
  switch (kind.case) {
    case "nullValue":
      return actual === null;
    case "boolValue":
    case "stringValue":
      return actual === kind.value;
    case "int64Value":
      return typeof actual === "bigint" && actual === kind.value;
    case "uint64Value":
      return isCelUint(actual) && actual.value === kind.value;
    case "doubleValue":
      if (typeof actual !== "number") return false;
      return actual === kind.value || (Number.isNaN(actual) && Number.isNaN(kind.value));
    case "bytesValue":
      return actual instanceof Uint8Array && sameBytes(actual, kind.value);
    case "typeValue":
      return isCelType(actual) && actual.name === kind.value;
    case "listValue": {
      if (!isCelList(actual) || actual.size !== kind.value.values.length) return false;
      return kind.value.values.every((element, index) => sameValue(actual.get(index), element));
    }
    case "mapValue": {
      if (!isCelMap(actual) || actual.size !== kind.value.entries.length) return false;
      return kind.value.entries.every((entry) => {
        for (const [key, value] of actual) {
          if (entry.key !== undefined && sameValue(key, entry.key)) {
            return entry.value !== undefined && sameValue(value, entry.value);
          }
        }
        return false;
      });
    }
    default:
      return false;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, index) => byte === b[index]);
}

export function describeExpected(value: Value | undefined): string {
  return value === undefined ? "nothing" : toJsonString(ValueSchema, value);
}

/** A result written with CEL's types visible: `1`, `1u`, `1.0`, `b"\x01"`, `type(int)`. */
export function describeActual(actual: CelValue): string {
  return describeReference(toReference(actual));
}

function describeReference(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "bigint") return String(value);
  if (typeof value === "number") return Number.isInteger(value) ? value.toFixed(1) : String(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "boolean") return String(value);
  if (isCelUint(value)) return `${value.value}u`;
  if (value instanceof Uint8Array) {
    return `b"${[...value].map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("")}"`;
  }
  if (isCelType(value)) return `type(${value.name})`;
  if (isCelList(value)) return `[${[...value].map(describeReference).join(", ")}]`;
  if (isCelMap(value)) {
    const entries = [...value].map(([k, v]) => `${describeReference(k)}: ${describeReference(v)}`);
    return `{${entries.join(", ")}}`;
  }
  return Object.prototype.toString.call(value);
}
