/**
 * Polity's one error family. An error is a list of problems, each with where it is (file,
 * line, column, and the field path inside the document, as Kubernetes names fields) and
 * why, in words the user can act on. The CLI prints problems; it never prints a stack.
 */

export interface SourceLocation {
  readonly file: string;
  /** 1-based; 0 when unknown. */
  readonly line: number;
  readonly column: number;
}

export interface Problem {
  readonly message: string;
  /** Field path inside the document, e.g. `spec.validations[2].expression`. */
  readonly path?: string;
  readonly location?: SourceLocation;
}

export type ErrorCode =
  /** Input that does not parse or does not match the schema. */
  | "invalid"
  /** Layers that may not be combined (a lock, a bound or an ownership rule forbids it). */
  | "merge-refused"
  /** Input larger or deeper than Polity accepts. */
  | "too-large"
  /** A file or reference that does not exist. */
  | "not-found";

export class PolityError extends Error {
  override readonly name = "PolityError";

  constructor(
    readonly code: ErrorCode,
    readonly problems: readonly Problem[],
  ) {
    super(problems.map(formatProblem).join("\n"));
  }

  static of(code: ErrorCode, message: string, at?: Omit<Problem, "message">): PolityError {
    return new PolityError(code, [{ message, ...at }]);
  }
}

export function formatLocation(location: SourceLocation): string {
  return location.line > 0 ? `${location.file}:${location.line}:${location.column}` : location.file;
}

/** `file:line:col: spec.validations[2].expression: message`, like a compiler or kubectl. */
export function formatProblem(problem: Problem): string {
  const parts: string[] = [];
  if (problem.location !== undefined) parts.push(formatLocation(problem.location));
  if (problem.path !== undefined && problem.path !== "") parts.push(problem.path);
  parts.push(problem.message);
  return parts.join(": ");
}

/** Joins a field path the way Kubernetes prints it: `spec.validations[2].expression`. */
export function fieldPath(segments: readonly (string | number)[]): string {
  let out = "";
  for (const segment of segments) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) out += out === "" ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}
