/**
 * Reconciliation, the regional side: brings the regional hub's database to its parent's
 * mirror, and settles what the parent answered about its region layer. Nothing is deleted
 * and nothing lost:
 * - the global layer is the parent's: a newer version replaces the one held; an older one
 *   (a parent restored from a backup) is refused and audited, the one held stays;
 * - a regional change that breaks the newer global layer (a lock set meanwhile) is reverted
 *   in the region, to the region layer the parent holds, as a new version (the reverted one
 *   stays in the history), and reported as a conflict on both sides;
 * - the region's clusters are the parent's registry: new ones registered, labels and
 *   revocations followed; a cluster is never removed or stripped because it went quiet.
 */
import { randomBytes } from "node:crypto";
import type { SourceFile } from "../../api/fields.js";
import type { Conflict, LayerCopy, Mirror, SummaryAnswer } from "../../api/regions.js";
import { canonicalJson } from "../../canonical/index.js";
import { PolityError } from "../../errors.js";
import { layersFromFiles } from "../../policy/layer-files.js";
import type { Layer } from "../../policy/layer.js";
import type { Database } from "../../store/database.js";
import { newCorrelationId, type AuditContext, type AuditLog } from "../audit-log.js";
import type { Changes, LayerInput } from "../change.js";
import type { Federation } from "../federation.js";
import { timings } from "../timings.js";

const ACTOR = "parent";

function input(id: string, files: readonly SourceFile[]): LayerInput {
  const layer: Layer | undefined = files.length === 0 ? undefined : layersFromFiles(files)[0]?.layer;
  return { id, layer, files: [...files] };
}

/** A change the engine or the hub refused (its layers do not combine, a conflict): tried again at the next round. */
const tolerated = (error: unknown) => error instanceof PolityError || (error instanceof Error && "code" in error);

export class Reconciler {
  private readonly sentConflicts = new Set<string>();
  /** The older global versions refused already (audited once each). */
  private readonly refused = new Set<number>();

  constructor(
    private readonly db: Database,
    private readonly federation: Federation,
    private readonly changes: Changes,
    private readonly audit: AuditLog,
    private readonly region: string,
    private readonly now: () => Date,
  ) {}

  private get regionId(): string {
    return `region/${this.region}`;
  }

  async pull(mirror: Mirror): Promise<void> {
    if (mirror.region !== this.region) throw new Error(`the parent sent the mirror of region ${mirror.region}, not ${this.region}`);
    const [link] = await this.db.query<{ global_version: number; global_hash: string | null; accepted_region_version: number }>("SELECT global_version, global_hash, accepted_region_version FROM regional_link");
    const context: AuditContext = { actor: ACTOR, correlationId: newCorrelationId() };
    if (mirror.global !== null) await this.followGlobal(mirror.global, mirror.regionLayer, link!, context);
    await this.followRegionLayer(mirror.regionLayer, context);
    await this.followClusters(mirror.clusters, context);
    await this.followCertificates(mirror.certificates ?? []);
  }

  /**
   * The certificates the parent issued for this region's clusters (an agent renewed there
   * while this hub was away): known here, so that the agent is served when it comes back.
   * Kept with the parent's issue time, which is where the next mirror request starts.
   */
  private async followCertificates(certificates: Mirror["certificates"]): Promise<void> {
    for (const c of certificates) {
      if (this.federation.clusters.get(c.cluster)?.region !== this.region) continue;
      await this.db.query(
        `INSERT INTO certificates (serial, cluster, region, not_before, not_after, public_key_sha256, issued_at, certificate_pem, issued_here)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, false) ON CONFLICT (serial) DO NOTHING`,
        [c.serial, c.cluster, this.region, c.notBefore, c.notAfter, c.publicKeySha256, c.issuedAt, c.certificatePem],
      );
    }
  }

  private async followGlobal(global: LayerCopy, parentRegion: LayerCopy | null, link: { global_version: number; global_hash: string | null }, context: AuditContext): Promise<void> {
    if (global.version < link.global_version || (global.version === link.global_version && global.contentHash !== link.global_hash)) {
      if (this.refused.has(global.version)) return;
      this.refused.add(global.version);
      const why =
        global.version < link.global_version
          ? `the parent offered global layer version ${global.version}, older than version ${link.global_version} held here (a parent restored from a backup?)`
          : `the parent offered global layer version ${global.version} with another content than the one held here`;
      await this.audit.append([{ kind: "regional-hub.refused", actor: ACTOR, cluster: null, region: this.region, correlationId: context.correlationId, data: { what: "global layer", why, offered: global.version, held: link.global_version } }]);
      return;
    }
    if (global.version === link.global_version) return;
    timings.moment("region.pulled");
    const next = input("global", global.files);
    try {
      await this.changes.apply({ kind: "layers", layers: [next] }, ACTOR, context);
    } catch (error) {
      if (!(error instanceof PolityError)) throw error;
      // The region layer held here breaks the newer global layer: the parent's wins, and the
      // region layer goes back to what the parent holds of it.
      const reason = error.problems.map((p) => p.message).join("; ") || error.message;
      const reverted = this.federation.layers.get(this.regionId)?.version ?? null;
      const committed = await this.changes.apply({ kind: "layers", layers: [next, input(this.regionId, parentRegion?.files ?? [])] }, ACTOR, context);
      const version = committed.written.find((w) => w.id === this.regionId)?.version;
      await this.recordConflict(reason, reverted, "the global layer won: the region layer was reverted to the version the parent holds", context);
      if (version !== undefined) await this.db.query("UPDATE regional_link SET accepted_region_version = $1, accepted_region_files = $2", [version, JSON.stringify(parentRegion?.files ?? [])]);
    }
    await this.db.query("UPDATE regional_link SET global_version = $1, global_hash = $2", [global.version, global.contentHash]);
  }

  /** The region layer changed on the parent (an operator there) while nothing is pending here: followed. */
  private async followRegionLayer(parentRegion: LayerCopy | null, context: AuditContext): Promise<void> {
    if (parentRegion === null) return;
    const [link] = await this.db.query<{ accepted_region_version: number }>("SELECT accepted_region_version FROM regional_link");
    const local = this.federation.layers.get(this.regionId);
    if ((local?.version ?? 0) !== link!.accepted_region_version) return; // a change made here is on its way up
    if (local !== undefined && canonicalJson(local.files) === canonicalJson(parentRegion.files)) return;
    const committed = await this.changes.apply({ kind: "layers", layers: [input(this.regionId, parentRegion.files)] }, ACTOR, context);
    const version = committed.written.find((w) => w.id === this.regionId)?.version;
    if (version !== undefined) await this.db.query("UPDATE regional_link SET accepted_region_version = $1, accepted_region_files = $2", [version, JSON.stringify(parentRegion.files)]);
  }

  private async followClusters(clusters: Mirror["clusters"], context: AuditContext): Promise<void> {
    // New clusters in one change (a fleet registered at once is mirrored at once); one by one
    // below when that change is refused, so that one that cannot follow does not hold the others back.
    const fresh = clusters.filter((c) => !c.revoked && !this.federation.clusters.has(c.name));
    if (fresh.length > 1) {
      await this.changes.apply({ kind: "register", clusters: fresh.map((c) => ({ cluster: { name: c.name, region: this.region, labels: c.labels } })) }, ACTOR, context).catch((error: unknown) => {
        if (!tolerated(error)) throw error;
      });
    }
    for (const cluster of clusters) {
      const held = this.federation.clusters.get(cluster.name);
      try {
        if (held === undefined) {
          if (cluster.revoked) continue;
          await this.changes.apply({ kind: "register", clusters: [{ cluster: { name: cluster.name, region: this.region, labels: cluster.labels } }] }, ACTOR, context);
        } else if (canonicalJson(held.labels) !== canonicalJson(cluster.labels)) {
          await this.changes.apply({ kind: "relabel", cluster: cluster.name, labels: cluster.labels }, ACTOR, context);
        }
        if (cluster.revoked && this.federation.clusters.get(cluster.name)?.revokedAt === null) {
          await this.changes.apply({ kind: "revoke", cluster: cluster.name }, ACTOR, context);
        }
      } catch (error) {
        // One cluster that cannot follow does not hold the others back; the next round tries again.
        if (!tolerated(error)) throw error;
      }
    }
  }

  /** What the parent said about the region layer version sent. */
  async answered(version: number, answer: SummaryAnswer["regionLayer"]): Promise<void> {
    const files = this.federation.layers.get(this.regionId)?.files ?? [];
    if (answer.state === "accepted") {
      await this.db.query("UPDATE regional_link SET accepted_region_version = $1, accepted_region_files = $2", [version, JSON.stringify(files)]);
      return;
    }
    if (answer.state !== "conflict") return;
    const context: AuditContext = { actor: ACTOR, correlationId: newCorrelationId() };
    const [link] = await this.db.query<{ accepted_region_files: SourceFile[] | null }>("SELECT accepted_region_files FROM regional_link");
    const back = link?.accepted_region_files ?? [];
    const committed = await this.changes.apply({ kind: "layers", layers: [input(this.regionId, back)] }, ACTOR, context);
    const written = committed.written.find((w) => w.id === this.regionId)?.version ?? version;
    await this.recordConflict(answer.reason ?? "the parent refused the region layer", version, "the parent refused the region layer: it was reverted to the version the parent holds", context);
    await this.db.query("UPDATE regional_link SET accepted_region_version = $1", [written]);
  }

  private async recordConflict(reason: string, reverted: number | null, resolution: string, context: AuditContext): Promise<void> {
    const id = randomBytes(8).toString("hex");
    await this.db.transaction(async (tx) => {
      await tx.query("INSERT INTO region_conflicts (id, region, layer_id, detected_at, detected_by, reason, resolution, reverted_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", [
        id,
        this.region,
        this.regionId,
        this.now(),
        `regional-hub:${this.region}`,
        reason.slice(0, 4000),
        resolution,
        reverted,
      ]);
      await this.audit.record(tx, [{ kind: "region.conflict", actor: context.actor, cluster: null, region: this.region, correlationId: context.correlationId, data: { id, layer: this.regionId, reason: reason.slice(0, 4000), resolution, revertedVersion: reverted } }]);
    });
  }

  /** The conflicts found here that the parent has not been sent yet (after a restart: all, which it takes once). */
  async conflictsToSend(): Promise<{ id: string; layerId: string; reason: string; resolution: string; revertedVersion: number | null; detectedAt: string }[]> {
    const rows = await this.db.query<Omit<Conflict, "region" | "detectedBy"> & { layer_id: string; detected_at: Date; reverted_version: number | null }>(
      "SELECT id, layer_id, reason, resolution, reverted_version, detected_at FROM region_conflicts WHERE detected_by = $1 ORDER BY detected_at DESC LIMIT 100",
      [`regional-hub:${this.region}`],
    );
    return rows
      .filter((r) => !this.sentConflicts.has(r.id))
      .map((r) => ({ id: r.id, layerId: r.layer_id, reason: r.reason, resolution: r.resolution, revertedVersion: r.reverted_version, detectedAt: new Date(r.detected_at).toISOString() }));
  }

  sent(ids: readonly string[]): void {
    for (const id of ids) this.sentConflicts.add(id);
  }
}
