/** `polity keys status|rotate`: the federation's signing keys, their states in the root of trust, rotation and revocation. */
import { ROTATE_PURPOSES } from "../../api/trust.js";
import { outputFormat, stringOption, type Command } from "../command.js";
import { EXIT, UsageError } from "../io.js";
import { age, endpoint, hubCall, HUB_HELP, HUB_OPTIONS, table } from "../hub-access.js";

interface KeyView {
  readonly id: string;
  readonly purpose: string;
  readonly region: string | null;
  readonly state: string;
  readonly createdAt: string;
  readonly rootVersion: number | null;
  readonly leftRootVersion: number | null;
  readonly revokeReason: string | null;
}

interface Rotation {
  readonly purpose: string;
  readonly keyId: string;
  readonly previous: readonly string[];
  readonly revoked: readonly string[];
  readonly rootVersion: number;
}

export const keysStatusCommand: Command = {
  name: "keys status",
  summary: "the federation's keys: purpose, id, created, state, root versions",
  usage: "polity keys status [-o text|json]",
  options: { ...HUB_OPTIONS },
  help: `Lists every key of the federation's root of trust (global admins and auditors):
  PURPOSE   root (signs root versions), bundles, audit-log, region (a region's delegated key),
            or ca (a federation CA; its ID is the SHA-256 of its certificate)
  STATE     active (signs; a CA: issues), overlap (rotated out, still listed in the root, signs
            nothing; a CA: its certificates still accepted), retired (no longer in the root;
            a CA: its certificates refused), revoked (refused everywhere)
  ROOT      the root version that first listed it, and the one it left (retired or revoked);
            '-' for a CA that never rotated (roots list CAs from the first CA rotation on)

${HUB_HELP}

Example:
  polity keys status`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const r = await hubCall<{ rootVersion: number; rootExpires: string; keys: KeyView[] }>(endpoint(parsed, io), "GET", "/v1/keys");
    if (format === "json") {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
      return EXIT.ok;
    }
    io.out(`root version ${r.rootVersion}, expires ${r.rootExpires}\n`);
    table(
      io,
      ["PURPOSE", "ID", "CREATED", "STATE", "ROOT"],
      r.keys.map((k) => [
        k.region === null ? k.purpose : `${k.purpose} ${k.region}`,
        k.id.slice(0, 16),
        age(k.createdAt),
        k.state === "revoked" && k.revokeReason !== null ? `revoked (${k.revokeReason})` : k.state,
        `${k.rootVersion ?? "-"}${k.leftRootVersion === null ? "" : `..${k.leftRootVersion}`}`,
      ]),
    );
    return EXIT.ok;
  },
};

export const keysRotateCommand: Command = {
  name: "keys rotate",
  summary: "rotate a key (root, bundles, audit-log) or the federation CA (ca), or revoke a key on suspicion",
  usage: "polity keys rotate --purpose root|bundles|audit-log|ca [--revoke KEYID --reason TEXT]",
  options: { ...HUB_OPTIONS, purpose: { type: "string" }, revoke: { type: "string" }, reason: { type: "string" } },
  help: `Rotates a key with overlap, so that no agent restarts and no bundle is refused: the new
key enters a new root version before it signs anything; bundles are made again with it and
name that root, which each agent verifies against the root it holds; the old key stays listed
(overlap) until every agent acknowledged a bundle under the new one, or the hub's
--key-overlap runs out, then leaves the root. The root key is replaced at once: the new root
is signed by the old root key and the new one.

--revoke KEYID (with --reason) revokes a key instead: it goes to the root's revoked list
(a key of --purpose that is active is replaced by a new one in the same root), and every
agent refuses what it signs from its next bundle on. A region's delegated key is revoked
with --revoke alone (no --purpose): its delegation ends.

--purpose ca rotates the federation CA: a new CA enters a new root version beside the old
one (overlap); renewals are issued by the new CA; the old one retires (its certificates are
refused, and the hubs serve with a certificate of the new CA) once every cluster holds a
certificate of the new CA and acknowledged a bundle naming that root, or when the overlap
runs out. Refused in a federation with regional hubs, and while a CA rotation is under way.

${HUB_HELP}

Examples:
  polity keys rotate --purpose bundles
  polity keys rotate --purpose ca
  polity keys rotate --purpose bundles --revoke 3f9c…(64 hex) --reason "key file copied off the hub host"
  polity keys rotate --revoke 9ab0…(a region's key) --reason "eu-west hub compromised"`,
  async run(parsed, io) {
    const purpose = stringOption(parsed, "purpose");
    const revoke = stringOption(parsed, "revoke");
    const reason = stringOption(parsed, "reason");
    if (purpose !== undefined && !(ROTATE_PURPOSES as readonly string[]).includes(purpose)) throw new UsageError(`--purpose must be one of ${ROTATE_PURPOSES.join(", ")}`);
    if (purpose === "ca" && revoke !== undefined) throw new UsageError("the CA is rotated with overlap, not revoked by id: polity keys rotate --purpose ca");
    if (revoke !== undefined && (reason === undefined || reason.trim() === "")) throw new UsageError("--revoke needs --reason");
    if (revoke !== undefined && !/^[0-9a-f]{64}$/.test(revoke)) throw new UsageError("--revoke takes a whole key id (64 hex digits: polity keys status -o json)");
    let r: Rotation;
    if (purpose === undefined) {
      if (revoke === undefined) throw new UsageError("give --purpose, or --revoke KEYID --reason TEXT");
      r = await hubCall<Rotation>(endpoint(parsed, io), "POST", "/v1/keys/revoke", { keyId: revoke, reason });
    } else {
      r = await hubCall<Rotation>(endpoint(parsed, io), "POST", "/v1/keys/rotate", { purpose, ...(revoke === undefined ? {} : { revoke: [revoke], reason }) });
    }
    if (stringOption(parsed, "output") === "json") io.out(`${JSON.stringify(r)}\n`);
    else {
      if (r.revoked.length > 0) io.out(`revoked ${r.revoked.map((k) => k.slice(0, 16)).join(", ")}\n`);
      if (r.keyId !== r.revoked[0] || r.revoked.length === 0) io.out(`${r.purpose} key ${r.keyId.slice(0, 16)} active`);
      io.out(` in root version ${r.rootVersion}\n`);
    }
    return EXIT.ok;
  },
};
