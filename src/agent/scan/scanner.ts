/**
 * The background scan: what already runs in the cluster, judged against the bundle the
 * webhook enforces, with the webhook's own evaluation (decision/scan.ts: the same
 * pod-template handling, the agent's clock for exceptions, the namespace from the same
 * cache), written as policy reports and summed for the hub.
 *
 * For each kind the bundle's policies match (found by discovery), an informer lists and
 * watches it (src/kube/informer.ts: list, then watch from the list's resourceVersion with
 * bookmarks, resuming and re-listing as needed) and keeps, per object, its results only,
 * never the object. A new bundle, or the period (exceptions expire, namespaces change
 * labels), starts a new round: every type is listed and judged again. Reports are written
 * a few seconds after a change, bounded (one per namespace, results capped, summary counts
 * all). Objects in the namespaces the webhook registration exempts are not judged.
 */
import { setMaxListeners } from "node:events";
import type { EffectivePolicySet } from "../../layering/effective.js";
import type { KubeAccess } from "../../kube/config.js";
import { Informer } from "../../kube/informer.js";
import { KubeRequestError, kubeRequest } from "../../kube/raw.js";
import type { ReportFormat } from "../../decision/policy-report.js";
import { judgeExisting, scanKinds, ScanTally, type ComplianceSummary, type JudgedObject } from "../../decision/scan.js";
import type { Log } from "../log.js";
import { Backoff, sleep } from "../plugin.js";
import { apiVersionOf, collectionPath, reportFormat, resolveKinds, type ServedType } from "./discovery.js";
import { writeReports } from "./reports.js";

/** The namespaces the webhook registration exempts (deploy/agent/webhook.yaml): never judged. */
export const EXEMPT_NAMESPACES: readonly string[] = ["kube-system", "kube-public", "kube-node-lease", "polity-system"];

export interface ScanSource {
  readonly set: EffectivePolicySet;
  readonly version: number;
}

export interface ScannerOptions {
  readonly kube: KubeAccess;
  /** The bundle the webhook enforces now. */
  readonly bundle: () => ScanSource | undefined;
  /** The namespace cache the webhook decides with. */
  readonly namespaces: { cached(name: string): unknown };
  readonly now: () => Date;
  readonly log: Log;
  /** Judge everything again this often (default 10 minutes). */
  readonly periodMs?: number;
  /** How long after a change the reports are written (default 5 s). */
  readonly reportDelayMs?: number;
  readonly maxResultsPerReport?: number;
  /** Write reports (default true); a replica without the Lease judges but does not write. */
  readonly writeReports?: () => boolean;
}

export interface ScanHealth {
  readonly state: string;
  readonly bundleVersion: number | null;
  readonly types: readonly string[];
  readonly objects: number;
  readonly lastScanAt: string | null;
  readonly reportFormat: ReportFormat | null;
  readonly reports: number;
  /** Kinds the bundle's policies match that the cluster does not serve. */
  readonly missingKinds: readonly string[];
  /** Policies a scan cannot judge (every kind, or resource rules only). */
  readonly unscannedPolicies: readonly string[];
  readonly lastError: string | null;
}

type Judged = JudgedObject | null;

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

export class Scanner {
  private state = "waiting for a bundle";
  private informers: { type: ServedType; informer: Informer<Judged> }[] = [];
  private changes = 0;
  private source: ScanSource | undefined;
  private format: ReportFormat | undefined;
  private lastSummary: ComplianceSummary | undefined;
  private lastScanAt: string | null = null;
  private reports = 0;
  private missing: string[] = [];
  private unscanned: string[] = [];
  private lastError: string | null = null;

  constructor(private readonly options: ScannerOptions) {}

  /** The compliance summary of the last scan written, for the status report. */
  summary(): ComplianceSummary | undefined {
    return this.lastSummary;
  }

  health(): ScanHealth {
    let objects = 0;
    for (const { informer } of this.informers) objects += informer.size;
    const informerError = this.informers.map((i) => i.informer.health().lastError).find((e) => e !== null) ?? null;
    return {
      state: this.state,
      bundleVersion: this.source?.version ?? null,
      types: this.informers.map((i) => `${i.type.resource}${i.type.group === "" ? "" : `.${i.type.group}`}`),
      objects,
      lastScanAt: this.lastScanAt,
      reportFormat: this.format ?? null,
      reports: this.reports,
      missingKinds: this.missing,
      unscannedPolicies: this.unscanned,
      lastError: this.lastError ?? informerError,
    };
  }

  /** Scans until `signal` aborts; never throws. */
  async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff(1000, 30_000);
    while (!signal.aborted) {
      const source = this.options.bundle();
      if (source === undefined) {
        this.state = "waiting for a bundle";
        await sleep(1000, signal);
        continue;
      }
      const round = new AbortController();
      const stop = () => round.abort();
      signal.addEventListener("abort", stop, { once: true });
      try {
        await this.round(source, round.signal);
        backoff.reset();
      } catch (error) {
        if (signal.aborted) break;
        this.lastError = `scan: ${error instanceof Error ? error.message : String(error)}`;
        this.options.log.warn("background scan failed", { error: this.lastError });
        await sleep(backoff.next(), signal);
      } finally {
        round.abort();
        signal.removeEventListener("abort", stop);
      }
    }
  }

  /** One round: discover, list and watch every type, write reports after changes, until the bundle changes or the period ends. */
  private async round(source: ScanSource, outer: AbortSignal): Promise<void> {
    const { kube, now, log } = this.options;
    // The round's informers stop when it ends, whatever ends it.
    const informersStop = new AbortController();
    const stopInformers = () => informersStop.abort();
    outer.addEventListener("abort", stopInformers, { once: true });
    const signal = informersStop.signal;
    // One listener per informer and per wait: many kinds are not a leak.
    setMaxListeners(100, signal);
    this.source = source;
    this.state = "discovering";
    const { kinds, unscanned } = scanKinds(source.set);
    this.unscanned = [...unscanned];
    const { types, missing } = await resolveKinds(kube.config, kinds, signal);
    this.missing = missing;
    this.format = await reportFormat(kube.config, signal);
    const exempt = new Set(EXEMPT_NAMESPACES);
    const judge = (type: ServedType) => (object: unknown): Judged | undefined => {
      if (!isRecord(object) || !isRecord(object.metadata)) return undefined;
      const namespace = typeof object.metadata.namespace === "string" ? object.metadata.namespace : undefined;
      if (namespace !== undefined && exempt.has(namespace)) return null;
      this.changes++;
      try {
        return judgeExisting(source.set, { ...object, apiVersion: apiVersionOf(type), kind: type.kind }, { now: now().getTime(), namespaceObject: namespace === undefined ? undefined : this.options.namespaces.cached(namespace) });
      } catch {
        return undefined;
      }
    };
    this.informers = types.map((type) => ({
      type,
      informer: new Informer<Judged>({
        name: `scan ${type.resource}${type.group === "" ? "" : `.${type.group}`}`,
        config: kube.config,
        watchPath: collectionPath(type),
        list: async (continueToken, listSignal) => {
          const query = `?limit=500${continueToken === undefined ? "" : `&continue=${encodeURIComponent(continueToken)}`}`;
          const page = (await kubeRequest(kube.config, { method: "GET", path: `${collectionPath(type)}${query}`, signal: listSignal })) as { items?: unknown; metadata?: { resourceVersion?: unknown; continue?: unknown } } | undefined;
          if (!Array.isArray(page?.items)) throw new Error(`${collectionPath(type)}: the answer is not a list`);
          const items = page.items as unknown[];
          const resourceVersion = typeof page?.metadata?.resourceVersion === "string" ? page.metadata.resourceVersion : "";
          return { items, resourceVersion, ...(typeof page?.metadata?.continue === "string" && page.metadata.continue !== "" ? { continueToken: page.metadata.continue } : {}) };
        },
        key: (object) => {
          const m = isRecord(object) && isRecord(object.metadata) ? object.metadata : undefined;
          return typeof m?.name === "string" && m.name !== "" ? `${typeof m.namespace === "string" ? m.namespace : ""}/${m.name}` : undefined;
        },
        project: judge(type),
        log,
      }),
    }));
    this.state = "listing";
    const runs = this.informers.map(({ informer }) => informer.run(signal));
    // Every type listed once (a type that cannot be listed shows its error and is retried by its informer).
    await Promise.race([Promise.all(this.informers.map(({ informer }) => informer.whenSynced(signal))), sleep(60_000, signal)]);
    const started = now().getTime();
    let written = "";
    const delay = this.options.reportDelayMs ?? 5000;
    const writes = new Backoff(1000, 30_000);
    try {
      while (!signal.aborted) {
        const current = this.options.bundle();
        if (current === undefined || current.version !== source.version || current.set.hash !== source.set.hash) return;
        if (now().getTime() - started >= (this.options.periodMs ?? 600_000)) return;
        const size = this.informers.reduce((n, { informer }) => n + informer.size, 0);
        // A replica that becomes the one writing reports writes them at once.
        const fingerprint = `${this.changes}/${size}/${this.options.writeReports?.() ?? true}`;
        if (fingerprint !== written) {
          try {
            await this.write(source, signal);
            written = fingerprint;
            writes.reset();
          } catch (error) {
            if (signal.aborted) return;
            // The informers keep watching; the reports are written again after a wait (Retry-After when the server gave one).
            this.lastError = `writing reports: ${error instanceof Error ? error.message : String(error)}`;
            log.warn("background scan: writing reports failed", { error: this.lastError });
            await sleep(Math.max(error instanceof KubeRequestError ? (error.retryAfterMs ?? 0) : 0, writes.next()), signal);
            continue;
          }
        }
        this.state = "watching";
        await sleep(delay, signal);
      }
    } finally {
      informersStop.abort();
      outer.removeEventListener("abort", stopInformers);
      await Promise.allSettled(runs);
    }
  }

  /** Tallies what the informers hold, writes the reports (where the cluster serves a report API) and keeps the summary. */
  private async write(source: ScanSource, signal: AbortSignal): Promise<void> {
    const tally = new ScanTally(this.options.maxResultsPerReport);
    for (const { informer } of this.informers) for (const judged of informer.values()) if (judged !== null) tally.add(judged);
    const at = this.options.now();
    const contents = tally.reports();
    if (this.format !== undefined && (this.options.writeReports?.() ?? true)) {
      this.state = "writing reports";
      const done = await writeReports(this.options.kube.config, this.format, contents, { scannedAtMs: at.getTime(), bundleVersion: source.version }, signal);
      this.reports = done.written;
    }
    this.lastSummary = tally.summary(at.toISOString(), source.version);
    this.lastScanAt = at.toISOString();
    this.lastError = null;
    this.options.log.info("background scan written", { objects: tally.objects, reports: contents.length, format: this.format ?? null, bundleVersion: source.version });
  }
}
