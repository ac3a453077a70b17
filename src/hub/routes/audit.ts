/**
 * The audit log's API: signed tree heads, proofs and tiles for anyone the hub knows (they
 * hold hashes only), entries for those allowed to read them (an auditor and a global
 * admin everything, a region operator their region's), the entry schema for everyone.
 */
import { createPublicKey } from "node:crypto";
import { unshowableProblem } from "../../policy/names.js";
import { ENTRY_KINDS, ENTRY_SCHEMA, entryKindProblem, searchTimeProblem } from "../../audit/entry.js";
import { signedNote, noteVerifierKey } from "../../audit/tree-head.js";
import { TILE_WIDTH } from "../../audit/merkle.js";
import { auditScope, type Requirement } from "../principal.js";
import { route, type Call } from "../route.js";
import { badRequest, forbidden, notFound } from "../status.js";

function whole(call: Call, name: string, fallback?: number): number {
  const raw = call.query[name];
  if (raw === undefined || raw === "") {
    if (fallback === undefined) throw badRequest(`give ${name}, a whole number`);
    return fallback;
  }
  if (!/^\d{1,15}$/.test(raw)) throw badRequest(`${name} must be a whole number ≥ 0, not ${JSON.stringify(raw)}`);
  return Number(raw);
}

/** Entries are read by auditors and global admins (all of them) and region operators (their region's). */
const ENTRY_READERS: Requirement = { kind: "role", roles: ["auditor", "global-admin", "region-operator"], why: "audit entries are read by auditors, global admins, and region operators (their region's)" };

function time(call: Call, name: string): Date | undefined {
  const raw = call.query[name];
  if (raw === undefined || raw === "") return undefined;
  const problem = searchTimeProblem(name, raw);
  if (problem !== undefined) throw badRequest(problem);
  return new Date(raw);
}

export const AUDIT_ROUTES = [
  route({
    method: "GET",
    path: "/v1/audit/schema",
    summary: "The JSON Schema of audit entries, and what each kind records.",
    access: { kind: "public" },
    async handle() {
      return { body: { schema: ENTRY_SCHEMA, kinds: ENTRY_KINDS } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/audit/key",
    summary: "The log's public key (Ed25519): PEM, its key id, and the C2SP signed-note verifier key.",
    access: { kind: "authenticated" },
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
  }),
  route({
    method: "GET",
    path: "/v1/audit/head",
    summary: "The newest signed tree head: origin, size, root hash, time, key id, signature; and the same as a C2SP signed note.",
    access: { kind: "authenticated" },
    async handle(hub) {
      const head = await hub.audit.latestHead();
      return { body: { ...head, note: signedNote(head) } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/audit/proof/inclusion",
    summary: "Inclusion proof of entry ?index= in the tree of ?size= (default: the newest head's), in the format `polity audit check-proof` reads.",
    access: { kind: "authenticated" },
    async handle(hub, call) {
      const size = whole(call, "size", (await hub.audit.latestHead()).treeSize);
      return { body: await hub.audit.inclusionProof(whole(call, "index"), size) };
    },
  }),
  route({
    method: "GET",
    path: "/v1/audit/proof/consistency",
    summary: "Consistency proof that the tree of ?from= is a prefix of the tree of ?to= (default: the newest head's).",
    access: { kind: "authenticated" },
    async handle(hub, call) {
      const to = whole(call, "to", (await hub.audit.latestHead()).treeSize);
      return { body: await hub.audit.consistencyProof(whole(call, "from"), to) };
    },
  }),
  route({
    method: "GET",
    path: "/v1/audit/tiles/:level/:chunk",
    summary: `Stored hashes of perfect subtrees: level L, nodes ${TILE_WIDTH}·chunk onwards (up to ${TILE_WIDTH}), hex. What a verifier compares when it recomputes the tree.`,
    access: { kind: "authenticated" },
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
  }),
  route({
    method: "GET",
    path: "/v1/audit/bundles/:hash",
    summary:
      "The list of bundles a `bundles.published` entry names by its listHash: canonical JSON whose SHA-256 is that hash (cluster, version, envelope hash and policy-set hash of each bundle). A region operator reads only their region's lists.",
    access: ENTRY_READERS,
    async handle(hub, call) {
      const hash = call.params.hash!;
      if (!/^sha256:[0-9a-f]{64}$/.test(hash)) throw badRequest("the list's hash is sha256:<64 hex digits>, as the entry's listHash gives it");
      const found = await hub.audit.publication(hash);
      const scope = auditScope(call.principal);
      // Another region's list is answered as absent, as its entries are.
      if (found === undefined || (!scope.all && found.region !== scope.region)) throw notFound(`no list of published bundles ${hash}`);
      return { body: found.bytes, type: "application/json" };
    },
  }),
  route({
    method: "GET",
    path: "/v1/audit/entries",
    summary:
      "Entries in index order from ?start= (default 0), at most ?limit= (default 100, at most 1000), filtered by ?since=, ?until= (RFC 3339), ?actor=, ?cluster=, ?region=, ?kind=, ?correlation=. A region operator sees only their region's.",
    access: ENTRY_READERS,
    async handle(hub, call) {
      const scope = auditScope(call.principal);
      const filters: Record<string, string> = {};
      for (const param of ["actor", "cluster", "kind", "correlation", "region"] as const) {
        const value = call.query[param];
        if (value === undefined || value === "") continue;
        if (value.length > 256) throw badRequest(`${param} is longer than 256 characters`);
        const unshowable = unshowableProblem(value);
        if (unshowable !== undefined) throw badRequest(`${param} ${unshowable}`);
        const problem = param === "kind" ? entryKindProblem(value) : undefined;
        if (problem !== undefined) throw badRequest(problem);
        filters[param] = value;
      }
      const page = await hub.audit.search({
        ...filters,
        start: whole(call, "start", 0),
        limit: Math.min(1000, Math.max(1, whole(call, "limit", 100))),
        since: time(call, "since"),
        until: time(call, "until"),
        scope: scope.all ? undefined : scope.region,
      });
      return { body: page };
    },
  }),
  route({
    method: "GET",
    path: "/v1/audit/entries/:index",
    summary: "One entry, with its inclusion proof in the newest signed tree head.",
    access: ENTRY_READERS,
    async handle(hub, call) {
      const scope = auditScope(call.principal);
      if (!/^\d{1,15}$/.test(call.params.index!)) throw badRequest("the entry index is a whole number");
      const index = Number(call.params.index);
      const head = await hub.audit.latestHead();
      if (index >= head.treeSize) throw notFound(`no entry ${index} under the newest tree head (size ${head.treeSize}); new entries are integrated within about a second`);
      const row = await hub.audit.entry(index);
      if (row === undefined) throw notFound(`no entry ${index}`);
      if (!scope.all && row.region !== scope.region) throw forbidden(`entry ${index} is not of region ${scope.region}`);
      return { body: { index, entry: row.entry, treeHead: { ...head, note: signedNote(head) }, proof: await hub.audit.inclusionProof(index, head.treeSize) } };
    },
  }),
  route({
    method: "POST",
    path: "/v1/audit/detect",
    summary: "Run the anomaly detectors now (they also run every minute); each new finding is logged as an anomaly.found entry.",
    access: { kind: "role", roles: ["global-admin"], why: "only a global admin runs the detectors on demand" },
    async handle(hub) {
      return { body: { findings: await hub.audit.detect() } };
    },
  }),
];
