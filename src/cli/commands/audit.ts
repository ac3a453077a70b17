/**
 * `polity audit head|verify|proof|check-proof|search`: the tamper-evident log, from the
 * point of view of an auditor who trusts nobody. `check-proof` needs no hub at all.
 */
import { existsSync } from "node:fs";
import { writeFileAtomic } from "../../files/write.js";
import { advanceSavedHead, headToSave, parseSavedHead, SavedHeadError, verifyLog, type LogSource, type Report, type SavedHead } from "../../audit/auditor.js";
import { entryKindProblem, searchTimeProblem, type AuditEntry } from "../../audit/entry.js";
import { ProofError } from "../../audit/merkle.js";
import { checkProofDocument, parseProofDocument, ProofFormatError, type ConsistencyProof, type InclusionProof } from "../../audit/proof.js";
import { TreeHeadError, type SignedTreeHead } from "../../audit/tree-head.js";
import { call, HubError, type HubEndpoint } from "../../client/http.js";
import { PolityError } from "../../errors.js";
import { readInput, readStdin, STDIN } from "../../files/read.js";
import { flag, outputFormat, stringOption, type Command } from "../command.js";
import { EXIT, UsageError, type Io } from "../io.js";
import { age, asCliError, endpoint, hubCall, HUB_HELP, HUB_OPTIONS, table } from "../hub-access.js";

/** The log as a hub serves it, for the auditor's checks. */
function hubSource(ep: HubEndpoint): LogSource {
  return {
    key: () => hubCall<{ publicKeyPem: string }>(ep, "GET", "/v1/audit/key"),
    head: () => hubCall<unknown>(ep, "GET", "/v1/audit/head"),
    async tile(level, chunk) {
      try {
        return (await call<{ hashes: string[] }>(ep, "GET", `/v1/audit/tiles/${level}/${chunk}`)).body.hashes;
      } catch (error) {
        if (error instanceof HubError && error.status === 404) return undefined;
        throw asCliError(error);
      }
    },
    async consistency(size1, size2) {
      try {
        return (await call<ConsistencyProof>(ep, "GET", `/v1/audit/proof/consistency?from=${size1}&to=${size2}`)).body;
      } catch (error) {
        // An honest log can always prove it extends an earlier head of its own.
        if (error instanceof HubError && error.status < 500) throw new ProofError(`the hub gives no consistency proof from ${size1} to ${size2}: ${error.message}`);
        throw asCliError(error);
      }
    },
    entries: (start) => hubCall<{ items: { index: number; entry: unknown }[]; next: number | null }>(ep, "GET", `/v1/audit/entries?start=${start}&limit=1000`),
    trustRoot: () => hubCall<unknown>(ep, "GET", "/v1/trust/root"),
    trustRoots: async (after) => (await hubCall<{ items: unknown[] }>(ep, "GET", `/v1/trust/roots?after=${after}`)).items,
  };
}

function readJsonFile(path: string, what: string): unknown {
  const text = readInput(path);
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw PolityError.of("invalid", `${what} is not JSON: ${(error as Error).message}`, { location: { file: path, line: 0, column: 0 } });
  }
}

function loadSaved(path: string): SavedHead {
  try {
    return parseSavedHead(readJsonFile(path, "the saved tree head"));
  } catch (error) {
    if (error instanceof SavedHeadError) throw PolityError.of("invalid", error.message, { location: { file: path, line: 0, column: 0 } });
    throw error;
  }
}

/** The auditor's trust anchor is replaced whole or not at all. */
function writeSaved(path: string, saved: SavedHead): void {
  writeFileAtomic(path, `${JSON.stringify(saved, null, 2)}\n`, { mode: 0o644 });
}

function describeHead(head: SignedTreeHead): string {
  return `${head.treeSize} entries, root ${head.rootHash}, signed ${head.time} by key ${head.keyId}`;
}

export const auditHeadCommand: Command = {
  name: "audit head",
  summary: "print the log's newest signed tree head; --save keeps it for later checks",
  usage: "polity audit head [--save <file>] [-o text|json]",
  options: { ...HUB_OPTIONS, save: { type: "string" } },
  help: `Prints the newest signed tree head of the hub's audit log: its size, root hash, time,
and the log key's signature (a C2SP signed note, checkable with SHA-256 and Ed25519 alone).

      --save <file>   verify the head with the log's key, read the hashes of its tree's right
                      edge (and check they fold to the signed root), and write them with the
                      key to <file>: the trust anchor 'polity audit verify --against' checks
                      the log against later. Refuses to overwrite a file (use verify --update).

${HUB_HELP}

Examples:
  polity audit head
  polity audit head --save audit-2026-11-25.json`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const ep = endpoint(parsed, io);
    const save = stringOption(parsed, "save");
    if (save !== undefined) {
      if (existsSync(save)) throw new UsageError(`${save} exists: check the log against it and move it forward with 'polity audit verify --against ${save} --update'`);
      const saved = await withHeadErrors(() => headToSave(hubSource(ep), new Date()));
      writeSaved(save, saved);
      io.err(`saved the tree head of ${saved.treeHead.treeSize} entries to ${save}\n`);
      if (format === "json") io.out(`${JSON.stringify(saved.treeHead, null, 2)}\n`);
      else io.out(`${describeHead(saved.treeHead)}\n`);
      return EXIT.ok;
    }
    const head = await hubCall<SignedTreeHead & { note: string }>(ep, "GET", "/v1/audit/head");
    if (format === "json") io.out(`${JSON.stringify(head, null, 2)}\n`);
    else io.out(head.note);
    return EXIT.ok;
  },
};

async function withHeadErrors<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof TreeHeadError || error instanceof SavedHeadError) throw PolityError.of("invalid", `the hub's tree head cannot be trusted: ${error.message}`);
    throw error;
  }
}

function printReport(io: Io, report: Report, format: "text" | "json"): void {
  if (format === "json") {
    io.out(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  io.out(`saved head:  ${describeHead(report.saved)}\n`);
  if (report.latest !== undefined) io.out(`newest head: ${describeHead(report.latest)}\n`);
  if (report.keyRotated !== undefined) {
    const { from, to, rootVersion } = report.keyRotated;
    io.out(`log key:     rotated from ${from.slice(0, 12)}… to ${to.slice(0, 12)}…, proven by the root chain from your saved root to version ${rootVersion}\n`);
  }
  if (report.entriesChecked > 0) io.out(`entries checked one by one: ${report.entriesChecked}\n`);
  if (report.ok) {
    io.out(`OK: the log still holds everything your saved head covers, unchanged, and every later entry extends it\n`);
    return;
  }
  for (const finding of report.findings) io.out(`FAILED (${finding.kind}): ${finding.message}\n`);
}

export const auditVerifyCommand: Command = {
  name: "audit verify",
  summary: "check the hub's log against a tree head you saved: detects a rewritten, truncated or forked log",
  usage: "polity audit verify --against <file> [--entries] [--update] [-o text|json]",
  options: { ...HUB_OPTIONS, against: { type: "string" }, entries: { type: "boolean" }, update: { type: "boolean" } },
  help: `Checks the hub's audit log against a tree head saved earlier with 'polity audit head --save'.
It trusts only that file: the newest head must be signed by the same key (or by its
successor, when the root of trust saved with the head proves the rotation: each later root
signed by its predecessor's root keys, the newest listing the new key), cover at least as
many entries, still hold the saved tree's subtree hashes, and extend it by a consistency proof
(RFC 9162). A failure says what happened and where:

  truncated   the log is shorter than your saved head: which entries are gone
  rewritten   entries your saved head covers hash differently now: which range changed, and
              which entries before it are intact
  forked      the newest head does not extend yours (the log was rebuilt)
  entry-changed (with --entries) an entry whose content no longer matches its leaf hash

      --against <file>   the saved tree head (required)
      --entries          also read every entry (auditors and global admins) and check each one
                         against its leaf, and all of them against the newest root
      --update           when everything holds, move the saved head forward to the newest one
                         (after a proven rotation: with the new key and the newest root)

${HUB_HELP}

Exit status: 0 the log is consistent with your saved head; 1 it is not (the findings say
how); 2 bad usage, an unreadable or altered saved head, or an unreachable hub.

Examples:
  polity audit verify --against audit-2026-11-25.json
  polity audit verify --against audit-2026-11-25.json --entries --update`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const against = stringOption(parsed, "against");
    if (against === undefined) throw new UsageError("give --against <file>, a tree head saved with 'polity audit head --save'");
    if (parsed.positionals.length > 0) throw new UsageError("audit verify takes no arguments besides its flags");
    const saved = loadSaved(against);
    const source = hubSource(endpoint(parsed, io));
    let lastShown = 0;
    const report = await verifyLog(saved, source, {
      entries: flag(parsed, "entries"),
      progress: (done, total) => {
        if (done - lastShown >= 50_000 || done === total) {
          lastShown = done;
          io.err(`checked ${done} of ${total} entries\n`);
        }
      },
    });
    printReport(io, report, format);
    if (flag(parsed, "update")) {
      const next = await withHeadErrors(() => advanceSavedHead(saved, report, source, new Date()));
      if (next !== undefined) {
        writeSaved(against, next);
        io.err(`moved ${against} forward to the head of ${next.treeHead.treeSize} entries\n`);
      }
    }
    return report.ok ? EXIT.ok : EXIT.failed;
  },
};

export const auditProofCommand: Command = {
  name: "audit proof",
  summary: "print an inclusion proof of an entry (for 'polity audit check-proof')",
  usage: "polity audit proof <entry> [--size <n>]",
  options: { ...HUB_OPTIONS, size: { type: "string" } },
  help: `Prints the inclusion proof of entry <entry> (its index) in the tree of the newest signed
head, or of --size <n>, as JSON anyone can check with 'polity audit check-proof' or any RFC
9162 verifier:

  {"type": "inclusion", "leafIndex": n, "treeSize": n, "leafHash": hex, "proof": [hex, …], "root": hex}

${HUB_HELP}

Examples:
  polity audit proof 1234 > proof.json
  polity audit check-proof proof.json`,
  async run(parsed, io) {
    const index = parsed.positionals[0];
    if (index === undefined || parsed.positionals.length > 1 || !/^\d{1,15}$/.test(index)) throw new UsageError("give one entry index, a whole number");
    const size = stringOption(parsed, "size");
    if (size !== undefined && !/^\d{1,15}$/.test(size)) throw new UsageError("--size must be a whole number");
    const proof = await hubCall<InclusionProof>(endpoint(parsed, io), "GET", `/v1/audit/proof/inclusion?index=${index}${size === undefined ? "" : `&size=${size}`}`);
    io.out(`${JSON.stringify(proof, null, 2)}\n`);
    return EXIT.ok;
  },
};

export const auditCheckProofCommand: Command = {
  name: "audit check-proof",
  summary: "verify a standalone inclusion or consistency proof, with no hub",
  usage: "polity audit check-proof <proof.json | ->",
  options: { output: { type: "string", short: "o" } },
  help: `Verifies a proof file exactly as RFC 9162 (sections 2.1.3.2 and 2.1.4.2) defines, with no
hub involved: anyone handed a proof can check it.

  {"type": "inclusion", "leafIndex": n, "treeSize": n, "leafHash": hex, "proof": [hex, …], "root": hex}
  {"type": "consistency", "size1": n, "size2": n, "root1": hex, "root2": hex, "proof": [hex, …]}

Malformed proofs are refused: hashes that are not 32 bytes, indexes outside the tree, a proof
too long or too short for the tree, a consistency proof from the empty tree.

Exit status: 0 the proof holds; 1 it does not (the message says why); 2 the file is
malformed (not JSON, a missing or unknown field, a number that is not whole, text that is
not hex).

Examples:
  polity audit check-proof proof.json
  polity audit proof 1234 | polity audit check-proof -`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const file = parsed.positionals[0];
    if (file === undefined || parsed.positionals.length > 1) throw new UsageError("give one proof file, or - for standard input");
    const name = file === "-" ? STDIN : file;
    const text = file === "-" ? await readStdin() : readInput(file);
    let doc;
    try {
      doc = parseProofDocument(JSON.parse(text) as unknown);
    } catch (error) {
      if (error instanceof SyntaxError) throw PolityError.of("invalid", `not JSON: ${error.message}`, { location: { file: name, line: 0, column: 0 } });
      if (error instanceof ProofFormatError) throw PolityError.of("invalid", `not a proof: ${error.message}`, { location: { file: name, line: 0, column: 0 } });
      throw error;
    }
    try {
      checkProofDocument(doc);
    } catch (error) {
      if (!(error instanceof ProofError)) throw error;
      if (format === "json") io.out(`${JSON.stringify({ valid: false, type: doc.type, reason: error.message })}\n`);
      else io.out(`invalid ${doc.type} proof: ${error.message}\n`);
      return EXIT.failed;
    }
    const what =
      doc.type === "inclusion"
        ? `leaf ${doc.leafIndex} (hash ${doc.leafHash}) is in the tree of ${doc.treeSize} entries with root ${doc.root}`
        : `the tree of ${doc.size1} entries (root ${doc.root1}) is a prefix of the tree of ${doc.size2} entries (root ${doc.root2})`;
    if (format === "json") io.out(`${JSON.stringify({ valid: true, type: doc.type })}\n`);
    else io.out(`valid ${doc.type} proof: ${what}\n`);
    return EXIT.ok;
  },
};

const SEARCH_FILTERS = ["since", "until", "actor", "cluster", "region", "kind", "correlation"] as const;

function summary(entry: AuditEntry): string {
  const d = entry.data as Record<string, unknown>;
  switch (entry.kind) {
    case "layer.changed":
    case "layer.deleted":
      return `${String(d.layer)} v${String(d.version)}`;
    case "bundles.published":
      return d.bundles === 1 ? `v${String(d.version)}` : `${String(d.bundles)} bundles, ${String(d.targets)} target(s)`;
    case "bundle.acknowledged":
      return `v${String(d.version)}`;
    case "intents.apply-failed": {
      const failed = d.failed as { object?: string; reason?: string } | null;
      return `v${String(d.bundleVersion)} ${String(d.outcome)}${failed === null || failed === undefined ? "" : `: ${String(failed.object)}: ${String(failed.reason)}`}${d.rolledBack === true ? " (rolled back)" : ""}`;
    }
    case "agent.denials":
      return `${String(d.count)} denied`;
    case "enrolment.failed":
      return String(d.reason);
    case "anomaly.found":
      return String(d.summary);
    case "exception.granted":
    case "exception.withdrawn":
    case "exception.changed":
    case "exception.requested":
    case "exception.denied":
    case "exception.escalated":
    case "exception.expired": {
      // Written in a layer file: the document's name and its stated approver; requested: the request, its policy, its answer.
      const doc = (d.exception ?? {}) as Record<string, unknown>;
      if (d.request === undefined) return `${String(doc.name ?? d.exception)}${doc.approvedBy === undefined ? "" : ` (in a layer file, which says approved by ${String(doc.approvedBy)})`}`;
      const by = d.approvedBy ?? d.deniedBy ?? d.withdrawnBy ?? (entry.kind === "exception.requested" ? `team ${String(d.team)}` : undefined);
      return `request ${String(d.request)} ${String(d.policy ?? doc.policy)}${by === undefined ? "" : ` (${entry.kind === "exception.requested" ? "for" : "by"} ${String(by)})`}`;
    }
    case "proposal.created":
    case "proposal.approved":
    case "proposal.rejected":
    case "proposal.applied":
      return `proposal ${String(d.proposal)}${Array.isArray(d.teams) ? ` for ${d.teams.join(", ")}` : ""}`;
    default:
      return "";
  }
}

export const auditSearchCommand: Command = {
  name: "audit search",
  summary: "find audit entries by time, actor, cluster, region, kind or correlation id",
  usage: "polity audit search [--since <time>] [--until <time>] [--actor <a>] [--cluster <c>] [--region <r>] [--kind <k>] [--correlation <id>] [--limit <n>] [-o text|json]",
  options: {
    ...HUB_OPTIONS,
    since: { type: "string" },
    until: { type: "string" },
    actor: { type: "string" },
    cluster: { type: "string" },
    region: { type: "string" },
    kind: { type: "string" },
    correlation: { type: "string" },
    limit: { type: "string" },
    start: { type: "string" },
  },
  help: `Lists audit entries in log order, filtered. Auditors and global admins see every entry; a
region operator sees their region's. Every entry listed is under a signed tree head, so
'polity audit proof <index>' can prove it is in the log.

      --since, --until <time>   RFC 3339 (2026-11-25T06:00:00Z) or a date (2026-11-25)
      --actor <a>               user:<subject> (or user:<token name> for a token without one), cluster:<name>, join-token:<id>, hub
      --cluster <c>, --region <r>
      --kind <k>                layer.changed, exception.granted, bundles.published,
                                bundle.acknowledged, agent.denials, cluster.enrolled,
                                enrolment.failed, certificate.issued, certificate.revoked,
                                token.created, anomaly.found, … ('GET /v1/audit/schema' lists all)
      --correlation <id>        the events of one change: the layer change, its bundles, their
                                acknowledgements, the denials made under them
      --limit <n>               at most n entries (default 100, at most 1000)
      --start <index>           from this entry on (the JSON output's "next" continues a listing)

${HUB_HELP}

Examples:
  polity audit search --kind layer.changed --since 2026-11-01
  polity audit search --correlation 9a7e52c4-3c55-4d0b-a1f7-7f1d6f7a6f0e
  polity audit search --kind anomaly.found -o json`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    if (parsed.positionals.length > 0) throw new UsageError("audit search takes only flags");
    const query = new URLSearchParams();
    for (const name of SEARCH_FILTERS) {
      const value = stringOption(parsed, name);
      if (value === undefined) continue;
      // Checked here too, so that a mistyped flag is said before any hub is asked.
      const problem = name === "since" || name === "until" ? searchTimeProblem(`--${name}`, value) : name === "kind" ? entryKindProblem(value) : undefined;
      if (problem !== undefined) throw new UsageError(problem);
      query.set(name, value);
    }
    for (const name of ["limit", "start"] as const) {
      const value = stringOption(parsed, name);
      if (value === undefined) continue;
      if (!/^\d{1,15}$/.test(value)) throw new UsageError(`--${name} must be a whole number`);
      query.set(name, value);
    }
    const r = await hubCall<{ items: { index: number; entry: AuditEntry }[]; next: number | null }>(endpoint(parsed, io), "GET", `/v1/audit/entries?${query.toString()}`);
    if (format === "json") {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
      return EXIT.ok;
    }
    table(
      io,
      ["INDEX", "AGE", "KIND", "ACTOR", "CLUSTER", "REGION", "CORRELATION", "WHAT"],
      r.items.map(({ index, entry }) => [String(index), age(entry.time), entry.kind, entry.actor, entry.cluster ?? "", entry.region ?? "", entry.correlationId.slice(0, 8), summary(entry)]),
    );
    if (r.next !== null) io.err(`more entries follow: --start ${r.next}\n`);
    return EXIT.ok;
  },
};
