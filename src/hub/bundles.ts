/**
 * The hub's bundles: for each registered cluster, its effective policy set signed with the
 * hub's bundle-signing key (Ed25519, sealed at rest like the CA key), with a version that
 * only grows and an expiry. This module owns `bundles`.
 *
 * Bundles are made in the transaction of the change that alters them (a layer, a label),
 * only for the clusters it reaches, in bulk; and, level-triggered, for any cluster whose
 * bundle is missing, not its effective set, or near its expiry. A global hub signs none for
 * the clusters of a region with its own hub (that hub does; this one serves its copies). Agents long-poll for theirs: a waiting request is answered as soon as its
 * cluster's bundle changes, in this process or (through the database) in another.
 *
 * Clusters whose effective sets are equal share one target (the set names no cluster); each
 * has its own small signed metadata (cluster, region, version, expiry, target hash). A
 * change's bundles are audited by one `bundles.published` entry per region, naming the list
 * of them (src/bundle/publication.ts, kept in `bundle_publications`) by its hash.
 */
import { gzipSync } from "node:zlib";
import { canonicalJson, type Json } from "../canonical/index.js";
import { manifestsHash } from "./intents.js";
import { sha256Hash, signMetadata, type BundleMetadata, type Envelope } from "../bundle/index.js";
import { gzipStored } from "../bundle/gzip.js";
import { encodePublication, type PublishedBundle } from "../bundle/publication.js";
import type { EffectivePolicySet } from "../layering/effective.js";
import type { Database, Queryable } from "../store/database.js";
import type { AuditEvent } from "../audit/entry.js";
import { newCorrelationId, type AuditContext, type AuditLog } from "./audit-log.js";
import { StaleGeneration, type Federation } from "./federation.js";
import type { IdentityService } from "./identity.js";
import type { SigningKey } from "./keys.js";
import { timings } from "./timings.js";

/** A bundle to make: a cluster's effective set. */
export interface BundleItem {
  readonly cluster: string;
  readonly region: string;
  readonly set: EffectivePolicySet;
  /** The change the bundle carries, when not the publishing one's (a bundle re-signed with the same policies). */
  readonly correlationId?: string;
}

interface Current {
  readonly version: number;
  /** The key that signed it, and the root version it names (0: none). */
  readonly keyId: string;
  readonly rootVersion: number;
  readonly targetHash: string;
  readonly expiresAt: number;
  /** The change that made it. */
  readonly correlationId: string | null;
  /** The canonical facts it was signed with ("" for none): new facts make a new bundle. */
  readonly factsKey: string;
  /** The metadata line, with its trailing newline. */
  readonly envelope: Buffer;
}

export interface BundleOptions {
  /** How long a bundle is valid (default 24 h); it is re-signed when less than half remains. */
  readonly validityMs: number;
  readonly now: () => Date;
  /**
   * The regions whose clusters' bundles a regional hub signs, as `q` reads them (a global
   * hub's; default none). This hub serves those hubs' copies to their clusters and signs
   * none of its own for them: a change costs it nothing per such cluster. When a region's
   * hub is cut off, its clusters get bundles from here level-triggered (the refresh).
   */
  readonly signedElsewhere?: (q: Queryable) => Promise<ReadonlySet<string>>;
  /**
   * The versions another signer gave clusters' bundles, which their agents may hold: on a
   * global hub, a cut-off region's hub's, as last mirrored (read from the database, so a hub
   * restarted after a cut-off has them); on a regional hub, the parent's, as its mirror says
   * (for agents that held the global hub's bundles before their region had a hub). A bundle
   * made here is newer, or the agents would refuse it as a rollback, and one held here that
   * is not is made again by the refresh. Default none.
   */
  readonly versionFloors?: (q: Queryable) => Promise<ReadonlyMap<string, number>>;
}

type Waiter = (version: number) => void;

const NONE: ReadonlySet<string> = new Set();
const NO_FLOORS: ReadonlyMap<string, number> = new Map();

export class BundleService {
  private readonly current = new Map<string, Current>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  /** Each effective set's target, gzip-compressed once (about 7 times smaller), for as long as the set is held. */
  private readonly gzipped = new WeakMap<EffectivePolicySet, Buffer>();
  /** The root version new bundles name (src/trust); 0 before the hub has one. */
  private rootVersion = 0;
  /** Bundles that name an older root than this are made again (a key rotated or revoked). */
  private requiredRootVersion = 0;

  constructor(
    private readonly db: Database,
    private readonly federation: Federation,
    private readonly identity: IdentityService,
    public key: SigningKey,
    private readonly options: BundleOptions,
    private readonly audit: AuditLog,
  ) {
    federation.onReload((since) => this.reload(since));
  }

  /**
   * Signs from now on with `key`, naming root `rootVersion` (which lists it). With
   * `resign`, every bundle signed by another key or under an older root is due (the
   * level-triggered refresh makes them again): what a rotation or a revocation needs.
   */
  useKey(key: SigningKey, rootVersion: number, resign: boolean): void {
    this.key = key;
    this.rootVersion = rootVersion;
    // Bundles from before roots (naming none) are made again once, so that their agents
    // move to verifying under the root at their next bundle.
    this.requiredRootVersion = Math.max(this.requiredRootVersion, resign ? rootVersion : 1);
  }

  /** Loads bundle rows written since `since` (another process's, or our own), and wakes their waiters. */
  private async reload(since: string): Promise<void> {
    const start = performance.now();
    const rows = await this.db.query<{ cluster: string; version: string; target_hash: string; expires_at: Date; envelope: string; correlation_id: string | null }>(
      "SELECT cluster, version::text AS version, target_hash, expires_at, envelope, correlation_id FROM bundles WHERE revision > $1",
      [since],
    );
    for (const row of rows) {
      const version = Number(row.version);
      const held = this.current.get(row.cluster);
      if (held !== undefined && held.version >= version) continue;
      const facts = (JSON.parse(row.envelope) as { signed: { facts?: unknown } }).signed.facts;
      this.current.set(row.cluster, {
        version,
        keyId: /"keyId":"([0-9a-f]{64})"/.exec(row.envelope)?.[1] ?? "",
        rootVersion: Number(/"rootVersion":(\d+)/.exec(row.envelope)?.[1] ?? 0),
        targetHash: row.target_hash,
        expiresAt: new Date(row.expires_at).getTime(),
        correlationId: row.correlation_id,
        factsKey: facts === undefined ? "" : canonicalJson(facts),
        envelope: Buffer.from(`${row.envelope}\n`, "utf8"),
      });
      this.wake(row.cluster, version);
    }
    timings.add("bundles.reload", performance.now() - start);
    if (rows.length > 0) timings.moment("bundles.woken");
  }

  /** The regions whose clusters' bundles are signed by their regional hub (see BundleOptions). */
  private signedElsewhere(q: Queryable): Promise<ReadonlySet<string>> {
    return this.options.signedElsewhere?.(q) ?? Promise.resolve(NONE);
  }

  /** The canonical effective facts of a cluster ("" for none), as its bundle carries them. */
  private factsKey(cluster: string): string {
    return this.federation.facts.key(cluster);
  }

  /**
   * Whether a cluster's bundle must be made again: none, another policy set, other facts,
   * another key or root, half its validity gone, or not newer than another signer's (`floor`).
   */
  due(cluster: string, setHash: string, floor = 0): boolean {
    const held = this.current.get(cluster);
    return (
      held === undefined ||
      held.version <= floor ||
      held.targetHash !== setHash ||
      held.factsKey !== this.factsKey(cluster) ||
      held.keyId !== this.key.keyId ||
      held.rootVersion < this.requiredRootVersion ||
      held.expiresAt - this.options.now().getTime() <= this.options.validityMs / 2
    );
  }

  /**
   * Signs and writes bundles in the caller's transaction (the change that makes them, whose
   * generation bump makes other hubs reload them). Versions come from the locked rows, so
   * that they grow whichever hub writes. Stores the list of them per change and region,
   * and returns the `bundles.published` events to record, one per list.
   */
  async publish(tx: Queryable, items: readonly BundleItem[], context: AuditContext): Promise<AuditEvent[]> {
    // Read in the transaction: a region's hub cut off by a change committed first gets its bundles here.
    const elsewhere = await this.signedElsewhere(tx);
    if (elsewhere.size > 0) items = items.filter((i) => !elsewhere.has(i.region));
    const now = this.options.now();
    const expires = new Date(now.getTime() + this.options.validityMs);
    const published: { readonly item: BundleItem; readonly bundle: PublishedBundle; readonly correlationId: string }[] = [];
    for (let i = 0; i < items.length; i += 2000) published.push(...(await this.writeBatch(tx, items.slice(i, i + 2000), now, expires, context)));
    return this.record(tx, published, now, expires, context);
  }

  /** One list, one row and one audit event per change (correlation id) and region. */
  private async record(
    tx: Queryable,
    published: readonly { readonly item: BundleItem; readonly bundle: PublishedBundle; readonly correlationId: string }[],
    now: Date,
    expires: Date,
    context: AuditContext,
  ): Promise<AuditEvent[]> {
    const start = performance.now();
    const groups = new Map<string, { region: string; correlationId: string; bundles: PublishedBundle[] }>();
    for (const { item, bundle, correlationId } of published) {
      const key = `${correlationId}\n${item.region}`;
      let group = groups.get(key);
      if (group === undefined) groups.set(key, (group = { region: item.region, correlationId, bundles: [] }));
      group.bundles.push(bundle);
    }
    const events: AuditEvent[] = [];
    for (const { region, correlationId, bundles } of groups.values()) {
      const list = encodePublication(region, correlationId, expires.toISOString(), bundles);
      await tx.query(
        "INSERT INTO bundle_publications (list_hash, region, correlation_id, published_at, bundles, list) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (list_hash) DO NOTHING",
        [list.hash, region, correlationId, now, bundles.length, list.bytes],
      );
      events.push({
        kind: "bundles.published",
        actor: context.actor,
        // A list of one names its cluster, so that a search by cluster finds it.
        cluster: bundles.length === 1 ? bundles[0]!.cluster : null,
        region,
        correlationId,
        data: {
          bundles: bundles.length,
          targets: new Set(bundles.map((b) => b.targetHash)).size,
          listHash: list.hash,
          expires: expires.toISOString(),
          ...(bundles.length === 1 ? { version: bundles[0]!.version, envelopeHash: bundles[0]!.envelopeHash, targetHash: bundles[0]!.targetHash } : {}),
        },
      });
    }
    timings.add("bundles.list", performance.now() - start);
    return events;
  }

  /**
   * Level-triggered publication: makes a new bundle for every one of these clusters whose
   * bundle is due (see `due`), in a transaction of its own, at the generation it computed
   * them at (a change committed meanwhile, here or on another hub, makes it give up: the
   * next round computes again). A bundle re-signed with the same policies keeps the
   * correlation id of the change that made them. Clusters whose region has its own hub are
   * left to it (BundleOptions.signedElsewhere). Returns the clusters that got one.
   */
  async refresh(clusters: Iterable<string>, context: AuditContext = { actor: "hub", correlationId: newCorrelationId() }): Promise<string[]> {
    const generation = this.federation.generation;
    const elsewhere = await this.signedElsewhere(this.db);
    let floors: ReadonlyMap<string, number> | undefined;
    const items: BundleItem[] = [];
    for (const cluster of clusters) {
      const record = this.federation.clusters.get(cluster);
      if (record === undefined || elsewhere.has(record.region)) continue;
      floors ??= (await this.options.versionFloors?.(this.db)) ?? NO_FLOORS;
      let set;
      try {
        set = this.federation.effectiveFor(cluster);
      } catch {
        continue; // layers that do not combine never get a bundle: the last good one stays
      }
      if (!this.due(cluster, set.hash, floors.get(cluster))) continue;
      const held = this.current.get(cluster);
      const same = held !== undefined && held.targetHash === set.hash && held.correlationId !== null;
      items.push({ cluster, region: record.region, set, ...(same ? { correlationId: held.correlationId! } : {}) });
    }
    if (items.length === 0) return [];
    try {
      await this.federation.transaction(generation, async (tx) => this.audit.record(tx, await this.publish(tx, items, context)));
    } catch (error) {
      if (error instanceof StaleGeneration) return [];
      throw error;
    }
    return items.map((i) => i.cluster);
  }

  private async writeBatch(
    tx: Queryable,
    batch: readonly BundleItem[],
    now: Date,
    expires: Date,
    context: AuditContext,
  ): Promise<{ item: BundleItem; bundle: PublishedBundle; correlationId: string }[]> {
    // Versions come from the database row (locked), so that they grow whichever hub writes,
    // and pass any other signer's (versionFloors).
    const clusters = batch.map((b) => b.cluster);
    const versions = new Map(
      (await tx.query<{ cluster: string; version: string }>("SELECT cluster, version::text AS version FROM bundles WHERE cluster = ANY($1) FOR UPDATE", [clusters])).map((r) => [r.cluster, Number(r.version)]),
    );
    const floors = (await this.options.versionFloors?.(tx)) ?? NO_FLOORS;
    // One JSON parameter per batch, not seven per row: PostgreSQL (and PGlite above all)
    // parses one document far faster than thousands of bound parameters.
    const rows: { c: string; v: number; t: string; e: string; x: string }[] = [];
    const published: { item: BundleItem; bundle: PublishedBundle; correlationId: string }[] = [];
    const signing = performance.now();
    for (const item of batch) {
      const version = Math.max(versions.get(item.cluster) ?? 0, floors.get(item.cluster) ?? 0) + 1;
      // The facts its manifests are rendered with, and their hash: per cluster, so in the signed metadata.
      const facts = this.federation.facts.get(item.cluster);
      const signed = signMetadata(
        {
          federation: this.identity.federation,
          region: item.region,
          cluster: item.cluster,
          version,
          issuedAt: now.toISOString(),
          expires: expires.toISOString(),
          targetHash: item.set.hash,
          targetLength: item.set.byteLength,
          ...(facts === undefined ? {} : { facts: JSON.parse(canonicalJson(facts)) as Readonly<Record<string, Json>>, manifestsHash: manifestsHash(item.cluster, item.set, facts) }),
          ...(this.rootVersion > 0 ? { rootVersion: this.rootVersion } : {}),
        },
        this.key.privateKey,
        this.key.keyId,
      );
      const envelope = canonicalJson(signed);
      const correlationId = item.correlationId ?? context.correlationId;
      rows.push({ c: item.cluster, v: version, t: item.set.hash, e: envelope, x: correlationId });
      // The envelope is the signed metadata and its signature; it names the policy set's hash.
      published.push({ item, correlationId, bundle: { cluster: item.cluster, version, envelopeHash: sha256Hash(Buffer.from(envelope, "utf8")), targetHash: item.set.hash } });
    }
    timings.add("bundles.sign", performance.now() - signing);
    const storing = performance.now();
    await tx.query(
      `INSERT INTO bundles (cluster, version, target_hash, expires_at, envelope, updated_at, correlation_id)
       SELECT c, v, t, $2::timestamptz, e, $3::timestamptz, x FROM json_to_recordset($1::json) AS j (c text, v bigint, t text, e text, x text)
       ON CONFLICT (cluster) DO UPDATE SET version = EXCLUDED.version, target_hash = EXCLUDED.target_hash,
         expires_at = EXCLUDED.expires_at, envelope = EXCLUDED.envelope, updated_at = EXCLUDED.updated_at, correlation_id = EXCLUDED.correlation_id`,
      [JSON.stringify(rows), expires, now],
    );
    timings.add("bundles.store", performance.now() - storing);
    return published;
  }

  /**
   * The cluster's current bundle, as bytes; undefined when it has none. With `gzip`, as two
   * gzip members (RFC 1952 §2.2: one file's members decompress as one): the metadata line,
   * stored (src/bundle/gzip.ts), and the target, compressed once per effective set and shared by
   * every cluster that holds it. Agents verify what they decompress, as before; the
   * compression is the transport's only.
   */
  bundleBytes(cluster: string, gzip = false): { version: number; bytes: Buffer } | undefined {
    const parts = this.bundleParts(cluster);
    if (parts === undefined) return undefined;
    const { version, envelope, set } = parts;
    if (!gzip) return { version, bytes: Buffer.concat([envelope, set.bytes]) };
    let target = this.gzipped.get(set);
    if (target === undefined) this.gzipped.set(set, (target = gzipSync(set.bytes)));
    return { version, bytes: Buffer.concat([gzipStored(envelope), target]) };
  }

  /** The cluster's current bundle as its metadata line (with its newline) and the effective set whose target it names; undefined when it has none. */
  bundleParts(cluster: string): { version: number; envelope: Buffer; set: EffectivePolicySet } | undefined {
    const held = this.current.get(cluster);
    if (held === undefined) return undefined;
    let set;
    try {
      set = this.federation.effectiveFor(cluster);
    } catch {
      return undefined;
    }
    if (set.hash !== held.targetHash) return undefined; // a newer bundle is being made
    return { version: held.version, envelope: held.envelope, set };
  }

  /** The signed metadata of the cluster's current bundle. */
  signedMetadata(cluster: string): BundleMetadata | undefined {
    const held = this.current.get(cluster);
    return held === undefined ? undefined : (JSON.parse(held.envelope.toString("utf8")) as Envelope).signed;
  }

  version(cluster: string): number | undefined {
    return this.current.get(cluster)?.version;
  }

  /** Resolves with the new version when the cluster's bundle passes `version`, or undefined after `ms`. */
  waitForNewer(cluster: string, version: number, ms: number): Promise<number | undefined> {
    const held = this.current.get(cluster)?.version;
    if (held !== undefined && held !== version) return Promise.resolve(held);
    return new Promise((resolve) => {
      let set = this.waiters.get(cluster);
      if (set === undefined) this.waiters.set(cluster, (set = new Set()));
      const waiter: Waiter = (v) => {
        clearTimeout(timer);
        set!.delete(waiter);
        resolve(v);
      };
      const timer = setTimeout(() => {
        set!.delete(waiter);
        resolve(undefined);
      }, ms);
      set.add(waiter);
    });
  }

  private wake(cluster: string, version: number): void {
    for (const waiter of [...(this.waiters.get(cluster) ?? [])]) waiter(version);
  }

  /** Wakes every waiter (shutting down): they answer "no change" and the agents come back. */
  wakeAll(): void {
    for (const [cluster, set] of this.waiters) for (const waiter of [...set]) waiter(this.current.get(cluster)?.version ?? 0);
  }
}
