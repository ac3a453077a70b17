/**
 * startAgent: a cluster's agent. Its loops, each small and independent, like OPA's plugins:
 * - identity: enrol once with a join token; renew the certificate two thirds of the way
 *   through its life (or, after a partition, within the hub's grace window);
 * - bundle: long-poll the hub for this cluster's bundle, verify it, persist it, swap it in;
 * - webhook: decide AdmissionReviews from the bundle held (enforcement.ts, webhook.ts);
 * - logs: flush decision logs to disk every second, upload them in batches (logs/);
 * - status: report every few seconds what is enforced, how fresh, how fast.
 *
 * At boot the agent enforces the bundle on its disk before it has reached the hub; with
 * the hub unreachable it keeps enforcing the last good bundle, even past its expiry, and
 * reports itself stale. It never deletes or loosens policy because the hub is gone.
 *
 * Each loop keeps its own last error, cleared only when that loop succeeds (or, for "the
 * hub is unreachable", when any loop reaches the hub again); a loop that fails waits
 * longer each time, with jitter, so that many agents do not ask their hub in step.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type { Server } from "node:https";
import { join } from "node:path";
import { call, HubError, UnreachableError } from "../client/http.js";
import { PolityError } from "../errors.js";
import { clusterEndpoint, expired, loadCredentials, renewalDue, saveCredentials, type Credentials } from "../identity/credentials.js";
import { parseClusterSpiffeId } from "../identity/spiffe.js";
import { Enforcement, trustFrom, type Log } from "./enforcement.js";
import { DecisionLog, DEFAULT_LOG_OPTIONS, type LogOptions } from "./logs/buffer.js";
import { Latencies, startWebhook, type Counters } from "./webhook.js";

export interface AgentOptions {
  readonly dataDir: string;
  readonly hubUrl: string;
  /** The federation CA, for the first enrolment (afterwards the agent keeps its own copy). */
  readonly caPem?: string;
  readonly cluster: string;
  readonly joinToken?: string;
  readonly webhookHost?: string;
  /** 0 picks a free port. */
  readonly webhookPort?: number;
  /** Extra DNS names for the webhook's serving certificate. */
  readonly webhookNames?: readonly string[];
  /** How long a long poll waits at the hub (default 30 s). */
  readonly pollWaitSeconds?: number;
  readonly statusIntervalMs?: number;
  readonly logUploadIntervalMs?: number;
  readonly logs?: Partial<LogOptions>;
  readonly now?: () => Date;
  readonly log?: Log;
}

/** The agent's loops, each with its own last error. */
export type AgentLoop = "identity" | "bundle" | "logs" | "status";

export interface AgentHealth {
  readonly cluster: string;
  readonly bundleVersion: number | null;
  readonly bundleHash: string | null;
  readonly bundleSource: "disk" | "hub" | null;
  readonly bundleExpires: string | null;
  readonly lastSync: string | null;
  readonly stale: boolean;
  readonly enrolled: boolean;
  readonly certificateNotAfter: string | null;
  /** The latest of `errors`. */
  readonly lastError: string | null;
  /** Each loop's error since it last succeeded. */
  readonly errors: Readonly<Partial<Record<AgentLoop, string>>>;
  readonly lastRefusal: { problem: string; message: string; at: string } | null;
  readonly decisions: Counters;
  readonly latencyMicros: { p50: number; p90: number; p99: number; samples: number };
  readonly logs: { buffered: number; segments: number; dropped: number; droppedUnreported: number };
}

export interface RunningAgent {
  readonly webhookUrl: string;
  readonly webhookCaPem: string;
  readonly enforcement: Enforcement;
  health(): AgentHealth;
  close(): Promise<void>;
}

export function jsonLog(component: string): Log {
  const write = (level: string, message: string, fields?: Record<string, unknown>) =>
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, component, msg: message, ...fields })}\n`);
  return { info: (m, f) => write("info", m, f), warn: (m, f) => write("warn", m, f) };
}

const silent: Log = { info: () => undefined, warn: () => undefined };

/** The webhook's own CA and serving certificate, made once and kept in the data folder. */
async function webhookCertificate(dir: string, cluster: string, names: readonly string[]): Promise<{ certificatePem: string; privateKeyPem: string; caPem: string }> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const paths = { ca: join(dir, "ca.pem"), cert: join(dir, "cert.pem"), key: join(dir, "key.pem") };
  if (existsSync(paths.ca) && existsSync(paths.cert) && existsSync(paths.key)) {
    return { caPem: readFileSync(paths.ca, "utf8"), certificatePem: readFileSync(paths.cert, "utf8"), privateKeyPem: readFileSync(paths.key, "utf8") };
  }
  // X.509 is loaded only the first time, when the certificate is made.
  const { createCertificateAuthority, issueServerCertificate } = await import("../identity/ca.js");
  const now = new Date();
  const { authority } = await createCertificateAuthority(`${cluster}-webhook`, now);
  const serving = await issueServerCertificate(
    authority,
    { dns: ["localhost", "polity-agent.polity-system.svc", "polity-agent.polity-system.svc.cluster.local", ...names], ips: ["127.0.0.1", "::1"] },
    now,
    5 * 365 * 24 * 3600 * 1000,
  );
  writeFileSync(paths.ca, authority.certificatePem);
  writeFileSync(paths.cert, serving.certificatePem);
  writeFileSync(paths.key, serving.privateKeyPem, { mode: 0o600 });
  return { caPem: authority.certificatePem, certificatePem: serving.certificatePem, privateKeyPem: serving.privateKeyPem };
}

/**
 * Exponential backoff with jitter: each wait is drawn between half and all of the current
 * step, and the step doubles up to `cap`.
 */
class Backoff {
  private step: number;

  constructor(
    private readonly first: number,
    private readonly cap: number,
  ) {
    this.step = first;
  }

  next(): number {
    const wait = this.step / 2 + Math.random() * (this.step / 2);
    this.step = Math.min(this.step * 2, this.cap);
    return wait;
  }

  reset(): void {
    this.step = this.first;
  }
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });

export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const now = options.now ?? (() => new Date());
  const log = options.log ?? silent;
  const identityDir = join(options.dataDir, "identity");
  const stop = new AbortController();
  let credentials: Credentials | undefined = loadCredentials(identityDir);
  if (credentials !== undefined && credentials.cluster !== options.cluster) {
    // An operator's mistake, not a bug: said as the error family the CLI prints.
    throw PolityError.of("invalid", `the data folder ${options.dataDir} holds the identity of cluster ${credentials.cluster}, not ${options.cluster}: give that cluster's --data folder, or another for ${options.cluster}`);
  }
  let lastSync: Date | undefined;
  const errors = new Map<AgentLoop, { message: string; at: number; unreachable: boolean }>();
  const counters: Counters = { allowed: 0, denied: 0, rejected: 0, failedClosed: 0 };
  const latencies = new Latencies();
  const pollWait = options.pollWaitSeconds ?? 30;

  const trust = () => {
    if (credentials === undefined) throw new Error("not enrolled: no pinned bundle key");
    const id = parseClusterSpiffeId(credentials.spiffeId);
    return trustFrom(credentials.bundleKeyPem, id?.federation ?? "", options.cluster);
  };
  const enforcement = new Enforcement(join(options.dataDir, "bundles"), trust, log);
  const decisions = new DecisionLog(join(options.dataDir, "decisions"), { ...DEFAULT_LOG_OPTIONS, ...options.logs });

  // Enforce from disk first, before any network: a restarted agent decides at once.
  if (credentials !== undefined) enforcement.loadFromDisk();

  const health = (): AgentHealth => {
    const current = enforcement.current;
    const stale =
      current === undefined || enforcement.expired(now()) || lastSync === undefined || now().getTime() - lastSync.getTime() > (pollWait + 30) * 1000;
    return {
      cluster: options.cluster,
      bundleVersion: current?.metadata.version ?? null,
      bundleHash: current?.metadata.targetHash ?? null,
      bundleSource: current?.source ?? null,
      bundleExpires: current?.metadata.expires ?? null,
      lastSync: lastSync?.toISOString() ?? null,
      stale,
      enrolled: credentials !== undefined,
      certificateNotAfter: credentials?.notAfter ?? null,
      lastError: [...errors.values()].sort((a, b) => b.at - a.at)[0]?.message ?? null,
      errors: Object.fromEntries([...errors].map(([loop, error]) => [loop, error.message])),
      lastRefusal: enforcement.lastRefusal ?? null,
      decisions: { ...counters },
      latencyMicros: latencies.percentiles(),
      logs: decisions.stats(),
    };
  };

  const webhookCert = await webhookCertificate(join(options.dataDir, "webhook"), options.cluster, options.webhookNames ?? []);
  const server: Server = await startWebhook(
    { certificatePem: webhookCert.certificatePem, privateKeyPem: webhookCert.privateKeyPem, host: options.webhookHost ?? "127.0.0.1", port: options.webhookPort ?? 9443, now },
    enforcement,
    decisions,
    counters,
    latencies,
    () => ({ ...health() }),
  );
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : (options.webhookPort ?? 9443);
  const host = options.webhookHost ?? "127.0.0.1";

  const failed = (loop: AgentLoop, what: string, error: unknown) => {
    const reason = error instanceof Error ? error.message : String(error);
    errors.set(loop, { message: `${what}: ${reason}`, at: Date.now(), unreachable: error instanceof UnreachableError });
    log.warn(what, { error: reason });
  };
  /** A loop did its work: its own error is over, and so is every "the hub is unreachable". */
  const succeeded = (loop: AgentLoop) => {
    errors.delete(loop);
    for (const [other, error] of errors) if (error.unreachable) errors.delete(other);
  };

  // ---- identity: enrol, then keep the certificate fresh
  const identityLoop = async () => {
    // Enrolment and renewal need X.509; a restarted agent loads it after it is serving.
    const { enroll, renew } = await import("../identity/enrollment.js");
    const backoff = new Backoff(1000, 30_000);
    while (!stop.signal.aborted) {
      try {
        if (credentials === undefined) {
          if (options.joinToken === undefined || options.caPem === undefined) {
            errors.set("identity", { message: "not enrolled: give a join token and the federation CA", at: Date.now(), unreachable: false });
            await sleep(5000, stop.signal);
            continue;
          }
          credentials = await enroll({ url: options.hubUrl, caPem: options.caPem }, options.cluster, options.joinToken);
          saveCredentials(identityDir, credentials);
          log.info("enrolled", { spiffeId: credentials.spiffeId, notAfter: credentials.notAfter });
          enforcement.loadFromDisk();
        } else if (renewalDue(credentials, now())) {
          credentials = await renew(options.hubUrl, credentials);
          saveCredentials(identityDir, credentials);
          log.info("renewed the certificate", { notAfter: credentials.notAfter });
        }
        succeeded("identity");
        backoff.reset();
        const until = credentials === undefined ? 5000 : Math.max(1000, Date.parse(credentials.renewAfter) - now().getTime());
        await sleep(Math.min(until, 60_000), stop.signal);
      } catch (error) {
        failed("identity", credentials === undefined ? "enrolment failed" : expired(credentials, now()) ? "renewal of the expired certificate failed" : "renewal failed", error);
        await sleep(backoff.next(), stop.signal);
      }
    }
  };

  // ---- bundle: long poll with ETags
  const bundleLoop = async () => {
    const backoff = new Backoff(500, 15_000);
    // A hub that answers at once with a bundle the agent refuses (an older one, after the
    // hub was restored from a backup; a forged one) is asked again later and later.
    const refusedBackoff = new Backoff(1000, 60_000);
    while (!stop.signal.aborted) {
      if (credentials === undefined) {
        await sleep(500, stop.signal);
        continue;
      }
      try {
        const held = enforcement.current?.metadata.version;
        const response = await call<Buffer>(clusterEndpoint(options.hubUrl, credentials), "GET", `/v1/agent/bundle?wait=${pollWait}`, undefined, {
          raw: true,
          timeoutMs: (pollWait + 15) * 1000,
          signal: stop.signal,
          headers: held === undefined ? {} : { "if-none-match": `"${held}"` },
          binary: true,
        });
        lastSync = now();
        backoff.reset();
        // The hub answered: whatever said it was unreachable is over.
        succeeded("bundle");
        if (response.status === 200 && enforcement.offer(response.body, now()) === undefined) {
          const refusal = enforcement.lastRefusal;
          failed("bundle", `refused the bundle the hub sent (${refusal?.problem ?? "malformed"})`, refusal?.message ?? "");
          await sleep(refusedBackoff.next(), stop.signal);
          continue;
        }
        refusedBackoff.reset();
      } catch (error) {
        if (stop.signal.aborted) return;
        failed("bundle", error instanceof HubError ? `the hub refused the bundle request (${error.status})` : "the hub is unreachable", error);
        await sleep(backoff.next(), stop.signal);
      }
    }
  };

  // ---- logs: flush every second, upload batches
  const logsLoop = async () => {
    const backoff = new Backoff(1000, 30_000);
    let lastUpload = 0;
    while (!stop.signal.aborted) {
      await sleep(1000, stop.signal);
      try {
        decisions.flush();
      } catch (error) {
        failed("logs", "writing decision logs failed", error);
      }
      if (credentials === undefined || Date.now() - lastUpload < (options.logUploadIntervalMs ?? 2000)) continue;
      lastUpload = Date.now();
      let sending: string | undefined;
      try {
        for (let batch = decisions.nextBatch(); batch !== undefined && !stop.signal.aborted; batch = decisions.nextBatch()) {
          sending = batch.batch;
          await call(clusterEndpoint(options.hubUrl, credentials), "POST", "/v1/agent/decisions", { batch: batch.batch, entries: batch.entries, dropped: batch.dropped }, { signal: stop.signal });
          batch.done();
        }
        succeeded("logs");
        backoff.reset();
      } catch (error) {
        if (stop.signal.aborted) return;
        // A batch the hub refuses stays on disk, retried, and named here until it goes through.
        const what = error instanceof HubError ? `the hub refused decision-log batch ${sending ?? ""} (${error.status}); it stays on disk` : "uploading decision logs failed (they stay on disk)";
        failed("logs", what, error);
        await sleep(backoff.next(), stop.signal);
      }
    }
  };

  // ---- status: every few seconds
  const statusLoop = async () => {
    while (!stop.signal.aborted) {
      await sleep(options.statusIntervalMs ?? 5000, stop.signal);
      if (credentials === undefined || stop.signal.aborted) continue;
      try {
        await call(clusterEndpoint(options.hubUrl, credentials), "POST", "/v1/agent/status", health(), { signal: stop.signal, timeoutMs: 10_000 });
        succeeded("status");
      } catch (error) {
        if (!stop.signal.aborted) failed("status", "status report failed", error);
      }
    }
  };

  const loops = [identityLoop(), bundleLoop(), logsLoop(), statusLoop()];
  log.info("agent started", { cluster: options.cluster, webhook: `https://${host}:${port}/validate`, bundleVersion: enforcement.current?.metadata.version ?? null });

  return {
    webhookUrl: `https://${host.includes(":") ? `[${host}]` : host}:${port}/validate`,
    webhookCaPem: webhookCert.caPem,
    enforcement,
    health,
    async close() {
      stop.abort();
      await Promise.allSettled(loops);
      // The webhook first, so that no decision comes after the last flush.
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      try {
        decisions.close();
      } catch {
        // nothing more to do at shutdown
      }
    },
  };
}
