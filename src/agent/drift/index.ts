/**
 * Drift: the agent keeps the objects its intents made as Polity applied them. The watcher
 * (watcher.ts) watches the owned kinds and re-applies or reports drift, bounded per object
 * (bound.ts); the report loop (reporter.ts) sends the events to the hub.
 */
export { DriftWatcher, FIELD_MANAGER, OWNED_SELECTOR, type DriftHealth, type DriftSink, type DriftWatcherOptions } from "./watcher.js";
export { DriftReporter, type DriftReporterHealth, type DriftReporterOptions } from "./reporter.js";
export { DEFAULT_MAX_ACTIONS, DEFAULT_WINDOW_MS, ReapplyBound } from "./bound.js";
export { ownedType, serverSideApply, type OwnedType } from "./types.js";
