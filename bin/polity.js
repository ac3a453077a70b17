#!/usr/bin/env node
// The polity command: runs the compiled CLI (built by `npm ci` through the prepare script).
import { main } from "../dist/cli/main.js";

// Output piped into a reader that stops early (polity exception list | head -1): stop
// quietly, as other command-line tools do, instead of a stack trace about a closed pipe.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error) => {
    if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw error;
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    // Only a bug reaches here: every expected failure is reported by the command itself.
    console.error(`polity: internal error: ${error instanceof Error ? error.message : String(error)}`);
    if (process.env.POLITY_DEBUG) console.error(error);
    process.exitCode = 70;
  },
);
