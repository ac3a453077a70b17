/**
 * How the command line keeps reaching a hub across a CA rotation. `polity login` pins the
 * CA it was given and the federation's roots (version 1 checked against its own root keys,
 * every later one against its predecessor), saving the newest in the configuration. A hub
 * certificate is then trusted when it chains to the pinned CA or to a CA that root lists
 * (src/identity/trust-bundle.ts). When the hub's certificate is refused (it moved to a CA
 * rotated in since), the CLI fetches the roots after the one it holds, verifies each, and
 * tries again: roots carry their own proof, so they are fetched without trusting the
 * server, and nothing is sent with them (no token).
 */
import { request } from "node:https";
import { call, UnreachableError, type HubEndpoint } from "../client/http.js";
import { MAX_ROOT_BYTES, parseRootEnvelope, verifyRootSelf, verifyRootUpdate, encodeRoot, type RootMetadata } from "../trust/index.js";

const PAGES = 100;

/** The newest root, from version 1, through the endpoint as verified by its CA (at login); its envelope's JSON. */
export async function pinRoots(ep: HubEndpoint): Promise<string> {
  let held: RootMetadata | undefined;
  let newest = "";
  for (let page = 0; page < PAGES; page++) {
    const items = (await call<{ items?: unknown }>({ url: ep.url, caPem: ep.caPem, ...(ep.serverIds === undefined ? {} : { serverIds: ep.serverIds }) }, "GET", `/v1/trust/roots?after=${held?.version ?? 0}`, undefined, { maxBytes: 50 * MAX_ROOT_BYTES })).body.items;
    if (!Array.isArray(items) || items.length === 0) break;
    for (const raw of items) {
      const envelope = parseRootEnvelope(raw);
      if (held === undefined && envelope.signed.version !== 1) throw new Error(`the hub's first root is version ${envelope.signed.version}, not 1`);
      held = held === undefined ? verifyRootSelf(envelope) : verifyRootUpdate(held, envelope);
      newest = encodeRoot(envelope);
    }
  }
  if (held === undefined) throw new Error("the hub serves no root of trust");
  return newest;
}

/** The root a configuration holds (undefined: none, or one that no longer parses and verifies). */
export function heldRoot(rootJson: string | undefined): RootMetadata | undefined {
  if (rootJson === undefined) return undefined;
  try {
    return verifyRootSelf(parseRootEnvelope(rootJson));
  } catch {
    return undefined;
  }
}

/** Whether a failure is the hub's certificate refused by the CAs trusted (the one thing a newer root can cure). */
export function certificateRefused(error: unknown): boolean {
  return error instanceof UnreachableError && /certificate|CERT_|self[- ]signed|unable to verify/i.test(error.message);
}

/**
 * The roots after `rootJson`'s, verified one by one from it; the newest one's envelope
 * (JSON), or undefined when there is none newer. Fetched without trusting the server.
 */
export async function followRoots(url: string, rootJson: string): Promise<string | undefined> {
  let held = verifyRootSelf(parseRootEnvelope(rootJson));
  let newest: string | undefined;
  for (let page = 0; page < PAGES; page++) {
    const items = await unverifiedRoots(url, held.version);
    if (items.length === 0) break;
    for (const raw of items) {
      const envelope = parseRootEnvelope(raw);
      held = verifyRootUpdate(held, envelope);
      newest = encodeRoot(envelope);
    }
  }
  return newest;
}

/** `GET /v1/trust/roots?after=N` without checking the server's certificate: public, self-verifying, nothing sent. */
function unverifiedRoots(url: string, after: number): Promise<unknown[]> {
  const limit = 50 * MAX_ROOT_BYTES;
  return new Promise((resolve, reject) => {
    const req = request(new URL(`/v1/trust/roots?after=${after}`, url), { method: "GET", rejectUnauthorized: false, agent: false, timeout: 15_000, headers: { accept: "application/json" } }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > limit) req.destroy(new Error(`the roots are larger than ${limit} bytes`));
        else chunks.push(chunk);
      });
      res.on("error", reject);
      res.on("end", () => {
        try {
          if (res.statusCode !== 200) throw new Error(`the hub answered HTTP ${res.statusCode ?? 0} for its roots`);
          const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { items?: unknown };
          resolve(Array.isArray(body.items) ? body.items : []);
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error("no answer within 15 s")));
    req.on("error", (error) => reject(new UnreachableError(`cannot fetch the hub's roots at ${new URL(url).origin}: ${error.message}`)));
    req.end();
  });
}
