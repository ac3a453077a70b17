/**
 * The webhook's own serving certificate and the CA that signs it (which the API server is
 * told to trust: `polity agent webhook-config`), made once and kept in the data folder.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../files/write.js";

export interface WebhookCertificate {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
  readonly caPem: string;
}

const FIVE_YEARS_MS = 5 * 365 * 24 * 3600 * 1000;

export async function webhookCertificate(dir: string, cluster: string, names: readonly string[], now: Date): Promise<WebhookCertificate> {
  const paths = { ca: join(dir, "ca.pem"), cert: join(dir, "cert.pem"), key: join(dir, "key.pem") };
  if (existsSync(paths.ca) && existsSync(paths.cert) && existsSync(paths.key)) {
    return { caPem: readFileSync(paths.ca, "utf8"), certificatePem: readFileSync(paths.cert, "utf8"), privateKeyPem: readFileSync(paths.key, "utf8") };
  }
  // X.509 is loaded only the first time, when the certificate is made.
  const { createCertificateAuthority, issueServerCertificate } = await import("../identity/ca.js");
  const { authority } = await createCertificateAuthority(`${cluster}-webhook`, now);
  const serving = await issueServerCertificate(
    authority,
    { dns: ["localhost", "polity-agent.polity-system.svc", "polity-agent.polity-system.svc.cluster.local", ...names], ips: ["127.0.0.1", "::1"] },
    now,
    FIVE_YEARS_MS,
  );
  writeFileAtomic(paths.ca, authority.certificatePem, { mode: 0o644 });
  writeFileAtomic(paths.cert, serving.certificatePem, { mode: 0o644 });
  writeFileAtomic(paths.key, serving.privateKeyPem, { mode: 0o600 });
  return { caPem: authority.certificatePem, certificatePem: serving.certificatePem, privateKeyPem: serving.privateKeyPem };
}
