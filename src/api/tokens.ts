/** Bearer tokens for people and automation: a role, a region for region operators, an expiry. */
import { z } from "zod";
import { displayName, name, ttlSeconds } from "./fields.js";

export const ROLES = ["global-admin", "region-operator", "auditor"] as const;
export type Role = (typeof ROLES)[number];

export const tokenCreateRequest = z.strictObject({ name: displayName(128), role: z.enum(ROLES), region: name.optional(), ttlSeconds: ttlSeconds.optional() });
export type TokenCreateRequest = z.infer<typeof tokenCreateRequest>;

export interface TokenCreated {
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  readonly region: string | null;
  readonly expiresAt: string;
  /** Shown once; the hub keeps only its hash. */
  readonly token: string;
}

export interface TokenView {
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  readonly region: string | null;
  readonly createdBy: string;
  readonly createdAt: string;
  readonly expiresAt: string | null;
  readonly revokedAt: string | null;
}
