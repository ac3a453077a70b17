/**
 * A TCP link between two processes that a test can cut and heal: connections through it
 * are forwarded to `target`; cut, it closes every connection and refuses new ones (the
 * caller sees the peer as unreachable, as in a partition), until healed. It listens on
 * 127.0.0.1, so that a certificate for loopback names the target whatever its address
 * (test/partition.test.ts reaches processes in network namespaces this way).
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export class Link {
  private cutOff = false;
  private readonly sockets = new Set<Socket>();
  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async open(targetPort: number, targetHost = "127.0.0.1"): Promise<Link> {
    const holder: { link?: Link } = {};
    const server = createServer((client) => {
      const link = holder.link;
      if (link === undefined || link.cutOff) {
        client.destroy();
        return;
      }
      const upstream = connect(targetPort, targetHost);
      link.sockets.add(client).add(upstream);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        link?.sockets.delete(client);
        link?.sockets.delete(upstream);
      };
      client.on("error", drop).on("close", drop);
      upstream.on("error", drop).on("close", drop);
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    holder.link = new Link(server, typeof address === "object" && address !== null ? address.port : 0);
    return holder.link;
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  cut(): void {
    this.cutOff = true;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  heal(): void {
    this.cutOff = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
