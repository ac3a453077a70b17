/**
 * A region's signed heads, judged by the global hub one at a time: a summary made against a
 * head recorded earlier than the newest (one the region sent, gave up waiting for, and which
 * was judged since) is stale, set aside without an alarm; a log that does not extend the
 * newest recorded head is refused and audited.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RegionalSummary } from "../src/api/regions.js";
import { assembleProof, consistencyRanges, leafHash, rootOf } from "../src/audit/merkle.js";
import { signTreeHead } from "../src/audit/tree-head.js";
import { call, closeConnections } from "../src/client/http.js";
import { newPrivateKey } from "../src/identity/enrollment.js";
import { createPublicKey } from "node:crypto";
import { eventually } from "./support/eventually.js";
import { HubFixture, type TestHub } from "./support/hubs.js";

const fixture = new HubFixture("polity-regional-heads-", "regional-heads-operator-key-0123456789");
const REGION = "eu-west";

/** A region's log of `n` entries, as its hub would sign and prove it. */
const leaves = Array.from({ length: 16 }, (_, i) => leafHash(Buffer.from(`entry ${i}`)));
const rootAt = (size: number) => rootOf(leaves.slice(0, size));
const node = (n: { level: number; index: number }) => rootOf(leaves.slice(n.index * 2 ** n.level, (n.index + 1) * 2 ** n.level));
const proof = (from: number, to: number) => (from === 0 ? [] : assembleProof(consistencyRanges(from, to), node).map((h) => h.toString("hex")));

describe("a region's signed heads at the global hub", () => {
  let h: TestHub;
  let auditKey: KeyObject;

  beforeAll(async () => {
    h = await fixture.startCopy("heads");
    const token = (await call<{ token: string }>(h.admin, "POST", `/v1/regions/${REGION}/tokens`, { allowLoopback: true })).body.token;
    const spki = (pem: string) => createPublicKey(pem).export({ type: "spki", format: "pem" }).toString();
    const audit = generateKeyPairSync("ed25519");
    auditKey = audit.privateKey;
    await call(h.anonymous, "POST", "/v1/regions/enrol", {
      token,
      region: REGION,
      hubPublicKeyPem: spki(await newPrivateKey()),
      caPublicKeyPem: spki(await newPrivateKey()),
      bundleKeyPem: generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString(),
      auditKeyPem: audit.publicKey.export({ type: "spki", format: "pem" }).toString(),
      hostnames: [],
    });
  });

  afterAll(() => closeConnections());

  /** A summary carrying the head of size `size`, proven from `from`. */
  const summary = (size: number, from: number, proofFrom = from): RegionalSummary => ({
    certificates: [],
    bundles: [],
    status: {},
    compliance: {},
    conflicts: [],
    head: { head: signTreeHead({ origin: `polity/${REGION}/audit`, treeSize: size, rootHash: rootAt(size).toString("hex"), time: new Date().toISOString() }, auditKey), proof: proof(proofFrom, size), from },
  });

  it("records heads that extend the newest, sets stale ones aside without an alarm, and refuses and audits a log that does not extend it", async () => {
    const regions = h.hub.context.regions!;
    expect((await regions.receive(REGION, summary(4, 0))).acknowledgedSize).toBe(4);
    // Two summaries made against the head of size 4: the first is judged, the second is then stale.
    expect((await regions.receive(REGION, summary(8, 4))).acknowledgedSize).toBe(8);
    const stale = await regions.receive(REGION, summary(12, 4));
    expect(stale.headRefused).toBeUndefined();
    expect(stale.acknowledgedSize).toBe(8);
    // A late summary with a smaller head, made against an older head: stale as well.
    expect((await regions.receive(REGION, summary(6, 4))).headRefused).toBeUndefined();
    // The next round proves from the head recorded now.
    expect((await regions.receive(REGION, summary(12, 8))).acknowledgedSize).toBe(12);

    // A proof from a head never recorded here, and a smaller head made against the newest: evidence.
    expect((await regions.receive(REGION, summary(14, 10))).headRefused).toMatch(/its proof starts at size 10, a head never recorded here \(the newest recorded is 12\)/);
    expect((await regions.receive(REGION, summary(10, 12, 8))).headRefused).toMatch(/its size 10 is smaller than the head recorded before \(12\)/);
    // A log forked after the head of size 8: its proof from 12 does not hold.
    const forked = summary(16, 12, 8);
    expect((await regions.receive(REGION, forked)).headRefused).toMatch(/signed tree head was refused/);
    expect((await regions.receive(REGION, summary(16, 12))).acknowledgedSize).toBe(16);

    const refusals = await eventually("three refusals in the audit log", async () => {
      const items = (await call<{ items: { entry: { data: { what: string; why: string } } }[] }>(h.admin, "GET", "/v1/audit/entries?kind=regional-hub.refused")).body.items;
      return items.length >= 3 ? items.map((i) => i.entry.data) : undefined;
    });
    expect(refusals.map((r) => r.what)).toEqual(["signed tree head", "signed tree head", "signed tree head"]);
  });
});
