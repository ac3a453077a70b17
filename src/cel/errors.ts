/** Errors of the CEL layer: compile errors carry a position, runtime errors a message. */

export interface SourcePosition {
  /** Offset in UTF-16 code units from the start of the expression. */
  readonly offset: number;
  /** 1-based line within the expression. */
  readonly line: number;
  /** 1-based column (code points) within the line. */
  readonly column: number;
}

export type CelCompileErrorKind = "syntax" | "type" | "cost" | "unsupported";

/** Why an expression cannot be compiled, with where in the expression. */
export interface CelCompileError {
  readonly kind: CelCompileErrorKind;
  readonly message: string;
  readonly position: SourcePosition;
}

/** A CEL evaluation error: a missing key, a division by zero, no matching overload, … */
export class CelEvalError extends Error {
  override readonly name = "CelEvalError";
  /** Where in the expression it happened (UTF-16 offset), when known. */
  offset: number | undefined;
}

/** The evaluation used more than its cost limit and was stopped. */
export class CelCostLimitError extends CelEvalError {}

export function positionAt(source: string, offset: number): SourcePosition {
  let line = 1;
  let column = 1;
  for (let i = 0; i < offset && i < source.length; i++) {
    const unit = source.charCodeAt(i);
    if (unit === 10) {
      line++;
      column = 1;
    } else if (unit < 0xdc00 || unit > 0xdfff) {
      column++;
    }
  }
  return { offset, line, column };
}

/** Renders an error as `line:col: message` followed by the source line and a caret. */
export function formatCompileError(source: string, error: CelCompileError): string {
  const lines = source.split("\n");
  const text = lines[error.position.line - 1] ?? "";
  const caret = " ".repeat(Math.max(0, error.position.column - 1)) + "^";
  return `${error.position.line}:${error.position.column}: ${error.message}\n  | ${text}\n  | ${caret}`;
}
