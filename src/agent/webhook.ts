/**
 * The agent's validating admission webhook: AdmissionReview `admission.k8s.io/v1` over
 * HTTPS, decided from the active bundle by decideReviewBytes (the one decision path, which
 * `polity eval` and the benchmark run too). No call leaves the agent on the decision path.
 *
 * Bodies are bounded (the API server sends at most a few MiB); a malformed or oversized
 * review gets a 4xx with a message, and the server keeps serving. An oversized one is
 * answered 413 at once and the rest of its upload read and discarded for a while before
 * the connection closes (a lingering close), so that the client reads the 413 instead of
 * a reset connection. Without a verified bundle the webhook fails closed: it denies,
 * saying why (the webhook registration exempts the system namespaces, so the cluster can
 * still heal itself).
 *
 * Who calls: given the CA of the API server's client certificate (Kubernetes' admission
 * configuration gives the webhook client one), each decision records whether its caller
 * presented a certificate of that CA, and with `requireAuthenticatedCaller` a caller that
 * did not is refused (401). Without a CA, every caller is recorded as unauthenticated.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { TLSSocket } from "node:tls";
import { statusBody } from "../api/status.js";
import type { AdmissionReview } from "../decision/request.js";
import { decideReview, decideReviewBytes, parseReviewBytes, type ReviewContext, type ReviewDecision } from "../decision/review.js";
import { PolityError } from "../errors.js";
import type { ActiveBundle } from "./bundle/active.js";
import type { Latencies } from "./latencies.js";
import type { DecisionLog } from "./logs/buffer.js";
import { allowedEntry, deniedEntry } from "./logs/entry.js";

/** The API server's request limit is 3 MiB of object; a review carries object and oldObject. */
export const MAX_REVIEW_BYTES = 8 * 1024 * 1024;

/** After a 413, how long and how much more of the upload is read and discarded before the connection closes. */
const LINGER_MS = 2000;
const LINGER_BYTES = 64 * 1024 * 1024;

export interface Counters {
  allowed: number;
  denied: number;
  /** Requests refused as malformed or too large. */
  rejected: number;
  /** Requests denied because no bundle was held yet. */
  failedClosed: number;
}

/** The cluster's Namespaces, for decisions (the agent's namespaces loop). */
export interface NamespaceSource {
  /** Whether the first list has filled the cache: /readyz waits for it. */
  readonly synced: boolean;
  /** The namespace from the cache alone, or undefined. */
  cached(name: string): unknown;
  /** The namespace from the cache, or else read once from the API server; or why it is not known. */
  lookup(name: string): Promise<{ readonly namespace?: unknown; readonly unknown?: string }>;
}

export interface WebhookOptions {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
  readonly host: string;
  readonly port: number;
  readonly now: () => Date;
  readonly bundle: ActiveBundle;
  readonly decisions: DecisionLog;
  readonly counters: Counters;
  readonly latencies: Latencies;
  /**
   * Where each decision finds the Namespace of its request; without one (no API server)
   * decisions know no namespace labels.
   */
  readonly namespaces?: NamespaceSource;
  /** The body of GET /healthz and /readyz. */
  readonly health: () => unknown;
  /** The CA of the API server's client certificate (PEM): callers presenting one it issued are authenticated. */
  readonly callerCaPem?: string;
  /** Refuse reviews from callers without such a certificate (401), instead of recording them as unauthenticated. */
  readonly requireAuthenticatedCaller?: boolean;
}

function statusHead(res: ServerResponse, code: number, reason: string, message: string, headers: Record<string, string> = {}): string {
  const body = JSON.stringify(statusBody(code, reason, message));
  res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers });
  return body;
}

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  res.end(statusHead(res, code, reason, message));
}

/**
 * 413 for a review too large (by its declared length, or counted as it streams), then a
 * lingering close (RFC 9112 section 9.6): closing with the client's upload unread in the
 * socket would reset the connection, and a client still writing would see the reset, not
 * the answer. So the response is written but not ended, the rest of the body is read and
 * thrown away until it ends or LINGER_MS or LINGER_BYTES pass, and only then does the
 * connection close.
 */
function tooLarge(req: IncomingMessage, res: ServerResponse, message: string): void {
  res.write(statusHead(res, 413, "RequestEntityTooLarge", message, { connection: "close" }));
  let discarded = 0;
  const close = () => {
    clearTimeout(timer);
    req.off("data", discard);
    if (!res.writableEnded) res.end();
  };
  const discard = (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > LINGER_BYTES) close();
  };
  const timer = setTimeout(close, LINGER_MS);
  req.on("data", discard);
  req.once("end", close);
  res.once("close", () => clearTimeout(timer));
  req.resume();
}

/** Without a verified bundle: denied, saying why, for as long as the agent has not reached its hub. */
function failedClosed(uid: string): Buffer {
  const answer = {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    response: {
      uid,
      allowed: false,
      status: { code: 503, reason: "ServiceUnavailable", message: "denied by Polity: this cluster's agent holds no verified policy bundle yet (fail-closed until it reaches its hub)" },
    },
  };
  return Buffer.from(JSON.stringify(answer), "utf8");
}

export function startWebhook(options: WebhookOptions): Promise<Server> {
  const { bundle, decisions, counters, latencies, now } = options;

  /** A review that cannot be decided: counted, and refused with a Status saying why. */
  const refuse = (res: ServerResponse, error: unknown) => {
    counters.rejected++;
    if (!(error instanceof PolityError)) throw error;
    const message = error.problems[0]?.message ?? error.message;
    if (error.code === "too-large") return status(res, 413, "RequestEntityTooLarge", message);
    return status(res, 400, "BadRequest", `not an AdmissionReview admission.k8s.io/v1: ${message}`);
  };

  /** One review: decided, counted and logged (or refused), and timed. */
  const decide = (body: Buffer, res: ServerResponse, authenticated: boolean) => {
    const started = process.hrtime.bigint();
    const active = bundle.current;
    const answer = (out: Buffer) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": out.length });
      res.end(out);
      latencies.add(Number(process.hrtime.bigint() - started) / 1000);
    };
    if (active === undefined) {
      let review: AdmissionReview;
      try {
        review = parseReviewBytes(body);
      } catch (error) {
        return refuse(res, error);
      }
      counters.failedClosed++;
      return answer(failedClosed(review.request.uid));
    }
    /** Decides by the bundle held when the review arrived, then counts, logs and answers. */
    const decideWith = (run: () => ReviewDecision) => {
      let decided: ReviewDecision;
      try {
        decided = run();
      } catch (error) {
        return refuse(res, error);
      }
      const { request, decision } = decided;
      const time = now().toISOString();
      const version = active.metadata.version;
      if (decision.allowed) {
        counters.allowed++;
        decisions.allowed((represents) => allowedEntry(request, time, version, represents, authenticated));
      } else {
        counters.denied++;
        decisions.denied(deniedEntry(request, decision, time, version, authenticated));
      }
      answer(decided.response);
    };
    const namespaces = options.namespaces;
    if (namespaces === undefined) return decideWith(() => decideReviewBytes(active.set, body, { now: now().getTime() }));
    let review: AdmissionReview;
    try {
      review = parseReviewBytes(body);
    } catch (error) {
      return refuse(res, error);
    }
    const { request } = review;
    const name = request.namespace;
    // A Namespace is judged by its own labels; a cluster-scoped object has no namespace.
    if (name === undefined || name === "" || (request.kind.kind === "Namespace" && request.kind.group === "")) {
      return decideWith(() => decideReview(active.set, review, { now: now().getTime() }));
    }
    const cached = namespaces.cached(name);
    if (cached !== undefined) return decideWith(() => decideReview(active.set, review, { now: now().getTime(), namespace: () => cached }));
    // Not in the cache: read once, with a short timeout; if still unknown, the policies that
    // need it fail closed, saying why (evaluate.ts).
    const internal = (error: unknown) => {
      if (!res.headersSent) status(res, 500, "InternalError", `internal error: ${error instanceof Error ? error.message : String(error)}`);
    };
    void namespaces.lookup(name).then((found) => {
      const context: ReviewContext = { now: now().getTime(), namespace: () => found.namespace, ...(found.unknown === undefined ? {} : { namespaceUnknown: found.unknown }) };
      try {
        decideWith(() => decideReview(active.set, review, context));
      } catch (error) {
        internal(error);
      }
    }, internal);
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && (path === "/healthz" || path === "/readyz")) {
      // Ready: a bundle to decide by, and the namespaces to decide with (once listed).
      const ready = path === "/healthz" || (bundle.current !== undefined && (options.namespaces === undefined || options.namespaces.synced));
      const body = JSON.stringify(options.health());
      res.writeHead(ready ? 200 : 503, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (path !== "/validate") return status(res, 404, "NotFound", `no such endpoint ${path}: the webhook is POST /validate`);
    if (req.method !== "POST") return status(res, 405, "MethodNotAllowed", "send the AdmissionReview with POST");
    // Authenticated: a client certificate the caller CA issued, verified in the TLS handshake.
    const authenticated = options.callerCaPem !== undefined && (req.socket as TLSSocket).authorized === true;
    if (!authenticated && options.requireAuthenticatedCaller === true) {
      counters.rejected++;
      return status(res, 401, "Unauthorized", "this webhook takes reviews only from a caller with a client certificate of its caller CA (the API server's, see its admission configuration)");
    }
    const declared = Number(req.headers["content-length"] ?? "0");
    if (declared > MAX_REVIEW_BYTES) {
      counters.rejected++;
      tooLarge(req, res, `the AdmissionReview is ${declared} bytes; the limit is ${MAX_REVIEW_BYTES}`);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > MAX_REVIEW_BYTES) {
        over = true;
        chunks.length = 0;
        counters.rejected++;
        tooLarge(req, res, `the AdmissionReview is over the limit of ${MAX_REVIEW_BYTES} bytes`);
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (over) return;
      try {
        decide(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), res, authenticated);
      } catch (error) {
        status(res, 500, "InternalError", `internal error: ${error instanceof Error ? error.message : String(error)}`);
      }
    });
    req.on("error", () => undefined);
  };

  // A caller CA asks every client for a certificate, but does not require one in the
  // handshake: the answer says why a caller is refused, which a broken handshake would not.
  const callers = options.callerCaPem === undefined ? {} : { ca: options.callerCaPem, requestCert: true, rejectUnauthorized: false };
  const server = createServer({ cert: options.certificatePem, key: options.privateKeyPem, minVersion: "TLSv1.2", ...callers }, handle);
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.on("clientError", (_error, socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}
