/**
 * The decision-log loop, in two parts that never wait for each other: every second the
 * open segment is sealed (what the webhook logged is on disk already) and the disk bound
 * kept; every upload interval, the sealed segments go to the hub, batch after batch, oldest
 * first. A hub that is down slows the uploads (they back off), never the sealing. A batch
 * the hub refuses stays on disk, is retried, and is named in the loop's error until it
 * goes through.
 */
import { call, HubError } from "../../client/http.js";
import type { AgentCredentials } from "../identity/credentials.js";
import { Backoff, sleep, type LoopError, type LoopErrors, type Plugin } from "../plugin.js";
import type { DecisionLog, LogStats } from "./buffer.js";

const FLUSH_MS = 1000;

export interface DecisionLogPluginOptions {
  readonly decisions: DecisionLog;
  readonly credentials: AgentCredentials;
  readonly errors: LoopErrors;
  readonly uploadIntervalMs: number;
}

export class DecisionLogPlugin implements Plugin {
  readonly name = "logs";

  constructor(private readonly options: DecisionLogPluginOptions) {}

  async run(signal: AbortSignal): Promise<void> {
    await Promise.all([this.seal(signal), this.upload(signal)]);
  }

  private async seal(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(FLUSH_MS, signal);
      try {
        this.options.decisions.flush();
      } catch (error) {
        this.options.errors.failed("logs", "writing decision logs failed", error);
      }
    }
  }

  private async upload(signal: AbortSignal): Promise<void> {
    const { decisions, credentials, errors, uploadIntervalMs } = this.options;
    const backoff = new Backoff(1000, 30_000);
    while (!signal.aborted) {
      await sleep(uploadIntervalMs, signal);
      if (!credentials.enrolled || signal.aborted) continue;
      let sending: string | undefined;
      try {
        for (let batch = decisions.nextBatch(); batch !== undefined && !signal.aborted; batch = decisions.nextBatch()) {
          sending = batch.batch;
          await call(credentials.hub(), "POST", "/v1/agent/decisions", { batch: batch.batch, entries: batch.entries, dropped: batch.dropped }, { signal });
          batch.done();
        }
        errors.succeeded("logs");
        backoff.reset();
      } catch (error) {
        if (signal.aborted) return;
        // A batch the hub refuses stays on disk, retried, and named here until it goes through.
        const what = error instanceof HubError ? `the hub refused decision-log batch ${sending ?? ""} (${error.status}); it stays on disk` : "uploading decision logs failed (they stay on disk)";
        errors.failed("logs", what, error);
        await sleep(backoff.next(), signal);
      }
    }
  }

  /** The webhook is closed by now: the allowed decisions not yet sampled are sampled, and everything is flushed. */
  async stop(): Promise<void> {
    try {
      this.options.decisions.close();
    } catch {
      // nothing more to do at shutdown
    }
  }

  lastError(): LoopError | undefined {
    return this.options.errors.of(this.name);
  }

  health(): LogStats {
    return this.options.decisions.stats();
  }
}
