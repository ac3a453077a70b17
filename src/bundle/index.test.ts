/**
 * Bundles: signed, encoded, decoded and verified as an agent verifies what it is offered
 * and what it loads from its own disk. Every refusal has its reason, and no altered byte
 * of a bundle file is ever accepted.
 */
import { generateKeyPairSync } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { effectiveSet, policy } from "../../test/support/policy-sets.js";
import { canonicalJson, contentHash } from "../canonical/index.js";
import { BUNDLE_TYPE, BundleError, decodeBundle, encodeBundle, keyIdOf, sha256Hash, signBundle, signMetadata, verifyBundle, type Bundle, type BundleMetadata, type BundleProblem, type Trust } from "./index.js";

const hub = generateKeyPairSync("ed25519");
const impostor = generateKeyPairSync("ed25519");

const TARGET = effectiveSet([policy("require-team-label", { validations: [{ expression: "has(object.metadata.labels)" }] })]).bytes;
const ISSUED = "2026-11-25T06:00:00.000Z";
const EXPIRES = "2026-11-26T06:00:00.000Z";
const BEFORE_EXPIRY = new Date("2026-11-26T05:59:59.999Z");
const AT_EXPIRY = new Date(EXPIRES);

const TRUST: Trust = { publicKey: hub.publicKey, federation: "acme", region: "eu-west", cluster: "eu-west-1" };

function metadata(overrides: Partial<Omit<BundleMetadata, "type" | "specVersion">> = {}, target: Buffer = TARGET) {
  return {
    federation: "acme",
    region: "eu-west",
    cluster: "eu-west-1",
    version: 7,
    issuedAt: ISSUED,
    expires: EXPIRES,
    targetHash: contentHash(target),
    targetLength: target.length,
    ...overrides,
  };
}

function bundle(overrides: Partial<Omit<BundleMetadata, "type" | "specVersion">> = {}, target: Buffer = TARGET, key = hub.privateKey): Bundle {
  return signBundle(metadata(overrides, target), target, key);
}

/** The reason a bundle file is refused: decoding or verifying it, as an agent does. */
function refusal(file: Uint8Array, trust: Trust = TRUST, held?: { version: number; targetHash: string }, now: Date | undefined = BEFORE_EXPIRY): BundleProblem | "accepted" {
  try {
    verifyBundle(decodeBundle(file), trust, held, now);
    return "accepted";
  } catch (error) {
    if (error instanceof BundleError) return error.problem;
    throw error;
  }
}

describe("a bundle", () => {
  it("carries its cluster's facts and manifests hash under the signature: altered facts do not verify", () => {
    const facts = { kubernetesVersion: "v1.33.0", networkPolicy: true, zones: ["eu-west-1a"] };
    const file = encodeBundle(bundle({ facts, manifestsHash: `sha256:${"a".repeat(64)}` }));
    expect(verifyBundle(decodeBundle(file), TRUST, undefined, BEFORE_EXPIRY)).toMatchObject({ facts, manifestsHash: `sha256:${"a".repeat(64)}` });
    const altered = Buffer.from(file.toString("utf8").replace('"eu-west-1a"', '"us-east-1a"'), "utf8");
    expect(refusal(altered)).toBe("bad-signature");
    const notAnObject = Buffer.from(file.toString("utf8").replace(/"facts":\{[^}]*\}/, '"facts":["x"]'), "utf8");
    expect(refusal(notAnObject)).toBe("malformed");
  });

  it("survives signing, encoding, decoding and verifying unchanged", () => {
    const signed = bundle();
    const file = encodeBundle(signed);
    const decoded = decodeBundle(file);
    expect(decoded.envelope).toEqual(signed.envelope);
    expect(decoded.target.equals(TARGET)).toBe(true);
    expect(verifyBundle(decoded, TRUST, undefined, BEFORE_EXPIRY)).toEqual({ type: BUNDLE_TYPE, specVersion: 1, ...metadata() });
  });

  it("is one canonical JSON line of signed metadata, then the target's bytes", () => {
    const signed = bundle();
    const file = encodeBundle(signed).toString("utf8");
    const newline = file.indexOf("\n");
    expect(file.slice(0, newline)).toBe(canonicalJson(signed.envelope));
    expect(file.slice(newline + 1)).toBe(TARGET.toString("utf8"));
    expect(signed.envelope.signatures).toEqual([{ keyId: keyIdOf(hub.publicKey), sig: expect.stringMatching(/^[A-Za-z0-9+/]{86}==$/) }]);
  });

  it("names its target by the one content hash", () => {
    expect(bundle().envelope.signed.targetHash).toBe(contentHash(TARGET));
    expect(sha256Hash(TARGET)).toBe(contentHash(TARGET));
  });

  it("is accepted again at the version held when its contents are the same", () => {
    expect(refusal(encodeBundle(bundle()), TRUST, { version: 7, targetHash: contentHash(TARGET) })).toBe("accepted");
  });

  it("is accepted at a newer version than the one held", () => {
    expect(refusal(encodeBundle(bundle({ version: 8 })), TRUST, { version: 7, targetHash: "sha256:old" })).toBe("accepted");
  });
});

describe("an agent refuses a bundle", () => {
  it("whose signed metadata was altered after signing (bad signature)", () => {
    const signed = bundle();
    const altered: Bundle = { ...signed, envelope: { ...signed.envelope, signed: { ...signed.envelope.signed, version: 99 } } };
    expect(refusal(encodeBundle(altered))).toBe("bad-signature");
  });

  it("whose signature is not a signature at all (bad signature)", () => {
    const signed = bundle();
    const garbled: Bundle = { ...signed, envelope: { ...signed.envelope, signatures: [{ keyId: keyIdOf(hub.publicKey), sig: "not base64 at all" }] } };
    expect(refusal(encodeBundle(garbled))).toBe("bad-signature");
  });

  it("signed by a key other than the one pinned at enrolment (untrusted key)", () => {
    expect(refusal(encodeBundle(bundle({}, TARGET, impostor.privateKey)))).toBe("untrusted-key");
  });

  it("signed by another key under the pinned key's id (bad signature)", () => {
    const forged = signBundle(metadata(), TARGET, impostor.privateKey, keyIdOf(hub.publicKey));
    expect(refusal(encodeBundle(forged))).toBe("bad-signature");
  });

  it("for another cluster or another federation (wrong cluster)", () => {
    expect(refusal(encodeBundle(bundle({ cluster: "eu-west-2" })))).toBe("wrong-cluster");
    expect(refusal(encodeBundle(bundle({ federation: "other" })))).toBe("wrong-cluster");
    expect(refusal(encodeBundle(bundle({ region: "us-east" })))).toBe("wrong-region");
    expect(() => verifyBundle(bundle({ cluster: "eu-west-2" }), TRUST, undefined, BEFORE_EXPIRY)).toThrow(
      "the bundle is for cluster eu-west-2 of federation acme, not eu-west-1 of acme",
    );
  });

  it("older than the one it holds (rollback)", () => {
    expect(refusal(encodeBundle(bundle({ version: 6 })), TRUST, { version: 7, targetHash: contentHash(TARGET) })).toBe("rollback");
  });

  it("claiming the version it holds with other contents (equivocation)", () => {
    expect(refusal(encodeBundle(bundle()), TRUST, { version: 7, targetHash: "sha256:something-else" })).toBe("equivocation");
  });

  it("offered at or after its expiry, but not a moment before (expired)", () => {
    const file = encodeBundle(bundle());
    expect(refusal(file, TRUST, undefined, AT_EXPIRY)).toBe("expired");
    expect(refusal(file, TRUST, undefined, new Date("2027-01-01T00:00:00Z"))).toBe("expired");
    expect(refusal(file, TRUST, undefined, BEFORE_EXPIRY)).toBe("accepted");
  });

  it("whose target is not the one its metadata names (target mismatch), by content or by length", () => {
    const signed = bundle();
    const other = Buffer.from(TARGET);
    other[other.length - 2] = "x".charCodeAt(0);
    expect(refusal(encodeBundle({ ...signed, target: other }))).toBe("target-mismatch");
    expect(refusal(encodeBundle({ ...signed, target: Buffer.concat([TARGET, Buffer.from(" ")]) }))).toBe("target-mismatch");
  });

  it("with a target shared by clusters: each cluster's metadata binds it, and no other cluster's, older or swapped bundle passes", () => {
    // The hub signs one small metadata line per cluster over the one target they share.
    const shared = TARGET;
    const other = effectiveSet([policy("something-else", { validations: [{ expression: "true" }] })]).bytes;
    const mine = { envelope: signMetadata(metadata({}, shared), hub.privateKey), target: shared };
    const theirs = { envelope: signMetadata(metadata({ cluster: "eu-west-2" }, shared), hub.privateKey), target: shared };
    const theirsOther = { envelope: signMetadata(metadata({ cluster: "eu-west-2", version: 9 }, other), hub.privateKey), target: other };
    expect(refusal(encodeBundle(mine))).toBe("accepted");
    expect(refusal(encodeBundle(theirs), { ...TRUST, cluster: "eu-west-2" })).toBe("accepted");
    // Another cluster's bundle over the very same target is still another cluster's.
    expect(refusal(encodeBundle(theirs))).toBe("wrong-cluster");
    // My metadata with a target the hub signed for someone else: the hash my metadata names decides.
    expect(refusal(encodeBundle({ envelope: mine.envelope, target: theirsOther.target }))).toBe("target-mismatch");
    // An older bundle of mine over the shared target is a rollback, whatever target it carries.
    const older = { envelope: signMetadata(metadata({ version: 6 }, shared), hub.privateKey), target: shared };
    expect(refusal(encodeBundle(older), TRUST, { version: 7, targetHash: contentHash(shared) })).toBe("rollback");
    // The same version of mine naming another shared target is equivocation.
    const twin = { envelope: signMetadata(metadata({}, other), hub.privateKey), target: other };
    expect(refusal(encodeBundle(twin), TRUST, { version: 7, targetHash: contentHash(shared) })).toBe("equivocation");
    // signBundle is the same signature as signMetadata with the target beside it.
    expect(signBundle(metadata({}, shared), shared, hub.privateKey).envelope).toEqual(mine.envelope);
  });

  it("that is not a bundle file (malformed): no metadata line, no JSON, or metadata lacking a field", () => {
    expect(refusal(Buffer.from("just some text"))).toBe("malformed");
    expect(refusal(Buffer.from("{not json\n{}"))).toBe("malformed");
    expect(refusal(Buffer.from("null\n{}"))).toBe("malformed");
    const signed = bundle().envelope.signed as unknown as Record<string, unknown>;
    const required = ["type", "specVersion", "federation", "region", "cluster", "version", "issuedAt", "expires", "targetHash", "targetLength"];
    for (const field of required) {
      const lacking = { signatures: [], signed: { ...signed, [field]: undefined } };
      expect(refusal(Buffer.from(`${canonicalJson(lacking)}\n`)), field).toBe("malformed");
    }
    expect(refusal(Buffer.from(`${canonicalJson({ signatures: [], signed: { ...signed, specVersion: 2 } })}\n`))).toBe("malformed");
    expect(refusal(Buffer.from(`${canonicalJson({ signatures: [], signed: { ...signed, version: 1.5 } })}\n`))).toBe("malformed");
    expect(refusal(Buffer.from(`${canonicalJson({ signed })}\n`))).toBe("malformed");
  });
});

describe("a bundle loaded from the agent's own disk", () => {
  it("is verified for everything but expiry: it keeps being enforced after it expires", () => {
    const file = encodeBundle(bundle());
    expect(refusal(file, TRUST, undefined, undefined)).toBe("accepted");
    const tampered = Buffer.from(file);
    tampered[tampered.length - 2] = tampered[tampered.length - 2]! ^ 1;
    expect(refusal(tampered, TRUST, undefined, undefined)).toBe("target-mismatch");
  });
});

describe("no altered byte is accepted", () => {
  const file = encodeBundle(bundle());
  const newline = file.indexOf(10);

  /** The file with byte `at` replaced by a different byte. */
  const alter = (at: number, delta: number) => {
    const copy = Buffer.from(file);
    copy[at] = (copy[at]! + delta) % 256;
    return copy;
  };

  it("in the signed envelope", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: newline }), fc.integer({ min: 1, max: 255 }), (at, delta) => {
        expect(refusal(alter(at, delta))).not.toBe("accepted");
      }),
      { numRuns: 500 },
    );
  });

  it("in the target", () => {
    fc.assert(
      fc.property(fc.integer({ min: newline + 1, max: file.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, delta) => {
        expect(refusal(alter(at, delta))).toBe("target-mismatch");
      }),
      { numRuns: 500 },
    );
  });

  it("nor any byte added or cut at the end", () => {
    expect(refusal(file.subarray(0, file.length - 1))).toBe("target-mismatch");
    expect(refusal(Buffer.concat([file, Buffer.from("\n")]))).toBe("target-mismatch");
  });
});
