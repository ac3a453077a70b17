/** The hub's identity routes: health, the CA and revocations, enrolment, renewal, who am I. */
import { enrollRequest, renewRequest, type IssuedCertificate } from "../../api/identity.js";
import { describePrincipal } from "../principal.js";
import { route, type Hub } from "../route.js";
import type { ClusterCertificate } from "../identity.js";

/** What an agent pins besides its certificate: the bundle key signing now, and root version 1 (src/trust). */
const withBundleKey = async (hub: Hub, issued: ClusterCertificate): Promise<IssuedCertificate> => ({
  ...issued,
  bundleKey: { keyId: hub.bundles.key.keyId, publicKeyPem: hub.bundles.key.publicKeyPem },
  root: await hub.trust.rootVersion(1),
});

export const IDENTITY_ROUTES = [
  route({
    method: "GET",
    path: "/healthz",
    summary: "Liveness: the hub answers and its database is reachable.",
    access: { kind: "public" },
    async handle(hub) {
      await hub.federation.reachable();
      return { body: { status: "ok", federation: hub.identity.federation } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/ca",
    summary: "The federation CA certificate(s) (PEM): what agents and clients trust; during a CA rotation, the one the hub serves with first, then the other.",
    access: { kind: "public" },
    async handle(hub) {
      return { body: hub.identity.trustedPem, type: "application/x-pem-file" };
    },
  }),
  route({
    method: "GET",
    path: "/v1/crl",
    summary: "The certificate revocation list (PEM, X.509 CRL signed by the federation CA).",
    access: { kind: "public" },
    async handle(hub) {
      return { body: await hub.identity.revocationList(), type: "application/x-pem-file" };
    },
  }),
  route({
    method: "GET",
    path: "/v1/revocations",
    summary: "Revoked certificates, as JSON: serial, cluster, time of revocation.",
    access: { kind: "public" },
    async handle(hub) {
      const list = await hub.identity.revocations();
      return { body: { items: list.map((r) => ({ serial: r.serial, cluster: r.cluster, revokedAt: r.revokedAt.toISOString() })) } };
    },
  }),
  route({
    method: "POST",
    path: "/v1/enroll",
    summary: "Enrol a cluster: a one-time join token and a CSR (PEM, ECDSA P-256, CN = the cluster's name) give a client certificate.",
    access: { kind: "public" },
    body: enrollRequest,
    async handle(hub, call) {
      return { status: 201, body: await withBundleKey(hub, await hub.identity.enroll(call.body.joinToken, call.body.csr)) };
    },
  }),
  route({
    method: "POST",
    path: "/v1/renew",
    summary: "Renew a cluster certificate over mutual TLS; an expired one within the grace window is renewed for the same key.",
    access: { kind: "agent", renewal: true, why: "renewal needs the cluster's current certificate (mutual TLS)" },
    body: renewRequest,
    async handle(hub, call) {
      if (call.peer === undefined) throw new Error("a cluster principal without its certificate");
      return { body: await withBundleKey(hub, await hub.identity.renew(call.peer, call.body.csr)) };
    },
  }),
  route({
    method: "GET",
    path: "/v1/whoami",
    summary: "Who the hub takes the caller to be.",
    access: { kind: "authenticated" },
    async handle(_hub, call) {
      return { body: { principal: call.principal, description: describePrincipal(call.principal) } };
    },
  }),
];
