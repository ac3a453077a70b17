/**
 * A regional hub keeps what its parent gave it at enrolment from expiring: its delegation
 * (the root's permission for its bundle key to sign its region's bundles, 90 days by
 * default) and its region's CA (an intermediate, 90 days). When either has less than a
 * third of its life left, it asks its parent (`POST /v1/region/renew`, over the link's mutual
 * TLS) for both again, for the same keys: a new root version extends the delegation, a new
 * intermediate certifies the same CA key. Nothing changes for its agents but the
 * intermediate their next certificate carries; the keys never leave the hub.
 */
import { X509Certificate } from "node:crypto";
import type { RegionalRenewed } from "../../api/regions.js";
import { call } from "../../client/http.js";
import type { Database } from "../../store/database.js";
import { certificateFingerprint, type RootMetadata } from "../../trust/index.js";
import type { AuditLog } from "../audit-log.js";
import { newCorrelationId } from "../audit-log.js";
import { loadAuthority, type IdentityService } from "../identity.js";
import { parentEndpoint, saveRegionalCredentials, type RegionalCredentials } from "./credentials.js";

export class RegionalRenewal {
  constructor(
    private credentials: RegionalCredentials,
    private readonly db: Database,
    private readonly identity: IdentityService,
    private readonly audit: AuditLog,
    private readonly store: { readonly dataDir: string; readonly operatorKey: string },
    private readonly now: () => Date,
  ) {}

  /** Whether the delegation in `root` or the region's CA has less than a third of its life left. */
  due(root: RootMetadata): string | undefined {
    const now = this.now().getTime();
    const ca = new X509Certificate(this.credentials.caCertificatePem);
    const caFrom = Date.parse(ca.validFrom);
    const caTo = Date.parse(ca.validTo);
    const third = (caTo - caFrom) / 3;
    if (caTo - now < third) return `the region's CA expires at ${new Date(caTo).toISOString()}`;
    const delegation = root.delegations.find((d) => d.region === this.credentials.region);
    if (delegation === undefined) return undefined; // revoked, or not delegated yet: nothing to extend
    if (Date.parse(delegation.expires) - now < third) return `the region's delegation expires at ${delegation.expires}`;
    return undefined;
  }

  /** Asks the parent for both again when one is due; keeps the new intermediate. Returns the new root version, if any. */
  async renewIfDue(root: RootMetadata): Promise<number | undefined> {
    const why = this.due(root);
    if (why === undefined) return undefined;
    const renewed = (await call<RegionalRenewed>(parentEndpoint(this.credentials), "POST", "/v1/region/renew", {}, { timeoutMs: 15_000 })).body;
    if (new X509Certificate(renewed.caCertificatePem).publicKey.export({ type: "spki", format: "der" }).toString("hex") !== new X509Certificate(this.credentials.caCertificatePem).publicKey.export({ type: "spki", format: "der" }).toString("hex")) {
      throw new Error("the parent renewed the region's CA for another key than this hub's");
    }
    await this.db.query("UPDATE certificate_authority SET certificate_pem = $1", [renewed.caCertificatePem]);
    this.credentials = { ...this.credentials, caCertificatePem: renewed.caCertificatePem, rootVersion: renewed.rootVersion };
    saveRegionalCredentials(this.store.dataDir, this.store.operatorKey, this.credentials);
    const authority = await loadAuthority(this.db, this.credentials.federation, this.store.operatorKey);
    this.identity.useAuthorities(authority, authority, [authority.certificatePem], certificateFingerprint(authority.certificatePem));
    await this.audit.append([
      { kind: "region.ca-issued", actor: "regional-hub", cluster: null, region: this.credentials.region, correlationId: newCorrelationId(), data: { renewed: true, why, notAfter: new X509Certificate(renewed.caCertificatePem).validTo, rootVersion: renewed.rootVersion } },
    ]);
    return renewed.rootVersion;
  }
}
