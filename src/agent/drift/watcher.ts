/**
 * The drift watcher: keeps the objects Polity applied as Polity applied them.
 *
 * For each kind of the desired objects (`setDesired`, after each successful apply) an
 * informer lists and watches the objects labelled `app.kubernetes.io/managed-by=polity`
 * (src/kube/informer.ts). On an event for a desired object, and after every list, the pure
 * comparison (src/intents/drift.ts) looks at the fields Polity owns only; when it finds
 * drift within 10 s of an apply, or a missing object, the object is read again from the API
 * server (the cache may be a step behind the apply) and, if it still differs:
 *
 * - `enforce` (its manifest's `polity.dev/remediation`, the default): the manifest is
 *   server-side applied again, field manager `polity`, with `force`: whoever wrote the
 *   field took its ownership, and enforcing means taking back what the intent sets (the
 *   manifest goes as JSON, as it is: client-node's typed serializer drops fields whose
 *   model renames them, such as a LimitRange's `default` and a NetworkPolicy's `from`);
 * - `inform`: reported, once per distinct drift.
 *
 * Every action is counted per object (bound.ts: 5 a minute by default). Past the bound the
 * object is in a fight with another controller: it is reported once for the window, with
 * the other writer named from managedFields when the server names one, nothing more is
 * done for it until the window ends, and then it is checked again. Events go to the sink
 * (the drift report loop sends them to the hub, reporter.ts). The watcher never deletes.
 */
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import { MAX_DRIFT_FIELDS, type DriftEvent } from "../../api/drift.js";
import { driftOf, formatPath, otherManager, remediationOf } from "../../intents/drift.js";
import type { Manifest } from "../../intents/index.js";
import { MANAGED_BY, POLICY_LABEL } from "../../intents/translate.js";
import type { KubeAccess } from "../../kube/config.js";
import { describeFailure, Informer } from "../../kube/informer.js";
import { KubeRequestError, kubeRequest } from "../../kube/raw.js";
import { silentLog, type Log } from "../log.js";
import { printable } from "../../policy/names.js";
import { ReapplyBound } from "./bound.js";
import { cacheKeyOf, collectionPath, FIELD_MANAGER, objectKeyOf, objectPath, ownedType, serverSideApply, typeKeyOf, type OwnedType } from "./types.js";

export { FIELD_MANAGER } from "./types.js";

/** What takes the watcher's events: each event, and each inform drift suppressed past the bound (counted only). */
export interface DriftSink {
  add(event: DriftEvent): void;
  suppressed(): void;
}
export const OWNED_SELECTOR = `${MANAGED_BY}=polity`;

/** Objects checked (and re-applied) at once: a burst of drift is put back in parallel, one object never twice at once. */
const CONCURRENT_CHECKS = 8;
/** How long after `setDesired` drift found in the cache is read again from the API server before acting. */
const CONFIRM_AFTER_APPLY_MS = 10_000;

export interface DriftWatcherOptions {
  readonly kube: KubeAccess;
  /** Where drift events go: the report loop's buffer (reporter.ts). */
  readonly sink: DriftSink;
  readonly log?: Log;
  readonly now?: () => Date;
  /** Actions per object per window before it is a fight (default 5). */
  readonly maxReapplies?: number;
  /** The window (default a minute). */
  readonly windowMs?: number;
  /** Whether this replica acts (the Lease holder, when replicas share a cluster): others watch but never apply or report. */
  readonly leader?: () => boolean;
  /** The informers' backoff between failed attempts (default 1 s to 30 s). */
  readonly backoffMs?: { readonly first: number; readonly cap: number };
}

export interface DriftHealth {
  readonly desired: number;
  /** Kinds watched, and kinds the cluster does not serve (yet). */
  readonly watching: readonly string[];
  readonly unserved: readonly string[];
  readonly synced: boolean;
  readonly counts: { readonly remediated: number; readonly reported: number; readonly fights: number; readonly failed: number; readonly suppressed: number };
  readonly lastError: string | null;
}

interface TypeWatch {
  readonly type: OwnedType;
  readonly informer: Informer<Record<string, unknown>>;
  readonly stop: AbortController;
  readonly running: Promise<void>;
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

export class DriftWatcher {
  private desired = new Map<string, Manifest>();
  private readonly watches = new Map<string, TypeWatch>();
  private readonly unserved = new Set<string>();
  private readonly pending = new Set<string>();
  private readonly informed = new Map<string, string>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly bound: ReapplyBound;
  private readonly log: Log;
  private readonly now: () => Date;
  private readonly counts = { remediated: 0, reported: 0, fights: 0, failed: 0, suppressed: 0 };
  private lastError: string | null = null;
  /** When the desired objects last changed (an apply). */
  private desiredAt = 0;
  private held = false;
  private stopper: AbortController | undefined;
  private draining: Promise<void> | undefined;
  private reconciling: Promise<void> = Promise.resolve();

  constructor(private readonly options: DriftWatcherOptions) {
    this.bound = new ReapplyBound(options.maxReapplies, options.windowMs);
    this.log = options.log ?? silentLog;
    this.now = options.now ?? (() => new Date());
  }

  /** Starts watching the kinds of the desired objects (none until `setDesired`). */
  start(): void {
    if (this.stopper !== undefined) return;
    this.stopper = new AbortController();
    setMaxListeners(100, this.stopper.signal);
    this.reconcile();
  }

  /** Stops every informer and timer; resolves when they have ended. */
  async stop(): Promise<void> {
    this.stopper?.abort();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await this.reconciling;
    await Promise.allSettled([...this.watches.values()].map((w) => (w.stop.abort(), w.running)));
    this.watches.clear();
    await this.draining;
    this.stopper = undefined;
  }

  /**
   * The apply loop is about to apply: nothing is re-applied until the next `setDesired`, or
   * the watcher would put back what the apply changes or deletes (the objects of the
   * version before), and orphan what it recreated.
   */
  hold(): void {
    this.held = true;
  }

  /** The objects Polity applied last (the apply loop calls this after each successful apply); ends a `hold`. */
  setDesired(manifests: readonly Manifest[]): void {
    this.held = false;
    this.desired = new Map(manifests.map((m) => [objectKeyOf(m), m]));
    this.desiredAt = this.now().getTime();
    for (const key of this.informed.keys()) if (!this.desired.has(key)) this.informed.delete(key);
    this.reconcile();
  }

  /** Resolves once every desired kind the cluster serves has been listed. */
  async whenSynced(): Promise<void> {
    await this.reconciling;
    await Promise.all([...this.watches.values()].map((w) => w.informer.whenSynced(w.stop.signal)));
  }

  health(): DriftHealth {
    const watches = [...this.watches.values()];
    return {
      desired: this.desired.size,
      watching: watches.map((w) => `${w.type.resource}.${w.type.apiVersion}`),
      unserved: [...this.unserved],
      synced: watches.every((w) => w.informer.health().synced),
      counts: { ...this.counts },
      lastError: this.lastError ?? watches.map((w) => w.informer.health().lastError).find((e) => e !== null) ?? null,
    };
  }

  /** Informers for the desired kinds, none for the others; kinds not served yet are tried again in 10 s. */
  private reconcile(): void {
    const signal = this.stopper?.signal;
    if (signal === undefined) return;
    this.reconciling = this.reconciling.then(async () => {
      const wanted = new Map([...this.desired.values()].map((m) => [typeKeyOf(m), m]));
      for (const [key, watch] of this.watches) {
        if (wanted.has(key)) continue;
        watch.stop.abort();
        this.watches.delete(key);
      }
      this.unserved.clear();
      for (const [key, m] of wanted) {
        if (signal.aborted) return;
        if (this.watches.has(key)) {
          // Objects new to an informer already synced: checked against what it holds.
          for (const d of this.desired.values()) if (typeKeyOf(d) === key) this.schedule(objectKeyOf(d));
          continue;
        }
        let type: OwnedType | undefined;
        try {
          type = await ownedType(this.options.kube.config, m.apiVersion, m.kind, signal);
        } catch (error) {
          if (signal.aborted) return;
          if (!(error instanceof KubeRequestError && error.code === 404)) this.lastError = `discovery of ${key}: ${describeFailure(error)}`;
        }
        if (type === undefined) {
          this.unserved.add(key);
          continue;
        }
        this.watches.set(key, this.watch(type, signal));
      }
      if (this.unserved.size > 0) this.later(10_000, () => this.reconcile());
    });
  }

  private watch(type: OwnedType, outer: AbortSignal): TypeWatch {
    const stop = new AbortController();
    outer.addEventListener("abort", () => stop.abort(), { once: true });
    const typeKey = typeKeyOf(type);
    const path = collectionPath(type);
    const informer = new Informer<Record<string, unknown>>({
      name: `drift ${type.resource}.${type.apiVersion}`,
      config: this.options.kube.config,
      watchPath: path,
      labelSelector: OWNED_SELECTOR,
      list: async (continueToken, signal) => {
        const query = `?limit=500&labelSelector=${encodeURIComponent(OWNED_SELECTOR)}${continueToken === undefined ? "" : `&continue=${encodeURIComponent(continueToken)}`}`;
        const page = (await kubeRequest(this.options.kube.config, { method: "GET", path: `${path}${query}`, signal })) as { items?: unknown; metadata?: { resourceVersion?: unknown; continue?: unknown } } | undefined;
        if (!Array.isArray(page?.items)) throw new Error(`${path}: the answer is not a list`);
        const resourceVersion = typeof page.metadata?.resourceVersion === "string" ? page.metadata.resourceVersion : "";
        const next = typeof page.metadata?.continue === "string" && page.metadata.continue !== "" ? { continueToken: page.metadata.continue } : {};
        return { items: page.items as unknown[], resourceVersion, ...next };
      },
      key: (object) => {
        const m = isRecord(object) && isRecord(object.metadata) ? object.metadata : undefined;
        return typeof m?.name === "string" && m.name !== "" ? `${typeof m.namespace === "string" ? m.namespace : ""}/${m.name}` : undefined;
      },
      project: (object) => (isRecord(object) ? object : undefined),
      onChange: (key) => {
        for (const m of this.desired.values()) if (typeKeyOf(m) === typeKey && (key === undefined || cacheKeyOf(m) === key)) this.schedule(objectKeyOf(m));
      },
      log: this.log,
      ...(this.options.backoffMs === undefined ? {} : { backoffMs: this.options.backoffMs }),
    });
    return { type, informer, stop, running: informer.run(stop.signal) };
  }

  private schedule(key: string): void {
    this.pending.add(key);
    this.draining ??= this.drain().finally(() => (this.draining = undefined));
  }

  /** Checks what is pending, CONCURRENT_CHECKS objects at a time, never one object twice at once. */
  private async drain(): Promise<void> {
    const busy = new Set<string>();
    const worker = async (): Promise<void> => {
      for (;;) {
        if (this.stopper?.signal.aborted !== false) return;
        const key = [...this.pending].find((k) => !busy.has(k));
        if (key === undefined) return;
        this.pending.delete(key);
        busy.add(key);
        try {
          await this.check(key);
        } catch (error) {
          this.lastError = `drift of ${key}: ${describeFailure(error)}`;
          this.log.warn("drift check failed", { object: key, error: this.lastError });
        } finally {
          busy.delete(key);
        }
      }
    };
    // Workers end when nothing is left that another is not checking; what came meanwhile gets a new round.
    while (this.pending.size > 0 && this.stopper?.signal.aborted === false) {
      await Promise.all(Array.from({ length: Math.min(CONCURRENT_CHECKS, this.pending.size) }, worker));
    }
  }

  /** Compares one desired object with its live state and acts as its remediation says. */
  private async check(key: string): Promise<void> {
    const desired = this.desired.get(key);
    const watch = desired === undefined ? undefined : this.watches.get(typeKeyOf(desired));
    if (this.held || desired === undefined || watch === undefined || !watch.informer.health().synced || this.options.leader?.() === false) return;
    const cached = watch.informer.get(cacheKeyOf(desired));
    if (driftOf(desired, cached) === undefined) {
      this.informed.delete(key);
      return;
    }
    // Shortly after an apply the cache may still hold the state from before it, and a deleted
    // object may have been made again: then the API server decides. Otherwise the watch's
    // latest word is the truth (and a re-apply of the desired object is harmless anyway).
    const live = cached === undefined || this.now().getTime() - this.desiredAt < CONFIRM_AFTER_APPLY_MS ? await this.read(watch.type, desired) : cached;
    const finding = driftOf(desired, live);
    if (finding === undefined || this.held || this.desired.get(key) !== desired) return;
    const fields = finding.kind === "missing" ? [] : finding.fields.map(formatPath);
    const remediation = remediationOf(desired);
    const other = finding.kind === "missing" ? undefined : otherManager(live, finding.fields, FIELD_MANAGER);
    const now = this.now().getTime();
    this.bound.prune(now);
    if (remediation === "inform") {
      const fingerprint = finding.kind === "missing" ? "missing" : fields.join("\n");
      if (this.informed.get(key) === fingerprint) return;
      const admitted = this.bound.admit(key, now);
      if (!admitted.act) {
        this.counts.suppressed++;
        this.options.sink.suppressed();
        return;
      }
      this.informed.set(key, fingerprint);
      this.counts.reported++;
      this.emit(desired, fields, finding.kind === "missing", "inform", "reported", admitted.actions, other);
      return;
    }
    const admitted = this.bound.admit(key, now);
    if (!admitted.act) {
      if (admitted.firstRefusal) {
        this.counts.fights++;
        this.log.warn("drift: a fight with another controller; re-applies stop for the rest of the window", { object: key, otherManager: other ?? null, reapplies: admitted.actions });
        this.emit(desired, fields, finding.kind === "missing", "enforce", "fight", admitted.actions, other);
        // When the window ends, the object is looked at again (the other writer may have stopped).
        this.later(Math.max(0, admitted.endsAt - now) + 10, () => this.schedule(key));
      }
      return;
    }
    try {
      await serverSideApply(this.options.kube.config, watch.type, desired, { force: true, signal: this.stopper?.signal });
      this.counts.remediated++;
      this.emit(desired, fields, finding.kind === "missing", "enforce", "remediated", admitted.actions, other);
    } catch (error) {
      this.counts.failed++;
      const reason = describeFailure(error);
      this.lastError = `re-applying ${key}: ${reason}`;
      this.emit(desired, fields, finding.kind === "missing", "enforce", "failed", admitted.actions, other, reason);
    }
  }

  private async read(type: OwnedType, m: Manifest): Promise<Record<string, unknown> | undefined> {
    try {
      const live = await kubeRequest(this.options.kube.config, { method: "GET", path: objectPath(type, m), signal: this.stopper?.signal, timeoutMs: 10_000 });
      return isRecord(live) ? live : undefined;
    } catch (error) {
      if (error instanceof KubeRequestError && error.code === 404) return undefined;
      throw error;
    }
  }

  private emit(m: Manifest, fields: readonly string[], missing: boolean, remediation: DriftEvent["remediation"], outcome: DriftEvent["outcome"], reapplies: number, other?: string, reason?: string): void {
    // What reaches the hub is bounded and showable (a manager's name or a server's message could hold anything).
    const kept = fields.slice(0, MAX_DRIFT_FIELDS).map((f) => printable(f).slice(0, 512));
    const event: DriftEvent = {
      id: randomBytes(8).toString("hex"),
      at: this.now().toISOString(),
      object: { apiVersion: m.apiVersion, kind: m.kind, ...(m.metadata.namespace === undefined ? {} : { namespace: m.metadata.namespace }), name: m.metadata.name },
      policy: m.metadata.labels[POLICY_LABEL] ?? null,
      missing,
      fields: kept,
      omittedFields: fields.length - kept.length,
      remediation,
      outcome,
      reapplies: remediation === "enforce" ? reapplies : 0,
      ...(other === undefined ? {} : { otherManager: printable(other).slice(0, 128) }),
      ...(reason === undefined ? {} : { reason: printable(reason).slice(0, 300) }),
    };
    this.log.info(`drift ${outcome}`, { object: `${m.kind} ${m.metadata.namespace === undefined ? "" : `${m.metadata.namespace}/`}${m.metadata.name}`, fields: kept, remediation });
    this.options.sink.add(event);
  }

  private later(ms: number, work: () => void): void {
    if (this.stopper?.signal.aborted !== false) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      work();
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }
}
