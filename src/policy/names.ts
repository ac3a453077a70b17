/**
 * Kubernetes names and labels, by Kubernetes' own rules (k8s.io/apimachinery/pkg/util/validation):
 *
 * - a DNS-1123 label (`eu-west`): at most 63 characters of a-z, 0-9 and '-', starting and
 *   ending with a letter or digit; regions, domains, namespaces;
 * - a DNS-1123 subdomain (`eu-west-1.example.com`): at most 253 characters, such labels
 *   joined by '.'; policy, layer and cluster names;
 * - a label key (`app.kubernetes.io/name`): an optional DNS-1123 subdomain prefix of at most
 *   253 characters and '/', then a name of at most 63 characters of A-Z, a-z, 0-9, '-', '_'
 *   and '.', starting and ending with a letter or digit;
 * - a label value: empty, or at most 63 characters as a label key's name.
 *
 * Each rule is a predicate, a list of problems in words (empty when the value is valid),
 * and an anchored ECMAScript pattern with the length bounds inside it, which a JSON Schema
 * (`pattern`) or a zod schema elsewhere can use to accept exactly the same strings.
 * Only ASCII is ever valid, so lengths in characters are Kubernetes' lengths in bytes.
 */

export const DNS_LABEL_MAX_LENGTH = 63;
export const DNS_SUBDOMAIN_MAX_LENGTH = 253;
export const LABEL_NAME_MAX_LENGTH = 63;
export const LABEL_VALUE_MAX_LENGTH = 63;

// The unbounded shapes, as Kubernetes writes them; the lengths are checked apart.
const DNS_LABEL_SHAPE = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS_SUBDOMAIN_SHAPE = `${DNS_LABEL_SHAPE}(\\.${DNS_LABEL_SHAPE})*`;
const LABEL_NAME_SHAPE = "[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?";
const LABEL_VALUE_SHAPE = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

/** `eu-west`: a DNS-1123 label, bounds included. */
export const DNS_LABEL_PATTERN = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
/** `eu-west-1.example.com`: a DNS-1123 subdomain, bounds included (the lookahead bounds the whole). */
export const DNS_SUBDOMAIN_PATTERN = `^(?=.{1,${DNS_SUBDOMAIN_MAX_LENGTH}}$)${DNS_SUBDOMAIN_SHAPE}$`;
/** `example.com/team`: a label key, bounds included (the lookahead bounds the prefix). */
export const LABEL_KEY_PATTERN = `^((?=[^/]{1,${DNS_SUBDOMAIN_MAX_LENGTH}}/)${DNS_SUBDOMAIN_SHAPE}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`;
/** `prod`, or empty: a label value, bounds included. */
export const LABEL_VALUE_PATTERN = "^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$";

const DNS_LABEL = new RegExp(`^${DNS_LABEL_SHAPE}$`);
const DNS_SUBDOMAIN = new RegExp(`^${DNS_SUBDOMAIN_SHAPE}$`);
const LABEL_NAME = new RegExp(`^${LABEL_NAME_SHAPE}$`);
const LABEL_VALUE = new RegExp(`^${LABEL_VALUE_SHAPE}$`);

const EMPTY = "must not be empty";
const tooLong = (max: number) => `must be no more than ${max} characters`;
const DNS_LABEL_MESSAGE =
  "must be a lowercase RFC 1123 label: lowercase alphanumeric characters or '-', starting and ending with an alphanumeric character (e.g. 'my-name' or '123-abc')";
const DNS_SUBDOMAIN_MESSAGE =
  "must be a lowercase RFC 1123 subdomain: lowercase alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character (e.g. 'example.com')";
const LABEL_NAME_MESSAGE =
  "must consist of alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character (e.g. 'MyName', 'my.name' or '123-abc')";
const LABEL_VALUE_MESSAGE =
  "must be empty or consist of alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character (e.g. 'MyValue', 'my_value' or '12345')";

/** Why `value` is not a DNS-1123 label; empty when it is one. */
export function dnsLabelProblems(value: string): string[] {
  if (value === "") return [EMPTY];
  const problems: string[] = [];
  if (value.length > DNS_LABEL_MAX_LENGTH) problems.push(tooLong(DNS_LABEL_MAX_LENGTH));
  if (!DNS_LABEL.test(value)) problems.push(DNS_LABEL_MESSAGE);
  return problems;
}

/** Why `value` is not a DNS-1123 subdomain; empty when it is one. */
export function dnsSubdomainProblems(value: string): string[] {
  if (value === "") return [EMPTY];
  const problems: string[] = [];
  if (value.length > DNS_SUBDOMAIN_MAX_LENGTH) problems.push(tooLong(DNS_SUBDOMAIN_MAX_LENGTH));
  if (!DNS_SUBDOMAIN.test(value)) problems.push(DNS_SUBDOMAIN_MESSAGE);
  return problems;
}

/** Why `key` is not a label key (Kubernetes' qualified name); empty when it is one. */
export function labelKeyProblems(key: string): string[] {
  const parts = key.split("/");
  if (parts.length > 2) {
    return ["must be a name with an optional DNS subdomain prefix and one '/' (e.g. 'MyName' or 'example.com/MyName')"];
  }
  const [prefix, name] = parts.length === 2 ? [parts[0]!, parts[1]!] : [undefined, parts[0]!];
  const problems: string[] = [];
  if (prefix !== undefined) problems.push(...dnsSubdomainProblems(prefix).map((p) => `prefix part ${p}`));
  if (name === "") problems.push(`name part ${EMPTY}`);
  else {
    if (name.length > LABEL_NAME_MAX_LENGTH) problems.push(`name part ${tooLong(LABEL_NAME_MAX_LENGTH)}`);
    if (!LABEL_NAME.test(name)) problems.push(`name part ${LABEL_NAME_MESSAGE}`);
  }
  return problems;
}

/** Why `value` is not a label value; empty when it is one (the empty string is one). */
export function labelValueProblems(value: string): string[] {
  const problems: string[] = [];
  if (value.length > LABEL_VALUE_MAX_LENGTH) problems.push(tooLong(LABEL_VALUE_MAX_LENGTH));
  if (!LABEL_VALUE.test(value)) problems.push(LABEL_VALUE_MESSAGE);
  return problems;
}

const BOUNDED_DNS_LABEL = new RegExp(DNS_LABEL_PATTERN);
const BOUNDED_DNS_SUBDOMAIN = new RegExp(DNS_SUBDOMAIN_PATTERN);
const BOUNDED_LABEL_KEY = new RegExp(LABEL_KEY_PATTERN);
const BOUNDED_LABEL_VALUE = new RegExp(LABEL_VALUE_PATTERN);

export const isDnsLabel = (value: string): boolean => BOUNDED_DNS_LABEL.test(value);
export const isDnsSubdomain = (value: string): boolean => BOUNDED_DNS_SUBDOMAIN.test(value);
export const isLabelKey = (key: string): boolean => BOUNDED_LABEL_KEY.test(key);
export const isLabelValue = (value: string): boolean => BOUNDED_LABEL_VALUE.test(value);

/**
 * Characters a text shown to people must not hold: controls (C0, DEL, C1: NUL is also what
 * PostgreSQL cannot store; ESC would let a text move a terminal's cursor and rewrite what
 * was printed before it) and the bidirectional formatting characters that make text render
 * in another order than it is stored (Trojan Source, CVE-2021-42574).
 */
function unshowable(code: number): boolean {
  return code <= 0x1f || (code >= 0x7f && code <= 0x9f) || code === 0x061c || code === 0x200e || code === 0x200f || (code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069);
}

/** Where a text holds a character that cannot be shown or stored, as a message; undefined when it holds none. */
export function unshowableProblem(text: string): string | undefined {
  let index = 0;
  for (const char of text) {
    index++;
    const code = char.codePointAt(0)!;
    if (unshowable(code)) return `must not contain control or bidirectional formatting characters (U+${code.toString(16).toUpperCase().padStart(4, "0")} at character ${index})`;
  }
  return undefined;
}

/** The text with every character unshowableProblem refuses written as `\u{…}`: what a terminal may print of a text it did not check. */
export function printable(text: string): string {
  let out = "";
  for (const char of text) {
    const code = char.codePointAt(0)!;
    out += unshowable(code) ? `\\u{${code.toString(16)}}` : char;
  }
  return out;
}
