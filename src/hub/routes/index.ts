/**
 * The hub's API: every route, by feature. The server registers this table and publishes
 * it as /openapi.json. A new endpoint goes in the file of its feature; what it does goes
 * in the service that owns the data (see route.ts).
 */
import type { Route } from "../route.js";
import { AGENT_ROUTES } from "./agents.js";
import { AUDIT_ROUTES } from "./audit.js";
import { CLUSTER_ROUTES } from "./clusters.js";
import { COMPLIANCE_ROUTES } from "./compliance.js";
import { DRIFT_ROUTES } from "./drift.js";
import { EXCEPTION_ROUTES } from "./exceptions.js";
import { IDENTITY_ROUTES } from "./identity.js";
import { LAYER_ROUTES } from "./layers.js";
import { MIRROR_CHANGE_ROUTES } from "./mirror-changes.js";
import { PROPOSAL_ROUTES } from "./proposals.js";
import { REGION_ROUTES } from "./regions.js";
import { RESIDENCY_ROUTES } from "./residency.js";
import { ROLLOUT_ROUTES } from "./rollouts.js";
import { TOKEN_ROUTES } from "./tokens.js";
import { TRUST_ROUTES } from "./trust.js";

export const ROUTES: readonly Route[] = [...IDENTITY_ROUTES, ...TOKEN_ROUTES, ...LAYER_ROUTES, ...CLUSTER_ROUTES, ...AGENT_ROUTES, ...COMPLIANCE_ROUTES, ...DRIFT_ROUTES, ...EXCEPTION_ROUTES, ...PROPOSAL_ROUTES, ...ROLLOUT_ROUTES, ...AUDIT_ROUTES, ...REGION_ROUTES, ...RESIDENCY_ROUTES, ...MIRROR_CHANGE_ROUTES, ...TRUST_ROUTES];
