/**
 * How a subcommand is declared: its name, a one-line summary, the help text that teaches
 * it (with examples), its options, and what it does. Options are parsed with Node's own
 * util.parseArgs, strictly: an unknown flag is a usage error, never ignored.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { labelKeyProblems, labelValueProblems } from "../policy/names.js";
import { UsageError, type Io } from "./io.js";

export type Options = NonNullable<ParseArgsConfig["options"]>;

export interface Command {
  /** `eval`, or `policy lint` for a nested command. */
  readonly name: string;
  readonly summary: string;
  /** `polity eval [flags] <input>...` */
  readonly usage: string;
  /** Several paragraphs: what it does, each flag, examples, exit codes. */
  readonly help: string;
  readonly options: Options;
  run(parsed: Parsed, io: Io): Promise<number> | number;
}

export interface Parsed {
  readonly values: Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>;
  readonly positionals: readonly string[];
}

export function parse(command: Command, args: readonly string[]): Parsed {
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      options: { ...command.options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
    return { values, positionals };
  } catch (error) {
    const message = (error as Error).message.replace(/\. To specify a positional argument.*$/s, "");
    throw new UsageError(`${message}\nrun 'polity ${command.name} --help' for usage`);
  }
}

export function stringOption(parsed: Parsed, name: string): string | undefined {
  const value = parsed.values[name];
  return typeof value === "string" ? value : undefined;
}

export function stringsOption(parsed: Parsed, name: string): string[] {
  const value = parsed.values[name];
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).filter((v): v is string => typeof v === "string");
}

export function flag(parsed: Parsed, name: string): boolean {
  return parsed.values[name] === true;
}

/** `-o json|yaml|text`: the output format, checked against what the command offers. */
export function outputFormat<F extends string>(parsed: Parsed, allowed: readonly F[], fallback: F): F {
  const value = stringOption(parsed, "output") ?? fallback;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`--output must be one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`);
  }
  return value as F;
}

/** `k=v,k2=v2` → labels, checked by Kubernetes' rules (policy/names.ts), as the policy schema checks them. */
export function parseLabels(text: string, what: string): Record<string, string> {
  const labels: Record<string, string> = {};
  if (text.trim() === "") return labels;
  for (const pair of text.split(",")) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new UsageError(`${what}: expected key=value pairs separated by commas, got ${JSON.stringify(pair)}`);
    const key = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const keyProblems = labelKeyProblems(key);
    if (keyProblems.length > 0) throw new UsageError(`${what}: ${JSON.stringify(key)} is not a valid label key: ${keyProblems.join("; ")}`);
    const valueProblems = labelValueProblems(value);
    if (valueProblems.length > 0) {
      throw new UsageError(`${what}: ${JSON.stringify(value)} is not a valid label value (label ${key}): ${valueProblems.join("; ")}`);
    }
    labels[key] = value;
  }
  return labels;
}

/** `--listen host:port` (an IPv6 host in brackets), as the hub and the agent take it. */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(value);
  if (m === null) throw new UsageError(`--listen must be host:port, got ${JSON.stringify(value)}`);
  const port = Number(m[2]);
  if (port > 65535) throw new UsageError(`--listen: port ${port} is out of range`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}
