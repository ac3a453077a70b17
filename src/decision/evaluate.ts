/**
 * evaluate: the decision on one admission request, from an effective policy set alone.
 *
 * For each policy that matches the request's kind, operation and subresource (and, for
 * Pod policies, each workload's pod template), whose namespace selector and match
 * conditions hold: every rule is evaluated; a false rule is a violation at the policy's
 * enforcement (deny refuses, warn warns, audit annotates) unless an active exception
 * covers it. A rule that cannot be evaluated follows the policy's failure policy (Fail:
 * a violation; Ignore: skipped, and noted for audit).
 *
 * Time is an input: exceptions apply strictly before their expiry, compared with `now`.
 */
import { CelCostLimitError, CelEvalError, costBudget, positionAt, Variables, type CostBudget } from "../cel/index.js";
import type { EffectivePolicySet } from "../layering/effective.js";
import { matchesSelector, type Labels } from "../layering/selector.js";
import type { Enforcement } from "../policy/schema.js";
import { NAMESPACE_NAME_LABEL, candidatesForRequest, podCandidatesFor, prepare, type PreparedPolicy, type PreparedRule } from "./prepare.js";
import type { AdmissionRequest } from "./request.js";
import { isWorkload, podFromWorkload } from "./workloads.js";

export interface Violation {
  readonly policy: string;
  readonly rule: string;
  readonly message: string;
  readonly enforcement: Enforcement;
  /** Set when the violation is in a workload's pod template rather than the object itself. */
  readonly target?: "pod template";
}

export interface Exemption {
  readonly policy: string;
  readonly rule: string;
  readonly exception: string;
  readonly expiresAt: string;
}

export interface Decision {
  readonly allowed: boolean;
  /** Every rule that failed and was not exempted: deny, warn and audit alike. */
  readonly violations: readonly Violation[];
  /** Warnings for the API server to show the user (warn violations). */
  readonly warnings: readonly string[];
  readonly auditAnnotations: Readonly<Record<string, string>>;
  /** Violations that an active exception turned off. */
  readonly exemptions: readonly Exemption[];
}

export interface DecisionContext {
  /** Milliseconds since the epoch; exceptions apply strictly before their expiry. */
  readonly now: number;
  /**
   * The request's Namespace object, when known: its labels select policies. When it is not
   * known, a policy that selects namespaces by other labels than their name cannot tell
   * whether it applies: it fails closed under its failure policy, never allowing silently.
   */
  readonly namespaceObject?: unknown;
  /**
   * Why the Namespace object is not known, when the caller tried to know it (the agent's
   * namespace cache and its read from the API server): said in the messages of the policies
   * that fail closed for the want of it.
   */
  readonly namespaceUnknown?: string;
  /**
   * What all the expressions of one decision may spend together (default
   * DECISION_COST_BUDGET). Once it is spent, every rule left fails by its policy's failure
   * policy: a decision is bounded, whatever its policies ask.
   */
  readonly costBudget?: number;
  /**
   * Filled with the name of every policy whose rules ran (it matched and its match
   * conditions held): a background scan counts those without a violation as passing.
   */
  readonly applied?: Set<string>;
}

/** Kubernetes' runtime budget of one ValidatingAdmissionPolicyBinding (RuntimeCELCostBudget), for a whole decision here. */
export const DECISION_COST_BUDGET = 10_000_000;

const EMPTY: Labels = Object.freeze({});

function labelsOf(object: unknown): Labels {
  if (typeof object !== "object" || object === null) return EMPTY;
  const metadata = (object as { metadata?: unknown }).metadata;
  if (typeof metadata !== "object" || metadata === null) return EMPTY;
  const labels = (metadata as { labels?: unknown }).labels;
  return typeof labels === "object" && labels !== null && !Array.isArray(labels) ? (labels as Labels) : EMPTY;
}

/** The labels a namespace selector is matched against, and whether they are all known. */
interface NamespaceLabels {
  readonly labels: Labels;
  /** False when the Namespace object is not known: only its name label is. */
  readonly complete: boolean;
}

/**
 * The labels a namespace selector is matched against, as the API server does: a Namespace
 * is matched on its own labels, other cluster-scoped objects always match (undefined), and
 * namespaced objects on their namespace's labels. When the Namespace object is not known,
 * only the label every namespace carries, `kubernetes.io/metadata.name`, is.
 */
function namespaceLabels(request: AdmissionRequest, namespaceObject: unknown): NamespaceLabels | undefined {
  if (request.kind.kind === "Namespace" && request.kind.group === "") {
    return { labels: labelsOf(request.object ?? request.oldObject), complete: true };
  }
  const namespace = request.namespace;
  if (namespace === undefined || namespace === "") return undefined;
  const complete = namespaceObject !== undefined && namespaceObject !== null;
  const labels = labelsOf(namespaceObject);
  if (labels[NAMESPACE_NAME_LABEL] === namespace) return { labels, complete };
  return { labels: { ...labels, [NAMESPACE_NAME_LABEL]: namespace }, complete };
}

/** The decision under construction; one per request. */
class Verdict {
  allowed = true;
  readonly violations: Violation[] = [];
  readonly warnings: string[] = [];
  readonly audit: string[] = [];
  readonly errors: string[] = [];
  readonly exemptions: Exemption[] = [];
  private readonly deprecated = new Set<string>();

  /** A policy on its way out applied to the request: say so once, naming its replacement. */
  deprecation(policy: PreparedPolicy, now: number): void {
    const deprecation = policy.policy.deprecation;
    if (deprecation === undefined || this.deprecated.has(policy.policy.name)) return;
    this.deprecated.add(policy.policy.name);
    const when = Date.parse(deprecation.after) > now ? `is deprecated and retired after ${deprecation.after}` : `was retired on ${deprecation.after} and still applies here`;
    const instead = deprecation.replacement === undefined ? "" : `: policy ${deprecation.replacement} replaces it`;
    this.warnings.push(`policy ${policy.policy.name} ${when}${instead}${deprecation.reason === undefined ? "" : ` (${deprecation.reason})`}`);
  }

  add(policy: PreparedPolicy, rule: string, message: string, target: "pod template" | undefined): void {
    const enforcement = policy.policy.enforcement;
    this.violations.push(target === undefined ? { policy: policy.policy.name, rule, message, enforcement } : { policy: policy.policy.name, rule, message, enforcement, target });
    const where = target === undefined ? "" : " (pod template)";
    if (enforcement === "deny") this.allowed = false;
    else if (enforcement === "warn") this.warnings.push(`${policy.policy.name}${where}: ${message}`);
    else this.audit.push(`${policy.policy.name}/${rule}${where}: ${message}`);
  }

  finish(): Decision {
    const auditAnnotations: Record<string, string> = {};
    if (this.audit.length > 0) auditAnnotations["audit-violations"] = this.audit.join("; ");
    if (this.errors.length > 0) auditAnnotations["evaluation-errors"] = this.errors.join("; ");
    if (this.exemptions.length > 0) {
      auditAnnotations["exemptions"] = this.exemptions.map((e) => `${e.policy}/${e.rule} by exception ${e.exception} (expires ${e.expiresAt})`).join("; ");
    }
    return { allowed: this.allowed, violations: this.violations, warnings: this.warnings, auditAnnotations, exemptions: this.exemptions };
  }
}

function describeError(error: unknown, source: string): string {
  if (error instanceof CelCostLimitError) return error.message;
  if (error instanceof CelEvalError) {
    const at = error.offset === undefined ? "" : ` (at ${positionAt(source, error.offset).line}:${positionAt(source, error.offset).column})`;
    return `${error.message}${at}`;
  }
  throw error;
}

function ruleMessage(rule: PreparedRule, activation: Record<string, unknown>, budget: CostBudget): string {
  if (rule.messageProgram !== undefined) {
    try {
      const message = rule.messageProgram.evaluate(activation, budget);
      if (typeof message === "string" && message.trim() !== "") return message;
    } catch (error) {
      describeError(error, rule.expression);
    }
  }
  return rule.message ?? `failed expression: ${rule.expression}`;
}

function exceptionFor(policy: PreparedPolicy, rule: string, request: AdmissionRequest, object: unknown, now: number) {
  for (const e of policy.exceptions) {
    if (now >= e.expiresAtMs) continue;
    if (e.rules !== undefined && !e.rules.has(rule)) continue;
    if (e.namespaces !== undefined && (request.namespace === undefined || !e.namespaces.has(request.namespace))) continue;
    if (e.names !== undefined && !e.names.has(request.name ?? "")) continue;
    if (e.objectSelector !== undefined && !matchesSelector(e.objectSelector, labelsOf(object))) continue;
    return e;
  }
  return undefined;
}

function evaluatePolicy(
  policy: PreparedPolicy,
  activation: Record<string, unknown>,
  request: AdmissionRequest,
  context: DecisionContext,
  target: "pod template" | undefined,
  verdict: Verdict,
  budget: CostBudget,
): void {
  activation.params = policy.params;
  activation.variables = policy.variables === undefined ? null : new Variables(policy.variables, activation, budget);
  const failClosed = policy.policy.failurePolicy === "Fail";
  for (const condition of policy.conditions) {
    let holds: unknown;
    try {
      holds = condition.program.evaluate(activation, budget);
    } catch (error) {
      const why = describeError(error, condition.program.source);
      if (failClosed) verdict.add(policy, condition.name, `match condition could not be evaluated: ${why}`, target);
      else verdict.errors.push(`${policy.policy.name}/${condition.name}: ${why}`);
      return;
    }
    if (holds !== true) return;
  }
  verdict.deprecation(policy, context.now);
  context.applied?.add(policy.policy.name);
  for (const rule of policy.rules) {
    let passed: unknown;
    let message: string | undefined;
    try {
      passed = rule.program.evaluate(activation, budget);
      if (passed !== true && passed !== false) message = `rule must evaluate to a bool, but evaluated to ${JSON.stringify(passed)}`;
    } catch (error) {
      message = `rule could not be evaluated: ${describeError(error, rule.expression)}`;
    }
    if (passed === true) continue;
    if (message !== undefined && !failClosed) {
      verdict.errors.push(`${policy.policy.name}/${rule.name}: ${message}`);
      continue;
    }
    const exception = policy.exceptions.length === 0 ? undefined : exceptionFor(policy, rule.name, request, activation.object ?? activation.oldObject, context.now);
    if (exception !== undefined) {
      verdict.exemptions.push({ policy: policy.policy.name, rule: rule.name, exception: exception.exception.name, expiresAt: exception.exception.expiresAt });
      continue;
    }
    verdict.add(policy, rule.name, message ?? ruleMessage(rule, activation, budget), target);
  }
}

export function evaluate(set: EffectivePolicySet, request: AdmissionRequest, context: DecisionContext): Decision {
  const prepared = prepare(set);
  const verdict = new Verdict();
  const budget = costBudget(context.costBudget ?? DECISION_COST_BUDGET);
  const subresource = request.subResource ?? "";
  const nsLabels = namespaceLabels(request, context.namespaceObject);
  const activation: Record<string, unknown> = {
    object: request.object ?? null,
    oldObject: request.oldObject ?? null,
    request,
    params: null,
    namespaceObject: context.namespaceObject ?? null,
    variables: null,
  };
  /** Whether the policy applies in the request's namespace; when that cannot be known, it fails by its failure policy. */
  const selected = (policy: PreparedPolicy, target: "pod template" | undefined): boolean => {
    if (nsLabels === undefined || nsLabels.complete) return policy.namespaceSelector === undefined || nsLabels === undefined || matchesSelector(policy.namespaceSelector, nsLabels.labels);
    const needs = policy.namespaceSelector === undefined ? [] : policy.namespaceLabelsNeeded;
    if (needs.length > 0 || policy.namespaceObjectNeeded) {
      const what = needs.length > 0 ? `the policy selects namespaces by ${needs.join(", ")}` : "the policy's expressions read namespaceObject";
      const known = context.namespaceUnknown ?? `the labels of namespace ${request.namespace ?? ""} are not known here`;
      const why = `${known}, and ${what}`;
      const rule = needs.length > 0 ? "namespaceSelector" : "namespaceObject";
      if (policy.policy.failurePolicy === "Fail") verdict.add(policy, rule, `${why}: refused under its failure policy (Fail)`, target);
      else verdict.errors.push(`${policy.policy.name}/${rule}: ${why}: skipped under its failure policy (Ignore)`);
      return false;
    }
    return policy.namespaceSelector === undefined || matchesSelector(policy.namespaceSelector, nsLabels.labels);
  };
  for (const policy of candidatesForRequest(prepared, request)) {
    if (selected(policy, undefined)) evaluatePolicy(policy, activation, request, context, undefined, verdict, budget);
  }
  if (subresource === "" && isWorkload(request.kind)) {
    const pods = podCandidatesFor(prepared, request.operation);
    if (pods.length > 0) {
      const pod = podFromWorkload(request.kind, request.object);
      const oldPod = podFromWorkload(request.kind, request.oldObject);
      if (pod !== null || oldPod !== null) {
        activation.object = pod;
        activation.oldObject = oldPod;
        for (const policy of pods) {
          if (selected(policy, "pod template")) evaluatePolicy(policy, activation, request, context, "pod template", verdict, budget);
        }
      }
    }
  }
  return verdict.finish();
}
