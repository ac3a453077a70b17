/**
 * startAgent: a cluster's agent. Its loops are plugins, each small and independent, like
 * OPA's, with one lifecycle (plugin.ts):
 * - identity: enrol once with a join token, then keep the certificate fresh (identity/);
 * - bundle: long-poll the hub for this cluster's bundle, verify it, persist it, swap it in (bundle/);
 * - logs: flush decision logs to disk every second, upload them in batches (logs/);
 * - status: report every few seconds what is enforced, how fresh, how fast (status.ts);
 * - namespaces: with a Kubernetes API server, keep its Namespaces in memory for every
 *   decision (namespaces.ts, over src/kube/); /readyz waits for their first list;
 * - scan: with an API server, judge what already runs against the bundle, write policy
 *   reports, and keep the compliance summary the status loop sends (scan/);
 * - intents: with an API server, the leader applies the manifests its bundle's intents make
 *   and reports each result (intents.ts, over apply/); facts: it observes and reports the
 *   cluster's facts (facts.ts).
 * Beside them the webhook decides AdmissionReviews from the active bundle (webhook.ts).
 *
 * What the loops share is passed to them as objects: the credentials, the active bundle,
 * the decision log, and the record of each loop's last error. This file builds them,
 * starts and stops the plugins and the webhook, and assembles health (health.ts).
 *
 * At boot the agent enforces the bundle on its disk before it has reached the hub; with
 * the hub unreachable it keeps enforcing the last good bundle, even past its expiry, and
 * reports itself stale. It never deletes or loosens policy because the hub is gone.
 */
import { join } from "node:path";
import { HighWaterMark } from "./bundle/high-water.js";
import { ActiveBundle } from "./bundle/active.js";
import { BundlePlugin } from "./bundle/plugin.js";
import { RootsPlugin } from "./bundle/roots-plugin.js";
import { webhookCertificate } from "./certificate.js";
import { BundleCounts } from "./bundle-counts.js";
import { ImpactPlugin } from "./impact.js";
import { AdmissionWindow, DEFAULT_WINDOW_OPTIONS, type WindowOptions } from "./window.js";
import { agentHealth, type AgentHealth } from "./health.js";
import { AgentCredentials } from "./identity/credentials.js";
import { IdentityPlugin } from "./identity/plugin.js";
import { Latencies } from "./latencies.js";
import { silentLog, type Log } from "./log.js";
import { DecisionLog, DEFAULT_LOG_OPTIONS, type LogOptions } from "./logs/buffer.js";
import { DecisionLogPlugin } from "./logs/plugin.js";
import { NamespacesPlugin, NO_KUBE_MESSAGE, noKubeHealth } from "./namespaces.js";
import { LoopErrors, type Plugin } from "./plugin.js";
import type { KubeAccess } from "../kube/index.js";
import { ScanPlugin } from "./scan/plugin.js";
import type { SecretName } from "../kube/identity-secret.js";
import { IdentitySecretSync } from "./identity/secret.js";
import { LeaderElection } from "../kube/lease.js";
import { WebhookRegistration, webhookConfiguration, webhookRules } from "../kube/webhook-config.js";
import { sleep } from "./plugin.js";
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { StatusPlugin } from "./status.js";
import { IntentsPlugin } from "./intents.js";
import { DriftReporter, DriftWatcher } from "./drift/index.js";
import { FactsPlugin } from "./facts.js";
import type { Manifest } from "../intents/index.js";
import { startWebhook, type Counters } from "./webhook.js";

export type { AgentHealth } from "./health.js";
export { jsonLog } from "./log.js";

export interface AgentOptions {
  readonly dataDir: string;
  readonly hubUrl: string;
  /**
   * More bundle sources, tried in order after `hubUrl` when it cannot be reached (the global
   * hub behind a regional one, a mirror): bundles are verified the same way from any of them.
   */
  readonly fallbackUrls?: readonly string[];
  /** The federation CA, for the first enrolment (afterwards the agent keeps its own copy). */
  readonly caPem?: string;
  readonly cluster: string;
  readonly joinToken?: string;
  readonly webhookHost?: string;
  /** 0 picks a free port. */
  readonly webhookPort?: number;
  /** Extra DNS names for the webhook's serving certificate. */
  readonly webhookNames?: readonly string[];
  /** The CA of the API server's client certificate: the webhook records (or requires) callers it authenticates. */
  readonly callerCaPem?: string;
  /** Refuse reviews from callers without a certificate of `callerCaPem`. */
  readonly requireAuthenticatedCaller?: boolean;
  /** How long a long poll waits at the hub (default 30 s). */
  readonly pollWaitSeconds?: number;
  /** How often the newest root is asked of every bundle source (default 5 min: bundle/roots-plugin.ts). */
  readonly rootCheckIntervalMs?: number;
  readonly statusIntervalMs?: number;
  readonly logUploadIntervalMs?: number;
  readonly logs?: Partial<LogOptions>;
  /** The cluster's API server (src/kube/config.ts); without one the agent knows no namespace labels. */
  readonly kube?: KubeAccess;
  /** With an API server: how often the background scan judges everything again (default 10 minutes). */
  readonly scanPeriodMs?: number;
  /** How long after a change the scan writes its reports (default 5 s). */
  readonly scanReportDelayMs?: number;
  /** With `kube`: the Secret that keeps the identity too, so that a rescheduled pod resumes with it. */
  readonly identitySecret?: SecretName;
  /**
   * With `kube`: the Lease that chooses the one replica doing the work done once per
   * cluster (status reports; scans and reports): the others serve the webhook only.
   */
  readonly lease?: { readonly namespace: string; readonly name: string };
  /**
   * With `kube`: keep the ValidatingWebhookConfiguration `polity` (by the leader): caBundle
   * the webhook's CA, rules for what the bundle's policies match, the API server reaching
   * the webhook through this Service.
   */
  readonly registerWebhook?: { readonly namespace: string; readonly name: string };
  /** How long a decision waits to read a namespace its cache does not hold (default 2 s). */
  readonly namespaceFetchTimeoutMs?: number;
  /** Bounds of the window of recorded admission requests (for the impact of a change). */
  readonly window?: Partial<WindowOptions>;
  /** With `kube`: apply the manifests of the bundle's intents (default true). */
  readonly applyIntents?: boolean;
  /** With `kube`: how often the cluster's facts are observed (default 60 s). */
  readonly factsIntervalMs?: number;
  /** With `kube`: how long before a version whose apply failed is tried again (default 30 s). */
  readonly applyRetryMs?: number;
  /** How long an impact request long poll waits at the hub (default 30 s). */
  readonly impactPollSeconds?: number;
  /** The agent's clock, for everything it dates or compares with a date (default: the system's). */
  readonly now?: () => Date;
  readonly log?: Log;
}

export interface RunningAgent {
  readonly webhookUrl: string;
  readonly webhookCaPem: string;
  /** The bundle enforced; a bundle offered to it directly is checked as one from the hub. */
  readonly bundle: ActiveBundle;
  /**
   * Hears the objects the cluster holds of Polity's after each successful apply of the
   * bundle's manifests, and the restored ones after a rollback (drift watching builds on
   * it); never called without an API server.
   */
  onApplied(listener: (manifests: readonly Manifest[]) => void): void;
  /** Whether this replica does the work done once per cluster: always, without a Lease. */
  leader(): boolean;
  health(): AgentHealth;
  close(): Promise<void>;
}

export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const now = options.now ?? (() => new Date());
  const log = options.log ?? silentLog;
  const host = options.webhookHost ?? "127.0.0.1";

  // The identity in a Secret, when there is one: restored before it is loaded.
  const identitySecret = options.kube === undefined || options.identitySecret === undefined ? undefined : new IdentitySecretSync(options.kube, options.identitySecret, options.cluster, log);
  await identitySecret?.restore(options.dataDir);

  // What the loops share.
  const credentials = new AgentCredentials(options.dataDir, options.cluster, options.hubUrl);
  identitySecret?.follow(credentials);
  const errors = new LoopErrors(now, log);
  // The high-water mark lives beside the identity, not the bundles it guards.
  const highWater = new HighWaterMark(join(options.dataDir, "identity", "bundle-high-water.json"));
  const bundle = new ActiveBundle(join(options.dataDir, "bundles"), (at) => credentials.trust(at), highWater, log, now, () => credentials.degraded()?.reason);
  const decisions = new DecisionLog(join(options.dataDir, "decisions"), { ...DEFAULT_LOG_OPTIONS, ...options.logs });
  const counters: Counters = { allowed: 0, denied: 0, rejected: 0, failedClosed: 0 };
  const byBundle = new BundleCounts();
  const window = new AdmissionWindow(join(options.dataDir, "window"), { ...DEFAULT_WINDOW_OPTIONS, ...options.window });
  const latencies = new Latencies();

  // Enforce from disk first, before any network: a restarted agent decides at once.
  if (credentials.enrolled) bundle.loadFromDisk();

  const identity = new IdentityPlugin({ hubUrl: options.hubUrl, ...(options.fallbackUrls === undefined ? {} : { fallbackUrls: options.fallbackUrls }), cluster: options.cluster, caPem: options.caPem, joinToken: options.joinToken, credentials, bundle, errors, log, now });
  const bundles = new BundlePlugin({ credentials, bundle, errors, pollWaitSeconds: options.pollWaitSeconds ?? 30, sources: [options.hubUrl, ...(options.fallbackUrls ?? [])], now });
  const roots = new RootsPlugin({ credentials, errors, sources: [options.hubUrl, ...(options.fallbackUrls ?? [])], ...(options.rootCheckIntervalMs === undefined ? {} : { intervalMs: options.rootCheckIntervalMs }), now });
  const logs = new DecisionLogPlugin({ decisions, credentials, errors, uploadIntervalMs: options.logUploadIntervalMs ?? 2000 });
  const election =
    options.kube === undefined || options.lease === undefined
      ? undefined
      : new LeaderElection(options.kube, { ...options.lease, identity: `${hostname()}-${randomBytes(4).toString("hex")}` }, log);
  const leader = () => election?.isLeader() ?? true;
  const namespaces = options.kube === undefined ? undefined : new NamespacesPlugin(options.kube, log, now, options.namespaceFetchTimeoutMs === undefined ? {} : { fetchTimeoutMs: options.namespaceFetchTimeoutMs });
  // Every replica judges (its summary is ready when it becomes the leader); only the leader writes reports and reports status.
  const scan =
    options.kube === undefined || namespaces === undefined
      ? undefined
      : new ScanPlugin({ kube: options.kube, namespaces: namespaces.cache, bundle, now, log, periodMs: options.scanPeriodMs, reportDelayMs: options.scanReportDelayMs, writeReports: leader });
  const status = new StatusPlugin({ credentials, errors, intervalMs: options.statusIntervalMs ?? 5000, health: () => health(), leader, compliance: () => scan?.summary() });
  const impact = new ImpactPlugin({ credentials, errors, bundle, window, pollWaitSeconds: options.impactPollSeconds ?? 30, now });
  const intents =
    options.kube === undefined || options.applyIntents === false
      ? undefined
      : new IntentsPlugin({ kube: options.kube, bundle, credentials, errors, dataDir: options.dataDir, cluster: options.cluster, leader, log, now, ...(options.applyRetryMs === undefined ? {} : { retryMs: options.applyRetryMs }) });
  const facts = options.kube === undefined ? undefined : new FactsPlugin({ kube: options.kube, credentials, errors, leader, now, ...(options.factsIntervalMs === undefined ? {} : { intervalMs: options.factsIntervalMs }) });
  // Drift: the leader watches what the last apply made, and puts back or reports what changed (drift/).
  const driftReports = intents === undefined ? undefined : new DriftReporter({ hub: () => (credentials.enrolled ? credentials.hub() : undefined), errors });
  const drift = intents === undefined || driftReports === undefined || options.kube === undefined ? undefined : new DriftWatcher({ kube: options.kube, sink: driftReports, log, now, leader });
  if (drift !== undefined) {
    intents!.onApplying(() => drift.hold());
    intents!.onApplied((manifests) => drift.setDesired(manifests));
  }
  const plugins: readonly Plugin[] = [identity, bundles, roots, logs, status, impact, ...(namespaces === undefined ? [] : [namespaces]), ...(scan === undefined ? [] : [scan]), ...(intents === undefined ? [] : [intents]), ...(facts === undefined ? [] : [facts]), ...(driftReports === undefined ? [] : [driftReports])];
  const kube = () => ({ ...(namespaces?.health() ?? noKubeHealth()), identitySecret: identitySecret?.health() ?? null, lease: election?.health() ?? null, webhookConfiguration: registration?.health() ?? null, intents: intents?.health() ?? null, facts: facts?.health() ?? null, drift: drift === undefined ? null : { ...drift.health(), reports: driftReports!.health() } });
  const health = (): AgentHealth => agentHealth({ cluster: options.cluster, identity, bundle: bundles, roots, logs, plugins, counters, latencies, byBundle, kube, scan: () => scan?.health() ?? null });

  const certificate = await webhookCertificate(join(options.dataDir, "webhook"), options.cluster, options.webhookNames ?? [], now());
  const server = await startWebhook({ certificatePem: certificate.certificatePem, privateKeyPem: certificate.privateKeyPem, host, port: options.webhookPort ?? 9443, now, bundle, decisions, counters, latencies, byBundle, window, health, ...(namespaces === undefined ? {} : { namespaces: namespaces.cache }), callerCaPem: options.callerCaPem, requireAuthenticatedCaller: options.requireAuthenticatedCaller });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : (options.webhookPort ?? 9443);

  const stop = new AbortController();
  const registration = options.kube === undefined || options.registerWebhook === undefined ? undefined : new WebhookRegistration(options.kube);
  const register = async (signal: AbortSignal) => {
    while (!signal.aborted) {
      const active = bundle.current;
      if (registration !== undefined && options.registerWebhook !== undefined && active !== undefined && leader()) {
        const configuration = webhookConfiguration({ cluster: options.cluster, caPem: certificate.caPem, target: options.registerWebhook, failurePolicy: "Fail", rules: webhookRules(active.set) });
        try {
          if (await registration.apply(configuration)) log.info("ValidatingWebhookConfiguration polity applied", { bundleVersion: active.metadata.version });
        } catch (error) {
          log.warn(error instanceof Error ? error.message : String(error));
        }
      }
      await sleep(1000, signal);
    }
  };
  const running = [...(registration === undefined ? [] : [register(stop.signal)]), ...plugins.map((plugin) => plugin.run(stop.signal)), ...(election === undefined ? [] : [election.run(stop.signal)])];
  drift?.start();
  // The window's records reach the disk every second (a full disk costs the window, never a decision).
  const flushWindow = () => {
    try {
      window.flush(now().getTime());
    } catch (error) {
      log.warn("the window of recorded requests could not be written", { error: error instanceof Error ? error.message : String(error) });
    }
  };
  const flushing = setInterval(flushWindow, 1_000);
  flushing.unref();
  log.info("agent started", { cluster: options.cluster, webhook: `https://${host}:${port}/validate`, bundleVersion: bundle.current?.metadata.version ?? null, kube: kube().source, kubeServer: kube().server });
  if (namespaces === undefined) log.info(NO_KUBE_MESSAGE);

  return {
    webhookUrl: `https://${host.includes(":") ? `[${host}]` : host}:${port}/validate`,
    webhookCaPem: certificate.caPem,
    bundle,
    onApplied: (listener) => intents?.onApplied(listener),
    leader,
    health,
    async close() {
      stop.abort();
      await drift?.stop();
      await Promise.allSettled(running);
      // The webhook before the plugins' last work, so that no decision comes after the last flush.
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      for (const plugin of plugins) await plugin.stop?.();
      clearInterval(flushing);
      flushWindow();
      await identitySecret?.flushed();
    },
  };
}
