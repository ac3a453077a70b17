/** `polity hub` (run a hub) and `polity login` (connect the command line to one). */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { configPath, hubServerPath, readConfig, writeConfig } from "../../client/config.js";
import { redactUrl } from "../../store/database.js";
import { writeFileAtomic } from "../../files/write.js";
import { ZONE } from "../../api/residency.js";
import { DEFAULT_CERTIFICATE_TTL_MS, DEFAULT_GRACE_MS, startHub } from "../../hub/index.js";
import { parseListen, stringOption, stringsOption, type Command } from "../command.js";
import { colors, EXIT, UsageError, type Io } from "../io.js";
import { parseDuration } from "../time.js";
import { hubCall } from "../hub-access.js";
import { pinRoots } from "../hub-trust.js";

/**
 * The operator's key, which seals the CA's private key: --key-file, or POLITY_HUB_KEY. On
 * the embedded store with neither, one is made in the data folder (fine for trying Polity;
 * in production keep it apart from the data, in a secret store).
 */
function operatorKey(keyFile: string | undefined, dataDir: string, io: Io, embedded: boolean): string {
  if (keyFile !== undefined) {
    if (!existsSync(keyFile)) throw new UsageError(`--key-file ${keyFile}: no such file`);
    const mode = statSync(keyFile).mode & 0o077;
    if (mode !== 0) io.err(`warning: ${keyFile} can be read by others (mode ${(statSync(keyFile).mode & 0o777).toString(8)}); chmod 600 it\n`);
    const key = readFileSync(keyFile, "utf8").trim();
    if (key.length < 16) throw new UsageError(`--key-file ${keyFile}: the key must be at least 16 characters`);
    return key;
  }
  const fromEnv = io.env.POLITY_HUB_KEY;
  if (fromEnv !== undefined && fromEnv !== "") {
    if (fromEnv.length < 16) throw new UsageError("POLITY_HUB_KEY must be at least 16 characters");
    return fromEnv;
  }
  if (!embedded) throw new UsageError("a hub on PostgreSQL needs the operator key that seals its CA: --key-file <file> or POLITY_HUB_KEY");
  const path = join(dataDir, "operator.key");
  if (!existsSync(path)) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileAtomic(path, `${randomBytes(32).toString("base64url")}\n`);
    io.err(`warning: no operator key given (--key-file or POLITY_HUB_KEY); made one in ${path}. Keep production keys apart from the data.\n`);
  }
  return readFileSync(path, "utf8").trim();
}

export const hubCommand: Command = {
  name: "hub",
  summary: "run a hub: the federation's layers, clusters and identity, over HTTPS",
  usage: "polity hub [--data <dir>] [--database <postgres://…>] [--listen host:port] [--key-file <file>] [--zone <z>] [--region <r> --parent <url> [--parent-ca <file> --region-token <token>]]",
  options: {
    data: { type: "string" },
    database: { type: "string" },
    listen: { type: "string" },
    federation: { type: "string" },
    "key-file": { type: "string" },
    hostname: { type: "string", multiple: true },
    "certificate-ttl": { type: "string" },
    grace: { type: "string" },
    region: { type: "string" },
    parent: { type: "string" },
    "parent-ca": { type: "string" },
    "region-token": { type: "string" },
    "rotate-every": { type: "string" },
    "key-overlap": { type: "string" },
    zone: { type: "string" },
    quiet: { type: "boolean", short: "q" },
  },
  help: `Runs a hub. State lives in PostgreSQL: by default embedded (PGlite) in the data folder,
nothing to install; with --database (or DATABASE_URL) a PostgreSQL server, which any number
of hub processes may share. At the first start the hub creates the federation: its CA
(ECDSA P-256, private key sealed under the operator key) and a bootstrap admin token,
written to <data>/admin.token, readable by its owner only.

Flags:
      --data <dir>            data folder (default .polity/hub): embedded database, ca.pem, admin.token
      --database <url>        postgres://user@host:port/db (default: $DATABASE_URL, else embedded)
      --listen <host:port>    where to serve HTTPS (default 127.0.0.1:8443; port 0 picks one)
      --federation <name>     the federation's name, at the first start (default polity)
      --key-file <file>       the operator key that seals the CA key (default: $POLITY_HUB_KEY;
                              on the embedded store, one is made in the data folder)
      --hostname <name>       another DNS name for the hub's certificate (repeatable)
      --certificate-ttl <d>   lifetime of cluster certificates (default 24h)
      --grace <d>             how long after expiry a certificate can still be renewed (default 7d)
      --rotate-every <d>      rotate the root, bundles and audit-log keys and the federation CA when
                              the active one is this old, e.g. 30d (default: off; polity keys rotate
                              does it by hand; the CA not in a federation with regional hubs)
      --key-overlap <d>       how long a rotated-out key or CA stays in the root at most (default 48h;
                              it leaves sooner once every agent acknowledged a bundle under its successor,
                              and for a CA holds a certificate of the new one)
      --zone <z>              the zone this hub runs in (default: global; a regional hub's, its
                              region's name). A region whose residency does not allow it has its
                              clusters' decision logs, status and drift refused here
                              (polity region residency, polity get residency)
  -q, --quiet                 no request log

Regional hub (see the README's "Regional hubs"):
      --region <r>            run as the hub of region <r>, with a database of its own
      --parent <url>          its parent (the global hub); the link pulls the global layer and
                              the region's clusters, and sends summaries up
      --parent-ca <file>      the federation CA, to reach the parent (first start only)
      --region-token <token>  a one-time token from 'polity region token <r>' on the parent
                              (first start only; also $POLITY_REGION_TOKEN)

Examples:
  polity hub
  polity hub --region eu-west --parent https://127.0.0.1:8443 --parent-ca .polity/hub/ca.pem --region-token "$TOKEN" --data .polity/eu-west --listen 127.0.0.1:8444
  polity hub --database postgres://polity@db.internal/polity --key-file /run/secrets/polity-key --listen 0.0.0.0:8443

Stops cleanly on Ctrl-C (SIGINT) or SIGTERM. Exit status: 0 after a clean stop, 2 if it cannot start.`,
  async run(parsed, io) {
    const dataDir = resolve(stringOption(parsed, "data") ?? ".polity/hub");
    const databaseUrl = stringOption(parsed, "database") ?? (io.env.DATABASE_URL === "" ? undefined : io.env.DATABASE_URL);
    const { host, port } = parseListen(stringOption(parsed, "listen") ?? "127.0.0.1:8443");
    const ttl = parseDuration(stringOption(parsed, "certificate-ttl") ?? `${DEFAULT_CERTIFICATE_TTL_MS / 3_600_000}h`, "--certificate-ttl");
    const grace = parseDuration(stringOption(parsed, "grace") ?? `${DEFAULT_GRACE_MS / 86_400_000}d`, "--grace");
    const rotateEvery = stringOption(parsed, "rotate-every");
    const rotateEveryMs = rotateEvery === undefined ? undefined : parseDuration(rotateEvery, "--rotate-every");
    const overlap = stringOption(parsed, "key-overlap");
    const zone = stringOption(parsed, "zone");
    if (zone !== undefined && (!ZONE.test(zone) || zone.length > 63)) throw new UsageError(`--zone ${zone}: not a zone name (lowercase letters, digits and '-', e.g. eu-central-1)`);
    const key = operatorKey(stringOption(parsed, "key-file"), dataDir, io, databaseUrl === undefined);
    const region = stringOption(parsed, "region");
    const parent = stringOption(parsed, "parent");
    if ((region === undefined) !== (parent === undefined)) throw new UsageError("a regional hub needs both --region <r> and --parent <url>");
    if (parent !== undefined && !/^https:\/\//.test(parent)) throw new UsageError("--parent must be an https:// URL");
    const parentCa = stringOption(parsed, "parent-ca");
    if (parentCa !== undefined && !existsSync(parentCa)) throw new UsageError(`--parent-ca ${parentCa}: no such file`);
    const regionToken = stringOption(parsed, "region-token") ?? (io.env.POLITY_REGION_TOKEN === "" ? undefined : io.env.POLITY_REGION_TOKEN);
    const c = colors(io);
    io.err(`starting the hub (${databaseUrl === undefined ? `embedded PostgreSQL in ${dataDir}/db` : redactUrl(databaseUrl)})…\n`);
    const hub = await startHub({
      dataDir,
      ...(databaseUrl === undefined ? {} : { databaseUrl }),
      host,
      port,
      federation: stringOption(parsed, "federation") ?? "polity",
      operatorKey: key,
      hostnames: stringsOption(parsed, "hostname"),
      certificateTtlMs: ttl,
      graceMs: grace,
      ...(rotateEveryMs === undefined ? {} : { rotateEveryMs }),
      ...(overlap === undefined ? {} : { trust: { overlapMs: parseDuration(overlap, "--key-overlap") } }),
      log: parsed.values.quiet !== true,
      ...(zone === undefined ? {} : { zone }),
      ...(region === undefined || parent === undefined
        ? {}
        : {
            regional: {
              region,
              parentUrl: parent.replace(/\/$/, ""),
              ...(parentCa === undefined ? {} : { parentCaPem: readFileSync(parentCa, "utf8") }),
              ...(regionToken === undefined ? {} : { token: regionToken.trim() }),
            },
          }),
    });
    io.out(`${c.bold(region === undefined ? "hub" : `regional hub of ${region}`)} of federation ${hub.federation} listening on ${hub.url}${parent === undefined ? "" : ` (parent ${parent})`}\n`);
    io.out(`  zone             ${hub.context.residency.zone}\n`);
    io.out(`  CA certificate   ${hub.caFile}\n`);
    if (hub.adminTokenFile !== undefined) io.out(`  admin token      ${hub.adminTokenFile} (bootstrap; mint others with polity token create)\n`);
    io.out(`  log in with      polity login --hub ${hub.url} --ca ${hub.caFile} --token-file ${hub.adminTokenFile ?? "<token file>"}\n`);
    await new Promise<void>((done) => {
      const stop = () => {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        done();
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
    io.err("stopping the hub…\n");
    await hub.close();
    return EXIT.ok;
  },
};

export const loginCommand: Command = {
  name: "login",
  summary: "connect the command line to a hub (writes the configuration file)",
  usage: "polity login --hub <url> --ca <ca.pem> (--token-file <file> | --token-env <VAR>) [--region <r>] [--name <name>]",
  options: {
    hub: { type: "string" },
    region: { type: "string" },
    ca: { type: "string" },
    "token-file": { type: "string" },
    "token-env": { type: "string" },
    name: { type: "string" },
    config: { type: "string" },
  },
  help: `Checks the token against the hub (trusting only the given CA for the hub's certificate),
then records the hub in the configuration file, readable by its owner only, and makes it
the current one. Later commands (apply, get, cluster, token, …) use it. The federation's
roots of trust are verified from version 1 and the newest kept with it, so that after a CA
rotation the CLI trusts the new CA (it fetches and verifies newer roots when the hub's
certificate is refused).

Flags:
      --hub <url>           the hub, e.g. https://127.0.0.1:8443
      --ca <file>           the federation CA certificate (the hub writes it to <data>/ca.pem)
      --token-file <file>   a file holding the bearer token (e.g. <data>/admin.token)
      --token-env <VAR>     or an environment variable holding it
      --region <r>          the hub is region <r>'s hub (default: the global hub); its certificate
                            must carry that hub's SPIFFE ID, or nothing is sent to it, the token least
      --name <name>         the name to record the hub under (default: default)
      --config <file>       the configuration file (default: $POLITY_CONFIG, or ~/.config/polity/config.json)

Example:
  polity login --hub https://127.0.0.1:8443 --ca .polity/hub/ca.pem --token-file .polity/hub/admin.token

Exit status: 0 when logged in, 2 when the hub refuses the token or cannot be reached.`,
  async run(parsed, io) {
    const url = stringOption(parsed, "hub");
    const caFile = stringOption(parsed, "ca");
    if (url === undefined || caFile === undefined) throw new UsageError("give --hub <url> and --ca <ca.pem>");
    if (!/^https:\/\//.test(url)) throw new UsageError("--hub must be an https:// URL");
    if (!existsSync(caFile)) throw new UsageError(`--ca ${caFile}: no such file`);
    const tokenFile = stringOption(parsed, "token-file");
    const tokenEnv = stringOption(parsed, "token-env");
    if ((tokenFile === undefined) === (tokenEnv === undefined)) throw new UsageError("give one of --token-file <file> or --token-env <VAR>");
    const token = tokenFile !== undefined ? readFileSync(tokenFile, "utf8").trim() : (io.env[tokenEnv!] ?? "").trim();
    if (token === "") throw new UsageError(tokenFile !== undefined ? `${tokenFile} is empty` : `$${tokenEnv} is empty`);
    const ca = readFileSync(caFile, "utf8");
    const region = stringOption(parsed, "region");
    if (region !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(region)) throw new UsageError(`--region ${region}: not a region name`);
    const server = hubServerPath(region);
    const ep = { url: url.replace(/\/$/, ""), caPem: ca, token, serverIds: [server] };
    const who = await hubCall<{ description: string }>(ep, "GET", "/v1/whoami");
    // The roots, from version 1, so that a CA rotation later finds the CLI trusting the new CA (src/cli/hub-trust.ts).
    let root: string;
    try {
      root = await pinRoots(ep);
    } catch (error) {
      throw new UsageError(`the hub's root of trust does not verify: ${error instanceof Error ? error.message : String(error)}`);
    }
    const path = configPath(io.env, stringOption(parsed, "config"));
    const config = readConfig(path);
    const name = stringOption(parsed, "name") ?? "default";
    writeConfig(path, { current: name, hubs: { ...config.hubs, [name]: { url: url.replace(/\/$/, ""), ca, token, root, ...(region === undefined ? {} : { server }) } } });
    io.out(`logged in to ${url} as ${who.description}; saved as ${JSON.stringify(name)} in ${path}\n`);
    return EXIT.ok;
  },
};

