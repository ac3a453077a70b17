/**
 * The hub's side of cluster identity: the federation CA (created at the first start, its
 * key sealed under the operator's key), one-time join tokens, enrolment from a CSR,
 * renewal (also of a certificate that expired during a partition, inside a grace window,
 * by proving possession of its key), and revocation that every hub process honours on the
 * next request.
 */
import { randomBytes } from "node:crypto";
import type { IssuedCertificate as IssuedToCluster } from "../api/identity.js";
import {
  createCertificateAuthority,
  createRevocationList,
  CsrError,
  issueClusterCertificate,
  issueServerCertificate,
  readCsr,
  type CertificateAuthority,
  type IssuedCertificate,
} from "../identity/ca.js";
import { seal, unseal, type Sealed } from "../identity/secrets.js";
import { pemBundle } from "../identity/trust-bundle.js";
import { importPrivateKeyPem, x509 } from "../identity/x509.js";
import type { Database, Queryable } from "../store/database.js";
import type { AuditEvent } from "../audit/entry.js";
import { newCorrelationId, type AuditContext, type AuditLog } from "./audit-log.js";
import type { ApiError} from "./status.js";
import { badRequest, forbidden, notFound, unauthorized } from "./status.js";
import { StandingReader, type Standing } from "./standing.js";
import { timings } from "./timings.js";
import { newSecret, sha256 } from "./tokens.js";
import { joinTokenText } from "../identity/join-token.js";

export interface IdentityOptions {
  /**
   * On a regional hub, whose CA is a region's intermediate: the federation's root (what
   * clusters trust) and the intermediate sent after each certificate it issues.
   */
  readonly chain?: { readonly rootPem: string };
  /** Lifetime of cluster certificates (default 24 h). */
  readonly certificateTtlMs: number;
  /** How long after expiry a certificate may still be renewed with its key (default 7 days). */
  readonly graceMs: number;
  readonly now: () => Date;
}

/**
 * The federation's CA: made at the very first start (in the transaction that creates the
 * federation), its key sealed under the operator's key; afterwards loaded and unsealed.
 */
export async function createAuthority(tx: Queryable, federation: string, operatorKey: string, now: Date): Promise<CertificateAuthority> {
  const { authority, privateKeyPem } = await createCertificateAuthority(federation, now);
  await tx.query("INSERT INTO certificate_authority (certificate_pem, key_encrypted) VALUES ($1, $2)", [authority.certificatePem, JSON.stringify(seal(privateKeyPem, operatorKey))]);
  return authority;
}

export async function loadAuthority(db: Queryable, federation: string, operatorKey: string): Promise<CertificateAuthority> {
  const [ca] = await db.query<{ certificate_pem: string; key_encrypted: Sealed }>("SELECT certificate_pem, key_encrypted FROM certificate_authority");
  if (ca === undefined) throw new Error("the database holds a federation without its certificate authority");
  const privateKey = await importPrivateKeyPem(unseal(ca.key_encrypted, operatorKey).toString("utf8"));
  const certificate = new x509.X509Certificate(ca.certificate_pem);
  return { federation, certificate, certificatePem: ca.certificate_pem, privateKey };
}

/** A certificate issued to a cluster, as the hub answers it (with its bundle key added by the route). */
export type ClusterCertificate = Omit<IssuedToCluster, "bundleKey">;

/** Why an enrolment was refused, as the audit log records it. */
export type EnrolmentFailure = "unknown-token" | "used-token" | "expired-token" | "revoked-cluster" | "bad-csr" | "wrong-cluster";

export class IdentityService {
  /** The CA that issues; the one the hub serves with; every CA trusted (PEM), the serving one first (ca-rotation.ts). */
  private cas: { active: CertificateAuthority; serving: CertificateAuthority; trustedPem: string; fingerprint: string | null };
  private readonly standing: StandingReader;

  constructor(
    private readonly db: Database,
    authority: CertificateAuthority,
    private readonly options: IdentityOptions,
    private readonly audit: AuditLog,
  ) {
    this.cas = { active: authority, serving: authority, trustedPem: authority.certificatePem, fingerprint: null };
    this.standing = new StandingReader(db);
  }

  /** The CA that issues cluster certificates now. */
  get authority(): CertificateAuthority {
    return this.cas.active;
  }

  /** Whether a CA rotation overlaps: the CA that issues is not yet the one the hub serves with. */
  get rotating(): boolean {
    return this.cas.active !== this.cas.serving;
  }

  /** Every CA whose certificates are accepted now, PEM, the one the hub serves with first. */
  get trustedPem(): string {
    return this.cas.trustedPem;
  }

  /** After a CA rotation or retirement (src/hub/ca-rotation.ts): `active` issues from now on. */
  useAuthorities(active: CertificateAuthority, serving: CertificateAuthority, trusted: readonly string[], activeFingerprint: string): void {
    // One CA (never rotated): its PEM as stored, as before CAs rotated.
    this.cas = { active, serving, trustedPem: trusted.length === 1 ? trusted[0]! : pemBundle(trusted), fingerprint: activeFingerprint };
  }

  get federation(): string {
    return this.authority.federation;
  }

  private answer(issued: IssuedCertificate, region: string, cluster: string): ClusterCertificate {
    // Two thirds of the way from now (not from notBefore, which is backdated for clock skew:
    // from there a certificate shorter than a few minutes would be due for renewal at once).
    const issuedAt = this.options.now().getTime();
    const life = issued.notAfter.getTime() - issuedAt;
    return {
      certificate: this.options.chain === undefined ? issued.pem : `${issued.pem}${this.authority.certificatePem}`,
      ca: this.options.chain?.rootPem ?? this.cas.trustedPem,
      spiffeId: `spiffe://${this.federation}/region/${region}/cluster/${cluster}`,
      serial: issued.serial,
      notAfter: issued.notAfter.toISOString(),
      renewAfter: new Date(issuedAt + (2 * life) / 3).toISOString(),
    };
  }

  /** `authority`: the issuing CA's fingerprint (null: the federation's first CA, before any rotation). */
  private async record(tx: Queryable, issued: IssuedCertificate, cluster: string, region: string, authority: string | null): Promise<void> {
    await tx.query(
      "INSERT INTO certificates (serial, cluster, region, not_before, not_after, public_key_sha256, issued_at, certificate_pem, authority) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
      [issued.serial, cluster, region, issued.notBefore, issued.notAfter, issued.publicKeySha256, this.options.now(), issued.pem, authority],
    );
  }

  private issuedEvent(issued: IssuedCertificate, cluster: string, region: string, context: AuditContext, how: "enrolment" | "renewal") {
    return {
      kind: "certificate.issued" as const,
      actor: context.actor,
      cluster,
      region,
      correlationId: context.correlationId,
      data: { serial: issued.serial, notBefore: issued.notBefore.toISOString(), notAfter: issued.notAfter.toISOString(), publicKeySha256: issued.publicKeySha256, how },
    };
  }

  /** Logs a refused enrolment (in its own transaction: the enrolment itself wrote nothing), then throws. */
  private async refuse(error: ApiError, reason: EnrolmentFailure, token: { id: string; cluster: string; region: string } | undefined, data: Record<string, string> = {}): Promise<never> {
    await this.audit.append([
      {
        kind: "enrolment.failed",
        actor: token === undefined ? "anonymous" : `join-token:${token.id}`,
        cluster: token?.cluster ?? null,
        region: token?.region ?? null,
        correlationId: newCorrelationId(),
        data: { reason, message: error.message, ...data },
      },
    ]);
    throw error;
  }

  async mintJoinToken(cluster: string, ttlMs: number, by: string, context: AuditContext): Promise<{ id: string; token: string; expiresAt: string }> {
    const [row] = await this.db.query<{ revoked_at: Date | null; region: string }>("SELECT revoked_at, region FROM clusters WHERE name = $1", [cluster]);
    if (row === undefined) throw notFound(`no cluster named ${JSON.stringify(cluster)}: register it first`);
    if (row.revoked_at !== null) throw forbidden(`cluster ${cluster} is revoked; remove it and register it again to readmit it`);
    // The token names the cluster's region: the agent gives it only to the global hub or that region's (src/identity/join-token.ts).
    const token = joinTokenText(row.region, newSecret("join").slice("join_".length));
    const id = randomBytes(6).toString("hex");
    const expiresAt = new Date(this.options.now().getTime() + ttlMs);
    await this.db.transaction(async (tx) => {
      await tx.query("INSERT INTO join_tokens (id, cluster, hash, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)", [
        id,
        cluster,
        sha256(token),
        by,
        this.options.now(),
        expiresAt,
      ]);
      await this.audit.record(tx, [
        { kind: "join-token.created", actor: context.actor, cluster, region: row.region, correlationId: context.correlationId, data: { id, expiresAt: expiresAt.toISOString() } },
      ]);
    });
    return { id, token, expiresAt: expiresAt.toISOString() };
  }

  /** Enrolment: a one-time join token and a CSR whose key the cluster generated and keeps. */
  async enroll(joinToken: string, csrPem: string): Promise<ClusterCertificate> {
    const now = this.options.now();
    const [token] = await timings.timeAsync("enrol.token", () =>
      this.db.query<{ id: string; cluster: string; expires_at: Date; used_at: Date | null; region: string; revoked_at: Date | null }>(
        "SELECT t.id, t.cluster, t.expires_at, t.used_at, c.region, c.revoked_at FROM join_tokens t JOIN clusters c ON c.name = t.cluster WHERE t.hash = $1",
        [sha256(joinToken)],
      ),
    );
    if (token === undefined) return this.refuse(unauthorized("the join token is not valid: mint one with 'polity cluster join-token <cluster>'"), "unknown-token", undefined);
    if (token.used_at !== null) {
      return this.refuse(unauthorized(`the join token was already used (at ${new Date(token.used_at).toISOString()}); a join token admits one enrolment`), "used-token", token);
    }
    if (new Date(token.expires_at).getTime() <= now.getTime()) {
      return this.refuse(unauthorized(`the join token expired at ${new Date(token.expires_at).toISOString()}; mint a new one`), "expired-token", token);
    }
    if (token.revoked_at !== null) return this.refuse(forbidden(`cluster ${token.cluster} is revoked`), "revoked-cluster", token);
    let csr;
    try {
      csr = await timings.timeAsync("enrol.csr", () => readCsr(csrPem));
    } catch (error) {
      if (error instanceof CsrError) return this.refuse(badRequest(error.message), "bad-csr", token);
      throw error;
    }
    let issued: IssuedCertificate;
    const issuer = this.cas;
    try {
      issued = await timings.timeAsync("enrol.issue", () => issueClusterCertificate(issuer.active, csr, { region: token.region, cluster: token.cluster }, now, this.options.certificateTtlMs));
    } catch (error) {
      if (error instanceof CsrError) {
        const wrongCluster = csr.commonName !== token.cluster;
        return this.refuse(forbidden(error.message), wrongCluster ? "wrong-cluster" : "bad-csr", token, wrongCluster ? { requested: csr.commonName ?? "" } : {});
      }
      throw error;
    }
    const context: AuditContext = { actor: `join-token:${token.id}`, correlationId: newCorrelationId() };
    await timings.timeAsync("enrol.store", () => this.db.transaction(async (tx) => {
      // Single use, whichever hub process sees the token first.
      const consumed = await tx.query("UPDATE join_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL RETURNING id", [now, token.id]);
      if (consumed.length === 0) throw unauthorized("the join token was already used; a join token admits one enrolment");
      await this.record(tx, issued, token.cluster, token.region, issuer.fingerprint);
      await this.audit.record(tx, [
        { kind: "cluster.enrolled", actor: context.actor, cluster: token.cluster, region: token.region, correlationId: context.correlationId, data: { joinToken: token.id, serial: issued.serial } },
        this.issuedEvent(issued, token.cluster, token.region, context, "enrolment"),
      ]);
    }));
    return this.answer(issued, token.region, token.cluster);
  }

  /**
   * Renewal with the current certificate (mutual TLS). A certificate that expired less than
   * the grace window ago is accepted too, when the CSR carries the same key: the TLS
   * handshake and the CSR's signature both prove the cluster still holds it.
   */
  async renew(peer: PeerCertificate, csrPem: string): Promise<ClusterCertificate> {
    const now = this.options.now();
    await this.checkStanding(peer);
    if (peer.notAfter.getTime() + this.options.graceMs < now.getTime()) {
      throw unauthorized(
        `the certificate expired at ${peer.notAfter.toISOString()}, more than ${Math.round(this.options.graceMs / 3600_000)} h ago (the grace window): enrol again with a new join token`,
      );
    }
    let csr;
    try {
      csr = await readCsr(csrPem);
    } catch (error) {
      if (error instanceof CsrError) throw badRequest(error.message);
      throw error;
    }
    const expired = peer.notAfter.getTime() <= now.getTime();
    if (expired && csr.publicKeySha256 !== peer.publicKeySha256) {
      throw forbidden("an expired certificate is renewed only for the same key: the CSR must carry the key of the certificate presented");
    }
    let issued: IssuedCertificate;
    const issuer = this.cas;
    try {
      issued = await issueClusterCertificate(issuer.active, csr, { region: peer.region, cluster: peer.cluster }, now, this.options.certificateTtlMs);
    } catch (error) {
      if (error instanceof CsrError) throw forbidden(error.message);
      throw error;
    }
    await this.db.transaction(async (tx) => {
      await this.record(tx, issued, peer.cluster, peer.region, issuer.fingerprint);
      await this.audit.record(tx, [this.issuedEvent(issued, peer.cluster, peer.region, { actor: `cluster:${peer.cluster}`, correlationId: newCorrelationId() }, "renewal")]);
    });
    return this.answer(issued, peer.region, peer.cluster);
  }

  /**
   * Whether a presented certificate may act now: issued by this hub, not revoked, its
   * cluster registered and not revoked. Read from the database on every request, so a
   * revocation through any hub process takes effect at once everywhere (in batches: the
   * checks asked while one query runs share the next, src/hub/standing.ts). Returns, read in
   * the same query, the federation's generation (undefined before the first start) and
   * whether the cluster's region has a regional hub of its own (its bundles are then that
   * hub's, mirrored here).
   */
  checkStanding(peer: PeerCertificate): Promise<Standing> {
    return this.standing.check(peer);
  }

  /** Revokes every certificate of a cluster in the caller's transaction; returns the audit event to record. */
  async revokeCertificates(tx: Queryable, cluster: string, region: string, context: AuditContext): Promise<{ certificates: number; event: AuditEvent }> {
    const now = this.options.now();
    const revoked = await tx.query<{ serial: string }>("UPDATE certificates SET revoked_at = $1 WHERE cluster = $2 AND revoked_at IS NULL RETURNING serial", [now, cluster]);
    return {
      certificates: revoked.length,
      event: { kind: "certificate.revoked", actor: context.actor, cluster, region, correlationId: context.correlationId, data: { serials: revoked.map((r) => r.serial).sort() } },
    };
  }

  /** A cluster's latest certificates, newest first. */
  async certificatesOf(cluster: string, limit = 5): Promise<{ serial: string; notBefore: string; notAfter: string; revokedAt: string | null }[]> {
    const rows = await this.db.query<{ serial: string; not_before: Date; not_after: Date; revoked_at: Date | null }>(
      "SELECT serial, not_before, not_after, revoked_at FROM certificates WHERE cluster = $1 ORDER BY issued_at DESC LIMIT $2",
      [cluster, limit],
    );
    return rows.map((r) => ({
      serial: r.serial,
      notBefore: new Date(r.not_before).toISOString(),
      notAfter: new Date(r.not_after).toISOString(),
      revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at).toISOString(),
    }));
  }

  async revocations(q: Queryable = this.db): Promise<{ serial: string; cluster: string; revokedAt: Date; notAfter: Date }[]> {
    const rows = await q.query<{ serial: string; cluster: string; revoked_at: Date; not_after: Date }>(
      "SELECT serial, cluster, revoked_at, not_after FROM certificates WHERE revoked_at IS NOT NULL ORDER BY revoked_at",
    );
    return rows.map((r) => ({ serial: r.serial, cluster: r.cluster, revokedAt: new Date(r.revoked_at), notAfter: new Date(r.not_after) }));
  }

  async revocationList(): Promise<string> {
    // Entries of certificates long expired add nothing; keep the list short.
    const now = this.options.now().getTime();
    const live = (await this.revocations()).filter((r) => r.notAfter.getTime() + this.options.graceMs > now);
    return createRevocationList(this.authority, live, this.options.now(), 24 * 3600 * 1000);
  }

  async serverCertificate(dns: readonly string[], ips: readonly string[]) {
    return issueServerCertificate(this.cas.serving, { dns, ips, uri: `spiffe://${this.federation}/hub` }, this.options.now(), 365 * 24 * 3600 * 1000);
  }
}

/** A regional hub's certificate, presented to its parent. */
export interface RegionalHubCertificate {
  readonly region: string;
  readonly serial: string;
  readonly notAfter: Date;
  readonly publicKeySha256: string;
}

/** What the hub reads from a client certificate presented on a TLS connection. */
export interface PeerCertificate {
  readonly cluster: string;
  readonly region: string;
  readonly serial: string;
  readonly notAfter: Date;
  readonly publicKeySha256: string;
}

