/**
 * What the federation module (federation.ts) works with besides the Federation itself: the
 * records it keeps of layers, the change it writes, what a change hands over to the reload,
 * granted exceptions, the stale-generation conflict, and the keys under which clusters that
 * cannot tell apart share one effective set.
 */
import type { SourceFile } from "../api/fields.js";
import { canonicalJson, contentHash } from "../canonical/index.js";
import type { ClusterIdentity, EffectivePolicySet } from "../layering/effective.js";
import { REQUEST_ANNOTATION } from "../layering/effective.js";
import type { ClusterFacts } from "../intents/facts.js";
import type { Layer, LayerException } from "../policy/layer.js";
import { API_VERSION, exceptionDocument } from "../policy/schema.js";
import { ApiError } from "./status.js";

export interface LayerRecord {
  readonly id: string;
  readonly version: number;
  readonly author: string;
  readonly createdAt: string;
  readonly contentHash: string;
  readonly files: readonly SourceFile[];
  /** Undefined when the layer was deleted (its last version has no files). */
  readonly layer: Layer | undefined;
}

/** A layer's new content, as a change writes it. */
export interface LayerWrite {
  readonly id: string;
  readonly layer: Layer | undefined;
  readonly files: readonly SourceFile[];
  readonly contentHash: string;
  /** The version this write replaces (0: a new layer). */
  readonly baseVersion: number;
}

/** What a committed change already computed, for the reload to use instead of computing it again. */
export interface Computed {
  readonly layers?: readonly LayerWrite[];
  readonly effective?: ReadonlyMap<string, EffectivePolicySet>;
}

/**
 * What the hub adds to and takes from the layers' exceptions: those granted by request, by
 * the layer that publishes them (the one defining their policy), and those written in layer
 * files that have expired (`<layer id>/<name>/<expiresAt>`), which leave the bundles.
 */
export interface Granted {
  readonly byLayer: ReadonlyMap<string, readonly LayerException[]>;
  readonly lapsed: ReadonlySet<string>;
}

/** The key of a layer file's exception among the lapsed ones. */
export const lapsedKey = (layerId: string, name: string, expiresAt: string) => `${layerId}/${name}/${new Date(expiresAt).toISOString()}`;

/**
 * The hash of a layer's content: what makes two applies of the same content one version.
 * Of the files' contents only, in a stable order: the same layer applied from two
 * folders, or two machines, hashes the same.
 */
/** Another change committed after the one being committed was planned: it must be planned again. */
export class StaleGeneration extends ApiError {
  constructor() {
    super(409, "Conflict", "the federation changed while this change was being validated (another change, here or through another hub); send it again");
  }
}

/** Each layer object's number, for memo keys (a layer is immutable once parsed). */
const layerNumbers = new WeakMap<Layer, number>();
let nextLayerNumber = 0;

/**
 * What a cluster's effective set depends on, when that is not its name: the very layer
 * objects of its stack, its region and its labels. A cluster with a layer of its own, or
 * under an exception that names clusters, has none (its set is computed for it alone).
 * effectivePolicySet reads the name only there and in its error messages, and a refused
 * set is never remembered.
 */
export function memoKey(layers: readonly Layer[], identity: ClusterIdentity): string | undefined {
  if (layers.some((l) => l.tier === "cluster" || l.exceptions.some((e) => e.document.spec.scope.clusters !== undefined))) return undefined;
  const numbers = layers.map((l) => {
    let n = layerNumbers.get(l);
    if (n === undefined) layerNumbers.set(l, (n = nextLayerNumber++));
    return n;
  });
  return `${numbers.join(",")}\n${identity.region}\n${canonicalJson(identity.labels)}`;
}

export function filesHash(files: readonly SourceFile[]): string {
  return contentHash(canonicalJson(files.map((f) => f.content).sort()));
}

/** An Exception spec as a request asks it (stored in exception_requests.spec). */
export interface ExceptionRequestSpec {
  readonly policy: string;
  readonly rules?: readonly string[];
  readonly scope: Readonly<Record<string, unknown>>;
  readonly justification: string;
  readonly expiresAt: string;
}

/**
 * A granted request as the Exception document its layer publishes, with the authenticated
 * approver; undefined when the stored spec is not an exception's (it was validated when it
 * was requested, so only a hand-edited database makes one).
 */
export function grantedException(id: string, spec: unknown, approvedBy: string): LayerException | undefined {
  const parsed = exceptionDocument.safeParse({
    apiVersion: API_VERSION,
    kind: "Exception",
    metadata: { name: `request-${id}`, annotations: { [REQUEST_ANNOTATION]: id } },
    spec: typeof spec === "object" && spec !== null ? { ...spec, approvedBy } : spec,
  });
  return parsed.success ? { document: parsed.data } : undefined;
}

/** A cluster to register (a change may register many), and the facts declared for it. */
export interface Registration {
  readonly cluster: ClusterIdentity;
  readonly facts?: ClusterFacts;
}
