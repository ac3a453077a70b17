/**
 * The hub's database: PostgreSQL, embedded (PGlite, one process, one folder) by default,
 * or a PostgreSQL server. Both speak the same SQL through this one small interface.
 */

export type Row = Record<string, unknown>;

export interface Queryable {
  /** Runs one parameterised statement ($1, $2, …) and returns its rows. */
  query<T extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<T[]>;
}

export interface Database extends Queryable {
  /** Which engine, for messages: "pglite" or "postgres". */
  readonly kind: "pglite" | "postgres";
  /** Runs `work` in one transaction: committed if it returns, rolled back if it throws. */
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Calls `handler` whenever another process (or this one) notifies `channel`. PostgreSQL
   * delivers across processes; PGlite has one process. Returns a function that stops.
   */
  listen(channel: string, handler: (payload: string) => void): Promise<() => Promise<void>>;
  notify(channel: string, payload: string): Promise<void>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** `postgres://…`: a PostgreSQL server. Absent: PGlite in `dataDir`. */
  readonly url?: string;
  /** Folder of the embedded database (created if missing); absent: in memory. */
  readonly dataDir?: string;
  /** PostgreSQL schema to use (created if missing); tests use one each. */
  readonly schema?: string;
}

/** Notification channels are plain lowercase identifiers: the same on both engines, never SQL. */
export function checkChannel(channel: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) throw new Error(`invalid notification channel ${JSON.stringify(channel)}: use lowercase letters, digits and _`);
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
