/** The stored gzip member decompresses, alone or ahead of a compressed one, to the bytes it holds (Node's zlib reads it). */
import { gunzipSync, gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { gzipStored } from "./gzip.js";

describe("a stored gzip member", () => {
  it("decompresses to what it holds, empty, short and at the largest stored block", () => {
    for (const size of [0, 1, 600, 0xffff]) {
      const bytes = Buffer.from(Array.from({ length: size }, (_, i) => (i * 7) % 256));
      expect(gunzipSync(gzipStored(bytes)).equals(bytes)).toBe(true);
    }
  });

  it("is followed by a compressed member as one stream, as a bundle is sent", () => {
    const envelope = Buffer.from('{"signed":{"cluster":"eu-west-1"}}\n');
    const target = Buffer.from("policy ".repeat(10_000));
    expect(gunzipSync(Buffer.concat([gzipStored(envelope), gzipSync(target)])).equals(Buffer.concat([envelope, target]))).toBe(true);
  });

  it("is refused by zlib when a byte is altered (the CRC-32 is checked)", () => {
    const member = gzipStored(Buffer.from("metadata line\n"));
    member[16] = member[16]! ^ 1;
    expect(() => gunzipSync(member)).toThrow();
  });

  it("falls back to zlib past one stored block", () => {
    const bytes = Buffer.alloc(0x10000 + 5, 1);
    expect(gunzipSync(gzipStored(bytes)).equals(bytes)).toBe(true);
  });
});
