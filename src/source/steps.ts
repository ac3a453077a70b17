/**
 * Work that can pause. A long pure computation (parsing and building the layers of a change
 * of many MiB) is written as a generator that yields between its steps: run to its end at
 * once with `complete`, or by a caller that lets other work run between the steps (the
 * hub, which must keep answering while it parses).
 */

/** A computation that yields (nothing) between its steps and returns its result. */
export type Steps<T> = Generator<void, T, void>;

/** Runs every step at once and returns the result. */
export function complete<T>(steps: Steps<T>): T {
  for (;;) {
    const next = steps.next();
    if (next.done === true) return next.value;
  }
}
