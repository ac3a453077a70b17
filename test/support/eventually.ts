/** Waiting in tests: for what another process or loop does in its own time. */

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Polls `probe` (every 100 ms) until it gives a value other than undefined or false, and
 * fails naming `what` (and the probe's last error, if it threw) after `timeoutMs`.
 */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}${last === undefined ? "" : ` (last error: ${String(last)})`}`);
    await sleep(100);
  }
}
