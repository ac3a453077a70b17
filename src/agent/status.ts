/**
 * The status loop: every few seconds, the agent's health to its hub (what it enforces, how
 * fresh, how fast), so that `polity get clusters` shows whether it is in sync, and the
 * compliance summary of its last background scan, for `polity get compliance`.
 */
import type { ComplianceSummary } from "../decision/scan.js";
import { call } from "../client/http.js";
import type { AgentHealth } from "./health.js";
import type { AgentCredentials } from "./identity/credentials.js";
import { sleep, type LoopError, type LoopErrors, type Plugin } from "./plugin.js";

export interface StatusPluginOptions {
  readonly credentials: AgentCredentials;
  readonly errors: LoopErrors;
  readonly intervalMs: number;
  /** The report, made when it is sent. */
  readonly health: () => AgentHealth;
  /** The compliance summary of the last background scan, when there was one (sent with every report; the hub stores a scan once). */
  readonly compliance?: () => ComplianceSummary | undefined;
  /** Whether this replica reports (the one holding the Lease, when replicas share one identity). */
  readonly leader?: () => boolean;
}

/** Reports between two sends of an unchanged compliance summary (at 5 s, every 5 minutes). */
const RESEND_EVERY = 60;

export class StatusPlugin implements Plugin {
  readonly name = "status";

  constructor(private readonly options: StatusPluginOptions) {}

  async run(signal: AbortSignal): Promise<void> {
    const { credentials, errors, intervalMs, health, compliance } = this.options;
    // A summary is sent when its scan is new to the hub, and again every RESEND_EVERY reports
    // (a hub restored from a backup catches up): up to a MiB each, not at every report.
    let sentScan: string | undefined;
    let sinceSent = 0;
    while (!signal.aborted) {
      await sleep(intervalMs, signal);
      if (!credentials.enrolled || signal.aborted || this.options.leader?.() === false) continue;
      try {
        const summary = compliance?.();
        const send = summary !== undefined && (summary.scannedAt !== sentScan || sinceSent >= RESEND_EVERY);
        await call(credentials.hub(), "POST", "/v1/agent/status", { ...health(), ...(send ? { compliance: summary } : {}) }, { signal, timeoutMs: 10_000 });
        if (send) {
          sentScan = summary.scannedAt;
          sinceSent = 0;
        } else sinceSent++;
        errors.succeeded("status");
      } catch (error) {
        if (!signal.aborted) errors.failed("status", "status report failed", error);
      }
    }
  }

  lastError(): LoopError | undefined {
    return this.options.errors.of(this.name);
  }
}
