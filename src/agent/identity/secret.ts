/**
 * The identity kept in a Secret as well as on the disk (src/kube/identity-secret.ts): at
 * start, a Secret newer than the disk (or a disk with none, as for a rescheduled pod)
 * restores the data folder's identity; afterwards every new identity (enrolment, renewal)
 * is written to the Secret too, and one on the disk that the Secret lacks is written at
 * start. A Secret that cannot be read or used is said in the log and /healthz, never
 * crashes the agent, and is replaced at the next save.
 */
import { join } from "node:path";
import { loadCredentials, saveCredentials, type Credentials } from "../../identity/credentials.js";
import { IdentitySecret, type SecretName } from "../../kube/identity-secret.js";
import type { KubeAccess } from "../../kube/index.js";
import type { Log } from "../log.js";
import type { AgentCredentials } from "./credentials.js";

export interface IdentitySecretHealth {
  readonly secret: string;
  /** Whether the Secret holds the identity the agent holds now. */
  readonly inSync: boolean;
  readonly lastError: string | null;
}

export class IdentitySecretSync {
  private readonly secret: IdentitySecret;
  private lastError: string | null = null;
  private inSync = false;
  private pending: Promise<void> = Promise.resolve();

  constructor(
    access: KubeAccess,
    where: SecretName,
    cluster: string,
    private readonly log: Log,
  ) {
    this.secret = new IdentitySecret(access, where, cluster);
  }

  /**
   * Before the agent loads its identity: the Secret's, written to the data folder when the
   * folder has none or an older one. Resolves whether the Secret holds one that the folder
   * now holds too.
   */
  async restore(dataDir: string): Promise<void> {
    const dir = join(dataDir, "identity");
    const local = loadCredentials(dir);
    let read;
    try {
      read = await this.secret.read();
    } catch (error) {
      this.failed(error);
      return;
    }
    if ("refused" in read) {
      this.failed(new Error(read.refused));
      return;
    }
    if ("absent" in read) return;
    const stored = read.credentials;
    if (local === undefined || Date.parse(stored.notAfter) > Date.parse(local.notAfter)) {
      saveCredentials(dir, stored);
      this.log.info(`identity restored from ${this.secret.describe()}`, { spiffeId: stored.spiffeId, notAfter: stored.notAfter });
    }
    this.inSync = local === undefined || Date.parse(stored.notAfter) >= Date.parse(local.notAfter);
  }

  /** Keeps the Secret in step with `credentials` from now on, writing the one held now if the Secret lacks it. */
  follow(credentials: AgentCredentials): void {
    credentials.onReplace((next) => this.save(next));
    const held = credentials.current;
    if (held !== undefined && !this.inSync) this.save(held);
  }

  private save(credentials: Credentials): void {
    this.pending = this.pending.then(async () => {
      try {
        await this.secret.write(credentials);
        this.inSync = true;
        this.lastError = null;
        this.log.info(`identity saved to ${this.secret.describe()}`, { notAfter: credentials.notAfter });
      } catch (error) {
        this.inSync = false;
        this.failed(error);
      }
    });
  }

  /** Settles when the writes started so far have. */
  flushed(): Promise<void> {
    return this.pending;
  }

  private failed(error: unknown): void {
    this.lastError = error instanceof Error ? error.message : String(error);
    this.log.warn(this.lastError);
  }

  health(): IdentitySecretHealth {
    return { secret: this.secret.describe(), inSync: this.inSync, lastError: this.lastError };
  }
}
