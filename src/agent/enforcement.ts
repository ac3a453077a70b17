/**
 * What the agent enforces now: one verified bundle, swapped atomically. Every decision
 * reads `current` once, so it sees the old set or the new one, never a mix. Nothing here
 * ever removes or loosens policy because the hub is unreachable: a bundle is replaced only
 * by a newer verified one.
 */
import { createPublicKey } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BundleError, decodeBundle, encodeBundle, verifyBundle, type Bundle, type BundleMetadata, type Trust } from "../bundle/index.js";
import { prepare } from "../decision/prepare.js";
import { effectivePolicySetFromBytes, type EffectivePolicySet } from "../layering/effective.js";

export interface Enforced {
  readonly metadata: BundleMetadata;
  readonly set: EffectivePolicySet;
  /** Where it came from: "disk" at boot, "hub" when pulled. */
  readonly source: "disk" | "hub";
  readonly since: Date;
}

export interface Log {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/**
 * Two generations on disk: the bundle enforced, and the one before it. Both names only
 * ever hold a bundle that verified: a file refused at boot is renamed
 * `<name>.refused-<time>` (kept for the operator to inspect), so that it can never become
 * the previous generation.
 */
const CURRENT = "current.bundle";
const PREVIOUS = "previous.bundle";

export class Enforcement {
  current: Enforced | undefined;
  lastRefusal: { readonly problem: string; readonly message: string; readonly at: string } | undefined;

  constructor(
    private readonly dir: string,
    private readonly trust: () => Trust,
    private readonly log: Log,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private use(bundle: Bundle, metadata: BundleMetadata, source: "disk" | "hub"): Enforced {
    const set = effectivePolicySetFromBytes(bundle.target);
    // Compile before the swap, so that the first decision on the new set pays nothing.
    prepare(set);
    const enforced = { metadata, set, source, since: new Date() };
    this.current = enforced;
    return enforced;
  }

  /**
   * At boot, before the hub is reached: the bundle on disk, verified again (a tampered file
   * is refused and moved aside), else the one before it; none means fail-closed until the
   * hub answers.
   */
  loadFromDisk(): Enforced | undefined {
    let trust: Trust;
    try {
      trust = this.trust();
    } catch (error) {
      // Not the files' fault: they stay where they are.
      this.refused("untrusted-key", `no bundle on disk can be verified: ${(error as Error).message}`);
      return undefined;
    }
    for (const name of [CURRENT, PREVIOUS]) {
      const path = join(this.dir, name);
      if (!existsSync(path)) continue;
      try {
        const bundle = decodeBundle(readFileSync(path));
        // No expiry check for what the agent already held: expiry governs acceptance, not use.
        const metadata = verifyBundle(bundle, trust, undefined, undefined);
        const enforced = this.use(bundle, metadata, "disk");
        this.log.info("enforcing the bundle on disk", { file: name, version: metadata.version, hash: metadata.targetHash });
        return enforced;
      } catch (error) {
        const problem = error instanceof BundleError ? error.problem : "malformed";
        this.refused(problem, `${name} on disk: ${(error as Error).message}`);
        if (error instanceof BundleError) this.setAside(name);
      }
    }
    return undefined;
  }

  private setAside(name: string): void {
    const aside = `${name}.refused-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    try {
      renameSync(join(this.dir, name), join(this.dir, aside));
      this.log.warn("moved a refused bundle aside", { file: name, to: aside });
    } catch (error) {
      this.log.warn("could not move a refused bundle aside", { file: name, error: (error as Error).message });
    }
  }

  /** A bundle offered by the hub (or a mirror): verified, persisted, then enforced. */
  offer(bytes: Buffer, now: Date): Enforced | undefined {
    let bundle: Bundle;
    let metadata: BundleMetadata;
    try {
      bundle = decodeBundle(bytes);
      const held = this.current === undefined ? undefined : { version: this.current.metadata.version, targetHash: this.current.metadata.targetHash };
      metadata = verifyBundle(bundle, this.trust(), held, now);
    } catch (error) {
      const problem = error instanceof BundleError ? error.problem : "malformed";
      this.refused(problem, (error as Error).message);
      return undefined;
    }
    if (this.current !== undefined && this.current.metadata.version === metadata.version) return this.current;
    this.persist(bundle);
    const enforced = this.use(bundle, metadata, "hub");
    this.log.info("enforcing a new bundle", { version: metadata.version, hash: metadata.targetHash, policies: enforced.set.document.policies.length });
    return enforced;
  }

  private persist(bundle: Bundle): void {
    const current = join(this.dir, CURRENT);
    if (existsSync(current)) renameSync(current, join(this.dir, PREVIOUS));
    const tmp = join(this.dir, `.${CURRENT}.tmp`);
    writeFileSync(tmp, encodeBundle(bundle), { mode: 0o600 });
    renameSync(tmp, current);
  }

  private refused(problem: string, message: string): void {
    this.lastRefusal = { problem, message, at: new Date().toISOString() };
    this.log.warn("refused a bundle", { problem, message });
  }

  /** Whether the bundle enforced has passed its expiry (it stays enforced: the agent reports itself stale). */
  expired(now: Date): boolean {
    return this.current !== undefined && Date.parse(this.current.metadata.expires) <= now.getTime();
  }
}

export function trustFrom(bundleKeyPem: string, federation: string, cluster: string): Trust {
  return { publicKey: createPublicKey(bundleKeyPem), federation, cluster };
}
