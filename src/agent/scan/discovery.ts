/**
 * Which resources a scan lists, found by API discovery (GET /api/v1, /apis, /apis/<g>/<v>):
 * a policy's kind becomes a group, version and plural resource the cluster serves, at the
 * group's preferred version. A kind named without its group is looked for in every group.
 * Which report API the cluster serves is found the same way.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { ReportFormat } from "../../decision/policy-report.js";
import type { ScanKind } from "../../decision/scan.js";
import { kubeRequest } from "../../kube/raw.js";

export interface ServedType {
  readonly group: string;
  readonly version: string;
  readonly resource: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

export const apiVersionOf = (t: { group: string; version: string }) => (t.group === "" ? t.version : `${t.group}/${t.version}`);
export const collectionPath = (t: { group: string; version: string; resource: string }) => `${t.group === "" ? "/api" : `/apis/${t.group}`}/${t.version}/${t.resource}`;

interface ResourceList {
  readonly resources?: readonly { name?: unknown; kind?: unknown; namespaced?: unknown; verbs?: unknown }[];
}

async function resourcesOf(config: KubeConfig, group: string, version: string, signal: AbortSignal): Promise<ServedType[]> {
  const list = (await kubeRequest(config, { method: "GET", path: group === "" ? `/api/${version}` : `/apis/${group}/${version}`, signal })) as ResourceList | undefined;
  return (list?.resources ?? [])
    .filter((r) => typeof r.name === "string" && !r.name.includes("/") && typeof r.kind === "string" && Array.isArray(r.verbs) && r.verbs.includes("list") && r.verbs.includes("watch"))
    .map((r) => ({ group, version, resource: r.name as string, kind: r.kind as string, namespaced: r.namespaced === true }));
}

/** The groups the cluster serves, each at its preferred version. */
async function groups(config: KubeConfig, signal: AbortSignal): Promise<{ name: string; version: string; versions: string[] }[]> {
  const list = (await kubeRequest(config, { method: "GET", path: "/apis", signal })) as { groups?: { name?: unknown; preferredVersion?: { version?: unknown }; versions?: { version?: unknown }[] }[] } | undefined;
  return (list?.groups ?? []).flatMap((g) => {
    const versions = (g.versions ?? []).map((v) => v.version).filter((v): v is string => typeof v === "string");
    const preferred = typeof g.preferredVersion?.version === "string" ? g.preferredVersion.version : versions[0];
    return typeof g.name === "string" && preferred !== undefined ? [{ name: g.name, version: preferred, versions }] : [];
  });
}

/** The served types of `kinds`, and the kinds the cluster does not serve. */
export async function resolveKinds(config: KubeConfig, kinds: readonly ScanKind[], signal: AbortSignal): Promise<{ types: ServedType[]; missing: string[] }> {
  const all = await groups(config, signal);
  const wanted = new Set(kinds.map((k) => k.group));
  const searched = [{ name: "", version: "v1" }, ...all.filter((g) => wanted.has(undefined) || wanted.has(g.name))];
  const served: ServedType[] = [];
  for (const g of searched) served.push(...(await resourcesOf(config, g.name, g.version, signal)));
  const types = new Map<string, ServedType>();
  const missing: string[] = [];
  for (const k of kinds) {
    const found = served.filter((t) => t.kind === k.kind && (k.group === undefined || t.group === k.group));
    if (found.length === 0) missing.push(k.group === undefined || k.group === "" ? k.kind : `${k.group}/${k.kind}`);
    for (const t of found) types.set(`${t.group}/${t.resource}`, t);
  }
  return { types: [...types.values()], missing };
}

/** The report API to write: openreports.io/v1alpha1 where served, else wgpolicyk8s.io/v1alpha2; undefined when neither is. */
export async function reportFormat(config: KubeConfig, signal: AbortSignal): Promise<ReportFormat | undefined> {
  const all = await groups(config, signal);
  if (all.some((g) => g.name === "openreports.io" && g.versions.includes("v1alpha1"))) return "openreports.io/v1alpha1";
  if (all.some((g) => g.name === "wgpolicyk8s.io" && g.versions.includes("v1alpha2"))) return "wgpolicyk8s.io/v1alpha2";
  return undefined;
}
