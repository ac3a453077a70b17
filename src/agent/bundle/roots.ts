/**
 * The agent's root of trust (src/trust): root version 1, pinned at enrolment
 * (`identity/root-1.json`), and every later root it verified, each kept in the identity
 * folder (`identity/roots/<N>.json`), with the newest also in `identity/trusted-root.json`.
 * A bundle that names a newer root than the one held makes the agent fetch the roots in
 * between from its source (`GET /v1/trust/roots?after=N`) and verify each against the one
 * before it; only then is the bundle verified, against the newest.
 *
 * At load the chain is rebuilt from the pinned version 1, each kept root verified against
 * its predecessor. A chain that does not reach the version `trusted-root.json` names (a
 * file altered, missing or unreadable) is not trusted as far as it goes: falling back to an
 * older root would forget rotations and revocations. The agent is then *degraded*: it keeps
 * enforcing the bundle it held (the high-water mark's, verified under the roots that still
 * verify), refuses every new bundle with the reason, and leaves that state only when a chain
 * fetched from a hub verifies up to (at least) the version it had reached.
 *
 * An agent enrolled before roots pinned only the hub's bundle key. It keeps enforcing the
 * bundles it holds and those its pinned key signs that name no root; one that names a root
 * is refused (it pins no root version 1 to verify it from) until it enrols again. There is
 * no migration: a root version 1 "signed by the pinned bundle key" could be made by whoever
 * stole that key, or by a region holding its own.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../../files/write.js";
import type { Credentials } from "../../identity/credentials.js";
import { encodeRoot, parseRootEnvelope, TrustError, verifyRootSelf, verifyRootUpdate, type RootEnvelope, type RootMetadata } from "../../trust/index.js";

/** Fetches root versions after `after`, oldest first (a page; the caller asks again). */
export type RootSource = (after: number) => Promise<readonly unknown[]>;

/** Why new bundles are refused while the roots on disk do not verify, and the version a fetched chain must reach. */
export interface Degraded {
  readonly reason: string;
  /** The version `trusted-root.json` names (unreadable: the newest root file kept; none: the source's newest). */
  readonly reach: number | undefined;
}

/** How many roots an agent keeps, at most (a chain longer than this is not loaded: degraded). */
const MAX_CHAIN = 100_000;

export class TrustRoots {
  private held: RootMetadata | undefined;
  private degraded: Degraded | undefined;
  private loaded = false;
  private readonly newest: string;
  private readonly dir: string;

  constructor(identityDir: string) {
    this.newest = join(identityDir, "trusted-root.json");
    this.dir = join(identityDir, "roots");
  }

  /**
   * The newest root verified, from memory or rebuilt from the identity folder (version 1 as
   * pinned at enrolment, then each kept root against its predecessor); undefined for an
   * agent enrolled before roots. When the chain on disk does not verify, the newest root
   * that does (see `degradation`).
   */
  current(credentials: Credentials | undefined, federation: string): RootMetadata | undefined {
    if (this.held !== undefined || credentials?.rootJson === undefined) return this.held;
    const first = verifyRootSelf(parseRootEnvelope(credentials.rootJson), federation);
    if (first.version !== 1) throw new TrustError("malformed", `the root pinned at enrolment is version ${first.version}, not 1`);
    this.held = first;
    if (!this.loaded) this.load();
    return this.held;
  }

  /**
   * While degraded, the root to verify the bundle held on disk with (and only it: the
   * caller checks it is the high-water mark's): `trusted-root.json` if it still verifies by
   * its own root keys and is newer than the chain that verifies, else that chain's newest.
   */
  forBundleHeld(credentials: Credentials | undefined, federation: string): RootMetadata | undefined {
    const chain = this.current(credentials, federation);
    if (this.degraded === undefined || chain === undefined) return chain;
    try {
      const newest = verifyRootSelf(parseRootEnvelope(readFileSync(this.newest, "utf8")), federation);
      return newest.version > chain.version ? newest : chain;
    } catch {
      return chain;
    }
  }

  /** Why new bundles are refused (the roots on disk did not verify), or undefined. */
  degradation(credentials: Credentials | undefined, federation: string): Degraded | undefined {
    this.current(credentials, federation);
    return this.degraded;
  }

  private load(): void {
    this.loaded = true;
    let claimed: number | undefined;
    const hasNewest = existsSync(this.newest);
    if (hasNewest) {
      try {
        claimed = parseRootEnvelope(readFileSync(this.newest, "utf8")).signed.version;
      } catch (error) {
        // How far it had come is then the newest root file kept, if any (else: the source's newest).
        const kept = existsSync(this.dir) ? readdirSync(this.dir).map((name) => /^(\d+)\.json$/.exec(name)?.[1]).filter((n) => n !== undefined).map(Number) : [];
        const reach = kept.length === 0 ? undefined : Math.max(...kept);
        this.degraded = { reason: `identity/trusted-root.json cannot be read (${message(error)})`, reach };
      }
    }
    for (let version = this.held!.version + 1; version <= MAX_CHAIN; version++) {
      const path = join(this.dir, `${version}.json`);
      if (!existsSync(path)) break;
      try {
        this.held = verifyRootUpdate(this.held!, parseRootEnvelope(readFileSync(path, "utf8")));
      } catch (error) {
        this.degraded = { reason: `identity/roots/${version}.json does not verify against root version ${version - 1} (${message(error)})`, reach: claimed };
        break;
      }
    }
    if (this.degraded === undefined && claimed !== undefined && claimed > this.held!.version) {
      this.degraded = { reason: `identity/trusted-root.json names root version ${claimed}, but the roots kept on disk verify only up to version ${this.held!.version}`, reach: claimed };
    }
  }

  /**
   * Brings the root up to `wanted` (at least; while degraded, up to the version reached
   * before, or the source's newest) from `source`, verifying every step; each verified root
   * is written to the identity folder before the next. Throws TrustError (or the source's
   * error) and keeps what it verified so far.
   */
  async catchUp(credentials: Credentials, federation: string, wanted: number | "newest", source: RootSource): Promise<RootMetadata> {
    let root = this.current(credentials, federation);
    if (root === undefined) root = this.migrate();
    const reach = this.degraded?.reach ?? 0;
    const need = Math.max(wanted === "newest" ? 0 : wanted, reach);
    // Wanting the newest, or degraded without knowing how far it had come: every root the source has.
    const all = wanted === "newest" || (this.degraded !== undefined && this.degraded.reach === undefined);
    while (all || root.version < need) {
      const page = await source(root.version);
      if (page.length === 0) {
        if (root.version >= need) break;
        throw new TrustError("version-skipped", `root version ${need} is wanted, but the source has none after version ${root.version}`);
      }
      for (const raw of page) {
        const envelope: RootEnvelope = parseRootEnvelope(raw);
        root = verifyRootUpdate(root, envelope);
        this.save(envelope);
        this.held = root;
      }
    }
    // A chain fetched from a hub verified up to (at least) where this agent was: trusted again.
    this.degraded = undefined;
    return root;
  }

  /**
   * An agent enrolled before roots pins no root version 1, and none is accepted for it: a
   * root signed by the bundle key it pinned proves nothing (a stolen bundles key, or a
   * region's, could make one with root keys of its own). It enrols again.
   */
  private migrate(): never {
    throw new TrustError("unknown-key", "this agent was enrolled before roots and pins no root version 1: a root signed only by its pinned bundle key is not trusted; enrol it again (polity enroll, or a new join token)");
  }

  private save(envelope: RootEnvelope): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const text = `${encodeRoot(envelope)}\n`;
    writeFileAtomic(join(this.dir, `${envelope.signed.version}.json`), text);
    writeFileAtomic(this.newest, text);
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
