/**
 * Writes a scan's reports to the cluster: one per namespace and one for the cluster, by
 * server-side apply (field manager `polity-agent`, so that repeated writes of the same
 * report change nothing), and deletes the reports of namespaces that no longer hold judged
 * objects. Only the reports labelled as Polity's are ever listed or deleted.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import { MANAGED_BY, REPORT_NAME, reportObject, reportResources, type ReportFormat } from "../../decision/policy-report.js";
import type { ReportContent } from "../../decision/scan.js";
import { kubeRequest } from "../../kube/raw.js";

export const FIELD_MANAGER = "polity-agent";

const groupVersion = (format: ReportFormat) => `/apis/${format}`;

function reportPath(format: ReportFormat, namespace: string): string {
  const r = reportResources(format);
  return namespace === "" ? `${groupVersion(format)}/${r.cluster}/${REPORT_NAME}` : `${groupVersion(format)}/namespaces/${encodeURIComponent(namespace)}/${r.namespaced}/${REPORT_NAME}`;
}

export interface WrittenReports {
  readonly written: number;
  readonly deleted: number;
}

export async function writeReports(
  config: KubeConfig,
  format: ReportFormat,
  contents: readonly ReportContent[],
  stamp: { readonly scannedAtMs: number; readonly bundleVersion: number | null },
  signal: AbortSignal,
): Promise<WrittenReports> {
  for (const content of contents) {
    await kubeRequest(config, {
      method: "PATCH",
      path: `${reportPath(format, content.namespace)}?fieldManager=${FIELD_MANAGER}&force=true`,
      contentType: "application/apply-patch+yaml",
      body: reportObject(content, format, stamp.scannedAtMs, stamp.bundleVersion),
      signal,
    });
  }
  // The reports of namespaces that hold nothing judged any more.
  const wanted = new Set(contents.map((c) => c.namespace));
  const selector = `labelSelector=${encodeURIComponent(Object.entries(MANAGED_BY).map(([k, v]) => `${k}=${v}`).join(","))}`;
  const r = reportResources(format);
  let deleted = 0;
  for (const [plural, cluster] of [[r.namespaced, false], [r.cluster, true]] as const) {
    const list = (await kubeRequest(config, { method: "GET", path: `${groupVersion(format)}/${plural}?${selector}`, signal })) as { items?: { metadata?: { name?: unknown; namespace?: unknown } }[] } | undefined;
    for (const item of list?.items ?? []) {
      const namespace = cluster ? "" : typeof item.metadata?.namespace === "string" ? item.metadata.namespace : undefined;
      if (namespace === undefined || item.metadata?.name !== REPORT_NAME || wanted.has(namespace)) continue;
      await kubeRequest(config, { method: "DELETE", path: reportPath(format, namespace), signal });
      deleted++;
    }
  }
  return { written: contents.length, deleted };
}
