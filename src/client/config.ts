/**
 * The command line's connection to hubs, like a kubeconfig: a file of named hubs (URL,
 * federation CA, token) and which one is current. `polity login` writes it, readable by
 * its owner only; `--hub-config` or POLITY_CONFIG points elsewhere.
 */
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { PolityError } from "../errors.js";
import { writeFileAtomic } from "../files/write.js";
import type { HubEndpoint } from "./http.js";

export interface HubEntry {
  readonly url: string;
  readonly ca: string;
  readonly token: string;
  /** The hub's SPIFFE path its certificate must carry (`/region/<r>/hub`); absent: the global hub's, `/hub`. */
  readonly server?: string;
  /**
   * The newest root of trust verified from version 1 (its signed JSON; src/cli/hub-trust.ts):
   * the CAs it lists are trusted for the hub's certificate too (a CA rotation).
   */
  readonly root?: string;
}

/** The SPIFFE path of the global hub (no region) or of region `region`'s hub. */
export function hubServerPath(region?: string): string {
  return region === undefined ? "/hub" : `/region/${region}/hub`;
}

export interface CliConfig {
  readonly current?: string;
  readonly hubs: Readonly<Record<string, HubEntry>>;
}

export function configPath(env: Readonly<Record<string, string | undefined>>, flag?: string): string {
  if (flag !== undefined) return flag;
  if (env.POLITY_CONFIG !== undefined && env.POLITY_CONFIG !== "") return env.POLITY_CONFIG;
  const base = env.XDG_CONFIG_HOME !== undefined && env.XDG_CONFIG_HOME !== "" ? env.XDG_CONFIG_HOME : join(env.HOME ?? homedir(), ".config");
  return join(base, "polity", "config.json");
}

export function readConfig(path: string): CliConfig {
  if (!existsSync(path)) return { hubs: {} };
  try {
    const parsed = JSON.parse(readFileSync(path, "utf8")) as CliConfig;
    if (typeof parsed !== "object" || parsed === null || typeof parsed.hubs !== "object") throw new Error("no hubs");
    return parsed;
  } catch {
    throw PolityError.of("invalid", `${path} is not a polity configuration; run polity login again, or remove it`);
  }
}

export function writeConfig(path: string, config: CliConfig): void {
  writeFileAtomic(path, `${JSON.stringify(config, null, 2)}\n`);
}

/** The hub to talk to: `name`, or the current one. */
export function endpointFrom(config: CliConfig, path: string, name?: string): HubEndpoint & { name: string } {
  const key = name ?? config.current;
  if (key === undefined || config.hubs[key] === undefined) {
    const known = Object.keys(config.hubs);
    throw PolityError.of(
      "invalid",
      key === undefined
        ? `not logged in to a hub (${path}): run polity login --hub <url> --ca <ca.pem> --token-file <file>`
        : `no hub named ${JSON.stringify(key)} in ${path}${known.length === 0 ? "" : ` (known: ${known.join(", ")})`}`,
    );
  }
  const entry = config.hubs[key]!;
  return { name: key, url: entry.url, caPem: entry.ca, token: entry.token, serverIds: [entry.server ?? hubServerPath()] };
}
