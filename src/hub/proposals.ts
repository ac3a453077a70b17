/**
 * Change proposals. A proposal holds layer files, the version of each layer it changes as it
 * was when proposed, its diff, and the teams whose approval it needs (governance decides
 * which: the owners of what it touches). Members of those teams approve it, never its
 * proposer; once every team has, it is applied as one change whose audit entries carry the
 * proposal's correlation id. A proposal whose layers moved on since is stale: it cannot be
 * approved or applied, only proposed again on the new versions. This module owns `proposals`.
 */
import { randomBytes } from "node:crypto";
import type { SourceFile } from "../api/fields.js";
import { isProposalState, type ProposalState, type ProposalView } from "../api/proposals.js";
import type { AuditEvent } from "../audit/entry.js";
import { approvalsNeeded, fileExceptionRefusal, isMember, teamsOf, type Actor, type Need } from "../governance/index.js";
import type { Layer, LayerPolicy } from "../policy/layer.js";
import type { Database, Queryable } from "../store/database.js";
import { layerDiff } from "./audit-events.js";
import type { AuditContext, AuditLog } from "./audit-log.js";
import type { Change, Changes, LayerInput } from "./change.js";
import type { Federation } from "./federation.js";
import { conflict, forbidden, notFound, unprocessable } from "./status.js";

type Approval = { readonly team: string; readonly by: string; readonly at: string };
/** A layer's diff, and its region (a new cluster layer's region is known only from its files). */
type Diff = { readonly id: string; readonly region?: string; readonly added: string[]; readonly removed: string[]; readonly changed: string[] };

type ProposalRow = {
  readonly id: string;
  readonly title: string | null;
  readonly files: SourceFile[];
  readonly bases: Record<string, number>;
  readonly diff: Diff[];
  readonly needs: Need[];
  readonly approvals: Approval[];
  readonly proposed_by: string;
  readonly proposed_at: Date;
  readonly state: string;
  readonly decided_by: string | null;
  readonly decided_at: Date | null;
  readonly reason: string | null;
  readonly correlation_id: string;
};

const iso = (d: Date | null) => (d === null ? null : new Date(d).toISOString());

/** Open proposals one person may have at once: each holds its files in the database until it is answered. */
export const MAX_OPEN_PER_PROPOSER = 20;

const tierOf = (id: string) => (id === "global" ? "global" : id.startsWith("region/") ? "region" : "cluster");

export class Proposals {
  constructor(
    private readonly db: Database,
    private readonly federation: Federation,
    private readonly changes: Changes,
    private readonly audit: AuditLog,
    private readonly now: () => Date,
  ) {}

  private state(row: ProposalRow): ProposalState {
    if (!isProposalState(row.state)) throw new Error(`proposal ${row.id} has an unknown state ${JSON.stringify(row.state)}`);
    return row.state;
  }

  /** Layers that moved on since the proposal, with their versions then and now. */
  private moved(row: ProposalRow): { id: string; then: number; now: number }[] {
    return Object.entries(row.bases)
      .map(([id, then]) => ({ id, then, now: this.federation.layers.get(id)?.version ?? 0 }))
      .filter((l) => l.then !== l.now);
  }

  private view(row: ProposalRow, withFiles: boolean): ProposalView {
    const state = this.state(row);
    return {
      id: row.id,
      title: row.title,
      state,
      stale: state === "open" && this.moved(row).length > 0,
      layers: row.diff.map(({ region: _region, ...d }) => ({ ...d, baseVersion: row.bases[d.id] ?? 0, currentVersion: this.federation.layers.get(d.id)?.version ?? 0 })),
      needs: row.needs.map((n) => {
        const approval = row.approvals.find((a) => a.team === n.team);
        return { ...n, approvedBy: approval?.by ?? null, approvedAt: approval?.at ?? null };
      }),
      proposedBy: row.proposed_by,
      proposedAt: new Date(row.proposed_at).toISOString(),
      decidedBy: row.decided_by,
      decidedAt: iso(row.decided_at),
      reason: row.reason,
      correlationId: row.correlation_id,
      ...(withFiles ? { files: row.files } : {}),
    };
  }

  /**
   * The documents that define `policy` where a change of layer `layerId` refines them: in the
   * layers above it, and, for a policy of a local-protected domain, in the layers below it
   * that delegate it to this tier.
   */
  private definitions(layerId: string, policy: string, layer: Layer | undefined): LayerPolicy[] {
    const tier = tierOf(layerId);
    const region = layer?.region ?? (tier === "cluster" ? this.federation.clusters.get(layerId.slice("cluster/".length))?.region : undefined);
    const above = tier === "global" ? [] : tier === "region" ? ["global"] : ["global", `region/${region}`];
    const found: LayerPolicy[] = [];
    for (const id of above) found.push(...(this.federation.layers.get(id)?.layer?.policies ?? []).filter((p) => p.document.metadata.name === policy));
    // Below a region: its clusters' layers; below the global layer: every other layer; nothing below a cluster's.
    const isBelow = (id: string, below: Layer) => (tier === "global" ? id !== "global" : tier === "region" ? tierOf(id) === "cluster" && below.region === region : false);
    for (const record of this.federation.layers.values()) {
      const below = record.layer;
      if (below === undefined || !isBelow(record.id, below)) continue;
      found.push(...below.policies.filter((p) => p.document.metadata.name === policy && (p.document.spec.delegate ?? []).includes(tier)));
    }
    return found;
  }

  /** Records a proposal of `inputs` (already parsed, checked and planned by the caller). */
  async propose(actor: Actor, inputs: readonly LayerInput[], files: readonly SourceFile[], title: string | undefined, context: AuditContext): Promise<ProposalView> {
    const touched = inputs.filter((i) => {
      const record = this.federation.layers.get(i.id);
      return JSON.stringify(record?.layer ?? null) !== JSON.stringify(i.layer ?? null);
    });
    if (inputs.length === 0) throw unprocessable("the files hold no layer: give layer files with their Layer documents");
    if (touched.length === 0) throw unprocessable("the proposal changes nothing: every layer in it is as the hub has it");
    const [open] = await this.db.query<{ count: string }>("SELECT count(*)::text AS count FROM proposals WHERE state = 'open' AND proposed_by = $1", [actor.subject]);
    if (Number(open?.count ?? 0) >= MAX_OPEN_PER_PROPOSER) {
      throw conflict(`${actor.subject} has ${MAX_OPEN_PER_PROPOSER} open proposals: apply, reject or withdraw one (polity proposal reject <id>) before proposing more`);
    }
    const proposed = touched.map((i) => ({ id: i.id, before: this.federation.layers.get(i.id)?.layer, after: i.layer }));
    this.refuseFileExceptions(actor, proposed);
    const needs = approvalsNeeded(proposed, (id, policy) => this.definitions(id, policy, proposed.find((p) => p.id === id)?.after ?? proposed.find((p) => p.id === id)?.before));
    if (needs.length === 0) throw unprocessable("nobody owns what the proposal changes: give its layers owners and its policies owner teams");
    const bases = Object.fromEntries(touched.map((i) => [i.id, this.federation.layers.get(i.id)?.version ?? 0]));
    const diff: Diff[] = proposed.map((p) => {
      const region = p.after?.region ?? p.before?.region;
      return { id: p.id, ...(region === undefined ? {} : { region }), ...layerDiff(p.before, p.after) };
    });
    const id = randomBytes(6).toString("hex");
    await this.db.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO proposals (id, title, files, bases, diff, needs, approvals, proposed_by, proposed_at, state, correlation_id)
         VALUES ($1, $2, $3, $4, $5, $6, '[]', $7, $8, 'open', $9)`,
        [id, title ?? null, JSON.stringify(files), JSON.stringify(bases), JSON.stringify(diff), JSON.stringify(needs), actor.subject, this.now(), context.correlationId],
      );
      await this.audit.record(tx, [
        {
          kind: "proposal.created",
          actor: context.actor,
          cluster: null,
          region: this.regionOf(Object.keys(bases)),
          correlationId: context.correlationId,
          data: { proposal: id, title: title ?? null, proposedBy: actor.subject, bases, diff, needs: needs.map((n) => ({ ...n })) },
        },
      ]);
    });
    return this.get(id);
  }

  /** A proposal that writes an exception in a layer file is a global admin's to make and to apply, as a direct change is. */
  private refuseFileExceptions(actor: Actor, layers: readonly { id: string; before: Layer | undefined; after: Layer | undefined }[]): void {
    for (const { id, before, after } of layers) {
      const refusal = fileExceptionRefusal(actor, before, after);
      if (refusal !== undefined) throw forbidden(`layer ${id}: ${refusal}`);
    }
  }

  /** The one region the layers are confined to, if one. */
  private regionOf(layerIds: readonly string[]): string | null {
    const regions = new Set(
      layerIds.map((id) =>
        tierOf(id) === "global" ? null : tierOf(id) === "region" ? id.slice("region/".length) : (this.federation.clusters.get(id.slice("cluster/".length))?.region ?? null),
      ),
    );
    return regions.size === 1 ? [...regions][0]! : null;
  }

  private async row(id: string, q: Queryable = this.db, lock = false): Promise<ProposalRow> {
    const [row] = await q.query<ProposalRow>(`SELECT * FROM proposals WHERE id = $1${lock ? " FOR UPDATE" : ""}`, [id]);
    if (row === undefined) throw notFound(`no proposal ${JSON.stringify(id)}`);
    return row;
  }

  async get(id: string): Promise<ProposalView> {
    return this.view(await this.row(id), true);
  }

  /** The proposal's layers as it would write them (its files, parsed again by `parse`). */
  async files(id: string): Promise<readonly SourceFile[]> {
    return (await this.row(id)).files;
  }

  async list(state: ProposalState | undefined, visible: (view: ProposalView) => boolean): Promise<ProposalView[]> {
    // Without their files: a list stays small however large the proposals are.
    const rows = await this.db.query<ProposalRow>(
      "SELECT id, title, '[]'::jsonb AS files, bases, diff, needs, approvals, proposed_by, proposed_at, state, decided_by, decided_at, reason, correlation_id FROM proposals ORDER BY proposed_at, id",
    );
    return rows.map((r) => this.view(r, false)).filter((v) => (state === undefined || v.state === state) && visible(v));
  }

  /** The teams as the layers a proposal touches see them now (the global layer's, a region's, the layer's own). */
  private teams(row: ProposalRow) {
    const layers = new Set<Layer>();
    const add = (id: string) => {
      const layer = this.federation.layers.get(id)?.layer;
      if (layer !== undefined) layers.add(layer);
    };
    add("global");
    for (const { id, region } of row.diff) {
      add(id);
      if (region !== undefined) add(`region/${region}`);
    }
    return teamsOf([...layers]).teams;
  }

  private open(row: ProposalRow): void {
    const state = this.state(row);
    if (state !== "open") throw conflict(`proposal ${row.id} is ${state}`);
    const moved = this.moved(row);
    if (moved.length > 0) {
      throw conflict(
        `proposal ${row.id} is stale: ${moved.map((m) => `layer ${m.id} is at version ${m.now}, not ${m.then} as when it was proposed`).join("; ")}; rebase its files on the current versions (polity get layer) and propose again`,
      );
    }
  }

  /** Approves for every team it still needs that `actor` is a member of. */
  async approve(actor: Actor, id: string, context: AuditContext): Promise<ProposalView> {
    await this.db.transaction(async (tx) => {
      const row = await this.row(id, tx, true);
      this.open(row);
      if (actor.subject === row.proposed_by) throw forbidden(`${actor.subject} proposed this change: nobody approves their own proposal`);
      const teams = this.teams(row);
      const pending = row.needs.filter((n) => !row.approvals.some((a) => a.team === n.team));
      if (pending.length === 0) throw conflict(`proposal ${id} has every approval it needs: apply it (polity proposal apply ${id})`);
      const mine = pending.filter((n) => isMember(actor, teams.get(n.team)));
      if (mine.length === 0) {
        const given = row.approvals.filter((a) => a.by === actor.subject);
        if (given.length > 0) throw conflict(`${actor.subject} approved proposal ${id} already, for ${given.map((a) => a.team).join(", ")}; it still needs ${pending.map((n) => n.team).join(", ")}`);
        throw forbidden(`${actor.subject} is a member of none of the teams whose approval it still needs (${pending.map((n) => n.team).join(", ")})`);
      }
      const at = this.now().toISOString();
      const approvals = [...row.approvals, ...mine.map((n) => ({ team: n.team, by: actor.subject, at }))];
      await tx.query("UPDATE proposals SET approvals = $2 WHERE id = $1", [id, JSON.stringify(approvals)]);
      await this.audit.record(tx, [this.event("proposal.approved", row, context, { teams: mine.map((n) => n.team), approvedBy: actor.subject })]);
    });
    return this.get(id);
  }

  /** Rejects (a member of a team it needs, or a global admin) or withdraws (its proposer) an open proposal. */
  async reject(actor: Actor, id: string, reason: string | undefined, context: AuditContext): Promise<ProposalView> {
    await this.db.transaction(async (tx) => {
      const row = await this.row(id, tx, true);
      const state = this.state(row);
      if (state !== "open") throw conflict(`proposal ${id} is ${state}`);
      const withdrawn = actor.subject === row.proposed_by;
      const teams = this.teams(row);
      if (!withdrawn && !actor.admin && !row.needs.some((n) => isMember(actor, teams.get(n.team)))) {
        throw forbidden(`only its proposer, a member of a team it needs (${row.needs.map((n) => n.team).join(", ")}) or a global admin rejects proposal ${id}`);
      }
      await tx.query("UPDATE proposals SET state = $2, decided_by = $3, decided_at = $4, reason = $5 WHERE id = $1", [id, withdrawn ? "withdrawn" : "rejected", actor.subject, this.now(), reason ?? null]);
      await this.audit.record(tx, [this.event("proposal.rejected", row, context, { by: actor.subject, withdrawn, reason: reason ?? null })]);
    });
    return this.get(id);
  }

  /**
   * Applies an open, fully approved, fresh proposal: `inputs` are its files parsed again.
   * The layers, their bundles, the proposal's new state and its audit entries commit together.
   */
  /**
   * Applies a proposal as one change; `commit` commits it (by default at once; a staged
   * rollout's start commits it for its canary, with the proposal's state in the same transaction).
   */
  async apply(
    actor: Actor,
    author: string,
    id: string,
    inputs: readonly LayerInput[],
    context: AuditContext,
    commit: (change: Change & { kind: "layers" }, author: string, context: AuditContext) => Promise<unknown> = (change, by, ctx) => this.changes.apply(change, by, ctx),
  ): Promise<ProposalView> {
    const row = await this.row(id);
    this.open(row);
    const teams = this.teams(row);
    if (!actor.admin && actor.subject !== row.proposed_by && !row.needs.some((n) => isMember(actor, teams.get(n.team)))) {
      throw forbidden(`only its proposer, a member of a team it needs or a global admin applies proposal ${id}`);
    }
    const missing = row.needs.filter((n) => !row.approvals.some((a) => a.team === n.team));
    if (missing.length > 0) throw conflict(`proposal ${id} still needs the approval of ${missing.map((n) => `${n.team} (${n.why})`).join("; ")}`);
    const ctx = { actor: context.actor, correlationId: row.correlation_id };
    this.refuseFileExceptions(actor, inputs.map((i) => ({ id: i.id, before: this.federation.layers.get(i.id)?.layer, after: i.layer })));
    this.changes.checkLayers(undefined, inputs, this.now().getTime());
    await commit(
      {
        kind: "layers",
        layers: inputs,
        also: async (tx) => {
          const locked = await this.row(id, tx, true);
          this.open(locked);
          await tx.query("UPDATE proposals SET state = 'applied', decided_by = $2, decided_at = $3 WHERE id = $1", [id, actor.subject, this.now()]);
          const event: AuditEvent = this.event("proposal.applied", locked, ctx, { appliedBy: actor.subject });
          return [{ ...event, data: { ...event.data, approvals: locked.approvals.map((a) => ({ ...a })) } }];
        },
      },
      `${author}, proposal ${id}`,
      ctx,
    );
    return this.get(id);
  }

  private event(kind: AuditEvent["kind"], row: ProposalRow, context: AuditContext, data: Record<string, string | boolean | null | string[]>): AuditEvent {
    return { kind, actor: context.actor, cluster: null, region: this.regionOf(Object.keys(row.bases)), correlationId: row.correlation_id, data: { proposal: row.id, ...data } };
  }
}
