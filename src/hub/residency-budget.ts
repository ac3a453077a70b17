/**
 * How often a residency refusal is audited: once per key (a cluster and a kind of data)
 * per window, and at most `perWindow` entries a window in all, so that an agent that keeps
 * sending (or a script that keeps reading) cannot flood the log. What is not audited is
 * counted, and the next entry for that key says how many were left out.
 *
 * Per hub process (in memory): with several replicas, each audits once per key and window.
 */
export interface BudgetOptions {
  /** Default 10 minutes. */
  readonly windowMs: number;
  /** Entries a window in all, every key together (default 100). */
  readonly perWindow: number;
  /** Keys remembered (default 10,000); past it the oldest window is forgotten. */
  readonly maxKeys: number;
}

export const DEFAULT_BUDGET: BudgetOptions = { windowMs: 10 * 60_000, perWindow: 100, maxKeys: 10_000 };

export class RefusalBudget {
  private readonly keys = new Map<string, { since: number; suppressed: number }>();
  private window = { since: 0, spent: 0 };

  constructor(private readonly options: BudgetOptions = DEFAULT_BUDGET) {}

  /**
   * Whether this refusal is audited: undefined when it is not (counted), or how many of the
   * same key's were left out before it.
   */
  take(key: string, now: number): { readonly suppressedBefore: number } | undefined {
    if (now - this.window.since >= this.options.windowMs) this.window = { since: now, spent: 0 };
    const held = this.keys.get(key);
    if (held !== undefined && now - held.since < this.options.windowMs) {
      held.suppressed += 1;
      return undefined;
    }
    if (this.window.spent >= this.options.perWindow) {
      if (held !== undefined) held.suppressed += 1;
      else this.remember(key, { since: 0, suppressed: 1 });
      return undefined;
    }
    this.window.spent += 1;
    this.remember(key, { since: now, suppressed: 0 });
    return { suppressedBefore: held?.suppressed ?? 0 };
  }

  private remember(key: string, value: { since: number; suppressed: number }): void {
    this.keys.delete(key);
    this.keys.set(key, value);
    if (this.keys.size > this.options.maxKeys) this.keys.delete(this.keys.keys().next().value!);
  }
}
