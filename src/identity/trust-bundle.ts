/**
 * Which CAs a hub's serving certificate may chain to, for an agent or the CLI: the federation
 * CAs listed by the newest root it verified from its pinned root version 1 (src/trust), once
 * a root lists any; until then the CA pinned at enrolment (or `polity login`). A CA rotation
 * reaches it only that way: a hub's answer (a renewal's `ca`, say) never adds a CA.
 */
import { rootCertificateAuthorities, type RootMetadata } from "../trust/index.js";

const PEM = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/**
 * The CAs a hub's certificate may chain to: those the newest verified root lists, once it
 * lists any (a CA rotation began: the pinned CA counts only while that root still lists it,
 * so a retired CA, whose key may be why it was rotated out, is trusted no more); until then
 * the pinned CA. One PEM bundle, each certificate once.
 */
export function serverTrust(pinnedCaPem: string, root: RootMetadata | undefined): string {
  const listed = rootCertificateAuthorities(root);
  return pemBundle(listed.length > 0 ? listed : [pinnedCaPem]);
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
