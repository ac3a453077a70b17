/**
 * The Pod Security built-in reading each namespace's Pod Security Admission labels within a
 * floor (spec.podSecurity.namespaceLabels): the built-in's level and version are always
 * judged; a namespace may ask for more with `pod-security.kubernetes.io/<mode>` and
 * `<mode>-version`, never for less. Label values are parsed as upstream's PolicyToEvaluate
 * (k8s.io/pod-security-admission/api/helpers.go): an invalid enforce level is restricted,
 * an invalid warn or audit level privileged, an invalid version latest, and a version
 * newer than the newest known the newest known.
 */
import { describe, expect, it } from "vitest";
import { evaluate, type Decision } from "../../../decision/evaluate.js";
import { requestForResource } from "../../../decision/request.js";
import { effectiveSet, type Doc } from "../../../../test/support/policy-sets.js";

const NOW = Date.parse("2026-06-01T00:00:00Z");

function podSecurity(builtin: string, mode: "enforce" | "warn" | "audit" = "enforce", enforcement = "deny"): Doc {
  return {
    apiVersion: "polity.dev/v1",
    kind: "Policy",
    metadata: { name: "pod-security", owner: "team-a" },
    spec: { builtin, podSecurity: { namespaceLabels: mode }, enforcement, locked: true },
  };
}

/** Baseline passes, restricted fails (no securityContext at all). */
const BASELINE_POD = { apiVersion: "v1", kind: "Pod", metadata: { name: "web", namespace: "shop" }, spec: { containers: [{ name: "app", image: "registry.example.com/app:1" }] } };
/** Privileged: baseline fails. */
const PRIVILEGED_POD = { ...BASELINE_POD, spec: { containers: [{ name: "app", image: "registry.example.com/app:1", securityContext: { privileged: true } }] } };
/** Restricted at every version but for runAsUser 0, which restricted checks from v1.23 on. */
const ROOT_UID_POD = {
  ...BASELINE_POD,
  spec: {
    securityContext: { runAsNonRoot: true, runAsUser: 0, seccompProfile: { type: "RuntimeDefault" } },
    containers: [{ name: "app", image: "registry.example.com/app:1", securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } } }],
  },
};

const namespace = (labels: Record<string, string>) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name: "shop", labels: { "kubernetes.io/metadata.name": "shop", ...labels } } });

function decide(policyDoc: Doc, pod: unknown, labels: Record<string, string> | undefined): Decision {
  return evaluate(effectiveSet([policyDoc]), requestForResource(pod, "CREATE"), { now: NOW, ...(labels === undefined ? {} : { namespaceObject: namespace(labels) }) });
}

const rules = (decision: Decision) => decision.violations.map((v) => v.rule);

describe("Pod Security levels per namespace, within a floor", () => {
  const floor = podSecurity("pod-security/baseline");

  it("judges an unlabelled namespace by the floor alone", () => {
    expect(decide(floor, BASELINE_POD, {}).allowed).toBe(true);
    expect(rules(decide(floor, PRIVILEGED_POD, {}))).toEqual(["privileged"]);
  });

  it("lets a namespace ask for restricted above a baseline floor, with upstream's checks and messages", () => {
    const denied = decide(floor, BASELINE_POD, { "pod-security.kubernetes.io/enforce": "restricted" });
    expect(rules(denied)).toEqual(["allowPrivilegeEscalation", "capabilities_restricted", "runAsNonRoot", "seccompProfile_restricted"]);
    expect(denied.violations[0]!.message).toBe('allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false)');
  });

  it("never goes below the floor: privileged and baseline labels under a baseline floor judge by the floor", () => {
    for (const level of ["privileged", "baseline"]) {
      expect(rules(decide(floor, PRIVILEGED_POD, { "pod-security.kubernetes.io/enforce": level })), level).toEqual(["privileged"]);
    }
    const restrictedFloor = podSecurity("pod-security/restricted");
    expect(decide(restrictedFloor, BASELINE_POD, { "pod-security.kubernetes.io/enforce": "privileged" }).allowed).toBe(false);
    // An old version pinned by the namespace does not lower the floor's version either.
    expect(rules(decide(restrictedFloor, ROOT_UID_POD, { "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "v1.22" }))).toEqual(["runAsUser"]);
  });

  it("takes an invalid enforce level as restricted (fail closed), as upstream does", () => {
    expect(decide(floor, BASELINE_POD, { "pod-security.kubernetes.io/enforce": "Restricted" }).allowed).toBe(false);
    expect(decide(floor, BASELINE_POD, { "pod-security.kubernetes.io/enforce": "" }).allowed).toBe(false);
  });

  it("takes an invalid warn or audit level as privileged (fail open), which the floor still bounds", () => {
    const warn = podSecurity("pod-security/baseline", "warn", "warn");
    const bogus = decide(warn, BASELINE_POD, { "pod-security.kubernetes.io/warn": "bogus" });
    expect(bogus.allowed).toBe(true);
    expect(bogus.warnings).toEqual([]);
    const restricted = decide(warn, BASELINE_POD, { "pod-security.kubernetes.io/warn": "restricted" });
    expect(restricted.allowed).toBe(true);
    expect(restricted.warnings).toHaveLength(4);
    // A warn policy reads the warn labels only: enforce labels are not its business.
    expect(decide(warn, BASELINE_POD, { "pod-security.kubernetes.io/enforce": "restricted" }).warnings).toEqual([]);
    expect(decide(warn, PRIVILEGED_POD, { "pod-security.kubernetes.io/warn": "bogus" }).warnings).toEqual([expect.stringMatching(/^pod-security: privileged \(container "app"/)]);
    const audit = podSecurity("pod-security/baseline", "audit", "audit");
    expect(decide(audit, BASELINE_POD, { "pod-security.kubernetes.io/audit": "restricted" }).auditAnnotations["audit-violations"]).toMatch(/^pod-security\/allowPrivilegeEscalation: /);
    expect(decide(audit, BASELINE_POD, { "pod-security.kubernetes.io/audit": "nonsense" }).auditAnnotations).toEqual({});
  });

  it("reads the version label as upstream: v1.x pins, latest and anything invalid mean the newest, newer than known means the newest", () => {
    const restricted = (version: string) => decide(floor, ROOT_UID_POD, { "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": version });
    expect(restricted("v1.22").allowed).toBe(true);
    expect(rules(restricted("v1.23"))).toEqual(["runAsUser"]);
    for (const version of ["latest", "v1.999", "v1.05", "1.25", "v2.0", "", "v1.", "v1.123456789012345678901234"]) {
      expect(rules(restricted(version)), JSON.stringify(version)).toEqual(["runAsUser"]);
    }
    // With no version label the floor's version applies to what the namespace asks for.
    const pinnedFloor = podSecurity("pod-security/baseline@v1.22");
    expect(decide(pinnedFloor, ROOT_UID_POD, { "pod-security.kubernetes.io/enforce": "restricted" }).allowed).toBe(true);
  });

  it("fails closed under its failure policy when the namespace is not known, saying why", () => {
    const unknown = decide(floor, BASELINE_POD, undefined);
    expect(unknown.allowed).toBe(false);
    expect(unknown.violations).toEqual([expect.objectContaining({ rule: "namespaceObject", message: expect.stringMatching(/the policy's expressions read namespaceObject: refused under its failure policy \(Fail\)$/) })]);
  });

  it("is chosen by the defining document only: a lower tier may not set which labels it reads", async () => {
    const { buildLayer } = await import("../../layer.js");
    const { effectivePolicySet } = await import("../../../layering/effective.js");
    const { CLUSTER, globalLayer, sources } = await import("../../../../test/support/policy-sets.js");
    const region = buildLayer(sources("region.yaml", [{ apiVersion: "polity.dev/v1", kind: "Policy", metadata: { name: "pod-security", owner: "team-b" }, spec: { podSecurity: { namespaceLabels: "warn" } } }]), {
      tier: "region",
      name: "eu-west",
      region: "eu-west",
      owners: ["team-b"],
    });
    expect(() => effectivePolicySet([globalLayer([floor]), region], CLUSTER)).toThrow(/only the defining document chooses which namespace labels it reads/);
  });

  it("refuses spec.podSecurity without a pod-security built-in", async () => {
    const { buildLayer } = await import("../../layer.js");
    const { sources } = await import("../../../../test/support/policy-sets.js");
    const doc = { apiVersion: "polity.dev/v1", kind: "Policy", metadata: { name: "p", owner: "team-a" }, spec: { domain: "x", match: { kinds: ["Pod"] }, validations: [{ expression: "true" }], podSecurity: { namespaceLabels: "enforce" } } };
    expect(() => buildLayer(sources("global.yaml", [doc]), { tier: "global", name: "global", owners: ["team-a"] })).toThrow(/spec\.podSecurity needs spec\.builtin/);
  });
});
