/**
 * The agent's identity in a Secret of its own namespace, so that a rescheduled pod without
 * its volume resumes as the same cluster instead of needing a join token (which works
 * once): its key, certificate, the federation CA, the pinned bundle key and what the hub
 * said about them (identity.json), each base64 in `data`, of type
 * `polity.dev/agent-identity`. RBAC need only allow get, create and update of that one
 * Secret (resourceNames).
 *
 * What is read is validated before it is used: every field present, the certificate a
 * certificate of the key, the cluster the agent's. A Secret edited by hand that fails is
 * refused with the reason (never its contents), and replaced at the agent's next save.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { CoreV1Api, type V1Secret } from "@kubernetes/client-node";
import type { Credentials } from "../identity/credentials.js";
import type { KubeAccess } from "./config.js";
import { describeFailure, statusOf } from "./informer.js";
import { withSignal } from "./namespaces.js";

export const IDENTITY_SECRET_TYPE = "polity.dev/agent-identity";
const KEYS = { key: "key.pem", certificate: "cert.pem", ca: "ca.pem", bundleKey: "bundle-key.pem", meta: "identity.json" } as const;
/** Optional: root version 1 of the root of trust, for agents enrolled since roots. */
const ROOT_KEY = "root-1.json";
/** How long one read or write of the Secret may take. */
const TIMEOUT_MS = 5000;

export interface SecretName {
  readonly namespace: string;
  readonly name: string;
}

/** `[<namespace>/]<name>`, the namespace defaulting to the agent's; refused unless both are DNS labels. */
export function parseSecretName(text: string, defaultNamespace: string): SecretName | string {
  const [namespace, name] = text.includes("/") ? (text.split("/", 2) as [string, string]) : [defaultNamespace, text];
  const label = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
  const subdomain = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
  if (!label.test(namespace)) return `${JSON.stringify(namespace)} is not a namespace name`;
  if (!subdomain.test(name)) return `${JSON.stringify(name)} is not a Secret name`;
  return { namespace, name };
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/** The credentials a Secret holds, or why it holds none that can be used. */
export function credentialsFromSecret(secret: V1Secret, cluster: string): Credentials | string {
  if (secret.type !== IDENTITY_SECRET_TYPE) return `its type is ${JSON.stringify(secret.type ?? "")}, not ${IDENTITY_SECRET_TYPE}`;
  const data = secret.data ?? {};
  const read = (key: string): string | undefined => {
    const value = data[key];
    return typeof value === "string" ? Buffer.from(value, "base64").toString("utf8") : undefined;
  };
  const missing = Object.values(KEYS).filter((key) => read(key) === undefined || read(key) === "");
  if (missing.length > 0) return `data.${missing.join(", data.")} missing`;
  let meta: unknown;
  try {
    meta = JSON.parse(read(KEYS.meta)!);
  } catch {
    return "data.identity.json is not JSON";
  }
  if (!isRecord(meta)) return "data.identity.json is not an object";
  const fields = ["cluster", "spiffeId", "serial", "notAfter", "renewAfter"] as const;
  const bad = fields.filter((f) => typeof meta[f] !== "string" || meta[f] === "");
  if (bad.length > 0) return `data.identity.json lacks ${bad.join(", ")}`;
  if (meta.cluster !== cluster) return `it holds the identity of cluster ${String(meta.cluster)}, not ${cluster}`;
  if (Number.isNaN(Date.parse(String(meta.notAfter))) || Number.isNaN(Date.parse(String(meta.renewAfter)))) return "data.identity.json has dates that are not dates";
  const credentials: Credentials = {
    cluster,
    spiffeId: String(meta.spiffeId),
    serial: String(meta.serial),
    notAfter: String(meta.notAfter),
    renewAfter: String(meta.renewAfter),
    privateKeyPem: read(KEYS.key)!,
    certificatePem: read(KEYS.certificate)!,
    caPem: read(KEYS.ca)!,
    bundleKeyPem: read(KEYS.bundleKey)!,
    // Root version 1, pinned at enrolment (src/agent/bundle/roots.ts); absent before roots.
    ...(read(ROOT_KEY) === undefined || read(ROOT_KEY) === "" ? {} : { rootJson: read(ROOT_KEY)! }),
  };
  try {
    const certificate = new X509Certificate(credentials.certificatePem);
    if (!certificate.checkPrivateKey(createPrivateKey(credentials.privateKeyPem))) return "data.cert.pem is not a certificate of data.key.pem";
    new X509Certificate(credentials.caPem);
  } catch {
    // The parser's message could quote the material: only which field failed is said.
    return "data.key.pem, data.cert.pem or data.ca.pem does not parse";
  }
  return credentials;
}

export function secretFromCredentials(where: SecretName, credentials: Credentials): V1Secret {
  const { privateKeyPem, certificatePem, caPem, bundleKeyPem, rootJson, ...meta } = credentials;
  const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: where.name, namespace: where.namespace, labels: { "app.kubernetes.io/name": "polity-agent", "app.kubernetes.io/component": "identity" } },
    type: IDENTITY_SECRET_TYPE,
    data: {
      [KEYS.key]: b64(privateKeyPem),
      [KEYS.certificate]: b64(certificatePem),
      [KEYS.ca]: b64(caPem),
      [KEYS.bundleKey]: b64(bundleKeyPem),
      [KEYS.meta]: b64(`${JSON.stringify(meta, null, 2)}\n`),
      ...(rootJson === undefined ? {} : { [ROOT_KEY]: b64(rootJson) }),
    },
  };
}

export type SecretRead = { readonly credentials: Credentials } | { readonly absent: true } | { readonly refused: string };

export class IdentitySecret {
  private readonly core: CoreV1Api;

  constructor(
    access: KubeAccess,
    readonly where: SecretName,
    private readonly cluster: string,
  ) {
    this.core = access.config.makeApiClient(CoreV1Api);
  }

  describe(): string {
    return `Secret ${this.where.namespace}/${this.where.name}`;
  }

  /** The identity the Secret holds, that there is none, or why it cannot be used; throws when the API server cannot be asked. */
  async read(): Promise<SecretRead> {
    let secret: V1Secret;
    try {
      secret = await this.core.readNamespacedSecret({ name: this.where.name, namespace: this.where.namespace }, withSignal(AbortSignal.timeout(TIMEOUT_MS)));
    } catch (error) {
      if (statusOf(error) === 404) return { absent: true };
      throw new Error(`reading ${this.describe()} failed: ${describeFailure(error)}`);
    }
    // The placeholder deploy/agent ships (the agent's type, no data yet) holds no identity yet.
    if (secret.type === IDENTITY_SECRET_TYPE && Object.keys(secret.data ?? {}).length === 0) return { absent: true };
    const found = credentialsFromSecret(secret, this.cluster);
    return typeof found === "string" ? { refused: `${this.describe()} is not a Polity identity this agent can use: ${found}` } : { credentials: found };
  }

  /** Writes the identity: replaces the Secret, or creates it. */
  async write(credentials: Credentials): Promise<void> {
    const body = secretFromCredentials(this.where, credentials);
    const options = () => withSignal(AbortSignal.timeout(TIMEOUT_MS));
    try {
      await this.core.replaceNamespacedSecret({ name: this.where.name, namespace: this.where.namespace, body }, options());
    } catch (error) {
      if (statusOf(error) !== 404) throw new Error(`writing ${this.describe()} failed: ${describeFailure(error)}`);
      try {
        await this.core.createNamespacedSecret({ namespace: this.where.namespace, body }, options());
      } catch (created) {
        throw new Error(`creating ${this.describe()} failed: ${describeFailure(created)}`);
      }
    }
  }
}
