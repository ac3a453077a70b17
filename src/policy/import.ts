/**
 * Kubernetes admission policies as Polity policies: a ValidatingAdmissionPolicy with its
 * bindings and their params, or a Kyverno CEL ValidatingPolicy, becomes a Policy document
 * whose expressions are unchanged (Polity's CEL is Kubernetes': the same variables,
 * optionals, libraries and checks).
 *
 * What Polity cannot express is refused with the reason, never approximated: a refusal of
 * a whole policy (an expression Polity cannot compile, a param it cannot find) or of one
 * field (auditAnnotations, a validation's reason). Pure: documents in, documents and
 * refusals out.
 */
import type { ParamsDeclaration } from "./programs.js";
import { checkPolicyExpression } from "./programs.js";

/** A document to import, as read: where it came from, for messages. */
export interface ImportInput {
  readonly source: string;
  readonly value: unknown;
}

export interface Refusal {
  /** `ValidatingAdmissionPolicy require-labels` (and the binding, when one is concerned). */
  readonly subject: string;
  readonly source: string;
  /** The field refused, when only a field is (`spec.auditAnnotations`); undefined when the whole document is. */
  readonly field?: string;
  readonly reason: string;
}

export interface ImportedPolicy {
  /** What it was made from, for a comment above it. */
  readonly from: string;
  readonly document: Record<string, unknown>;
}

export interface ImportResult {
  readonly policies: readonly ImportedPolicy[];
  readonly refusals: readonly Refusal[];
  /** What was assumed in importing (a policy without a binding among the inputs). */
  readonly notes: readonly Refusal[];
  /** Inputs that are none of the kinds imported (and are not params a binding refers to). */
  readonly ignored: readonly { readonly source: string; readonly what: string }[];
}

export interface ImportOptions {
  /** The domain of the policies made (default `workload-security`). */
  readonly domain?: string;
  /** Their owner (default: none, which the layer's first owner then becomes). */
  readonly owner?: string;
}

type Json = Record<string, unknown>;

const isRecord = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
const group = (apiVersion: unknown) => (typeof apiVersion === "string" && apiVersion.includes("/") ? apiVersion.slice(0, apiVersion.indexOf("/")) : "");

const VAP_GROUP = "admissionregistration.k8s.io";
const KYVERNO_GROUP = "policies.kyverno.io";

function nameOf(doc: Json): string {
  return isRecord(doc.metadata) && typeof doc.metadata.name === "string" ? doc.metadata.name : "";
}

function namespaceOf(doc: Json): string | undefined {
  return isRecord(doc.metadata) && typeof doc.metadata.namespace === "string" ? doc.metadata.namespace : undefined;
}

/** A Kubernetes label selector as one CEL condition on the object's labels (matchLabels and matchExpressions ANDed). */
function selectorCondition(selector: Json): string | undefined {
  const labels = "object.metadata.?labels.orValue({})";
  const terms: string[] = [];
  if (isRecord(selector.matchLabels)) {
    for (const [key, value] of Object.entries(selector.matchLabels)) terms.push(`${labels}[?${JSON.stringify(key)}].orValue('') == ${JSON.stringify(String(value))}`);
  }
  for (const requirement of Array.isArray(selector.matchExpressions) ? selector.matchExpressions : []) {
    if (!isRecord(requirement) || typeof requirement.key !== "string") return undefined;
    const key = JSON.stringify(requirement.key);
    const values = JSON.stringify(strings(requirement.values));
    switch (requirement.operator) {
      case "In":
        terms.push(`${key} in ${labels} && ${labels}[${key}] in ${values}`);
        break;
      case "NotIn":
        terms.push(`!(${key} in ${labels}) || !(${labels}[${key}] in ${values})`);
        break;
      case "Exists":
        terms.push(`${key} in ${labels}`);
        break;
      case "DoesNotExist":
        terms.push(`!(${key} in ${labels})`);
        break;
      default:
        return undefined;
    }
  }
  return terms.length === 0 ? "true" : terms.map((t) => `(${t})`).join(" && ");
}

function isEmptySelector(selector: unknown): boolean {
  return !isRecord(selector) || ((!isRecord(selector.matchLabels) || Object.keys(selector.matchLabels).length === 0) && (!Array.isArray(selector.matchExpressions) || selector.matchExpressions.length === 0));
}

/** matchConstraints.resourceRules as Polity's: the same fields; resourceNames cannot be expressed. */
function resourceRules(rules: unknown, field: string, refuse: (field: string, reason: string) => void): Json[] | undefined {
  if (!Array.isArray(rules) || rules.length === 0) return undefined;
  return rules.filter(isRecord).map((rule, i) => {
    if (strings(rule.resourceNames).length > 0) refuse(`${field}[${i}].resourceNames`, "a rule that names resources is not expressed: add a match condition on object.metadata.name");
    return {
      apiGroups: strings(rule.apiGroups),
      apiVersions: strings(rule.apiVersions),
      resources: strings(rule.resources),
      operations: strings(rule.operations),
      ...(typeof rule.scope === "string" ? { scope: rule.scope } : {}),
    };
  });
}

interface Conversion {
  readonly subject: string;
  readonly source: string;
  refuse(field: string | undefined, reason: string): void;
  readonly refused: boolean;
}

function conversion(subject: string, source: string, refusals: Refusal[]): Conversion {
  let refused = false;
  return {
    subject,
    source,
    refuse(field, reason) {
      if (field === undefined) refused = true;
      refusals.push({ subject, source, ...(field === undefined ? {} : { field }), reason });
    },
    get refused() {
      return refused;
    },
  };
}

/** The parts of a Polity policy spec a VAP's or a Kyverno policy's spec gives. */
function specFrom(spec: Json, c: Conversion): { match: Json; scope: Json | undefined; matchConditions: Json[]; variables: Json[]; validations: Json[]; failurePolicy?: string } {
  const constraints = isRecord(spec.matchConstraints) ? spec.matchConstraints : {};
  const rules = resourceRules(constraints.resourceRules, "spec.matchConstraints.resourceRules", (f, r) => c.refuse(f, r));
  const excludes = resourceRules(constraints.excludeResourceRules, "spec.matchConstraints.excludeResourceRules", (f, r) => c.refuse(f, r));
  if (rules === undefined) c.refuse(undefined, "spec.matchConstraints.resourceRules is empty: a policy that matches nothing has nothing to import");
  const matchConditions: Json[] = (Array.isArray(spec.matchConditions) ? spec.matchConditions : []).filter(isRecord).map((m) => ({ name: m.name, expression: m.expression }));
  if (!isEmptySelector(constraints.objectSelector)) {
    const condition = selectorCondition(constraints.objectSelector as Json);
    if (condition === undefined) c.refuse("spec.matchConstraints.objectSelector", "an object selector with an operator Kubernetes does not define");
    else matchConditions.push({ name: "object-selector", expression: condition });
  }
  const validations: Json[] = [];
  (Array.isArray(spec.validations) ? spec.validations : []).filter(isRecord).forEach((v, i) => {
    if (typeof v.reason === "string" && v.reason !== "Invalid" && v.reason !== "Forbidden") {
      c.refuse(`spec.validations[${i}].reason`, `reason ${v.reason} is not expressed: a Polity denial is always 403 Forbidden`);
    }
    validations.push({
      expression: v.expression,
      ...(typeof v.message === "string" ? { message: v.message } : {}),
      ...(typeof v.messageExpression === "string" ? { messageExpression: v.messageExpression } : {}),
    });
  });
  if (validations.length === 0) c.refuse(undefined, "spec.validations is empty: Polity imports validating policies, which need at least one validation");
  if (Array.isArray(spec.auditAnnotations) && spec.auditAnnotations.length > 0) {
    c.refuse("spec.auditAnnotations", "audit annotations computed by CEL are not expressed: Polity's audit annotations carry its violations, exemptions and evaluation errors");
  }
  const scope = isEmptySelector(constraints.namespaceSelector) ? undefined : { namespaceSelector: constraints.namespaceSelector as Json };
  return {
    match: { ...(rules === undefined ? {} : { resourceRules: rules }), ...(excludes === undefined ? {} : { excludeResourceRules: excludes }) },
    scope,
    matchConditions,
    variables: (Array.isArray(spec.variables) ? spec.variables : []).filter(isRecord).map((v) => ({ name: v.name, expression: v.expression })),
    validations,
    ...(spec.failurePolicy === "Fail" || spec.failurePolicy === "Ignore" ? { failurePolicy: spec.failurePolicy } : {}),
  };
}

/** validationActions → enforcement: Deny → deny, Warn → warn, Audit alone → audit. */
function enforcement(actions: string[], field: string, c: Conversion): string {
  if (actions.includes("Deny")) {
    if (actions.includes("Warn")) c.refuse(field, "Deny and Warn together are refused by Kubernetes too");
    return "deny";
  }
  if (actions.includes("Warn")) return "warn";
  if (actions.includes("Audit")) return "audit";
  c.refuse(field, "no validation action (Deny, Warn or Audit)");
  return "deny";
}

/** Every expression compiled as Polity compiles a policy's: what does not compile refuses the policy. */
function checkExpressions(spec: Json, params: ParamsDeclaration, c: Conversion): void {
  const variableNames: string[] = [];
  for (const [i, v] of (spec.variables as Json[]).entries()) {
    const problem = checkPolicyExpression(String(v.expression), variableNames, "variable", params);
    if (problem !== undefined) c.refuse(undefined, `spec.variables[${i}] (${String(v.name)}): ${problem}`);
    variableNames.push(String(v.name));
  }
  for (const [i, m] of (spec.matchConditions as Json[]).entries()) {
    const problem = checkPolicyExpression(String(m.expression), variableNames, "validation", params);
    if (problem !== undefined) c.refuse(undefined, `spec.matchConditions[${i}] (${String(m.name)}): ${problem}`);
  }
  for (const [i, v] of (spec.validations as Json[]).entries()) {
    const problem = checkPolicyExpression(String(v.expression), variableNames, "validation", params);
    if (problem !== undefined) c.refuse(undefined, `spec.validations[${i}].expression: ${problem}`);
    if (typeof v.messageExpression === "string") {
      const message = checkPolicyExpression(v.messageExpression, variableNames, "message", params);
      if (message !== undefined) c.refuse(undefined, `spec.validations[${i}].messageExpression: ${message}`);
    }
  }
}

function policyDocument(name: string, spec: Json, options: ImportOptions, description: string): Json {
  return {
    apiVersion: "polity.dev/v1",
    kind: "Policy",
    metadata: { name, ...(options.owner === undefined ? {} : { owner: options.owner }), description },
    spec: { domain: options.domain ?? "workload-security", ...spec },
  };
}

/** Drops empty lists and undefined values, so that the documents read as written by hand. */
function tidy(spec: Json): Json {
  return Object.fromEntries(Object.entries(spec).filter(([, v]) => v !== undefined && !(Array.isArray(v) && v.length === 0)));
}

export function importPolicies(inputs: readonly ImportInput[], options: ImportOptions = {}): ImportResult {
  const refusals: Refusal[] = [];
  const notes: Refusal[] = [];
  const policies: ImportedPolicy[] = [];
  const ignored: { source: string; what: string }[] = [];
  const docs = inputs.filter((i) => isRecord(i.value)).map((i) => ({ source: i.source, doc: i.value as Json }));
  const vaps = docs.filter(({ doc }) => group(doc.apiVersion) === VAP_GROUP && doc.kind === "ValidatingAdmissionPolicy");
  const bindings = docs.filter(({ doc }) => group(doc.apiVersion) === VAP_GROUP && doc.kind === "ValidatingAdmissionPolicyBinding");
  const kyverno = docs.filter(({ doc }) => group(doc.apiVersion) === KYVERNO_GROUP && doc.kind === "ValidatingPolicy");
  const used = new Set<Json>([...vaps, ...bindings, ...kyverno].map(({ doc }) => doc));

  for (const { source, doc } of vaps) {
    const name = nameOf(doc);
    const spec = isRecord(doc.spec) ? doc.spec : {};
    const paramKind = isRecord(spec.paramKind) ? spec.paramKind : undefined;
    const bound = bindings.filter(({ doc: b }) => isRecord(b.spec) && b.spec.policyName === name);
    const targets = bound.length > 0 ? bound : [undefined];
    for (const binding of targets) {
      const bindingName = binding === undefined ? undefined : nameOf(binding.doc);
      const c = conversion(`ValidatingAdmissionPolicy ${name}${bindingName === undefined ? "" : ` (binding ${bindingName})`}`, binding?.source ?? source, refusals);
      const converted = specFrom(spec, c);
      const bindingSpec = binding !== undefined && isRecord(binding.doc.spec) ? binding.doc.spec : {};
      if (binding === undefined) {
        notes.push({ subject: c.subject, source, reason: "no ValidatingAdmissionPolicyBinding among the inputs: imported as bound everywhere, with validationActions [Deny]" });
      }
      // The binding's matchResources narrow the policy's: only a namespace or object selector can be expressed.
      const resources = isRecord(bindingSpec.matchResources) ? bindingSpec.matchResources : {};
      if (resources.resourceRules !== undefined || resources.excludeResourceRules !== undefined) {
        c.refuse(undefined, "the binding's matchResources.resourceRules narrow the policy's: give the policy the narrower rules and import it again");
      }
      if (!isEmptySelector(resources.namespaceSelector)) {
        if (converted.scope !== undefined) c.refuse(undefined, "both the policy and its binding select namespaces: write the one selector that holds both");
        converted.scope = { namespaceSelector: resources.namespaceSelector as Json };
      }
      if (!isEmptySelector(resources.objectSelector)) {
        const condition = selectorCondition(resources.objectSelector as Json);
        if (condition === undefined) c.refuse("spec.matchResources.objectSelector", "an object selector with an operator Kubernetes does not define");
        else converted.matchConditions.push({ name: "binding-object-selector", expression: condition });
      }
      // Params: the one object the binding's paramRef names, its fields as the policy's params.
      let params: Json | undefined;
      if (paramKind !== undefined) {
        const ref = isRecord(bindingSpec.paramRef) ? bindingSpec.paramRef : undefined;
        if (ref === undefined) {
          c.refuse(undefined, `the policy takes params (${String(paramKind.kind)}) and ${binding === undefined ? "no binding gives them" : "its binding has no paramRef"}`);
        } else if (ref.selector !== undefined) {
          c.refuse(undefined, "paramRef.selector evaluates the policy once per matching params object: Polity evaluates a policy once, with one set of params");
        } else {
          const found = docs.find(
            ({ doc: p }) => p.kind === paramKind.kind && p.apiVersion === paramKind.apiVersion && nameOf(p) === ref.name && (ref.namespace === undefined || namespaceOf(p) === ref.namespace),
          );
          if (found === undefined) {
            c.refuse(undefined, `its params, ${String(paramKind.kind)} ${ref.namespace === undefined ? "" : `${String(ref.namespace)}/`}${String(ref.name)}, are not among the inputs`);
          } else {
            used.add(found.doc);
            params = Object.fromEntries(Object.entries(found.doc).map(([key, value]) => [key, { default: value }]));
          }
        }
      }
      // A policy whose params could not be found is refused for that; its expressions are checked with params untyped.
      const declaration: ParamsDeclaration = params !== undefined ? { declared: params as never } : paramKind !== undefined ? "unknown" : "none";
      const polity = tidy({
        ...converted,
        params,
        enforcement: enforcement(binding === undefined ? ["Deny"] : strings(bindingSpec.validationActions), "spec.validationActions", c),
      });
      checkExpressions({ variables: converted.variables, matchConditions: converted.matchConditions, validations: converted.validations }, declaration, c);
      if (c.refused) continue;
      policies.push({
        from: `${source}: ValidatingAdmissionPolicy ${name}${bindingName === undefined ? "" : `, binding ${bindingName}`}`,
        document: policyDocument(bindingName ?? name, polity, options, `Imported from ValidatingAdmissionPolicy ${name}${bindingName === undefined ? "" : ` and its binding ${bindingName}`}.`),
      });
    }
  }

  for (const { source, doc } of kyverno) {
    const name = nameOf(doc);
    const spec = isRecord(doc.spec) ? doc.spec : {};
    const c = conversion(`Kyverno ValidatingPolicy ${name}`, source, refusals);
    const converted = specFrom(spec, c);
    const evaluation = isRecord(spec.evaluation) ? spec.evaluation : {};
    if (isRecord(evaluation.admission) && evaluation.admission.enabled === false) {
      c.refuse(undefined, "evaluation.admission.enabled is false: a background-only policy has no admission decisions to import");
    }
    if (evaluation.mode === "JSON") c.refuse(undefined, "evaluation.mode JSON judges JSON payloads, not Kubernetes admission requests");
    const actions = strings(spec.validationActions);
    const polity = tidy({ ...converted, enforcement: enforcement(actions.length === 0 ? ["Deny"] : actions, "spec.validationActions", c) });
    checkExpressions({ variables: converted.variables, matchConditions: converted.matchConditions, validations: converted.validations }, "none", c);
    if (c.refused) continue;
    policies.push({ from: `${source}: Kyverno ValidatingPolicy ${name}`, document: policyDocument(name, polity, options, `Imported from Kyverno ValidatingPolicy ${name}.`) });
  }

  for (const binding of bindings) {
    const policyName = isRecord(binding.doc.spec) ? binding.doc.spec.policyName : undefined;
    if (!vaps.some(({ doc }) => nameOf(doc) === policyName)) {
      refusals.push({ subject: `ValidatingAdmissionPolicyBinding ${nameOf(binding.doc)}`, source: binding.source, reason: `its policy, ${String(policyName)}, is not among the inputs` });
    }
  }
  for (const { source, doc } of docs) {
    if (!used.has(doc)) ignored.push({ source, what: `${String(doc.kind)} ${nameOf(doc)}`.trim() });
  }
  return { policies, refusals, notes, ignored };
}
