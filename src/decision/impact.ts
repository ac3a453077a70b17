/**
 * The impact of a change from recorded traffic: each recorded AdmissionReview decided under
 * the current effective set and under a candidate one, and the differences counted per
 * policy and rule (newly denied, newly allowed, newly warned), with a few examples named by
 * kind, namespace and name (never the object: examples leave the cluster, objects do not).
 * Pure: the reviews and `now` are passed in.
 */
import type { EffectivePolicySet } from "../layering/effective.js";
import { evaluate, type Violation } from "./evaluate.js";
import { parseReviewBytes } from "./review.js";

export interface ImpactExample {
  readonly kind: string;
  readonly namespace: string | null;
  readonly name: string | null;
  readonly operation: string;
}

export interface RuleImpact {
  readonly policy: string;
  readonly rule: string;
  newlyDenied: number;
  newlyAllowed: number;
  newlyWarned: number;
  readonly examples: ImpactExample[];
}

export interface Impact {
  /** Recorded requests evaluated. */
  requests: number;
  /** Requests the candidate denies that the current set allowed, and the reverse. */
  newlyDenied: number;
  newlyAllowed: number;
  /** Allowed requests that get a warning they did not get. */
  newlyWarned: number;
  /** Recorded requests neither set could decide (malformed, too deep). */
  undecidable: number;
  readonly byRule: RuleImpact[];
}

/** Examples kept per rule. */
export const EXAMPLES_PER_RULE = 3;

const key = (v: Violation) => `${v.policy}\u0000${v.rule}\u0000${v.enforcement}`;

/** An accumulator: add reviews one by one (a caller may yield between them), then read `impact`. */
export class ImpactCounter {
  readonly impact: Impact = { requests: 0, newlyDenied: 0, newlyAllowed: 0, newlyWarned: 0, undecidable: 0, byRule: [] };
  private readonly rules = new Map<string, RuleImpact>();

  constructor(
    private readonly current: EffectivePolicySet,
    private readonly candidate: EffectivePolicySet,
    private readonly now: number,
  ) {}

  private rule(v: Violation): RuleImpact {
    const k = `${v.policy}\u0000${v.rule}`;
    let r = this.rules.get(k);
    if (r === undefined) {
      r = { policy: v.policy, rule: v.rule, newlyDenied: 0, newlyAllowed: 0, newlyWarned: 0, examples: [] };
      this.rules.set(k, r);
      this.impact.byRule.push(r);
    }
    return r;
  }

  add(review: Uint8Array): void {
    let request, before, after;
    try {
      // Parsed once, decided twice; no response is encoded.
      request = parseReviewBytes(review).request;
      before = { decision: evaluate(this.current, request, { now: this.now }) };
      after = { decision: evaluate(this.candidate, request, { now: this.now }) };
    } catch {
      this.impact.undecidable++;
      return;
    }
    this.impact.requests++;
    const example: ImpactExample = { kind: request.kind.kind, namespace: request.namespace ?? null, name: request.name ?? null, operation: request.operation };
    const note = (r: RuleImpact) => {
      if (r.examples.length < EXAMPLES_PER_RULE) r.examples.push(example);
    };
    const was = new Set(before.decision.violations.map(key));
    const is = new Set(after.decision.violations.map(key));
    if (before.decision.allowed && !after.decision.allowed) {
      this.impact.newlyDenied++;
      for (const v of after.decision.violations) {
        if (v.enforcement !== "deny" || was.has(key(v))) continue;
        const r = this.rule(v);
        r.newlyDenied++;
        note(r);
      }
    } else if (!before.decision.allowed && after.decision.allowed) {
      this.impact.newlyAllowed++;
      for (const v of before.decision.violations) {
        if (v.enforcement !== "deny" || is.has(key(v))) continue;
        const r = this.rule(v);
        r.newlyAllowed++;
        note(r);
      }
    }
    if (after.decision.allowed) {
      const warned = after.decision.violations.filter((v) => v.enforcement === "warn" && !was.has(key(v)));
      if (warned.length > 0) this.impact.newlyWarned++;
      for (const v of warned) {
        const r = this.rule(v);
        r.newlyWarned++;
        note(r);
      }
    }
  }
}

/** The impact of `candidate` against `current` over every review. */
export function impactOf(current: EffectivePolicySet, candidate: EffectivePolicySet, reviews: Iterable<Uint8Array>, now: number): Impact {
  const counter = new ImpactCounter(current, candidate, now);
  for (const review of reviews) counter.add(review);
  return counter.impact;
}
