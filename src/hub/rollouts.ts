/**
 * Staged rollouts, the hub's shell: a change of one layer committed once, whose clusters
 * move to it stage by stage (the federation holds the others at the previous version), each
 * stage judged by health gates (src/rollout) from what the agents report, and rolled back
 * automatically when a gate fails: the previous content written as a new layer version and
 * published at higher bundle versions. This module owns `rollouts`.
 *
 * Every hub process drives the running rollouts (`tick`). A transition is taken under the
 * rollout's row lock, on the revision it was judged on, and (when it publishes) at the
 * federation generation it was computed at: whichever hub gets there first moves the
 * rollout, the others find the row moved on and judge again. A hub restart resumes from the
 * row.
 */
import { randomBytes } from "node:crypto";
import type { Json } from "../canonical/index.js";
import type { RolloutSettings, RolloutState, RolloutView } from "../api/rollouts.js";
import type { AuditEvent, EntryKind } from "../audit/entry.js";
import { PolityError } from "../errors.js";
import type { EffectivePolicySet } from "../layering/effective.js";
import type { Layer } from "../policy/layer.js";
import { layersFromFiles } from "../policy/layer-files.js";
import { baselineOf, judgeStage, planStages, type AgentReport, type ClusterProgress, type Stage } from "../rollout/index.js";
import type { Database, Queryable } from "../store/database.js";
import type { AuditContext, AuditLog } from "./audit-log.js";
import type { BundleItem, BundleService } from "./bundles.js";
import type { Changes, Committed, LayerInput, Plan } from "./change.js";
import { StaleGeneration, type Federation } from "./federation.js";
import type { Reports } from "./reports.js";
import { ACTIVE, reportOf, rolloutView, type RolloutRow } from "./rollout-rows.js";
import { ApiError, conflict, fromPolityError, notFound, unprocessable } from "./status.js";

export class Rollouts {
  constructor(
    private readonly db: Database,
    private readonly federation: Federation,
    private readonly changes: Changes,
    private readonly bundles: BundleService,
    private readonly reports: Reports,
    private readonly audit: AuditLog,
    private readonly now: () => Date,
  ) {}

  /** What the agents of these clusters last reported. */
  private async agentReports(clusters: readonly string[]): Promise<Map<string, AgentReport>> {
    const statuses = await this.reports.statuses(clusters);
    return new Map([...statuses].map(([name, s]) => [name, reportOf(s.reportedAt, s.status as Readonly<Record<string, unknown>>)]));
  }

  /**
   * Starts a rollout of a change of one layer: stages planned over the clusters whose
   * effective set it changes, the layer's new version committed, the canary's bundles
   * published, and every other cluster held at the previous version. Refused (422) when the
   * stages cannot be planned, (409) when the layer is being rolled out already.
   */
  async start(
    settings: RolloutSettings,
    layers: readonly LayerInput[],
    author: string,
    context: AuditContext,
    idempotencyKey?: string,
    /** More to record in the change's transaction (a proposal's state), as a change of layers' `also`. */
    also?: (tx: Queryable) => Promise<AuditEvent[]>,
  ): Promise<{ committed: Committed; rollout: string | null }> {
    const plan = this.planned(() => this.changes.plan({ kind: "layers", layers }));
    const changed = plan.layers.filter((l) => !l.unchanged);
    if (changed.length === 0) return { committed: await this.changes.apply({ kind: "layers", layers, ...(also === undefined ? {} : { also }) }, author, context, plan, idempotencyKey), rollout: null };
    if (changed.length > 1) throw unprocessable(`a staged rollout changes one layer at a time; this change touches ${changed.map((l) => l.id).join(", ")}: apply them one by one`);
    const layer = changed[0]!;
    const active = this.federation.rollingOut.get(layer.id);
    if (active !== undefined) throw conflict(`layer ${layer.id} is being rolled out already (rollout ${active}): wait for it to complete, or abort or roll it back (polity rollout status ${active})`);
    if (settings.emergency) this.emergencyAllowed(layer.id, layer.layer);
    const reached = plan.affected.filter((a) => a.before !== a.after.hash).map((a) => this.federation.identity(a.cluster));
    const { stages, problems } = planStages(settings, reached);
    if (problems.length > 0) throw fromPolityError(new PolityError("invalid", problems), "the rollout is refused");
    const id = randomBytes(6).toString("hex");
    const hold = new Set(stages.slice(1).flatMap((s) => s.clusters));
    const canary = stages[0]!.clusters;
    const reports = await this.agentReports(canary);
    const overrides = new Map([[layer.id, layer.layer]]);
    const committed = await this.changes.apply(
      {
        kind: "layers",
        layers,
        hold,
        rollout: id,
        also: async (tx) => {
          const now = this.now();
          const clusters: Record<string, ClusterProgress> = {};
          stages.forEach((stage, i) => {
            for (const name of stage.clusters) {
              const target = i === 0 ? this.federation.effectiveWith(this.federation.identity(name), overrides).hash : null;
              clusters[name] = { stage: i, target, baseline: i === 0 ? baselineOf(reports.get(name)) : null, ackedVersion: null, skipped: false };
            }
          });
          try {
            await tx.query(
              `INSERT INTO rollouts (id, layer_id, from_version, to_version, state, stages, stage, stage_started_at, settings, clusters, emergency, correlation_id, created_by, created_at, updated_at)
               VALUES ($1, $2, $3, $4, 'running', $5, 0, $6, $7, $8, $9, $10, $11, $6, $6)`,
              [id, layer.id, layer.baseVersion, layer.baseVersion + 1, JSON.stringify(stages), now, JSON.stringify(settings), JSON.stringify(clusters), settings.emergency, context.correlationId, author],
            );
          } catch (error) {
            if ((error as { code?: string }).code === "23505") throw conflict(`layer ${layer.id} is being rolled out already (by another hub, just now): see polity rollout list`);
            throw error;
          }
          return [
            ...(also === undefined ? [] : await also(tx)),
            this.event("rollout.started", id, context, {
              layer: layer.id,
              fromVersion: layer.baseVersion,
              toVersion: layer.baseVersion + 1,
              stages: stages.map((s) => ({ name: s.name, clusters: [...s.clusters] })),
              settings: settings as unknown as Json,
              emergency: settings.emergency,
            }),
            this.event("rollout.stage-started", id, context, { stage: 0, name: "canary", clusters: [...canary] }),
          ];
        },
      },
      author,
      context,
      undefined,
      idempotencyKey,
    );
    return { committed, rollout: id };
  }

  /**
   * An emergency rollout skips the gates: only a fix to the locked baseline may, a change of
   * the global layer whose every added or changed policy is locked, and that removes none.
   */
  private emergencyAllowed(id: string, next: Layer | undefined): void {
    const refuse = (why: string) => unprocessable(`an emergency rollout (gates skipped) is for fixes to the locked baseline only: ${why}`);
    if (id !== "global" || next === undefined) throw refuse(`it changes layer ${id}, not the global layer`);
    const before = new Map((this.federation.layers.get(id)?.layer?.policies ?? []).map((p) => [p.document.metadata.name, JSON.stringify(p.document)]));
    const after = new Set(next.policies.map((p) => p.document.metadata.name));
    const removed = [...before.keys()].filter((name) => !after.has(name));
    if (removed.length > 0) throw refuse(`it removes ${removed.join(", ")}`);
    const unlocked = next.policies.filter((p) => before.get(p.document.metadata.name) !== JSON.stringify(p.document) && p.document.spec.locked !== true).map((p) => p.document.metadata.name);
    if (unlocked.length > 0) throw refuse(`it adds or changes ${unlocked.join(", ")}, which ${unlocked.length === 1 ? "is" : "are"} not locked`);
  }

  /** For a dry run: the stages a rollout would have, refused (422) as `start` would refuse them. */
  preview(settings: RolloutSettings, plan: Plan): Stage[] {
    const reached = plan.affected.filter((a) => a.before !== a.after.hash).map((a) => this.federation.identity(a.cluster));
    const { stages, problems } = planStages(settings, reached);
    if (problems.length > 0) throw fromPolityError(new PolityError("invalid", problems), "the rollout is refused");
    return stages;
  }

  private planned<T>(work: () => T): T {
    try {
      return work();
    } catch (error) {
      if (error instanceof PolityError) throw fromPolityError(error, "the change is refused");
      throw error;
    }
  }

  private event(kind: EntryKind, id: string, context: AuditContext, data: { [key: string]: Json }): AuditEvent {
    return { kind, actor: context.actor, cluster: null, region: null, correlationId: context.correlationId, data: { rollout: id, ...data } };
  }

  private async row(q: Queryable, id: string, lock = false): Promise<RolloutRow> {
    if (!/^[0-9a-f]{12}$/.test(id)) throw notFound(`${JSON.stringify(id)} is not a rollout id (12 hex digits)`);
    const [row] = await q.query<RolloutRow>(`SELECT *, revision::text AS revision FROM rollouts WHERE id = $1${lock ? " FOR UPDATE" : ""}`, [id]);
    if (row === undefined) throw notFound(`no rollout ${id}`);
    return row;
  }

  async get(id: string): Promise<RolloutView> {
    return rolloutView(await this.row(this.db, id));
  }

  async list(state?: RolloutState): Promise<RolloutView[]> {
    const rows = await this.db.query<RolloutRow>(`SELECT *, revision::text AS revision FROM rollouts${state === undefined ? "" : " WHERE state = $1"} ORDER BY created_at, id`, state === undefined ? [] : [state]);
    return rows.map((r) => rolloutView(r));
  }

  /** The rollout under way on a layer, or the newest one; undefined when there is none. */
  async newest(): Promise<RolloutView | undefined> {
    const [row] = await this.db.query<RolloutRow>("SELECT *, revision::text AS revision FROM rollouts ORDER BY (state IN ('running', 'paused')) DESC, created_at DESC, id LIMIT 1");
    return row === undefined ? undefined : rolloutView(row);
  }

  /** Pauses a running rollout (no stage starts or is judged) or resumes a paused one (its soak starts again). */
  async setPaused(id: string, paused: boolean, context: AuditContext): Promise<RolloutView> {
    await this.db.transaction(async (tx) => {
      const row = await this.row(tx, id, true);
      const from: RolloutState = paused ? "running" : "paused";
      if (row.state !== from) throw conflict(`rollout ${id} is ${row.state}: only a ${from} rollout can be ${paused ? "paused" : "resumed"}`);
      await tx.query("UPDATE rollouts SET state = $2, soak_since = NULL, updated_at = $3, revision = revision + 1 WHERE id = $1", [id, paused ? "paused" : "running", this.now()]);
      await this.audit.record(tx, [this.event(paused ? "rollout.paused" : "rollout.resumed", id, { ...context, correlationId: row.correlation_id }, { layer: row.layer_id, stage: row.stage })]);
    });
    return this.get(id);
  }

  /**
   * Returns every cluster to the layer's content before the rollout: that content written as
   * a new version of the layer (versions and bundle versions only grow) and published to the
   * clusters that had the new one. `aborted` for an operator's abort of a rollout under way,
   * `rolled-back` for a failed gate or an operator's rollback (also of a completed rollout,
   * while its layer has not moved on).
   */
  async rollBack(id: string, outcome: "rolled-back" | "aborted", reason: string, context: AuditContext): Promise<RolloutView> {
    const row = await this.row(this.db, id);
    const allowed: readonly RolloutState[] = outcome === "aborted" ? ACTIVE : [...ACTIVE, "completed"];
    if (!allowed.includes(row.state)) throw conflict(`rollout ${id} is ${row.state}: ${outcome === "aborted" ? "only a running or paused rollout can be aborted" : "there is nothing to roll back"}`);
    const current = this.federation.layers.get(row.layer_id);
    if (current?.version !== row.to_version) {
      throw conflict(`layer ${row.layer_id} moved on since rollout ${id} (it is at version ${current?.version ?? "none"}, the rollout wrote ${row.to_version}): apply the content you want instead`);
    }
    const before = row.from_version === 0 ? undefined : await this.federation.version(row.layer_id, row.from_version);
    const files = before?.files ?? [];
    const layer = files.length === 0 ? undefined : layersFromFiles(files)[0]?.layer;
    const active = ACTIVE.includes(row.state);
    const story = { ...context, correlationId: row.correlation_id };
    await this.changes.apply(
      {
        kind: "layers",
        layers: [{ id: row.layer_id, layer, files }],
        ...(active ? { rollout: id } : {}),
        also: async (tx) => {
          const locked = await this.row(tx, id, true);
          if (locked.state !== row.state || locked.revision !== row.revision) throw conflict(`rollout ${id} changed meanwhile (it is ${locked.state}); look again: polity rollout status ${id}`);
          await tx.query("UPDATE rollouts SET state = $2, reason = $3, updated_at = $4, revision = revision + 1 WHERE id = $1", [id, outcome, reason, this.now()]);
          return [this.event(outcome === "aborted" ? "rollout.aborted" : "rollout.rolled-back", id, story, { layer: row.layer_id, stage: row.stage, reason, restoredVersion: row.from_version, fromState: row.state })];
        },
      },
      `rollout:${id}`,
      story,
    );
    return this.get(id);
  }

  /** Drives every running rollout one step: judged, and moved on, rolled back or left to soak. */
  async tick(): Promise<void> {
    const rows = await this.db.query<RolloutRow>("SELECT *, revision::text AS revision FROM rollouts WHERE state = 'running' ORDER BY created_at");
    const failures: unknown[] = [];
    for (const row of rows) {
      try {
        await this.step(row);
      } catch (error) {
        // Another hub moved it, or the federation changed meanwhile: judged again next round.
        if (error instanceof StaleGeneration || (error instanceof ApiError && error.code === 409)) continue;
        failures.push(error); // one rollout's trouble does not hold the others back
      }
    }
    if (failures.length > 0) throw failures[0];
  }

  private async step(row: RolloutRow): Promise<void> {
    const started = performance.now();
    const stage = row.stages[row.stage]!;
    const now = this.now();
    const judgement = judgeStage({
      settings: row.settings,
      stage,
      stageStartedAt: new Date(row.stage_started_at).getTime(),
      soakSince: row.soak_since === null ? null : new Date(row.soak_since).getTime(),
      clusters: new Map(Object.entries(row.clusters)),
      reports: await this.agentReports(stage.clusters),
      now: now.getTime(),
    });
    const clusters = { ...row.clusters };
    for (const [name, version] of judgement.acknowledged) clusters[name] = { ...clusters[name]!, ackedVersion: version };
    for (const name of judgement.skipped) clusters[name] = { ...clusters[name]!, skipped: true };
    const soakSince = judgement.outcome.kind === "soak" ? new Date(judgement.outcome.since) : null;
    // What judging cost this hub (the reports read and the gates evaluated), for rollout status and the benchmark.
    const measured = { gates: judgement.gates, states: Object.fromEntries(judgement.states), judgedInMs: Math.round((performance.now() - started) * 100) / 100 };
    const story: AuditContext = { actor: "hub", correlationId: row.correlation_id };
    const written = await this.db.transaction(async (tx) => {
      const updated = await tx.query<{ revision: string }>(
        "UPDATE rollouts SET clusters = $3, soak_since = $4, measured = $5, updated_at = $6, revision = revision + 1 WHERE id = $1 AND revision = $2 AND state = 'running' RETURNING revision::text AS revision",
        [row.id, row.revision, JSON.stringify(clusters), soakSince, JSON.stringify(measured), now],
      );
      if (updated.length === 0) return undefined;
      if (judgement.skipped.length > 0) {
        await this.audit.record(
          tx,
          judgement.skipped.map((name) => ({
            ...this.event("rollout.cluster-skipped", row.id, story, { layer: row.layer_id, stage: row.stage, reason: judgement.states.get(name)?.note ?? "silent" }),
            cluster: name,
            region: this.federation.clusters.get(name)?.region ?? null,
          })),
        );
      }
      return updated[0]!.revision;
    });
    if (written === undefined) return; // another hub moved it: judged again next round
    if (judgement.outcome.kind === "rollback") {
      await this.rollBack(row.id, "rolled-back", `gate failed in stage ${row.stage} (${stage.name}): ${judgement.outcome.reason}`, story);
    } else if (judgement.outcome.kind === "advance") {
      await this.advance({ ...row, clusters, revision: written });
    }
  }

  /** Starts the next stage (its bundles published, its baselines measured), or completes the rollout after the last. */
  private async advance(row: RolloutRow): Promise<void> {
    const next = row.stage + 1;
    const story: AuditContext = { actor: "hub", correlationId: row.correlation_id };
    const generation = this.federation.generation;
    const layer = this.federation.layers.get(row.layer_id);
    if (layer?.version !== row.to_version) return; // a reload is under way: next round
    const stage = row.stages[next];
    const reports = stage === undefined ? new Map<string, AgentReport>() : await this.agentReports(stage.clusters);
    const overrides = new Map([[row.layer_id, layer.layer]]);
    const sets = new Map<string, EffectivePolicySet>();
    for (const name of stage?.clusters ?? []) {
      if (!this.federation.clusters.has(name)) continue; // removed since
      sets.set(name, this.federation.effectiveWith(this.federation.identity(name), overrides));
    }
    await this.federation.transaction(
      generation,
      async (tx) => {
        const locked = await this.row(tx, row.id, true);
        if (locked.revision !== row.revision || locked.state !== "running") throw conflict(`rollout ${row.id} changed meanwhile`);
        const now = this.now();
        if (stage === undefined) {
          await tx.query("UPDATE rollouts SET state = 'completed', soak_since = NULL, updated_at = $2, revision = revision + 1 WHERE id = $1", [row.id, now]);
          await this.audit.record(tx, [this.event("rollout.completed", row.id, story, { layer: row.layer_id, stages: row.stages.length })]);
          return;
        }
        const clusters = { ...row.clusters };
        for (const name of stage.clusters) clusters[name] = { stage: next, target: sets.get(name)?.hash ?? null, baseline: baselineOf(reports.get(name)), ackedVersion: null, skipped: !sets.has(name) };
        await tx.query("UPDATE rollouts SET stage = $2, stage_started_at = $3, soak_since = NULL, clusters = $4, measured = '{}', updated_at = $3, revision = revision + 1 WHERE id = $1", [
          row.id,
          next,
          now,
          JSON.stringify(clusters),
        ]);
        const items: BundleItem[] = [...sets].filter(([name, set]) => this.bundles.due(name, set.hash)).map(([name, set]) => ({ cluster: name, region: this.federation.clusters.get(name)!.region, set }));
        const events = await this.bundles.publish(tx, items, story);
        events.push(this.event("rollout.stage-started", row.id, story, { layer: row.layer_id, stage: next, name: stage.name, clusters: [...stage.clusters] }));
        await this.audit.record(tx, events);
      },
      () => ({ effective: sets }),
    );
  }
}
