/**
 * The one way the federation changes: a validated change (layer files, a cluster
 * registered, relabelled, removed or revoked) is planned with the pure engine (the
 * effective set of every cluster it reaches, refused with the engine's errors if any of
 * them would not combine), then committed in one transaction: the generation bumped once,
 * the change written, the bundles it reaches signed and stored, and the audit events of
 * all of it recorded. An event is logged if and only if its change is committed, and a
 * committed change always has its bundles.
 *
 * Conflicts: a plan is made at a generation; if anything changed before it commits, it is
 * planned again on the new state (the engine validates again), unless a layer it writes
 * was itself changed meanwhile, which is the caller's conflict to resolve (409).
 */
import type { AuditEvent } from "../audit/entry.js";
import { MAX_BUNDLE_BYTES } from "../bundle/index.js";
import { PolityError, type Problem } from "../errors.js";
import type { ClusterIdentity, EffectivePolicySet } from "../layering/effective.js";
import type { Layer } from "../policy/layer.js";
import type { Queryable } from "../store/database.js";
import { layerChangeEvents } from "./audit-events.js";
import type { AuditContext, AuditLog } from "./audit-log.js";
import type { BundleItem, BundleService } from "./bundles.js";
import { filesHash, StaleGeneration, type Federation, type LayerWrite } from "./federation.js";
import type { IdentityService } from "./identity.js";
import { changeRefusal, teamsOf, undeclaredOwners, type Actor } from "../governance/index.js";
import { conflict, forbidden, fromPolityError, unprocessable } from "./status.js";
import type { Change, Committed, LayerInput, Plan, PlannedLayer } from "./change-types.js";
import { factsProblems } from "./intents.js";
import { timings } from "./timings.js";

export * from "./change-types.js";

/** A cluster's effective set, if it fits in a bundle (MAX_BUNDLE_BYTES): agents read no larger one. */
function bounded(cluster: string, set: EffectivePolicySet): EffectivePolicySet {
  if (set.byteLength > MAX_BUNDLE_BYTES) {
    throw PolityError.of("too-large", `cluster ${cluster}'s effective policy set would be ${set.byteLength} bytes; a bundle holds at most ${MAX_BUNDLE_BYTES}`);
  }
  return set;
}

export class Changes {
  constructor(
    private readonly federation: Federation,
    private readonly identity: IdentityService,
    private readonly bundles: BundleService,
    private readonly audit: AuditLog,
  ) {}

  /**
   * What the change would do; throws the engine's errors (all of them) when a cluster's
   * layers would not combine, or when a cluster's facts cannot hold what its intents make.
   */
  plan(change: Change): Plan {
    const plan = timings.time("change.plan", () => this.planAt(change));
    const registering = new Map(change.kind === "register" ? change.clusters.map((r) => [r.cluster.name, r]) : []);
    const before = (name: string) => {
      if (registering.has(name)) return undefined;
      try {
        return this.federation.effectiveFor(name);
      } catch {
        return undefined;
      }
    };
    const problems = factsProblems(plan.affected, (name) => (registering.has(name) ? registering.get(name)!.facts : this.federation.facts.get(name)), before);
    if (problems.length > 0) throw new PolityError("merge-refused", problems);
    return plan;
  }

  private planAt(change: Change): Plan {
    const generation = this.federation.generation;
    switch (change.kind) {
      case "layers":
        return this.planLayers(change, generation);
      case "register": {
        const listed = new Set<string>();
        const affected = change.clusters.map(({ cluster }) => {
          if (this.federation.clusters.has(cluster.name)) throw conflict(`cluster ${cluster.name} is already registered`);
          if (listed.has(cluster.name)) throw unprocessable(`cluster ${cluster.name} is listed twice`);
          listed.add(cluster.name);
          return { cluster: cluster.name, region: cluster.region, before: undefined, after: bounded(cluster.name, this.federation.effectiveWith(cluster)) };
        });
        return { change, generation, layers: [], affected };
      }
      case "relabel": {
        const identity = { ...this.federation.identity(change.cluster), labels: change.labels };
        const after = bounded(identity.name, this.federation.effectiveWith(identity));
        return { change, generation, layers: [], affected: [{ cluster: identity.name, region: identity.region, before: this.currentHash(identity.name), after }] };
      }
      case "grants": {
        const grants = change.grant(this.federation.granted);
        const reached = new Set(change.layers.flatMap((id) => this.federation.affectedBy(id)));
        const affected = [...reached].sort().map((name) => {
          const identity = this.federation.identity(name);
          return { cluster: name, region: identity.region, before: this.currentHash(name), after: bounded(name, this.federation.effectiveWith(identity, undefined, grants)) };
        });
        return { change, generation, layers: [], affected };
      }
      case "remove":
      case "revoke":
        // No effective set changes: the hubs refuse the cluster's certificates from the next request on.
        this.federation.identity(change.cluster);
        return { change, generation, layers: [], affected: [] };
    }
  }

  /**
   * What governance asks of a change of layers by `actor`, before it is planned: the
   * owners of each layer and policy are declared teams (seen from that layer: its own and
   * the global layer's; a region's for a cluster layer), no team name is declared by two
   * layers; only
   * members of a policy's owner team change it, and only a global admin writes exceptions
   * in layer files (without an actor, for a dry run, who makes the change is not judged);
   * no exception written in a file has expired already, and no policy is kept past the
   * date its deprecation retires it.
   */
  checkLayers(actor: Actor | undefined, inputs: readonly LayerInput[], now: number): void {
    const next = new Map(inputs.map((i) => [i.id, i.layer]));
    const layerAt = (id: string) => (next.has(id) ? next.get(id) : this.federation.layers.get(id)?.layer);
    const problems: Problem[] = [];
    const current = (id: string) => this.federation.layers.get(id)?.layer;
    // Team names are unique in the federation: a team is judged in one place only, so that no
    // layer can declare another's team (and be a member of it) from above, below or beside.
    const declaredBy = new Map<string, string>();
    for (const id of new Set([...this.federation.layers.keys(), ...next.keys()])) {
      for (const team of layerAt(id)?.teams ?? []) {
        const name = team.document.metadata.name;
        const other = declaredBy.get(name);
        if (other === undefined) declaredBy.set(name, id);
        else if (next.has(id) || next.has(other)) {
          const [mine, theirs] = next.has(id) ? [id, other] : [other, id];
          problems.push({
            message: `layer ${mine}: team ${JSON.stringify(name)} is declared by layer ${theirs} already: team names are unique in the federation`,
            path: "metadata.name",
            ...(team.origin === undefined || !next.has(id) ? {} : { location: team.origin.locate(["metadata", "name"]) }),
          });
        }
      }
    }
    for (const input of inputs) {
      const before = current(input.id);
      const { teams } = teamsOf(chainOf(input.id, input.layer, layerAt));
      if (input.layer !== undefined) problems.push(...undeclaredOwners(input.layer, teams).map((p) => (p.location === undefined ? { ...p, message: `layer ${input.id}: ${p.message}` } : p)));
      const refusal = actor === undefined ? undefined : changeRefusal(actor, before, input.layer, { before: teamsOf(chainOf(input.id, before, current)).teams, after: teams });
      if (refusal !== undefined) throw forbidden(`layer ${input.id}: ${refusal}`);
      // A policy removed while a granted request excepts it: the exception would name nothing.
      const kept = new Set((input.layer?.policies ?? []).map((p) => p.document.metadata.name));
      for (const granted of this.federation.granted.byLayer.get(input.id) ?? []) {
        const { policy } = granted.document.spec;
        if (!kept.has(policy)) {
          const request = granted.document.metadata.name.replace(/^request-/, "");
          problems.push({ message: `layer ${input.id}: the change removes policy ${JSON.stringify(policy)}, which granted exception request ${request} excepts: withdraw it first (polity exception withdraw ${request})` });
        }
      }
      for (const policy of input.layer?.policies ?? []) {
        const replacement = policy.document.spec.deprecation?.replacement;
        if (replacement !== undefined && ![...new Set([...this.federation.layers.keys(), ...next.keys()])].some((id) => layerAt(id)?.policies.some((p) => p.document.metadata.name === replacement))) {
          problems.push({
            message: `policy ${JSON.stringify(policy.document.metadata.name)} names policy ${JSON.stringify(replacement)} as its replacement, and no layer defines it`,
            path: "spec.deprecation.replacement",
            ...(policy.origin === undefined ? {} : { location: policy.origin.locate(["spec", "deprecation", "replacement"]) }),
          });
        }
        const after = policy.document.spec.deprecation?.after;
        if (after !== undefined && Date.parse(after) <= now) {
          problems.push({
            message: `policy ${JSON.stringify(policy.document.metadata.name)} was retired on ${after} (spec.deprecation.after): remove it${policy.document.spec.deprecation?.replacement === undefined ? "" : ` in favour of ${policy.document.spec.deprecation.replacement}`}, or give it a new date`,
            path: "spec.deprecation.after",
            ...(policy.origin === undefined ? {} : { location: policy.origin.locate(["spec", "deprecation", "after"]) }),
          });
        }
      }
      for (const exception of input.layer?.exceptions ?? []) {
        const expiresAt = exception.document.spec.expiresAt;
        const unchanged = before?.exceptions.some((e) => JSON.stringify(e.document) === JSON.stringify(exception.document)) === true;
        if (!unchanged && Date.parse(expiresAt) <= now) {
          problems.push({
            message: `exception ${JSON.stringify(exception.document.metadata.name)} expired at ${expiresAt}, before it was applied: remove it, or give it a new spec.expiresAt`,
            path: "spec.expiresAt",
            ...(exception.origin === undefined ? {} : { location: exception.origin.locate(["spec", "expiresAt"]) }),
          });
        }
      }
    }
    // The global layer and region layers must still declare the teams that own the layers below them.
    for (const [id, record] of this.federation.layers) {
      if (next.has(id) || record.layer === undefined) continue;
      const above = upperLayerIds(record.layer).filter((i) => i !== id && next.has(i));
      if (above.length === 0) continue;
      const { teams } = teamsOf(chainOf(id, record.layer, layerAt));
      problems.push(...undeclaredOwners(record.layer, teams).map((p) => ({ message: `layer ${id}, as layer ${above.join(" and ")} would leave it: ${p.message}` })));
    }
    if (problems.length > 0) throw fromPolityError(new PolityError("invalid", problems), "the change is refused");
  }

  private currentSet(cluster: string): EffectivePolicySet | undefined {
    try {
      return this.federation.effectiveFor(cluster);
    } catch {
      return undefined;
    }
  }

  private currentHash(cluster: string): string | undefined {
    try {
      return this.federation.effectiveFor(cluster).hash;
    } catch {
      return undefined;
    }
  }

  private planLayers(change: Change & { kind: "layers" }, generation: string): Plan {
    const layers: PlannedLayer[] = change.layers.map(({ id, layer, files }) => {
      const hash = filesHash(files);
      const current = this.federation.layers.get(id);
      return { id, layer, files, contentHash: hash, baseVersion: current?.version ?? 0, unchanged: current !== undefined && current.contentHash === hash };
    });
    const changed = layers.filter((l) => !l.unchanged);
    for (const l of changed) {
      const rollout = this.federation.rollingOut.get(l.id);
      if (rollout !== undefined && rollout !== change.rollout) {
        throw conflict(`layer ${l.id} is being rolled out (rollout ${rollout}): it takes no other change until that rollout completes, is aborted or rolled back (polity rollout status ${rollout})`);
      }
    }
    const overrides = new Map(changed.map((l) => [l.id, l.layer]));
    const reached = new Set(changed.flatMap((l) => this.federation.affectedBy(l.id)));
    const problems: Problem[] = [];
    const seen = new Set<string>();
    const note = (error: unknown) => {
      if (!(error instanceof PolityError)) throw error;
      for (const p of error.problems) {
        const key = `${p.location?.file}:${p.location?.line}:${p.message}`;
        if (!seen.has(key)) problems.push(p);
        seen.add(key);
      }
    };
    const affected: Plan["affected"][number][] = [];
    // Clusters that cannot tell apart share one computation (Federation.effectiveWith).
    const memo = new Map<string, EffectivePolicySet>();
    for (const name of [...reached].sort()) {
      const identity = this.federation.identity(name);
      try {
        affected.push({ cluster: name, region: identity.region, before: this.currentHash(name), after: bounded(name, this.federation.effectiveWith(identity, overrides, undefined, memo)) });
      } catch (error) {
        note(error);
      }
    }
    // A layer no registered cluster uses yet is still combined with the layers above it.
    for (const { id, layer } of changed) {
      if (layer === undefined || this.federation.affectedBy(id).length > 0) continue;
      const identity: ClusterIdentity =
        layer.tier === "cluster"
          ? { name: layer.cluster!, region: layer.region ?? "unregistered", labels: {} }
          : { name: `any-cluster-of-${layer.region ?? "the-federation"}`, region: layer.region ?? "unregistered", labels: {} };
      try {
        this.federation.effectiveWith(identity, overrides);
      } catch (error) {
        note(error);
      }
    }
    if (problems.length > 0) throw new PolityError("merge-refused", problems);
    const hold = change.hold;
    if (hold !== undefined) {
      // Validated with the new layers above; published only as the rollout reaches them.
      return { change, generation, layers, affected: affected.map((a) => (hold.has(a.cluster) ? { ...a, after: this.currentSet(a.cluster) ?? a.after } : a)) };
    }
    return { change, generation, layers, affected };
  }

  /**
   * Plans and commits a change by `author`. A change elsewhere meanwhile makes it planned
   * again on the new state (a few times at most); `plan` may be given when the caller has
   * just made it.
   */
  async apply(change: Change, author: string, context: AuditContext, plan = this.plan(change), idempotencyKey?: string): Promise<Committed> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.commit(plan, author, context, idempotencyKey);
      } catch (error) {
        if (!(error instanceof StaleGeneration) || attempt >= 5) throw error;
        await this.federation.sync();
        const again = this.plan(change);
        const moved = again.layers.find((l, i) => l.baseVersion !== plan.layers[i]?.baseVersion);
        if (moved !== undefined) throw conflict(`layer ${moved.id} changed meanwhile (it is no longer at version ${plan.layers.find((l) => l.id === moved.id)?.baseVersion}); apply again`);
        plan = again;
      }
    }
  }

  private async commit(plan: Plan, author: string, context: AuditContext, idempotencyKey: string | undefined): Promise<Committed> {
    const change = plan.change;
    const writes = plan.layers.filter((l) => !l.unchanged);
    if (change.kind === "layers" && writes.length === 0) return { plan, written: [], certificates: 0 };
    return this.federation.transaction(
      plan.generation,
      async (tx) => {
        const events: AuditEvent[] = [];
        let written: { id: string; version: number }[] = [];
        let certificates = 0;
        switch (change.kind) {
          case "layers":
            written = await this.federation.writeLayers(tx, writes, author, context.correlationId, idempotencyKey);
            for (const w of writes) events.push(...layerChangeEvents(w, this.federation.layers.get(w.id), this.layerRegion(w), context));
            if (change.also !== undefined) events.push(...(await change.also(tx)));
            break;
          case "register":
            await this.federation.insertClusters(tx, change.clusters, author);
            for (const { cluster } of change.clusters) {
              events.push({ ...this.clusterEvent(cluster.name, cluster.region, context), kind: "cluster.registered", data: { labels: { ...cluster.labels } } });
            }
            break;
          case "relabel": {
            const { region, labels } = this.federation.identity(change.cluster);
            await this.federation.relabelCluster(tx, change.cluster, change.labels);
            events.push({ ...this.clusterEvent(change.cluster, region, context), kind: "cluster.relabelled", data: { before: { ...labels }, after: { ...change.labels } } });
            break;
          }
          case "grants":
            events.push(...(await change.write(tx)));
            break;
          case "remove":
          case "revoke": {
            const { region } = this.federation.identity(change.cluster);
            const revoked = await this.identity.revokeCertificates(tx, change.cluster, region, context);
            certificates = revoked.certificates;
            await this.federation.markRevoked(tx, change.cluster);
            if (change.kind === "remove") {
              await this.federation.deleteCluster(tx, change.cluster);
              events.push({ ...this.clusterEvent(change.cluster, region, context), kind: "cluster.removed", data: {} });
            }
            events.push(revoked.event);
            break;
          }
        }
        events.push(...(await this.publish(tx, plan, context)));
        await this.audit.record(tx, events);
        return { plan, written, certificates };
      },
      () => ({ layers: writes, effective: new Map(plan.affected.map((a) => [a.cluster, a.after])) }),
    );
  }

  /** The bundles a plan makes due, signed and written in its transaction; their events. */
  private async publish(tx: Queryable, plan: Plan, context: AuditContext): Promise<AuditEvent[]> {
    const items: BundleItem[] = plan.affected.filter((a) => this.bundles.due(a.cluster, a.after.hash)).map((a) => ({ cluster: a.cluster, region: a.region, set: a.after }));
    return this.bundles.publish(tx, items, context);
  }

  private clusterEvent(cluster: string, region: string, context: AuditContext) {
    return { actor: context.actor, cluster, region, correlationId: context.correlationId };
  }

  /** Where a layer applies, for the audit log: its region, or null for the global layer. */
  private layerRegion(write: LayerWrite): string | null {
    if (write.id === "global") return null;
    const [tier, name] = write.id.split("/") as [string, string];
    if (tier === "region") return name;
    return this.federation.clusters.get(name)?.region ?? write.layer?.region ?? this.federation.layers.get(write.id)?.layer?.region ?? null;
  }
}

/** The layers above a layer, whose teams it sees: the global layer, and its region's for a cluster layer. */
function upperLayerIds(layer: Layer | undefined): string[] {
  return ["global", ...(layer?.tier === "cluster" && layer.region !== undefined ? [`region/${layer.region}`] : [])];
}

/** The layers whose teams the layer `id` (as `layer`) sees: those above it, and itself. */
function chainOf(id: string, layer: Layer | undefined, layerAt: (id: string) => Layer | undefined): Layer[] {
  const chain = [...upperLayerIds(layer).filter((i) => i !== id).map(layerAt), layer];
  return chain.filter((l): l is Layer => l !== undefined);
}
