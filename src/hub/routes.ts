/**
 * The hub's API, one table: each route's method, path, who may call it, its body schema
 * (validated before the handler runs; unknown fields are refused), and its handler. The
 * server registers the table and publishes it as OpenAPI, so the two cannot drift.
 */
import { randomBytes } from "node:crypto";
import type { AuditEvent } from "../audit/entry.js";
import type { Json } from "../canonical/index.js";
import { PolityError } from "../errors.js";
import type { ClusterIdentity, EffectivePolicySet } from "../layering/effective.js";
import type { Database } from "../store/database.js";
import { BUNDLE_MEDIA_TYPE } from "../bundle/index.js";
import type { AuditContext, AuditLog } from "./audit.js";
import { newCorrelationId } from "./audit.js";
import { actorOf, layerChangeEvents, requestedCorrelationId } from "./audit-events.js";
import { AUDIT_ROUTES } from "./audit-routes.js";
import type { BundleService } from "./bundles.js";
import { layersFromFiles, layerId, type Federation, type Plan, type SourceFile } from "./federation.js";
import { newSecret, sha256, type IdentityService, type PeerCertificate } from "./identity.js";
import { denial, describePrincipal, ROLES, type Access, type Principal, type Target } from "./principal.js";
import { ApiError, badRequest, conflict, forbidden, fromPolityError, notFound } from "./status.js";

export interface HubContext {
  readonly db: Database;
  readonly federation: Federation;
  readonly identity: IdentityService;
  readonly bundles: BundleService;
  readonly audit: AuditLog;
  readonly now: () => Date;
}

export type Auth =
  /** Anyone, authenticated or not. */
  | "public"
  /** A bearer token or a cluster certificate in good standing. */
  | "authenticated"
  /** A cluster certificate, which may have expired within the grace window. */
  | "renewal";

export interface Call {
  readonly principal: Principal;
  readonly peer: PeerCertificate | undefined;
  readonly params: Readonly<Record<string, string>>;
  readonly query: Readonly<Record<string, string | undefined>>;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: unknown;
  /** Aborted when the client goes away (long polls stop waiting). */
  readonly signal: AbortSignal;
}

export interface Answer {
  readonly status?: number;
  readonly body: unknown;
  /** Content type when the body is text (PEM) or bytes (a bundle). */
  readonly type?: string;
  readonly headers?: Readonly<Record<string, string | undefined>>;
}

export interface Route {
  readonly method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** Fastify path syntax: `/v1/clusters/:name`. */
  readonly path: string;
  readonly summary: string;
  readonly auth: Auth;
  readonly body?: Record<string, unknown>;
  /** Largest body accepted, in bytes (default 64 KiB). */
  readonly bodyLimit?: number;
  handle(hub: HubContext, call: Call): Promise<Answer>;
}

// ---- shared pieces ---------------------------------------------------------------------

const NAME = { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength: 63 } as const;
const LABELS = {
  type: "object",
  maxProperties: 64,
  propertyNames: { pattern: "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$" },
  additionalProperties: { type: "string", pattern: "^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$" },
} as const;
const FILES = {
  type: "array",
  minItems: 1,
  maxItems: 1000,
  items: {
    type: "object",
    required: ["name", "content"],
    additionalProperties: false,
    properties: { name: { type: "string", minLength: 1, maxLength: 1024 }, content: { type: "string", maxLength: 16 * 1024 * 1024 } },
  },
} as const;
const TTL = { type: "integer", minimum: 60, maximum: 366 * 24 * 3600 } as const;

function allow(principal: Principal, access: Access, target: Target): void {
  const why = denial(principal, access, target);
  if (why !== undefined) throw principal.kind === "anonymous" ? new ApiError(401, "Unauthorized", why) : forbidden(why);
}

function author(principal: Principal): string {
  return describePrincipal(principal);
}

/** Who is acting, and the correlation id the change's events share (the caller's X-Correlation-Id, or a new one). */
function auditContext(call: Call): AuditContext {
  return { actor: actorOf(call.principal), correlationId: requestedCorrelationId(call.headers["x-correlation-id"]) ?? newCorrelationId() };
}

/** Where a layer applies, for the audit log: its region, or null for the global layer. */
function layerRegion(hub: HubContext, id: string, layerRegionName: string | undefined): string | null {
  if (id === "global") return null;
  const [tier, name] = id.split("/") as [string, string];
  if (tier === "region") return name;
  return hub.federation.clusters.get(name)?.region ?? layerRegionName ?? null;
}

/** Commits a plan with its audit events, then publishes the bundles it changes under the same correlation id. */
async function commitPlan(hub: HubContext, call: Call, plan: Plan, context: AuditContext): Promise<{ id: string; version: number }[]> {
  const events = plan.changes
    .filter((c) => !c.unchanged)
    .flatMap((c) => {
      const before = hub.federation.layers.get(c.id);
      return layerChangeEvents(c, before, layerRegion(hub, c.id, c.layer?.region ?? before?.layer?.region), context);
    });
  const written = await hub.federation.commit(plan, author(call.principal), (tx) => hub.audit.record(tx, events));
  if (written.length > 0) await hub.bundles.refresh(plan.affected.map((a) => a.cluster), context);
  return written;
}

function clusterTarget(hub: HubContext, name: string): Target & { kind: "cluster" } {
  const record = hub.federation.clusters.get(name);
  if (record === undefined) throw notFound(`no cluster named ${JSON.stringify(name)}`);
  return { kind: "cluster", cluster: name, region: record.region };
}

function layerTarget(hub: HubContext, id: string, region: string | undefined): Target {
  if (id === "global") return { kind: "federation" };
  const [tier, name] = id.split("/") as [string, string];
  if (tier === "region") return { kind: "region", region: name };
  const registered = hub.federation.clusters.get(name);
  return { kind: "cluster", cluster: name, region: registered?.region ?? region ?? "" };
}

function layerIdFrom(params: Readonly<Record<string, string>>): string {
  const tier = params.tier;
  if (tier === "global" && params.name === undefined) return "global";
  if ((tier === "region" || tier === "cluster") && params.name !== undefined) return `${tier}/${params.name}`;
  throw notFound(`no layer ${[tier, params.name].filter(Boolean).join("/")}: layers are global, region/<name> and cluster/<name>`);
}

async function currentLayer(hub: HubContext, call: Call, id: string): Promise<Answer> {
  const record = hub.federation.layers.get(id);
  if (record === undefined) throw notFound(`layer ${id} has never been applied`);
  allow(call.principal, "read", layerTarget(hub, id, record.layer?.region));
  return { body: { id, version: record.version, author: record.author, createdAt: record.createdAt, contentHash: record.contentHash, files: record.files } };
}

function summarize(set: EffectivePolicySet) {
  return { hash: set.hash, policies: set.document.policies.length, exceptions: set.document.exceptions.length };
}

/** What changes between two effective sets: policies added, removed, and changed (with the fields that changed). */
function difference(before: EffectivePolicySet | undefined, after: EffectivePolicySet) {
  const old = new Map((before?.document.policies ?? []).map((p) => [p.name, p]));
  const now = new Map(after.document.policies.map((p) => [p.name, p]));
  const changed = [...now.keys()]
    .filter((n) => old.has(n))
    .map((n) => {
      const a = old.get(n) as unknown as Record<string, unknown>;
      const b = now.get(n) as unknown as Record<string, unknown>;
      const fields = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).sort();
      return { policy: n, fields };
    })
    .filter((c) => c.fields.length > 0);
  return {
    added: [...now.keys()].filter((n) => !old.has(n)).sort(),
    removed: [...old.keys()].filter((n) => !now.has(n)).sort(),
    changed,
    exceptions: { before: before?.document.exceptions.length ?? 0, after: after.document.exceptions.length },
  };
}

function engine<T>(summary: string, work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof PolityError) throw fromPolityError(error, summary);
    throw error;
  }
}

/** Validates, authorizes and plans an apply (or a diff) of layer files. */
function planFiles(hub: HubContext, principal: Principal, files: readonly SourceFile[], access: Access) {
  const layers = engine("the layers are not valid", () => layersFromFiles(files));
  for (const { layer } of layers) allow(principal, access, layerTarget(hub, layerId(layer), layer.region));
  const plan = engine("the change is refused", () => hub.federation.plan(layers.map(({ layer, files }) => ({ id: layerId(layer), layer, files }))));
  return plan;
}

function clusterView(hub: HubContext, name: string, status?: AgentStatusRow) {
  const record = hub.federation.clusters.get(name)!;
  let effective: { hash?: string; policies?: number; exceptions?: number; error?: string };
  try {
    effective = summarize(hub.federation.effectiveFor(name));
  } catch (error) {
    effective = { error: error instanceof Error ? error.message : String(error) };
  }
  const bundle = hub.bundles.version(name);
  const agent =
    status === undefined
      ? null
      : {
          reportedAt: status.reported_at.toISOString(),
          bundleVersion: status.status.bundleVersion ?? null,
          bundleHash: status.status.bundleHash ?? null,
          stale: status.status.stale ?? null,
          // In sync: the agent enforces the bundle the hub expects it to, and reported recently.
          inSync: status.status.bundleHash === effective.hash && status.status.bundleVersion === bundle && hub.now().getTime() - status.reported_at.getTime() < 60_000,
        };
  return { ...record, effective, bundle: bundle ?? null, agent };
}

interface AgentStatusRow extends Record<string, unknown> {
  readonly cluster: string;
  readonly reported_at: Date;
  readonly status: { bundleVersion?: number | null; bundleHash?: string | null; stale?: boolean };
}

async function agentStatuses(hub: HubContext, names: readonly string[]): Promise<Map<string, AgentStatusRow>> {
  const rows = await hub.db.query<AgentStatusRow>("SELECT cluster, reported_at, status FROM agent_status WHERE cluster = ANY($1)", [names]);
  return new Map(rows.map((r) => [r.cluster, { ...r, reported_at: new Date(r.reported_at) }]));
}

function hasNulFieldName(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasNulFieldName);
  if (typeof value !== "object" || value === null) return false;
  return Object.entries(value).some(([key, inner]) => key.includes("\u0000") || hasNulFieldName(inner));
}

/** Denials per audit entry: a burst becomes several entries of bounded size. */
const DENIALS_PER_ENTRY = 500;

const text = (value: unknown, max = 253): string | null => (typeof value === "string" ? value.slice(0, max) : null);

/**
 * The denials of a decision-log batch, as the audit log keeps them: who asked for what,
 * and which policies and rules said no. Not the messages: a message may quote the object,
 * and the log keeps no workload data.
 */
function denialsOf(entries: readonly unknown[]): { [key: string]: Json }[] {
  const out: { [key: string]: Json }[] = [];
  for (const entry of entries) {
    if (typeof entry !== "object" || entry === null) continue;
    const e = entry as Record<string, unknown>;
    if (e.allowed !== false) continue;
    const violations = Array.isArray(e.violations) ? e.violations : [];
    out.push({
      time: text(e.time, 40),
      uid: text(e.uid, 128),
      operation: text(e.operation, 16),
      kind: text(e.kind),
      namespace: text(e.namespace),
      name: text(e.name),
      user: text(e.user),
      bundleVersion: typeof e.bundleVersion === "number" ? e.bundleVersion : null,
      violations: violations.slice(0, 64).map((v: unknown) => {
        const r = (typeof v === "object" && v !== null ? v : {}) as Record<string, unknown>;
        return { policy: text(r.policy), rule: text(r.rule), enforcement: text(r.enforcement, 16) };
      }),
    });
  }
  return out;
}

// ---- the routes --------------------------------------------------------------------------

export const ROUTES: readonly Route[] = [
  {
    method: "GET",
    path: "/healthz",
    summary: "Liveness: the hub answers and its database is reachable.",
    auth: "public",
    async handle(hub) {
      await hub.db.query("SELECT 1");
      return { body: { status: "ok", federation: hub.identity.federation } };
    },
  },
  {
    method: "GET",
    path: "/v1/ca",
    summary: "The federation CA certificate (PEM): what agents and clients trust.",
    auth: "public",
    async handle(hub) {
      return { body: hub.identity.authority.certificatePem, type: "application/x-pem-file" };
    },
  },
  {
    method: "GET",
    path: "/v1/crl",
    summary: "The certificate revocation list (PEM, X.509 CRL signed by the federation CA).",
    auth: "public",
    async handle(hub) {
      return { body: await hub.identity.revocationList(), type: "application/x-pem-file" };
    },
  },
  {
    method: "GET",
    path: "/v1/revocations",
    summary: "Revoked certificates, as JSON: serial, cluster, time of revocation.",
    auth: "public",
    async handle(hub) {
      const list = await hub.identity.revocations();
      return { body: { items: list.map((r) => ({ serial: r.serial, cluster: r.cluster, revokedAt: r.revokedAt.toISOString() })) } };
    },
  },
  {
    method: "POST",
    path: "/v1/enroll",
    summary: "Enrol a cluster: a one-time join token and a CSR (PEM, ECDSA P-256, CN = the cluster's name) give a client certificate.",
    auth: "public",
    body: {
      type: "object",
      required: ["joinToken", "csr"],
      additionalProperties: false,
      properties: { joinToken: { type: "string", minLength: 1, maxLength: 256 }, csr: { type: "string", minLength: 1, maxLength: 16384 } },
    },
    async handle(hub, call) {
      const { joinToken, csr } = call.body as { joinToken: string; csr: string };
      const issued = await hub.identity.enroll(joinToken, csr);
      return { status: 201, body: { ...issued, bundleKey: { keyId: hub.bundles.key.keyId, publicKeyPem: hub.bundles.key.publicKeyPem } } };
    },
  },
  {
    method: "POST",
    path: "/v1/renew",
    summary: "Renew a cluster certificate over mutual TLS; an expired one within the grace window is renewed for the same key.",
    auth: "renewal",
    body: { type: "object", required: ["csr"], additionalProperties: false, properties: { csr: { type: "string", minLength: 1, maxLength: 16384 } } },
    async handle(hub, call) {
      if (call.peer === undefined) throw new ApiError(401, "Unauthorized", "renewal needs the cluster's current certificate (mutual TLS)");
      const issued = await hub.identity.renew(call.peer, (call.body as { csr: string }).csr);
      return { body: { ...issued, bundleKey: { keyId: hub.bundles.key.keyId, publicKeyPem: hub.bundles.key.publicKeyPem } } };
    },
  },
  {
    method: "GET",
    path: "/v1/whoami",
    summary: "Who the hub takes the caller to be.",
    auth: "authenticated",
    async handle(_hub, call) {
      return { body: { principal: call.principal, description: describePrincipal(call.principal) } };
    },
  },
  // ---- tokens
  {
    method: "POST",
    path: "/v1/tokens",
    summary: "Mint a bearer token with a role (region-operator tokens are bound to a region) and an expiry. The token is shown once.",
    auth: "authenticated",
    body: {
      type: "object",
      required: ["name", "role"],
      additionalProperties: false,
      properties: { name: { type: "string", minLength: 1, maxLength: 128 }, role: { enum: ROLES }, region: NAME, ttlSeconds: TTL },
    },
    async handle(hub, call) {
      if (call.principal.kind !== "token" || call.principal.role !== "global-admin") throw forbidden("only a global admin mints tokens");
      const body = call.body as { name: string; role: string; region?: string; ttlSeconds?: number };
      if ((body.role === "region-operator") !== (body.region !== undefined)) {
        throw badRequest(body.role === "region-operator" ? "a region-operator token is bound to a region: give region" : "only a region-operator token has a region");
      }
      const token = newSecret("polity");
      const id = randomBytes(6).toString("hex");
      const expiresAt = new Date(hub.now().getTime() + (body.ttlSeconds ?? 90 * 24 * 3600) * 1000);
      const context = auditContext(call);
      await hub.db.transaction(async (tx) => {
        await tx.query("INSERT INTO tokens (id, name, role, region, hash, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", [
          id,
          body.name,
          body.role,
          body.region ?? null,
          sha256(token),
          author(call.principal),
          hub.now(),
          expiresAt,
        ]);
        await hub.audit.record(tx, [
          {
            kind: "token.created",
            actor: context.actor,
            cluster: null,
            region: body.region ?? null,
            correlationId: context.correlationId,
            data: { id, name: body.name, role: body.role, region: body.region ?? null, expiresAt: expiresAt.toISOString() },
          },
        ]);
      });
      return { status: 201, body: { id, name: body.name, role: body.role, region: body.region ?? null, expiresAt: expiresAt.toISOString(), token } };
    },
  },
  {
    method: "GET",
    path: "/v1/tokens",
    summary: "Tokens (never their values): name, role, region, expiry, revocation.",
    auth: "authenticated",
    async handle(hub, call) {
      allow(call.principal, "read", { kind: "federation" });
      if (call.principal.kind === "token" && call.principal.role === "region-operator") throw forbidden("tokens are listed for global admins and auditors");
      const rows = await hub.db.query("SELECT id, name, role, region, created_by AS \"createdBy\", created_at AS \"createdAt\", expires_at AS \"expiresAt\", revoked_at AS \"revokedAt\" FROM tokens ORDER BY created_at");
      return { body: { items: rows } };
    },
  },
  {
    method: "DELETE",
    path: "/v1/tokens/:id",
    summary: "Revoke a token: it stops working at once on every hub.",
    auth: "authenticated",
    async handle(hub, call) {
      if (call.principal.kind !== "token" || call.principal.role !== "global-admin") throw forbidden("only a global admin revokes tokens");
      const context = auditContext(call);
      await hub.db.transaction(async (tx) => {
        const rows = await tx.query<{ name: string; role: string; region: string | null }>(
          "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING name, role, region",
          [hub.now(), call.params.id],
        );
        if (rows.length === 0) throw notFound(`no live token with id ${JSON.stringify(call.params.id)}`);
        const { name, role, region } = rows[0]!;
        await hub.audit.record(tx, [{ kind: "token.revoked", actor: context.actor, cluster: null, region, correlationId: context.correlationId, data: { id: call.params.id!, name, role } }]);
      });
      return { body: { id: call.params.id, revoked: true } };
    },
  },
  // ---- layers
  {
    method: "GET",
    path: "/v1/layers",
    summary: "Every layer the caller may read, with its current version.",
    auth: "authenticated",
    async handle(hub, call) {
      const items = [...hub.federation.layers.values()]
        .filter((l) => denial(call.principal, "read", layerTarget(hub, l.id, l.layer?.region)) === undefined)
        .map((l) => ({ id: l.id, version: l.version, author: l.author, createdAt: l.createdAt, contentHash: l.contentHash, deleted: l.layer === undefined, policies: l.layer?.policies.length ?? 0, exceptions: l.layer?.exceptions.length ?? 0 }))
        .sort((a, b) => (a.id < b.id ? -1 : 1));
      return { body: { items } };
    },
  },
  ...(["/v1/layers/:tier", "/v1/layers/:tier/:name"] as const).flatMap((base): Route[] => [
    {
      method: "GET",
      path: base,
      summary: "A layer's current version: its files as applied.",
      auth: "authenticated",
      async handle(hub, call) {
        return currentLayer(hub, call, layerIdFrom(call.params));
      },
    },
    {
      method: "GET",
      path: `${base}/history`,
      summary: "Every version of a layer: who, when, content hash.",
      auth: "authenticated",
      async handle(hub, call) {
        if (call.params.name === undefined && call.params.tier !== "global") {
          // /v1/layers/cluster/history is the layer of a cluster named "history".
          return currentLayer(hub, call, `${call.params.tier}/history`);
        }
        const id = layerIdFrom(call.params);
        allow(call.principal, "read", layerTarget(hub, id, hub.federation.layers.get(id)?.layer?.region));
        const rows = await hub.db.query<{ version: number; author: string; created_at: Date; content_hash: string; files: SourceFile[] }>(
          "SELECT version, author, created_at, content_hash, files FROM layer_versions WHERE layer_id = $1 ORDER BY version",
          [id],
        );
        if (rows.length === 0) throw notFound(`layer ${id} has never been applied`);
        return {
          body: {
            id,
            items: rows.map((r) => ({ version: r.version, author: r.author, createdAt: new Date(r.created_at).toISOString(), contentHash: r.content_hash, files: r.files.map((f) => f.name), deleted: r.files.length === 0 })),
          },
        };
      },
    },
    {
      method: "GET",
      path: `${base}/versions/:version`,
      summary: "One version of a layer, with its files.",
      auth: "authenticated",
      async handle(hub, call) {
        const id = layerIdFrom(call.params);
        allow(call.principal, "read", layerTarget(hub, id, hub.federation.layers.get(id)?.layer?.region));
        const version = Number(call.params.version);
        if (!Number.isInteger(version) || version < 1) throw badRequest("version must be a positive integer");
        const [row] = await hub.db.query<{ author: string; created_at: Date; content_hash: string; files: SourceFile[] }>(
          "SELECT author, created_at, content_hash, files FROM layer_versions WHERE layer_id = $1 AND version = $2",
          [id, version],
        );
        if (row === undefined) throw notFound(`layer ${id} has no version ${version}`);
        return { body: { id, version, author: row.author, createdAt: new Date(row.created_at).toISOString(), contentHash: row.content_hash, files: row.files } };
      },
    },
  ]),
  {
    method: "DELETE",
    path: "/v1/layers/:tier/:name",
    summary: "Delete a region or cluster layer (a new, empty version; history is kept). Refused if the clusters it reaches would not combine without it.",
    auth: "authenticated",
    async handle(hub, call) {
      const id = layerIdFrom(call.params);
      const record = hub.federation.layers.get(id);
      if (record === undefined || record.layer === undefined) throw notFound(`layer ${id} does not exist`);
      allow(call.principal, "write", layerTarget(hub, id, record.layer.region));
      const plan = engine("deleting the layer is refused", () => hub.federation.plan([{ id, layer: undefined, files: [] }]));
      const context = auditContext(call);
      const written = await commitPlan(hub, call, plan, context);
      return { body: { deleted: id, versions: written, affected: plan.affected.length, correlationId: context.correlationId } };
    },
  },
  {
    method: "POST",
    path: "/v1/apply",
    summary:
      "Apply layer files (YAML or JSON, with their Layer documents): each changed layer gets a new version, if every registered cluster it reaches still combines. With dryRun, only the plan.",
    auth: "authenticated",
    bodyLimit: 32 * 1024 * 1024,
    body: { type: "object", required: ["files"], additionalProperties: false, properties: { files: FILES, dryRun: { type: "boolean" } } },
    async handle(hub, call) {
      const { files, dryRun } = call.body as { files: SourceFile[]; dryRun?: boolean };
      const plan = planFiles(hub, call.principal, files, dryRun === true ? "read" : "write");
      const context = auditContext(call);
      const written = dryRun === true ? [] : await commitPlan(hub, call, plan, context);
      return {
        status: dryRun === true || written.length === 0 ? 200 : 201,
        headers: { "x-correlation-id": context.correlationId },
        body: {
          dryRun: dryRun === true,
          correlationId: written.length === 0 ? null : context.correlationId,
          layers: plan.changes.map((c) => ({ id: c.id, unchanged: c.unchanged, version: c.unchanged ? c.baseVersion : (written.find((w) => w.id === c.id)?.version ?? c.baseVersion + 1), contentHash: c.contentHash })),
          clusters: plan.affected.map((a) => ({ cluster: a.cluster, before: a.before ?? null, after: a.after.hash, changed: a.before !== a.after.hash })),
        },
      };
    },
  },
  {
    method: "POST",
    path: "/v1/diff",
    summary: "What applying layer files would do to each registered cluster's effective policy set: policies added, removed and changed.",
    auth: "authenticated",
    bodyLimit: 32 * 1024 * 1024,
    body: { type: "object", required: ["files"], additionalProperties: false, properties: { files: FILES } },
    async handle(hub, call) {
      const { files } = call.body as { files: SourceFile[] };
      // A diff changes nothing: whoever may read the layers may ask what a change would do.
      const plan = planFiles(hub, call.principal, files, "read");
      return {
        body: {
          layers: plan.changes.map((c) => ({ id: c.id, unchanged: c.unchanged, baseVersion: c.baseVersion })),
          clusters: plan.affected.map((a) => {
            let before: EffectivePolicySet | undefined;
            try {
              before = a.before === undefined ? undefined : hub.federation.effectiveFor(a.cluster);
            } catch {
              before = undefined;
            }
            return { cluster: a.cluster, before: a.before ?? null, after: a.after.hash, ...difference(before, a.after) };
          }),
        },
      };
    },
  },
  // ---- clusters
  {
    method: "GET",
    path: "/v1/clusters",
    summary: "Registered clusters the caller may read, with labels, identity status and effective-set hash.",
    auth: "authenticated",
    async handle(hub, call) {
      const visible = [...hub.federation.clusters.values()]
        .filter((c) => denial(call.principal, "read", { kind: "cluster", cluster: c.name, region: c.region }) === undefined)
        .sort((a, b) => (a.name < b.name ? -1 : 1));
      const statuses = await agentStatuses(hub, visible.map((c) => c.name));
      return { body: { items: visible.map((c) => clusterView(hub, c.name, statuses.get(c.name))) } };
    },
  },
  {
    method: "POST",
    path: "/v1/clusters",
    summary: "Register a cluster (name, region, labels); refused if its layers would not combine.",
    auth: "authenticated",
    body: { type: "object", required: ["name", "region"], additionalProperties: false, properties: { name: NAME, region: NAME, labels: LABELS } },
    async handle(hub, call) {
      const body = call.body as { name: string; region: string; labels?: Record<string, string> };
      allow(call.principal, "write", { kind: "cluster", cluster: body.name, region: body.region });
      if (hub.federation.clusters.has(body.name)) throw conflict(`cluster ${body.name} is already registered`);
      const identity: ClusterIdentity = { name: body.name, region: body.region, labels: body.labels ?? {} };
      const validatedAt = hub.federation.generation;
      const set = engine(`cluster ${body.name} cannot be registered`, () => hub.federation.effectiveForNew(identity));
      const context = auditContext(call);
      await hub.federation.write(async (tx) => {
        const inserted = await tx.query(
          "INSERT INTO clusters (name, region, labels, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (name) DO NOTHING RETURNING name",
          [body.name, body.region, JSON.stringify(identity.labels), author(call.principal), hub.now()],
        );
        if (inserted.length === 0) throw conflict(`cluster ${body.name} is already registered`);
        await hub.audit.record(tx, [
          { kind: "cluster.registered", actor: context.actor, cluster: body.name, region: body.region, correlationId: context.correlationId, data: { labels: { ...identity.labels } } },
        ]);
      }, validatedAt);
      await hub.bundles.refresh([body.name], context);
      return { status: 201, body: { ...clusterView(hub, body.name), effective: summarize(set) } };
    },
  },
  {
    method: "GET",
    path: "/v1/clusters/:name",
    summary: "One cluster: labels, identity status, effective-set hash.",
    auth: "authenticated",
    async handle(hub, call) {
      allow(call.principal, "read", clusterTarget(hub, call.params.name!));
      const certificates = await hub.db.query(
        "SELECT serial, not_before AS \"notBefore\", not_after AS \"notAfter\", revoked_at AS \"revokedAt\" FROM certificates WHERE cluster = $1 ORDER BY issued_at DESC LIMIT 5",
        [call.params.name],
      );
      const statuses = await agentStatuses(hub, [call.params.name!]);
      return { body: { ...clusterView(hub, call.params.name!, statuses.get(call.params.name!)), certificates } };
    },
  },
  {
    method: "PATCH",
    path: "/v1/clusters/:name",
    summary: "Relabel a cluster; refused if its layers would not combine with the new labels.",
    auth: "authenticated",
    body: { type: "object", required: ["labels"], additionalProperties: false, properties: { labels: LABELS } },
    async handle(hub, call) {
      const target = clusterTarget(hub, call.params.name!);
      allow(call.principal, "write", target);
      const labels = (call.body as { labels: Record<string, string> }).labels;
      const identity: ClusterIdentity = { name: target.cluster, region: target.region, labels };
      const validatedAt = hub.federation.generation;
      engine(`cluster ${target.cluster} cannot be relabelled`, () => hub.federation.effectiveForNew(identity));
      const context = auditContext(call);
      const before = { ...hub.federation.clusters.get(target.cluster)!.labels };
      await hub.federation.write(async (tx) => {
        await tx.query("UPDATE clusters SET labels = $1, updated_at = $2 WHERE name = $3", [JSON.stringify(labels), hub.now(), target.cluster]);
        await hub.audit.record(tx, [
          { kind: "cluster.relabelled", actor: context.actor, cluster: target.cluster, region: target.region, correlationId: context.correlationId, data: { before, after: { ...labels } } },
        ]);
      }, validatedAt);
      await hub.bundles.refresh([target.cluster], context);
      return { body: clusterView(hub, target.cluster) };
    },
  },
  {
    method: "DELETE",
    path: "/v1/clusters/:name",
    summary: "Remove a cluster: its identity is revoked and its join tokens void. Its layer, if any, stays.",
    auth: "authenticated",
    async handle(hub, call) {
      const target = clusterTarget(hub, call.params.name!);
      allow(call.principal, "write", target);
      const context = auditContext(call);
      await hub.federation.write(async (tx) => {
        const revoked = await hub.identity.revokeCluster(tx, target.cluster, target.region, context);
        await tx.query("DELETE FROM clusters WHERE name = $1", [target.cluster]);
        await hub.audit.record(tx, [
          { kind: "cluster.removed", actor: context.actor, cluster: target.cluster, region: target.region, correlationId: context.correlationId, data: {} },
          revoked.event,
        ]);
      });
      await hub.bundles.refresh(hub.federation.clusters.keys(), context);
      return { body: { removed: target.cluster } };
    },
  },
  {
    method: "POST",
    path: "/v1/clusters/:name/join-tokens",
    summary: "Mint a one-time join token bound to the cluster, with an expiry (default 1 h). Shown once.",
    auth: "authenticated",
    body: { type: "object", additionalProperties: false, properties: { ttlSeconds: TTL } },
    async handle(hub, call) {
      const target = clusterTarget(hub, call.params.name!);
      allow(call.principal, "write", target);
      const ttl = ((call.body as { ttlSeconds?: number } | undefined)?.ttlSeconds ?? 3600) * 1000;
      const { token, expiresAt } = await hub.identity.mintJoinToken(target.cluster, ttl, author(call.principal), auditContext(call));
      return { status: 201, body: { cluster: target.cluster, token, expiresAt } };
    },
  },
  {
    method: "POST",
    path: "/v1/clusters/:name/revoke",
    summary: "Revoke a cluster's identity: every hub refuses its certificates from the next request on, and the revocation list carries them.",
    auth: "authenticated",
    async handle(hub, call) {
      const target = clusterTarget(hub, call.params.name!);
      allow(call.principal, "write", target);
      let certificates = 0;
      const context = auditContext(call);
      await hub.federation.write(async (tx) => {
        const revoked = await hub.identity.revokeCluster(tx, target.cluster, target.region, context);
        certificates = revoked.certificates;
        await hub.audit.record(tx, [revoked.event]);
      });
      // The revocation reaches every agent in its next bundle.
      await hub.bundles.refresh(hub.federation.clusters.keys(), context);
      return { body: { cluster: target.cluster, revoked: true, certificates } };
    },
  },
  {
    method: "GET",
    path: "/v1/clusters/:name/effective",
    summary: "A cluster's effective policy set and its hash (a cluster may read its own).",
    auth: "authenticated",
    async handle(hub, call) {
      allow(call.principal, "read", clusterTarget(hub, call.params.name!));
      const set = engine(`cluster ${call.params.name}'s layers do not combine`, () => hub.federation.effectiveFor(call.params.name!));
      return { body: { hash: set.hash, effectivePolicySet: set.document } };
    },
  },
  {
    method: "GET",
    path: "/v1/clusters/:name/bundle",
    summary: "A cluster's current signed bundle (a cluster may read its own; anyone may verify it with the hub's bundle key).",
    auth: "authenticated",
    async handle(hub, call) {
      allow(call.principal, "read", clusterTarget(hub, call.params.name!));
      const bundle = hub.bundles.bundleBytes(call.params.name!);
      if (bundle === undefined) throw notFound(`cluster ${call.params.name} has no bundle yet`);
      return { body: bundle.bytes, type: BUNDLE_MEDIA_TYPE, headers: { etag: `"${bundle.version}"` } };
    },
  },
  {
    method: "GET",
    path: "/v1/agent/bundle",
    summary:
      "The calling cluster's signed bundle. With If-None-Match: \"<version>\" and ?wait=<seconds> (at most 60), a long poll: answered as soon as a newer bundle exists, or 304 when the wait ends.",
    auth: "authenticated",
    async handle(hub, call): Promise<Answer> {
      if (call.principal.kind !== "cluster") throw forbidden("this endpoint is for a cluster's agent (mutual TLS with its certificate)");
      const cluster = call.principal.cluster;
      const wanted = /^"(\d+)"$/.exec(String(call.headers["if-none-match"] ?? ""))?.[1];
      const wait = Math.min(60, Math.max(0, Number(call.query.wait ?? 0) || 0));
      if (wanted !== undefined) {
        const held = Number(wanted);
        if (hub.bundles.version(cluster) === held && wait > 0) {
          const aborted = new Promise<undefined>((resolve) => call.signal.addEventListener("abort", () => resolve(undefined), { once: true }));
          await Promise.race([hub.bundles.waitForNewer(cluster, held, wait * 1000), aborted]);
        }
        if (hub.bundles.version(cluster) === held) return { status: 304, body: "", headers: { etag: `"${held}"` } };
      }
      let bundle = hub.bundles.bundleBytes(cluster);
      if (bundle === undefined) {
        await hub.bundles.refresh([cluster]);
        bundle = hub.bundles.bundleBytes(cluster);
      }
      if (bundle === undefined) throw new ApiError(503, "Unavailable", `no bundle for cluster ${cluster}: its layers do not combine; ask its operators`);
      return { body: bundle.bytes, type: BUNDLE_MEDIA_TYPE, headers: { etag: `"${bundle.version}"`, "cache-control": "no-cache" } };
    },
  },
  {
    method: "POST",
    path: "/v1/agent/status",
    summary: "An agent's status report: bundle version and hash, last sync, staleness, decision counts and latency, certificate expiry.",
    auth: "authenticated",
    bodyLimit: 256 * 1024,
    body: { type: "object", required: ["bundleVersion"], properties: { bundleVersion: { type: ["integer", "null"] } } },
    async handle(hub, call) {
      if (call.principal.kind !== "cluster") throw forbidden("status is reported by a cluster's agent");
      const { cluster, region } = call.principal;
      const status = call.body as { bundleVersion: number | null; bundleHash?: unknown };
      await hub.db.transaction(async (tx) => {
        const [previous] = await tx.query<{ version: string | null }>("SELECT status->>'bundleVersion' AS version FROM agent_status WHERE cluster = $1 FOR UPDATE", [cluster]);
        await tx.query(
          "INSERT INTO agent_status (cluster, reported_at, status) VALUES ($1, $2, $3) ON CONFLICT (cluster) DO UPDATE SET reported_at = EXCLUDED.reported_at, status = EXCLUDED.status",
          [cluster, hub.now(), JSON.stringify(call.body)],
        );
        // An acknowledgement: the first report of a bundle version, joined to the change that made it.
        if (status.bundleVersion !== null && previous?.version !== String(status.bundleVersion)) {
          const [bundle] = await tx.query<{ correlation_id: string | null }>("SELECT correlation_id FROM bundles WHERE cluster = $1 AND version = $2", [cluster, status.bundleVersion]);
          await hub.audit.record(tx, [
            {
              kind: "bundle.acknowledged",
              actor: `cluster:${cluster}`,
              cluster,
              region,
              correlationId: bundle?.correlation_id ?? newCorrelationId(),
              data: { version: status.bundleVersion, bundleHash: typeof status.bundleHash === "string" ? status.bundleHash.slice(0, 100) : null },
            },
          ]);
        }
      });
      return { status: 204, body: "" };
    },
  },
  {
    method: "POST",
    path: "/v1/agent/decisions",
    summary:
      "A batch of an agent's decision logs (denials in full, allowed decisions as counted samples), with how many it dropped. Idempotent by batch id: a batch sent twice is stored once.",
    auth: "authenticated",
    bodyLimit: 8 * 1024 * 1024,
    body: {
      type: "object",
      required: ["batch", "entries", "dropped"],
      additionalProperties: false,
      properties: {
        batch: { type: "string", minLength: 8, maxLength: 64 },
        entries: { type: "array", maxItems: 10000, items: { type: "object" } },
        dropped: { type: "integer", minimum: 0 },
      },
    },
    async handle(hub, call) {
      if (call.principal.kind !== "cluster") throw forbidden("decision logs are sent by a cluster's agent");
      const cluster = call.principal.cluster;
      const { batch, entries, dropped } = call.body as { batch: string; entries: unknown[]; dropped: number };
      // PostgreSQL's jsonb cannot hold U+0000: in a value it becomes U+FFFD; in a field name the batch is refused.
      const serialized = entries.map((entry) => JSON.stringify(entry, (_key, value: unknown) => (typeof value === "string" ? value.replaceAll("\u0000", "\ufffd") : value)));
      const unstorable = entries.findIndex(hasNulFieldName);
      if (unstorable >= 0) throw badRequest(`entries[${unstorable}] has a field name with a NUL character (U+0000), which cannot be stored`);
      const denials = denialsOf(entries);
      // Back-pressure: refused with 503 and Retry-After while the audit log catches up; the agent keeps the batch.
      if (denials.length > 0) await hub.audit.admit(Math.ceil(denials.length / DENIALS_PER_ENTRY));
      const region = call.principal.region;
      const stored = await hub.db.transaction(async (tx) => {
        const fresh = await tx.query("INSERT INTO decision_batches (cluster, batch, received_at, entries, dropped) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING batch", [
          cluster,
          batch,
          hub.now(),
          entries.length,
          dropped,
        ]);
        if (fresh.length === 0) return false;
        for (let i = 0; i < serialized.length; i += 500) {
          const slice = serialized.slice(i, i + 500);
          const params: unknown[] = [];
          const values = slice.map((entry) => {
            params.push(cluster, batch, hub.now(), entry);
            const n = params.length;
            return `($${n - 3}, $${n - 2}, $${n - 1}, $${n})`;
          });
          await tx.query(`INSERT INTO decision_logs (cluster, batch, received_at, entry) VALUES ${values.join(", ")}`, params);
        }
        if (denials.length > 0) {
          const [bundle] = await tx.query<{ version: string; correlation_id: string | null }>("SELECT version::text AS version, correlation_id FROM bundles WHERE cluster = $1", [cluster]);
          const versions = new Set(denials.map((d) => d.bundleVersion));
          // Denials made under the current bundle join the change that made it.
          const correlationId = versions.size === 1 && bundle?.correlation_id != null && String([...versions][0]) === bundle.version ? bundle.correlation_id : newCorrelationId();
          const events: AuditEvent[] = [];
          for (let i = 0; i < denials.length; i += DENIALS_PER_ENTRY) {
            const part = denials.slice(i, i + DENIALS_PER_ENTRY);
            events.push({ kind: "agent.denials", actor: `cluster:${cluster}`, cluster, region, correlationId, data: { batch, count: part.length, denials: part } });
          }
          await hub.audit.record(tx, events);
        }
        return true;
      });
      return { status: 202, body: { batch, stored: entries.length, duplicate: !stored } };
    },
  },
  {
    method: "GET",
    path: "/v1/clusters/:name/decisions",
    summary: "A cluster's decision logs, newest first (?limit=, at most 1000).",
    auth: "authenticated",
    async handle(hub, call) {
      allow(call.principal, "read", clusterTarget(hub, call.params.name!));
      const limit = Math.min(1000, Math.max(1, Number(call.query.limit ?? 100) || 100));
      const rows = await hub.db.query<{ entry: unknown; received_at: Date }>("SELECT entry, received_at FROM decision_logs WHERE cluster = $1 ORDER BY id DESC LIMIT $2", [call.params.name, limit]);
      const [dropped] = await hub.db.query<{ dropped: string | null }>("SELECT sum(dropped)::text AS dropped FROM decision_batches WHERE cluster = $1", [call.params.name]);
      return { body: { items: rows.map((r) => r.entry), dropped: Number(dropped?.dropped ?? 0) } };
    },
  },
  ...AUDIT_ROUTES,
];

export { sha256 };
