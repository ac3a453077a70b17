/**
 * The agent's applier against the test API server, with the official client: a version's
 * objects are server-side applied in dependency order with field manager `polity`; a version
 * one of whose objects fails is rolled back to the previous version (the objects it created
 * removed, the previous ones applied again); objects the new version no longer has are
 * deleted, and only those Polity made.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubernetesObjectApi } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Applier } from "../src/agent/apply/index.js";
import { renderCluster, type Manifest } from "../src/intents/index.js";
import { loadKubeAccess } from "../src/kube/index.js";
import { effectivePolicySet } from "../src/layering/effective.js";
import { layersFromFiles } from "../src/policy/layer-files.js";
import { TestApiServer } from "./support/kube/api-server.js";

const ROOT = join(import.meta.dirname, "..");
let api: TestApiServer;
let dir: string;
let applier: Applier;

const KINDS = ["NetworkPolicy", "ResourceQuota", "LimitRange", "ClusterRole", "ClusterRoleBinding"];

/** The example cluster's intents' objects (the second line aside: the test server serves no admission policies). */
function exampleObjects(): Manifest[] {
  const files = ["global.yaml", "region-eu-west.yaml", "cluster-eu-west-1.yaml"].map((name) => ({ name, content: readFileSync(join(ROOT, "examples/layers", name), "utf8") }));
  const set = effectivePolicySet(layersFromFiles(files).map((l) => l.layer), { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } });
  const rendering = renderCluster("eu-west-1", set, { kubernetesVersion: "1.31", networkPolicy: true, zones: ["eu-west-1a"] });
  return rendering.document.manifests.filter((m) => KINDS.includes(m.kind));
}

const stored = (m: Manifest) => api.get(m.apiVersion, m.kind, m.metadata.name, m.metadata.namespace);

beforeAll(async () => {
  api = await TestApiServer.start();
  for (const [group, resource, kind, namespaced] of [
    ["networking.k8s.io", "networkpolicies", "NetworkPolicy", true],
    ["", "resourcequotas", "ResourceQuota", true],
    ["", "limitranges", "LimitRange", true],
    ["rbac.authorization.k8s.io", "clusterroles", "ClusterRole", false],
    ["rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding", false],
  ] as const) {
    api.serve({ group, version: "v1", resource, kind, namespaced });
  }
  for (const name of ["payments", "billing"]) api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name } });
  dir = mkdtempSync(join(tmpdir(), "polity-apply-"));
  const access = loadKubeAccess({ kubeconfig: api.writeKubeconfig(join(dir, "kubeconfig")), env: {} })!;
  applier = new Applier(KubernetesObjectApi.makeApiClient(access.config));
});

afterAll(async () => {
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the agent's applier", () => {
  const v1 = exampleObjects();

  it("applies a version's objects in dependency order with server-side apply, field manager polity", async () => {
    expect(v1.length).toBeGreaterThan(5);
    const result = await applier.apply(v1, []);
    expect(result).toMatchObject({ rolledBack: false, deleted: [] });
    expect(result.applied).toHaveLength(v1.length);
    expect(result.applied.indexOf("ClusterRole polity-auditors-read.read-workloads")).toBeLessThan(result.applied.indexOf("ClusterRoleBinding polity-auditors-read.read-workloads"));
    for (const m of v1) {
      const live = stored(m);
      expect(live, `${m.kind} ${m.metadata.name}`).toBeDefined();
      expect((live!.metadata as { managedFields: { manager: string }[] }).managedFields.map((f) => f.manager)).toContain("polity");
    }
    const applies = api.requests.filter((r) => r.method === "PATCH" && r.query.fieldManager === "polity");
    expect(applies.length).toBe(v1.length);
    expect(applies.every((r) => r.query.force === undefined || r.query.force === "false")).toBe(true);
  });

  it("rolls a failed version back: the previous objects applied again, the ones it created removed, the failure reported", async () => {
    const extra: Manifest = { ...v1.find((m) => m.kind === "ResourceQuota")!, metadata: { ...v1.find((m) => m.kind === "ResourceQuota")!.metadata, name: "polity-extra-quota" } };
    const changedQuota = v1.map((m) => (m.kind === "ResourceQuota" && m.metadata.namespace === "payments" ? { ...m, spec: { hard: { pods: "999" } } } : m));
    const v2 = [...changedQuota, extra];
    const failing = v2.find((m) => m.kind === "NetworkPolicy")!;
    api.fail({ method: "PATCH", path: new RegExp(`/networkpolicies/${failing.metadata.name}$`), action: { kind: "status", code: 500 } });
    const result = await applier.apply(v2, v1);
    expect(result.rolledBack).toBe(true);
    expect(result.failed?.object).toBe(`NetworkPolicy ${failing.metadata.namespace}/${failing.metadata.name}`);
    expect(result.rollbackFailures).toEqual([]);
    expect(result.applied).toContain(`ResourceQuota ${extra.metadata.namespace}/polity-extra-quota`);
    // The quota created by v2 is gone; the one v2 changed holds v1's value again.
    expect(stored(extra)).toBeUndefined();
    const quota = v1.find((m) => m.kind === "ResourceQuota" && m.metadata.namespace === "payments")!;
    expect((stored(quota)!.spec as { hard: Record<string, string> }).hard).toEqual((quota.spec as { hard: Record<string, string> }).hard);
  });

  it("deletes what the new version no longer has, and only objects Polity made", async () => {
    const dropped = v1.filter((m) => m.kind === "LimitRange");
    expect(dropped.length).toBeGreaterThan(0);
    // Someone else's object of the same name in billing: not labelled as Polity's, so it stays.
    const billing = dropped.find((m) => m.metadata.namespace === "billing")!;
    api.put({ apiVersion: "v1", kind: "LimitRange", metadata: { name: billing.metadata.name, namespace: "billing", labels: { team: "billing" } }, spec: { limits: [] } });
    const v3 = v1.filter((m) => m.kind !== "LimitRange");
    const result = await applier.apply(v3, v1);
    expect(result.rolledBack).toBe(false);
    expect(result.deleted).toEqual(dropped.filter((m) => m !== billing).map((m) => `LimitRange ${m.metadata.namespace}/${m.metadata.name}`));
    for (const m of dropped.filter((d) => d !== billing)) expect(stored(m)).toBeUndefined();
    expect(stored(billing)).toBeDefined();
  });
});
