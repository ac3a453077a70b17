/** A row of `certificates` as the regional link sends it, up (summaries) or down (the mirror). */
export type CertificateRow = {
  readonly serial: string;
  readonly cluster: string;
  readonly not_before: Date;
  readonly not_after: Date;
  readonly public_key_sha256: string;
  readonly certificate_pem: string;
  readonly issued_at: Date;
};

export const CERTIFICATE_COLUMNS = "serial, cluster, not_before, not_after, public_key_sha256, certificate_pem, issued_at";

export function certificateOnWire(c: CertificateRow): { serial: string; cluster: string; notBefore: string; notAfter: string; publicKeySha256: string; certificatePem: string; issuedAt: string } {
  return {
    serial: c.serial,
    cluster: c.cluster,
    notBefore: new Date(c.not_before).toISOString(),
    notAfter: new Date(c.not_after).toISOString(),
    publicKeySha256: c.public_key_sha256,
    certificatePem: c.certificate_pem,
    issuedAt: new Date(c.issued_at).toISOString(),
  };
}
