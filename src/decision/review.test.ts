/**
 * AdmissionReview responses, exactly as the API server expects them: the request's uid,
 * `allowed`, on denial a 403 naming every denying policy, warnings, audit annotations.
 */
import { describe, expect, it } from "vitest";
import { effectiveSet, exception, policy } from "../../test/support/policy-sets.js";
import { PolityError } from "../errors.js";
import type { Decision } from "./evaluate.js";
import { admissionResponse, decideReviewBytes, denialMessage, reviewResponse, type ReviewContext } from "./review.js";
import { evaluate } from "./evaluate.js";
import { decidedResource, parseAdmissionReview, requestForResource } from "./request.js";

const UID = "705ab4f5-6393-11e8-b7cc-42010a800002";
const NOW = Date.parse("2026-06-01T00:00:00Z");

/** The decision path as the webhook runs it, from a review's bytes. */
const decideReview = (policies: typeof set, review: unknown, context: ReviewContext) => decideReviewBytes(policies, Buffer.from(JSON.stringify(review), "utf8"), context);

const decision = (overrides: Partial<Decision>): Decision => ({ allowed: true, violations: [], warnings: [], auditAnnotations: {}, exemptions: [], ...overrides });

const set = effectiveSet([
  policy("team-label", { validations: [{ name: "team", expression: "has(object.metadata.labels) && 'team' in object.metadata.labels", message: "add a team label" }] }),
  policy("no-latest", { enforcement: "warn", validations: [{ name: "tag", expression: "object.spec.containers.all(c, !c.image.endsWith(':latest'))", message: "pin the image" }] }),
  policy("named", { enforcement: "audit", validations: [{ name: "name", expression: "object.metadata.name != 'web'", message: "name it better" }] }),
  exception("legacy", "2026-06-02T00:00:00Z", { policy: "team-label", scope: { names: ["legacy"] } }),
]);

function podReview(name: string, labels: Record<string, string>, image = "registry.example.com/app:1.0") {
  return parseAdmissionReview({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: UID,
      kind: { group: "", version: "v1", kind: "Pod" },
      operation: "CREATE",
      namespace: "shop",
      name,
      object: { apiVersion: "v1", kind: "Pod", metadata: { name, namespace: "shop", labels }, spec: { containers: [{ name: "app", image }] } },
    },
  });
}

describe("the response to an AdmissionReview", () => {
  it("allows with nothing more than the uid when nothing is wrong", () => {
    expect(decideReview(set, podReview("api", { team: "a" }), { now: NOW }).review).toEqual({
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      response: { uid: UID, allowed: true },
    });
  });

  it("denies with 403 Forbidden and a message naming each denying policy and what to change", () => {
    const { review } = decideReview(set, podReview("api", {}), { now: NOW });
    expect(review.response).toEqual({
      uid: UID,
      allowed: false,
      status: { code: 403, reason: "Forbidden", message: "denied by Polity: team-label: add a team label" },
    });
  });

  it("allows with warnings what warn policies refuse", () => {
    const { review } = decideReview(set, podReview("api", { team: "a" }, "app:latest"), { now: NOW });
    expect(review.response).toEqual({ uid: UID, allowed: true, warnings: ["no-latest: pin the image"] });
  });

  it("carries audit violations and exemptions as audit annotations", () => {
    const audited = decideReview(set, podReview("web", { team: "a" }), { now: NOW }).review.response;
    expect(audited.auditAnnotations).toEqual({ "audit-violations": "named/name: name it better" });
    const exempted = decideReview(set, podReview("legacy", {}), { now: NOW }).review.response;
    expect(exempted).toMatchObject({ allowed: true, auditAnnotations: { exemptions: "team-label/team by exception legacy (expires 2026-06-02T00:00:00Z)" } });
  });

  it("denies what an exception allowed once the exception has expired", () => {
    expect(decideReview(set, podReview("legacy", {}), { now: Date.parse("2026-06-02T00:00:00Z") }).review.response.allowed).toBe(false);
  });
});

describe("denialMessage", () => {
  it("groups the denying violations by policy, pod template apart, and leaves out warn and audit ones", () => {
    const message = denialMessage(
      decision({
        allowed: false,
        violations: [
          { policy: "a", rule: "r1", message: "first", enforcement: "deny" },
          { policy: "a", rule: "r2", message: "second", enforcement: "deny" },
          { policy: "a", rule: "r1", message: "in the template", enforcement: "deny", target: "pod template" },
          { policy: "b", rule: "r", message: "only a warning", enforcement: "warn" },
        ],
      }),
    );
    expect(message).toBe("denied by Polity: a: first, second; a (pod template): in the template");
  });
});

describe("admissionResponse", () => {
  it("cuts a warning longer than the API server shows, visibly, at 256 characters", () => {
    const response = admissionResponse(UID, decision({ warnings: ["w".repeat(300), "short"] }));
    expect(response.warnings).toEqual([`${"w".repeat(255)}…`, "short"]);
  });

  it("leaves out warnings and annotations when there are none", () => {
    expect(reviewResponse(UID, decision({})).response).toEqual({ uid: UID, allowed: true });
  });
});

describe("decideReviewBytes", () => {
  const bytes = (value: unknown) => Buffer.from(JSON.stringify(value), "utf8");

  it("answers bytes with the response's JSON", () => {
    const answer = JSON.parse(decideReviewBytes(set, bytes(podReview("api", {})), { now: NOW }).response.toString("utf8")) as { response: { uid: string; allowed: boolean } };
    expect(answer.response).toMatchObject({ uid: UID, allowed: false });
  });

  it("refuses a body that is not an AdmissionReview v1 with a PolityError", () => {
    expect(() => decideReviewBytes(set, Buffer.from("not json"), { now: NOW })).toThrow(PolityError);
    expect(() => decideReviewBytes(set, bytes({ apiVersion: "v1", kind: "Pod" }), { now: NOW })).toThrow('kind must be "AdmissionReview", got "Pod"');
  });

  it("refuses a JSON body that is not an object, however deep, as invalid", () => {
    const deep = Buffer.from(`${"[".repeat(100_000)}${"]".repeat(100_000)}`);
    expect(() => decideReviewBytes(set, deep, { now: NOW })).toThrow("an AdmissionReview must be a JSON object");
  });
});

describe("a resource from a file and the same resource in an AdmissionReview", () => {
  const roles = effectiveSet([
    policy("role-rules", {
      match: { kinds: ["rbac.authorization.k8s.io/Role"] },
      validations: [{ name: "rules", expression: "object.rules != null", message: "a Role needs rules" }],
    }),
  ]);
  const role = { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: "empty", namespace: "shop" } };

  it("get the same verdict: the file's Role is judged with rules: null, as the API server sends it", () => {
    const fromFile = evaluate(roles, requestForResource(decidedResource(role)), { now: NOW });
    const sent = { ...role, rules: null };
    const fromWebhook = decideReview(
      roles,
      { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", request: { uid: UID, kind: { group: "rbac.authorization.k8s.io", version: "v1", kind: "Role" }, operation: "CREATE", namespace: "shop", name: "empty", object: sent } },
      { now: NOW },
    ).decision;
    expect(fromWebhook.violations.map((v) => v.rule)).toEqual(["rules"]);
    expect(fromFile).toEqual(fromWebhook);
  });
});
