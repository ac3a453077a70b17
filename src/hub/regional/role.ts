/**
 * The regional hub role: the link to its parent, level-triggered. Every round it pulls the
 * parent's mirror (the global layer, its region's clusters, its region layer as the parent
 * holds it) and brings its own database to it, then sends its summary up (its region layer
 * when the parent has not accepted that version, the certificates its CA issued, the
 * bundles it signed, its log's newest signed head with a consistency proof, counts). A
 * round that fails changes nothing: the next one starts again from what the databases hold,
 * so no update is lost however long the parent is away.
 *
 * With the parent away, the hub keeps serving its clusters (bundles, enrolments, renewals,
 * decision logs) and accepts its region layer's changes, validated against the global
 * layer it holds (reconcile.ts says what happens when the link returns).
 *
 * This module owns `regional_link`.
 */
import { MAX_SUMMARY_TARGETS, MAX_TARGET_BASE64, SUMMARY_ASSEMBLED_BYTES, SUMMARY_WIRE_BYTES, type Mirror, type RegionalSummary, type SummaryAnswer } from "../../api/regions.js";
import { call } from "../../client/http.js";
import type { Database } from "../../store/database.js";
import { TrustError } from "../../trust/index.js";
import { newCorrelationId, type AuditLog } from "../audit-log.js";
import type { BundleService } from "../bundles.js";
import type { Changes } from "../change.js";
import type { Federation } from "../federation.js";
import { parentEndpoint, type RegionalCredentials } from "./credentials.js";
import { pullRoots } from "./roots.js";
import type { TrustService } from "../trust.js";
import { Reconciler } from "./reconcile.js";
import { forbidden } from "../status.js";
import type { Residency } from "../residency.js";
import { MirrorWake } from "../mirror-wake.js";
import type { RegionalRenewal } from "./renewal.js";
import { CERTIFICATE_COLUMNS, certificateOnWire, type CertificateRow } from "./certificate-rows.js";
import { timings } from "../timings.js";

export interface LinkState {
  readonly region: string;
  readonly parent: string;
  readonly connected: boolean;
  readonly lastContact: string | null;
  readonly lastError: string | null;
  readonly globalVersion: number;
  readonly acceptedRegionVersion: number;
  readonly acknowledgedSize: number;
}

type LinkRow = {
  global_version: number;
  global_hash: string | null;
  accepted_region_version: number;
  last_contact: Date | null;
  sent_certificates_at: Date | null;
  sent_bundle_revision: string;
  sent_bundle_cluster: string;
  acknowledged_size: string;
};

/** Where the bundles sent up stand: the last one sent, by its revision and cluster. */
interface Cursor {
  readonly revision: string;
  readonly cluster: string;
}

export class RegionalRole {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private connected = false;
  private lastError: string | null = null;
  private readonly reconciler: Reconciler;
  /** The last refusal of the parent's roots audited (each reason once). */
  private rootRefused: string | undefined;
  private readonly wake: MirrorWake;

  constructor(
    private readonly db: Database,
    private readonly federation: Federation,
    changes: Changes,
    private readonly bundles: BundleService,
    private readonly audit: AuditLog,
    readonly credentials: RegionalCredentials,
    private readonly intervalMs: number,
    private readonly now: () => Date,
    private readonly trust: TrustService,
    /** The bundle versions the parent's mirror gives this region's clusters (the bundle service's floors). */
    private readonly parentVersions: Map<string, number>,
    private readonly residency?: Residency,
    private readonly renewal?: RegionalRenewal,
  ) {
    this.reconciler = new Reconciler(db, federation, changes, audit, credentials.region, now);
    this.wake = new MirrorWake(() => parentEndpoint(credentials), intervalMs);
  }

  get region(): string {
    return this.credentials.region;
  }

  /**
   * What may be written on a regional hub: its region's layer and its clusters' layers. The
   * global layer is its parent's (mirrored), and other regions are not held here.
   */
  checkWritable(ids: readonly string[]): void {
    for (const id of ids) {
      if (id === "global") throw forbidden(`the global layer is mirrored from the parent hub (${this.credentials.parentUrl}): change it there`);
      const [tier, name] = id.split("/") as [string, string];
      if (tier === "region" && name !== this.region) throw forbidden(`this is the regional hub of ${this.region}: layer ${id} belongs to another region's hub`);
      if (tier === "cluster") {
        const cluster = this.federation.clusters.get(name);
        if (cluster !== undefined && cluster.region !== this.region) throw forbidden(`this is the regional hub of ${this.region}: cluster ${name} is in region ${cluster.region}`);
      }
    }
  }

  start(): void {
    let busy = false;
    let again = false;
    const round = () => {
      busy = true;
      again = false;
      this.running = this.round().finally(() => {
        busy = false;
        if (this.timer !== undefined) this.timer = setTimeout(round, again ? 0 : this.intervalMs);
      });
    };
    this.timer = setTimeout(round, 0);
    // Or sooner than the interval: when the parent's layers move (src/hub/mirror-wake.ts).
    this.wake.start(() => {
      if (this.timer === undefined) return;
      if (busy) again = true;
      else {
        clearTimeout(this.timer);
        this.timer = setTimeout(round, 0);
      }
    });
  }

  async stop(): Promise<void> {
    const timer = this.timer;
    this.timer = undefined;
    clearTimeout(timer);
    this.wake.stop();
    await this.running;
  }

  private async link(): Promise<LinkRow> {
    const [row] = await this.db.query<LinkRow>(
      "SELECT global_version, global_hash, accepted_region_version, last_contact, sent_certificates_at, sent_bundle_revision::text AS sent_bundle_revision, sent_bundle_cluster, acknowledged_size::text AS acknowledged_size FROM regional_link",
    );
    return row!;
  }

  /** One round: pull, then push. Failures are kept for `state()` and tried again next round. */
  async round(): Promise<void> {
    try {
      await this.federation.sync();
      // The parent's new roots first (a rotation, a revocation): bundles made after name them.
      await pullRoots(this.db, parentEndpoint(this.credentials), this.trust.federation, this.now()).catch(async (error: unknown) => {
        // A root that does not verify (a skipped version, a bad signature) is refused: the
        // roots held stay, and so does everything signed under them. Audited once per reason.
        if (error instanceof TrustError && error.message !== this.rootRefused) {
          this.rootRefused = error.message;
          await this.audit.append([{ kind: "regional-hub.refused", actor: "regional-hub", cluster: null, region: this.region, correlationId: newCorrelationId(), data: { what: "root", why: error.message, problem: error.problem } }]);
        }
        throw error;
      });
      await this.trust.reload();
      const [mirrored] = await this.db.query<{ after: Date | null }>("SELECT max(issued_at) AS after FROM certificates WHERE NOT issued_here");
      const after = mirrored?.after === null || mirrored?.after === undefined ? "" : `?certificatesAfter=${encodeURIComponent(new Date(mirrored.after).toISOString())}`;
      const mirror = (await call<Mirror>(parentEndpoint(this.credentials), "GET", `/v1/region/mirror${after}`, undefined, { timeoutMs: 10_000 })).body;
      // Bundles made here for a cluster pass the version its agent may hold from the parent.
      for (const c of mirror.clusters) if (c.bundleVersion !== undefined) this.parentVersions.set(c.name, c.bundleVersion);
      await this.reconciler.pull(mirror);
      await this.residency?.follow(mirror.residency);
      // Clusters revoked here that the parent does not know revoked yet: the registry is its.
      const parentRevoked = new Map(mirror.clusters.map((c) => [c.name, c.revoked]));
      const revoked = [...this.federation.clusters.values()].filter((c) => c.revokedAt !== null && parentRevoked.get(c.name) === false).map((c) => c.name);
      await this.push(mirror.headSize, revoked);
      // Its delegation and CA, before they expire (the new root arrives with the next round).
      await this.renewal?.renewIfDue(this.trust.root);
      this.connected = true;
      this.lastError = null;
      await this.db.query("UPDATE regional_link SET last_contact = $1", [this.now()]);
    } catch (error) {
      this.connected = false;
      this.lastError = error instanceof Error ? error.message : String(error);
    }
  }

  /** `recorded`: the size of this log's newest head the parent holds (what the proof starts from). */
  private async push(recorded: number, revoked: readonly string[]): Promise<void> {
    const started = performance.now();
    const link = await this.link();
    const region = this.federation.layers.get(`region/${this.region}`);
    const regionLayer = region !== undefined && region.version !== link.accepted_region_version ? { version: region.version, files: [...region.files] } : undefined;
    const since = link.sent_certificates_at ?? new Date(0);
    const certificates = await this.db.query<CertificateRow>(
      `SELECT ${CERTIFICATE_COLUMNS} FROM certificates WHERE issued_here AND issued_at > $1 ORDER BY issued_at LIMIT 5000`,
      [since],
    );
    const { bundles, targets, last } = await this.changedBundles({ revision: link.sent_bundle_revision, cluster: link.sent_bundle_cluster });
    const head = await this.audit.latestHead().catch(() => undefined);
    let proof: string[] = [];
    if (head !== undefined && recorded > 0 && head.treeSize > recorded) proof = [...(await this.audit.consistencyProof(recorded, head.treeSize)).proof];
    const summary: RegionalSummary = {
      ...(regionLayer === undefined ? {} : { regionLayer }),
      certificates: certificates.map((c) => {
        const { issuedAt: _issuedAt, ...sent } = certificateOnWire(c);
        return sent;
      }),
      bundles,
      targets,
      ...(head === undefined ? {} : { head: { head, proof, from: recorded } }),
      status: await this.statusCounts(),
      compliance: await this.complianceCounts(),
      conflicts: await this.reconciler.conflictsToSend(),
      ...(revoked.length === 0 ? {} : { revoked: revoked.slice(0, 10_000) }),
      ...(this.residency === undefined ? {} : { zone: this.residency.zone }),
    };
    const answer = (await call<SummaryAnswer>(parentEndpoint(this.credentials), "POST", "/v1/region/summary", summary, { timeoutMs: 30_000 })).body;
    const lastIssued = certificates.at(-1)?.issued_at;
    await this.db.query(
      "UPDATE regional_link SET sent_certificates_at = COALESCE($1, sent_certificates_at), sent_bundle_revision = COALESCE($2, sent_bundle_revision), sent_bundle_cluster = COALESCE($3, sent_bundle_cluster), acknowledged_size = $4",
      [lastIssued ?? null, last?.revision ?? null, last?.cluster ?? null, answer.acknowledgedSize],
    );
    this.reconciler.sent(summary.conflicts.map((c) => c.id));
    if (regionLayer !== undefined) await this.reconciler.answered(regionLayer.version, answer.regionLayer);
    timings.add("region.push", performance.now() - started);
    if (answer.headRefused !== undefined) throw new Error(answer.headRefused);
  }

  /**
   * The bundles signed here after `since`, in (revision, cluster) order, each as its metadata
   * line and target hash, and the targets they name once each (a region's clusters mostly
   * share a few effective sets: sending each cluster's whole bundle repeated a 32 KB target
   * 2,500 times in a summary, 110 MB, past what the parent accepts). Within what the parent
   * takes (src/api/regions.ts): SUMMARY_WIRE_BYTES of base64, SUMMARY_ASSEMBLED_BYTES once put
   * together, MAX_SUMMARY_TARGETS targets; the rest go with the next summary, from `last` on.
   */
  private async changedBundles(since: Cursor): Promise<{ bundles: RegionalSummary["bundles"]; targets: NonNullable<RegionalSummary["targets"]>; last: Cursor | undefined }> {
    // After the last one sent, by (revision, cluster): one change's bundles share a revision.
    const changed = await this.db.query<{ cluster: string; revision: string }>(
      "SELECT cluster, revision::text AS revision FROM bundles WHERE (revision, cluster) > ($1::bigint, $2::text) ORDER BY revision, cluster LIMIT 5000",
      [since.revision, since.cluster],
    );
    const bundles: RegionalSummary["bundles"] = [];
    const targets = new Map<string, string>();
    let wire = 0;
    let assembled = 0;
    let last: Cursor | undefined;
    for (const { cluster, revision } of changed) {
      const parts = this.bundles.bundleParts(cluster);
      if (parts !== undefined) {
        const envelope = parts.envelope.toString("base64");
        const fresh = !targets.has(parts.set.hash);
        const target = fresh ? parts.set.bytes.toString("base64") : undefined;
        const adds = envelope.length + (target?.length ?? 0);
        // A target too large to send at all is skipped: the parent never mirrors that bundle.
        if (target !== undefined && target.length > MAX_TARGET_BASE64) {
          last = { revision, cluster };
          continue;
        }
        const full = wire + adds > SUMMARY_WIRE_BYTES || assembled + parts.envelope.length + parts.set.byteLength > SUMMARY_ASSEMBLED_BYTES || (fresh && targets.size >= MAX_SUMMARY_TARGETS);
        if (full && bundles.length > 0) break;
        wire += adds;
        assembled += parts.envelope.length + parts.set.byteLength;
        if (target !== undefined) targets.set(parts.set.hash, target);
        bundles.push({ cluster, version: parts.version, envelope, target: parts.set.hash });
      }
      last = { revision, cluster };
    }
    return { bundles, targets: [...targets].map(([hash, bytes]) => ({ hash, bytes })), last };
  }

  private async statusCounts(): Promise<Record<string, number>> {
    const [row] = await this.db.query<{ reporting: string; stale: string; acknowledgements: string }>(
      "SELECT (SELECT count(*) FROM agent_status)::text AS reporting, (SELECT count(*) FROM agent_status WHERE status->>'stale' = 'true')::text AS stale, (SELECT count(*) FROM bundle_acknowledgements)::text AS acknowledgements",
    );
    return { clusters: this.federation.clusters.size, reporting: Number(row?.reporting ?? 0), stale: Number(row?.stale ?? 0), acknowledgements: Number(row?.acknowledgements ?? 0) };
  }

  private async complianceCounts(): Promise<Record<string, number>> {
    const [row] = await this.db.query<{ pass: string | null; fail: string | null; warn: string | null }>("SELECT sum(pass)::text AS pass, sum(fail)::text AS fail, sum(warn)::text AS warn FROM compliance");
    return { pass: Number(row?.pass ?? 0), fail: Number(row?.fail ?? 0), warn: Number(row?.warn ?? 0) };
  }

  async state(): Promise<LinkState> {
    const link = await this.link();
    return {
      region: this.region,
      parent: this.credentials.parentUrl,
      connected: this.connected,
      lastContact: link.last_contact === null ? null : new Date(link.last_contact).toISOString(),
      lastError: this.lastError,
      globalVersion: link.global_version,
      acceptedRegionVersion: link.accepted_region_version,
      acknowledgedSize: Number(link.acknowledged_size),
    };
  }
}
