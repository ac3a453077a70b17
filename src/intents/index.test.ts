/**
 * Intents as Kubernetes objects: what the example federation's clusters receive, that every
 * object passes the Kubernetes schemas, that the translation is deterministic and
 * order-independent, that access never grants more than the intent names, that a locked
 * intent cannot be weakened from below, and that a cluster's facts refuse what it could not
 * hold, naming the cluster, the intent and the field.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalJson, contentHash } from "../canonical/index.js";
import { PolityError } from "../errors.js";
import { effectivePolicySet, type ClusterIdentity } from "../layering/effective.js";
import { layersFromFiles } from "../policy/layer-files.js";
import { buildLayer, type Layer } from "../policy/layer.js";
import { policyDocument } from "../policy/schema.js";
import type { SourceDocument } from "../source/parse.js";
import { formatIntentProblem, renderCluster, renderProblems, type ClusterFacts, type Manifest } from "./index.js";
import { schemaProblems } from "./schemas.js";

const EXAMPLES = resolve(dirname(fileURLToPath(import.meta.url)), "../../examples/layers");
const exampleLayers = (): Layer[] =>
  layersFromFiles(["global.yaml", "region-eu-west.yaml", "cluster-eu-west-1.yaml"].map((name) => ({ name, content: readFileSync(resolve(EXAMPLES, name), "utf8") }))).map((l) => l.layer);

const EU_1: ClusterIdentity = { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } };
const FACTS: ClusterFacts = { kubernetesVersion: "v1.31.2", networkPolicy: true, capacity: { cpu: "96", memory: "384Gi" }, zones: ["eu-west-1a", "eu-west-1b"] };

type Doc = Record<string, unknown>;
const policy = (name: string, owner: string, spec: Doc): Doc => ({ apiVersion: "polity.dev/v1", kind: "Policy", metadata: { name, owner }, spec });
const sources = (file: string, docs: readonly unknown[]): SourceDocument[] => docs.map((value, index) => ({ file, index, value, locate: () => ({ file, line: 0, column: 0 }) }));
const globalLayer = (...docs: Doc[]) => buildLayer(sources("global.yaml", docs), { tier: "global", name: "global" });
const regionLayer = (...docs: Doc[]) => buildLayer(sources("eu-west.yaml", docs), { tier: "region", region: "eu-west", name: "eu-west" });
const clusterLayer = (...docs: Doc[]) => buildLayer(sources("eu-west-1.yaml", docs), { tier: "cluster", region: "eu-west", cluster: "eu-west-1", name: "eu-west-1" });

const render = (layers: Layer[], facts: ClusterFacts = FACTS, cluster = EU_1) => renderCluster(cluster.name, effectivePolicySet(layers, cluster), facts);
const ids = (manifests: readonly Manifest[]) => manifests.map((m) => `${m.kind} ${m.metadata.namespace ?? ""}/${m.metadata.name}`);

describe("the example federation's intents", () => {
  it("give eu-west-1 its segmentation, quotas, access and residency rule, and every CEL policy as a ValidatingAdmissionPolicy where it can", () => {
    const r = render(exampleLayers());
    expect(r.problems.map(formatIntentProblem)).toEqual([]);
    const names = ids(r.document.manifests);
    for (const expected of [
      "ClusterRole /polity-auditors-read.read-workloads",
      "ClusterRoleBinding /polity-auditors-read.read-workloads",
      "ResourceQuota billing/polity-payments-quota",
      "ResourceQuota payments/polity-payments-quota",
      "LimitRange payments/polity-payments-quota",
      "NetworkPolicy payments/polity-payments-segmentation.default-deny",
      "NetworkPolicy payments/polity-payments-segmentation.dns",
      "NetworkPolicy payments/polity-payments-segmentation.in-from-gateway",
      "NetworkPolicy payments/polity-payments-segmentation.out-card-network",
      "ValidatingAdmissionPolicy /polity-eu-residency",
      "ValidatingAdmissionPolicyBinding /polity-eu-residency",
      "ValidatingAdmissionPolicy /polity-pod-security",
      "ValidatingAdmissionPolicy /polity-trusted-images",
      "PolicyParams /polity-trusted-images",
      "CustomResourceDefinition /policyparams.polity.dev",
    ]) {
      expect(names).toContain(expected);
    }
    // The exception to require-team-label expires; a VAP cannot.
    expect(r.notExpressible).toEqual([{ policy: "require-team-label", reason: expect.stringContaining("exceptions") }]);
    expect(r.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
    // The bytes are assembled from each manifest's kept JSON: exactly the canonical encoding of the document.
    expect(r.canonical).toBe(canonicalJson(r.document));
    expect(r.hash).toBe(contentHash(canonicalJson(r.document)));
  });

  it("apply in dependency order: definitions and roles before bindings, policies before their bindings", () => {
    const kinds = render(exampleLayers()).document.manifests.map((m) => m.kind);
    const first = (k: string) => kinds.indexOf(k);
    expect(first("CustomResourceDefinition")).toBe(0);
    expect(first("ClusterRole")).toBeLessThan(first("ClusterRoleBinding"));
    expect(first("PolicyParams")).toBeLessThan(first("ValidatingAdmissionPolicyBinding"));
    expect(first("ValidatingAdmissionPolicy")).toBeLessThan(first("ValidatingAdmissionPolicyBinding"));
  });

  it("carry the ownership labels the agent deletes by, and the remediation drift follows", () => {
    for (const m of render(exampleLayers()).document.manifests) {
      expect(m.metadata.labels["app.kubernetes.io/managed-by"], ids([m])[0]).toBe("polity");
    }
    const quota = render(exampleLayers()).document.manifests.find((m) => m.kind === "ResourceQuota")!;
    expect(quota.metadata.annotations).toEqual({ "polity.dev/remediation": "enforce" });
  });

  it("state what Polity's apply must own to put it back: every network policy both rule lists (a default-deny's empty), every admission binding its match resources", () => {
    const r = render(exampleLayers());
    const deny = r.document.manifests.find((m) => m.metadata.name === "polity-payments-segmentation.default-deny")!;
    expect(deny.spec).toEqual({ podSelector: {}, policyTypes: ["Egress", "Ingress"], ingress: [], egress: [] });
    for (const m of r.document.manifests.filter((x) => x.kind === "NetworkPolicy")) {
      expect(Object.keys(m.spec as object), ids([m])[0]).toEqual(expect.arrayContaining(["ingress", "egress"]));
    }
    for (const m of r.document.manifests.filter((x) => x.kind === "ValidatingAdmissionPolicyBinding")) {
      expect((m.spec as { matchResources?: unknown }).matchResources, ids([m])[0]).toEqual({});
    }
  });

  it("take params as the layers tuned them: the card network's CIDRs, the zones", () => {
    const r = render(exampleLayers());
    const egress = r.document.manifests.find((m) => m.metadata.name === "polity-payments-segmentation.out-card-network")!;
    expect(egress.spec).toEqual({
      podSelector: {},
      policyTypes: ["Egress"],
      ingress: [],
      egress: [{ to: [{ ipBlock: { cidr: "10.20.0.0/16" } }], ports: [{ protocol: "TCP", port: 443 }] }],
    });
  });

  it("reach only the clusters in their scope: a dev cluster gets no segmentation (scoped to env=prod)", () => {
    const r = render(exampleLayers(), FACTS, { ...EU_1, labels: { env: "dev" } });
    expect(ids(r.document.manifests).some((id) => id.startsWith("NetworkPolicy"))).toBe(false);
  });
});

describe("every generated manifest passes the Kubernetes schemas", () => {
  it("for the example federation", () => {
    for (const m of render(exampleLayers()).document.manifests) expect(schemaProblems(m, 31), ids([m])[0]).toEqual([]);
  });

  it("and a manifest that breaks them is named with its field", () => {
    const bad: Manifest = { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "x", namespace: "a", labels: {} }, spec: { podSelector: {}, policyTypes: ["Sideways"] } };
    expect(schemaProblems(bad, 31)).toEqual([{ object: "NetworkPolicy a/x", field: "spec.policyTypes[0]", message: "must be equal to one of the allowed values" }]);
    expect(schemaProblems({ ...bad, metadata: { name: "Not_A_Name", labels: {} } }, 31).map((p) => p.field)).toContain("metadata.name");
  });

  it("and a kind the cluster's version does not serve is a problem, not a surprise at apply time", () => {
    const vap: Manifest = { apiVersion: "admissionregistration.k8s.io/v1", kind: "ValidatingAdmissionPolicy", metadata: { name: "p", labels: {} }, spec: {} };
    expect(schemaProblems(vap, 29)).toEqual([{ object: "ValidatingAdmissionPolicy p", field: "apiVersion", message: expect.stringContaining("does not serve") }]);
  });
});

describe("cluster facts refuse what a cluster could not hold, naming the cluster, the intent and the field", () => {
  it("NetworkPolicy on a network plugin that ignores it", () => {
    const r = render(exampleLayers(), { ...FACTS, networkPolicy: false });
    expect(r.problems.map(formatIntentProblem)).toEqual([
      `cluster "eu-west-1": intent "payments-segmentation": spec.generate.network: the cluster's network plugin does not enforce NetworkPolicy: the segmentation would exist on paper only`,
    ]);
  });

  it("quotas whose requests, over every namespace and intent, exceed the cluster's capacity", () => {
    const r = render(exampleLayers(), { ...FACTS, capacity: { cpu: "30", memory: "384Gi" } });
    expect(r.problems.map(formatIntentProblem)).toEqual([
      `cluster "eu-west-1": intent "payments-quota": spec.generate.quota.hard.requests.cpu: quotas reserve cpu 40 over payments-quota, above the cluster's capacity 30`,
    ]);
  });

  it("a residency rule that no zone of the cluster satisfies", () => {
    const r = render(exampleLayers(), { ...FACTS, zones: ["us-east-1a"] });
    expect(r.problems.map(formatIntentProblem)).toEqual([
      `cluster "eu-west-1": intent "eu-residency": spec.generate.residency.zones: no node of the cluster is in an allowed zone (eu-west-1a, eu-west-1b, eu-west-1c); its nodes are in us-east-1a`,
    ]);
  });

  it("a residency rule on a cluster too old for ValidatingAdmissionPolicy; its CEL policies are listed as not expressible there", () => {
    const r = render(exampleLayers(), { ...FACTS, kubernetesVersion: "1.29" });
    expect(r.problems.map(formatIntentProblem)).toEqual([
      `cluster "eu-west-1": intent "eu-residency": spec.generate.residency: its admission rule is a ValidatingAdmissionPolicy, which Kubernetes 1.29 does not serve (1.30 and later)`,
    ]);
    expect(r.notExpressible.map((n) => n.policy)).toContain("pod-security");
    expect(r.document.manifests.some((m) => m.kind === "ValidatingAdmissionPolicy")).toBe(false);
  });
});

describe("each object is one intent's: no lower layer replaces a locked intent's objects", () => {
  const key = (m: Manifest) => `${m.apiVersion.split("/").slice(0, -1).join("/")} ${m.kind} ${m.metadata.namespace ?? ""}/${m.metadata.name}`;
  const dependent = (name: string, grant: string) =>
    clusterLayer(
      policy(name, "eu-1", {
        domain: "access-control",
        generate: { access: { grants: [{ name: grant, groups: ["payments-devs"], rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "watch"] }] }] } },
      }),
    );

  it("a cluster's policy whose name and grant spell the locked intent's object name makes objects of its own", () => {
    // "auditors-read" + "read-workloads" and "auditors-read-read" + "workloads" once both made polity-auditors-read.read-workloads.
    const r = render([...exampleLayers().slice(0, 2), dependent("auditors-read-read", "workloads")]);
    expect(r.problems.map(formatIntentProblem)).toEqual([]);
    const keys = r.document.manifests.map(key);
    expect(new Set(keys).size).toBe(keys.length);
    const locked = r.document.manifests.filter((m) => m.kind === "ClusterRole" && m.metadata.labels["polity.dev/policy"] === "auditors-read");
    expect(locked).toHaveLength(1);
    expect(JSON.stringify(locked[0]!.rules)).not.toContain("secrets");
    const theirs = r.document.manifests.find((m) => m.kind === "ClusterRoleBinding" && m.metadata.labels["polity.dev/policy"] === "auditors-read-read")!;
    expect((theirs.roleRef as { name: string }).name).not.toBe(locked[0]!.metadata.name);
  });

  it("names are unambiguous for any policy and part: a policy name may hold dots and dashes, a part neither dot", () => {
    const names = ["a", "a-in", "a.in", "a-b", "a.b"];
    const parts = ["b", "in-b", "dns", "default-deny", "b-c"];
    const made = new Map<string, string>();
    for (const n of names) {
      const grants = parts.map((g) => ({ name: g, groups: ["devs"], rules: [{ apiGroups: [""], resources: ["pods"], verbs: ["get"] }] }));
      const r = render([clusterLayer(policy(n, "eu-1", { domain: "access-control", generate: { access: { grants } } }))]);
      expect(r.problems).toEqual([]);
      for (const m of r.document.manifests) {
        const k = key(m);
        expect(made.get(k), k).toBeUndefined();
        made.set(k, n);
      }
    }
  });

  it("two objects with the same group, kind, namespace and name are a problem naming both intents and the object, so the change is refused", () => {
    // One policy that is a residency intent and has CEL rules of its own: both make its ValidatingAdmissionPolicy.
    const both = policy("stay-home", "eu-1", {
      domain: "data-residency",
      match: { kinds: ["Pod"] },
      validations: [{ name: "team", expression: "has(object.metadata.labels)" }],
      generate: { residency: { selector: { residency: "eu" }, zones: ["eu-west-1a"] } },
    });
    const r = render([clusterLayer(both)]);
    expect(r.problems.map(formatIntentProblem)).toEqual([
      `cluster "eu-west-1": intent "stay-home": ValidatingAdmissionPolicy polity-stay-home: metadata.name: also made by intent "stay-home": two objects with one name, the one applied last would replace the other`,
      `cluster "eu-west-1": intent "stay-home": ValidatingAdmissionPolicyBinding polity-stay-home: metadata.name: also made by intent "stay-home": two objects with one name, the one applied last would replace the other`,
    ]);
    expect(renderProblems([{ cluster: "eu-west-1", set: effectivePolicySet([clusterLayer(both)], EU_1), facts: FACTS }])).toEqual(r.problems);
  });
});

// ---------------------------------------------------------------------------------------
// Properties

const name = fc.constantFrom("a", "b", "team-x", "ops");
const group = fc.constantFrom("auditors", "devs", "sre", "oncall");
const apiGroup = fc.constantFrom("", "apps", "batch");
const resource = fc.constantFrom("pods", "deployments", "jobs", "configmaps", "secrets");
const verb = fc.constantFrom("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection");
const rule = fc.record(
  {
    apiGroups: fc.uniqueArray(apiGroup, { minLength: 1, maxLength: 2 }),
    resources: fc.uniqueArray(resource, { minLength: 1, maxLength: 3 }),
    verbs: fc.uniqueArray(verb, { minLength: 1, maxLength: 4 }),
    resourceNames: fc.uniqueArray(fc.constantFrom("x", "y"), { minLength: 1, maxLength: 2 }),
  },
  { requiredKeys: ["apiGroups", "resources", "verbs"] },
);
const grant = fc.record(
  {
    name,
    groups: fc.uniqueArray(group, { minLength: 1, maxLength: 3 }),
    namespaces: fc.uniqueArray(fc.constantFrom("ns-a", "ns-b", "ns-c"), { minLength: 1, maxLength: 3 }),
    rules: fc.array(rule, { minLength: 1, maxLength: 3 }),
  },
  { requiredKeys: ["name", "groups", "rules"] },
);
const grants = fc.uniqueArray(grant, { minLength: 1, maxLength: 4, selector: (g) => g.name });

type Grant = { name: string; groups: string[]; namespaces?: string[]; rules: { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[] };

/** Every permission a list of grants names: group, namespace ("*" for the cluster), API group, resource, verb, resource name ("*" for any). */
function permissionsOfIntent(list: readonly Grant[]): Set<string> {
  const out = new Set<string>();
  for (const g of list)
    for (const who of g.groups)
      for (const ns of g.namespaces ?? ["*"])
        for (const r of g.rules) for (const ag of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) for (const n of r.resourceNames ?? ["*"]) out.add(JSON.stringify([who, ns, ag, res, v, n]));
  return out;
}

/** Every permission the generated RBAC grants, read from the bindings and the roles they refer to. */
function permissionsOfManifests(manifests: readonly Manifest[]): Set<string> {
  const out = new Set<string>();
  const roles = new Map(manifests.filter((m) => m.kind === "Role" || m.kind === "ClusterRole").map((m) => [`${m.kind}/${m.metadata.namespace ?? ""}/${m.metadata.name}`, m.rules as Grant["rules"]]));
  for (const b of manifests.filter((m) => m.kind === "RoleBinding" || m.kind === "ClusterRoleBinding")) {
    const ref = b.roleRef as { kind: string; name: string };
    const rules = roles.get(`${ref.kind}/${ref.kind === "Role" ? b.metadata.namespace : ""}/${ref.name}`);
    expect(rules, `binding ${b.metadata.name} refers to a role that exists`).toBeDefined();
    for (const s of b.subjects as { kind: string; name: string }[]) {
      expect(s.kind).toBe("Group");
      for (const r of rules!) for (const ag of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) for (const n of r.resourceNames ?? ["*"]) out.add(JSON.stringify([s.name, b.metadata.namespace ?? "*", ag, res, v, n]));
    }
  }
  return out;
}

const accessLayers = (list: readonly Grant[]) => [globalLayer(policy("access", "sec", { domain: "access-control", generate: { access: { grants: list } } }))];

function shuffled<T>(list: readonly T[], seed: number): T[] {
  const out = [...list];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe("the translator's properties", () => {
  it("never grants more than the intents name (and grants all of it)", () => {
    fc.assert(
      fc.property(grants, (list) => {
        const r = render(accessLayers(list));
        expect(r.problems).toEqual([]);
        const granted = permissionsOfManifests(r.document.manifests);
        const named = permissionsOfIntent(list);
        for (const p of granted) expect(named.has(p), p).toBe(true);
        expect(granted.size).toBe(named.size);
      }),
      { numRuns: 150 },
    );
  });

  it("is deterministic and independent of the order of documents, grants, namespaces, groups and rules", () => {
    fc.assert(
      fc.property(grants, fc.nat(), (list, seed) => {
        const again = shuffled(list, seed).map((g) => ({
          ...g,
          groups: shuffled(g.groups, seed + 1),
          ...(g.namespaces === undefined ? {} : { namespaces: shuffled(g.namespaces, seed + 2) }),
          rules: shuffled(g.rules, seed + 3).map((r) => ({ ...r, verbs: shuffled(r.verbs, seed + 4), resources: shuffled(r.resources, seed + 5) })),
        }));
        const a = render(accessLayers(list));
        expect(render(accessLayers(list)).canonical).toBe(a.canonical);
        expect(render(accessLayers(again)).document.manifests).toEqual(a.document.manifests);
      }),
      { numRuns: 100 },
    );
    const layers = exampleLayers();
    const reversed = layers.map((l) => ({ ...l, policies: [...l.policies].reverse() }));
    expect(render(reversed).hash).toBe(render(layers).hash);
  });

  it("refuses, at the boundary, access rules with wildcards or verbs that grant other permissions", () => {
    for (const rules of [
      [{ apiGroups: ["*"], resources: ["pods"], verbs: ["get"] }],
      [{ apiGroups: [""], resources: ["*"], verbs: ["get"] }],
      [{ apiGroups: [""], resources: ["pods"], verbs: ["*"] }],
      [{ apiGroups: ["rbac.authorization.k8s.io"], resources: ["clusterroles"], verbs: ["escalate"] }],
      [{ apiGroups: [""], resources: ["users"], verbs: ["impersonate"] }],
    ]) {
      const doc = policy("access", "sec", { domain: "access-control", generate: { access: { grants: [{ name: "g", groups: ["devs"], rules }] } } });
      expect(policyDocument.safeParse(doc).success, JSON.stringify(rules)).toBe(false);
    }
  });

  it("refuses, at the boundary, grants to Kubernetes' system: groups, naming the field", () => {
    for (const group of ["system:unauthenticated", "system:authenticated", "system:masters", "system:serviceaccounts:payments", "system:"]) {
      const doc = policy("access", "sec", { domain: "access-control", generate: { access: { grants: [{ name: "g", groups: ["devs", group], rules: [{ apiGroups: [""], resources: ["pods"], verbs: ["get"] }] }] } } });
      const parsed = policyDocument.safeParse(doc);
      expect(parsed.success, group).toBe(false);
      expect(parsed.error!.issues.map((i) => [i.path.join("."), i.message])).toEqual([["spec.generate.access.grants.0.groups.1", expect.stringContaining(`"${group}" is a Kubernetes system group`)]]);
    }
    expect(policyDocument.safeParse(policy("access", "sec", { domain: "access-control", generate: { access: { grants: [{ name: "g", groups: ["systems:ops", "ops-system:x"], rules: [{ apiGroups: [""], resources: ["pods"], verbs: ["get"] }] }] } } })).success).toBe(true);
  });

  it("a locked intent cannot be weakened from below: no rewrite of what it generates, no param out of bounds, no weaker enforcement, no unlock, no other scope", () => {
    const base = policy("seg", "sec", {
      domain: "network",
      params: { cidrs: { default: ["10.0.0.0/8"], override: { allowedTiers: ["region"], allowedValues: [["10.0.0.0/8"], ["10.1.0.0/16"]] } } },
      generate: { network: { namespaces: ["payments"], egress: [{ name: "out", namespace: "payments", cidrs: "$(params.cidrs)" }] } },
      enforcement: "deny",
      locked: true,
    });
    const weakenings: Doc[] = [
      { generate: { network: { namespaces: ["payments"], egress: [{ name: "out", namespace: "payments", cidrs: ["0.0.0.0/0"] }] } } },
      { generate: { network: { namespaces: ["other"] } } },
      { params: { cidrs: { value: ["0.0.0.0/0"] } } },
      { params: { cidrs: { override: { allowedTiers: ["region", "cluster"] } } } },
      { enforcement: "warn" },
      { locked: false },
      { scope: { clusterSelector: { matchLabels: { env: "none" } } } },
    ];
    fc.assert(
      fc.property(fc.constantFrom(...weakenings), fc.boolean(), (weakening, atRegion) => {
        const refinement = policy("seg", "region-team", weakening);
        const layers = [globalLayer(base), atRegion ? regionLayer(refinement) : clusterLayer(refinement)];
        let error: unknown;
        try {
          effectivePolicySet(layers, EU_1);
        } catch (e) {
          error = e;
        }
        expect(error, JSON.stringify(weakening)).toBeInstanceOf(PolityError);
        expect((error as PolityError).code).toBe("merge-refused");
      }),
    );
    // Within bounds, at the tier allowed: accepted, and what the cluster receives follows.
    const tuned = render([globalLayer(base), regionLayer(policy("seg", "region-team", { params: { cidrs: { value: ["10.1.0.0/16"] } } }))]);
    const out = tuned.document.manifests.find((m) => m.metadata.name === "polity-seg.out-out")!;
    expect(JSON.stringify(out.spec)).toContain("10.1.0.0/16");
  });

  it("quotas stay the cluster's: the global tier cannot set them unless delegated", () => {
    const quota = policy("q", "sec", { domain: "quota", generate: { quota: { namespaces: ["a"], hard: { pods: "10" } } } });
    expect(() => effectivePolicySet([globalLayer(quota)], EU_1)).toThrow(/local-protected|belongs to regions and clusters/);
    const owned = policy("q", "eu-1", { domain: "quota", delegate: ["global"], generate: { quota: { namespaces: ["a"], hard: { pods: "10" } } } });
    expect(ids(render([clusterLayer(owned)]).document.manifests)).toEqual(["ResourceQuota a/polity-q"]);
  });
});

// ---------------------------------------------------------------------------------------
// Pinned bytes: a rendering's hash must not move when the way it is computed does.

const pinnedLayers = (): Layer[] => [
  globalLayer(
    policy("seg", "sec", {
      domain: "network",
      locked: true,
      generate: {
        network: {
          namespaces: ["shop", "shop-batch", "shop"],
          ingress: [{ name: "web", namespace: "shop", podSelector: { app: "web", tier: "front" }, from: [{ namespace: "gateway" }, { podSelector: { role: "probe" } }], ports: [{ port: 8443 }, { port: 80, protocol: "TCP" }] }],
          egress: [{ name: "db", namespace: "shop", cidrs: ["10.2.0.0/16", "10.1.0.0/16"], ports: [{ port: 5432 }] }],
        },
      },
    }),
    policy("readers", "sec", {
      domain: "access-control",
      generate: {
        access: {
          grants: [
            { name: "read", groups: ["shop-readers", "auditors"], namespaces: ["shop", "billing"], rules: [{ apiGroups: ["", "apps"], resources: ["pods", "deployments"], verbs: ["watch", "get", "list"] }] },
            { name: "nodes", groups: ["sre"], rules: [{ apiGroups: [""], resources: ["nodes"], verbs: ["get"] }] },
          ],
        },
      },
    }),
    policy("stay-home", "sec", { domain: "data-residency", generate: { residency: { selector: { residency: "eu" }, zones: ["eu-west-1b", "eu-west-1a"] } } }),
    policy("labelled", "sec", {
      domain: "workload-security",
      match: { kinds: ["Pod"] },
      params: { team: { default: "équipe" } },
      validations: [{ name: "team", expression: "has(object.metadata.labels) && 'team' in object.metadata.labels", message: "les pods portent une étiquette « team » ✓" }],
      enforcement: "warn",
    }),
  ),
  clusterLayer(policy("q", "eu-1", { domain: "quota", generate: { quota: { namespaces: ["shop", "billing"], hard: { "requests.cpu": "8", pods: 50 }, limits: { default: { cpu: "500m" }, max: { memory: "2Gi" } } } } })),
];

describe("a rendering's canonical bytes and hash", () => {
  // Pinned before the rendering was made faster (2026-12-07); they are the cluster's bytes, and must stay put.
  // Moved deliberately when part names took a dot (polity-<policy>.<part>), so no two intents share an object,
  // and again when network policies stated both rule lists and admission bindings matchResources (drift ownership).
  const cases: [string, ClusterFacts, string, string[]][] = [
    ["1.31, every intent held", FACTS, "sha256:654d1a1b99bcff3724e5865372d3f6598241b39a2c1ff38598bb2a4bc13adf3c", []],
    [
      "1.29: no admission policies",
      { ...FACTS, kubernetesVersion: "1.29" },
      "sha256:ccc88096d799323110fab6b50345c526d51b1ee4ed5ab36fcd10bed0e743dd7e",
      ['intent "stay-home": spec.generate.residency: its admission rule is a ValidatingAdmissionPolicy, which Kubernetes 1.29 does not serve (1.30 and later)'],
    ],
    [
      "no enforcing network plugin, no allowed zone, little capacity",
      { kubernetesVersion: "v1.32.0", networkPolicy: false, capacity: { cpu: "4" }, zones: ["us-east-1a"] },
      "sha256:ea22b3162de8842858784a3620fce72eae6b4230e87afe396c88825a275c1e2c",
      [
        `intent "q": spec.generate.quota.hard.requests.cpu: quotas reserve cpu 16 over q, above the cluster's capacity 4`,
        `intent "seg": spec.generate.network: the cluster's network plugin does not enforce NetworkPolicy: the segmentation would exist on paper only`,
        `intent "stay-home": spec.generate.residency.zones: no node of the cluster is in an allowed zone (eu-west-1b, eu-west-1a); its nodes are in us-east-1a`,
      ],
    ],
  ];
  for (const [what, facts, hash, problems] of cases) {
    it(`stay as they were pinned: ${what}`, () => {
      const r = render(pinnedLayers(), facts);
      expect(r.canonical).toBe(canonicalJson(r.document));
      expect(r.hash).toBe(contentHash(canonicalJson(r.document)));
      expect(r.hash).toBe(hash);
      expect(r.bytes.toString("utf8")).toBe(r.canonical);
      expect(r.byteLength).toBe(Buffer.byteLength(canonicalJson(r.document), "utf8"));
      expect(r.problems.map(formatIntentProblem)).toEqual(problems.map((p) => `cluster "eu-west-1": ${p}`));
    });
  }
});

describe("clusters that share a set and a version", () => {
  it("share their manifests, but each keeps its own name, its facts' problems and its hash", () => {
    const layers = pinnedLayers().slice(0, 1);
    const west2: ClusterIdentity = { ...EU_1, name: "eu-west-2" };
    const a = render(layers, FACTS);
    const b = render(layers, { ...FACTS, networkPolicy: false }, west2);
    const c = render(layers, { ...FACTS, zones: ["us-east-1a"] }, west2);
    expect(b.document.manifests).toEqual(a.document.manifests);
    expect(b.hash).not.toBe(a.hash);
    expect(a.problems).toEqual([]);
    expect(b.problems.map(formatIntentProblem)).toEqual([expect.stringMatching(/^cluster "eu-west-2": intent "seg": spec.generate.network: /)]);
    // Its zones allow no residency rule: it gets none, the others' list notwithstanding.
    expect(ids(c.document.manifests).filter((id) => id.includes("stay-home"))).toEqual([]);
    expect(ids(a.document.manifests).filter((id) => id.includes("stay-home"))).toHaveLength(2);
    for (const r of [a, b, c]) {
      expect(r.canonical).toBe(canonicalJson(r.document));
      expect(r.hash).toBe(contentHash(canonicalJson(r.document)));
    }
  });
});
