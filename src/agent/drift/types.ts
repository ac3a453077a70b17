/**
 * Where the drift watcher finds an owned kind on the API server: the group version of the
 * manifest (not the group's preferred one: the manifest's fields are that version's), its
 * plural resource and scope, found by discovery (GET /api/v1, /apis/<group>/<version>).
 */
import type { KubeConfig } from "@kubernetes/client-node";
import { kubeRequest } from "../../kube/raw.js";
import type { Manifest } from "../../intents/index.js";

/** The field manager of everything Polity applies. */
export const FIELD_MANAGER = "polity";

export interface OwnedType {
  readonly apiVersion: string;
  readonly kind: string;
  readonly resource: string;
  readonly namespaced: boolean;
}

/** `networking.k8s.io/v1/NetworkPolicy`: one informer each. */
export const typeKeyOf = (m: { apiVersion: string; kind: string }) => `${m.apiVersion}/${m.kind}`;

/** The informer's key of an object: `namespace/name`, or `/name` when cluster-scoped. */
export const cacheKeyOf = (m: Manifest) => `${m.metadata.namespace ?? ""}/${m.metadata.name}`;

/** One key per desired object. */
export const objectKeyOf = (m: Manifest) => `${typeKeyOf(m)}/${cacheKeyOf(m)}`;

const base = (apiVersion: string) => (apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`);

export const collectionPath = (t: OwnedType) => `${base(t.apiVersion)}/${t.resource}`;

export const objectPath = (t: OwnedType, m: Manifest) =>
  `${base(t.apiVersion)}${t.namespaced && m.metadata.namespace !== undefined ? `/namespaces/${encodeURIComponent(m.metadata.namespace)}` : ""}/${t.resource}/${encodeURIComponent(m.metadata.name)}`;

/**
 * Server-side apply of a manifest as it is (JSON is YAML), field manager `polity`. Not through
 * client-node's KubernetesObjectApi: its typed serializer drops the fields its models rename
 * (`default` of a LimitRange item, `from` of a NetworkPolicy rule), and an apply without
 * them would be drift itself.
 */
export async function serverSideApply(config: KubeConfig, type: OwnedType, m: Manifest, options: { readonly force: boolean; readonly signal?: AbortSignal }): Promise<void> {
  await kubeRequest(config, {
    method: "PATCH",
    path: `${objectPath(type, m)}?fieldManager=${FIELD_MANAGER}${options.force ? "&force=true" : ""}`,
    body: m,
    contentType: "application/apply-patch+yaml",
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    timeoutMs: 10_000,
  });
}

/** The served type of a manifest's apiVersion and kind, or undefined when the cluster does not serve it (yet: a CRD not established). */
export async function ownedType(config: KubeConfig, apiVersion: string, kind: string, signal: AbortSignal): Promise<OwnedType | undefined> {
  const list = (await kubeRequest(config, { method: "GET", path: base(apiVersion), signal })) as { resources?: { name?: unknown; kind?: unknown; namespaced?: unknown }[] } | undefined;
  const found = (list?.resources ?? []).find((r) => r.kind === kind && typeof r.name === "string" && !r.name.includes("/"));
  return found === undefined ? undefined : { apiVersion, kind, resource: found.name as string, namespaced: found.namespaced === true };
}
