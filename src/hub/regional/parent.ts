/**
 * The parent's side of the regional hub role (on the global hub): one-time region tokens,
 * a regional hub's enrolment (its hub certificate and its region's CA, for keys it made),
 * the mirror it pulls (the global layer and its region's clusters), and the summaries it
 * sends up: counts, the certificates its CA issued and the bundles it signed (so that this
 * hub can stand in when an agent falls back to it), its log's signed heads (each checked
 * against the one recorded before by a consistency proof), its region layer (applied here,
 * validated against the global layer) and the conflicts it found.
 *
 * Residency: nothing region-scoped comes up but counts, hashes and signed heads; decision
 * logs, compliance details and audit entries stay in the region.
 *
 * This module owns `region_tokens`, `regional_hubs`, `regional_heads`, `regional_bundles` and
 * `regional_targets` (written by sent-bundles.ts), and `region_conflicts` (the last shared
 * with the regional side, which writes its own).
 */
import { createHash, createPublicKey, randomBytes, X509Certificate } from "node:crypto";
import type { SourceFile } from "../../api/fields.js";
import type { Conflict, LayerCopy, Mirror, RegionalEnrolled, RegionalEnrolment, RegionalRenewed, RegionalSummary, SummaryAnswer } from "../../api/regions.js";
import { verifyConsistency } from "../../audit/merkle.js";
import { verifyTreeHead, type SignedTreeHead } from "../../audit/tree-head.js";
import { PolityError } from "../../errors.js";
import { normalizeSerial } from "../../identity/ca.js";
import { issueHubCertificate } from "../../identity/regional.js";
import { layersFromFiles } from "../../policy/layer-files.js";
import { layerId } from "../../policy/layer.js";
import type { Database, Queryable } from "../../store/database.js";
import { newCorrelationId, type AuditContext, type AuditLog } from "../audit-log.js";
import type { Changes } from "../change.js";
import type { Federation } from "../federation.js";
import type { IdentityService, RegionalHubCertificate } from "../identity.js";
import { badRequest, conflict, forbidden, unauthorized } from "../status.js";
import { newSecret, sha256 } from "../tokens.js";
import type { TrustService } from "../trust.js";
import { declaredResidency } from "../residency.js";
import { CERTIFICATE_COLUMNS, certificateOnWire, type CertificateRow } from "./certificate-rows.js";
import { certificateRefusal, conflictRefusal, reportedBy, type ClaimContext } from "./claims.js";
import { dropRegionCopies, regionVersions, storedBundle, storeSentBundles } from "./sent-bundles.js";
import { timings } from "../timings.js";

const HUB_CERTIFICATE_TTL_MS = 365 * 24 * 3600 * 1000;
/** How old a certificate issued here must be before the mirror carries it down (see mirror()). */
const SETTLE_MS = 10_000;
/** Advisory lock class under which one region's heads are judged one at a time (with hashtext(region)). */
const HEADS_LOCK = 7_346_231;

export class Regions {
  constructor(
    private readonly db: Database,
    private readonly federation: Federation,
    private readonly identity: IdentityService,
    private readonly changes: Changes,
    private readonly trust: TrustService,
    private readonly bundleKeyPem: string,
    private readonly audit: AuditLog,
    private readonly now: () => Date,
    /** The version of the bundle this hub signed for a cluster, if any (BundleService.version). */
    private readonly bundleVersion: (cluster: string) => number | undefined = () => undefined,
  ) {}

  async mintToken(region: string, ttlMs: number, names: { readonly hostnames: readonly string[]; readonly allowLoopback: boolean }, context: AuditContext): Promise<{ id: string; token: string; region: string; expiresAt: string; hostnames: readonly string[]; allowLoopback: boolean }> {
    const token = newSecret("region");
    const id = randomBytes(6).toString("hex");
    const expiresAt = new Date(this.now().getTime() + ttlMs);
    await this.db.transaction(async (tx) => {
      await tx.query("INSERT INTO region_tokens (id, region, hash, created_by, created_at, expires_at, hostnames, allow_loopback) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", [
        id,
        region,
        sha256(token),
        context.actor,
        this.now(),
        expiresAt,
        JSON.stringify(names.hostnames),
        names.allowLoopback,
      ]);
      await this.audit.record(tx, [{ kind: "region-token.created", actor: context.actor, cluster: null, region, correlationId: context.correlationId, data: { id, expiresAt: expiresAt.toISOString(), hostnames: [...names.hostnames], allowLoopback: names.allowLoopback } }]);
    });
    return { id, token, region, expiresAt: expiresAt.toISOString(), hostnames: names.hostnames, allowLoopback: names.allowLoopback };
  }

  /** A regional hub enrols once, with a region token, for the keys it made (their private halves never leave it). */
  async enrol(request: RegionalEnrolment): Promise<RegionalEnrolled> {
    const now = this.now();
    const [token] = await this.db.query<{ id: string; region: string; expires_at: Date; used_at: Date | null; hostnames: string[]; allow_loopback: boolean }>(
      "SELECT id, region, expires_at, used_at, hostnames, allow_loopback FROM region_tokens WHERE hash = $1",
      [sha256(request.token)],
    );
    if (token === undefined) throw unauthorized("the region token is not valid: mint one with 'polity region token <region>' on the parent hub");
    if (token.used_at !== null) throw unauthorized("the region token was already used; a region token admits one enrolment");
    if (new Date(token.expires_at).getTime() <= now.getTime()) throw unauthorized(`the region token expired at ${new Date(token.expires_at).toISOString()}; mint a new one`);
    if (token.region !== request.region) throw forbidden(`the region token is for region ${token.region}, not ${request.region}`);
    for (const [field, pem] of Object.entries({ bundleKeyPem: request.bundleKeyPem, auditKeyPem: request.auditKeyPem, hubPublicKeyPem: request.hubPublicKeyPem, caPublicKeyPem: request.caPublicKeyPem })) {
      try {
        createPublicKey(pem);
      } catch {
        throw badRequest(`${field}: not a PEM public key`);
      }
    }
    // The certificate's names are the token's, fixed by the global admin: a hub asking for
    // another (the global hub's, another region's) is refused, not trimmed, so it is noticed.
    const loopback = new Set(["localhost", "127.0.0.1", "::1"]);
    for (const name of request.hostnames) {
      if (token.allow_loopback && loopback.has(name)) continue;
      if (!token.hostnames.includes(name)) throw forbidden(`hostname ${name} is not one the region token admits (${[...token.hostnames, ...(token.allow_loopback ? ["loopback"] : [])].join(", ") || "none"}); the global admin fixes them: polity region token ${token.region} --hostname <name>`);
    }
    const authority = this.identity.authority;
    const names = token.allow_loopback ? { dns: ["localhost", ...token.hostnames], ips: ["127.0.0.1", "::1"] } : { dns: [...token.hostnames], ips: [] };
    const hub = await issueHubCertificate(authority, request.region, request.hubPublicKeyPem, names, now, HUB_CERTIFICATE_TTL_MS);
    const context: AuditContext = { actor: `region-token:${token.id}`, correlationId: newCorrelationId() };
    // The trust branch's API: the region's CA, name-constrained to its SPIFFE path, and a root
    // version in which the region's bundle key may sign its region's bundles (and nothing else).
    const ca = await this.trust.issueRegionalCa(request.region, request.caPublicKeyPem, context);
    const root = await this.trust.delegateRegion(request.region, request.bundleKeyPem, context);
    const keyHash = (pem: string) => createHash("sha256").update(createPublicKey(pem).export({ type: "spki", format: "der" })).digest("hex");
    await this.db.transaction(async (tx) => {
      const used = await tx.query("UPDATE region_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL RETURNING id", [now, token.id]);
      if (used.length === 0) throw unauthorized("the region token was already used; a region token admits one enrolment");
      await tx.query(
        `INSERT INTO regional_hubs (region, serial, public_key_sha256, bundle_key_pem, audit_key_pem, enrolled_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (region) DO UPDATE SET serial = EXCLUDED.serial, public_key_sha256 = EXCLUDED.public_key_sha256, bundle_key_pem = EXCLUDED.bundle_key_pem,
           audit_key_pem = EXCLUDED.audit_key_pem, enrolled_at = EXCLUDED.enrolled_at, revoked_at = NULL`,
        [request.region, hub.serial, keyHash(request.hubPublicKeyPem), request.bundleKeyPem, request.auditKeyPem, now],
      );
      await tx.query("DELETE FROM regional_heads WHERE region = $1", [request.region]);
      // Bundles the region's previous hub sent up are not this one's to stand by (their
      // versions stay: the new hub's pass them, through the mirror's bundleVersion).
      await dropRegionCopies(tx, request.region);
      await this.audit.record(tx, [
        {
          kind: "regional-hub.enrolled",
          actor: context.actor,
          cluster: null,
          region: request.region,
          correlationId: context.correlationId,
          data: { serial: hub.serial, hubKeySha256: keyHash(request.hubPublicKeyPem), caKeySha256: keyHash(request.caPublicKeyPem), bundleKeySha256: keyHash(request.bundleKeyPem), auditKeySha256: keyHash(request.auditKeyPem) },
        },
      ]);
    });
    return {
      federation: authority.federation,
      region: request.region,
      rootPem: authority.certificatePem,
      hubCertificatePem: hub.certificatePem,
      caCertificatePem: ca.certificatePem,
      parentBundleKeyPem: this.bundleKeyPem,
      rootVersion: root.signed.version,
    };
  }

  /**
   * Whether a regional hub's certificate is the one its region enrolled with, not revoked (its
   * delegated key revoked: `polity keys rotate --revoke`): refused `403`, audited at most once
   * a minute per region by this process (its link asks every 2 s).
   */
  async checkStanding(peer: RegionalHubCertificate): Promise<void> {
    const [row] = await this.db.query<{ serial: string; public_key_sha256: string; revoked_at: Date | null }>("SELECT serial, public_key_sha256, revoked_at FROM regional_hubs WHERE region = $1", [peer.region]);
    if (row === undefined || row.serial !== peer.serial || row.public_key_sha256 !== peer.publicKeySha256) throw unauthorized(`this is not the certificate region ${peer.region}'s hub enrolled with`);
    if (row.revoked_at !== null) {
      const why = `region ${peer.region}'s hub was revoked at ${new Date(row.revoked_at).toISOString()} (its delegated key was revoked): its link, summaries and mirror are refused until the region enrols again with a new region token`;
      const last = this.refusalsAudited.get(peer.region) ?? 0;
      if (this.now().getTime() - last >= 60_000) {
        this.refusalsAudited.set(peer.region, this.now().getTime());
        await this.audit.append([{ kind: "regional-hub.refused", actor: `regional-hub:${peer.region}`, cluster: null, region: peer.region, correlationId: newCorrelationId(), data: { what: "request of a revoked regional hub", why, serial: peer.serial } }]);
      }
      throw forbidden(why);
    }
  }

  private readonly refusalsAudited = new Map<string, number>();

  /**
   * A regional hub's delegation and region CA, renewed before they expire, for the keys it
   * enrolled with (never others: a new key is a new enrolment): the delegation in a new root
   * version, the CA as a new intermediate for the same public key. Its standing (enrolled,
   * not revoked) was checked by the route's authentication.
   */
  async renew(region: string): Promise<RegionalRenewed> {
    const context: AuditContext = { actor: `regional-hub:${region}`, correlationId: newCorrelationId() };
    const [hub] = await this.db.query<{ bundle_key_pem: string }>("SELECT bundle_key_pem FROM regional_hubs WHERE region = $1 AND revoked_at IS NULL", [region]);
    const [ca] = await this.db.query<{ certificate_pem: string }>("SELECT certificate_pem FROM regional_authorities WHERE region = $1 AND revoked_at IS NULL ORDER BY issued_at DESC LIMIT 1", [region]);
    if (hub === undefined || ca === undefined) throw forbidden(`region ${region} has no enrolled hub and CA to renew: it enrols again with a region token`);
    const caKeyPem = new X509Certificate(ca.certificate_pem).publicKey.export({ type: "spki", format: "pem" }).toString();
    const root = await this.trust.delegateRegion(region, hub.bundle_key_pem, context);
    const issued = await this.trust.issueRegionalCa(region, caKeyPem, context);
    return { region, rootVersion: root.signed.version, caCertificatePem: issued.certificatePem };
  }

  /** A cluster certificate issued by a region's CA: refused when that CA was revoked with its region's delegated key. */
  async checkIssuer(serial: string, region: string): Promise<void> {
    const rows = await this.db.query<{ serial: string; revoked_at: Date }>("SELECT serial, revoked_at FROM regional_authorities WHERE region = $1 AND revoked_at IS NOT NULL", [region]);
    const revoked = rows.find((r) => normalizeSerial(r.serial) === serial);
    if (revoked !== undefined) throw unauthorized(`client certificate refused: it was issued by region ${region}'s CA (serial ${serial}), revoked at ${new Date(revoked.revoked_at).toISOString()} with the region's delegated key`);
  }

  /** Whether a region has a regional hub (its clusters' bundles are signed there). */
  async hasHub(region: string): Promise<boolean> {
    return (await this.db.query("SELECT 1 FROM regional_hubs WHERE region = $1 AND revoked_at IS NULL", [region])).length > 0;
  }

  private copy(id: string): LayerCopy | null {
    const record = this.federation.layers.get(id);
    return record === undefined ? null : { version: record.version, contentHash: record.contentHash, files: record.files };
  }

  /** What a regional hub mirrors: the global layer, its region layer as held here, its region's clusters. */
  async mirror(region: string, certificatesAfter = new Date(0)): Promise<Mirror> {
    const mirrored = await regionVersions(this.db, region);
    const clusters = [...this.federation.clusters.values()]
      .filter((c) => c.region === region)
      .map((c) => {
        // What its agent may hold: this hub's newest bundle for it, or the region's hub's (one enrolled before, say).
        const held = Math.max(this.bundleVersion(c.name) ?? 0, mirrored.get(c.name) ?? 0);
        const bundleVersion = held === 0 ? undefined : held;
        return { name: c.name, labels: c.labels, facts: this.federation.facts.get(c.name) ?? null, revoked: c.revokedAt !== null, ...(bundleVersion === undefined ? {} : { bundleVersion }) };
      });
    const issued = await this.db.query<CertificateRow>(
      `SELECT ${CERTIFICATE_COLUMNS} FROM certificates
       WHERE region = $1 AND issued_here AND issued_at > $2 AND issued_at <= $3 ORDER BY issued_at LIMIT 1000`,
      // Settled only: one stamped earlier may commit later, and the region resumes after its newest.
      [region, certificatesAfter, new Date(this.now().getTime() - SETTLE_MS)],
    );
    const certificates = issued.map(certificateOnWire);
    return { federation: this.identity.federation, region, global: this.copy("global"), regionLayer: this.copy(`region/${region}`), headSize: await this.recordedSize(region), clusters, certificates, residency: await declaredResidency(this.db, region) };
  }

  /** A summary from a regional hub: recorded; its region layer applied (or the conflict said); its head checked. */
  async receive(region: string, summary: RegionalSummary, serial?: string): Promise<SummaryAnswer> {
    const started = performance.now();
    const now = this.now();
    const context: AuditContext = { actor: `regional-hub:${region}`, correlationId: newCorrelationId() };
    const refused: string[] = [];
    await this.db.transaction(async (tx) => {
      // The hub's standing again, on the locked row: a revocation or an enrolment committed
      // since the request was let in (it waited for this row) refuses the whole summary.
      const standing = await tx.query(
        `UPDATE regional_hubs SET last_seen = $1, summary = $2 WHERE region = $3 AND revoked_at IS NULL ${serial === undefined ? "" : "AND serial = $4"} RETURNING region`,
        [now, JSON.stringify({ status: summary.status, compliance: summary.compliance, at: now.toISOString() }), region, ...(serial === undefined ? [] : [serial])],
      );
      if (standing.length === 0) throw forbidden(`region ${region}'s hub was revoked or enrolled again while its summary came in: the summary is not taken`);
      // Certificates: only those one of the region's CAs (issued here, not revoked) signed for one of its clusters.
      const refusals: { what: string; why: string }[] = [];
      const authorities = (await tx.query<{ certificate_pem: string }>("SELECT certificate_pem FROM regional_authorities WHERE region = $1 AND revoked_at IS NULL", [region])).map((r) => new X509Certificate(r.certificate_pem));
      for (const c of summary.certificates) {
        const refusal = certificateRefusal(c, { region, federation: this.identity.federation, regionOf: (name) => this.federation.clusters.get(name)?.region }, authorities);
        if (refusal !== undefined) {
          refusals.push({ what: "certificate", why: refusal });
          continue;
        }
        await tx.query(
          "INSERT INTO certificates (serial, cluster, region, not_before, not_after, public_key_sha256, issued_at, certificate_pem, issued_here) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, false) ON CONFLICT (serial) DO NOTHING",
          [c.serial, c.cluster, region, c.notBefore, c.notAfter, c.publicKeySha256, now, c.certificatePem],
        );
      }
      // Bundles: decoded and verified under the current root's delegation for the region, the
      // cluster, region and version read from their signed metadata (claims.ts); refused ones audited.
      const held = await regionVersions(tx, region);
      const claims: ClaimContext = { region, federation: this.identity.federation, root: this.trust.root, regionOf: (c) => this.federation.clusters.get(c)?.region, heldVersion: (c) => held.get(c), now };
      refusals.push(...(await storeSentBundles(tx, summary, claims, now)));
      // Conflicts: about the region's own layer only, bounded, recorded as the region's claim.
      const [count] = await tx.query<{ n: string }>("SELECT count(*)::text AS n FROM region_conflicts WHERE region = $1", [region]);
      let recorded = Number(count?.n ?? 0);
      for (const c of summary.conflicts) {
        const refusal = conflictRefusal(region, c.layerId, recorded);
        if (refusal !== undefined) {
          refusals.push({ what: "conflict", why: refusal });
          continue;
        }
        const inserted = await tx.query(
          "INSERT INTO region_conflicts (id, region, layer_id, detected_at, detected_by, reason, resolution, reverted_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING id",
          [c.id, region, c.layerId, c.detectedAt, reportedBy(region), c.reason, c.resolution, c.revertedVersion],
        );
        if (inserted.length > 0) {
          recorded++;
          await this.audit.record(tx, [
            { kind: "region.conflict", actor: context.actor, cluster: null, region, correlationId: context.correlationId, data: { id: c.id, layer: c.layerId, reason: c.reason, resolution: c.resolution, revertedVersion: c.revertedVersion, reportedBy: reportedBy(region) } },
          ]);
        }
      }
      // At most a few entries per summary: one per kind of refusal, with a count.
      for (const what of new Set(refusals.map((r) => r.what))) {
        const of = refusals.filter((r) => r.what === what);
        await this.audit.record(tx, [{ kind: "regional-hub.refused", actor: context.actor, cluster: null, region, correlationId: context.correlationId, data: { what, why: of[0]!.why, count: of.length } }]);
      }
      refused.push(...refusals.map((r) => `${r.what}: ${r.why}`));
    });
    // A refused head is said in the answer (and audited); the rest of the summary still counts.
    let headRefused: string | undefined;
    if (summary.head !== undefined) {
      try {
        await this.recordHead(region, summary.head, context);
      } catch (error) {
        headRefused = error instanceof Error ? error.message : String(error);
      }
    }
    // A revocation made on the region's hub holds everywhere: a revoked cluster is not served here either.
    for (const cluster of summary.revoked ?? []) {
      const held = this.federation.clusters.get(cluster);
      if (held === undefined || held.region !== region || held.revokedAt !== null) continue;
      await this.changes.apply({ kind: "revoke", cluster }, `regional-hub:${region}`, context);
    }
    const regionLayer = summary.regionLayer === undefined ? { state: "unchanged" as const } : await this.applyRegionLayer(region, summary.regionLayer.files, context);
    timings.add("region.summary", performance.now() - started);
    return { regionLayer, acknowledgedSize: await this.recordedSize(region), ...(headRefused === undefined ? {} : { headRefused }), ...(refused.length === 0 ? {} : { refused: refused.slice(0, 20) }) };
  }

  private async recordedSize(region: string): Promise<number> {
    const [row] = await this.db.query<{ size: string | null }>("SELECT max(tree_size)::text AS size FROM regional_heads WHERE region = $1", [region]);
    return row?.size === null || row?.size === undefined ? 0 : Number(row.size);
  }

  /**
   * A region's signed head: its signature checked with the key the region enrolled with, and
   * its consistency with the head recorded before (a log rewritten during a partition does
   * not extend it): refused and audited, the earlier head kept. One region's heads are
   * judged one at a time, each against the newest recorded. A summary made against an older
   * recorded head (`from`: one the region sent before and then gave up waiting for, judged
   * since) is stale, not evidence: it is set aside without an alarm, and the region's next
   * round proves from the head recorded now.
   */
  private async recordHead(region: string, sent: NonNullable<RegionalSummary["head"]>, context: AuditContext): Promise<void> {
    const [hub] = await this.db.query<{ audit_key_pem: string }>("SELECT audit_key_pem FROM regional_hubs WHERE region = $1", [region]);
    const verdict = await this.db.transaction(async (tx): Promise<{ refused?: string; stale?: string; recorded: number }> => {
      await tx.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [HEADS_LOCK, region]);
      // Ordered by the number (a text column of the same name would order "7" after "12").
      const [last] = await tx.query<{ size: string; root_hash: string }>("SELECT tree_size::text AS size, root_hash FROM regional_heads WHERE region = $1 ORDER BY regional_heads.tree_size DESC LIMIT 1", [region]);
      const previous = last === undefined ? undefined : { size: Number(last.size), root: last.root_hash };
      const recorded = previous?.size ?? 0;
      let head: SignedTreeHead;
      try {
        head = verifyTreeHead(sent.head, createPublicKey(hub!.audit_key_pem));
      } catch (error) {
        return { refused: error instanceof Error ? error.message : String(error), recorded };
      }
      if (previous !== undefined && sent.from !== undefined && sent.from !== previous.size) {
        // Made against a head recorded earlier than the newest: stale only if that head was recorded here.
        const [known] = sent.from < previous.size ? await tx.query("SELECT 1 FROM regional_heads WHERE region = $1 AND tree_size = $2", [region, sent.from]) : [];
        if (known === undefined && sent.from !== 0) return { refused: `its proof starts at size ${sent.from}, a head never recorded here (the newest recorded is ${previous.size})`, recorded };
        return { stale: `made against the head of size ${sent.from}; the newest recorded is ${previous.size}`, recorded };
      }
      try {
        if (previous !== undefined && head.treeSize < previous.size) throw new Error(`its size ${head.treeSize} is smaller than the head recorded before (${previous.size})`);
        if (previous !== undefined && head.treeSize === previous.size && head.rootHash !== previous.root) throw new Error(`at size ${head.treeSize} its root differs from the head recorded before: the log forked`);
        if (previous !== undefined && head.treeSize > previous.size && previous.size > 0) {
          verifyConsistency(previous.size, head.treeSize, Buffer.from(previous.root, "hex"), Buffer.from(head.rootHash, "hex"), sent.proof.map((h) => Buffer.from(h, "hex")));
        }
      } catch (error) {
        return { refused: error instanceof Error ? error.message : String(error), recorded };
      }
      if (previous === undefined || head.treeSize > previous.size) {
        await tx.query("INSERT INTO regional_heads (region, tree_size, root_hash, head, received_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING", [region, head.treeSize, head.rootHash, JSON.stringify(head), this.now()]);
      }
      return { recorded };
    });
    if (verdict.refused !== undefined) {
      const why = verdict.refused;
      await this.audit.append([{ kind: "regional-hub.refused", actor: context.actor, cluster: null, region, correlationId: context.correlationId, data: { what: "signed tree head", why, recordedSize: verdict.recorded } }]);
      throw conflict(`region ${region}'s signed tree head was refused: ${why}; the head recorded before stays (size ${verdict.recorded})`);
    }
  }

  /** The region layer the regional hub holds, applied here through the one change use case; a refusal is the conflict it reports. */
  private async applyRegionLayer(region: string, files: readonly SourceFile[], context: AuditContext): Promise<SummaryAnswer["regionLayer"]> {
    const id = `region/${region}`;
    try {
      const layers = files.length === 0 ? [] : layersFromFiles(files);
      if (layers.some((l) => layerId(l.layer) !== id)) throw forbidden(`a regional hub of ${region} sends only layer ${id}`);
      const layer = layers[0]?.layer;
      if (this.federation.layers.get(id)?.contentHash !== undefined && files.length > 0) {
        const same = this.federation.layers.get(id)?.files;
        if (JSON.stringify(same) === JSON.stringify(files)) return { state: "accepted" };
      }
      await this.changes.apply({ kind: "layers", layers: [{ id, layer, files: [...files] }] }, `regional-hub:${region}`, context);
      return { state: "accepted" };
    } catch (error) {
      if (error instanceof PolityError) return { state: "conflict", reason: error.problems.map((p) => p.message).join("; ") || error.message };
      if (error instanceof Error && "code" in error && (error as { code: number }).code === 409) return { state: "conflict", reason: error.message };
      throw error;
    }
  }

  /** The bundle a region's hub signed for this cluster, as mirrored here; undefined when there is none. */
  async bundleFor(cluster: string): Promise<{ version: number; bytes: Buffer } | undefined> {
    return storedBundle(this.db, cluster);
  }

  /**
   * The regions with a hub, and the versions of the bundles their hubs signed for these
   * clusters as mirrored here (a cluster with none yet is absent): what their agents hold.
   */
  async mirroredVersions(clusters: readonly string[]): Promise<{ regions: ReadonlySet<string>; versions: ReadonlyMap<string, number> }> {
    const regions = await regionsWithHubs(this.db);
    if (regions.size === 0) return { regions, versions: new Map() };
    const rows = await this.db.query<{ cluster: string; version: string }>("SELECT cluster, version::text AS version FROM regional_bundles WHERE cluster = ANY($1)", [clusters]);
    return { regions, versions: new Map(rows.map((r) => [r.cluster, Number(r.version)])) };
  }

  async hubs(): Promise<{ region: string; enrolledAt: string; lastSeen: string | null; summary: unknown; headSize: number }[]> {
    const rows = await this.db.query<{ region: string; enrolled_at: Date; last_seen: Date | null; summary: unknown; size: string | null }>(
      "SELECT h.region, h.enrolled_at, h.last_seen, h.summary, (SELECT max(tree_size)::text FROM regional_heads r WHERE r.region = h.region) AS size FROM regional_hubs h ORDER BY h.region",
    );
    return rows.map((r) => ({ region: r.region, enrolledAt: new Date(r.enrolled_at).toISOString(), lastSeen: r.last_seen === null ? null : new Date(r.last_seen).toISOString(), summary: r.summary, headSize: Number(r.size ?? 0) }));
  }
}

/** The regions with a regional hub not cut off, as `q` reads them (their clusters' bundles are signed there). */
export async function regionsWithHubs(q: Queryable): Promise<ReadonlySet<string>> {
  return new Set((await q.query<{ region: string }>("SELECT region FROM regional_hubs WHERE revoked_at IS NULL")).map((r) => r.region));
}

/**
 * The versions of the bundles the hubs of regions with no hub now (cut off) signed for their
 * clusters, as last mirrored here (kept when the copies were dropped): what their agents may hold.
 */
export async function mirroredVersionFloors(q: Queryable): Promise<ReadonlyMap<string, number>> {
  const rows = await q.query<{ cluster: string; version: string }>(
    "SELECT b.cluster, b.version::text AS version FROM regional_bundles b WHERE NOT EXISTS (SELECT 1 FROM regional_hubs h WHERE h.region = b.region AND h.revoked_at IS NULL)",
  );
  return new Map(rows.map((r) => [r.cluster, Number(r.version)]));
}

/** Conflicts recorded in this hub's database (the global hub's: reported by its regions; a regional hub's: its own). */
export async function listConflicts(db: Database, region?: string): Promise<Conflict[]> {
  const rows = await db.query<{ id: string; region: string; layer_id: string; detected_at: Date; detected_by: string; reason: string; resolution: string; reverted_version: number | null }>(
    `SELECT id, region, layer_id, detected_at, detected_by, reason, resolution, reverted_version FROM region_conflicts ${region === undefined ? "" : "WHERE region = $1"} ORDER BY detected_at DESC LIMIT 500`,
    region === undefined ? [] : [region],
  );
  return rows.map((r) => ({ id: r.id, region: r.region, layerId: r.layer_id, detectedAt: new Date(r.detected_at).toISOString(), detectedBy: r.detected_by, reason: r.reason, resolution: r.resolution, revertedVersion: r.reverted_version }));
}
