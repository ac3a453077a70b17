/**
 * How entries reach the database: `appendEntries` sends each chunk as one JSON document,
 * so every string must come back exactly as the entry's bytes say, on both engines
 * (PGlite always; PostgreSQL when DATABASE_URL is set, in a schema of its own).
 */
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { leafHash } from "../audit/merkle.js";
import { encodeEntry, type AuditEvent } from "../audit/entry.js";
import { openDatabase, type Database } from "../store/database.js";
import { migrate } from "../store/migrations.js";
import { appendEntries } from "./audit-log.js";

const DATABASE_URL = process.env.DATABASE_URL === "" ? undefined : process.env.DATABASE_URL;
const schemas: string[] = [];

afterAll(async () => {
  if (DATABASE_URL === undefined || schemas.length === 0) return;
  const admin = await openDatabase({ url: DATABASE_URL });
  for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.close();
});

const awkward: AuditEvent[] = [
  { kind: "layer.changed", actor: "user:ops \"quoted\" \\ back", cluster: null, region: "eu-west", correlationId: "c-1", data: { note: "tab\there, new\nline, 'single', ünïcödé, 🚀, \u2028" } },
  { kind: "agent.denials", actor: "cluster:prod-1", cluster: "prod-1", region: null, correlationId: "c-2", data: { message: "a lone surrogate \ud800 and a NUL-free string", n: 3 } },
  { kind: "enrolment.failed", actor: "anonymous \udc00", cluster: "prod-\ud83d", region: "ap-south", correlationId: "c-3\ud800", data: {} },
];

const engines: [string, () => Promise<Database>][] = [["PGlite", () => openDatabase({})]];
if (DATABASE_URL !== undefined) {
  engines.push([
    "PostgreSQL",
    () => {
      const schema = `polity_test_${randomBytes(6).toString("hex")}`;
      schemas.push(schema);
      return openDatabase({ url: DATABASE_URL, schema });
    },
  ]);
}

describe.each(engines)("appendEntries on %s", (_engine, open) => {
  it("stores each entry's canonical bytes and leaf hash, dense from 0, with its columns as the entry says (lone surrogates as U+FFFD)", async () => {
    const db = await open();
    try {
      await migrate(db);
      const now = new Date("2026-11-25T08:00:00.123Z");
      await db.transaction((tx) => appendEntries(tx, awkward, now));
      await db.transaction((tx) => appendEntries(tx, awkward.slice(0, 1), now));
      const rows = await db.query<{ idx: string; at: Date; kind: string; actor: string; cluster: string | null; region: string | null; correlation_id: string; entry: string; leaf: string }>(
        "SELECT idx::text AS idx, at, kind, actor, cluster, region, correlation_id, entry, encode(leaf_hash, 'hex') AS leaf FROM audit_entries ORDER BY idx",
      );
      expect(rows.map((row) => row.idx)).toEqual(["0", "1", "2", "3"]);
      [...awkward, awkward[0]!].forEach((event, i) => {
        const row = rows[i]!;
        const encoded = encodeEntry(event, now);
        expect(row.entry).toBe(encoded.bytes);
        expect(row.leaf).toBe(encoded.leafHash.toString("hex"));
        expect(row.leaf).toBe(leafHash(Buffer.from(row.entry, "utf8")).toString("hex"));
        expect(new Date(row.at).toISOString()).toBe(now.toISOString());
        expect({ kind: row.kind, actor: row.actor, cluster: row.cluster, region: row.region, correlationId: row.correlation_id }).toEqual({
          kind: event.kind,
          actor: event.actor.toWellFormed(),
          cluster: event.cluster?.toWellFormed() ?? null,
          region: event.region?.toWellFormed() ?? null,
          correlationId: event.correlationId.toWellFormed(),
        });
      });
    } finally {
      await db.close();
    }
  });
});
