/**
 * The documents of policy as code (DESIGN.md section 2), validated at the boundary:
 * `Layer`, `Policy`, `Exception`, `Team` (who owns what, and who may approve), and
 * `PolicyTest` for policy unit tests.
 * Unknown fields are errors. The types below are the schema's, so they cannot drift.
 */
import { z } from "zod";
import { generateSpec } from "./generate.js";
import { rolloutRequest } from "./rollout.js";
import { dnsLabelProblems, dnsSubdomainProblems, labelKeyProblems, labelValueProblems, unshowableProblem } from "./names.js";

export const API_VERSION = "polity.dev/v1";

export const TIERS = ["global", "region", "cluster"] as const;
export type Tier = (typeof TIERS)[number];

export const ENFORCEMENTS = ["deny", "warn", "audit"] as const;
export type Enforcement = (typeof ENFORCEMENTS)[number];

/** Domains that belong to regions and clusters: upper tiers set them only where delegated. */
export const LOCAL_PROTECTED_DOMAINS = ["quota", "scheduling", "node-pools", "network-overlays", "caching"] as const;

export const OPERATIONS = ["CREATE", "UPDATE", "DELETE", "CONNECT"] as const;
export type Operation = (typeof OPERATIONS)[number];

/** A string checked by one of names.ts's rules, each problem its own issue. */
function kubernetesName(problems: (value: string) => string[]) {
  return z.string().superRefine((value, ctx) => {
    for (const message of problems(value)) ctx.addIssue({ code: "custom", message });
  });
}

/** Policy, layer and cluster names: DNS-1123 subdomains, as Kubernetes object names. */
export const resourceName = kubernetesName(dnsSubdomainProblems);

/** Regions, domains, namespaces: DNS-1123 labels. */
export const dnsLabel = kubernetesName(dnsLabelProblems);

/** A Kubernetes label key: an optional DNS-subdomain prefix and '/', and a name of at most 63 characters. */
export const labelKey = kubernetesName(labelKeyProblems);

export const labelValue = kubernetesName(labelValueProblems);

export const labels = z.record(labelKey, labelValue);

export const labelSelectorRequirement = z
  .strictObject({
    key: labelKey,
    operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]),
    values: z.array(labelValue).optional(),
  })
  .superRefine((req, ctx) => {
    const needsValues = req.operator === "In" || req.operator === "NotIn";
    if (needsValues && (req.values === undefined || req.values.length === 0)) {
      ctx.addIssue({ code: "custom", path: ["values"], message: `must be non-empty when operator is ${req.operator}` });
    }
    if (!needsValues && req.values !== undefined && req.values.length > 0) {
      ctx.addIssue({ code: "custom", path: ["values"], message: `must be empty when operator is ${req.operator}` });
    }
  });

/** Kubernetes' metav1.LabelSelector: matchLabels and matchExpressions, ANDed. */
export const labelSelector = z.strictObject({
  matchLabels: labels.optional(),
  matchExpressions: z.array(labelSelectorRequirement).optional(),
});
export type LabelSelector = z.infer<typeof labelSelector>;

/**
 * Whether a selector requires something of an object's labels: a `matchLabels` entry, or an
 * `In` or `Exists` expression. One that does not (empty, or only `NotIn` and `DoesNotExist`)
 * matches objects that merely lack a label, nearly everything: it narrows nothing.
 */
export function selects(selector: LabelSelector): boolean {
  return Object.keys(selector.matchLabels ?? {}).length > 0 || (selector.matchExpressions ?? []).some((e) => e.operator === "In" || e.operator === "Exists");
}

const owner = z.string().min(1, "must name the owning team").max(253);

/** A length of time: a whole number of seconds, minutes, hours or days (`90d`, `24h`, `30m`). */
export const duration = z.string().regex(/^[1-9][0-9]{0,6}(s|m|h|d)$/, "must be a whole number of s, m, h or d, such as 24h or 90d");

/** Milliseconds in a duration the schema accepted. */
export function durationMs(text: string): number {
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[text.slice(-1) as "s" | "m" | "h" | "d"];
  return Number(text.slice(0, -1)) * unit;
}

/** Who a person or a program is to the hub: a token's subject (an e-mail, a service name). */
export const subject = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[^\s,]+$/, "must hold no spaces or commas")
  .superRefine((value, context) => {
    const problem = unshowableProblem(value);
    if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
  });

const metadata = z.strictObject({
  name: resourceName,
  owner: owner.optional(),
  labels: labels.optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  description: z.string().optional(),
});

const jsonValue: z.ZodType<unknown> = z.lazy(() =>
  z.union([z.null(), z.boolean(), z.number(), z.string(), z.array(jsonValue), z.record(z.string(), jsonValue)]),
);

export const paramOverride = z.strictObject({
  /** The tiers below the declaring one that may set this param. */
  allowedTiers: z.array(z.enum(["region", "cluster"])).min(1, "must name at least one tier"),
  min: z.number().optional(),
  max: z.number().optional(),
  allowedValues: z.array(jsonValue).min(1).optional(),
});

export const param = z.strictObject({
  /** The value, declared by the policy's base definition. */
  default: jsonValue.optional(),
  /** A lower tier's setting of an overridable param. */
  value: jsonValue.optional(),
  /** Which lower tiers may set it and within which bounds; absent = nobody may. */
  override: paramOverride.optional(),
});
export type Param = z.infer<typeof param>;

export const validation = z.strictObject({
  /** The rule's name, used by exceptions and in violations; defaults to `rule-<n>`. */
  name: dnsLabel.or(z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/, "must be a name")).optional(),
  expression: z.string().min(1, "must not be empty"),
  message: z.string().optional(),
  messageExpression: z.string().optional(),
});
export type Validation = z.infer<typeof validation>;

export const variable = z.strictObject({
  name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a CEL identifier"),
  expression: z.string().min(1, "must not be empty"),
});

/**
 * A rule of Kubernetes' `matchConstraints.resourceRules` (admissionregistration.k8s.io
 * RuleWithOperations): API groups, versions and resources (`pods`, `pods/exec`, `*\/scale`,
 * `*`), operations, and scope; `*` is any.
 */
export const resourceRule = z.strictObject({
  apiGroups: z.array(z.string()).min(1, "must name at least one API group (\"\" is the core group, \"*\" any)"),
  apiVersions: z.array(z.string().min(1)).min(1, "must name at least one API version (\"*\" is any)"),
  resources: z
    .array(
      z
        .string()
        .min(1)
        .regex(/^([a-z0-9.-]+|\*)(\/([a-z0-9.-]+|\*))?$/, "must be a resource, resource/subresource, or * in either place (pods, pods/exec, */scale, *)"),
    )
    .min(1, "must name at least one resource"),
  operations: z.array(z.enum([...OPERATIONS, "*"])).min(1, "must name at least one operation (or *)"),
  scope: z.enum(["Namespaced", "Cluster", "*"]).optional(),
});
export type ResourceRule = z.infer<typeof resourceRule>;

export const match = z
  .strictObject({
    /** Kinds such as `Pod` or `apps/Deployment`; `*` matches every kind. */
    kinds: z.array(z.string().min(1)).min(1, "must name at least one kind").optional(),
    operations: z.array(z.enum(OPERATIONS)).min(1).optional(),
    /** Subresources to match (`status`, `ephemeralcontainers`); default: the main resource only. */
    subresources: z.array(z.string()).optional(),
    /** Kubernetes' resource rules, beside kinds: the policy matches what either matches. */
    resourceRules: z.array(resourceRule).min(1).optional(),
    /** Requests a resource rule here matches are not matched, whatever else matches them. */
    excludeResourceRules: z.array(resourceRule).min(1).optional(),
  })
  .superRefine((m, ctx) => {
    if (m.kinds === undefined && m.resourceRules === undefined) {
      ctx.addIssue({ code: "custom", path: ["kinds"], message: "must name at least one kind, or give resourceRules" });
    }
  });
export type Match = z.infer<typeof match>;

/** A match condition: a name as Kubernetes requires one (a qualified name: `not-created-by-cronjob`, `example.com/team`) and a CEL condition. */
export const matchCondition = z.strictObject({
  name: labelKey,
  expression: z.string().min(1, "must not be empty"),
});

export const scope = z.strictObject({
  regions: z.array(dnsLabel).optional(),
  clusterSelector: labelSelector.optional(),
  namespaceSelector: labelSelector.optional(),
});
export type Scope = z.infer<typeof scope>;

/** The scopes an exception may name, as `Exception.spec.scope` fields. */
export const EXCEPTION_SCOPES = ["clusters", "regions", "namespaces", "names", "objectSelector"] as const;
export type ExceptionScope = (typeof EXCEPTION_SCOPES)[number];

/** What requests for exceptions to a policy may ask (its owner's bounds). */
export const exceptionBounds = z.strictObject({
  /** false: no exception to this policy is granted, by request or in a layer file. */
  allowed: z.boolean().optional(),
  /** The longest lifetime an exception may have (default 90d). */
  maxLifetime: duration.optional(),
  /** Which scope fields an exception may use; absent: any. */
  scopes: z.array(z.enum(EXCEPTION_SCOPES)).min(1).optional(),
});
export type ExceptionBounds = z.infer<typeof exceptionBounds>;

/** `2026-12-31`, optionally with `T23:59:59`, fractional seconds and `Z` or an offset, each field in its calendar range. */
const CALENDAR_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|[+-](\d{2}):(\d{2})))?$/;

/**
 * Whether a date or RFC 3339 time names a real instant: `Date.parse` takes 2027-02-30 for
 * March 2 and 24:00:00 for the next day; an expiry must mean what it says.
 */
export function isCalendarTime(text: string, timeRequired: boolean): boolean {
  const m = CALENDAR_TIME.exec(text);
  if (m === null || (timeRequired && m[4] === undefined)) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth) return false;
  if (m[4] !== undefined && (Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6]) > 59)) return false;
  if (m[7] !== undefined && (Number(m[7]) > 23 || Number(m[8]) > 59)) return false;
  return !Number.isNaN(Date.parse(text));
}

/** Text written for people (a justification, a reason): shown in terminals, so no control or bidirectional formatting characters. */
export const shownText = (min: number, max: number) =>
  z
    .string()
    .min(min)
    .max(max)
    .superRefine((value, context) => {
      const problem = unshowableProblem(value);
      if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
    });

/** A control on its way out: warned about until `after`, refused at apply once past it. */
export const deprecation = z.strictObject({
  after: z
    .string()
    .regex(/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?$/, "must be a date (2027-06-30) or an RFC 3339 time")
    .refine((t) => isCalendarTime(t, false), "is not a valid date"),
  replacement: resourceName.optional(),
  reason: shownText(1, 1000).optional(),
});
export type Deprecation = z.infer<typeof deprecation>;

export const policySpec = z.strictObject({
  /** access-control | network | data-residency | secrets | workload-security | quota | … */
  domain: dnsLabel.optional(),
  /** A policy of the built-in library, e.g. `pod-security/restricted@v1.25`, supplying match and validations. */
  builtin: z.string().optional(),
  /**
   * With a pod-security built-in: which Pod Security Admission labels of each namespace
   * it also reads (`enforce`: pod-security.kubernetes.io/enforce and enforce-version),
   * within the floor the built-in names.
   */
  podSecurity: z.strictObject({ namespaceLabels: z.enum(["enforce", "warn", "audit"]) }).optional(),
  scope: scope.optional(),
  match: match.optional(),
  params: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a CEL identifier"), param).optional(),
  /** CEL conditions that must all hold for the policy to apply (as in Kubernetes' matchConditions). */
  matchConditions: z.array(matchCondition).optional(),
  variables: z.array(variable).optional(),
  validations: z.array(validation).optional(),
  enforcement: z.enum(ENFORCEMENTS).optional(),
  /** What a runtime error in an expression does: Fail (the default for deny) refuses, Ignore skips. */
  failurePolicy: z.enum(["Fail", "Ignore"]).optional(),
  locked: z.boolean().optional(),
  /** Upper tiers this owner lets set the policy (local-protected domains). */
  delegate: z.array(z.enum(TIERS)).optional(),
  /** What exceptions to this policy may be requested and granted (the defining layer's say). */
  exceptions: exceptionBounds.optional(),
  deprecation: deprecation.optional(),
  /** An intent: the Kubernetes objects the cluster must hold (src/policy/generate.ts); only the defining document writes it. */
  generate: generateSpec.optional(),
});
export type PolicySpec = z.infer<typeof policySpec>;

export const policyDocument = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal("Policy"),
  metadata: metadata,
  spec: policySpec,
});
export type PolicyDocument = z.infer<typeof policyDocument>;

export const exceptionRule = z.strictObject({
  name: dnsLabel,
  /** The policy's enforcement must be one of these (default: any). */
  enforcement: z.array(z.enum(ENFORCEMENTS)).min(1).optional(),
  /** Every cluster the request names must match (a request for no named cluster never matches). */
  clusterSelector: labelSelector.optional(),
  /** The requested lifetime must be at most this. */
  maxLifetime: duration,
});
export type ExceptionRule = z.infer<typeof exceptionRule>;

export const layerDocument = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal("Layer"),
  metadata: metadata,
  spec: z
    .strictObject({
      tier: z.enum(TIERS),
      /** The region a region layer is for, or a cluster layer's cluster is in. */
      region: dnsLabel.optional(),
      /** The cluster a cluster layer is for. */
      cluster: resourceName.optional(),
      owners: z.array(owner).min(1, "must name at least one owning team"),
      /**
       * Risk rules under which a request for an exception to this layer's policies is
       * approved without a person: e.g. a warn policy, a non-production cluster, at most a day.
       */
      exceptionRules: z.array(exceptionRule).optional(),
      /** How a change of this layer reaches its clusters: stages and gates (README "Staged rollouts"); the apply's own flags win. */
      rollout: rolloutRequest.optional(),
    })
    .superRefine((spec, ctx) => {
      if (spec.tier === "region" && spec.region === undefined) {
        ctx.addIssue({ code: "custom", path: ["region"], message: "is required for a region layer" });
      }
      if (spec.tier === "cluster" && spec.cluster === undefined) {
        ctx.addIssue({ code: "custom", path: ["cluster"], message: "is required for a cluster layer" });
      }
      if (spec.tier === "global" && (spec.region !== undefined || spec.cluster !== undefined)) {
        ctx.addIssue({ code: "custom", path: ["tier"], message: "a global layer names no region or cluster" });
      }
    }),
});
export type LayerDocument = z.infer<typeof layerDocument>;

/** An RFC 3339 time such as 2026-12-31T00:00:00Z, naming a real instant. */
const rfc3339 = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/, "must be an RFC 3339 time such as 2026-12-31T00:00:00Z")
  .refine((t) => isCalendarTime(t, true), "is not a valid time");

export const exceptionDocument = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal("Exception"),
  metadata: metadata,
  spec: z
    .strictObject({
      policy: resourceName,
      /** Rules of the policy it relaxes; absent = every rule. */
      rules: z.array(z.string().min(1)).min(1).optional(),
      scope: z
        .strictObject({
          clusters: z.array(resourceName).min(1).optional(),
          regions: z.array(dnsLabel).min(1).optional(),
          namespaces: z.array(dnsLabel).min(1).optional(),
          names: z.array(shownText(1, 253)).min(1).optional(),
          objectSelector: labelSelector.optional(),
        })
        .refine(
          (s) => s.namespaces !== undefined || s.names !== undefined || (s.objectSelector !== undefined && selects(s.objectSelector)),
          "an exception must be narrow: name namespaces, resource names or an objectSelector that requires a label (matchLabels, or In or Exists)",
        ),
      justification: shownText(1, 2000).refine((t) => t.trim().length >= 10, "must explain why, in at least 10 characters"),
      /** In a layer file: who approved it (the hub records who applied it). In a request: absent, the hub records who approves. */
      approvedBy: shownText(1, 253).optional(),
      expiresAt: rfc3339,
    }),
});
export type ExceptionDocument = z.infer<typeof exceptionDocument>;

export const teamDocument = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal("Team"),
  metadata: metadata,
  spec: z
    .strictObject({
      /** Subjects (as tokens carry them) who belong to the team. */
      members: z.array(subject).min(1).optional(),
      /** Groups (as tokens and single sign-on carry them) whose members belong to the team. */
      groups: z.array(subject).min(1).optional(),
      /** An exception request to this team waits this long for an answer, then goes to the global admins too (default 72h). */
      escalateAfter: duration.optional(),
    })
    .refine((spec) => spec.members !== undefined || spec.groups !== undefined, "a team names its members or the groups that map to it"),
});
export type TeamDocument = z.infer<typeof teamDocument>;

const expectation = z.strictObject({
  allowed: z.boolean(),
  /** Violations that must be reported, as `policy` or `policy/rule`. */
  violations: z.array(z.string()).optional(),
  /** Warnings that must be reported, as `policy` or `policy/rule`. */
  warnings: z.array(z.string()).optional(),
});

export const policyTestDocument = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal("PolicyTest"),
  metadata: metadata,
  spec: z.strictObject({
    /** Policy files, folders or `builtin:` references, relative to the test file. */
    policies: z.array(z.string()).min(1).optional(),
    layers: z
      .strictObject({ global: z.string().optional(), region: z.string().optional(), cluster: z.string().optional() })
      .optional(),
    cluster: z.strictObject({ name: resourceName, region: dnsLabel.optional(), labels: labels.optional() }).optional(),
    /** The time the test runs at (exceptions expire relative to it); default: the real time. */
    now: rfc3339.optional(),
    cases: z
      .array(
        z.strictObject({
          name: z.string().min(1),
          /** A resource or AdmissionReview, inline. */
          object: z.record(z.string(), jsonValue).optional(),
          /** A file holding the resource or AdmissionReview, relative to the test file. */
          file: z.string().optional(),
          operation: z.enum(OPERATIONS).optional(),
          namespaceLabels: labels.optional(),
          expect: expectation,
        }),
      )
      .min(1, "must have at least one case"),
  }),
});
export type PolicyTestDocument = z.infer<typeof policyTestDocument>;

export const DOCUMENT_SCHEMAS = {
  Layer: layerDocument,
  Policy: policyDocument,
  Exception: exceptionDocument,
  Team: teamDocument,
  PolicyTest: policyTestDocument,
} as const;

export type DocumentKind = keyof typeof DOCUMENT_SCHEMAS;

export type PolityDocument = LayerDocument | PolicyDocument | ExceptionDocument | TeamDocument | PolicyTestDocument;
