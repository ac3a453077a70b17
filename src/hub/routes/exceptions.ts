/** Exceptions as requests: filed, answered by the policy's owners, withdrawn, listed. */
import { EXCEPTION_STATES, exceptionAnswer, exceptionRequest, isExceptionState } from "../../api/exceptions.js";
import { duration, durationMs } from "../../policy/schema.js";
import { actorFor, denial, type Principal, type Requirement } from "../principal.js";
import { route, type Call, type Hub } from "../route.js";
import type { Visibility } from "../exceptions.js";
import { badRequest, forbidden } from "../status.js";
import { auditContext } from "./shared.js";

/** Who files and answers requests: the roles that act; governance decides who may, request by request. */
const ACTORS: Requirement = { kind: "role", roles: ["global-admin", "region-operator", "team-member"], why: "exception requests are filed and answered by global admins, region operators and team members" };
const READERS: Requirement = { kind: "role", roles: ["global-admin", "region-operator", "team-member", "auditor"], why: "exception requests are read by people, not clusters" };

function visibility(principal: Principal): Visibility {
  if (principal.kind === "token" && principal.role === "region-operator" && principal.region !== undefined) return { all: false, region: principal.region, actor: actorFor(principal) };
  return { all: true };
}

const idOf = <B>(call: Call<B>) => {
  const id = call.params.id!;
  if (!/^[0-9a-f]{12}$/.test(id)) throw badRequest(`${JSON.stringify(id)} is not an exception request id (12 hex digits)`);
  return id;
};

async function readable(hub: Hub, call: Call<unknown>) {
  const found = await hub.exceptions.get(idOf(call));
  const scope = visibility(call.principal);
  if (!scope.all && (await hub.exceptions.list(scope, {})).every((r) => r.id !== found.id)) throw forbidden(`exception request ${found.id} is not of region ${scope.region}, nor yours, nor your teams'`);
  return found;
}

export const EXCEPTION_ROUTES = [
  route({
    method: "POST",
    path: "/v1/exceptions",
    summary:
      "Request an exception: a policy, its rules, a narrow scope, a justification and an expiry. It waits for a member of the policy's owner team (or is granted at once by a risk rule of the defining layer).",
    access: ACTORS,
    body: exceptionRequest,
    async handle(hub, call) {
      // A region operator asks for its own region only.
      if (call.principal.kind === "token" && call.principal.role === "region-operator") {
        for (const cluster of hub.exceptions.targets(call.body.spec.scope)) {
          const why = denial(call.principal, "write", { kind: "cluster", cluster, region: hub.federation.clusters.get(cluster)!.region });
          if (why !== undefined) throw forbidden(`${why}: name the clusters or regions of your region in spec.scope`);
        }
      }
      return { status: 201, body: await hub.exceptions.request(actorFor(call.principal), call.body, auditContext(call)) };
    },
  }),
  route({
    method: "GET",
    path: "/v1/exceptions",
    summary: "Exception requests the caller may see: ?state=pending|approved|denied|withdrawn|expired, ?active=true (granted, not expired), ?expiring=7d.",
    access: READERS,
    async handle(hub, call) {
      const state = call.query.state;
      if (state !== undefined && !isExceptionState(state)) throw badRequest(`state must be one of ${EXCEPTION_STATES.join(", ")}`);
      const expiring = call.query.expiring;
      if (expiring !== undefined && !duration.safeParse(expiring).success) throw badRequest("expiring must be a duration such as 7d or 24h");
      const items = await hub.exceptions.list(visibility(call.principal), {
        ...(state === undefined ? {} : { state }),
        ...(call.query.active === "true" ? { active: true } : {}),
        ...(expiring === undefined ? {} : { expiringWithinMs: durationMs(expiring) }),
      });
      return { body: { items } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/exceptions/:id",
    summary: "One exception request and its state.",
    access: READERS,
    async handle(hub, call) {
      return { body: await readable(hub, call) };
    },
  }),
  ...(["approve", "deny", "withdraw"] as const).map((what) =>
    route({
      method: "POST",
      path: `/v1/exceptions/:id/${what}`,
      summary:
        what === "approve"
          ? "Approve a pending request: a member of the policy's owner team, never its requester (a global admin once it is escalated). The exception is published in the next bundles, with the approver."
          : what === "deny"
            ? "Deny a pending request, saying why."
            : "Withdraw a request: pending, or granted (it leaves the next bundles). By its requester, a member of its team, or a global admin.",
      access: ACTORS,
      body: exceptionAnswer,
      async handle(hub, call) {
        const id = idOf(call);
        const actor = actorFor(call.principal);
        const context = auditContext(call);
        const answer =
          what === "withdraw" ? await hub.exceptions.withdraw(actor, id, call.body.reason, context) : await hub.exceptions.answer(actor, id, what, call.body.reason, context);
        return { body: answer };
      },
    }),
  ),
];
