/**
 * One decision-log entry: what was asked, by whom, under which bundle, and what was
 * decided. A denial carries its violations; an allowed decision is logged as a sample
 * that says how many decisions it stands for.
 */
import type { Decision } from "../../decision/evaluate.js";
import type { AdmissionRequest } from "../../decision/request.js";

export interface DecisionEntry {
  readonly time: string;
  readonly uid: string;
  readonly kind: string;
  readonly namespace?: string;
  readonly name?: string;
  readonly operation: string;
  readonly user?: string;
  readonly allowed: boolean;
  readonly bundleVersion: number | null;
  /** Whether the caller presented a client certificate of the webhook's caller CA (the API server's). */
  readonly authenticated: boolean;
  readonly violations?: readonly { policy: string; rule: string; message: string; enforcement: string }[];
  /** For a sample of allowed decisions: how many it stands for. */
  readonly represents?: number;
}

function about(request: AdmissionRequest, time: string, bundleVersion: number | null, authenticated: boolean) {
  const username = typeof request.userInfo?.username === "string" ? request.userInfo.username : undefined;
  return {
    time,
    uid: request.uid,
    kind: request.kind.kind,
    ...(request.namespace === undefined ? {} : { namespace: request.namespace }),
    ...(request.name === undefined ? {} : { name: request.name }),
    operation: request.operation,
    ...(username === undefined ? {} : { user: username }),
    bundleVersion,
    authenticated,
  };
}

export function allowedEntry(request: AdmissionRequest, time: string, bundleVersion: number | null, represents: number, authenticated: boolean): DecisionEntry {
  return { ...about(request, time, bundleVersion, authenticated), allowed: true, represents };
}

export function deniedEntry(request: AdmissionRequest, decision: Decision, time: string, bundleVersion: number | null, authenticated: boolean): DecisionEntry {
  const violations = decision.violations.map((v) => ({ policy: v.policy, rule: v.rule, message: v.message, enforcement: v.enforcement }));
  return { ...about(request, time, bundleVersion, authenticated), allowed: false, violations };
}
