/**
 * The hub's API, one table: each route's method, path, who may call it, its body schema
 * (validated before the handler runs; unknown fields are refused), and its handler. The
 * server registers the table and publishes it as OpenAPI, so the two cannot drift.
 */
import { randomBytes } from "node:crypto";
import { PolityError } from "../errors.js";
import type { ClusterIdentity, EffectivePolicySet } from "../layering/effective.js";
import type { Database } from "../store/database.js";
import { layersFromFiles, layerId, type Federation, type SourceFile } from "./federation.js";
import { newSecret, sha256, type IdentityService, type PeerCertificate } from "./identity.js";
import { denial, describePrincipal, ROLES, type Access, type Principal, type Target } from "./principal.js";
import { ApiError, badRequest, conflict, forbidden, fromPolityError, notFound } from "./status.js";

export interface HubContext {
  readonly db: Database;
  readonly federation: Federation;
  readonly identity: IdentityService;
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
  readonly body: unknown;
}

export interface Answer {
  readonly status?: number;
  readonly body: unknown;
  /** Content type when the body is text (PEM). */
  readonly type?: string;
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
function planFiles(hub: HubContext, principal: Principal, files: readonly SourceFile[]) {
  const layers = engine("the layers are not valid", () => layersFromFiles(files));
  for (const { layer } of layers) allow(principal, "write", layerTarget(hub, layerId(layer), layer.region));
  const plan = engine("the change is refused", () => hub.federation.plan(layers.map(({ layer, files }) => ({ id: layerId(layer), layer, files }))));
  return plan;
}

function clusterView(hub: HubContext, name: string) {
  const record = hub.federation.clusters.get(name)!;
  let effective: unknown;
  try {
    effective = summarize(hub.federation.effectiveFor(name));
  } catch (error) {
    effective = { error: error instanceof Error ? error.message : String(error) };
  }
  return { ...record, effective };
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
      return { status: 201, body: await hub.identity.enroll(joinToken, csr) };
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
      return { body: await hub.identity.renew(call.peer, (call.body as { csr: string }).csr) };
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
      await hub.db.query("INSERT INTO tokens (id, name, role, region, hash, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", [
        id,
        body.name,
        body.role,
        body.region ?? null,
        sha256(token),
        author(call.principal),
        hub.now(),
        expiresAt,
      ]);
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
      const rows = await hub.db.query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING id", [hub.now(), call.params.id]);
      if (rows.length === 0) throw notFound(`no live token with id ${JSON.stringify(call.params.id)}`);
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
        const id = layerIdFrom(call.params);
        const record = hub.federation.layers.get(id);
        if (record === undefined) throw notFound(`layer ${id} has never been applied`);
        allow(call.principal, "read", layerTarget(hub, id, record.layer?.region));
        return { body: { id, version: record.version, author: record.author, createdAt: record.createdAt, contentHash: record.contentHash, files: record.files } };
      },
    },
    {
      method: "GET",
      path: `${base}/history`,
      summary: "Every version of a layer: who, when, content hash.",
      auth: "authenticated",
      async handle(hub, call) {
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
      const written = await hub.federation.commit(plan, author(call.principal));
      return { body: { deleted: id, versions: written, affected: plan.affected.length } };
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
      const plan = planFiles(hub, call.principal, files);
      const written = dryRun === true ? [] : await hub.federation.commit(plan, author(call.principal));
      return {
        status: dryRun === true || written.length === 0 ? 200 : 201,
        body: {
          dryRun: dryRun === true,
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
      const plan = planFiles(hub, call.principal, files);
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
      const items = [...hub.federation.clusters.values()]
        .filter((c) => denial(call.principal, "read", { kind: "cluster", cluster: c.name, region: c.region }) === undefined)
        .sort((a, b) => (a.name < b.name ? -1 : 1))
        .map((c) => clusterView(hub, c.name));
      return { body: { items } };
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
      const set = engine(`cluster ${body.name} cannot be registered`, () => hub.federation.effectiveForNew(identity));
      await hub.federation.write(async (tx) => {
        const inserted = await tx.query(
          "INSERT INTO clusters (name, region, labels, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (name) DO NOTHING RETURNING name",
          [body.name, body.region, JSON.stringify(identity.labels), author(call.principal), hub.now()],
        );
        if (inserted.length === 0) throw conflict(`cluster ${body.name} is already registered`);
      });
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
      return { body: { ...clusterView(hub, call.params.name!), certificates } };
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
      engine(`cluster ${target.cluster} cannot be relabelled`, () => hub.federation.effectiveForNew(identity));
      await hub.federation.write((tx) => tx.query("UPDATE clusters SET labels = $1, updated_at = $2 WHERE name = $3", [JSON.stringify(labels), hub.now(), target.cluster]));
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
      await hub.federation.write(async (tx) => {
        await hub.identity.revokeCluster(tx, target.cluster);
        await tx.query("DELETE FROM clusters WHERE name = $1", [target.cluster]);
      });
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
      return { status: 201, body: { cluster: target.cluster, ...(await hub.identity.mintJoinToken(target.cluster, ttl, author(call.principal))) } };
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
      await hub.federation.write(async (tx) => {
        certificates = await hub.identity.revokeCluster(tx, target.cluster);
      });
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
];

export { sha256 };
