/**
 * The cluster's Namespaces, as every admission decision needs them: their labels select
 * policies (`namespaceSelector`) and `namespaceObject` is a variable of every expression.
 *
 * An informer (informer.ts) keeps all of them in memory, each reduced to what a decision
 * reads (name, uid, labels, annotations, creation time, finalizers, phase) and then made
 * the same way `polity eval` makes the Namespaces among its inputs (decidedResource), so
 * that the webhook and `polity eval` decide alike. A namespace not (yet) in the cache (one
 * created a moment ago, before its watch event arrived) is read once from the API server
 * with a short timeout; concurrent decisions in that namespace share the one read. If it
 * still cannot be known, the caller is told why, and the decision fails closed for the
 * policies that need it (evaluate.ts).
 */
import { CoreV1Api, Observable, type RequestContext, type ResponseContext } from "@kubernetes/client-node";
import { decidedResource } from "../decision/request.js";
import type { KubeAccess } from "./config.js";
import { describeFailure, Informer, statusOf, type InformerHealth, type KubeLog } from "./informer.js";

/** How long a decision waits for a namespace the cache does not hold (the API server's webhook timeout is 10 s by default). */
export const DEFAULT_FETCH_TIMEOUT_MS = 2000;

export interface NamespaceLookup {
  /** The Namespace as decisions see it, when known. */
  readonly namespace?: unknown;
  /** Why it is not known, when it is not. */
  readonly unknown?: string;
}

export interface NamespaceCacheHealth extends InformerHealth {
  /** Reads of namespaces the cache did not hold. */
  readonly fetches: number;
  readonly fetchFailures: number;
}

type Options = NonNullable<Parameters<CoreV1Api["readNamespace"]>[1]>;

/** Call options that abort the request with `signal` (client-node's per-call middleware). */
export function withSignal(signal: AbortSignal): Options {
  const middleware = {
    pre: (context: RequestContext) => {
      context.setSignal(signal);
      return new Observable(Promise.resolve(context));
    },
    post: (context: ResponseContext) => new Observable(Promise.resolve(context)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: "append" };
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

function stringMap(value: unknown): Record<string, string> | undefined | null {
  if (value === undefined || value === null) return undefined;
  if (!isRecord(value)) return null;
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== "string") return null;
    out[key] = v;
  }
  return out;
}

/** RFC 3339 in whole seconds, as the API server writes metadata times (the typed client turns them into Dates). */
function timestamp(value: unknown): string | undefined {
  if (value instanceof Date && !Number.isNaN(value.getTime())) return value.toISOString().replace(/\.\d{3}Z$/, "Z");
  return typeof value === "string" ? value : undefined;
}

/**
 * A Namespace from the API server (typed or plain JSON), as decisions see it; undefined
 * when it is not a Namespace (no name, labels or annotations not strings).
 */
export function namespaceForDecision(object: unknown): unknown {
  if (!isRecord(object) || !isRecord(object.metadata)) return undefined;
  const m = object.metadata;
  if (typeof m.name !== "string" || m.name === "") return undefined;
  const labels = stringMap(m.labels);
  const annotations = stringMap(m.annotations);
  if (labels === null || annotations === null) return undefined;
  const created = timestamp(m.creationTimestamp);
  const metadata: Record<string, unknown> = {
    name: m.name,
    ...(typeof m.uid === "string" ? { uid: m.uid } : {}),
    ...(typeof m.resourceVersion === "string" ? { resourceVersion: m.resourceVersion } : {}),
    ...(created === undefined ? {} : { creationTimestamp: created }),
    ...(labels === undefined ? {} : { labels }),
    ...(annotations === undefined ? {} : { annotations }),
  };
  const finalizers = isRecord(object.spec) && Array.isArray(object.spec.finalizers) ? object.spec.finalizers.filter((f): f is string => typeof f === "string") : undefined;
  const phase = isRecord(object.status) && typeof object.status.phase === "string" ? object.status.phase : undefined;
  return decidedResource({
    apiVersion: "v1",
    kind: "Namespace",
    metadata,
    ...(finalizers === undefined ? {} : { spec: { finalizers } }),
    ...(phase === undefined ? {} : { status: { phase } }),
  });
}

function nameOf(object: unknown): string | undefined {
  const name = isRecord(object) && isRecord(object.metadata) ? object.metadata.name : undefined;
  return typeof name === "string" && name !== "" ? name : undefined;
}

export class NamespaceCache {
  private readonly informer: Informer<unknown>;
  private readonly core: CoreV1Api;
  private readonly inFlight = new Map<string, Promise<NamespaceLookup>>();
  private fetches = 0;
  private fetchFailures = 0;

  constructor(
    access: KubeAccess,
    private readonly log: KubeLog,
    private readonly options: { readonly fetchTimeoutMs?: number; readonly backoffMs?: { first: number; cap: number }; readonly watchTimeoutSeconds?: () => number } = {},
  ) {
    this.core = access.config.makeApiClient(CoreV1Api);
    this.informer = new Informer<unknown>({
      name: "namespaces",
      config: access.config,
      watchPath: "/api/v1/namespaces",
      list: async (continueToken, signal) => {
        const list = await this.core.listNamespace({ limit: 500, ...(continueToken === undefined ? {} : { _continue: continueToken }) }, withSignal(signal));
        return { items: list.items, resourceVersion: list.metadata?.resourceVersion ?? "", ...(list.metadata?._continue === undefined ? {} : { continueToken: list.metadata._continue }) };
      },
      key: nameOf,
      project: namespaceForDecision,
      log,
      ...(options.backoffMs === undefined ? {} : { backoffMs: options.backoffMs }),
      ...(options.watchTimeoutSeconds === undefined ? {} : { watchTimeoutSeconds: options.watchTimeoutSeconds }),
    });
  }

  run(signal: AbortSignal): Promise<void> {
    return this.informer.run(signal);
  }

  whenSynced(signal?: AbortSignal): Promise<void> {
    return this.informer.whenSynced(signal);
  }

  get synced(): boolean {
    return this.informer.health().synced;
  }

  /** The namespace from the cache alone. */
  cached(name: string): unknown {
    return this.informer.get(name);
  }

  /** The namespace from the cache, or else read once from the API server with a short timeout. */
  lookup(name: string): Promise<NamespaceLookup> {
    const cached = this.informer.get(name);
    if (cached !== undefined) return Promise.resolve({ namespace: cached });
    let pending = this.inFlight.get(name);
    if (pending === undefined) {
      pending = this.fetch(name).finally(() => this.inFlight.delete(name));
      this.inFlight.set(name, pending);
    }
    return pending;
  }

  private async fetch(name: string): Promise<NamespaceLookup> {
    this.fetches++;
    const timeoutMs = this.options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
    const timeout = AbortSignal.timeout(timeoutMs);
    const where = this.synced ? "is not in the agent's namespace cache" : "is not known yet (the agent's namespace cache has not synced)";
    try {
      const read = await this.core.readNamespace({ name }, withSignal(timeout));
      const namespace = namespaceForDecision(read);
      if (namespace === undefined || nameOf(read) !== name) {
        this.fetchFailures++;
        return { unknown: `namespace ${name} ${where}, and the API server answered with something that is not that Namespace` };
      }
      this.informer.remember(name, namespace);
      return { namespace };
    } catch (error) {
      this.fetchFailures++;
      const why = timeout.aborted ? `no answer within ${timeoutMs} ms` : statusOf(error) === 404 ? "the API server does not know it (404)" : describeFailure(error);
      this.log.warn(`namespace ${name} could not be read`, { error: why });
      return { unknown: `namespace ${name} ${where}, and reading it from the API server failed: ${why}` };
    }
  }

  health(): NamespaceCacheHealth {
    return { ...this.informer.health(), fetches: this.fetches, fetchFailures: this.fetchFailures };
  }
}
