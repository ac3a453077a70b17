/**
 * What a cluster is, as far as translating intents needs to know: its Kubernetes version,
 * whether its network plugin enforces NetworkPolicy, its capacity (for quotas) and the zones
 * its nodes are labelled with (for residency). Declared at registration, reported by the
 * agent once it reads the API server; validated here, at the boundary.
 */
import { z } from "zod";

export const clusterFacts = z.strictObject({
  /** `1.31`, or `v1.31.2` as the API server reports it. */
  kubernetesVersion: z.string().regex(/^v?1\.[0-9]{1,3}(\.[0-9]+)?([-+].*)?$/, "must be a Kubernetes version such as 1.31 or v1.31.2"),
  /** Whether the network plugin enforces NetworkPolicy (false: it ignores them, as flannel does). */
  networkPolicy: z.boolean(),
  /** Allocatable capacity of the whole cluster: `cpu`, `memory`, … as quantities. */
  capacity: z.record(z.string().min(1), z.string().min(1)).optional(),
  /** Zones its nodes carry in their zone label (topology.kubernetes.io/zone). */
  zones: z.array(z.string().min(1)).optional(),
});
export type ClusterFacts = z.infer<typeof clusterFacts>;

/** The minor version (1.31 → 31); the schema guarantees the shape. */
export function minorVersion(facts: ClusterFacts): number {
  return Number(/^v?1\.([0-9]+)/.exec(facts.kubernetesVersion)![1]);
}

/** ValidatingAdmissionPolicy is GA (admissionregistration.k8s.io/v1) from Kubernetes 1.30. */
export const VAP_MINOR = 30;
