/**
 * A regional hub's long poll for its mirror changing (src/hub/mirror-watch.ts): what lets a
 * global change reach a region at once instead of at its link's next pull.
 */
import { mirrorWatch } from "../mirror-watch.js";
import { route } from "../route.js";
import { ApiError, badRequest } from "../status.js";

const VERSIONS = /^\d{1,15}\.\d{1,15}$/;

export const MIRROR_CHANGE_ROUTES = [
  route({
    method: "GET",
    path: "/v1/region/mirror/changes",
    summary:
      "For a regional hub: the versions of the global layer and of its region layer as held here (`<global>.<region>`, 0 for none). With ?after=<versions>&wait=<seconds> (at most 30), a long poll: answered as soon as they differ from `after`, or with them unchanged when the wait ends. A hint to pull the mirror at once; the mirror itself is what is checked.",
    access: { kind: "regional-hub", why: "mirror changes are for a regional hub (mutual TLS with its hub certificate)" },
    async handle(hub, call) {
      if (hub.regions === undefined || call.principal.kind !== "regional-hub") throw new ApiError(409, "Conflict", "this hub has no regional hubs: regional hubs enrol with the global hub");
      const after = call.query.after;
      if (after !== undefined && !VERSIONS.test(after)) throw badRequest(`after=${JSON.stringify(after.slice(0, 40))} is not <global version>.<region version>`);
      const wait = Math.min(30, Math.max(0, Number(call.query.wait ?? 0) || 0));
      return { body: { versions: await mirrorWatch(hub.federation).wait(call.principal.region, after, wait * 1000, call.signal) } };
    },
  }),
];
