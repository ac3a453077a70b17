/**
 * Governance of change, end to end against real hubs: teams bound to token subjects and
 * groups, owners that must be declared teams, changes only by a policy's owners, exceptions
 * as requests (refused beyond their policy's bounds, approved by the right team and never by
 * their requester, escalated, granted by a risk rule, expiring everywhere at one instant),
 * and exceptions in layer files only from global admins.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ExceptionView } from "../src/api/exceptions.js";
import type { SourceFile } from "../src/api/fields.js";
import type { DeprecationView } from "../src/api/layers.js";
import type { ProposalView } from "../src/api/proposals.js";
import type { AuditEntry } from "../src/audit/entry.js";
import { call, closeConnections, type HubEndpoint } from "../src/client/http.js";
import { decideReviewBytes } from "../src/decision/review.js";
import { example, HubFixture, mint, refused, type Minted, type TestHub } from "./support/hubs.js";
import { podReview } from "./support/reviews.js";

const OPERATOR_KEY = "governance-test-operator-key-0123456789";
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

const GLOBAL = example("global.yaml");
const REGION_EU = example("region-eu-west.yaml");
const REGION_US = example("region-us-east.yaml");

const hubs = new HubFixture("polity-governance-test-", OPERATOR_KEY);

afterAll(() => closeConnections());

/** A file with one more document appended. */
function withDocument(file: SourceFile, document: string): SourceFile {
  return { name: file.name, content: `${file.content.trimEnd()}\n---\n${document}` };
}

/** An exception request's body, expiring `lifetimeMs` from now. */
function asked(policy: string, lifetimeMs: number, scope: Record<string, unknown> = { clusters: ["eu-west-2"], namespaces: ["legacy"] }, extra: Record<string, unknown> = {}) {
  return { spec: { policy, scope, justification: "A legacy workload that is being migrated this quarter.", expiresAt: new Date(Date.now() + lifetimeMs).toISOString(), ...extra } };
}

describe("exceptions as requests", () => {
  let h: TestHub;
  let eve: Minted; // eu-west region operator, in eu-platform by its group
  let uma: Minted; // us-east region operator
  let sam: Minted; // platform-security
  let pat: Minted; // platform-team
  const request = (who: { endpoint: HubEndpoint }, body: unknown) => call<ExceptionView>(who.endpoint, "POST", "/v1/exceptions", body);
  const answer = (who: { endpoint: HubEndpoint }, id: string, what: "approve" | "deny" | "withdraw", reason?: string) =>
    call<ExceptionView>(who.endpoint, "POST", `/v1/exceptions/${id}/${what}`, reason === undefined ? {} : { reason });

  beforeAll(async () => {
    h = await hubs.startCopy("requests");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, REGION_US] });
    for (const [name, region, env] of [
      ["eu-west-1", "eu-west", "prod"],
      ["eu-west-2", "eu-west", "staging"],
      ["us-east-1", "us-east", "prod"],
    ] as const) {
      await call(h.admin, "POST", "/v1/clusters", { name, region, labels: { env } });
    }
    eve = await mint(h, { name: "eve", role: "region-operator", region: "eu-west", subject: "eve@example.com", groups: ["eu-west-operators"] });
    uma = await mint(h, { name: "uma", role: "region-operator", region: "us-east", subject: "uma@example.com" });
    sam = await mint(h, { name: "sam", role: "team-member", subject: "sam@example.com" });
    pat = await mint(h, { name: "pat", role: "team-member", subject: "pat@example.com" });
  });

  /** The entries of one kind the audit log holds (read by the bootstrap admin). */
  async function logged(kind: string): Promise<AuditEntry[]> {
    await h.hub.context.audit.integrate();
    const page = await call<{ items: { entry: AuditEntry }[] }>(h.admin, "GET", `/v1/audit/entries?kind=${kind}&limit=1000`);
    return page.body.items.map((i) => i.entry);
  }

  /** What eu-west-2's agent would answer for a root pod in namespace `legacy`, at `now`. */
  function decideRootPod(cluster: string, now: number) {
    const review = podReview({
      metadata: { name: "old-app", namespace: "legacy", labels: { team: "legacy" } },
      spec: { containers: [{ name: "app", image: "registry.example.com/old-app:1.0", securityContext: { privileged: true } }] },
    });
    const set = h.hub.context.federation.effectiveFor(cluster);
    return decideReviewBytes(set, review, { now }).decision;
  }

  it("keeps a region operator's request for an exception to a global policy pending until a member of its owner team approves it", async () => {
    const filed = await request(eve, asked("pod-security", 7 * DAY));
    expect(filed.status).toBe(201);
    expect(filed.body).toMatchObject({ state: "pending", policy: "pod-security", layer: "global", team: "platform-security", requestedBy: "eve@example.com", region: "eu-west", source: "request", decidedBy: null });
    // Pending: nothing is excepted yet.
    expect(decideRootPod("eu-west-2", Date.now()).allowed).toBe(false);
    const approved = await answer(sam, filed.body.id, "approve");
    expect(approved.body).toMatchObject({ state: "approved", decidedBy: "sam@example.com" });
    // Published by the layer that defines the policy, with the authenticated approver, for the clusters it names only.
    const excepted = h.hub.context.federation.effectiveFor("eu-west-2").document.exceptions.find((e) => e.name === `request-${filed.body.id}`);
    expect(excepted).toMatchObject({ policy: "pod-security", approvedBy: "sam@example.com", expiresAt: filed.body.expiresAt });
    expect(decideRootPod("eu-west-2", Date.now()).allowed).toBe(true);
    expect(decideRootPod("eu-west-1", Date.now()).allowed).toBe(false);
    // The audit log names who asked and who approved, as the hub authenticated them.
    const [requestedEntry] = (await logged("exception.requested")).filter((e) => e.data.request === filed.body.id);
    expect(requestedEntry).toMatchObject({ actor: "user:eve@example.com", region: "eu-west", data: { team: "platform-security", requestedBy: "eve@example.com" } });
    const [grantedEntry] = (await logged("exception.granted")).filter((e) => e.data.request === filed.body.id);
    expect(grantedEntry).toMatchObject({ actor: "user:sam@example.com", data: { approvedBy: "sam@example.com", layer: "global" } });
    await answer(eve, filed.body.id, "withdraw", "migrated");
  });

  it("refuses self-approval, an approver of the wrong team, and approving twice", async () => {
    const own = await request(sam, asked("pod-security", DAY));
    expect((await refused(answer(sam, own.body.id, "approve"))).message).toMatch(/sam@example.com requested this exception: nobody approves their own request/);
    expect((await refused(answer(pat, own.body.id, "approve"))).message).toMatch(/pat@example.com is not a member of team "platform-security"/);
    // A global admin answers only once the team has had its time.
    expect((await refused(answer({ endpoint: h.admin }, own.body.id, "approve"))).message).toMatch(/once it is escalated/);
    const theirs = await request(eve, asked("pod-security", DAY));
    await answer(sam, theirs.body.id, "approve");
    const again = await refused(answer(sam, theirs.body.id, "approve"));
    expect(again.status).toBe(409);
    expect(again.message).toMatch(/is approved, not pending/);
    expect((await call<ExceptionView>(h.admin, "GET", `/v1/exceptions/${own.body.id}`)).body.state).toBe("pending");
    await answer(sam, theirs.body.id, "withdraw");
    await answer(sam, own.body.id, "withdraw");
  });

  it("refuses, with the reason, a request beyond its policy's bounds, already expired, for a rule or policy that does not exist", async () => {
    const tooLong = await refused(request(eve, asked("pod-security", 45 * DAY)));
    expect(tooLong.status).toBe(422);
    expect(tooLong.message).toMatch(/it would last 45 days; exceptions to policy "pod-security" last at most 30 days \(spec.exceptions.maxLifetime: 30d\)/);
    const tooBroad = await refused(request(eve, asked("pod-security", DAY, { regions: ["eu-west"], namespaces: ["legacy"] })));
    expect(tooBroad.status).toBe(422);
    expect(tooBroad.message).toMatch(/allows exceptions scoped by clusters, namespaces, names only, not by regions/);
    const unscoped = await refused(request(eve, asked("pod-security", DAY, { clusters: ["eu-west-2"] })));
    expect(unscoped.status).toBe(400);
    expect(unscoped.message).toMatch(/an exception must be narrow/);
    const expired = await refused(request(eve, asked("pod-security", -MINUTE)));
    expect(expired.message).toMatch(/is not in the future/);
    const noRule = await refused(request(eve, asked("require-team-label", DAY, undefined, { rules: ["colour"] })));
    expect(noRule.message).toMatch(/policy "require-team-label" has no rule "colour" \(its rules: team-label\)/);
    const noPolicy = await refused(request(eve, asked("no-such-policy", DAY)));
    expect(noPolicy.status).toBe(404);
    expect(noPolicy.message).toMatch(/no cluster the request reaches has a policy named "no-such-policy"/);
    const approver = await refused(request(eve, asked("pod-security", DAY, undefined, { approvedBy: "platform-security" })));
    expect(approver.message).toMatch(/a request names no approver/);
    const elsewhere = await refused(request(eve, asked("pod-security", DAY, { clusters: ["us-east-1"], namespaces: ["legacy"] })));
    expect(elsewhere.status).toBe(403);
    expect((await call<{ items: ExceptionView[] }>(h.admin, "GET", "/v1/exceptions?state=pending")).body.items).toEqual([]);
  });

  it("escalates a request its team leaves unanswered past its escalation time: then a global admin may answer it", async () => {
    const filed = await request(eve, asked("pod-security", 7 * DAY));
    h.clock.offsetMs = 49 * HOUR; // platform-security escalates after 48h
    try {
      await h.hub.context.exceptions.sweep(() => ({ actor: "hub", correlationId: "sweep-test" }));
      expect((await call<ExceptionView>(h.admin, "GET", `/v1/exceptions/${filed.body.id}`)).body).toMatchObject({ state: "pending", escalated: true });
      const [escalated] = (await logged("exception.escalated")).filter((e) => e.data.request === filed.body.id);
      expect(escalated).toMatchObject({ actor: "hub", data: { team: "platform-security" } });
      const denied = await answer({ endpoint: h.admin }, filed.body.id, "deny", "run it unprivileged");
      expect(denied.body).toMatchObject({ state: "denied", decidedBy: "token:bootstrap admin", reason: "run it unprivileged" });
    } finally {
      h.clock.offsetMs = 0;
    }
  });

  it("approves at once, recording the rule, a request a risk rule of the defining layer covers", async () => {
    await call(h.admin, "POST", "/v1/clusters", { name: "us-east-2", region: "us-east", labels: { env: "staging" } });
    const scope = { clusters: ["us-east-2"], namespaces: ["batch"] };
    const quick = await request(uma, asked("cost-center-label", 12 * HOUR, scope));
    expect(quick.body).toMatchObject({ state: "approved", decidedBy: "rule:warn-outside-production", team: "us-platform", layer: "region/us-east" });
    // A day and more, or a production cluster: a person decides.
    expect((await request(uma, asked("cost-center-label", 2 * DAY, scope))).body.state).toBe("pending");
    expect((await request(uma, asked("cost-center-label", HOUR, { clusters: ["us-east-1"], namespaces: ["batch"] }))).body.state).toBe("pending");
  });

  it("expires a granted exception at its instant: out of the decisions at that instant, out of the next bundles, with an exception.expired entry", async () => {
    const filed = await request(eve, asked("pod-security", 10 * MINUTE));
    await answer(sam, filed.body.id, "approve");
    const expiresAt = Date.parse(filed.body.expiresAt);
    // The agent judges expiry by its clock: excepted just before, not at the instant.
    expect(decideRootPod("eu-west-2", expiresAt - 1).allowed).toBe(true);
    expect(decideRootPod("eu-west-2", expiresAt).allowed).toBe(false);
    h.clock.offsetMs = 11 * MINUTE;
    try {
      await h.hub.context.exceptions.sweep(() => ({ actor: "hub", correlationId: "sweep-test" }));
      expect((await call<ExceptionView>(h.admin, "GET", `/v1/exceptions/${filed.body.id}`)).body.state).toBe("expired");
      expect(h.hub.context.federation.effectiveFor("eu-west-2").document.exceptions.some((e) => e.name === `request-${filed.body.id}`)).toBe(false);
      const expired = (await logged("exception.expired")).filter((e) => e.data.request === filed.body.id);
      expect(expired).toHaveLength(1);
      expect(expired[0]).toMatchObject({ actor: "hub", data: { wasGranted: true, expiresAt: filed.body.expiresAt } });
      // A second sweep logs nothing more.
      await h.hub.context.exceptions.sweep(() => ({ actor: "hub", correlationId: "sweep-test" }));
      expect((await logged("exception.expired")).filter((e) => e.data.request === filed.body.id)).toHaveLength(1);
    } finally {
      h.clock.offsetMs = 0;
    }
  });

  it("lists requests by state, active and expiring, as each principal may see them", async () => {
    const soon = await request(eve, asked("pod-security", 3 * DAY));
    await answer(sam, soon.body.id, "approve");
    const later = await request(eve, asked("pod-security", 20 * DAY));
    await answer(sam, later.body.id, "approve");
    const ids = (query: string, who: HubEndpoint = h.admin) => call<{ items: ExceptionView[] }>(who, "GET", `/v1/exceptions${query}`).then((r) => r.body.items.map((i) => i.id));
    expect(await ids("?active=true")).toEqual(expect.arrayContaining([soon.body.id, later.body.id]));
    expect(await ids("?expiring=7d")).toContain(soon.body.id);
    expect(await ids("?expiring=7d")).not.toContain(later.body.id);
    // A us-east operator sees none of eu-west's.
    expect(await ids("", uma.endpoint)).not.toContain(soon.body.id);
    expect((await refused(call(uma.endpoint, "GET", `/v1/exceptions/${soon.body.id}`))).status).toBe(403);
    expect((await refused(call(h.admin, "GET", "/v1/exceptions?state=granted"))).status).toBe(400);
    expect((await refused(call(h.admin, "GET", "/v1/exceptions?expiring=soon"))).status).toBe(400);
    await answer(eve, soon.body.id, "withdraw");
    await answer(eve, later.body.id, "withdraw");
  });

  it("keeps pending requests across a hub restart, and answers them after it", async () => {
    const filed = await request(eve, asked("pod-security", DAY));
    await h.hub.close();
    hubs.running.splice(hubs.running.indexOf(h.hub), 1);
    h = await hubs.startAt(h.dir, {}, h.clock);
    for (const t of [eve, uma, sam, pat]) (t as { endpoint: HubEndpoint }).endpoint = { ...t.endpoint, url: h.hub.url };
    expect((await call<ExceptionView>(h.admin, "GET", `/v1/exceptions/${filed.body.id}`)).body.state).toBe("pending");
    expect((await answer(sam, filed.body.id, "approve")).body.state).toBe("approved");
    expect(decideRootPod("eu-west-2", Date.now()).allowed).toBe(true);
    await answer(eve, filed.body.id, "withdraw");
    expect(decideRootPod("eu-west-2", Date.now()).allowed).toBe(false);
  });
});

describe("changes by owners, and exceptions in layer files", () => {
  let h: TestHub;

  beforeAll(async () => {
    h = await hubs.startCopy("owners");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, REGION_US] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } });
  });

  const EU_RULE = `apiVersion: polity.dev/v1
kind: Policy
metadata: { name: eu-cost-center, owner: eu-platform }
spec:
  domain: workload-security
  match: { kinds: [Pod] }
  validations:
    - name: cost-center
      expression: "has(object.metadata.labels)"
  enforcement: warn
`;

  it("lets a member of the region's team change its layer, and records the authenticated subject", async () => {
    const eve = await mint(h, { name: "eve", role: "region-operator", region: "eu-west", subject: "eve@example.com" });
    const applied = await call<{ correlationId: string; layers: { id: string }[] }>(eve.endpoint, "POST", "/v1/apply", { files: [withDocument(REGION_EU, EU_RULE)] });
    expect(applied.body.layers).toMatchObject([{ id: "region/eu-west" }]);
    await h.hub.context.audit.integrate();
    const page = await call<{ items: { entry: AuditEntry }[] }>(h.admin, "GET", `/v1/audit/entries?kind=layer.changed&correlation=${applied.body.correlationId}`);
    expect(page.body.items.map((i) => i.entry.actor)).toEqual(["user:eve@example.com"]);
  });

  it("refuses a region operator who is not a member of the owner team, naming the team", async () => {
    const stranger = await mint(h, { name: "ed", role: "region-operator", region: "eu-west", subject: "ed@example.com" });
    const change = await refused(call(stranger.endpoint, "POST", "/v1/apply", { files: [withDocument(REGION_EU, EU_RULE.replace("enforcement: warn", "enforcement: audit"))] }));
    expect(change.status).toBe(403);
    expect(change.message).toMatch(/policy "eu-cost-center" is owned by team "eu-platform", and ed@example.com is not a member/);
    // Nor can it join the team and use it in one change.
    const joined = withDocument({ ...REGION_EU, content: REGION_EU.content.replace("members: [eve@example.com]", "members: [eve@example.com, ed@example.com]") }, EU_RULE);
    const join = await refused(call(stranger.endpoint, "POST", "/v1/apply", { files: [joined] }));
    expect(join.message).toMatch(/only its owners \(or a global admin\) change its owners, teams and exception rules/);
  });

  it("refuses a region operator's layer file that smuggles an exception; a global admin's is applied and shown as written in a layer file", async () => {
    const eve = await mint(h, { name: "eve 2", role: "region-operator", region: "eu-west", subject: "eve@example.com" });
    const smuggled = withDocument(
      REGION_EU,
      `apiVersion: polity.dev/v1
kind: Exception
metadata: { name: forever }
spec:
  policy: require-team-label
  scope: { namespaces: [legacy] }
  justification: Approved by platform-security, honestly.
  approvedBy: platform-security
  expiresAt: "2999-01-01T00:00:00Z"
`,
    );
    const refusal = await refused(call(eve.endpoint, "POST", "/v1/apply", { files: [smuggled] }));
    expect(refusal.status).toBe(403);
    expect(refusal.message).toMatch(/exception "forever": only a global admin writes an exception in a layer file; request one instead/);
    expect(h.hub.context.federation.effectiveFor("eu-west-1").document.exceptions.map((e) => e.name)).not.toContain("forever");
    // Already expired: refused even from a global admin.
    const stale = await refused(call(h.admin, "POST", "/v1/apply", { files: [{ ...smuggled, content: smuggled.content.replace("2999-01-01", "2020-01-01") }] }));
    expect(stale.status).toBe(422);
    expect(stale.message).toMatch(/expired at 2020-01-01T00:00:00Z, before it was applied/);
    await call(h.admin, "POST", "/v1/apply", { files: [smuggled] });
    const listed = (await call<{ items: ExceptionView[] }>(h.admin, "GET", "/v1/exceptions")).body.items.find((e) => e.name === "forever");
    expect(listed).toMatchObject({ id: "region/eu-west/forever", source: "layer file", state: "approved", requestedBy: "(layer file of region/eu-west)", decidedBy: null });
    // What the file claims is shown as a claim, and where to find who applied it.
    expect(listed!.approvedBy).toBe("(the file says platform-security; polity history region/eu-west shows who applied it)");
  });

  it("refuses owners that are not declared teams, and a team declared again below", async () => {
    const undeclared = { ...REGION_US, content: REGION_US.content.replace("owners: [us-platform]", "owners: [us-platform, night-shift]") };
    const refusal = await refused(call(h.admin, "POST", "/v1/apply", { files: [undeclared] }));
    expect(refusal.status).toBe(422);
    expect(JSON.stringify(refusal.causes)).toMatch(/owner \\"night-shift\\" of layer \\"us-east\\" is not a declared team/);
    const again = withDocument(REGION_US, "apiVersion: polity.dev/v1\nkind: Team\nmetadata: { name: platform-security }\nspec: { members: [uma@example.com] }\n");
    const twice = await refused(call(h.admin, "POST", "/v1/apply", { files: [again] }));
    expect(JSON.stringify(twice.causes)).toMatch(/layer region\/us-east: team \\"platform-security\\" is declared by layer global already: team names are unique in the federation/);
    // A global layer that drops a team a region's layer is owned by.
    const dropped = { ...GLOBAL, content: GLOBAL.content.replace(/---\napiVersion: polity.dev\/v1\nkind: Team\nmetadata: \{ name: platform-team \}\nspec:\n {2}members: \[pat@example.com\]\n/, "") };
    expect(dropped.content).not.toContain("name: platform-team }");
    const orphaned = await refused(call(h.admin, "POST", "/v1/apply", { files: [dropped] }));
    expect(JSON.stringify(orphaned.causes)).toMatch(/owner \\"platform-team\\" of (layer|policy) \\"(global|require-team-label)\\" is not a declared team/);
  });
});

describe("change proposals", () => {
  let h: TestHub;
  let eve: Minted; // eu-west operator, eu-platform
  let eli: Minted; // eu-platform, by group
  let sam: Minted; // platform-security
  let sid: Minted; // platform-security, by group
  let pat: Minted; // platform-team
  const propose = (who: { endpoint: HubEndpoint }, files: SourceFile[], title?: string) =>
    call<ProposalView>(who.endpoint, "POST", "/v1/proposals", { files, ...(title === undefined ? {} : { title }) });
  const act = (who: { endpoint: HubEndpoint }, id: string, what: "approve" | "reject" | "apply", reason?: string) =>
    call<ProposalView>(who.endpoint, "POST", `/v1/proposals/${id}/${what}`, what === "apply" ? undefined : reason === undefined ? {} : { reason });

  beforeAll(async () => {
    h = await hubs.startCopy("proposals");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, REGION_US] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } });
    eve = await mint(h, { name: "eve", role: "region-operator", region: "eu-west", subject: "eve@example.com" });
    eli = await mint(h, { name: "eli", role: "team-member", subject: "eli@example.com", groups: ["eu-west-operators"] });
    sam = await mint(h, { name: "sam", role: "team-member", subject: "sam@example.com" });
    sid = await mint(h, { name: "sid", role: "team-member", subject: "sid@example.com", groups: ["security-oncall"] });
    pat = await mint(h, { name: "pat", role: "team-member", subject: "pat@example.com" });
  });

  const EU_RULE = withDocument(
    REGION_EU,
    "apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: eu-labels, owner: eu-platform }\nspec:\n  domain: workload-security\n  match: { kinds: [Pod] }\n  validations:\n    - name: labelled\n      expression: \"has(object.metadata.labels)\"\n  enforcement: warn\n",
  );

  it("needs only the region's own team for a region's change to its own policies, approved by a member other than the proposer, and records it all under one correlation id", async () => {
    const proposed = await propose(eve, [EU_RULE], "label every eu pod");
    expect(proposed.status).toBe(201);
    expect(proposed.body).toMatchObject({ state: "open", stale: false, title: "label every eu pod", proposedBy: "eve@example.com" });
    expect(proposed.body.layers).toEqual([{ id: "region/eu-west", baseVersion: 1, currentVersion: 1, added: ["Policy/eu-labels"], removed: [], changed: [] }]);
    expect(proposed.body.needs).toEqual([{ team: "eu-platform", why: "it adds policy eu-labels of layer region/eu-west, and would own it", approvedBy: null, approvedAt: null }]);
    const id = proposed.body.id;
    expect((await refused(act(eve, id, "approve"))).message).toMatch(/eve@example.com proposed this change: nobody approves their own proposal/);
    expect((await refused(act(sam, id, "approve"))).message).toMatch(/sam@example.com is a member of none of the teams whose approval it still needs \(eu-platform\)/);
    expect((await refused(act(eve, id, "apply"))).message).toMatch(/still needs the approval of eu-platform/);
    const approved = await act(eli, id, "approve");
    expect(approved.body.needs).toMatchObject([{ team: "eu-platform", approvedBy: "eli@example.com" }]);
    const applied = await act(eve, id, "apply");
    expect(applied.body).toMatchObject({ state: "applied", decidedBy: "eve@example.com" });
    expect(h.hub.context.federation.layers.get("region/eu-west")).toMatchObject({ version: 2, author: "eve (region-operator of eu-west), proposal " + id });
    await h.hub.context.audit.integrate();
    const trail = await call<{ items: { entry: AuditEntry }[] }>(h.admin, "GET", `/v1/audit/entries?correlation=${applied.body.correlationId}`);
    expect(trail.body.items.map((i) => i.entry.kind)).toEqual(expect.arrayContaining(["proposal.created", "proposal.approved", "layer.changed", "proposal.applied"]));
    const done = trail.body.items.find((i) => i.entry.kind === "proposal.applied")!.entry;
    expect(done.data.approvals).toMatchObject([{ team: "eu-platform", by: "eli@example.com" }]);
    expect((await refused(act(eve, id, "apply"))).status).toBe(409);
  });

  it("needs the owner of a locked policy a region refines, besides the region's team", async () => {
    const narrower = { ...REGION_EU, content: REGION_EU.content.replace("registries: { value: [registry.example.com/, eu.registry.example.com/] }", "registries: { value: [registry.example.com/] }") };
    expect(narrower.content).not.toBe(REGION_EU.content);
    const proposed = await propose(eve, [withDocument(narrower, EU_RULE.content.split("---\n").at(-1)!)]);
    expect(proposed.body.needs.map((n) => n.team).sort()).toEqual(["eu-platform", "platform-security"]);
    expect(proposed.body.needs.find((n) => n.team === "platform-security")!.why).toMatch(/policy trusted-images is locked by its owner, and layer region\/eu-west refines it/);
    await act(eli, proposed.body.id, "approve");
    expect((await refused(act(eve, proposed.body.id, "apply"))).message).toMatch(/still needs the approval of platform-security/);
    await act(sid, proposed.body.id, "approve");
    expect((await act(eli, proposed.body.id, "apply")).body.state).toBe("applied");
  });

  it("lets a team member propose a change to a global policy it owns, for another member of its team to approve", async () => {
    const global = { ...GLOBAL, content: GLOBAL.content.replace("maxReplicas: { default: 50,", "maxReplicas: { default: 40,") };
    expect(global.content).not.toBe(GLOBAL.content);
    const proposed = await propose(pat, [global]);
    expect(proposed.body.needs.map((n) => n.team)).toEqual(["platform-team"]);
    // pat is the only member of platform-team: nobody else can approve, so a global admin applies such a change directly.
    expect((await refused(act(sam, proposed.body.id, "approve"))).status).toBe(403);
    const rejected = await act(sam, proposed.body.id, "reject", "not now").catch((e: unknown) => e);
    expect(rejected).toMatchObject({ status: 403 });
    const withdrawn = await act(pat, proposed.body.id, "reject", "will ask an admin");
    expect(withdrawn.body).toMatchObject({ state: "withdrawn", decidedBy: "pat@example.com", reason: "will ask an admin" });
  });

  it("goes stale when a layer it changes moves on: approving and applying it are refused, asking for a rebase", async () => {
    const current = (await call<{ files: SourceFile[] }>(h.admin, "GET", "/v1/layers/region/eu-west")).body.files;
    const proposed = await propose(eve, [withDocument(current[0]!, "apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: eu-more, owner: eu-platform }\nspec:\n  domain: workload-security\n  match: { kinds: [Pod] }\n  validations:\n    - expression: \"true\"\n  enforcement: warn\n")]);
    await call(h.admin, "POST", "/v1/apply", { files: [REGION_EU] });
    const view = await call<ProposalView>(h.admin, "GET", `/v1/proposals/${proposed.body.id}`);
    expect(view.body.stale).toBe(true);
    const approve = await refused(act(eli, proposed.body.id, "approve"));
    expect(approve.status).toBe(409);
    expect(approve.message).toMatch(/is stale: layer region\/eu-west is at version 4, not 3 as when it was proposed; rebase its files/);
    expect((await refused(act(eve, proposed.body.id, "apply"))).status).toBe(409);
    // A rejected proposal is listed as such.
    await act(eli, proposed.body.id, "reject", "stale");
    const listed = (await call<{ items: ProposalView[] }>(h.admin, "GET", "/v1/proposals?state=rejected")).body.items;
    expect(listed.map((p) => p.id)).toContain(proposed.body.id);
  });

  it("refuses a proposal that changes nothing, or that the layers would refuse, and a region operator's proposal for another region", async () => {
    expect((await refused(propose(eve, [REGION_EU]))).message).toMatch(/changes nothing/);
    const weakened = withDocument(REGION_EU, "apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: pod-security, owner: eu-platform }\nspec:\n  enforcement: warn\n");
    expect((await refused(propose(eve, [weakened]))).status).toBe(409);
    expect((await refused(propose(eve, [{ ...REGION_US, content: REGION_US.content.replace("value: 30", "value: 20") }]))).status).toBe(403);
  });
});

describe("deprecations", () => {
  let h: TestHub;
  const retiring = (after: string) =>
    withDocument(
      GLOBAL,
      `apiVersion: polity.dev/v1
kind: Policy
metadata: { name: old-privileged-check, owner: platform-security }
spec:
  domain: workload-security
  match: { kinds: [Pod] }
  validations:
    - name: not-privileged
      expression: "object.spec.containers.all(c, !has(c.securityContext) || !has(c.securityContext.privileged) || !c.securityContext.privileged)"
  enforcement: deny
  deprecation: { after: "${after}", replacement: pod-security, reason: Pod Security restricted covers it }
`,
    );

  beforeAll(async () => {
    h = await hubs.startCopy("deprecations");
    await call(h.admin, "POST", "/v1/apply", { files: [retiring("2030-01-01"), REGION_EU] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } });
  });

  it("warns in every decision the policy takes part in, naming its replacement, and lists it", async () => {
    const review = podReview({ metadata: { name: "app", namespace: "kube-system", labels: { team: "a" } }, spec: { containers: [{ name: "app", image: "registry.example.com/app:1.0" }] } });
    const decision = decideReviewBytes(h.hub.context.federation.effectiveFor("eu-west-1"), review, { now: Date.now() }).decision;
    expect(decision.warnings).toContain("policy old-privileged-check is deprecated and retired after 2030-01-01: policy pod-security replaces it (Pod Security restricted covers it)");
    const listed = await call<{ items: DeprecationView[] }>(h.admin, "GET", "/v1/deprecations");
    expect(listed.body.items).toEqual([{ policy: "old-privileged-check", layer: "global", owner: "platform-security", after: "2030-01-01", replacement: "pod-security", reason: "Pod Security restricted covers it", retired: false }]);
  });

  it("refuses, past its date, to apply a layer that keeps it without a new date; other layers still apply", async () => {
    h.clock.offsetMs = Date.parse("2030-01-02T00:00:00Z") - Date.now();
    try {
      const kept = await refused(call(h.admin, "POST", "/v1/apply", { files: [retiring("2030-01-01")] }));
      expect(kept.status).toBe(422);
      expect(JSON.stringify(kept.causes)).toMatch(/policy \\"old-privileged-check\\" was retired on 2030-01-01 \(spec.deprecation.after\): remove it in favour of pod-security, or give it a new date/);
      expect((await call<{ items: DeprecationView[] }>(h.admin, "GET", "/v1/deprecations")).body.items[0]!.retired).toBe(true);
      expect((await call(h.admin, "POST", "/v1/apply", { files: [retiring("2030-06-30")] })).status).toBe(201);
      expect((await call(h.admin, "POST", "/v1/apply", { files: [{ ...REGION_EU, content: REGION_EU.content.replace("value: 80", "value: 70") }] })).status).toBe(201);
    } finally {
      h.clock.offsetMs = 0;
    }
  });

  it("lets only the document that defines a policy deprecate it", async () => {
    const region = withDocument(REGION_EU, 'apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: require-team-label, owner: eu-platform }\nspec:\n  deprecation: { after: "2031-01-01" }\n');
    const refusal = await refused(call(h.admin, "POST", "/v1/apply", { files: [region] }));
    expect(refusal.message + JSON.stringify(refusal.causes)).toMatch(/only the document that defines a policy deprecates it/);
  });
});

describe("the command line", () => {
  let h: TestHub;
  let config: string;

  beforeAll(async () => {
    h = await hubs.startCopy("cli");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, REGION_US] });
    await call(h.admin, "POST", "/v1/clusters", { name: "eu-west-2", region: "eu-west", labels: { env: "staging" } });
    const eve = await mint(h, { name: "eve", role: "region-operator", region: "eu-west", subject: "eve@example.com", groups: ["eu-west-operators"] });
    const sam = await mint(h, { name: "sam", role: "team-member", subject: "sam@example.com" });
    const eli = await mint(h, { name: "eli", role: "team-member", subject: "eli@example.com", groups: ["eu-west-operators"] });
    config = hubs.cliConfig("admin", h.admin, { eve: eve.endpoint, sam: sam.endpoint, eli: eli.endpoint });
  });

  const polity = (...args: string[]) => hubs.cli(args, { config });
  const idOf = (out: string) => /^(?:exception|proposal) ([0-9a-f]{12})/.exec(out)?.[1] ?? "(no id)";

  it("requests an exception as one person and approves it as another, refusing self-approval with exit 2 and the reason", async () => {
    const asked = await polity(
      "exception", "request", "--hub", "eve", "--policy", "pod-security", "--clusters", "eu-west-2", "--namespaces", "legacy",
      "--justification", "the legacy batch job runs as root until January", "--for", "7d",
    );
    expect(asked.code, asked.err).toBe(0);
    expect(asked.out).toMatch(/: pending\n/);
    expect(asked.out).toContain("answered by team platform-security");
    expect(asked.err).toMatch(/waiting for team platform-security: polity exception approve [0-9a-f]{12}/);
    const id = idOf(asked.out);
    const own = await polity("exception", "approve", "--hub", "eve", id);
    expect(own.code).toBe(2);
    expect(own.err).toMatch(/nobody approves their own request \(403 Forbidden\)/);
    const pending = await polity("exception", "list", "--pending");
    expect(pending.out.split("\n")[0]).toMatch(/^ID\s+POLICY\s+STATE\s+TEAM\s+ASKED BY\s+APPROVED BY\s+EXPIRES\s+SOURCE$/);
    expect(pending.out).toContain(id);
    const approved = await polity("exception", "approve", "--hub", "sam", id);
    expect(approved.code, approved.err).toBe(0);
    expect(approved.out).toMatch(/approved by sam@example.com/);
    expect((await polity("exception", "list", "--active", "-o", "json")).out).toContain(`"id": "${id}"`);
    const tooLong = await polity("exception", "request", "--hub", "eve", "--policy", "pod-security", "--clusters", "eu-west-2", "--namespaces", "legacy", "--justification", "the legacy batch job runs as root", "--for", "60d");
    expect(tooLong.code).toBe(2);
    expect(tooLong.err).toMatch(/last at most 30 days/);
    const usage = await polity("exception", "request", "--policy", "pod-security");
    expect(usage.code).toBe(2);
    expect(usage.err).toMatch(/give -f <exception.yaml>, or --policy, --justification and --for/);
  });

  it("proposes a change, approves it as a member of the team it needs, and applies it", async () => {
    const file = join(hubs.root, "eu60.yaml");
    writeFileSync(file, REGION_EU.content.replace("maxReplicas: { value: 80 }", "maxReplicas: { value: 60 }"));
    const proposed = await polity("propose", "--hub", "eve", "-f", file, "--title", "tighten eu replicas");
    expect(proposed.code, proposed.err).toBe(0);
    expect(proposed.out).toMatch(/needs {7}eu-platform: not yet approved/);
    const id = idOf(proposed.out);
    expect((await polity("proposal", "apply", "--hub", "eve", id)).err).toMatch(/still needs the approval of eu-platform/);
    expect((await polity("proposal", "approve", "--hub", "eli", id)).code).toBe(0);
    const applied = await polity("proposal", "apply", "--hub", "eve", id);
    expect(applied.code, applied.err).toBe(0);
    expect(applied.out).toMatch(/state {7}applied/);
    const listed = await polity("proposal", "list");
    expect(listed.out).toMatch(new RegExp(`${id}\\s+applied\\s+region/eu-west\\s+eu-platform✓`));
  });

  it("requests an exception from an Exception document, taking its lifetime from --for, and refuses one that names an approver", async () => {
    const file = join(hubs.root, "legacy-root.yaml");
    const document = `apiVersion: polity.dev/v1
kind: Exception
metadata: { name: legacy-root }
spec:
  policy: pod-security
  scope: { clusters: [eu-west-2], names: [old-batch], namespaces: [batch] }
  justification: The old batch job runs as root until it is rebuilt in January.
`;
    writeFileSync(file, document);
    const asked = await polity("exception", "request", "--hub", "eve", "-f", file, "--for", "14d");
    expect(asked.code, asked.err).toBe(0);
    expect(asked.out).toMatch(/\(legacy-root\): pending/);
    expect(asked.out).toContain("scope       clusters=eu-west-2 names=old-batch namespaces=batch");
    const forever = await polity("exception", "request", "--hub", "eve", "-f", file, "--for", "99999999d");
    expect(forever.code).toBe(2);
    expect(forever.err).toMatch(/--for 99999999d ends after the last time a date can hold/);
    writeFileSync(file, `${document}  expiresAt: "2027-01-01T00:00:00Z"\n`);
    const both = await polity("exception", "request", "--hub", "eve", "-f", file, "--for", "7d");
    expect(both.code).toBe(2);
    expect(both.err).toMatch(/sets spec.expiresAt: give --for or --expires-at only for a file without one/);
    writeFileSync(file, `${document}  approvedBy: platform-security\n  expiresAt: "2027-01-01T00:00:00Z"\n`);
    const claimed = await polity("exception", "request", "--hub", "eve", "-f", file);
    expect(claimed.code).toBe(2);
    expect(claimed.err).toMatch(/a request names no approver; the hub records who approves it/);
  });

  it("lists deprecations, and says when there are none", async () => {
    const none = await polity("get", "deprecations");
    expect(none).toMatchObject({ code: 0, out: "no policy is deprecated\n" });
  });
});

describe("what a review found: ways around governance, closed", () => {
  let h: TestHub;
  let eve: Minted; // eu-west operator, eu-platform
  let eli: Minted; // eu-platform
  let pat: Minted; // platform-team
  let sam: Minted; // platform-security
  const CLUSTER_EU1 = example("cluster-eu-west-1.yaml");

  beforeAll(async () => {
    h = await hubs.startCopy("review");
    await call(h.admin, "POST", "/v1/apply", { files: [GLOBAL, REGION_EU, REGION_US, CLUSTER_EU1] });
    for (const [name, region] of [
      ["eu-west-1", "eu-west"],
      ["us-east-1", "us-east"],
    ] as const) {
      await call(h.admin, "POST", "/v1/clusters", { name, region, labels: { env: "prod" } });
    }
    eve = await mint(h, { name: "eve", role: "region-operator", region: "eu-west", subject: "eve@example.com", groups: ["eu-west-operators"] });
    eli = await mint(h, { name: "eli", role: "team-member", subject: "eli@example.com", groups: ["eu-west-operators"] });
    pat = await mint(h, { name: "pat", role: "team-member", subject: "pat@example.com" });
    sam = await mint(h, { name: "sam", role: "team-member", subject: "sam@example.com" });
  });

  const EXCEPTION = `apiVersion: polity.dev/v1
kind: Exception
metadata: { name: skip-team-label }
spec:
  policy: require-team-label
  scope: { namespaces: [shop] }
  justification: Approved by platform-security, honestly.
  approvedBy: platform-security
  expiresAt: "2999-01-01T00:00:00Z"
`;

  it("refuses a proposal that writes an exception in a layer file, unless a global admin makes it", async () => {
    const refusal = await refused(call(eve.endpoint, "POST", "/v1/proposals", { files: [withDocument(REGION_EU, EXCEPTION)] }));
    expect(refusal.status).toBe(403);
    expect(refusal.message).toMatch(/layer region\/eu-west: exception "skip-team-label": only a global admin writes an exception in a layer file/);
  });

  it("refuses a layer that declares a team another layer declares, above, below or beside it", async () => {
    const takeover = withDocument(REGION_EU, "apiVersion: polity.dev/v1\nkind: Team\nmetadata: { name: payments-sre }\nspec: { members: [eve@example.com] }\n");
    const below = await refused(call(eve.endpoint, "POST", "/v1/apply", { files: [takeover] }));
    expect(JSON.stringify(below.causes)).toMatch(/team \\"payments-sre\\" is declared by layer cluster\/eu-west-1 already/);
    const beside = withDocument(REGION_EU, "apiVersion: polity.dev/v1\nkind: Team\nmetadata: { name: us-platform }\nspec: { members: [eve@example.com] }\n");
    const refusal = await refused(call(eve.endpoint, "POST", "/v1/apply", { files: [beside] }));
    expect(JSON.stringify(refusal.causes)).toMatch(/team \\"us-platform\\" is declared by layer region\/us-east already: team names are unique in the federation/);
  });

  it("refuses a request whose selector narrows nothing, or that names no clusters or regions", async () => {
    const everything = await refused(call(eli.endpoint, "POST", "/v1/exceptions", asked("require-team-label", DAY, { clusters: ["eu-west-1"], objectSelector: {} })));
    expect(everything.status).toBe(400);
    expect(everything.message).toMatch(/an exception must be narrow/);
    const everywhere = await refused(call(eli.endpoint, "POST", "/v1/exceptions", asked("require-team-label", DAY, { namespaces: ["shop"] })));
    expect(everywhere.status).toBe(422);
    expect(everywhere.message).toMatch(/a request names the clusters or regions it is for/);
  });

  it("refuses control and bidirectional characters in what approvers read", async () => {
    const fake = asked("require-team-label", DAY, undefined, { justification: "approved by sam\u001b[2K\r\u001b[32mAPPROVED by sam@example.com" });
    const refusal = await refused(call(eve.endpoint, "POST", "/v1/exceptions", { ...fake, spec: { ...fake.spec, scope: { clusters: ["eu-west-1"], namespaces: ["legacy"] } } }));
    expect(refusal.status).toBe(400);
    expect(refusal.message).toMatch(/justification: must not contain control or bidirectional formatting characters \(U\+001B/);
    expect((await refused(call(eve.endpoint, "POST", "/v1/exceptions", { name: "evil\u202e", ...asked("require-team-label", DAY, { clusters: ["eu-west-1"], namespaces: ["a"] }) }))).status).toBe(400);
    expect((await refused(call(eve.endpoint, "POST", "/v1/proposals", { files: [REGION_EU], title: "typo fix\u001b[8m hidden" }))).status).toBe(400);
  });

  it("keeps who approved an exception when it is later withdrawn, with the reason given", async () => {
    const filed = await call<ExceptionView>(eve.endpoint, "POST", "/v1/exceptions", asked("require-team-label", DAY, { clusters: ["eu-west-1"], namespaces: ["shop"] }));
    await call(pat.endpoint, "POST", `/v1/exceptions/${filed.body.id}/approve`, { reason: "until the label lands" });
    const withdrawn = await call<ExceptionView>(eve.endpoint, "POST", `/v1/exceptions/${filed.body.id}/withdraw`, {});
    expect(withdrawn.body).toMatchObject({ state: "withdrawn", approvedBy: "pat@example.com", decidedBy: "eve@example.com" });
    await h.hub.context.audit.integrate();
    const granted = (await call<{ items: { entry: AuditEntry }[] }>(h.admin, "GET", "/v1/audit/entries?kind=exception.granted&limit=1000")).body.items.find((i) => i.entry.data.request === filed.body.id);
    expect(granted?.entry.data).toMatchObject({ approvedBy: "pat@example.com", reason: "until the label lands" });
  });

  it("says to withdraw a granted exception before its policy is removed", async () => {
    const filed = await call<ExceptionView>(eve.endpoint, "POST", "/v1/exceptions", asked("data-residency", DAY, { clusters: ["eu-west-1"], namespaces: ["shop"] }));
    await call(eli.endpoint, "POST", `/v1/exceptions/${filed.body.id}/approve`, {});
    const without = { ...REGION_EU, content: REGION_EU.content.split("---\n").filter((d) => !d.includes("name: data-residency")).join("---\n") };
    expect(without.content).not.toContain("name: data-residency");
    const refusal = await refused(call(h.admin, "POST", "/v1/apply", { files: [without] }));
    expect(JSON.stringify(refusal.causes)).toContain(`granted exception request ${filed.body.id} excepts: withdraw it first (polity exception withdraw ${filed.body.id})`);
    await call(eve.endpoint, "POST", `/v1/exceptions/${filed.body.id}/withdraw`, {});
  });

  it("refuses exception bounds and a missing replacement written below the defining document", async () => {
    const bounds = withDocument(REGION_EU, "apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: require-team-label, owner: eu-platform }\nspec:\n  exceptions: { maxLifetime: 9999d }\n");
    const refusal = await refused(call(h.admin, "POST", "/v1/apply", { files: [bounds] }));
    expect(refusal.message + JSON.stringify(refusal.causes)).toMatch(/only the document that defines a policy sets them/);
    const ghost = { ...GLOBAL, content: GLOBAL.content.replace("  exceptions: { maxLifetime: 30d", '  deprecation: { after: "2030-01-01", replacement: residency-v2 }\n  exceptions: { maxLifetime: 30d') };
    const missing = await refused(call(h.admin, "POST", "/v1/apply", { files: [ghost] }));
    expect(JSON.stringify(missing.causes)).toMatch(/names policy \\"residency-v2\\" as its replacement, and no layer defines it/);
  });

  it("answers a second approval of a proposal with 409", async () => {
    const proposed = await call<ProposalView>(eve.endpoint, "POST", "/v1/proposals", { files: [{ ...REGION_EU, content: REGION_EU.content.replace("value: 80", "value: 75") }] });
    await call(eli.endpoint, "POST", `/v1/proposals/${proposed.body.id}/approve`, {});
    const again = await refused(call(eli.endpoint, "POST", `/v1/proposals/${proposed.body.id}/approve`, {}));
    expect(again.status).toBe(409);
    expect(again.message).toMatch(/has every approval it needs: apply it/);
    expect((await refused(call(sam.endpoint, "POST", `/v1/proposals/${proposed.body.id}/approve`, {}))).status).toBe(409);
  });
});
