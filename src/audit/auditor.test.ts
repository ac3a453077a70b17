import { createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { describe, expect, it } from "vitest";
import { advanceSavedHead, headToSave, parseSavedHead, SavedHeadError, verifyLog, type LogSource, type SavedHead } from "./auditor.js";
import { encodeEntry, type AuditEntry, type AuditEvent } from "./entry.js";
import { CompactRange, ProofError, TILE_WIDTH, assembleProof, consistencyRanges, foldRange, rangeNodes } from "./merkle.js";
import { signTreeHead } from "./tree-head.js";
import { keyIdOf } from "../bundle/index.js";
import { ROOT_TYPE, signRoot, type RootEnvelope, type RootMetadata } from "../trust/index.js";

const ORIGIN = "polity/audit";
const START = Date.parse("2026-11-25T06:00:00.000Z");
const logKey = generateKeyPairSync("ed25519");
const pem = (key: KeyObject) => key.export({ type: "spki", format: "pem" }).toString();

function event(i: number, actor = "user:admin"): AuditEvent {
  return { kind: "token.created", actor, cluster: null, region: null, correlationId: `change-${i}`, data: { id: `t${i}`, name: `token-${i}` } };
}

/**
 * A log served from memory the way the hub serves it (entries, tiles of perfect subtrees,
 * signed heads, consistency proofs), which a test can then tamper with.
 */
class MemoryLog implements LogSource {
  /** What `entries` serves (the text an attacker may change). */
  served: AuditEntry[] = [];
  /** What the tree was built from. */
  private leaves: Buffer[] = [];
  private levels: Buffer[][] = [];
  private signed: unknown;
  signingKey: KeyObject = logKey.privateKey;
  publicKeyPem = pem(logKey.publicKey);

  constructor(size: number) {
    for (let i = 0; i < size; i++) this.append(event(i));
    this.sign();
  }

  get size(): number {
    return this.leaves.length;
  }

  append(e: AuditEvent): void {
    const encoded = encodeEntry(e, new Date(START + this.leaves.length * 1000));
    this.served.push(encoded.entry);
    this.leaves.push(encoded.leafHash);
    this.rebuild();
  }

  /** Rebuilds every stored subtree from the leaves, as a hub told to rebuild its tree does. */
  private rebuild(): void {
    this.levels = [];
    const range = new CompactRange(0, []);
    for (const leaf of this.leaves) for (const node of range.append(leaf)) (this.levels[node.level] ??= [])[node.index] = node.hash;
  }

  sign(time = new Date(START + this.size * 1000 + 500)): void {
    this.signed = signTreeHead({ origin: ORIGIN, treeSize: this.size, rootHash: this.root(this.size).toString("hex"), time: time.toISOString() }, this.signingKey);
  }

  private root(size: number): Buffer {
    return foldRange(rangeNodes({ begin: 0, end: size }).map((node) => this.levels[node.level]![node.index]!));
  }

  /** Drops the newest entries and everything built on them; a head for what is left. */
  truncate(size: number): void {
    this.leaves = this.leaves.slice(0, size);
    this.served = this.served.slice(0, size);
    this.rebuild();
    this.sign();
  }

  /** Replaces an entry and its leaf, rebuilds the tree, and signs it with the log's own key. */
  rewrite(index: number, e: AuditEvent): void {
    const encoded = encodeEntry(e, new Date(START + index * 1000));
    this.served[index] = encoded.entry;
    this.leaves[index] = encoded.leafHash;
    this.rebuild();
    this.sign();
  }

  /** Changes an entry's text in place, leaving its leaf hash and the tree as they were. */
  changeText(index: number, e: AuditEvent): void {
    this.served[index] = encodeEntry(e, new Date(START + index * 1000)).entry;
  }

  forgetTile(level: number, chunk: number): void {
    this.levels[level]!.splice(chunk * TILE_WIDTH, TILE_WIDTH, ...new Array<Buffer>(TILE_WIDTH));
  }

  async key(): Promise<{ publicKeyPem: string }> {
    return { publicKeyPem: this.publicKeyPem };
  }

  async head(): Promise<unknown> {
    return JSON.parse(JSON.stringify(this.signed));
  }

  async tile(level: number, chunk: number): Promise<string[] | undefined> {
    const hashes = (this.levels[level] ?? []).slice(chunk * TILE_WIDTH, (chunk + 1) * TILE_WIDTH);
    if (hashes.length === 0 || hashes[0] === undefined) return undefined;
    return hashes.map((h) => h.toString("hex"));
  }

  async consistency(size1: number, size2: number) {
    // The hub answers 400 for proofs it cannot give; its HTTP source makes that a ProofError.
    if (size1 === 0 || size1 > size2 || size2 > this.size) throw new ProofError(`the hub gives no consistency proof from ${size1} to ${size2}`);
    const lookup = (node: { level: number; index: number }) => this.levels[node.level]![node.index]!;
    return {
      type: "consistency" as const,
      size1,
      size2,
      root1: this.root(size1).toString("hex"),
      root2: this.root(size2).toString("hex"),
      proof: assembleProof(consistencyRanges(size1, size2), lookup).map((h) => h.toString("hex")),
    };
  }

  async entries(start: number) {
    const items = this.served.slice(start, start + 7).map((entry, i) => ({ index: start + i, entry: JSON.parse(JSON.stringify(entry)) as unknown }));
    return { items, next: start + 7 < this.served.length ? start + 7 : null };
  }
}

async function save(log: MemoryLog): Promise<SavedHead> {
  // Through JSON, as the file on disk.
  return parseSavedHead(JSON.parse(JSON.stringify(await headToSave(log, new Date(START)))));
}

describe("verifying a log against a saved tree head", () => {
  it("finds nothing wrong with a log that only grew, and checks every entry with --entries", async () => {
    const log = new MemoryLog(40);
    const saved = await save(log);
    for (let i = 40; i < 300; i++) log.append(event(i));
    log.sign();
    const progress: number[] = [];
    const report = await verifyLog(saved, log, { entries: true, progress: (done) => progress.push(done) });
    expect(report.findings).toEqual([]);
    expect(report).toMatchObject({ ok: true, entriesChecked: 300, latest: { treeSize: 300 } });
    expect(progress.at(-1)).toBe(300);
  });

  it("finds nothing wrong with the very log it saved", async () => {
    const log = new MemoryLog(13);
    const report = await verifyLog(await save(log), log, { entries: true });
    expect(report.findings).toEqual([]);
  });

  it("finds nothing wrong with a log that grew from empty", async () => {
    const log = new MemoryLog(0);
    const saved = await save(log);
    expect(saved.treeHead.treeSize).toBe(0);
    for (let i = 0; i < 5; i++) log.append(event(i));
    log.sign();
    const report = await verifyLog(saved, log, { entries: true });
    expect(report.findings).toEqual([]);
  });

  it("reports a truncated log, naming the entries that are gone", async () => {
    const log = new MemoryLog(40);
    const saved = await save(log);
    log.truncate(33);
    const report = await verifyLog(saved, log);
    expect(report.ok).toBe(false);
    expect(report.findings).toEqual([
      {
        kind: "truncated",
        from: 33,
        to: 40,
        message: `the log was truncated: it now ends at 33 entries, but the head you saved (${saved.treeHead.time}) covers 40; entries 33 to 39 are gone`,
      },
    ]);
  });

  it("reports a log rewritten and re-signed with its own key: the first subtree that changed, the entries before it intact, and the fork", async () => {
    const log = new MemoryLog(40);
    const saved = await save(log);
    // 40 entries are subtrees [0, 32) and [32, 40): change entry 35.
    log.rewrite(35, event(35, "user:someone-else"));
    const report = await verifyLog(saved, log);
    expect(report.findings.map((f) => f.kind)).toEqual(["rewritten", "forked"]);
    expect(report.findings[0]).toMatchObject({ from: 32, to: 40 });
    expect(report.findings[0]!.message).toMatch(/^the log was rewritten: entries 32 to 39 no longer hash to what they did when you saved the head \(.*\); entries 0 to 31 are unchanged$/);
    expect(report.findings[1]!.message).toMatch(/^the newest head \(40 entries, .*\) does not extend the head you saved \(40 entries\): two trees of size 40 with different roots: the log forked$/);
  });

  it("reports a log rewritten early and grown since, with the proof that fails", async () => {
    const log = new MemoryLog(40);
    const saved = await save(log);
    log.rewrite(3, event(3, "user:someone-else"));
    for (let i = 40; i < 50; i++) log.append(event(i));
    log.sign();
    const report = await verifyLog(saved, log);
    expect(report.findings.map((f) => f.kind)).toEqual(["rewritten", "forked"]);
    expect(report.findings[0]).toMatchObject({ from: 0, to: 32 });
    expect(report.findings[0]!.message).not.toMatch(/unchanged/);
    expect(report.findings[1]!.message).toMatch(/does not extend the head you saved \(40 entries\): the proof does not lead to root1/);
  });

  it("sees an entry changed in place with its leaf hash kept only when reading entries, and names it", async () => {
    const log = new MemoryLog(40);
    const saved = await save(log);
    log.changeText(17, event(17, "user:someone-else"));
    expect((await verifyLog(saved, log)).findings).toEqual([]);
    const report = await verifyLog(saved, log, { entries: true });
    expect(report.findings).toHaveLength(1);
    expect(report.findings[0]).toMatchObject({ kind: "entry-changed", index: 17 });
    expect(report.findings[0]!.message).toMatch(/^entry 17 was changed after it was logged: its content hashes to [0-9a-f]{64}, the tree holds [0-9a-f]{64}$/);
  });

  it("reports a log that no longer serves the hashes the saved head covers", async () => {
    const log = new MemoryLog(300);
    const saved = await save(log);
    // 300 entries are subtrees [0, 256), [256, 288), [288, 296), [296, 300): lose level 5's tile.
    log.forgetTile(5, 0);
    const report = await verifyLog(saved, log);
    expect(report.findings).toEqual([{ kind: "missing", message: "the log no longer holds the hashes of entries 256 to 287" }]);
  });

  it("reports a head signed by another key, and a hub that serves another key", async () => {
    const log = new MemoryLog(10);
    const saved = await save(log);
    const impostor = generateKeyPairSync("ed25519");
    log.signingKey = impostor.privateKey;
    log.publicKeyPem = pem(impostor.publicKey);
    log.sign();
    const report = await verifyLog(saved, log);
    expect(report.findings.map((f) => f.kind)).toEqual(["key-changed", "bad-head"]);
    expect(report.findings[1]!.message).toMatch(/^the newest tree head does not verify: the tree head is signed by key [0-9a-f]{8}, not the log key [0-9a-f]{8}$/);
  });
});

describe("moving a saved head forward (verify --update)", () => {
  it("moves it to the head that was checked, not a newer one served after the check", async () => {
    const log = new MemoryLog(40);
    const saved = await save(log);
    for (let i = 40; i < 45; i++) log.append(event(i));
    log.sign();
    const report = await verifyLog(saved, log);
    expect(report.ok).toBe(true);
    for (let i = 45; i < 50; i++) log.append(event(i));
    log.sign();
    const next = await advanceSavedHead(saved, report, log, new Date(START));
    expect(next?.treeHead).toEqual(report.latest);
    expect(next?.treeHead.treeSize).toBe(45);
  });

  it("refuses to move it when the log forked between the check and the update", async () => {
    const log = new MemoryLog(40);
    const saved = await save(log);
    for (let i = 40; i < 45; i++) log.append(event(i));
    log.sign();
    const report = await verifyLog(saved, log);
    // Behind the auditor's back: an early entry rewritten, the tree rebuilt and re-signed.
    log.rewrite(2, event(2, "user:someone-else"));
    await expect(advanceSavedHead(saved, report, log, new Date(START))).rejects.toThrow(SavedHeadError);
  });

  it("leaves it where it was when the check failed", async () => {
    const log = new MemoryLog(40);
    const saved = await save(log);
    log.truncate(30);
    const report = await verifyLog(saved, log);
    expect(await advanceSavedHead(saved, report, log, new Date(START))).toBeUndefined();
  });
});

describe("saving a tree head", () => {
  it("keeps the newest head, its key, and its tree's right edge, which folds to its root", async () => {
    const log = new MemoryLog(300);
    const saved = await headToSave(log, new Date(START));
    expect(saved).toMatchObject({ kind: "PolityAuditTreeHead", savedAt: new Date(START).toISOString(), publicKeyPem: pem(logKey.publicKey), treeHead: { origin: ORIGIN, treeSize: 300 } });
    expect(saved.edge).toHaveLength(rangeNodes({ begin: 0, end: 300 }).length);
    expect(parseSavedHead(JSON.parse(JSON.stringify(saved)))).toEqual(saved);
  });

  it("refuses a log whose stored hashes disagree with its signed root", async () => {
    const log = new MemoryLog(40);
    const tampered = new MemoryLog(40);
    tampered.rewrite(35, event(35, "user:someone-else"));
    // The tiles of one log under the (validly signed) head of the other.
    const mixed: LogSource = { key: () => log.key(), head: () => tampered.head(), tile: (l, c) => log.tile(l, c), consistency: (a, b) => log.consistency(a, b), entries: (n) => log.entries(n) };
    await expect(headToSave(mixed, new Date(START))).rejects.toThrow(/do not fold to its signed root/);
  });

  it("refuses a saved file that was edited: its head, its edge, its key or its kind", async () => {
    const saved = JSON.parse(JSON.stringify(await headToSave(new MemoryLog(40), new Date(START)))) as { treeHead: { treeSize: number }; edge: string[]; publicKeyPem: string; kind: string };
    const edit = (change: (file: typeof saved) => void) => {
      const file = structuredClone(saved);
      change(file);
      return () => parseSavedHead(file);
    };
    expect(edit((f) => (f.treeHead.treeSize = 39))).toThrow(SavedHeadError);
    expect(edit((f) => (f.treeHead.treeSize = 39))).toThrow(/^treeHead: the signature of the tree head of size 39 does not verify/);
    expect(edit((f) => (f.edge[1] = f.edge[0]!))).toThrow(/edge does not fold to the tree head's root: the file was changed/);
    expect(edit((f) => f.edge.pop())).toThrow(/edge does not fold/);
    expect(edit((f) => (f.publicKeyPem = pem(generateKeyPairSync("ed25519").publicKey)))).toThrow(/treeHead: the tree head is signed by key/);
    expect(edit((f) => (f.publicKeyPem = "not a key"))).toThrow(/publicKeyPem is not a public key/);
    expect(edit((f) => (f.kind = "TreeHead"))).toThrow(/kind must be "PolityAuditTreeHead"/);
    expect(() => parseSavedHead([])).toThrow(/a JSON object/);
  });
});

describe("a log key rotated under the root of trust", () => {
  const rootKey = generateKeyPairSync("ed25519");
  const forger = generateKeyPairSync("ed25519");
  const forgerRoot = generateKeyPairSync("ed25519");
  const bundles = generateKeyPairSync("ed25519").publicKey;
  const id = (key: KeyObject) => keyIdOf(key);

  /** Root `version` listing `audit` as the log key, signed by `signers`' private keys. */
  function rootVersion(version: number, audit: KeyObject, signers: KeyObject[] = [rootKey.privateKey], root = rootKey.publicKey): RootEnvelope {
    const signed: RootMetadata = {
      type: ROOT_TYPE,
      specVersion: 1,
      federation: "acme",
      version,
      issuedAt: "2026-12-01T00:00:00.000Z",
      expires: "2027-12-01T00:00:00.000Z",
      keys: {
        [id(root)]: { publicKey: pem(root), purpose: "root" },
        [id(bundles)]: { publicKey: pem(bundles), purpose: "bundles" },
        [id(audit)]: { publicKey: pem(audit), purpose: "audit-log" },
      },
      roles: { root: { keyIds: [id(root)], threshold: 1 }, bundles: { keyIds: [id(bundles)], threshold: 1 }, "audit-log": { keyIds: [id(audit)], threshold: 1 } },
      delegations: [],
      revoked: [],
    };
    return signRoot(signed, signers);
  }

  /** The log, with the federation's roots served beside it as the hub serves them. */
  class RootedLog extends MemoryLog {
    roots: RootEnvelope[] = [rootVersion(1, logKey.publicKey)];
    async trustRoot(): Promise<unknown> {
      return JSON.parse(JSON.stringify(this.roots.at(-1)));
    }
    async trustRoots(after: number): Promise<unknown[]> {
      return this.roots.filter((r) => r.signed.version > after).slice(0, 2).map((r) => JSON.parse(JSON.stringify(r)) as unknown);
    }
    /** A new root version listing `to` (a private key: its public half) as the log key. */
    rotate(to: KeyObject): void {
      this.roots.push(rootVersion(this.roots.length + 1, createPublicKey(to)));
    }
  }

  it("saves the root with the head, and follows a rotation the root chain proves", async () => {
    const log = new RootedLog(30);
    const saved = await save(log);
    expect(saved.root?.signed.version).toBe(1);
    const next = generateKeyPairSync("ed25519");
    log.rotate(next.privateKey);
    log.rotate(next.privateKey);
    log.rotate(next.privateKey);
    log.signingKey = next.privateKey;
    log.publicKeyPem = pem(next.publicKey);
    for (let i = 30; i < 35; i++) log.append(event(i));
    log.sign();
    const report = await verifyLog(saved, log, { entries: true });
    expect(report.findings).toEqual([]);
    expect(report.keyRotated).toEqual({ from: id(logKey.publicKey), to: id(next.publicKey), rootVersion: 4 });
    const moved = await advanceSavedHead(saved, report, log, new Date(START));
    expect(moved?.publicKeyPem).toBe(pem(next.publicKey));
    expect(moved?.root?.signed.version).toBe(4);
    expect((await verifyLog(parseSavedHead(JSON.parse(JSON.stringify(moved))), log)).findings).toEqual([]);
  });

  it("refuses a new log key that a root not signed by the saved root's keys lists", async () => {
    const log = new RootedLog(12);
    const saved = await save(log);
    log.roots.push(rootVersion(2, forger.publicKey, [forgerRoot.privateKey], forgerRoot.publicKey));
    log.signingKey = forger.privateKey;
    log.publicKeyPem = pem(forger.publicKey);
    log.sign();
    const report = await verifyLog(saved, log);
    expect(report.ok).toBe(false);
    expect(report.keyRotated).toBeUndefined();
    expect(report.findings[0]).toEqual({
      kind: "key-unproven",
      message: "the hub's log key is not the key that signed your saved head, and the root chain from your saved root (version 1) does not verify: root version 2 is signed by 0 of version 1's root keys; it needs 1",
    });
    expect(report.findings[1]!.kind).toBe("bad-head");
  });

  it("refuses a served key the newest root does not list, and a saved file whose root was altered", async () => {
    const log = new RootedLog(12);
    const saved = await save(log);
    log.rotate(logKey.privateKey);
    log.publicKeyPem = pem(forger.publicKey);
    const report = await verifyLog(saved, log);
    expect(report.findings[0]!.kind).toBe("key-unproven");
    expect(report.findings[0]!.message).toMatch(/the root chain does not vouch for it: key [0-9a-f]{12}… is not an audit-log key of root version 2$/);
    const altered = JSON.parse(JSON.stringify(saved)) as { root: { signed: { version: number } } };
    altered.root.signed.version = 9;
    expect(() => parseSavedHead(altered)).toThrow(/^root: root version 9 is signed by 0 of its own root keys; it needs 1$/);
  });

  it("keeps reporting a changed key for a head saved without a root", async () => {
    const plain = new MemoryLog(8);
    const saved = await save(plain);
    expect(saved.root).toBeUndefined();
    const next = generateKeyPairSync("ed25519");
    plain.publicKeyPem = pem(next.publicKey);
    expect((await verifyLog(saved, plain)).findings[0]!.message).toMatch(/holds no root of trust to prove a successor with/);
  });
});
