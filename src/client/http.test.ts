/**
 * The one HTTP client checks whom it talks to: the federation CA and the hostname, and,
 * when the caller names it, the hub's SPIFFE ID. A regional hub's certificate (issued by
 * the same CA, for names it may have asked for) never passes for the global hub's.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import { gzipSync } from "node:zlib";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority, issueServerCertificate } from "../identity/ca.js";
import { issueHubCertificate } from "../identity/regional.js";
import { generateKeyPair, privateKeyPem } from "../identity/x509.js";
import { createPublicKey } from "node:crypto";
import { clusterEndpoint, type Credentials } from "../identity/credentials.js";
import { parentEndpoint, type RegionalCredentials } from "../hub/regional/credentials.js";
import { endpointFrom } from "./config.js";
import { call, closeConnections, HubError, ResponseTooLargeError } from "./http.js";

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function serve(cert: string, key: string, handler: Handler = (_req, res) => res.writeHead(200, { "content-type": "application/json" }).end("{}")): Promise<{ server: Server; url: string }> {
  const server = createServer({ cert, key }, handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `https://localhost:${(server.address() as AddressInfo).port}` };
}

describe("the HTTP client", () => {
  let caPem = "";
  let globalHub: { server: Server; url: string };
  let regionalHub: { server: Server; url: string };
  /** Answers bytes as its path says: /gzip compressed (when asked for), /bomb 8 MiB of zeros compressed, /br an encoding never asked for. */
  let bytesHub: { server: Server; url: string };
  const payload = Buffer.from("a bundle's metadata line\n" + "policy ".repeat(5000));

  beforeAll(async () => {
    const now = new Date();
    const { authority } = await createCertificateAuthority("acme", now);
    caPem = authority.certificatePem;
    const global = await issueServerCertificate(authority, { dns: ["localhost"], ips: ["127.0.0.1"], uri: "spiffe://acme/hub" }, now, 3600e3);
    globalHub = await serve(global.certificatePem, global.privateKeyPem);
    const key = await privateKeyPem((await generateKeyPair()).privateKey);
    const regional = await issueHubCertificate(authority, "eu-west", createPublicKey(key).export({ type: "spki", format: "pem" }).toString(), { dns: ["localhost"], ips: [] }, now, 3600e3);
    regionalHub = await serve(regional.certificatePem, key);
    bytesHub = await serve(global.certificatePem, global.privateKeyPem, (req, res) => {
      const gzip = /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
      if (req.url === "/gzip" && gzip) res.writeHead(200, { "content-encoding": "gzip" }).end(Buffer.concat([gzipSync(payload.subarray(0, 25)), gzipSync(payload.subarray(25))]));
      else if (req.url === "/bomb") res.writeHead(200, { "content-encoding": "gzip" }).end(gzipSync(Buffer.alloc(8 * 1024 * 1024)));
      else if (req.url === "/br") res.writeHead(200, { "content-encoding": "br" }).end("x");
      else res.writeHead(200).end(payload);
    });
  });

  afterAll(() => {
    closeConnections();
    globalHub?.server.close();
    regionalHub?.server.close();
    bytesHub?.server.close();
  });

  it("asks for bytes compressed and gives back what was compressed, in as many gzip members as sent", async () => {
    const endpoint = { url: bytesHub.url, caPem };
    const gzipped = await call<Buffer>(endpoint, "GET", "/gzip", undefined, { raw: true, binary: true });
    expect(gzipped.headers["content-encoding"]).toBe("gzip");
    expect(gzipped.body.equals(payload)).toBe(true);
    expect((await call<Buffer>(endpoint, "GET", "/plain", undefined, { raw: true, binary: true })).body.equals(payload)).toBe(true);
  });

  it("refuses a compressed answer that would decompress past its limit, and an encoding it did not ask for", async () => {
    const endpoint = { url: bytesHub.url, caPem };
    const bomb = call(endpoint, "GET", "/bomb", undefined, { raw: true, binary: true, maxBytes: 1024 * 1024 });
    await expect(bomb).rejects.toBeInstanceOf(ResponseTooLargeError);
    await expect(bomb).rejects.toThrow(/decompresses to over 1048576 bytes/);
    const br = call(endpoint, "GET", "/br", undefined, { raw: true, binary: true });
    await expect(br).rejects.toBeInstanceOf(HubError);
    await expect(br).rejects.toThrow(/encoded as br, which was not asked for/);
  });

  it("reaches the hub whose certificate carries the SPIFFE ID it expects", async () => {
    expect((await call(({ url: globalHub.url, caPem, serverIds: ["/hub"] }), "GET", "/")).status).toBe(200);
    expect((await call(({ url: regionalHub.url, caPem, serverIds: ["/region/eu-west/hub", "/hub"] }), "GET", "/")).status).toBe(200);
  });

  it("refuses a regional hub's certificate where the global hub is expected, though the CA and the hostname match", async () => {
    await expect(call({ url: regionalHub.url, caPem, serverIds: ["/hub"] }, "GET", "/")).rejects.toThrow(/spiffe:\/\/acme\/region\/eu-west\/hub.*not the hub expected/);
    await expect(call({ url: regionalHub.url, caPem, serverIds: ["/region/us-east/hub", "/hub"] }, "GET", "/")).rejects.toThrow(/not the hub expected/);
  });

  it("is told whom to expect: an agent its own region's hub or the global hub, a regional hub and the command line the global hub", () => {
    const agent = { spiffeId: "spiffe://acme/region/us-east/cluster/us-c1", caPem, certificatePem: "", privateKeyPem: "" } as unknown as Credentials;
    expect(clusterEndpoint("https://h", agent).serverIds).toEqual(["/region/us-east/hub", "/hub"]);
    const regional = { rootPem: caPem, hubCertificatePem: "", hubKeyPem: "", parentUrl: "https://p" } as unknown as RegionalCredentials;
    expect(parentEndpoint(regional).serverIds).toEqual(["/hub"]);
    const config = { current: "g", hubs: { g: { url: "https://g", ca: caPem, token: "t" }, eu: { url: "https://eu", ca: caPem, token: "t", server: "/region/eu-west/hub" } } };
    expect(endpointFrom(config, "config.json").serverIds).toEqual(["/hub"]);
    expect(endpointFrom(config, "config.json", "eu").serverIds).toEqual(["/region/eu-west/hub"]);
  });
});
