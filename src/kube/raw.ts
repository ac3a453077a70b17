/**
 * Plain JSON requests to the API server, authenticated and verified as the official
 * client's KubeConfig says (`applyToHTTPSOptions`: CA, client certificate or bearer token),
 * for what the typed APIs would change: a background scan judges objects exactly as the API
 * server sends them (the typed models turn times into Dates and drop fields they do not
 * know), and writes policy reports of API groups the client has no models for.
 *
 * Answers are bounded (MAX_ANSWER_BYTES) and every failure is a KubeRequestError with the
 * status and the Status message, never a header or a credential.
 */
import { request } from "node:https";
import type { KubeConfig } from "@kubernetes/client-node";

/** The largest answer read: a page of 500 objects of the largest size etcd keeps (1.5 MiB) would not fit, but real pages do. */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

export class KubeRequestError extends Error {
  constructor(
    readonly code: number,
    message: string,
    /** Retry-After in milliseconds, when the server sent one. */
    readonly retryAfterMs?: number,
    /** The Status's `details` (a 409 apply conflict names its fields there), when it sent one. */
    readonly details?: unknown,
  ) {
    super(message);
  }

  /** The informer reads a failure's status here (informer.ts statusOf). */
  get statusCode(): number {
    return this.code;
  }
}

export interface RawRequest {
  readonly method: "GET" | "PATCH" | "DELETE" | "POST" | "PUT";
  /** Path and query: `/api/v1/pods?limit=500`. */
  readonly path: string;
  readonly body?: unknown;
  readonly contentType?: string;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

/** One request; resolves with the parsed JSON answer of a 2xx, rejects with KubeRequestError otherwise. */
export async function kubeRequest(config: KubeConfig, req: RawRequest): Promise<unknown> {
  const cluster = config.getCurrentCluster();
  if (cluster === null) throw new KubeRequestError(0, "no current cluster in the Kubernetes configuration");
  const url = new URL(req.path, cluster.server);
  const options: Parameters<KubeConfig["applyToHTTPSOptions"]>[0] & { headers: Record<string, string> } = {
    method: req.method,
    headers: { accept: "application/json" },
  };
  await config.applyToHTTPSOptions(options);
  const payload = req.body === undefined ? undefined : Buffer.from(JSON.stringify(req.body));
  if (payload !== undefined) {
    options.headers["content-type"] = req.contentType ?? "application/json";
    options.headers["content-length"] = String(payload.length);
  }
  return new Promise((resolve, reject) => {
    const call = request(url, { ...(options as object), signal: req.signal, timeout: req.timeoutMs ?? 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) {
          res.destroy();
          reject(new KubeRequestError(res.statusCode ?? 0, `${req.method} ${url.pathname}: the answer is larger than ${MAX_ANSWER_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on("error", (error) => reject(new KubeRequestError(0, `${req.method} ${url.pathname}: ${error.message}`)));
      res.on("end", () => {
        if (size > MAX_ANSWER_BYTES) return;
        const text = Buffer.concat(chunks).toString("utf8");
        const code = res.statusCode ?? 0;
        let body: unknown;
        try {
          body = text === "" ? undefined : JSON.parse(text);
        } catch {
          body = undefined;
          if (code >= 200 && code < 300) return reject(new KubeRequestError(code, `${req.method} ${url.pathname}: the answer is not JSON`));
        }
        if (code >= 200 && code < 300) return resolve(body);
        const message = typeof (body as { message?: unknown } | undefined)?.message === "string" ? (body as { message: string }).message.slice(0, 300) : `HTTP ${code}`;
        const retry = res.headers["retry-after"];
        const seconds = typeof retry === "string" && /^\d+$/.test(retry.trim()) ? Math.min(Number(retry) * 1000, 60_000) : undefined;
        const details = (body as { details?: unknown } | undefined)?.details;
        reject(new KubeRequestError(code, `${req.method} ${url.pathname}: ${code} ${message}`, seconds, typeof details === "object" && details !== null ? details : undefined));
      });
    });
    call.on("timeout", () => call.destroy(new Error(`no answer within ${req.timeoutMs ?? 30_000} ms`)));
    call.on("error", (error) => reject(error instanceof KubeRequestError ? error : new KubeRequestError(0, `${req.method} ${url.pathname}: ${error.message}`)));
    call.end(payload);
  });
}
