/**
 * Exceptions as requests. A request names a policy, its rules, a narrow scope, a
 * justification and an expiry; the hub checks it against the policy's bounds and finds the
 * team that answers it (the policy's owner in the layer that defines it). A member of that
 * team approves or denies it, never its requester; a team that does not answer within its
 * escalation time leaves it to the global admins too; a risk rule of the defining layer may
 * approve it at once. A granted exception is published, with its authenticated approver, by
 * the layer that defines its policy, in the same transaction as its bundles; at its expiry it
 * is logged and leaves the next bundles. This module owns `exception_requests` and
 * `exception_expiries`.
 */
import { randomBytes } from "node:crypto";
import type { ExceptionRequest, ExceptionState, ExceptionView } from "../api/exceptions.js";
import type { AuditEvent } from "../audit/entry.js";
import { canonicalJson, type Json } from "../canonical/index.js";
import { approvalRefusal, approverTeam, approvingRule, isMember, requestProblems, teamsOf, type Actor, type PolicyOwnership } from "../governance/index.js";
import type { EffectivePolicy } from "../layering/effective.js";
import type { Layer } from "../policy/layer.js";
import type { Database, Queryable } from "../store/database.js";
import type { AuditContext, AuditLog } from "./audit-log.js";
import type { Changes } from "./change.js";
import { grantedException, type Federation } from "./federation.js";
import { lapseLayerFileExceptions, layerFileExceptionViews, type Visibility } from "./layer-file-exceptions.js";
import { badRequest, conflict, forbidden, notFound, unprocessable } from "./status.js";

type RequestRow = {
  readonly id: string;
  readonly name: string | null;
  readonly policy: string;
  readonly layer_id: string;
  readonly team: string;
  readonly spec: Record<string, unknown>;
  readonly region: string | null;
  readonly requested_by: string;
  readonly requested_at: Date;
  readonly escalate_at: Date;
  readonly state: ExceptionState;
  readonly escalated: boolean;
  readonly approved_by: string | null;
  readonly approved_at: Date | null;
  readonly decided_by: string | null;
  readonly decided_at: Date | null;
  readonly reason: string | null;
  readonly expires_at: Date;
};

const iso = (d: Date | null) => (d === null ? null : new Date(d).toISOString());

/**
 * A request as people see it at `now`: one past its expiry is expired from that instant,
 * whether or not a hub has swept it yet (the sweep logs it and takes it out of the bundles).
 */
function view(row: RequestRow, now: number): ExceptionView {
  const lapsed = (row.state === "pending" || row.state === "approved") && new Date(row.expires_at).getTime() <= now;
  return {
    id: row.id,
    name: row.name,
    policy: row.policy,
    layer: row.layer_id,
    team: row.team,
    source: "request",
    state: lapsed ? "expired" : row.state,
    escalated: row.escalated,
    spec: row.spec,
    region: row.region,
    requestedBy: row.requested_by,
    requestedAt: new Date(row.requested_at).toISOString(),
    escalateAt: iso(row.escalate_at),
    approvedBy: row.approved_by,
    approvedAt: iso(row.approved_at),
    decidedBy: row.decided_by,
    decidedAt: iso(row.decided_at),
    reason: row.reason,
    expiresAt: new Date(row.expires_at).toISOString(),
  };
}

export type { Visibility };

export class Exceptions {
  constructor(
    private readonly db: Database,
    private readonly federation: Federation,
    private readonly changes: Changes,
    private readonly audit: AuditLog,
    private readonly now: () => Date,
  ) {}

  /** The clusters a request reaches: those it names, those of the regions it names, or every registered one. */
  targets(scope: ExceptionRequest["spec"]["scope"]): string[] {
    const all = [...this.federation.clusters.values()];
    if (scope.clusters !== undefined) {
      for (const c of scope.clusters) if (!this.federation.clusters.has(c)) throw notFound(`no cluster named ${JSON.stringify(c)}`);
      return [...scope.clusters];
    }
    if (scope.regions !== undefined) return all.filter((c) => scope.regions!.includes(c.region)).map((c) => c.name);
    return all.map((c) => c.name);
  }

  /** The region a request is confined to, if one: what a region operator sees of it. */
  regionOf(scope: ExceptionRequest["spec"]["scope"]): string | null {
    const regions = new Set(scope.regions ?? this.targets(scope).map((c) => this.federation.clusters.get(c)!.region));
    return regions.size === 1 ? [...regions][0]! : null;
  }

  /** The policy as the request's clusters have it, and the layer that defines it (all of them must agree). */
  private ownership(policy: string, clusters: readonly string[]): PolicyOwnership & { layerId: string } {
    let found: (PolicyOwnership & { layerId: string }) | undefined;
    for (const cluster of clusters) {
      let effective: EffectivePolicy | undefined;
      try {
        effective = this.federation.effectiveFor(cluster).document.policies.find((p) => p.name === policy);
      } catch {
        continue;
      }
      if (effective === undefined) continue;
      const identity = this.federation.identity(cluster);
      const tier = effective.provenance[0]!.tier;
      const layerId = tier === "global" ? "global" : tier === "region" ? `region/${identity.region}` : `cluster/${identity.name}`;
      if (found !== undefined && found.layerId !== layerId) {
        throw unprocessable(`policy ${JSON.stringify(policy)} is defined by ${found.layerId} for some of the clusters asked for and by ${layerId} for others: request an exception for each separately`);
      }
      const defining: Layer | undefined = this.federation.layers.get(layerId)?.layer;
      const document = defining?.policies.find((p) => p.document.metadata.name === policy);
      if (defining === undefined || document === undefined) continue;
      found = { policy: effective, defining, document, layerId };
    }
    if (found === undefined) throw notFound(`no cluster the request reaches has a policy named ${JSON.stringify(policy)}`);
    return found;
  }

  /** Files a request; granted at once when a risk rule of the defining layer covers it. */
  async request(actor: Actor, request: ExceptionRequest, context: AuditContext): Promise<ExceptionView> {
    const spec = request.spec;
    if (spec.approvedBy !== undefined) throw badRequest("spec.approvedBy: a request names no approver; the hub records who approves it");
    const now = this.now().getTime();
    const clusters = this.targets(spec.scope);
    const owned = this.ownership(spec.policy, clusters);
    const problems = requestProblems(spec, owned, now);
    if (problems.length > 0) throw unprocessable(`the exception cannot be granted as asked: ${problems.join("; ")}`);
    const teams = teamsOf(this.layersOf(owned.layerId)).teams;
    const team = approverTeam(owned);
    const declared = teams.get(team);
    if (declared === undefined) throw unprocessable(`policy ${JSON.stringify(spec.policy)} is owned by ${JSON.stringify(team)}, which is not a declared team: nobody could approve the request`);
    const id = randomBytes(6).toString("hex");
    const stored = { policy: spec.policy, ...(spec.rules === undefined ? {} : { rules: spec.rules }), scope: spec.scope, justification: spec.justification, expiresAt: spec.expiresAt };
    const row = {
      id,
      name: request.name ?? null,
      policy: spec.policy,
      layerId: owned.layerId,
      team,
      region: this.regionOf(spec.scope),
      requestedBy: actor.subject,
      requestedAt: new Date(now),
      escalateAt: new Date(now + declared.escalateAfterMs),
    };
    const requested: AuditEvent = {
      kind: "exception.requested",
      actor: context.actor,
      cluster: clusters.length === 1 ? clusters[0]! : null,
      region: row.region,
      correlationId: context.correlationId,
      data: { request: id, layer: owned.layerId, team, requestedBy: actor.subject, exception: stored },
    };
    const insert = async (tx: Queryable) =>
      tx.query(
        `INSERT INTO exception_requests (id, name, policy, layer_id, team, spec, region, requested_by, requested_at, escalate_at, state, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11)`,
        [id, row.name, row.policy, row.layerId, team, JSON.stringify(stored), row.region, row.requestedBy, row.requestedAt, row.escalateAt, new Date(spec.expiresAt)],
      );
    const rule = approvingRule(spec, owned, (c) => this.federation.clusters.get(c)?.labels, now);
    if (rule === undefined) {
      await this.db.transaction(async (tx) => {
        await insert(tx);
        await this.audit.record(tx, [requested]);
      });
    } else {
      // Granted by the rule in the same change as its bundles: requested and approved at once.
      await this.grant(id, owned.layerId, stored, `rule:${rule.name}`, `within risk rule ${rule.name} of layer ${owned.layerId}`, context, async (tx) => {
        await insert(tx);
        return [requested];
      });
    }
    return this.get(id);
  }

  async get(id: string): Promise<ExceptionView> {
    return view(await this.row(id), this.now().getTime());
  }

  private async row(id: string, q: Queryable = this.db, lock = false): Promise<RequestRow> {
    const [row] = await q.query<RequestRow>(`SELECT * FROM exception_requests WHERE id = $1${lock ? " FOR UPDATE" : ""}`, [id]);
    if (row === undefined) throw notFound(`no exception request ${JSON.stringify(id)}`);
    return row;
  }

  /** The layers whose teams a request to `layerId` can see: the global layer, its region's for a cluster layer, and that layer. */
  private layersOf(layerId: string): Layer[] {
    const region = this.federation.layers.get(layerId)?.layer?.tier === "cluster" ? this.federation.layers.get(layerId)?.layer?.region : undefined;
    const ids = ["global", ...(region === undefined ? [] : [`region/${region}`]), layerId];
    return [...new Set(ids)].map((id) => this.federation.layers.get(id)?.layer).filter((l): l is Layer => l !== undefined);
  }

  /** Approves or denies a pending request, as `actor`. */
  async answer(actor: Actor, id: string, decision: "approve" | "deny", reason: string | undefined, context: AuditContext): Promise<ExceptionView> {
    const row = await this.row(id);
    if (row.state !== "pending") throw conflict(`exception request ${id} is ${row.state}, not pending: it has its answer`);
    const teams = teamsOf(this.layersOf(row.layer_id)).teams;
    const refusal = approvalRefusal(actor, { requestedBy: row.requested_by, team: row.team, escalated: row.escalated }, teams);
    if (refusal !== undefined) throw forbidden(refusal);
    if (decision === "deny") {
      await this.db.transaction(async (tx) => {
        await this.settle(tx, id, "denied", actor.subject, reason);
        await this.audit.record(tx, [this.event("exception.denied", row, context, { deniedBy: actor.subject, reason: reason ?? null })]);
      });
      return this.get(id);
    }
    if (new Date(row.expires_at).getTime() <= this.now().getTime()) throw unprocessable(`exception request ${id} expired at ${iso(row.expires_at)} before it was approved`);
    await this.grant(id, row.layer_id, row.spec, actor.subject, reason, context, async () => []);
    return this.get(id);
  }

  /** Withdraws a request (pending or granted): by its requester, a member of its team, or a global admin. */
  async withdraw(actor: Actor, id: string, reason: string | undefined, context: AuditContext): Promise<ExceptionView> {
    const row = await this.row(id);
    const teams = teamsOf(this.layersOf(row.layer_id)).teams;
    const may = actor.admin || actor.subject === row.requested_by || isMember(actor, teams.get(row.team));
    if (!may) throw forbidden(`only its requester, a member of team ${JSON.stringify(row.team)} or a global admin withdraws exception request ${id}`);
    if (row.state === "pending") {
      await this.db.transaction(async (tx) => {
        await this.settle(tx, id, "withdrawn", actor.subject, reason);
        await this.audit.record(tx, [this.event("exception.withdrawn", row, context, { withdrawnBy: actor.subject, reason: reason ?? null, wasGranted: false })]);
      });
    } else if (row.state === "approved") {
      await this.ungrant(row, "withdrawn", context, this.event("exception.withdrawn", row, context, { withdrawnBy: actor.subject, reason: reason ?? null, wasGranted: true }), actor.subject, reason);
    } else {
      throw conflict(`exception request ${id} is ${row.state}: there is nothing to withdraw`);
    }
    return this.get(id);
  }

  private event(kind: AuditEvent["kind"], row: RequestRow, context: AuditContext, data: Record<string, string | boolean | null>): AuditEvent {
    return { kind, actor: context.actor, cluster: null, region: row.region, correlationId: context.correlationId, data: { request: row.id, policy: row.policy, layer: row.layer_id, ...data } };
  }

  private async settle(tx: Queryable, id: string, state: ExceptionState, by: string, reason: string | undefined): Promise<void> {
    const now = this.now();
    await tx.query("UPDATE exception_requests SET state = $2, decided_by = $3, decided_at = $4, reason = $5 WHERE id = $1", [id, state, by, now, reason ?? null]);
    if (state === "approved") await tx.query("UPDATE exception_requests SET approved_by = $2, approved_at = $3 WHERE id = $1", [id, by, now]);
  }

  /**
   * Grants a request: its state, its audit entries and the bundles of every cluster its
   * layer reaches, in one change. `before` writes what comes first in the same transaction
   * (the request itself, when a risk rule grants it as it is filed).
   */
  private async grant(
    id: string,
    layerId: string,
    spec: unknown,
    approvedBy: string,
    reason: string | undefined,
    context: AuditContext,
    before: (tx: Queryable) => Promise<AuditEvent[]>,
  ): Promise<void> {
    const exception = grantedException(id, spec, approvedBy);
    if (exception === undefined) throw new Error(`exception request ${id} holds no exception`);
    await this.changes.apply(
      {
        kind: "grants",
        layers: [layerId],
        grant: (current) => ({
          ...current,
          byLayer: new Map(current.byLayer).set(layerId, [...(current.byLayer.get(layerId) ?? []).filter((e) => e.document.metadata.name !== exception.document.metadata.name), exception]),
        }),
        write: async (tx) => {
          const events = await before(tx);
          const row = await this.row(id, tx, true);
          if (row.state !== "pending") throw conflict(`exception request ${id} is ${row.state}, not pending: it has its answer`);
          await this.settle(tx, id, "approved", approvedBy, reason);
          events.push({
            kind: "exception.granted",
            actor: context.actor,
            cluster: null,
            region: row.region,
            correlationId: context.correlationId,
            data: { request: id, policy: row.policy, layer: layerId, approvedBy, reason: reason ?? null, exception: JSON.parse(canonicalJson(exception.document.spec)) as Json },
          });
          return events;
        },
      },
      approvedBy,
      context,
    );
  }

  /** Takes a granted request out of the bundles: withdrawn by someone, or expired. */
  private async ungrant(row: RequestRow, state: "withdrawn" | "expired", context: AuditContext, event: AuditEvent, by: string, reason: string | undefined): Promise<void> {
    await this.changes.apply(
      {
        kind: "grants",
        layers: [row.layer_id],
        grant: (current) => ({
          ...current,
          byLayer: new Map(current.byLayer).set(
            row.layer_id,
            (current.byLayer.get(row.layer_id) ?? []).filter((e) => e.document.metadata.name !== `request-${row.id}`),
          ),
        }),
        write: async (tx) => {
          const locked = await this.row(row.id, tx, true);
          if (locked.state !== "approved") throw conflict(`exception request ${row.id} is ${locked.state}, not granted`);
          await this.settle(tx, row.id, state, by, reason);
          return [event];
        },
      },
      by,
      context,
    );
  }

  /**
   * What time does to exceptions, run every few seconds by every hub (each step takes its
   * rows under lock, so two hubs never do one twice): a pending request its team left
   * unanswered past its escalation time is escalated; a granted one past its expiry
   * expires and leaves the bundles; a pending one past its expiry expires; and an exception
   * written in a layer file that has expired is logged and leaves the bundles too. Each is
   * logged once.
   */
  async sweep(context: () => AuditContext): Promise<void> {
    const now = this.now();
    const escalating = await this.db.query<RequestRow>("SELECT * FROM exception_requests WHERE state = 'pending' AND NOT escalated AND escalate_at <= $1", [now]);
    for (const row of escalating) {
      await this.db.transaction(async (tx) => {
        const updated = await tx.query("UPDATE exception_requests SET escalated = true WHERE id = $1 AND state = 'pending' AND NOT escalated RETURNING id", [row.id]);
        if (updated.length > 0) await this.audit.record(tx, [this.event("exception.escalated", row, context(), { team: row.team, escalateAt: iso(row.escalate_at) })]);
      });
    }
    for (const row of await this.db.query<RequestRow>("SELECT * FROM exception_requests WHERE state IN ('pending', 'approved') AND expires_at <= $1", [now])) {
      const ctx = context();
      const event = this.event("exception.expired", row, ctx, { expiresAt: iso(row.expires_at), wasGranted: row.state === "approved" });
      if (row.state === "approved") {
        await this.ungrant(row, "expired", ctx, event, "hub", undefined).catch(() => undefined); // another hub got there first
      } else {
        await this.db.transaction(async (tx) => {
          const updated = await tx.query("UPDATE exception_requests SET state = 'expired', decided_at = $2 WHERE id = $1 AND state = 'pending' RETURNING id", [row.id, now]);
          if (updated.length > 0) await this.audit.record(tx, [event]);
        });
      }
    }
    await lapseLayerFileExceptions(this.federation, this.changes, now, context);
  }

  /**
   * Exceptions by state, as `visibility` lets a principal see them: requests, and those a
   * global admin wrote in layer files (shown as such); with `active`, granted ones not yet
   * expired; with `expiringWithinMs`, granted ones expiring within that time.
   */
  async list(visibility: Visibility, filter: { state?: ExceptionState; active?: boolean; expiringWithinMs?: number }): Promise<ExceptionView[]> {
    const rows = await this.db.query<RequestRow>("SELECT * FROM exception_requests ORDER BY requested_at, id");
    const now = this.now().getTime();
    const seen = (r: RequestRow) => {
      if (visibility.all || r.region === visibility.region || r.requested_by === visibility.actor.subject) return true;
      return isMember(visibility.actor, teamsOf(this.layersOf(r.layer_id)).teams.get(r.team));
    };
    const granted = (v: ExceptionView) => v.state === "approved" && Date.parse(v.expiresAt) > now;
    return [...rows.filter(seen).map((r) => view(r, now)), ...layerFileExceptionViews(this.federation, visibility, now)]
      .filter((v) => filter.state === undefined || v.state === filter.state)
      .filter((v) => filter.active !== true || granted(v))
      .filter((v) => filter.expiringWithinMs === undefined || (granted(v) && Date.parse(v.expiresAt) <= now + filter.expiringWithinMs));
  }
}
