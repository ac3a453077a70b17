/**
 * Which CAs a hub's serving certificate may chain to, for an agent or the CLI: the CA
 * pinned at enrolment (or `polity login`), and the federation CAs listed by the newest root
 * it verified from its pinned root version 1 (src/trust). A CA rotation reaches it only
 * that way: a hub's answer (a renewal's `ca`, say) never adds a CA.
 */
import { rootCertificateAuthorities, type RootMetadata } from "../trust/index.js";

const PEM = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** The pinned CA(s) and those `root` lists, one PEM bundle, each certificate once. */
export function serverTrust(pinnedCaPem: string, root: RootMetadata | undefined): string {
  return pemBundle([pinnedCaPem, ...rootCertificateAuthorities(root)]);
}

/** Certificates (PEM, one or more each) as one bundle, in order, each once, each line ended. */
export function pemBundle(pems: readonly string[]): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const pem of pems.flatMap((p) => p.match(PEM) ?? [])) {
    const key = pem.replace(/\s+/g, "");
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(`${pem}\n`);
  }
  return out.join("");
}
