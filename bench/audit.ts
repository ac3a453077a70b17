/**
 * The audit log: appends per second with a signed tree head every second (embedded PGlite,
 * and PostgreSQL when one is reachable), then proofs at 1,000,000 entries: inclusion and
 * consistency proof times (database reads included), verification time, and storage per
 * million entries. The log runs exactly as in the hub: AuditLog.record in transactions,
 * its integrator on its one-second timer.
 */
import { createPublicKey, generateKeyPairSync, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuditEvent } from "../src/audit/entry.js";
import { verifyConsistency, verifyInclusion } from "../src/audit/merkle.js";
import { keyIdOf } from "../src/bundle/index.js";
import { AuditLog, DEFAULT_AUDIT_OPTIONS } from "../src/hub/audit-log.js";
import { openDatabase, type Database } from "../src/store/database.js";
import { migrate } from "../src/store/migrations.js";
import { fmt, median, percentile } from "./fixtures.js";

const APPEND_SECONDS = Number(process.env.POLITY_BENCH_AUDIT_SECONDS ?? 10);
const PROOF_ENTRIES = Number(process.env.POLITY_BENCH_AUDIT_ENTRIES ?? 1_000_000);

function logFor(db: Database): AuditLog {
  const { privateKey } = generateKeyPairSync("ed25519");
  const publicKey = createPublicKey(privateKey);
  return new AuditLog(
    db,
    { keyId: keyIdOf(publicKey), privateKey, publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString() },
    { ...DEFAULT_AUDIT_OPTIONS, origin: "bench/audit", now: () => new Date(), detectEveryMs: 0, maxBacklog: Number.MAX_SAFE_INTEGER },
  );
}

/** What the hub appends most: an agent's batch of denials, a bundle publication. */
function events(n: number, batch: number): AuditEvent[] {
  const correlationId = randomUUID();
  return Array.from({ length: n }, (_, i): AuditEvent =>
    i % 2 === 0
      ? {
          kind: "agent.denials",
          actor: `cluster:eu-west-${batch % 100}`,
          cluster: `eu-west-${batch % 100}`,
          region: "eu-west",
          correlationId,
          data: {
            batch: `b-${batch}`,
            count: 1,
            denials: [
              {
                time: new Date().toISOString(),
                uid: randomUUID(),
                operation: "CREATE",
                kind: "Pod",
                namespace: "payments",
                name: `api-${i}`,
                user: "system:serviceaccount:kube-system:replicaset-controller",
                bundleVersion: 42,
                violations: [{ policy: "pod-security", rule: "privileged", enforcement: "deny" }],
              },
            ],
          },
        }
      : {
          kind: "bundles.published",
          actor: "user:platform-ci",
          cluster: `eu-west-${i % 100}`,
          region: "eu-west",
          correlationId,
          data: { version: batch, envelopeHash: `sha256:${"ab".repeat(32)}`, targetHash: `sha256:${"cd".repeat(32)}`, revocationsHash: `sha256:${"ef".repeat(32)}`, expires: new Date().toISOString() },
        },
  );
}

async function treeSize(db: Database): Promise<number> {
  const [row] = await db.query<{ size: string }>("SELECT size::text AS size FROM audit_tree");
  return Number(row!.size);
}

/** Appends for APPEND_SECONDS in transactions of `batch` entries, with the integrator signing a head every second. */
async function appends(label: string, db: Database, batch: number): Promise<void> {
  await migrate(db);
  const log = logFor(db);
  log.start();
  const start = performance.now();
  let appended = 0;
  let round = 0;
  const latencies: number[] = [];
  while (performance.now() - start < APPEND_SECONDS * 1000) {
    const list = events(batch, round++);
    const t0 = performance.now();
    await db.transaction((tx) => log.record(tx, list));
    latencies.push(performance.now() - t0);
    appended += batch;
    // As in the hub, where each append is a request: other work (the integrator's timer) gets its turn.
    await new Promise((resolve) => setImmediate(resolve));
  }
  const appendWindow = (performance.now() - start) / 1000;
  // Until every entry is under a signed head.
  while ((await treeSize(db)) < appended) await new Promise((resolve) => setTimeout(resolve, 50));
  const total = (performance.now() - start) / 1000;
  await log.stop();
  const [heads] = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM audit_heads");
  latencies.sort((a, b) => a - b);
  console.log(
    `  ${label.padEnd(10)} ${appended.toLocaleString("en")} entries in transactions of ${batch}: ${Math.round(appended / total).toLocaleString("en")} entries/s under signed heads ` +
      `(appended in ${appendWindow.toFixed(1)} s, all integrated after ${total.toFixed(1)} s, ${heads!.n} heads); transaction p50 ${median(latencies).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms`,
  );
}

/** Fills the log with `n` entries by SQL (realistic sizes), then lets the integrator build the tree. */
async function fill(db: Database, log: AuditLog, n: number): Promise<number> {
  const step = 100_000;
  for (let from = 0; from < n; from += step) {
    const to = Math.min(n, from + step) - 1;
    await db.query(
      `INSERT INTO audit_entries (idx, at, kind, actor, cluster, region, correlation_id, entry, leaf_hash)
       SELECT i, now(), 'bundles.published', 'hub', 'cluster-' || (i % 10000), 'region-' || (i % 8), 'c-' || (i / 10000), e,
              sha256('\\x00'::bytea || convert_to(e, 'UTF8'))
       FROM (SELECT i, format('{"actor":"hub","cluster":"cluster-%s","correlationId":"c-%s","data":{"envelopeHash":"sha256:%s","expires":"2026-11-26T06:00:00.000Z","targetHash":"sha256:%s","version":%s},"kind":"bundles.published","region":"region-%s","time":"2026-11-25T06:00:00.000Z","v":1}',
                             i % 10000, i / 10000, md5(i::text) || md5((i + 1)::text), md5((i + 2)::text) || md5((i + 3)::text), i / 10000, i % 8) AS e
             FROM generate_series($1::bigint, $2::bigint) AS i) AS s`,
      [from, to],
    );
  }
  await db.query("UPDATE audit_state SET size = $1", [n]);
  const t0 = performance.now();
  await log.integrate();
  return performance.now() - t0;
}

async function proofs(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "polity-bench-audit-"));
  const db = await openDatabase({ dataDir: dir });
  try {
    await migrate(db);
    const log = logFor(db);
    const t0 = performance.now();
    const integrateMs = await fill(db, log, PROOF_ENTRIES);
    console.log(
      `  ${PROOF_ENTRIES.toLocaleString("en")} entries written by SQL in ${((performance.now() - t0 - integrateMs) / 1000).toFixed(1)} s; the integrator built their tree in ${(integrateMs / 1000).toFixed(1)} s ` +
        `(${Math.round(PROOF_ENTRIES / (integrateMs / 1000)).toLocaleString("en")} leaves/s)`,
    );
    const head = await log.latestHead();
    const n = head.treeSize;
    const random = (max: number) => Math.floor(Math.random() * max);
    const inclusion: number[] = [];
    const verifyIn: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const index = random(n);
      const t = performance.now();
      const proof = await log.inclusionProof(index, n);
      inclusion.push((performance.now() - t) * 1000);
      const leaf = Buffer.from(proof.leafHash, "hex");
      const path = proof.proof.map((h) => Buffer.from(h, "hex"));
      const root = Buffer.from(proof.root, "hex");
      const v = performance.now();
      verifyInclusion(index, n, leaf, path, root);
      verifyIn.push((performance.now() - v) * 1000);
    }
    const consistency: number[] = [];
    const verifyCo: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const size1 = 1 + random(n - 1);
      const t = performance.now();
      const proof = await log.consistencyProof(size1, n);
      consistency.push((performance.now() - t) * 1000);
      const v = performance.now();
      verifyConsistency(size1, n, Buffer.from(proof.root1, "hex"), Buffer.from(proof.root2, "hex"), proof.proof.map((h) => Buffer.from(h, "hex")));
      verifyCo.push((performance.now() - v) * 1000);
    }
    for (const list of [inclusion, verifyIn, consistency, verifyCo]) list.sort((a, b) => a - b);
    const line = (what: string, us: number[]) => `  ${what.padEnd(44)} p50 ${fmt(median(us))} µs   p99 ${fmt(percentile(us, 99))} µs`;
    console.log(line(`inclusion proof at ${n.toLocaleString("en")} (database included)`, inclusion));
    console.log(line(`consistency proof to ${n.toLocaleString("en")} (database included)`, consistency));
    console.log(line("verify an inclusion proof", verifyIn));
    console.log(line("verify a consistency proof", verifyCo));
    const sizes = await db.query<{ name: string; bytes: string }>(
      "SELECT relname AS name, pg_total_relation_size(oid)::text AS bytes FROM pg_class WHERE relname IN ('audit_entries', 'audit_tiles', 'audit_heads') ORDER BY relname",
    );
    const [avg] = await db.query<{ bytes: string }>("SELECT avg(octet_length(entry))::int::text AS bytes FROM audit_entries");
    const perMillion = (bytes: string) => `${((Number(bytes) / n) * 1e6 / 2 ** 20).toFixed(0)} MiB`;
    console.log(`  storage per million entries (entries of ${avg!.bytes} bytes on average): ${sizes.map((s) => `${s.name} ${perMillion(s.bytes)}`).join(", ")} (indexes included)`);
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchAudit(): Promise<void> {
  console.log("\nAudit log: appends with a signed tree head every second, then proofs at scale");
  const dir = mkdtempSync(join(tmpdir(), "polity-bench-audit-"));
  try {
    for (const batch of [1000, 100]) {
      const db = await openDatabase({ dataDir: join(dir, `pglite-${batch}`) });
      try {
        await appends("PGlite", db, batch);
      } finally {
        await db.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const url = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  let pg: Database | undefined;
  const schema = `polity_bench_${randomUUID().replace(/-/g, "").slice(0, 8)}`;
  try {
    pg = await openDatabase({ url, schema });
    await pg.query("SELECT 1");
  } catch (error) {
    console.log(`  PostgreSQL  skipped: ${url.replace(/:[^:@/]*@/, ":***@")} is not reachable (${(error as Error).message})`);
    pg = undefined;
  }
  if (pg !== undefined) {
    try {
      for (const batch of [1000, 100]) {
        await pg.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await pg.query(`CREATE SCHEMA "${schema}"`);
        await appends("PostgreSQL", pg, batch);
      }
    } finally {
      await pg.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
      await pg.close();
    }
  }
  await proofs();
}
