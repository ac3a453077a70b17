/**
 * Decision-log segments on disk: files of JSON lines named `<sequence>-<uuid>.ndjson`, so
 * that they sort oldest first and the uuid can name the batch that carries them. A segment
 * is written line by line while it is open (`….ndjson.open`), and sealed by a rename.
 */
import { randomUUID } from "node:crypto";
import { closeSync, openSync, readdirSync, readFileSync, renameSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";

export interface Segment {
  readonly path: string;
  readonly name: string;
  readonly sequence: number;
  /** The uuid in its name: the id of the batch that carries it. */
  readonly batch: string;
  readonly bytes: number;
}

const NAME = /^\d{12}-[0-9a-f-]{36}\.ndjson$/;

/** The segments in `dir`, oldest first. */
export function listSegments(dir: string): Segment[] {
  return readdirSync(dir)
    .filter((n) => NAME.test(n))
    .sort()
    .map((n) => ({ path: join(dir, n), name: n, sequence: Number(n.slice(0, 12)), batch: n.slice(13, 49), bytes: statSync(join(dir, n)).size }));
}

const OPEN = ".open";

/** A segment being written: each line goes to the file at once (one write, no fsync). */
export interface OpenSegment {
  readonly entries: number;
  readonly bytes: number;
  write(line: string): void;
  /** Closes it under its final name: from then on it is uploaded. */
  seal(): void;
}

/**
 * Opens a new segment. Lines are written, not flushed to the disk: a killed process loses
 * nothing the page cache holds, and an fsync per decision would put the disk's latency on
 * the admission path; a machine crash may lose the last seconds.
 */
export function openSegment(dir: string, sequence: number): OpenSegment {
  const name = `${String(sequence).padStart(12, "0")}-${randomUUID()}.ndjson`;
  const path = join(dir, `${name}${OPEN}`);
  const fd = openSync(path, "a", 0o600);
  let entries = 0;
  let bytes = 0;
  return {
    get entries() {
      return entries;
    },
    get bytes() {
      return bytes;
    },
    write(line) {
      const data = Buffer.from(line, "utf8");
      for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done);
      entries++;
      bytes += data.length;
    },
    seal() {
      closeSync(fd);
      renameSync(path, join(dir, name));
    },
  };
}

/** Seals the segments a killed process left open (a torn last line is skipped when read). */
export function sealLeftOpen(dir: string): void {
  for (const name of readdirSync(dir)) {
    if (name.endsWith(OPEN) && NAME.test(name.slice(0, -OPEN.length))) renameSync(join(dir, name), join(dir, name.slice(0, -OPEN.length)));
  }
}

/** How many lines a segment holds (0 when it cannot be read). */
export function countLines(path: string): number {
  try {
    return readFileSync(path, "utf8").split("\n").filter((l) => l !== "").length;
  } catch {
    return 0;
  }
}

/**
 * A segment's entries, checked again: a line that is not a JSON object (a disk fault, a
 * hand edit) would make the hub refuse the whole batch, so it is skipped, and counted.
 */
export function readSegment(path: string): { lines: string[]; entries: object[]; skipped: number } {
  const lines: string[] = [];
  const entries: object[] = [];
  let skipped = 0;
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (line === "") continue;
    const entry = parseEntry(line);
    if (entry === undefined) {
      skipped++;
      continue;
    }
    entries.push(entry);
    lines.push(line);
  }
  return { lines, entries, skipped };
}

function parseEntry(line: string): object | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}
