/** Exceptions as requests: asked for, approved or denied by the policy's owners, withdrawn, expired. */
import { z } from "zod";
import { exceptionDocument, shownText } from "../policy/schema.js";
import { displayName } from "./fields.js";

/** A request: the spec of an Exception document, without an approver (the hub records who approves). */
export const exceptionRequest = z.strictObject({
  /** A name for people (the hub names the request by its id). */
  name: displayName(253).optional(),
  spec: exceptionDocument.shape.spec,
});
export type ExceptionRequest = z.infer<typeof exceptionRequest>;

export const exceptionAnswer = z.strictObject({ reason: shownText(1, 2000).optional() });
export type ExceptionAnswer = z.infer<typeof exceptionAnswer>;

export const EXCEPTION_STATES = ["pending", "approved", "denied", "withdrawn", "expired"] as const;
export type ExceptionState = (typeof EXCEPTION_STATES)[number];
export const isExceptionState = (value: string): value is ExceptionState => (EXCEPTION_STATES as readonly string[]).includes(value);

export interface ExceptionView {
  /** The request's id; for an exception written in a layer file, `<layer>/<name>`. */
  readonly id: string;
  readonly name: string | null;
  readonly policy: string;
  /** The layer that defines the policy: its owners answer, and it publishes the exception once granted. */
  readonly layer: string;
  readonly team: string;
  /** `request`, or, for one written in a layer file by a global admin, `layer file`. */
  readonly source: "request" | "layer file";
  readonly state: ExceptionState;
  /** Waited past the team's escalation time: a global admin may answer too. */
  readonly escalated: boolean;
  readonly spec: Readonly<Record<string, unknown>>;
  readonly region: string | null;
  readonly requestedBy: string;
  readonly requestedAt: string;
  readonly escalateAt: string | null;
  /** The authenticated approver, or `rule:<name>` for a risk rule; kept when it is later withdrawn or expires. */
  readonly approvedBy: string | null;
  readonly approvedAt: string | null;
  /** Who gave its last answer (approved, denied, withdrew it; `hub` when it expired). */
  readonly decidedBy: string | null;
  readonly decidedAt: string | null;
  readonly reason: string | null;
  readonly expiresAt: string;
}
