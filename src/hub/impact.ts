/**
 * The impact of a change, asked of the agents: the candidate effective set of each cluster a
 * change reaches is written for its agent (`impact_requests`, which this module owns), which
 * fetches it on its own long poll, evaluates its window of recorded requests against the set
 * it enforces and the candidate, and answers with counts. Only an agent that was sent a
 * request may answer it, once. The one who asked waits a bounded time and hears which
 * clusters did not answer. Requests expire with that wait; answered ones are kept an hour.
 */
import { randomBytes } from "node:crypto";
import type { ClusterImpact, ImpactAnswer, ImpactRequest } from "../api/impact.js";
import type { EffectivePolicySet } from "../layering/effective.js";
import type { Database } from "../store/database.js";
import { conflict, notFound } from "./status.js";

export class Impacts {
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(
    private readonly db: Database,
    private readonly now: () => Date,
  ) {}

  /** Asks the agents of these clusters for the impact of their candidate sets; waits at most `timeoutMs` for the answers. */
  async ask(items: readonly { cluster: string; set: EffectivePolicySet }[], timeoutMs: number, signal?: AbortSignal): Promise<ClusterImpact[]> {
    const created = this.now();
    await this.db.query("DELETE FROM impact_requests WHERE expires_at < $1", [new Date(created.getTime() - 3600_000)]);
    const ids = new Map(items.map((i) => [i.cluster, randomBytes(8).toString("hex")]));
    for (let k = 0; k < items.length; k += 200) {
      const params: unknown[] = [];
      const values = items.slice(k, k + 200).map((item) => {
        params.push(ids.get(item.cluster), item.cluster, item.set.bytes.toString("utf8"), item.set.hash, created, new Date(created.getTime() + timeoutMs));
        const n = params.length;
        return `($${n - 5}, $${n - 4}, $${n - 3}, $${n - 2}, $${n - 1}, $${n})`;
      });
      if (values.length > 0) await this.db.query(`INSERT INTO impact_requests (id, cluster, candidate, candidate_hash, created_at, expires_at) VALUES ${values.join(", ")}`, params);
    }
    for (const item of items) this.wake(item.cluster);
    const answers = new Map<string, ImpactAnswer>();
    const deadline = Date.now() + timeoutMs;
    while (answers.size < items.length && Date.now() < deadline && signal?.aborted !== true) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const rows = await this.db.query<{ cluster: string; answer: ImpactAnswer }>("SELECT cluster, answer FROM impact_requests WHERE id = ANY($1) AND answered_at IS NOT NULL", [[...ids.values()]]);
      for (const row of rows) answers.set(row.cluster, row.answer);
    }
    return items.map((i) => ({ cluster: i.cluster, impact: answers.get(i.cluster) ?? null }));
  }

  /** The next request for a cluster's agent (marked sent), waiting at most `waitMs` for one. */
  async next(cluster: string, waitMs: number, signal: AbortSignal): Promise<ImpactRequest | undefined> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const [row] = await this.db.query<{ id: string; candidate: string; candidate_hash: string }>(
        `UPDATE impact_requests SET sent_at = $2 WHERE id = (
           SELECT id FROM impact_requests WHERE cluster = $1 AND sent_at IS NULL AND expires_at > $2 ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED
         ) RETURNING id, candidate, candidate_hash`,
        [cluster, this.now()],
      );
      if (row !== undefined) return { id: row.id, candidate: Buffer.from(row.candidate, "utf8").toString("base64"), candidateHash: row.candidate_hash };
      const left = deadline - Date.now();
      if (left <= 0 || signal.aborted) return undefined;
      // Woken by a request made through this hub; another hub's is found within 2 s.
      await new Promise<void>((resolve) => {
        let set = this.waiters.get(cluster);
        if (set === undefined) this.waiters.set(cluster, (set = new Set()));
        const done = () => {
          clearTimeout(timer);
          set!.delete(done);
          signal.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 2_000));
        signal.addEventListener("abort", done, { once: true });
        set.add(done);
      });
    }
  }

  /** An agent's answer: only to a request sent to its cluster, once. */
  async answer(cluster: string, id: string, answer: ImpactAnswer): Promise<void> {
    const updated = await this.db.query("UPDATE impact_requests SET answer = $3, answered_at = $4 WHERE id = $1 AND cluster = $2 AND sent_at IS NOT NULL AND answered_at IS NULL RETURNING id", [
      id,
      cluster,
      JSON.stringify(answer),
      this.now(),
    ]);
    if (updated.length > 0) return;
    const [row] = await this.db.query<{ cluster: string; answered_at: Date | null }>("SELECT cluster, answered_at FROM impact_requests WHERE id = $1", [id]);
    if (row === undefined || row.cluster !== cluster) throw notFound(`no impact request ${id} was sent to cluster ${cluster}`);
    if (row.answered_at !== null) throw conflict(`impact request ${id} was answered already`);
    throw notFound(`impact request ${id} was not sent to cluster ${cluster} yet`);
  }

  private wake(cluster: string): void {
    for (const waiter of [...(this.waiters.get(cluster) ?? [])]) waiter();
  }
}
