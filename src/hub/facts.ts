/**
 * Each cluster's facts as the hub holds them: declared at registration, reported by its
 * agent once it reads the API server (src/api/intents.ts), and the effective ones its
 * manifests are rendered and checked with: the declared facts, with the reported values
 * where there are some (the Kubernetes version, the zones, the capacity). Whether the
 * network plugin enforces NetworkPolicy cannot be observed: the declared value stays, and a
 * cluster that declared nothing is taken to enforce it (as Calico and Cilium do; declare
 * `networkPolicy: false` for flannel). A cluster with neither has no facts: it is not
 * checked, and its agent applies nothing but waits for facts.
 */
import { canonicalJson } from "../canonical/index.js";
import type { ClusterFacts } from "../intents/facts.js";
import type { ReportedFacts } from "../api/intents.js";

export interface Reported {
  readonly facts: ReportedFacts;
  readonly at: string;
}

export function effectiveFacts(declared: ClusterFacts | undefined, reported: ReportedFacts | undefined): ClusterFacts | undefined {
  if (reported === undefined) return declared;
  const capacity = { ...(declared?.capacity ?? {}), ...Object.fromEntries(Object.entries(reported.capacity).filter(([, v]) => v !== undefined)) } as Record<string, string>;
  return {
    kubernetesVersion: reported.kubernetesVersion,
    networkPolicy: declared?.networkPolicy ?? true,
    ...(Object.keys(capacity).length === 0 ? {} : { capacity }),
    // A cluster whose nodes carry no zone label: its declared zones, if any, are all there is to go by.
    ...(reported.zones.length > 0 ? { zones: [...reported.zones].sort() } : declared?.zones === undefined ? {} : { zones: declared.zones }),
  };
}

/** The facts of every cluster one hub process holds (Federation loads them with the clusters). */
export class FactsBook {
  private readonly declaredFacts = new Map<string, ClusterFacts>();
  private readonly reportedFacts = new Map<string, Reported>();
  private readonly effective = new Map<string, ClusterFacts>();
  private readonly keys = new Map<string, string>();

  set(cluster: string, declared: ClusterFacts | null, reported: ReportedFacts | null, reportedAt: Date | null): void {
    this.delete(cluster);
    if (declared !== null) this.declaredFacts.set(cluster, declared);
    if (reported !== null) this.reportedFacts.set(cluster, { facts: reported, at: new Date(reportedAt ?? 0).toISOString() });
    const facts = effectiveFacts(declared ?? undefined, reported ?? undefined);
    if (facts !== undefined) {
      this.effective.set(cluster, facts);
      this.keys.set(cluster, canonicalJson(facts));
    }
  }

  delete(cluster: string): void {
    this.declaredFacts.delete(cluster);
    this.reportedFacts.delete(cluster);
    this.effective.delete(cluster);
    this.keys.delete(cluster);
  }

  /** The effective facts in canonical JSON, "" for none: what a cluster's bundle was signed with is compared to it. */
  key(cluster: string): string {
    return this.keys.get(cluster) ?? "";
  }

  /** The effective facts: what the cluster's manifests are rendered and checked with. */
  get(cluster: string): ClusterFacts | undefined {
    return this.effective.get(cluster);
  }

  declared(cluster: string): ClusterFacts | undefined {
    return this.declaredFacts.get(cluster);
  }

  reported(cluster: string): Reported | undefined {
    return this.reportedFacts.get(cluster);
  }

  /** Whether a report says something new (the time of a report aside). */
  changes(cluster: string, report: ReportedFacts): boolean {
    const held = this.reportedFacts.get(cluster);
    return held === undefined || canonicalJson(held.facts) !== canonicalJson(report);
  }
}
