/**
 * The bundle loop: long-polls the hub for this cluster's bundle with an ETag (the version
 * held), and offers what arrives to the active bundle, which verifies, persists and swaps
 * it in. The agent is stale while it holds no bundle, holds an expired one, or has not
 * heard from its hub for a poll and half a minute.
 *
 * Bundles may come from an ordered list of sources (its regional hub, the global hub, a
 * mirror): the first is asked; one that cannot be reached or fails makes the loop try the
 * next at once; while on a later source, polls are short and the first is tried again every
 * `retryFirstMs`. Whatever the source, a bundle is verified the same way (signature with the
 * pinned key, cluster, version, expiry): a mirror can withhold, never forge.
 */
import { decodeBundle, MAX_BUNDLE_BYTES } from "../../bundle/index.js";
import { MAX_ROOT_BYTES, rootExpired, TrustError } from "../../trust/index.js";
import { call, HubError, ResponseTooLargeError } from "../../client/http.js";
import type { AgentCredentials } from "../identity/credentials.js";
import { Backoff, sleep, type LoopErrors, type LoopError, type Plugin } from "../plugin.js";
import type { ActiveBundle, Refusal } from "./active.js";
import type { RootSource } from "./roots.js";

export interface BundleHealth {
  readonly bundleVersion: number | null;
  readonly bundleHash: string | null;
  readonly bundleSource: "disk" | "hub" | null;
  /** The source the loop asks now (the first of `sources`, or the one it fell back to). */
  readonly bundleHub: string | null;
  readonly bundleExpires: string | null;
  readonly lastSync: string | null;
  readonly stale: boolean;
  readonly lastRefusal: Refusal | null;
  /** The newest bundle version this agent verified (bundles on its disk older than it are refused), and whether its hub confirmed it since the agent started. */
  readonly highWater: { readonly version: number | null; readonly confirmed: boolean };
}

export interface BundlePluginOptions {
  readonly credentials: AgentCredentials;
  readonly bundle: ActiveBundle;
  readonly errors: LoopErrors;
  /** How long a long poll waits at the hub. */
  readonly pollWaitSeconds: number;
  /** Where bundles come from, in order (default: the hub the agent enrolled with). */
  readonly sources?: readonly string[];
  /** While on a later source, how often the first is tried again (default 10 s). */
  readonly retryFirstMs?: number;
  readonly now: () => Date;
}

export class BundlePlugin implements Plugin {
  readonly name = "bundle";
  /** When the hub last answered a poll. */
  private lastSync: Date | undefined;
  /** The source asked now (an index in `sources`), and since when it is a fallback. */
  private source = 0;
  private fellBackAt = 0;

  constructor(private readonly options: BundlePluginOptions) {}

  async run(signal: AbortSignal): Promise<void> {
    const { credentials, bundle, errors, pollWaitSeconds, now } = this.options;
    const backoff = new Backoff(500, 15_000);
    // A hub that answers at once with a bundle the agent refuses (an older one, after the
    // hub was restored from a backup; a forged one) is asked again later and later.
    const refusedBackoff = new Backoff(1000, 60_000);
    const sources = this.options.sources ?? [];
    const retryFirstMs = this.options.retryFirstMs ?? 10_000;
    let failedInARow = 0;
    while (!signal.aborted) {
      if (!credentials.enrolled) {
        await sleep(500, signal);
        continue;
      }
      if (this.source > 0 && now().getTime() - this.fellBackAt >= retryFirstMs) this.source = 0;
      // On a fallback, short polls: the first source is asked again soon.
      const wait = this.source > 0 ? Math.min(pollWaitSeconds, 5) : pollWaitSeconds;
      try {
        const held = bundle.current?.metadata.version;
        const response = await call<Buffer>(credentials.hub(sources[this.source]), "GET", `/v1/agent/bundle?wait=${wait}`, undefined, {
          raw: true,
          timeoutMs: (wait + 15) * 1000,
          signal,
          headers: held === undefined ? {} : { "if-none-match": `"${held}"` },
          binary: true,
          maxBytes: MAX_BUNDLE_BYTES,
        });
        this.lastSync = now();
        backoff.reset();
        failedInARow = 0;
        // The hub answered: whatever said it was unreachable is over.
        errors.succeeded("bundle");
        if (response.status === 304) bundle.confirmedByHub();
        if (response.status === 200 && !(await this.rootFor(response.body))) {
          const refusal = bundle.lastRefusal;
          errors.failed("bundle", `refused the bundle the hub sent: its root does not verify (${refusal?.problem ?? "malformed"})`, refusal?.message ?? "");
          await sleep(refusedBackoff.next(), signal);
          continue;
        }
        if (response.status === 200 && bundle.offer(response.body, now()) === undefined) {
          const refusal = bundle.lastRefusal;
          errors.failed("bundle", `refused the bundle the hub sent (${refusal?.problem ?? "malformed"})`, refusal?.message ?? "");
          await sleep(refusedBackoff.next(), signal);
          continue;
        }
        refusedBackoff.reset();
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ResponseTooLargeError) {
          // Not a bundle of its hub's: asked again later and later, as for a bundle it refuses.
          errors.failed("bundle", `refused the hub's answer: larger than a bundle may be (${MAX_BUNDLE_BYTES} bytes)`, error);
          await sleep(refusedBackoff.next(), signal);
          continue;
        }
        const where = sources.length > 1 ? ` (${sources[this.source]})` : "";
        errors.failed("bundle", error instanceof HubError ? `the hub${where} refused the bundle request (${error.status})` : `the hub${where} is unreachable`, error);
        if (sources.length > 1 && ++failedInARow < sources.length) {
          // The next source at once; after a whole round of failures, the backoff.
          this.source = (this.source + 1) % sources.length;
          if (this.source > 0) this.fellBackAt = now().getTime();
          continue;
        }
        failedInARow = 0;
        this.source = sources.length > 1 ? (this.source + 1) % sources.length : 0;
        if (this.source > 0) this.fellBackAt = now().getTime();
        await sleep(backoff.next(), signal);
      }
    }
  }

  /**
   * A bundle that names a newer root than the agent holds: the roots in between, fetched
   * from the same source and each verified against the one before, first. So too when the
   * roots on disk do not verify (degraded: up to where the agent had come) or the newest
   * held has expired (the source's newest). False (the refusal recorded, the bundle held
   * kept) when they do not verify or cannot be fetched.
   */
  private async rootFor(bytes: Buffer): Promise<boolean> {
    const { credentials, bundle, now } = this.options;
    let wanted: number | undefined;
    try {
      wanted = decodeBundle(bytes).envelope.signed.rootVersion;
    } catch {
      return true; // offer() refuses it, with its reason
    }
    const root = credentials.root();
    const expired = root !== undefined && rootExpired(root, now());
    const degraded = credentials.degraded() !== undefined;
    if (!expired && !degraded && (wanted === undefined || wanted <= credentials.rootVersion())) return true;
    const url = (this.options.sources ?? [])[this.source];
    try {
      await credentials.catchUpRoot(expired ? "newest" : (wanted ?? 0), rootSource(credentials, url));
      return true;
    } catch (error) {
      const problem = error instanceof TrustError ? `root-${error.problem}` : "root-unavailable";
      bundle.refuse(problem, `${wanted === undefined ? "the bundle's root" : `the bundle names root version ${wanted}`}: ${error instanceof Error ? error.message : String(error)}`);
      return false;
    }
  }

  lastError(): LoopError | undefined {
    return this.options.errors.of(this.name);
  }

  health(): BundleHealth {
    const { bundle, pollWaitSeconds, now } = this.options;
    const current = bundle.current;
    const lastSync = this.lastSync;
    const stale = current === undefined || bundle.expired(now()) || lastSync === undefined || now().getTime() - lastSync.getTime() > (pollWaitSeconds + 30) * 1000;
    return {
      bundleVersion: current?.metadata.version ?? null,
      bundleHash: current?.metadata.targetHash ?? null,
      bundleSource: current?.source ?? null,
      bundleHub: (this.options.sources ?? [])[this.source] ?? null,
      bundleExpires: current?.metadata.expires ?? null,
      lastSync: lastSync?.toISOString() ?? null,
      stale,
      lastRefusal: bundle.lastRefusal ?? null,
      highWater: bundle.highWaterMark(),
    };
  }
}

/** Root versions from one source (`GET /v1/trust/roots?after=N`, a page of at most 50). */
export function rootSource(credentials: AgentCredentials, url: string | undefined): RootSource {
  return async (after) => {
    const response = await call<{ items?: unknown }>(credentials.hub(url), "GET", `/v1/trust/roots?after=${after}`, undefined, { timeoutMs: 15_000, maxBytes: 50 * MAX_ROOT_BYTES });
    if (!Array.isArray(response.body.items)) throw new TrustError("malformed", "the source's answer lists no roots");
    return response.body.items as unknown[];
  };
}
