/**
 * A scan's report in the formats Kubernetes tools read: `wgpolicyk8s.io/v1alpha2`
 * PolicyReport and ClusterPolicyReport (the Policy WG's format, which Kyverno and
 * policy-reporter read), and its successor `openreports.io/v1alpha1` Report and
 * ClusterReport, where the cluster serves that API. One report per namespace, named
 * REPORT_NAME; cluster-scoped objects go in the cluster report. Both carry `summary`
 * (every result counted) and `results` (bounded by the scan: see scan.ts).
 */
import type { ReportContent } from "./scan.js";

export type ReportFormat = "wgpolicyk8s.io/v1alpha2" | "openreports.io/v1alpha1";

export const REPORT_NAME = "polity";
export const MANAGED_BY = { "app.kubernetes.io/managed-by": "polity" } as const;

/** The resource names of the report kinds, for the API paths. */
export function reportResources(format: ReportFormat): { readonly namespaced: string; readonly cluster: string; readonly namespacedKind: string; readonly clusterKind: string } {
  return format === "wgpolicyk8s.io/v1alpha2"
    ? { namespaced: "policyreports", cluster: "clusterpolicyreports", namespacedKind: "PolicyReport", clusterKind: "ClusterPolicyReport" }
    : { namespaced: "reports", cluster: "clusterreports", namespacedKind: "Report", clusterKind: "ClusterReport" };
}

/** The report object for one namespace (or the cluster, for ""), stamped with the scan's time (ms since the epoch). */
export function reportObject(content: ReportContent, format: ReportFormat, scannedAtMs: number, bundleVersion: number | null): Record<string, unknown> {
  const kinds = reportResources(format);
  const seconds = Math.floor(scannedAtMs / 1000);
  const cluster = content.namespace === "";
  return {
    apiVersion: format,
    kind: cluster ? kinds.clusterKind : kinds.namespacedKind,
    metadata: {
      name: REPORT_NAME,
      ...(cluster ? {} : { namespace: content.namespace }),
      labels: { ...MANAGED_BY },
      annotations: { "polity.dev/bundle-version": bundleVersion === null ? "" : String(bundleVersion) },
    },
    summary: content.summary,
    results: content.results.map((r) => ({
      source: "polity",
      policy: r.policy,
      ...(r.rule === undefined ? {} : { rule: r.rule }),
      result: r.result,
      ...(r.message === undefined ? {} : { message: r.message }),
      ...(r.category === "" ? {} : { category: r.category }),
      scored: true,
      timestamp: { seconds, nanos: 0 },
      resources: [
        {
          apiVersion: r.object.apiVersion,
          kind: r.object.kind,
          name: r.object.name,
          ...(r.object.namespace === undefined ? {} : { namespace: r.object.namespace }),
          ...(r.object.uid === undefined ? {} : { uid: r.object.uid }),
        },
      ],
      properties: { enforcement: r.enforcement },
    })),
  };
}
