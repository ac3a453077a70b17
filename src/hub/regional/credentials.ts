/**
 * A regional hub's credentials: what it got from its parent when it enrolled (the root CA,
 * its hub certificate, its region's CA) and the keys it made for them, which never left it.
 * Kept in `<data>/regional.json`, its private keys sealed under the operator's key.
 *
 * This is the boundary the trust branch plugs into (issue 15): a delegation (a root in which
 * this region's bundle key may sign its region's bundles) joins the enrolment answer, and
 * `issueRegionalCa` replaces the interim region CA, without the role changing.
 */
import { createPublicKey } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { RegionalEnrolled } from "../../api/regions.js";
import { call } from "../../client/http.js";
import { hubServerPath } from "../../client/config.js";
import { PolityError } from "../../errors.js";
import { seal, unseal, type Sealed } from "../../identity/secrets.js";
import { generateKeyPair, privateKeyPem } from "../../identity/x509.js";
import { writeFileAtomic } from "../../files/write.js";

export interface RegionalCredentials extends RegionalEnrolled {
  readonly parentUrl: string;
  readonly hubKeyPem: string;
  readonly caKeyPem: string;
}

interface Stored extends RegionalEnrolled {
  readonly parentUrl: string;
  readonly hubKey: Sealed;
  readonly caKey: Sealed;
}

const FILE = "regional.json";

export function loadRegionalCredentials(dataDir: string, operatorKey: string): RegionalCredentials | undefined {
  const path = join(dataDir, FILE);
  if (!existsSync(path)) return undefined;
  const stored = JSON.parse(readFileSync(path, "utf8")) as Stored;
  const { hubKey, caKey, ...rest } = stored;
  return { ...rest, hubKeyPem: unseal(hubKey, operatorKey).toString("utf8"), caKeyPem: unseal(caKey, operatorKey).toString("utf8") };
}

export function saveRegionalCredentials(dataDir: string, operatorKey: string, credentials: RegionalCredentials): void {
  const { hubKeyPem, caKeyPem, ...rest } = credentials;
  const stored: Stored = { ...rest, hubKey: seal(hubKeyPem, operatorKey), caKey: seal(caKeyPem, operatorKey) };
  writeFileAtomic(join(dataDir, FILE), `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600 });
}

/** The parent is the global hub: its certificate must say so (a region's would not). */
const GLOBAL_HUB = hubServerPath();

export interface EnrolmentRequest {
  readonly dataDir: string;
  readonly operatorKey: string;
  readonly region: string;
  readonly parentUrl: string;
  readonly parentCaPem: string;
  readonly token: string;
  readonly bundleKeyPem: string;
  readonly auditKeyPem: string;
  readonly hostnames: readonly string[];
}

/** Enrols with the parent once, with a region token: two new keys, their certificates back. */
export async function enrolWithParent(request: EnrolmentRequest): Promise<RegionalCredentials> {
  const hubKeyPem = await privateKeyPem((await generateKeyPair()).privateKey);
  const caKeyPem = await privateKeyPem((await generateKeyPair()).privateKey);
  const publicPem = (pem: string) => createPublicKey(pem).export({ type: "spki", format: "pem" }).toString();
  const enrolled = (
    await call<RegionalEnrolled>({ url: request.parentUrl, caPem: request.parentCaPem, serverIds: [GLOBAL_HUB] }, "POST", "/v1/regions/enrol", {
      token: request.token,
      region: request.region,
      hubPublicKeyPem: publicPem(hubKeyPem),
      caPublicKeyPem: publicPem(caKeyPem),
      bundleKeyPem: request.bundleKeyPem,
      auditKeyPem: request.auditKeyPem,
      hostnames: [...request.hostnames],
    })
  ).body;
  if (enrolled.region !== request.region) throw PolityError.of("invalid", `the parent enrolled this hub for region ${enrolled.region}, not ${request.region}`);
  const credentials: RegionalCredentials = { ...enrolled, parentUrl: request.parentUrl, hubKeyPem, caKeyPem };
  saveRegionalCredentials(request.dataDir, request.operatorKey, credentials);
  return credentials;
}

/** The parent, reached over mutual TLS with this hub's certificate. */
export function parentEndpoint(credentials: RegionalCredentials, parentUrl = credentials.parentUrl) {
  return { url: parentUrl, caPem: credentials.rootPem, clientCertificatePem: credentials.hubCertificatePem, clientKeyPem: credentials.hubKeyPem, serverIds: [GLOBAL_HUB] };
}
