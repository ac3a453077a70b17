/**
 * The scan loop: once the namespace cache has synced, the background scan (scanner.ts)
 * lists, watches and judges what runs in the cluster, writes policy reports, and keeps the
 * compliance summary the status loop sends the hub. Its error in /healthz (`errors.scan`)
 * is the scan's last failure (discovery, a list, a report write) until a scan succeeds.
 */
import type { ComplianceSummary } from "../../decision/scan.js";
import type { KubeAccess, NamespaceCache } from "../../kube/index.js";
import type { ActiveBundle } from "../bundle/active.js";
import type { Log } from "../log.js";
import type { LoopError, Plugin } from "../plugin.js";
import { Scanner, type ScanHealth } from "./scanner.js";

export interface ScanPluginOptions {
  readonly kube: KubeAccess;
  readonly namespaces: NamespaceCache;
  readonly bundle: ActiveBundle;
  readonly now: () => Date;
  readonly log: Log;
  readonly periodMs?: number;
  readonly reportDelayMs?: number;
  /** Whether this replica writes the reports (the Lease holder, when replicas share one identity). */
  readonly writeReports?: () => boolean;
}

export class ScanPlugin implements Plugin {
  readonly name = "scan";
  private readonly scanner: Scanner;
  private since: number | undefined;

  constructor(private readonly options: ScanPluginOptions) {
    const { bundle } = options;
    this.scanner = new Scanner({
      kube: options.kube,
      bundle: () => (bundle.current === undefined ? undefined : { set: bundle.current.set, version: bundle.current.metadata.version }),
      namespaces: options.namespaces,
      now: options.now,
      log: options.log,
      ...(options.periodMs === undefined ? {} : { periodMs: options.periodMs }),
      ...(options.reportDelayMs === undefined ? {} : { reportDelayMs: options.reportDelayMs }),
      ...(options.writeReports === undefined ? {} : { writeReports: options.writeReports }),
    });
  }

  async run(signal: AbortSignal): Promise<void> {
    // Judged without the namespaces, policies selecting namespaces by label would all fail closed.
    await this.options.namespaces.whenSynced(signal);
    if (!signal.aborted) await this.scanner.run(signal);
  }

  summary(): ComplianceSummary | undefined {
    return this.scanner.summary();
  }

  health(): ScanHealth {
    return this.scanner.health();
  }

  lastError(): LoopError | undefined {
    const message = this.scanner.health().lastError;
    if (message === null) {
      this.since = undefined;
      return undefined;
    }
    this.since ??= this.options.now().getTime();
    return { message, at: this.since, unreachable: false };
  }
}
