/**
 * `polity exception request|approve|deny|withdraw|list|show`: exceptions as requests, answered
 * by the owners of the policy they except.
 */
import type { ExceptionView } from "../../api/exceptions.js";
import { EXCEPTION_STATES } from "../../api/exceptions.js";
import { PolityError } from "../../errors.js";
import { readSomeDocuments } from "../../files/read.js";
import { printable } from "../../policy/names.js";
import { validateDocument } from "../../policy/validate.js";
import { flag, outputFormat, stringOption, type Command, type Parsed } from "../command.js";
import { EXIT, UsageError, type Io } from "../io.js";
import { age, endpoint, hubCall, HUB_HELP, HUB_OPTIONS, table } from "../hub-access.js";
import { parseDuration, parseTime } from "../time.js";

const list = (parsed: Parsed, name: string) => {
  const value = stringOption(parsed, name);
  return value === undefined ? undefined : value.split(",").map((v) => v.trim()).filter((v) => v !== "");
};

/** The request's body, from `-f` (one Exception document, without approvedBy) or from flags. */
function requestBody(parsed: Parsed): { name?: string; spec: Record<string, unknown> } {
  const file = stringOption(parsed, "filename");
  const lifetime = stringOption(parsed, "for");
  const until = stringOption(parsed, "expires-at");
  if (lifetime !== undefined && until !== undefined) throw new UsageError("give --for or --expires-at, not both");
  let expiresAt: string | undefined;
  if (lifetime !== undefined) {
    const end = new Date(Date.now() + parseDuration(lifetime, "--for"));
    if (Number.isNaN(end.getTime())) throw new UsageError(`--for ${lifetime} ends after the last time a date can hold`);
    expiresAt = end.toISOString();
  } else if (until !== undefined) {
    expiresAt = new Date(parseTime(until, "--expires-at")).toISOString();
  }
  if (file !== undefined) {
    const documents = readSomeDocuments(file);
    if (documents.length !== 1) throw new UsageError(`${file} holds ${documents.length} documents: a request is one Exception document`);
    const source = documents[0]!;
    // The lifetime given on the command line fills in an expiry the file leaves out, never one it gives.
    const value = source.value as { spec?: Record<string, unknown> } | null;
    if (expiresAt !== undefined && value?.spec?.expiresAt !== undefined) throw new UsageError(`${file} sets spec.expiresAt: give --for or --expires-at only for a file without one`);
    if (expiresAt !== undefined && value?.spec !== undefined) value.spec.expiresAt = expiresAt;
    const validated = validateDocument(source);
    if (!validated.ok) throw new PolityError("invalid", validated.problems);
    if (validated.document.kind !== "Exception") throw new UsageError(`${file} holds a ${validated.document.kind} document: a request is an Exception document`);
    return { name: validated.document.metadata.name, spec: validated.document.spec };
  }
  const policy = stringOption(parsed, "policy");
  const justification = stringOption(parsed, "justification");
  if (policy === undefined || justification === undefined || expiresAt === undefined) {
    throw new UsageError("give -f <exception.yaml>, or --policy, --justification and --for (or --expires-at), with a scope");
  }
  const scope: Record<string, unknown> = {};
  for (const field of ["clusters", "regions", "namespaces", "names"]) {
    const values = list(parsed, field);
    if (values !== undefined) scope[field] = values;
  }
  const rules = list(parsed, "rules");
  const name = stringOption(parsed, "name");
  return { ...(name === undefined ? {} : { name }), spec: { policy, ...(rules === undefined ? {} : { rules }), scope, justification, expiresAt } };
}

/** When, and how long from now: `in 7d` ahead, `3h ago` behind. */
const when = (iso: string) => {
  const a = age(iso);
  return a.startsWith("in ") ? a : `${a} ago`;
};

function describe(e: ExceptionView): string {
  // Everything here was written by someone else: printed so that it cannot move the cursor or reorder the line.
  const show = (value: unknown) => printable(String(value));
  const scope = Object.entries(e.spec.scope ?? {})
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.map(show).join(",") : show(JSON.stringify(v))}`)
    .join(" ");
  const state = e.state === "pending" && e.escalated ? "pending, escalated: a global admin may answer it too" : e.state;
  const lines = [
    `exception ${e.id}${e.name === null ? "" : ` (${show(e.name)})`}: ${state}`,
    `  policy      ${e.policy}${Array.isArray(e.spec.rules) ? `, rules ${(e.spec.rules as string[]).map(show).join(", ")}` : ""} (defined by layer ${e.layer})`,
    `  scope       ${scope}`,
    `  why         ${show(e.spec.justification)}`,
    `  expires     ${e.expiresAt} (${when(e.expiresAt)})`,
    `  answered by team ${e.team}${e.source === "layer file" ? " (written in a layer file by a global admin)" : ""}`,
    `  asked by    ${show(e.requestedBy)}, ${e.requestedAt}`,
  ];
  if (e.approvedBy !== null) lines.push(`  approved by ${show(e.approvedBy)}${e.approvedAt === null ? "" : `, ${e.approvedAt}`}`);
  if (e.decidedBy !== null && !(e.state === "approved" && e.decidedBy === e.approvedBy)) {
    lines.push(`  ${e.state.padEnd(11)} by ${show(e.decidedBy)}${e.decidedAt === null ? "" : `, ${e.decidedAt}`}`);
  }
  if (e.reason !== null) lines.push(`  reason      ${show(e.reason)}`);
  if (e.state === "pending" && e.escalateAt !== null && !e.escalated) lines.push(`  escalates   ${e.escalateAt} (${when(e.escalateAt)}), to the global admins too`);
  return `${lines.join("\n")}\n`;
}

function print(io: Io, parsed: Parsed, e: ExceptionView): number {
  if (outputFormat(parsed, ["text", "json"] as const, "text") === "json") io.out(`${JSON.stringify(e, null, 2)}\n`);
  else io.out(describe(e));
  return EXIT.ok;
}

function oneId(parsed: Parsed): string {
  const id = parsed.positionals[0];
  if (id === undefined || parsed.positionals.length > 1) throw new UsageError("give one exception request id (polity exception list shows them)");
  return id;
}

export const exceptionRequestCommand: Command = {
  name: "exception request",
  summary: "request an exception to a policy, for its owners to approve",
  usage: "polity exception request -f <exception.yaml> | --policy <p> --justification <why> --for <7d> [--rules r,…] [--clusters c,…] [--namespaces n,…] [--names n,…]",
  options: {
    ...HUB_OPTIONS,
    filename: { type: "string", short: "f" },
    policy: { type: "string" },
    rules: { type: "string" },
    clusters: { type: "string" },
    regions: { type: "string" },
    namespaces: { type: "string" },
    names: { type: "string" },
    justification: { type: "string" },
    for: { type: "string" },
    "expires-at": { type: "string" },
    name: { type: "string" },
  },
  help: `Files a request for an exception: a policy (and some of its rules), a narrow scope (the
clusters, namespaces, workload names it covers), a justification and a lifetime. It waits for
a member of the policy's owner team, in the layer that defines the policy (nobody approves
their own request); if the team does not answer within its escalation time (Team
spec.escalateAfter, 72h by default), a global admin may answer it too. A risk rule of that
layer (Layer spec.exceptionRules) may approve it at once. The hub refuses, with the reason, a
request the policy does not allow (spec.exceptions: allowed, maxLifetime, scopes), already
expired, or for a rule or policy that does not exist.

The file is an Exception document without approvedBy (the hub records who approves):
  apiVersion: polity.dev/v1
  kind: Exception
  metadata: { name: legacy-root }
  spec:
    policy: pod-security
    scope: { clusters: [eu-west-1], namespaces: [legacy] }
    justification: The legacy job runs as root until it is rebuilt in January.
    expiresAt: "2027-01-31T00:00:00Z"      (or leave it out and give --for 14d)

Options:
  -f, --filename <file>       the Exception document
  --policy <name>             the policy to except (instead of -f)
  --rules <r,…>               only these rules (default: every rule of the policy)
  --clusters, --regions <a,…>     where it applies (one of them is required)
  --namespaces, --names <a,…>     what it covers (one of them is required)
  --justification <text>      why (at least 10 characters)
  --for <duration>            the lifetime asked for (7d, 24h), or --expires-at <RFC 3339 time>

${HUB_HELP}

Examples:
  polity exception request -f legacy-root.yaml --for 14d
  polity exception request --policy pod-security --clusters eu-west-1 --namespaces legacy \\
      --justification "legacy job runs as root until January" --for 14d`,
  async run(parsed, io) {
    const created = await hubCall<ExceptionView>(endpoint(parsed, io), "POST", "/v1/exceptions", requestBody(parsed));
    print(io, parsed, created);
    if (created.state === "pending") io.err(`waiting for team ${created.team}: polity exception approve ${created.id}\n`);
    return EXIT.ok;
  },
};

const answerCommand = (what: "approve" | "deny" | "withdraw"): Command => ({
  name: `exception ${what}`,
  summary:
    what === "approve"
      ? "approve a pending exception request (a member of its policy's owner team)"
      : what === "deny"
        ? "deny a pending exception request, saying why"
        : "withdraw an exception request, pending or granted",
  usage: `polity exception ${what} <id> [--reason <text>]`,
  options: { ...HUB_OPTIONS, reason: { type: "string" } },
  help: `${
    what === "approve"
      ? `Approves a pending request. Only a member of the team that owns the policy (in the layer that
defines it) approves, never the one who asked; once the request has waited past the team's
escalation time, a global admin may too. The exception is published in the next bundles of
the clusters it names, with you as its approver, and leaves them at its expiry.`
      : what === "deny"
        ? "Denies a pending request. Who may deny is who may approve."
        : `Withdraws a request: a pending one is closed, a granted one leaves the next bundles. Its
requester, a member of its team, or a global admin may.`
  }

${HUB_HELP}

Example:
  polity exception ${what} 3f9c0a1b2c4d${what === "approve" ? "" : ' --reason "run it unprivileged instead"'}`,
  async run(parsed, io) {
    const id = oneId(parsed);
    if (id.includes("/")) {
      throw new UsageError(`${id} is written in a layer file, not requested: a global admin changes or removes it by applying ${id.slice(0, id.lastIndexOf("/"))} without it`);
    }
    const reason = stringOption(parsed, "reason");
    const answered = await hubCall<ExceptionView>(endpoint(parsed, io), "POST", `/v1/exceptions/${encodeURIComponent(id)}/${what}`, reason === undefined ? {} : { reason });
    return print(io, parsed, answered);
  },
});

export const exceptionApproveCommand = answerCommand("approve");
export const exceptionDenyCommand = answerCommand("deny");
export const exceptionWithdrawCommand = answerCommand("withdraw");

export const exceptionShowCommand: Command = {
  name: "exception show",
  summary: "one exception request: its scope, state, who asked and who answered",
  usage: "polity exception show <id> [-o text|json]",
  options: { ...HUB_OPTIONS },
  help: `Shows one exception: a request by its id, or one written in a layer file by the
<layer>/<name> the list shows.

${HUB_HELP}

Example:
  polity exception show 3f9c0a1b2c4d`,
  async run(parsed, io) {
    const id = oneId(parsed);
    const ep = endpoint(parsed, io);
    if (!id.includes("/")) return print(io, parsed, await hubCall<ExceptionView>(ep, "GET", `/v1/exceptions/${encodeURIComponent(id)}`));
    // One written in a layer file is named <layer>/<name>, as the list shows it.
    const found = (await hubCall<{ items: ExceptionView[] }>(ep, "GET", "/v1/exceptions")).items.find((e) => e.id === id);
    if (found === undefined) throw new UsageError(`no exception ${id} (polity exception list shows them)`);
    return print(io, parsed, found);
  },
};

export const exceptionListCommand: Command = {
  name: "exception list",
  summary: "exceptions: requested, granted, expiring, and those written in layer files",
  usage: "polity exception list [--pending | --active | --expiring 7d | --state <state>] [-o text|json]",
  options: { ...HUB_OPTIONS, pending: { type: "boolean" }, active: { type: "boolean" }, expiring: { type: "string" }, state: { type: "string" } },
  help: `Lists the exceptions you may see (a region operator: its region's, and those it asked for or
answers), requested ones and those a global admin wrote in a layer file (SOURCE "file").

  --pending            waiting for an answer
  --active             granted and not expired
  --expiring <7d>      granted, expiring within that time
  --state <s>          ${EXCEPTION_STATES.join(", ")}

${HUB_HELP}

Examples:
  polity exception list --pending
  polity exception list --expiring 7d`,
  async run(parsed, io) {
    const query = new URLSearchParams();
    const chosen = [flag(parsed, "pending"), flag(parsed, "active"), stringOption(parsed, "expiring") !== undefined, stringOption(parsed, "state") !== undefined].filter(Boolean);
    if (chosen.length > 1) throw new UsageError("give one of --pending, --active, --expiring and --state");
    if (flag(parsed, "pending")) query.set("state", "pending");
    if (flag(parsed, "active")) query.set("active", "true");
    const expiring = stringOption(parsed, "expiring");
    if (expiring !== undefined) query.set("expiring", `${Math.round(parseDuration(expiring, "--expiring") / 1000)}s`);
    const state = stringOption(parsed, "state");
    if (state !== undefined) query.set("state", state);
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const r = await hubCall<{ items: ExceptionView[] }>(endpoint(parsed, io), "GET", `/v1/exceptions${query.size === 0 ? "" : `?${query}`}`);
    if (format === "json") io.out(`${JSON.stringify(r, null, 2)}\n`);
    else
      table(
        io,
        ["ID", "POLICY", "STATE", "TEAM", "ASKED BY", "APPROVED BY", "EXPIRES", "SOURCE"],
        r.items.map((e) => [
          e.id,
          e.policy,
          e.state === "pending" && e.escalated ? "pending (escalated)" : e.state,
          e.team,
          printable(e.requestedBy),
          e.source === "layer file" ? "(layer file)" : printable(e.approvedBy ?? ""),
          when(e.expiresAt),
          e.source === "layer file" ? "file" : "request",
        ]),
      );
    return EXIT.ok;
  },
};
