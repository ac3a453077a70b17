/**
 * How hub commands reach a hub: the configuration `polity login` wrote, `--hub <name>` to
 * pick one, and errors from the hub shown like every other error (with its causes, each
 * with a file:line:column when the hub names one).
 */
import { endpointFrom, configPath, readConfig, writeConfig } from "../client/config.js";
import { serverTrust } from "../identity/trust-bundle.js";
import { certificateRefused, followRoots, heldRoot } from "./hub-trust.js";
import { randomUUID } from "node:crypto";
import { call, HubError, ResponseTooLargeError, UnreachableError, type HubEndpoint, type RequestOptions } from "../client/http.js";
import { PolityError } from "../errors.js";
import { stringOption, type Options, type Parsed } from "./command.js";
import type { Io } from "./io.js";

export const HUB_OPTIONS: Options = {
  hub: { type: "string" },
  config: { type: "string" },
  output: { type: "string", short: "o" },
};

export const HUB_HELP = `Hub connection:
      --hub <name>       a hub of the configuration other than the current one
      --config <file>    the configuration file (default: $POLITY_CONFIG, or ~/.config/polity/config.json)
  -o, --output text|json`;

/** How to trust a hub again after its certificate was refused (src/cli/hub-trust.ts), by endpoint. */
const refreshers = new WeakMap<HubEndpoint, () => Promise<HubEndpoint | undefined>>();

/**
 * The hub of the configuration, trusted through the CA pinned at login and those of the
 * newest root the configuration holds; that root is brought up to date (and saved) when the
 * hub's certificate is refused, then the call is made once more.
 */
export function endpoint(parsed: Parsed, io: Io): HubEndpoint {
  const path = configPath(io.env, stringOption(parsed, "config"));
  const config = readConfig(path);
  const found = endpointFrom(config, path, stringOption(parsed, "hub"));
  const entry = config.hubs[found.name]!;
  const rootJson = entry.root;
  if (rootJson === undefined) return found;
  const trusted: HubEndpoint = { ...found, caPem: serverTrust(entry.ca, heldRoot(rootJson)) };
  refreshers.set(trusted, async () => {
    const newer = await followRoots(found.url, rootJson);
    if (newer === undefined) return undefined;
    const now = readConfig(path);
    const current = now.hubs[found.name];
    if (current !== undefined) writeConfig(path, { ...now, hubs: { ...now.hubs, [found.name]: { ...current, root: newer } } });
    return { ...found, caPem: serverTrust(entry.ca, heldRoot(newer)) };
  });
  return trusted;
}

/** `work` with the endpoint, and once more with a newer root's CAs if the hub's certificate was refused. */
async function withTrust<T>(ep: HubEndpoint, work: (ep: HubEndpoint) => Promise<T>): Promise<T> {
  try {
    return await work(ep);
  } catch (error) {
    const refresh = refreshers.get(ep);
    if (refresh === undefined || !certificateRefused(error)) throw error;
    const renewed = await refresh().catch(() => undefined);
    if (renewed === undefined) throw error;
    return work(renewed);
  }
}

/** A call whose failure becomes a PolityError for the CLI to print. */
export async function hubCall<T>(ep: HubEndpoint, method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
  try {
    return (await withTrust(ep, (e) => call<T>(e, method, path, body, options))).body;
  } catch (error) {
    throw asCliError(error);
  }
}

/**
 * A change sent with an Idempotency-Key, and sent again with the same key when the hub
 * could not be reached or its answer was lost: the hub commits it once, and answers a
 * repeat with what it committed, so the CLI always knows whether its change went through.
 */
export async function changeCall<T>(ep: HubEndpoint, path: string, body: unknown, io: Io, attempts = 3): Promise<T> {
  const headers = { "idempotency-key": randomUUID() };
  for (let attempt = 1; ; attempt++) {
    try {
      return (await withTrust(ep, (e) => call<T>(e, "POST", path, body, { headers }))).body;
    } catch (error) {
      if (!(error instanceof UnreachableError) || attempt >= attempts) {
        if (error instanceof UnreachableError && attempt > 1) {
          throw PolityError.of("not-found", `${error.message}; whether the change was committed is not known: 'polity history' shows the layers' versions, and sending the same files again changes nothing if it was`);
        }
        throw asCliError(error);
      }
      io.err(`warning: ${error.message}; sending the change again (attempt ${attempt + 1} of ${attempts}, same Idempotency-Key)\n`);
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
  }
}

/** A hub's refusal or an unreachable hub, as the error family the CLI prints; anything else as it is. */
export function asCliError(error: unknown): unknown {
  if (error instanceof HubError) {
    const problems = [
      { message: `${error.message} (${error.status} ${error.reason})` },
      ...error.causes.map((c) => ({ message: c.message, ...(c.field === undefined ? {} : { path: c.field }), ...(c.location === undefined ? {} : { location: parseLocation(c.location) }) })),
    ];
    return new PolityError(error.status === 409 ? "merge-refused" : "invalid", problems);
  }
  if (error instanceof UnreachableError) return PolityError.of("not-found", error.message);
  if (error instanceof ResponseTooLargeError) return PolityError.of("too-large", error.message);
  return error;
}

function parseLocation(text: string) {
  const m = /^(.*):(\d+):(\d+)$/.exec(text);
  return m === null ? { file: text, line: 0, column: 0 } : { file: m[1]!, line: Number(m[2]), column: Number(m[3]) };
}

/** Prints rows as an aligned table, kubectl style. */
export function table(io: Io, header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("   ");
  io.out(`${line(header)}\n`);
  for (const row of rows) io.out(`${line(row)}\n`);
}

export function age(iso: string | null | undefined, now = Date.now()): string {
  if (iso === null || iso === undefined) return "-";
  const s = Math.round((now - Date.parse(iso)) / 1000);
  const future = s < 0;
  const a = Math.abs(s);
  const text = a < 120 ? `${a}s` : a < 7200 ? `${Math.round(a / 60)}m` : a < 172_800 ? `${Math.round(a / 3600)}h` : `${Math.round(a / 86_400)}d`;
  return future ? `in ${text}` : text;
}
