/** The embedded database: PGlite (PostgreSQL compiled to WebAssembly), in a data folder. */
import { mkdirSync } from "node:fs";
import { PGlite } from "@electric-sql/pglite";
import { checkChannel, checkSchemaName, type Database, type Queryable, type Row } from "./engine.js";

export async function openPglite(dataDir: string | undefined, schema: string | undefined): Promise<Database> {
  if (schema !== undefined) checkSchemaName(schema);
  if (dataDir !== undefined) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = await PGlite.create(dataDir);
  if (schema !== undefined) {
    await db.exec(`CREATE SCHEMA IF NOT EXISTS "${schema}"; SET search_path TO "${schema}"`);
  }
  const query = async <T extends Row>(q: Pick<PGlite, "query">, sql: string, params?: readonly unknown[]): Promise<T[]> =>
    (await q.query<T>(sql, params === undefined ? undefined : [...params])).rows;
  return {
    kind: "pglite",
    query: (sql, params) => query(db, sql, params),
    transaction: (work) => db.transaction((tx) => work({ query: (sql, params) => query(tx, sql, params) } satisfies Queryable)),
    async listen(channel, handler) {
      checkChannel(channel);
      const stop = await db.listen(channel, handler);
      return async () => stop();
    },
    async notify(channel, payload) {
      checkChannel(channel);
      await db.query("SELECT pg_notify($1, $2)", [channel, payload]);
    },
    close: () => db.close(),
  };
}
