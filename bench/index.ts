/**
 * `npm run bench`: every benchmark, figures and ratios measured in one run. Benchmarks are
 * not tests: they print, they never fail on timing. The machine is shared and noisy, so
 * each figure is a median or a percentile over many samples.
 */
import { cpus } from "node:os";
import { benchDecision } from "./decision.js";
import { benchDrift } from "./drift.js";
import { benchAgents } from "./agent.js";
import { benchAudit } from "./audit.js";
import { benchHub } from "./hub.js";
import { benchImpact } from "./impact.js";
import { benchIntents } from "./intents.js";
import { benchLayering } from "./layering.js";
import { benchScan } from "./scan.js";
import { benchNamespaces } from "./namespaces.js";
import { benchPropagation } from "./propagation.js";
import { benchPropagationRegions } from "./propagation-regions.js";
import { benchRollout } from "./rollout.js";

const only = process.argv.slice(2);
const want = (name: string) => only.length === 0 || only.includes(name);

console.log(`Polity benchmarks: node ${process.version}, ${cpus().length} CPU(s) (${cpus()[0]?.model ?? "unknown"})`);
/** Between benchmarks, a full collection, so that one's garbage is not the next one's pause. */
const settle = () => (globalThis as { gc?: () => void }).gc?.();

if (want("decision")) benchDecision();
settle();
if (want("namespaces")) benchNamespaces();
settle();
if (want("layering")) benchLayering();
settle();
if (want("intents")) benchIntents();
settle();
if (want("hub")) await benchHub();
settle();
if (want("propagation")) await benchPropagation();
settle();
if (want("propagation-regions")) await benchPropagationRegions();
settle();
if (want("agents")) await benchAgents();
settle();
if (want("audit")) await benchAudit();
settle();
if (want("rollout")) await benchRollout();
settle();
if (want("impact")) await benchImpact();
settle();
if (want("scan")) await benchScan();
settle();
if (want("drift")) await benchDrift();
