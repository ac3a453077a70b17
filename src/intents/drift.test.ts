/**
 * Drift compares only what Polity owns: the fields its manifest sets. Status, the server's
 * defaults, other managers' fields and the server's metadata never drift; a changed owned
 * leaf always does; a missing object is drift too.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { driftOf, formatPath, otherManager, remediationOf, type FieldPath } from "./drift.js";
import type { Manifest } from "./translate.js";

const quota: Manifest = {
  apiVersion: "v1",
  kind: "ResourceQuota",
  metadata: { name: "polity-payments-quota", namespace: "payments", labels: { "app.kubernetes.io/managed-by": "polity", "polity.dev/policy": "payments-quota" }, annotations: { "polity.dev/remediation": "enforce" } },
  spec: { hard: { pods: "200", "requests.cpu": "20", "requests.memory": "64Gi" } },
};

const netpol: Manifest = {
  apiVersion: "networking.k8s.io/v1",
  kind: "NetworkPolicy",
  metadata: { name: "polity-dns", namespace: "payments", labels: { "app.kubernetes.io/managed-by": "polity" }, annotations: { "polity.dev/remediation": "inform" } },
  spec: { podSelector: {}, policyTypes: ["Egress"], ingress: [], egress: [{ to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } } }], ports: [{ port: 53 }] }] },
};

/** What an API server hands back: the manifest plus its own metadata, defaults and status. */
function asStored(m: Manifest): Record<string, unknown> {
  const copy = structuredClone(m) as Record<string, unknown> & { metadata: Record<string, unknown> };
  copy.metadata = { ...copy.metadata, uid: "0f3c", resourceVersion: "42", creationTimestamp: "2026-12-07T00:00:00Z", managedFields: [{ manager: "polity", operation: "Apply" }] };
  return copy;
}

const paths = (finding: ReturnType<typeof driftOf>) => (finding?.kind === "changed" ? finding.fields.map(formatPath) : finding);

describe("drift of an object Polity manages", () => {
  it("is none when the live object holds every owned field, whatever the server added", () => {
    const live = asStored(quota);
    live.status = { hard: { pods: "200" }, used: { pods: "12" } };
    (live.spec as { hard: Record<string, string> }).hard.secrets = "10";
    (live.metadata as { labels: Record<string, string> }).labels.team = "billing";
    expect(driftOf(quota, live)).toBeUndefined();
  });

  it("names each owned field that changed, labels and annotations Polity set included", () => {
    const live = asStored(quota) as { spec: { hard: Record<string, string> }; metadata: { labels: Record<string, string>; annotations: Record<string, string> } };
    live.spec.hard.pods = "999";
    delete live.spec.hard["requests.cpu"];
    live.metadata.annotations["polity.dev/remediation"] = "inform";
    expect(paths(driftOf(quota, live))).toEqual(["metadata.annotations['polity.dev/remediation']", "spec.hard.pods", "spec.hard['requests.cpu']"]);
  });

  it("compares quantities by value, as the API server stores them", () => {
    const live = asStored(quota) as { spec: { hard: Record<string, string> } };
    live.spec.hard["requests.cpu"] = "20000m";
    live.spec.hard["requests.memory"] = "65536Mi";
    expect(driftOf(quota, live)).toBeUndefined();
    live.spec.hard["requests.cpu"] = "21";
    expect(paths(driftOf(quota, live))).toEqual(["spec.hard['requests.cpu']"]);
  });

  it("owns lists whole but ignores defaults filled into their items, and an empty list matches an omitted one", () => {
    const live = asStored(netpol) as { spec: { ingress?: unknown; egress: { ports: Record<string, unknown>[] }[] } };
    delete live.spec.ingress;
    live.spec.egress[0]!.ports[0]!.protocol = "TCP";
    expect(driftOf(netpol, live)).toBeUndefined();
    live.spec.egress.push({ ports: [{ port: 443 }] });
    expect(paths(driftOf(netpol, live))).toEqual(["spec.egress"]);
    const opened = asStored(netpol) as { spec: { ingress: unknown[]; egress: { ports: { port: number }[] }[] } };
    opened.spec.ingress = [{}];
    opened.spec.egress[0]!.ports[0]!.port = 5353;
    expect(paths(driftOf(netpol, opened))).toEqual(["spec.ingress", "spec.egress[0].ports[0].port"]);
  });

  it("calls a deleted object missing", () => {
    expect(driftOf(quota, undefined)).toEqual({ kind: "missing" });
  });

  it("reads the remediation from the manifest's annotation, enforcing where there is none", () => {
    expect(remediationOf(quota)).toBe("enforce");
    expect(remediationOf(netpol)).toBe("inform");
    expect(remediationOf({ ...quota, metadata: { name: "x", labels: {} } })).toBe("enforce");
  });

  it("names the other manager: the one owning a drifted field, else the last to write", () => {
    const live = {
      metadata: {
        managedFields: [
          { manager: "polity", operation: "Apply", time: "2026-12-07T01:00:00Z", fieldsV1: { "f:spec": { "f:hard": { "f:pods": {} } } } },
          { manager: "kubectl-edit", operation: "Update", time: "2026-12-07T03:00:00Z", fieldsV1: { "f:metadata": { "f:labels": { "f:team": {} } } } },
          { manager: "quota-tuner", operation: "Update", time: "2026-12-07T02:00:00Z", fieldsV1: { "f:spec": { "f:hard": { "f:pods": {} } } } },
        ],
      },
    };
    expect(otherManager(live, [["spec", "hard", "pods"]])).toBe("quota-tuner");
    expect(otherManager(live, [["spec", "hard", "secrets"]])).toBe("kubectl-edit");
    expect(otherManager({ metadata: {} }, [["spec"]])).toBeUndefined();
  });
});

// ---- properties -----------------------------------------------------------------------------

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

const key = fc.stringMatching(/^[a-z][a-z0-9.-]{0,8}$/);
const { json } = fc.letrec<{ json: Json }>((tie) => ({
  json: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.string({ maxLength: 6 }),
    fc.integer({ min: -5, max: 5000 }),
    fc.boolean(),
    fc.array(tie("json"), { maxLength: 3 }),
    fc.dictionary(key, tie("json"), { maxKeys: 4 }),
  ),
}));

const manifest = fc.record({ spec: fc.dictionary(key, json, { minKeys: 1, maxKeys: 4 }), labels: fc.dictionary(key, fc.string({ maxLength: 5 }), { maxKeys: 3 }) }).map(
  ({ spec, labels }): Manifest => ({ apiVersion: "example.dev/v1", kind: "Thing", metadata: { name: "polity-thing", labels }, spec }),
);

/** The value with a key no manifest uses added to every map: another manager's fields, or defaults. */
function withForeignFields(value: Json, extra: Json): Json {
  if (Array.isArray(value)) return value.map((v) => withForeignFields(v, extra));
  if (value === null || typeof value !== "object") return value;
  return { ...Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withForeignFields(v, extra)])), "X-foreign": extra };
}

/** Every scalar leaf's path. */
function leaves(value: Json, path: (string | number)[] = []): FieldPath[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => leaves(v, [...path, i]));
  if (value !== null && typeof value === "object") return Object.entries(value).flatMap(([k, v]) => leaves(v, [...path, k]));
  return value === null ? [] : [path];
}

function changedAt(value: Json, path: FieldPath): Json {
  if (path.length === 0) return typeof value === "string" ? `${value}~` : typeof value === "number" ? value + 1 : !value;
  const [step, ...rest] = path;
  if (Array.isArray(value)) return value.map((v, i) => (i === step ? changedAt(v, rest) : v));
  const record = value as { [key: string]: Json };
  return { ...record, [step as string]: changedAt(record[step as string]!, rest) };
}

describe("drift, for any manifest", () => {
  it("never comes from status, the server's metadata, or fields the manifest does not set", () => {
    fc.assert(
      fc.property(manifest, json, json, (m, extra, status) => {
        const live = {
          ...asStored(m),
          spec: withForeignFields(m.spec as Json, extra),
          status,
          metadata: { ...asStored(m).metadata as object, labels: { ...m.metadata.labels, "X-other": "x" }, annotations: { "X-note": "y" } },
        };
        expect(driftOf(m, live)).toBeUndefined();
      }),
    );
  });

  it("always comes from a changed owned leaf, and names it", () => {
    const withLeaf = manifest.chain((m) => {
      const all = leaves(m.spec as Json, ["spec"]);
      return all.length === 0 ? fc.constant(undefined) : fc.constantFrom(...all).map((path) => ({ m, path }));
    });
    fc.assert(
      fc.property(withLeaf, (picked) => {
        if (picked === undefined) return;
        const { m, path } = picked;
        const live = { ...asStored(m), spec: changedAt(m.spec as Json, path.slice(1)) };
        const finding = driftOf(m, live);
        expect(finding?.kind).toBe("changed");
        expect(paths(finding)).toContain(formatPath(path));
      }),
    );
  });

  it("is none for the manifest itself, and missing for no object", () => {
    fc.assert(
      fc.property(manifest, (m) => {
        expect(driftOf(m, asStored(m))).toBeUndefined();
        expect(driftOf(m, undefined)).toEqual({ kind: "missing" });
      }),
    );
  });
});
