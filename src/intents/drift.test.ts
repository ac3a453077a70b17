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

const LABELS = { "app.kubernetes.io/managed-by": "polity", "polity.dev/policy": "seg" };
const defaultDeny: Manifest = {
  apiVersion: "networking.k8s.io/v1",
  kind: "NetworkPolicy",
  metadata: { name: "polity-seg.default-deny", namespace: "payments", labels: LABELS, annotations: { "polity.dev/remediation": "enforce" } },
  spec: { podSelector: {}, policyTypes: ["Egress", "Ingress"], ingress: [], egress: [] },
};
const vap: Manifest = {
  apiVersion: "admissionregistration.k8s.io/v1",
  kind: "ValidatingAdmissionPolicy",
  metadata: { name: "polity-stay-home", labels: LABELS },
  spec: {
    failurePolicy: "Fail",
    matchConstraints: { resourceRules: [{ apiGroups: [""], apiVersions: ["v1"], resources: ["pods"], operations: ["CREATE", "UPDATE"] }], objectSelector: { matchLabels: { residency: "eu" } } },
    validations: [{ expression: "true" }],
  },
};
const binding: Manifest = {
  apiVersion: "admissionregistration.k8s.io/v1",
  kind: "ValidatingAdmissionPolicyBinding",
  metadata: { name: "polity-stay-home", labels: LABELS },
  spec: { policyName: "polity-stay-home", validationActions: ["Deny"] },
};
const role: Manifest = {
  apiVersion: "rbac.authorization.k8s.io/v1",
  kind: "ClusterRole",
  metadata: { name: "polity-auditors-read.read-workloads", labels: LABELS },
  rules: [{ apiGroups: [""], resources: ["pods"], verbs: ["get", "list"] }],
};
const roleBinding: Manifest = {
  apiVersion: "rbac.authorization.k8s.io/v1",
  kind: "ClusterRoleBinding",
  metadata: { name: "polity-auditors-read.read-workloads", labels: LABELS },
  subjects: [{ kind: "Group", apiGroup: "rbac.authorization.k8s.io", name: "auditors" }],
  roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "polity-auditors-read.read-workloads" },
};

type Live = Record<string, unknown> & { spec: Record<string, unknown> & { matchConstraints: Record<string, unknown> } };
const edited = (m: Manifest, edit: (live: Live) => void): Live => {
  const live = asStored(m) as Live;
  edit(live);
  return live;
};

describe("drift of the objects only Polity writes (network policies, admission policies, RBAC)", () => {
  it("owns a label selector whole: a default-deny's empty podSelector given labels or expressions is drift", () => {
    expect(paths(driftOf(defaultDeny, edited(defaultDeny, (l) => (l.spec.podSelector = { matchLabels: { "no-such": "pod" } }))))).toEqual(["spec.podSelector.matchLabels"]);
    expect(paths(driftOf(defaultDeny, edited(defaultDeny, (l) => (l.spec.podSelector = { matchExpressions: [{ key: "x", operator: "Exists" }] }))))).toEqual(["spec.podSelector.matchExpressions"]);
    const flow = { ...defaultDeny, spec: { ...(defaultDeny.spec as object), podSelector: { matchLabels: { app: "web" } } } } as Manifest;
    expect(paths(driftOf(flow, edited(flow, (l) => ((l.spec.podSelector as Record<string, unknown>).matchExpressions = [{ key: "x", operator: "DoesNotExist" }]))))).toEqual(["spec.podSelector.matchExpressions"]);
  });

  it("a default-deny opened by a rule that allows everything is drift, whether the manifest states its empty lists or not", () => {
    const open = (l: Live) => {
      l.spec.ingress = [{}];
      l.spec.egress = [{}];
    };
    expect(paths(driftOf(defaultDeny, edited(defaultDeny, open)))).toEqual(["spec.ingress", "spec.egress"]);
    const { ingress: _i, egress: _e, ...bare } = defaultDeny.spec as Record<string, unknown>;
    const older = { ...defaultDeny, spec: bare } as Manifest;
    expect(paths(driftOf(older, edited(older, open)))).toEqual(["spec.ingress", "spec.egress"]);
  });

  it("owns an admission policy's match constraints and a binding's spec whole, the server's defaults aside", () => {
    expect(paths(driftOf(vap, edited(vap, (l) => (l.spec.matchConstraints.namespaceSelector = { matchLabels: { exempt: "no" } }))))).toEqual(["spec.matchConstraints.namespaceSelector"]);
    expect(paths(driftOf(vap, edited(vap, (l) => ((l.spec.matchConstraints.objectSelector as Record<string, unknown>).matchExpressions = [{ key: "x", operator: "Exists" }]))))).toEqual([
      "spec.matchConstraints.objectSelector.matchExpressions",
    ]);
    expect(paths(driftOf(binding, edited(binding, (l) => (l.spec.matchResources = { namespaceSelector: { matchLabels: { none: "x" } } }))))).toEqual(["spec.matchResources"]);
    // What the API server fills in: matchPolicy, empty selectors, a rule's scope; an empty matchResources defaulted.
    const defaulted = (l: Live) => {
      Object.assign(l.spec.matchConstraints, { matchPolicy: "Equivalent", namespaceSelector: {} });
      (l.spec.matchConstraints.resourceRules as Record<string, unknown>[])[0]!.scope = "*";
    };
    expect(driftOf(vap, edited(vap, defaulted))).toBeUndefined();
    expect(driftOf(binding, edited(binding, (l) => (l.spec.matchResources = { matchPolicy: "Equivalent", namespaceSelector: {}, objectSelector: {} })))).toBeUndefined();
  });

  it("calls any other change to their spec, rules, subjects or role drift", () => {
    expect(paths(driftOf(vap, edited(vap, (l) => (l.spec.auditAnnotations = [{ key: "k", valueExpression: "'v'" }]))))).toEqual(["spec.auditAnnotations"]);
    expect(paths(driftOf(role, edited(role, (l) => ((l.rules as Record<string, unknown>[])[0]!.nonResourceURLs = ["/metrics"]))))).toEqual(["rules[0].nonResourceURLs"]);
    expect(paths(driftOf(role, edited(role, (l) => (l.aggregationRule = { clusterRoleSelectors: [{ matchLabels: { any: "role" } }] }))))).toEqual(["aggregationRule"]);
    expect(paths(driftOf(roleBinding, edited(roleBinding, (l) => ((l.subjects as Record<string, unknown>[])[0]!.namespace = "x"))))).toEqual(["subjects[0].namespace"]);
    // Their metadata and status stay the server's.
    expect(driftOf(role, edited(role, (l) => Object.assign(l, { status: { x: 1 } })))).toBeUndefined();
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
