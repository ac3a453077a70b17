/**
 * Before any change reaches a cluster, what its intents make is checked against the facts
 * the cluster declared (README, "Intents"): a change one registered cluster cannot hold is
 * refused, like a broken lock, with problems naming the cluster, the intent and the field.
 * Clusters without declared facts are not checked. Renderings are kept by effective-set hash
 * and facts, since most changes leave most clusters' sets as they were.
 */
import { canonicalJson } from "../canonical/index.js";
import type { Problem } from "../errors.js";
import { formatIntentProblem, renderCluster, type ClusterFacts } from "../intents/index.js";
import type { EffectivePolicySet } from "../layering/effective.js";

const MEMO_LIMIT = 20_000;
const memo = new Map<string, readonly Problem[]>();

export function factsProblems(affected: readonly { readonly cluster: string; readonly after: EffectivePolicySet }[], factsOf: (cluster: string) => ClusterFacts | undefined): Problem[] {
  const problems: Problem[] = [];
  for (const { cluster, after } of affected) {
    const facts = factsOf(cluster);
    if (facts === undefined) continue;
    const key = `${cluster}\n${after.hash}\n${canonicalJson(facts)}`;
    let found = memo.get(key);
    if (found === undefined) {
      found = renderCluster(cluster, after, facts).problems.map((p) => ({ message: formatIntentProblem(p), path: p.field }));
      if (memo.size >= MEMO_LIMIT) memo.clear();
      memo.set(key, found);
    }
    problems.push(...found);
  }
  return problems;
}
