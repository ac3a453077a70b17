/** The list a `bundles.published` audit entry names: canonical, sorted, and refused when its bytes do not hash to the name. */
import { describe, expect, it } from "vitest";
import { contentHash } from "../canonical/index.js";
import { decodePublication, encodePublication } from "./publication.js";

const A = { cluster: "eu-west-1", version: 4, envelopeHash: "sha256:aa", targetHash: "sha256:t1" };
const B = { cluster: "eu-west-2", version: 9, envelopeHash: "sha256:bb", targetHash: "sha256:t1" };

describe("a list of published bundles", () => {
  it("is the same bytes and hash whatever order its bundles come in, sorted by cluster", () => {
    const one = encodePublication("eu-west", "change-1", "2026-12-08T00:00:00.000Z", [B, A]);
    const two = encodePublication("eu-west", "change-1", "2026-12-08T00:00:00.000Z", [A, B]);
    expect(one.bytes).toBe(two.bytes);
    expect(one.hash).toBe(contentHash(one.bytes));
    expect(one.publication.bundles.map((b) => b.cluster)).toEqual(["eu-west-1", "eu-west-2"]);
  });

  it("is read back only from bytes that hash to the name the entry gives", () => {
    const { bytes, hash } = encodePublication("eu-west", "change-1", "2026-12-08T00:00:00.000Z", [A, B]);
    expect(decodePublication(bytes, hash)?.bundles).toEqual([A, B]);
    expect(decodePublication(bytes.replace('"version":4', '"version":5'), hash)).toBeUndefined();
    expect(decodePublication("not json", contentHash("not json"))).toBeUndefined();
    expect(decodePublication("{}", contentHash("{}"))).toBeUndefined();
  });
});
