/**
 * Long work the hub does between answers (parsing and building the layers of a change of
 * many MiB) runs in slices: after each slice of about 10 ms it lets the event loop answer
 * the requests that came in meanwhile (/healthz, agents' long polls, other changes).
 */
import type { Steps } from "../source/steps.js";

const SLICE_MS = 10;

/** Runs `steps` to the end, pausing for the event loop every SLICE_MS of work. */
export async function paced<T>(steps: Steps<T>): Promise<T> {
  let slice = performance.now();
  for (;;) {
    const next = steps.next();
    if (next.done === true) return next.value;
    if (performance.now() - slice >= SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      slice = performance.now();
    }
  }
}
