/**
 * The federation as one hub process holds it: the current version of every layer, every
 * registered cluster, and each cluster's effective policy set, computed on first use and
 * recomputed only for the clusters a change affects.
 *
 * The database is the truth. Every change bumps `federation.generation` in the same
 * transaction; before answering, a hub compares the generation it has with the
 * database's and reloads what changed, so that several hub processes on one PostgreSQL
 * serve the same federation.
 *
 * Changes are validated by the engine before they are written: a layer that would break a
 * lock or a bound for any registered cluster is refused with the engine's errors.
 */
import { canonicalJson, contentHash } from "../canonical/index.js";
import { PolityError, type Problem } from "../errors.js";
import { effectivePolicySet, type ClusterIdentity, type EffectivePolicySet } from "../layering/effective.js";
import { buildLayer, type Layer } from "../policy/layer.js";
import { parseDocuments, type SourceDocument } from "../source/parse.js";
import type { Database, Queryable } from "../store/database.js";
import { conflict } from "./status.js";

export interface SourceFile {
  readonly name: string;
  readonly content: string;
}

export interface ClusterRecord {
  readonly name: string;
  readonly region: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly revokedAt: string | null;
}

export interface LayerRecord {
  readonly id: string;
  readonly version: number;
  readonly author: string;
  readonly createdAt: string;
  readonly contentHash: string;
  readonly files: readonly SourceFile[];
  /** Undefined when the layer was deleted (its last version has no files). */
  readonly layer: Layer | undefined;
}

/**
 * A writer bumps the generation first in its transaction: the row lock orders writers,
 * and the rows it writes carry the new generation as their revision (a trigger sets it).
 */
async function bump(tx: Queryable, expected?: string): Promise<string> {
  const [row] = await tx.query<{ generation: string }>("UPDATE federation SET generation = generation + 1 RETURNING (generation - 1)::text AS previous, generation::text AS generation");
  const r = row as unknown as { previous: string; generation: string };
  if (expected !== undefined && r.previous !== expected) {
    throw conflict("the federation changed while this change was being validated (another change, here or through another hub); send it again");
  }
  return r.generation;
}

export function layerId(layer: Pick<Layer, "tier" | "region" | "cluster">): string {
  if (layer.tier === "global") return "global";
  return layer.tier === "region" ? `region/${layer.region}` : `cluster/${layer.cluster}`;
}

/** The hash of a layer's files: what makes two applies of the same content one version. */
export function filesHash(files: readonly SourceFile[]): string {
  return contentHash(canonicalJson([...files].sort((a, b) => (a.name < b.name ? -1 : 1)).map((f) => [f.name, f.content])));
}

function parseFiles(files: readonly SourceFile[]): SourceDocument[] {
  const problems: Problem[] = [];
  const docs: SourceDocument[] = [];
  for (const file of files) {
    try {
      docs.push(...parseDocuments(file.content, file.name));
    } catch (error) {
      if (!(error instanceof PolityError)) throw error;
      problems.push(...error.problems);
    }
  }
  if (problems.length > 0) throw new PolityError("invalid", problems);
  return docs;
}

/** Builds the layers that files describe: each Layer document with the documents of its files. */
export function layersFromFiles(files: readonly SourceFile[]): { layer: Layer; files: SourceFile[] }[] {
  const docs = parseFiles(files);
  const isLayer = (d: SourceDocument) => (d.value as { kind?: unknown } | null)?.kind === "Layer";
  const groups: { docs: SourceDocument[]; files: SourceFile[] }[] = [];
  const problems: Problem[] = [];
  if (docs.filter(isLayer).length === 1) {
    groups.push({ docs, files: [...files] });
  } else {
    for (const file of files) {
      const own = docs.filter((d) => d.file === file.name);
      if (own.length === 0) continue;
      if (!own.some(isLayer)) {
        problems.push({
          message: "no Layer document says which layer this file belongs to (global, which region, which cluster); add one, or apply the file together with its layer's Layer document",
          location: { file: file.name, line: 1, column: 1 },
        });
        continue;
      }
      groups.push({ docs: own, files: [file] });
    }
  }
  const out: { layer: Layer; files: SourceFile[] }[] = [];
  const seen = new Map<string, string>();
  for (const group of groups) {
    try {
      const layer = buildLayer(group.docs, { tier: "global", assumed: true });
      const id = layerId(layer);
      if (seen.has(id)) {
        problems.push({ message: `layer ${id} is described twice (also in ${seen.get(id)}); one apply writes each layer once`, location: { file: group.files[0]!.name, line: 1, column: 1 } });
        continue;
      }
      seen.set(id, group.files[0]!.name);
      if (layer.tier === "region" && layer.region === undefined) {
        problems.push({ message: "a region layer names its region (spec.region)", location: { file: group.files[0]!.name, line: 1, column: 1 } });
        continue;
      }
      out.push({ layer, files: group.files });
    } catch (error) {
      if (!(error instanceof PolityError)) throw error;
      problems.push(...error.problems);
    }
  }
  if (problems.length > 0) throw new PolityError("invalid", problems);
  return out;
}

export interface LayerChange {
  readonly id: string;
  readonly layer: Layer | undefined;
  readonly files: readonly SourceFile[];
  readonly contentHash: string;
  /** The version this change replaces (0: a new layer). */
  readonly baseVersion: number;
  readonly unchanged: boolean;
}

export interface Plan {
  /** The generation the plan was computed at: committing it after any other change is a conflict. */
  readonly generation: string;
  readonly changes: readonly LayerChange[];
  /** The registered clusters whose effective sets the change recomputes, with before and after. */
  readonly affected: readonly { cluster: string; before: string | undefined; after: EffectivePolicySet }[];
}

export class Federation {
  /** The generation this process has loaded; "-1" before the first load. */
  generation = "-1";
  readonly layers = new Map<string, LayerRecord>();
  readonly clusters = new Map<string, ClusterRecord>();
  private readonly effective = new Map<string, EffectivePolicySet>();
  private readonly listeners: ((since: string) => Promise<void>)[] = [];
  private reloading: Promise<void> = Promise.resolve();

  constructor(private readonly db: Database) {}

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
  private reload(generation: string): Promise<void> {
    const next = this.reloading.then(() => (BigInt(generation) > BigInt(this.generation) ? this.load(generation) : undefined));
    this.reloading = next.catch(() => undefined);
    return next;
  }

  private async load(generation: string): Promise<void> {
    const versions = await this.db.query<{ id: string; current_version: number }>("SELECT id, current_version FROM layers");
    const stale = new Set<string>();
    for (const { id, current_version } of versions) {
      if (this.layers.get(id)?.version === current_version) continue;
      const [v] = await this.db.query<{ version: number; author: string; created_at: Date; content_hash: string; files: SourceFile[] }>(
        "SELECT version, author, created_at, content_hash, files FROM layer_versions WHERE layer_id = $1 AND version = $2",
        [id, current_version],
      );
      if (v === undefined) continue;
      const built = v.files.length === 0 ? undefined : layersFromFiles(v.files)[0]?.layer;
      this.layers.set(id, { id, version: v.version, author: v.author, createdAt: new Date(v.created_at).toISOString(), contentHash: v.content_hash, files: v.files, layer: built });
      stale.add(id);
    }
    // Only the clusters written since the generation this process last loaded.
    const since = this.generation;
    for (const { name } of await this.db.query<{ name: string }>("SELECT name FROM cluster_tombstones WHERE revision > $1", [since])) {
      this.clusters.delete(name);
      this.effective.delete(name);
    }
    const rows = await this.db.query<{ name: string; region: string; labels: Record<string, string>; created_at: Date; updated_at: Date; revoked_at: Date | null }>(
      "SELECT name, region, labels, created_at, updated_at, revoked_at FROM clusters WHERE revision > $1",
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
    }
    for (const id of stale) for (const name of this.affectedBy(id)) this.effective.delete(name);
    this.generation = generation;
    for (const listener of this.listeners) await listener(since);
  }

  /** The clusters a change of layer `id` reaches. */
  affectedBy(id: string): string[] {
    if (id === "global") return [...this.clusters.keys()];
    const [tier, name] = id.split("/") as [string, string];
    if (tier === "region") return [...this.clusters.values()].filter((c) => c.region === name).map((c) => c.name);
    return this.clusters.has(name) ? [name] : [];
  }

  layersFor(cluster: ClusterIdentity, overrides?: ReadonlyMap<string, Layer | undefined>): Layer[] {
    const pick = (id: string) => (overrides?.has(id) ? overrides.get(id) : this.layers.get(id)?.layer);
    return [pick("global"), pick(`region/${cluster.region}`), pick(`cluster/${cluster.name}`)].filter((l): l is Layer => l !== undefined);
  }

  identity(record: ClusterRecord): ClusterIdentity {
    return { name: record.name, region: record.region, labels: record.labels };
  }

  /** A registered cluster's effective set; throws the engine's error when its layers do not combine. */
  effectiveFor(name: string): EffectivePolicySet {
    let set = this.effective.get(name);
    if (set === undefined) {
      const record = this.clusters.get(name);
      if (record === undefined) throw PolityError.of("not-found", `no cluster named ${JSON.stringify(name)}`);
      set = effectivePolicySet(this.layersFor(this.identity(record)), this.identity(record));
      this.effective.set(name, set);
    }
    return set;
  }

  /**
   * What applying these layers would do: validates them, and computes the effective set of
   * every registered cluster they reach. Throws the engine's errors (all of them) when any
   * cluster's layers would not combine.
   */
  plan(layers: readonly { id: string; layer: Layer | undefined; files: readonly SourceFile[] }[]): Plan {
    const changes: LayerChange[] = layers.map(({ id, layer, files }) => {
      const hash = filesHash(files);
      const current = this.layers.get(id);
      return { id, layer, files, contentHash: hash, baseVersion: current?.version ?? 0, unchanged: current !== undefined && current.contentHash === hash };
    });
    const overrides = new Map(changes.filter((c) => !c.unchanged).map((c) => [c.id, c.layer]));
    const affected = new Set(changes.filter((c) => !c.unchanged).flatMap((c) => this.affectedBy(c.id)));
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
    const results: Plan["affected"][number][] = [];
    for (const name of [...affected].sort()) {
      const identity = this.identity(this.clusters.get(name)!);
      try {
        let before: string | undefined;
        try {
          before = this.effectiveFor(name).hash;
        } catch {
          before = undefined;
        }
        results.push({ cluster: name, before, after: effectivePolicySet(this.layersFor(identity, overrides), identity) });
      } catch (error) {
        note(error);
      }
    }
    // A layer no registered cluster uses yet is still combined with the layers above it.
    for (const change of changes) {
      if (change.unchanged || change.layer === undefined || this.affectedBy(change.id).length > 0) continue;
      const layer = change.layer;
      const identity: ClusterIdentity =
        layer.tier === "cluster"
          ? { name: layer.cluster!, region: layer.region ?? "unregistered", labels: {} }
          : { name: `any-cluster-of-${layer.region ?? "the-federation"}`, region: layer.region ?? "unregistered", labels: {} };
      try {
        effectivePolicySet(this.layersFor(identity, overrides), identity);
      } catch (error) {
        note(error);
      }
    }
    if (problems.length > 0) throw new PolityError("merge-refused", problems);
    return { generation: this.generation, changes, affected: results };
  }

  /**
   * Writes a plan: a new version of each changed layer, by `author`, and the generation.
   * Refused as a conflict when another process changed one of the layers since the plan.
   */
  async commit(plan: Plan, author: string, extra?: (tx: Queryable) => Promise<void>): Promise<{ id: string; version: number }[]> {
    const written: { id: string; version: number }[] = [];
    const generation = await this.db.transaction(async (tx) => {
      const generation = await bump(tx, plan.generation);
      for (const change of plan.changes) {
        if (change.unchanged) continue;
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
        await tx.query("INSERT INTO layer_versions (layer_id, version, author, content_hash, files) VALUES ($1, $2, $3, $4, $5)", [
          change.id,
          version,
          author,
          change.contentHash,
          JSON.stringify(change.files),
        ]);
        written.push({ id: change.id, version });
      }
      if (extra !== undefined) await extra(tx);
      return generation;
    });
    await this.reload(generation);
    for (const result of plan.affected) this.effective.set(result.cluster, result.after);
    return written;
  }

  /** The effective set a cluster would have with this identity (registration, relabelling). */
  effectiveForNew(identity: ClusterIdentity): EffectivePolicySet {
    return effectivePolicySet(this.layersFor(identity), identity);
  }

  /**
   * Runs a change to clusters in one transaction with the generation bump, then reloads.
   * `validatedAt`: the generation the change was validated at; a change since is a conflict.
   */
  async write(work: (tx: Queryable) => Promise<unknown>, validatedAt?: string): Promise<void> {
    const generation = await this.db.transaction(async (tx) => {
      const generation = await bump(tx, validatedAt);
      await work(tx);
      return generation;
    });
    await this.reload(generation);
  }
}
