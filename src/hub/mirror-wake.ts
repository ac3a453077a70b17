/**
 * A regional hub's side of src/hub/mirror-watch.ts: alongside the rounds of its link, one
 * long poll at a time of its parent's `/v1/region/mirror/changes`, which calls `changed` as
 * soon as the parent's global or region layer moves past the versions seen last, so that
 * the link pulls the mirror at once instead of at its next round. Anything that fails (a
 * parent without the endpoint, a partition) changes nothing: the link's own interval runs
 * regardless, and the long poll is tried again after a pause.
 */
import { call, type HubEndpoint } from "../client/http.js";
import { sleep } from "../client/retry.js";

/** How long one long poll waits at the parent, in seconds. */
const WAIT_SECONDS = 25;
const VERSIONS = /^\d{1,15}\.\d{1,15}$/;

export class MirrorWake {
  /** The parent's versions seen last (undefined before the first answer). */
  private seen: string | undefined;
  private controller: AbortController | undefined;

  constructor(
    private readonly parent: () => HubEndpoint,
    /** The pause after a failed long poll. */
    private readonly retryMs: number,
  ) {}

  /** Calls `changed` each time the parent's versions move past those seen last, until `stop`. */
  start(changed: () => void): void {
    this.stop();
    const controller = (this.controller = new AbortController());
    void this.watch(controller.signal, changed);
  }

  stop(): void {
    this.controller?.abort();
    this.controller = undefined;
  }

  private async watch(signal: AbortSignal, changed: () => void): Promise<void> {
    while (!signal.aborted) {
      const query = this.seen === undefined ? "" : `?after=${this.seen}&wait=${WAIT_SECONDS}`;
      let versions: string;
      try {
        versions = (await call<{ versions: string }>(this.parent(), "GET", `/v1/region/mirror/changes${query}`, undefined, { timeoutMs: (WAIT_SECONDS + 10) * 1000, signal })).body.versions;
        if (typeof versions !== "string" || !VERSIONS.test(versions)) throw new Error("the parent's answer names no versions");
      } catch {
        await sleep(this.retryMs, signal);
        continue;
      }
      if (signal.aborted) return;
      const before = this.seen;
      this.seen = versions;
      if (before !== undefined && versions !== before) changed();
    }
  }
}
