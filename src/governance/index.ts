/**
 * Governance as data: who the teams are, who owns what, who may change a policy, and what
 * an exception request may ask and who may approve it. Pure functions of the layers, the
 * request and the acting identity (as the hub authenticated it), so that the rules can be
 * read and tested in one place; the hub applies them to every change and every request.
 *
 * - Teams are declared by `Team` documents: in the global layer for the federation, in a
 *   region or cluster layer for what that layer owns. A lower tier may not declare a team
 *   of a name an upper tier declares.
 * - A layer's owners, and a policy's owner, are declared teams.
 * - Only a member of a policy's owner team (or a global admin) changes or deletes it; only a
 *   global admin writes an exception in a layer file (GitOps); everyone else requests one.
 * - An exception request is checked against the policy's bounds (allowed at all, the
 *   longest lifetime, which scopes), names rules the policy has, and is approved by a member
 *   of the policy's owner team in the layer that defines it, never by its requester; after
 *   the team's escalation time without an answer, a global admin may approve it too. A risk
 *   rule of the defining layer may approve it without a person.
 */
import type { Problem } from "../errors.js";
import type { EffectivePolicy } from "../layering/effective.js";
import type { Labels } from "../layering/selector.js";
import { matchesSelector } from "../layering/selector.js";
import type { Layer, LayerPolicy } from "../policy/layer.js";
import { durationMs, EXCEPTION_SCOPES, type ExceptionRule, type ExceptionScope, type Tier } from "../policy/schema.js";

/** Who acts, as the hub authenticated them. */
export interface Actor {
  readonly subject: string;
  readonly groups: readonly string[];
  /** A global admin: may change anything, and write exceptions in layer files. */
  readonly admin: boolean;
}

export interface Team {
  readonly name: string;
  readonly members: readonly string[];
  readonly groups: readonly string[];
  readonly escalateAfterMs: number;
  /** Where it is declared. */
  readonly tier: Tier;
  readonly layer: string;
}

/** How long an exception request waits for its team before a global admin may answer it too. */
export const DEFAULT_ESCALATION_MS = 72 * 3600 * 1000;
/** The longest exception a policy allows unless it says otherwise. */
export const DEFAULT_MAX_EXCEPTION_MS = 90 * 24 * 3600 * 1000;

const TIER_ORDER: Record<Tier, number> = { global: 0, region: 1, cluster: 2 };

/**
 * The teams the given layers declare (upper tiers first), and the problems of their
 * declarations: a name declared by an upper tier declared again below.
 */
export function teamsOf(layers: readonly Layer[]): { teams: Map<string, Team>; problems: Problem[] } {
  const teams = new Map<string, Team>();
  const problems: Problem[] = [];
  for (const layer of [...layers].sort((a, b) => TIER_ORDER[a.tier] - TIER_ORDER[b.tier])) {
    for (const { document, origin } of layer.teams) {
      const name = document.metadata.name;
      const upper = teams.get(name);
      if (upper !== undefined && upper.layer !== layer.name) {
        problems.push({
          message: `team ${JSON.stringify(name)} is declared by layer ${JSON.stringify(upper.layer)} (tier ${upper.tier}); layer ${JSON.stringify(layer.name)} may not declare it again`,
          path: "metadata.name",
          ...(origin === undefined ? {} : { location: origin.locate(["metadata", "name"]) }),
        });
        continue;
      }
      teams.set(name, {
        name,
        members: document.spec.members ?? [],
        groups: document.spec.groups ?? [],
        escalateAfterMs: document.spec.escalateAfter === undefined ? DEFAULT_ESCALATION_MS : durationMs(document.spec.escalateAfter),
        tier: layer.tier,
        layer: layer.name,
      });
    }
  }
  return { teams, problems };
}

export function isMember(actor: Actor, team: Team | undefined): boolean {
  if (team === undefined) return false;
  return team.members.includes(actor.subject) || actor.groups.some((g) => team.groups.includes(g));
}

/** The owners of a layer and of its policies that no team declares (given every team the layer can see). */
export function undeclaredOwners(layer: Layer, teams: ReadonlyMap<string, Team>): Problem[] {
  const problems: Problem[] = [];
  for (const owner of layer.owners) {
    if (!teams.has(owner)) problems.push({ message: `owner ${JSON.stringify(owner)} of layer ${JSON.stringify(layer.name)} is not a declared team: declare it with a Team document (kind: Team) in this layer or the global layer`, path: "spec.owners" });
  }
  for (const policy of layer.policies) {
    const owner = policy.document.metadata.owner;
    if (owner !== undefined && !teams.has(owner)) {
      problems.push({
        message: `owner ${JSON.stringify(owner)} of policy ${JSON.stringify(policy.document.metadata.name)} is not a declared team`,
        path: "metadata.owner",
        ...(policy.origin === undefined ? {} : { location: policy.origin.locate(["metadata", "owner"]) }),
      });
    }
  }
  return problems;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/**
 * Why `actor` may not write the exceptions `after` adds or changes in a layer file (only a
 * global admin writes them, for GitOps: everyone else requests one, for the policy's owners
 * to approve), or undefined when it adds or changes none, or `actor` is a global admin.
 * A proposal is held to it too: its approvers are a layer's teams, not the policy's owners.
 */
export function fileExceptionRefusal(actor: Actor, before: Layer | undefined, after: Layer | undefined): string | undefined {
  if (actor.admin) return undefined;
  const exceptionsBefore = new Map((before?.exceptions ?? []).map((e) => [e.document.metadata.name, e.document]));
  const written = (after?.exceptions ?? []).find((e) => !same(exceptionsBefore.get(e.document.metadata.name), e.document));
  if (written === undefined) return undefined;
  return `exception ${JSON.stringify(written.document.metadata.name)}: only a global admin writes an exception in a layer file; request one instead (polity exception request), for its policy's owners to approve`;
}

/**
 * Why `actor` may not replace `before` with `after` (a layer's new version, or undefined for
 * its deletion), or undefined when they may. Membership is judged by the teams as they are
 * (`teamsBefore`), so nobody joins a team and uses it in one change; a team only `after`
 * declares counts for what it newly owns.
 * - A layer file holds exceptions only from a global admin.
 * - A layer's own governance (its owners, its teams, its risk rules) changes only by a member
 *   of one of its present owner teams.
 * - Every policy added, changed or removed must be owned by a team the actor belongs to
 *   (its present owner, and its new owner when it changes hands).
 */
export function changeRefusal(
  actor: Actor,
  before: Layer | undefined,
  after: Layer | undefined,
  teams: { readonly before: ReadonlyMap<string, Team>; readonly after: ReadonlyMap<string, Team> },
): string | undefined {
  if (actor.admin) return undefined;
  const member = (team: string) => isMember(actor, teams.before.get(team) ?? teams.after.get(team));
  const smuggled = fileExceptionRefusal(actor, before, after);
  if (smuggled !== undefined) return smuggled;
  if (before !== undefined) {
    const governance = (layer: Layer | undefined) => ({
      owners: layer?.owners ?? [],
      teams: (layer?.teams ?? []).map((t) => t.document),
      rules: layer?.exceptionRules ?? [],
    });
    if (!same(governance(before), governance(after)) && !before.owners.some(member)) {
      return `layer ${JSON.stringify(before.name)} is owned by ${before.owners.map((o) => JSON.stringify(o)).join(", ")}, and ${actor.subject} is a member of none: only its owners (or a global admin) change its owners, teams and exception rules${after === undefined ? ", or delete it" : ""}`;
    }
  }
  const old = new Map((before?.policies ?? []).map((p) => [p.document.metadata.name, p]));
  const now = new Map((after?.policies ?? []).map((p) => [p.document.metadata.name, p]));
  for (const name of [...new Set([...old.keys(), ...now.keys()])].sort()) {
    const a = old.get(name)?.document;
    const b = now.get(name)?.document;
    if (same(a, b)) continue;
    // A layer gives a policy that names no owner its first owner (policy/layer.ts).
    for (const owner of new Set([a?.metadata.owner, b?.metadata.owner].filter((o): o is string => o !== undefined))) {
      if (!member(owner)) {
        return `policy ${JSON.stringify(name)} is owned by team ${JSON.stringify(owner)}, and ${actor.subject} is not a member: only its owners (or a global admin) change it`;
      }
    }
  }
  return undefined;
}

/** An exception as requested: the Exception document's spec without an approver. */
export interface ExceptionAsked {
  readonly policy: string;
  readonly rules?: readonly string[];
  readonly scope: {
    readonly clusters?: readonly string[];
    readonly regions?: readonly string[];
    readonly namespaces?: readonly string[];
    readonly names?: readonly string[];
    readonly objectSelector?: unknown;
  };
  readonly justification: string;
  readonly expiresAt: string;
}

/** What a request is judged against: the policy as its defining layer writes it, and that layer. */
export interface PolicyOwnership {
  /** The policy as it applies (in the clusters the request reaches). */
  readonly policy: EffectivePolicy;
  /** The layer that defines it, whose owner team approves exceptions to it. */
  readonly defining: Layer;
  readonly document: LayerPolicy;
}

/** Why a request cannot be granted as asked (every reason), at `now`. */
export function requestProblems(asked: ExceptionAsked, owned: PolicyOwnership, now: number): string[] {
  const problems: string[] = [];
  const bounds = owned.document.document.spec.exceptions;
  if (bounds?.allowed === false) problems.push(`policy ${JSON.stringify(asked.policy)} takes no exceptions (its owners say so: spec.exceptions.allowed: false)`);
  if (asked.scope.clusters === undefined && asked.scope.regions === undefined) {
    problems.push("a request names the clusters or regions it is for (scope.clusters or scope.regions); an exception for every cluster is a global admin's to write in a layer file");
  }
  const rules = owned.policy.validations.map((v) => v.name);
  const unknown = (asked.rules ?? []).filter((r) => !rules.includes(r));
  if (unknown.length > 0) problems.push(`policy ${JSON.stringify(asked.policy)} has no rule ${unknown.map((r) => JSON.stringify(r)).join(", ")} (its rules: ${rules.join(", ")})`);
  const expires = Date.parse(asked.expiresAt);
  if (!(expires > now)) problems.push(`it would expire at ${asked.expiresAt}, which is not in the future`);
  const max = bounds?.maxLifetime === undefined ? DEFAULT_MAX_EXCEPTION_MS : durationMs(bounds.maxLifetime);
  if (expires - now > max) problems.push(`it would last ${days(expires - now)}; exceptions to policy ${JSON.stringify(asked.policy)} last at most ${days(max)} (spec.exceptions.maxLifetime: ${bounds?.maxLifetime ?? "90d, the default"})`);
  const allowed = bounds?.scopes ?? EXCEPTION_SCOPES;
  const used = EXCEPTION_SCOPES.filter((s: ExceptionScope) => asked.scope[s] !== undefined);
  const refused = used.filter((s) => !allowed.includes(s));
  if (refused.length > 0) problems.push(`policy ${JSON.stringify(asked.policy)} allows exceptions scoped by ${allowed.join(", ")} only, not by ${refused.join(", ")}`);
  return problems;
}

const days = (ms: number) => (ms >= 86_400_000 ? `${Number((ms / 86_400_000).toFixed(1))} days` : `${Number((ms / 3_600_000).toFixed(1))} hours`);

/** The team that approves exceptions to a policy: its owner in the layer that defines it. */
export function approverTeam(owned: PolicyOwnership): string {
  return owned.document.document.metadata.owner ?? owned.defining.owners[0] ?? "";
}

/**
 * The risk rule of the defining layer that approves the request without a person, if any:
 * the policy's enforcement is one it names, every cluster the request names matches its
 * selector (a request that names no cluster never matches a rule with one), and the
 * lifetime is at most its maximum.
 */
export function approvingRule(
  asked: ExceptionAsked,
  owned: PolicyOwnership,
  clusterLabels: (cluster: string) => Labels | undefined,
  now: number,
): ExceptionRule | undefined {
  const lifetime = Date.parse(asked.expiresAt) - now;
  return owned.defining.exceptionRules.find((rule) => {
    if (rule.enforcement !== undefined && !rule.enforcement.includes(owned.policy.enforcement)) return false;
    if (lifetime > durationMs(rule.maxLifetime)) return false;
    if (rule.clusterSelector !== undefined) {
      const clusters = asked.scope.clusters ?? [];
      if (clusters.length === 0) return false;
      return clusters.every((c) => {
        const labels = clusterLabels(c);
        return labels !== undefined && matchesSelector(rule.clusterSelector, labels);
      });
    }
    return true;
  });
}

/** Why `actor` may not approve (or deny) a request, or undefined when they may. */
export function approvalRefusal(actor: Actor, request: { readonly requestedBy: string; readonly team: string; readonly escalated: boolean }, teams: ReadonlyMap<string, Team>): string | undefined {
  if (actor.subject === request.requestedBy) return `${actor.subject} requested this exception: nobody approves their own request`;
  if (isMember(actor, teams.get(request.team))) return undefined;
  if (actor.admin && request.escalated) return undefined;
  if (actor.admin) return `the request is for team ${JSON.stringify(request.team)} to answer; a global admin answers it once it is escalated (after the team's escalation time without an answer)`;
  return `${actor.subject} is not a member of team ${JSON.stringify(request.team)}, which approves exceptions to this policy`;
}

/** A team whose approval a proposed change needs, and why. */
export interface Need {
  readonly team: string;
  readonly why: string;
}

/** A layer a proposal changes: as it is, and as the proposal would leave it. */
export interface ProposedLayer {
  readonly id: string;
  readonly before: Layer | undefined;
  readonly after: Layer | undefined;
}

/**
 * The approvals a proposed change needs, one per team (the first reason kept): for each
 * layer it changes, the owner team of every policy it adds, changes or removes (its owner
 * before and after), the layer's owners when it changes the layer's own governance (owners,
 * teams, exception rules) or an exception in it, and the owner of every upper-tier policy
 * the changed document refines when that policy is locked or delegated (`upper` finds it:
 * the documents that define the policy above or, for a delegated one, below the layer).
 * A region's change to its own layer's own policies thus needs only its own team.
 */
export function approvalsNeeded(layers: readonly ProposedLayer[], upper: (layerId: string, policy: string) => readonly LayerPolicy[]): Need[] {
  const needs = new Map<string, string>();
  const need = (team: string | undefined, why: string) => {
    if (team !== undefined && !needs.has(team)) needs.set(team, why);
  };
  for (const { id, before, after } of layers) {
    const owners = (before ?? after)?.owners ?? [];
    const governance = (layer: Layer | undefined) => JSON.stringify([layer?.owners, layer?.teams.map((t) => t.document), layer?.exceptionRules]);
    if (governance(before) !== governance(after) || (before !== undefined && after === undefined)) {
      need(owners[0], `it changes the owners, teams or exception rules of layer ${id}, which ${owners.join(", ")} own`);
    }
    const exceptions = (layer: Layer | undefined) => new Map((layer?.exceptions ?? []).map((e) => [e.document.metadata.name, JSON.stringify(e.document)]));
    const [eb, ea] = [exceptions(before), exceptions(after)];
    for (const name of new Set([...eb.keys(), ...ea.keys()])) {
      if (eb.get(name) !== ea.get(name)) need(owners[0], `it changes exception ${name} written in layer ${id}`);
    }
    const old = new Map((before?.policies ?? []).map((p) => [p.document.metadata.name, p.document]));
    const now = new Map((after?.policies ?? []).map((p) => [p.document.metadata.name, p.document]));
    for (const name of [...new Set([...old.keys(), ...now.keys()])].sort()) {
      const a = old.get(name);
      const b = now.get(name);
      if (same(a, b)) continue;
      const verb = a === undefined ? "adds" : b === undefined ? "removes" : "changes";
      need(a?.metadata.owner, `it ${verb} policy ${name} of layer ${id}, which it owns`);
      need(b?.metadata.owner, `it ${verb} policy ${name} of layer ${id}, and would own it`);
      for (const definition of upper(id, name)) {
        const spec = definition.document.spec;
        if (spec.locked === true) need(definition.document.metadata.owner, `policy ${name} is locked by its owner, and layer ${id} refines it`);
        else if ((spec.delegate ?? []).length > 0) need(definition.document.metadata.owner, `policy ${name} is in a domain its owner delegates, and layer ${id} sets it`);
      }
    }
  }
  return [...needs].map(([team, why]) => ({ team, why }));
}
