/** Layers: read them and their history; apply, diff and delete them through the change use case. */
import type { SourceFile } from "../../api/fields.js";
import { applyRequest, diffRequest, type ApplyResult, type DeprecationView, type DiffResult, type LayerHistory, type LayerSummary, type LayerVersion, type PolicySetDifference } from "../../api/layers.js";
import type { EffectivePolicySet } from "../../layering/effective.js";
import type { LayerInput } from "../change.js";
import { filesHash } from "../federation.js";
import { layerId } from "../../policy/layer.js";
import { layersFromFilesSteps } from "../../policy/layer-files.js";
import { PolityError } from "../../errors.js";
import { paced } from "../paced.js";
import { actorFor, denial, describePrincipal } from "../principal.js";
import { route, type Call, type Hub, type Route } from "../route.js";
import { badRequest, fromPolityError, notFound, unprocessable } from "../status.js";
import { auditContext, engine, layerTarget } from "./shared.js";

function layerIdFrom(params: Readonly<Record<string, string>>): string {
  const tier = params.tier;
  if (tier === "global" && params.name === undefined) return "global";
  if ((tier === "region" || tier === "cluster") && params.name !== undefined) return `${tier}/${params.name}`;
  throw notFound(`no layer ${[tier, params.name].filter(Boolean).join("/")}: layers are global, region/<name> and cluster/<name>`);
}

/** The layer a read names, as a target (its region from the layer itself when its cluster is not registered). */
function readTarget(hub: Hub, call: Call) {
  const id = layerIdFrom(call.params);
  return [layerTarget(hub, id, hub.federation.layers.get(id)?.layer?.region)];
}

function current(hub: Hub, id: string): LayerVersion {
  const record = hub.federation.layers.get(id);
  if (record === undefined) throw notFound(`layer ${id} has never been applied`);
  return { id, version: record.version, author: record.author, createdAt: record.createdAt, contentHash: record.contentHash, files: record.files };
}

/**
 * The layers the files describe (an apply, a diff, a proposal), parsed once and built in
 * slices, so that the hub keeps answering while a large change is read. Each is a target the
 * caller must be allowed to write (or read, for a diff).
 */
export async function parseLayers(files: readonly SourceFile[]): Promise<LayerInput[]> {
  let layers;
  try {
    layers = await paced(layersFromFilesSteps(files));
  } catch (error) {
    if (error instanceof PolityError) throw fromPolityError(error, "the layers are not valid");
    throw error;
  }
  return layers.map(({ layer, files }) => ({ id: layerId(layer), layer, files }));
}

export const layerTargets = <B>(hub: Hub, _call: Call<B>, layers: readonly LayerInput[]) => layers.map((l) => layerTarget(hub, l.id, l.layer?.region));

/** What changes between two effective sets: policies added, removed, and changed (with the fields that changed). */
function difference(before: EffectivePolicySet | undefined, after: EffectivePolicySet): PolicySetDifference {
  const old = new Map<string, object>((before?.document.policies ?? []).map((p) => [p.name, p]));
  const now = new Map<string, object>(after.document.policies.map((p) => [p.name, p]));
  const changed = [...now.keys()]
    .filter((n) => old.has(n))
    .map((n) => {
      const a = new Map(Object.entries(old.get(n)!));
      const b = new Map(Object.entries(now.get(n)!));
      const fields = [...new Set([...a.keys(), ...b.keys()])].filter((k) => JSON.stringify(a.get(k)) !== JSON.stringify(b.get(k))).sort();
      return { policy: n, fields };
    })
    .filter((c) => c.fields.length > 0);
  return {
    added: [...now.keys()].filter((n) => !old.has(n)).sort(),
    removed: [...old.keys()].filter((n) => !now.has(n)).sort(),
    changed,
    exceptions: { before: before?.document.exceptions.length ?? 0, after: after.document.exceptions.length },
  };
}

const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:-]{8,128}$/;

/** The client's Idempotency-Key header: the same key sent again asks for the same change, not a second one. */
function idempotencyKey(call: Call<unknown>): string | undefined {
  const header = call.headers["idempotency-key"];
  if (header === undefined) return undefined;
  if (typeof header !== "string" || !IDEMPOTENCY_KEY.test(header)) throw badRequest("the Idempotency-Key header must be 8 to 128 letters, digits, '.', '_', ':' or '-'");
  return header;
}

/**
 * An apply sent again with the key of one that was committed (its client lost the answer):
 * the answer it would have had, marked as a replay. The same key with other layers is a
 * mistake the client must hear about.
 */
async function replay(hub: Hub, key: string, layers: readonly LayerInput[]): Promise<(ApplyResult & { replayed: true }) | undefined> {
  const written = await hub.federation.writtenWith(key);
  if (written.length === 0) return undefined;
  const hashes = new Map(layers.map((l) => [l.id, filesHash(l.files)]));
  if (written.some((w) => hashes.get(w.id) !== w.contentHash)) throw unprocessable(`the Idempotency-Key ${key} was used for another change; send this one with a new key`);
  return {
    dryRun: false,
    replayed: true,
    correlationId: written[0]!.correlationId,
    layers: written.map((w) => ({ id: w.id, unchanged: false, version: w.version, contentHash: w.contentHash })),
    clusters: [],
  };
}

const byLayer = (base: "/v1/layers/:tier" | "/v1/layers/:tier/:name"): Route[] => [
  route({
    method: "GET",
    path: base,
    summary: "A layer's current version: its files as applied.",
    access: { kind: "access", access: "read" },
    targets: readTarget,
    async handle(hub, call) {
      return { body: current(hub, layerIdFrom(call.params)) };
    },
  }),
  route({
    method: "GET",
    path: `${base}/history`,
    summary: "Every version of a layer: who, when, content hash.",
    access: { kind: "access", access: "read" },
    // /v1/layers/cluster/history is the layer of a cluster named "history".
    targets: (hub, call) => (call.params.name === undefined && call.params.tier !== "global" ? readTarget(hub, { ...call, params: { tier: call.params.tier!, name: "history" } }) : readTarget(hub, call)),
    async handle(hub, call) {
      if (call.params.name === undefined && call.params.tier !== "global") return { body: current(hub, `${call.params.tier}/history`) };
      const id = layerIdFrom(call.params);
      const rows = await hub.federation.history(id);
      if (rows.length === 0) throw notFound(`layer ${id} has never been applied`);
      const body: LayerHistory = { id, items: rows.map((r) => ({ version: r.version, author: r.author, createdAt: r.createdAt, contentHash: r.contentHash, files: r.files.map((f) => f.name), deleted: r.files.length === 0 })) };
      return { body };
    },
  }),
  route({
    method: "GET",
    path: `${base}/versions/:version`,
    summary: "One version of a layer, with its files.",
    access: { kind: "access", access: "read" },
    targets: readTarget,
    async handle(hub, call) {
      const id = layerIdFrom(call.params);
      // Versions are stored as 32-bit integers: anything else names no version (and must not reach the database).
      const version = Number(call.params.version);
      if (!/^[1-9][0-9]{0,9}$/.test(call.params.version!) || version > 2 ** 31 - 1) throw badRequest(`version must be a whole number from 1 to ${2 ** 31 - 1}, not ${JSON.stringify(call.params.version)}`);
      const row = await hub.federation.version(id, version);
      if (row === undefined) throw notFound(`layer ${id} has no version ${version}`);
      return { body: { id, ...row } satisfies LayerVersion };
    },
  }),
];

export const LAYER_ROUTES: Route[] = [
  route({
    method: "GET",
    path: "/v1/layers",
    summary: "Every layer the caller may read, with its current version.",
    access: { kind: "authenticated" },
    async handle(hub, call) {
      const items: LayerSummary[] = [...hub.federation.layers.values()]
        .filter((l) => denial(call.principal, "read", layerTarget(hub, l.id, l.layer?.region)) === undefined)
        .map((l) => ({ id: l.id, version: l.version, author: l.author, createdAt: l.createdAt, contentHash: l.contentHash, deleted: l.layer === undefined, policies: l.layer?.policies.length ?? 0, exceptions: l.layer?.exceptions.length ?? 0 }))
        .sort((a, b) => (a.id < b.id ? -1 : 1));
      return { body: { items } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/deprecations",
    summary: "Policies on their way out, in the layers the caller may read: the date after which each is retired, its replacement and why.",
    access: { kind: "authenticated" },
    async handle(hub, call) {
      const now = hub.now().getTime();
      const items: DeprecationView[] = [...hub.federation.layers.values()]
        .filter((l) => denial(call.principal, "read", layerTarget(hub, l.id, l.layer?.region)) === undefined)
        .flatMap((l) =>
          (l.layer?.policies ?? []).flatMap(({ document }) => {
            const deprecation = document.spec.deprecation;
            if (deprecation === undefined) return [];
            return [
              {
                policy: document.metadata.name,
                layer: l.id,
                owner: document.metadata.owner ?? null,
                after: deprecation.after,
                replacement: deprecation.replacement ?? null,
                reason: deprecation.reason ?? null,
                retired: Date.parse(deprecation.after) <= now,
              },
            ];
          }),
        )
        .sort((a, b) => Date.parse(a.after) - Date.parse(b.after) || (a.policy < b.policy ? -1 : 1));
      return { body: { items } };
    },
  }),
  ...byLayer("/v1/layers/:tier"),
  ...byLayer("/v1/layers/:tier/:name"),
  route({
    method: "DELETE",
    path: "/v1/layers/:tier/:name",
    summary: "Delete a region or cluster layer (a new, empty version; history is kept). Refused if the clusters it reaches would not combine without it.",
    access: { kind: "access", access: "write" },
    prepare(hub, call) {
      const id = layerIdFrom(call.params);
      const record = hub.federation.layers.get(id);
      if (record === undefined || record.layer === undefined) throw notFound(`layer ${id} does not exist`);
      return { id, region: record.layer.region };
    },
    targets: (hub, _call, layer) => [layerTarget(hub, layer.id, layer.region)],
    async handle(hub, call, { id }) {
      hub.regional?.checkWritable([id]);
      const change = { kind: "layers", layers: [{ id, layer: undefined, files: [] }] } as const;
      hub.changes.checkLayers(actorFor(call.principal), change.layers, hub.now().getTime());
      const plan = engine("deleting the layer is refused", () => hub.changes.plan(change));
      const context = auditContext(call);
      const { written } = await hub.changes.apply(change, describePrincipal(call.principal), context, plan);
      return { body: { deleted: id, versions: written, affected: plan.affected.length, correlationId: context.correlationId } };
    },
  }),
  route({
    method: "POST",
    path: "/v1/apply",
    summary:
      "Apply layer files (YAML or JSON, with their Layer documents): each changed layer gets a new version, if every registered cluster it reaches still combines. With dryRun, only the plan.",
    access: { kind: "access", access: "write", layers: true },
    body: applyRequest,
    // A dry run changes nothing: whoever may read the layers may ask what it would do.
    accessFor: (body) => (body.dryRun === true ? "read" : "write"),
    bodyLimit: 32 * 1024 * 1024,
    prepare: (_hub, call) => parseLayers(call.body.files),
    targets: (hub, call, layers) => layerTargets(hub, call, layers),
    async handle(hub, call, layers) {
      const dryRun = call.body.dryRun === true;
      const key = idempotencyKey(call);
      if (!dryRun && key !== undefined) {
        const replayed = await replay(hub, key, layers);
        if (replayed !== undefined) return { status: 200, headers: { "x-correlation-id": replayed.correlationId ?? undefined }, body: replayed };
      }
      if (!dryRun) hub.regional?.checkWritable(layers.map((l) => l.id));
      // A dry run checks what the change holds, not who may make it (an auditor may plan one).
      hub.changes.checkLayers(dryRun ? undefined : actorFor(call.principal), layers, hub.now().getTime());
      const change = { kind: "layers", layers } as const;
      const plan = engine("the change is refused", () => hub.changes.plan(change));
      const context = auditContext(call);
      // The apply's own stages, or those the one layer it changes declares (none when it reaches no cluster yet).
      const changed = plan.layers.filter((l) => !l.unchanged);
      const declared = changed.length === 1 && plan.affected.some((a) => a.before !== a.after.hash) ? changed[0]!.layer?.rollout : undefined;
      const staged = call.body.rollout ?? declared;
      if (staged !== undefined && dryRun) hub.rollouts.preview(staged, plan);
      let rollout: string | null = null;
      let written: readonly { id: string; version: number }[] = [];
      if (!dryRun && staged !== undefined) {
        const started = await hub.rollouts.start(staged, layers, describePrincipal(call.principal), context, key);
        written = started.committed.written;
        rollout = started.rollout;
      } else if (!dryRun) {
        written = (await hub.changes.apply(change, describePrincipal(call.principal), context, plan, key)).written;
      }
      const body: ApplyResult = {
        dryRun,
        correlationId: written.length === 0 ? null : context.correlationId,
        layers: plan.layers.map((c) => ({ id: c.id, unchanged: c.unchanged, version: c.unchanged ? c.baseVersion : (written.find((w) => w.id === c.id)?.version ?? c.baseVersion + 1), contentHash: c.contentHash })),
        clusters: plan.affected.map((a) => ({ cluster: a.cluster, before: a.before ?? null, after: a.after.hash, changed: a.before !== a.after.hash })),
        ...(rollout === null ? {} : { rollout }),
      };
      return { status: dryRun || written.length === 0 ? 200 : 201, headers: { "x-correlation-id": context.correlationId }, body };
    },
  }),
  route({
    method: "POST",
    path: "/v1/diff",
    summary:
      "What applying layer files would do to each registered cluster's effective policy set: policies added, removed and changed; with impact, what it would newly deny, allow and warn among each cluster's recorded requests, as its agent answers.",
    // A diff changes nothing: whoever may read the layers may ask what a change would do.
    access: { kind: "access", access: "read", layers: true },
    body: diffRequest,
    bodyLimit: 32 * 1024 * 1024,
    prepare: (_hub, call) => parseLayers(call.body.files),
    targets: (hub, call, layers) => layerTargets(hub, call, layers),
    async handle(hub, call, layers) {
      const plan = engine("the change is refused", () => hub.changes.plan({ kind: "layers", layers }));
      const asked = call.body.impact;
      let impact: DiffResult["impact"];
      if (asked !== undefined) {
        const changed = plan.affected.filter((a) => a.before !== a.after.hash).map((a) => ({ cluster: a.cluster, set: a.after }));
        const clusters = await hub.impacts.ask(changed, asked.timeoutSeconds * 1000, call.signal);
        impact = { clusters, unanswered: clusters.filter((c) => c.impact === null).map((c) => c.cluster) };
      }
      const body: DiffResult = {
        ...(impact === undefined ? {} : { impact }),
        layers: plan.layers.map((c) => ({ id: c.id, unchanged: c.unchanged, baseVersion: c.baseVersion })),
        clusters: plan.affected.map((a) => {
          let before: EffectivePolicySet | undefined;
          try {
            before = a.before === undefined ? undefined : hub.federation.effectiveFor(a.cluster);
          } catch {
            before = undefined;
          }
          return { cluster: a.cluster, before: a.before ?? null, after: a.after.hash, ...difference(before, a.after) };
        }),
      };
      return { body };
    },
  }),
];
