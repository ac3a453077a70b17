/**
 * The agent's root of trust (src/trust): root version 1, pinned at enrolment, and the
 * newest root it verified from there, kept in the identity folder (`trusted-root.json`).
 * A bundle that names a newer root than the one held makes the agent fetch the roots in
 * between from its source (`GET /v1/trust/roots?after=N`) and verify each against the one
 * before it; only then is the bundle verified, against the newest.
 *
 * An agent enrolled before roots pinned only the hub's bundle key. It keeps enforcing the
 * bundles it holds and those its pinned key signs that name no root; one that names a root
 * is refused (it pins no root version 1 to verify it from) until it enrols again. There is
 * no migration: a root version 1 "signed by the pinned bundle key" could be made by whoever
 * stole that key, or by a region holding its own.
 */
import { existsSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../../files/write.js";
import type { Credentials } from "../../identity/credentials.js";
import { encodeRoot, parseRootEnvelope, TrustError, verifyRootSelf, verifyRootUpdate, type RootEnvelope, type RootMetadata } from "../../trust/index.js";

/** Fetches root versions after `after`, oldest first (a page; the caller asks again). */
export type RootSource = (after: number) => Promise<readonly unknown[]>;

export class TrustRoots {
  private held: RootMetadata | undefined;
  private readonly path: string;

  constructor(identityDir: string) {
    this.path = join(identityDir, "trusted-root.json");
  }

  /**
   * The newest root verified, from memory or the identity folder (checked again: its shape,
   * its own signatures, the federation), else root version 1 as pinned at enrolment;
   * undefined for an agent enrolled before roots that has not migrated yet.
   */
  current(credentials: Credentials | undefined, federation: string): RootMetadata | undefined {
    if (this.held !== undefined) return this.held;
    if (existsSync(this.path)) {
      try {
        this.held = verifyRootSelf(parseRootEnvelope(readFileSync(this.path, "utf8")), federation);
        return this.held;
      } catch {
        // Not a root this agent verified: set aside; it starts again from version 1 (pinned).
        renameSync(this.path, `${this.path}.refused-${Date.now()}`);
      }
    }
    if (credentials?.rootJson !== undefined) {
      const first = verifyRootSelf(parseRootEnvelope(credentials.rootJson), federation);
      if (first.version !== 1) throw new TrustError("malformed", `the root pinned at enrolment is version ${first.version}, not 1`);
      this.held = first;
    }
    return this.held;
  }

  /**
   * Brings the root up to `wanted` (at least) from `source`, verifying every step; each
   * verified root is written to the identity folder before the next. Throws TrustError (or
   * the source's error) and keeps what it verified so far.
   */
  async catchUp(credentials: Credentials, federation: string, wanted: number, source: RootSource): Promise<RootMetadata> {
    let root = this.current(credentials, federation);
    if (root === undefined) root = this.migrate();
    while (root.version < wanted) {
      const page = await source(root.version);
      if (page.length === 0) throw new TrustError("version-skipped", `the bundle names root version ${wanted}, but its source has none after version ${root.version}`);
      for (const raw of page) {
        const envelope: RootEnvelope = parseRootEnvelope(raw);
        root = verifyRootUpdate(root, envelope);
        this.save(envelope);
        this.held = root;
      }
    }
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
    writeFileAtomic(this.path, `${encodeRoot(envelope)}\n`);
  }
}
