/**
 * Effective policy sets from plain documents, for unit tests that need one to decide with
 * or to ship: documents in, through the real buildLayer and effectivePolicySet, a set out.
 */
import { effectivePolicySet, type ClusterIdentity, type EffectivePolicySet } from "../../src/layering/effective.js";
import { buildLayer, type Layer } from "../../src/policy/layer.js";
import type { SourceDocument } from "../../src/source/parse.js";

export type Doc = Record<string, unknown>;

export const CLUSTER: ClusterIdentity = { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } };

/** Documents as a file would give them, each located at the file's start. */
export function sources(file: string, docs: readonly unknown[]): SourceDocument[] {
  return docs.map((value, index) => ({ file, index, value, locate: () => ({ file, line: 1, column: 1 }) }));
}

/** A Policy document owned by `team-a`, matching Pods on CREATE and UPDATE unless `spec` says otherwise. */
export function policy(name: string, spec: Doc): Doc {
  return {
    apiVersion: "polity.dev/v1",
    kind: "Policy",
    metadata: { name, owner: "team-a" },
    spec: { domain: "workload-security", match: { kinds: ["Pod"] }, enforcement: "deny", ...spec },
  };
}

/** An Exception document approved and justified, expiring at `expiresAt`. */
export function exception(name: string, expiresAt: string, spec: Doc): Doc {
  return {
    apiVersion: "polity.dev/v1",
    kind: "Exception",
    metadata: { name },
    spec: { justification: "a reviewed, time-boxed need", approvedBy: "team-a", expiresAt, ...spec },
  };
}

export function globalLayer(docs: readonly Doc[]): Layer {
  return buildLayer(sources("global.yaml", docs), { tier: "global", name: "global", owners: ["team-a"] });
}

/** The effective set of `cluster` when the global layer holds `docs`. */
export function effectiveSet(docs: readonly Doc[], cluster: ClusterIdentity = CLUSTER): EffectivePolicySet {
  return effectivePolicySet([globalLayer(docs)], cluster);
}
