/**
 * `--labels k=v,…` follows the same rules as labels in policy files (policy/names.ts): the
 * command line accepts and refuses exactly what the schema does, and says why.
 */
import { describe, expect, it } from "vitest";
import { validateDocument } from "../policy/validate.js";
import { parseLabels } from "./command.js";

const a = (n: number) => "a".repeat(n);
/** DNS subdomains of 253 and 254 characters: the edge of a label key's prefix. */
const PREFIX_253 = `${a(63)}.${a(63)}.${a(63)}.${a(61)}`;
const PREFIX_254 = `${PREFIX_253}a`;

describe("parseLabels", () => {
  const schemaAccepts = (labels: Record<string, string>) =>
    validateDocument({
      file: "p.yaml",
      index: 0,
      value: { apiVersion: "polity.dev/v1", kind: "Policy", metadata: { name: "p", labels }, spec: {} },
      locate: () => ({ file: "p.yaml", line: 1, column: 1 }),
    }).ok;
  const cliAccepts = (labels: Record<string, string>) => {
    try {
      parseLabels(Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(","), "--labels");
      return true;
    } catch {
      return false;
    }
  };

  it("accepts and refuses the same labels as a policy's metadata, at the length edges too", () => {
    const cases: Record<string, string>[] = [
      { env: "prod" },
      { [`${PREFIX_253}/${a(63)}`]: a(63) },
      { [`${PREFIX_254}/a`]: "x" },
      { [a(64)]: "x" },
      { env: a(64) },
      { env: "" },
      { "a/b/c": "x" },
      { "Example.com/env": "x" },
    ];
    expect(cases.map(schemaAccepts)).toEqual([true, true, false, false, false, true, false, false]);
    for (const labels of cases) expect(cliAccepts(labels), JSON.stringify(labels)).toBe(schemaAccepts(labels));
  });

  it("turns k=v pairs into labels, an empty text into none", () => {
    expect(parseLabels("env=prod, team=payments,empty=", "--labels")).toEqual({ env: "prod", team: "payments", empty: "" });
    expect(parseLabels("", "--labels")).toEqual({});
  });

  it("says which label is wrong and why, in the rule's words", () => {
    expect(() => parseLabels(`${a(64)}=x`, "--labels")).toThrow(`--labels: "${a(64)}" is not a valid label key: name part must be no more than 63 characters`);
    expect(() => parseLabels("env=-prod", "--labels")).toThrow(/^--labels: "-prod" is not a valid label value \(label env\): must be empty or consist of/);
    expect(() => parseLabels("env", "--labels")).toThrow('--labels: expected key=value pairs separated by commas, got "env"');
  });
});
