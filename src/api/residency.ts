/**
 * Data residency's wire formats (src/hub/residency.ts): a zone's name, a region's
 * declaration of the zones its data may go to, and what `GET /v1/residency` answers.
 */
import { z } from "zod";

/** A zone: where a hub runs, as its operator declares it (`polity hub --zone eu-central-1`). */
export const ZONE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const zoneName = z.string().max(63).regex(ZONE, "a zone name: lowercase letters, digits and '-' (eu-central-1)");

/** `PUT /v1/regions/<region>/residency`: the zones a region's data may be kept in. */
export const residencyDeclaration = z.strictObject({
  allowedZones: z
    .array(zoneName)
    .min(1, "give at least one zone: a region whose data may go nowhere could not keep it anywhere")
    .max(32)
    .refine((zones) => new Set(zones).size === zones.length, "each zone once"),
  /** The version this change replaces (optimistic concurrency); absent: whatever is held. */
  baseVersion: z.number().int().min(0).optional(),
});
export type ResidencyDeclaration = z.infer<typeof residencyDeclaration>;

/** A region's declaration as held (and mirrored down to its regional hub). */
export interface DeclaredResidency {
  readonly region: string;
  readonly allowedZones: readonly string[];
  readonly version: number;
  readonly declaredAt: string;
  readonly declaredBy: string;
}

/** What stays in a region, and what goes up from it: the same for every region. */
export const KEPT = ["decision logs", "compliance details", "agent status", "drift reports", "audit entries"] as const;
export const SENT_UP = ["counts", "hashes", "signed heads"] as const;

/** One region, as `GET /v1/residency` shows it. */
export interface RegionResidency {
  readonly region: string;
  /** Null: nothing declared (the split holds by construction, no zone is refused). */
  readonly allowedZones: readonly string[] | null;
  readonly version: number;
  readonly declaredAt: string | null;
  readonly declaredBy: string | null;
  /** Where the region's data is kept: its own regional hub, or the global hub (a region without one). */
  readonly keptBy: "regional hub" | "global hub";
  /** That hub's zone; null when its regional hub has not said yet (no summary since it enrolled). */
  readonly hubZone: string | null;
  /** Whether that zone is one the region allows (true when nothing is declared). */
  readonly hubZoneAllowed: boolean | null;
  /** What `keptBy` keeps of the region's clusters. */
  readonly kept: readonly string[];
  /** What goes up to the global hub (nothing when the global hub keeps the region's data itself). */
  readonly sentUp: readonly string[];
}

export interface ResidencyView {
  /** The hub answering: its role and zone. */
  readonly answering: { readonly role: "global" | "regional"; readonly region: string | null; readonly zone: string };
  readonly items: readonly RegionResidency[];
}
