/**
 * The one way Polity writes a file it must not lose or half-write: to a temporary file in
 * the same folder (same file system), flushed, then renamed over the target. A reader
 * sees the old content or the new, never a mix; a crash leaves at most a `.tmp` file
 * beside it. Private by default (mode 600): keys, tokens, bundles, configurations.
 */
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

export interface WriteOptions {
  /** File mode (default 0o600: readable by its owner only). */
  readonly mode?: number;
  /** Flush to the disk before the rename (default true); decision-log segments skip it. */
  readonly sync?: boolean;
}

/** Replaces `path` with `content`, atomically; creates its folder (mode 700) if missing. */
export function writeFileAtomic(path: string, content: string | Uint8Array, options: WriteOptions = {}): void {
  const mode = options.mode ?? 0o600;
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, "w", mode);
  try {
    const bytes = typeof content === "string" ? Buffer.from(content, "utf8") : content;
    for (let written = 0; written < bytes.length; ) written += writeSync(fd, bytes, written, bytes.length - written);
    if (options.sync !== false) fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw error;
  }
  closeSync(fd);
  // The mode given to open is filtered by the umask: set it exactly.
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}
