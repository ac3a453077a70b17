/** `polity token create|list|revoke`: bearer tokens for people and automation. */
import type { TokenCreated, TokenView } from "../../api/tokens.js";
import { stringOption, type Command } from "../command.js";
import { EXIT, UsageError } from "../io.js";
import { age, endpoint, hubCall, HUB_HELP, HUB_OPTIONS, table } from "../hub-access.js";
import { parseDuration } from "../time.js";
import { outputFormat } from "../command.js";

export const tokenCreateCommand: Command = {
  name: "token create",
  summary: "mint a bearer token with a role (global admins only)",
  usage: "polity token create --name <name> --role global-admin|region-operator|auditor [--region <r>] [--ttl 90d]",
  options: { ...HUB_OPTIONS, name: { type: "string" }, role: { type: "string" }, region: { type: "string" }, ttl: { type: "string" } },
  help: `Mints a token. Roles: global-admin (everything), region-operator (its --region's layer and
clusters; reads the global layer), auditor (reads everything, writes nothing). The token is
printed once; the hub stores only its hash.

${HUB_HELP}

Examples:
  polity token create --name eu-ops --role region-operator --region eu-west --ttl 30d
  polity token create --name audit-2026 --role auditor`,
  async run(parsed, io) {
    const name = stringOption(parsed, "name");
    const role = stringOption(parsed, "role");
    if (name === undefined || role === undefined) throw new UsageError("give --name and --role");
    if (!["global-admin", "region-operator", "auditor"].includes(role)) throw new UsageError("--role must be global-admin, region-operator or auditor");
    const region = stringOption(parsed, "region");
    const ttl = parseDuration(stringOption(parsed, "ttl") ?? "90d", "--ttl");
    const r = await hubCall<TokenCreated>(endpoint(parsed, io), "POST", "/v1/tokens", {
      name,
      role,
      ...(region === undefined ? {} : { region }),
      ttlSeconds: Math.round(ttl / 1000),
    });
    if (stringOption(parsed, "output") === "json") io.out(`${JSON.stringify(r)}\n`);
    else {
      io.out(`${r.token}\n`);
      io.err(`token ${r.id} (${role}${region === undefined ? "" : ` of ${region}`}), expires ${r.expiresAt}; it is not shown again\n`);
    }
    return EXIT.ok;
  },
};

export const tokenListCommand: Command = {
  name: "token list",
  summary: "tokens: name, role, expiry (never their values)",
  usage: "polity token list [-o text|json]",
  options: { ...HUB_OPTIONS },
  help: `Lists tokens for global admins and auditors.

${HUB_HELP}

Example:
  polity token list`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const r = await hubCall<{ items: TokenView[] }>(endpoint(parsed, io), "GET", "/v1/tokens");
    if (format === "json") io.out(`${JSON.stringify(r, null, 2)}\n`);
    else
      table(
        io,
        ["ID", "NAME", "ROLE", "REGION", "AGE", "EXPIRES", "STATE"],
        r.items.map((t) => [t.id, t.name, t.role, t.region ?? "", age(t.createdAt), t.expiresAt === null ? "never" : age(t.expiresAt), t.revokedAt !== null ? "revoked" : t.expiresAt !== null && Date.parse(t.expiresAt) < Date.now() ? "expired" : "live"]),
      );
    return EXIT.ok;
  },
};

export const tokenRevokeCommand: Command = {
  name: "token revoke",
  summary: "revoke a token at once, on every hub",
  usage: "polity token revoke <id>",
  options: { ...HUB_OPTIONS },
  help: `Revokes a token by its id (polity token list shows them).

${HUB_HELP}

Example:
  polity token revoke 3f9c0a1b2c4d`,
  async run(parsed, io) {
    const id = parsed.positionals[0];
    if (id === undefined || parsed.positionals.length > 1) throw new UsageError("give one token id");
    await hubCall(endpoint(parsed, io), "DELETE", `/v1/tokens/${encodeURIComponent(id)}`);
    io.out(`token ${id} revoked\n`);
    return EXIT.ok;
  },
};
