/**
 * Field schemas the API's request bodies share: names and labels as Kubernetes accepts
 * them, lifetimes, layer files. Each is a zod schema: it validates a body at the hub's
 * boundary, gives the handler its type, and becomes JSON Schema in /openapi.json.
 */
import { z } from "zod";
import { DNS_LABEL_PATTERN, dnsLabelProblems, LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, unshowableProblem } from "../policy/names.js";

/** A DNS-1123 label, as Kubernetes names namespaces (and Polity names clusters and regions). */
export const name = z.string().regex(new RegExp(DNS_LABEL_PATTERN), {
  error: (issue) => (typeof issue.input === "string" ? dnsLabelProblems(issue.input).join("; ") : undefined),
});

/** Kubernetes labels: keys with an optional DNS-subdomain prefix, values of at most 63 characters. */
export const labels = z
  .record(z.string().regex(new RegExp(LABEL_KEY_PATTERN), "is not a valid label key"), z.string().regex(new RegExp(LABEL_VALUE_PATTERN), "is not a valid label value"))
  .refine((value) => Object.keys(value).length <= 64, "at most 64 labels");

/** A name people read (a token's, a file's): no control or bidirectional formatting characters. */
export function displayName(max: number) {
  return z
    .string()
    .min(1)
    .max(max)
    .superRefine((value, context) => {
      const problem = unshowableProblem(value);
      if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
    });
}

/** A lifetime in seconds: a minute to a year. */
export const ttlSeconds = z.number().int().min(60).max(366 * 24 * 3600);

/** One applied file: its name (for messages) and its text. */
export const sourceFile = z.strictObject({
  name: displayName(1024),
  // YAML and JSON hold no NUL, and PostgreSQL cannot store one: refused here, with its place.
  content: z
    .string()
    .max(16 * 1024 * 1024)
    .refine((text) => !text.includes("\u0000"), { message: "must not contain a NUL character (U+0000): it is not YAML or JSON text" }),
});
export type SourceFile = z.infer<typeof sourceFile>;

export const sourceFiles = z.array(sourceFile).min(1).max(1000);

/** How far ahead of the hub's clock an agent's clock may run before its times are taken as the hub's. */
export const AGENT_CLOCK_SKEW_MS = 5 * 60 * 1000;

/**
 * A time an agent reports (when it acted), by its clock: an RFC 3339 time between the years
 * 2000 and 2999, so that nothing the database cannot hold gets past the boundary. The hub
 * orders by when it received a report, and shows this time clamped (`agentTime`).
 */
export const agentTimestamp = z.iso.datetime().refine((value) => {
  const year = new Date(value).getUTCFullYear();
  return year >= 2000 && year <= 2999;
}, "must be a time between the years 2000 and 2999");

/**
 * An agent's time as the hub keeps it: a time more than AGENT_CLOCK_SKEW_MS after the
 * report was received becomes the time it was received. Earlier times stay: an agent whose
 * hub was unreachable sends what it buffered, late.
 */
export function agentTime(at: string, receivedAt: Date): string {
  return Date.parse(at) > receivedAt.getTime() + AGENT_CLOCK_SKEW_MS ? receivedAt.toISOString() : new Date(at).toISOString();
}
