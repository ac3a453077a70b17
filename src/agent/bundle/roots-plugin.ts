/**
 * The roots loop: every `intervalMs` (default 5 min) the agent asks EVERY bundle source it
 * has (its regional hub, the global hub, a mirror) for the roots after the newest it holds,
 * and verifies each against its predecessor (roots.ts). A bundle source that withholds a
 * newer root (a compromised regional hub hiding its own revocation) therefore hides it only
 * until the next check at another source: from then on the agent refuses what the revoked
 * key signs, whichever source offers it. A root that does not verify is refused whatever
 * the source (it is signed by the previous root's keys, or it is nothing). The first check
 * is made soon after enrolment.
 */
import { UnreachableError } from "../../client/http.js";
import type { AgentCredentials } from "../identity/credentials.js";
import { sleep, type LoopError, type LoopErrors, type Plugin } from "../plugin.js";
import { rootSource } from "./plugin.js";

export const DEFAULT_ROOT_CHECK_MS = 5 * 60 * 1000;

export interface RootsHealth {
  /** The newest root verified, its expiry, and when every source was last asked. */
  readonly version: number | null;
  readonly expires: string | null;
  readonly checkedAt: string | null;
  /** Why new bundles are refused whatever they are (the roots on disk do not verify), or null. */
  readonly degraded: string | null;
}

export interface RootsPluginOptions {
  readonly credentials: AgentCredentials;
  readonly errors: LoopErrors;
  readonly sources: readonly string[];
  readonly intervalMs?: number;
  readonly now: () => Date;
}

export class RootsPlugin implements Plugin {
  readonly name = "roots";
  private checkedAt: Date | undefined;

  constructor(private readonly options: RootsPluginOptions) {}

  async run(signal: AbortSignal): Promise<void> {
    const { credentials, sources } = this.options;
    const interval = this.options.intervalMs ?? DEFAULT_ROOT_CHECK_MS;
    // A little jitter, so that many agents do not ask their hubs in step.
    await sleep(Math.min(interval, 1000 + Math.floor(Math.random() * 1000)), signal);
    while (!signal.aborted) {
      if (credentials.enrolled && credentials.root() !== undefined) await this.check(sources);
      await sleep(interval, signal);
    }
  }

  /** Asks each source in turn; a failing source is reported, the others still asked. */
  async check(sources: readonly string[]): Promise<void> {
    const { credentials, errors, now } = this.options;
    const failures: { url: string; error: unknown }[] = [];
    for (const url of sources) {
      try {
        await credentials.catchUpRoot("newest", rootSource(credentials, url));
      } catch (error) {
        failures.push({ url, error });
      }
    }
    this.checkedAt = now();
    if (failures.length === 0) {
      errors.succeeded("roots");
      return;
    }
    const what = `could not check the newest root at ${failures.length} of ${sources.length} source(s) (${failures.map((f) => f.url).join(", ")})`;
    // Sources that could not be reached are a fact about them, forgotten when any loop reaches its hub (plugin.ts).
    const unreachable = failures.every((f) => f.error instanceof UnreachableError);
    errors.failed("roots", what, unreachable ? failures[0]!.error : failures.map((f) => `${f.url}: ${f.error instanceof Error ? f.error.message : String(f.error)}`).join("; "));
  }

  lastError(): LoopError | undefined {
    return this.options.errors.of(this.name);
  }

  health(): RootsHealth {
    const root = this.options.credentials.root();
    return { version: root?.version ?? null, expires: root?.expires ?? null, checkedAt: this.checkedAt?.toISOString() ?? null, degraded: this.options.credentials.degraded()?.reason ?? null };
  }
}
