/**
 * Who is calling, and what they may do. People and automation hold bearer tokens with a
 * role; agents hold a cluster certificate. Each route declares a `Requirement`; the rules
 * are pure functions of the principal, the requirement and the targets a call touches, so
 * they can be read and tested in one place:
 *
 * | principal          | may                                                                 |
 * |--------------------|---------------------------------------------------------------------|
 * | global-admin       | everything                                                          |
 * | region-operator(R) | read everything of region R and the global layer; write region R's  |
 * |                    | layer, and the clusters of R (register, relabel, remove, join,      |
 * |                    | revoke) and their layers, once they are registered                  |
 * | auditor            | read everything, write nothing                                      |
 * | team-member        | read everything; answer exception requests and proposals for the    |
 * |                    | teams it belongs to (governance decides which), request exceptions  |
 * | cluster(C in R)    | read its own effective set, bundle and identity; renew its          |
 * |                    | certificate; report its status and decision logs                    |
 * | regional-hub(R)    | (its parent) read the global layer and region R's clusters; send    |
 * |                    | R's summaries, signed heads, bundles and region layer; nothing else |
 *
 * A requirement is checked in two steps: `requirementRefusal` before the body is read (so
 * that nobody who may not write at all makes the hub parse a large change), then
 * `denial` for each target the call touches (a cluster, a region, the federation).
 */
import type { Role } from "../api/tokens.js";
import type { Actor } from "../governance/index.js";

export { ROLES, type Role } from "../api/tokens.js";

export type Principal =
  | {
      readonly kind: "token";
      readonly id: string;
      readonly name: string;
      readonly role: Role;
      readonly region?: string;
      /** Who holds it (what teams list); absent: the token stands for no one in particular. */
      readonly subject?: string;
      readonly groups?: readonly string[];
    }
  | { readonly kind: "cluster"; readonly cluster: string; readonly region: string; readonly serial: string; readonly expired: boolean }
  | { readonly kind: "regional-hub"; readonly region: string; readonly serial: string }
  | { readonly kind: "anonymous" };

/** What a request touches: the federation as a whole, a region, or a cluster (in a region). */
export type Target =
  | { readonly kind: "federation" }
  | { readonly kind: "region"; readonly region: string }
  /** `unregistered`: a cluster layer written before its cluster is registered (the region is the layer's word for it). */
  | { readonly kind: "cluster"; readonly cluster: string; readonly region: string; readonly unregistered?: true };

export type Access = "read" | "write";

/** Who may call a route. */
export type Requirement =
  /** Anyone, authenticated or not. */
  | { readonly kind: "public" }
  /** Anyone the hub knows: a bearer token or a cluster certificate in good standing. */
  | { readonly kind: "authenticated" }
  /** A cluster's agent, acting for itself; `renewal`: its certificate may have expired within the grace window. */
  | { readonly kind: "agent"; readonly why: string; readonly renewal?: boolean }
  /** A regional hub calling its parent (mutual TLS with its hub certificate). */
  | { readonly kind: "regional-hub"; readonly why: string }
  /** A bearer token with one of these roles. */
  | { readonly kind: "role"; readonly roles: readonly Role[]; readonly why: string }
  /**
   * Read or write access to every target the call touches (the route names them).
   * `layers`: the call reads or writes layers, which a cluster never may: its certificate is
   * refused before the body is read, as are those who may write nothing for a write.
   */
  | { readonly kind: "access"; readonly access: Access; readonly layers?: true };

const TEAM_MEMBER_WRITES = "a team member changes nothing directly: it answers exception requests and proposals for its teams";

export const AUTHENTICATION_REQUIRED = "authentication required: 'Authorization: Bearer <token>' (polity login) or a cluster certificate";

/** Why a call is refused: 401 when the caller must authenticate (otherwise), 403 when it may not. */
export interface Refusal {
  readonly code: 401 | 403;
  readonly message: string;
}

/** Whether the route's requirement rules the principal out before anything is read. */
export function requirementRefusal(principal: Principal, requirement: Requirement): Refusal | undefined {
  if (requirement.kind === "public") return undefined;
  // Renewal is a certificate's business: anyone else is asked for one.
  if (requirement.kind === "agent" && requirement.renewal === true) return principal.kind === "cluster" ? undefined : { code: 401, message: requirement.why };
  if (principal.kind === "anonymous") return { code: 401, message: AUTHENTICATION_REQUIRED };
  const forbidden = (message: string): Refusal => ({ code: 403, message });
  switch (requirement.kind) {
    case "authenticated":
      return undefined;
    case "agent":
      return principal.kind === "cluster" ? undefined : forbidden(requirement.why);
    case "regional-hub":
      return principal.kind === "regional-hub" ? undefined : forbidden(requirement.why);
    case "role":
      return principal.kind === "token" && requirement.roles.includes(principal.role) ? undefined : forbidden(requirement.why);
    case "access":
      // Those who may write nothing at all are refused before their change is read.
      if (principal.kind === "regional-hub") return forbidden(`the regional hub of ${principal.region} calls only the regional endpoints (/v1/region/…)`);
      if (requirement.layers === true && principal.kind === "cluster") return forbidden(`cluster ${principal.cluster} may read only what is its own`);
      if (requirement.access === "write" && principal.kind === "cluster") return forbidden(`cluster ${principal.cluster} may read only what is its own`);
      if (requirement.access === "write" && principal.kind === "token" && principal.role === "auditor") return forbidden("the auditor role is read-only");
      if (requirement.access === "write" && principal.kind === "token" && principal.role === "team-member") return forbidden(TEAM_MEMBER_WRITES);
      return undefined;
  }
}

/** Why not, or undefined when the principal may read or write the target. */
export function denial(principal: Principal, access: Access, target: Target): string | undefined {
  switch (principal.kind) {
    case "anonymous":
      return "authentication required: a bearer token or a cluster certificate";
    case "cluster":
      if (target.kind === "cluster" && target.cluster === principal.cluster && access === "read") return undefined;
      return `cluster ${principal.cluster} may read only what is its own`;
    case "regional-hub":
      return `the regional hub of ${principal.region} calls only the regional endpoints (/v1/region/…)`;
    case "token":
      switch (principal.role) {
        case "global-admin":
          return undefined;
        case "auditor":
          return access === "read" ? undefined : "the auditor role is read-only";
        case "team-member":
          return access === "read" ? undefined : TEAM_MEMBER_WRITES;
        case "region-operator": {
          const region = principal.region;
          if (target.kind === "federation") {
            return access === "read" ? undefined : `a region operator (of ${region}) may not change the federation as a whole`;
          }
          // A layer for a cluster nobody registered would reserve its name in any region: global admins only.
          if (target.kind === "cluster" && target.unregistered === true && access === "write") {
            return `cluster ${target.cluster} is not registered: a region operator writes layers only for the registered clusters of their region (register it first)`;
          }
          if (target.region === region) return undefined;
          return `a region operator of ${region} may not ${access === "read" ? "read" : "change"} region ${target.region}`;
        }
      }
  }
}

/** Which audit entries a principal may read: all, one region's, or none (why). */
export function auditScope(principal: Principal): { readonly all: true } | { readonly all: false; readonly region: string } {
  if (principal.kind === "token" && principal.role === "region-operator" && principal.region !== undefined) return { all: false, region: principal.region };
  return { all: true };
}

/** The principal as governance sees it: a subject, groups, and whether it is a global admin. */
export function actorFor(principal: Principal): Actor {
  switch (principal.kind) {
    case "token":
      return { subject: principal.subject ?? `token:${principal.name}`, groups: principal.groups ?? [], admin: principal.role === "global-admin" };
    case "cluster":
      return { subject: `cluster:${principal.cluster}`, groups: [], admin: false };
    case "regional-hub":
      return { subject: `regional-hub:${principal.region}`, groups: [], admin: false };
    case "anonymous":
      return { subject: "anonymous", groups: [], admin: false };
  }
}

export function describePrincipal(principal: Principal): string {
  switch (principal.kind) {
    case "anonymous":
      return "anonymous";
    case "cluster":
      return `cluster ${principal.cluster} (region ${principal.region})`;
    case "regional-hub":
      return `the regional hub of ${principal.region}`;
    case "token":
      return `${principal.name} (${principal.role}${principal.region === undefined ? "" : ` of ${principal.region}`})`;
  }
}
