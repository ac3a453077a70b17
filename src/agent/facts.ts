/**
 * The facts loop: with an API server, the leader observes its cluster's facts and reports
 * them to its hub (POST /v1/agent/facts), which renders the cluster's manifests with them
 * (README, "Intents"): the Kubernetes version (GET /version), the zones its nodes carry
 * (label topology.kubernetes.io/zone) and the sum of its nodes' allocatable cpu and memory.
 * Whether the network plugin enforces NetworkPolicy cannot be observed: not reported.
 *
 * Sent when they change, and again every `resendMs` (a hub restored from a backup catches
 * up); observed every `intervalMs`.
 */
import { ApiException, CoreV1Api, VersionApi } from "@kubernetes/client-node";
import type { ReportedFacts } from "../api/intents.js";
import { parseQuantity, type Quantity } from "../cel/kubernetes/quantity.js";
import { canonicalJson } from "../canonical/index.js";
import { call } from "../client/http.js";
import { describeFailure, withSignal, type KubeAccess } from "../kube/index.js";
import type { AgentCredentials } from "./identity/credentials.js";
import { sleep, type LoopError, type LoopErrors, type Plugin } from "./plugin.js";

export const ZONE_LABEL = "topology.kubernetes.io/zone";
const TIMEOUT_MS = 10_000;
const PAGE = 500;

export interface FactsHealth {
  readonly observed: ReportedFacts | null;
  readonly observedAt: string | null;
  readonly reportedAt: string | null;
}

export interface FactsPluginOptions {
  readonly kube: KubeAccess;
  readonly credentials: AgentCredentials;
  readonly errors: LoopErrors;
  readonly leader: () => boolean;
  readonly now: () => Date;
  /** How often facts are observed (default 60 s). */
  readonly intervalMs?: number;
  /** How often unchanged facts are sent again (default 10 minutes). */
  readonly resendMs?: number;
}

/** A sum of quantities as Kubernetes writes one: whole units, else milli-units (cpu), rounded down. */
function formatQuantity(q: Quantity): string {
  if (q.denominator === 1n) return String(q.numerator);
  return `${(q.numerator * 1000n) / q.denominator}m`;
}

export class FactsPlugin implements Plugin {
  readonly name = "facts";
  private readonly version: VersionApi;
  private readonly core: CoreV1Api;
  private observed: { facts: ReportedFacts; at: Date } | undefined;
  private reported: { key: string; at: Date } | undefined;

  constructor(private readonly options: FactsPluginOptions) {
    this.version = options.kube.config.makeApiClient(VersionApi);
    this.core = options.kube.config.makeApiClient(CoreV1Api);
  }

  /** What the API server says of the cluster now. */
  async observe(): Promise<ReportedFacts> {
    const info = await this.version.getCode(withSignal(AbortSignal.timeout(TIMEOUT_MS)));
    const zones = new Set<string>();
    let cpu = parseQuantity("0");
    let memory = parseQuantity("0");
    let nodes = 0;
    let next: string | undefined;
    do {
      const page = await this.core.listNode({ limit: PAGE, ...(next === undefined ? {} : { _continue: next }) }, withSignal(AbortSignal.timeout(TIMEOUT_MS)));
      for (const node of page.items) {
        nodes++;
        const zone = node.metadata?.labels?.[ZONE_LABEL];
        if (zone !== undefined && zone !== "") zones.add(zone);
        const allocatable = node.status?.allocatable ?? {};
        try {
          if (allocatable.cpu !== undefined) cpu = cpu.add(parseQuantity(allocatable.cpu));
          if (allocatable.memory !== undefined) memory = memory.add(parseQuantity(allocatable.memory));
        } catch {
          // A quantity the API server would not have stored: that node's capacity is not counted.
        }
      }
      next = page.metadata?._continue || undefined;
    } while (next !== undefined);
    return {
      kubernetesVersion: info.gitVersion,
      zones: [...zones].sort().slice(0, 256),
      capacity: nodes === 0 ? {} : { cpu: formatQuantity(cpu), memory: formatQuantity(memory) },
      nodes,
    };
  }

  async run(signal: AbortSignal): Promise<void> {
    const { credentials, errors, leader, now, intervalMs = 60_000, resendMs = 600_000 } = this.options;
    while (!signal.aborted) {
      if (credentials.enrolled && leader()) {
        try {
          const facts = await this.observe();
          this.observed = { facts, at: now() };
          const key = canonicalJson(facts);
          if (this.reported?.key !== key || now().getTime() - this.reported.at.getTime() >= resendMs) {
            await call(credentials.hub(), "POST", "/v1/agent/facts", facts, { signal, timeoutMs: 10_000 });
            this.reported = { key, at: now() };
          }
          errors.succeeded("facts");
        } catch (error) {
          if (signal.aborted) return;
          errors.failed("facts", "observing or reporting the cluster's facts failed", error instanceof ApiException ? new Error(describeFailure(error)) : error);
        }
      }
      await sleep(this.observed === undefined ? Math.min(intervalMs, 2000) : intervalMs, signal);
    }
  }

  lastError(): LoopError | undefined {
    return this.options.errors.of(this.name);
  }

  health(): FactsHealth {
    return { observed: this.observed?.facts ?? null, observedAt: this.observed?.at.toISOString() ?? null, reportedAt: this.reported?.at.toISOString() ?? null };
  }
}
