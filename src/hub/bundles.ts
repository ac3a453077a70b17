/**
 * The hub's bundles: for each registered cluster, its effective policy set signed with the
 * hub's bundle-signing key (Ed25519, sealed at rest like the CA key), with a version that
 * only grows, an expiry, and the revocation list.
 *
 * Bundles are made when something they contain changes (a layer, a label, a revocation)
 * and only for the clusters it reaches, in bulk, in one transaction; and re-signed before
 * they expire. Agents long-poll for theirs: a waiting request is answered as soon as its
 * cluster's bundle changes, in this process or (through the database) in another.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { canonicalJson } from "../canonical/index.js";
import { encodeBundle, keyIdOf, sha256Hash, signBundle, type Revocation } from "../bundle/index.js";
import { seal, unseal, type Sealed } from "../identity/secrets.js";
import type { Database, Queryable } from "../store/database.js";
import type { AuditEvent } from "../audit/entry.js";
import { newCorrelationId, type AuditContext, type AuditLog } from "./audit.js";
import type { Federation } from "./federation.js";
import type { IdentityService } from "./identity.js";

export interface SigningKey {
  readonly keyId: string;
  readonly privateKey: KeyObject;
  readonly publicKeyPem: string;
}

/** What a hub signs, each with its own key: bundles, and the audit log's tree heads. */
export type KeyPurpose = "bundles" | "audit-log";

/** A hub signing key (Ed25519): created once (by whichever hub gets there first), sealed at rest. */
export async function loadSigningKey(db: Database, operatorKey: string, purpose: KeyPurpose = "bundles"): Promise<SigningKey> {
  return db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock(7346203)");
    const [row] = await tx.query<{ public_key_pem: string; private_key_sealed: Sealed }>(
      "SELECT public_key_pem, private_key_sealed FROM signing_keys WHERE purpose = $1 ORDER BY created_at DESC LIMIT 1",
      [purpose],
    );
    if (row !== undefined) {
      const privateKey = createPrivateKey(unseal(row.private_key_sealed, operatorKey).toString("utf8"));
      return { keyId: keyIdOf(createPublicKey(privateKey)), privateKey, publicKeyPem: row.public_key_pem };
    }
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const publicKeyPem = publicKey.export({ type: "spki", format: "pem" }).toString();
    const keyId = keyIdOf(publicKey);
    const sealed = seal(privateKey.export({ type: "pkcs8", format: "pem" }).toString(), operatorKey);
    await tx.query("INSERT INTO signing_keys (id, purpose, public_key_pem, private_key_sealed) VALUES ($1, $2, $3, $4)", [keyId, purpose, publicKeyPem, JSON.stringify(sealed)]);
    return { keyId, privateKey, publicKeyPem };
  });
}

interface Current {
  readonly version: number;
  readonly targetHash: string;
  readonly revocationsHash: string;
  readonly expiresAt: number;
  /** The metadata line, with its trailing newline. */
  readonly envelope: Buffer;
}

export interface BundleOptions {
  /** How long a bundle is valid (default 24 h); it is re-signed when less than half remains. */
  readonly validityMs: number;
  readonly now: () => Date;
}

type Waiter = (version: number) => void;

export class BundleService {
  private readonly current = new Map<string, Current>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private revocationsCache: { at: string; list: Revocation[]; hash: string } | undefined;

  constructor(
    private readonly db: Database,
    private readonly federation: Federation,
    private readonly identity: IdentityService,
    readonly key: SigningKey,
    private readonly options: BundleOptions,
    private readonly audit: AuditLog,
  ) {
    federation.onReload((since) => this.reload(since));
  }

  /** Loads bundle rows written since `since` (another process's, or our own), and wakes their waiters. */
  private async reload(since: string): Promise<void> {
    const rows = await this.db.query<{ cluster: string; version: string; target_hash: string; revocations_hash: string; expires_at: Date; envelope: string }>(
      "SELECT cluster, version::text AS version, target_hash, revocations_hash, expires_at, envelope FROM bundles WHERE revision > $1",
      [since],
    );
    for (const row of rows) {
      const version = Number(row.version);
      const held = this.current.get(row.cluster);
      if (held !== undefined && held.version >= version) continue;
      this.current.set(row.cluster, {
        version,
        targetHash: row.target_hash,
        revocationsHash: row.revocations_hash,
        expiresAt: new Date(row.expires_at).getTime(),
        envelope: Buffer.from(`${row.envelope}\n`, "utf8"),
      });
      this.wake(row.cluster, version);
    }
  }

  private async revocations(): Promise<{ list: Revocation[]; hash: string }> {
    const list = (await this.identity.revocations())
      .filter((r) => r.notAfter.getTime() + 7 * 24 * 3600 * 1000 > this.options.now().getTime())
      .map((r) => ({ serial: r.serial, cluster: r.cluster }));
    return { list, hash: sha256Hash(Buffer.from(canonicalJson(list), "utf8")) };
  }

  /**
   * Makes new bundles where they are due: the cluster's effective set or the revocation
   * list changed, the bundle expires within half its validity, or there is none. Writes
   * them in one transaction (with the generation, so other hubs reload them). Returns the
   * clusters that got a new bundle.
   */
  async refresh(clusters: Iterable<string>, context: AuditContext = { actor: "hub", correlationId: newCorrelationId() }): Promise<string[]> {
    const now = this.options.now();
    const revocations = await this.revocations();
    const due: { cluster: string; region: string; target: Buffer; targetHash: string }[] = [];
    for (const cluster of clusters) {
      const record = this.federation.clusters.get(cluster);
      if (record === undefined) continue;
      let set;
      try {
        set = this.federation.effectiveFor(cluster);
      } catch {
        continue; // layers that do not combine never get a bundle: the last good one stays
      }
      const held = this.current.get(cluster);
      if (
        held !== undefined &&
        held.targetHash === set.hash &&
        held.revocationsHash === revocations.hash &&
        held.expiresAt - now.getTime() > this.options.validityMs / 2
      ) {
        continue;
      }
      due.push({ cluster, region: record.region, target: set.bytes, targetHash: set.hash });
    }
    if (due.length === 0) return [];
    const expires = new Date(now.getTime() + this.options.validityMs);
    const generation = await this.db.transaction(async (tx) => {
      const [row] = await tx.query<{ generation: string }>("UPDATE federation SET generation = generation + 1 RETURNING generation::text AS generation");
      const events: AuditEvent[] = [];
      for (let i = 0; i < due.length; i += 500) events.push(...(await this.writeBatch(tx, due.slice(i, i + 500), revocations, now, expires, context)));
      await this.audit.record(tx, events);
      return row!.generation;
    });
    await this.federation.sync(generation);
    return due.map((d) => d.cluster);
  }

  private async writeBatch(
    tx: Queryable,
    batch: readonly { cluster: string; region: string; target: Buffer; targetHash: string }[],
    revocations: { list: Revocation[]; hash: string },
    now: Date,
    expires: Date,
    context: AuditContext,
  ): Promise<AuditEvent[]> {
    // Versions come from the database row (locked), so that they grow whichever hub writes.
    const versions = new Map(
      (await tx.query<{ cluster: string; version: string }>("SELECT cluster, version::text AS version FROM bundles WHERE cluster = ANY($1) FOR UPDATE", [batch.map((b) => b.cluster)])).map((r) => [
        r.cluster,
        Number(r.version),
      ]),
    );
    const values: string[] = [];
    const params: unknown[] = [];
    const events: AuditEvent[] = [];
    for (const item of batch) {
      const version = (versions.get(item.cluster) ?? 0) + 1;
      const bundle = signBundle(
        {
          federation: this.identity.federation,
          region: item.region,
          cluster: item.cluster,
          version,
          issuedAt: now.toISOString(),
          expires: expires.toISOString(),
          targetHash: item.targetHash,
          targetLength: item.target.length,
          revocations: revocations.list,
        },
        item.target,
        this.key.privateKey,
        this.key.keyId,
      );
      const envelope = canonicalJson(bundle.envelope);
      params.push(item.cluster, version, item.targetHash, revocations.hash, expires, envelope, now, context.correlationId);
      const n = params.length;
      values.push(`($${n - 7}, $${n - 6}, $${n - 5}, $${n - 4}, $${n - 3}, $${n - 2}, $${n - 1}, $${n})`);
      events.push({
        kind: "bundle.published",
        actor: context.actor,
        cluster: item.cluster,
        region: item.region,
        correlationId: context.correlationId,
        // The envelope is the signed metadata and its signature; it names the policy set's hash.
        data: { version, envelopeHash: sha256Hash(Buffer.from(envelope, "utf8")), targetHash: item.targetHash, revocationsHash: revocations.hash, expires: expires.toISOString() },
      });
    }
    await tx.query(
      `INSERT INTO bundles (cluster, version, target_hash, revocations_hash, expires_at, envelope, updated_at, correlation_id) VALUES ${values.join(", ")}
       ON CONFLICT (cluster) DO UPDATE SET version = EXCLUDED.version, target_hash = EXCLUDED.target_hash, revocations_hash = EXCLUDED.revocations_hash,
         expires_at = EXCLUDED.expires_at, envelope = EXCLUDED.envelope, updated_at = EXCLUDED.updated_at, correlation_id = EXCLUDED.correlation_id`,
      params,
    );
    return events;
  }

  /** The cluster's current bundle, as bytes; undefined when it has none. */
  bundleBytes(cluster: string): { version: number; bytes: Buffer } | undefined {
    const held = this.current.get(cluster);
    if (held === undefined) return undefined;
    let set;
    try {
      set = this.federation.effectiveFor(cluster);
    } catch {
      return undefined;
    }
    if (set.hash !== held.targetHash) return undefined; // a newer bundle is being made
    return { version: held.version, bytes: Buffer.concat([held.envelope, set.bytes]) };
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

  /** Clusters whose bundle expires within half its validity. */
  expiring(): string[] {
    const limit = this.options.now().getTime() + this.options.validityMs / 2;
    return [...this.federation.clusters.keys()].filter((c) => (this.current.get(c)?.expiresAt ?? 0) <= limit);
  }
}

export { encodeBundle };
