/**
 * The window of recent admission requests an agent keeps on its own disk, for the impact of
 * a change (src/decision/impact.ts): the AdmissionReviews its webhook decided, at most
 * `maxRequests` of them and none older than `maxAgeMs` (by default 100,000 and 24 hours,
 * whichever is smaller), encrypted at rest with AES-256-GCM under a key made on the agent
 * and kept beside them (mode 600): it never leaves the agent, and neither do the objects.
 *
 * Records are buffered in memory (bounded, drops counted) and appended every second to
 * segment files of `SEGMENT_RECORDS` records, one record a line: base64 of IV (12 bytes),
 * tag (16), and the ciphertext of the decision time (8 bytes, ms) and the review's bytes.
 * Whole segments past the bounds are removed; reading skips what is too old or too many.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../files/write.js";

export interface WindowOptions {
  readonly maxRequests: number;
  readonly maxAgeMs: number;
  /** Reviews larger than this are not recorded (counted as skipped). */
  readonly maxReviewBytes: number;
}

export const DEFAULT_WINDOW_OPTIONS: WindowOptions = { maxRequests: 100_000, maxAgeMs: 24 * 3600 * 1000, maxReviewBytes: 256 * 1024 };

const SEGMENT_RECORDS = 5_000;
/** What waits in memory for the next flush, at most. */
const PENDING_MAX = 20_000;
const NAME = /^(\d{12})\.window$/;

interface SegmentInfo {
  readonly sequence: number;
  records: number;
  newest: number;
}

export class AdmissionWindow {
  private readonly key: Buffer;
  private readonly segments: SegmentInfo[] = [];
  private pending: { time: number; review: Uint8Array }[] = [];
  /** Reviews not recorded: too large, or the memory buffer full. */
  skipped = 0;

  constructor(
    private readonly dir: string,
    private readonly options: WindowOptions = DEFAULT_WINDOW_OPTIONS,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const keyFile = join(dir, "key");
    if (!existsSync(keyFile)) writeFileAtomic(keyFile, randomBytes(32));
    this.key = readFileSync(keyFile);
    if (this.key.length !== 32) throw new Error(`${keyFile} is not a 32-byte key: remove the folder ${dir} to start a new window`);
    for (const name of readdirSync(dir).sort()) {
      const m = NAME.exec(name);
      if (m === null) continue;
      const lines = readFileSync(join(dir, name), "utf8").split("\n").filter((l) => l !== "").length;
      this.segments.push({ sequence: Number(m[1]), records: lines, newest: statSync(join(dir, name)).mtimeMs });
    }
  }

  /** A review the webhook decided, at `time` (ms). */
  record(review: Uint8Array, time: number): void {
    if (review.length > this.options.maxReviewBytes || this.pending.length >= PENDING_MAX) {
      this.skipped++;
      return;
    }
    this.pending.push({ time, review: Uint8Array.from(review) });
  }

  private encrypt(time: number, review: Uint8Array): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    const head = Buffer.alloc(8);
    head.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(time))));
    const body = Buffer.concat([cipher.update(head), cipher.update(review), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64");
  }

  private decrypt(line: string): { time: number; review: Buffer } | undefined {
    try {
      const raw = Buffer.from(line, "base64");
      const decipher = createDecipheriv("aes-256-gcm", this.key, raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      const plain = Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]);
      return { time: Number(plain.readBigUInt64BE(0)), review: plain.subarray(8) };
    } catch {
      return undefined; // a record altered on disk is not read
    }
  }

  /** Appends what is pending to the segments, then removes segments past the bounds. */
  flush(now: number): void {
    const pending = this.pending;
    this.pending = [];
    let i = 0;
    while (i < pending.length) {
      let last = this.segments.at(-1);
      if (last === undefined || last.records >= SEGMENT_RECORDS) {
        last = { sequence: (last?.sequence ?? 0) + 1, records: 0, newest: 0 };
        this.segments.push(last);
      }
      const room = SEGMENT_RECORDS - last.records;
      const part = pending.slice(i, i + room);
      appendFileSync(this.path(last.sequence), part.map((r) => `${this.encrypt(r.time, r.review)}\n`).join(""), { mode: 0o600 });
      last.records += part.length;
      last.newest = Math.max(last.newest, ...part.map((r) => r.time));
      i += part.length;
    }
    // Whole segments go once the ones after them hold enough, or once they are too old.
    while (this.segments.length > 1) {
      const oldest = this.segments[0]!;
      const after = this.segments.slice(1).reduce((n, s) => n + s.records, 0);
      if (after < this.options.maxRequests && now - oldest.newest <= this.options.maxAgeMs) break;
      rmSync(this.path(oldest.sequence), { force: true });
      this.segments.shift();
    }
  }

  private path(sequence: number): string {
    return join(this.dir, `${String(sequence).padStart(12, "0")}.window`);
  }

  /** How many records the segments hold (before the age and count bounds are applied on reading). */
  get size(): number {
    return this.segments.reduce((n, s) => n + s.records, 0) + this.pending.length;
  }

  /** The recorded reviews within the bounds, oldest first, one segment in memory at a time. */
  *reviews(now: number): Generator<Buffer> {
    this.flush(now);
    let skip = Math.max(0, this.size - this.options.maxRequests);
    for (const segment of [...this.segments]) {
      let text: string;
      try {
        text = readFileSync(this.path(segment.sequence), "utf8");
      } catch {
        continue; // removed meanwhile by a flush
      }
      for (const line of text.split("\n")) {
        if (line === "") continue;
        if (skip > 0) {
          skip--;
          continue;
        }
        const record = this.decrypt(line);
        if (record !== undefined && now - record.time <= this.options.maxAgeMs) yield record.review;
      }
    }
  }
}
