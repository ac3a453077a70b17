/**
 * The root of trust and the federation's keys: root versions (public: signed, any mirror
 * may serve them), the keys' states, rotation and revocation (global admins), and regions'
 * delegations and intermediate CAs (global admins; the regional hub role asks for them).
 */
import { keyRevokeRequest, keyRotateRequest, regionKeyRequest } from "../../api/trust.js";
import { keyStatus, revokeKey, rotateKey } from "../key-rotation.js";
import { route } from "../route.js";
import { badRequest, forbidden } from "../status.js";
import { auditContext } from "./shared.js";

const ADMIN = { kind: "role", roles: ["global-admin"], why: "only a global admin changes the federation's keys" } as const;

export const TRUST_ROUTES = [
  route({
    method: "GET",
    path: "/v1/trust/root",
    summary: "The newest version of the federation's root of trust (signed JSON): its keys, roles, delegations and revoked keys.",
    access: { kind: "public" },
    async handle(hub) {
      await hub.trust.reload();
      return { body: hub.trust.envelope };
    },
  }),
  route({
    method: "GET",
    path: "/v1/trust/roots",
    summary: "Root versions after `after` (oldest first, at most 50): each to be verified against the one before it.",
    access: { kind: "public" },
    async handle(hub, call) {
      const after = Number(call.query.after ?? "0");
      if (!Number.isSafeInteger(after) || after < 0) throw badRequest("after must be a root version (a whole number ≥ 0)");
      return { body: { items: await hub.trust.rootsAfter(after) } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/keys",
    summary: "The federation's keys and CAs: purpose, id, creation, state (active, overlap, retired, revoked), the root versions that list them.",
    access: { kind: "role", roles: ["global-admin", "auditor"], why: "keys are listed for global admins and auditors" },
    async handle(hub) {
      const status = await keyStatus(hub.trust);
      return { body: { ...status, keys: [...(hub.authorities === undefined ? [] : await hub.authorities.status()), ...status.keys] } };
    },
  }),
  route({
    method: "POST",
    path: "/v1/keys/rotate",
    summary: "Rotate a key (root, bundles, audit-log) or the federation CA (ca): the new one enters a new root before it signs; the old one overlaps, or is revoked with `revoke`.",
    access: ADMIN,
    body: keyRotateRequest,
    async handle(hub, call) {
      const revoke = call.body.revoke ?? [];
      if (call.body.purpose === "ca") {
        if (revoke.length > 0) throw badRequest("the CA is rotated with overlap, never revoked by id: rotate it, and its predecessor retires once every cluster moved on");
        if (hub.authorities === undefined) throw forbidden("a regional hub holds its parent's CA: rotate the CA on the global hub");
        return { body: await hub.authorities.rotate(auditContext(call)) };
      }
      const purpose = call.body.purpose;
      if (revoke.length > 0 && call.body.reason === undefined) throw badRequest("a revocation needs a reason");
      return { body: await rotateKey(hub.trust, purpose, { revoke, ...(call.body.reason === undefined ? {} : { reason: call.body.reason }) }, auditContext(call)) };
    },
  }),
  route({
    method: "POST",
    path: "/v1/keys/revoke",
    summary: "Revoke a key on suspicion of compromise: refused everywhere from the next bundle (a signing key is replaced in the same root).",
    access: ADMIN,
    body: keyRevokeRequest,
    async handle(hub, call) {
      return { body: await revokeKey(hub.trust, call.body.keyId, call.body.reason, auditContext(call)) };
    },
  }),
  route({
    method: "POST",
    path: "/v1/trust/delegations",
    summary: "Delegate a region to its hub's Ed25519 key: a new root whose delegation lets that key sign the region's bundles and layer only.",
    access: ADMIN,
    body: regionKeyRequest,
    async handle(hub, call) {
      return { status: 201, body: await hub.trust.delegateRegion(call.body.region, call.body.publicKeyPem, auditContext(call)) };
    },
  }),
  route({
    method: "POST",
    path: "/v1/trust/regional-ca",
    summary: "Issue a region's intermediate CA certificate (CA, pathLen 0, name-constrained to spiffe://<federation>/region/<region>/) for its ECDSA P-256 key.",
    access: ADMIN,
    body: regionKeyRequest,
    async handle(hub, call) {
      return { status: 201, body: await hub.trust.issueRegionalCa(call.body.region, call.body.publicKeyPem, auditContext(call)) };
    },
  }),
];
