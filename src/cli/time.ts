/** Times on the command line: RFC 3339, or now. */
import { UsageError } from "./io.js";

export function parseTime(value: string | undefined, flag: string): number {
  if (value === undefined) return Date.now();
  const ms = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) throw new UsageError(`${flag} must be an RFC 3339 time such as 2026-12-31T00:00:00Z, got ${JSON.stringify(value)}`);
  return ms;
}

/** `90s`, `30m`, `24h`, `7d` → milliseconds. */
export function parseDuration(value: string, flag: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(value.trim());
  if (m === null) throw new UsageError(`${flag} must be a duration such as 90s, 30m, 24h or 7d, got ${JSON.stringify(value)}`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
}
