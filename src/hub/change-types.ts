/**
 * What a change is (change.ts applies it): layers, clusters' registration, a cluster's relabelling,
 * removal or revocation, or the exceptions granted by request; its plan; what it committed.
 */
import type { SourceFile } from "../api/fields.js";
import type { AuditEvent } from "../audit/entry.js";
import type { EffectivePolicySet } from "../layering/effective.js";
import type { Layer } from "../policy/layer.js";
import type { Queryable } from "../store/database.js";
import type { Granted, LayerWrite, Registration } from "./federation.js";

/** A layer as a change gives it: its id, its parsed content (undefined: deleted) and its files. */
export interface LayerInput {
  readonly id: string;
  readonly layer: Layer | undefined;
  readonly files: readonly SourceFile[];
}

export type Change =
  /**
   * New versions of layers; `also` records more in the same transaction (a proposal's state,
   * a rollout), returning its audit events. `hold`: clusters a staged rollout has not reached,
   * which keep their current effective sets (validated with the new layers all the same).
   * `rollout`: the rollout this change belongs to (its start or its rollback), which alone may
   * change a layer being rolled out.
   */
  | {
      readonly kind: "layers";
      readonly layers: readonly LayerInput[];
      also?(tx: Queryable): Promise<AuditEvent[]>;
      readonly hold?: ReadonlySet<string>;
      readonly rollout?: string;
    }
  /** One cluster or many, in one change: one plan, one transaction, one publication of their bundles. */
  | { readonly kind: "register"; readonly clusters: readonly Registration[] }
  | { readonly kind: "relabel"; readonly cluster: string; readonly labels: Readonly<Record<string, string>> }
  | { readonly kind: "remove"; readonly cluster: string }
  | { readonly kind: "revoke"; readonly cluster: string }
  /**
   * The exceptions granted by request change (one granted, withdrawn or expired): `grant`
   * makes the new whole from the current one (planned again on the newest state after a
   * race), `layers` are the ones whose grants differ, and `write` records the request's new
   * state in the change's transaction and returns its audit events.
   */
  | { readonly kind: "grants"; readonly layers: readonly string[]; grant(current: Granted): Granted; write(tx: Queryable): Promise<AuditEvent[]> };

export interface PlannedLayer extends LayerWrite {
  readonly unchanged: boolean;
}

export interface Plan {
  readonly change: Change;
  /** The generation the plan was made at. */
  readonly generation: string;
  /** For a change of layers: each layer, changed or not. */
  readonly layers: readonly PlannedLayer[];
  /** The registered clusters whose effective sets the change recomputes, with the hash before and the set after. */
  readonly affected: readonly { readonly cluster: string; readonly region: string; readonly before: string | undefined; readonly after: EffectivePolicySet }[];
}

export interface Committed {
  readonly plan: Plan;
  /** The layer versions written. */
  readonly written: readonly { readonly id: string; readonly version: number }[];
  /** How many certificates a removal or revocation revoked. */
  readonly certificates: number;
}
