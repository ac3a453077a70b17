/**
 * Keys that rotate: on demand (`polity keys rotate`), on a schedule (`--rotate-every`), and
 * revoked on suspicion (`--revoke KEYID --reason …`). Every step is a new root version
 * (trust.ts), published in the transaction that moves the keys' states (keys.ts), with its
 * audit entries:
 *
 *   1. rotate: a new key enters the root (its role lists the new key first, the old one
 *      after it) before it signs anything; the old key goes to `overlap`. The root key
 *      itself is replaced at once: the new root is signed by the old root key and the new.
 *   2. bundles are made again with the new key, naming the new root: each agent fetches the
 *      root, verifies it against the one it holds, then the bundle. No restart, no refusal.
 *   3. retire: a later root drops an overlapping key once every cluster acknowledged a
 *      bundle under its successor, or when the overlap (TrustOptions.overlapMs) runs out.
 *   revoke: the key goes to `revoked` in a new root (a signing key is replaced by a new one
 *   in the same root); the bundles made under that root carry it to every agent, which
 *   from then on refuses anything the key signs.
 *
 * The federation CA rotates in ca-rotation.ts.
 */
import type { AuditEvent } from "../audit/entry.js";
import type { Queryable } from "../store/database.js";
import type { RootMetadata } from "../trust/index.js";
import { newCorrelationId, type AuditContext } from "./audit-log.js";
import { listKeys, type KeyPurpose, type KeyRow } from "./keys.js";
import { badRequest, conflict, notFound } from "./status.js";
import type { TrustService } from "./trust.js";
import { dropRegionCopies } from "./regional/sent-bundles.js";

export const ROTATABLE: readonly KeyPurpose[] = ["root", "bundles", "audit-log"];

export interface RotationResult {
  readonly purpose: KeyPurpose;
  readonly keyId: string;
  readonly previous: readonly string[];
  readonly revoked: readonly string[];
  readonly rootVersion: number;
}

const system = (): AuditContext => ({ actor: "hub", correlationId: newCorrelationId() });

/**
 * Rotates the federation's key for `purpose`; with `revoke`, the key(s) named are revoked
 * in the same root instead of overlapping (one of them may be the active one).
 */
export async function rotateKey(trust: TrustService, purpose: KeyPurpose, options: { readonly revoke?: readonly string[]; readonly reason?: string } = {}, context = system()): Promise<RotationResult> {
  if (!ROTATABLE.includes(purpose)) throw badRequest(`keys rotate for one of: ${ROTATABLE.join(", ")} (the CA: ca-rotation.ts)`);
  const revoke = [...(options.revoke ?? [])];
  const now = trust.options.now();
  const result = await trust.db.transaction(async (tx) => {
    const rows = await tx.query<{ id: string; purpose: string; state: string }>("SELECT id, purpose, state FROM signing_keys WHERE purpose = $1 AND state IN ('active', 'overlap') FOR UPDATE", [purpose]);
    for (const id of revoke) if (!rows.some((r) => r.id === id)) throw conflict(`key ${id.slice(0, 12)}… is not a current ${purpose} key`);
    const fresh = await trust.newKey(tx, purpose, now);
    const old = rows.map((r) => r.id);
    // The root key is replaced outright; others overlap (unless revoked).
    const overlapping = purpose === "root" ? [] : old.filter((id) => !revoke.includes(id));
    const { envelope, event } = await trust.publish(
      tx,
      (previous) => ({
        keys: { ...previous.keys, [fresh.keyId]: { publicKey: fresh.publicKeyPem, purpose } },
        roles: { ...previous.roles, [purpose]: { keyIds: [fresh.keyId, ...overlapping], threshold: 1 } },
        delegations: previous.delegations,
        revoked: [...new Set([...previous.revoked, ...revoke])],
      }),
      context,
    );
    const version = envelope.signed.version;
    await tx.query("UPDATE signing_keys SET root_version = $1 WHERE id = $2", [version, fresh.keyId]);
    await tx.query("UPDATE signing_keys SET state = 'overlap', state_changed_at = $1 WHERE id = ANY($2) AND state = 'active'", [now, overlapping]);
    const retired = old.filter((id) => !overlapping.includes(id) && !revoke.includes(id));
    await tx.query("UPDATE signing_keys SET state = 'retired', state_changed_at = $1, left_root_version = $2 WHERE id = ANY($3)", [now, version, retired]);
    await markRevoked(tx, revoke, options.reason ?? "", now, version);
    const events: AuditEvent[] = [
      event,
      { kind: "key.rotated", actor: context.actor, cluster: null, region: null, correlationId: context.correlationId, data: { purpose, keyId: fresh.keyId, previous: old, rootVersion: version } },
      // A key replaced outright (the root key) leaves the root at once.
      ...retired.map((keyId): AuditEvent => ({ kind: "key.retired", actor: context.actor, cluster: null, region: null, correlationId: context.correlationId, data: { keyId, rootVersion: version } })),
      ...revoke.map((keyId) => revokedEvent(keyId, purpose, options.reason ?? "", version, context)),
    ];
    await trust.audit.record(tx, events);
    return { purpose, keyId: fresh.keyId, previous: old, revoked: revoke, rootVersion: version };
  });
  await trust.reload();
  return result;
}

/**
 * Revokes a key by id: the federation's own signing key of any purpose (replaced by a new
 * one in the same root when it is the active one), or a region's delegated key (its
 * delegation ends; the region asks for a new one).
 */
export async function revokeKey(trust: TrustService, keyId: string, reason: string, context = system()): Promise<RotationResult> {
  if (!/^[0-9a-f]{64}$/.test(keyId)) throw badRequest("a key id is 64 hex digits (polity keys status lists them)");
  if (reason.trim() === "" || reason.length > 500) throw badRequest("a revocation needs a reason (--reason), at most 500 characters");
  const [row] = await trust.db.query<{ purpose: KeyPurpose | "region"; state: string; region: string | null }>("SELECT purpose, state, region FROM signing_keys WHERE id = $1", [keyId]);
  if (row === undefined) throw notFound(`no key ${keyId.slice(0, 12)}… in this federation`);
  if (row.state === "revoked") throw conflict(`key ${keyId.slice(0, 12)}… is already revoked`);
  if (row.purpose !== "region" && (row.state === "active" || row.state === "overlap")) return rotateKey(trust, row.purpose, { revoke: [keyId], reason }, context);
  const now = trust.options.now();
  const result = await trust.db.transaction(async (tx) => {
    const { envelope, event } = await trust.publish(
      tx,
      (previous) => ({
        keys: previous.keys,
        roles: previous.roles,
        delegations: previous.delegations.filter((d) => !d.keyIds.includes(keyId)),
        revoked: [...new Set([...previous.revoked, keyId])],
      }),
      context,
    );
    await markRevoked(tx, [keyId], reason, now, envelope.signed.version);
    const cutOff = row.region === null ? undefined : await cutOffRegion(tx, row.region, now);
    await trust.audit.record(tx, [event, revokedEvent(keyId, row.purpose, reason, envelope.signed.version, context, row.region, cutOff)]);
    return { purpose: row.purpose as KeyPurpose, keyId, previous: [keyId], revoked: [keyId], rootVersion: envelope.signed.version };
  });
  await trust.reload();
  return result;
}

/**
 * Retires overlapping keys that are due: a bundles key once every cluster's newest bundle is
 * signed by its successor and acknowledged by the cluster's agent, or, for any, when the
 * overlap has run out. One root version for all of them. Returns what it retired.
 */
export async function retireDue(trust: TrustService, context = system()): Promise<string[]> {
  const now = trust.options.now();
  const overlapping = await trust.db.query<{ id: string; purpose: KeyPurpose; state_changed_at: Date }>("SELECT id, purpose, state_changed_at FROM signing_keys WHERE state = 'overlap'");
  const due: string[] = [];
  for (const key of overlapping) {
    const outOfTime = new Date(key.state_changed_at).getTime() + trust.options.overlapMs <= now.getTime();
    if (outOfTime || (key.purpose === "bundles" && (await everyAgentMovedOn(trust, key.id)))) due.push(key.id);
  }
  if (due.length === 0) return [];
  await trust.db.transaction(async (tx) => {
    const { envelope, event } = await trust.publish(tx, (previous) => ({ keys: previous.keys, roles: without(previous.roles, due), delegations: previous.delegations, revoked: previous.revoked }), context);
    await tx.query("UPDATE signing_keys SET state = 'retired', state_changed_at = $1, left_root_version = $2 WHERE id = ANY($3) AND state = 'overlap'", [now, envelope.signed.version, due]);
    await trust.audit.record(tx, [
      event,
      ...due.map((keyId): AuditEvent => ({ kind: "key.retired", actor: context.actor, cluster: null, region: null, correlationId: context.correlationId, data: { keyId, rootVersion: envelope.signed.version } })),
    ]);
  });
  await trust.reload();
  return due;
}

/** Whether no cluster's newest bundle is still signed by `keyId`, nor unacknowledged by its agent. */
async function everyAgentMovedOn(trust: TrustService, keyId: string): Promise<boolean> {
  const [row] = await trust.db.query<{ waiting: string }>(
    `SELECT count(*)::text AS waiting FROM bundles b JOIN clusters c ON c.name = b.cluster
     WHERE position($1 in b.envelope) > 0
        OR NOT EXISTS (SELECT 1 FROM bundle_acknowledgements a WHERE a.cluster = b.cluster AND a.version >= b.version)`,
    [`"keyId":"${keyId}"`],
  );
  return Number(row?.waiting ?? 1) === 0;
}

/**
 * Re-signs the root before it expires (agents refuse new bundles under an expired root): when
 * less than a third of its validity is left, a new version listing the same keys, roles,
 * delegations and revocations. Returns the new version, or undefined when none was due.
 */
export async function renewRootDue(trust: TrustService, context = system()): Promise<number | undefined> {
  const root = await trust.reload();
  if (Date.parse(root.expires) - trust.options.now().getTime() > trust.options.rootValidityMs / 3) return undefined;
  const version = await trust.db.transaction(async (tx) => {
    const { envelope, event } = await trust.publish(tx, (previous) => ({ keys: previous.keys, roles: previous.roles, delegations: previous.delegations, revoked: previous.revoked }), context);
    await trust.audit.record(tx, [event]);
    return envelope.signed.version;
  });
  await trust.reload();
  return version;
}

/** Keys whose scheduled rotation is due: the active key of each purpose older than `everyMs`. */
export async function rotateScheduled(trust: TrustService, everyMs: number): Promise<RotationResult[]> {
  const now = trust.options.now().getTime();
  const keys = await listKeys(trust.db);
  const done: RotationResult[] = [];
  for (const purpose of ROTATABLE) {
    const active = keys.find((k) => k.purpose === purpose && k.state === "active");
    if (active !== undefined && Date.parse(active.createdAt) + everyMs <= now) done.push(await rotateKey(trust, purpose, {}, { actor: "hub:schedule", correlationId: newCorrelationId() }));
  }
  return done;
}

export interface KeyStatus extends KeyRow {
  /** Whether the newest root lists it (in a role or a delegation). */
  readonly listed: boolean;
}

/** Every key with its state, and the newest root's version. */
export async function keyStatus(trust: TrustService): Promise<{ rootVersion: number; rootExpires: string; keys: KeyStatus[] }> {
  const root = await trust.reload();
  const keys = (await listKeys(trust.db)).map((k) => ({ ...k, listed: root.keys[k.id] !== undefined && !root.revoked.includes(k.id) }));
  return { rootVersion: root.version, rootExpires: root.expires, keys };
}

function without(roles: RootMetadata["roles"], ids: readonly string[]): RootMetadata["roles"] {
  const keep = (role: RootMetadata["roles"]["bundles"]) => {
    const keyIds = role.keyIds.filter((id) => !ids.includes(id));
    return { keyIds, threshold: Math.min(role.threshold, keyIds.length) };
  };
  return { root: keep(roles.root), bundles: keep(roles.bundles), "audit-log": keep(roles["audit-log"]) };
}

async function markRevoked(tx: Queryable, ids: readonly string[], reason: string, now: Date, version: number): Promise<void> {
  if (ids.length === 0) return;
  await tx.query("UPDATE signing_keys SET state = 'revoked', state_changed_at = $1, revoke_reason = $2, left_root_version = $3 WHERE id = ANY($4)", [now, reason, version, ids]);
}

/**
 * A region whose delegated key is revoked is cut off at this hub: its regional hub (link,
 * summaries, mirror refused), its CAs (the certificates they issued refused), the bundles it
 * sent up (no longer served to its agents; their versions kept, which this hub's next bundles pass), and every certificate of its clusters (they enrol
 * again, with join tokens from this hub). It comes back by enrolling again.
 */
async function cutOffRegion(tx: Queryable, region: string, now: Date): Promise<{ regionalHub: boolean; authorities: string[]; bundlesDropped: number; certificatesRevoked: number }> {
  const hubs = await tx.query("UPDATE regional_hubs SET revoked_at = $1 WHERE region = $2 AND revoked_at IS NULL RETURNING region", [now, region]);
  const authorities = await tx.query<{ serial: string }>("UPDATE regional_authorities SET revoked_at = $1 WHERE region = $2 AND revoked_at IS NULL RETURNING serial", [now, region]);
  const bundles = await dropRegionCopies(tx, region);
  // Every certificate of the region's clusters, wherever it was issued: the region's CA could
  // have minted one for a key it chose and had it renewed here from the federation CA.
  const certificates = await tx.query("UPDATE certificates SET revoked_at = $1 WHERE region = $2 AND revoked_at IS NULL RETURNING serial", [now, region]);
  return { regionalHub: hubs.length > 0, authorities: authorities.map((a) => a.serial), bundlesDropped: bundles.length, certificatesRevoked: certificates.length };
}

function revokedEvent(keyId: string, purpose: string, reason: string, version: number, context: AuditContext, region: string | null = null, cutOff?: { regionalHub: boolean; authorities: string[]; bundlesDropped: number; certificatesRevoked: number }): AuditEvent {
  return { kind: "key.revoked", actor: context.actor, cluster: null, region, correlationId: context.correlationId, data: { keyId, purpose, reason, rootVersion: version, ...(cutOff === undefined ? {} : { cutOff }) } };
}
