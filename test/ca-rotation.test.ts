/**
 * The federation CA rotates while a real `polity agent` runs, over real TLS: the new CA
 * reaches the agent only inside a root it verifies from the one it pinned; renewals move it
 * to the new CA; the old CA retires once it has; from then on the hub serves with the new
 * CA, refuses a certificate of the retired one, and the CLI still reaches it (it follows the
 * roots as the agent does). A hub's answer that names another CA changes nothing.
 */
import type { ChildProcess } from "node:child_process";
import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:https";
import { connect } from "node:tls";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentCredentials } from "../src/agent/identity/credentials.js";
import { call, closeConnections, HubError, UnreachableError, type HubEndpoint } from "../src/client/http.js";
import { createCertificateAuthority, issueServerCertificate } from "../src/identity/ca.js";
import { enroll, renew, saveCredentials } from "../src/identity/enrollment.js";
import { parseRootEnvelope, ROOT_TYPE, signRoot, TrustError, type RootEnvelope } from "../src/trust/index.js";
import { agentHealth, spawnAgent as spawnProcess, type AgentProcess } from "./support/agent-process.js";
import { eventually } from "./support/eventually.js";
import { example, HubFixture, joinToken, type TestHub } from "./support/hubs.js";

const OPERATOR_KEY = "ca-rotation-test-operator-key-0123456789";
const fixture = new HubFixture("polity-ca-rotation-test-", OPERATOR_KEY, "acme");
const CLUSTER = "eu-west-1";
const processes: ChildProcess[] = [];

afterAll(() => {
  closeConnections();
  for (const child of processes) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

/** A hub with the example layers and the cluster registered; certificates renewed every few seconds. */
async function federation(name: string): Promise<TestHub> {
  // Certificates start 5 minutes back (clock skew): a 160 s life is renewed about 7 s after issue.
  const h = await fixture.startCopy(name, { keysIntervalMs: 500, certificateTtlMs: 30_000, trust: { overlapMs: 60 * 60 * 1000 } });
  await call(h.admin, "POST", "/v1/apply", { files: [example("global.yaml"), example("region-eu-west.yaml"), example("cluster-eu-west-1.yaml")] });
  await call(h.admin, "POST", "/v1/clusters", { name: CLUSTER, region: "eu-west", labels: { env: "prod" } });
  return h;
}

const health = agentHealth;
const spawnAgent = (h: TestHub, dataDir: string, enrol = true) => spawnProcess(h, dataDir, { cluster: CLUSTER, processes, enrol });

/** The certificate a TLS server presents. */
function servedCertificate(url: string): Promise<X509Certificate> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false }, () => {
      const raw = socket.getPeerCertificate().raw;
      socket.end();
      resolve(new X509Certificate(raw));
    });
    socket.on("error", reject);
  });
}

const issuedBy = (certificatePem: string, caPem: string) => new X509Certificate(certificatePem).verify(new X509Certificate(caPem).publicKey);

describe("the federation CA rotates while an agent runs", () => {
  let h: TestHub;
  let agent: AgentProcess;
  let config: string;
  let oldCa: string;
  /** Trusts the old CA and the new (the test's own client). */
  let both: HubEndpoint;

  beforeAll(async () => {
    h = await federation("rotate");
    oldCa = h.hub.caPem;
    config = join(fixture.root, "login.config.json");
    const login = await fixture.cli(["login", "--hub", h.hub.url, "--ca", h.hub.caFile, "--token-file", join(h.dir, "admin.token"), "--config", config]);
    expect(login.code, login.err).toBe(0);
    agent = await spawnAgent(h, join(fixture.root, "rotate-agent"));
    await eventually("the agent holds a bundle", async () => ((await health(agent)).bundleVersion === null ? undefined : true));
  });

  it("rotates (polity keys rotate --purpose ca): renewals move the agent to the new CA with no restart and no refused bundle; the old CA retires; its certificate is refused; the CLI still reaches the hub", async () => {
    // The agent's certificate of the old CA, kept to knock with after the old CA retires.
    const oldCertificate = readFileSync(join(agent.dataDir, "identity", "cert.pem"), "utf8");
    const oldKey = readFileSync(join(agent.dataDir, "identity", "key.pem"), "utf8");
    expect(issuedBy(oldCertificate, oldCa)).toBe(true);
    const before = await health(agent);

    const rotated = await fixture.cli(["keys", "rotate", "--purpose", "ca", "-o", "json"], { config });
    expect(rotated.code, rotated.err).toBe(0);
    const result = JSON.parse(rotated.out) as { purpose: string; keyId: string; previous: string[]; rootVersion: number };
    expect(result.purpose).toBe("ca");
    const root = parseRootEnvelope((await call<unknown>(h.anonymous, "GET", "/v1/trust/root")).body).signed;
    expect(root.version).toBe(result.rootVersion);
    expect(root.certificateAuthorities?.map((ca) => ca.status)).toEqual(["active", "overlap"]);
    expect(root.certificateAuthorities?.[1]?.certificate).toBe(oldCa);
    expect(result.previous).toEqual([root.certificateAuthorities?.[1]?.fingerprint]);
    const newCa = root.certificateAuthorities![0]!.certificate;
    both = { url: h.hub.url, caPem: `${oldCa}\n${newCa}` };
    // During the overlap the hub still serves with the CA the agent pinned, and takes either CA's certificates.
    expect((await servedCertificate(h.hub.url)).verify(new X509Certificate(oldCa).publicKey)).toBe(true);
    const knocking: HubEndpoint = { ...both, clientCertificatePem: oldCertificate, clientKeyPem: oldKey };
    expect((await call<{ kind: string }>(knocking, "GET", "/v1/whoami")).status).toBe(200);
    // A region's CA is not issued while the CAs overlap (its hub would pin a CA it cannot yet reach the hub with).
    const regional = await call(h.admin, "POST", "/v1/trust/regional-ca", { region: "eu-west", publicKeyPem: generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }).toString() }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect((regional as HubError).status).toBe(409);
    expect((regional as HubError).message).toMatch(/a CA rotation is under way/);
    // A second rotation waits for this one to end.
    const again = await fixture.cli(["keys", "rotate", "--purpose", "ca"], { config });
    expect(again.code).not.toBe(0);
    expect(again.err).toMatch(/a CA rotation is under way/);

    // The agent verifies the root that lists the new CA (its bundle names it), and renews with the new CA.
    await eventually("the agent holds a certificate of the new CA", () => (issuedBy(readFileSync(join(agent.dataDir, "identity", "cert.pem"), "utf8"), newCa) ? true : undefined), 40_000);
    // Every cluster moved: the old CA leaves the root, and the hub serves with the new CA.
    await eventually(
      "the old CA is retired",
      async () => {
        const newest = parseRootEnvelope((await call<unknown>(both, "GET", "/v1/trust/root")).body).signed;
        return newest.certificateAuthorities?.length === 1 && newest.certificateAuthorities[0]!.certificate === newCa ? true : undefined;
      },
      40_000,
    );
    await eventually("the hub serves with the new CA", async () => ((await servedCertificate(h.hub.url)).verify(new X509Certificate(newCa).publicKey) ? true : undefined));
    expect(readFileSync(h.hub.caFile, "utf8").trim()).toBe(newCa.trim());

    // A certificate of the retired CA is refused, though the hub issued it and never revoked it.
    const refusal = await call(knocking, "GET", "/v1/agent/bundle", undefined, { raw: true }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refusal).toBeInstanceOf(HubError);
    expect((refusal as HubError).status).toBe(401);
    // (Its client sends the old CA after its certificate, as OpenSSL does with a CA it trusts: judged as a chain, refused all the same.)
    expect((refusal as HubError).message).toMatch(/not issued by this federation's CA|the chain does not lead to a federation CA trusted here/);

    // The agent never restarted, refused nothing, and still reaches the hub: a change arrives.
    const version = (await health(agent)).bundleVersion!;
    expect(version).toBeGreaterThan(before.bundleVersion!);
    const global = example("global.yaml");
    await call({ ...both, token: h.admin.token! }, "POST", "/v1/apply", {
      files: [{ name: global.name, content: `${global.content.trimEnd()}\n---\napiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: suggest-labels, owner: platform-team }\nspec:\n  domain: workload-security\n  match: { kinds: [Pod] }\n  validations:\n    - expression: "has(object.metadata.labels)"\n      message: "pods should carry labels"\n  enforcement: warn\n` }],
    });
    await eventually("the agent holds the change", async () => ((await health(agent)).bundleVersion! > version ? true : undefined));
    const after = await health(agent);
    expect(after.lastRefusal).toBeNull();
    expect(agent.child.exitCode).toBeNull();

    // The CLI logged in with the old CA only: it follows the roots and reaches the hub.
    const status = await fixture.cli(["keys", "status", "-o", "json"], { config });
    expect(status.code, status.err).toBe(0);
    const keys = (JSON.parse(status.out) as { keys: { id: string; purpose: string; state: string }[] }).keys.filter((k) => k.purpose === "ca");
    expect(keys.map((k) => [k.id, k.state])).toEqual([
      [result.keyId, "active"],
      [result.previous[0], "retired"],
    ]);
    const text = await fixture.cli(["keys", "status"], { config });
    expect(text.out).toMatch(/\nca\s+[0-9a-f]{16}\s+\S+\s+active\s+\d+\n/);
    const saved = JSON.parse(readFileSync(config, "utf8")) as { hubs: { default: { root: string } } };
    expect(parseRootEnvelope(saved.hubs.default.root).signed.version).toBeGreaterThan(result.rootVersion);

    // Audited: the rotation and the retirement.
    const entries = async (kind: string) =>
      (await call<{ items: { entry: { kind: string; data: Record<string, unknown> } }[] }>({ ...both, token: h.admin.token! }, "GET", `/v1/audit/entries?kind=${kind}&limit=1000`)).body.items.map((i) => i.entry);
    const retired = await eventually("the audit log holds the retirement", async () => (await entries("key.retired")).find((e) => e.data.purpose === "ca"));
    expect(retired.data).toMatchObject({ keyId: result.previous[0], reason: "every cluster moved to the new CA" });
    expect((await entries("key.rotated")).find((e) => e.data.purpose === "ca")?.data).toMatchObject({ keyId: result.keyId, previous: result.previous });
  }, 180_000);
});

describe("a hub's answer that names another CA", () => {
  it("is ignored: a renewal's CA, or a root no root key signed, never adds a CA the agent trusts for the hub", async () => {
    const h = await federation("impostor");
    const dataDir = join(fixture.root, "impostor-agent");
    const enrolled = await enroll({ url: h.hub.url, caPem: h.hub.caPem }, CLUSTER, await joinToken(h, CLUSTER));
    saveCredentials(join(dataDir, "identity"), enrolled);
    const credentials = new AgentCredentials(dataDir, CLUSTER, h.hub.url);
    const pinned = credentials.serverCaPem();

    // A compromised hub (it holds a serving certificate of the federation) answers a renewal
    // with a certificate and a CA of its own.
    const { authority: theirs } = await createCertificateAuthority("acme", new Date());
    const serving = await h.hub.context.identity.serverCertificate(["localhost"], ["127.0.0.1"]);
    const theirServing = await issueServerCertificate(theirs, { dns: ["localhost"], ips: ["127.0.0.1"], uri: "spiffe://acme/hub" }, new Date(), 3600_000);
    const answer = JSON.stringify({
      certificate: theirServing.certificatePem,
      ca: theirs.certificatePem,
      spiffeId: enrolled.spiffeId,
      serial: "1234",
      notAfter: new Date(Date.now() + 3600_000).toISOString(),
      renewAfter: new Date(Date.now() + 1800_000).toISOString(),
      bundleKey: { keyId: "0".repeat(64), publicKeyPem: generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString() },
    });
    const servers = [
      createServer({ cert: serving.certificatePem, key: serving.privateKeyPem }, (_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(answer)),
      // And a server with a certificate of their CA.
      createServer({ cert: theirServing.certificatePem, key: theirServing.privateKeyPem }, (_req, res) => res.writeHead(200, { "content-type": "application/json" }).end("{}")),
    ];
    const urls = await Promise.all(
      servers.map(
        (server) =>
          new Promise<string>((resolve) =>
            server.listen(0, "127.0.0.1", () => {
              const address = server.address();
              resolve(`https://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`);
            }),
          ),
      ),
    );
    try {
      // Its certificate is for a key the agent never made: refused before anything held is replaced.
      await expect(renew(urls[0]!, enrolled, { serverCaPem: credentials.serverCaPem() })).rejects.toThrow("the hub answered with a certificate for another key than this cluster's");
      expect(credentials.current!.caPem).toBe(enrolled.caPem);
      expect(credentials.serverCaPem()).toBe(pinned);
      expect(credentials.serverCaPem()).not.toContain(theirs.certificatePem.split("\n")[1]);
      // A root version 2 listing their CA, signed by a key that is no root key: refused, nothing added.
      const root1 = parseRootEnvelope(enrolled.rootJson!).signed;
      const forged: RootEnvelope = signRoot(
        {
          ...root1,
          type: ROOT_TYPE,
          version: 2,
          certificateAuthorities: [{ certificate: theirs.certificatePem, fingerprint: new X509Certificate(theirs.certificatePem).fingerprint256.replace(/:/g, "").toLowerCase(), status: "active" }],
        },
        [generateKeyPairSync("ed25519").privateKey],
      );
      await expect(credentials.catchUpRoot(2, async () => [forged])).rejects.toBeInstanceOf(TrustError);
      expect(credentials.serverCaPem()).toBe(pinned);
      // So a server with a certificate of their CA is not the hub.
      const refused = await call({ ...credentials.hub(urls[1]!), clientCertificatePem: enrolled.certificatePem, clientKeyPem: enrolled.privateKeyPem }, "GET", "/v1/whoami").then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(UnreachableError);
      expect((refused as Error).message).toMatch(/certificate/i);
    } finally {
      for (const server of servers) {
        server.closeAllConnections();
        server.close();
      }
    }
  });
});

describe("when the CA rotates", () => {
  it("rotates on the hub's schedule (--rotate-every) once the active CA is that old", async () => {
    const h = await fixture.startCopy("schedule", { keysIntervalMs: 300, rotateEveryMs: 24 * 3600_000, trust: { overlapMs: 60 * 60 * 1000 } });
    // An enrolled cluster whose agent never moves: the old CA overlaps until it does.
    await call(h.admin, "POST", "/v1/clusters", { name: CLUSTER, region: "eu-west", labels: { env: "prod" } });
    await enroll({ url: h.hub.url, caPem: h.hub.caPem }, CLUSTER, await joinToken(h, CLUSTER));
    expect(parseRootEnvelope((await call<unknown>(h.anonymous, "GET", "/v1/trust/root")).body).signed.certificateAuthorities).toBeUndefined();
    h.clock.offsetMs = 2 * 24 * 3600_000;
    const listed = await eventually("the root lists a new CA", async () => parseRootEnvelope((await call<unknown>(h.anonymous, "GET", "/v1/trust/root")).body).signed.certificateAuthorities);
    expect(listed.map((ca) => ca.status)).toEqual(["active", "overlap"]);
    expect(listed[1]!.certificate).toBe(h.hub.caPem);
  });

  it("is refused in a federation with a regional intermediate CA, saying why, and the root does not change", async () => {
    const h = await fixture.startCopy("regional");
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    await call(h.admin, "POST", "/v1/trust/regional-ca", { region: "eu-west", publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString() });
    const before = parseRootEnvelope((await call<unknown>(h.anonymous, "GET", "/v1/trust/root")).body).signed.version;
    const refused = await call(h.admin, "POST", "/v1/keys/rotate", { purpose: "ca" }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(HubError);
    expect((refused as HubError).status).toBe(409);
    expect((refused as HubError).message).toMatch(/does not rotate while regions have hubs or intermediate CAs/);
    expect(parseRootEnvelope((await call<unknown>(h.anonymous, "GET", "/v1/trust/root")).body).signed.version).toBe(before);
  });
});
