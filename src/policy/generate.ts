/**
 * A policy's `generate` section: the Kubernetes objects an intent makes a cluster hold
 * (network segmentation, quotas and limits, access, data residency). Validated strictly at
 * the boundary, like the rest of a policy; translated by src/intents.
 *
 * Values a lower tier may tune are params, written as a whole value `$(params.NAME)`: the
 * param's bounds then say how far a region or cluster may move them (README, "Intents").
 *
 * Access rules are exactly what they name: wildcards and the verbs that grant other
 * permissions (`escalate`, `bind`, `impersonate`) are refused, since a binding made from
 * them would grant more than a reader of the intent can see; so are Kubernetes' `system:`
 * groups, which hold every anonymous or authenticated caller.
 */
import { z } from "zod";
import { dnsLabelProblems, labelKeyProblems, labelValueProblems } from "./names.js";

function checked(problems: (value: string) => string[]) {
  return z.string().superRefine((value, ctx) => {
    for (const message of problems(value)) ctx.addIssue({ code: "custom", message });
  });
}

const namespace = checked(dnsLabelProblems);
const name = checked(dnsLabelProblems);
const labelMap = z.record(checked(labelKeyProblems), checked(labelValueProblems));

/** `$(params.NAME)`: the value of the policy's param NAME, whatever its type. */
export const PARAM_REFERENCE = /^\$\(params\.([A-Za-z_][A-Za-z0-9_]*)\)$/;
export const paramReference = z.string().regex(PARAM_REFERENCE, "must be $(params.NAME)");

/** A Kubernetes quantity (`500m`, `2Gi`, `10`), or a param holding one. */
const quantity = z.union([paramReference, z.string().regex(/^[+]?[0-9.]+([eE][-+]?[0-9]+|[numkKMGTPE]i?)?$/, "must be a quantity such as 500m, 2Gi or 10"), z.number().nonnegative()]);
const resourceList = z.record(z.string().regex(/^[a-z0-9]([-a-z0-9./]*[a-z0-9])?$/, "must be a resource name such as requests.cpu"), quantity);

const port = z.strictObject({
  protocol: z.enum(["TCP", "UDP", "SCTP"]).optional(),
  port: z.number().int().min(1).max(65535),
});

const peer = z
  .strictObject({
    /** Pods in this namespace (absent: the flow's own namespace). */
    namespace: namespace.optional(),
    /** Pods with these labels (absent: every pod of the namespace). */
    podSelector: labelMap.optional(),
  });

const cidr = z.string().regex(/^([0-9]{1,3}\.){3}[0-9]{1,3}\/[0-9]{1,2}$|^[0-9a-fA-F:]+\/[0-9]{1,3}$/, "must be a CIDR such as 10.0.0.0/8");

export const networkIntent = z.strictObject({
  /** Namespaces that get a default-deny policy (ingress and egress). */
  namespaces: z.array(namespace).min(1, "must name at least one namespace"),
  /** Allow DNS to kube-system's kube-dns from every pod of these namespaces (default true). */
  allowDns: z.boolean().optional(),
  /** Allowed flows into pods of a namespace. */
  ingress: z
    .array(
      z.strictObject({
        name,
        namespace,
        podSelector: labelMap.optional(),
        from: z.array(peer).min(1, "must name at least one peer"),
        ports: z.array(port).min(1).optional(),
      }),
    )
    .optional(),
  /** Allowed flows out of pods of a namespace: to pods, or to named CIDRs. */
  egress: z
    .array(
      z
        .strictObject({
          name,
          namespace,
          podSelector: labelMap.optional(),
          to: z.array(peer).min(1).optional(),
          cidrs: z.union([paramReference, z.array(cidr).min(1)]).optional(),
          ports: z.array(port).min(1).optional(),
        })
        .refine((e) => e.to !== undefined || e.cidrs !== undefined, "an egress flow names its peers (to) or CIDRs (cidrs)"),
    )
    .optional(),
});
export type NetworkIntent = z.infer<typeof networkIntent>;

export const quotaIntent = z
  .strictObject({
    namespaces: z.array(namespace).min(1, "must name at least one namespace"),
    /** ResourceQuota spec.hard. */
    hard: resourceList.optional(),
    /** A LimitRange for containers. */
    limits: z
      .strictObject({
        default: resourceList.optional(),
        defaultRequest: resourceList.optional(),
        max: resourceList.optional(),
        min: resourceList.optional(),
      })
      .optional(),
  })
  .refine((q) => q.hard !== undefined || q.limits !== undefined, "a quota intent sets hard limits, container limits, or both");
export type QuotaIntent = z.infer<typeof quotaIntent>;

/** Verbs a grant may name: the ordinary ones; escalate, bind and impersonate grant other permissions and are refused. */
export const GRANTABLE_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"] as const;

const noWildcard = (what: string) => z.string().refine((v) => !v.includes("*"), `must name the ${what}: a wildcard grants more than the intent can show`);

export const accessRule = z.strictObject({
  apiGroups: z.array(noWildcard("API group")).min(1, "must name at least one API group (\"\" is the core group)"),
  resources: z.array(noWildcard("resource").pipe(z.string().min(1))).min(1, "must name at least one resource"),
  verbs: z.array(z.enum(GRANTABLE_VERBS)).min(1, "must name at least one verb"),
  resourceNames: z.array(z.string().min(1)).min(1).optional(),
});
export type AccessRule = z.infer<typeof accessRule>;

/**
 * A group as the cluster's authenticator names it. Not one of Kubernetes' own `system:`
 * groups: `system:unauthenticated` is every anonymous caller, `system:authenticated` every
 * caller with any credential, `system:masters` bypasses RBAC; a grant to them reaches
 * far beyond the people the intent's reader pictures.
 */
const group = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[^\s,*]+$/, "must be a group name (no spaces, commas or wildcards)")
  .superRefine((value, ctx) => {
    if (value.startsWith("system:")) {
      ctx.addIssue({ code: "custom", message: `${JSON.stringify(value)} is a Kubernetes system group (system:authenticated, system:unauthenticated, system:masters…): an intent grants only to groups of people it names` });
    }
  });

export const accessIntent = z.strictObject({
  grants: z
    .array(
      z.strictObject({
        name,
        /** Groups (as the cluster's authenticator names them) that receive the rules. */
        groups: z.array(group).min(1, "must name at least one group"),
        /** Namespaces the rules hold in (a Role per namespace); absent: the whole cluster (a ClusterRole). */
        namespaces: z.array(namespace).min(1).optional(),
        rules: z.array(accessRule).min(1, "must name at least one rule"),
      }),
    )
    .min(1, "must name at least one grant"),
});
export type AccessIntent = z.infer<typeof accessIntent>;

export const residencyIntent = z.strictObject({
  /** The workloads it holds: pods with these labels (`residency: eu`). */
  selector: labelMap.refine((m) => Object.keys(m).length > 0, "must name at least one label"),
  /** Zones those pods may run in, or a param holding the list. */
  zones: z.union([paramReference, z.array(checked(labelValueProblems)).min(1, "must name at least one zone")]),
  /** The node label holding a node's zone (default topology.kubernetes.io/zone). */
  zoneLabel: checked(labelKeyProblems).optional(),
});
export type ResidencyIntent = z.infer<typeof residencyIntent>;

export const generateSpec = z
  .strictObject({
    network: networkIntent.optional(),
    quota: quotaIntent.optional(),
    access: accessIntent.optional(),
    residency: residencyIntent.optional(),
    /**
     * Apply its objects with `force`, taking over fields another field manager owns
     * (default false: such a field is a conflict, reported, and the version rolled back).
     */
    forceConflicts: z.boolean().optional(),
  })
  .refine((g) => ["network", "quota", "access", "residency"].filter((k) => k in g).length === 1, "must hold exactly one of network, quota, access or residency");
export type GenerateSpec = z.infer<typeof generateSpec>;
