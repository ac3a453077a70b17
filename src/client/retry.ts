/** Waiting between attempts, for every loop that retries: the agent's plugins and the Kubernetes informers. */

/**
 * Exponential backoff with jitter: each wait is drawn between half and all of the current
 * step, and the step doubles up to `cap`.
 */
export class Backoff {
  private step: number;

  constructor(
    private readonly first: number,
    private readonly cap: number,
  ) {
    this.step = first;
  }

  next(): number {
    const wait = this.step / 2 + Math.random() * (this.step / 2);
    this.step = Math.min(this.step * 2, this.cap);
    return wait;
  }

  reset(): void {
    this.step = this.first;
  }
}

/** Waits `ms`, or less if `signal` aborts: a stopping agent never waits out a sleep. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
