/**
 * The agent's own ValidatingWebhookConfiguration, kept by the agent (the leader replica):
 * its caBundle the webhook's current CA, and rules only for what the bundle's policies
 * match, so that the API server does not call the webhook for anything else.
 *
 * Rules come from each policy's match: `resourceRules` as written; kinds as resources by
 * Kubernetes' naming of resources (lower case, plural: `NetworkPolicy` → `networkpolicies`,
 * `Ingress` → `ingresses`; `Endpoints` stays), in the kind's group when it names one
 * (`apps/Deployment`) and in every group when not; the policy's subresources as
 * `<resource>/<subresource>`; a Pod policy also the workloads whose pod templates it
 * judges. A policy matching `*` registers everything. A kind whose resource is named
 * otherwise must be matched by resourceRules. The system namespaces and Polity's own stay
 * exempt, as `polity agent webhook-config` prints them.
 */
import { KubernetesObjectApi, PatchStrategy, type KubernetesObject } from "@kubernetes/client-node";
import type { EffectivePolicySet } from "../layering/effective.js";
import type { KubeAccess } from "./config.js";
import { describeFailure } from "./informer.js";

export interface WebhookRule {
  readonly apiGroups: readonly string[];
  readonly apiVersions: readonly string[];
  readonly operations: readonly string[];
  readonly resources: readonly string[];
  readonly scope: "*" | "Namespaced" | "Cluster";
}

/** The workloads whose pod templates a Pod policy judges (decision/workloads.ts). */
const WORKLOADS: readonly [string, string][] = [
  ["apps", "deployments"],
  ["apps", "statefulsets"],
  ["apps", "daemonsets"],
  ["apps", "replicasets"],
  ["batch", "jobs"],
  ["batch", "cronjobs"],
  ["", "replicationcontrollers"],
  ["", "podtemplates"],
];

const EVERYTHING: WebhookRule = { apiGroups: ["*"], apiVersions: ["*"], operations: ["CREATE", "UPDATE", "DELETE", "CONNECT"], resources: ["*", "*/*"], scope: "*" };

/** A kind's resource name, as Kubernetes names resources. */
export function resourceOfKind(kind: string): string {
  const lower = kind.toLowerCase();
  if (lower === "endpoints") return lower;
  if (/[^aeiou]y$/.test(lower)) return `${lower.slice(0, -1)}ies`;
  if (/(s|x|z|ch|sh)$/.test(lower)) return `${lower}es`;
  return `${lower}s`;
}

/** The rules that register exactly what the set's policies match (pure). */
export function webhookRules(set: EffectivePolicySet): WebhookRule[] {
  const byKey = new Map<string, { groups: string[]; operations: string[]; scope: WebhookRule["scope"]; resources: Set<string> }>();
  const add = (group: string, operations: readonly string[], resources: readonly string[], scope: WebhookRule["scope"] = "*") => {
    const ops = [...new Set(operations)].sort();
    const key = `${group}|${ops.join(",")}|${scope}`;
    let entry = byKey.get(key);
    if (entry === undefined) byKey.set(key, (entry = { groups: [group], operations: ops, scope, resources: new Set() }));
    for (const r of resources) entry.resources.add(r);
  };
  const explicit: WebhookRule[] = [];
  for (const policy of set.document.policies) {
    const match = policy.match;
    if (match.kinds.includes("*")) return [EVERYTHING];
    const subresources = match.subresources.filter((s) => s !== "");
    for (const kind of match.kinds) {
      const slash = kind.lastIndexOf("/");
      const group = slash < 0 ? "*" : kind.slice(0, slash) === "core" ? "" : kind.slice(0, slash);
      const resource = resourceOfKind(slash < 0 ? kind : kind.slice(slash + 1));
      add(group, match.operations, [resource, ...subresources.map((s) => `${resource}/${s}`)]);
      if (resource === "pods" && (group === "*" || group === "")) for (const [g, r] of WORKLOADS) add(g, match.operations, [r]);
    }
    for (const rule of match.resourceRules ?? []) {
      explicit.push({ apiGroups: [...rule.apiGroups], apiVersions: [...rule.apiVersions], operations: [...rule.operations], resources: [...rule.resources], scope: rule.scope });
    }
  }
  const rules = [...byKey.values()]
    .map((e) => ({ apiGroups: e.groups, apiVersions: ["*"], operations: e.operations, resources: [...e.resources].sort(), scope: e.scope }))
    .sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
  return [...rules, ...explicit];
}

export interface WebhookConfigurationOptions {
  readonly cluster: string;
  readonly caPem: string;
  /** Where the API server reaches the webhook: a Service, or a URL. */
  readonly target: { readonly namespace: string; readonly name: string } | { readonly url: string };
  readonly failurePolicy: "Fail" | "Ignore";
  readonly rules: readonly WebhookRule[];
}

export function webhookConfiguration(options: WebhookConfigurationOptions): KubernetesObject & Record<string, unknown> {
  const caBundle = Buffer.from(options.caPem, "utf8").toString("base64");
  const clientConfig = "url" in options.target ? { url: options.target.url, caBundle } : { service: { namespace: options.target.namespace, name: options.target.name, path: "/validate", port: 443 }, caBundle };
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingWebhookConfiguration",
    metadata: { name: "polity", labels: { "app.kubernetes.io/name": "polity", "polity.dev/cluster": options.cluster } },
    webhooks: [
      {
        name: "validate.polity.dev",
        admissionReviewVersions: ["v1"],
        sideEffects: "None",
        failurePolicy: options.failurePolicy,
        matchPolicy: "Equivalent",
        timeoutSeconds: 5,
        clientConfig,
        // With no policy, nothing is registered: the API server calls the webhook for nothing.
        rules: options.rules,
        namespaceSelector: { matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "NotIn", values: ["kube-system", "kube-public", "kube-node-lease", "polity-system"] }] },
      },
    ],
  };
}

/** Writes the configuration by server-side apply (field manager polity-agent) when it differs from what was written last. */
export class WebhookRegistration {
  private readonly objects: KubernetesObjectApi;
  private written: string | undefined;
  private lastError: string | null = null;

  constructor(access: KubeAccess) {
    this.objects = KubernetesObjectApi.makeApiClient(access.config);
  }

  /** Applies `configuration` unless it is what was applied last; throws with the reason when the API server refuses. */
  async apply(configuration: KubernetesObject & Record<string, unknown>): Promise<boolean> {
    const text = JSON.stringify(configuration);
    if (text === this.written) return false;
    try {
      // KubernetesObjectApi takes a whole Configuration per call, not per-call options: the
      // wait is bounded here instead (the request itself ends with its connection).
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("no answer within 5000 ms")), 5000)));
      try {
        await Promise.race([this.objects.patch(configuration, undefined, undefined, "polity-agent", true, PatchStrategy.ServerSideApply), timeout]);
      } finally {
        clearTimeout(timer);
      }
    } catch (error) {
      this.lastError = `applying ValidatingWebhookConfiguration polity failed: ${describeFailure(error)}`;
      throw new Error(this.lastError);
    }
    this.written = text;
    this.lastError = null;
    return true;
  }

  health(): { readonly applied: boolean; readonly lastError: string | null } {
    return { applied: this.written !== undefined, lastError: this.lastError };
  }
}
