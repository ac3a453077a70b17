/**
 * The one HTTP client checks whom it talks to: the federation CA and the hostname, and,
 * when the caller names it, the hub's SPIFFE ID. A regional hub's certificate (issued by
 * the same CA, for names it may have asked for) never passes for the global hub's.
 */
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority, issueServerCertificate } from "../identity/ca.js";
import { issueHubCertificate } from "../identity/regional.js";
import { generateKeyPair, privateKeyPem } from "../identity/x509.js";
import { createPublicKey } from "node:crypto";
import { clusterEndpoint, type Credentials } from "../identity/credentials.js";
import { parentEndpoint, type RegionalCredentials } from "../hub/regional/credentials.js";
import { endpointFrom } from "./config.js";
import { call, closeConnections } from "./http.js";

async function serve(cert: string, key: string): Promise<{ server: Server; url: string }> {
  const server = createServer({ cert, key }, (_req, res) => res.writeHead(200, { "content-type": "application/json" }).end("{}"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `https://localhost:${(server.address() as AddressInfo).port}` };
}

describe("the HTTP client", () => {
  let caPem = "";
  let globalHub: { server: Server; url: string };
  let regionalHub: { server: Server; url: string };

  beforeAll(async () => {
    const now = new Date();
    const { authority } = await createCertificateAuthority("acme", now);
    caPem = authority.certificatePem;
    const global = await issueServerCertificate(authority, { dns: ["localhost"], ips: ["127.0.0.1"], uri: "spiffe://acme/hub" }, now, 3600e3);
    globalHub = await serve(global.certificatePem, global.privateKeyPem);
    const key = await privateKeyPem((await generateKeyPair()).privateKey);
    const regional = await issueHubCertificate(authority, "eu-west", createPublicKey(key).export({ type: "spki", format: "pem" }).toString(), { dns: ["localhost"], ips: [] }, now, 3600e3);
    regionalHub = await serve(regional.certificatePem, key);
  });

  afterAll(() => {
    closeConnections();
    globalHub?.server.close();
    regionalHub?.server.close();
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
