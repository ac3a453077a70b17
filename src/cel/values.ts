/**
 * The values Polity's CEL programs consume and produce.
 *
 * Admission data arrives as JSON, so the compiled evaluator works on JSON-shaped values
 * directly, with no conversion per request: an integral number is a CEL `int` (as the
 * Kubernetes schemas type it), any other number a `double`, strings, booleans, null,
 * arrays as lists and plain objects as string-keyed maps.
 *
 * Optionals (`optional.of(x)`, `a.?b`) are `Optional`s, in both evaluators. Values that JSON
 * cannot express (uint, bytes, timestamps, durations, types, integral doubles, ints beyond
 * 2^53, maps with non-string keys) exist only in the reference evaluator; they cross back
 * as an opaque `ReferenceValue`.
 */
import type { CelValue as BufValue } from "@bufbuild/cel";

export type CelValue =
  | null
  | boolean
  | number
  | string
  | readonly CelValue[]
  | CelMapValue
  | Optional
  | KubernetesValue
  | ReferenceValue;

export interface CelMapValue {
  readonly [key: string]: CelValue;
}

/** A value only the reference evaluator can represent. */
export class ReferenceValue {
  constructor(readonly value: BufValue) {}
}

/**
 * The values that are objects in JavaScript but neither lists nor maps in CEL (optionals,
 * the Kubernetes libraries' values): one class, so that telling a map from them costs one
 * check on the hot path.
 */
export abstract class OpaqueValue {}

/**
 * A CEL optional value: `optional.of(x)` holds x, `optional.none()` holds nothing. Selecting
 * a field or an index through one (`optional.of(m).f`, `m.?f.g`) gives an optional again,
 * none when anything on the way is absent.
 */
export class Optional extends OpaqueValue {
  static readonly NONE = new Optional(false, null);

  private constructor(
    readonly present: boolean,
    /** The value held; null when none. */
    readonly value: CelValue,
  ) {
    super();
  }

  static of(value: CelValue): Optional {
    return new Optional(true, value);
  }
}

/**
 * A value of one of the Kubernetes CEL libraries' types (Quantity, IP, CIDR, URL, Semver,
 * Format): opaque to CEL, reached through its library's functions, equal to another of its
 * type by the library's rule.
 */
export abstract class KubernetesValue extends OpaqueValue {
  /** The CEL type name, as Kubernetes declares it (`kubernetes.Quantity`, `net.IP`, …). */
  abstract readonly typeName: string;
  /** A string equal for two values exactly when the library calls them equal. */
  abstract key(): string;
  /** The size cost functions charge for this value (Kubernetes' actualSize). */
  size(): number {
    return 1;
  }
}

/** Variables bound for one evaluation: name → JSON-shaped value. */
export type Activation = Readonly<Record<string, unknown>>;
