/**
 * The hub's side of the federation's root of trust (src/trust): the root versions it signs
 * and serves, the keys they list, regions' delegations and their intermediate CAs. This
 * module owns `trust_roots` and `regional_authorities`; it moves `signing_keys` through
 * their states (keys.ts) when a root names them.
 *
 * Root version 1 is made at the first start after migration 15, listing the keys the hub
 * already had (so that agents enrolled before roots find the bundle key they pinned in it).
 * Every later version is signed by the root keys of the one before and by its own, in the
 * transaction that changes what it lists (a rotation, a revocation, a delegation), under one
 * advisory lock whichever hub process makes it. Rotation and revocation are in
 * key-rotation.ts.
 */
import { createPublicKey } from "node:crypto";
import type { AuditEvent } from "../audit/entry.js";
import { keyIdOf } from "../bundle/index.js";
import { canonicalJson, contentHash } from "../canonical/index.js";
import type { CertificateAuthority } from "../identity/ca.js";
import { issueRegionalCa as issueIntermediate, RegionalCaError } from "../identity/regional-ca.js";
import type { Database, Queryable } from "../store/database.js";
import { certificateFingerprint, parseRootEnvelope, ROOT_TYPE, signRoot, verifyRootSelf, verifyRootUpdate, type RootEnvelope, type RootMetadata } from "../trust/index.js";
import { newCorrelationId, type AuditContext, type AuditLog } from "./audit-log.js";
import { createSigningKey, loadSigningKey, signingKeyById, type KeyPurpose, type SigningKey } from "./keys.js";
import { badRequest, conflict, forbidden } from "./status.js";

const TRUST_LOCK = 7_346_215;
/** The federation CA rotation's lock (src/hub/ca-rotation.ts): a region's CA is issued under it too. */
export const CA_LOCK = 7_346_221;
const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const DAY = 24 * 3600 * 1000;

export interface TrustOptions {
  readonly now: () => Date;
  /** How long a root version is valid when signed (default 365 days; re-signed long before). */
  readonly rootValidityMs: number;
  /** How long a region's delegation lasts (default 90 days): a regional hub renews it. */
  readonly delegationValidityMs: number;
  /** Lifetime of a regional intermediate CA certificate (default 90 days). */
  readonly regionalCaTtlMs: number;
  /**
   * How long a rotated-out key stays listed in the root (overlap) at most: it leaves sooner
   * once every agent acknowledged a bundle under its successor (default 48 h).
   */
  readonly overlapMs: number;
}

export const DEFAULT_TRUST_OPTIONS: Omit<TrustOptions, "now"> = { rootValidityMs: 365 * DAY, delegationValidityMs: 90 * DAY, regionalCaTtlMs: 90 * DAY, overlapMs: 2 * DAY };

/** What changes from one root version to the next (everything but version, times and type). */
export type RootChange = (previous: RootMetadata) => Pick<RootMetadata, "keys" | "roles" | "delegations" | "revoked" | "certificateAuthorities">;

type Listener = (root: RootMetadata) => Promise<void> | void;

export class TrustService {
  private latest: RootEnvelope;
  /** Root version 1, which every agent pins at enrolment (it never changes). */
  private first: RootEnvelope | undefined;
  private readonly listeners: Listener[] = [];

  private constructor(
    readonly db: Database,
    private readonly operatorKey: string,
    readonly authority: CertificateAuthority,
    readonly audit: AuditLog,
    readonly options: TrustOptions,
    latest: RootEnvelope,
  ) {
    this.latest = latest;
  }

  /**
   * A regional hub's: the roots its parent published, mirrored (src/hub/regional/roots.ts).
   * It makes none: publishing, delegating and issuing regional CAs are the global hub's.
   */
  static async mirror(db: Database, operatorKey: string, authority: CertificateAuthority, audit: AuditLog, options: TrustOptions): Promise<TrustService> {
    const newest = await newestRoot(db);
    if (newest === undefined) throw new Error("this regional hub holds no root of its parent's yet: it must reach its parent once to fetch them");
    const service = new TrustService(db, operatorKey, authority, audit, options, newest);
    service.mirrored = true;
    return service;
  }

  /** A regional hub's mirror of its parent's roots: it publishes none. */
  mirrored = false;

  /**
   * The CA that issues regions' intermediates now (ca-rotation.ts): the active one, or
   * undefined while a CA rotation overlaps (refused then: a region would pin a CA its hub
   * cannot yet reach its parent with). Unset: the CA this service was opened with.
   */
  private issuer: (() => CertificateAuthority | undefined) | undefined;

  useIssuer(issuer: () => CertificateAuthority | undefined): void {
    this.issuer = issuer;
  }

  /** Loads the newest root, or makes version 1 from the keys the hub holds (first start after migration 15). */
  static async open(db: Database, operatorKey: string, authority: CertificateAuthority, audit: AuditLog, options: TrustOptions): Promise<TrustService> {
    const keys: Record<KeyPurpose, SigningKey> = {
      root: await loadSigningKey(db, operatorKey, "root"),
      bundles: await loadSigningKey(db, operatorKey, "bundles"),
      "audit-log": await loadSigningKey(db, operatorKey, "audit-log"),
    };
    const envelope = await db.transaction(async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock($1)", [TRUST_LOCK]);
      const existing = await newestRoot(tx);
      if (existing !== undefined) return existing;
      const now = options.now();
      const signed: RootMetadata = {
        type: ROOT_TYPE,
        specVersion: 1,
        federation: authority.federation,
        version: 1,
        issuedAt: now.toISOString(),
        expires: new Date(now.getTime() + options.rootValidityMs).toISOString(),
        keys: Object.fromEntries((Object.entries(keys) as [KeyPurpose, SigningKey][]).map(([purpose, key]) => [key.keyId, { publicKey: key.publicKeyPem, purpose }])),
        roles: {
          root: { keyIds: [keys.root.keyId], threshold: 1 },
          bundles: { keyIds: [keys.bundles.keyId], threshold: 1 },
          "audit-log": { keyIds: [keys["audit-log"].keyId], threshold: 1 },
        },
        delegations: [],
        revoked: [],
      };
      // Signed by the bundles key too (agents enrolled before roots once migrated on it; they
      // no longer do: src/agent/bundle/roots.ts). Harmless: the root keys' threshold is what counts.
      const first = signRoot(signed, [keys.root.privateKey, keys.bundles.privateKey]);
      verifyRootSelf(first, authority.federation);
      await tx.query("INSERT INTO trust_roots (version, envelope, created_at) VALUES (1, $1, $2)", [canonicalJson(first), now]);
      await tx.query("UPDATE signing_keys SET root_version = 1 WHERE id = ANY($1)", [Object.values(keys).map((k) => k.keyId)]);
      await audit.record(tx, [rootEvent(first, { actor: "hub", correlationId: newCorrelationId() })]);
      return first;
    });
    return new TrustService(db, operatorKey, authority, audit, options, envelope);
  }

  private refuseOnMirror(): void {
    if (this.mirrored) throw forbidden("a regional hub holds its parent's roots and makes none: rotate, revoke and delegate on the global hub");
  }

  get federation(): string {
    return this.authority.federation;
  }

  /** The newest root this process knows. */
  get root(): RootMetadata {
    return this.latest.signed;
  }

  get envelope(): RootEnvelope {
    return this.latest;
  }

  /** A new signing key for `purpose`, sealed under the operator's key, in the caller's transaction. */
  newKey(tx: Queryable, purpose: KeyPurpose, now: Date): Promise<SigningKey> {
    return createSigningKey(tx, this.operatorKey, purpose, now);
  }

  /** Called with each newer root this process learns (its own, or another hub process's). */
  onChange(listener: Listener): void {
    this.listeners.push(listener);
  }

  /** Reads the newest root from the database; tells the listeners when it is newer. */
  async reload(): Promise<RootMetadata> {
    const newest = await newestRoot(this.db);
    if (newest !== undefined && newest.signed.version > this.latest.signed.version) {
      this.latest = newest;
      for (const listener of this.listeners) await listener(newest.signed);
    }
    return this.latest.signed;
  }

  /** Root versions after `after`, oldest first, at most `limit` (an agent asks again from the last). */
  async rootsAfter(after: number, limit = 50): Promise<RootEnvelope[]> {
    const rows = await this.db.query<{ envelope: string }>("SELECT envelope FROM trust_roots WHERE version > $1 ORDER BY version LIMIT $2", [after, limit]);
    return rows.map((r) => parseRootEnvelope(r.envelope));
  }

  async rootVersion(version: number): Promise<RootEnvelope | undefined> {
    if (version === 1 && this.first !== undefined) return this.first;
    const [row] = await this.db.query<{ envelope: string }>("SELECT envelope FROM trust_roots WHERE version = $1", [version]);
    const envelope = row === undefined ? undefined : parseRootEnvelope(row.envelope);
    if (version === 1) this.first = envelope;
    return envelope;
  }

  /**
   * Publishes the next root version in the caller's transaction (which must hold no other
   * trust lock): `change` gives what it lists; it is signed by every root key of the previous
   * version and of its own that this federation holds, and checked as an agent will check
   * it. Returns it and its audit event; call `reload` after the commit.
   */
  async publish(tx: Queryable, change: RootChange, context: AuditContext): Promise<{ envelope: RootEnvelope; event: AuditEvent }> {
    this.refuseOnMirror();
    await tx.query("SELECT pg_advisory_xact_lock($1)", [TRUST_LOCK]);
    const previous = (await newestRoot(tx))!;
    const now = this.options.now();
    const next: RootMetadata = {
      ...previous.signed,
      ...change(previous.signed),
      version: previous.signed.version + 1,
      issuedAt: now.toISOString(),
      expires: new Date(now.getTime() + this.options.rootValidityMs).toISOString(),
    };
    const signers: SigningKey[] = [];
    for (const keyId of new Set([...previous.signed.roles.root.keyIds, ...next.roles.root.keyIds])) {
      const key = await signingKeyById(tx, this.operatorKey, keyId);
      if (key !== undefined) signers.push(key);
    }
    const envelope = signRoot(pruneKeys(next), signers.map((k) => k.privateKey));
    verifyRootUpdate(previous.signed, envelope);
    await tx.query("INSERT INTO trust_roots (version, envelope, created_at) VALUES ($1, $2, $3)", [envelope.signed.version, canonicalJson(envelope), now]);
    return { envelope, event: rootEvent(envelope, context) };
  }

  /**
   * Delegates `region` to an Ed25519 key its regional hub made (SPKI PEM): a new root version
   * whose delegation for the region names this key only (a previous one of the region's is
   * retired with it). The key may sign that region's bundles and layer, nothing else.
   */
  async delegateRegion(region: string, publicKeyPem: string, context: AuditContext = { actor: "hub", correlationId: newCorrelationId() }): Promise<RootEnvelope> {
    this.refuseOnMirror();
    if (!NAME.test(region)) throw badRequest(`region ${JSON.stringify(region).slice(0, 80)} is not a region name`);
    let keyId: string;
    try {
      const key = createPublicKey(publicKeyPem);
      if (key.asymmetricKeyType !== "ed25519") throw new Error("not ed25519");
      keyId = keyIdOf(key);
    } catch {
      throw badRequest("a region's delegated key must be an Ed25519 public key (SPKI PEM)");
    }
    const pem = createPublicKey(publicKeyPem).export({ type: "spki", format: "pem" }).toString();
    const now = this.options.now();
    const expires = new Date(now.getTime() + this.options.delegationValidityMs).toISOString();
    const envelope = await this.db.transaction(async (tx) => {
      const [row] = await tx.query<{ purpose: string; region: string | null; state: string }>("SELECT purpose, region, state FROM signing_keys WHERE id = $1", [keyId]);
      if (row !== undefined && (row.purpose !== "region" || row.region !== region)) throw conflict(`key ${keyId.slice(0, 12)}… is already the federation's ${row.purpose} key${row.region === null ? "" : ` for region ${row.region}`}`);
      if (row?.state === "revoked") throw conflict(`key ${keyId.slice(0, 12)}… is revoked: a region delegates to a new key`);
      const { envelope, event } = await this.publish(
        tx,
        (previous) => {
          const replaced = previous.delegations.find((d) => d.region === region)?.keyIds.filter((k) => k !== keyId) ?? [];
          return {
            keys: { ...Object.fromEntries(Object.entries(previous.keys).filter(([id]) => !replaced.includes(id))), [keyId]: { publicKey: pem, purpose: "region" } },
            roles: previous.roles,
            delegations: [...previous.delegations.filter((d) => d.region !== region), { region, keyIds: [keyId], threshold: 1, expires }],
            revoked: previous.revoked,
          };
        },
        context,
      );
      const version = envelope.signed.version;
      await tx.query(
        `INSERT INTO signing_keys (id, purpose, region, public_key_pem, private_key_sealed, created_at, state, root_version) VALUES ($1, 'region', $2, $3, NULL, $4, 'active', $5)
         ON CONFLICT (id) DO UPDATE SET state = 'active'`,
        [keyId, region, pem, now, version],
      );
      const retired = await tx.query<{ id: string }>(
        "UPDATE signing_keys SET state = 'retired', state_changed_at = $1, left_root_version = $2 WHERE purpose = 'region' AND region = $3 AND id <> $4 AND state IN ('active', 'overlap') RETURNING id",
        [now, version, region, keyId],
      );
      await this.audit.record(tx, [
        event,
        { kind: "region.delegated", actor: context.actor, cluster: null, region, correlationId: context.correlationId, data: { keyId, expires, rootVersion: version, replaced: retired.map((r) => r.id) } },
      ]);
      return envelope;
    });
    await this.reload();
    return envelope;
  }

  /**
   * An intermediate CA certificate for `region`, for the ECDSA P-256 key its regional hub
   * made (SPKI PEM): CA, pathLen 0, name-constrained to `spiffe://<federation>/region/<region>/`.
   * Returns it with the chain up to the federation CA.
   */
  async issueRegionalCa(region: string, publicKeyPem: string, context: AuditContext = { actor: "hub", correlationId: newCorrelationId() }): Promise<{ certificatePem: string; serial: string; notAfter: string; chainPem: string[] }> {
    this.refuseOnMirror();
    const authority = this.issuer === undefined ? this.authority : this.issuer();
    if (authority === undefined) throw conflict("a CA rotation is under way: regions' CAs (and regional hubs) are issued again once the old CA retires (polity keys status)");
    const now = this.options.now();
    let issued;
    try {
      issued = await issueIntermediate(authority, region, publicKeyPem, now, this.options.regionalCaTtlMs);
    } catch (error) {
      if (error instanceof RegionalCaError) throw badRequest(error.message);
      throw error;
    }
    await this.db.transaction(async (tx) => {
      // Under the CA rotation's lock, from the database: another hub process may have begun a
      // rotation this one has not learned yet (its in-memory CA is then the old one).
      await tx.query("SELECT pg_advisory_xact_lock($1)", [CA_LOCK]);
      const cas = await tx.query<{ fingerprint: string; state: string }>("SELECT fingerprint, state FROM federation_authorities WHERE state IN ('active', 'overlap')");
      if (cas.some((ca) => ca.state === "overlap") || (cas.length > 0 && !cas.some((ca) => ca.state === "active" && ca.fingerprint === certificateFingerprint(authority.certificatePem)))) {
        throw conflict("a CA rotation is under way: regions' CAs (and regional hubs) are issued again once the old CA retires (polity keys status)");
      }
      await tx.query("INSERT INTO regional_authorities (serial, region, certificate_pem, issued_at, not_after) VALUES ($1, $2, $3, $4, $5)", [issued.serial, region, issued.certificatePem, now, issued.notAfter]);
      await this.audit.record(tx, [
        { kind: "region.ca-issued", actor: context.actor, cluster: null, region, correlationId: context.correlationId, data: { serial: issued.serial, notAfter: issued.notAfter.toISOString() } },
      ]);
    });
    return { certificatePem: issued.certificatePem, serial: issued.serial, notAfter: issued.notAfter.toISOString(), chainPem: [issued.certificatePem, authority.certificatePem] };
  }
}

/** The names the regional hub codes against (issue 15), as functions of the hub's TrustService. */
export function delegateRegion(trust: TrustService, region: string, publicKeyPem: string, context?: AuditContext): Promise<RootEnvelope> {
  return trust.delegateRegion(region, publicKeyPem, context);
}

export function issueRegionalCa(trust: TrustService, region: string, publicKeyPem: string, context?: AuditContext): ReturnType<TrustService["issueRegionalCa"]> {
  return trust.issueRegionalCa(region, publicKeyPem, context);
}

async function newestRoot(q: Queryable): Promise<RootEnvelope | undefined> {
  const [row] = await q.query<{ envelope: string }>("SELECT envelope FROM trust_roots ORDER BY version DESC LIMIT 1");
  return row === undefined ? undefined : parseRootEnvelope(row.envelope);
}

/** Only the keys a role or delegation names stay listed. */
function pruneKeys(root: RootMetadata): RootMetadata {
  const named = new Set([...root.roles.root.keyIds, ...root.roles.bundles.keyIds, ...root.roles["audit-log"].keyIds, ...root.delegations.flatMap((d) => d.keyIds)]);
  return { ...root, keys: Object.fromEntries(Object.entries(root.keys).filter(([id]) => named.has(id))) };
}

function rootEvent(envelope: RootEnvelope, context: AuditContext): AuditEvent {
  const root = envelope.signed;
  return {
    kind: "trust.root-published",
    actor: context.actor,
    cluster: null,
    region: null,
    correlationId: context.correlationId,
    data: {
      version: root.version,
      expires: root.expires,
      roles: { root: [...root.roles.root.keyIds], bundles: [...root.roles.bundles.keyIds], "audit-log": [...root.roles["audit-log"].keyIds] },
      delegations: root.delegations.map((d) => ({ region: d.region, keyIds: [...d.keyIds], expires: d.expires })),
      revoked: [...root.revoked],
      ...(root.certificateAuthorities === undefined ? {} : { certificateAuthorities: root.certificateAuthorities.map((ca) => ({ fingerprint: ca.fingerprint, status: ca.status })) }),
      envelopeHash: contentHash(Buffer.from(canonicalJson(envelope), "utf8")),
    },
  };
}
