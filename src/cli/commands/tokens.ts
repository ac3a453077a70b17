/** `polity token create|list|revoke`: bearer tokens for people and automation. */
import { ROLES, type TokenCreated, type TokenView } from "../../api/tokens.js";
import { stringOption, type Command } from "../command.js";
import { EXIT, UsageError } from "../io.js";
import { age, endpoint, hubCall, HUB_HELP, HUB_OPTIONS, table } from "../hub-access.js";
import { parseDuration } from "../time.js";
import { outputFormat } from "../command.js";

export const tokenCreateCommand: Command = {
  name: "token create",
  summary: "mint a bearer token with a role (global admins only)",
  usage: "polity token create --name <name> --role <role> [--region <r>] [--subject <who>] [--groups <g,…>] [--ttl 90d]",
  options: { ...HUB_OPTIONS, name: { type: "string" }, role: { type: "string" }, region: { type: "string" }, ttl: { type: "string" }, subject: { type: "string" }, groups: { type: "string" } },
  help: `Mints a token. Roles:
  global-admin      everything
  region-operator   its --region's layer and clusters; reads the global layer
  auditor           reads everything, writes nothing
  team-member       reads everything; requests exceptions and proposes changes, and answers
                    (approves, denies, rejects) those its teams own

--subject names who holds the token (an e-mail, a service name) and --groups the groups it
belongs to: Team documents in the layers list members and groups, and only a member of a
policy's owner team changes that policy or approves an exception to it. The audit log names
the subject. The token is printed once; the hub stores only its hash.

${HUB_HELP}

Examples:
  polity token create --name eve --role region-operator --region eu-west --subject eve@example.com --ttl 30d
  polity token create --name sam --role team-member --subject sam@example.com --groups security-oncall
  polity token create --name audit-2026 --role auditor`,
  async run(parsed, io) {
    const name = stringOption(parsed, "name");
    const role = stringOption(parsed, "role");
    if (name === undefined || role === undefined) throw new UsageError("give --name and --role");
    if (!(ROLES as readonly string[]).includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(", ")}`);
    const region = stringOption(parsed, "region");
    const subject = stringOption(parsed, "subject");
    const groups = stringOption(parsed, "groups");
    const ttl = parseDuration(stringOption(parsed, "ttl") ?? "90d", "--ttl");
    const r = await hubCall<TokenCreated>(endpoint(parsed, io), "POST", "/v1/tokens", {
      name,
      role,
      ...(region === undefined ? {} : { region }),
      ...(subject === undefined ? {} : { subject }),
      ...(groups === undefined ? {} : { groups: groups.split(",").map((g) => g.trim()).filter((g) => g !== "") }),
      ttlSeconds: Math.round(ttl / 1000),
    });
    if (stringOption(parsed, "output") === "json") io.out(`${JSON.stringify(r)}\n`);
    else {
      io.out(`${r.token}\n`);
      io.err(`token ${r.id} (${role}${region === undefined ? "" : ` of ${region}`}${subject === undefined ? "" : `, held by ${subject}`}), expires ${r.expiresAt}; it is not shown again\n`);
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
        ["ID", "NAME", "ROLE", "REGION", "SUBJECT", "AGE", "EXPIRES", "STATE"],
        r.items.map((t) => [t.id, t.name, t.role, t.region ?? "", t.subject ?? "", age(t.createdAt), t.expiresAt === null ? "never" : age(t.expiresAt), t.revokedAt !== null ? "revoked" : t.expiresAt !== null && Date.parse(t.expiresAt) < Date.now() ? "expired" : "live"]),
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
