/**
 * `polity`: one command-line program for every role and task. This file only dispatches;
 * each subcommand lives in commands/ with its own help.
 */
import { readFileSync } from "node:fs";
import { parse, type Command } from "./command.js";
import { devCommand } from "./commands/dev.js";
import { tourCommand } from "./commands/tour.js";
import { evalCommand } from "./commands/eval.js";
import { hubCommand, loginCommand } from "./commands/hub.js";
import { applyCommand, diffCommand, getLayerCommand, getLayersCommand, historyCommand } from "./commands/layers.js";
import {
  clusterJoinTokenCommand,
  clusterRegisterCommand,
  clusterRelabelCommand,
  clusterRemoveCommand,
  clusterRevokeCommand,
  getClusterCommand,
  getClustersCommand,
  getEffectiveCommand,
} from "./commands/clusters.js";
import { tokenCreateCommand, tokenListCommand, tokenRevokeCommand } from "./commands/tokens.js";
import { enrollCommand } from "./commands/enroll.js";
import { agentCommand, webhookConfigCommand } from "./commands/agent.js";
import { policyEffectiveCommand, policyLintCommand, policyTestCommand } from "./commands/policy.js";
import { EXIT, processIo, reportError, type Io } from "./io.js";

export const COMMANDS: readonly Command[] = [
  devCommand,
  tourCommand,
  evalCommand,
  policyEffectiveCommand,
  policyLintCommand,
  policyTestCommand,
  hubCommand,
  loginCommand,
  applyCommand,
  diffCommand,
  historyCommand,
  getLayersCommand,
  getLayerCommand,
  getClustersCommand,
  getClusterCommand,
  getEffectiveCommand,
  clusterRegisterCommand,
  clusterRelabelCommand,
  clusterRemoveCommand,
  clusterJoinTokenCommand,
  clusterRevokeCommand,
  tokenCreateCommand,
  tokenListCommand,
  tokenRevokeCommand,
  enrollCommand,
  agentCommand,
  webhookConfigCommand,
];

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
  ${"version".padEnd(width)}   ${versionCommand.summary}

Run 'polity <command> --help' for a command's flags and examples.
Exit status: 0 success, 1 a decision denied or a check failed, 2 bad usage or bad input.
`;
}

function helpText(command: Command): string {
  return `Usage: ${command.usage}\n\n${command.help}\n`;
}

const versionCommand: Command = {
  name: "version",
  summary: "print the version",
  usage: "polity version",
  options: {},
  help: "Prints the version of polity.\n\nExample:\n  polity version",
  run(_parsed, io) {
    io.out(`polity ${version()}\n`);
    return EXIT.ok;
  },
};

function find(args: readonly string[]): { command: Command; rest: string[] } | undefined {
  // The longest name first: "agent webhook-config" before "agent".
  const byLength = [...COMMANDS].sort((a, b) => b.name.split(" ").length - a.name.split(" ").length);
  for (const command of byLength) {
    const words = command.name.split(" ");
    if (words.every((w, i) => args[i] === w)) return { command, rest: args.slice(words.length) };
  }
  return undefined;
}

export async function main(args: readonly string[], io: Io = processIo): Promise<number> {
  const first = args[0];
  if (first === undefined) {
    io.err(`error: no command given\n\n${usage()}`);
    return EXIT.usage;
  }
  if (first === "help" || first === "--help" || first === "-h") {
    const topic = first === "help" && args.length > 1 ? find(args.slice(1)) : undefined;
    if (first === "help" && args.length > 1 && topic === undefined) {
      io.err(`error: no help for ${JSON.stringify(args.slice(1).join(" "))}: not a command\n\n${usage()}`);
      return EXIT.usage;
    }
    io.out(topic === undefined ? usage() : helpText(topic.command));
    return EXIT.ok;
  }
  if (first === "--version") {
    io.out(`polity ${version()}\n`);
    return EXIT.ok;
  }
  const found = first === "version" ? { command: versionCommand, rest: args.slice(1) } : find(args);
  if (found === undefined) {
    const group = COMMANDS.filter((c) => c.name.startsWith(`${first} `));
    if (group.length > 0 && (args.length === 1 || args[1]?.startsWith("-"))) {
      const text = `Usage: polity ${first} <${group.map((c) => c.name.split(" ")[1]).join("|")}> [flags]\n\n${group.map((c) => `  ${c.name}   ${c.summary}`).join("\n")}\n`;
      if (args.includes("--help") || args.includes("-h")) {
        io.out(text);
        return EXIT.ok;
      }
      io.err(`error: ${JSON.stringify(first)} needs a subcommand\n\n${text}`);
      return EXIT.usage;
    }
    io.err(`error: unknown command ${JSON.stringify(args.slice(0, group.length > 0 ? 2 : 1).join(" "))}\n\n${usage()}`);
    return EXIT.usage;
  }
  try {
    const parsed = parse(found.command, found.rest);
    if (parsed.values.help === true) {
      io.out(helpText(found.command));
      return EXIT.ok;
    }
    return await found.command.run(parsed, io);
  } catch (error) {
    return reportError(io, error);
  }
}
