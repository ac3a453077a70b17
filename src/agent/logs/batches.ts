/**
 * Decision-log batches as the hub takes them: the lines of a segment cut, in order, into
 * batches under the hub's limits.
 */

/**
 * What the hub takes in one batch is at most 10,000 entries and an 8 MiB body; a batch
 * here stays well under both. An entry larger than a batch could carry is dropped (and
 * counted) when it is logged, so that no segment ever holds one the hub would refuse.
 */
export const BATCH_LIMITS = { entries: 10_000, bytes: 4 * 1024 * 1024 } as const;

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
