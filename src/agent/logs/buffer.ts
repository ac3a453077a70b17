/**
 * The decision log: denials in full, allowed decisions as counted samples (one entry stands
 * for `sampleEvery` of them). Each entry is written to the open segment file when it is
 * logged, before the webhook answers (a write, not an fsync: a killed process loses none,
 * the page cache holds them; a machine crash may lose the last seconds). The open segment
 * is sealed every second (renamed to its final name), whatever the uploads are doing;
 * sealed segments are handed out in batches, oldest first, and deleted only once the hub
 * has them. A segment larger than the hub takes in one batch is sent in several
 * (`batchesOf`), each with an id derived from the segment's, so a batch sent again after a
 * failure or a restart is stored once. A segment left open by a killed process is sealed
 * at the next start.
 *
 * Allowed decisions not yet sampled are counted on disk at every seal, and sampled when
 * the log is closed: the samples' `represents` add up to every allowed decision.
 *
 * The disk has a bound. Past it, the oldest segments are dropped, and how many entries is
 * counted, kept on disk across restarts, and reported to the hub with the next batch:
 * never silent.
 */
import { randomUUID } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { BATCH_LIMITS, batchesOf } from "./batches.js";
import type { DecisionEntry } from "./entry.js";
import { countLines, listSegments, openSegment, readSegment, sealLeftOpen, type OpenSegment } from "./segments.js";
import { readLogState, writeLogState, type LogState } from "./state.js";

export interface LogOptions {
  /** Bytes of segments kept on disk (default 64 MiB). */
  readonly maxDiskBytes: number;
  /** One allowed decision in this many is logged (default 100). */
  readonly sampleEvery: number;
}

export const DEFAULT_LOG_OPTIONS: LogOptions = { maxDiskBytes: 64 * 1024 * 1024, sampleEvery: 100 };

/** One batch for the hub; `done` records that the hub has it. */
export interface Batch {
  readonly batch: string;
  readonly entries: unknown[];
  /** Drops not yet reported, reported with this batch. */
  readonly dropped: number;
  done(): void;
}

export interface LogStats {
  /** Entries in the open segment, not yet sealed for upload. */
  readonly buffered: number;
  readonly segments: number;
  readonly dropped: number;
  readonly droppedUnreported: number;
}

export class DecisionLog {
  private open: OpenSegment | undefined;
  private allowedSinceSample: number;
  /** The latest allowed decision, to sample the ones still counted when the log is closed. */
  private lastAllowed: ((represents: number) => DecisionEntry) | undefined;
  private readonly state: LogState;
  private readonly statePath: string;
  private sequence = 0;

  constructor(
    private readonly dir: string,
    private readonly options: LogOptions,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.statePath = join(dir, "state.json");
    this.state = readLogState(this.statePath);
    this.allowedSinceSample = this.state.allowedUnsampled;
    // A segment a killed process left open holds what it logged: sealed, it goes to the hub.
    sealLeftOpen(dir);
    this.sequence = listSegments(dir).reduce((max, s) => Math.max(max, s.sequence), 0);
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

  /** Writes an entry to the open segment at once; an entry no batch could carry, or one the disk refuses, is dropped and counted. */
  private add(entry: DecisionEntry): void {
    const line = `${JSON.stringify(entry)}\n`;
    const bytes = Buffer.byteLength(line, "utf8");
    if (bytes > BATCH_LIMITS.bytes) {
      this.drop(1);
      return;
    }
    try {
      this.open ??= openSegment(this.dir, ++this.sequence);
      this.open.write(line);
    } catch {
      this.drop(1);
      return;
    }
    // A burst between seals must not outgrow the disk bound in one file.
    if (this.open.bytes > this.options.maxDiskBytes / 4) this.seal();
  }

  private drop(count: number): void {
    this.state.dropped += count;
    this.state.droppedTotal += count;
  }

  /** Seals the open segment (its entries are on disk already), then trims the oldest segments past the disk bound. */
  flush(): void {
    this.seal();
    this.saveState();
  }

  private seal(): void {
    const open = this.open;
    this.open = undefined;
    open?.seal();
    let segments = listSegments(this.dir);
    let total = segments.reduce((sum, s) => sum + s.bytes, 0);
    while (total > this.options.maxDiskBytes && segments.length > 0) {
      const oldest = segments[0]!;
      this.drop(countLines(oldest.path));
      rmSync(oldest.path, { force: true });
      total -= oldest.bytes;
      segments = segments.slice(1);
    }
  }

  private saveState(): void {
    this.state.allowedUnsampled = this.allowedSinceSample;
    writeLogState(this.statePath, this.state);
  }

  /**
   * The next batch for the hub: the oldest segment, or its next part when it holds more
   * than one batch can carry, with the drops not yet reported; `done` records that the hub
   * has it (and deletes the segment after its last part). A segment sent whole keeps the
   * segment's id as the batch id; its parts are `<id>.<n>`: a batch sent twice is stored
   * once.
   */
  nextBatch(): Batch | undefined {
    const oldest = listSegments(this.dir)[0];
    const dropped = this.state.dropped;
    if (oldest === undefined) {
      if (dropped === 0) return undefined;
      return { batch: randomUUID(), entries: [], dropped, done: () => this.reported(dropped) };
    }
    // Lines that are not entries are skipped, and counted as dropped once the segment is gone.
    const { lines, entries, skipped } = readSegment(oldest.path);
    const batches = batchesOf(lines);
    const part = this.state.sent?.segment === oldest.name ? this.state.sent.batches : 0;
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
          this.state.sent = { segment: oldest.name, batches: part + 1 };
        }
        this.reported(dropped);
      },
    };
  }

  private reported(dropped: number): void {
    this.state.dropped -= dropped;
    this.saveState();
  }

  stats(): LogStats {
    return { buffered: this.open?.entries ?? 0, segments: listSegments(this.dir).length, dropped: this.state.droppedTotal, droppedUnreported: this.state.dropped };
  }
}
