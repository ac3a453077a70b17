/** `polity enroll`: a cluster's identity, by hand (the agent does this by itself). */
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { enroll, saveCredentials } from "../../identity/enrollment.js";
import { stringOption, type Command } from "../command.js";
import { EXIT, UsageError } from "../io.js";
import { asCliError } from "../hub-access.js";

export const enrollCommand: Command = {
  name: "enroll",
  summary: "enrol a cluster with a join token: a key made here, a certificate from the hub",
  usage: "polity enroll --hub <url> --ca <ca.pem> --cluster <name> --join-token <token> --out <dir>",
  options: { hub: { type: "string" }, ca: { type: "string" }, cluster: { type: "string" }, "join-token": { type: "string" }, out: { type: "string" } },
  help: `Makes an ECDSA P-256 key (it never leaves this machine), sends a CSR with the join token,
and writes key.pem (mode 600), cert.pem, ca.pem and identity.json to --out. The agent does
the same by itself; this command is for trying identity by hand, with standard tools:

  openssl verify -CAfile <out>/ca.pem <out>/cert.pem
  curl --cacert <out>/ca.pem --cert <out>/cert.pem --key <out>/key.pem <hub>/v1/clusters/<name>/effective

Flags:
      --hub <url>            the hub
      --ca <file>            the federation CA certificate
      --cluster <name>       the cluster the join token is for
      --join-token <token>   from polity cluster join-token (or - to read it from standard input)
      --out <dir>            where to write the credentials

Exit status: 0 when enrolled, 2 when the hub refuses (the message says why).`,
  async run(parsed, io) {
    const url = stringOption(parsed, "hub");
    const caFile = stringOption(parsed, "ca");
    const cluster = stringOption(parsed, "cluster");
    let token = stringOption(parsed, "join-token");
    const out = stringOption(parsed, "out");
    if (url === undefined || caFile === undefined || cluster === undefined || token === undefined || out === undefined) {
      throw new UsageError("give --hub, --ca, --cluster, --join-token and --out");
    }
    if (!existsSync(caFile)) throw new UsageError(`--ca ${caFile}: no such file`);
    if (token === "-") token = readFileSync(0, "utf8").trim();
    const caPem = readFileSync(caFile, "utf8");
    const creds = await enroll({ url, caPem }, cluster, token).catch((error: unknown) => {
      throw asCliError(error);
    });
    saveCredentials(resolve(out), creds);
    io.out(`enrolled ${creds.spiffeId}; certificate ${creds.serial} valid until ${creds.notAfter}, renew after ${creds.renewAfter}\n`);
    io.out(`credentials in ${resolve(out)} (key.pem, cert.pem, ca.pem)\n`);
    return EXIT.ok;
  },
};
