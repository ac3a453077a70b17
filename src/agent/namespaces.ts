/**
 * The namespaces loop: keeps the cluster's Namespaces in memory (src/kube/namespaces.ts)
 * so that every webhook decision gets its namespace's labels and `namespaceObject`, as
 * `polity eval` does with the Namespace among its inputs. Without an API server (no
 * kubeconfig, no service account) there is no such loop: /healthz says so, and the
 * policies that need a namespace's labels fail closed under their failure policy.
 *
 * Its error in /healthz (`errors.namespaces`) is the informer's last failure (a refused
 * list, a garbage answer, a dropped watch) until a list or an event succeeds again.
 */
import type { IntentsHealth } from "./intents.js";
import type { FactsHealth } from "./facts.js";
import { describeKubeAccess, NamespaceCache, type KubeAccess, type LeaseHealth, type NamespaceCacheHealth, type NamespaceLookup } from "../kube/index.js";
import type { IdentitySecretHealth } from "./identity/secret.js";
import type { Log } from "./log.js";
import type { LoopError, Plugin } from "./plugin.js";

export interface KubeHealth {
  /** Where the API server was found: kubeconfig, KUBECONFIG, in-cluster, or none. */
  readonly source: "kubeconfig" | "KUBECONFIG" | "in-cluster" | "none";
  readonly server: string | null;
  readonly context: string | null;
  /** The namespace cache; null without an API server. */
  readonly namespaces: NamespaceCacheHealth | null;
  readonly message: string;
  /** The Secret that keeps the identity too; null without one. */
  readonly identitySecret?: IdentitySecretHealth | null;
  /** The Lease choosing the replica that does the work done once per cluster; null without one. */
  readonly lease?: LeaseHealth | null;
  /** The ValidatingWebhookConfiguration the agent keeps; null when it keeps none. */
  readonly webhookConfiguration?: { readonly applied: boolean; readonly lastError: string | null } | null;
  /** The last apply of the bundle's manifests (intents.ts); null without one. */
  readonly intents?: IntentsHealth | null;
  /** The cluster's facts as last observed and reported (facts.ts); null without an API server. */
  readonly facts?: FactsHealth | null;
}

export const NO_KUBE_MESSAGE =
  "no Kubernetes API server configured (--kubeconfig, KUBECONFIG or the in-cluster service account): namespace labels are not known, and policies that select namespaces by label or read namespaceObject fail closed under their failure policy";

export class NamespacesPlugin implements Plugin {
  readonly name = "namespaces";
  readonly cache: NamespaceCache;
  private since: number | undefined;

  constructor(
    private readonly access: KubeAccess,
    log: Log,
    private readonly now: () => Date,
    options: ConstructorParameters<typeof NamespaceCache>[2] = {},
  ) {
    this.cache = new NamespaceCache(access, log, options);
  }

  run(signal: AbortSignal): Promise<void> {
    return this.cache.run(signal);
  }

  lookup(name: string): Promise<NamespaceLookup> {
    return this.cache.lookup(name);
  }

  get synced(): boolean {
    return this.cache.synced;
  }

  lastError(): LoopError | undefined {
    const message = this.cache.health().lastError;
    if (message === null) {
      this.since = undefined;
      return undefined;
    }
    this.since ??= this.now().getTime();
    return { message, at: this.since, unreachable: false };
  }

  health(): KubeHealth {
    const namespaces = this.cache.health();
    const message = namespaces.synced ? `${namespaces.objects} namespaces in the cache` : "listing the namespaces: not ready until the first list has synced";
    return { ...describeKubeAccess(this.access), namespaces, message };
  }
}

export function noKubeHealth(): KubeHealth {
  return { ...describeKubeAccess(undefined), namespaces: null, message: NO_KUBE_MESSAGE };
}
