/**
 * Who is calling, and what they may do. People and automation hold bearer tokens with a
 * role; agents hold a cluster certificate. The rules are one pure function of the
 * principal and the target, so they can be read and tested in one place:
 *
 * | principal          | may                                                                 |
 * |--------------------|---------------------------------------------------------------------|
 * | global-admin       | everything                                                          |
 * | region-operator(R) | read everything of region R and the global layer; write region R's  |
 * |                    | layer, and the clusters of R (register, relabel, remove, join,      |
 * |                    | revoke) and their layers                                            |
 * | auditor            | read everything, write nothing                                      |
 * | cluster(C in R)    | read its own effective set, bundle and identity; renew its          |
 * |                    | certificate                                                         |
 */

export type Role = "global-admin" | "region-operator" | "auditor";
export const ROLES: readonly Role[] = ["global-admin", "region-operator", "auditor"];

export type Principal =
  | { readonly kind: "token"; readonly id: string; readonly name: string; readonly role: Role; readonly region?: string }
  | { readonly kind: "cluster"; readonly cluster: string; readonly region: string; readonly serial: string; readonly expired: boolean }
  | { readonly kind: "anonymous" };

/** What a request touches: the federation as a whole, a region, or a cluster (in a region). */
export type Target =
  | { readonly kind: "federation" }
  | { readonly kind: "region"; readonly region: string }
  | { readonly kind: "cluster"; readonly cluster: string; readonly region: string };

export type Access = "read" | "write";

/** Why not, or undefined when allowed. */
export function denial(principal: Principal, access: Access, target: Target): string | undefined {
  switch (principal.kind) {
    case "anonymous":
      return "authentication required: a bearer token or a cluster certificate";
    case "cluster":
      if (target.kind === "cluster" && target.cluster === principal.cluster && access === "read") return undefined;
      return `cluster ${principal.cluster} may read only what is its own`;
    case "token":
      switch (principal.role) {
        case "global-admin":
          return undefined;
        case "auditor":
          return access === "read" ? undefined : "the auditor role is read-only";
        case "region-operator": {
          const region = principal.region;
          if (target.kind === "federation") {
            return access === "read" ? undefined : `a region operator (of ${region}) may not change the federation as a whole`;
          }
          if (target.region === region) return undefined;
          return `a region operator of ${region} may not ${access === "read" ? "read" : "change"} region ${target.region}`;
        }
      }
  }
}

export function describePrincipal(principal: Principal): string {
  switch (principal.kind) {
    case "anonymous":
      return "anonymous";
    case "cluster":
      return `cluster ${principal.cluster} (region ${principal.region})`;
    case "token":
      return `${principal.name} (${principal.role}${principal.region === undefined ? "" : ` of ${principal.region}`})`;
  }
}
