/**
 * The drift report loop: the watcher's events, buffered (bounded: past `maxBuffered` the
 * oldest are dropped and counted) and sent to the hub in batches over mutual TLS
 * (POST /v1/agent/drift) every `intervalMs`. A batch keeps its id until the hub took it,
 * so a batch sent again after a lost answer is stored once. While the hub is unreachable
 * events wait in memory, within the bound; what was dropped, and the inform drift
 * suppressed past the per-object bound, travel as counts with the next batch.
 */
import { randomBytes } from "node:crypto";
import { MAX_DRIFT_EVENTS_PER_BATCH, type DriftBatch, type DriftEvent } from "../../api/drift.js";
import { call, type HubEndpoint } from "../../client/http.js";
import { sleep, type LoopError, type LoopErrors, type Plugin } from "../plugin.js";
import type { DriftSink } from "./watcher.js";

export const DEFAULT_MAX_BUFFERED = 2000;

export interface DriftReporterOptions {
  /** The hub, as the agent reaches it (its certificate); undefined while not enrolled. */
  readonly hub: () => HubEndpoint | undefined;
  /** The agent's loop errors, when it runs as one of its plugins. */
  readonly errors?: LoopErrors;
  /** How often a batch is sent (default 2 s). */
  readonly intervalMs?: number;
  readonly maxBuffered?: number;
}

export interface DriftReporterHealth {
  readonly buffered: number;
  readonly sent: number;
  readonly dropped: number;
  readonly lastError: string | null;
}

export class DriftReporter implements Plugin, DriftSink {
  readonly name = "drift";
  private buffer: DriftEvent[] = [];
  /** The batch being sent, kept (with its id) until the hub took it. */
  private inFlight: DriftBatch | undefined;
  private dropped = 0;
  private droppedTotal = 0;
  private suppressedCount = 0;
  private sent = 0;
  private error: string | null = null;

  constructor(private readonly options: DriftReporterOptions) {}

  add(event: DriftEvent): void {
    this.buffer.push(event);
    const max = this.options.maxBuffered ?? DEFAULT_MAX_BUFFERED;
    if (this.buffer.length > max) {
      const over = this.buffer.length - max;
      this.buffer.splice(0, over);
      this.dropped += over;
      this.droppedTotal += over;
    }
  }

  suppressed(): void {
    this.suppressedCount++;
  }

  health(): DriftReporterHealth {
    return { buffered: this.buffer.length + (this.inFlight?.events.length ?? 0), sent: this.sent, dropped: this.droppedTotal, lastError: this.error };
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(this.options.intervalMs ?? 2000, signal);
      if (signal.aborted) return;
      await this.flush(signal);
    }
  }

  /** Sends what is buffered, a batch at a time; false when the hub could not take it (kept for the next turn). */
  async flush(signal?: AbortSignal): Promise<boolean> {
    const hub = this.options.hub();
    if (hub === undefined) return false;
    while (this.inFlight !== undefined || this.buffer.length > 0 || this.dropped > 0 || this.suppressedCount > 0) {
      if (this.inFlight === undefined) {
        this.inFlight = { batch: randomBytes(8).toString("hex"), events: this.buffer.splice(0, MAX_DRIFT_EVENTS_PER_BATCH), dropped: this.dropped, suppressed: this.suppressedCount };
        this.dropped = 0;
        this.suppressedCount = 0;
      }
      try {
        await call(hub, "POST", "/v1/agent/drift", this.inFlight, { ...(signal === undefined ? {} : { signal }), timeoutMs: 10_000 });
      } catch (error) {
        this.error = `drift report failed: ${error instanceof Error ? error.message : String(error)}`;
        if (signal?.aborted !== true) this.options.errors?.failed("drift", "drift report failed", error);
        return false;
      }
      this.sent += this.inFlight.events.length;
      this.inFlight = undefined;
      this.error = null;
      this.options.errors?.succeeded("drift");
    }
    return true;
  }

  /** One last send when the agent stops (bounded by the request's timeout). */
  async stop(): Promise<void> {
    await this.flush();
  }

  lastError(): LoopError | undefined {
    return this.options.errors?.of(this.name);
  }
}
