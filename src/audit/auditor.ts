/**
 * What an auditor who trusts nobody runs against a log: compare it with a tree head saved
 * earlier (signed, with the right edge of its tree), and say exactly what changed. The
 * log is reached through `LogSource` (the CLI gives it HTTP), so the reasoning here is
 * the same whoever serves the log.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { keyIdOf } from "../bundle/index.js";
import { canonicalJson } from "../canonical/index.js";
import { auditKeyAllowed, parseRootEnvelope, TrustError, verifyRootChain, verifyRootSelf, type RootEnvelope, type RootMetadata } from "../trust/index.js";
import { ProofError, TILE_WIDTH, foldRange, leafHash, rangeNodes, verifyConsistency, type NodeId } from "./merkle.js";
import type { ConsistencyProof } from "./proof.js";
import { TreeHeadError, verifyTreeHead, type SignedTreeHead } from "./tree-head.js";

export interface LogSource {
  key(): Promise<{ publicKeyPem: string }>;
  head(): Promise<unknown>;
  /** A stored tile's hashes (hex), or undefined when the log has no such tile. */
  tile(level: number, chunk: number): Promise<string[] | undefined>;
  /** Throws ProofError when the log cannot give one (an honest log always can). */
  consistency(size1: number, size2: number): Promise<ConsistencyProof>;
  /** Entries from `start`, in order; `next` is where the following page starts (null: the end). */
  entries(start: number): Promise<{ items: { index: number; entry: unknown }[]; next: number | null }>;
  /**
   * The federation's root of trust: the newest version, and the versions after `after`
   * (oldest first, every one of them). A source without them cannot prove a new log key.
   */
  trustRoot?(): Promise<unknown>;
  trustRoots?(after: number): Promise<unknown[]>;
}

/** What an auditor keeps: a signed tree head, the key that signed it, and its tree's right edge. */
export interface SavedHead {
  readonly kind: "PolityAuditTreeHead";
  readonly savedAt: string;
  readonly publicKeyPem: string;
  readonly treeHead: SignedTreeHead;
  /** Hashes (hex) of the perfect subtrees of `rangeNodes(0, treeSize)`, left to right. */
  readonly edge: readonly string[];
  /**
   * The federation's root when the head was saved, listing `publicKeyPem` as an audit-log
   * key: from it, a later log key is trusted only through a chain of roots, each signed by
   * its predecessor's root keys (a rotation of the log key), never because a hub serves it.
   */
  readonly root?: RootEnvelope;
}

export class SavedHeadError extends Error {
  override readonly name = "SavedHeadError";
}

/** Reads a saved head file strictly, and checks it against itself (signature, edge). */
export function parseSavedHead(value: unknown): SavedHead {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new SavedHeadError("a saved tree head is a JSON object");
  const v = value as Record<string, unknown>;
  if (v.kind !== "PolityAuditTreeHead") throw new SavedHeadError(`kind must be "PolityAuditTreeHead" (a file written by 'polity audit head --save')`);
  if (typeof v.publicKeyPem !== "string") throw new SavedHeadError("publicKeyPem must be the log's public key (PEM)");
  let key: KeyObject;
  try {
    key = createPublicKey(v.publicKeyPem);
  } catch {
    throw new SavedHeadError("publicKeyPem is not a public key in PEM");
  }
  let head: SignedTreeHead;
  try {
    head = verifyTreeHead(v.treeHead, key);
  } catch (error) {
    if (error instanceof TreeHeadError) throw new SavedHeadError(`treeHead: ${error.message}`);
    throw error;
  }
  if (!Array.isArray(v.edge) || v.edge.some((h) => typeof h !== "string" || !/^[0-9a-f]{64}$/.test(h))) throw new SavedHeadError("edge must be a list of 64-digit hex hashes");
  const edge = v.edge as string[];
  if (edge.length !== rangeNodes({ begin: 0, end: head.treeSize }).length || foldRange(edge.map((h) => Buffer.from(h, "hex"))).toString("hex") !== head.rootHash) {
    throw new SavedHeadError("edge does not fold to the tree head's root: the file was changed");
  }
  const root = v.root === undefined ? undefined : savedRoot(v.root, key);
  return { kind: "PolityAuditTreeHead", savedAt: typeof v.savedAt === "string" ? v.savedAt : "", publicKeyPem: v.publicKeyPem, treeHead: head, edge, ...(root === undefined ? {} : { root }) };
}

/** A saved root: signed by its own root keys, and listing the saved log key. */
function savedRoot(value: unknown, key: KeyObject): RootEnvelope {
  let envelope: RootEnvelope;
  try {
    envelope = parseRootEnvelope(value);
    verifyRootSelf(envelope);
  } catch (error) {
    if (error instanceof TrustError) throw new SavedHeadError(`root: ${error.message}`);
    throw error;
  }
  const allowed = auditKeyAllowed(envelope.signed, keyIdOf(key));
  if (!allowed.ok) throw new SavedHeadError(`root: ${allowed.reason}`);
  return envelope;
}

export type Finding =
  | { readonly kind: "key-changed"; readonly message: string }
  | { readonly kind: "key-unproven"; readonly message: string }
  | { readonly kind: "bad-head"; readonly message: string }
  | { readonly kind: "truncated"; readonly message: string; readonly from: number; readonly to: number }
  | { readonly kind: "rewritten"; readonly message: string; readonly from: number; readonly to: number }
  | { readonly kind: "forked"; readonly message: string }
  | { readonly kind: "entry-changed"; readonly message: string; readonly index: number }
  | { readonly kind: "missing"; readonly message: string };

export interface Report {
  readonly ok: boolean;
  readonly saved: SignedTreeHead;
  /** The newest head, when it verified. */
  readonly latest?: SignedTreeHead;
  readonly findings: readonly Finding[];
  /** Entries checked one by one (with `entries`). */
  readonly entriesChecked: number;
  /** The log key moved on since the saved head, proven by the federation's root chain. */
  readonly keyRotated?: { readonly from: string; readonly to: string; readonly rootVersion: number };
}

/** Fetches tiles once each; answers node hashes. */
class Tiles {
  private readonly cache = new Map<string, Promise<string[] | undefined>>();

  constructor(private readonly source: LogSource) {}

  async node(node: NodeId): Promise<Buffer | undefined> {
    const chunk = Math.floor(node.index / TILE_WIDTH);
    const key = `${node.level}/${chunk}`;
    let tile = this.cache.get(key);
    if (tile === undefined) this.cache.set(key, (tile = this.source.tile(node.level, chunk)));
    const hash = (await tile)?.[node.index % TILE_WIDTH];
    return hash === undefined ? undefined : Buffer.from(hash, "hex");
  }
}

const range = (nodes: readonly NodeId[], i: number) => {
  const node = nodes[i]!;
  return { from: node.index * 2 ** node.level, to: (node.index + 1) * 2 ** node.level };
};

/**
 * Checks the log against a saved head: the newest head is signed by the saved key, no
 * shorter, its tree still holds the saved tree's perfect subtrees, and a consistency proof
 * links the two. With `entries`, also reads every entry and checks it against its leaf.
 */
export async function verifyLog(saved: SavedHead, source: LogSource, options: { entries?: boolean; progress?: (done: number, total: number) => void } = {}): Promise<Report> {
  const findings: Finding[] = [];
  const head = saved.treeHead;
  let key = createPublicKey(saved.publicKeyPem);
  let keyRotated: Report["keyRotated"];
  const served = await source.key();
  if (served.publicKeyPem.trim() !== saved.publicKeyPem.trim()) {
    const successor = await provenSuccessor(saved, source, served.publicKeyPem);
    if ("reason" in successor) findings.push({ kind: successor.kind, message: successor.reason });
    else {
      key = successor.key;
      keyRotated = { from: keyIdOf(createPublicKey(saved.publicKeyPem)), to: keyIdOf(successor.key), rootVersion: successor.root.version };
    }
  }
  const report = (latest?: SignedTreeHead, entriesChecked = 0): Report => ({
    ok: findings.length === 0,
    saved: head,
    ...(latest === undefined ? {} : { latest }),
    findings,
    entriesChecked,
    ...(keyRotated === undefined ? {} : { keyRotated }),
  });
  let latest: SignedTreeHead;
  try {
    latest = verifyTreeHead(await source.head(), key);
  } catch (error) {
    if (!(error instanceof TreeHeadError)) throw error;
    findings.push({ kind: "bad-head", message: `the newest tree head does not verify: ${error.message}` });
    return report();
  }
  if (latest.origin !== head.origin) findings.push({ kind: "bad-head", message: `the newest head is of log ${latest.origin}, not ${head.origin}` });
  if (latest.treeSize < head.treeSize) {
    findings.push({
      kind: "truncated",
      from: latest.treeSize,
      to: head.treeSize,
      message: `the log was truncated: it now ends at ${latest.treeSize} entries, but the head you saved (${head.time}) covers ${head.treeSize}; entries ${latest.treeSize} to ${head.treeSize - 1} are gone`,
    });
    return report(latest);
  }
  // The saved tree's perfect subtrees never change as the log grows: compare each.
  const tiles = new Tiles(source);
  const nodes = rangeNodes({ begin: 0, end: head.treeSize });
  for (let i = 0; i < nodes.length; i++) {
    const now = await tiles.node(nodes[i]!);
    const { from, to } = range(nodes, i);
    if (now === undefined) {
      findings.push({ kind: "missing", message: `the log no longer holds the hashes of entries ${from} to ${to - 1}` });
      break;
    }
    if (now.toString("hex") !== saved.edge[i]) {
      findings.push({
        kind: "rewritten",
        from,
        to,
        message: `the log was rewritten: entries ${from} to ${to - 1} no longer hash to what they did when you saved the head (${head.time})${from === 0 ? "" : `; entries 0 to ${from - 1} are unchanged`}`,
      });
      break;
    }
  }
  // The empty tree is a prefix of every tree: RFC 9162 has no proof from it, and needs none.
  if (head.treeSize > 0 && (latest.treeSize > head.treeSize || latest.rootHash !== head.rootHash)) {
    try {
      const proof = await source.consistency(head.treeSize, latest.treeSize);
      verifyConsistency(
        head.treeSize,
        latest.treeSize,
        Buffer.from(head.rootHash, "hex"),
        Buffer.from(latest.rootHash, "hex"),
        proof.proof.map((h) => Buffer.from(h, "hex")),
      );
    } catch (error) {
      if (!(error instanceof ProofError)) throw error;
      findings.push({
        kind: "forked",
        message: `the newest head (${latest.treeSize} entries, ${latest.time}) does not extend the head you saved (${head.treeSize} entries): ${error.message}`,
      });
    }
  }
  let checked = 0;
  if (options.entries === true) checked = await checkEntries(latest, tiles, source, findings, options.progress);
  return report(latest, checked);
}

/** Reads every entry under `latest`, and checks each against its leaf and all against the root. */
async function checkEntries(latest: SignedTreeHead, tiles: Tiles, source: LogSource, findings: Finding[], progress?: (done: number, total: number) => void): Promise<number> {
  const leaves: Buffer[] = [];
  let next: number | null = 0;
  let changed = 0;
  while (next !== null && next < latest.treeSize) {
    const page: Awaited<ReturnType<LogSource["entries"]>> = await source.entries(next);
    for (const { index, entry } of page.items) {
      if (index >= latest.treeSize) break;
      if (index !== leaves.length) {
        findings.push({ kind: "missing", message: `entry ${leaves.length} is missing from the log's entries (the next one served is ${index})` });
        return leaves.length;
      }
      const hash = leafHash(Buffer.from(canonicalJson(entry), "utf8"));
      const stored = await tiles.node({ level: 0, index });
      if (stored === undefined || !stored.equals(hash)) {
        changed += 1;
        if (changed <= 20) {
          findings.push({
            kind: "entry-changed",
            index,
            message: `entry ${index} was changed after it was logged: its content hashes to ${hash.toString("hex")}, the tree holds ${stored?.toString("hex") ?? "nothing"}`,
          });
        }
      }
      leaves.push(hash);
    }
    progress?.(leaves.length, latest.treeSize);
    next = page.items.length === 0 ? null : page.next;
  }
  if (changed > 20) findings.push({ kind: "entry-changed", index: -1, message: `${changed - 20} more entries were changed after they were logged` });
  if (leaves.length < latest.treeSize) {
    findings.push({ kind: "missing", message: `the log serves ${leaves.length} entries, but its newest head covers ${latest.treeSize}` });
    return leaves.length;
  }
  const root = foldRange(rangeNodes({ begin: 0, end: latest.treeSize }).map((node) => subtreeHash(leaves, node)));
  if (changed === 0 && root.toString("hex") !== latest.rootHash) {
    findings.push({ kind: "rewritten", from: 0, to: latest.treeSize, message: "the entries hash to a root other than the newest head's: the tree's stored hashes disagree with its entries" });
  }
  return leaves.length;
}

function subtreeHash(leaves: readonly Buffer[], node: NodeId): Buffer {
  let level: Buffer[] = leaves.slice(node.index * 2 ** node.level, (node.index + 1) * 2 ** node.level);
  while (level.length > 1) {
    const up: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) up.push(foldRange([level[i]!, level[i + 1]!]));
    level = up;
  }
  return level[0]!;
}

/** Every root after `after`, oldest first, as the source pages them. */
async function rootsAfter(source: LogSource, after: number): Promise<RootEnvelope[]> {
  const chain: RootEnvelope[] = [];
  for (;;) {
    const page = await source.trustRoots!(after + chain.length);
    if (page.length === 0) return chain;
    for (const item of page) chain.push(parseRootEnvelope(item));
  }
}

/**
 * The log key a hub serves now, trusted only if the root chain from the saved root (each
 * version signed by its predecessor's root keys) lists it as an audit-log key. What a
 * rotation of the log key looks like to an auditor; anything else stays a finding.
 */
async function provenSuccessor(
  saved: SavedHead,
  source: LogSource,
  servedPem: string,
): Promise<{ key: KeyObject; root: RootMetadata; envelope: RootEnvelope } | { kind: "key-changed" | "key-unproven"; reason: string }> {
  const changed = "the hub's log key is not the key that signed your saved head";
  if (saved.root === undefined || source.trustRoots === undefined) {
    return { kind: "key-changed", reason: `${changed}, and your saved head holds no root of trust to prove a successor with (save it again with a newer polity): heads it signs now cannot be checked against yours` };
  }
  let servedKey: KeyObject;
  try {
    servedKey = createPublicKey(servedPem);
  } catch {
    return { kind: "key-unproven", reason: `${changed}, and what it serves is not a public key` };
  }
  try {
    const chain = await rootsAfter(source, saved.root.signed.version);
    const newest = verifyRootChain(saved.root.signed, chain);
    const allowed = auditKeyAllowed(newest, keyIdOf(servedKey));
    if (!allowed.ok) return { kind: "key-unproven", reason: `${changed}, and the root chain does not vouch for it: ${allowed.reason}` };
    return { key: servedKey, root: newest, envelope: chain.at(-1) ?? saved.root };
  } catch (error) {
    if (error instanceof TrustError) return { kind: "key-unproven", reason: `${changed}, and the root chain from your saved root (version ${saved.root.signed.version}) does not verify: ${error.message}` };
    throw error;
  }
}

/** The newest root, if it lists the log key as an audit-log key (else none is saved). */
async function rootListing(source: LogSource, keyPem: string): Promise<RootEnvelope | undefined> {
  if (source.trustRoot === undefined) return undefined;
  try {
    const envelope = parseRootEnvelope(await source.trustRoot());
    verifyRootSelf(envelope);
    return auditKeyAllowed(envelope.signed, keyIdOf(createPublicKey(keyPem))).ok ? envelope : undefined;
  } catch (error) {
    if (error instanceof TrustError) return undefined;
    throw error;
  }
}

/** A head to save: the newest head, verified, with its edge read from the log and checked against its root. */
export async function headToSave(source: LogSource, now: Date, pinnedKeyPem?: string, pinnedRoot?: RootEnvelope): Promise<SavedHead> {
  const { publicKeyPem } = await source.key();
  const keyPem = pinnedKeyPem ?? publicKeyPem;
  const head = verifyTreeHead(await source.head(), createPublicKey(keyPem));
  const tiles = new Tiles(source);
  const edge: string[] = [];
  for (const node of rangeNodes({ begin: 0, end: head.treeSize })) {
    const hash = await tiles.node(node);
    if (hash === undefined) throw new SavedHeadError(`the log does not serve the hash of subtree ${node.level}/${node.index}`);
    edge.push(hash.toString("hex"));
  }
  if (foldRange(edge.map((h) => Buffer.from(h, "hex"))).toString("hex") !== head.rootHash) {
    throw new SavedHeadError("the log's stored hashes do not fold to its signed root: its tree disagrees with its own head");
  }
  const root = pinnedRoot ?? (await rootListing(source, keyPem));
  return { kind: "PolityAuditTreeHead", savedAt: now.toISOString(), publicKeyPem: keyPem, treeHead: head, edge, ...(root === undefined ? {} : { root }) };
}

/**
 * The saved head moved forward to the head `verifyLog` checked, never to a newer one it did
 * not: a log that serves one head to the check and another (forked) one a moment later
 * cannot slip the other into the auditor's file. Undefined when the check failed.
 */
export async function advanceSavedHead(saved: SavedHead, report: Report, source: LogSource, now: Date): Promise<SavedHead | undefined> {
  const latest = report.latest;
  if (!report.ok || latest === undefined) return undefined;
  const checked: LogSource = {
    key: () => source.key(),
    head: async () => latest,
    tile: (level, chunk) => source.tile(level, chunk),
    consistency: (size1, size2) => source.consistency(size1, size2),
    entries: (start) => source.entries(start),
  };
  if (report.keyRotated === undefined) return headToSave(checked, now, saved.publicKeyPem, saved.root);
  // The key the check proved, with the root that proved it (proven again, not taken from the hub).
  const successor = await provenSuccessor(saved, source, (await source.key()).publicKeyPem);
  if ("reason" in successor || keyIdOf(successor.key) !== report.keyRotated.to) return undefined;
  return headToSave(checked, now, successor.key.export({ type: "spki", format: "pem" }).toString(), successor.envelope);
}
