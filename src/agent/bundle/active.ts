/**
 * The bundle the agent enforces now: one verified bundle, swapped atomically. Every
 * decision reads `current` once, so it sees the old set or the new one, never a mix.
 * Nothing here ever removes or loosens policy because the hub is unreachable: a bundle is
 * replaced only by a newer verified one, and a bundle on the disk is enforced only if it is
 * at least as new as the newest this agent has verified (the high-water mark): falling back
 * to an older one would be a rollback.
 */
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { BundleError, decodeBundle, encodeBundle, keyIdOf, signerKeyId, verifyBundle, type Bundle, type BundleMetadata, type Held, type Trust } from "../../bundle/index.js";
import { prepare } from "../../decision/prepare.js";
import { writeFileAtomic } from "../../files/write.js";
import { effectivePolicySetFromBytes, type EffectivePolicySet } from "../../layering/effective.js";
import type { Log } from "../log.js";
import { TrustError } from "../../trust/index.js";
import type { HighWater, HighWaterMark } from "./high-water.js";

export interface LoadedBundle {
  readonly metadata: BundleMetadata;
  readonly set: EffectivePolicySet;
  /** Where it came from: "disk" at boot, "hub" when pulled. */
  readonly source: "disk" | "hub";
  readonly since: Date;
}

export interface Refusal {
  readonly problem: string;
  readonly message: string;
  readonly at: string;
}

/**
 * Two generations on disk: the bundle enforced, and the one before it. Both names only
 * ever hold a bundle that verified: a file refused at boot is renamed
 * `<name>.refused-<time>` (kept for the operator to inspect), so that it can never become
 * the previous generation.
 */
const CURRENT = "current.bundle";
const PREVIOUS = "previous.bundle";

export class ActiveBundle {
  current: LoadedBundle | undefined;
  lastRefusal: Refusal | undefined;

  constructor(
    private readonly dir: string,
    private readonly trust: (now?: Date) => Trust,
    private readonly highWater: HighWaterMark,
    private readonly log: Log,
    private readonly now: () => Date,
    /** Why the roots on disk do not verify (src/agent/bundle/roots.ts): only the bundle held is enforced, nothing new. */
    private readonly degraded: () => string | undefined = () => undefined,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private use(bundle: Bundle, metadata: BundleMetadata, source: "disk" | "hub"): LoadedBundle {
    const set = effectivePolicySetFromBytes(bundle.target);
    // Compile before the swap, so that the first decision on the new set pays nothing.
    prepare(set);
    const loaded = { metadata, set, source, since: this.now() };
    this.current = loaded;
    return loaded;
  }

  /**
   * At boot, before the hub is reached: the bundle on disk, verified again (a tampered file
   * is refused and moved aside), else the one before it, each only if it is at least as new
   * as the high-water mark (and, at the mark's version, has its hash); none means
   * fail-closed until the hub answers.
   */
  loadFromDisk(): LoadedBundle | undefined {
    let trust: Trust;
    try {
      trust = this.trust();
    } catch (error) {
      // Not the files' fault: they stay where they are.
      this.refused("untrusted-key", `no bundle on disk can be verified: ${reason(error)}`);
      return undefined;
    }
    const reading = this.highWater.read();
    if (reading.state === "unreadable") {
      // Without the mark, nothing on disk can be told from a rollback: wait for the hub.
      this.refused("rollback", `no bundle on disk is enforced: ${reading.why}; the hub's next bundle restores it`);
      return undefined;
    }
    const mark = reading.state === "held" ? reading.mark : undefined;
    // An agent that pins one key (enrolled before roots): the mark must name it. Under a
    // root, the key that signed the mark's bundle may since have rotated out; what is on
    // disk is verified against the root held now.
    if (mark !== undefined && trust.authorize === undefined && trust.publicKey !== undefined && mark.keyId !== keyIdOf(trust.publicKey)) {
      this.refused("untrusted-key", `no bundle on disk is enforced: the pinned bundle key is not the one that signed the newest bundle this agent verified (key ${mark.keyId})`);
      return undefined;
    }
    const degraded = this.degraded();
    for (const name of [CURRENT, PREVIOUS]) {
      const path = join(this.dir, name);
      if (!existsSync(path)) continue;
      try {
        const bundle = decodeBundle(readFileSync(path));
        const metadata = verifyBundle(bundle, trust, mark, undefined);
        // Roots that do not verify may have forgotten a revocation: only the very bundle this
        // agent verified last (the mark's version and hash) is enforced, nothing newer.
        if (degraded !== undefined && (mark === undefined || metadata.version !== mark.version)) {
          this.refused("root-chain-broken", `${name} on disk is not enforced: it is not the bundle this agent verified last, and ${degraded}`);
          continue;
        }
        // No expiry check for what the agent already held (at most the mark's version): expiry
        // governs acceptance, not use. A newer one it never accepted is held to its expiry.
        if (mark !== undefined && metadata.version > mark.version && Date.parse(metadata.expires) <= this.now().getTime()) {
          throw new BundleError("expired", `version ${metadata.version} is newer than any this agent verified, and expired at ${metadata.expires}`);
        }
        const loaded = this.use(bundle, metadata, "disk");
        this.highWater.raise(markOf(bundle, trust));
        this.log.info("enforcing the bundle on disk", { file: name, version: metadata.version, hash: metadata.targetHash });
        return loaded;
      } catch (error) {
        const problem = error instanceof BundleError ? error.problem : "malformed";
        this.refused(problem, `${name} on disk: ${reason(error)}`);
        // With roots that do not verify, a refusal may be theirs, not the file's: it stays.
        if (error instanceof BundleError && problem !== "rollback" && degraded === undefined) this.setAside(name);
      }
    }
    return undefined;
  }

  private setAside(name: string): void {
    const aside = `${name}.refused-${this.now().toISOString().replace(/[:.]/g, "-")}`;
    try {
      renameSync(join(this.dir, name), join(this.dir, aside));
      this.log.warn("moved a refused bundle aside", { file: name, to: aside });
    } catch (error) {
      this.log.warn("could not move a refused bundle aside", { file: name, error: reason(error) });
    }
  }

  /** A bundle offered by the hub (or a mirror): verified, persisted, then enforced. */
  offer(bytes: Buffer, now: Date): LoadedBundle | undefined {
    let bundle: Bundle;
    let metadata: BundleMetadata;
    try {
      bundle = decodeBundle(bytes);
      // Held: the bundle enforced, or, enforcing none, the newest this agent ever verified.
      const held: Held | undefined = this.current === undefined ? this.highWater.current : { version: this.current.metadata.version, targetHash: this.current.metadata.targetHash };
      metadata = verifyBundle(bundle, this.trust(now), held, now);
    } catch (error) {
      const problem = error instanceof BundleError ? error.problem : error instanceof TrustError ? `root-${error.problem}` : "malformed";
      this.refused(problem, reason(error));
      return undefined;
    }
    this.highWater.confirmed = true;
    if (this.current !== undefined && this.current.metadata.version === metadata.version) return this.current;
    this.persist(bundle);
    this.highWater.raise(markOf(bundle, this.trust()));
    const loaded = this.use(bundle, metadata, "hub");
    this.log.info("enforcing a new bundle", { version: metadata.version, hash: metadata.targetHash, policies: loaded.set.document.policies.length });
    return loaded;
  }

  /** The bundle enforced becomes the previous one; the new one is written whole, and flushed, before it is current. */
  private persist(bundle: Bundle): void {
    const current = join(this.dir, CURRENT);
    if (existsSync(current)) renameSync(current, join(this.dir, PREVIOUS));
    writeFileAtomic(current, encodeBundle(bundle));
  }

  /** A bundle refused before it could be verified (its root could not be): recorded as any refusal. */
  refuse(problem: string, message: string): void {
    this.refused(problem, message);
  }

  private refused(problem: string, message: string): void {
    this.lastRefusal = { problem, message, at: this.now().toISOString() };
    this.log.warn("refused a bundle", { problem, message });
  }

  /** The hub answered that the bundle held is its newest for this cluster: the high-water mark is confirmed. */
  confirmedByHub(): void {
    if (this.current !== undefined) this.highWater.confirmed = true;
  }

  /** The newest version this agent has verified, and whether its hub confirmed it since the agent started. */
  highWaterMark(): { readonly version: number | null; readonly confirmed: boolean } {
    return { version: this.highWater.current?.version ?? null, confirmed: this.highWater.confirmed };
  }

  /** Whether the bundle enforced has passed its expiry (it stays enforced: the agent reports itself stale). */
  expired(now: Date): boolean {
    return this.current !== undefined && Date.parse(this.current.metadata.expires) <= now.getTime();
  }
}

function markOf(bundle: Bundle, trust: Trust): HighWater {
  const metadata = bundle.envelope.signed;
  return { version: metadata.version, targetHash: metadata.targetHash, keyId: signerKeyId(bundle.envelope, trust) };
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
