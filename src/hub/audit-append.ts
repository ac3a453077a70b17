/**
 * The one way audit entries are written: appended in the caller's transaction (the log's
 * storage and integration are audit-log.ts's).
 */
import { encodeEntry, type AuditEvent } from "../audit/entry.js";
import type { Queryable } from "../store/database.js";
import { bytea } from "./audit-tiles.js";

const INSERT_CHUNK = 1000;

/**
 * Appends entries in the caller's transaction: the one way entries are written. Call it
 * last in a transaction: it locks the log's index row until commit, and every writer
 * takes its locks in the same order.
 */
export async function appendEntries(tx: Queryable, events: readonly AuditEvent[], now: Date): Promise<void> {
  if (events.length === 0) return;
  const [row] = await tx.query<{ first: string }>("UPDATE audit_state SET size = size + $1 RETURNING (size - $1)::text AS first", [events.length]);
  const first = Number(row!.first);
  const at = now.toISOString();
  for (let i = 0; i < events.length; i += INSERT_CHUNK) {
    // One JSON parameter per chunk, not nine per row: PostgreSQL (and PGlite above all)
    // parses one document far faster than thousands of bound parameters.
    const rows = events.slice(i, i + INSERT_CHUNK).map((event, j) => {
      const encoded = encodeEntry(event, now);
      return {
        i: first + i + j,
        k: wellFormed(event.kind),
        a: wellFormed(event.actor),
        c: event.cluster === null ? null : wellFormed(event.cluster),
        r: event.region === null ? null : wellFormed(event.region),
        x: wellFormed(event.correlationId),
        e: encoded.bytes,
        h: bytea(encoded.leafHash),
      };
    });
    await tx.query(
      `INSERT INTO audit_entries (idx, at, kind, actor, cluster, region, correlation_id, entry, leaf_hash)
       SELECT i, $2::timestamptz, k, a, c, r, x, e, decode(h, 'hex')
       FROM json_to_recordset($1::json) AS j (i bigint, k text, a text, c text, r text, x text, e text, h text)`,
      [JSON.stringify(rows), at],
    );
  }
}

/**
 * A string PostgreSQL can parse back out of JSON: a lone UTF-16 surrogate becomes U+FFFD,
 * as it does when the string is sent as UTF-8 (and in the entry's bytes).
 */
const wellFormed = (s: string): string => s.toWellFormed();
