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
 *   shown in health, and retried; it never replaces what the cache holds.
 *
 * The list goes through a function the caller gives (the official client's typed list
 * call); the watch through client-node's Watch, unmodified. Objects reach the caller as
 * plain JSON through `project`, which keeps only what the caller needs (memory: an agent
 * in a cluster of 10,000 namespaces holds them all).
 */
import { ApiException, Watch, type KubeConfig } from "@kubernetes/client-node";
import { Backoff, sleep } from "../client/retry.js";

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
}

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

/** A failed call as a line for logs and health: the status and message, never a header or a body. */
export function describeFailure(error: unknown): string {
  const code = statusOf(error);
  if (error instanceof ApiException) {
    const body = error.body as { message?: unknown } | string | undefined;
    const message = typeof body === "object" && body !== null && typeof body.message === "string" ? body.message : `HTTP ${error.code}`;
    return `${code} ${message.slice(0, 300)}`;
  }
  const message = error instanceof Error ? error.message : String(error);
  return `${code === undefined ? "" : `${code} `}${message.slice(0, 300)}`;
}

export class Informer<T> {
  private readonly cache = new Map<string, T>();
  private resourceVersion: string | null = null;
  private synced = false;
  private lists = 0;
  private watches = 0;
  private malformed = 0;
  private lastError: string | null = null;
  private readonly syncWaiters: (() => void)[] = [];
  private readonly watch: Watch;

  constructor(private readonly options: InformerOptions<T>) {
    this.watch = new Watch(options.config);
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  /** Adds one object learnt outside the watch (a direct read), unless the watch already brought it (which is as new). */
  remember(key: string, value: T): void {
    if (!this.cache.has(key)) this.cache.set(key, value);
  }

  get size(): number {
    return this.cache.size;
  }

  values(): IterableIterator<T> {
    return this.cache.values();
  }

  health(): InformerHealth {
    return { synced: this.synced, objects: this.cache.size, resourceVersion: this.resourceVersion, lists: this.lists, watches: this.watches, malformed: this.malformed, lastError: this.lastError };
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
    const message = `${this.options.name} ${what}: ${describeFailure(error)}`;
    this.lastError = message;
    this.options.log.warn(message, { resourceVersion: this.resourceVersion });
  }

  /** Lists every page, then replaces the cache with what was listed. */
  private async relist(signal: AbortSignal): Promise<void> {
    const fresh = new Map<string, T>();
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
      }
      continueToken = page.continueToken === undefined || page.continueToken === "" ? undefined : page.continueToken;
    } while (continueToken !== undefined && !signal.aborted);
    this.cache.clear();
    for (const [key, value] of fresh) this.cache.set(key, value);
    this.resourceVersion = resourceVersion ?? null;
    this.lists++;
    this.lastError = null;
    if (!this.synced) {
      this.synced = true;
      for (const resolve of this.syncWaiters.splice(0)) resolve();
      this.options.log.info(`${this.options.name}: synced`, { objects: this.cache.size, resourceVersion: this.resourceVersion });
    }
  }

  /**
   * One watch, from the cache's resourceVersion, until it ends. Resolves whether it brought
   * anything (an event or a bookmark); rejects with Expired on a 410.
   */
  private watchOnce(signal: AbortSignal): Promise<boolean> {
    this.watches++;
    const timeoutSeconds = this.options.watchTimeoutSeconds?.() ?? Math.floor(300 + Math.random() * 300);
    const query = { resourceVersion: this.resourceVersion ?? undefined, allowWatchBookmarks: true, timeoutSeconds };
    return new Promise<boolean>((resolve, reject) => {
      let progressed = false;
      let expired = false;
      let controller: AbortController | undefined;
      const abort = () => controller?.abort();
      signal.addEventListener("abort", abort, { once: true });
      const onEvent = (type: string, object: unknown) => {
        if (expired) return;
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
          return;
        }
        const key = this.options.key(object);
        if (key === undefined) {
          this.malformed++;
          return;
        }
        if (type === "DELETED") this.cache.delete(key);
        else if (type === "ADDED" || type === "MODIFIED") {
          const value = this.options.project(object);
          if (value === undefined) {
            this.malformed++;
            return;
          }
          this.cache.set(key, value);
        } else {
          this.malformed++;
          return;
        }
        this.resourceVersion = version;
        progressed = true;
        this.lastError = null;
      };
      const done = (error: unknown) => {
        signal.removeEventListener("abort", abort);
        if (expired) return reject(new Expired("410 Gone"));
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
