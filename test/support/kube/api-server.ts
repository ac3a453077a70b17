/**
 * A Kubernetes API server for tests, written from the Kubernetes API documentation ("API
 * concepts": resource versions, list and watch, watch bookmarks, 410 Gone; server-side
 * apply) since no kube-apiserver can run here. It serves real HTTPS on loopback with a
 * certificate of its own CA, checks a bearer token, and writes a kubeconfig for it, so that
 * the unmodified official client (and kubectl) talk to it as to a cluster.
 *
 * What it does, as the API server does:
 * - discovery: /api, /apis, /apis/<group>, and each group version's APIResourceList; /version;
 * - objects of any served type in memory, under one resourceVersion counter (etcd's
 *   revision): get, list (limit and continue, labelSelector and fieldSelector equality),
 *   create (generateName, 409 AlreadyExists, 404 for a namespace that does not exist),
 *   update (409 Conflict on a stale metadata.resourceVersion: what Leases rely on), patch
 *   (merge, strategic merge treated as merge, JSON patch, and server-side apply with a
 *   required fieldManager), delete; field ownership in metadata.managedFields: an apply
 *   that would change another manager's field is a 409 Conflict unless forced, an update
 *   takes the fields it changes (managed-fields.ts);
 * - watch from a resourceVersion: every event after it; without one (or "0"), synthetic
 *   ADDED events for what exists, then the changes; BOOKMARK events when asked
 *   (allowWatchBookmarks) every `bookmarkIntervalMs`; a resourceVersion older than the
 *   compacted history gets an ERROR event with a 410 Status, reason Expired, and the stream
 *   ends; timeoutSeconds ends a stream.
 *
 * Faults on demand (`fail`, `dropWatches`, `compact`): dropped streams (cut mid-event),
 * 410, 429 with Retry-After, 500, slow answers, garbage bodies. Every request is recorded
 * (`requests`) so that a test can see what a client asked and when.
 */
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { createCertificateAuthority, issueServerCertificate } from "../../../src/identity/ca.js";
import { applyWithOwnership, conflictStatus, defaultManager, updateOwnership } from "./managed-fields.js";
import { apiGroup, apiVersionOf, BUILT_IN, groupList, groupsOf, resourceList, type ResourceType } from "./resources.js";

export type { ResourceType } from "./resources.js";

type Json = Record<string, unknown>;

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  /** Milliseconds since the epoch. */
  readonly at: number;
  /** The status answered (0 for a stream cut before an answer). */
  status: number;
}

/** What a fault does to a request it matches. */
export type FaultAction =
  | { readonly kind: "status"; readonly code: 410 | 429 | 500 | 503; readonly retryAfterSeconds?: number }
  | { readonly kind: "garbage" }
  | { readonly kind: "slow"; readonly delayMs: number }
  /** Closes the connection without answering. */
  | { readonly kind: "hang-up" }
  /** Answers 200 and then sends nothing, ever (a stuck proxy): no event, no bookmark. */
  | { readonly kind: "silent" };

export interface Fault {
  readonly method?: string;
  /** Matched against the path (without the query). */
  readonly path?: RegExp;
  /** Only watches (true) or only non-watches (false). */
  readonly watch?: boolean;
  /** How many matching requests it applies to (default 1; Infinity for all until cleared). */
  readonly times?: number;
  readonly action: FaultAction;
}

export interface TestApiServerOptions {
  /** How often a watch that asked for bookmarks gets one (default 1000 ms). */
  readonly bookmarkIntervalMs?: number;
  /** The bearer token the server accepts (default: a random one, in the kubeconfig). */
  readonly token?: string;
}

interface StoredEvent {
  readonly type: "ADDED" | "MODIFIED" | "DELETED";
  readonly rv: number;
  readonly key: string;
  readonly typeKey: string;
  readonly namespace: string | undefined;
  readonly object: Json;
}

interface Watcher {
  readonly typeKey: string;
  readonly namespace: string | undefined;
  readonly filter: (object: Json) => boolean;
  readonly res: ServerResponse;
  /** The last resourceVersion this watcher was told about. */
  sent: number;
}

const typeKeyOf = (t: ResourceType) => `${t.group}/${t.resource}`;
const clone = <T>(value: T): T => structuredClone(value);
const isRecord = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);

function status(code: number, reason: string, message: string, details?: Json): Json {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code, ...(details === undefined ? {} : { details }) };
}

class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** JSON merge patch (RFC 7386); strategic merge patches are applied the same way here. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isRecord(patch)) return clone(patch);
  const out: Json = isRecord(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/** JSON patch (RFC 6902): add, remove, replace, test. */
function jsonPatch(target: Json, operations: unknown): Json {
  if (!Array.isArray(operations)) throw new ApiError(400, "BadRequest", "a JSON patch is an array of operations");
  const doc = clone(target);
  for (const op of operations) {
    if (!isRecord(op) || typeof op.op !== "string" || typeof op.path !== "string") throw new ApiError(400, "BadRequest", "a JSON patch operation has op and path");
    const steps = op.path.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
    const last = steps.pop();
    if (last === undefined) throw new ApiError(422, "Invalid", "a JSON patch cannot replace the whole object");
    let parent: unknown = doc;
    for (const step of steps) parent = Array.isArray(parent) ? parent[Number(step)] : isRecord(parent) ? parent[step] : undefined;
    if (!isRecord(parent) && !Array.isArray(parent)) throw new ApiError(422, "Invalid", `JSON patch path ${op.path} does not exist`);
    const container = parent as Json & unknown[];
    if (op.op === "test") {
      if (JSON.stringify(container[last as never]) !== JSON.stringify(op.value)) throw new ApiError(422, "Invalid", `JSON patch test at ${op.path} failed`);
    } else if (op.op === "remove") {
      if (Array.isArray(container)) container.splice(Number(last), 1);
      else delete container[last];
    } else if (op.op === "add" || op.op === "replace") {
      if (Array.isArray(container) && op.op === "add") container.splice(last === "-" ? container.length : Number(last), 0, op.value);
      else (container as Json)[last] = op.value;
    } else {
      throw new ApiError(400, "BadRequest", `JSON patch op ${op.op} is not supported here`);
    }
  }
  return doc;
}

/** Equality-based label selectors (`a=b,c!=d,e`, `!f`): what clients send for informers. */
function labelFilter(selector: string | undefined): (object: Json) => boolean {
  if (selector === undefined || selector === "") return () => true;
  const terms = selector.split(",").map((term) => term.trim());
  return (object) => {
    const labels = (isRecord(object.metadata) && isRecord(object.metadata.labels) ? object.metadata.labels : {}) as Record<string, string>;
    return terms.every((term) => {
      if (term.startsWith("!")) return !(term.slice(1) in labels);
      const ne = term.split("!=");
      if (ne.length === 2) return labels[ne[0]!] !== ne[1];
      const eq = term.split(/==?/);
      if (eq.length === 2) return labels[eq[0]!] === eq[1];
      return term in labels;
    });
  };
}

/** fieldSelector on metadata.name and metadata.namespace (what a single-object watch sends). */
function fieldFilter(selector: string | undefined): (object: Json) => boolean {
  if (selector === undefined || selector === "") return () => true;
  const terms = selector.split(",").map((term) => term.trim().split(/!=|==?/));
  const negated = selector.split(",").map((term) => term.includes("!="));
  return (object) => {
    const metadata = (isRecord(object.metadata) ? object.metadata : {}) as Record<string, unknown>;
    return terms.every(([field, value], i) => {
      const actual = field === "metadata.name" ? metadata.name : field === "metadata.namespace" ? metadata.namespace : undefined;
      return negated[i] ? actual !== value : actual === value;
    });
  };
}

export class TestApiServer {
  /** Every request, in order. */
  readonly requests: RecordedRequest[] = [];
  /** What GET /version answers (gitVersion; major and minor are read from it). */
  kubernetesVersion = "v1.33.0-polity-test";
  private readonly types: ResourceType[] = [...BUILT_IN];
  private readonly objects = new Map<string, Json>();
  private readonly history: StoredEvent[] = [];
  /** Watches asking for a resourceVersion below this get 410 Gone (Expired). */
  private compactedBelow = 0;
  private revision = 1;
  private readonly watchers = new Set<Watcher>();
  private readonly faults: { fault: Fault; left: number }[] = [];
  private bookmarkTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly server: Server,
    readonly url: string,
    readonly caPem: string,
    readonly token: string,
  ) {}

  static async start(options: TestApiServerOptions = {}): Promise<TestApiServer> {
    const now = new Date();
    const { authority } = await createCertificateAuthority("test-kube-apiserver", now);
    const serving = await issueServerCertificate(authority, { dns: ["localhost", "kubernetes.default.svc"], ips: ["127.0.0.1"] }, now, 24 * 3600 * 1000);
    const token = options.token ?? randomUUID();
    const holder: { api?: TestApiServer } = {};
    const server = createServer({ cert: serving.certificatePem, key: serving.privateKeyPem, minVersion: "TLSv1.2" }, (req, res) => holder.api?.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const address = server.address();
    if (typeof address !== "object" || address === null) throw new Error("the test API server has no address");
    const api = new TestApiServer(server, `https://127.0.0.1:${address.port}`, authority.certificatePem, token);
    holder.api = api;
    api.bookmarkTimer = setInterval(() => api.bookmarks(), options.bookmarkIntervalMs ?? 1000);
    api.bookmarkTimer.unref();
    return api;
  }

  /** A kubeconfig for this server (cluster, bearer-token user, context), written to `path`. */
  writeKubeconfig(path: string, options: { token?: string; context?: string } = {}): string {
    const context = options.context ?? "test";
    const config = {
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "test-cluster", cluster: { server: this.url, "certificate-authority-data": Buffer.from(this.caPem).toString("base64") } }],
      users: [{ name: "test-user", user: { token: options.token ?? this.token } }],
      contexts: [{ name: context, context: { cluster: "test-cluster", user: "test-user" } }],
      "current-context": context,
    };
    writeFileSync(path, stringifyYaml(config), { mode: 0o600 });
    return path;
  }

  async close(): Promise<void> {
    clearInterval(this.bookmarkTimer);
    for (const watcher of this.watchers) watcher.res.destroy();
    this.watchers.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ---- what tests do ------------------------------------------------------------------------

  /** Serves one more type, as a CustomResourceDefinition would. */
  serve(type: ResourceType): void {
    if (!this.types.some((t) => typeKeyOf(t) === typeKeyOf(type) && t.version === type.version)) this.types.push(type);
  }

  /** Makes the next matching requests fail as `fault` says. */
  fail(fault: Fault): void {
    this.faults.push({ fault, left: fault.times ?? 1 });
  }

  clearFaults(): void {
    this.faults.length = 0;
  }

  /** Cuts every open watch stream; with `midEvent`, after writing half of an event line. */
  dropWatches(options: { midEvent?: boolean } = {}): number {
    const count = this.watchers.size;
    for (const watcher of this.watchers) {
      if (options.midEvent === true) watcher.res.write('{"type":"MODIFIED","object":{"kind":"Namesp');
      watcher.res.socket?.destroy();
    }
    this.watchers.clear();
    return count;
  }

  /** Sends an event to every open watch as it is, in no order (a misbehaving server or proxy replaying an old state). */
  replay(type: "ADDED" | "MODIFIED" | "DELETED", object: Json): void {
    for (const watcher of this.watchers) watcher.res.write(`${JSON.stringify({ type, object })}\n`);
  }

  /** Forgets the history up to now: a watch from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.compactedBelow = this.revision + 1;
    this.history.length = 0;
  }

  /** The current resourceVersion (etcd's revision). */
  get resourceVersion(): string {
    return String(this.revision);
  }

  /** Open watch streams. */
  get watchCount(): number {
    return this.watchers.size;
  }

  /** Creates or replaces an object directly, as another client would (an update by field manager `manager`; events go to watchers). */
  put(object: Json, manager = "test"): Json {
    const type = this.typeOfObject(object);
    const metadata = isRecord(object.metadata) ? object.metadata : {};
    const name = String(metadata.name);
    const namespace = type.namespaced ? String(metadata.namespace ?? "default") : undefined;
    const key = this.key(type, namespace, name);
    const existing = this.objects.get(key);
    if (existing === undefined) return this.create(type, namespace, { ...object, metadata: { ...metadata, managedFields: updateOwnership(undefined, object, manager, apiVersionOf(type)) } });
    const next = { ...object, metadata: { ...(existing.metadata as Json), ...metadata } };
    (next.metadata as Json).managedFields = updateOwnership(existing, next, manager, apiVersionOf(type));
    return this.store(type, key, namespace, next, "MODIFIED");
  }

  /** Deletes an object directly, as another client would. */
  remove(apiVersion: string, kind: string, name: string, namespace?: string): void {
    const type = this.types.find((t) => apiVersionOf(t) === apiVersion && t.kind === kind);
    if (type === undefined) throw new Error(`${apiVersion} ${kind} is not served`);
    this.delete(type, this.key(type, namespace, name));
  }

  /** The stored object, or undefined. */
  get(apiVersion: string, kind: string, name: string, namespace?: string): Json | undefined {
    const type = this.types.find((t) => apiVersionOf(t) === apiVersion && t.kind === kind);
    if (type === undefined) return undefined;
    const object = this.objects.get(this.key(type, type.namespaced ? namespace : undefined, name));
    return object === undefined ? undefined : clone(object);
  }

  /** Every stored object of a type, optionally in one namespace. */
  list(apiVersion: string, kind: string, namespace?: string): Json[] {
    const type = this.types.find((t) => apiVersionOf(t) === apiVersion && t.kind === kind);
    if (type === undefined) return [];
    return this.itemsOf(type, namespace).map(clone);
  }

  // ---- storage ------------------------------------------------------------------------------

  private key(type: ResourceType, namespace: string | undefined, name: string): string {
    return `${typeKeyOf(type)}/${namespace ?? ""}/${name}`;
  }

  private typeOfObject(object: Json): ResourceType {
    const type = this.types.find((t) => apiVersionOf(t) === object.apiVersion && t.kind === object.kind);
    if (type === undefined) throw new Error(`${String(object.apiVersion)} ${String(object.kind)} is not served`);
    return type;
  }

  private itemsOf(type: ResourceType, namespace: string | undefined): Json[] {
    const prefix = `${typeKeyOf(type)}/${namespace === undefined ? "" : `${namespace}/`}`;
    return [...this.objects].filter(([key]) => key.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, object]) => object);
  }

  private create(type: ResourceType, namespace: string | undefined, body: Json): Json {
    const metadata: Json = isRecord(body.metadata) ? { ...body.metadata } : {};
    let name = typeof metadata.name === "string" ? metadata.name : "";
    if (name === "" && typeof metadata.generateName === "string") name = `${metadata.generateName}${randomUUID().slice(0, 5)}`;
    if (name === "") throw new ApiError(422, "Invalid", `${type.kind} "" is invalid: metadata.name: Required value: name or generateName is required`);
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name) || name.length > 253) throw new ApiError(422, "Invalid", `${type.kind} "${name}" is invalid: metadata.name: Invalid value`);
    if (namespace !== undefined && !this.objects.has(this.key(BUILT_IN[0]!, undefined, namespace))) {
      throw new ApiError(404, "NotFound", `namespaces "${namespace}" not found`);
    }
    const key = this.key(type, namespace, name);
    if (this.objects.has(key)) throw new ApiError(409, "AlreadyExists", `${type.resource}${type.group === "" ? "" : `.${type.group}`} "${name}" already exists`);
    metadata.name = name;
    if (namespace !== undefined) metadata.namespace = namespace;
    else delete metadata.namespace;
    metadata.uid = randomUUID();
    metadata.creationTimestamp = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
    delete metadata.resourceVersion;
    if (type.kind === "Namespace" && type.group === "") {
      // The API server labels every namespace with its name (kubernetes.io/metadata.name).
      metadata.labels = { ...(isRecord(metadata.labels) ? metadata.labels : {}), "kubernetes.io/metadata.name": name };
    }
    return this.store(type, key, namespace, { ...body, apiVersion: apiVersionOf(type), kind: type.kind, metadata }, "ADDED");
  }

  private store(type: ResourceType, key: string, namespace: string | undefined, object: Json, event: "ADDED" | "MODIFIED"): Json {
    this.revision++;
    const stored: Json = { ...clone(object), apiVersion: apiVersionOf(type), kind: type.kind, metadata: { ...(object.metadata as Json), resourceVersion: String(this.revision) } };
    if (type.kind === "Namespace" && type.group === "") {
      const metadata = stored.metadata as Json;
      metadata.labels = { ...(isRecord(metadata.labels) ? metadata.labels : {}), "kubernetes.io/metadata.name": metadata.name };
      stored.status = { phase: "Active", ...(isRecord(stored.status) ? stored.status : {}) };
    }
    this.objects.set(key, stored);
    this.emit({ type: event, rv: this.revision, key, typeKey: typeKeyOf(type), namespace, object: stored });
    return clone(stored);
  }

  private delete(type: ResourceType, key: string): Json {
    const existing = this.objects.get(key);
    if (existing === undefined) throw new ApiError(404, "NotFound", `${type.resource} "${key.split("/").pop() ?? ""}" not found`);
    this.objects.delete(key);
    this.revision++;
    const gone = { ...existing, metadata: { ...(existing.metadata as Json), resourceVersion: String(this.revision) } };
    const namespace = type.namespaced ? String((existing.metadata as Json).namespace) : undefined;
    this.emit({ type: "DELETED", rv: this.revision, key, typeKey: typeKeyOf(type), namespace, object: gone });
    return clone(gone);
  }

  private emit(event: StoredEvent): void {
    this.history.push(event);
    for (const watcher of this.watchers) this.deliver(watcher, event);
  }

  private deliver(watcher: Watcher, event: StoredEvent): void {
    if (event.typeKey !== watcher.typeKey || event.rv <= watcher.sent) return;
    if (watcher.namespace !== undefined && event.namespace !== watcher.namespace) return;
    if (!watcher.filter(event.object)) return;
    watcher.sent = event.rv;
    watcher.res.write(`${JSON.stringify({ type: event.type, object: event.object })}\n`);
  }

  private bookmarks(): void {
    for (const watcher of this.watchers) {
      if (!(watcher as Watcher & { bookmarks?: boolean }).bookmarks) continue;
      const type = this.types.find((t) => typeKeyOf(t) === watcher.typeKey);
      if (type === undefined) continue;
      watcher.sent = this.revision;
      watcher.res.write(`${JSON.stringify({ type: "BOOKMARK", object: { kind: type.kind, apiVersion: apiVersionOf(type), metadata: { resourceVersion: String(this.revision) } } })}\n`);
    }
  }

  // ---- HTTP ---------------------------------------------------------------------------------

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "https://localhost");
    const query = Object.fromEntries(url.searchParams);
    const record: RecordedRequest = { method: req.method ?? "GET", path: url.pathname, query, at: Date.now(), status: 0 };
    this.requests.push(record);
    const answer = (code: number, body: unknown, headers: Record<string, string> = {}) => {
      record.status = code;
      const text = JSON.stringify(body);
      res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
      res.end(text);
    };
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("error", () => undefined);
    req.on("end", () => {
      void (async () => {
        if (req.headers.authorization !== `Bearer ${this.token}`) return answer(401, status(401, "Unauthorized", "Unauthorized"));
        const watch = query.watch === "true" || query.watch === "1";
        const fault = this.takeFault(record.method, url.pathname, watch);
        if (fault !== undefined) {
          if (fault.kind === "slow") await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
          else if (fault.kind === "hang-up") return void req.socket.destroy();
          else if (fault.kind === "silent") {
            record.status = 200;
            res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
            return void res.write("");
          }
          else if (fault.kind === "garbage") {
            record.status = 200;
            res.writeHead(200, { "content-type": "application/json" });
            return void res.end(watch ? '{"type":"ADDED","object":{"kind":\n\u0000\u0001not json at all\n[1,2\n' : '{"kind":"NamespaceList","items":[{"metadata":');
          } else {
            const reasons = { 410: "Expired", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable" } as const;
            const headers: Record<string, string> = fault.retryAfterSeconds === undefined ? {} : { "retry-after": String(fault.retryAfterSeconds) };
            return answer(fault.code, status(fault.code, reasons[fault.code], `injected fault: ${reasons[fault.code]}`), headers);
          }
        }
        try {
          const body = Buffer.concat(chunks).toString("utf8");
          this.route(record, url.pathname, query, watch, req, res, body, answer);
        } catch (error) {
          if (error instanceof ApiError) return answer(error.code, status(error.code, error.reason, error.message));
          answer(500, status(500, "InternalError", error instanceof Error ? error.message : String(error)));
        }
      })();
    });
  }

  private takeFault(method: string, path: string, watch: boolean): FaultAction | undefined {
    for (const entry of this.faults) {
      const { fault } = entry;
      if (entry.left <= 0) continue;
      if (fault.method !== undefined && fault.method !== method) continue;
      if (fault.path !== undefined && !fault.path.test(path)) continue;
      if (fault.watch !== undefined && fault.watch !== watch) continue;
      entry.left--;
      return fault.action;
    }
    return undefined;
  }

  private route(
    record: RecordedRequest,
    path: string,
    query: Record<string, string>,
    watch: boolean,
    req: IncomingMessage,
    res: ServerResponse,
    body: string,
    answer: (code: number, body: unknown, headers?: Record<string, string>) => void,
  ): void {
    const method = record.method;
    // Discovery.
    if (method === "GET") {
      if (path === "/version") {
        const [, major, minor] = /^v?(\d+)\.(\d+)/.exec(this.kubernetesVersion) ?? [];
        return answer(200, { major, minor, gitVersion: this.kubernetesVersion, platform: "linux/amd64" });
      }
      if (path === "/api") return answer(200, { kind: "APIVersions", apiVersion: "v1", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: this.url.replace("https://", "") }] });
      if (path === "/apis") return answer(200, groupList(this.types));
      if (path === "/api/v1") return answer(200, resourceList(this.types, "", "v1"));
      const group = /^\/apis\/([^/]+)$/.exec(path);
      if (group !== null) {
        if (!groupsOf(this.types).includes(group[1]!)) throw new ApiError(404, "NotFound", "the server could not find the requested resource");
        return answer(200, apiGroup(this.types, group[1]!));
      }
      const version = /^\/apis\/([^/]+)\/([^/]+)$/.exec(path);
      if (version !== null) {
        if (!this.types.some((t) => t.group === version[1] && t.version === version[2])) throw new ApiError(404, "NotFound", "the server could not find the requested resource");
        return answer(200, resourceList(this.types, version[1]!, version[2]!));
      }
    }
    // Resources: /api/v1[/namespaces/<ns>]/<resource>[/<name>], /apis/<g>/<v>[/namespaces/<ns>]/<resource>[/<name>].
    const parts = path.split("/").filter((p) => p !== "");
    let group: string;
    let rest: string[];
    if (parts[0] === "api" && parts[1] === "v1") [group, rest] = ["", parts.slice(2)];
    else if (parts[0] === "apis" && parts.length >= 4) [group, rest] = [parts[1]!, parts.slice(3)];
    else throw new ApiError(404, "NotFound", "the server could not find the requested resource");
    const version = group === "" ? "v1" : parts[2]!;
    let namespace: string | undefined;
    if (rest[0] === "namespaces" && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const [resource, name, subresource] = rest as [string | undefined, string | undefined, string | undefined];
    const type = this.types.find((t) => t.group === group && t.version === version && t.resource === resource);
    if (type === undefined || (namespace !== undefined && !type.namespaced)) throw new ApiError(404, "NotFound", "the server could not find the requested resource");
    if (subresource !== undefined && subresource !== "status") throw new ApiError(404, "NotFound", `the server could not find the requested resource (${subresource})`);
    // A namespace is itself under /api/v1/namespaces/<name>.
    if (type.kind === "Namespace" && type.group === "" && rest.length === 1 && namespace !== undefined) throw new ApiError(404, "NotFound", "the server could not find the requested resource");

    if (name === undefined) {
      if (method === "GET" && watch) return this.watch(type, namespace, query, req, res, record);
      if (method === "GET") return answer(200, this.listBody(type, namespace, query));
      if (method === "POST") {
        if (type.namespaced && namespace === undefined) throw new ApiError(405, "MethodNotAllowed", "create a namespaced object under its namespace");
        const object = this.parseBody(body, req.headers["content-type"]);
        const bodyNamespace = isRecord(object.metadata) ? object.metadata.namespace : undefined;
        if (bodyNamespace !== undefined && bodyNamespace !== namespace) throw new ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request");
        if (query.dryRun === "All") return answer(201, object);
        const managedFields = updateOwnership(undefined, object, query.fieldManager || defaultManager(req.headers["user-agent"]), apiVersionOf(type));
        return answer(201, this.create(type, namespace, { ...object, metadata: { ...(isRecord(object.metadata) ? object.metadata : {}), managedFields } }));
      }
      throw new ApiError(405, "MethodNotAllowed", `${method} is not allowed on a collection here`);
    }

    const key = this.key(type, namespace, name);
    const existing = this.objects.get(key);
    const notFound = () => new ApiError(404, "NotFound", `${type.resource}${type.group === "" ? "" : `.${type.group}`} "${name}" not found`);
    if (method === "GET") {
      if (existing === undefined) throw notFound();
      return answer(200, existing);
    }
    if (method === "DELETE") return answer(200, this.delete(type, key));
    if (method === "PUT") {
      if (existing === undefined) throw notFound();
      const object = this.parseBody(body, req.headers["content-type"]);
      const metadata = isRecord(object.metadata) ? object.metadata : {};
      if (metadata.name !== name) throw new ApiError(400, "BadRequest", "the name of the object does not match the name on the URL");
      const current = (existing.metadata as Json).resourceVersion;
      if (metadata.resourceVersion !== undefined && metadata.resourceVersion !== current) {
        throw new ApiError(409, "Conflict", `Operation cannot be fulfilled on ${type.resource}${type.group === "" ? "" : `.${type.group}`} "${name}": the object has been modified; please apply your changes to the latest version and try again`);
      }
      const kept = { ...(existing.metadata as Json), ...metadata, uid: (existing.metadata as Json).uid, creationTimestamp: (existing.metadata as Json).creationTimestamp };
      const next: Json = subresource === "status" ? { ...existing, metadata: { ...(existing.metadata as Json) }, status: object.status } : { ...object, metadata: kept, ...(existing.status === undefined ? {} : { status: existing.status }) };
      (next.metadata as Json).managedFields = updateOwnership(existing, next, query.fieldManager || defaultManager(req.headers["user-agent"]), apiVersionOf(type));
      return answer(200, this.store(type, key, namespace, next, "MODIFIED"));
    }
    if (method === "PATCH") {
      const contentType = String(req.headers["content-type"] ?? "").split(";")[0]!.trim();
      if (contentType === "application/apply-patch+yaml" || contentType === "application/apply-patch+cbor") {
        // Server-side apply: a field manager is required; the applied configuration is merged in.
        const manager = query.fieldManager;
        if (manager === undefined || manager === "") throw new ApiError(400, "BadRequest", "PATCH with apply-patch requires a fieldManager");
        const applied = this.parseBody(body, "application/yaml");
        const appliedMeta = isRecord(applied.metadata) ? applied.metadata : {};
        if (appliedMeta.name !== name) throw new ApiError(400, "BadRequest", "the name of the object does not match the name on the URL");
        // Field ownership (managed-fields.ts): a field another manager owns with another value is a conflict, unless forced.
        const outcome = applyWithOwnership(existing, applied, manager, apiVersionOf(type), query.force === "true");
        if ("conflicts" in outcome) return answer(409, conflictStatus(outcome.conflicts, apiVersionOf(type)));
        if (existing === undefined) {
          const created = this.create(type, namespace, outcome.object);
          record.status = 201;
          return answer(201, created);
        }
        const merged = outcome.object;
        (merged.metadata as Json).uid = (existing.metadata as Json).uid;
        (merged.metadata as Json).creationTimestamp = (existing.metadata as Json).creationTimestamp;
        return answer(200, this.store(type, key, namespace, merged, "MODIFIED"));
      }
      if (existing === undefined) throw notFound();
      let next: Json;
      if (contentType === "application/json-patch+json") next = jsonPatch(existing, JSON.parse(body));
      else if (contentType === "application/merge-patch+json" || contentType === "application/strategic-merge-patch+json") next = mergePatch(existing, this.parseBody(body, "application/json")) as Json;
      else throw new ApiError(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`);
      (next.metadata as Json).name = name;
      (next.metadata as Json).uid = (existing.metadata as Json).uid;
      (next.metadata as Json).managedFields = updateOwnership(existing, next, query.fieldManager || defaultManager(req.headers["user-agent"]), apiVersionOf(type));
      return answer(200, this.store(type, key, namespace, next, "MODIFIED"));
    }
    throw new ApiError(405, "MethodNotAllowed", `${method} is not allowed here`);
  }

  private parseBody(body: string, contentType: string | string[] | undefined): Json {
    let value: unknown;
    try {
      value = String(contentType ?? "").includes("yaml") ? parseYaml(body) : JSON.parse(body);
    } catch (error) {
      throw new ApiError(400, "BadRequest", `the request body does not parse: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (!isRecord(value)) throw new ApiError(400, "BadRequest", "the request body is not an object");
    return value;
  }

  private listBody(type: ResourceType, namespace: string | undefined, query: Record<string, string>): Json {
    const labels = labelFilter(query.labelSelector);
    const fields = fieldFilter(query.fieldSelector);
    const all = this.itemsOf(type, namespace).filter((o) => labels(o) && fields(o));
    const start = query.continue === undefined ? 0 : Number(Buffer.from(query.continue, "base64url").toString("utf8").split(":")[1] ?? "0");
    const limit = query.limit === undefined ? Infinity : Math.max(1, Number(query.limit));
    const items = all.slice(start, start + limit);
    const more = start + items.length < all.length;
    const metadata: Json = { resourceVersion: String(this.revision) };
    if (more) {
      metadata.continue = Buffer.from(`${this.revision}:${start + items.length}`).toString("base64url");
      metadata.remainingItemCount = all.length - start - items.length;
    }
    return { kind: `${type.kind}List`, apiVersion: apiVersionOf(type), metadata, items };
  }

  private watch(type: ResourceType, namespace: string | undefined, query: Record<string, string>, req: IncomingMessage, res: ServerResponse, record: RecordedRequest): void {
    const labels = labelFilter(query.labelSelector);
    const fields = fieldFilter(query.fieldSelector);
    const filter = (object: Json) => labels(object) && fields(object);
    const from = query.resourceVersion;
    record.status = 200;
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    const watcher: Watcher & { bookmarks?: boolean } = { typeKey: typeKeyOf(type), namespace, filter, res, sent: 0, bookmarks: query.allowWatchBookmarks === "true" };
    if (from === undefined || from === "" || from === "0") {
      // Get state and start at most recent: synthetic ADDED events for what exists.
      for (const object of this.itemsOf(type, namespace)) if (filter(object)) res.write(`${JSON.stringify({ type: "ADDED", object })}\n`);
      watcher.sent = this.revision;
    } else {
      const rv = Number(from);
      if (!Number.isInteger(rv) || rv < this.compactedBelow - 1 || rv > this.revision) {
        const message = Number.isInteger(rv) && rv > this.revision ? `Too large resource version: ${from}, current: ${this.revision}` : `too old resource version: ${from} (${this.compactedBelow})`;
        res.end(`${JSON.stringify({ type: "ERROR", object: status(410, "Expired", message) })}\n`);
        return;
      }
      watcher.sent = rv;
      for (const event of this.history) this.deliver(watcher, event);
    }
    this.watchers.add(watcher);
    const end = () => this.watchers.delete(watcher);
    // Not the request's close: that comes as soon as its (empty) body is read.
    res.on("close", end);
    const timeout = Number(query.timeoutSeconds ?? "0");
    if (timeout > 0) {
      const timer = setTimeout(() => {
        this.watchers.delete(watcher);
        res.end();
      }, timeout * 1000);
      res.on("close", () => clearTimeout(timer));
    }
  }
}
