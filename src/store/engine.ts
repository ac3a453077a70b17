/**
 * What each database engine (pglite.ts, postgres.ts) implements, and the identifier rules
 * both share. Its own file so that the engines depend on it and not on database.ts, which
 * loads them: the interface and the loader would otherwise import each other.
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

/** Notification channels are plain lowercase identifiers: the same on both engines, never SQL. */
export function checkChannel(channel: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) throw new Error(`invalid notification channel ${JSON.stringify(channel)}: use lowercase letters, digits and _`);
}

/** Schema names are written into SQL (`SET search_path`), so only plain identifiers pass. */
export function checkSchemaName(schema: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`invalid schema name ${JSON.stringify(schema)}`);
}
