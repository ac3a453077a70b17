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

export class AgentCredentials {
  private readonly dir: string;
  private held: Credentials | undefined;
  private readonly saved: ((credentials: Credentials) => void)[] = [];

  /** Loads what the data folder holds; refuses a folder that holds another cluster's identity. */
  constructor(
    dataDir: string,
    private readonly cluster: string,
    private readonly hubUrl: string,
  ) {
    this.dir = join(dataDir, "identity");
    this.held = loadCredentials(this.dir);
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
    return clusterEndpoint(url, this.held);
  }

  /** What a bundle must be signed with and name: the key pinned at enrolment, this federation and cluster. */
  trust(): Trust {
    if (this.held === undefined) throw new Error("not enrolled: no pinned bundle key");
    const id = parseClusterSpiffeId(this.held.spiffeId);
    return { publicKey: createPublicKey(this.held.bundleKeyPem), federation: id?.federation ?? "", cluster: this.cluster };
  }
}
