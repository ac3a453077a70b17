/**
 * The bound that keeps drift remediation from becoming an apply loop: per object, at most
 * `max` actions (re-applies, or reports of an inform object) in a window of `windowMs`
 * (default 5 a minute). The window opens at the object's first action; past the bound the
 * object is in a fight with another controller, reported once for the window, and nothing
 * more is done for it until the window ends.
 */

export const DEFAULT_MAX_ACTIONS = 5;
export const DEFAULT_WINDOW_MS = 60_000;

interface Window {
  readonly start: number;
  actions: number;
  fightReported: boolean;
  /** Inform drift reported suppressed past the bound. */
  suppressed: number;
}

export type Admission =
  /** Act: the action's number in its window. */
  | { readonly act: true; readonly actions: number }
  /** Past the bound: `firstRefusal` once per window (report the fight then); `endsAt` when acting is allowed again. */
  | { readonly act: false; readonly actions: number; readonly firstRefusal: boolean; readonly endsAt: number };

export class ReapplyBound {
  private readonly windows = new Map<string, Window>();

  constructor(
    readonly max = DEFAULT_MAX_ACTIONS,
    readonly windowMs = DEFAULT_WINDOW_MS,
  ) {}

  /** Whether `key` may act at `now`; counts the action when it may. */
  admit(key: string, now: number): Admission {
    let w = this.windows.get(key);
    if (w === undefined || now - w.start >= this.windowMs) {
      w = { start: now, actions: 0, fightReported: false, suppressed: 0 };
      this.windows.set(key, w);
    }
    if (w.actions < this.max) {
      w.actions++;
      return { act: true, actions: w.actions };
    }
    const firstRefusal = !w.fightReported;
    w.fightReported = true;
    w.suppressed++;
    return { act: false, actions: w.actions, firstRefusal, endsAt: w.start + this.windowMs };
  }

  /** Forgets windows that have ended (called now and then: memory stays bounded by the objects acting within a minute). */
  prune(now: number): void {
    for (const [key, w] of this.windows) if (now - w.start >= this.windowMs) this.windows.delete(key);
  }
}
