/**
 * Errors of the hub API: Kubernetes-style Status objects with the HTTP code, a reason,
 * a message a person can act on, and the field-level causes (path, file:line:column).
 */
import type { PolityError } from "../errors.js";
import { formatLocation } from "../errors.js";
import { statusBody, type Status, type StatusCause } from "../api/status.js";

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly causes: readonly StatusCause[] = [],
    /** Response headers, such as Retry-After on a 503. */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }

  toStatus(): Status {
    return statusBody(this.code, this.reason, this.message, this.causes);
  }
}

export const unauthorized = (message: string) => new ApiError(401, "Unauthorized", message);
export const forbidden = (message: string) => new ApiError(403, "Forbidden", message);
export const notFound = (message: string) => new ApiError(404, "NotFound", message);
export const conflict = (message: string) => new ApiError(409, "Conflict", message);
export const badRequest = (message: string) => new ApiError(400, "BadRequest", message);
export const unprocessable = (message: string) => new ApiError(422, "Invalid", message);

/** A PolityError from the engine: invalid input is 422, a refused merge 409, too large 413. */
export function fromPolityError(error: PolityError, summary: string): ApiError {
  const causes = error.problems.map((p) => ({
    ...(p.path === undefined ? {} : { field: p.path }),
    message: p.message,
    ...(p.location === undefined ? {} : { location: formatLocation(p.location) }),
  }));
  const [code, reason] =
    error.code === "merge-refused" ? [409, "MergeRefused"] : error.code === "too-large" ? [413, "RequestEntityTooLarge"] : error.code === "not-found" ? [404, "NotFound"] : [422, "Invalid"];
  const first = error.problems[0]?.message ?? "";
  return new ApiError(code, reason, `${summary}: ${error.problems.length === 1 ? first : `${error.problems.length} problems`}`, causes);
}
