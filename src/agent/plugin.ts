/**
 * What every loop of the agent shares, as OPA's plugins do: one lifecycle, one record of
 * its last error, and the same way of waiting.
 *
 * A plugin runs until the agent stops it and never gives up: a turn of its loop that fails
 * records why (kept until a turn succeeds), waits longer each time, with jitter, so that
 * many agents do not ask their hub in step, and tries again. What a plugin holds for
 * /healthz it shows through a health() of its own type (health.ts puts them together).
 */
import { UnreachableError } from "../client/http.js";
import type { Log } from "./log.js";

/** The agent's loops, each with its own last error. */
export type AgentLoop = "identity" | "bundle" | "roots" | "logs" | "status" | "namespaces" | "impact" | "scan" | "intents" | "facts" | "drift";

export interface LoopError {
  readonly message: string;
  /** When it happened, by the agent's clock (milliseconds since the epoch). */
  readonly at: number;
  /** The hub could not be reached: a fact about the hub, which any loop can see is over. */
  readonly unreachable: boolean;
}

export interface Plugin {
  readonly name: AgentLoop;
  /** Runs the loop until `signal` aborts; the promise settles when the loop has ended. */
  run(signal: AbortSignal): Promise<void>;
  /** After every loop has ended and the webhook is closed: the work left (a last flush). */
  stop?(): Promise<void>;
  /** The loop's error since it last succeeded. */
  lastError(): LoopError | undefined;
}

/**
 * Each loop's error since it last succeeded, shared by the loops: an unreachable hub is
 * forgotten as soon as any loop reaches it.
 */
export class LoopErrors {
  private readonly errors = new Map<AgentLoop, LoopError>();

  constructor(
    private readonly now: () => Date,
    private readonly log: Log,
  ) {}

  /** `loop` failed doing `what`: logged, and kept until the loop succeeds. */
  failed(loop: AgentLoop, what: string, error: unknown): void {
    const reason = error instanceof Error ? error.message : String(error);
    const unreachable = error instanceof UnreachableError;
    // However the connection failed (refused, reset mid-request, timed out), health says the same thing.
    const message = unreachable && !what.includes("unreachable") ? `${what}: the hub is unreachable: ${reason}` : `${what}: ${reason}`;
    this.errors.set(loop, { message, at: this.now().getTime(), unreachable });
    this.log.warn(what, { error: reason });
  }

  /** `loop` cannot work yet, for a reason the operator must fix: kept like an error, not logged at every turn. */
  waiting(loop: AgentLoop, reason: string): void {
    this.errors.set(loop, { message: reason, at: this.now().getTime(), unreachable: false });
  }

  /** `loop` did its work: its own error is over, and so is every "the hub is unreachable". */
  succeeded(loop: AgentLoop): void {
    this.errors.delete(loop);
    for (const [other, error] of this.errors) if (error.unreachable) this.errors.delete(other);
  }

  of(loop: AgentLoop): LoopError | undefined {
    return this.errors.get(loop);
  }
}

export { Backoff, sleep } from "../client/retry.js";
