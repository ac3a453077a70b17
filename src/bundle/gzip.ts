/**
 * A gzip member (RFC 1952) holding bytes uncompressed: one deflate block of type "stored"
 * (RFC 1951 §3.2.4), the CRC-32 and the length. The hub sends each cluster's metadata line
 * so, ahead of its effective set's target compressed once (src/hub/bundles.ts): a few hundred
 * bytes that would hardly shrink, for a CRC instead of a compressor's set-up (about 15 µs
 * each here, 75 µs under load: most of the cost of compressing an answer).
 */
import { crc32, gzipSync } from "node:zlib";

const HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]); // deflate, no flags, no time, unknown OS
const STORED_MAX = 0xffff;

export function gzipStored(bytes: Buffer): Buffer {
  if (bytes.length > STORED_MAX) return gzipSync(bytes, { level: 0 });
  const block = Buffer.alloc(5);
  block[0] = 1; // BFINAL, BTYPE 00: stored
  block.writeUInt16LE(bytes.length, 1);
  block.writeUInt16LE(~bytes.length & 0xffff, 3);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(bytes) >>> 0, 0);
  trailer.writeUInt32LE(bytes.length, 4);
  return Buffer.concat([HEADER, block, bytes, trailer]);
}
