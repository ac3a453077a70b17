/**
 * What a route of the hub's API is: a method and path, a summary for /openapi.json, who
 * may call it (declared, and decided by principal.ts before the handler runs), the schema
 * of its body (validated before the handler runs: the handler receives the body typed,
 * never cast), the targets it touches, and its handler.
 *
 * The server registers the routes in `routes/` and publishes them as OpenAPI from the
 * same declarations, so the API and its description cannot drift apart. Handlers speak
 * HTTP only; what they do lives in the hub's services (federation, changes, identity,
 * tokens, bundles, reports, the audit log), which own their tables.
 */
import { z } from "zod";
import type { StatusCause } from "../api/status.js";
import type { Database } from "../store/database.js";
import type { AuditLog } from "./audit-log.js";
import type { BundleService } from "./bundles.js";
import type { Changes } from "./change.js";
import type { Compliance } from "./compliance.js";
import type { Drift } from "./drift.js";
import type { ClusterIntents } from "./intents-status.js";
import type { Exceptions } from "./exceptions.js";
import type { Proposals } from "./proposals.js";
import type { Federation } from "./federation.js";
import type { IdentityService, PeerCertificate } from "./identity.js";
import type { Access, Principal, Requirement, Target } from "./principal.js";
import type { Reports } from "./reports.js";
import type { Impacts } from "./impact.js";
import type { Rollouts } from "./rollouts.js";
import { ApiError } from "./status.js";
import type { TokenService } from "./tokens.js";
import type { Regions } from "./regional/parent.js";
import type { RegionalRole } from "./regional/role.js";
import type { TrustService } from "./trust.js";
import type { Residency } from "./residency.js";
import type { CaRotation } from "./ca-rotation.js";

/** The hub's services, as route handlers use them. */
export interface Hub {
  readonly db: Database;
  readonly federation: Federation;
  readonly changes: Changes;
  readonly exceptions: Exceptions;
  readonly proposals: Proposals;
  readonly identity: IdentityService;
  readonly tokens: TokenService;
  readonly bundles: BundleService;
  readonly reports: Reports;
  readonly rollouts: Rollouts;
  readonly impacts: Impacts;
  readonly compliance: Compliance;
  readonly drift: Drift;
  readonly intents: ClusterIntents;
  readonly audit: AuditLog;
  /** As a parent: its regional hubs (every hub may be one). */
  readonly regions?: Regions;
  /** As a regional hub: its region and its link to its parent. */
  readonly regional?: RegionalRole;
  /** The federation's root of trust: root versions, keys, regions' delegations and CAs. */
  readonly trust: TrustService;
  /** Data residency: this hub's zone, the regions' declared zones, refusals (src/hub/residency.ts). */
  readonly residency: Residency;
  /** The global hub's federation CAs, which rotate (absent on a regional hub). */
  readonly authorities?: CaRotation;
  readonly now: () => Date;
}

export interface Call<B = unknown> {
  readonly principal: Principal;
  readonly peer: PeerCertificate | undefined;
  /** With a cluster's certificate: whether its region has a regional hub, read with the certificate's standing. */
  readonly regionHasHub?: boolean;
  readonly params: Readonly<Record<string, string>>;
  readonly query: Readonly<Record<string, string | undefined>>;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: B;
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

export type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface RouteSpec<B, P> {
  readonly method: Method;
  /** Fastify path syntax: `/v1/clusters/:name`. */
  readonly path: string;
  readonly summary: string;
  /** Who may call it. */
  readonly access: Requirement;
  /**
   * For `access: {kind: "access"}`: read or write, by the validated body, when the body
   * decides it (a dry run only reads). The requirement's own access otherwise.
   */
  accessFor?(body: B): Access;
  /** The body's schema; a route without one ignores its body. */
  readonly body?: z.ZodType<B>;
  /** Largest body accepted, in bytes (default 64 KiB). */
  readonly bodyLimit?: number;
  /**
   * Work done once the caller passed the route's requirement and before its targets are
   * authorized, whose result both need (an apply parses its layers here, once).
   */
  prepare?(hub: Hub, call: Call<B>): P | Promise<P>;
  /**
   * For `access: {kind: "access"}`: what the call touches, from its path, body or prepared
   * value. Each target is authorized (principal.ts) before the handler runs.
   */
  targets?(hub: Hub, call: Call<B>, prepared: P): readonly Target[];
  handle(hub: Hub, call: Call<B>, prepared: P): Promise<Answer>;
}

/** A route as the server holds it: its declaration, and a runner that validates the body and calls the handler. */
export interface Route {
  readonly method: Method;
  readonly path: string;
  readonly summary: string;
  readonly access: Requirement;
  readonly bodyLimit: number;
  /** JSON Schema of the body, for /openapi.json. */
  readonly bodySchema: Record<string, unknown> | undefined;
  /**
   * Validates the body, checks the requirement (`refuse` throws when it rules the caller
   * out), prepares, authorizes each target (`authorize` throws for one the caller may not
   * access), and runs the handler.
   */
  run(hub: Hub, call: Call, guard: Guard): Promise<Answer>;
}

/** How the server decides what a route declares (principal.ts), for the call at hand. */
export interface Guard {
  /** Refuses the call when the requirement rules its principal out. */
  refuse(requirement: Requirement): void;
  /** Refuses the call unless its principal may access every target. */
  authorize(access: Access, targets: readonly Target[]): void;
}

const ANY_BODY = z.unknown();

/** Declares a route: its body is validated by its schema and handed to the handler with its type. */
export function route<B = unknown, P = undefined>(spec: RouteSpec<B, P>): Route {
  // Without a schema the body is not looked at, and without `prepare` nothing is prepared:
  // `B` and `P` are then `unknown` and `undefined`, as their defaults declare.
  const schema = spec.body ?? (ANY_BODY as z.ZodType<B>);
  const prepare = spec.prepare ?? ((): P => undefined as P);
  return {
    method: spec.method,
    path: spec.path,
    summary: spec.summary,
    access: spec.access,
    bodyLimit: spec.bodyLimit ?? 64 * 1024,
    bodySchema: spec.body === undefined ? undefined : (z.toJSONSchema(spec.body, { io: "input", unrepresentable: "any" }) as Record<string, unknown>),
    async run(hub, call, guard) {
      const parsed = schema.safeParse(call.body);
      if (!parsed.success) throw invalidBody(parsed.error);
      const typed: Call<B> = { ...call, body: parsed.data };
      const requirement: Requirement =
        spec.access.kind === "access" && spec.accessFor !== undefined ? { ...spec.access, access: spec.accessFor(parsed.data) } : spec.access;
      // Before anything is prepared: nobody who may not do this at all makes the hub parse a change.
      guard.refuse(requirement);
      const prepared = await prepare(hub, typed);
      if (spec.targets !== undefined && requirement.kind === "access") guard.authorize(requirement.access, spec.targets(hub, typed, prepared));
      return spec.handle(hub, typed, prepared);
    },
  };
}

/** A body that does not match its schema: 400, each problem with its field path (`files.0.mode: unknown field`). */
export function invalidBody(error: z.ZodError): ApiError {
  const causes: StatusCause[] = error.issues.flatMap((issue) => {
    const at = issue.path.map(String);
    if (issue.code === "unrecognized_keys") return issue.keys.map((key) => ({ field: [...at, key].join("."), message: "unknown field" }));
    return [{ field: at.length === 0 ? "(body)" : at.join("."), message: issue.message.replace(/^Invalid input: /, "") }];
  });
  return new ApiError(400, "BadRequest", `the request body is not valid: ${causes.map((c) => `${c.field}: ${c.message}`).join("; ")}`, causes);
}
