/**
 * The intents loop: makes the cluster hold what its bundle's intents make (README,
 * "Intents"). When a verified bundle becomes active, the leader renders its manifests with
 * the same pure code as the hub (src/intents), from the verified target and the facts the
 * hub signed into its metadata, and applies them with the Applier (apply/), then reports
 * the result to its hub (POST /v1/agent/apply).
 *
 * - A rendering whose hash differs from the `manifestsHash` the hub signed (another
 *   translator version) is refused: nothing is applied, the objects of the last apply stay,
 *   and the refusal is reported. A bundle without facts (a cluster that declared none and
 *   whose agent has not reported any yet) renders nothing: the agent waits, and says so.
 * - What the last successful apply held is kept in `<data>/intents/applied.json`, so that a
 *   restarted agent knows what it owns. Deletions happen only for a bundle newly verified
 *   from the hub: a bundle loaded from disk at boot is applied again without deleting
 *   anything (an unreachable hub never deletes), and what it did not delete stays owned.
 * - A version that failed (rolled back) is tried again after `retryMs`; the result of each
 *   try is reported. `onApplied` listeners hear the objects the cluster holds after each
 *   successful apply, and the restored ones after a rollback (for drift watching).
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { KubernetesObjectApi } from "@kubernetes/client-node";
import type { ApplyReport } from "../api/intents.js";
import { call } from "../client/http.js";
import { writeFileAtomic } from "../files/write.js";
import { clusterFacts } from "../intents/facts.js";
import type { Manifest } from "../intents/index.js";
import { describeFailure, type KubeAccess } from "../kube/index.js";
import { Applier, type ApplyResult } from "./apply/index.js";
import type { ActiveBundle, LoadedBundle } from "./bundle/active.js";
import type { AgentCredentials } from "./identity/credentials.js";
import type { Log } from "./log.js";
import { Backoff, sleep, type LoopError, type LoopErrors, type Plugin } from "./plugin.js";

export interface IntentsHealth {
  /** The bundle version last applied, tried or refused, and how it went. */
  readonly bundleVersion: number | null;
  readonly outcome: ApplyReport["outcome"] | null;
  readonly at: string | null;
  readonly objects: number;
  readonly message: string | null;
  /** The last result not yet accepted by the hub. */
  readonly reportPending: boolean;
}

export interface IntentsPluginOptions {
  readonly kube: KubeAccess;
  readonly bundle: ActiveBundle;
  readonly credentials: AgentCredentials;
  readonly errors: LoopErrors;
  readonly dataDir: string;
  readonly cluster: string;
  readonly leader: () => boolean;
  readonly log: Log;
  readonly now: () => Date;
  /** How often the loop looks at the active bundle (default 1 s). */
  readonly intervalMs?: number;
  /** How long before a failed version is tried again (default 30 s). */
  readonly retryMs?: number;
}

/** What the last successful apply held, on disk. */
interface Applied {
  readonly bundleVersion: number;
  readonly manifestsHash: string;
  readonly manifests: readonly Manifest[];
}

const keyOf = (m: Manifest) => `${m.apiVersion}/${m.kind}/${m.metadata.namespace ?? ""}/${m.metadata.name}`;

export class IntentsPlugin implements Plugin {
  readonly name = "intents";
  private readonly applier: Applier;
  private readonly file: string;
  private applied: Applied | undefined;
  private readonly listeners: ((manifests: readonly Manifest[]) => void)[] = [];
  private readonly applying: (() => void)[] = [];
  /** The bundle version last handled, how, and when. */
  private last: { version: number; outcome: ApplyReport["outcome"]; at: number; message: string | null } | undefined;
  private pending: ApplyReport | undefined;

  constructor(private readonly options: IntentsPluginOptions) {
    this.applier = new Applier(KubernetesObjectApi.makeApiClient(options.kube.config), options.kube.config);
    const dir = join(options.dataDir, "intents");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.file = join(dir, "applied.json");
    this.applied = this.load();
  }

  /** Called after each successful apply with the objects applied, and after a rollback with the objects restored. */
  onApplied(listener: (manifests: readonly Manifest[]) => void): void {
    this.listeners.push(listener);
  }

  /** Called right before each apply; every apply then ends with the onApplied listeners. */
  onApplying(listener: () => void): void {
    this.applying.push(listener);
  }

  /** The objects the last successful apply held (what this agent owns). */
  owned(): readonly Manifest[] {
    return this.applied?.manifests ?? [];
  }

  private load(): Applied | undefined {
    if (!existsSync(this.file)) return undefined;
    try {
      const value = JSON.parse(readFileSync(this.file, "utf8")) as Partial<Applied>;
      if (typeof value.bundleVersion !== "number" || typeof value.manifestsHash !== "string" || !Array.isArray(value.manifests)) throw new Error("not a record of applied objects");
      return value as Applied;
    } catch (error) {
      // Without it the agent owns nothing it can prove: it deletes nothing until its next apply.
      this.options.log.warn("the record of applied objects is unreadable: nothing will be deleted until the next apply", { file: this.file, error: error instanceof Error ? error.message : String(error) });
      return undefined;
    }
  }

  async run(signal: AbortSignal): Promise<void> {
    const { bundle, errors, leader, now, intervalMs = 1000, retryMs = 30_000 } = this.options;
    const backoff = new Backoff(1000, 30_000);
    while (!signal.aborted) {
      await sleep(intervalMs, signal);
      if (signal.aborted) return;
      await this.report(signal);
      const active = bundle.current;
      if (active === undefined || !leader()) continue;
      const last = this.last;
      const retry = last !== undefined && last.outcome === "failed" && now().getTime() - last.at >= retryMs;
      if (last !== undefined && last.version === active.metadata.version && !retry) continue;
      try {
        await this.handle(active);
        errors.succeeded("intents");
        backoff.reset();
      } catch (error) {
        // Not the API server's answer (the record could not be written): tried again.
        errors.failed("intents", "applying the bundle's manifests failed", error);
        await sleep(backoff.next(), signal);
      }
      await this.report(signal);
    }
  }

  private async handle(active: LoadedBundle): Promise<void> {
    const { cluster, log, now } = this.options;
    const metadata = active.metadata;
    const fromDisk = active.source === "disk";
    const base = { bundleVersion: metadata.version, manifestsHash: metadata.manifestsHash ?? null, fromDisk, at: now().toISOString(), applied: 0, deleted: 0, failed: null, rolledBack: false, rollbackFailures: [], conflicts: [] };
    const done = (report: ApplyReport) => {
      this.last = { version: metadata.version, outcome: report.outcome, at: now().getTime(), message: report.message };
      this.pending = report;
    };
    if (metadata.facts === undefined || metadata.manifestsHash === undefined) {
      done({ ...base, outcome: "waiting", message: "the bundle carries no cluster facts: nothing is rendered until the cluster's facts are declared or reported" });
      return;
    }
    const facts = clusterFacts.safeParse(metadata.facts);
    if (!facts.success) {
      done({ ...base, outcome: "refused", message: `the facts in the bundle are not valid: ${facts.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`.slice(0, 4000) });
      return;
    }
    // Loaded at the first apply: the Kubernetes schemas it checks against cost seconds to load, and most agents' starts need none.
    const { renderCluster } = await import("../intents/index.js");
    const rendering = renderCluster(cluster, active.set, facts.data);
    if (rendering.hash !== metadata.manifestsHash) {
      const message = `this agent renders the bundle's intents to ${rendering.hash}, not ${metadata.manifestsHash} as the hub did (another translator version): nothing applied, the objects of the last apply stay`;
      log.warn("refused to apply the bundle's manifests", { version: metadata.version, message });
      done({ ...base, outcome: "refused", message });
      return;
    }
    const desired = rendering.document.manifests;
    const previous = this.applied?.manifests ?? [];
    let result: ApplyResult;
    for (const listener of this.applying) listener();
    try {
      result = await this.applier.apply(desired, previous, { deleteUnwanted: !fromDisk });
    } catch (error) {
      // A deletion failed (the new objects were all applied), or the API server could not be
      // asked at all: reported, tried again after retryMs. What is left of the old ones is not
      // watched, so nothing deleted comes back.
      const message = `applying stopped: ${describeFailure(error)}`;
      log.warn("applying the bundle's manifests failed", { version: metadata.version, message });
      this.tell(desired);
      done({ ...base, outcome: "failed", message });
      return;
    }
    const report: ApplyReport = {
      ...base,
      outcome: result.rolledBack ? "failed" : "applied",
      applied: result.applied.length,
      deleted: result.deleted.length,
      failed: result.failed ?? null,
      rolledBack: result.rolledBack,
      rollbackFailures: result.rollbackFailures.slice(0, 100),
      conflicts: [...result.conflicts],
      message: null,
    };
    if (result.rolledBack) {
      log.warn("applying the bundle's manifests failed: rolled back", { version: metadata.version, object: result.failed?.object, reason: result.failed?.reason });
      this.tell(previous);
    } else {
      this.remember(metadata.version, metadata.manifestsHash, desired, previous, fromDisk);
      log.info("applied the bundle's manifests", { version: metadata.version, applied: result.applied.length, deleted: result.deleted.length, fromDisk });
      this.tell(desired);
    }
    done(report);
  }

  /** What the cluster now holds of Polity's: the new objects, and, from disk, the old ones not deleted. */
  private remember(version: number, hash: string, desired: readonly Manifest[], previous: readonly Manifest[], fromDisk: boolean): void {
    const wanted = new Set(desired.map(keyOf));
    const kept = fromDisk ? previous.filter((m) => !wanted.has(keyOf(m))) : [];
    this.applied = { bundleVersion: version, manifestsHash: hash, manifests: [...desired, ...kept] };
    writeFileAtomic(this.file, JSON.stringify(this.applied));
  }

  private tell(manifests: readonly Manifest[]): void {
    for (const listener of this.listeners) {
      try {
        listener(manifests);
      } catch (error) {
        this.options.log.warn("an onApplied listener failed", { error: error instanceof Error ? error.message : String(error) });
      }
    }
  }

  /** Sends the last result to the hub; kept and sent again until the hub takes it. */
  private async report(signal: AbortSignal): Promise<void> {
    const pending = this.pending;
    if (pending === undefined || !this.options.credentials.enrolled) return;
    try {
      await call(this.options.credentials.hub(), "POST", "/v1/agent/apply", pending, { signal, timeoutMs: 10_000 });
      if (this.pending === pending) this.pending = undefined;
    } catch (error) {
      if (!signal.aborted) this.options.errors.failed("intents", "apply report failed", error);
    }
  }

  lastError(): LoopError | undefined {
    return this.options.errors.of(this.name);
  }

  health(): IntentsHealth {
    return {
      bundleVersion: this.last?.version ?? null,
      outcome: this.last?.outcome ?? null,
      at: this.last === undefined ? null : new Date(this.last.at).toISOString(),
      objects: this.applied?.manifests.length ?? 0,
      message: this.last?.message ?? null,
      reportPending: this.pending !== undefined,
    };
  }
}
