/** Bearer tokens: minted and revoked by global admins, listed (never their values) for admins and auditors. */
import { tokenCreateRequest } from "../../api/tokens.js";
import { describePrincipal } from "../principal.js";
import { route } from "../route.js";
import { auditContext } from "./shared.js";

export const TOKEN_ROUTES = [
  route({
    method: "POST",
    path: "/v1/tokens",
    summary: "Mint a bearer token with a role (region-operator tokens are bound to a region) and an expiry. The token is shown once.",
    access: { kind: "role", roles: ["global-admin"], why: "only a global admin mints tokens" },
    body: tokenCreateRequest,
    async handle(hub, call) {
      return { status: 201, body: await hub.tokens.create(call.body, describePrincipal(call.principal), auditContext(call)) };
    },
  }),
  route({
    method: "GET",
    path: "/v1/tokens",
    summary: "Tokens (never their values): name, role, region, expiry, revocation.",
    access: { kind: "role", roles: ["global-admin", "auditor"], why: "tokens are listed for global admins and auditors" },
    async handle(hub) {
      return { body: { items: await hub.tokens.list() } };
    },
  }),
  route({
    method: "DELETE",
    path: "/v1/tokens/:id",
    summary: "Revoke a token: it stops working at once on every hub.",
    access: { kind: "role", roles: ["global-admin"], why: "only a global admin revokes tokens" },
    async handle(hub, call) {
      const id = call.params.id!;
      await hub.tokens.revoke(id, auditContext(call));
      return { body: { id, revoked: true } };
    },
  }),
];
