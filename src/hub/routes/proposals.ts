/** Change proposals: proposed, approved by the teams they touch, rejected or withdrawn, applied. */
import { z } from "zod";
import { rolloutRequest } from "../../api/rollouts.js";
import { isProposalState, PROPOSAL_STATES, proposalAnswer, proposalRequest, type ProposalView } from "../../api/proposals.js";
import type { LayerInput } from "../change.js";
import { actorFor, denial, describePrincipal, type Principal, type Requirement } from "../principal.js";
import { route, type Call, type Hub } from "../route.js";
import { badRequest, forbidden } from "../status.js";
import { parseLayers } from "./layers.js";
import { auditContext, engine, layerTarget } from "./shared.js";

const ACTORS: Requirement = { kind: "role", roles: ["global-admin", "region-operator", "team-member"], why: "proposals are made and answered by global admins, region operators and team members" };
const READERS: Requirement = { kind: "role", roles: ["global-admin", "region-operator", "team-member", "auditor"], why: "proposals are read by people, not clusters" };

const idOf = <B>(call: Call<B>) => {
  const id = call.params.id!;
  if (!/^[0-9a-f]{12}$/.test(id)) throw badRequest(`${JSON.stringify(id)} is not a proposal id (12 hex digits)`);
  return id;
};

/** Whether the principal may read every layer the proposal changes. */
const readable = (hub: Hub, principal: Principal) => (view: ProposalView) =>
  view.layers.every((l) => denial(principal, "read", layerTarget(hub, l.id, hub.federation.layers.get(l.id)?.layer?.region)) === undefined);

/** A region operator proposes for the layers of its region only; a team member for any layer (its owners review it). */
function mayPropose(hub: Hub, principal: Principal, layers: readonly LayerInput[]): void {
  if (principal.kind !== "token" || principal.role !== "region-operator") return;
  for (const l of layers) {
    const why = denial(principal, "write", layerTarget(hub, l.id, l.layer?.region));
    if (why !== undefined) throw forbidden(`layer ${l.id}: ${why}`);
  }
}

export const PROPOSAL_ROUTES = [
  route({
    method: "POST",
    path: "/v1/proposals",
    summary:
      "Propose a change of layers for review: recorded with its diff, the versions it changes and the teams whose approval it needs (the owners of every layer, policy and locked policy it touches).",
    access: ACTORS,
    body: proposalRequest,
    // Smaller than an apply's 32 MiB: a proposal is kept until it is answered.
    bodyLimit: 8 * 1024 * 1024,
    prepare: (_hub, call) => parseLayers(call.body.files),
    async handle(hub, call, layers) {
      mayPropose(hub, call.principal, layers);
      hub.changes.checkLayers(undefined, layers, hub.now().getTime());
      engine("the proposed change is refused", () => hub.changes.plan({ kind: "layers", layers }));
      return { status: 201, body: await hub.proposals.propose(actorFor(call.principal), layers, call.body.files, call.body.title, auditContext(call)) };
    },
  }),
  route({
    method: "GET",
    path: "/v1/proposals",
    summary: "Proposals the caller may read (?state=open|applied|rejected|withdrawn), without their files.",
    access: READERS,
    async handle(hub, call) {
      const state = call.query.state;
      if (state !== undefined && !isProposalState(state)) throw badRequest(`state must be one of ${PROPOSAL_STATES.join(", ")}`);
      return { body: { items: await hub.proposals.list(state, readable(hub, call.principal)) } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/proposals/:id",
    summary: "One proposal: its diff, approvals needed and given, whether it is stale, and its files.",
    access: READERS,
    async handle(hub, call) {
      const view = await hub.proposals.get(idOf(call));
      if (!readable(hub, call.principal)(view)) throw forbidden(`proposal ${view.id} changes layers you may not read`);
      return { body: view };
    },
  }),
  route({
    method: "POST",
    path: "/v1/proposals/:id/approve",
    summary: "Approve a proposal for every team it still needs that the caller is a member of (never one's own proposal).",
    access: ACTORS,
    body: proposalAnswer,
    async handle(hub, call) {
      return { body: await hub.proposals.approve(actorFor(call.principal), idOf(call), auditContext(call)) };
    },
  }),
  route({
    method: "POST",
    path: "/v1/proposals/:id/reject",
    summary: "Reject a proposal (a member of a team it needs, or a global admin), or withdraw it (its proposer), saying why.",
    access: ACTORS,
    body: proposalAnswer,
    async handle(hub, call) {
      return { body: await hub.proposals.reject(actorFor(call.principal), idOf(call), call.body.reason, auditContext(call)) };
    },
  }),
  route({
    method: "POST",
    path: "/v1/proposals/:id/apply",
    summary:
      "Apply a proposal that has every approval it needs and whose layers have not moved since: one change, with the proposal's correlation id; with a rollout, a staged rollout of it (canary first).",
    access: ACTORS,
    body: z.strictObject({ rollout: rolloutRequest.optional() }).optional(),
    bodyLimit: 16 * 1024,
    async prepare(hub, call) {
      return parseLayers(await hub.proposals.files(idOf(call)));
    },
    async handle(hub, call, layers) {
      const staged = call.body?.rollout;
      return {
        body: await hub.proposals.apply(
          actorFor(call.principal),
          describePrincipal(call.principal),
          idOf(call),
          layers,
          auditContext(call),
          staged === undefined ? undefined : (change, author, context) => hub.rollouts.start(staged, change.layers, author, context, undefined, change.also),
        ),
      };
    },
  }),
];
