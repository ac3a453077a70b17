/**
 * Decision logs: denials in full, allowed decisions as counted samples (one entry stands
 * for `sampleEvery` of them). Entries gather in memory and are written to disk in
 * segments every second, so the decision path never waits for a disk; segments are
 * uploaded to the hub in batches, oldest first, and deleted only once the hub has them.
 *
 * Every buffer has a bound. Past it, the oldest entries are dropped, and how many is
 * counted, kept on disk across restarts, and reported to the hub with the next batch:
 * never silent.
 */
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

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

interface State {
  /** Entries dropped and not yet reported to the hub. */
  dropped: number;
  /** Entries dropped since the agent was first started (for status). */
  droppedTotal: number;
}

export class DecisionLog {
  private pending: string[] = [];
  private pendingBytes = 0;
  private allowedSinceSample = 0;
  private readonly state: State;
  private sequence = 0;

  constructor(
    private readonly dir: string,
    private readonly options: LogOptions,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stateFile = join(dir, "state.json");
    this.state = existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, "utf8")) as State) : { dropped: 0, droppedTotal: 0 };
    this.sequence = this.segments().reduce((max, s) => Math.max(max, s.sequence), 0);
  }

  /** A denial: logged in full. */
  denied(entry: DecisionEntry): void {
    this.add(entry);
  }

  /** An allowed decision: counted, and every `sampleEvery`th logged for the others too. */
  allowed(make: (represents: number) => DecisionEntry): void {
    this.allowedSinceSample++;
    if (this.allowedSinceSample >= this.options.sampleEvery) {
      this.add(make(this.allowedSinceSample));
      this.allowedSinceSample = 0;
    }
  }

  private add(entry: DecisionEntry): void {
    const line = JSON.stringify(entry);
    if (this.pendingBytes + line.length > this.options.maxMemoryBytes) {
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
   * The oldest segment as a batch for the hub (its id is the segment's, so a batch sent
   * twice is stored once), with the drops not yet reported; `done` deletes it.
   */
  nextBatch(): { batch: string; entries: unknown[]; dropped: number; done: () => void } | undefined {
    const oldest = this.segments()[0];
    const dropped = this.state.dropped;
    if (oldest === undefined && dropped === 0) return undefined;
    const entries =
      oldest === undefined
        ? []
        : readFileSync(oldest.path, "utf8")
            .split("\n")
            .filter((l) => l !== "")
            .flatMap((l) => {
              try {
                return [JSON.parse(l) as unknown];
              } catch {
                return [];
              }
            });
    return {
      batch: oldest?.batch ?? randomUUID(),
      entries,
      dropped,
      done: () => {
        if (oldest !== undefined) rmSync(oldest.path, { force: true });
        this.state.dropped -= dropped;
        this.saveState();
      },
    };
  }

  stats(): { buffered: number; segments: number; dropped: number; droppedUnreported: number } {
    const segments = this.segments();
    return { buffered: this.pending.length, segments: segments.length, dropped: this.state.droppedTotal, droppedUnreported: this.state.dropped };
  }
}
