/**
 * The federation CA rotates (issue 15), with overlap, through the root of trust: the new
 * CA reaches agents only inside a root version they verify from the one they pinned.
 *
 *   1. rotate (`polity keys rotate --purpose ca`, or the schedule): a new CA (ECDSA P-256,
 *      pathLen 0, its key sealed under the operator's key) enters a new root version that
 *      lists it `active`, first, and the old one `overlap`. From then on every hub process
 *      issues cluster certificates with the new CA (renewals move agents to it) and accepts
 *      client certificates of either; it still serves with the old CA's certificate, the
 *      one agents pinned. Bundles are made again naming that root, so each agent verifies
 *      it and trusts the new CA for the hub's certificate too (src/identity/trust-bundle.ts).
 *   2. retire: once every enrolled cluster holds a valid certificate of the new CA and
 *      acknowledged a bundle naming that root (or when the overlap runs out), a new root
 *      lists the new CA alone; every hub process serves with a certificate of the new CA
 *      and refuses certificates of the old one.
 *
 * A federation with regional hubs or regional intermediates refuses to rotate its CA (its
 * intermediates chain to the old one; re-issuing them is not built): fail closed.
 * This module owns `federation_authorities` (migration 21).
 */
import type { AuditEvent } from "../audit/entry.js";
import { createCertificateAuthority, type CertificateAuthority } from "../identity/ca.js";
import { seal, unseal, type Sealed } from "../identity/secrets.js";
import { importPrivateKeyPem, x509 } from "../identity/x509.js";
import type { Database, Queryable } from "../store/database.js";
import { certificateFingerprint, type RootCertificateAuthority } from "../trust/index.js";
import { newCorrelationId, type AuditContext } from "./audit-log.js";
import { loadAuthority } from "./identity.js";
import type { KeyState } from "./keys.js";
import { conflict, forbidden } from "./status.js";
import { CA_LOCK, type TrustService } from "./trust.js";


/** The CAs a hub process works with. */
export interface FederationCas {
  /** Issues cluster certificates. */
  readonly active: CertificateAuthority;
  /** Issues the hub's serving certificate: the old CA until agents trust the new one. */
  readonly serving: CertificateAuthority;
  /** Every CA whose certificates are accepted (the newest root's, or the one CA), PEM, the serving one first. */
  readonly trusted: readonly string[];
}

type AuthorityRow = {
  fingerprint: string;
  certificate_pem: string;
  key_encrypted: Sealed;
  state: "active" | "overlap" | "retired";
  serving: boolean;
  created_at: Date;
  state_changed_at: Date | null;
  root_version: number | null;
  left_root_version: number | null;
};

export interface CaRotationResult {
  readonly purpose: "ca";
  readonly keyId: string;
  readonly previous: readonly string[];
  readonly revoked: readonly string[];
  readonly rootVersion: number;
}

/** A CA's row as `polity keys status` lists it (purpose `ca`, id its certificate's SHA-256). */
export interface CaKeyRow {
  readonly id: string;
  readonly purpose: "ca";
  readonly region: null;
  readonly state: KeyState;
  readonly createdAt: string;
  readonly stateChangedAt: string | null;
  readonly rootVersion: number | null;
  readonly leftRootVersion: number | null;
  readonly revokeReason: null;
  readonly listed: boolean;
  readonly serving: boolean;
}

const system = (): AuditContext => ({ actor: "hub", correlationId: newCorrelationId() });

export class CaRotation {
  constructor(
    private readonly db: Database,
    private readonly trust: TrustService,
    private readonly operatorKey: string,
  ) {}

  get federation(): string {
    return this.trust.federation;
  }

  /** The CAs this hub works with now: from the rotation's table, or the one CA of a federation that never rotated it. */
  async load(): Promise<FederationCas> {
    const rows = await this.db.query<AuthorityRow>("SELECT * FROM federation_authorities WHERE state IN ('active', 'overlap') ORDER BY created_at DESC");
    if (rows.length === 0) {
      const only = await loadAuthority(this.db, this.federation, this.operatorKey);
      return { active: only, serving: only, trusted: [only.certificatePem] };
    }
    const active = rows.find((r) => r.state === "active");
    const serving = rows.find((r) => r.serving) ?? active;
    if (active === undefined || serving === undefined) throw new Error("the federation's CAs name no active CA");
    const activeCa = await this.unsealed(active);
    const servingCa = serving === active ? activeCa : await this.unsealed(serving);
    return { active: activeCa, serving: servingCa, trusted: [serving.certificate_pem, ...rows.filter((r) => r !== serving).map((r) => r.certificate_pem)] };
  }

  private async unsealed(row: AuthorityRow): Promise<CertificateAuthority> {
    const privateKey = await importPrivateKeyPem(unseal(row.key_encrypted, this.operatorKey).toString("utf8"));
    return { federation: this.federation, certificate: new x509.X509Certificate(row.certificate_pem), certificatePem: row.certificate_pem, privateKey };
  }

  /**
   * A new federation CA, listed by a new root version (active, first) beside the one it
   * replaces (overlap). Refused while a previous rotation still overlaps, on a regional hub,
   * and in a federation with regional hubs or intermediates.
   */
  async rotate(context: AuditContext = system()): Promise<CaRotationResult> {
    if (this.trust.mirrored) throw forbidden("a regional hub holds its parent's roots and makes none: rotate the CA on the global hub");
    const now = this.trust.options.now();
    const fresh = await createCertificateAuthority(this.federation, now);
    const freshFingerprint = certificateFingerprint(fresh.authority.certificatePem);
    const result = await this.db.transaction(async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock($1)", [CA_LOCK]);
      const [regions] = await tx.query<{ hubs: string; intermediates: string }>(
        "SELECT (SELECT count(*) FROM regional_hubs WHERE revoked_at IS NULL)::text AS hubs, (SELECT count(*) FROM regional_authorities WHERE not_after > $1)::text AS intermediates",
        [now],
      );
      if (Number(regions?.hubs ?? 0) > 0 || Number(regions?.intermediates ?? 0) > 0) {
        throw conflict("the federation CA does not rotate while regions have hubs or intermediate CAs under it (re-issuing them under a new CA is not built): see README, Trust model");
      }
      const current = await this.currentRows(tx, now);
      const overlapping = current.find((r) => r.state === "overlap");
      if (overlapping !== undefined) {
        throw conflict(`a CA rotation is under way: CA ${overlapping.fingerprint.slice(0, 16)} still overlaps; it retires once every cluster holds a certificate of the new CA, or when the overlap ends`);
      }
      const old = current.find((r) => r.state === "active")!;
      await tx.query(
        "INSERT INTO federation_authorities (fingerprint, certificate_pem, key_encrypted, state, created_at, serving) VALUES ($1, $2, $3, 'active', $4, false)",
        [freshFingerprint, fresh.authority.certificatePem, JSON.stringify(seal(fresh.privateKeyPem, this.operatorKey)), now],
      );
      await tx.query("UPDATE federation_authorities SET state = 'overlap', state_changed_at = $1 WHERE fingerprint = $2", [now, old.fingerprint]);
      const listed: RootCertificateAuthority[] = [
        { certificate: fresh.authority.certificatePem, fingerprint: freshFingerprint, status: "active" },
        { certificate: old.certificate_pem, fingerprint: old.fingerprint, status: "overlap" },
      ];
      const { envelope, event } = await this.trust.publish(
        tx,
        (previous) => ({ keys: previous.keys, roles: previous.roles, delegations: previous.delegations, revoked: previous.revoked, certificateAuthorities: listed }),
        context,
      );
      const version = envelope.signed.version;
      await tx.query("UPDATE federation_authorities SET root_version = $1 WHERE fingerprint = $2", [version, freshFingerprint]);
      await this.trust.audit.record(tx, [
        event,
        { kind: "key.rotated", actor: context.actor, cluster: null, region: null, correlationId: context.correlationId, data: { purpose: "ca", keyId: freshFingerprint, previous: [old.fingerprint], rootVersion: version } },
      ]);
      return { purpose: "ca" as const, keyId: freshFingerprint, previous: [old.fingerprint], revoked: [], rootVersion: version };
    });
    await this.trust.reload();
    return result;
  }

  /**
   * The CAs in the table; a federation that never rotated its CA has it entered first (as
   * the active and serving one, listed by no root yet).
   */
  private async currentRows(tx: Queryable, now: Date): Promise<AuthorityRow[]> {
    const rows = await tx.query<AuthorityRow>("SELECT * FROM federation_authorities WHERE state IN ('active', 'overlap') FOR UPDATE");
    if (rows.length > 0) return rows;
    const [only] = await tx.query<{ certificate_pem: string; key_encrypted: Sealed; created_at: Date }>("SELECT certificate_pem, key_encrypted, created_at FROM certificate_authority");
    if (only === undefined) throw new Error("the database holds a federation without its certificate authority");
    const fingerprint = certificateFingerprint(only.certificate_pem);
    await tx.query("INSERT INTO federation_authorities (fingerprint, certificate_pem, key_encrypted, state, created_at, serving) VALUES ($1, $2, $3, 'active', $4, true)", [
      fingerprint,
      only.certificate_pem,
      JSON.stringify(only.key_encrypted),
      only.created_at ?? now,
    ]);
    return tx.query<AuthorityRow>("SELECT * FROM federation_authorities WHERE state IN ('active', 'overlap') FOR UPDATE");
  }

  /**
   * Retires the overlapping CA when it is due: every enrolled cluster (registered, not
   * revoked) holds a valid certificate of the new CA and acknowledged a bundle naming the
   * root that lists it, or the overlap ran out. The new root lists the new CA alone, and the
   * hubs serve with it from then on. Returns the fingerprint retired, if any.
   */
  async retireDue(context: AuditContext = system()): Promise<string | undefined> {
    if (this.trust.mirrored) return undefined;
    const now = this.trust.options.now();
    const rows = await this.db.query<AuthorityRow>("SELECT * FROM federation_authorities WHERE state IN ('active', 'overlap')");
    const old = rows.find((r) => r.state === "overlap");
    const active = rows.find((r) => r.state === "active");
    if (old === undefined || active === undefined) return undefined;
    const outOfTime = new Date(old.state_changed_at ?? now).getTime() + this.trust.options.overlapMs <= now.getTime();
    if (!outOfTime && !(await this.everyClusterMoved(active, now))) return undefined;
    await this.db.transaction(async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock($1)", [CA_LOCK]);
      const [still] = await tx.query<{ state: string }>("SELECT state FROM federation_authorities WHERE fingerprint = $1 FOR UPDATE", [old.fingerprint]);
      if (still?.state !== "overlap") return;
      // Never under a region's unexpired intermediate (one issued by a process that had not yet learned the rotation).
      const [regions] = await tx.query<{ n: string }>("SELECT count(*)::text AS n FROM regional_authorities WHERE not_after > $1 AND revoked_at IS NULL", [now]);
      if (Number(regions?.n ?? 0) > 0) return;
      const { envelope, event } = await this.trust.publish(
        tx,
        (previous) => ({
          keys: previous.keys,
          roles: previous.roles,
          delegations: previous.delegations,
          revoked: previous.revoked,
          certificateAuthorities: [{ certificate: active.certificate_pem, fingerprint: active.fingerprint, status: "active" }],
        }),
        context,
      );
      const version = envelope.signed.version;
      await tx.query("UPDATE federation_authorities SET state = 'retired', serving = false, state_changed_at = $1, left_root_version = $2 WHERE fingerprint = $3", [now, version, old.fingerprint]);
      await tx.query("UPDATE federation_authorities SET serving = true WHERE fingerprint = $1", [active.fingerprint]);
      await this.trust.audit.record(tx, [
        event,
        { kind: "key.retired", actor: context.actor, cluster: null, region: null, correlationId: context.correlationId, data: { purpose: "ca", keyId: old.fingerprint, rootVersion: version, reason: outOfTime ? "overlap ended" : "every cluster moved to the new CA" } },
      ] satisfies AuditEvent[]);
    });
    await this.trust.reload();
    return old.fingerprint;
  }

  /** Whether every enrolled cluster holds a valid certificate of `active` and acknowledged a bundle naming the root that lists it. */
  private async everyClusterMoved(active: AuthorityRow, now: Date): Promise<boolean> {
    const rows = await this.db.query<{ name: string; moved: boolean; envelope: string | null }>(
      `SELECT c.name,
              EXISTS (SELECT 1 FROM certificates k WHERE k.cluster = c.name AND k.authority = $1 AND k.revoked_at IS NULL AND k.not_after > $2) AS moved,
              (SELECT b.envelope FROM bundles b WHERE b.cluster = c.name
                 AND EXISTS (SELECT 1 FROM bundle_acknowledgements a WHERE a.cluster = b.cluster AND a.version >= b.version)) AS envelope
       FROM clusters c
       WHERE c.revoked_at IS NULL AND EXISTS (SELECT 1 FROM certificates k WHERE k.cluster = c.name)`,
      [active.fingerprint, now],
    );
    const listedFrom = active.root_version ?? Number.MAX_SAFE_INTEGER;
    return rows.every((r) => r.moved && r.envelope !== null && Number(/"rootVersion":(\d+)/.exec(r.envelope)?.[1] ?? 0) >= listedFrom);
  }

  /** Rotates the CA when the active one is `everyMs` old (and no rotation is under way). */
  async rotateScheduled(everyMs: number): Promise<CaRotationResult | undefined> {
    if (this.trust.mirrored) return undefined;
    const now = this.trust.options.now().getTime();
    const rows = await this.status();
    const active = rows.find((r) => r.state === "active");
    if (active === undefined || rows.some((r) => r.state === "overlap") || Date.parse(active.createdAt) + everyMs > now) return undefined;
    const [regions] = await this.db.query<{ n: string }>("SELECT ((SELECT count(*) FROM regional_hubs WHERE revoked_at IS NULL) + (SELECT count(*) FROM regional_authorities WHERE not_after > $1))::text AS n", [new Date(now)]);
    if (Number(regions?.n ?? 0) > 0) return undefined;
    return this.rotate({ actor: "hub:schedule", correlationId: newCorrelationId() });
  }

  /** Every CA of the federation, newest first, as `polity keys status` lists keys. */
  async status(): Promise<CaKeyRow[]> {
    const rows = await this.db.query<AuthorityRow>("SELECT * FROM federation_authorities ORDER BY created_at DESC");
    if (rows.length === 0) {
      const [only] = await this.db.query<{ certificate_pem: string; created_at: Date }>("SELECT certificate_pem, created_at FROM certificate_authority");
      if (only === undefined) return [];
      return [
        {
          id: certificateFingerprint(only.certificate_pem),
          purpose: "ca",
          region: null,
          state: "active",
          createdAt: new Date(only.created_at).toISOString(),
          stateChangedAt: null,
          rootVersion: null,
          leftRootVersion: null,
          revokeReason: null,
          listed: false,
          serving: true,
        },
      ];
    }
    const root = this.trust.root;
    return rows.map((r) => ({
      id: r.fingerprint,
      purpose: "ca",
      region: null,
      state: r.state,
      createdAt: new Date(r.created_at).toISOString(),
      stateChangedAt: r.state_changed_at === null ? null : new Date(r.state_changed_at).toISOString(),
      rootVersion: r.root_version,
      leftRootVersion: r.left_root_version,
      revokeReason: null,
      listed: root.certificateAuthorities?.some((ca) => ca.fingerprint === r.fingerprint) ?? false,
      serving: r.serving,
    }));
  }
}
