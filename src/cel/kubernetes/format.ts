/**
 * Named string formats, as the Kubernetes `format` CEL library validates them
 * (`format.dns1123Label().validate(name)`: optional.none() when valid, else the list of
 * what is wrong, in apimachinery's words).
 */
import { RE2JS } from "@bufbuild/re2";
import { KubernetesValue } from "../values.js";
import { parseURL } from "./url.js";

export class Format extends KubernetesValue {
  readonly typeName = "kubernetes.NamedFormat";
  constructor(
    readonly name: string,
    readonly validate: (text: string) => string[],
    /** The regular expression size Kubernetes assumes when it prices a validation. */
    readonly maxRegexSize: number,
  ) {
    super();
  }

  key(): string {
    return `format:${this.name}`;
  }
}

function full(pattern: string): RE2JS {
  return RE2JS.compile(`^(?:${pattern})$`);
}

function regexError(message: string, pattern: string, ...examples: string[]): string {
  if (examples.length === 0) return `${message} (regex used for validation is '${pattern}')`;
  return `${message} (e.g. ${examples.map((e) => `'${e}', `).join(" or ")}regex used for validation is '${pattern}')`;
}

const maxLength = (n: number) => `must be no more than ${n} characters`;

const DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN = `${DNS1123_LABEL}(\\.${DNS1123_LABEL})*`;
const DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_CHARS = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE = `(${QUALIFIED_NAME_CHARS})?`;

const dns1123LabelRe = full(DNS1123_LABEL);
const dns1123SubdomainRe = full(DNS1123_SUBDOMAIN);
const dns1035LabelRe = full(DNS1035_LABEL);
const qualifiedNameRe = full(QUALIFIED_NAME_CHARS);
const labelValueRe = full(LABEL_VALUE);

export function isDNS1123Label(value: string): string[] {
  const errors: string[] = [];
  if (value.length > 63) errors.push(maxLength(63));
  if (!dns1123LabelRe.test(value)) {
    errors.push(regexError("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character", DNS1123_LABEL, "my-name", "123-abc"));
  }
  return errors;
}

export function isDNS1123Subdomain(value: string): string[] {
  const errors: string[] = [];
  if (value.length > 253) errors.push(maxLength(253));
  if (!dns1123SubdomainRe.test(value)) {
    errors.push(regexError("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character", DNS1123_SUBDOMAIN, "example.com"));
  }
  return errors;
}

export function isDNS1035Label(value: string): string[] {
  const errors: string[] = [];
  if (value.length > 63) errors.push(maxLength(63));
  if (!dns1035LabelRe.test(value)) {
    errors.push(regexError("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character", DNS1035_LABEL, "my-name", "abc-123"));
  }
  return errors;
}

const QUALIFIED_NAME_MESSAGE = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/** validation.IsQualifiedName: an optional DNS subdomain prefix and '/', then a name of 63 characters at most. */
export function isQualifiedName(value: string): string[] {
  const errors: string[] = [];
  const parts = value.split("/");
  let name: string;
  if (parts.length === 1) {
    name = parts[0]!;
  } else if (parts.length === 2) {
    const prefix = parts[0]!;
    name = parts[1]!;
    if (prefix.length === 0) errors.push("prefix part must be non-empty");
    else for (const e of isDNS1123Subdomain(prefix)) errors.push(`prefix part ${e}`);
  } else {
    return [
      `a qualified name ${regexError(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_CHARS, "MyName", "my.name", "123-abc")} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`,
    ];
  }
  if (name.length === 0) errors.push("name part must be non-empty");
  else if (name.length > 63) errors.push(`name part ${maxLength(63)}`);
  if (!qualifiedNameRe.test(name)) errors.push(`name part ${regexError(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_CHARS, "MyName", "my.name", "123-abc")}`);
  return errors;
}

export function isValidLabelValue(value: string): string[] {
  const errors: string[] = [];
  if (value.length > 63) errors.push(maxLength(63));
  if (!labelValueRe.test(value)) {
    errors.push(regexError("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", LABEL_VALUE, "MyValue", "my_value", "12345"));
  }
  return errors;
}

/** A generated name's prefix may end with '-': checked as if that dash were a letter. */
const maskTrailingDash = (value: string) => (value.length > 1 && value.endsWith("-") ? `${value.slice(0, -1)}a` : value);

const UUID = full("(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}");
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const DATE = /^([0-9]{4})-([0-9]{2})-([0-9]{2})$/;
const DATE_TIME = /^([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-]([0-9]{2}):([0-9]{2}))$/;

function validDate(text: string): boolean {
  const m = DATE.exec(text);
  if (m === null) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (month < 1 || month > 12 || day < 1) return false;
  const days = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return day <= days;
}

function validDateTime(text: string): boolean {
  const m = DATE_TIME.exec(text);
  if (m === null || !validDate(m[1]!)) return false;
  const [hours, minutes, seconds] = [Number(m[2]), Number(m[3]), Number(m[4])];
  if (hours > 23 || minutes > 59 || seconds > 59) return false;
  return m[7] === undefined || (Number(m[7]) <= 23 && Number(m[8]) <= 59);
}

const FORMATS: ReadonlyMap<string, Format> = new Map(
  (
    [
      ["dns1123Label", "DNS1123Label", (s: string) => isDNS1123Label(s), 30],
      ["dns1123Subdomain", "DNS1123Subdomain", (s: string) => isDNS1123Subdomain(s), 60],
      ["dns1035Label", "DNS1035Label", (s: string) => isDNS1035Label(s), 30],
      ["qualifiedName", "QualifiedName", isQualifiedName, 60],
      ["dns1123LabelPrefix", "DNS1123LabelPrefix", (s: string) => isDNS1123Label(maskTrailingDash(s)), 30],
      ["dns1123SubdomainPrefix", "DNS1123SubdomainPrefix", (s: string) => isDNS1123Subdomain(maskTrailingDash(s)), 60],
      ["dns1035LabelPrefix", "DNS1035LabelPrefix", (s: string) => isDNS1035Label(maskTrailingDash(s)), 30],
      ["labelValue", "LabelValue", isValidLabelValue, 40],
      [
        "uri",
        "URI",
        (s: string) => {
          try {
            parseURL(s);
            return [];
          } catch (error) {
            return [(error as Error).message.replace(/^URL parse error during conversion from string: /, "")];
          }
        },
        // Kubernetes prices it with govalidator's URL pattern, whose length this is.
        1_080,
      ],
      ["uuid", "uuid", (s: string) => (UUID.test(s) ? [] : ["does not match the UUID format"]), 82],
      ["byte", "byte", (s: string) => (BASE64.test(s) ? [] : ["invalid base64"]), 84],
      ["date", "date", (s: string) => (validDate(s) ? [] : ["invalid date"]), 96],
      ["datetime", "datetime", (s: string) => (validDateTime(s) ? [] : ["invalid datetime"]), 96],
    ] as const
  ).map(([key, name, validate, size]) => [key, new Format(name, validate, size)]),
);

/** The named format, or undefined when Kubernetes knows no format of that name. */
export function namedFormat(name: string): Format | undefined {
  return FORMATS.get(name);
}

export const FORMAT_NAMES: readonly string[] = [...FORMATS.keys()];
