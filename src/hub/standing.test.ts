/**
 * How the standing checks are gathered into queries (src/hub/standing.ts): a quiet hub's
 * check starts its query at once; checks that keep arriving, a few per turn of the event
 * loop, as the re-polls after a woken fleet do, share a query across turns. Every check is
 * still answered by a query started after it was asked. A database that answers at once, as
 * PGlite does, and counts its queries; test/standing.test.ts judges real certificates.
 */
import { describe, expect, it } from "vitest";
import type { Database, Row } from "../store/database.js";
import { StandingReader, type PresentedCertificate } from "./standing.js";

/** Answers every asked certificate as issued and in good standing, and records what each query asked. */
function countingDatabase(): { db: Database; queries: string[][] } {
  const queries: string[][] = [];
  const db = {
    kind: "pglite",
    async query<T extends Row>(_sql: string, params?: readonly unknown[]): Promise<T[]> {
      const [serials, regions] = params as [string[], string[]];
      queries.push(serials);
      return serials.map((serial, i) => ({
        serial,
        region: regions[i],
        cert_cluster: `c-${serial}`,
        public_key_sha256: `k-${serial}`,
        cert_revoked: null,
        cluster_revoked: null,
        registered: `c-${serial}`,
        generation: "7",
        region_hub: false,
      })) as unknown as T[];
    },
  } as unknown as Database;
  return { db, queries };
}

const peer = (serial: string): PresentedCertificate => ({ cluster: `c-${serial}`, region: "eu-west", serial, publicKeySha256: `k-${serial}` });
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe("standing checks gathered into queries", () => {
  it("starts a quiet hub's check at once, in the next turn of the event loop", async () => {
    const { db, queries } = countingDatabase();
    const reader = new StandingReader(db);
    const asked = performance.now();
    expect(await reader.check(peer("a"))).toEqual({ generation: "7", regionHasHub: false });
    expect(queries).toEqual([["a"]]);
    expect(performance.now() - asked).toBeLessThan(4);
  });

  it("gathers the checks of several turns into one query while checks keep coming", async () => {
    const { db, queries } = countingDatabase();
    const reader = new StandingReader(db);
    await reader.check(peer("first"));
    // Two checks a turn for ten turns, right after a query: as the re-polls of a woken fleet arrive.
    const answers: Promise<unknown>[] = [];
    for (let turn = 0; turn < 10; turn++) {
      answers.push(reader.check(peer(`t${turn}-a`)), reader.check(peer(`t${turn}-b`)));
      await nextTurn();
    }
    await Promise.all(answers);
    expect(queries.flat()).toHaveLength(21);
    expect(queries.length).toBeLessThan(6);
  });

  it("refuses a certificate the query does not know, in a gathered batch, and answers the others", async () => {
    const { db } = countingDatabase();
    const reader = new StandingReader(db);
    await reader.check(peer("warm"));
    const good = reader.check(peer("good"));
    const forged = reader.check({ ...peer("forged"), publicKeySha256: "another key" });
    await expect(forged).rejects.toThrow(/not issued by this federation's hubs/);
    await expect(good).resolves.toEqual({ generation: "7", regionHasHub: false });
  });
});
