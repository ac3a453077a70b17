/**
 * The bundle loop: long-polls the hub for this cluster's bundle with an ETag (the version
 * held), and offers what arrives to the active bundle, which verifies, persists and swaps
 * it in. The agent is stale while it holds no bundle, holds an expired one, or has not
 * heard from its hub for a poll and half a minute.
 */
import { decodeBundle, MAX_BUNDLE_BYTES } from "../../bundle/index.js";
import { MAX_ROOT_BYTES, TrustError } from "../../trust/index.js";
import { call, HubError, ResponseTooLargeError } from "../../client/http.js";
import type { AgentCredentials } from "../identity/credentials.js";
import { Backoff, sleep, type LoopErrors, type LoopError, type Plugin } from "../plugin.js";
import type { ActiveBundle, Refusal } from "./active.js";

export interface BundleHealth {
  readonly bundleVersion: number | null;
  readonly bundleHash: string | null;
  readonly bundleSource: "disk" | "hub" | null;
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
  readonly now: () => Date;
}

export class BundlePlugin implements Plugin {
  readonly name = "bundle";
  /** When the hub last answered a poll. */
  private lastSync: Date | undefined;

  constructor(private readonly options: BundlePluginOptions) {}

  async run(signal: AbortSignal): Promise<void> {
    const { credentials, bundle, errors, pollWaitSeconds, now } = this.options;
    const backoff = new Backoff(500, 15_000);
    // A hub that answers at once with a bundle the agent refuses (an older one, after the
    // hub was restored from a backup; a forged one) is asked again later and later.
    const refusedBackoff = new Backoff(1000, 60_000);
    while (!signal.aborted) {
      if (!credentials.enrolled) {
        await sleep(500, signal);
        continue;
      }
      try {
        const held = bundle.current?.metadata.version;
        const response = await call<Buffer>(credentials.hub(), "GET", `/v1/agent/bundle?wait=${pollWaitSeconds}`, undefined, {
          raw: true,
          timeoutMs: (pollWaitSeconds + 15) * 1000,
          signal,
          headers: held === undefined ? {} : { "if-none-match": `"${held}"` },
          binary: true,
          maxBytes: MAX_BUNDLE_BYTES,
        });
        this.lastSync = now();
        backoff.reset();
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
        errors.failed("bundle", error instanceof HubError ? `the hub refused the bundle request (${error.status})` : "the hub is unreachable", error);
        await sleep(backoff.next(), signal);
      }
    }
  }

  /**
   * A bundle that names a newer root than the agent holds: the roots in between, fetched
   * from the same source and each verified against the one before, first. False (the
   * refusal recorded, the bundle held kept) when they do not verify or cannot be fetched.
   */
  private async rootFor(bytes: Buffer): Promise<boolean> {
    const { credentials, bundle } = this.options;
    let wanted: number | undefined;
    try {
      wanted = decodeBundle(bytes).envelope.signed.rootVersion;
    } catch {
      return true; // offer() refuses it, with its reason
    }
    if (wanted === undefined || wanted <= credentials.rootVersion()) return true;
    try {
      await credentials.catchUpRoot(wanted, async (after) => {
        const response = await call<{ items?: unknown }>(credentials.hub(), "GET", `/v1/trust/roots?after=${after}`, undefined, { timeoutMs: 15_000, maxBytes: 50 * MAX_ROOT_BYTES });
        if (!Array.isArray(response.body.items)) throw new TrustError("malformed", "the source's answer lists no roots");
        return response.body.items as unknown[];
      });
      return true;
    } catch (error) {
      const problem = error instanceof TrustError ? `root-${error.problem}` : "root-unavailable";
      bundle.refuse(problem, `the bundle names root version ${wanted}: ${error instanceof Error ? error.message : String(error)}`);
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
      bundleExpires: current?.metadata.expires ?? null,
      lastSync: lastSync?.toISOString() ?? null,
      stale,
      lastRefusal: bundle.lastRefusal ?? null,
      highWater: bundle.highWaterMark(),
    };
  }
}
