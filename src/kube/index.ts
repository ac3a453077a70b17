/**
 * The agent's access to its cluster's Kubernetes API, through the official client
 * (`@kubernetes/client-node`, unmodified): where to find the API server (config.ts), an
 * informer that keeps one resource type in memory by list and watch (informer.ts), the
 * Namespaces every admission decision needs (namespaces.ts), the identity Secret
 * (identity-secret.ts), and leader election on a Lease for singleton work (lease.ts).
 */
export { describeKubeAccess, loadKubeAccess, type KubeAccess, type KubeAccessOptions, type KubeSource } from "./config.js";
export { describeFailure, Informer, MAX_RETRY_AFTER_MS, retryAfterMs, statusOf, type InformerHealth, type InformerOptions, type KubeLog, type ListPage } from "./informer.js";
export { DEFAULT_FETCH_TIMEOUT_MS, NamespaceCache, namespaceForDecision, withSignal, type NamespaceCacheHealth, type NamespaceLookup } from "./namespaces.js";
export { IdentitySecret, IDENTITY_SECRET_TYPE, parseSecretName, type SecretName, type SecretRead } from "./identity-secret.js";
export { LeaderElection, type LeaseHealth, type LeaseOptions } from "./lease.js";
