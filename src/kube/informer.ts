/**
 * An informer, as client-go's reflector keeps one: list, then watch from the list's
 * resourceVersion with bookmarks, keeping a local copy of one resource type in step.
 *
 * - A watch that ends (the server's timeout, a dropped connection, a stream cut mid-event)
 *   resumes from the last resourceVersion it saw; bookmarks move that version forward
 *   without an object, so that a resumed watch starts near the present.
 * - A watch the server answers with 410 Gone (reason Expired: its history no longer
 *   reaches the version asked for), as an ERROR event or as the HTTP status, re-lists.
 * - A list answered 429 or 5xx waits as Retry-After says (capped at MAX_RETRY_AFTER_MS),
 *   or else backs off exponentially with jitter; so does a failed watch. client-node's
 *   Watch does not show the response headers of a refused watch, so a watch refused with
 *   429 backs off without its Retry-After, and the re-list after it honours the next one.
 * - What does not parse (a garbage list, a garbage event) is an error of that turn: logged,
 *   shown in health, and retried. An update or addition that does not parse takes its
 *   object out of the cache (its old state is no longer the truth); an event older than
 *   the object held (a replay, by integer resourceVersions) is refused.
 * - A watch that brings neither an event nor a bookmark for `progressTimeoutMs` (a stuck
 *   proxy answers 200 and then nothing) is ended and resumed, with an error in health.
 * - `fresh(maxAgeMs)` says whether the cache may be trusted as it is: synced, in contact
 *   (a list, an event or a bookmark) within that time, and not known to be behind (a
 *   failed list or watch, a 410, a stuck watch). Callers that must not decide on stale
 *   data (the namespaces of admission decisions) read from the API server when it is not.
 * - What failures show (`describeFailure`) never holds a credential: the API server's own
 *   message, a system error's code, or else the first line of the message with quoted
 *   text and credential-like runs taken out (an exec plugin's errors quote its output).
 *
 * The list goes through a function the caller gives (the official client's typed list
 * call); the watch through client-node's Watch, unmodified. Objects reach the caller as
 * plain JSON through `project`, which keeps only what the caller needs (memory: an agent
 * in a cluster of 10,000 namespaces holds them all).
 */
import { ApiException, Watch, type KubeConfig } from "@kubernetes/client-node";
import { Backoff, sleep } from "../client/retry.js";
import { redacted, withoutSecrets } from "./redact.js";

/** Where an informer says what it did and what failed (the agent's log fits). */
export interface KubeLog {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

export interface ListPage {
  readonly items: readonly unknown[];
  readonly resourceVersion: string;
  readonly continueToken?: string;
}

export interface InformerOptions<T> {
  /** For logs and health: "namespaces". */
  readonly name: string;
  readonly config: KubeConfig;
  /** One page of the list, through the official client. */
  list(continueToken: string | undefined, signal: AbortSignal): Promise<ListPage>;
  /** The collection's path for the watch: `/api/v1/namespaces`. */
  readonly watchPath: string;
  /** The key of an object in the cache (its name, or namespace/name); undefined refuses it. */
  key(object: unknown): string | undefined;
  /** What the cache keeps of an object; undefined refuses it as malformed. */
  project(object: unknown): T | undefined;
  readonly log: KubeLog;
  /** How long a watch asks the server to stay open (default 5 to 10 minutes, drawn each time, as client-go does). */
  readonly watchTimeoutSeconds?: () => number;
  /** First and longest wait between failed attempts (default 1 s and 30 s). */
  readonly backoffMs?: { readonly first: number; readonly cap: number };
  /** Page size of a list (default 500, as client-go's). */
  readonly pageSize?: number;
  /** How long a watch may bring neither an event nor a bookmark before it is ended and resumed (default 75 s: API servers send a bookmark about every minute). */
  readonly progressTimeoutMs?: number;
  /** Exact strings never to show (the kubeconfig's credentials). */
  readonly secrets?: readonly string[];
  /** Milliseconds now (default Date.now). */
  readonly clock?: () => number;
  /** Watch only objects these labels select (`app.kubernetes.io/managed-by=polity`); the caller's list must ask the same. */
  readonly labelSelector?: string;
  /** Told after the cache changed: an object's key (added, modified, deleted by the watch), or undefined when a list replaced the whole cache. */
  readonly onChange?: (key: string | undefined) => void;
}

/** API servers send a bookmark to a watch about every minute: a watch silent for longer is stuck. */
export const DEFAULT_PROGRESS_TIMEOUT_MS = 75_000;

export interface InformerHealth {
  readonly synced: boolean;
  readonly objects: number;
  /** The resourceVersion the cache is at. */
  readonly resourceVersion: string | null;
  readonly lists: number;
  readonly watches: number;
  /** Events, objects or pages refused as malformed. */
  readonly malformed: number;
  /** The error since the last successful list or watch event, if any. */
  readonly lastError: string | null;
  /** Milliseconds since the last list, event or bookmark; null before the first list. */
  readonly sinceContactMs: number | null;
  /** Whether the cache is known to be behind the API server (a failed list or watch, a 410, a stuck watch) until the next contact. */
  readonly behind: boolean;
}

/** Retry-After is honoured up to this long: a server cannot park the agent for a day. */
export const MAX_RETRY_AFTER_MS = 60_000;

/** A watch ended by a 410 Gone: the cache must list again. */
class Expired extends Error {}

/** The HTTP status of a failed call of the official client, if it had one. */
export function statusOf(error: unknown): number | undefined {
  if (error instanceof ApiException) return error.code;
  const code = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === "number" ? code : undefined;
}

/** Retry-After (delta-seconds or an HTTP date) of a failed call, in milliseconds, capped; undefined without one. */
export function retryAfterMs(error: unknown, now: number = Date.now()): number | undefined {
  if (!(error instanceof ApiException)) return undefined;
  const headers = (error.headers ?? {}) as Record<string, string>;
  const value = Object.entries(headers).find(([name]) => name.toLowerCase() === "retry-after")?.[1];
  if (value === undefined) return undefined;
  const seconds = /^\s*\d+\s*$/.test(value) ? Number(value) * 1000 : Date.parse(value) - now;
  if (!Number.isFinite(seconds)) return undefined;
  return Math.min(Math.max(seconds, 0), MAX_RETRY_AFTER_MS);
}

/** A failed call as a line for logs and health: the status and message, never a header, a body or a credential. */
export function describeFailure(error: unknown, secrets: readonly string[] = []): string {
  const code = statusOf(error);
  if (error instanceof ApiException) {
    const body = error.body as { message?: unknown } | string | undefined;
    const message = typeof body === "object" && body !== null && typeof body.message === "string" ? body.message : `HTTP ${error.code}`;
    return withoutSecrets(`${code} ${message.slice(0, 300)}`, secrets);
  }
  const message = error instanceof Error ? error.message : String(error);
  const firstLine = message.split("\n", 1)[0]!.slice(0, 300);
  // Node's system errors (ECONNREFUSED, CERT_HAS_EXPIRED…) name hosts and ports, never credentials.
  const system = (error as { code?: unknown } | null)?.code;
  if (typeof system === "string" && /^[A-Z][A-Z0-9_]+$/.test(system)) return withoutSecrets(`${code === undefined ? "" : `${code} `}${firstLine}`, secrets);
  // Anything else (an exec credential plugin's failure, a parse error) may quote what it read.
  return withoutSecrets(`${code === undefined ? "" : `${code} `}${redacted(firstLine)}`, secrets);
}

/** Decimal resourceVersions (etcd's revisions) in order; undefined when either is not one (they are opaque to clients). */
function olderVersion(version: string, than: string | undefined): boolean {
  if (than === undefined || !/^\d{1,30}$/.test(version) || !/^\d{1,30}$/.test(than)) return false;
  return BigInt(version) < BigInt(than);
}

export class Informer<T> {
  private readonly cache = new Map<string, T>();
  /** Each object's resourceVersion, to refuse an event older than the object held. */
  private readonly versions = new Map<string, string>();
  private resourceVersion: string | null = null;
  private lastContact: number | undefined;
  private behind = true;
  private synced = false;
  private lists = 0;
  private watches = 0;
  private malformed = 0;
  private lastError: string | null = null;
  private readonly syncWaiters: (() => void)[] = [];
  private readonly watch: Watch;

  private readonly now: () => number;

  constructor(private readonly options: InformerOptions<T>) {
    this.watch = new Watch(options.config);
    this.now = options.clock ?? Date.now;
  }

  /** Whether the cache may be trusted as it is: synced, in contact within `maxAgeMs`, and not known to be behind. */
  fresh(maxAgeMs: number): boolean {
    return this.synced && !this.behind && this.lastContact !== undefined && this.now() - this.lastContact <= maxAgeMs;
  }

  private contact(): void {
    this.lastContact = this.now();
    this.behind = false;
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  /** Sets one object learnt outside the watch (a direct read), unless the cache holds a newer state of it. */
  remember(key: string, value: T, resourceVersion?: string): void {
    const held = this.versions.get(key);
    if (this.cache.has(key) && (resourceVersion === undefined || held === undefined || !olderVersion(held, resourceVersion))) return;
    this.cache.set(key, value);
    if (resourceVersion !== undefined) this.versions.set(key, resourceVersion);
  }

  get size(): number {
    return this.cache.size;
  }

  values(): IterableIterator<T> {
    return this.cache.values();
  }

  health(): InformerHealth {
    return {
      synced: this.synced,
      objects: this.cache.size,
      resourceVersion: this.resourceVersion,
      lists: this.lists,
      watches: this.watches,
      malformed: this.malformed,
      lastError: this.lastError,
      sinceContactMs: this.lastContact === undefined ? null : this.now() - this.lastContact,
      behind: this.behind,
    };
  }

  /** Resolves once the first list has filled the cache (or `signal` aborts). */
  whenSynced(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => {
      this.syncWaiters.push(resolve);
      signal?.addEventListener("abort", () => resolve(), { once: true });
    });
  }

  /** Lists and watches until `signal` aborts; never throws. */
  async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff(this.options.backoffMs?.first ?? 1000, this.options.backoffMs?.cap ?? 30_000);
    while (!signal.aborted) {
      try {
        await this.relist(signal);
        backoff.reset();
      } catch (error) {
        if (signal.aborted) return;
        this.failed("list", error);
        await sleep(retryAfterMs(error) ?? backoff.next(), signal);
        continue;
      }
      // Watch from the list's version until the history no longer reaches it.
      while (!signal.aborted) {
        try {
          const progressed = await this.watchOnce(signal);
          if (progressed) backoff.reset();
          else await sleep(backoff.next(), signal);
        } catch (error) {
          if (signal.aborted) return;
          if (error instanceof Expired || statusOf(error) === 410) {
            this.behind = true;
            this.options.log.info(`${this.options.name}: watch expired, listing again`, { resourceVersion: this.resourceVersion });
            break;
          }
          this.failed("watch", error);
          await sleep(backoff.next(), signal);
        }
      }
    }
  }

  private failed(what: string, error: unknown): void {
    const message = `${this.options.name} ${what}: ${describeFailure(error, this.options.secrets)}`;
    this.lastError = message;
    this.behind = true;
    this.options.log.warn(message, { resourceVersion: this.resourceVersion });
  }

  /** Lists every page, then replaces the cache with what was listed. */
  private async relist(signal: AbortSignal): Promise<void> {
    const fresh = new Map<string, T>();
    const versions = new Map<string, string>();
    let continueToken: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page = await this.options.list(continueToken, signal);
      if (!Array.isArray(page.items) || typeof page.resourceVersion !== "string" || page.resourceVersion === "") {
        this.malformed++;
        throw new Error("the list answer is not a list with a resourceVersion");
      }
      resourceVersion ??= page.resourceVersion;
      for (const item of page.items) {
        const key = this.options.key(item);
        const value = key === undefined ? undefined : this.options.project(item);
        if (key === undefined || value === undefined) {
          this.malformed++;
          continue;
        }
        fresh.set(key, value);
        const version = (item as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
        if (typeof version === "string") versions.set(key, version);
      }
      continueToken = page.continueToken === undefined || page.continueToken === "" ? undefined : page.continueToken;
    } while (continueToken !== undefined && !signal.aborted);
    this.cache.clear();
    for (const [key, value] of fresh) this.cache.set(key, value);
    this.versions.clear();
    for (const [key, version] of versions) this.versions.set(key, version);
    this.resourceVersion = resourceVersion ?? null;
    this.lists++;
    this.lastError = null;
    this.contact();
    if (!this.synced) {
      this.synced = true;
      for (const resolve of this.syncWaiters.splice(0)) resolve();
      this.options.log.info(`${this.options.name}: synced`, { objects: this.cache.size, resourceVersion: this.resourceVersion });
    }
    this.options.onChange?.(undefined);
  }

  /**
   * One watch, from the cache's resourceVersion, until it ends. Resolves whether it brought
   * anything (an event or a bookmark); rejects with Expired on a 410.
   */
  private watchOnce(signal: AbortSignal): Promise<boolean> {
    this.watches++;
    const timeoutSeconds = this.options.watchTimeoutSeconds?.() ?? Math.floor(300 + Math.random() * 300);
    const query = { resourceVersion: this.resourceVersion ?? undefined, allowWatchBookmarks: true, timeoutSeconds, labelSelector: this.options.labelSelector };
    const progressTimeoutMs = this.options.progressTimeoutMs ?? DEFAULT_PROGRESS_TIMEOUT_MS;
    return new Promise<boolean>((resolve, reject) => {
      let progressed = false;
      let expired = false;
      let stuck = false;
      let lastProgress = this.now();
      let controller: AbortController | undefined;
      const abort = () => controller?.abort();
      signal.addEventListener("abort", abort, { once: true });
      // A watch that brings nothing, not even the bookmarks API servers send about every minute, is stuck.
      const watchdog = setInterval(() => {
        if (this.now() - lastProgress <= progressTimeoutMs) return;
        stuck = true;
        controller?.abort();
      }, Math.min(1000, progressTimeoutMs));
      watchdog.unref();
      const onEvent = (type: string, object: unknown) => {
        if (expired || stuck) return;
        if (type === "ERROR") {
          const code = (object as { code?: unknown } | null)?.code;
          if (code === 410) {
            expired = true;
            controller?.abort();
            return;
          }
          this.lastError = `${this.options.name} watch: ERROR event: ${String((object as { message?: unknown } | null)?.message ?? "").slice(0, 300)}`;
          return;
        }
        const version = (object as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
        if (typeof version !== "string" || version === "") {
          this.malformed++;
          return;
        }
        if (type === "BOOKMARK") {
          this.resourceVersion = version;
          progressed = true;
          lastProgress = this.now();
          this.contact();
          return;
        }
        const key = this.options.key(object);
        if (key === undefined) {
          this.malformed++;
          return;
        }
        if (olderVersion(version, this.versions.get(key))) {
          // A replay of an older state (a misbehaving server or proxy) never overwrites a newer one.
          this.malformed++;
          this.lastError = `${this.options.name} watch: a ${type} event for ${key} at resourceVersion ${version} is older than the ${this.versions.get(key)} held: refused`;
          return;
        }
        if (type === "DELETED") {
          this.cache.delete(key);
          this.versions.delete(key);
        } else if (type === "ADDED" || type === "MODIFIED") {
          const value = this.options.project(object);
          if (value === undefined) {
            // What it was is no longer the truth, and what it is cannot be read: out of the cache.
            this.malformed++;
            this.cache.delete(key);
            this.versions.delete(key);
            this.lastError = `${this.options.name} watch: a ${type} event for ${key} does not parse: taken out of the cache`;
            this.options.onChange?.(key);
            return;
          }
          this.cache.set(key, value);
          this.versions.set(key, version);
        } else {
          this.malformed++;
          return;
        }
        this.resourceVersion = version;
        progressed = true;
        lastProgress = this.now();
        this.lastError = null;
        this.contact();
        this.options.onChange?.(key);
      };
      const done = (error: unknown) => {
        clearInterval(watchdog);
        signal.removeEventListener("abort", abort);
        if (expired) return reject(new Expired("410 Gone"));
        if (stuck && !signal.aborted) return reject(new Error(`no event or bookmark for ${Math.round(progressTimeoutMs / 1000)} s: the watch is stuck; resuming`));
        if (signal.aborted) return resolve(progressed);
        // An error after events is a dropped stream: resume from where it got to.
        if (error !== null && error !== undefined && !progressed) return reject(error);
        if (error !== null && error !== undefined) this.failed("watch", error);
        resolve(progressed);
      };
      this.watch.watch(this.options.watchPath, query, onEvent, done).then(
        (c) => {
          controller = c;
          if (signal.aborted) c.abort();
        },
        (error: unknown) => done(error),
      );
    });
  }
}
