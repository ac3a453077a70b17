/**
 * Field schemas the API's request bodies share: names and labels as Kubernetes accepts
 * them, lifetimes, layer files. Each is a zod schema: it validates a body at the hub's
 * boundary, gives the handler its type, and becomes JSON Schema in /openapi.json.
 */
import { z } from "zod";

/** A DNS-1123 label, as Kubernetes names namespaces (and Polity names clusters and regions). */
export const name = z
  .string()
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending alphanumeric");

/** Kubernetes labels: keys with an optional DNS-subdomain prefix, values of at most 63 characters. */
export const labels = z
  .record(
    z.string().regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/, "is not a valid label key"),
    z.string().regex(/^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/, "is not a valid label value"),
  )
  .refine((value) => Object.keys(value).length <= 64, "at most 64 labels");

/** A lifetime in seconds: a minute to a year. */
export const ttlSeconds = z.number().int().min(60).max(366 * 24 * 3600);

/** One applied file: its name (for messages) and its text. */
export const sourceFile = z.strictObject({ name: z.string().min(1).max(1024), content: z.string().max(16 * 1024 * 1024) });
export type SourceFile = z.infer<typeof sourceFile>;

export const sourceFiles = z.array(sourceFile).min(1).max(1000);
