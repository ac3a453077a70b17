/**
 * Bearer tokens: who people and automation are to the hub. A token is shown once when it
 * is minted; the hub keeps only its SHA-256. Its standing (expiry, revocation) is read on
 * every request, so a revocation through any hub process applies at once. This module
 * owns the `tokens` table.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Role, TokenCreated, TokenCreateRequest, TokenView } from "../api/tokens.js";
import type { AuditEvent } from "../audit/entry.js";
import type { Database, Queryable } from "../store/database.js";
import type { AuditContext, AuditLog } from "./audit-log.js";
import type { Principal } from "./principal.js";
import { badRequest, notFound, unauthorized } from "./status.js";

/** The hex SHA-256 of a secret: what the hub stores of tokens and join tokens. */
export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** A new secret: `<prefix>_<192 random bits, base64url>`. */
export function newSecret(prefix: string): string {
  return `${prefix}_${randomBytes(24).toString("base64url")}`;
}

const DEFAULT_TTL_SECONDS = 90 * 24 * 3600;

export class TokenService {
  constructor(
    private readonly db: Database,
    private readonly audit: AuditLog,
    private readonly now: () => Date,
  ) {}

  /**
   * The principal a token value stands for, with the federation's generation read in the
   * same query (so that bringing this process up to date costs no second query).
   */
  async authenticate(value: string): Promise<{ principal: Principal; generation: string | undefined }> {
    const [token] = await this.db.query<{ id: string; name: string; role: Role; region: string | null; subject: string | null; groups: string[]; expires_at: Date | null; revoked_at: Date | null; generation: string | null }>(
      "SELECT id, name, role, region, subject, groups, expires_at, revoked_at, (SELECT generation::text FROM federation) AS generation FROM tokens WHERE hash = $1",
      [sha256(value)],
    );
    if (token === undefined) throw unauthorized("the bearer token is not valid");
    if (token.revoked_at !== null) throw unauthorized(`the bearer token ${token.id} was revoked at ${new Date(token.revoked_at).toISOString()}`);
    if (token.expires_at !== null && new Date(token.expires_at).getTime() <= this.now().getTime()) {
      throw unauthorized(`the bearer token ${token.id} expired at ${new Date(token.expires_at).toISOString()}`);
    }
    return {
      principal: {
        kind: "token",
        id: token.id,
        name: token.name,
        role: token.role,
        ...(token.region === null ? {} : { region: token.region }),
        ...(token.subject === null ? {} : { subject: token.subject }),
        groups: token.groups,
      },
      generation: token.generation ?? undefined,
    };
  }

  async create(request: TokenCreateRequest, by: string, context: AuditContext): Promise<TokenCreated> {
    if ((request.role === "region-operator") !== (request.region !== undefined)) {
      throw badRequest(request.role === "region-operator" ? "a region-operator token is bound to a region: give region" : "only a region-operator token has a region");
    }
    const token = newSecret("polity");
    const id = randomBytes(6).toString("hex");
    const expiresAt = new Date(this.now().getTime() + (request.ttlSeconds ?? DEFAULT_TTL_SECONDS) * 1000);
    const region = request.region ?? null;
    const subject = request.subject ?? null;
    const groups = [...new Set(request.groups ?? [])].sort();
    await this.db.transaction(async (tx) => {
      await tx.query("INSERT INTO tokens (id, name, role, region, hash, created_by, created_at, expires_at, subject, groups) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", [
        id,
        request.name,
        request.role,
        region,
        sha256(token),
        by,
        this.now(),
        expiresAt,
        subject,
        JSON.stringify(groups),
      ]);
      await this.audit.record(tx, [
        {
          kind: "token.created",
          actor: context.actor,
          cluster: null,
          region,
          correlationId: context.correlationId,
          data: { id, name: request.name, role: request.role, region, expiresAt: expiresAt.toISOString(), ...(subject === null ? {} : { subject }), ...(groups.length === 0 ? {} : { groups }) },
        },
      ]);
    });
    return { id, name: request.name, role: request.role, region, subject, groups, expiresAt: expiresAt.toISOString(), token };
  }

  /** The bootstrap admin token, minted in the transaction that creates the federation (before there is an audit log to hold it). */
  static async createBootstrap(tx: Queryable, context: AuditContext): Promise<{ token: string; event: AuditEvent }> {
    const token = newSecret("polity");
    const id = randomBytes(6).toString("hex");
    await tx.query("INSERT INTO tokens (id, name, role, hash, created_by) VALUES ($1, $2, 'global-admin', $3, 'bootstrap')", [id, "bootstrap admin", sha256(token)]);
    return {
      token,
      event: {
        kind: "token.created",
        actor: context.actor,
        cluster: null,
        region: null,
        correlationId: context.correlationId,
        data: { id, name: "bootstrap admin", role: "global-admin", region: null, expiresAt: null, bootstrap: true },
      },
    };
  }

  async list(): Promise<TokenView[]> {
    const rows = await this.db.query<{ id: string; name: string; role: Role; region: string | null; subject: string | null; groups: string[]; created_by: string; created_at: Date; expires_at: Date | null; revoked_at: Date | null }>(
      "SELECT id, name, role, region, subject, groups, created_by, created_at, expires_at, revoked_at FROM tokens ORDER BY created_at",
    );
    const iso = (d: Date | null) => (d === null ? null : new Date(d).toISOString());
    return rows.map((r) => ({ id: r.id, name: r.name, role: r.role, region: r.region, subject: r.subject, groups: r.groups, createdBy: r.created_by, createdAt: new Date(r.created_at).toISOString(), expiresAt: iso(r.expires_at), revokedAt: iso(r.revoked_at) }));
  }

  async revoke(id: string, context: AuditContext): Promise<void> {
    await this.db.transaction(async (tx) => {
      const rows = await tx.query<{ name: string; role: string; region: string | null }>("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING name, role, region", [
        this.now(),
        id,
      ]);
      if (rows.length === 0) throw notFound(`no live token with id ${JSON.stringify(id)}`);
      const { name, role, region } = rows[0]!;
      await this.audit.record(tx, [{ kind: "token.revoked", actor: context.actor, cluster: null, region, correlationId: context.correlationId, data: { id, name, role } }]);
    });
  }
}
