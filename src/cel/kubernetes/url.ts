/**
 * URLs as the `kubernetes.urls` CEL library parses them: Go's url.ParseRequestURI to
 * accept (an absolute URI, or an absolute path), then url.Parse for the parts.
 */
import { KubernetesValue } from "../values.js";

export class URLValue extends KubernetesValue {
  readonly typeName = "kubernetes.URL";
  constructor(
    readonly source: string,
    readonly scheme: string,
    /** host[:port], IPv6 in brackets. */
    readonly host: string,
    /** The path as written (escaped). */
    readonly rawPath: string,
    readonly rawQuery: string,
  ) {
    super();
  }

  key(): string {
    return `url:${this.source}`;
  }

  override size(): number {
    return this.source.length;
  }

  hostname(): string {
    const host = this.host;
    if (host.startsWith("[")) {
      const close = host.indexOf("]");
      return close < 0 ? host.slice(1) : host.slice(1, close);
    }
    const colon = host.lastIndexOf(":");
    return colon < 0 ? host : host.slice(0, colon);
  }

  port(): string {
    const host = this.host;
    const close = host.startsWith("[") ? host.indexOf("]") : -1;
    const colon = host.lastIndexOf(":");
    if (colon < 0 || colon < close) return "";
    const port = host.slice(colon + 1);
    return /^[0-9]*$/.test(port) ? port : "";
  }

  /** url.EscapedPath: the path as written when it is validly escaped, else escaped anew. */
  escapedPath(): string {
    if (validEncoded(this.rawPath)) return this.rawPath;
    return escapePath(unescape(this.rawPath, false) ?? this.rawPath);
  }

  /** url.Query: repeated keys give several values; `;` separated pairs are skipped, as in Go. */
  query(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const pair of this.rawQuery.split("&")) {
      if (pair === "" || pair.includes(";")) continue;
      const eq = pair.indexOf("=");
      const key = unescape(eq < 0 ? pair : pair.slice(0, eq), true);
      const value = unescape(eq < 0 ? "" : pair.slice(eq + 1), true);
      if (key === undefined || value === undefined) continue;
      if (!Object.hasOwn(out, key)) Object.defineProperty(out, key, { value: [], enumerable: true, writable: true, configurable: true });
      out[key]!.push(value);
    }
    return out;
  }
}

const HEX = /^[0-9a-fA-F]{2}$/;

/** url.unescape; undefined for a bad % escape. */
function unescape(text: string, query: boolean): string | undefined {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "%") {
      const hex = text.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return undefined;
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (c === "+" && query) {
      bytes.push(32);
    } else {
      for (const b of new TextEncoder().encode(c)) bytes.push(b);
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** Characters Go leaves unescaped in a path. */
function pathSafe(c: string): boolean {
  return /^[A-Za-z0-9\-_.~$&+,/:;=@!'()*]$/.test(c);
}

function validEncoded(path: string): boolean {
  for (let i = 0; i < path.length; i++) {
    const c = path[i]!;
    if (c === "%") {
      if (!HEX.test(path.slice(i + 1, i + 3))) return false;
      i += 2;
    } else if (!pathSafe(c) && c !== "[" && c !== "]") {
      return false;
    }
  }
  return true;
}

function escapePath(path: string): string {
  let out = "";
  for (const c of path) {
    if (pathSafe(c)) out += c;
    else for (const b of new TextEncoder().encode(c)) out += `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

function validHost(host: string): string | undefined {
  if (host.startsWith("[")) {
    const close = host.indexOf("]");
    if (close < 0) return "missing ']' in host";
    const rest = host.slice(close + 1);
    if (rest !== "" && !/^:[0-9]*$/.test(rest)) return `invalid port ${JSON.stringify(rest)} after host`;
    return undefined;
  }
  const colon = host.indexOf(":");
  if (colon >= 0) {
    const port = host.slice(colon);
    if (!/^:[0-9]*$/.test(port)) return `invalid port ${JSON.stringify(port)} after host`;
  }
  if (/[^A-Za-z0-9\-._~!$&'()*+,;=:%]/.test(host)) return `invalid character ${JSON.stringify(host.match(/[^A-Za-z0-9\-._~!$&'()*+,;=:%]/)![0])} in host name`;
  return undefined;
}

/** url.ParseRequestURI then url.Parse; throws with Kubernetes' message. */
export function parseURL(text: string): URLValue {
  const fail = (why: string): never => {
    throw new Error(`URL parse error during conversion from string: parse ${JSON.stringify(text)}: ${why}`);
  };
  if (text === "") fail("empty url");
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) fail("net/url: invalid control character in URL");
  }
  let rest = text;
  let scheme = "";
  const schemeMatch = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(rest);
  if (schemeMatch !== null) {
    scheme = schemeMatch[1]!.toLowerCase();
    rest = rest.slice(schemeMatch[0].length);
  } else if (rest.startsWith(":")) {
    fail("missing protocol scheme");
  }
  // ParseRequestURI keeps a fragment in the path; url.Parse, which gives the parts, cuts it.
  const hash = rest.indexOf("#");
  const withoutFragment = hash < 0 ? rest : rest.slice(0, hash);
  const question = withoutFragment.indexOf("?");
  let query = "";
  let path = withoutFragment;
  if (question >= 0) {
    query = withoutFragment.slice(question + 1);
    path = withoutFragment.slice(0, question);
  }
  if (!path.startsWith("/")) {
    if (scheme !== "") return new URLValue(text, scheme, "", "", query); // opaque: mailto:x
    fail("invalid URI for request");
  }
  let host = "";
  if (scheme !== "" && path.startsWith("//")) {
    const authorityEnd = path.indexOf("/", 2);
    const authority = authorityEnd < 0 ? path.slice(2) : path.slice(2, authorityEnd);
    path = authorityEnd < 0 ? "" : path.slice(authorityEnd);
    const at = authority.lastIndexOf("@");
    host = at < 0 ? authority : authority.slice(at + 1);
    const problem = validHost(host);
    if (problem !== undefined) fail(problem);
  }
  if (unescape(path, false) === undefined) {
    const bad = /%(?![0-9a-fA-F]{2})(.{0,2})/.exec(path)!;
    fail(`invalid URL escape ${JSON.stringify(`%${bad[1]}`)}`);
  }
  return new URLValue(text, scheme, host, path, query);
}
