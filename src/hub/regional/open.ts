/**
 * How a regional hub opens its own database: at its very first start it enrols with its
 * parent (a region token), then creates its federation row under the parent's name, with
 * its region's CA (the parent signed it; its key sealed like any CA key) as the CA it
 * issues its clusters' certificates with, and a bootstrap admin token of its own (for its
 * region's operators to mint theirs).
 */
import type { CertificateAuthority } from "../../identity/ca.js";
import { seal } from "../../identity/secrets.js";
import type { Database } from "../../store/database.js";
import { PolityError } from "../../errors.js";
import { appendEntries, newCorrelationId } from "../audit-log.js";
import { Federation } from "../federation.js";
import { loadAuthority } from "../identity.js";
import type { SigningKey } from "../keys.js";
import { TokenService } from "../tokens.js";
import { enrolWithParent, loadRegionalCredentials, type RegionalCredentials } from "./credentials.js";

export interface RegionalOptions {
  readonly region: string;
  readonly parentUrl: string;
  /** The parent's CA (the federation's root), for the first enrolment. */
  readonly parentCaPem?: string;
  /** A region token minted on the parent (`polity region token <region>`), for the first enrolment. */
  readonly token?: string;
  /** How often the link pulls the parent's mirror and sends its summary (default 2 s). */
  readonly linkIntervalMs?: number;
}

export async function openRegionalFederation(
  db: Database,
  dataDir: string,
  operatorKey: string,
  regional: RegionalOptions,
  keys: { readonly bundles: SigningKey; readonly audit: SigningKey },
  hostnames: readonly string[],
  now: () => Date,
): Promise<{ federation: string; authority: CertificateAuthority; bootstrapToken?: string; credentials: RegionalCredentials }> {
  let credentials = loadRegionalCredentials(dataDir, operatorKey);
  if (credentials !== undefined && credentials.region !== regional.region) {
    throw PolityError.of("invalid", `the data folder ${dataDir} holds the regional hub of ${credentials.region}, not ${regional.region}`);
  }
  if (credentials === undefined) {
    if (regional.token === undefined || regional.parentCaPem === undefined) {
      throw PolityError.of("invalid", `this regional hub has not enrolled with its parent yet: give --region-token (from 'polity region token ${regional.region}' on the parent) and --parent-ca`);
    }
    credentials = await enrolWithParent({
      dataDir,
      operatorKey,
      region: regional.region,
      parentUrl: regional.parentUrl,
      parentCaPem: regional.parentCaPem,
      token: regional.token,
      bundleKeyPem: keys.bundles.publicKeyPem,
      auditKeyPem: keys.audit.publicKeyPem,
      hostnames,
    });
  }
  const enrolled = credentials;
  const created = await db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock(7346202)");
    if ((await Federation.name(tx)) !== undefined) return undefined;
    await Federation.create(tx, enrolled.federation);
    await tx.query("INSERT INTO certificate_authority (certificate_pem, key_encrypted) VALUES ($1, $2)", [enrolled.caCertificatePem, JSON.stringify(seal(enrolled.caKeyPem, operatorKey))]);
    await tx.query("INSERT INTO regional_link (region, parent_url) VALUES ($1, $2)", [enrolled.region, regional.parentUrl]);
    const { token, event } = await TokenService.createBootstrap(tx, { actor: "hub", correlationId: newCorrelationId() });
    await appendEntries(tx, [event], now());
    return token;
  });
  const name = (await Federation.name(db))!;
  if (name !== enrolled.federation) throw PolityError.of("invalid", `the database holds federation ${name}, but this hub enrolled with ${enrolled.federation}`);
  // The parent's address may change between starts; the enrolment stays.
  await db.query("UPDATE regional_link SET parent_url = $1", [regional.parentUrl]);
  return { federation: name, authority: await loadAuthority(db, name, operatorKey), ...(created === undefined ? {} : { bootstrapToken: created }), credentials: { ...enrolled, parentUrl: regional.parentUrl } };
}
