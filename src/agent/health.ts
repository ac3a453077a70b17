/**
 * The agent's health, as /healthz shows it and the status loop reports it: what each loop
 * holds (identity, bundle, decision logs), each loop's error since it last succeeded, and
 * what the webhook decided and how fast.
 */
import type { BundleHealth, BundlePlugin } from "./bundle/plugin.js";
import type { IdentityPlugin } from "./identity/plugin.js";
import type { RootsHealth, RootsPlugin } from "./bundle/roots-plugin.js";
import type { BundleCounts as BundleCountsReport } from "../api/rollouts.js";
import type { BundleCounts } from "./bundle-counts.js";
import type { Latencies } from "./latencies.js";
import type { DecisionLogPlugin } from "./logs/plugin.js";
import type { KubeHealth } from "./namespaces.js";
import type { AgentLoop, Plugin } from "./plugin.js";
import type { ScanHealth } from "./scan/scanner.js";
import type { Counters } from "./webhook.js";

export interface AgentHealth extends BundleHealth {
  readonly cluster: string;
  readonly enrolled: boolean;
  readonly certificateNotAfter: string | null;
  /** The newest root verified, when every source was last asked for a newer one, and why new bundles are refused if the roots on disk do not verify. */
  readonly roots: RootsHealth;
  /** The latest of `errors`. */
  readonly lastError: string | null;
  /** Each loop's error since it last succeeded. */
  readonly errors: Readonly<Partial<Record<AgentLoop, string>>>;
  readonly decisions: Counters;
  readonly latencyMicros: { p50: number; p90: number; p99: number; samples: number };
  /** Decisions per recent bundle version (a rollout's gates judge a bundle by them). */
  readonly byBundle: BundleCountsReport;
  readonly logs: { buffered: number; segments: number; dropped: number; droppedUnreported: number };
  /** The Kubernetes API server and the namespace cache, or that there is none. */
  readonly kube: KubeHealth;
  /** The background scan, or null without an API server. */
  readonly scan: ScanHealth | null;
}

export interface HealthSources {
  readonly cluster: string;
  readonly identity: IdentityPlugin;
  readonly bundle: BundlePlugin;
  readonly roots: RootsPlugin;
  readonly logs: DecisionLogPlugin;
  /** Every loop, for its last error. */
  readonly plugins: readonly Plugin[];
  readonly counters: Counters;
  readonly latencies: Latencies;
  readonly kube: () => KubeHealth;
  readonly byBundle: BundleCounts;
  readonly scan: () => ScanHealth | null;
}

export function agentHealth(sources: HealthSources): AgentHealth {
  const { lastRefusal, ...bundle } = sources.bundle.health();
  const failing = sources.plugins.flatMap((plugin) => {
    const error = plugin.lastError();
    return error === undefined ? [] : [{ loop: plugin.name, ...error }];
  });
  const latest = failing.reduce<(typeof failing)[number] | undefined>((last, error) => (last === undefined || error.at > last.at ? error : last), undefined);
  return {
    cluster: sources.cluster,
    ...bundle,
    ...sources.identity.health(),
    roots: sources.roots.health(),
    lastError: latest?.message ?? null,
    errors: Object.fromEntries(failing.map((error) => [error.loop, error.message])),
    lastRefusal,
    decisions: { ...sources.counters },
    latencyMicros: sources.latencies.percentiles(),
    byBundle: sources.byBundle.report(),
    logs: sources.logs.health(),
    kube: sources.kube(),
    scan: sources.scan(),
  };
}
