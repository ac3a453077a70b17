/**
 * The agent makes its cluster hold what its bundle's intents make: server-side apply of
 * each object, in dependency order, with field manager `polity` and never `force` (a field
 * another manager owns is a conflict, reported, not taken). When any object of a version
 * fails, the previous version's objects are applied again and the objects this version
 * created are deleted: the cluster is left as the previous version made it, and the failure
 * is reported. Objects the previous version had and this one does not are deleted, and only
 * those Polity made: the live object must carry `app.kubernetes.io/managed-by: polity` and
 * list `polity` among its managers. An object of the same name that Polity did not make (no
 * such label) is never taken over, unless the intent forces conflicts: the version fails.
 *
 * A field another manager owns with another value is a conflict (409): the object fails,
 * the version is rolled back, and the conflicts are reported by field and manager
 * (`field .spec.hard.cpu of ResourceQuota payments/polity-quota is owned by manager
 * kubectl`). Only an object whose intent says `forceConflicts: true` (its annotation
 * `polity.dev/force-conflicts: "true"`) is applied with `force`, taking those fields over.
 *
 * The caller hands in the previous version's objects (what the agent applied last) and
 * says whether objects the new version lacks may be deleted (not for a bundle loaded from
 * the agent's disk: an unreachable hub never deletes anything).
 */
import type { KubeConfig, KubernetesObject, KubernetesObjectApi } from "@kubernetes/client-node";
import { APPLY_ORDER, FORCE_CONFLICTS_ANNOTATION, MANAGED_BY, type Manifest } from "../../intents/translate.js";
import { describeFailure, statusOf } from "../../kube/index.js";
import { FIELD_MANAGER, ownedType, serverSideApply, typeKeyOf, type OwnedType } from "../drift/types.js";

export { FIELD_MANAGER };


/** A field another field manager owns, which this apply would have changed. */
export interface ApplyConflict {
  readonly object: string;
  /** `.spec.hard.cpu`, as Kubernetes names it. */
  readonly field: string;
  readonly manager: string;
}

export const describeConflict = (c: ApplyConflict) => `field ${c.field} of ${c.object} is owned by manager ${c.manager}`;

export interface ApplyFailure {
  /** `NetworkPolicy payments/polity-payments-segmentation.default-deny`. */
  readonly object: string;
  readonly reason: string;
}

export interface ApplyResult {
  readonly applied: readonly string[];
  readonly deleted: readonly string[];
  /** The object that failed, when one did: the version was rolled back. */
  readonly failed?: ApplyFailure;
  readonly rolledBack: boolean;
  /** Objects that could not be restored or removed in rolling back. */
  readonly rollbackFailures: readonly ApplyFailure[];
  /** Fields of other managers the failed object would have changed (a 409 Conflict). */
  readonly conflicts: readonly ApplyConflict[];
}

export interface ApplyOptions {
  /** Delete what `previous` holds and `desired` does not (default true). */
  readonly deleteUnwanted?: boolean;
}

/** The conflicts a 409 answer to an apply lists (Status details.causes, reason FieldManagerConflict). */
export function conflictsOf(error: unknown, object: string): ApplyConflict[] {
  if (statusOf(error) !== 409) return [];
  // A KubeRequestError (src/kube/raw.ts) keeps the Status's details; client-node's errors keep the body.
  let body = (error as { details?: unknown }).details !== undefined ? { details: (error as { details?: unknown }).details } : (error as { body?: unknown }).body;
  if (typeof body === "string") {
    try {
      body = JSON.parse(body);
    } catch {
      return [];
    }
  }
  const causes = (body as { details?: { causes?: unknown } } | undefined)?.details?.causes;
  if (!Array.isArray(causes)) return [];
  const found: ApplyConflict[] = [];
  for (const cause of causes as { reason?: unknown; message?: unknown; field?: unknown }[]) {
    if (cause.reason !== "FieldManagerConflict" || typeof cause.field !== "string") continue;
    const manager = typeof cause.message === "string" ? /conflict with "([^"]*)"/.exec(cause.message)?.[1] : undefined;
    found.push({ object, field: cause.field.slice(0, 512), manager: (manager ?? "another manager").slice(0, 128) });
  }
  return found.slice(0, 100);
}

const keyOf = (m: { apiVersion?: string; kind?: string; metadata?: { name?: string; namespace?: string } }) =>
  `${m.apiVersion}/${m.kind}/${m.metadata?.namespace ?? ""}/${m.metadata?.name}`;

export const describeObject = (m: Manifest) => `${m.kind} ${m.metadata.namespace === undefined ? "" : `${m.metadata.namespace}/`}${m.metadata.name}`;

/** Objects in the order they are applied; deletions run it backwards. */
function ordered(list: readonly Manifest[]): Manifest[] {
  const rank = (m: Manifest) => APPLY_ORDER.indexOf(m.kind as (typeof APPLY_ORDER)[number]);
  return [...list].sort((a, b) => rank(a) - rank(b));
}

const forces = (m: Manifest) => m.metadata.annotations?.[FORCE_CONFLICTS_ANNOTATION] === "true";

export class Applier {
  /** The served type of each apiVersion and kind applied (found by discovery once). */
  private readonly types = new Map<string, OwnedType>();

  constructor(
    private readonly api: KubernetesObjectApi,
    private readonly config: KubeConfig,
  ) {}

  /** Applies `desired`; `previous` is what the last successful apply held (empty at first). */
  async apply(desired: readonly Manifest[], previous: readonly Manifest[], options: ApplyOptions = {}): Promise<ApplyResult> {
    const applied: string[] = [];
    const created: Manifest[] = [];
    for (const manifest of ordered(desired)) {
      let existed = true;
      try {
        const live = await this.live(manifest);
        existed = live !== undefined;
        // An object of the same name someone else made is never taken over (unless the intent
        // forces conflicts): labelled as Polity's, a later version without it would delete it.
        if (live !== undefined && live.metadata?.labels?.[MANAGED_BY] !== "polity" && !forces(manifest)) {
          throw new Error(`an object of this name exists, not made by Polity (no label ${MANAGED_BY}: polity); Polity does not take it over`);
        }
        await this.serverSideApply(manifest);
      } catch (error) {
        const object = describeObject(manifest);
        const conflicts = conflictsOf(error, object);
        const reason = conflicts.length > 0 ? `conflict with another field manager: ${conflicts.map(describeConflict).join("; ")}` : describeFailure(error);
        const rollbackFailures = await this.rollBack(previous, created);
        return { applied, deleted: [], failed: { object, reason: reason.slice(0, 4000) }, rolledBack: true, rollbackFailures, conflicts };
      }
      applied.push(describeObject(manifest));
      if (!existed) created.push(manifest);
    }
    const deleted: string[] = [];
    if (options.deleteUnwanted !== false) {
      const wanted = new Set(desired.map(keyOf));
      for (const gone of ordered(previous.filter((m) => !wanted.has(keyOf(m)))).reverse()) {
        if (await this.deleteIfOurs(gone)) deleted.push(describeObject(gone));
      }
    }
    return { applied, deleted, rolledBack: false, rollbackFailures: [], conflicts: [] };
  }

  /**
   * The manifest as it is, as JSON (src/kube/raw.ts): not through client-node's
   * KubernetesObjectApi, whose typed serializer drops the fields its models rename (a
   * NetworkPolicy rule's `from`, a LimitRange item's `default`, a CRD schema's
   * `x-kubernetes-preserve-unknown-fields`): an ingress rule without `from` admits every
   * source, a looser policy than the intent.
   */
  private async serverSideApply(manifest: Manifest): Promise<void> {
    await serverSideApply(this.config, await this.typeOf(manifest), manifest, { force: forces(manifest) });
  }

  private async typeOf(manifest: Manifest): Promise<OwnedType> {
    const key = typeKeyOf(manifest);
    let type = this.types.get(key);
    if (type === undefined) {
      type = await ownedType(this.config, manifest.apiVersion, manifest.kind, AbortSignal.timeout(10_000));
      if (type === undefined) throw new Error(`the API server does not serve ${manifest.kind} of ${manifest.apiVersion} (yet)`);
      this.types.set(key, type);
    }
    return type;
  }

  private async live(manifest: Manifest): Promise<KubernetesObject | undefined> {
    try {
      return await this.api.read({ apiVersion: manifest.apiVersion, kind: manifest.kind, metadata: { name: manifest.metadata.name, ...(manifest.metadata.namespace === undefined ? {} : { namespace: manifest.metadata.namespace }) } });
    } catch (error) {
      if ((error as { code?: number }).code === 404) return undefined;
      throw error;
    }
  }

  /** Deletes an object only when Polity made it: its label and its managers say so. */
  private async deleteIfOurs(manifest: Manifest): Promise<boolean> {
    const live = await this.live(manifest);
    if (live === undefined) return false;
    const ours = live.metadata?.labels?.[MANAGED_BY] === "polity" && (live.metadata?.managedFields ?? []).some((f) => f.manager === FIELD_MANAGER);
    if (!ours) return false;
    await this.api.delete(live);
    return true;
  }

  private async rollBack(previous: readonly Manifest[], created: readonly Manifest[]): Promise<ApplyFailure[]> {
    const failures: ApplyFailure[] = [];
    const before = new Set(previous.map(keyOf));
    for (const manifest of [...created].reverse()) {
      if (before.has(keyOf(manifest))) continue;
      try {
        await this.deleteIfOurs(manifest);
      } catch (error) {
        failures.push({ object: describeObject(manifest), reason: describeFailure(error) });
      }
    }
    for (const manifest of ordered(previous)) {
      try {
        await this.serverSideApply(manifest);
      } catch (error) {
        failures.push({ object: describeObject(manifest), reason: describeFailure(error) });
      }
    }
    return failures;
  }
}
