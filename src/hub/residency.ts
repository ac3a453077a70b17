/**
 * Data residency as a declaration. Every hub runs in a zone (`polity hub --zone`; a
 * regional hub's default is its region's name, the global hub's `global`). A global admin
 * declares, per region, the zones its data may be kept in; the declaration is versioned,
 * audited, and mirrored down to the region's hub. Region-scoped data (decision logs,
 * compliance details, agent status, drift) is refused (403, with the reason) by a hub:
 *
 * - whose zone the region does not allow;
 * - that is the global hub, when the region has a hub of its own (its data is kept there);
 * - that is another region's hub.
 *
 * A read at the global hub of details that its region's hub keeps is answered with where
 * they are kept, not with data. Each refusal is audited (`residency.refused`), once per
 * cluster and kind of data within a budget (residency-budget.ts).
 *
 * This module owns `region_residency`.
 */
import { z } from "zod";
import { KEPT, SENT_UP, ZONE, zoneName, type DeclaredResidency, type RegionResidency, type ResidencyView } from "../api/residency.js";
import type { Database, Queryable } from "../store/database.js";
import { newCorrelationId, type AuditContext, type AuditLog } from "./audit-log.js";
import { RefusalBudget, type BudgetOptions, DEFAULT_BUDGET } from "./residency-budget.js";
import { ApiError, conflict, forbidden } from "./status.js";

export const GLOBAL_ZONE = "global";

/** The hub's place: the global hub, or a region's hub; and its zone. */
export type HubPlace = { readonly role: "global"; readonly zone: string } | { readonly role: "regional"; readonly region: string; readonly zone: string };

/** This hub's place, from its options: the zone given, or the default (its region's name; `global`). */
export function hubPlace(zone: string | undefined, region: string | undefined): HubPlace {
  if (zone !== undefined && (!ZONE.test(zone) || zone.length > 63)) throw new Error(`zone ${JSON.stringify(zone)} is not a zone name (lowercase letters, digits and '-', at most 63)`);
  return region === undefined ? { role: "global", zone: zone ?? GLOBAL_ZONE } : { role: "regional", region, zone: zone ?? region };
}

/** What region-scoped data a request carries or asks for. */
export type RegionData = "decision logs" | "agent status" | "compliance details" | "drift reports";

/** The regional hubs a parent knows (src/hub/regional/parent.ts). */
export interface RegionalHubs {
  hasHub(region: string): Promise<boolean>;
  hubs(): Promise<readonly { readonly region: string }[]>;
}

type Row = { region: string; allowed_zones: string[] | null; version: number; declared_at: Date | null; declared_by: string | null; hub_zone: string | null };

const mirrored = z.strictObject({
  region: z.string().max(63),
  allowedZones: z.array(zoneName).min(1).max(32),
  version: z.number().int().min(1),
  declaredAt: z.iso.datetime(),
  declaredBy: z.string().max(300),
});

function declaration(row: Row | undefined): DeclaredResidency | undefined {
  if (row === undefined || row.allowed_zones === null || row.declared_at === null) return undefined;
  return { region: row.region, allowedZones: row.allowed_zones, version: row.version, declaredAt: new Date(row.declared_at).toISOString(), declaredBy: row.declared_by ?? "" };
}

/** A region's declaration as this hub holds it (the parent's mirror sends it down). */
export async function declaredResidency(db: Queryable, region: string): Promise<DeclaredResidency | null> {
  const [row] = await db.query<Row>("SELECT region, allowed_zones, version, declared_at, declared_by, hub_zone FROM region_residency WHERE region = $1", [region]);
  return declaration(row) ?? null;
}

/** A 403 that says where the region's data is kept. */
function refusal(message: string, keptIn: string): ApiError {
  return new ApiError(403, "Forbidden", message, [{ field: "keptIn", message: keptIn }]);
}

export class Residency {
  private readonly budget: RefusalBudget;

  constructor(
    private readonly db: Database,
    private readonly audit: AuditLog,
    readonly place: HubPlace,
    private readonly regions: RegionalHubs | undefined,
    private readonly now: () => Date,
    budget: BudgetOptions = DEFAULT_BUDGET,
  ) {
    this.budget = new RefusalBudget(budget);
  }

  get zone(): string {
    return this.place.zone;
  }

  private describeHub(): string {
    return this.place.role === "global" ? `the global hub (zone ${this.zone})` : `region ${this.place.region}'s hub (zone ${this.zone})`;
  }

  /** A global admin's declaration of the zones a region's data may be kept in: a new version, audited. */
  async declare(region: string, allowedZones: readonly string[], baseVersion: number | undefined, context: AuditContext): Promise<DeclaredResidency> {
    if (this.place.role === "regional") throw forbidden(`a region's residency is declared on the global hub: this is region ${this.place.region}'s hub, which follows it through its mirror`);
    return this.db.transaction(async (tx) => {
      const [held] = await tx.query<Row>("SELECT region, allowed_zones, version, declared_at, declared_by, hub_zone FROM region_residency WHERE region = $1 FOR UPDATE", [region]);
      const before = declaration(held);
      if (baseVersion !== undefined && baseVersion !== (before?.version ?? 0)) throw conflict(`region ${region}'s residency is at version ${before?.version ?? 0}, not ${baseVersion}: read it again (polity get residency) and retry`);
      const version = (held?.version ?? 0) + 1;
      const now = this.now();
      await tx.query(
        `INSERT INTO region_residency (region, allowed_zones, version, declared_at, declared_by) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (region) DO UPDATE SET allowed_zones = EXCLUDED.allowed_zones, version = EXCLUDED.version, declared_at = EXCLUDED.declared_at, declared_by = EXCLUDED.declared_by`,
        [region, JSON.stringify(allowedZones), version, now, context.actor],
      );
      await this.audit.record(tx, [
        { kind: "residency.declared", actor: context.actor, cluster: null, region, correlationId: context.correlationId, data: { version, allowedZones: [...allowedZones], before: before === undefined ? null : [...before.allowedZones] } },
      ]);
      return { region, allowedZones: [...allowedZones], version, declaredAt: now.toISOString(), declaredBy: context.actor };
    });
  }

  /**
   * On a regional hub: the declaration its parent's mirror holds, followed when newer (and
   * audited); one that does not parse or is for another region is refused and audited, the
   * one held stays.
   */
  async follow(sent: unknown): Promise<void> {
    if (this.place.role !== "regional" || sent === undefined || sent === null) return;
    const context: AuditContext = { actor: "parent", correlationId: newCorrelationId() };
    const parsed = mirrored.safeParse(sent);
    const why = !parsed.success ? `not a residency declaration: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}` : parsed.data.region !== this.place.region ? `it is region ${parsed.data.region}'s, not ${this.place.region}'s` : undefined;
    if (why !== undefined || !parsed.success) {
      await this.audit.append([{ kind: "regional-hub.refused", actor: context.actor, cluster: null, region: this.place.region, correlationId: context.correlationId, data: { what: "residency declaration", why: why ?? "" } }]);
      return;
    }
    const d = parsed.data;
    await this.db.transaction(async (tx) => {
      const changed = await tx.query(
        `INSERT INTO region_residency (region, allowed_zones, version, declared_at, declared_by) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (region) DO UPDATE SET allowed_zones = EXCLUDED.allowed_zones, version = EXCLUDED.version, declared_at = EXCLUDED.declared_at, declared_by = EXCLUDED.declared_by
         WHERE region_residency.version < EXCLUDED.version RETURNING region`,
        [d.region, JSON.stringify(d.allowedZones), d.version, d.declaredAt, d.declaredBy],
      );
      if (changed.length > 0) {
        await this.audit.record(tx, [{ kind: "residency.declared", actor: context.actor, cluster: null, region: d.region, correlationId: context.correlationId, data: { version: d.version, allowedZones: d.allowedZones, declaredBy: d.declaredBy, mirrored: true } }]);
      }
    });
  }

  /** On the global hub: the zone a regional hub says it runs in (sent with its summaries). */
  async recordHubZone(region: string, zone: string | undefined): Promise<void> {
    if (zone === undefined) return;
    await this.db.query(
      "INSERT INTO region_residency (region, hub_zone, hub_zone_at) VALUES ($1, $2, $3) ON CONFLICT (region) DO UPDATE SET hub_zone = EXCLUDED.hub_zone, hub_zone_at = EXCLUDED.hub_zone_at",
      [region, zone, this.now()],
    );
  }

  private async row(region: string): Promise<Row | undefined> {
    const [row] = await this.db.query<Row>("SELECT region, allowed_zones, version, declared_at, declared_by, hub_zone FROM region_residency WHERE region = $1", [region]);
    return row;
  }

  /**
   * Admits region-scoped data a cluster's agent sends this hub, or refuses it (403) with
   * where it belongs, audited within the budget. `regionHasHub`: as the request's
   * authentication already read it (src/hub/standing.ts), so it is not asked again.
   */
  async admit(cluster: string, region: string, what: RegionData, context: AuditContext, regionHasHub?: boolean): Promise<void> {
    const row = await this.row(region);
    const declared = declaration(row);
    let why: string | undefined;
    let keptIn = "";
    if (this.place.role === "regional" && region !== this.place.region) {
      why = `${what} of cluster ${cluster} belong to region ${region}: this is ${this.describeHub()}`;
      keptIn = `region ${region}'s hub`;
    } else if (this.place.role === "global" && (regionHasHub ?? (await this.regions?.hasHub(region))) === true) {
      keptIn = `region ${region}'s hub${row?.hub_zone === null || row?.hub_zone === undefined ? "" : ` (zone ${row.hub_zone})`}`;
      why = `region ${region} has its own hub: ${what} of its clusters are kept there, not sent to the global hub; cluster ${cluster} sends them to ${keptIn}`;
    } else if (declared !== undefined && !declared.allowedZones.includes(this.zone)) {
      keptIn = `a hub in zone ${declared.allowedZones.join(" or ")}`;
      why = `region ${region} keeps its data in zone ${declared.allowedZones.join(", ")} (residency version ${declared.version}): ${this.describeHub()} may not hold ${what} of cluster ${cluster}`;
    }
    if (why === undefined) return;
    await this.refused({ cluster, region, what, direction: "sent here", why, keptIn, allowedZones: declared?.allowedZones ?? null }, context);
    throw refusal(why, keptIn);
  }

  /**
   * On the global hub: a read of region-scoped details its region's hub keeps is answered
   * with where they are kept (403), not with data. `cluster` null: the whole region's.
   */
  async readable(region: string, cluster: string | null, what: RegionData, context: AuditContext): Promise<void> {
    if (this.place.role !== "global" || (await this.regions?.hasHub(region)) !== true) return;
    const row = await this.row(region);
    const keptIn = `region ${region}'s hub${row?.hub_zone === null || row?.hub_zone === undefined ? "" : ` (zone ${row.hub_zone})`}`;
    const of = cluster === null ? `region ${region}'s clusters` : `cluster ${cluster}`;
    const why = `${what} of ${of} are kept in ${keptIn}, not here: ask that hub (polity login --region ${region}); the global hub holds only counts, hashes and signed heads of its region`;
    await this.refused({ cluster, region, what, direction: "read here", why, keptIn, allowedZones: declaration(row)?.allowedZones ?? null }, context);
    throw refusal(why, keptIn);
  }

  private async refused(r: { cluster: string | null; region: string; what: RegionData; direction: string; why: string; keptIn: string; allowedZones: readonly string[] | null }, context: AuditContext): Promise<void> {
    const spent = this.budget.take(`${r.cluster ?? `region:${r.region}`}|${r.direction}|${r.what}`, this.now().getTime());
    if (spent === undefined) return;
    await this.audit.append([
      {
        kind: "residency.refused",
        actor: context.actor,
        cluster: r.cluster,
        region: r.region,
        correlationId: context.correlationId,
        data: { what: r.what, direction: r.direction, zone: this.zone, allowedZones: r.allowedZones === null ? null : [...r.allowedZones], keptIn: r.keptIn, why: r.why, suppressedBefore: spent.suppressedBefore },
      },
    ]);
  }

  /** Per region: its declaration, where its data is kept and that hub's zone, what stays and what goes up. */
  async view(clusterRegions: Iterable<string>): Promise<ResidencyView> {
    const rows = new Map((await this.db.query<Row>("SELECT region, allowed_zones, version, declared_at, declared_by, hub_zone FROM region_residency")).map((r) => [r.region, r]));
    const withHubs = new Set(this.place.role === "global" ? ((await this.regions?.hubs()) ?? []).map((h) => h.region) : []);
    const names = this.place.role === "regional" ? [this.place.region] : [...new Set([...clusterRegions, ...rows.keys(), ...withHubs])].sort();
    const items = names.map((region): RegionResidency => {
      const row = rows.get(region);
      const declared = declaration(row);
      const own = this.place.role === "regional" || !withHubs.has(region);
      const hubZone = own ? this.zone : (row?.hub_zone ?? null);
      return {
        region,
        allowedZones: declared?.allowedZones ?? null,
        version: declared?.version ?? 0,
        declaredAt: declared?.declaredAt ?? null,
        declaredBy: declared?.declaredBy ?? null,
        keptBy: own && this.place.role === "global" ? "global hub" : "regional hub",
        hubZone,
        hubZoneAllowed: declared === undefined ? true : hubZone === null ? null : declared.allowedZones.includes(hubZone),
        kept: [...KEPT],
        sentUp: own && this.place.role === "global" ? [] : [...SENT_UP],
      };
    });
    return { answering: { role: this.place.role, region: this.place.role === "regional" ? this.place.region : null, zone: this.zone }, items };
  }
}
