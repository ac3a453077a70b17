/**
 * The manifests in deploy/ render with `kubectl kustomize`, and every object they render is
 * valid against the Kubernetes OpenAPI schemas (kubernetes-models 4, Kubernetes 1.27), holds
 * the least privilege the README promises, and runs under Pod Security `restricted` as
 * Polity's own built-in decides it.
 *
 * kubectl comes from Debian's kubernetes-client (.ci/run installs it): in CI these tests
 * must run; elsewhere, without kubectl, they are skipped with a message saying so.
 */
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { evaluate } from "../src/decision/evaluate.js";
import { requestForResource } from "../src/decision/request.js";
import { effectivePolicySet } from "../src/layering/effective.js";
import { buildLayer } from "../src/policy/layer.js";
import { builtinPolicyDocument } from "../src/policy/library/index.js";
import { ROOT } from "./support/hubs.js";

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> } } & Record<string, unknown>;

const KUBECTL = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
const HAVE_KUBECTL = KUBECTL.status === 0;
const IN_CI = process.env.CI === "true" || process.env.CI === "1";
const skipReason = HAVE_KUBECTL || IN_CI ? "" : " (skipped: kubectl is not installed here; apt-get install kubernetes-client)";

function render(base: string): Obj[] {
  const out = spawnSync("kubectl", ["kustomize", join(ROOT, "deploy", base)], { encoding: "utf8" });
  if (out.status !== 0) throw new Error(`kubectl kustomize deploy/${base} failed:\n${out.stderr}`);
  return parseAllDocuments(out.stdout)
    .map((doc) => doc.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

const require = createRequire(import.meta.url);

/** The kubernetes-models class of an object's apiVersion and kind, which validates it against the OpenAPI schema. */
function validateAgainstSchema(object: Obj): void {
  const [group, version] = object.apiVersion.includes("/") ? object.apiVersion.split("/") : ["", object.apiVersion];
  const module = group === "" ? `kubernetes-models/${version}/${object.kind}` : `kubernetes-models/${group}/${version}/${object.kind}`;
  const Model = (require(module) as Record<string, new (data: unknown) => { validate(): void }>)[object.kind];
  if (Model === undefined) throw new Error(`no schema for ${object.apiVersion} ${object.kind}`);
  new Model(object).validate();
}

const CLUSTER_SCOPED = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration"]);

describe.skipIf(!HAVE_KUBECTL && !IN_CI)(`deploy/ with kubectl kustomize${skipReason}`, () => {
  it("has kubectl in CI", () => {
    expect(KUBECTL.error, "kubectl must be installed in CI (.ci/run installs kubernetes-client)").toBeUndefined();
    expect(KUBECTL.status).toBe(0);
  });

  for (const base of ["agent", "hub"]) {
    describe(`deploy/${base}`, () => {
      it("renders objects that each validate against the Kubernetes OpenAPI schema", () => {
        const objects = render(base);
        expect(objects.length).toBeGreaterThan(4);
        for (const object of objects) {
          expect(() => validateAgainstSchema(object), `${object.kind}/${object.metadata.name}`).not.toThrow();
        }
      });

      it("puts every namespaced object in polity-system and none on a cluster-scoped one", () => {
        for (const object of render(base)) {
          if (CLUSTER_SCOPED.has(object.kind)) expect(object.metadata.namespace, `${object.kind}/${object.metadata.name}`).toBeUndefined();
          else expect(object.metadata.namespace, `${object.kind}/${object.metadata.name}`).toBe("polity-system");
        }
      });

      it("runs pods that Pod Security restricted admits, as Polity's built-in decides it", () => {
        const doc = builtinPolicyDocument("builtin:pod-security/restricted");
        if (typeof doc === "string") throw new Error(doc);
        const layer = buildLayer([{ file: "builtin", index: 0, value: doc, locate: () => ({ file: "builtin", line: 0, column: 0 }) }], { tier: "global" });
        const set = effectivePolicySet([layer], { name: "local", region: "local", labels: {} });
        const deployments = render(base).filter((o) => o.kind === "Deployment");
        expect(deployments).toHaveLength(1);
        for (const deployment of deployments) {
          const decision = evaluate(set, requestForResource(deployment), { now: Date.now() });
          expect(decision.violations.map((v) => v.message)).toEqual([]);
        }
      });
    });
  }

  it("gives the agent least privilege: no Secret beyond its own, no wildcard, writes only reports and its own registration", () => {
    const objects = render("agent");
    const clusterRole = objects.find((o) => o.kind === "ClusterRole")!;
    const role = objects.find((o) => o.kind === "Role")!;
    type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
    const clusterRules = clusterRole.rules as Rule[];
    const roleRules = role.rules as Rule[];
    for (const rule of [...clusterRules, ...roleRules]) {
      expect(rule.verbs).not.toContain("*");
      expect(rule.resources).not.toContain("*");
      expect(rule.apiGroups).not.toContain("*");
    }
    // Cluster-wide: never a Secret; writes only to reports and to the configuration named polity.
    expect(clusterRules.flatMap((r) => r.resources)).not.toContain("secrets");
    const writes = (r: Rule) => r.verbs.some((v) => !["get", "list", "watch"].includes(v));
    for (const rule of clusterRules.filter(writes)) {
      if (rule.apiGroups.includes("admissionregistration.k8s.io")) expect(rule.resourceNames).toEqual(["polity"]);
      else expect(rule.apiGroups.every((g) => g === "wgpolicyk8s.io" || g === "openreports.io")).toBe(true);
    }
    expect(clusterRules.find((r) => r.resources.includes("namespaces"))?.verbs.sort()).toEqual(["get", "list", "watch"]);
    // In its namespace: its identity Secret (shipped, of the agent's type) and its Lease, by name, and nothing it could list.
    const secret = objects.find((o) => o.kind === "Secret")!;
    expect(secret).toMatchObject({ metadata: { name: "polity-agent-identity", namespace: "polity-system" }, type: "polity.dev/agent-identity" });
    expect(roleRules).toEqual([
      { apiGroups: [""], resources: ["secrets"], resourceNames: ["polity-agent-identity"], verbs: ["get", "update"] },
      { apiGroups: ["coordination.k8s.io"], resources: ["leases"], resourceNames: ["polity-agent"], verbs: ["get", "update"] },
    ]);
  });

  it("registers the webhook fail-closed behind a Service that selects the agent's pods, exempting the system namespaces", () => {
    const objects = render("agent");
    const webhook = objects.find((o) => o.kind === "ValidatingWebhookConfiguration")!;
    const service = objects.find((o) => o.kind === "Service")!;
    const deployment = objects.find((o) => o.kind === "Deployment")!;
    const [hook] = webhook.webhooks as { failurePolicy: string; clientConfig: { service: { name: string; namespace: string } }; namespaceSelector: { matchExpressions: { values: string[] }[] } }[];
    expect(hook!.failurePolicy).toBe("Fail");
    expect(hook!.clientConfig.service).toMatchObject({ name: service.metadata.name, namespace: "polity-system" });
    expect(hook!.namespaceSelector.matchExpressions[0]!.values).toEqual(["kube-system", "kube-public", "kube-node-lease", "polity-system"]);
    const template = (deployment.spec as { replicas: number; template: { metadata: { labels: Record<string, string> } } });
    expect(template.replicas).toBe(2);
    expect(template.template.metadata.labels).toMatchObject((service.spec as { selector: Record<string, string> }).selector);
    expect(objects.find((o) => o.kind === "PodDisruptionBudget")?.spec).toMatchObject({ minAvailable: 1 });
  });

  it("takes the hub's database URL and operator key from Secrets, never from the manifest", () => {
    const deployment = render("hub").find((o) => o.kind === "Deployment")!;
    const text = JSON.stringify(deployment);
    expect(text).not.toMatch(/postgres:\/\//);
    const env = (deployment.spec as { template: { spec: { containers: { env: { name: string; valueFrom?: { secretKeyRef?: { name: string } } }[] }[] } } }).template.spec.containers[0]!.env;
    expect(Object.fromEntries(env.map((e) => [e.name, e.valueFrom?.secretKeyRef?.name]))).toEqual({ DATABASE_URL: "polity-hub-database", POLITY_HUB_KEY: "polity-hub-operator-key" });
  });
});
