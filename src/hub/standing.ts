/**
 * Certificates' standing, read from the database on every request (a revocation through any
 * hub process applies at once everywhere), in batches: the checks that arrive while one
 * query runs are read together by the next, one query for all of them. A long poll parked
 * by every agent and woken by one change brings thousands of requests at once; one query
 * each made the database the hub's slowest part (README, Performance). A batch starts after
 * the event loop's current I/O phase, so the requests read in it share one query. Nothing is cached:
 * every check is answered by a query that started after the check was asked.
 */
import type { Database } from "../store/database.js";
import { unauthorized } from "./status.js";
import { timings } from "./timings.js";

/** What a presented cluster certificate is checked by (see PeerCertificate). */
export interface PresentedCertificate {
  readonly cluster: string;
  readonly region: string;
  readonly serial: string;
  readonly publicKeySha256: string;
}

/** A certificate's standing, as `check` reads it. */
export interface Standing {
  /** The federation's generation (undefined before the first start). */
  readonly generation?: string;
  /** Whether the cluster's region has a regional hub (not revoked): its bundles are that hub's. */
  readonly regionHasHub: boolean;
}

type Row = {
  serial: string;
  region: string;
  cert_cluster: string | null;
  public_key_sha256: string | null;
  cert_revoked: Date | null;
  cluster_revoked: Date | null;
  registered: string | null;
  generation: string | null;
  region_hub: boolean;
};

interface Pending {
  readonly peer: PresentedCertificate;
  readonly resolve: (standing: Standing) => void;
  readonly reject: (error: unknown) => void;
}

/** At most this many certificates per query. */
const BATCH = 2000;
/**
 * A batch asked for within BUSY_MS of the last one's end waits this long for company. A
 * query costs about half a millisecond before its first row here (PGlite); while a hub answers
 * a woken fleet, the re-polls come back a few per turn of the event loop, so batches taken per
 * turn held a few checks each and the fixed cost made most of the time (README, Performance).
 * A quiet hub (no batch in the last BUSY_MS) starts at once.
 */
const GATHER_MS = 5;
const BUSY_MS = 50;

export class StandingReader {
  private pending: Pending[] = [];
  private reading = false;
  private lastEnded = Number.NEGATIVE_INFINITY;

  constructor(private readonly db: Database) {}

  /** The certificate's standing; refused (401) when it was not issued here, or its cluster is gone or revoked. */
  check(peer: PresentedCertificate): Promise<Standing> {
    return new Promise((resolve, reject) => {
      this.pending.push({ peer, resolve, reject });
      // Started after the event loop's current I/O phase: the requests it read join this batch
      // (PGlite answers synchronously: none would arrive while its query runs); when busy, a
      // few milliseconds later, so that the requests of the next turns join too.
      if (!this.reading) {
        this.reading = true;
        if (performance.now() - this.lastEnded < BUSY_MS) setTimeout(() => void this.drain(), GATHER_MS);
        else setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, BATCH);
        let rows: Row[];
        try {
          const start = performance.now();
          rows = await this.read(batch);
          timings.add("standing.read", performance.now() - start);
        } catch (error) {
          for (const p of batch) p.reject(error);
          continue;
        }
        const bySerial = new Map(rows.map((r) => [`${r.serial}\n${r.region}`, r]));
        for (const p of batch) {
          try {
            p.resolve(judge(p.peer, bySerial.get(`${p.peer.serial}\n${p.peer.region}`)));
          } catch (error) {
            p.reject(error);
          }
        }
      }
    } finally {
      this.reading = false;
      this.lastEnded = performance.now();
    }
  }

  private read(batch: readonly Pending[]): Promise<Row[]> {
    const serials = [...new Set(batch.map((p) => `${p.peer.serial}\n${p.peer.region}`))].map((key) => key.split("\n") as [string, string]);
    return this.db.query<Row>(
      `SELECT q.serial, q.region, cert.cluster AS cert_cluster, cert.public_key_sha256, cert.revoked_at AS cert_revoked, c.revoked_at AS cluster_revoked, c.name AS registered,
              (SELECT generation::text FROM federation) AS generation,
              EXISTS (SELECT 1 FROM regional_hubs h WHERE h.region = q.region AND h.revoked_at IS NULL) AS region_hub
       FROM unnest($1::text[], $2::text[]) AS q (serial, region)
       LEFT JOIN certificates cert ON cert.serial = q.serial
       LEFT JOIN clusters c ON c.name = cert.cluster`,
      [serials.map(([serial]) => serial), serials.map(([, region]) => region)],
    );
  }
}

function judge(peer: PresentedCertificate, row: Row | undefined): Standing {
  if (row === undefined || row.cert_cluster === null || row.public_key_sha256 !== peer.publicKeySha256 || row.cert_cluster !== peer.cluster) {
    throw unauthorized("this certificate was not issued by this federation's hubs");
  }
  if (row.registered === null) throw unauthorized(`cluster ${peer.cluster} is no longer registered`);
  if (row.cert_revoked !== null || row.cluster_revoked !== null) throw unauthorized(`cluster ${peer.cluster}'s identity is revoked`);
  return { generation: row.generation ?? undefined, regionHasHub: row.region_hub };
}
