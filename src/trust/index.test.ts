/**
 * The root of trust: a chain of roots each signed by its predecessor, scopes for bundle
 * keys (global, delegated to one region, revoked), and bundles verified under a root.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { canonicalJson } from "../canonical/index.js";
import { describe, expect, it } from "vitest";
import { effectiveSet, policy } from "../../test/support/policy-sets.js";
import { BundleError, keyIdOf, signBundle, verifyBundle } from "../bundle/index.js";
import { contentHash } from "../canonical/index.js";
import {
  bundleKeyAllowed,
  certificateFingerprint,
  parseRootMetadata,
  rootCertificateAuthorities,
  parseRootEnvelope,
  rootAuthorizer,
  ROOT_TYPE,
  signRoot,
  TrustError,
  verifyRootChain,
  verifyRootSelf,
  verifyRootUpdate,
  type KeyRole,
  type RootEnvelope,
  type RootMetadata,
  type TrustProblem,
} from "./index.js";

interface Pair {
  readonly id: string;
  readonly privateKey: KeyObject;
  readonly pem: string;
}

function pair(): Pair {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { id: keyIdOf(publicKey), privateKey, pem: publicKey.export({ type: "spki", format: "pem" }).toString() };
}

const rootA = pair();
const rootB = pair();
const rootC = pair();
const bundlesKey = pair();
const bundlesKey2 = pair();
const auditKey = pair();
const euKey = pair();
const usKey = pair();

function keysOf(entries: [Pair, KeyRole][]): RootMetadata["keys"] {
  return Object.fromEntries(entries.map(([p, purpose]) => [p.id, { publicKey: p.pem, purpose }]));
}

function root(version: number, overrides: Partial<RootMetadata> = {}): RootMetadata {
  return {
    type: ROOT_TYPE,
    specVersion: 1,
    federation: "acme",
    version,
    issuedAt: "2026-12-01T00:00:00.000Z",
    expires: "2027-12-01T00:00:00.000Z",
    keys: keysOf([
      [rootA, "root"],
      [bundlesKey, "bundles"],
      [auditKey, "audit-log"],
      [euKey, "region"],
    ]),
    roles: { root: { keyIds: [rootA.id], threshold: 1 }, bundles: { keyIds: [bundlesKey.id], threshold: 1 }, "audit-log": { keyIds: [auditKey.id], threshold: 1 } },
    delegations: [{ region: "eu-west", keyIds: [euKey.id], threshold: 1, expires: "2027-01-01T00:00:00.000Z" }],
    revoked: [],
    ...overrides,
  };
}

const v1 = signRoot(root(1), [rootA.privateKey]);
const trusted = verifyRootSelf(v1, "acme");

function problem(run: () => unknown): TrustProblem | "accepted" {
  try {
    run();
    return "accepted";
  } catch (error) {
    if (error instanceof TrustError) return error.problem;
    throw error;
  }
}

describe("root updates", () => {
  it("accepts the next version signed by the old and the new root keys, and a chain of them", () => {
    const v2 = signRoot(root(2), [rootA.privateKey]);
    expect(verifyRootUpdate(trusted, v2).version).toBe(2);
    // v3 rotates the root key: signed by v2's key (A) and its own (B).
    const v3 = signRoot(
      root(3, { keys: keysOf([[rootB, "root"], [bundlesKey, "bundles"], [auditKey, "audit-log"], [euKey, "region"]]), roles: { ...root(1).roles, root: { keyIds: [rootB.id], threshold: 1 } } }),
      [rootA.privateKey, rootB.privateKey],
    );
    expect(verifyRootChain(trusted, [v2, v3]).version).toBe(3);
    // v4 is signed by B only: v3's key and its own.
    const v4 = signRoot({ ...v3.signed, version: 4 }, [rootB.privateKey]);
    expect(verifyRootChain(trusted, [v2, v3, v4]).roles.root.keyIds).toEqual([rootB.id]);
  });

  it("refuses a skipped version, an older one and the same one", () => {
    expect(problem(() => verifyRootUpdate(trusted, signRoot(root(3), [rootA.privateKey])))).toBe("version-skipped");
    const v2 = verifyRootUpdate(trusted, signRoot(root(2), [rootA.privateKey]));
    expect(problem(() => verifyRootUpdate(v2, v1))).toBe("version-not-newer");
    expect(problem(() => verifyRootUpdate(v2, signRoot(root(2), [rootA.privateKey])))).toBe("version-not-newer");
    expect(() => verifyRootUpdate(trusted, signRoot(root(3), [rootA.privateKey]))).toThrow(/skips version 2/);
  });

  it("refuses a root signed by the wrong key, or only by the new root keys, or only by the old ones", () => {
    expect(problem(() => verifyRootUpdate(trusted, signRoot(root(2), [bundlesKey.privateKey])))).toBe("threshold-not-met");
    const rotated = root(2, { keys: keysOf([[rootB, "root"], [bundlesKey, "bundles"], [auditKey, "audit-log"], [euKey, "region"]]), roles: { ...root(1).roles, root: { keyIds: [rootB.id], threshold: 1 } } });
    // Signed by its own new root key only: whoever holds B alone cannot take the federation over.
    expect(problem(() => verifyRootUpdate(trusted, signRoot(rotated, [rootB.privateKey])))).toBe("threshold-not-met");
    expect(problem(() => verifyRootUpdate(trusted, signRoot(rotated, [rootA.privateKey])))).toBe("threshold-not-met");
    expect(verifyRootUpdate(trusted, signRoot(rotated, [rootA.privateKey, rootB.privateKey])).version).toBe(2);
  });

  it("counts a threshold of distinct root keys, a repeated signature once", () => {
    const three = root(2, {
      keys: keysOf([[rootA, "root"], [rootB, "root"], [rootC, "root"], [bundlesKey, "bundles"], [auditKey, "audit-log"], [euKey, "region"]]),
      roles: { ...root(1).roles, root: { keyIds: [rootA.id, rootB.id, rootC.id], threshold: 2 } },
    });
    const v2 = verifyRootUpdate(trusted, signRoot(three, [rootA.privateKey, rootB.privateKey]));
    const next = { ...three, version: 3 };
    expect(problem(() => verifyRootUpdate(v2, signRoot(next, [rootA.privateKey])))).toBe("threshold-not-met");
    const once = signRoot(next, [rootA.privateKey]);
    const twice: RootEnvelope = { signatures: [once.signatures[0]!, once.signatures[0]!], signed: once.signed };
    expect(problem(() => verifyRootUpdate(v2, twice))).toBe("threshold-not-met");
    expect(verifyRootUpdate(v2, signRoot(next, [rootB.privateKey, rootC.privateKey])).version).toBe(3);
  });

  it("refuses an altered root, another federation's, and a threshold above its keys", () => {
    const v2 = signRoot(root(2), [rootA.privateKey]);
    const altered: RootEnvelope = { ...v2, signed: { ...v2.signed, revoked: [bundlesKey.id] } };
    expect(problem(() => verifyRootUpdate(trusted, altered))).toBe("threshold-not-met");
    expect(problem(() => verifyRootUpdate(trusted, signRoot(root(2, { federation: "other" }), [rootA.privateKey])))).toBe("wrong-federation");
    expect(problem(() => signRoot(root(2, { roles: { ...root(1).roles, root: { keyIds: [rootA.id], threshold: 2 } } }), [rootA.privateKey]))).toBe("malformed");
    expect(problem(() => parseRootEnvelope("{\"signatures\":[]}"))).toBe("malformed");
    // A key listed under another key's id.
    expect(problem(() => parseRootEnvelope({ signatures: [], signed: { ...root(2), keys: { ...root(2).keys, [rootB.id]: { publicKey: rootC.pem, purpose: "root" } } } }))).toBe("malformed");
  });

  it("refuses a revoked root key's signature", () => {
    const v2 = verifyRootUpdate(
      trusted,
      signRoot(
        root(2, { keys: keysOf([[rootA, "root"], [rootB, "root"], [bundlesKey, "bundles"], [auditKey, "audit-log"], [euKey, "region"]]), roles: { ...root(1).roles, root: { keyIds: [rootA.id, rootB.id], threshold: 1 } }, revoked: [rootA.id] }),
        [rootA.privateKey, rootB.privateKey],
      ),
    );
    expect(problem(() => verifyRootUpdate(v2, signRoot({ ...v2, version: 3 }, [rootA.privateKey])))).toBe("threshold-not-met");
    expect(verifyRootUpdate(v2, signRoot({ ...v2, version: 3 }, [rootB.privateKey])).version).toBe(3);
  });
});

describe("bundle key scopes", () => {
  const now = new Date("2026-12-07T00:00:00.000Z");

  it("lets a global bundles key sign for any region, a delegated key for its own region only", () => {
    expect(bundleKeyAllowed(trusted, bundlesKey.id, "eu-west")).toEqual({ ok: true });
    expect(bundleKeyAllowed(trusted, bundlesKey.id, "us-east")).toEqual({ ok: true });
    expect(bundleKeyAllowed(trusted, euKey.id, "eu-west", now)).toEqual({ ok: true });
    const other = bundleKeyAllowed(trusted, euKey.id, "us-east", now);
    expect(other).toEqual({ ok: false, reason: expect.stringMatching(/delegated to region eu-west only, and may not sign for region us-east/) });
  });

  it("refuses a revoked key, an expired delegation, a key of another purpose and one the root does not list", () => {
    const revoked = { ...trusted, revoked: [bundlesKey.id, euKey.id] };
    expect(bundleKeyAllowed(revoked, bundlesKey.id, "eu-west")).toEqual({ ok: false, reason: expect.stringMatching(/revoked by root version 1/) });
    expect(bundleKeyAllowed(revoked, euKey.id, "eu-west")).toEqual({ ok: false, reason: expect.stringMatching(/revoked/) });
    expect(bundleKeyAllowed(trusted, euKey.id, "eu-west", new Date("2027-01-01T00:00:00.000Z"))).toEqual({ ok: false, reason: expect.stringMatching(/expired/) });
    expect(bundleKeyAllowed(trusted, auditKey.id, "eu-west")).toEqual({ ok: false, reason: expect.stringMatching(/audit-log key/) });
    expect(bundleKeyAllowed(trusted, usKey.id, "us-east")).toEqual({ ok: false, reason: expect.stringMatching(/not in root version 1/) });
  });

  it("verifies a bundle under the root: in scope accepted, out of scope, rotated out or revoked refused", () => {
    const target = effectiveSet([policy("p", { validations: [{ expression: "true" }] })]).bytes;
    const meta = (region: string) => ({
      federation: "acme",
      region,
      cluster: "c1",
      version: 1,
      issuedAt: "2026-12-06T00:00:00.000Z",
      expires: "2026-12-08T00:00:00.000Z",
      targetHash: contentHash(target),
      targetLength: target.length,
      rootVersion: 1,
    });
    // Each verdict from an agent of the region the bundle names.
    const trust = (r: RootMetadata, region: string) => ({ authorize: rootAuthorizer(r, now), federation: "acme", region, cluster: "c1" });
    const verdict = (key: Pair, region: string, r: RootMetadata = trusted) => {
      try {
        verifyBundle(signBundle(meta(region), target, key.privateKey), trust(r, region), undefined, now);
        return "accepted";
      } catch (error) {
        if (error instanceof BundleError) return `${error.problem}: ${error.message}`;
        throw error;
      }
    };
    expect(verdict(bundlesKey, "us-east")).toBe("accepted");
    expect(verdict(euKey, "eu-west")).toBe("accepted");
    expect(verdict(euKey, "us-east")).toMatch(/^untrusted-key: .*region us-east.*delegated to region eu-west only/);
    expect(verdict(bundlesKey2, "eu-west")).toMatch(/^untrusted-key: .*not in root version 1/);
    expect(verdict(bundlesKey, "eu-west", { ...trusted, revoked: [bundlesKey.id] })).toMatch(/^untrusted-key: .*revoked/);
  });

  it("refuses a bundle a region's key signed naming its own region for a cluster of another region (the agent checks the region is its own)", () => {
    const target = effectiveSet([policy("p", { validations: [{ expression: "true" }] })]).bytes;
    const forged = signBundle(
      { federation: "acme", region: "eu-west", cluster: "us-c1", version: 9, issuedAt: "2026-12-06T00:00:00.000Z", expires: "2026-12-08T00:00:00.000Z", targetHash: contentHash(target), targetLength: target.length, rootVersion: 1 },
      target,
      euKey.privateKey,
    );
    const usAgent = { authorize: rootAuthorizer(trusted, now), federation: "acme", region: "us-east", cluster: "us-c1" };
    let verdict = "accepted";
    try {
      verifyBundle(forged, usAgent, undefined, now);
    } catch (error) {
      if (!(error instanceof BundleError)) throw error;
      verdict = error.problem;
    }
    expect(verdict).toBe("wrong-region");
  });
});

/** Fixtures made once with openssl: a CA certificate (ECDSA P-256, pathLen 0) and a leaf (not a CA). */
const CA_PEM = `-----BEGIN CERTIFICATE-----
MIIBtDCCAVqgAwIBAgIUHzD3UoK04kwcalVCkw6PzViDjCIwCgYIKoZIzj0EAwIw
JjETMBEGA1UEAwwKZml4dHVyZSBDQTEPMA0GA1UECgwGcG9saXR5MB4XDTI2MTIw
NzA4NDkyOFoXDTM2MTIwNDA4NDkyOFowJjETMBEGA1UEAwwKZml4dHVyZSBDQTEP
MA0GA1UECgwGcG9saXR5MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEK31U8pJa
VaFme1EST1rKrTvk1eL1s0qfBKUawNb33h0K8+CfGdrJXMukDkuELlj/z3l3upbg
byELg0LzBTK2TKNmMGQwHQYDVR0OBBYEFJwRyQWJq9G9YzYzswdRvXnlsQZXMB8G
A1UdIwQYMBaAFJwRyQWJq9G9YzYzswdRvXnlsQZXMBIGA1UdEwEB/wQIMAYBAf8C
AQAwDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49BAMCA0gAMEUCIQCJ8BzLmBpHt+mX
75tvSsEpsll9wKw6YmtMx0hL14EwVAIgH50hSfQ+ZLq50c+tJKTd0kjAdqt9vZKn
NJObKNuT/QI=
-----END CERTIFICATE-----
`;
const LEAF_PEM = `-----BEGIN CERTIFICATE-----
MIIBbzCCARagAwIBAgIUIpSzT9d2otc6/86UM4S41zlSNrUwCgYIKoZIzj0EAwIw
DzENMAsGA1UEAwwEbGVhZjAeFw0yNjEyMDcwODQ5MjhaFw0zNjEyMDQwODQ5Mjha
MA8xDTALBgNVBAMMBGxlYWYwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASBT+ha
ym/VGF11k4IwTLuHm8tZOH3xBFP3iXHXvqNSqWA6/NbWZsMIjuzOEf1I/s+7Jwgg
SCugRo1QlyD/JJIko1AwTjAdBgNVHQ4EFgQU27NHf8qb8Uvp5YQcLJealRNWBOAw
HwYDVR0jBBgwFoAU27NHf8qb8Uvp5YQcLJealRNWBOAwDAYDVR0TAQH/BAIwADAK
BggqhkjOPQQDAgNHADBEAiAh66xWx5R+VstoIq2mYRqn02Uv1eL8ad7+gKfdLUBh
aQIgflTD+um9F/WFcDKYapRU/+ws/DMtwP7QXQn3VXqsl1o=
-----END CERTIFICATE-----
`;

describe("the federation CAs a root lists (CA rotation)", () => {
  const listed = (cas: unknown) => root(2, { certificateAuthorities: cas } as Partial<RootMetadata>);

  it("leaves a root that lists none exactly as before: same canonical bytes, and the pinned CA alone", () => {
    expect(canonicalJson(parseRootMetadata(root(1)))).toBe(canonicalJson(root(1)));
    expect(canonicalJson(root(1))).not.toContain("certificateAuthorities");
    expect(rootCertificateAuthorities(trusted)).toEqual([]);
  });

  it("lists CAs under their certificate's SHA-256, the active one first, and a chain of roots carries them", () => {
    const cas = [{ certificate: CA_PEM, fingerprint: certificateFingerprint(CA_PEM), status: "active" }];
    const next = verifyRootUpdate(trusted, signRoot(listed(cas), [rootA.privateKey]));
    expect(next.certificateAuthorities).toEqual(cas);
    expect(rootCertificateAuthorities(next)).toEqual([CA_PEM]);
  });

  it("refuses a CA under another fingerprint, a certificate that is no CA, none or two active, a CA twice, and garbage", () => {
    const fingerprint = certificateFingerprint(CA_PEM);
    const malformed = (cas: unknown) => problem(() => parseRootMetadata(listed(cas)));
    expect(malformed([{ certificate: CA_PEM, fingerprint: "0".repeat(64), status: "active" }])).toBe("malformed");
    expect(malformed([{ certificate: LEAF_PEM, fingerprint: certificateFingerprint(LEAF_PEM), status: "active" }])).toBe("malformed");
    expect(malformed([{ certificate: CA_PEM, fingerprint, status: "overlap" }])).toBe("malformed");
    expect(malformed([])).toBe("malformed");
    expect(malformed([{ certificate: CA_PEM, fingerprint, status: "active" }, { certificate: CA_PEM, fingerprint, status: "overlap" }])).toBe("malformed");
    expect(malformed([{ certificate: "not a certificate", fingerprint, status: "active" }])).toBe("malformed");
    expect(malformed([{ certificate: CA_PEM, fingerprint, status: "retired" }])).toBe("malformed");
    expect(malformed("all of them")).toBe("malformed");
  });

  it("refuses a root that adds a CA but is not signed by the root keys it follows", () => {
    const cas = [{ certificate: CA_PEM, fingerprint: certificateFingerprint(CA_PEM), status: "active" }];
    expect(problem(() => verifyRootUpdate(trusted, signRoot(listed(cas), [rootB.privateKey])))).toBe("threshold-not-met");
  });
});
