/**
 * AdmissionReview in, AdmissionReview out: `admission.k8s.io/v1` exactly as the API server
 * expects it. The response carries the request's uid, `allowed`, on denial a `status`
 * (403 Forbidden with a message naming each policy and what to change), the warnings of
 * warn policies, and audit annotations.
 */
import { PolityError } from "../errors.js";
import type { EffectivePolicySet } from "../layering/effective.js";
import { parseJson } from "../source/parse.js";
import { evaluate, type Decision } from "./evaluate.js";
import { parseAdmissionReview, type AdmissionRequest, type AdmissionReview } from "./request.js";

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

export interface ReviewContext {
  /** Milliseconds since the epoch; exceptions apply strictly before their expiry. */
  readonly now: number;
  /**
   * The Namespace object of that name, when the caller knows it: its labels select
   * policies. `polity eval` finds them among its inputs; the agent's webhook in its
   * namespace cache (src/kube/namespaces.ts).
   */
  readonly namespace?: (name: string) => unknown;
  /** Why the request's Namespace is not known, when the caller tried and failed to know it. */
  readonly namespaceUnknown?: string;
}

export interface ReviewDecision {
  /** The request decided, as validated. */
  readonly request: AdmissionRequest;
  readonly decision: Decision;
  readonly review: AdmissionReviewResponse;
  /** `review` encoded: the bytes the webhook answers with. */
  readonly response: Buffer;
}

/** Nesting deep enough to exhaust the stack anywhere on the way is refused, not crashed on. */
function refusedIfTooDeep(error: unknown): unknown {
  return error instanceof RangeError ? PolityError.of("too-large", "the AdmissionReview is nested too deeply") : error;
}

/**
 * Bytes to a validated AdmissionReview v1. Throws a PolityError: `invalid` when the body is
 * not one (the webhook answers 400), `too-large` when it is nested too deeply (413).
 */
export function parseReviewBytes(body: Uint8Array): AdmissionReview {
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8");
  try {
    return parseAdmissionReview(parseJson(text, "request body", false));
  } catch (error) {
    throw refusedIfTooDeep(error);
  }
}

/**
 * The decision path, bytes to bytes, as the webhook serves it: parse, validate, decide,
 * encode. `polity eval` and the admission benchmark call it too, so that what they show is
 * what the agent answers. Throws as parseReviewBytes does.
 */
export function decideReviewBytes(set: EffectivePolicySet, body: Uint8Array, context: ReviewContext): ReviewDecision {
  return decideReview(set, parseReviewBytes(body), context);
}

/**
 * The decision path from a review already parsed (parseReviewBytes): what the webhook
 * runs when it had to learn the request's namespace before deciding.
 */
export function decideReview(set: EffectivePolicySet, parsed: AdmissionReview, context: ReviewContext): ReviewDecision {
  const { request } = parsed;
  const namespaceObject = request.namespace === undefined || context.namespace === undefined ? undefined : context.namespace(request.namespace);
  let decision: Decision;
  try {
    decision = evaluate(set, request, { now: context.now, namespaceObject, ...(namespaceObject === undefined && context.namespaceUnknown !== undefined ? { namespaceUnknown: context.namespaceUnknown } : {}) });
  } catch (error) {
    throw refusedIfTooDeep(error);
  }
  const review = reviewResponse(request.uid, decision);
  return { request, decision, review, response: Buffer.from(JSON.stringify(review), "utf8") };
}
