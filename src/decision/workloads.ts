/**
 * Pod templates inside workloads. A policy that matches `Pod` also judges the pod template
 * of a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, ReplicationController
 * or PodTemplate, so that a bad Deployment is refused when it is created, not when its
 * pods fail to start later.
 */
import type { GroupVersionKind } from "./request.js";

/** Where each workload keeps its pod template, by `group/Kind`. */
const TEMPLATE_PATHS: ReadonlyMap<string, readonly string[]> = new Map([
  ["apps/Deployment", ["spec", "template"]],
  ["apps/StatefulSet", ["spec", "template"]],
  ["apps/DaemonSet", ["spec", "template"]],
  ["apps/ReplicaSet", ["spec", "template"]],
  ["batch/Job", ["spec", "template"]],
  ["batch/CronJob", ["spec", "jobTemplate", "spec", "template"]],
  ["/ReplicationController", ["spec", "template"]],
  ["/PodTemplate", ["template"]],
]);

export function isWorkload(kind: GroupVersionKind): boolean {
  return TEMPLATE_PATHS.has(`${kind.group}/${kind.kind}`);
}

function at(value: unknown, path: readonly string[]): unknown {
  let v = value;
  for (const key of path) {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

/**
 * The Pod a workload's template describes, as the controller would create it (same
 * namespace, the template's metadata and spec); null when the workload has no template.
 */
export function podFromWorkload(kind: GroupVersionKind, workload: unknown): Record<string, unknown> | null {
  const path = TEMPLATE_PATHS.get(`${kind.group}/${kind.kind}`);
  if (path === undefined) return null;
  const template = at(workload, path);
  if (typeof template !== "object" || template === null || Array.isArray(template)) return null;
  const t = template as Record<string, unknown>;
  const metadata = typeof t.metadata === "object" && t.metadata !== null ? (t.metadata as Record<string, unknown>) : {};
  // The controller names its pods after the workload and puts them in its namespace.
  const namespace = at(workload, ["metadata", "namespace"]);
  const name = at(workload, ["metadata", "name"]);
  const podMetadata: Record<string, unknown> = { ...metadata };
  if (typeof name === "string" && !("name" in podMetadata) && !("generateName" in podMetadata)) podMetadata.name = name;
  if (typeof namespace === "string" && !("namespace" in podMetadata)) podMetadata.namespace = namespace;
  return { apiVersion: "v1", kind: "Pod", metadata: podMetadata, spec: t.spec ?? {} };
}
