/**
 * Decision logs: denials in full, allowed decisions as counted samples (one entry stands
 * for `sampleEvery` of them). Entries gather in memory and are written to disk in
 * segments every second, so the decision path never waits for a disk; segments are
 * uploaded to the hub in batches, oldest first, and deleted only once the hub has them.
 * A segment larger than the hub takes in one batch is sent in several (`batchesOf`), each
 * with an id derived from the segment's, so a batch sent again after a failure or a
 * restart is stored once.
 *
 * Allowed decisions not yet sampled are counted on disk at every flush, and sampled when
 * the log is closed: the samples' `represents` add up to every allowed decision.
 *
 * Every buffer has a bound. Past it, the oldest entries are dropped, and how many is
 * counted, kept on disk across restarts, and reported to the hub with the next batch:
 * never silent.
 */
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";

export interface DecisionEntry {
  readonly time: string;
  readonly uid: string;
  readonly kind: string;
  readonly namespace?: string;
  readonly name?: string;
  readonly operation: string;
  readonly user?: string;
  readonly allowed: boolean;
  readonly bundleVersion: number | null;
  readonly violations?: readonly { policy: string; rule: string; message: string; enforcement: string }[];
  /** For a sample of allowed decisions: how many it stands for. */
  readonly represents?: number;
}

export interface LogOptions {
  /** Bytes of segments kept on disk (default 64 MiB). */
  readonly maxDiskBytes: number;
  /** Bytes kept in memory between flushes (default 4 MiB). */
  readonly maxMemoryBytes: number;
  /** One allowed decision in this many is logged (default 100). */
  readonly sampleEvery: number;
}

export const DEFAULT_LOG_OPTIONS: LogOptions = { maxDiskBytes: 64 * 1024 * 1024, maxMemoryBytes: 4 * 1024 * 1024, sampleEvery: 100 };

/**
 * What the hub takes in one batch is at most 10,000 entries and an 8 MiB body; a batch
 * here stays well under both. An entry larger than a batch could carry is dropped (and
 * counted) when it is logged, so that no segment ever holds one the hub would refuse.
 */
export const BATCH_LIMITS = { entries: 10_000, bytes: 4 * 1024 * 1024 } as const;

interface State {
  /** Entries dropped and not yet reported to the hub. */
  dropped: number;
  /** Entries dropped since the agent was first started (for status). */
  droppedTotal: number;
  /** Allowed decisions counted since the last sample, as of the last flush. */
  allowedUnsampled: number;
  /** How many batches of the oldest segment the hub already has. */
  sent: { segment: string; batches: number } | null;
}

/** state.json as read from disk: whatever is missing or of the wrong type starts from zero. */
function readState(path: string): State {
  const state: State = { dropped: 0, droppedTotal: 0, allowedUnsampled: 0, sent: null };
  if (!existsSync(path)) return state;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return state;
  }
  if (typeof parsed !== "object" || parsed === null) return state;
  const fields = parsed as Record<string, unknown>;
  const count = (value: unknown) => (typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : 0);
  state.dropped = count(fields.dropped);
  state.droppedTotal = count(fields.droppedTotal);
  state.allowedUnsampled = count(fields.allowedUnsampled);
  const sent = fields.sent as Record<string, unknown> | null | undefined;
  if (typeof sent === "object" && sent !== null && typeof sent.segment === "string") state.sent = { segment: sent.segment, batches: count(sent.batches) };
  return state;
}

/**
 * A segment's lines cut into batches the hub accepts, in order: each at most
 * `limits.entries` lines and `limits.bytes` bytes (a single line larger than that goes
 * alone). The same lines always give the same batches.
 */
export function batchesOf(lines: readonly string[], limits: { readonly entries: number; readonly bytes: number } = BATCH_LIMITS): string[][] {
  const batches: string[][] = [];
  let batch: string[] = [];
  let bytes = 0;
  for (const line of lines) {
    // One comma between entries in the JSON array.
    const size = Buffer.byteLength(line, "utf8") + 1;
    if (batch.length > 0 && (batch.length >= limits.entries || bytes + size > limits.bytes)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(line);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

export class DecisionLog {
  private pending: string[] = [];
  private pendingBytes = 0;
  private allowedSinceSample: number;
  /** The latest allowed decision, to sample the ones still counted when the log is closed. */
  private lastAllowed: ((represents: number) => DecisionEntry) | undefined;
  private readonly state: State;
  private sequence = 0;

  constructor(
    private readonly dir: string,
    private readonly options: LogOptions,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.state = readState(join(dir, "state.json"));
    this.allowedSinceSample = this.state.allowedUnsampled;
    this.sequence = this.segments().reduce((max, s) => Math.max(max, s.sequence), 0);
  }

  /** A denial: logged in full. */
  denied(entry: DecisionEntry): void {
    this.add(entry);
  }

  /** An allowed decision: counted, and every `sampleEvery`th logged for the others too. */
  allowed(make: (represents: number) => DecisionEntry): void {
    this.allowedSinceSample++;
    this.lastAllowed = make;
    if (this.allowedSinceSample >= this.options.sampleEvery) {
      this.add(make(this.allowedSinceSample));
      this.allowedSinceSample = 0;
      this.lastAllowed = undefined;
    }
  }

  /**
   * At shutdown: the allowed decisions not yet sampled become one sample (the latest of
   * them, standing for all), and everything is flushed.
   */
  close(): void {
    if (this.allowedSinceSample > 0 && this.lastAllowed !== undefined) {
      this.add(this.lastAllowed(this.allowedSinceSample));
      this.allowedSinceSample = 0;
      this.lastAllowed = undefined;
    }
    this.flush();
  }

  private add(entry: DecisionEntry): void {
    const line = JSON.stringify(entry);
    if (this.pendingBytes + line.length > this.options.maxMemoryBytes || Buffer.byteLength(line, "utf8") >= BATCH_LIMITS.bytes) {
      this.drop(1);
      return;
    }
    this.pending.push(line);
    this.pendingBytes += line.length + 1;
  }

  private drop(count: number): void {
    this.state.dropped += count;
    this.state.droppedTotal += count;
  }

  /** Writes what is in memory as a new segment, then trims the oldest segments past the disk bound. */
  flush(): void {
    if (this.pending.length > 0) {
      const lines = this.pending;
      this.pending = [];
      this.pendingBytes = 0;
      const name = `${String(++this.sequence).padStart(12, "0")}-${randomUUID()}.ndjson`;
      const tmp = join(this.dir, `.${name}.tmp`);
      writeFileSync(tmp, `${lines.join("\n")}\n`, { mode: 0o600 });
      renameSync(tmp, join(this.dir, name));
    }
    let segments = this.segments();
    let total = segments.reduce((sum, s) => sum + s.bytes, 0);
    while (total > this.options.maxDiskBytes && segments.length > 0) {
      const oldest = segments[0]!;
      this.drop(this.count(oldest.path));
      rmSync(oldest.path, { force: true });
      total -= oldest.bytes;
      segments = segments.slice(1);
    }
    this.saveState();
  }

  private saveState(): void {
    this.state.allowedUnsampled = this.allowedSinceSample;
    const tmp = join(this.dir, ".state.json.tmp");
    writeFileSync(tmp, JSON.stringify(this.state));
    renameSync(tmp, join(this.dir, "state.json"));
  }

  private count(path: string): number {
    try {
      return readFileSync(path, "utf8").split("\n").filter((l) => l !== "").length;
    } catch {
      return 0;
    }
  }

  private segments(): { path: string; sequence: number; batch: string; bytes: number }[] {
    return readdirSync(this.dir)
      .filter((n) => /^\d{12}-[0-9a-f-]{36}\.ndjson$/.test(n))
      .sort()
      .map((n) => ({ path: join(this.dir, n), sequence: Number(n.slice(0, 12)), batch: n.slice(13, 49), bytes: statSync(join(this.dir, n)).size }));
  }

  /**
   * The next batch for the hub: the oldest segment, or its next part when it holds more
   * than one batch can carry, with the drops not yet reported; `done` records that the hub
   * has it (and deletes the segment after its last part). A segment sent whole keeps the
   * segment's id as the batch id; its parts are `<id>.<n>`: a batch sent twice is stored
   * once.
   */
  nextBatch(): { batch: string; entries: unknown[]; dropped: number; done: () => void } | undefined {
    const oldest = this.segments()[0];
    const dropped = this.state.dropped;
    if (oldest === undefined) {
      if (dropped === 0) return undefined;
      return { batch: randomUUID(), entries: [], dropped, done: () => this.reported(dropped) };
    }
    // What is on disk is checked again: a line that is not a JSON object (a disk fault, a
    // hand edit) would make the hub refuse the whole batch, so it is skipped, and counted as
    // dropped once the segment is gone.
    const lines: string[] = [];
    const entries: unknown[] = [];
    let skipped = 0;
    for (const line of readFileSync(oldest.path, "utf8").split("\n")) {
      if (line === "") continue;
      const entry = parseEntry(line);
      if (entry === undefined) {
        skipped++;
        continue;
      }
      entries.push(entry);
      lines.push(line);
    }
    const batches = batchesOf(lines);
    const name = basename(oldest.path);
    const part = this.state.sent?.segment === name ? this.state.sent.batches : 0;
    if (part >= batches.length) {
      // Every part is at the hub already (the agent stopped before deleting the segment), or there is none.
      rmSync(oldest.path, { force: true });
      this.state.sent = null;
      this.drop(skipped);
      this.saveState();
      return this.nextBatch();
    }
    const first = batches.slice(0, part).reduce((sum, b) => sum + b.length, 0);
    return {
      batch: batches.length === 1 ? oldest.batch : `${oldest.batch}.${part}`,
      entries: entries.slice(first, first + batches[part]!.length),
      dropped,
      done: () => {
        if (part + 1 >= batches.length) {
          rmSync(oldest.path, { force: true });
          this.state.sent = null;
          this.drop(skipped);
        } else {
          this.state.sent = { segment: name, batches: part + 1 };
        }
        this.reported(dropped);
      },
    };
  }

  private reported(dropped: number): void {
    this.state.dropped -= dropped;
    this.saveState();
  }

  stats(): { buffered: number; segments: number; dropped: number; droppedUnreported: number } {
    const segments = this.segments();
    return { buffered: this.pending.length, segments: segments.length, dropped: this.state.droppedTotal, droppedUnreported: this.state.dropped };
  }
}

function parseEntry(line: string): object | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}
