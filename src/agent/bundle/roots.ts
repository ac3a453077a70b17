/**
 * The agent's root of trust (src/trust): root version 1, pinned at enrolment, and the
 * newest root it verified from there, kept in the identity folder (`trusted-root.json`).
 * A bundle that names a newer root than the one held makes the agent fetch the roots in
 * between from its source (`GET /v1/trust/roots?after=N`) and verify each against the one
 * before it; only then is the bundle verified, against the newest.
 *
 * An agent enrolled before roots pinned only the hub's bundle key. It migrates at its first
 * bundle that names a root: it fetches root version 1 and accepts it only if it lists the
 * key it pinned as a bundles key (a root that does not is refused, clearly, and the agent
 * keeps enforcing what it holds). From then on it verifies as any agent.
 */
import { createPublicKey } from "node:crypto";
import { existsSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { keyIdOf } from "../../bundle/index.js";
import { writeFileAtomic } from "../../files/write.js";
import type { Credentials } from "../../identity/credentials.js";
import { canonicalJson } from "../../canonical/index.js";
import { encodeRoot, parseRootEnvelope, signatureValid, TrustError, verifyRootSelf, verifyRootUpdate, type RootEnvelope, type RootMetadata } from "../../trust/index.js";

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
    if (root === undefined) root = await this.migrate(credentials, federation, source);
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

  /** An agent enrolled before roots: root version 1 is accepted if it lists the bundle key it pinned. */
  private async migrate(credentials: Credentials, federation: string, source: RootSource): Promise<RootMetadata> {
    const [raw] = await source(0);
    if (raw === undefined) throw new TrustError("malformed", "the source serves no root version 1");
    const envelope = parseRootEnvelope(raw);
    const first = verifyRootSelf(envelope, federation);
    if (first.version !== 1) throw new TrustError("version-skipped", `the source's first root is version ${first.version}, not 1`);
    // The binding to what the agent already trusts: root version 1 signed by the bundle key
    // it pinned (the hub signs version 1 with its bundles key as well as its root key).
    const pinned = keyIdOf(createPublicKey(credentials.bundleKeyPem));
    const bytes = Buffer.from(canonicalJson(first), "utf8");
    const bySigned = envelope.signatures.some((s) => s.keyId === pinned && signatureValid(bytes, credentials.bundleKeyPem, s.sig));
    if (!first.roles.bundles.keyIds.includes(pinned) || !bySigned) {
      throw new TrustError(
        "unknown-key",
        `root version 1 is not signed by the bundle key this agent pinned at enrolment (${pinned.slice(0, 12)}…): it is not this federation's root, or the agent must enrol again`,
      );
    }
    this.save(envelope);
    this.held = first;
    return first;
  }

  private save(envelope: RootEnvelope): void {
    writeFileAtomic(this.path, `${encodeRoot(envelope)}\n`);
  }
}
