/**
 * The agent's applier against the test API server, with the official client: a version's
 * objects are server-side applied in dependency order with field manager `polity`; a version
 * one of whose objects fails is rolled back to the previous version (the objects it created
 * removed, the previous ones applied again); objects the new version no longer has are
 * deleted, and only those Polity made. A field another field manager took (the real kubectl,
 * `apply --server-side --field-manager`) is a conflict, reported by field and manager and
 * never forced, unless the intent says `forceConflicts`.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubernetesObjectApi } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { Applier, describeConflict } from "../src/agent/apply/index.js";
import { FORCE_CONFLICTS_ANNOTATION } from "../src/intents/translate.js";
import { run } from "./support/processes.js";
import { renderCluster, type Manifest } from "../src/intents/index.js";
import { loadKubeAccess } from "../src/kube/index.js";
import { driftOf } from "../src/intents/drift.js";
import { effectivePolicySet } from "../src/layering/effective.js";
import { layersFromFiles } from "../src/policy/layer-files.js";
import { TestApiServer } from "./support/kube/api-server.js";
import { INTENT_TYPES } from "./support/kube/resources.js";

const ROOT = join(import.meta.dirname, "..");
let api: TestApiServer;
let dir: string;
let applier: Applier;
let kubeconfig: string;
const KUBECTL = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0;

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
  for (const type of INTENT_TYPES) api.serve(type);
  for (const name of ["payments", "billing"]) api.put({ apiVersion: "v1", kind: "Namespace", metadata: { name } });
  dir = mkdtempSync(join(tmpdir(), "polity-apply-"));
  kubeconfig = api.writeKubeconfig(join(dir, "kubeconfig"));
  const access = loadKubeAccess({ kubeconfig, env: {} })!;
  applier = new Applier(KubernetesObjectApi.makeApiClient(access.config), access.config);
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

  it("sends every field of every object as rendered: a NetworkPolicy rule's from, a LimitRange's default (client-node's typed models drop both)", async () => {
    // Without `from`, an ingress rule admits every source: the cluster would hold a looser
    // policy than the intent. Every field the manifest sets must reach the API server.
    const withFrom = v1.filter((m) => m.kind === "NetworkPolicy" && JSON.stringify(m.spec).includes('"from"'));
    const withDefault = v1.filter((m) => m.kind === "LimitRange" && JSON.stringify(m.spec).includes('"default"'));
    expect(withFrom.length).toBeGreaterThan(0);
    expect(withDefault.length).toBeGreaterThan(0);
    await applier.apply(v1, []);
    for (const m of v1) expect(driftOf(m, stored(m)), `${m.kind} ${m.metadata.namespace}/${m.metadata.name}`).toBeUndefined();
    for (const m of withFrom) expect(JSON.stringify(stored(m)!.spec)).toContain('"from"');
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

  it("never takes over an object of the same name Polity did not make: the version fails, the object keeps its owner and is never deleted", async () => {
    // Taking it over would label it as Polity's, and a later version without it would delete it.
    const quota = v1.find((m) => m.kind === "ResourceQuota")!;
    const theirs: Manifest = { ...quota, metadata: { ...quota.metadata, name: "polity-adopted-quota" } };
    api.put({ apiVersion: "v1", kind: "ResourceQuota", metadata: { name: "polity-adopted-quota", namespace: quota.metadata.namespace, labels: { team: "argocd" } }, spec: { hard: { "count/secrets": "50" } } });
    const result = await applier.apply([...v1, theirs], v1);
    expect(result.rolledBack).toBe(true);
    expect(result.failed).toMatchObject({ object: `ResourceQuota ${quota.metadata.namespace}/polity-adopted-quota` });
    expect(result.failed?.reason).toContain("not made by Polity");
    const live = stored(theirs)!;
    expect((live.metadata as { labels: Record<string, string> }).labels).toEqual({ team: "argocd" });
    expect((live.spec as { hard: Record<string, string> }).hard).toEqual({ "count/secrets": "50" });
    expect((await applier.apply(v1, [...v1, theirs])).deleted).toEqual([]);
    expect(stored(theirs)).toBeDefined();
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

/** The real kubectl against the test API server, applying `yaml` server-side as field manager `manager`. */
function kubectlApply(yaml: string, manager: string, extra: readonly string[] = []) {
  const { KUBECONFIG: _k, ...env } = process.env;
  return run("kubectl", ["--kubeconfig", kubeconfig, "apply", "--server-side", `--field-manager=${manager}`, "--validate=false", ...extra, "-f", "-"], { env, input: yaml, timeoutMs: 30_000 });
}

describe.skipIf(!KUBECTL)(`conflicts with another field manager${KUBECTL ? "" : " (skipped: kubectl is not installed here; apt-get install kubernetes-client)"}`, () => {
  const v1 = exampleObjects();
  const quota = v1.find((m) => m.kind === "ResourceQuota" && m.metadata.namespace === "payments")!;
  const otherQuota = `apiVersion: v1
kind: ResourceQuota
metadata: { name: ${quota.metadata.name}, namespace: payments }
spec:
  hard: { requests.cpu: "5" }
`;
  const hard = () => (stored(quota)!.spec as { hard: Record<string, string> }).hard;
  const managers = () => ((stored(quota)!.metadata as { managedFields: { manager: string }[] }).managedFields.map((f) => f.manager));

  it("refuses kubectl's server-side apply of a field Polity owns with another value, naming polity, and lets it take the field with --force-conflicts", async () => {
    // The billing team's own LimitRange of the suite above, whose fields Polity would conflict with.
    const billing = v1.find((m) => m.kind === "LimitRange" && m.metadata.namespace === "billing")!;
    api.remove("v1", "LimitRange", billing.metadata.name, "billing");
    expect((await applier.apply(v1, v1)).rolledBack).toBe(false);
    const refused = await kubectlApply(otherQuota, "ops");
    expect(refused.code).not.toBe(0);
    expect(refused.err).toContain('conflict with "polity"');
    expect(refused.err).toContain(".spec.hard.requests.cpu");
    const forced = await kubectlApply(otherQuota, "ops", ["--force-conflicts"]);
    expect(forced.code, forced.err).toBe(0);
    expect(hard()["requests.cpu"]).toBe("5");
    expect(managers()).toEqual(expect.arrayContaining(["polity", "ops"]));
  });

  it("reports the field another manager owns as a conflict, never forces it, and rolls the version back", async () => {
    const before = api.requests.length;
    const result = await applier.apply(v1, v1);
    expect(result.rolledBack).toBe(true);
    expect(result.failed?.object).toBe(`ResourceQuota payments/${quota.metadata.name}`);
    expect(result.conflicts).toEqual([{ object: `ResourceQuota payments/${quota.metadata.name}`, field: ".spec.hard.requests.cpu", manager: "ops" }]);
    expect(result.conflicts.map(describeConflict)).toEqual([`field .spec.hard.requests.cpu of ResourceQuota payments/${quota.metadata.name} is owned by manager ops`]);
    expect(result.failed?.reason).toContain("is owned by manager ops");
    // Never forced: the other manager's value stands.
    expect(api.requests.slice(before).filter((r) => r.query.fieldManager === "polity").every((r) => r.query.force !== "true")).toBe(true);
    expect(hard()["requests.cpu"]).toBe("5");
  });

  it("takes the field over with force when the intent says forceConflicts", async () => {
    const forced = v1.map((m) => (m === quota ? { ...m, metadata: { ...m.metadata, annotations: { ...m.metadata.annotations, [FORCE_CONFLICTS_ANNOTATION]: "true" } } } : m));
    const result = await applier.apply(forced, v1);
    expect(result).toMatchObject({ rolledBack: false, conflicts: [] });
    expect(hard()["requests.cpu"]).toBe((quota.spec as { hard: Record<string, string> }).hard["requests.cpu"]);
    const applies = api.requests.filter((r) => r.method === "PATCH" && r.path.endsWith(`/resourcequotas/${quota.metadata.name}`) && r.query.fieldManager === "polity");
    expect(applies.at(-1)!.query.force).toBe("true");
    // The other manager no longer owns the field: an apply without force holds again.
    expect((await applier.apply(v1, forced)).rolledBack).toBe(false);
  });
});
