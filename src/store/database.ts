/**
 * The hub's database: PostgreSQL, embedded (PGlite, one process, one folder) by default,
 * or a PostgreSQL server. Both speak the same SQL through one small interface (engine.ts),
 * which the rest of Polity imports from here.
 */
import type { Database } from "./engine.js";

export type { Database, Queryable, Row } from "./engine.js";

export interface DatabaseOptions {
  /** `postgres://…`: a PostgreSQL server. Absent: PGlite in `dataDir`. */
  readonly url?: string;
  /** Folder of the embedded database (created if missing); absent: in memory. */
  readonly dataDir?: string;
  /** PostgreSQL schema to use (created if missing); tests use one each. */
  readonly schema?: string;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.url !== undefined && options.url !== "") {
    const { openPostgres } = await import("./postgres.js");
    return openPostgres(options.url, options.schema);
  }
  const { openPglite } = await import("./pglite.js");
  return openPglite(options.dataDir, options.schema);
}

/** Where the URL points, without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== "") u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable database URL)";
  }
}
