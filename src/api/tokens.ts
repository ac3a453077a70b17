/** Bearer tokens for people and automation: a role, a region for region operators, an expiry. */
import { z } from "zod";
import { subject } from "../policy/schema.js";
import { displayName, name, ttlSeconds } from "./fields.js";

export const ROLES = ["global-admin", "region-operator", "auditor", "team-member"] as const;
export type Role = (typeof ROLES)[number];

export const tokenCreateRequest = z.strictObject({
  name: displayName(128),
  role: z.enum(ROLES),
  region: name.optional(),
  ttlSeconds: ttlSeconds.optional(),
  /** Who the holder is: what teams list as their members, and what the audit log records for what they approve. */
  subject: subject.optional(),
  /** Groups the holder belongs to: teams may map a group to their members. */
  groups: z.array(subject).max(64).optional(),
});
export type TokenCreateRequest = z.infer<typeof tokenCreateRequest>;

export interface TokenCreated {
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  readonly region: string | null;
  readonly subject: string | null;
  readonly groups: readonly string[];
  readonly expiresAt: string;
  /** Shown once; the hub keeps only its hash. */
  readonly token: string;
}

export interface TokenView {
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  readonly region: string | null;
  readonly subject: string | null;
  readonly groups: readonly string[];
  readonly createdBy: string;
  readonly createdAt: string;
  readonly expiresAt: string | null;
  readonly revokedAt: string | null;
}
