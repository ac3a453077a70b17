/**
 * Errors on the wire: Kubernetes-style `Status` objects, as the hub and the agent's webhook
 * answer them and the client reads them. One shape, built in one place.
 */

export interface StatusCause {
  /** Field path in the request body (`files.0.mode`), when the cause is a field. */
  readonly field?: string;
  readonly message: string;
  /** `file:line:column` in an applied file. */
  readonly location?: string;
}

export interface Status {
  readonly kind: "Status";
  readonly apiVersion: "v1";
  readonly status: "Failure";
  readonly code: number;
  readonly reason: string;
  readonly message: string;
  readonly details?: { readonly causes?: readonly StatusCause[] };
}

export function statusBody(code: number, reason: string, message: string, causes: readonly StatusCause[] = []): Status {
  return { kind: "Status", apiVersion: "v1", status: "Failure", code, reason, message, ...(causes.length === 0 ? {} : { details: { causes } }) };
}
