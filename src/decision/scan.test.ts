/**
 * Background scans judge what already runs exactly as the webhook judges its creation, and
 * tally the results into bounded reports (one per namespace) and a compact summary.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { complianceSummary } from "../api/compliance.js";
import { effectiveSet, exception, policy, type Doc } from "../../test/support/policy-sets.js";
import { evaluate } from "./evaluate.js";
import { reportObject } from "./policy-report.js";
import { requestForResource } from "./request.js";
import { judgeExisting, MAX_COMPLIANCE_EXAMPLES, ScanTally } from "./scan.js";

const NOW = Date.parse("2026-06-01T00:00:00Z");
const EXPIRES = "2026-06-02T00:00:00Z";
const TEAM_LABEL = { name: "team-label", expression: "has(object.metadata.labels) && 'team' in object.metadata.labels", message: "pods need a team label" };
const NO_PRIVILEGED = { name: "privileged", expression: "object.spec.containers.all(c, !has(c.securityContext) || !has(c.securityContext.privileged) || c.securityContext.privileged != true)", message: "no privileged containers" };

function pod(name: string, namespace: string, labels: Record<string, string> = {}, privileged = false): Doc {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, labels, uid: `uid-${name}` },
    spec: { containers: [{ name: "app", image: "app:1", ...(privileged ? { securityContext: { privileged: true } } : {}) }] },
  };
}

function deployment(name: string, namespace: string, podLabels: Record<string, string>): Doc {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace },
    spec: { selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name, ...podLabels } }, spec: { containers: [{ name: "app", image: "app:1" }] } } },
  };
}

const SET = effectiveSet([
  policy("no-privileged", { validations: [NO_PRIVILEGED] }),
  policy("team", { validations: [TEAM_LABEL], enforcement: "warn", domain: "ownership" }),
  policy("prod-only", { validations: [TEAM_LABEL], scope: { namespaceSelector: { matchLabels: { env: "prod" } } }, enforcement: "audit" }),
]);

describe("judging an existing object", () => {
  it("gives each policy that applies a result: fail for deny and audit, warn for warn, pass otherwise", () => {
    const judged = judgeExisting(SET, pod("web", "shop", {}, true), { now: NOW, namespaceObject: { metadata: { name: "shop", labels: { env: "prod" } } } });
    expect(judged.object).toEqual({ apiVersion: "v1", kind: "Pod", name: "web", namespace: "shop", uid: "uid-web" });
    expect(judged.results.map((r) => [r.policy, r.result, r.rule, r.enforcement])).toEqual([
      ["no-privileged", "fail", "privileged", "deny"],
      ["prod-only", "fail", "team-label", "audit"],
      ["team", "warn", "team-label", "warn"],
    ]);
    expect(judged.results[0]!.message).toBe("privileged: no privileged containers");
    expect(judged.results[2]!.category).toBe("ownership");
    const good = judgeExisting(SET, pod("api", "shop", { team: "a" }), { now: NOW, namespaceObject: { metadata: { name: "shop", labels: { env: "dev" } } } });
    expect(good.results.map((r) => [r.policy, r.result])).toEqual([
      ["no-privileged", "pass"],
      ["team", "pass"],
    ]);
  });

  it("agrees with the webhook's decision on every object: a deny result exactly when the webhook would deny", () => {
    const objects = fc.record({ team: fc.boolean(), privileged: fc.boolean(), prod: fc.option(fc.boolean(), { nil: undefined }) });
    fc.assert(
      fc.property(objects, ({ team, privileged, prod }) => {
        const object = pod("p", "shop", team ? { team: "x" } : {}, privileged);
        const namespaceObject = prod === undefined ? undefined : { metadata: { name: "shop", labels: prod ? { env: "prod" } : {} } };
        const judged = judgeExisting(SET, object, { now: NOW, namespaceObject });
        const decision = evaluate(SET, requestForResource(object, "CREATE"), { now: NOW, namespaceObject });
        expect(judged.results.some((r) => r.result === "fail" && r.enforcement === "deny")).toBe(!decision.allowed);
        expect(new Set(judged.results.filter((r) => r.result !== "pass").map((r) => r.policy))).toEqual(new Set(decision.violations.map((v) => v.policy)));
      }),
    );
  });

  it("judges a workload's pod template as the webhook does, and says so", () => {
    const judged = judgeExisting(SET, deployment("cart", "shop", {}), { now: NOW, namespaceObject: { metadata: { name: "shop" } } });
    expect(judged.results.find((r) => r.policy === "team")).toMatchObject({ result: "warn", message: "team-label (pod template): pods need a team label" });
  });

  it("fails closed when the namespace is not known and a policy selects namespaces by their labels", () => {
    const judged = judgeExisting(SET, pod("web", "shop", { team: "a" }), { now: NOW });
    expect(judged.results.find((r) => r.policy === "prod-only")).toMatchObject({ result: "fail", rule: "namespaceSelector" });
  });

  it("uses the same clock for exceptions: exempted (skip) before the expiry, failing from the instant it passes", () => {
    const set = effectiveSet([policy("no-privileged", { validations: [NO_PRIVILEGED] }), exception("legacy", EXPIRES, { policy: "no-privileged", scope: { namespaces: ["shop"] } })]);
    const before = judgeExisting(set, pod("web", "shop", {}, true), { now: Date.parse(EXPIRES) - 1 });
    expect(before.results).toEqual([expect.objectContaining({ policy: "no-privileged", result: "skip", message: `exempted by exception legacy until ${EXPIRES}` })]);
    const after = judgeExisting(set, pod("web", "shop", {}, true), { now: Date.parse(EXPIRES) });
    expect(after.results).toEqual([expect.objectContaining({ policy: "no-privileged", result: "fail" })]);
  });
});

describe("a scan's tally", () => {
  function scan(count: number, max = 10): ScanTally {
    const tally = new ScanTally(max);
    for (let i = 0; i < count; i++) {
      const namespace = `ns-${i % 3}`;
      tally.add(judgeExisting(SET, pod(`p${i}`, namespace, i % 2 === 0 ? { team: "a" } : {}, i % 5 === 0), { now: NOW, namespaceObject: { metadata: { name: namespace } } }));
    }
    return tally;
  }

  it("makes one report per namespace, capped, failures first, and its summary counts every result", () => {
    const reports = scan(300).reports();
    expect(reports.map((r) => r.namespace)).toEqual(["ns-0", "ns-1", "ns-2"]);
    for (const report of reports) {
      expect(report.results).toHaveLength(10);
      expect(report.summary.pass + report.summary.fail + report.summary.warn + report.summary.skip).toBe(200);
      const order = report.results.map((r) => ["fail", "warn", "skip", "pass"].indexOf(r.result));
      expect(order).toEqual([...order].sort((a, b) => a - b));
    }
    expect(reports[0]!.summary.fail).toBe(20);
  });

  it("sums into a compact summary the hub accepts, with a few examples by reference", () => {
    const summary = scan(300).summary("2026-06-01T00:00:00.000Z", 7);
    expect(complianceSummary.safeParse(summary).success).toBe(true);
    expect(summary.objects).toBe(300);
    expect(summary.policies.map((p) => [p.policy, p.pass, p.fail, p.warn])).toEqual([
      ["no-privileged", 240, 60, 0],
      ["team", 150, 0, 150],
    ]);
    expect(summary.policies[0]!.examples).toHaveLength(MAX_COMPLIANCE_EXAMPLES);
    expect(summary.policies[0]!.examples[0]).toEqual({ kind: "Pod", namespace: "ns-0", name: "p0", result: "fail" });
  });

  it("writes a name that could move a terminal's cursor with its control characters replaced, so the hub accepts it", () => {
    const tally = new ScanTally();
    tally.add(judgeExisting(SET, pod("evil\u001b[2J\u202e", "shop", {}, true), { now: NOW, namespaceObject: { metadata: { name: "shop" } } }));
    const summary = tally.summary("2026-06-01T00:00:00.000Z", 1);
    expect(summary.policies[0]!.examples[0]!.name).toBe("evil?[2J?");
    expect(complianceSummary.safeParse(summary).success).toBe(true);
  });

  it("builds PolicyReport and openreports Report objects, a ClusterPolicyReport for cluster-scoped objects", () => {
    const tally = new ScanTally();
    tally.add(judgeExisting(SET, pod("web", "shop", {}, true), { now: NOW, namespaceObject: { metadata: { name: "shop" } } }));
    const [content] = tally.reports();
    const report = reportObject(content!, "wgpolicyk8s.io/v1alpha2", NOW, 3);
    expect(report).toMatchObject({
      apiVersion: "wgpolicyk8s.io/v1alpha2",
      kind: "PolicyReport",
      metadata: { name: "polity", namespace: "shop", labels: { "app.kubernetes.io/managed-by": "polity" } },
      summary: { pass: 0, fail: 1, warn: 1, error: 0, skip: 0 },
    });
    expect((report.results as unknown[])[0]).toEqual({
      source: "polity",
      policy: "no-privileged",
      rule: "privileged",
      result: "fail",
      message: "privileged: no privileged containers",
      category: "workload-security",
      scored: true,
      timestamp: { seconds: NOW / 1000, nanos: 0 },
      resources: [{ apiVersion: "v1", kind: "Pod", name: "web", namespace: "shop", uid: "uid-web" }],
      properties: { enforcement: "deny" },
    });
    expect(reportObject({ ...content!, namespace: "" }, "openreports.io/v1alpha1", NOW, 3)).toMatchObject({ apiVersion: "openreports.io/v1alpha1", kind: "ClusterReport", metadata: { name: "polity" } });
  });
});
