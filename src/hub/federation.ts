/**
 * The federation as one hub process holds it: the current version of every layer, every
 * registered cluster, and each cluster's effective policy set, computed on first use and
 * recomputed only for the clusters a change affects.
 *
 * The database is the truth. Every change bumps `federation.generation` first in its
 * transaction; before answering, a hub compares the generation it has with the
 * database's and reloads what changed, so that several hub processes on one PostgreSQL
 * serve the same federation. Writes go through `transaction`, which bumps the generation
 * and reloads once the change is committed; a change may hand over what it already
 * computed (parsed layers, effective sets) so that the reload does not compute it again.
 *
 * A staged rollout holds the clusters its stages have not reached yet at the layer's
 * previous version (read from `rollouts`, which src/hub/rollouts.ts owns): their effective
 * sets are computed with that version in place of the current one.
 *
 * This module owns `federation`, `layers`, `layer_versions` and `clusters`.
 */
import type { ClusterRecord } from "../api/clusters.js";
import type { ClusterFacts } from "../intents/facts.js";
import type { ReportedFacts } from "../api/intents.js";
import { FactsBook } from "./facts.js";
import type { SourceFile } from "../api/fields.js";
import { canonicalJson } from "../canonical/index.js";
import { PolityError } from "../errors.js";
import { effectivePolicySet, type ClusterIdentity, type EffectivePolicySet } from "../layering/effective.js";
import { layerId, type Layer, type LayerException } from "../policy/layer.js";
import type { Database, Queryable } from "../store/database.js";
import { layersFromFiles } from "../policy/layer-files.js";
import { grantedException, lapsedKey, memoKey, StaleGeneration, type Computed, type Granted, type LayerRecord, type LayerWrite, type Registration } from "./federation-records.js";
import { conflict } from "./status.js";
import { timings } from "./timings.js";

export { layerId, type ClusterRecord, type SourceFile };
export * from "./federation-records.js";

export class Federation {
  /** The generation this process has loaded; "-1" before the first load. */
  generation = "-1";
  readonly layers = new Map<string, LayerRecord>();
  /** Exceptions granted by request (exception_requests, approved), by layer. */
  granted: Granted = { byLayer: new Map(), lapsed: new Set() };
  readonly clusters = new Map<string, ClusterRecord>();
  /** Each cluster's facts, declared and reported: what its intents are rendered and checked with (facts.ts). */
  readonly facts = new FactsBook();
  private readonly effective = new Map<string, EffectivePolicySet>();
  /**
   * Each distinct effective set once, by its hash: clusters whose sets are equal share one
   * object, so its canonical bytes are assembled and held once, however many clusters it
   * serves (a set no cluster holds any more is let go).
   */
  private readonly distinct = new Map<string, WeakRef<EffectivePolicySet>>();
  private readonly released = new FinalizationRegistry<string>((hash) => {
    if (this.distinct.get(hash)?.deref() === undefined) this.distinct.delete(hash);
  });
  /** Clusters a rollout has not reached: the layers they keep at an earlier version, and that version's key (`id@version`). */
  private holds = new Map<string, { readonly key: string; readonly layers: ReadonlyMap<string, Layer | undefined> }>();
  /** The layers a rollout is under way on, and its id. */
  rollingOut: ReadonlyMap<string, string> = new Map();
  /** Earlier layer versions rollouts hold, parsed once. */
  private readonly heldVersions = new Map<string, Layer | undefined>();
  private readonly listeners: ((since: string) => Promise<void>)[] = [];
  private reloading: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Database,
    private readonly now: () => Date,
  ) {}

  /** Called after each reload with the generation loaded before it, to reload what depends on the federation. */
  onReload(listener: (since: string) => Promise<void>): void {
    this.listeners.push(listener);
  }

  /**
   * Brings this process up to date with the database, reloading only what changed.
   * `known`: a generation the caller has just read or written, to save the query.
   */
  async sync(known?: string): Promise<void> {
    let generation = known;
    if (generation === undefined) {
      const [row] = await this.db.query<{ generation: string }>("SELECT generation::text AS generation FROM federation");
      generation = row?.generation;
    }
    if (generation === undefined || generation === this.generation) return;
    await this.reload(generation);
  }

  /** Reloads are serialized: concurrent requests wait for the one under way. */
  private reload(generation: string, computed: Computed = {}): Promise<void> {
    const next = this.reloading.then(() => (BigInt(generation) > BigInt(this.generation) ? this.load(generation, computed) : undefined));
    this.reloading = next.catch(() => undefined);
    return next;
  }

  private async load(generation: string, computed: Computed): Promise<void> {
    const written = new Map((computed.layers ?? []).map((w) => [`${w.id}@${w.baseVersion + 1}`, w.layer]));
    const versions = await this.db.query<{ id: string; current_version: number }>("SELECT id, current_version FROM layers");
    const stale = new Set<string>();
    for (const { id, current_version } of versions) {
      if (this.layers.get(id)?.version === current_version) continue;
      const [v] = await this.db.query<{ version: number; author: string; created_at: Date; content_hash: string; files: SourceFile[] }>(
        "SELECT version, author, created_at, content_hash, files FROM layer_versions WHERE layer_id = $1 AND version = $2",
        [id, current_version],
      );
      if (v === undefined) continue;
      const key = `${id}@${v.version}`;
      // Parsed once: a version this process just wrote is not parsed again.
      const layer = written.has(key) ? written.get(key) : v.files.length === 0 ? undefined : layersFromFiles(v.files)[0]?.layer;
      this.layers.set(id, { id, version: v.version, author: v.author, createdAt: new Date(v.created_at).toISOString(), contentHash: v.content_hash, files: v.files, layer });
      stale.add(id);
    }
    // Only the clusters written since the generation this process last loaded.
    const since = this.generation;
    for (const { name } of await this.db.query<{ name: string }>("SELECT name FROM cluster_tombstones WHERE revision > $1", [since])) {
      this.clusters.delete(name);
      this.facts.delete(name);
      this.effective.delete(name);
    }
    const rows = await this.db.query<{ name: string; region: string; labels: Record<string, string>; facts: ClusterFacts | null; reported_facts: ReportedFacts | null; facts_reported_at: Date | null; created_at: Date; updated_at: Date; revoked_at: Date | null }>(
      "SELECT name, region, labels, facts, reported_facts, facts_reported_at, created_at, updated_at, revoked_at FROM clusters WHERE revision > $1",
      [since],
    );
    for (const r of rows) {
      const record: ClusterRecord = {
        name: r.name,
        region: r.region,
        labels: r.labels,
        createdAt: new Date(r.created_at).toISOString(),
        updatedAt: new Date(r.updated_at).toISOString(),
        revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at).toISOString(),
      };
      const previous = this.clusters.get(r.name);
      if (previous === undefined || previous.region !== record.region || canonicalJson(previous.labels) !== canonicalJson(record.labels)) {
        this.effective.delete(r.name);
      }
      this.clusters.set(r.name, record);
      this.facts.set(r.name, r.facts, r.reported_facts, r.facts_reported_at);
    }
    // Granted exceptions are few: read whole, and the clusters of a layer whose grants changed recomputed.
    const granted = await this.readGranted();
    for (const id of new Set([...granted.byLayer.keys(), ...this.granted.byLayer.keys()])) {
      if (JSON.stringify(granted.byLayer.get(id) ?? []) !== JSON.stringify(this.granted.byLayer.get(id) ?? [])) stale.add(id);
    }
    for (const key of granted.lapsed) if (!this.granted.lapsed.has(key)) stale.add(key.split("/").slice(0, -2).join("/"));
    this.granted = granted;
    await this.loadHolds();
    for (const id of stale) for (const name of this.affectedBy(id)) this.effective.delete(name);
    for (const [name, set] of computed.effective ?? []) if (this.clusters.has(name)) this.effective.set(name, this.shared(set));
    this.generation = generation;
    for (const listener of this.listeners) await listener(since);
  }

  /**
   * The holds of the rollouts under way (running or paused): each cluster in a stage after
   * the current one keeps the layer at the version before the rollout. A cluster whose hold
   * changed is computed again.
   */
  private async loadHolds(): Promise<void> {
    const rows = await this.db.query<{ id: string; layer_id: string; from_version: number; stages: { clusters: string[] }[]; stage: number }>(
      "SELECT id, layer_id, from_version, stages, stage FROM rollouts WHERE state IN ('running', 'paused')",
    );
    this.rollingOut = new Map(rows.map((r) => [r.layer_id, r.id]));
    const next = new Map<string, { key: string; layers: Map<string, Layer | undefined> }>();
    for (const row of rows) {
      const key = `${row.layer_id}@${row.from_version}`;
      if (!this.heldVersions.has(key)) {
        let layer: Layer | undefined;
        if (row.from_version > 0) {
          const [v] = await this.db.query<{ files: SourceFile[] }>("SELECT files FROM layer_versions WHERE layer_id = $1 AND version = $2", [row.layer_id, row.from_version]);
          layer = v === undefined || v.files.length === 0 ? undefined : layersFromFiles(v.files)[0]?.layer;
        }
        this.heldVersions.set(key, layer);
      }
      for (const stage of row.stages.slice(row.stage + 1)) {
        for (const cluster of stage.clusters) {
          const held = next.get(cluster) ?? { key: "", layers: new Map<string, Layer | undefined>() };
          held.layers.set(row.layer_id, this.heldVersions.get(key));
          held.key = [held.key, key].filter((k) => k !== "").sort().join(" ");
          next.set(cluster, held);
        }
      }
    }
    for (const cluster of new Set([...next.keys(), ...this.holds.keys()])) {
      if (next.get(cluster)?.key !== this.holds.get(cluster)?.key) this.effective.delete(cluster);
    }
    this.holds = next;
  }

  /** The layer versions a rollout holds this cluster at (`id@version`), or undefined. */
  heldAt(cluster: string): string | undefined {
    return this.holds.get(cluster)?.key;
  }

  /** The clusters a change of layer `id` reaches. */
  affectedBy(id: string): string[] {
    if (id === "global") return [...this.clusters.keys()];
    const [tier, name] = id.split("/") as [string, string];
    if (tier === "region") return [...this.clusters.values()].filter((c) => c.region === name).map((c) => c.name);
    return this.clusters.has(name) ? [name] : [];
  }

  /** The exceptions granted by request, as exception documents published by the layer that defines their policy. */
  private async readGranted(): Promise<Granted> {
    const rows = await this.db.query<{ id: string; layer_id: string; spec: unknown; decided_by: string }>(
      "SELECT id, layer_id, spec, decided_by FROM exception_requests WHERE state = 'approved' ORDER BY id",
    );
    const byLayer = new Map<string, LayerException[]>();
    for (const row of rows) {
      const exception = grantedException(row.id, row.spec, row.decided_by);
      if (exception === undefined) continue;
      byLayer.set(row.layer_id, [...(byLayer.get(row.layer_id) ?? []), exception]);
    }
    const lapsed = await this.db.query<{ layer_id: string; name: string; expires_at: Date }>("SELECT layer_id, name, expires_at FROM exception_expiries");
    return { byLayer, lapsed: new Set(lapsed.map((r) => lapsedKey(r.layer_id, r.name, new Date(r.expires_at).toISOString()))) };
  }

  /**
   * The layers of a cluster, upper tier first: the current ones, or `overrides` in their
   * place; each with the exceptions granted by request that it publishes (`grants` in
   * place of the current ones, for a change to them).
   */
  layersFor(cluster: ClusterIdentity, overrides?: ReadonlyMap<string, Layer | undefined>, grants: Granted = this.granted): Layer[] {
    const withGrants = (id: string, layer: Layer | undefined): Layer | undefined => {
      if (layer === undefined) return undefined;
      const extra = grants.byLayer.get(id) ?? [];
      const lapsed = grants.lapsed.size > 0 && layer.exceptions.some((e) => grants.lapsed.has(lapsedKey(id, e.document.metadata.name, e.document.spec.expiresAt)));
      if (extra.length === 0 && !lapsed) return layer;
      const kept = lapsed ? layer.exceptions.filter((e) => !grants.lapsed.has(lapsedKey(id, e.document.metadata.name, e.document.spec.expiresAt))) : layer.exceptions;
      return { ...layer, exceptions: [...kept, ...extra] };
    };
    const held = this.holds.get(cluster.name)?.layers;
    const pick = (id: string) => withGrants(id, overrides?.has(id) ? overrides.get(id) : held?.has(id) ? held.get(id) : this.layers.get(id)?.layer);
    return [pick("global"), pick(`region/${cluster.region}`), pick(`cluster/${cluster.name}`)].filter((l): l is Layer => l !== undefined);
  }

  identity(name: string): ClusterIdentity {
    const record = this.clusters.get(name);
    if (record === undefined) throw PolityError.of("not-found", `no cluster named ${JSON.stringify(name)}`);
    return { name: record.name, region: record.region, labels: record.labels };
  }

  /** A registered cluster's effective set; throws the engine's error when its layers do not combine. */
  effectiveFor(name: string): EffectivePolicySet {
    let set = this.effective.get(name);
    if (set === undefined) {
      const identity = this.identity(name);
      set = this.shared(effectivePolicySet(this.layersFor(identity), identity));
      this.effective.set(name, set);
    }
    return set;
  }

  /** The one object of this set's content (see `distinct`). */
  private shared(set: EffectivePolicySet): EffectivePolicySet {
    const known = this.distinct.get(set.hash)?.deref();
    if (known !== undefined) return known;
    this.distinct.set(set.hash, new WeakRef(set));
    this.released.register(set, set.hash);
    return set;
  }

  /** How many distinct effective sets the registered clusters hold (for the benchmarks and the README's model). */
  distinctSets(): number {
    return new Set([...this.effective.values()].map((s) => s.hash)).size;
  }

  /**
   * The effective set a cluster would have with this identity, and these layers and grants in
   * place of the current ones. `memo`, shared by the calls of one plan (same overrides and
   * grants), computes a set once for all the clusters that cannot tell apart (see `memoKey`).
   */
  effectiveWith(identity: ClusterIdentity, overrides?: ReadonlyMap<string, Layer | undefined>, grants?: Granted, memo?: Map<string, EffectivePolicySet>): EffectivePolicySet {
    const layers = this.layersFor(identity, overrides, grants);
    const key = memo === undefined ? undefined : memoKey(layers, identity);
    const known = key === undefined ? undefined : memo!.get(key);
    if (known !== undefined) return known;
    const set = effectivePolicySet(layers, identity);
    if (key !== undefined) memo!.set(key, set);
    return set;
  }

  /**
   * Runs a change in one transaction: the generation is bumped first (the row lock orders
   * writers, and every row written carries the new generation as its revision), then
   * `work` writes. `expected`: the generation the change was planned at; any change since
   * is a conflict. After the commit this process reloads, with what the change computed.
   */
  async transaction<T>(expected: string | undefined, work: (tx: Queryable) => Promise<T>, computed?: (result: T) => Computed): Promise<T> {
    const { generation, result } = await timings.timeAsync("change.transaction", () => this.db.transaction(async (tx) => {
      const [row] = await tx.query<{ previous: string; generation: string }>(
        "UPDATE federation SET generation = generation + 1 RETURNING (generation - 1)::text AS previous, generation::text AS generation",
      );
      if (expected !== undefined && row!.previous !== expected) {
        throw new StaleGeneration();
      }
      return { generation: row!.generation, result: await work(tx) };
    }));
    await timings.timeAsync("change.reload", () => this.reload(generation, computed?.(result) ?? {}));
    return result;
  }

  /**
   * Writes a new version of each layer, by `author`, with the change's correlation id and
   * the client's idempotency key (if it gave one). A layer changed by someone else since the
   * plan is a conflict.
   */
  async writeLayers(tx: Queryable, writes: readonly LayerWrite[], author: string, correlationId: string, idempotencyKey?: string): Promise<{ id: string; version: number }[]> {
    const written: { id: string; version: number }[] = [];
    for (const change of writes) {
      const version = change.baseVersion + 1;
      if (change.baseVersion === 0) {
        const inserted = await tx.query("INSERT INTO layers (id, tier, region, cluster, current_version) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING RETURNING id", [
          change.id,
          change.layer?.tier ?? change.id.split("/")[0],
          change.layer?.region ?? null,
          change.layer?.cluster ?? null,
          version,
        ]);
        if (inserted.length === 0) throw conflict(`layer ${change.id} was created by someone else meanwhile; apply again`);
      } else {
        const updated = await tx.query("UPDATE layers SET current_version = $1 WHERE id = $2 AND current_version = $3 RETURNING id", [version, change.id, change.baseVersion]);
        if (updated.length === 0) throw conflict(`layer ${change.id} changed meanwhile (it is no longer at version ${change.baseVersion}); apply again`);
      }
      await tx.query("INSERT INTO layer_versions (layer_id, version, author, content_hash, files, correlation_id, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7)", [
        change.id,
        version,
        author,
        change.contentHash,
        JSON.stringify(change.files),
        correlationId,
        idempotencyKey ?? null,
      ]);
      written.push({ id: change.id, version });
    }
    return written;
  }

  /** Inserts clusters, 2,000 rows per statement (one JSON document each); a name taken meanwhile (another hub) refuses them all. */
  async insertClusters(tx: Queryable, registrations: readonly Registration[], by: string): Promise<void> {
    for (let i = 0; i < registrations.length; i += 2000) {
      const rows = registrations.slice(i, i + 2000).map(({ cluster, facts }) => ({ n: cluster.name, r: cluster.region, l: cluster.labels, f: facts ?? null }));
      const inserted = await tx.query<{ name: string }>(
        `INSERT INTO clusters (name, region, labels, created_by, created_at, updated_at, facts)
         SELECT n, r, l, $2, $3, $3, f FROM json_to_recordset($1::json) AS j (n text, r text, l jsonb, f jsonb) ON CONFLICT (name) DO NOTHING RETURNING name`,
        [JSON.stringify(rows), by, this.now()],
      );
      if (inserted.length < rows.length) {
        const done = new Set(inserted.map((r) => r.name));
        throw conflict(`cluster ${rows.find((r) => !done.has(r.n))?.n ?? "of the list"} is already registered`);
      }
    }
  }

  async relabelCluster(tx: Queryable, name: string, labels: Readonly<Record<string, string>>): Promise<void> {
    await tx.query("UPDATE clusters SET labels = $1, updated_at = $2 WHERE name = $3", [JSON.stringify(labels), this.now(), name]);
  }

  async markRevoked(tx: Queryable, name: string): Promise<void> {
    await tx.query("UPDATE clusters SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL", [this.now(), name]);
  }

  async deleteCluster(tx: Queryable, name: string): Promise<void> {
    await tx.query("DELETE FROM clusters WHERE name = $1", [name]);
  }

  /** The layer versions a change with this idempotency key wrote (none: no such change was committed). */
  async writtenWith(idempotencyKey: string): Promise<{ id: string; version: number; contentHash: string; correlationId: string | null }[]> {
    const rows = await this.db.query<{ layer_id: string; version: number; content_hash: string; correlation_id: string | null }>(
      "SELECT layer_id, version, content_hash, correlation_id FROM layer_versions WHERE idempotency_key = $1 ORDER BY layer_id",
      [idempotencyKey],
    );
    return rows.map((r) => ({ id: r.layer_id, version: r.version, contentHash: r.content_hash, correlationId: r.correlation_id }));
  }

  /** Every version of a layer, oldest first. */
  async history(id: string): Promise<{ version: number; author: string; createdAt: string; contentHash: string; files: SourceFile[] }[]> {
    const rows = await this.db.query<{ version: number; author: string; created_at: Date; content_hash: string; files: SourceFile[] }>(
      "SELECT version, author, created_at, content_hash, files FROM layer_versions WHERE layer_id = $1 ORDER BY version",
      [id],
    );
    return rows.map((r) => ({ version: r.version, author: r.author, createdAt: new Date(r.created_at).toISOString(), contentHash: r.content_hash, files: r.files }));
  }

  /** One version of a layer, or undefined. */
  async version(id: string, version: number): Promise<{ version: number; author: string; createdAt: string; contentHash: string; files: SourceFile[] } | undefined> {
    const [row] = await this.db.query<{ author: string; created_at: Date; content_hash: string; files: SourceFile[] }>(
      "SELECT author, created_at, content_hash, files FROM layer_versions WHERE layer_id = $1 AND version = $2",
      [id, version],
    );
    return row === undefined ? undefined : { version, author: row.author, createdAt: new Date(row.created_at).toISOString(), contentHash: row.content_hash, files: row.files };
  }

  /** Whether the database answers (liveness); throws when it does not. */
  async reachable(): Promise<void> {
    await this.db.query("SELECT generation FROM federation");
  }

  /** The federation's name (its row is created once, with the federation). */
  static async create(tx: Queryable, name: string): Promise<void> {
    await tx.query("INSERT INTO federation (name) VALUES ($1)", [name]);
  }

  static async name(db: Queryable): Promise<string | undefined> {
    const [row] = await db.query<{ name: string }>("SELECT name FROM federation");
    return row?.name;
  }
}
