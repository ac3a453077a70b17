/**
 * Every generated manifest against the Kubernetes OpenAPI schemas, as `kubernetes-models`
 * 4.5 ships them (generated from Kubernetes' own OpenAPI documents, with ajv validators),
 * and against what the cluster's version serves: a kind its API server does not know is a
 * problem, not a surprise at apply time. Object names are checked as the API server checks
 * them (DNS-1123 subdomains), which the OpenAPI schemas do not say.
 */
import { ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding } from "kubernetes-models/admissionregistration.k8s.io/v1";
import { CustomResourceDefinition } from "kubernetes-models/apiextensions.k8s.io/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";
import { LimitRange, ResourceQuota } from "kubernetes-models/v1";
import { dnsLabelProblems, dnsSubdomainProblems } from "../policy/names.js";
import { PARAMS_KIND } from "./admission.js";
import type { Manifest } from "./translate.js";

interface Validatable {
  validate(): void;
}

type Constructor = new (data: never) => Validatable;

/** Each kind Polity generates: its validator and the first minor version of Kubernetes serving it at that apiVersion. */
const KINDS: Readonly<Record<string, { model: Constructor; apiVersion: string; since: number }>> = {
  NetworkPolicy: { model: NetworkPolicy, apiVersion: "networking.k8s.io/v1", since: 7 },
  ResourceQuota: { model: ResourceQuota, apiVersion: "v1", since: 0 },
  LimitRange: { model: LimitRange, apiVersion: "v1", since: 0 },
  Role: { model: Role, apiVersion: "rbac.authorization.k8s.io/v1", since: 8 },
  RoleBinding: { model: RoleBinding, apiVersion: "rbac.authorization.k8s.io/v1", since: 8 },
  ClusterRole: { model: ClusterRole, apiVersion: "rbac.authorization.k8s.io/v1", since: 8 },
  ClusterRoleBinding: { model: ClusterRoleBinding, apiVersion: "rbac.authorization.k8s.io/v1", since: 8 },
  ValidatingAdmissionPolicy: { model: ValidatingAdmissionPolicy, apiVersion: "admissionregistration.k8s.io/v1", since: 30 },
  ValidatingAdmissionPolicyBinding: { model: ValidatingAdmissionPolicyBinding, apiVersion: "admissionregistration.k8s.io/v1", since: 30 },
  CustomResourceDefinition: { model: CustomResourceDefinition, apiVersion: "apiextensions.k8s.io/v1", since: 16 },
};

export interface SchemaProblem {
  /** `NetworkPolicy team-a/polity-segmentation.default-deny`. */
  readonly object: string;
  /** `spec.policyTypes[1]`. */
  readonly field: string;
  readonly message: string;
}

export function describeObject(m: Manifest): string {
  return `${m.kind} ${m.metadata.namespace === undefined ? "" : `${m.metadata.namespace}/`}${m.metadata.name}`;
}

/** `/spec/policyTypes/1` → `spec.policyTypes[1]`. */
function pointerToField(pointer: string): string {
  return pointer
    .split("/")
    .slice(1)
    .map((p, i) => (/^[0-9]+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`))
    .join("");
}

/** The first minor version of Kubernetes that serves a manifest's kind (0 for kinds Polity does not generate: schemaProblems says so). */
export function servedSince(manifest: Manifest): number {
  return KINDS[manifest.kind]?.since ?? 0;
}

/** The schema problems of one manifest for a cluster of Kubernetes 1.`minor`; empty when it is valid. */
export function schemaProblems(manifest: Manifest, minor: number): SchemaProblem[] {
  const object = describeObject(manifest);
  const problems: SchemaProblem[] = [];
  for (const message of dnsSubdomainProblems(manifest.metadata.name)) problems.push({ object, field: "metadata.name", message });
  if (manifest.metadata.namespace !== undefined) for (const message of dnsLabelProblems(manifest.metadata.namespace)) problems.push({ object, field: "metadata.namespace", message });
  if (manifest.kind === PARAMS_KIND) return problems; // Polity's own resource: its shape is the params'
  const kind = KINDS[manifest.kind];
  if (kind === undefined || kind.apiVersion !== manifest.apiVersion) {
    problems.push({ object, field: "apiVersion", message: `${manifest.apiVersion} ${manifest.kind} is not a kind Polity generates` });
    return problems;
  }
  if (minor < kind.since) {
    problems.push({ object, field: "apiVersion", message: `Kubernetes 1.${minor} does not serve ${manifest.apiVersion} ${manifest.kind} (it does from 1.${kind.since})` });
    return problems;
  }
  try {
    new kind.model(manifest as never).validate();
  } catch (error) {
    const errors = (error as { errors?: { instancePath?: string; message?: string }[] }).errors;
    if (Array.isArray(errors) && errors.length > 0) {
      for (const e of errors) problems.push({ object, field: pointerToField(e.instancePath ?? ""), message: e.message ?? "is invalid" });
    } else {
      problems.push({ object, field: "", message: error instanceof Error ? error.message : String(error) });
    }
  }
  return problems;
}
