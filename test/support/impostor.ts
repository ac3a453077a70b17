/**
 * A hub impostor: an HTTPS server with a certificate of the federation (a compromised hub, a
 * broken proxy) that answers every request with `mib` MiB, for tests of the bounds on what
 * agents and the CLI read.
 */
import { createServer } from "node:https";

export interface Impostor {
  readonly url: string;
  /** How many MiB it has written so far (a client that stops reading stops it early). */
  sent(): number;
  close(): void;
}

export async function hugeAnswers(serving: { certificatePem: string; privateKeyPem: string }, mib: number, contentType: string, headers: Readonly<Record<string, string>> = {}): Promise<Impostor> {
  const chunk = Buffer.alloc(1024 * 1024, 0x20);
  let sent = 0;
  const server = createServer({ cert: serving.certificatePem, key: serving.privateKeyPem }, (req, res) => {
    res.writeHead(200, { "content-type": contentType, ...headers });
    let left = mib;
    const pump = () => {
      while (left > 0) {
        left--;
        sent++;
        if (!res.write(chunk)) return void res.once("drain", pump);
      }
      res.end();
    };
    res.on("error", () => undefined);
    req.socket.on("error", () => undefined);
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return {
    url: `https://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`,
    sent: () => sent,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}
