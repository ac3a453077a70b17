/** Staged rollouts: listed, shown with their stages, clusters and gates; paused, resumed, aborted, rolled back. */
import { isRolloutState, ROLLOUT_STATES, type RolloutView } from "../../api/rollouts.js";
import { z } from "zod";
import { shownText } from "../../policy/schema.js";
import { denial, describePrincipal, type Principal, type Requirement } from "../principal.js";
import { route, type Call, type Hub } from "../route.js";
import { badRequest, forbidden } from "../status.js";
import { auditContext, layerTarget } from "./shared.js";

const READERS: Requirement = { kind: "role", roles: ["global-admin", "region-operator", "team-member", "auditor"], why: "rollouts are read by people, not clusters" };

const idOf = (call: Call<unknown>) => {
  const id = call.params.id!;
  if (!/^[0-9a-f]{12}$/.test(id)) throw badRequest(`${JSON.stringify(id)} is not a rollout id (12 hex digits; polity rollout list shows them)`);
  return id;
};

const target = (hub: Hub, view: RolloutView) => layerTarget(hub, view.layer, hub.federation.layers.get(view.layer)?.layer?.region);
const readable = (hub: Hub, principal: Principal) => (view: RolloutView) => denial(principal, "read", target(hub, view)) === undefined;

const answer = z.strictObject({ reason: shownText(1, 1000).optional() });

/** An operator's act on a rollout: allowed to whoever may write its layer. */
const act = (what: "pause" | "resume" | "abort" | "rollback", summary: string) =>
  route({
    method: "POST",
    path: `/v1/rollouts/:id/${what}`,
    summary,
    access: { kind: "access", access: "write" },
    body: answer,
    bodyLimit: 4096,
    prepare: (hub, call) => hub.rollouts.get(idOf(call)),
    targets: (hub, _call, view) => [target(hub, view)],
    async handle(hub, call, view) {
      const context = auditContext(call);
      const who = describePrincipal(call.principal);
      const reason = call.body.reason === undefined ? `by ${who}` : `by ${who}: ${call.body.reason}`;
      switch (what) {
        case "pause":
          return { body: await hub.rollouts.setPaused(view.id, true, context) };
        case "resume":
          return { body: await hub.rollouts.setPaused(view.id, false, context) };
        case "abort":
          return { body: await hub.rollouts.rollBack(view.id, "aborted", `aborted ${reason}`, context) };
        case "rollback":
          return { body: await hub.rollouts.rollBack(view.id, "rolled-back", `rolled back ${reason}`, context) };
      }
    },
  });

export const ROLLOUT_ROUTES = [
  route({
    method: "GET",
    path: "/v1/rollouts",
    summary: "Rollouts of the layers the caller may read (?state=running|paused|completed|rolled-back|aborted), oldest first.",
    access: READERS,
    async handle(hub, call) {
      const state = call.query.state;
      if (state !== undefined && !isRolloutState(state)) throw badRequest(`state must be one of ${ROLLOUT_STATES.join(", ")}`);
      return { body: { items: (await hub.rollouts.list(state)).filter(readable(hub, call.principal)) } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/rollouts/:id",
    summary: "One rollout: each stage, each cluster's state, and each gate's measured value against its bound; why it ended.",
    access: READERS,
    async handle(hub, call) {
      const view = await hub.rollouts.get(idOf(call));
      if (!readable(hub, call.principal)(view)) throw forbidden(`rollout ${view.id} changes layer ${view.layer}, which you may not read`);
      return { body: view };
    },
  }),
  act("pause", "Pause a running rollout: no stage starts or is judged; every cluster keeps what it has."),
  act("resume", "Resume a paused rollout: its stage's soak starts again."),
  act("abort", "Abort a running or paused rollout: every cluster returns to the layer's previous content (a new layer version, higher bundle versions)."),
  act("rollback", "Roll a rollout back (also a completed one, while its layer has not moved on): every cluster returns to the layer's previous content."),
];
