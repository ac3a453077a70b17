/**
 * The few DER encodings (ITU-T X.690) a cluster certificate needs, written directly: the
 * hub issues one per enrolment, and building them through a general ASN.1 library cost
 * milliseconds each (src/identity/ca.ts says what goes in them; its tests parse the result
 * with two independent X.509 readers).
 *
 * Pure.
 */

/** A tag and its contents, with the definite length (X.690 8.1.3). */
export function tlv(tag: number, contents: Buffer): Buffer {
  const n = contents.length;
  let length: Buffer;
  if (n < 0x80) length = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    length = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), length, contents]);
}

export const sequence = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
export const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
export const octetString = (bytes: Buffer): Buffer => tlv(0x04, bytes);
export const utf8String = (text: string): Buffer => tlv(0x0c, Buffer.from(text, "utf8"));
export const boolean = (value: boolean): Buffer => tlv(0x01, Buffer.from([value ? 0xff : 0x00]));
/** A BIT STRING of whole bytes (no unused bits). */
export const bitString = (bytes: Buffer): Buffer => tlv(0x03, Buffer.concat([Buffer.from([0]), bytes]));
/** `[n]` EXPLICIT, constructed. */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);

/** A non-negative INTEGER from its big-endian hex (a serial number), minimal, with a leading 0 when the top bit is set. */
export function integerFromHex(hex: string): Buffer {
  let bytes = Buffer.from(hex.length % 2 === 0 ? hex : `0${hex}`, "hex");
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0 && (bytes[start + 1]! & 0x80) === 0) start++;
  bytes = bytes.subarray(start);
  if ((bytes[0]! & 0x80) !== 0) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(0x02, bytes);
}

export function objectIdentifier(dotted: string): Buffer {
  const arcs = dotted.split(".").map(Number);
  const out: number[] = [40 * arcs[0]! + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const chunk: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5), whole seconds. */
export function time(date: Date): Buffer {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  const year = date.getUTCFullYear();
  return year < 2050 ? tlv(0x17, Buffer.from(digits.slice(2), "ascii")) : tlv(0x18, Buffer.from(digits, "ascii"));
}

/** A DER element at `offset`: its tag, and where its contents start and end; `fail` makes the error for bytes that are not DER. */
export function readElement(bytes: Buffer, offset: number, fail: () => Error = () => new Error("not DER")): { readonly tag: number; readonly start: number; readonly end: number } {
  if (offset + 2 > bytes.length) throw fail();
  const tag = bytes[offset]!;
  let length = bytes[offset + 1]!;
  let start = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4 || start + count > bytes.length) throw fail();
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[start + i]!;
    start += count;
  }
  if (start + length > bytes.length) throw fail();
  return { tag, start, end: start + length };
}

/** The SubjectPublicKeyInfo of a DER certificate, as its bytes (what its key fingerprint is taken of). */
export function certificatePublicKeyInfo(certificate: Buffer): Buffer {
  const outer = readElement(certificate, 0);
  const tbs = readElement(certificate, outer.start);
  let at = tbs.start;
  if (readElement(certificate, at).tag === 0xa0) at = readElement(certificate, at).end; // [0] version
  for (let i = 0; i < 5; i++) at = readElement(certificate, at).end; // serial, signature, issuer, validity, subject
  const spki = readElement(certificate, at);
  if (spki.tag !== 0x30) throw new Error("not a certificate");
  return certificate.subarray(at, spki.end);
}
