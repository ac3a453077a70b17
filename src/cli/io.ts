/**
 * The CLI's connection to the world, passed in so that commands can run in-process in
 * tests exactly as they run from a terminal.
 */
import { PolityError, formatProblem } from "../errors.js";

export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** Whether standard output is a terminal (colour, symbols). */
  readonly tty: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export const processIo: Io = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  tty: process.stdout.isTTY === true,
  env: process.env,
};

/** Exit codes, documented in the README. */
export const EXIT = {
  ok: 0,
  /** A request was denied, a lint found problems, a policy test failed, a check failed. */
  failed: 1,
  /** Bad usage or bad input: the command could not do its work. */
  usage: 2,
} as const;

export class UsageError extends Error {}

export function colors(io: Io) {
  const on = io.tty && io.env.NO_COLOR === undefined;
  const wrap = (code: number) => (s: string) => (on ? `\u001b[${code}m${s}\u001b[0m` : s);
  return { red: wrap(31), green: wrap(32), yellow: wrap(33), dim: wrap(2), bold: wrap(1) };
}

/** Prints an error the way every command does, and returns its exit code. */
export function reportError(io: Io, error: unknown): number {
  if (error instanceof UsageError) {
    io.err(`error: ${error.message}\n`);
    return EXIT.usage;
  }
  if (error instanceof PolityError) {
    for (const problem of error.problems) io.err(`error: ${formatProblem(problem)}\n`);
    return EXIT.usage;
  }
  throw error;
}
