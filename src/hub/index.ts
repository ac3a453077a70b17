/**
 * startHub: a hub process. Opens the database (PGlite in the data folder, or PostgreSQL),
 * brings its schema up to date, loads (or at the very first start creates) the
 * federation and its CA, issues itself a serving certificate, and serves the API.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../files/write.js";
import { openDatabase, type Database } from "../store/database.js";
import { migrate } from "../store/migrations.js";
import type { CertificateAuthority } from "../identity/ca.js";
import { AuditLog, appendEntries, DEFAULT_AUDIT_OPTIONS, newCorrelationId, type AuditOptions } from "./audit-log.js";
import { BundleService } from "./bundles.js";
import { Changes } from "./change.js";
import { Exceptions } from "./exceptions.js";
import { Proposals } from "./proposals.js";
import { Federation } from "./federation.js";
import { createAuthority, IdentityService, loadAuthority } from "./identity.js";
import { loadSigningKey } from "./keys.js";
import { Reports } from "./reports.js";
import { Impacts } from "./impact.js";
import { Rollouts } from "./rollouts.js";
import { ClusterIntents } from "./intents-status.js";
import { Compliance } from "./compliance.js";
import { Drift } from "./drift.js";
import type { Hub } from "./route.js";
import { createServer } from "./server.js";
import { TokenService } from "./tokens.js";
import { openRegionalFederation, type RegionalOptions } from "./regional/open.js";
import { mirroredVersionFloors, Regions, regionsWithHubs } from "./regional/parent.js";
import { RegionalRole } from "./regional/role.js";
import { RegionalRenewal } from "./regional/renewal.js";
import { parentEndpoint, type RegionalCredentials } from "./regional/credentials.js";
import { pullRoots } from "./regional/roots.js";
import { DEFAULT_TRUST_OPTIONS, TrustService, type TrustOptions } from "./trust.js";
import { renewRootDue, retireDue, rotateScheduled } from "./key-rotation.js";
import { hubPlace, Residency } from "./residency.js";
import { CaRotation } from "./ca-rotation.js";
import { certificateFingerprint, type RootMetadata } from "../trust/index.js";

export interface HubOptions {
  /** Folder for the embedded database, the CA certificate and the bootstrap token. */
  readonly dataDir: string;
  /** `postgres://…`: a PostgreSQL server shared by any number of hub processes. */
  readonly databaseUrl?: string;
  /** PostgreSQL schema (tests use one each). */
  readonly schema?: string;
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  /** The federation's name, used at the very first start (default "polity"). */
  readonly federation?: string;
  /** The key that seals the CA's private key. */
  readonly operatorKey: string;
  /** Extra DNS names for the hub's serving certificate (localhost and loopback are always in it). */
  readonly hostnames?: readonly string[];
  readonly certificateTtlMs?: number;
  readonly graceMs?: number;
  /** How long a bundle is valid when issued (default 24 h). */
  readonly bundleValidityMs?: number;
  readonly now?: () => Date;
  readonly log?: boolean;
  /** Audit log timings and bounds (integration every second, a head at least every minute…). */
  readonly audit?: Partial<Omit<AuditOptions, "origin" | "now">>;
  /** How often running rollouts are judged (default 1 s). */
  readonly rolloutIntervalMs?: number;
  /** Run as the regional hub of a region, under a parent hub (src/hub/regional/). */
  readonly regional?: RegionalOptions;
  /** The root of trust's timings: root validity, delegations, regional CAs, key overlap (src/hub/trust.ts). */
  readonly trust?: Partial<Omit<TrustOptions, "now">>;
  /**
   * Rotate the root, bundles and audit-log keys when the active one is this old (`polity
   * hub --rotate-every 30d`); off by default. Overlapping keys are retired either way.
   */
  readonly rotateEveryMs?: number;
  /** How often the hub looks for keys to retire or rotate (default 5 s). */
  readonly keysIntervalMs?: number;
  /** The zone this hub runs in (`polity hub --zone`): a regional hub's default is its region's name, the global hub's `global` (src/hub/residency.ts). */
  readonly zone?: string;
}

export interface RunningHub {
  readonly url: string;
  readonly port: number;
  readonly federation: string;
  readonly caPem: string;
  readonly caFile: string;
  /** Set when this start created the federation: where the bootstrap admin token was written. */
  readonly adminTokenFile?: string;
  readonly context: Hub;
  close(): Promise<void>;
}

export const DEFAULT_CERTIFICATE_TTL_MS = 24 * 3600 * 1000;
export const DEFAULT_GRACE_MS = 7 * 24 * 3600 * 1000;
export const DEFAULT_BUNDLE_VALIDITY_MS = 24 * 3600 * 1000;

/**
 * The federation this database holds: its name and CA, loaded; or, at the very first start
 * of any hub process sharing the database, created with a bootstrap admin token (whose
 * minting is the log's first entry).
 */
async function openFederation(db: Database, name: string, operatorKey: string, now: () => Date): Promise<{ federation: string; authority: CertificateAuthority; bootstrapToken?: string }> {
  const created = await db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock(7346202)");
    if ((await Federation.name(tx)) !== undefined) return undefined;
    await Federation.create(tx, name);
    const authority = await createAuthority(tx, name, operatorKey, now());
    const { token, event } = await TokenService.createBootstrap(tx, { actor: "hub", correlationId: newCorrelationId() });
    await appendEntries(tx, [event], now());
    return { federation: name, authority, bootstrapToken: token };
  });
  if (created !== undefined) return created;
  const existing = (await Federation.name(db))!;
  return { federation: existing, authority: await loadAuthority(db, existing, operatorKey) };
}

export async function startHub(options: HubOptions): Promise<RunningHub> {
  const now = options.now ?? (() => new Date());
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const db: Database = await openDatabase({
    ...(options.databaseUrl === undefined ? { dataDir: join(options.dataDir, "db") } : { url: options.databaseUrl }),
    ...(options.schema === undefined ? {} : { schema: options.schema }),
  });
  try {
    await migrate(db);
    let regional: RegionalCredentials | undefined;
    let init: { federation: string; authority: CertificateAuthority; bootstrapToken?: string };
    if (options.regional === undefined) init = await openFederation(db, options.federation ?? "polity", options.operatorKey, now);
    else {
      const keys = { bundles: await loadSigningKey(db, options.operatorKey, "bundles"), audit: await loadSigningKey(db, options.operatorKey, "audit-log") };
      const opened = await openRegionalFederation(db, options.dataDir, options.operatorKey, options.regional, keys, options.hostnames ?? [], now);
      regional = opened.credentials;
      init = opened;
    }
    // What clusters trust: the federation's root (a regional hub's CA is an intermediate under it).
    const rootPem = regional?.rootPem ?? init.authority.certificatePem;
    const caFile = join(options.dataDir, "ca.pem");
    writeFileSync(caFile, rootPem);
    let adminTokenFile: string | undefined;
    if (init.bootstrapToken !== undefined) {
      adminTokenFile = join(options.dataDir, "admin.token");
      writeFileAtomic(adminTokenFile, `${init.bootstrapToken}\n`);
    }
    const audit = new AuditLog(db, await loadSigningKey(db, options.operatorKey, "audit-log"), {
      ...DEFAULT_AUDIT_OPTIONS,
      ...options.audit,
      origin: `${init.federation}/audit`,
      now,
    });
    const trustOptions = { ...DEFAULT_TRUST_OPTIONS, ...options.trust, now };
    // A regional hub makes no root: it mirrors its parent's (fetched at its first start, then
    // by its link), so its agents pin and follow the global root like every other agent.
    if (regional !== undefined) await pullRoots(db, parentEndpoint(regional), init.federation, now()).catch(() => undefined); // unreachable: the ones held (none: mirror() says so)
    const trust = regional === undefined ? await TrustService.open(db, options.operatorKey, init.authority, audit, trustOptions) : await TrustService.mirror(db, options.operatorKey, init.authority, audit, trustOptions);
    const identity = new IdentityService(
      db,
      init.authority,
      { certificateTtlMs: options.certificateTtlMs ?? DEFAULT_CERTIFICATE_TTL_MS, graceMs: options.graceMs ?? DEFAULT_GRACE_MS, now, ...(regional === undefined ? {} : { chain: { rootPem } }) },
      audit,
    );
    // The federation's CAs (src/hub/ca-rotation.ts): the active one issues, the serving one
    // signs this hub's certificate, every one the newest root lists is trusted.
    const authorities = regional === undefined ? new CaRotation(db, trust, options.operatorKey) : undefined;
    const loadCas = async () => {
      if (authorities === undefined) return rootPem;
      const cas = await authorities.load();
      identity.useAuthorities(cas.active, cas.serving, cas.trusted, certificateFingerprint(cas.active.certificatePem));
      writeFileSync(caFile, identity.trustedPem);
      return identity.trustedPem;
    };
    await loadCas();
    if (authorities !== undefined) trust.useIssuer(() => (identity.rotating ? undefined : identity.authority));
    // Until the server exists, a change of CAs only reaches the identity service (the server starts with it).
    let moveCas = async (): Promise<void> => {
      await loadCas();
    };
    const federation = new Federation(db, now);
    // A regional hub's: the bundle versions its parent's mirror gives its clusters (src/hub/regional/role.ts).
    const parentVersions = new Map<string, number>();
    const bundles = new BundleService(
      db,
      federation,
      identity,
      await loadSigningKey(db, options.operatorKey, "bundles"),
      { validityMs: options.bundleValidityMs ?? DEFAULT_BUNDLE_VALIDITY_MS, now, versionFloors: regional === undefined ? mirroredVersionFloors : async () => parentVersions, ...(regional === undefined ? { signedElsewhere: regionsWithHubs } : {}) },
      audit,
    );
    // Bundles name the root that lists their key; a new root that rotates or revokes a key
    // has every bundle made again under it (the next bundle carries it to every agent).
    bundles.useKey(bundles.key, trust.root.version, false);
    let known = trust.root;
    const caList = (root: RootMetadata) => (root.certificateAuthorities ?? []).map((ca) => `${ca.fingerprint}:${ca.status}`).join();
    trust.onChange(async (root) => {
      // A CA rotation or retirement: bundles name the root that lists the CAs, so that agents trust them.
      const recertified = caList(root) !== caList(known);
      if (recertified) await moveCas();
      // A regional hub's own delegation renewed or changed: its bundles name the root that extends it.
      const delegation = (r: RootMetadata) => JSON.stringify(r.delegations.find((d) => d.region === regional?.region) ?? null);
      const redelegated = regional !== undefined && delegation(root) !== delegation(known);
      const rekeyed = recertified || redelegated || root.roles.bundles.keyIds.join() !== known.roles.bundles.keyIds.join() || root.revoked.length !== known.revoked.length;
      if (root.roles["audit-log"].keyIds[0] !== known.roles["audit-log"].keyIds[0]) audit.useKey(await loadSigningKey(db, options.operatorKey, "audit-log"));
      known = root;
      bundles.useKey(await loadSigningKey(db, options.operatorKey, "bundles"), root.version, rekeyed);
    });
    await federation.sync();
    // Bundles for clusters that have none or whose bundle is due (a restart after a long stop).
    await bundles.refresh(federation.clusters.keys());
    const changes = new Changes(federation, identity, bundles, audit);
    const reports = new Reports(db, audit, now);
    const regions = regional === undefined ? new Regions(db, federation, identity, changes, trust, bundles.key.publicKeyPem, audit, now, (cluster) => bundles.version(cluster)) : undefined;
    const residency = new Residency(db, audit, hubPlace(options.zone, regional?.region), regions, now);
    const role = regional === undefined ? undefined : new RegionalRole(db, federation, changes, bundles, audit, regional, options.regional?.linkIntervalMs ?? 2_000, now, trust, parentVersions, residency, new RegionalRenewal(regional, db, identity, audit, { dataDir: options.dataDir, operatorKey: options.operatorKey }, now));
    const context: Hub = {
      ...(regions === undefined ? {} : { regions }),
      ...(role === undefined ? {} : { regional: role }),
      residency,
      ...(authorities === undefined ? {} : { authorities }),
      db,
      federation,
      changes,
      exceptions: new Exceptions(db, federation, changes, audit, now),
      proposals: new Proposals(db, federation, changes, audit, now),
      identity,
      tokens: new TokenService(db, audit, now),
      bundles,
      reports,
      rollouts: new Rollouts(db, federation, changes, bundles, reports, audit, now),
      impacts: new Impacts(db, now),
      compliance: new Compliance(db, now),
      drift: new Drift(db, audit, now),
      intents: new ClusterIntents(db, federation, bundles, audit, now),
      audit,
      trust,
      now,
    };
    // A regional hub serves with the certificate its parent issued it (for the names it gave at enrolment).
    const servingNames = () => identity.serverCertificate(["localhost", ...(options.hostnames ?? [])], ["127.0.0.1", "::1"]);
    const serving = regional === undefined ? await servingNames() : { certificatePem: regional.hubCertificatePem, privateKeyPem: regional.hubKeyPem };
    const server = await createServer(context, {
      certificatePem: serving.certificatePem,
      privateKeyPem: serving.privateKeyPem,
      caPem: authorities === undefined ? rootPem : identity.trustedPem,
      log: options.log ?? false,
    });
    const app = server.app;
    let servingCa = identity.trustedPem.slice(0, identity.trustedPem.indexOf("-----END CERTIFICATE-----"));
    if (authorities !== undefined) moveCas = async () => {
      const pem = await loadCas();
      // The serving CA changes when the old one retires: a new serving certificate from the new CA.
      const nowServing = pem.slice(0, pem.indexOf("-----END CERTIFICATE-----"));
      const changed = nowServing !== servingCa;
      servingCa = nowServing;
      server.useAuthorities(pem, changed ? await servingNames() : undefined);
    };
    // Other hub processes' changes (PostgreSQL) wake this one's long polls; a periodic sync is the fallback.
    // The payload is only a wake-up: hubs of other federations on the same server (another
    // schema) notify on the same channel, so the generation is read from this hub's own database.
    const stopListening = await db.listen("polity_generation", () => void federation.sync().catch(() => undefined));
    federation.onReload(async () => {
      await db.notify("polity_generation", federation.generation).catch(() => undefined);
    });
    // Level-triggered: every cluster whose published bundle is not its current effective set
    // (or nears its expiry) gets one, whichever hub process notices first.
    const ticker = setInterval(() => {
      void federation
        .sync()
        .then(() => trust.reload())
        .then(() => bundles.refresh(federation.clusters.keys()))
        .then(() => context.exceptions.sweep(() => ({ actor: "hub", correlationId: newCorrelationId() })))
        .catch(() => undefined);
    }, 2_000);
    ticker.unref();
    // Rollouts are judged by every hub process; each transition is taken once (see rollouts.ts).
    let judging = false;
    const rolloutTicker = setInterval(() => {
      if (judging) return;
      judging = true;
      void federation
        .sync()
        .then(() => context.rollouts.tick())
        .catch(() => undefined)
        .finally(() => (judging = false));
    }, options.rolloutIntervalMs ?? 1_000);
    rolloutTicker.unref();
    // Keys: overlapping ones retired when every agent moved on (or the overlap ran out), and
    // the scheduled rotation, the root re-signed before it expires. Each is a new root version, made once whichever hub gets there.
    let keying = false;
    const keysTicker = setInterval(() => {
      if (keying || trust.mirrored) return;
      keying = true;
      void retireDue(trust)
        .then(() => authorities?.retireDue())
        .then(() => (options.rotateEveryMs === undefined ? undefined : authorities?.rotateScheduled(options.rotateEveryMs)))
        .then(() => (options.rotateEveryMs === undefined ? undefined : rotateScheduled(trust, options.rotateEveryMs)))
        .then(() => renewRootDue(trust))
        .catch(() => undefined)
        .finally(() => (keying = false));
    }, options.keysIntervalMs ?? 5_000);
    keysTicker.unref();
    audit.start();
    role?.start();
    const host = options.host ?? "127.0.0.1";
    await app.listen({ host, port: options.port ?? 8443 });
    const address = app.server.address();
    const port = typeof address === "object" && address !== null ? address.port : (options.port ?? 8443);
    const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
    return {
      url: `https://${urlHost}:${port}`,
      port,
      federation: init.federation,
      caPem: rootPem,
      caFile,
      ...(adminTokenFile === undefined ? {} : { adminTokenFile }),
      context,
      async close() {
        clearInterval(ticker);
        clearInterval(rolloutTicker);
        clearInterval(keysTicker);
        await role?.stop();
        bundles.wakeAll();
        await app.close();
        await audit.stop();
        await stopListening();
        await db.close();
      },
    };
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
}

export function adminTokenPath(dataDir: string): string | undefined {
  const path = join(dataDir, "admin.token");
  return existsSync(path) ? path : undefined;
}
