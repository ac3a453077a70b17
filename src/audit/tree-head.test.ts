import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, verify, type KeyObject } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkpoint, noteKeyId, noteVerifierKey, parseSignedTreeHead, signedNote, signTreeHead, TreeHeadError, verifyTreeHead, type SignedTreeHead, type TreeHead } from "./tree-head.js";

const { privateKey, publicKey } = generateKeyPairSync("ed25519");
const other = generateKeyPairSync("ed25519");

const HEAD: TreeHead = {
  origin: "polity/audit",
  treeSize: 1234,
  rootHash: createHash("sha256").update("a root").digest("hex"),
  time: "2026-11-25T06:00:00.000Z",
};

/** The raw 32-byte Ed25519 public key, read from its JWK (not from the DER the code slices). */
function rawKey(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: "jwk" }).x!, "base64url");
}

/** C2SP signed-note key hash, computed here from its definition: SHA-256(name || "\n" || 0x01 || key)[:4]. */
function c2spKeyHash(name: string, key: KeyObject): string {
  return createHash("sha256")
    .update(Buffer.concat([Buffer.from(name, "utf8"), Buffer.from("\n"), Buffer.from([0x01]), rawKey(key)]))
    .digest()
    .subarray(0, 4)
    .toString("hex");
}

/** An Ed25519 private key from its 32-byte seed (PKCS #8 is a fixed prefix and the seed). */
function privateKeyFromSeed(seed: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]), format: "der", type: "pkcs8" });
}

describe("signed tree heads", () => {
  it("verify with the log key after signing, and come back with only their own fields", () => {
    const signed = signTreeHead(HEAD, privateKey);
    expect(verifyTreeHead({ ...signed, note: "extra fields are ignored" }, publicKey)).toEqual(signed);
    expect(Object.keys(signed).sort()).toEqual(["keyId", "origin", "rootHash", "signature", "time", "treeSize"]);
  });

  it("sign exactly the C2SP checkpoint text: origin, size, base64 root, then a time extension line", () => {
    expect(checkpoint(HEAD)).toBe(`polity/audit\n1234\n${Buffer.from(HEAD.rootHash, "hex").toString("base64")}\ntime 2026-11-25T06:00:00.000Z\n`);
    const signed = signTreeHead(HEAD, privateKey);
    expect(verify(null, Buffer.from(checkpoint(HEAD), "utf8"), publicKey, Buffer.from(signed.signature, "base64"))).toBe(true);
  });

  it("are refused when any signed field is changed", () => {
    const signed = signTreeHead(HEAD, privateKey);
    const root = Buffer.from(signed.rootHash, "hex");
    root[31] = root[31]! ^ 1;
    const changes: Partial<SignedTreeHead>[] = [
      { origin: "polity/audit2" },
      { treeSize: 1233 },
      { treeSize: 1235 },
      { rootHash: root.toString("hex") },
      { time: "2026-11-25T06:00:00.001Z" },
    ];
    for (const change of changes) {
      expect(() => verifyTreeHead({ ...signed, ...change }, publicKey), JSON.stringify(change)).toThrow(TreeHeadError);
    }
  });

  it("are refused when the signature or the key id is changed, or another key verifies", () => {
    const signed = signTreeHead(HEAD, privateKey);
    const signature = Buffer.from(signed.signature, "base64");
    for (let i = 0; i < signature.length; i += 7) {
      const flipped = Buffer.from(signature);
      flipped[i] = flipped[i]! ^ 0x10;
      expect(() => verifyTreeHead({ ...signed, signature: flipped.toString("base64") }, publicKey), `byte ${i}`).toThrow(/does not verify with the log key/);
    }
    expect(() => verifyTreeHead({ ...signed, keyId: "00000000" }, publicKey)).toThrow(/signed by key 00000000, not the log key/);
    expect(() => verifyTreeHead(signed, other.publicKey)).toThrow(TreeHeadError);
    // Signed by another key, and naming that key: refused by its key id first.
    expect(() => verifyTreeHead(signTreeHead(HEAD, other.privateKey), publicKey)).toThrow(/not the log key/);
  });

  it("are refused when the signature is spelt in another base64 that decodes to the same bytes", () => {
    const signed = signTreeHead(HEAD, privateKey);
    // 64 bytes end in a group of one byte: the second-to-last digit's low four bits are padding.
    const last = signed.signature[85]!;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const respelt = `${signed.signature.slice(0, 85)}${alphabet[alphabet.indexOf(last) | 0x01]}==`;
    expect(respelt).not.toBe(signed.signature);
    expect(Buffer.from(respelt, "base64").equals(Buffer.from(signed.signature, "base64"))).toBe(true);
    expect(() => verifyTreeHead({ ...signed, signature: respelt }, publicKey)).toThrow(/signature must be the base64 of 64 bytes/);
  });

  it("fail after any single change, for any head (property)", () => {
    const heads = fc.record({
      origin: fc.stringMatching(/^[\x21-\x7e]{1,40}$/),
      treeSize: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
      rootHash: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString("hex")),
      time: fc.date({ min: new Date("2000-01-01T00:00:00Z"), max: new Date("2100-01-01T00:00:00Z"), noInvalidDate: true }).map((d) => d.toISOString()),
    });
    fc.assert(
      fc.property(heads, fc.nat(), (head, pick) => {
        const signed = signTreeHead(head, privateKey);
        expect(verifyTreeHead(signed, publicKey)).toEqual(signed);
        const changed: SignedTreeHead[] = [
          { ...signed, origin: `${signed.origin}x` },
          { ...signed, treeSize: signed.treeSize === 0 ? 1 : signed.treeSize - 1 },
          { ...signed, rootHash: `${signed.rootHash.slice(0, 63)}${signed.rootHash[63] === "0" ? "1" : "0"}` },
          { ...signed, time: new Date(Date.parse(signed.time) + 1).toISOString() },
        ];
        expect(() => verifyTreeHead(changed[pick % changed.length], publicKey)).toThrow(TreeHeadError);
      }),
      { numRuns: 200 },
    );
  });

  it("refuse malformed heads before checking any signature, saying which field is wrong", () => {
    const signed = signTreeHead(HEAD, privateKey);
    const cases: [unknown, RegExp][] = [
      [null, /a JSON object/],
      [[signed], /a JSON object/],
      ["a head", /a JSON object/],
      [{ ...signed, origin: undefined }, /origin/],
      [{ ...signed, origin: "" }, /origin/],
      [{ ...signed, origin: "polity audit" }, /origin/],
      [{ ...signed, origin: "x".repeat(256) }, /origin/],
      [{ ...signed, treeSize: -1 }, /treeSize/],
      [{ ...signed, treeSize: 1.5 }, /treeSize/],
      [{ ...signed, treeSize: "1234" }, /treeSize/],
      [{ ...signed, treeSize: 2 ** 53 }, /treeSize/],
      [{ ...signed, rootHash: signed.rootHash.toUpperCase() }, /rootHash/],
      [{ ...signed, rootHash: signed.rootHash.slice(2) }, /rootHash/],
      [{ ...signed, rootHash: `${signed.rootHash}00` }, /rootHash/],
      [{ ...signed, time: "2026-11-25T06:00:00Z" }, /time/],
      [{ ...signed, time: "2026-11-25T07:00:00.000+01:00" }, /time/],
      [{ ...signed, time: "2026-13-01T00:00:00.000Z" }, /time/],
      [{ ...signed, time: "2026-02-30T00:00:00.000Z" }, /time/],
      [{ ...signed, time: "2026-11-25T24:00:00.000Z" }, /time/],
      [{ ...signed, keyId: undefined }, /keyId/],
      [{ ...signed, keyId: signed.keyId.toUpperCase().replace(/[0-9]/g, "A") }, /keyId/],
      [{ ...signed, keyId: `${signed.keyId}00` }, /keyId/],
      [{ ...signed, signature: undefined }, /signature/],
      [{ ...signed, signature: Buffer.alloc(63).toString("base64") }, /signature/],
      [{ ...signed, signature: Buffer.from(signed.signature, "base64").toString("base64url") }, /signature/],
    ];
    for (const [value, message] of cases) {
      expect(() => parseSignedTreeHead(value), JSON.stringify(value)).toThrow(message);
      expect(() => verifyTreeHead(value, publicKey), JSON.stringify(value)).toThrow(TreeHeadError);
    }
  });

  it("are signed only by an Ed25519 key, for a well-formed head", () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    expect(() => signTreeHead(HEAD, ec.privateKey)).toThrow(/must be an Ed25519 key/);
    expect(() => noteKeyId(HEAD.origin, ec.publicKey)).toThrow(/must be an Ed25519 key/);
    expect(() => signTreeHead({ ...HEAD, treeSize: -1 }, privateKey)).toThrow(/treeSize/);
  });
});

describe("tree heads as C2SP signed notes", () => {
  it("name their key by the C2SP key hash: SHA-256(origin || newline || 0x01 || raw key), first 4 bytes", () => {
    expect(noteKeyId(HEAD.origin, publicKey)).toBe(c2spKeyHash(HEAD.origin, publicKey));
    expect(noteKeyId("another/log", publicKey)).toBe(c2spKeyHash("another/log", publicKey));
    expect(signTreeHead(HEAD, privateKey).keyId).toBe(c2spKeyHash(HEAD.origin, publicKey));
  });

  it("agree with the Go reference's example key (golang.org/x/mod/sumdb/note): its key hash, verifier key and signature", () => {
    // The PeterNeumann key and note of note_test.go.
    const seed = Buffer.from("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "base64").subarray(1);
    const key = privateKeyFromSeed(seed);
    const pub = createPublicKey(key);
    expect(noteKeyId("PeterNeumann", pub)).toBe("c74f20a3");
    expect(noteVerifierKey("PeterNeumann", pub)).toBe("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
    const text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const blob = Buffer.from("x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=", "base64");
    expect(blob.subarray(0, 4).toString("hex")).toBe("c74f20a3");
    expect(verify(null, Buffer.from(text), pub, blob.subarray(4))).toBe(true);
  });

  it("print as the checkpoint, a blank line, and one signature line a note verifier opens with the verifier key", () => {
    const signed = signTreeHead(HEAD, privateKey);
    const note = signedNote(signed);
    const [text, signatures] = note.split("\n\n") as [string, string];
    expect(`${text}\n`).toBe(checkpoint(HEAD));
    const line = /^\u2014 (\S+) ([A-Za-z0-9+/]+=*)\n$/.exec(signatures);
    expect(line).not.toBeNull();
    expect(line![1]).toBe(HEAD.origin);
    const blob = Buffer.from(line![2]!, "base64");
    expect(blob.length).toBe(68);
    // Open it as a verifier holding only the verifier key would.
    // <name>+<hash>+<key>: the key's base64 may itself hold "+".
    const [, name, hash, keyText] = /^([^+]+)\+([0-9a-f]{8})\+(.+)$/.exec(noteVerifierKey(HEAD.origin, publicKey)) as unknown as [string, string, string, string];
    const keyBytes = Buffer.from(keyText, "base64");
    expect([name, keyBytes[0], keyBytes.length]).toEqual([HEAD.origin, 0x01, 33]);
    expect(blob.subarray(0, 4).toString("hex")).toBe(hash);
    const verifierKey = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: keyBytes.subarray(1).toString("base64url") }, format: "jwk" });
    expect(verify(null, Buffer.from(`${text}\n`, "utf8"), verifierKey, blob.subarray(4))).toBe(true);
  });
});
