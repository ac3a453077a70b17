/**
 * Admission requests: AdmissionReview v1 validated at the boundary with the field named,
 * and a plain resource turned into the request the API server would send for it.
 */
import { describe, expect, it } from "vitest";
import { PolityError } from "../errors.js";
import { decidedResource, groupVersionKind, looksLikeAdmissionReview, parseAdmissionReview, requestForResource } from "./request.js";

const POD = { apiVersion: "v1", kind: "Pod", metadata: { name: "web", namespace: "shop" }, spec: {} };

function review(request: Record<string, unknown>, top: Record<string, unknown> = {}) {
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: { uid: "705ab4f5-6393-11e8-b7cc-42010a800002", kind: { group: "", version: "v1", kind: "Pod" }, operation: "CREATE", object: POD, ...request },
    ...top,
  };
}

/** The message parseAdmissionReview refuses a value with. */
function refusal(value: unknown): string {
  try {
    parseAdmissionReview(value);
  } catch (error) {
    if (error instanceof PolityError) return error.message;
    throw error;
  }
  return "accepted";
}

describe("parseAdmissionReview", () => {
  it("accepts an AdmissionReview v1 as the API server sends it, unchanged", () => {
    const value = review({ namespace: "shop", name: "web", userInfo: { username: "alice" } });
    expect(parseAdmissionReview(value)).toBe(value);
  });

  it("refuses anything else, naming the field and what it must be", () => {
    expect(refusal([])).toBe("an AdmissionReview must be a JSON object");
    expect(refusal(review({}, { kind: "Pod" }))).toBe('kind must be "AdmissionReview", got "Pod"');
    expect(refusal(review({}, { apiVersion: "admission.k8s.io/v1beta1" }))).toMatch(/^apiVersion must be "admission\.k8s\.io\/v1", got "admission\.k8s\.io\/v1beta1" \(register the webhook with admissionReviewVersions: \["v1"\]\)$/);
    expect(refusal({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview" })).toBe("request: is required (an AdmissionRequest object)");
    expect(refusal(review({ uid: "" }))).toBe("request.uid: must be a non-empty string");
    expect(refusal(review({ kind: { group: "", version: "v1" } }))).toBe("request.kind: must be {group, version, kind} strings");
    expect(refusal(review({ operation: "PATCH" }))).toBe('request.operation: must be one of CREATE, UPDATE, DELETE, CONNECT, got "PATCH"');
    expect(refusal(review({ namespace: 7 }))).toBe("request.namespace: must be a string");
    expect(refusal(review({ object: "a pod" }))).toBe("request.object: must be an object or null");
    expect(refusal(review({ object: null }))).toBe("request.object: a CREATE request carries the object");
    expect(refusal(review({ operation: "UPDATE" }))).toBe("request.object and request.oldObject: an UPDATE request carries both");
    expect(refusal(review({ userInfo: "alice" }))).toBe("request.userInfo: must be an object");
  });

  it("accepts a DELETE without the object, as the API server sends it", () => {
    expect(refusal(review({ operation: "DELETE", object: null, oldObject: POD }))).toBe("accepted");
  });
});

describe("looksLikeAdmissionReview", () => {
  it("tells an AdmissionReview of any version from a plain resource", () => {
    expect(looksLikeAdmissionReview(review({}, { apiVersion: "admission.k8s.io/v1beta1" }))).toBe(true);
    expect(looksLikeAdmissionReview(POD)).toBe(false);
    expect(looksLikeAdmissionReview(null)).toBe(false);
  });
});

describe("requestForResource", () => {
  it("makes the CREATE request the API server would send for a resource", () => {
    expect(requestForResource(POD)).toEqual({
      uid: "polity-eval",
      kind: { group: "", version: "v1", kind: "Pod" },
      name: "web",
      namespace: "shop",
      operation: "CREATE",
      userInfo: { username: "polity-eval" },
      object: POD,
      oldObject: null,
    });
  });

  it("puts a namespaced resource without a namespace in default, and a cluster-scoped one in none", () => {
    expect(requestForResource({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "c" } }).namespace).toBe("default");
    expect(requestForResource({ apiVersion: "v1", kind: "Namespace", metadata: { name: "shop" } })).not.toHaveProperty("namespace");
    expect(requestForResource({ apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", metadata: { name: "r" } })).not.toHaveProperty("namespace");
  });

  it("carries the old object for UPDATE, and only the old one for DELETE", () => {
    const old = { ...POD, metadata: { ...POD.metadata, labels: { v: "1" } } };
    expect(requestForResource(POD, "UPDATE", old)).toMatchObject({ operation: "UPDATE", object: POD, oldObject: old });
    expect(requestForResource(POD, "DELETE")).toMatchObject({ operation: "DELETE", object: null, oldObject: POD });
  });

  it("names a resource by generateName when it has no name", () => {
    expect(requestForResource({ apiVersion: "v1", kind: "Pod", metadata: { generateName: "web-" } }).name).toBe("web-");
  });

  it("refuses what is not a resource", () => {
    expect(() => requestForResource("a pod")).toThrow("a resource must be a map with apiVersion, kind and metadata");
    expect(() => requestForResource({ kind: "Pod" })).toThrow("a resource needs apiVersion and kind");
  });
});

describe("groupVersionKind", () => {
  it("splits apiVersion into group and version, the core group being empty", () => {
    expect(groupVersionKind({ apiVersion: "apps/v1", kind: "Deployment" })).toEqual({ group: "apps", version: "v1", kind: "Deployment" });
    expect(groupVersionKind({ apiVersion: "v1", kind: "Pod" })).toEqual({ group: "", version: "v1", kind: "Pod" });
  });
});

describe("decidedResource", () => {
  it("drops fields set to null at every depth, as the API server decodes them", () => {
    expect(decidedResource({ spec: { securityContext: null, containers: [{ name: "a", env: null }] }, status: null })).toEqual({ spec: { containers: [{ name: "a" }] } });
  });

  it("keeps the nulls Kubernetes serializes: fields without omitempty, such as a Role's rules and a rule's verbs", () => {
    const role = { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: "r", namespace: "shop", labels: null }, rules: null };
    expect(decidedResource(role)).toEqual({ apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: "r", namespace: "shop" }, rules: null });
    const rule = { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", metadata: { name: "c" }, rules: [{ apiGroups: null, verbs: null }] };
    expect(decidedResource(rule)).toEqual({ apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", metadata: { name: "c" }, rules: [{ verbs: null }] });
  });

  it("sends such a field as null when it is absent, as the API server encodes the nil it decoded", () => {
    const role = { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: "r", namespace: "shop" } };
    expect(decidedResource(role)).toEqual({ ...role, rules: null });
    const deployment = { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "d" }, spec: { replicas: 1 } };
    expect(decidedResource(deployment)).toEqual({ ...deployment, spec: { replicas: 1, selector: null } });
  });

  it("keeps a field named __proto__ as data, not as the object's prototype", () => {
    const decoded = decidedResource(JSON.parse('{"metadata":{"__proto__":{"polluted":true}}}')) as { metadata: Record<string, unknown> };
    expect(Object.keys(decoded.metadata)).toEqual(["__proto__"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((decoded.metadata as { polluted?: unknown }).polluted).toBeUndefined();
  });
});
