/**
 * A hub in a process of its own, for the benchmarks: `node hub-process.js <dataDir>
 * [<postgres url> <schema>]`; as a region's hub (`polity hub --region … --parent …
 * --region-token …`), with its options as JSON in POLITY_BENCH_REGIONAL. Prints `{"url", "caPem", "adminToken"}` on one line when it
 * listens; stops on SIGTERM. On its standard input it takes one command a line, for the
 * benchmark that drives it: `timings` prints what the hub's work cost since the last time
 * (src/hub/timings.ts) as one JSON line; `profile <file>` starts a CPU profile,
 * `profile-stop` writes it to that file.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { startHub } from "../src/hub/index.js";
import type { RegionalOptions } from "../src/hub/regional/open.js";
import { timings } from "../src/hub/timings.js";

const dataDir = process.argv[2];
if (dataDir === undefined) throw new Error("usage: hub-process <dataDir>");
const [databaseUrl, schema] = process.argv.slice(3);
const regionalJson = process.env.POLITY_BENCH_REGIONAL;
const regional = regionalJson === undefined || regionalJson === "" ? undefined : (JSON.parse(regionalJson) as RegionalOptions);
const hub = await startHub({
  dataDir,
  operatorKey: "benchmark-operator-key",
  port: 0,
  ...(databaseUrl === undefined ? {} : { databaseUrl, schema }),
  ...(regional === undefined ? {} : { regional }),
});
const tokenFile = join(dataDir, "admin.token");
const adminToken = existsSync(tokenFile) ? readFileSync(tokenFile, "utf8").trim() : "";
process.stdout.write(`${JSON.stringify({ url: hub.url, caPem: hub.caPem, adminToken })}\n`);
process.on("SIGTERM", () => {
  void hub.close().then(() => process.exit(0));
});

let profile: { session: Session; file: string } | undefined;
createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, argument] = line.trim().split(" ");
  void (async () => {
    if (command === "timings") {
      process.stdout.write(`${JSON.stringify(timings.take())}\n`);
    } else if (command === "profile" && argument !== undefined && profile === undefined) {
      const session = new Session();
      session.connect();
      await session.post("Profiler.enable");
      await session.post("Profiler.start");
      profile = { session, file: argument };
    } else if (command === "profile-stop" && profile !== undefined) {
      const { session, file } = profile;
      profile = undefined;
      const { profile: data } = await session.post("Profiler.stop");
      writeFileSync(file, JSON.stringify(data));
      session.disconnect();
    }
  })();
});
