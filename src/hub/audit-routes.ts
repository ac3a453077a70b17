/**
 * The audit log's API: signed tree heads, proofs and tiles for anyone the hub knows (they
 * hold hashes only), entries for those allowed to read them (an auditor and a global
 * admin everything, a region operator their region's), the entry schema for everyone.
 */
import { createPublicKey } from "node:crypto";
import { ENTRY_KINDS, ENTRY_SCHEMA, entryKindProblem, searchTimeProblem } from "../audit/entry.js";
import { signedNote, noteVerifierKey } from "../audit/tree-head.js";
import { TILE_WIDTH } from "../audit/merkle.js";
import type { Principal } from "./principal.js";
import type { Call, Route } from "./routes.js";
import { badRequest, forbidden, notFound } from "./status.js";

function whole(call: Call, name: string, fallback?: number): number {
  const raw = call.query[name];
  if (raw === undefined || raw === "") {
    if (fallback === undefined) throw badRequest(`give ${name}, a whole number`);
    return fallback;
  }
  if (!/^\d{1,15}$/.test(raw)) throw badRequest(`${name} must be a whole number ≥ 0, not ${JSON.stringify(raw)}`);
  return Number(raw);
}

/** Which entries a principal may read: all, one region's, or none. */
function readableRegion(principal: Principal): { all: true } | { all: false; region: string } {
  if (principal.kind === "token" && (principal.role === "auditor" || principal.role === "global-admin")) return { all: true };
  if (principal.kind === "token" && principal.role === "region-operator") return { all: false, region: principal.region! };
  throw forbidden("audit entries are read by auditors, global admins, and region operators (their region's)");
}

function time(call: Call, name: string): Date | undefined {
  const raw = call.query[name];
  if (raw === undefined || raw === "") return undefined;
  const problem = searchTimeProblem(name, raw);
  if (problem !== undefined) throw badRequest(problem);
  return new Date(raw);
}

interface EntryRow extends Record<string, unknown> {
  readonly idx: string;
  readonly entry: string;
}

export const AUDIT_ROUTES: readonly Route[] = [
  {
    method: "GET",
    path: "/v1/audit/schema",
    summary: "The JSON Schema of audit entries, and what each kind records.",
    auth: "public",
    async handle() {
      return { body: { schema: ENTRY_SCHEMA, kinds: ENTRY_KINDS } };
    },
  },
  {
    method: "GET",
    path: "/v1/audit/key",
    summary: "The log's public key (Ed25519): PEM, its key id, and the C2SP signed-note verifier key.",
    auth: "authenticated",
    async handle(hub) {
      const publicKey = createPublicKey(hub.audit.key.privateKey);
      return {
        body: {
          origin: hub.audit.origin,
          keyId: hub.audit.keyId,
          publicKeyPem: hub.audit.key.publicKeyPem,
          verifierKey: noteVerifierKey(hub.audit.origin, publicKey),
        },
      };
    },
  },
  {
    method: "GET",
    path: "/v1/audit/head",
    summary: "The newest signed tree head: origin, size, root hash, time, key id, signature; and the same as a C2SP signed note.",
    auth: "authenticated",
    async handle(hub) {
      const head = await hub.audit.latestHead();
      return { body: { ...head, note: signedNote(head) } };
    },
  },
  {
    method: "GET",
    path: "/v1/audit/proof/inclusion",
    summary: "Inclusion proof of entry ?index= in the tree of ?size= (default: the newest head's), in the format `polity audit check-proof` reads.",
    auth: "authenticated",
    async handle(hub, call) {
      const size = whole(call, "size", (await hub.audit.latestHead()).treeSize);
      return { body: await hub.audit.inclusionProof(whole(call, "index"), size) };
    },
  },
  {
    method: "GET",
    path: "/v1/audit/proof/consistency",
    summary: "Consistency proof that the tree of ?from= is a prefix of the tree of ?to= (default: the newest head's).",
    auth: "authenticated",
    async handle(hub, call) {
      const to = whole(call, "to", (await hub.audit.latestHead()).treeSize);
      return { body: await hub.audit.consistencyProof(whole(call, "from"), to) };
    },
  },
  {
    method: "GET",
    path: "/v1/audit/tiles/:level/:chunk",
    summary: `Stored hashes of perfect subtrees: level L, nodes ${TILE_WIDTH}·chunk onwards (up to ${TILE_WIDTH}), hex. What a verifier compares when it recomputes the tree.`,
    auth: "authenticated",
    async handle(hub, call) {
      const level = call.params.level!;
      const chunk = call.params.chunk!;
      if (!/^\d{1,2}$/.test(level) || !/^\d{1,15}$/.test(chunk)) throw badRequest("level and chunk are whole numbers");
      const tile = await hub.audit.tile(Number(level), Number(chunk));
      if (tile === undefined) throw notFound(`no tile ${level}/${chunk}`);
      const hashes: string[] = [];
      for (let i = 0; i < tile.length; i += 32) hashes.push(tile.subarray(i, i + 32).toString("hex"));
      return { body: { level: Number(level), chunk: Number(chunk), hashes } };
    },
  },
  {
    method: "GET",
    path: "/v1/audit/entries",
    summary:
      "Entries in index order from ?start= (default 0), at most ?limit= (default 100, at most 1000), filtered by ?since=, ?until= (RFC 3339), ?actor=, ?cluster=, ?region=, ?kind=, ?correlation=. A region operator sees only their region's.",
    auth: "authenticated",
    async handle(hub, call) {
      const scope = readableRegion(call.principal);
      const start = whole(call, "start", 0);
      const limit = Math.min(1000, Math.max(1, whole(call, "limit", 100)));
      const where: string[] = ["idx >= $1"];
      const params: unknown[] = [start];
      const add = (clause: string, value: unknown) => {
        params.push(value);
        where.push(clause.replace("?", `$${params.length}`));
      };
      const since = time(call, "since");
      const until = time(call, "until");
      if (since !== undefined) add("at >= ?", since);
      if (until !== undefined) add("at < ?", until);
      for (const [param, column] of [
        ["actor", "actor"],
        ["cluster", "cluster"],
        ["kind", "kind"],
        ["correlation", "correlation_id"],
        ["region", "region"],
      ] as const) {
        const value = call.query[param];
        if (value === undefined || value === "") continue;
        if (value.length > 256) throw badRequest(`${param} is longer than 256 characters`);
        const problem = param === "kind" ? entryKindProblem(value) : undefined;
        if (problem !== undefined) throw badRequest(problem);
        add(`${column} = ?`, value);
      }
      if (!scope.all) add("region = ?", scope.region);
      // Entries not yet under a signed head are not served: everything listed can be proved.
      add("idx < ?", (await hub.audit.latestHead()).treeSize);
      params.push(limit + 1);
      // Ordered by the column, not the text alias of the same name: "10" sorts before "2".
      const rows = await hub.db.query<EntryRow>(
        `SELECT idx::text AS idx, entry FROM audit_entries WHERE ${where.join(" AND ")} ORDER BY audit_entries.idx LIMIT $${params.length}`,
        params,
      );
      const items = rows.slice(0, limit).map((r) => ({ index: Number(r.idx), entry: JSON.parse(r.entry) as unknown }));
      return { body: { items, next: rows.length > limit ? items[items.length - 1]!.index + 1 : null } };
    },
  },
  {
    method: "GET",
    path: "/v1/audit/entries/:index",
    summary: "One entry, with its inclusion proof in the newest signed tree head.",
    auth: "authenticated",
    async handle(hub, call) {
      const scope = readableRegion(call.principal);
      if (!/^\d{1,15}$/.test(call.params.index!)) throw badRequest("the entry index is a whole number");
      const index = Number(call.params.index);
      const head = await hub.audit.latestHead();
      if (index >= head.treeSize) throw notFound(`no entry ${index} under the newest tree head (size ${head.treeSize}); new entries are integrated within about a second`);
      const [row] = await hub.db.query<EntryRow & { region: string | null }>("SELECT idx::text AS idx, entry, region FROM audit_entries WHERE idx = $1", [index]);
      if (row === undefined) throw notFound(`no entry ${index}`);
      if (!scope.all && row.region !== scope.region) throw forbidden(`entry ${index} is not of region ${scope.region}`);
      return { body: { index, entry: JSON.parse(row.entry) as unknown, treeHead: { ...head, note: signedNote(head) }, proof: await hub.audit.inclusionProof(index, head.treeSize) } };
    },
  },
  {
    method: "POST",
    path: "/v1/audit/detect",
    summary: "Run the anomaly detectors now (they also run every minute); each new finding is logged as an anomaly.found entry.",
    auth: "authenticated",
    async handle(hub, call) {
      if (call.principal.kind !== "token" || call.principal.role !== "global-admin") throw forbidden("only a global admin runs the detectors on demand");
      return { body: { findings: await hub.audit.detect() } };
    },
  },
];
