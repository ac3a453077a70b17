/**
 * The root of trust, end to end over real TLS: keys rotate while real `polity agent`
 * processes run (no restart, no refused bundle, the next change verified under the new
 * key); a revoked key's bundle is refused while enforcement goes on; a region's delegated
 * key cannot sign another region's bundle; and a region's intermediate CA cannot mint an
 * identity another region's hub accepts.
 */
import type { ChildProcess } from "node:child_process";
import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, type RunningAgent } from "../src/agent/index.js";
import { decodeBundle, encodeBundle, keyIdOf, signBundle } from "../src/bundle/index.js";
import { call, closeConnections, HubError, type HubEndpoint } from "../src/client/http.js";
import { signingKeyById } from "../src/hub/keys.js";
import { issueClusterCertificate, readCsr } from "../src/identity/ca.js";
import { createCsr, newPrivateKey } from "../src/identity/enrollment.js";
import { importPrivateKeyPem, x509 } from "../src/identity/x509.js";
import { parseRootEnvelope, type RootEnvelope } from "../src/trust/index.js";
import { agentHealth, spawnAgent as spawnProcess, type AgentProcess } from "./support/agent-process.js";
import { eventually } from "./support/eventually.js";
import { example, HubFixture, joinToken, type TestHub } from "./support/hubs.js";

const OPERATOR_KEY = "trust-test-operator-key-0123456789abcdef";
const fixture = new HubFixture("polity-trust-test-", OPERATOR_KEY, "acme");
const CLUSTER = "eu-west-1";
const processes: ChildProcess[] = [];
const agents: RunningAgent[] = [];

afterAll(async () => {
  closeConnections();
  for (const child of processes) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await Promise.allSettled(agents.map((a) => a.close()));
});

/** A hub on a copy of the template, with the example layers and the cluster registered. */
async function federation(name: string): Promise<TestHub> {
  const h = await fixture.startCopy(name, { keysIntervalMs: 500, trust: { overlapMs: 60 * 60 * 1000 } });
  await call(h.admin, "POST", "/v1/apply", { files: [example("global.yaml"), example("region-eu-west.yaml"), example("cluster-eu-west-1.yaml")] });
  await call(h.admin, "POST", "/v1/clusters", { name: CLUSTER, region: "eu-west", labels: { env: "prod" } });
  return h;
}

/** The global layer with one more warn policy, numbered: a change that denies nothing new. */
function globalWithWarning(n: number) {
  const global = example("global.yaml");
  return {
    name: global.name,
    content: `${global.content.trimEnd()}
---
apiVersion: polity.dev/v1
kind: Policy
metadata: { name: suggest-owner-label-${n}, owner: platform-team }
spec:
  domain: workload-security
  match: { kinds: [Pod] }
  validations:
    - expression: "has(object.metadata.labels)"
      message: "pods should carry labels"
  enforcement: warn
`,
  };
}

const health = agentHealth;
const spawnAgent = (h: TestHub, dataDir: string, enrol = true) => spawnProcess(h, dataDir, { cluster: CLUSTER, processes, enrol });

/** Who signed the bundle an agent holds on disk, and the root version it names. */
function heldBundle(dataDir: string): { keyId: string; rootVersion: number | undefined; version: number } {
  const bundle = decodeBundle(readFileSync(join(dataDir, "bundles", "current.bundle")));
  return { keyId: bundle.envelope.signatures[0]!.keyId, rootVersion: bundle.envelope.signed.rootVersion, version: bundle.envelope.signed.version };
}

function trustedRootVersion(dataDir: string): number {
  return parseRootEnvelope(readFileSync(join(dataDir, "identity", "trusted-root.json"), "utf8")).signed.version;
}

async function root(h: TestHub): Promise<RootEnvelope> {
  return parseRootEnvelope((await call<unknown>(h.anonymous, "GET", "/v1/trust/root")).body);
}

async function cli(h: TestHub, args: readonly string[]) {
  return fixture.cli(args, { config: fixture.cliConfig("admin", h.admin) });
}

describe("keys that rotate while agents run", () => {
  let h: TestHub;
  let agent: AgentProcess;

  beforeAll(async () => {
    h = await federation("rotate");
    agent = await spawnAgent(h, join(fixture.root, "rotate-agent"));
    await eventually("the agent holds a bundle", async () => ((await health(agent)).bundleVersion === null ? undefined : true));
  });

  it("pins root version 1 at enrolment, and its bundle names it and is signed by the root's bundles key", async () => {
    const first = await root(h);
    expect(first.signed).toMatchObject({ type: "polity.dev/root", federation: "acme", version: 1, revoked: [] });
    const pinned = parseRootEnvelope(readFileSync(join(agent.dataDir, "identity", "root-1.json"), "utf8"));
    expect(pinned.signed).toEqual(first.signed);
    expect(heldBundle(agent.dataDir)).toMatchObject({ keyId: first.signed.roles.bundles.keyIds[0], rootVersion: 1 });
  });

  it("rotates the bundles key (polity keys rotate): no restart, no refused bundle, the next change verified under the new key, the old key retired", async () => {
    const before = await health(agent);
    const oldKey = (await root(h)).signed.roles.bundles.keyIds[0]!;
    const rotated = await cli(h, ["keys", "rotate", "--purpose", "bundles", "-o", "json"]);
    expect(rotated.code, rotated.err).toBe(0);
    const result = JSON.parse(rotated.out) as { keyId: string; previous: string[]; rootVersion: number };
    expect(result).toMatchObject({ previous: [oldKey], rootVersion: 2 });
    // The new key entered the root before signing; the old one overlaps.
    const v2 = (await root(h)).signed;
    expect(v2.roles.bundles.keyIds).toEqual([result.keyId, oldKey]);
    // The agent gets the same policies re-signed under the new key, after verifying root 2.
    await eventually("the agent holds a bundle signed by the new key", () => (heldBundle(agent.dataDir).keyId === result.keyId ? true : undefined));
    expect(trustedRootVersion(agent.dataDir)).toBeGreaterThanOrEqual(2);
    const after = await health(agent);
    expect(after.bundleVersion!).toBeGreaterThan(before.bundleVersion!);
    expect(after.lastRefusal).toBeNull();
    expect(agent.child.exitCode).toBeNull();
    // Every agent acknowledged a bundle under the new key: the old key leaves the root.
    await eventually("the old key is retired", async () => ((await root(h)).signed.keys[oldKey] === undefined ? true : undefined), 30_000);
    // The next change reaches the agent, verified under the new key and the newest root.
    const version = (await health(agent)).bundleVersion!;
    await call(h.admin, "POST", "/v1/apply", { files: [globalWithWarning(1)] });
    await eventually("the agent holds the change", async () => ((await health(agent)).bundleVersion! > version ? true : undefined));
    expect(heldBundle(agent.dataDir).keyId).toBe(result.keyId);
    expect((await health(agent)).lastRefusal).toBeNull();
    const status = await cli(h, ["keys", "status", "-o", "json"]);
    expect(status.code, status.err).toBe(0);
    const keys = (JSON.parse(status.out) as { keys: { id: string; purpose: string; state: string }[] }).keys;
    expect(keys.find((k) => k.id === oldKey)).toMatchObject({ purpose: "bundles", state: "retired" });
    expect(keys.find((k) => k.id === result.keyId)).toMatchObject({ purpose: "bundles", state: "active" });
    const text = await cli(h, ["keys", "status"]);
    expect(text.out).toMatch(/PURPOSE\s+ID\s+CREATED\s+STATE\s+ROOT/);
  });

  it("rotates the root key: the new root is signed by the old root key and the new, and the agent follows", async () => {
    const before = (await root(h)).signed;
    const rotated = await cli(h, ["keys", "rotate", "--purpose", "root", "-o", "json"]);
    expect(rotated.code, rotated.err).toBe(0);
    const after = await root(h);
    expect(after.signed.roles.root.keyIds).toEqual([(JSON.parse(rotated.out) as { keyId: string }).keyId]);
    expect(after.signatures.map((s) => s.keyId).sort()).toEqual([...before.roles.root.keyIds, ...after.signed.roles.root.keyIds].sort());
    // A later change names the newest root; the agent verifies the chain up to it.
    const version = (await health(agent)).bundleVersion!;
    await call(h.admin, "POST", "/v1/apply", { files: [globalWithWarning(2)] });
    await eventually("the agent holds the change", async () => ((await health(agent)).bundleVersion! > version ? true : undefined));
    expect(heldBundle(agent.dataDir).rootVersion).toBe(after.signed.version);
    expect(trustedRootVersion(agent.dataDir)).toBe(after.signed.version);
    expect((await health(agent)).lastRefusal).toBeNull();
  });

  it("refuses a revocation of the CA by id, and a revocation without a reason, with a clear message (the CA rotates: test/ca-rotation.test.ts)", async () => {
    const ca = await cli(h, ["keys", "rotate", "--purpose", "ca", "--revoke", "a".repeat(64), "--reason", "lost"]);
    expect(ca.code).not.toBe(0);
    expect(ca.err).toMatch(/the CA is rotated with overlap, not revoked by id/);
    const noReason = await cli(h, ["keys", "rotate", "--purpose", "bundles", "--revoke", "a".repeat(64)]);
    expect(noReason.code).not.toBe(0);
    expect(noReason.err).toMatch(/--revoke needs --reason/);
  });
});

describe("an agent enrolled before roots", () => {
  it("keeps enforcing from its disk, and accepts no root version 1 on the word of the bundle key it pinned (a stolen or regional bundles key could sign one): it must enrol again", async () => {
    const h = await federation("migrate");
    const dataDir = join(fixture.root, "migrate-agent");
    const first = await spawnAgent(h, dataDir);
    await eventually("the agent holds a bundle", async () => ((await health(first)).bundleVersion === null ? undefined : true));
    first.child.kill("SIGTERM");
    await new Promise((resolve) => first.child.once("exit", resolve));
    // What an agent enrolled before roots holds: no root pinned, none verified.
    rmSync(join(dataDir, "identity", "root-1.json"));
    rmSync(join(dataDir, "identity", "trusted-root.json"), { force: true });
    const agent = await spawnAgent(h, dataDir, false);
    const restarted = await health(agent);
    expect(restarted).toMatchObject({ bundleSource: "disk", lastRefusal: null });
    await call(h.admin, "POST", "/v1/apply", { files: [globalWithWarning(3)] });
    await eventually("the agent refuses the next bundle", async () => ((await health(agent)).lastRefusal === null ? undefined : true));
    expect((await health(agent)).lastRefusal).toMatchObject({ message: expect.stringMatching(/enrolled before roots and pins no root version 1.*enrol it again/) });
    expect((await health(agent)).bundleVersion).toBe(restarted.bundleVersion);
    expect(existsSync(join(dataDir, "identity", "trusted-root.json"))).toBe(false);
    agent.child.kill("SIGTERM");
  });
});

describe("revocation and regional scopes, as the agent sees them", () => {
  let h: TestHub;
  let agent: RunningAgent;
  const usEast = generateKeyPairSync("ed25519");

  beforeAll(async () => {
    h = await federation("revoke");
    agent = await startAgent({ hubUrl: h.hub.url, cluster: CLUSTER, dataDir: join(fixture.root, "revoke-agent"), caPem: h.hub.caPem, joinToken: await joinToken(h, CLUSTER), webhookPort: 0, pollWaitSeconds: 2 });
    agents.push(agent);
    await eventually("the agent holds a bundle", () => agent.bundle.current !== undefined);
  });

  /** A bundle for this agent's cluster, signed by `key`, newer than what it holds. */
  function forged(key: Parameters<typeof signBundle>[2], region = "eu-west"): Buffer {
    const held = agent.bundle.current!;
    const source = decodeBundle(readFileSync(join(fixture.root, "revoke-agent", "bundles", "current.bundle")));
    const { type: _t, specVersion: _s, ...meta } = held.metadata;
    return encodeBundle(signBundle({ ...meta, region, version: held.metadata.version + 100 }, source.target, key));
  }

  it("refuses a bundle signed by a revoked key from the next bundle on, and keeps enforcing what it holds", async () => {
    // us-east is delegated first (a root version), then the bundles key is revoked: the
    // next bundles name the root that revokes it, and the agent fetches that root (with the delegation).
    await h.hub.context.trust.delegateRegion("us-east", createPublicKey(usEast.privateKey).export({ type: "spki", format: "pem" }).toString());
    const oldKeyId = h.hub.context.bundles.key.keyId;
    const oldKey = (await signingKeyById(h.hub.context.db, OPERATOR_KEY, oldKeyId))!;
    const revoked = await cli(h, ["keys", "rotate", "--purpose", "bundles", "--revoke", oldKeyId, "--reason", "key copied off the hub host", "-o", "json"]);
    expect(revoked.code, revoked.err).toBe(0);
    const rootVersion = (JSON.parse(revoked.out) as { rootVersion: number }).rootVersion;
    await eventually("the agent holds a bundle under the revoking root", () => (agent.bundle.current?.metadata.rootVersion === rootVersion ? true : undefined));
    const held = agent.bundle.current!.metadata;
    expect(agent.bundle.offer(forged(oldKey.privateKey), new Date())).toBeUndefined();
    expect(agent.bundle.lastRefusal).toMatchObject({ problem: "untrusted-key", message: expect.stringMatching(/revoked by root version/) });
    expect(agent.bundle.current!.metadata).toEqual(held);
    // The log integrates entries in the background: the revocation's entry comes within moments.
    const entries = await eventually("the revocation in the audit log", async () => {
      const found = (await call<{ items: { entry: { kind: string; data: Record<string, unknown> } }[] }>(h.admin, "GET", "/v1/audit/entries?kind=key.revoked")).body.items.map((i) => i.entry);
      return found.length > 0 ? found : undefined;
    });
    expect(entries).toEqual([expect.objectContaining({ kind: "key.revoked", data: expect.objectContaining({ keyId: oldKeyId, reason: "key copied off the hub host", purpose: "bundles" }) })]);
  });

  it("refuses a bundle signed by another region's delegated key", async () => {
    const held = agent.bundle.current!.metadata;
    // The us-east key signing a bundle for this eu-west cluster, naming its region…
    expect(agent.bundle.offer(forged(usEast.privateKey), new Date())).toBeUndefined();
    expect(agent.bundle.lastRefusal?.message).toMatch(/delegated to region us-east only, and may not sign for region eu-west/);
    // …or lying about the region (the metadata names us-east): the agent's cluster is in eu-west by its bundle's signed region and its identity.
    expect(agent.bundle.current!.metadata).toEqual(held);
  });
});

describe("a region's intermediate CA", () => {
  let h: TestHub;

  beforeAll(async () => {
    h = await federation("regional-ca");
    await call(h.admin, "POST", "/v1/clusters", { name: "us-east-1", region: "us-east", labels: {} });
  });

  async function regional(region: string) {
    const key = await newPrivateKey();
    const issued = (await call<{ certificatePem: string; chainPem: string[] }>(h.admin, "POST", "/v1/trust/regional-ca", { region, publicKeyPem: createPublicKey(key).export({ type: "spki", format: "pem" }).toString() })).body;
    return { federation: "acme", certificate: new x509.X509Certificate(issued.certificatePem), certificatePem: issued.certificatePem, privateKey: await importPrivateKeyPem(key) };
  }

  async function asCluster(ca: Awaited<ReturnType<typeof regional>>, region: string, cluster: string): Promise<HubEndpoint> {
    const key = await newPrivateKey();
    const leaf = await issueClusterCertificate(ca, await readCsr(await createCsr(cluster, key)), { region, cluster }, new Date(), 3600e3);
    return { url: h.hub.url, caPem: h.hub.caPem, clientCertificatePem: leaf.pem + ca.certificatePem, clientKeyPem: key };
  }

  it("is issued CA, pathLen 0, name-constrained to its region's SPIFFE path", async () => {
    const ca = await regional("eu-west");
    const text = ca.certificate;
    expect(text.getExtension(x509.BasicConstraintsExtension)).toMatchObject({ ca: true, pathLength: 0 });
    const search = (await call<{ items: { entry: { kind: string; region: string } }[] }>(h.admin, "GET", "/v1/audit/entries?kind=region.ca-issued")).body.items.map((i) => i.entry);
    expect(search).toEqual([expect.objectContaining({ kind: "region.ca-issued", region: "eu-west" })]);
  });

  it("cannot mint an identity of another region that the hub accepts", async () => {
    const eu = await regional("eu-west");
    const error = await call(await asCluster(eu, "us-east", "us-east-1"), "GET", "/v1/agent/bundle").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(HubError);
    expect((error as HubError).status).toBe(401);
    expect((error as HubError).message).toMatch(/spiffe:\/\/acme\/region\/us-east\/cluster\/us-east-1 is outside what .*region eu-west CA.* may issue/);
    // Its own region's identity passes the constraint check (this hub then finds no record of it: a regional hub's to accept).
    const own = await call(await asCluster(eu, "eu-west", CLUSTER), "GET", "/v1/agent/bundle").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((own as HubError).message).toMatch(/not issued by this federation's hubs/);
  });

  it("delegates a region's key in a new root version that scopes it to that region", async () => {
    const key = generateKeyPairSync("ed25519");
    const before = (await root(h)).signed.version;
    const answer = await call<unknown>(h.admin, "POST", "/v1/trust/delegations", { region: "eu-west", publicKeyPem: key.publicKey.export({ type: "spki", format: "pem" }).toString() });
    const next = parseRootEnvelope(answer.body).signed;
    expect(next.version).toBe(before + 1);
    expect(next.delegations).toEqual([expect.objectContaining({ region: "eu-west", keyIds: [keyIdOf(key.publicKey)], threshold: 1 })]);
    const roots = (await call<{ items: unknown[] }>(h.anonymous, "GET", `/v1/trust/roots?after=${before - 1}`)).body.items.map((r) => parseRootEnvelope(r).signed.version);
    expect(roots).toEqual([before, before + 1]);
  });
});
