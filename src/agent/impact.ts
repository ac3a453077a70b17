/**
 * The impact loop: long-polls the hub for impact requests (a candidate effective set of a
 * change), evaluates the agent's window of recorded requests against the set it enforces and
 * the candidate (src/decision/impact.ts), and answers with the counts. The recorded requests
 * never leave the agent; the answer holds counts and a few examples named by kind, namespace
 * and name. Evaluation yields to the webhook every few hundred requests.
 */
import { call } from "../client/http.js";
import type { ImpactAnswer, ImpactRequest } from "../api/impact.js";
import { sha256Hash } from "../bundle/index.js";
import { ImpactCounter } from "../decision/impact.js";
import { effectivePolicySetFromBytes } from "../layering/effective.js";
import type { ActiveBundle } from "./bundle/active.js";
import type { AgentCredentials } from "./identity/credentials.js";
import { Backoff, sleep, type LoopError, type LoopErrors, type Plugin } from "./plugin.js";
import type { AdmissionWindow } from "./window.js";

export interface ImpactPluginOptions {
  readonly credentials: AgentCredentials;
  readonly errors: LoopErrors;
  readonly bundle: ActiveBundle;
  readonly window: AdmissionWindow;
  readonly pollWaitSeconds: number;
  readonly now: () => Date;
}

/** Reviews evaluated between two yields to the event loop. */
const SLICE = 200;

export class ImpactPlugin implements Plugin {
  readonly name = "impact";

  constructor(private readonly options: ImpactPluginOptions) {}

  async run(signal: AbortSignal): Promise<void> {
    const { credentials, errors, pollWaitSeconds } = this.options;
    const backoff = new Backoff(1_000, 30_000);
    while (!signal.aborted) {
      if (!credentials.enrolled) {
        await sleep(500, signal);
        continue;
      }
      try {
        const response = await call<ImpactRequest | "">(credentials.hub(), "GET", `/v1/agent/impact?wait=${pollWaitSeconds}`, undefined, { signal, timeoutMs: (pollWaitSeconds + 10) * 1000 });
        if (response.status === 200 && typeof response.body === "object") {
          const answer = await this.evaluate(response.body, signal);
          await call(credentials.hub(), "POST", `/v1/agent/impact/${response.body.id}`, answer, { signal, timeoutMs: 30_000 });
        }
        errors.succeeded("impact");
        backoff.reset();
      } catch (error) {
        if (signal.aborted) return;
        errors.failed("impact", "impact request failed", error);
        await sleep(backoff.next(), signal);
      }
    }
  }

  /** The candidate against the enforced set, over the window; a candidate whose bytes do not match its hash is refused. */
  private async evaluate(request: ImpactRequest, signal: AbortSignal): Promise<ImpactAnswer> {
    const started = performance.now();
    const bytes = Buffer.from(request.candidate, "base64");
    if (sha256Hash(bytes) !== request.candidateHash) throw new Error(`impact request ${request.id}: the candidate's bytes do not match its hash`);
    const candidate = effectivePolicySetFromBytes(bytes);
    const held = this.options.bundle.current;
    if (held === undefined) throw new Error(`impact request ${request.id}: this agent holds no bundle yet, nothing to compare the candidate with`);
    const now = this.options.now().getTime();
    const counter = new ImpactCounter(held.set, candidate, now);
    let n = 0;
    for (const review of this.options.window.reviews(now)) {
      counter.add(review);
      if (++n % SLICE === 0) {
        await new Promise((resolve) => setImmediate(resolve));
        if (signal.aborted) throw new Error("stopped");
      }
    }
    const impact = counter.impact;
    return {
      currentHash: held.set.hash,
      requests: impact.requests,
      newlyDenied: impact.newlyDenied,
      newlyAllowed: impact.newlyAllowed,
      newlyWarned: impact.newlyWarned,
      undecidable: impact.undecidable,
      byRule: impact.byRule.slice(0, 1000).map((r) => ({
        ...r,
        policy: r.policy.slice(0, 253),
        rule: r.rule.slice(0, 253),
        examples: r.examples.map((e) => ({ kind: e.kind.slice(0, 253), namespace: e.namespace?.slice(0, 253) ?? null, name: e.name?.slice(0, 253) ?? null, operation: e.operation.slice(0, 16) })),
      })),
      tookMs: Math.round((performance.now() - started) * 10) / 10,
    };
  }

  lastError(): LoopError | undefined {
    return this.options.errors.of(this.name);
  }
}
