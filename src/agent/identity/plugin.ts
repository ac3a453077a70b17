/**
 * The identity loop: enrol once with a join token (the key is made here and never leaves),
 * then renew the certificate two thirds of the way through its life, or, after a
 * partition, within the hub's grace window.
 */
import { expired, renewalDue } from "../../identity/credentials.js";
import type { ActiveBundle } from "../bundle/active.js";
import type { Log } from "../log.js";
import { Backoff, sleep, type LoopError, type LoopErrors, type Plugin } from "../plugin.js";
import type { AgentCredentials } from "./credentials.js";
import { HubError } from "../../client/http.js";

export interface IdentityHealth {
  readonly enrolled: boolean;
  readonly certificateNotAfter: string | null;
}

export interface IdentityPluginOptions {
  readonly hubUrl: string;
  /**
   * More hubs to renew with, in order, when the ones before cannot be reached (its regional
   * hub down: the global hub). Enrolment goes to `hubUrl` only: the join token is its.
   */
  readonly fallbackUrls?: readonly string[];
  readonly cluster: string;
  /** The federation CA and a join token, for the first enrolment. */
  readonly caPem?: string;
  readonly joinToken?: string;
  readonly credentials: AgentCredentials;
  /** Loaded from disk once enrolled: its key is pinned only then. */
  readonly bundle: ActiveBundle;
  readonly errors: LoopErrors;
  readonly log: Log;
  readonly now: () => Date;
}

export class IdentityPlugin implements Plugin {
  readonly name = "identity";

  constructor(private readonly options: IdentityPluginOptions) {}

  async run(signal: AbortSignal): Promise<void> {
    const { hubUrl, cluster, caPem, joinToken, credentials, bundle, errors, log, now } = this.options;
    // Enrolment and renewal need X.509; a restarted agent loads it after it is serving.
    const { enroll, renew } = await import("../../identity/enrollment.js");
    const backoff = new Backoff(1000, 30_000);
    while (!signal.aborted) {
      try {
        const held = credentials.current;
        if (held === undefined) {
          if (joinToken === undefined || caPem === undefined) {
            errors.waiting("identity", "not enrolled: give a join token and the federation CA");
            await sleep(5000, signal);
            continue;
          }
          const enrolled = await enroll({ url: hubUrl, caPem }, cluster, joinToken);
          credentials.replace(enrolled);
          log.info("enrolled", { spiffeId: enrolled.spiffeId, notAfter: enrolled.notAfter });
          bundle.loadFromDisk();
        } else if (renewalDue(held, now())) {
          // A new key at each renewal while the certificate is valid (the hub renews an
          // expired one only for the key it was issued to).
          const { value: renewed, url } = await firstReachable([hubUrl, ...(this.options.fallbackUrls ?? [])], (at) => renew(at, held, { rotateKey: !expired(held, now()), serverCaPem: credentials.serverCaPem() }));
          credentials.replace(renewed);
          log.info("renewed the certificate", { notAfter: renewed.notAfter, ...(url === hubUrl ? {} : { hub: url }) });
        }
        errors.succeeded("identity");
        backoff.reset();
        const current = credentials.current;
        const until = current === undefined ? 5000 : Math.max(1000, Date.parse(current.renewAfter) - now().getTime());
        await sleep(Math.min(until, 60_000), signal);
      } catch (error) {
        const current = credentials.current;
        const what = current === undefined ? "enrolment failed" : expired(current, now()) ? "renewal of the expired certificate failed" : "renewal failed";
        errors.failed("identity", what, error);
        await sleep(backoff.next(), signal);
      }
    }
  }

  lastError(): LoopError | undefined {
    return this.options.errors.of(this.name);
  }

  health(): IdentityHealth {
    const current = this.options.credentials.current;
    return { enrolled: current !== undefined, certificateNotAfter: current?.notAfter ?? null };
  }
}

/**
 * `work` at the first of `urls` that answers: the next is tried only when one cannot be
 * reached or fails on its side (5xx). A refusal (4xx: revoked, out of grace) is the
 * federation's answer, not the hub's absence, and is not asked again elsewhere.
 */
export async function firstReachable<T>(urls: readonly string[], work: (url: string) => Promise<T>): Promise<{ value: T; url: string }> {
  let first: unknown;
  for (const url of urls) {
    try {
      return { value: await work(url), url };
    } catch (error) {
      if (error instanceof HubError && error.status < 500) throw error;
      first ??= error;
    }
  }
  throw first;
}
