/**
 * The hub's HTTPS server. One port serves people (bearer tokens) and agents (mutual TLS
 * with their cluster certificate): TLS asks every client for a certificate but does not
 * require one, so that a refused certificate gets a 401 with the reason instead of a
 * broken handshake, and curl, openssl s_client and any TLS client work against it.
 *
 * Every request is authenticated here, and authorized by its route. Errors are
 * Kubernetes-style Status objects; nothing a client sends can stop the server.
 */
import { createHash, X509Certificate } from "node:crypto";
import type { Server as HttpsServer } from "node:https";
import type { TLSSocket } from "node:tls";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { normalizeSerial } from "../identity/ca.js";
import { leafWithinConstraints } from "../identity/regional-ca.js";
import { parseClusterSpiffeId } from "../identity/spiffe.js";
import { certificatePublicKeyInfo } from "../identity/der.js";
import type { PeerCertificate, RegionalHubCertificate } from "./identity.js";
import { openApiDocument } from "./openapi.js";
import { denial, requirementRefusal, type Principal, type Requirement } from "./principal.js";
import type { Guard, Hub, Route } from "./route.js";
import { ROUTES } from "./routes/index.js";
import { ApiError, forbidden, unauthorized } from "./status.js";

export interface ServerOptions {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
  /** The federation CA(s) client certificates may chain to, PEM (during a CA rotation, the old and the new). */
  readonly caPem: string;
  /** Structured JSON request logs to standard error. */
  readonly log: boolean;
}

interface CertificateView {
  readonly peer?: PeerCertificate;
  /** A regional hub calling its parent. */
  readonly regionalHub?: RegionalHubCertificate;
  /** Issued by a region's CA (an intermediate): TLS's own chain check is replaced by this hub's (see parsePeer). */
  readonly viaRegion?: boolean;
  /** The serial of the region's CA that issued it (normalized), when `viaRegion`. */
  readonly issuerSerial?: string;
  readonly problem?: string;
}

/** A certificate read once per TLS connection (keep-alive connections make many requests). */
const peers = new WeakMap<TLSSocket, { anchors: Anchors; view: Promise<CertificateView> }>();
/** And once per certificate: agents that reconnect present the same one (bounded). */
const byFingerprint = new Map<string, Promise<CertificateView>>();

/**
 * What a presented certificate must chain to: the federation's CAs (one, or the old and the
 * new during a CA rotation), and, on a regional hub, the region's CA it issues with (an
 * intermediate under the federation's). Replaced whole when the CAs change.
 */
export interface Anchors {
  readonly federation: string;
  readonly roots: readonly X509Certificate[];
  /** A regional hub's intermediate; undefined on the global hub. */
  readonly local: X509Certificate | undefined;
}

function readPeer(socket: TLSSocket, anchors: Anchors): Promise<CertificateView> {
  const presented = socket.getPeerCertificate(true);
  if (presented === null || presented === undefined || Object.keys(presented).length === 0 || presented.raw === undefined) return Promise.resolve({});
  // What the client sent above its certificate (a region's intermediate), as far as it goes.
  const intermediates: Buffer[] = [];
  for (let c = presented.issuerCertificate; c !== undefined && c !== null && c.raw !== undefined && intermediates.length < 3; c = c.issuerCertificate) {
    if (c.fingerprint256 === presented.fingerprint256 || intermediates.some((i) => i.equals(c.raw))) break;
    intermediates.push(c.raw);
  }
  const key = `${anchors.federation}\n${anchors.roots.map((r) => r.fingerprint256).join(",")}\n${anchors.local?.fingerprint256 ?? ""}\n${presented.fingerprint256}\n${intermediates.map((i) => createHash("sha256").update(i).digest("hex")).join(",")}`;
  let view = byFingerprint.get(key);
  if (view === undefined) {
    view = parsePeer(presented.raw, intermediates, anchors);
    if (byFingerprint.size >= 10_000) byFingerprint.clear();
    byFingerprint.set(key, view);
  }
  return view;
}

/**
 * Reads a presented certificate with Node's X.509 (OpenSSL's parser, native): the
 * signature against this federation's CA first (the root; else a chain through a region's
 * intermediate, name-constrained to its SPIFFE path, which leafWithinConstraints checks: the
 * one the peer sent after its leaf, or, on a regional hub, its own), then the SPIFFE ID of
 * its URI SAN, serial, expiry and key fingerprint (of the SubjectPublicKeyInfo as issued). A
 * regional hub's own certificate (`…/region/<r>/hub`) is the root's.
 */
async function parsePeer(raw: Buffer, intermediates: readonly Buffer[], anchors: Anchors): Promise<CertificateView> {
  const federation = anchors.federation;
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(raw);
  } catch {
    return { problem: "the client certificate cannot be read" };
  }
  // Node lists the SAN as `URI:<value>, DNS:<value>`, quoting (as JSON) any value with a
  // separator in it, which then names no cluster.
  const uri = (certificate.subjectAltName ?? "").split(", ").find((name) => name.startsWith("URI:"))?.slice(4);
  const hubRegion = uri === undefined ? undefined : /^spiffe:\/\/([a-z0-9.-]+)\/region\/([a-z0-9.-]+)\/hub$/.exec(uri);
  const id = uri === undefined ? undefined : parseClusterSpiffeId(uri);
  let spki: Buffer;
  try {
    spki = certificatePublicKeyInfo(raw);
  } catch {
    return { problem: "it was not issued by this federation's CA" };
  }
  const keyHash = createHash("sha256").update(spki).digest("hex");
  if (hubRegion !== null && hubRegion !== undefined && hubRegion[1] === federation) {
    if (!anchors.roots.some((root) => verifies(certificate, root))) return { problem: "it was not issued by this federation's CA" };
    return { regionalHub: { region: hubRegion[2]!, serial: normalizeSerial(certificate.serialNumber), notAfter: new Date(certificate.validTo), publicKeySha256: keyHash } };
  }
  if (id === undefined || id.federation !== federation) {
    return { problem: `the client certificate names no cluster of federation ${federation}${uri === undefined ? "" : ` (it names ${uri})`}` };
  }
  // TLS reports only one verification error (an expired forgery reports "expired"): the
  // signature is checked here, against this federation's CA, whatever TLS said.
  let viaRegion = false;
  let issuerSerial: string | undefined;
  if (!anchors.roots.some((root) => verifies(certificate, root))) {
    const above = intermediates.map((i) => new X509Certificate(i)).filter((c) => !anchors.roots.some((root) => c.fingerprint256 === root.fingerprint256));
    const chain = above.length > 0 ? above : anchors.local !== undefined ? [anchors.local] : [];
    if (chain.length === 0) return { problem: "it was not issued by this federation's CA" };
    // Checked at a moment the leaf is valid: its expiry is judged below (a renewal within the grace window).
    const verdict = leafWithinConstraints([certificate.toString(), ...chain.map((c) => c.toString())], anchors.roots.map((root) => root.toString()), new Date(Math.min(Date.now(), Date.parse(certificate.validTo) - 1000)));
    if (!verdict.ok) return { problem: verdict.reason };
    viaRegion = true;
    issuerSerial = normalizeSerial(chain[0]!.serialNumber);
  }
  return {
    viaRegion,
    ...(issuerSerial === undefined ? {} : { issuerSerial }),
    peer: {
      cluster: id.cluster,
      region: id.region,
      serial: normalizeSerial(certificate.serialNumber),
      notAfter: new Date(certificate.validTo),
      publicKeySha256: keyHash,
    },
  };
}

function verifies(certificate: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return certificate.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

const TLS_REASONS: Record<string, string> = {
  CERT_HAS_EXPIRED: "it has expired",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "it was not issued by this federation's CA",
  DEPTH_ZERO_SELF_SIGNED_CERT: "it is self-signed, not issued by this federation's CA",
  SELF_SIGNED_CERT_IN_CHAIN: "it was not issued by this federation's CA",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "it was not issued by this federation's CA",
  CERT_NOT_YET_VALID: "it is not valid yet",
  CERT_SIGNATURE_FAILURE: "its signature does not verify",
};

/**
 * Who is asking. A token's or a certificate's standing is read from the database on every
 * request (a revocation on any hub applies at once); the same read brings the federation's
 * generation, so that bringing this process up to date costs no second query.
 */
async function authenticate(
  hub: Hub,
  anchors: Anchors,
  request: FastifyRequest,
  requirement: Requirement,
): Promise<{ principal: Principal; peer?: PeerCertificate; generation?: string; regionHasHub?: boolean }> {
  const header = request.headers.authorization;
  if (header !== undefined) {
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (m === null) throw unauthorized("the Authorization header must be 'Bearer <token>'");
    return hub.tokens.authenticate(m[1]!);
  }
  const socket = request.raw.socket as TLSSocket;
  if (typeof socket.getPeerCertificate !== "function") return { principal: { kind: "anonymous" } };
  // Read again when the anchors changed (a CA rotation) since this connection's last request.
  let view = peers.get(socket)?.anchors === anchors ? peers.get(socket)!.view : undefined;
  if (view === undefined) {
    view = readPeer(socket, anchors);
    peers.set(socket, { anchors, view });
  }
  const { peer, problem, regionalHub, viaRegion, issuerSerial } = await view;
  if (peer === undefined && problem === undefined && regionalHub === undefined) return { principal: { kind: "anonymous" } };
  if (requirement.kind === "public") return { principal: { kind: "anonymous" } };
  if (problem !== undefined) throw unauthorized(`client certificate refused: ${problem}`);
  if (regionalHub !== undefined) {
    if (regionalHub.notAfter.getTime() <= hub.now().getTime()) throw unauthorized(`client certificate refused: it expired at ${regionalHub.notAfter.toISOString()}`);
    if (hub.regions === undefined) throw unauthorized("client certificate refused: this hub has no regional hubs");
    await hub.regions.checkStanding(regionalHub);
    return { principal: { kind: "regional-hub", region: regionalHub.region, serial: regionalHub.serial } };
  }
  // A region whose delegated key was revoked is cut off here: its CA's certificates too.
  if (issuerSerial !== undefined && hub.regions !== undefined) await hub.regions.checkIssuer(issuerSerial, peer!.region);
  const { generation, regionHasHub } = await hub.identity.checkStanding(peer!);
  // A chain through a region's CA was checked by parsePeer (OpenSSL, which knows only the
  // root, reports it as unverifiable): only its expiry is TLS's business here.
  const tlsError = socket.authorized ? undefined : String(socket.authorizationError ?? "UNKNOWN");
  const error = viaRegion === true && tlsError !== "CERT_HAS_EXPIRED" ? undefined : tlsError;
  const expiredOnly = error === "CERT_HAS_EXPIRED" || (error === undefined && peer!.notAfter.getTime() <= hub.now().getTime());
  if (error !== undefined && !expiredOnly) throw unauthorized(`client certificate refused: ${TLS_REASONS[error] ?? error}`);
  if (expiredOnly && !(requirement.kind === "agent" && requirement.renewal === true)) {
    throw unauthorized(`client certificate refused: it expired at ${peer!.notAfter.toISOString()}; renew it (POST /v1/renew) within the grace window`);
  }
  return { principal: { kind: "cluster", cluster: peer!.cluster, region: peer!.region, serial: peer!.serial, expired: expiredOnly }, peer: peer!, generation, regionHasHub };
}

/** Path and query parameters as strings: a repeated query parameter counts by its first value. */
function strings(record: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof record !== "object" || record === null) return out;
  for (const [key, value] of Object.entries(record)) {
    const first: unknown = Array.isArray(value) ? value[0] : value;
    if (typeof first === "string") out[key] = first;
  }
  return out;
}

/** The route's requirement and targets, decided by principal.ts: 401 for the anonymous, 403 for the others. */
function guardFor(principal: Principal): Guard {
  return {
    refuse(requirement) {
      const refusal = requirementRefusal(principal, requirement);
      if (refusal !== undefined) throw refusal.code === 401 ? unauthorized(refusal.message) : forbidden(refusal.message);
    },
    authorize(access, targets) {
      for (const target of targets) {
        const why = denial(principal, access, target);
        if (why !== undefined) throw principal.kind === "anonymous" ? unauthorized(why) : forbidden(why);
      }
    },
  };
}

async function serve(hub: Hub, anchors: Anchors, route: Route, request: FastifyRequest, signal: AbortSignal) {
  const { principal, peer, generation, regionHasHub } = await authenticate(hub, anchors, request, route.access);
  await hub.federation.sync(generation);
  return route.run(
    hub,
    {
      principal,
      peer,
      ...(regionHasHub === undefined ? {} : { regionHasHub }),
      params: strings(request.params),
      query: strings(request.query),
      headers: request.headers,
      body: request.body,
      signal,
    },
    guardFor(principal),
  );
}

/** The PEM certificates of a bundle, each parsed. */
function certificatesOf(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []).map((one) => new X509Certificate(one));
}

function anchorsFor(hub: Hub, caPem: string): Anchors {
  const roots = certificatesOf(caPem);
  const local = new X509Certificate(hub.identity.authority.certificatePem);
  return { federation: hub.identity.federation, roots, local: roots.some((r) => r.fingerprint256 === local.fingerprint256) ? undefined : local };
}

/** The hub's server, and how to move it to new CAs (a CA rotation) without a restart. */
export interface HubServer {
  readonly app: FastifyInstance;
  /** Accept client certificates of `caPem`'s CAs from the next handshake on, and serve with `serving` when given. */
  useAuthorities(caPem: string, serving?: { readonly certificatePem: string; readonly privateKeyPem: string }): void;
}

export async function createServer(hub: Hub, options: ServerOptions): Promise<HubServer> {
  let anchors = anchorsFor(hub, options.caPem);
  let served = { key: options.privateKeyPem, cert: options.certificatePem };
  const app = Fastify({
    https: {
      key: options.privateKeyPem,
      cert: options.certificatePem,
      ca: options.caPem,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: "TLSv1.2",
    },
    logger: options.log
      ? {
          level: "info",
          // Requests are logged by method, path and status; never headers (tokens) or bodies (join tokens).
          serializers: {
            req: (req: { method?: string; url?: string }) => ({ method: req.method, url: req.url }),
            res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
          },
        }
      : false,
    bodyLimit: 64 * 1024,
    return503OnClosing: true,
    forceCloseConnections: true,
  });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    let apiError: ApiError;
    if (error instanceof ApiError) {
      apiError = error;
    } else if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      apiError = new ApiError(413, "RequestEntityTooLarge", "the request body is larger than this endpoint accepts");
    } else if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
      apiError = new ApiError(415, "UnsupportedMediaType", "send JSON (Content-Type: application/json)");
    } else if (error.code === "FST_ERR_CTP_EMPTY_JSON_BODY" || error.code === "FST_ERR_CTP_INVALID_JSON_BODY" || (error.statusCode === 400 && /JSON/i.test(error.message))) {
      apiError = new ApiError(400, "BadRequest", `the request body is not valid JSON: ${error.message}`);
    } else if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      apiError = new ApiError(error.statusCode, "BadRequest", error.message);
    } else {
      request.log.error({ err: { message: error.message, stack: error.stack } }, "internal error");
      apiError = new ApiError(500, "InternalError", "internal error; the hub's log has the details");
    }
    for (const [name, value] of Object.entries(apiError.headers)) void reply.header(name, value);
    void reply.code(apiError.code).type("application/json").send(apiError.toStatus());
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).type("application/json").send(new ApiError(404, "NotFound", `no such endpoint: ${request.method} ${request.url.split("?")[0]}; the API is described at /openapi.json`).toStatus());
  });

  // A POST without a body (curl -X POST) is an empty object, so that optional fields take their defaults.
  app.addHook("preValidation", async (request) => {
    if (request.body === undefined && (request.method === "POST" || request.method === "PATCH")) request.body = {};
  });

  const document = openApiDocument(ROUTES);
  for (const path of ["/openapi.json", "/.well-known/openapi.json"]) {
    app.get(path, async () => document);
  }

  for (const route of ROUTES) {
    app.route({
      method: route.method,
      url: route.path,
      bodyLimit: route.bodyLimit,
      handler: async (request, reply) => {
        const controller = new AbortController();
        request.raw.once("close", () => controller.abort());
        const answer = await serve(hub, anchors, route, request, controller.signal);
        void reply.code(answer.status ?? 200);
        for (const [name, value] of Object.entries(answer.headers ?? {})) if (value !== undefined) void reply.header(name, value);
        if (answer.status === 204 || answer.status === 304) return reply.send();
        if (answer.type !== undefined) return reply.type(answer.type).send(answer.body);
        return reply.type("application/json").send(answer.body);
      },
    });
  }
  return {
    app,
    useAuthorities(caPem, serving) {
      anchors = anchorsFor(hub, caPem);
      if (serving !== undefined) served = { key: serving.privateKeyPem, cert: serving.certificatePem };
      // New handshakes only; connections kept alive keep the verdict read at their handshake,
      // re-judged against the new anchors on their next request (the cache key names the anchors).
      (app.server as unknown as HttpsServer).setSecureContext({ ...served, ca: caPem, minVersion: "TLSv1.2" });
    },
  };
}
