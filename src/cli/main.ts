/**
 * `polity`: one command-line program for every role and task. This file only dispatches;
 * each subcommand lives in commands/ with its own help.
 */
import { readFileSync } from "node:fs";
import { parse, type Command } from "./command.js";
import { EXIT, processIo, reportError, type Io } from "./io.js";

/**
 * The commands, by module, loaded only when used: the agent starts without loading the
 * hub's server, and `polity eval` without either.
 */
const MODULES: readonly { readonly names: readonly string[]; load(): Promise<readonly Command[]> }[] = [
  { names: ["dev"], load: async () => [(await import("./commands/dev.js")).devCommand] },
  { names: ["tour"], load: async () => [(await import("./commands/tour.js")).tourCommand] },
  { names: ["eval"], load: async () => [(await import("./commands/eval.js")).evalCommand] },
  { names: ["import"], load: async () => [(await import("./commands/import.js")).importCommand] },
  {
    names: ["policy effective", "policy lint", "policy test", "policy render"],
    load: async () => {
      const m = await import("./commands/policy.js");
      return [m.policyEffectiveCommand, m.policyLintCommand, m.policyTestCommand, (await import("./commands/render.js")).policyRenderCommand];
    },
  },
  {
    names: ["hub", "login"],
    load: async () => {
      const m = await import("./commands/hub.js");
      return [m.hubCommand, m.loginCommand];
    },
  },
  {
    names: ["apply", "diff", "history", "get layers", "get layer", "get deprecations"],
    load: async () => {
      const m = await import("./commands/layers.js");
      return [m.applyCommand, m.diffCommand, m.historyCommand, m.getLayersCommand, m.getLayerCommand, m.getDeprecationsCommand];
    },
  },
  {
    names: ["get clusters", "get cluster", "get effective", "cluster register", "cluster relabel", "cluster remove", "cluster join-token", "cluster revoke"],
    load: async () => {
      const m = await import("./commands/clusters.js");
      return [
        m.getClustersCommand,
        m.getClusterCommand,
        m.getEffectiveCommand,
        m.clusterRegisterCommand,
        m.clusterRelabelCommand,
        m.clusterRemoveCommand,
        m.clusterJoinTokenCommand,
        m.clusterRevokeCommand,
      ];
    },
  },
  { names: ["cluster status"], load: async () => [(await import("./commands/cluster-status.js")).clusterStatusCommand] },
  { names: ["get compliance"], load: async () => [(await import("./commands/compliance.js")).getComplianceCommand] },
  { names: ["get drift"], load: async () => [(await import("./commands/drift.js")).getDriftCommand] },
  {
    names: ["token create", "token list", "token revoke"],
    load: async () => {
      const m = await import("./commands/tokens.js");
      return [m.tokenCreateCommand, m.tokenListCommand, m.tokenRevokeCommand];
    },
  },
  {
    names: ["exception request", "exception approve", "exception deny", "exception withdraw", "exception list", "exception show"],
    load: async () => {
      const m = await import("./commands/exceptions.js");
      return [m.exceptionRequestCommand, m.exceptionApproveCommand, m.exceptionDenyCommand, m.exceptionWithdrawCommand, m.exceptionListCommand, m.exceptionShowCommand];
    },
  },
  {
    names: ["propose", "proposal approve", "proposal reject", "proposal apply", "proposal show", "proposal list"],
    load: async () => {
      const m = await import("./commands/proposals.js");
      return [m.proposeCommand, m.proposalApproveCommand, m.proposalRejectCommand, m.proposalApplyCommand, m.proposalShowCommand, m.proposalListCommand];
    },
  },
  {
    names: ["rollout list", "rollout status", "rollout pause", "rollout resume", "rollout abort", "rollout rollback"],
    load: async () => {
      const m = await import("./commands/rollouts.js");
      return [m.rolloutListCommand, m.rolloutStatusCommand, m.rolloutPauseCommand, m.rolloutResumeCommand, m.rolloutAbortCommand, m.rolloutRollbackCommand];
    },
  },
  {
    names: ["region token", "get regions", "get conflicts"],
    load: async () => {
      const m = await import("./commands/regions.js");
      return [m.regionTokenCommand, m.getRegionsCommand, m.getConflictsCommand];
    },
  },
  {
    names: ["region residency", "get residency"],
    load: async () => {
      const m = await import("./commands/residency.js");
      return [m.regionResidencyCommand, m.getResidencyCommand];
    },
  },
  {
    names: ["keys status", "keys rotate"],
    load: async () => {
      const m = await import("./commands/keys.js");
      return [m.keysStatusCommand, m.keysRotateCommand];
    },
  },
  { names: ["enroll"], load: async () => [(await import("./commands/enroll.js")).enrollCommand] },
  {
    names: ["audit head", "audit verify", "audit proof", "audit check-proof", "audit search"],
    load: async () => {
      const m = await import("./commands/audit.js");
      return [m.auditHeadCommand, m.auditVerifyCommand, m.auditProofCommand, m.auditCheckProofCommand, m.auditSearchCommand];
    },
  },
  {
    names: ["agent", "agent webhook-config"],
    load: async () => {
      const m = await import("./commands/agent.js");
      return [m.agentCommand, m.webhookConfigCommand];
    },
  },
];

const NAMES = MODULES.flatMap((m) => m.names);

async function allCommands(): Promise<Command[]> {
  return (await Promise.all(MODULES.map((m) => m.load()))).flat();
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

async function usage(): Promise<string> {
  const commands = await allCommands();
  const width = Math.max(...commands.map((c) => c.name.length));
  return `Polity: policy for many Kubernetes clusters, written once, layered global → region → cluster,
enforced locally in each cluster.

Usage: polity <command> [flags]

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}   ${c.summary}`).join("\n")}
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

async function find(args: readonly string[]): Promise<{ command: Command; rest: string[] } | undefined> {
  // The longest name first: "agent webhook-config" before "agent".
  const byLength = [...NAMES].sort((a, b) => b.split(" ").length - a.split(" ").length);
  for (const name of byLength) {
    const words = name.split(" ");
    if (!words.every((w, i) => args[i] === w)) continue;
    const module = MODULES.find((m) => m.names.includes(name))!;
    const command = (await module.load()).find((c) => c.name === name)!;
    return { command, rest: args.slice(words.length) };
  }
  return undefined;
}

export async function main(args: readonly string[], io: Io = processIo): Promise<number> {
  const first = args[0];
  if (first === undefined) {
    io.err(`error: no command given\n\n${await usage()}`);
    return EXIT.usage;
  }
  if (first === "help" || first === "--help" || first === "-h") {
    const topic = first === "help" && args.length > 1 ? await find(args.slice(1)) : undefined;
    if (first === "help" && args.length > 1 && topic === undefined) {
      io.err(`error: no help for ${JSON.stringify(args.slice(1).join(" "))}: not a command\n\n${await usage()}`);
      return EXIT.usage;
    }
    io.out(topic === undefined ? await usage() : helpText(topic.command));
    return EXIT.ok;
  }
  if (first === "--version") {
    io.out(`polity ${version()}\n`);
    return EXIT.ok;
  }
  const found = first === "version" ? { command: versionCommand, rest: args.slice(1) } : await find(args);
  if (found === undefined) {
    const group = (await allCommands()).filter((c) => c.name.startsWith(`${first} `));
    if (group.length > 0 && (args.length === 1 || args[1]?.startsWith("-"))) {
      const width = Math.max(...group.map((c) => c.name.length));
      const text =
        `Usage: polity ${first} <${group.map((c) => c.name.split(" ")[1]).join("|")}> [flags]\n\n` +
        `${group.map((c) => `  ${c.name.padEnd(width)}   ${c.summary}`).join("\n")}\n\n` +
        `'polity ${first} <${group.length === 1 ? group[0]!.name.split(" ")[1] : "subcommand"}> --help' shows its flags and examples.\n`;
      if (args.includes("--help") || args.includes("-h")) {
        io.out(text);
        return EXIT.ok;
      }
      io.err(`error: ${JSON.stringify(first)} needs a subcommand\n\n${text}`);
      return EXIT.usage;
    }
    io.err(`error: unknown command ${JSON.stringify(args.slice(0, group.length > 0 ? 2 : 1).join(" "))}\n\n${await usage()}`);
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
