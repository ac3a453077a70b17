/**
 * The newest bundle this agent has verified (its version and policy-set hash) and the key
 * that signed it: a high-water mark kept apart from the bundles, in the identity folder.
 * Every bundle the agent loads from its disk is checked against it, so that no copy of an
 * older bundle over the current one, and no fallback to `previous.bundle`, can roll the
 * policy back; a bundle with the mark's version must have its hash (no equivocation); and
 * the pinned key must be the one the mark names.
 *
 * Replacing the bundle folder cannot lower the mark. Whoever can write the identity folder
 * can also replace the agent's key, certificate and pinned bundle key: that folder is the
 * agent's identity, to be protected as such (see the README: the agent's disk).
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFileAtomic } from "../../files/write.js";

export interface HighWater {
  readonly version: number;
  readonly targetHash: string;
  /** The id of the key the bundle was signed with (the pinned key). */
  readonly keyId: string;
}

/** What the mark file says: a mark, none yet (an agent that never accepted a bundle), or unreadable. */
export type HighWaterReading = { readonly state: "none" } | { readonly state: "held"; readonly mark: HighWater } | { readonly state: "unreadable"; readonly why: string };

function parse(text: string): HighWater | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { version, targetHash, keyId } = value as Record<string, unknown>;
  if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 0 || typeof targetHash !== "string" || typeof keyId !== "string") return undefined;
  return { version, targetHash, keyId };
}

export class HighWaterMark {
  /** Whether the hub, reached over mutual TLS, has confirmed the mark since this process started. */
  confirmed = false;
  private mark: HighWater | undefined;

  constructor(private readonly path: string) {}

  read(): HighWaterReading {
    if (!existsSync(this.path)) return { state: "none" };
    const mark = parse(readFileSync(this.path, "utf8"));
    if (mark === undefined) return { state: "unreadable", why: `${this.path} is not a bundle high-water mark` };
    this.mark = mark;
    return { state: "held", mark };
  }

  get current(): HighWater | undefined {
    return this.mark;
  }

  /** Raises the mark to a bundle just verified and persisted (never lowers it); flushed to the disk. */
  raise(mark: HighWater): void {
    if (this.mark !== undefined && this.mark.version >= mark.version) return;
    writeFileAtomic(this.path, `${JSON.stringify(mark)}\n`);
    this.mark = mark;
  }
}
