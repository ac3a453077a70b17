/**
 * The cluster's credentials as the agent holds them: none before its enrolment, then the
 * ones in its data folder, replaced at each renewal. Every loop that speaks to the hub
 * reaches it with them, and bundles are verified against the key they pin.
 */
import { createPublicKey } from "node:crypto";
import { join } from "node:path";
import type { Trust } from "../../bundle/index.js";
import type { HubEndpoint } from "../../client/http.js";
import { PolityError } from "../../errors.js";
import { clusterEndpoint, loadCredentials, saveCredentials, type Credentials } from "../../identity/credentials.js";
import { parseClusterSpiffeId } from "../../identity/spiffe.js";
import { serverTrust } from "../../identity/trust-bundle.js";
import { rootAuthorizer, rootExpired, TrustError, type RootMetadata } from "../../trust/index.js";
import { TrustRoots, type Degraded, type RootSource } from "../bundle/roots.js";

export class AgentCredentials {
  private readonly dir: string;
  private held: Credentials | undefined;
  private readonly saved: ((credentials: Credentials) => void)[] = [];
  private readonly roots: TrustRoots;

  /** Loads what the data folder holds; refuses a folder that holds another cluster's identity. */
  constructor(
    dataDir: string,
    private readonly cluster: string,
    private readonly hubUrl: string,
  ) {
    this.dir = join(dataDir, "identity");
    this.held = loadCredentials(this.dir);
    this.roots = new TrustRoots(this.dir);
    if (this.held !== undefined && this.held.cluster !== cluster) {
      // An operator's mistake, not a bug: said as the error family the CLI prints.
      throw PolityError.of("invalid", `the data folder ${dataDir} holds the identity of cluster ${this.held.cluster}, not ${cluster}: give that cluster's --data folder, or another for ${cluster}`);
    }
  }

  get current(): Credentials | undefined {
    return this.held;
  }

  /**
   * New credentials from the hub, used at once and saved. In memory first: the hub has
   * issued them (a join token works once), so a disk that refuses them does not undo that.
   */
  replace(credentials: Credentials): void {
    this.held = credentials;
    saveCredentials(this.dir, credentials);
    for (const listener of this.saved) listener(credentials);
  }

  /** Calls `listener` with every new identity once it is on the disk (the identity Secret keeps a copy). */
  onReplace(listener: (credentials: Credentials) => void): void {
    this.saved.push(listener);
  }

  get enrolled(): boolean {
    return this.held !== undefined;
  }

  /** The hub (or another bundle source), reached over mutual TLS with the credentials held now. */
  hub(url: string = this.hubUrl): HubEndpoint {
    if (this.held === undefined) throw new Error("not enrolled: no certificate to reach the hub with");
    return { ...clusterEndpoint(url, this.held), caPem: this.serverCaPem() };
  }

  /**
   * The CAs a hub's serving certificate may chain to (src/identity/trust-bundle.ts): those the
   * newest root this agent verified lists once it lists any (a CA rotation), until then the
   * one pinned at enrolment; never one a hub's answer named.
   */
  serverCaPem(): string {
    if (this.held === undefined) throw new Error("not enrolled: no CA pinned");
    let root: RootMetadata | undefined;
    try {
      root = this.roots.current(this.held, this.federation);
    } catch {
      root = undefined;
    }
    return serverTrust(this.held.caPem, root);
  }

  private get federation(): string {
    return (this.held === undefined ? undefined : parseClusterSpiffeId(this.held.spiffeId)?.federation) ?? "";
  }

  /** The agent's own region, from its SPIFFE ID: the only region whose bundles it accepts. */
  private get region(): string {
    return (this.held === undefined ? undefined : parseClusterSpiffeId(this.held.spiffeId)?.region) ?? "";
  }

  /**
   * What a bundle must be signed with and name: a key the newest root this agent verified
   * allows for the bundle's region (delegations checked at `now`, when given), or, for an
   * agent enrolled before roots that has not migrated, the key pinned at enrolment; this
   * federation and cluster. Given `now` (a bundle offered, not one loaded from the disk),
   * throws TrustError while no new bundle may be accepted: the roots on disk do not verify
   * (`chain-broken`), or the newest root held has expired (`expired`).
   */
  trust(now?: Date): Trust {
    if (this.held === undefined) throw new Error("not enrolled: no pinned bundle key");
    // A bundle loaded from the disk (no `now`): while the roots on disk do not verify, the
    // newest that verifies by itself, for the bundle held only (active.ts checks it is the mark's).
    const root = now === undefined ? this.roots.forBundleHeld(this.held, this.federation) : this.roots.current(this.held, this.federation);
    if (root !== undefined && now !== undefined) {
      const degraded = this.degraded();
      if (degraded !== undefined) throw new TrustError("chain-broken", `new bundles are refused until a chain of roots fetched from a hub verifies: ${degraded.reason}`);
      if (rootExpired(root, now)) throw new TrustError("expired", `the newest root this agent holds (version ${root.version}) expired at ${root.expires}: new bundles are refused until a newer root verifies (the bundle held stays enforced)`);
    }
    if (root !== undefined) return { authorize: rootAuthorizer(root, now), federation: this.federation, region: this.region, cluster: this.cluster };
    return { publicKey: createPublicKey(this.held.bundleKeyPem), federation: this.federation, region: this.region, cluster: this.cluster };
  }

  /** Why new bundles are refused whatever they are (the roots on disk do not verify), or undefined. */
  degraded(): Degraded | undefined {
    if (this.held === undefined) return undefined;
    try {
      return this.roots.degradation(this.held, this.federation);
    } catch (error) {
      return { reason: `the root pinned at enrolment does not verify (${error instanceof Error ? error.message : String(error)})`, reach: undefined };
    }
  }

  /** The newest root this agent verified, if any (undefined before enrolment or for an agent from before roots). */
  root(): RootMetadata | undefined {
    if (this.held === undefined) return undefined;
    try {
      return this.roots.current(this.held, this.federation);
    } catch {
      return undefined;
    }
  }

  /** The version of the newest root this agent verified (0: none yet). */
  rootVersion(): number {
    if (this.held === undefined) return 0;
    try {
      return this.roots.current(this.held, this.federation)?.version ?? 0;
    } catch {
      return 0;
    }
  }

  /** Verifies the roots up to `wanted` from `source` (src/agent/bundle/roots.ts). */
  async catchUpRoot(wanted: number | "newest", source: RootSource): Promise<RootMetadata> {
    const held = this.held;
    if (held === undefined) throw new Error("not enrolled: no root to start from");
    // One catch-up at a time (the bundle loop and the roots loop): each starts from where the last ended.
    const turn = this.catchingUp.then(() => this.roots.catchUp(held, this.federation, wanted, source));
    this.catchingUp = turn.catch(() => undefined);
    return turn;
  }

  private catchingUp: Promise<unknown> = Promise.resolve();
}
