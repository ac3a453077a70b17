/**
 * The native second line: Polity's CEL policies as Kubernetes ValidatingAdmissionPolicies
 * (admissionregistration.k8s.io/v1, GA in Kubernetes 1.30) and their bindings, so that the
 * API server itself holds the baseline while the agent is down. The expressions are the
 * policies' own (Polity's CEL is Kubernetes'); params become a `PolicyParams` object of
 * their own (a cluster-scoped custom resource whose fields are the params, so that
 * `params.registries` reads the same in both), bound with `parameterNotFoundAction: Deny`.
 *
 * What cannot be expressed is listed with the reason, never approximated:
 * - a cluster older than 1.30 (no v1 ValidatingAdmissionPolicy);
 * - a policy with exceptions in the set (an exception expires; a VAP cannot);
 * - a param named apiVersion, kind or metadata (the params object's own fields);
 * - an expression Kubernetes' type checker would refuse.
 * A policy on pods judges, in Polity, the pod templates of workloads as well; its VAP judges
 * pods (which the API server still refuses when a controller creates them): a note says so.
 *
 * Residency intents are emitted here too: their admission rule exists only as a VAP.
 */
import type { EffectivePolicy, EffectivePolicySetDocument } from "../layering/effective.js";
import type { ResidencyIntent } from "../policy/generate.js";
import { checkPolicyExpression } from "../policy/programs.js";
import { guessResource } from "../decision/resource-rules.js";
import type { Manifest } from "./translate.js";
import { POLICY_LABEL, MANAGED_BY, REMEDIATION_ANNOTATION, remediation } from "./translate.js";

export const ADMISSION_V1 = "admissionregistration.k8s.io/v1";
export const PARAMS_API_VERSION = "polity.dev/v1";
export const PARAMS_KIND = "PolicyParams";

export interface NotExpressible {
  readonly policy: string;
  readonly reason: string;
}

export interface SecondLine {
  readonly manifests: Manifest[];
  readonly notExpressible: NotExpressible[];
  readonly notes: NotExpressible[];
}

/** The custom resource definition of PolicyParams: cluster-scoped, fields as the params are. */
export const POLICY_PARAMS_CRD: Manifest = {
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: "policyparams.polity.dev", labels: { [MANAGED_BY]: "polity" } },
  spec: {
    group: "polity.dev",
    names: { kind: PARAMS_KIND, listKind: "PolicyParamsList", plural: "policyparams", singular: "policyparams" },
    scope: "Cluster",
    versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } }],
  },
};

const RESERVED_PARAMS = new Set(["apiVersion", "kind", "metadata"]);

function labelsOf(policy: EffectivePolicy): Manifest["metadata"] {
  return { name: `polity-${policy.name}`, labels: { [MANAGED_BY]: "polity", [POLICY_LABEL]: policy.name }, annotations: { [REMEDIATION_ANNOTATION]: remediation(policy) } };
}

/** Polity's kinds as resource rules: `Pod` (any group, as Polity matches it) → `*`/pods; `apps/Deployment` → apps/deployments. */
function kindRules(policy: EffectivePolicy): Record<string, unknown>[] {
  const { kinds, operations, subresources } = policy.match;
  if (kinds.length === 0) return [];
  const withSubresources = (resource: string) => [resource, ...subresources.map((s) => `${resource}/${s}`)];
  if (kinds.includes("*")) return [{ apiGroups: ["*"], apiVersions: ["*"], resources: withSubresources("*"), operations: [...operations], scope: "*" }];
  const byGroup = new Map<string, string[]>();
  for (const k of kinds) {
    const slash = k.lastIndexOf("/");
    const group = slash < 0 ? "*" : k.slice(0, slash) === "core" ? "" : k.slice(0, slash);
    const list = byGroup.get(group) ?? [];
    list.push(...withSubresources(guessResource(k.slice(slash + 1))));
    byGroup.set(group, list);
  }
  return [...byGroup.keys()].sort().map((group) => ({ apiGroups: [group], apiVersions: ["*"], resources: [...new Set(byGroup.get(group))].sort(), operations: [...operations], scope: "*" }));
}

const ACTIONS = { deny: ["Deny"], warn: ["Warn"], audit: ["Audit"] } as const;

/** One policy as a VAP, its binding and its params object; or why it cannot be one. */
export function admissionPolicyFor(policy: EffectivePolicy, document: EffectivePolicySetDocument): { manifests: Manifest[] } | { reason: string } {
  if (document.exceptions.some((e) => e.policy === policy.name)) {
    return { reason: "it has exceptions in this cluster's set: an exception expires, and a ValidatingAdmissionPolicy has no expiry" };
  }
  const reserved = Object.keys(policy.params).filter((k) => RESERVED_PARAMS.has(k));
  if (reserved.length > 0) return { reason: `param ${JSON.stringify(reserved[0])} would be a field the params object already has (apiVersion, kind, metadata)` };
  const declared = { declared: Object.fromEntries(Object.entries(policy.params).map(([k, v]) => [k, { default: v }])) };
  const params = Object.keys(policy.params).length === 0 ? ("none" as const) : declared;
  const names: string[] = [];
  const expressions: [string, string, "variable" | "validation" | "message"][] = [];
  for (const v of policy.variables) {
    expressions.push([`variable ${v.name}`, v.expression, "variable"]);
  }
  for (const c of policy.matchConditions) expressions.push([`match condition ${c.name}`, c.expression, "validation"]);
  for (const v of policy.validations) {
    expressions.push([`rule ${v.name}`, v.expression, "validation"]);
    if (v.messageExpression !== undefined) expressions.push([`rule ${v.name} message`, v.messageExpression, "message"]);
  }
  for (const [what, source, purpose] of expressions) {
    const problem = checkPolicyExpression(source, names, purpose, params);
    if (problem !== undefined) return { reason: `${what}: Kubernetes' type checker would refuse it: ${problem}` };
    if (purpose === "variable") names.push(what.slice("variable ".length));
  }
  const rules = [...kindRules(policy), ...(policy.match.resourceRules ?? []).map((r) => ({ ...r }))];
  const meta = labelsOf(policy);
  const hasParams = params !== "none";
  const vap: Manifest = {
    apiVersion: ADMISSION_V1,
    kind: "ValidatingAdmissionPolicy",
    metadata: meta,
    spec: {
      failurePolicy: policy.failurePolicy,
      ...(hasParams ? { paramKind: { apiVersion: PARAMS_API_VERSION, kind: PARAMS_KIND } } : {}),
      matchConstraints: {
        resourceRules: rules,
        ...(policy.match.excludeResourceRules === undefined ? {} : { excludeResourceRules: policy.match.excludeResourceRules.map((r) => ({ ...r })) }),
        ...(policy.namespaceSelector === undefined ? {} : { namespaceSelector: policy.namespaceSelector }),
      },
      ...(policy.matchConditions.length === 0 ? {} : { matchConditions: policy.matchConditions.map((c) => ({ name: c.name, expression: c.expression })) }),
      ...(policy.variables.length === 0 ? {} : { variables: policy.variables.map((v) => ({ name: v.name, expression: v.expression })) }),
      validations: policy.validations.map((v) => ({
        expression: v.expression,
        ...(v.message === undefined ? {} : { message: v.message }),
        ...(v.messageExpression === undefined ? {} : { messageExpression: v.messageExpression }),
      })),
    },
  };
  // matchResources stated, empty (all the policy matches): apply then owns the atomic struct, and takes back a selector someone adds.
  const binding: Manifest = {
    apiVersion: ADMISSION_V1,
    kind: "ValidatingAdmissionPolicyBinding",
    metadata: meta,
    spec: {
      policyName: meta.name,
      validationActions: [...ACTIONS[policy.enforcement]],
      ...(hasParams ? { paramRef: { name: meta.name, parameterNotFoundAction: "Deny" } } : {}),
      matchResources: {},
    },
  };
  const manifests = [vap, binding];
  if (hasParams) manifests.push({ apiVersion: PARAMS_API_VERSION, kind: PARAMS_KIND, metadata: { name: meta.name, labels: meta.labels }, ...policy.params });
  return { manifests };
}

/**
 * A residency rule's CEL: the pod's nodeSelector names an allowed zone, or its required node
 * affinity is one term that limits the zone to allowed ones (`In`, a subset). Several terms
 * are ORed by the scheduler, and checking each would nest three comprehensions, past the cost
 * limit Kubernetes sets for one expression: a pod that needs them uses one term instead.
 */
export function residencyExpression(zoneLabel: string, zones: readonly string[]): string {
  const key = JSON.stringify(zoneLabel);
  const list = `[${[...new Set(zones)].sort().map((z) => JSON.stringify(z)).join(", ")}]`;
  const bySelector = `object.spec.?nodeSelector[?${key}].orValue('') in ${list}`;
  const terms = `object.spec.?affinity.?nodeAffinity.?requiredDuringSchedulingIgnoredDuringExecution.?nodeSelectorTerms.orValue([])`;
  const byAffinity = `${terms}.size() == 1 && ${terms}[0].?matchExpressions.orValue([]).exists(e, e.key == ${key} && e.operator == 'In' && sets.contains(${list}, e.values))`;
  return `(${bySelector}) || (${byAffinity})`;
}

export const DEFAULT_ZONE_LABEL = "topology.kubernetes.io/zone";

export function residencyPolicy(policy: EffectivePolicy, intent: ResidencyIntent & { zones: string[] }): Manifest[] {
  const meta = labelsOf(policy);
  const zoneLabel = intent.zoneLabel ?? DEFAULT_ZONE_LABEL;
  const selector = Object.fromEntries(Object.entries(intent.selector).sort(([a], [b]) => (a < b ? -1 : 1)));
  const zones = [...new Set(intent.zones)].sort();
  // The binding states matchResources, empty, as admissionPolicyFor's does.
  return [
    {
      apiVersion: ADMISSION_V1,
      kind: "ValidatingAdmissionPolicy",
      metadata: meta,
      spec: {
        failurePolicy: policy.failurePolicy,
        matchConstraints: {
          resourceRules: [{ apiGroups: [""], apiVersions: ["v1"], resources: ["pods"], operations: ["CREATE", "UPDATE"], scope: "Namespaced" }],
          objectSelector: { matchLabels: selector },
        },
        validations: [
          {
            expression: residencyExpression(zoneLabel, zones),
            message: `pods labelled ${Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(",")} must be scheduled in zone ${zones.join(" or ")} (nodeSelector or required node affinity on ${zoneLabel})`,
          },
        ],
      },
    },
    {
      apiVersion: ADMISSION_V1,
      kind: "ValidatingAdmissionPolicyBinding",
      metadata: meta,
      spec: { policyName: meta.name, validationActions: [...ACTIONS[policy.enforcement]], matchResources: {} },
    },
  ];
}
