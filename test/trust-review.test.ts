/**
 * The security review of regional hubs (issue 15), its findings closed, end to end over real
 * TLS: the roots an agent keeps on its disk are rebuilt from version 1 at every start and,
 * when they do not verify, no new bundle is accepted (a key revoked after version 1 stays
 * refused); agents ask every source they have for a newer root on a timer; a root that
 * expired lets no new bundle in; the hub re-signs its root before it expires.
 */
import { createPublicKey, generateKeyPairSync, type KeyObject, type KeyPairKeyObjectResult } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, type RunningAgent } from "../src/agent/index.js";
import type { RegionalEnrolled } from "../src/api/regions.js";
import { decodeBundle, encodeBundle, keyIdOf, signBundle, type BundleMetadata } from "../src/bundle/index.js";
import { contentHash } from "../src/canonical/index.js";
import { call, closeConnections, type HubEndpoint } from "../src/client/http.js";
import { revokeKey } from "../src/hub/key-rotation.js";
import { startHub } from "../src/hub/index.js";
import { signingKeyById } from "../src/hub/keys.js";
import { issueClusterCertificate, readCsr } from "../src/identity/ca.js";
import { createCsr, enroll, newPrivateKey } from "../src/identity/enrollment.js";
import { importPrivateKeyPem, x509 } from "../src/identity/x509.js";
import { parseRootEnvelope } from "../src/trust/index.js";
import { eventually } from "./support/eventually.js";
import { example, HubFixture, joinToken, refused, type TestHub } from "./support/hubs.js";
import { Link } from "./support/link.js";

const OPERATOR_KEY = "trust-review-operator-key-0123456789abcdef";
const fixture = new HubFixture("polity-trust-review-", OPERATOR_KEY, "acme");
const CLUSTER = "eu-west-1";
const DAY = 24 * 3600 * 1000;
const agents: RunningAgent[] = [];

afterAll(async () => {
  closeConnections();
  await Promise.allSettled(agents.map((a) => a.close()));
});

async function federation(name: string): Promise<TestHub> {
  const h = await fixture.startCopy(name, { keysIntervalMs: 300, trust: { overlapMs: 60 * 60 * 1000 } });
  await call(h.admin, "POST", "/v1/apply", { files: [example("global.yaml"), example("region-eu-west.yaml"), example("cluster-eu-west-1.yaml")] });
  await call(h.admin, "POST", "/v1/clusters", { name: CLUSTER, region: "eu-west", labels: { env: "prod" } });
  return h;
}

async function agentOf(h: TestHub, dataDir: string, options: { hubUrl?: string; fallbackUrls?: string[]; rootCheckIntervalMs?: number; now?: () => Date; enrol?: boolean } = {}): Promise<RunningAgent> {
  const agent = await startAgent({
    hubUrl: options.hubUrl ?? h.hub.url,
    ...(options.fallbackUrls === undefined ? {} : { fallbackUrls: options.fallbackUrls }),
    cluster: CLUSTER,
    dataDir,
    ...(options.enrol === false ? {} : { caPem: h.hub.caPem, joinToken: await joinToken(h, CLUSTER) }),
    webhookPort: 0,
    pollWaitSeconds: 2,
    ...(options.rootCheckIntervalMs === undefined ? {} : { rootCheckIntervalMs: options.rootCheckIntervalMs }),
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  agents.push(agent);
  return agent;
}

/** A bundle for the agent's cluster signed by `key`, newer than what it holds (its policies unchanged). */
function forged(held: BundleMetadata, dataDir: string, key: Parameters<typeof signBundle>[2], expires?: string): Buffer {
  const source = decodeBundle(readFileSync(join(dataDir, "bundles", "current.bundle")));
  const { type: _t, specVersion: _s, ...meta } = held;
  return encodeBundle(signBundle({ ...meta, version: held.version + 100, rootVersion: 1, ...(expires === undefined ? {} : { expires }) }, source.target, key));
}

describe("the roots an agent keeps on its disk", () => {
  it("are rebuilt from version 1 at every start; when they do not verify, the agent keeps enforcing the bundle it held, refuses a bundle signed by a key revoked after version 1, and trusts again once a chain fetched from a hub verifies", async () => {
    const h = await federation("chain");
    const dataDir = join(fixture.root, "chain-agent");
    let agent = await agentOf(h, dataDir);
    await eventually("the agent holds a bundle", () => agent.bundle.current !== undefined);
    // The bundles key of root version 1 is revoked (root version 2): the agent follows.
    const oldKeyId = h.hub.context.bundles.key.keyId;
    const oldKey = (await signingKeyById(h.hub.context.db, OPERATOR_KEY, oldKeyId))!;
    const { rootVersion } = await revokeKey(h.hub.context.trust, oldKeyId, "copied off the hub host");
    await eventually("the agent holds a bundle under the revoking root", () => (agent.bundle.current?.metadata.rootVersion === rootVersion ? true : undefined));
    const held = agent.bundle.current!.metadata;
    await agent.close();
    expect(parseRootEnvelope(readFileSync(join(dataDir, "identity", "roots", `${rootVersion}.json`), "utf8")).signed.version).toBe(rootVersion);

    // The disk loses the revoking root and the newest one is altered (bit rot, or a hand).
    rmSync(join(dataDir, "identity", "roots", `${rootVersion}.json`));
    const newest = join(dataDir, "identity", "trusted-root.json");
    const intact = readFileSync(newest, "utf8");
    writeFileSync(newest, intact.replace(/"sig":"(.)/, (_m, c: string) => `"sig":"${c === "A" ? "B" : "A"}`));
    // Restarted with its hub out of reach: the chain cannot be fetched again.
    agent = await agentOf(h, dataDir, { hubUrl: "https://127.0.0.1:9", enrol: false });
    expect(agent.health().roots.degraded).toMatch(/trusted-root.json names root version 2, but the roots kept on disk verify only up to version 1/);
    // A bundle signed by the key root version 2 revoked (and root version 1 lists) is refused…
    const forgery = forged(held, dataDir, oldKey.privateKey);
    expect(agent.bundle.offer(forgery, new Date())).toBeUndefined();
    expect(agent.bundle.lastRefusal).toMatchObject({ problem: "root-chain-broken", message: expect.stringMatching(/new bundles are refused until a chain of roots fetched from a hub verifies/) });
    // …and the bundle held, signed by a key of root version 2 that nothing verifies now, is not enforced either (fail closed).
    expect(agent.bundle.current).toBeUndefined();
    await agent.close();

    // The newest root intact (it verifies by its own keys), the one before it lost (an agent
    // from before the chain was kept): the bundle held is enforced, nothing new is accepted.
    writeFileSync(newest, intact);
    agent = await agentOf(h, dataDir, { hubUrl: "https://127.0.0.1:9", enrol: false });
    expect(agent.bundle.current?.metadata).toEqual(held);
    expect(agent.health().roots.degraded).toMatch(/verify only up to version 1/);
    expect(agent.bundle.offer(forgery, new Date())).toBeUndefined();
    expect(agent.health().lastRefusal?.problem).toBe("root-chain-broken");
    expect(agent.bundle.current?.metadata).toEqual(held);
    await agent.close();

    // With its hub back, the chain is fetched and verified: trusted again, the revocation kept.
    agent = await agentOf(h, dataDir, { enrol: false, rootCheckIntervalMs: 500 });
    await eventually("the agent verified the chain again", () => (agent.health().roots.degraded === null && agent.health().roots.version === rootVersion ? true : undefined));
    expect(agent.bundle.offer(forgery, new Date())).toBeUndefined();
    expect(agent.bundle.lastRefusal?.message).toMatch(/revoked by root version 2/);
    const version = agent.bundle.current!.metadata.version;
    const global = example("global.yaml");
    const warning = "apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: suggest-labels, owner: platform-team }\nspec:\n  domain: workload-security\n  match: { kinds: [Pod] }\n  validations:\n    - expression: \"has(object.metadata.labels)\"\n      message: \"pods should carry labels\"\n  enforcement: warn\n";
    await call(h.admin, "POST", "/v1/apply", { files: [{ name: global.name, content: `${global.content.trimEnd()}\n---\n${warning}` }] });
    await eventually("the agent takes the next bundle", () => (agent.bundle.current!.metadata.version > version ? true : undefined));
    await agent.close();
  }, 90_000);
});

describe("the newest root, asked on a timer", () => {
  it("is asked of every source the agent has, so a root its first source withholds still reaches it", async () => {
    const h = await federation("timer");
    const dataDir = join(fixture.root, "timer-agent");
    // Its first source answers nothing (a regional hub that withholds); the global hub is second.
    const agent = await agentOf(h, dataDir, { fallbackUrls: [h.hub.url], rootCheckIntervalMs: 500 });
    await eventually("the agent holds a bundle", () => agent.bundle.current !== undefined);
    await agent.close();
    const timed = await agentOf(h, dataDir, { hubUrl: "https://127.0.0.1:9", fallbackUrls: [h.hub.url], rootCheckIntervalMs: 500, enrol: false });
    // A new root that re-makes no bundle (a delegation): only the timer can bring it.
    const usEast = generateKeyPairSync("ed25519");
    const delegated = await h.hub.context.trust.delegateRegion("us-east", createPublicKey(usEast.privateKey).export({ type: "spki", format: "pem" }).toString());
    await eventually("the agent holds the new root", () => (timed.health().roots.version === delegated.signed.version ? true : undefined));
    // Not from a bundle: the one it holds names an older root.
    expect(timed.bundle.current!.metadata.rootVersion).toBeLessThan(delegated.signed.version);
    await eventually("the check is over", () => timed.health().roots.checkedAt !== null);
    await timed.close();
  }, 60_000);
});

describe("a root that expires", () => {
  it("lets no new bundle in once the newest root the agent holds has expired; the bundle held stays enforced", async () => {
    const h = await federation("expiry");
    const dataDir = join(fixture.root, "expiry-agent");
    const clock = { offsetMs: 0 };
    const agent = await agentOf(h, dataDir, { now: () => new Date(Date.now() + clock.offsetMs), rootCheckIntervalMs: 3_600_000 });
    await eventually("the agent holds a bundle", () => agent.bundle.current !== undefined);
    const held = agent.bundle.current!.metadata;
    const key = (await signingKeyById(h.hub.context.db, OPERATOR_KEY, h.hub.context.bundles.key.keyId))!;
    const expires = agent.health().roots.expires!;
    clock.offsetMs = Date.parse(expires) - Date.now() + DAY;
    const at = new Date(Date.now() + clock.offsetMs);
    expect(agent.bundle.offer(forged(held, dataDir, key.privateKey, new Date(at.getTime() + DAY).toISOString()), at)).toBeUndefined();
    expect(agent.bundle.lastRefusal).toMatchObject({ problem: "root-expired", message: expect.stringMatching(/the newest root this agent holds \(version 1\) expired at .*new bundles are refused until a newer root verifies/) });
    expect(agent.bundle.current!.metadata).toEqual(held);
    await agent.close();
  }, 60_000);

  it("is re-signed by the hub before it expires: a new version, the same keys, a later expiry, audited", async () => {
    const h = await federation("renew-root");
    const before = parseRootEnvelope((await call<unknown>(h.anonymous, "GET", "/v1/trust/root")).body).signed;
    h.clock.offsetMs = Date.parse(before.expires) - Date.now() - 10 * DAY;
    const after = await eventually("the hub re-signs its root", async () => {
      const root = parseRootEnvelope((await call<unknown>(h.anonymous, "GET", "/v1/trust/root")).body).signed;
      return root.version > before.version ? root : undefined;
    });
    expect(after.version).toBe(before.version + 1);
    expect(Date.parse(after.expires)).toBeGreaterThan(Date.parse(before.expires));
    expect({ keys: after.keys, roles: after.roles, revoked: after.revoked, delegations: after.delegations }).toEqual({ keys: before.keys, roles: before.roles, revoked: before.revoked, delegations: before.delegations });
    await eventually("the new root in the audit log", async () => {
      const items = (await call<{ items: { entry: { data: { version: number } } }[] }>(h.admin, "GET", "/v1/audit/entries?kind=trust.root-published")).body.items;
      return items.some((i) => i.entry.data.version === after.version) ? true : undefined;
    });
    h.clock.offsetMs = 0;
  }, 60_000);
});

describe("what a region sends up, judged by the global hub", () => {
  let h: TestHub;
  const euWest = generateKeyPairSync("ed25519");
  const stranger = generateKeyPairSync("ed25519");
  let rootVersion = 0;

  beforeAll(async () => {
    h = await federation("claims");
    await call(h.admin, "POST", "/v1/clusters", { name: "us-east-1", region: "us-east", labels: {} });
    const bundleKeyPem = createPublicKey(euWest.privateKey).export({ type: "spki", format: "pem" }).toString();
    rootVersion = (await h.hub.context.trust.delegateRegion("eu-west", bundleKeyPem)).signed.version;
    // Its hub, as enrolment records it: summaries are taken from a region with a hub in good standing.
    await h.hub.context.db.query("INSERT INTO regional_hubs (region, serial, public_key_sha256, bundle_key_pem, audit_key_pem, enrolled_at) VALUES ('eu-west', '01', 'unused', $1, $1, now())", [bundleKeyPem]);
  });

  /** A bundle as a region's hub signs it, base64. */
  function regional(key: Parameters<typeof signBundle>[2], meta: { cluster?: string; region?: string; version: number }): string {
    const target = Buffer.from(`{"policies":[],"v":${meta.version}}`);
    const now = new Date();
    const bundle = signBundle(
      { federation: "acme", region: meta.region ?? "eu-west", cluster: meta.cluster ?? CLUSTER, version: meta.version, issuedAt: now.toISOString(), expires: new Date(now.getTime() + DAY).toISOString(), targetHash: contentHash(target), targetLength: target.length, rootVersion },
      target,
      key,
    );
    return encodeBundle(bundle).toString("base64");
  }

  const summary = (bundles: { cluster: string; version: number; bytes: string }[], conflicts: Conflict[] = []) => ({ certificates: [], bundles, status: {}, compliance: {}, conflicts });
  type Conflict = { id: string; layerId: string; reason: string; resolution: string; revertedVersion: number | null; detectedAt: string };

  it("stores a bundle only when the current root's delegation for the region verifies it, with the version its signed metadata gives; a forged one, another region's cluster, a huge version are refused and audited", async () => {
    const regions = h.hub.context.regions!;
    // The summary's version is not believed: the signed metadata's is.
    let answer = await regions.receive("eu-west", summary([{ cluster: CLUSTER, version: 999_999_999, bytes: regional(euWest.privateKey, { version: 5 }) }]));
    expect(answer.refused).toBeUndefined();
    expect((await regions.bundleFor(CLUSTER))?.version).toBe(5);
    answer = await regions.receive(
      "eu-west",
      summary([
        // Signed by a key the root does not know.
        { cluster: CLUSTER, version: 6, bytes: regional(stranger.privateKey, { version: 6 }) },
        // A cluster of us-east, signed by eu-west's key.
        { cluster: "us-east-1", version: 6, bytes: regional(euWest.privateKey, { cluster: "us-east-1", region: "us-east", version: 6 }) },
        // A version that would pin the copy.
        { cluster: CLUSTER, version: 2 ** 40, bytes: regional(euWest.privateKey, { version: 2 ** 40 }) },
        // Bytes that are no bundle.
        { cluster: CLUSTER, version: 7, bytes: Buffer.from("not a bundle").toString("base64") },
      ]),
    );
    expect(answer.refused).toEqual([
      expect.stringMatching(/^bundle: .*does not verify under root version \d+ .*untrusted-key/),
      expect.stringMatching(/^bundle: the bundle for cluster us-east-1 names region us-east, not eu-west/),
      expect.stringMatching(/^bundle: .*version 1099511627776, more than 1000000 above the copy held \(5\)/),
      expect.stringMatching(/^bundle: the bundle sent for cluster eu-west-1 does not verify/),
    ]);
    expect((await regions.bundleFor(CLUSTER))?.version).toBe(5);
    expect(await regions.bundleFor("us-east-1")).toBeUndefined();
    // The next honest bundle still replaces it.
    await regions.receive("eu-west", summary([{ cluster: CLUSTER, version: 6, bytes: regional(euWest.privateKey, { version: 6 }) }]));
    expect((await regions.bundleFor(CLUSTER))?.version).toBe(6);
    const refusals = await eventually("the refusals in the audit log", async () => {
      const items = (await call<{ items: { entry: { region: string; data: { what: string; why: string; count: number } } }[] }>(h.admin, "GET", "/v1/audit/entries?kind=regional-hub.refused")).body.items;
      return items.length > 0 ? items.map((i) => i.entry) : undefined;
    });
    expect(refusals).toEqual([expect.objectContaining({ region: "eu-west", data: expect.objectContaining({ what: "bundle", count: 4 }) })]);
  });

  it("takes bundles as metadata lines with their targets sent once, and refuses one whose target is missing or altered", async () => {
    const regions = h.hub.context.regions!;
    const split = (version: number) => {
      const bytes = Buffer.from(regional(euWest.privateKey, { version }), "base64");
      const newline = bytes.indexOf(10);
      const target = bytes.subarray(newline + 1);
      return { bytes, envelope: bytes.subarray(0, newline + 1).toString("base64"), target, hash: contentHash(target) };
    };
    const eight = split(8);
    let answer = await regions.receive("eu-west", {
      ...summary([]),
      bundles: [{ cluster: CLUSTER, version: 8, envelope: eight.envelope, target: eight.hash }],
      targets: [{ hash: eight.hash, bytes: eight.target.toString("base64") }],
    });
    expect(answer.refused).toBeUndefined();
    // Served as the region signed it, byte for byte.
    expect((await regions.bundleFor(CLUSTER))?.bytes.equals(eight.bytes)).toBe(true);
    // Kept as it came: the metadata line and its target's hash, the target once.
    const db = h.hub.context.db;
    expect(await db.query("SELECT bytes IS NULL AS split, target_hash FROM regional_bundles WHERE cluster = $1", [CLUSTER])).toEqual([{ split: true, target_hash: eight.hash }]);
    expect(await db.query("SELECT hash FROM regional_targets")).toEqual([{ hash: eight.hash }]);
    const nine = split(9);
    const bundles = [{ cluster: CLUSTER, version: 9, envelope: nine.envelope, target: nine.hash }];
    answer = await regions.receive("eu-west", { ...summary([]), bundles, targets: [] });
    expect(answer.refused).toEqual([`bundle: the bundle for cluster ${CLUSTER} names target ${nine.hash}, which the summary does not carry`]);
    // A target whose bytes are not what its name says is not used (hashed once, however many bundles name it).
    answer = await regions.receive("eu-west", { ...summary([]), bundles, targets: [{ hash: nine.hash, bytes: Buffer.from('{"policies":[1],"v":9}').toString("base64") }] });
    expect(answer.refused).toEqual([
      `bundle: the target sent as ${nine.hash} does not hash to that name: the bundles naming it are not taken`,
      `bundle: the bundle for cluster ${CLUSTER} names target ${nine.hash}, which the summary does not carry`,
    ]);
    // Metadata with anything after its line: what would be served is not what was judged.
    const junk = Buffer.concat([Buffer.from(eight.envelope, "base64"), Buffer.from("junk")]).toString("base64");
    answer = await regions.receive("eu-west", { ...summary([]), bundles: [{ cluster: CLUSTER, version: 8, envelope: junk, target: eight.hash }], targets: [{ hash: eight.hash, bytes: eight.target.toString("base64") }] });
    expect(answer.refused).toEqual([`bundle: the metadata sent for cluster ${CLUSTER} is not one line ending in a newline`]);
    // A bundle naming a target other than the one its signed metadata names.
    const other = split(10);
    answer = await regions.receive("eu-west", { ...summary([]), bundles: [{ cluster: CLUSTER, version: 10, envelope: other.envelope, target: eight.hash }], targets: [{ hash: eight.hash, bytes: eight.target.toString("base64") }] });
    expect(answer.refused).toEqual([expect.stringMatching(/^bundle: .*target-mismatch/)]);
    expect((await regions.bundleFor(CLUSTER))?.version).toBe(8);
    // A whole bundle (as an older regional hub sends them) replaces it; the target no bundle names any more goes.
    answer = await regions.receive("eu-west", summary([{ cluster: CLUSTER, version: 11, bytes: regional(euWest.privateKey, { version: 11 }) }]));
    expect(answer.refused).toBeUndefined();
    expect((await regions.bundleFor(CLUSTER))?.version).toBe(11);
    expect(await db.query("SELECT hash FROM regional_targets")).toEqual([]);
  });

  it("records a region's conflicts about its own layer only, as the region's claim", async () => {
    const regions = h.hub.context.regions!;
    const at = new Date().toISOString();
    const conflict = (id: string, layerId: string): Conflict => ({ id, layerId, reason: "a lock set meanwhile", resolution: "reverted", revertedVersion: 2, detectedAt: at });
    const answer = await regions.receive("eu-west", summary([], [conflict("00000000000000a1", "region/eu-west"), conflict("00000000000000a2", "global"), conflict("00000000000000a3", "region/us-east")]));
    expect(answer.refused).toEqual([expect.stringMatching(/conflict: a region reports conflicts about its own layer region\/eu-west only, not "global"/), expect.stringMatching(/not "region\/us-east"/)]);
    const items = (await call<{ items: { id: string; layerId: string; detectedBy: string }[] }>(h.admin, "GET", "/v1/conflicts")).body.items;
    expect(items).toEqual([expect.objectContaining({ id: "00000000000000a1", layerId: "region/eu-west", detectedBy: "region eu-west" })]);
    const entries = await eventually("the conflict in the audit log", async () => {
      const found = (await call<{ items: { entry: { data: Record<string, unknown> } }[] }>(h.admin, "GET", "/v1/audit/entries?kind=region.conflict")).body.items;
      return found.length > 0 ? found.map((i) => i.entry.data) : undefined;
    });
    expect(entries).toEqual([expect.objectContaining({ id: "00000000000000a1", reportedBy: "region eu-west" })]);
  });
});

/** A regional hub of eu-west enrolled by hand, with keys the test holds; its mutual-TLS endpoint at the hub. */
async function enrolByHand(h: TestHub): Promise<{ enrolled: RegionalEnrolled; caKey: string; bundleKey: KeyPairKeyObjectResult; asHub: HubEndpoint }> {
  const spki = (pem: string) => createPublicKey(pem).export({ type: "spki", format: "pem" }).toString();
  const token = (await call<{ token: string }>(h.admin, "POST", "/v1/regions/eu-west/tokens", { allowLoopback: true })).body.token;
  const hubKey = await newPrivateKey();
  const caKey = await newPrivateKey();
  const bundleKey = generateKeyPairSync("ed25519");
  const auditKey = generateKeyPairSync("ed25519");
  const enrolled = (
    await call<RegionalEnrolled>(h.anonymous, "POST", "/v1/regions/enrol", {
      token,
      region: "eu-west",
      hubPublicKeyPem: spki(hubKey),
      caPublicKeyPem: spki(caKey),
      bundleKeyPem: bundleKey.publicKey.export({ type: "spki", format: "pem" }).toString(),
      auditKeyPem: auditKey.publicKey.export({ type: "spki", format: "pem" }).toString(),
      hostnames: [],
    })
  ).body;
  return { enrolled, caKey, bundleKey, asHub: { url: h.hub.url, caPem: h.hub.caPem, clientCertificatePem: enrolled.hubCertificatePem, clientKeyPem: hubKey } };
}

/** A bundle for CLUSTER that the region's hub signed (`version`), sent up in a summary; its bytes. */
async function sendUp(asHub: HubEndpoint, enrolled: RegionalEnrolled, key: KeyObject, version: number): Promise<Buffer> {
  const target = Buffer.from('{"policies":[]}');
  const now = new Date();
  const signed = signBundle(
    { federation: "acme", region: "eu-west", cluster: CLUSTER, version, issuedAt: now.toISOString(), expires: new Date(now.getTime() + DAY).toISOString(), targetHash: contentHash(target), targetLength: target.length, rootVersion: enrolled.rootVersion },
    target,
    key,
  );
  const bytes = encodeBundle(signed);
  await call(asHub, "POST", "/v1/region/summary", { certificates: [], bundles: [{ cluster: CLUSTER, version, bytes: bytes.toString("base64") }], status: {}, compliance: {}, conflicts: [] });
  return bytes;
}

describe("a global hub with a region that has its own hub", () => {
  it("signs no bundle of its own for the region's clusters (a change costs it nothing there), shows and serves the copy of that hub's, and signs one when the region is cut off, newer than that hub's", async () => {
    const h = await federation("signed-elsewhere");
    await call(h.admin, "POST", "/v1/clusters", { name: "us-east-1", region: "us-east" });
    const { enrolled, bundleKey, asHub } = await enrolByHand(h);
    const bundles = h.hub.context.bundles;
    // Signed at registration, before the region had a hub.
    const own = bundles.version(CLUSTER)!;
    const usEast = bundles.version("us-east-1")!;
    const global = example("global.yaml");
    const changed = { name: global.name, content: global.content.replace("locked: true", "locked: false") };
    expect(changed.content).not.toBe(global.content);
    await call(h.admin, "POST", "/v1/apply", { files: [changed] });
    expect(bundles.version("us-east-1")).toBe(usEast + 1);
    expect(bundles.version(CLUSTER)).toBe(own);
    // Nor does the level-triggered refresh make one.
    expect(await bundles.refresh([CLUSTER, "us-east-1"])).toEqual([]);
    // The change undone: the bundle this hub signed at registration names the cluster's set again.
    await call(h.admin, "POST", "/v1/apply", { files: [global] });
    expect(bundles.version(CLUSTER)).toBe(own);
    const published = (await call<{ items: { entry: { region: string } }[] }>(h.admin, "GET", "/v1/audit/entries?kind=bundles.published&limit=1000")).body.items;
    expect(published.filter((i) => i.entry.region === "eu-west")).toHaveLength(1); // the registration's
    expect(bundles.signedMetadata(CLUSTER)?.targetHash).toBe(h.hub.context.federation.effectiveFor(CLUSTER).hash);

    // What the hub shows and serves for the cluster: the bundle its region's hub signed, as sent up.
    const bytes = await sendUp(asHub, enrolled, bundleKey.privateKey, 7);
    expect((await call<{ bundle: number | null }>(h.admin, "GET", `/v1/clusters/${CLUSTER}`)).body.bundle).toBe(7);
    expect((await call<{ items: { name: string; bundle: number | null }[] }>(h.admin, "GET", "/v1/clusters")).body.items.map((c) => [c.name, c.bundle])).toEqual([
      [CLUSTER, 7],
      ["us-east-1", usEast + 2],
    ]);
    const served = await call<Buffer>(h.admin, "GET", `/v1/clusters/${CLUSTER}/bundle`, undefined, { raw: true, binary: true });
    expect(Buffer.compare(served.body, bytes)).toBe(0);
    expect((await call<{ bundle: { version: number | null } }>(h.admin, "GET", `/v1/clusters/${CLUSTER}/intents`)).body.bundle.version).toBe(7);
    // The mirror tells the region's hub the newest version the cluster's agent may hold (one
    // enrolled again starts from an empty database): the region's last, not this hub's 1.
    expect((await h.hub.context.regions!.mirror("eu-west")).clusters.find((c) => c.name === CLUSTER)?.bundleVersion).toBe(7);

    // Cut off: its clusters' bundles come from this hub again, level-triggered, newer than the
    // region's hub's (version 7), which its agents hold: an older one they would refuse as a
    // rollback. The one held here (version 1, the cluster's set again) is made again under
    // the root that revokes the region's key, newer than 7.
    await revokeKey(h.hub.context.trust, keyIdOf(bundleKey.publicKey), "eu-west hub compromised");
    expect(await h.hub.context.regions!.bundleFor(CLUSTER)).toBeUndefined();
    await eventually("a bundle this hub signed for the cluster", () => ((bundles.version(CLUSTER) ?? 0) > own ? true : undefined));
    expect(bundles.version(CLUSTER)).toBe(8);
    expect((await call<{ bundle: number | null }>(h.admin, "GET", `/v1/clusters/${CLUSTER}`)).body.bundle).toBe(bundles.version(CLUSTER));
  }, 60_000);
});

describe("a region whose delegated key is revoked", () => {
  it("is cut off at the global hub: its hub's mirror and summaries refused (403, audited), its CA's certificates refused, its bundles no longer served", async () => {
    const h = await federation("cut-off");
    const { enrolled, caKey, bundleKey, asHub } = await enrolByHand(h);
    expect((await call<{ region: string }>(asHub, "GET", "/v1/region/mirror")).body.region).toBe("eu-west");
    // A cluster certificate its CA issued.
    const ca = { federation: "acme", certificate: new x509.X509Certificate(enrolled.caCertificatePem), certificatePem: enrolled.caCertificatePem, privateKey: await importPrivateKeyPem(caKey) };
    const leafKey = await newPrivateKey();
    const leaf = await issueClusterCertificate(ca, await readCsr(await createCsr(CLUSTER, leafKey)), { region: "eu-west", cluster: CLUSTER }, new Date(), 3600e3);
    const asCluster: HubEndpoint = { url: h.hub.url, caPem: h.hub.caPem, clientCertificatePem: leaf.pem + enrolled.caCertificatePem, clientKeyPem: leafKey };
    expect((await refused(call(asCluster, "GET", "/v1/agent/bundle"))).message).toMatch(/not issued by this federation's hubs/);
    // Reported in a summary: recorded only when the region's CA signed it for one of its clusters.
    const claim = { serial: leaf.serial, cluster: CLUSTER, notBefore: leaf.notBefore.toISOString(), notAfter: leaf.notAfter.toISOString(), publicKeySha256: leaf.publicKeySha256, certificatePem: leaf.pem };
    const foreign = await issueClusterCertificate(h.hub.context.identity.authority, await readCsr(await createCsr(CLUSTER, await newPrivateKey())), { region: "eu-west", cluster: CLUSTER }, new Date(), 3600e3);
    const reported = (
      await call<{ refused?: string[] }>(asHub, "POST", "/v1/region/summary", {
        certificates: [claim, { ...claim, serial: foreign.serial, publicKeySha256: foreign.publicKeySha256, certificatePem: foreign.pem }, { ...claim, cluster: "eu-west-2" }],
        bundles: [],
        status: {},
        compliance: {},
        conflicts: [],
      })
    ).body;
    expect(reported.refused).toEqual([
      expect.stringMatching(/^certificate: certificate [0-9a-f]+: not signed by a CA of region eu-west that this hub issued and has not revoked$/),
      expect.stringMatching(/^certificate: certificate [0-9a-f]+: cluster eu-west-2 is not a cluster of region eu-west$/),
    ]);
    expect((await call<{ principal: { kind: string } }>(asCluster, "GET", "/v1/whoami")).body.principal.kind).toBe("cluster");
    // Renewed here from the federation CA (an agent falling back): cut off with its region all the same.
    const laundered = (await call<{ certificate: string }>(asCluster, "POST", "/v1/renew", { csr: await createCsr(CLUSTER, leafKey) })).body.certificate;
    const asRenewed: HubEndpoint = { ...asCluster, clientCertificatePem: laundered };

    // A bundle it signed, sent up: kept for its agents' fallback.
    await sendUp(asHub, enrolled, bundleKey.privateKey, 3);
    expect((await h.hub.context.regions!.bundleFor(CLUSTER))?.version).toBe(3);

    const result = await revokeKey(h.hub.context.trust, keyIdOf(bundleKey.publicKey), "eu-west hub compromised");
    expect(await h.hub.context.regions!.bundleFor(CLUSTER)).toBeUndefined();
    // A summary let in before the revocation and taken in after it is refused whole: it would
    // otherwise serve the cut-off hub's bundles again.
    await expect(h.hub.context.regions!.receive("eu-west", { certificates: [], bundles: [], status: {}, compliance: {}, conflicts: [] })).rejects.toThrow(/revoked or enrolled again while its summary came in/);
    const mirror = await refused(call(asHub, "GET", "/v1/region/mirror"));
    expect([mirror.status, mirror.message]).toEqual([403, expect.stringMatching(/region eu-west's hub was revoked at .* \(its delegated key was revoked\)/)]);
    const pushed = await refused(call(asHub, "POST", "/v1/region/summary", { certificates: [], bundles: [], status: {}, compliance: {}, conflicts: [] }));
    expect(pushed.status).toBe(403);
    const cluster = await refused(call(asCluster, "GET", "/v1/agent/bundle"));
    expect([cluster.status, cluster.message]).toEqual([401, expect.stringMatching(/issued by region eu-west's CA .*revoked at .* with the region's delegated key/)]);
    const renewedRefused = await refused(call(asRenewed, "GET", "/v1/whoami"));
    expect([renewedRefused.status, renewedRefused.message]).toEqual([401, expect.stringMatching(/revoked/)]);
    const refusal = await eventually("the refused request in the audit log", async () => {
      const items = (await call<{ items: { entry: { region: string; data: { what: string; why: string } } }[] }>(h.admin, "GET", "/v1/audit/entries?kind=regional-hub.refused")).body.items;
      return items.find((i) => i.entry.data.what === "request of a revoked regional hub")?.entry;
    });
    expect(refusal).toMatchObject({ region: "eu-west", data: { why: expect.stringMatching(/until the region enrols again/) } });
    const revocation = await eventually("the revocation in the audit log", async () => {
      const items = (await call<{ items: { entry: { data: Record<string, unknown> } }[] }>(h.admin, "GET", "/v1/audit/entries?kind=key.revoked")).body.items;
      return items.find((i) => i.entry.data.rootVersion === result.rootVersion)?.entry;
    });
    expect(revocation.data).toMatchObject({ purpose: "region", cutOff: { regionalHub: true, authorities: [expect.any(String)], bundlesDropped: 1, certificatesRevoked: 2 } });
  }, 60_000);
});

describe("enrolment with a join token", () => {
  it("gives the token only to the global hub or the hub of the region it was minted for, never another region's hub holding the right hostname", async () => {
    const h = await federation("join");
    const spki = (pem: string) => createPublicKey(pem).export({ type: "spki", format: "pem" }).toString();
    // us-east's hub, enrolled for loopback: its certificate comes from the same federation CA.
    const regionToken = (await call<{ token: string }>(h.admin, "POST", "/v1/regions/us-east/tokens", { allowLoopback: true })).body.token;
    const hubKey = await newPrivateKey();
    const enrolled = (
      await call<RegionalEnrolled>(h.anonymous, "POST", "/v1/regions/enrol", {
        token: regionToken,
        region: "us-east",
        hubPublicKeyPem: spki(hubKey),
        caPublicKeyPem: spki(await newPrivateKey()),
        bundleKeyPem: generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString(),
        auditKeyPem: generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString(),
        hostnames: [],
      })
    ).body;
    let received = 0;
    const impostor = createServer({ cert: enrolled.hubCertificatePem, key: hubKey }, (req, res) => {
      received++;
      res.writeHead(500).end();
    });
    await new Promise<void>((resolve) => impostor.listen(0, "127.0.0.1", resolve));
    try {
      const port = (impostor.address() as { port: number }).port;
      const token = await joinToken(h, CLUSTER);
      expect(token).toMatch(/^join_eu-west\./);
      const error = await enroll({ url: `https://127.0.0.1:${port}`, caPem: h.hub.caPem }, CLUSTER, token).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(String(error)).toMatch(/spiffe:\/\/acme\/region\/us-east\/hub.* is not the hub expected here \(\/region\/eu-west\/hub or \/hub\)/);
      expect(received).toBe(0);
      // The global hub takes it.
      const credentials = await enroll({ url: h.hub.url, caPem: h.hub.caPem }, CLUSTER, token);
      expect(credentials.spiffeId).toBe("spiffe://acme/region/eu-west/cluster/eu-west-1");
    } finally {
      impostor.close();
    }
  }, 60_000);
});

describe("a regional hub offered a root that skips a version", () => {
  it("refuses it with the reason, audits it, and keeps its roots and its service", async () => {
    const h = await federation("skip");
    const link = await Link.open(h.hub.port);
    const dir = join(fixture.root, "skip-regional");
    const token = (await call<{ token: string }>(h.admin, "POST", "/v1/regions/eu-west/tokens", { allowLoopback: true })).body.token;
    const regional = await startHub({ dataDir: dir, port: 0, operatorKey: OPERATOR_KEY, regional: { region: "eu-west", parentUrl: link.url, parentCaPem: h.hub.caPem, token, linkIntervalMs: 300 } });
    const admin: HubEndpoint = { url: regional.url, caPem: regional.caPem, token: readFileSync(join(dir, "admin.token"), "utf8").trim() };
    const rootAt = async (endpoint: HubEndpoint) => parseRootEnvelope((await call<unknown>(endpoint, "GET", "/v1/trust/root")).body).signed.version;
    try {
      const held = await eventually("the regional hub holds the global root", async () => {
        const version = await rootAt(admin);
        return version === (await rootAt(h.anonymous)) ? version : undefined;
      });
      link.cut();
      const key = () => generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString();
      await h.hub.context.trust.delegateRegion("us-east", key());
      await h.hub.context.trust.delegateRegion("ap-south", key());
      // The parent lost version held+1 (restored badly): it offers held+2 right after held.
      await h.hub.context.db.query("DELETE FROM trust_roots WHERE version = $1", [held + 1]);
      link.heal();
      const refusal = await eventually("the regional hub audits the refusal", async () => {
        const items = (await call<{ items: { entry: { data: { what: string; why: string; problem: string } } }[] }>(admin, "GET", "/v1/audit/entries?kind=regional-hub.refused")).body.items;
        return items.find((i) => i.entry.data.what === "root")?.entry.data;
      }, 30_000);
      expect(refusal).toMatchObject({ problem: "version-skipped", why: expect.stringMatching(new RegExp(`root version ${held + 2} skips version ${held + 1}`)) });
      expect(await rootAt(admin)).toBe(held);
      expect((await call<{ connected: boolean; lastError: string | null }>(admin, "GET", "/v1/region")).body).toMatchObject({ connected: false, lastError: expect.stringMatching(/skips version/) });
    } finally {
      await regional.close();
      await link.close();
    }
  }, 90_000);
});

describe("what an agent pins at enrolment", () => {
  it("is the CA its operator gave it, not one the answering hub names; and a certificate for another key is refused", async () => {
    const h = await federation("pin-ca");
    // A hub whose certificate the federation CA issued (a compromised regional hub, say), answering with a CA of its own.
    const serving = await h.hub.context.identity.serverCertificate(["localhost"], ["127.0.0.1"]);
    const own = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const ownCa = await issueClusterCertificate(h.hub.context.identity.authority, await readCsr(await createCsr("not-a-ca", own.privateKey.export({ type: "pkcs8", format: "pem" }).toString())), { region: "eu-west", cluster: "not-a-ca" }, new Date(), 3600e3);
    let forOtherKey = false;
    const impostor = createServer({ cert: serving.certificatePem, key: serving.privateKeyPem }, (req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        void (async () => {
          const csr = (JSON.parse(body) as { csr: string }).csr;
          const issued = await issueClusterCertificate(h.hub.context.identity.authority, await readCsr(forOtherKey ? await createCsr(CLUSTER, await newPrivateKey()) : csr), { region: "eu-west", cluster: CLUSTER }, new Date(), 3600e3);
          const now = Date.now();
          res.writeHead(200, { "content-type": "application/json" }).end(
            JSON.stringify({ certificate: issued.pem, ca: ownCa.pem, spiffeId: `spiffe://acme/region/eu-west/cluster/${CLUSTER}`, serial: issued.serial, notAfter: new Date(now + DAY).toISOString(), renewAfter: new Date(now + DAY / 2).toISOString(), bundleKey: { publicKeyPem: "x" }, root: null }),
          );
        })();
      });
    });
    await new Promise<void>((resolve) => impostor.listen(0, "127.0.0.1", resolve));
    try {
      const url = `https://127.0.0.1:${(impostor.address() as { port: number }).port}`;
      const enrolled = await enroll({ url, caPem: h.hub.caPem }, CLUSTER, await joinToken(h, CLUSTER));
      expect(enrolled.caPem).toBe(h.hub.caPem);
      forOtherKey = true;
      await expect(enroll({ url, caPem: h.hub.caPem }, CLUSTER, await joinToken(h, CLUSTER))).rejects.toThrow("the hub answered with a certificate for another key than this cluster's");
    } finally {
      impostor.close();
    }
  });
});
