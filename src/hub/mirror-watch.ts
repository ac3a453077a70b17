/**
 * What wakes a regional hub's link when its mirror changes, on the parent. A region's mirror
 * is level-triggered (its link pulls it every 2 s, src/hub/regional/role.ts); a change of the
 * global layer would wait for the next pull, up to the whole interval, before its region's
 * clusters could have it. Here a regional hub long-polls the versions of the two layers its
 * mirror carries (the global layer and its region's), as this hub holds them: the answer
 * comes as soon as either moves (this process's change, or another hub process's through the
 * database: both reload the federation), and the link pulls at once.
 *
 * The versions are a hint, never trusted: the link still pulls and checks the mirror as
 * every round does. One watch per federation; its waiters are in memory and leave on their
 * answer, their timeout or their caller going away.
 */
import type { Federation } from "./federation.js";

type Waiter = () => void;

export class MirrorWatch {
  private readonly waiters = new Set<{ region: string; after: string; wake: Waiter }>();

  constructor(private readonly federation: Federation) {
    federation.onReload(async () => {
      for (const waiter of [...this.waiters]) if (this.versions(waiter.region) !== waiter.after) waiter.wake();
    });
  }

  /** `<global layer version>.<region layer version>` as held here (0 for none). */
  versions(region: string): string {
    const version = (id: string) => this.federation.layers.get(id)?.version ?? 0;
    return `${version("global")}.${version(`region/${region}`)}`;
  }

  /** The versions once they differ from `after` (at once if they do), or as they are after `ms` or an abort. */
  wait(region: string, after: string | undefined, ms: number, signal: AbortSignal): Promise<string> {
    if (after === undefined || this.versions(region) !== after || ms <= 0 || signal.aborted) return Promise.resolve(this.versions(region));
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.waiters.delete(waiter);
        resolve(this.versions(region));
      };
      const waiter = { region, after, wake: done };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      this.waiters.add(waiter);
    });
  }
}

const watches = new WeakMap<Federation, MirrorWatch>();

/** The federation's one watch (made at its first use). */
export function mirrorWatch(federation: Federation): MirrorWatch {
  let watch = watches.get(federation);
  if (watch === undefined) watches.set(federation, (watch = new MirrorWatch(federation)));
  return watch;
}
