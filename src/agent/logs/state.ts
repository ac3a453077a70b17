/**
 * The decision log's counters on disk (`state.json`), so that drops and upload progress
 * outlive a restart.
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFileAtomic } from "../../files/write.js";

export interface LogState {
  /** Entries dropped and not yet reported to the hub. */
  dropped: number;
  /** Entries dropped since the agent was first started (for status). */
  droppedTotal: number;
  /** Allowed decisions counted since the last sample, as of the last flush. */
  allowedUnsampled: number;
  /** How many batches of the oldest segment the hub already has. */
  sent: { segment: string; batches: number } | null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** state.json as read from disk: whatever is missing or of the wrong type starts from zero. */
export function readLogState(path: string): LogState {
  const state: LogState = { dropped: 0, droppedTotal: 0, allowedUnsampled: 0, sent: null };
  if (!existsSync(path)) return state;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return state;
  }
  if (!isRecord(parsed)) return state;
  const count = (value: unknown) => (typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : 0);
  state.dropped = count(parsed.dropped);
  state.droppedTotal = count(parsed.droppedTotal);
  state.allowedUnsampled = count(parsed.allowedUnsampled);
  const sent = parsed.sent;
  if (isRecord(sent) && typeof sent.segment === "string") state.sent = { segment: sent.segment, batches: count(sent.batches) };
  return state;
}

/**
 * Written at every flush (every second) and every batch the hub takes, so not flushed to
 * the disk each time: a machine crash (not a process crash, which the page cache outlives)
 * may lose the last seconds of counts, and then a batch is sent again (the hub stores it
 * once) or a few drops go unreported. An fsync a second would put the disk's latency on
 * the loop that uploads.
 */
export function writeLogState(path: string, state: LogState): void {
  writeFileAtomic(path, JSON.stringify(state), { sync: false });
}
