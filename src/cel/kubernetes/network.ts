/**
 * IP addresses and CIDRs, as the `kubernetes.net.ip` and `net.cidr` CEL libraries parse
 * them: Go's net/netip, strict (no leading zeros in IPv4 octets), without zones, and
 * without IPv4-mapped IPv6 addresses.
 */
import { KubernetesValue } from "../values.js";

/** An address as 4 or 16 bytes. */
export class IPAddress extends KubernetesValue {
  readonly typeName = "net.IP";
  constructor(readonly bytes: Uint8Array) {
    super();
  }

  get family(): 4 | 6 {
    return this.bytes.length === 4 ? 4 : 6;
  }

  key(): string {
    return `ip:${this.toString()}`;
  }

  override size(): number {
    return this.bytes.length;
  }

  /** netip.Addr.String: dotted decimal, or RFC 5952 (the longest run of zero groups as ::). */
  override toString(): string {
    const b = this.bytes;
    if (b.length === 4) return b.join(".");
    const groups: number[] = [];
    for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
    let bestStart = -1;
    let bestLength = 0;
    for (let i = 0; i < 8; ) {
      if (groups[i] !== 0) {
        i++;
        continue;
      }
      let j = i;
      while (j < 8 && groups[j] === 0) j++;
      if (j - i > bestLength && j - i >= 2) {
        bestStart = i;
        bestLength = j - i;
      }
      i = j;
    }
    const hex = (g: number) => g.toString(16);
    if (bestStart < 0) return groups.map(hex).join(":");
    return `${groups.slice(0, bestStart).map(hex).join(":")}::${groups.slice(bestStart + bestLength).map(hex).join(":")}`;
  }

  isUnspecified(): boolean {
    return this.bytes.every((x) => x === 0);
  }

  isLoopback(): boolean {
    const b = this.bytes;
    if (b.length === 4) return b[0] === 127;
    return b.slice(0, 15).every((x) => x === 0) && b[15] === 1;
  }

  isMulticast(): boolean {
    const b = this.bytes;
    return b.length === 4 ? (b[0]! & 0xf0) === 0xe0 : b[0] === 0xff;
  }

  isLinkLocalMulticast(): boolean {
    const b = this.bytes;
    return b.length === 4 ? b[0] === 224 && b[1] === 0 && b[2] === 0 : b[0] === 0xff && (b[1]! & 0x0f) === 0x02;
  }

  isLinkLocalUnicast(): boolean {
    const b = this.bytes;
    return b.length === 4 ? b[0] === 169 && b[1] === 254 : b[0] === 0xfe && (b[1]! & 0xc0) === 0x80;
  }

  /** As Go's: private IPv4 and unique-local IPv6 addresses are global unicast too. */
  isGlobalUnicast(): boolean {
    const b = this.bytes;
    if (b.length === 4 && b.every((x) => x === 255)) return false;
    return !this.isUnspecified() && !this.isLoopback() && !this.isMulticast() && !this.isLinkLocalUnicast();
  }
}

export class CIDR extends KubernetesValue {
  readonly typeName = "net.CIDR";
  constructor(
    readonly address: IPAddress,
    readonly bits: number,
  ) {
    super();
  }

  key(): string {
    return `cidr:${this.toString()}`;
  }

  override size(): number {
    return this.address.size();
  }

  override toString(): string {
    return `${this.address.toString()}/${this.bits}`;
  }

  masked(): CIDR {
    return new CIDR(maskAddress(this.address, this.bits), this.bits);
  }

  containsIP(ip: IPAddress): boolean {
    return ip.family === this.address.family && maskAddress(ip, this.bits).key() === maskAddress(this.address, this.bits).key();
  }

  /** netip: the other prefix's address, masked to this prefix's length, is this prefix, and it is no shorter. */
  containsCIDR(other: CIDR): boolean {
    if (other.address.family !== this.address.family) return false;
    return maskAddress(other.address, this.bits).key() === maskAddress(this.address, this.bits).key() && this.bits <= other.bits;
  }
}

function maskAddress(ip: IPAddress, bits: number): IPAddress {
  const out = new Uint8Array(ip.bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    out[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return new IPAddress(out);
}

function parseIPv4(text: string): Uint8Array | string {
  const parts = text.split(".");
  if (parts.length !== 4) return "IPv4 address too short";
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i]!;
    if (!/^[0-9]{1,3}$/.test(part)) return "unexpected character";
    if (part.length > 1 && part.startsWith("0")) return "IPv4 field has octet with leading zero";
    const value = Number(part);
    if (value > 255) return "IPv4 field has value >255";
    out[i] = value;
  }
  return out;
}

function parseIPv6(text: string): Uint8Array | string {
  const out = new Uint8Array(16);
  let head = text;
  let tail = "";
  const double = text.indexOf("::");
  if (double >= 0) {
    head = text.slice(0, double);
    tail = text.slice(double + 2);
    if (tail.includes("::")) return "multiple :: in address";
  }
  const groups = (part: string): number[] | string => {
    if (part === "") return [];
    const fields = part.split(":");
    const values: number[] = [];
    for (let i = 0; i < fields.length; i++) {
      const field = fields[i]!;
      if (i === fields.length - 1 && field.includes(".")) {
        const v4 = parseIPv4(field);
        if (typeof v4 === "string") return v4;
        values.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(field)) return field.length > 4 ? "each colon-separated field must have at most 4 hex digits" : "unexpected character";
      values.push(Number.parseInt(field, 16));
    }
    return values;
  };
  const first = groups(head);
  if (typeof first === "string") return first;
  const last = groups(tail);
  if (typeof last === "string") return last;
  if (double < 0 ? first.length !== 8 : first.length + last.length > 7) return double < 0 ? "address string too short" : "address string too long";
  const all = double < 0 ? first : [...first, ...new Array<number>(8 - first.length - last.length).fill(0), ...last];
  all.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** Go's netip.ParseAddr and the library's refusals; throws with Kubernetes' message. */
export function parseIP(text: string): IPAddress {
  if (text.includes("%")) {
    const bare = parseAddress(text.slice(0, text.indexOf("%")));
    if (!(typeof bare === "string") && bare.length === 16 && text.indexOf("%") < text.length - 1) {
      throw new Error(`IP address ${JSON.stringify(text)} with zone value is not allowed`);
    }
  }
  const parsed = parseAddress(text);
  if (typeof parsed === "string") {
    throw new Error(`IP Address ${JSON.stringify(text)} parse error during conversion from string: ParseAddr(${JSON.stringify(text)}): ${parsed}`);
  }
  const ip = new IPAddress(parsed);
  if (isIPv4Mapped(ip)) throw new Error(`IPv4-mapped IPv6 address ${JSON.stringify(text)} is not allowed`);
  return ip;
}

function parseAddress(text: string): Uint8Array | string {
  if (text === "") return "unable to parse IP";
  if (text.includes(":")) return parseIPv6(text);
  if (text.includes(".")) return parseIPv4(text);
  return "unable to parse IP";
}

function isIPv4Mapped(ip: IPAddress): boolean {
  const b = ip.bytes;
  return b.length === 16 && b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
}

/** Go's netip.ParsePrefix and the library's refusals. */
export function parseCIDR(text: string): CIDR {
  const fail = (why: string): never => {
    throw new Error(`network address parse error during conversion from string: network address parse error during conversion from string: netip.ParsePrefix(${JSON.stringify(text)}): ${why}`);
  };
  const slash = text.lastIndexOf("/");
  if (slash < 0) fail("no '/'");
  const addressText = text.slice(0, slash);
  const bitsText = text.slice(slash + 1);
  if (addressText.includes("%")) fail("IPv6 zones cannot be present in a prefix");
  const parsed = parseAddress(addressText);
  if (typeof parsed === "string") fail(`ParseAddr(${JSON.stringify(addressText)}): ${parsed}`);
  const address = new IPAddress(parsed as Uint8Array);
  if (!/^(0|[1-9][0-9]*)$/.test(bitsText)) fail(`bad bits after slash: ${JSON.stringify(bitsText)}`);
  const bits = Number(bitsText);
  if (bits > address.bytes.length * 8) fail("prefix length out of range");
  if (isIPv4Mapped(address)) {
    throw new Error(`network address parse error during conversion from string: IPv4-mapped IPv6 address ${JSON.stringify(text)} is not allowed`);
  }
  return new CIDR(address, bits);
}
