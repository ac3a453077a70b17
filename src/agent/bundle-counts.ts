/**
 * The webhook's decisions counted per bundle version, for the last few versions: what a
 * staged rollout's gates judge a bundle by (denials and evaluation errors since the version
 * that brought it), against the cluster's own baseline under the version before.
 */
import type { BundleCounts as Reported } from "../api/rollouts.js";

/** How many versions are kept: the current one and a few before it. */
const KEPT = 4;

export class BundleCounts {
  private readonly counts = new Map<number, { allowed: number; denied: number; errors: number }>();

  /** One decision under `version`; `errors`: some expression could not be evaluated. */
  count(version: number, allowed: boolean, errors: boolean): void {
    let held = this.counts.get(version);
    if (held === undefined) {
      held = { allowed: 0, denied: 0, errors: 0 };
      this.counts.set(version, held);
      if (this.counts.size > KEPT) this.counts.delete(Math.min(...this.counts.keys()));
    }
    if (allowed) held.allowed++;
    else held.denied++;
    if (errors) held.errors++;
  }

  report(): Reported {
    return [...this.counts]
      .sort(([a], [b]) => a - b)
      .map(([version, c]) => ({ version, ...c }));
  }
}
