/**
 * An effective policy set made ready for decisions: every expression compiled (from the
 * process-wide cache, so a set costs almost nothing to prepare once its layers are
 * loaded), policies indexed by kind and operation, exceptions with their expiry parsed.
 * Preparation happens once per set; decisions then only look up and evaluate.
 */
import type { CelProgram, VariableTable } from "../cel/index.js";
import { PolityError } from "../errors.js";
import type { EffectiveException, EffectivePolicy, EffectivePolicySet, EffectiveResourceRule } from "../layering/effective.js";
import type { LabelSelector } from "../policy/schema.js";
import { compilePolicyExpression } from "../policy/programs.js";
import { selectorKeys } from "../layering/selector.js";
import type { AdmissionRequest } from "./request.js";
import { requestedResource, ruleMatches, type RequestedResource } from "./resource-rules.js";

/** The label every namespace carries with its own name (Kubernetes 1.22 and later). */
export const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";

export interface PreparedRule {
  readonly name: string;
  readonly expression: string;
  readonly program: CelProgram;
  readonly message: string | undefined;
  readonly messageProgram: CelProgram | undefined;
}

export interface PreparedException {
  readonly exception: EffectiveException;
  readonly expiresAtMs: number;
  readonly rules: ReadonlySet<string> | undefined;
  readonly namespaces: ReadonlySet<string> | undefined;
  readonly names: ReadonlySet<string> | undefined;
  readonly objectSelector: LabelSelector | undefined;
}

export interface PreparedPolicy {
  readonly policy: EffectivePolicy;
  /** `undefined` group: any group. */
  readonly kinds: readonly { readonly group: string | undefined; readonly kind: string }[];
  readonly anyKind: boolean;
  /** Whether the policy also judges pod templates of workloads (for these operations, when by resource rules). */
  readonly matchesPods: boolean;
  readonly resourceRules: readonly EffectiveResourceRule[];
  readonly excludeResourceRules: readonly EffectiveResourceRule[];
  readonly operations: ReadonlySet<string>;
  readonly subresources: ReadonlySet<string>;
  readonly namespaceSelector: LabelSelector | undefined;
  /**
   * The labels its namespace selector needs beyond `kubernetes.io/metadata.name` (which
   * every namespace carries and a request names): without the Namespace object they are not
   * known, and the policy cannot say whether it applies.
   */
  readonly namespaceLabelsNeeded: readonly string[];
  /**
   * Whether one of its expressions (variables, match conditions, rules, messages) reads
   * `namespaceObject`: without the Namespace object of a namespaced request it cannot be
   * judged, and fails by its failure policy. Found in the source text, so a mention inside
   * a string literal counts too: a false positive fails closed, never open.
   */
  readonly namespaceObjectNeeded: boolean;
  /** The policy's variables in declaration order; undefined when it has none. */
  readonly variables: VariableTable | undefined;
  readonly conditions: readonly { readonly name: string; readonly program: CelProgram }[];
  readonly rules: readonly PreparedRule[];
  readonly params: Readonly<Record<string, unknown>>;
  readonly exceptions: readonly PreparedException[];
}

export interface PreparedSet {
  readonly set: EffectivePolicySet;
  readonly policies: readonly PreparedPolicy[];
  /** Candidates by `group/Kind|OPERATION|subresource`, filled on first use. */
  readonly candidates: Map<string, readonly PreparedPolicy[]>;
  /** Pod policies by `OPERATION`, for workloads' pod templates. */
  readonly podCandidates: Map<string, readonly PreparedPolicy[]>;
  /** Whether any policy matches by resource rules: candidates then depend on the resource and scope too. */
  readonly byResource: boolean;
}

const NAMESPACE_OBJECT = /\bnamespaceObject\b/;

function program(source: string, variableNames: readonly string[], what: string): CelProgram {
  const result = compilePolicyExpression(source, variableNames);
  if (!result.ok) throw PolityError.of("invalid", `${what}: ${result.error.message}`);
  return result.program;
}

function preparePolicy(policy: EffectivePolicy, exceptions: readonly EffectiveException[]): PreparedPolicy {
  const names = policy.variables.map((v) => v.name);
  const variables: VariableTable | undefined =
    names.length === 0
      ? undefined
      : { names, programs: policy.variables.map((v, i) => program(v.expression, names.slice(0, i), `policy ${JSON.stringify(policy.name)}, variable ${v.name}`)) };
  const where = (rule: string) => `policy ${JSON.stringify(policy.name)}, ${rule}`;
  const kinds = policy.match.kinds
    .filter((k) => k !== "*")
    .map((k) => {
      const slash = k.lastIndexOf("/");
      return slash < 0 ? { group: undefined, kind: k } : { group: k.slice(0, slash) === "core" ? "" : k.slice(0, slash), kind: k.slice(slash + 1) };
    });
  return {
    policy,
    kinds,
    anyKind: policy.match.kinds.includes("*"),
    matchesPods: kinds.some((k) => k.kind === "Pod" && (k.group === undefined || k.group === "")),
    resourceRules: policy.match.resourceRules ?? [],
    excludeResourceRules: policy.match.excludeResourceRules ?? [],
    operations: new Set(policy.match.operations),
    subresources: new Set(policy.match.subresources),
    namespaceSelector: policy.namespaceSelector,
    namespaceLabelsNeeded: selectorKeys(policy.namespaceSelector).filter((key) => key !== NAMESPACE_NAME_LABEL),
    namespaceObjectNeeded: [
      ...policy.variables.map((v) => v.expression),
      ...policy.matchConditions.map((c) => c.expression),
      ...policy.validations.flatMap((v) => [v.expression, v.messageExpression ?? ""]),
    ].some((source) => NAMESPACE_OBJECT.test(source)),
    variables,
    conditions: policy.matchConditions.map((c) => ({ name: c.name, program: program(c.expression, names, where(`match condition ${c.name}`)) })),
    rules: policy.validations.map((v) => ({
      name: v.name,
      expression: v.expression,
      program: program(v.expression, names, where(`rule ${v.name}`)),
      message: v.message,
      messageProgram: v.messageExpression === undefined ? undefined : program(v.messageExpression, names, where(`rule ${v.name} message`)),
    })),
    params: Object.freeze({ ...policy.params }),
    exceptions: exceptions
      .filter((e) => e.policy === policy.name)
      .map((exception) => ({
        exception,
        expiresAtMs: Date.parse(exception.expiresAt),
        rules: exception.rules === undefined ? undefined : new Set(exception.rules),
        namespaces: exception.namespaces === undefined ? undefined : new Set(exception.namespaces),
        names: exception.names === undefined ? undefined : new Set(exception.names),
        objectSelector: exception.objectSelector,
      })),
  };
}

const prepared = new WeakMap<EffectivePolicySet, PreparedSet>();

/** The prepared form of a set, built on first use and kept as long as the set lives. */
export function prepare(set: EffectivePolicySet): PreparedSet {
  let p = prepared.get(set);
  if (p === undefined) {
    const policies = set.document.policies.map((policy) => preparePolicy(policy, set.document.exceptions));
    p = {
      set,
      policies,
      candidates: new Map(),
      podCandidates: new Map(),
      byResource: policies.some((policy) => policy.resourceRules.length > 0 || policy.excludeResourceRules.length > 0),
    };
    prepared.set(set, p);
  }
  return p;
}

/** Whether a policy matches by its kinds, operations and subresources. */
function matchesByKind(policy: PreparedPolicy, group: string, kind: string, operation: string, subresource: string): boolean {
  return (
    policy.operations.has(operation) &&
    (subresource === "" || policy.subresources.has(subresource)) &&
    (policy.anyKind || policy.kinds.some((k) => k.kind === kind && (k.group === undefined || k.group === group)))
  );
}

/** Whether a policy matches a request: by kind or by a resource rule, and by no exclude rule. */
function matches(policy: PreparedPolicy, request: AdmissionRequest, resource: RequestedResource): boolean {
  if (policy.excludeResourceRules.some((rule) => ruleMatches(rule, resource))) return false;
  return (
    matchesByKind(policy, request.kind.group, request.kind.kind, request.operation, resource.subresource) ||
    policy.resourceRules.some((rule) => ruleMatches(rule, resource))
  );
}

/** The policies that match a kind, operation and subresource, in the set's (name) order. */
export function candidatesFor(p: PreparedSet, group: string, kind: string, operation: string, subresource: string): readonly PreparedPolicy[] {
  const request = { uid: "", kind: { group, version: "", kind }, operation, subResource: subresource, object: null, oldObject: null } as AdmissionRequest;
  return candidatesForRequest(p, request);
}

/** The policies that match a request, by kind or by resource rule, in the set's (name) order. */
export function candidatesForRequest(p: PreparedSet, request: AdmissionRequest): readonly PreparedPolicy[] {
  const { group, kind } = request.kind;
  let key = `${group}/${kind}|${request.operation}|${request.subResource ?? ""}`;
  // Only a set with resource rules needs the resource and scope (an allocation a decision otherwise saves).
  const resource = p.byResource ? requestedResource(request) : undefined;
  if (resource !== undefined) key += `|${resource.group}/${resource.version}/${resource.resource}|${resource.namespace === "" ? "cluster" : "namespaced"}`;
  let list = p.candidates.get(key);
  if (list === undefined) {
    const requested = resource ?? requestedResource(request);
    list = p.policies.filter((policy) => matches(policy, request, requested));
    // Kinds come from requests: bound the index so that unusual traffic cannot grow it without end.
    if (p.candidates.size >= 4096) p.candidates.clear();
    p.candidates.set(key, list);
  }
  return list;
}

/** A pod as a workload's template makes one: what a policy on pods judges there. */
const POD_RESOURCE = { group: "", version: "v1", resource: "pods", subresource: "", namespace: "pod-template" } as const;

export function podCandidatesFor(p: PreparedSet, operation: string): readonly PreparedPolicy[] {
  let list = p.podCandidates.get(operation);
  if (list === undefined) {
    const pod = { ...POD_RESOURCE, operation };
    list = p.policies.filter(
      (policy) =>
        !policy.excludeResourceRules.some((rule) => ruleMatches(rule, pod)) &&
        ((policy.matchesPods && policy.operations.has(operation)) || policy.resourceRules.some((rule) => ruleMatches(rule, pod))),
    );
    p.podCandidates.set(operation, list);
  }
  return list;
}
