/**
 * The one HTTP client of Polity: JSON over HTTPS to a hub, trusting only the federation's
 * CA, authenticating with a bearer token (people, automation) or a client certificate
 * (agents). Connections are kept alive. A hub's error (a Kubernetes-style Status) becomes
 * a HubError with the status code, reason, message and field causes.
 */
import { Agent, request as httpsRequest } from "node:https";
import { gunzipSync } from "node:zlib";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import type { Status, StatusCause } from "../api/status.js";
import { PolityError } from "../errors.js";

export type { Status };

export interface HubEndpoint {
  /** `https://host:port` */
  readonly url: string;
  /** The federation CA, PEM: the only CA trusted for the hub's certificate. */
  readonly caPem: string;
  readonly token?: string;
  readonly clientCertificatePem?: string;
  readonly clientKeyPem?: string;
  /**
   * The SPIFFE paths the hub's certificate must carry one of, as a URI SAN
   * (`spiffe://<federation><path>`): `/hub` for the global hub, `/region/<r>/hub` for a
   * region's. The CA alone does not say which hub this is: every regional hub's
   * certificate comes from the same federation CA. Absent: CA and hostname only.
   */
  readonly serverIds?: readonly string[];
}

/** Node's hostname check, then the hub's SPIFFE ID against `expected`. */
export function hubIdentityCheck(expected: readonly string[]): (host: string, cert: PeerCertificate) => Error | undefined {
  return (host, cert) => {
    const hostError = checkServerIdentity(host, cert);
    if (hostError !== undefined) return hostError;
    const uris = (cert.subjectaltname ?? "")
      .split(", ")
      .filter((name) => name.startsWith("URI:"))
      .map((name) => name.slice(4));
    const found = uris.find((uri) => expected.some((path) => /^spiffe:\/\/[a-z0-9.-]+(\/.*)$/.exec(uri)?.[1] === path));
    if (found === undefined) return new Error(`the server's certificate (${uris.join(", ") || "no SPIFFE ID"}) is not the hub expected here (${expected.join(" or ")})`);
    return undefined;
  };
}


export class HubError extends Error {
  override readonly name = "HubError";
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly causes: readonly StatusCause[] = [],
  ) {
    super(message);
  }
}

/** The hub could not be reached (refused, reset, timed out, TLS failure). */
export class UnreachableError extends Error {
  override readonly name = "UnreachableError";
}

const agents = new Map<string, Agent>();

function agentFor(endpoint: HubEndpoint): Agent {
  const key = `${endpoint.url}\n${endpoint.caPem}\n${endpoint.clientCertificatePem ?? ""}\n${endpoint.serverIds?.join(",") ?? ""}`;
  let agent = agents.get(key);
  if (agent === undefined) {
    agent = new Agent({
      keepAlive: true,
      maxSockets: 16,
      ca: endpoint.caPem,
      ...(endpoint.serverIds === undefined ? {} : { checkServerIdentity: hubIdentityCheck(endpoint.serverIds) }),
      ...(endpoint.clientCertificatePem === undefined ? {} : { cert: endpoint.clientCertificatePem, key: endpoint.clientKeyPem }),
    });
    agents.set(key, agent);
  }
  return agent;
}

/** Closes kept-alive connections (for processes that are about to exit, and tests). */
export function closeConnections(): void {
  for (const agent of agents.values()) agent.destroy();
  agents.clear();
}

/** The largest answer read by default (a bundle's own bound is MAX_BUNDLE_BYTES). */
export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/** The hub's answer is larger than the caller reads: refused, and its connection closed, before it fills memory. */
export class ResponseTooLargeError extends Error {
  override readonly name = "ResponseTooLargeError";
}

export interface RequestOptions {
  /** Refuse an answer larger than this many bytes (default MAX_RESPONSE_BYTES). */
  readonly maxBytes?: number;
  readonly timeoutMs?: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** Abort the request (long polls). */
  readonly signal?: AbortSignal;
  /** Return the raw body (text) instead of parsing JSON. */
  readonly raw?: boolean;
  /** With raw: return the body as bytes (a Buffer). */
  readonly binary?: boolean;
}

export interface Response<T> {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: T;
}

export async function call<T>(
  endpoint: HubEndpoint,
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
  path: string,
  body?: unknown,
  options: RequestOptions = {},
): Promise<Response<T>> {
  const url = new URL(path, endpoint.url);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), "utf8");
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method,
        agent: agentFor(endpoint),
        headers: {
          accept: "application/json",
          ...(payload === undefined ? {} : { "content-type": "application/json", "content-length": String(payload.length) }),
          ...(endpoint.token === undefined ? {} : { authorization: `Bearer ${endpoint.token}` }),
          // Bytes (a bundle) may come compressed: decompressed below, within the same limit.
          ...(options.binary === true ? { "accept-encoding": "gzip" } : {}),
          ...options.headers,
        },
        timeout: options.timeoutMs ?? 30_000,
        signal: options.signal,
      },
      (res) => {
        const chunks: Buffer[] = [];
        const limit = options.maxBytes ?? MAX_RESPONSE_BYTES;
        let size = 0;
        const tooLarge = (what: string) => {
          res.destroy();
          req.destroy();
          reject(new ResponseTooLargeError(`${method} ${url.pathname}: the answer ${what}; at most ${limit} bytes are read`));
        };
        const declared = Number(res.headers["content-length"] ?? "0");
        if (declared > limit) return tooLarge(`is ${declared} bytes`);
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > limit) tooLarge(`is over ${limit} bytes`);
          else chunks.push(chunk);
        });
        res.on("error", (error) => reject(new UnreachableError(`${url.origin}: ${error.message}`)));
        res.on("end", () => {
          const bytes = Buffer.concat(chunks);
          const status = res.statusCode ?? 0;
          // Errors are JSON Status objects, never compressed.
          const text = options.binary === true && options.raw === true && status < 400 ? "" : bytes.toString("utf8");
          if (status >= 400) {
            let parsed: Partial<Status> | undefined;
            try {
              parsed = JSON.parse(text) as Partial<Status>;
            } catch {
              parsed = undefined;
            }
            reject(
              new HubError(
                status,
                parsed?.reason ?? "Unknown",
                parsed?.message ?? `${method} ${url.pathname}: HTTP ${status}${text === "" ? "" : `: ${text.slice(0, 200)}`}`,
                parsed?.details?.causes ?? [],
              ),
            );
            return;
          }
          if (options.raw === true && options.binary === true) {
            const encoding = res.headers["content-encoding"];
            if (encoding === undefined || encoding === "identity") {
              resolve({ status, headers: res.headers, body: bytes as T });
              return;
            }
            if (encoding !== "gzip") {
              reject(new HubError(status, "BadResponse", `${method} ${url.pathname}: the answer is encoded as ${encoding}, which was not asked for`));
              return;
            }
            try {
              resolve({ status, headers: res.headers, body: gunzipSync(bytes, { maxOutputLength: limit }) as T });
            } catch (error) {
              if (error instanceof RangeError) reject(new ResponseTooLargeError(`${method} ${url.pathname}: the answer decompresses to over ${limit} bytes; at most ${limit} bytes are read`));
              else reject(new HubError(status, "BadResponse", `${method} ${url.pathname}: the answer is not valid gzip`));
            }
            return;
          }
          if (options.raw === true) {
            resolve({ status, headers: res.headers, body: text as T });
            return;
          }
          try {
            resolve({ status, headers: res.headers, body: (text === "" ? undefined : JSON.parse(text)) as T });
          } catch {
            reject(new HubError(status, "BadResponse", `${method} ${url.pathname}: the hub's answer is not JSON`));
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${(options.timeoutMs ?? 30_000) / 1000} s`)));
    req.on("error", (error: NodeJS.ErrnoException) => {
      // Settled already when the answer was refused as too large (rejecting again is a no-op).
      if (error.name === "AbortError") reject(error);
      else reject(new UnreachableError(`cannot reach the hub at ${url.origin}: ${error.code ?? ""} ${error.message}`.replace(/\s+/g, " ").trim()));
    });
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/** A HubError as the Polity error family, for the CLI to print. */
export function asPolityError(error: HubError): PolityError {
  const problems = error.causes.length > 0 ? error.causes.map((c) => ({ message: c.location === undefined ? c.message : `${c.location}: ${c.message}`, path: c.field })) : [];
  return new PolityError(error.status === 413 ? "too-large" : "invalid", [{ message: `${error.message} (HTTP ${error.status} ${error.reason})` }, ...problems]);
}
