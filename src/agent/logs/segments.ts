/**
 * Decision-log segments on disk: one file of JSON lines per flush, named
 * `<sequence>-<uuid>.ndjson` so that they sort oldest first and the uuid can name the
 * batch that carries them.
 */
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../../files/write.js";

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

/**
 * Writes one segment, whole or not at all. Not flushed to the disk: segments are written
 * every second, and a machine crash losing the last seconds of them is cheaper than an
 * fsync a second (a process crash loses nothing the page cache holds).
 */
export function writeSegment(dir: string, sequence: number, lines: readonly string[]): void {
  const name = `${String(sequence).padStart(12, "0")}-${randomUUID()}.ndjson`;
  writeFileAtomic(join(dir, name), `${lines.join("\n")}\n`, { sync: false });
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
