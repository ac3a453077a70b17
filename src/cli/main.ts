/**
 * `polity`: one command-line program for every role and task. This file only dispatches;
 * each subcommand lives in commands/ with its own help.
 */
import { readFileSync } from "node:fs";
import { parse, type Command } from "./command.js";
import { devCommand } from "./commands/dev.js";
import { evalCommand } from "./commands/eval.js";
import { policyEffectiveCommand, policyLintCommand, policyTestCommand } from "./commands/policy.js";
import { EXIT, processIo, reportError, type Io } from "./io.js";

export const COMMANDS: readonly Command[] = [devCommand, evalCommand, policyEffectiveCommand, policyLintCommand, policyTestCommand];

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `Polity: policy for many Kubernetes clusters, written once, layered global → region → cluster,
enforced locally in each cluster.

Usage: polity <command> [flags]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}   ${c.summary}`).join("\n")}
  ${"version".padEnd(width)}   print the version

Run 'polity <command> --help' for a command's flags and examples.
Exit status: 0 success, 1 a decision denied or a check failed, 2 bad usage or bad input.
`;
}

function find(args: readonly string[]): { command: Command; rest: string[] } | undefined {
  for (const command of COMMANDS) {
    const words = command.name.split(" ");
    if (words.every((w, i) => args[i] === w)) return { command, rest: args.slice(words.length) };
  }
  return undefined;
}

export async function main(args: readonly string[], io: Io = processIo): Promise<number> {
  const first = args[0];
  if (first === undefined || first === "help" || first === "--help" || first === "-h") {
    const topic = first === "help" && args.length > 1 ? find(args.slice(1)) : undefined;
    io.out(topic === undefined ? usage() : `${topic.command.usage}\n\n${topic.command.help}\n`);
    return first === undefined ? EXIT.usage : EXIT.ok;
  }
  if (first === "version" || first === "--version") {
    io.out(`polity ${version()}\n`);
    return EXIT.ok;
  }
  const found = find(args);
  if (found === undefined) {
    const group = COMMANDS.filter((c) => c.name.startsWith(`${first} `));
    if (group.length > 0 && (args.length === 1 || args[1]?.startsWith("-"))) {
      io.out(`Usage: polity ${first} <${group.map((c) => c.name.split(" ")[1]).join("|")}> [flags]\n\n${group.map((c) => `  ${c.name}   ${c.summary}`).join("\n")}\n`);
      return args.includes("--help") || args.includes("-h") ? EXIT.ok : EXIT.usage;
    }
    io.err(`error: unknown command ${JSON.stringify(args.slice(0, group.length > 0 ? 2 : 1).join(" "))}\n\n${usage()}`);
    return EXIT.usage;
  }
  try {
    const parsed = parse(found.command, found.rest);
    if (parsed.values.help === true) {
      io.out(`Usage: ${found.command.usage}\n\n${found.command.help}\n`);
      return EXIT.ok;
    }
    return await found.command.run(parsed, io);
  } catch (error) {
    return reportError(io, error);
  }
}
