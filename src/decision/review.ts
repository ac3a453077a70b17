/**
 * AdmissionReview in, AdmissionReview out: `admission.k8s.io/v1` exactly as the API server
 * expects it. The response carries the request's uid, `allowed`, on denial a `status`
 * (403 Forbidden with a message naming each policy and what to change), the warnings of
 * warn policies, and audit annotations.
 */
import { PolityError } from "../errors.js";
import type { EffectivePolicySet } from "../layering/effective.js";
import { parseJson } from "../source/parse.js";
import { evaluate, type Decision, type DecisionContext } from "./evaluate.js";
import { parseAdmissionReview, type AdmissionReview } from "./request.js";

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly status?: { readonly code: number; readonly reason: string; readonly message: string };
  readonly warnings?: readonly string[];
  readonly auditAnnotations?: Readonly<Record<string, string>>;
}

export interface AdmissionReviewResponse {
  readonly apiVersion: "admission.k8s.io/v1";
  readonly kind: "AdmissionReview";
  readonly response: AdmissionResponse;
}

/** The API server shows at most this many characters of one warning; longer ones are cut here, visibly. */
const MAX_WARNING = 256;

/** `denied by Polity: pod-security-restricted: a (…), b (…); require-team-label: …` */
export function denialMessage(decision: Decision): string {
  const byPolicy = new Map<string, string[]>();
  for (const v of decision.violations) {
    if (v.enforcement !== "deny") continue;
    const key = v.target === undefined ? v.policy : `${v.policy} (pod template)`;
    let list = byPolicy.get(key);
    if (list === undefined) byPolicy.set(key, (list = []));
    list.push(v.message);
  }
  return `denied by Polity: ${[...byPolicy].map(([policy, messages]) => `${policy}: ${messages.join(", ")}`).join("; ")}`;
}

export function admissionResponse(uid: string, decision: Decision): AdmissionResponse {
  const warnings = decision.warnings.map((w) => (w.length > MAX_WARNING ? `${w.slice(0, MAX_WARNING - 1)}…` : w));
  const annotations = Object.keys(decision.auditAnnotations).length > 0 ? decision.auditAnnotations : undefined;
  return {
    uid,
    allowed: decision.allowed,
    ...(decision.allowed ? {} : { status: { code: 403, reason: "Forbidden", message: denialMessage(decision) } }),
    ...(warnings.length > 0 ? { warnings } : {}),
    ...(annotations === undefined ? {} : { auditAnnotations: annotations }),
  };
}

export function reviewResponse(uid: string, decision: Decision): AdmissionReviewResponse {
  return { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: admissionResponse(uid, decision) };
}

/** Decides a validated AdmissionReview. */
export function decideReview(set: EffectivePolicySet, review: AdmissionReview, context: DecisionContext): { decision: Decision; review: AdmissionReviewResponse } {
  const decision = evaluate(set, review.request, context);
  return { decision, review: reviewResponse(review.request.uid, decision) };
}

/**
 * Bytes to bytes, as the webhook serves it: parse, validate, decide, encode.
 * Throws a PolityError (a 400 for the webhook) when the body is not an AdmissionReview v1.
 */
export function decideReviewBytes(set: EffectivePolicySet, body: Uint8Array, context: DecisionContext): Buffer {
  let text: string;
  try {
    text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8");
  } catch {
    throw PolityError.of("invalid", "the body is not UTF-8 text");
  }
  try {
    const review = parseAdmissionReview(parseJson(text, "request body", false));
    return Buffer.from(JSON.stringify(decideReview(set, review, context).review), "utf8");
  } catch (error) {
    // Nesting deep enough to exhaust the stack anywhere on the way is refused, not crashed on.
    if (error instanceof RangeError) throw PolityError.of("too-large", "the AdmissionReview is nested too deeply");
    throw error;
  }
}
