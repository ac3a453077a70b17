/** Enrolment and renewal of a cluster's certificate, and who the hub takes a caller to be. */
import { z } from "zod";

export const enrollRequest = z.strictObject({ joinToken: z.string().min(1).max(256), csr: z.string().min(1).max(16384) });
export type EnrollRequest = z.infer<typeof enrollRequest>;

export const renewRequest = z.strictObject({ csr: z.string().min(1).max(16384) });
export type RenewRequest = z.infer<typeof renewRequest>;

/** A certificate issued to a cluster, with the bundle key its agent pins. */
export interface IssuedCertificate {
  readonly certificate: string;
  readonly ca: string;
  readonly spiffeId: string;
  readonly serial: string;
  readonly notAfter: string;
  /** When to renew: two thirds of the way through the certificate's life. */
  readonly renewAfter: string;
  readonly bundleKey: { readonly keyId: string; readonly publicKeyPem: string };
  /**
   * Root version 1 of the federation's root of trust (src/trust), which the agent pins: it
   * verifies every later root against it, and bundles against the newest. Absent from
   * hubs before roots.
   */
  readonly root?: unknown;
}
