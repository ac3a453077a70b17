/**
 * A hub in a process of its own, for the benchmarks: `node hub-process.js <dataDir>`.
 * Prints `{"url", "caPem", "adminToken"}` on one line when it listens; stops on SIGTERM.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startHub } from "../src/hub/index.js";

const dataDir = process.argv[2];
if (dataDir === undefined) throw new Error("usage: hub-process <dataDir>");
const hub = await startHub({ dataDir, operatorKey: "benchmark-operator-key", port: 0 });
const tokenFile = join(dataDir, "admin.token");
const adminToken = existsSync(tokenFile) ? readFileSync(tokenFile, "utf8").trim() : "";
process.stdout.write(`${JSON.stringify({ url: hub.url, caPem: hub.caPem, adminToken })}\n`);
process.on("SIGTERM", () => {
  void hub.close().then(() => process.exit(0));
});
