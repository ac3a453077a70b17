/**
 * Where the agent finds its Kubernetes API server, by the rules of kubectl and client-go,
 * in this order: `--kubeconfig FILE`; the KUBECONFIG variable (a list of files, merged as
 * kubectl merges them); the in-cluster service account when KUBERNETES_SERVICE_HOST is set
 * (its token and CA under /var/run/secrets/kubernetes.io/serviceaccount). Without any of
 * them there is no API server: the agent runs as before and says so in /healthz.
 * Unlike kubectl it does not fall back to ~/.kube/config: an agent that silently picked up
 * whoever's personal configuration is on the machine would decide by the wrong cluster.
 *
 * Refused, with a reason: a configuration without a current cluster, a server that is not
 * HTTPS, and `insecure-skip-tls-verify` (the namespaces decide who is denied; they must
 * come from the real API server). What is shown of a configuration (`describe`) never
 * holds a credential.
 */
import { existsSync, readFileSync } from "node:fs";
import { delimiter } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { PolityError } from "../errors.js";

export type KubeSource = "kubeconfig" | "KUBECONFIG" | "in-cluster";

export interface KubeAccess {
  readonly config: KubeConfig;
  readonly source: KubeSource;
  /** The API server's URL. */
  readonly server: string;
  /** The current context's name (in-cluster: "inClusterContext"). */
  readonly context: string;
  /** The namespace of the current context (in-cluster: the service account's), or "default". */
  readonly namespace: string;
}

export interface KubeAccessOptions {
  /** `--kubeconfig FILE`. */
  readonly kubeconfig?: string;
  /** The environment (default: process.env). */
  readonly env?: NodeJS.ProcessEnv;
}

const SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

function invalid(message: string): PolityError {
  return PolityError.of("invalid", message);
}

/** The API server access the options and environment describe, or undefined when they describe none. */
export function loadKubeAccess(options: KubeAccessOptions = {}): KubeAccess | undefined {
  const env = options.env ?? process.env;
  const config = new KubeConfig();
  let source: KubeSource;
  try {
    if (options.kubeconfig !== undefined) {
      if (!existsSync(options.kubeconfig)) throw invalid(`--kubeconfig ${options.kubeconfig}: no such file`);
      config.loadFromFile(options.kubeconfig);
      source = "kubeconfig";
    } else if (env.KUBECONFIG !== undefined && env.KUBECONFIG !== "") {
      const files = env.KUBECONFIG.split(delimiter).filter((file) => file !== "");
      const missing = files.filter((file) => !existsSync(file));
      // client-go skips files of the list that do not exist, but not a list of none.
      if (missing.length === files.length) throw invalid(`KUBECONFIG=${env.KUBECONFIG}: no such file`);
      const present = files.filter((file) => existsSync(file));
      config.loadFromFile(present[0]!);
      for (const file of present.slice(1)) {
        const more = new KubeConfig();
        more.loadFromFile(file);
        config.mergeConfig(more, true);
      }
      source = "KUBECONFIG";
    } else if (env.KUBERNETES_SERVICE_HOST !== undefined && env.KUBERNETES_SERVICE_HOST !== "") {
      if (env.KUBERNETES_SERVICE_PORT === undefined || env.KUBERNETES_SERVICE_PORT === "") throw invalid("KUBERNETES_SERVICE_HOST is set but KUBERNETES_SERVICE_PORT is not");
      config.loadFromCluster();
      source = "in-cluster";
    } else {
      return undefined;
    }
  } catch (error) {
    if (error instanceof PolityError) throw error;
    // The client's messages name files and fields, never credentials.
    throw invalid(`the Kubernetes configuration cannot be read: ${error instanceof Error ? error.message : String(error)}`);
  }
  const cluster = config.getCurrentCluster();
  if (cluster === null) throw invalid(`the Kubernetes configuration (${source}) has no current context with a cluster`);
  let url: URL;
  try {
    url = new URL(cluster.server);
  } catch {
    throw invalid(`the Kubernetes configuration (${source}) names a server that is not a URL: ${JSON.stringify(cluster.server)}`);
  }
  if (url.protocol !== "https:") throw invalid(`the Kubernetes API server must be reached over HTTPS, not ${url.protocol}//${url.host}`);
  if (cluster.skipTLSVerify) throw invalid(`the Kubernetes configuration (${source}) sets insecure-skip-tls-verify for ${url.host}: the agent verifies its API server`);
  const namespace = source === "in-cluster" ? serviceAccountNamespace() : (config.getContextObject(config.getCurrentContext())?.namespace ?? "default");
  return { config, source, server: cluster.server, context: config.getCurrentContext(), namespace };
}

function serviceAccountNamespace(): string {
  try {
    return existsSync(SERVICE_ACCOUNT_NAMESPACE) ? readFileSync(SERVICE_ACCOUNT_NAMESPACE, "utf8").trim() || "default" : "default";
  } catch {
    return "default";
  }
}

/** What /healthz and the logs show of an access: never a credential. */
export function describeKubeAccess(access: KubeAccess | undefined): { source: KubeSource | "none"; server: string | null; context: string | null } {
  if (access === undefined) return { source: "none", server: null, context: null };
  return { source: access.source, server: access.server, context: access.context };
}
