/** A PostgreSQL server, through node-postgres (`pg`) and a connection pool. */
import pg from "pg";
import { checkChannel, checkSchemaName, type Database, type Row } from "./engine.js";

export async function openPostgres(url: string, schema: string | undefined): Promise<Database> {
  if (schema !== undefined) checkSchemaName(schema);
  const setup = schema === undefined ? undefined : `CREATE SCHEMA IF NOT EXISTS "${schema}"`;
  const pool = new pg.Pool({
    connectionString: url,
    max: 10,
    ...(schema === undefined ? {} : { options: `-c search_path="${schema}"` }),
  });
  // An idle client's error (the server restarting) must not crash the hub: the pool replaces it.
  pool.on("error", () => undefined);
  if (setup !== undefined) {
    try {
      await pool.query(setup);
    } catch (error) {
      // Another process created the schema at the same moment: it exists, which is all we asked.
      const code = (error as { code?: string }).code;
      if (code !== "23505" && code !== "42P06") {
        await pool.end().catch(() => undefined);
        throw error;
      }
    }
  }
  const listeners = new Set<pg.PoolClient>();
  return {
    kind: "postgres",
    async query<T extends Row>(sql: string, params?: readonly unknown[]) {
      return (await pool.query<T>(sql, params === undefined ? undefined : [...params])).rows;
    },
    async transaction(work) {
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        const result = await work({ query: async (sql, params) => (await client.query(sql, params === undefined ? undefined : [...params])).rows });
        await client.query("COMMIT");
        return result;
      } catch (error) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw error;
      } finally {
        client.release();
      }
    },
    async listen(channel, handler) {
      checkChannel(channel);
      const client = await pool.connect();
      client.on("notification", (message) => {
        if (message.channel === channel) handler(message.payload ?? "");
      });
      await client.query(`LISTEN ${channel}`);
      listeners.add(client);
      return async () => {
        if (!listeners.delete(client)) return;
        await client.query(`UNLISTEN ${channel}`).catch(() => undefined);
        client.release();
      };
    },
    async notify(channel, payload) {
      checkChannel(channel);
      await pool.query("SELECT pg_notify($1, $2)", [channel, payload]);
    },
    async close() {
      for (const client of listeners) client.release();
      listeners.clear();
      await pool.end();
    },
  };
}
