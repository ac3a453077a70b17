/**
 * The values Polity's CEL programs consume and produce.
 *
 * Admission data arrives as JSON, so the compiled evaluator works on JSON-shaped values
 * directly, with no conversion per request: an integral number is a CEL `int` (as the
 * Kubernetes schemas type it), any other number a `double`, strings, booleans, null,
 * arrays as lists and plain objects as string-keyed maps.
 *
 * Values that JSON cannot express (uint, bytes, timestamps, durations, types, integral
 * doubles, ints beyond 2^53, maps with non-string keys, optionals) exist only in the
 * reference evaluator; they cross back as an opaque `ReferenceValue`.
 */
import type { CelValue as BufValue } from "@bufbuild/cel";

export type CelValue =
  | null
  | boolean
  | number
  | string
  | readonly CelValue[]
  | CelMapValue
  | ReferenceValue;

export interface CelMapValue {
  readonly [key: string]: CelValue;
}

/** A value only the reference evaluator can represent. */
export class ReferenceValue {
  constructor(readonly value: BufValue) {}
}

/** Variables bound for one evaluation: name → JSON-shaped value. */
export type Activation = Readonly<Record<string, unknown>>;
