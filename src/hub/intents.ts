/**
 * Before any change reaches a cluster, what its intents make is checked against the
 * cluster's facts (README, "Intents"): a change one registered cluster cannot hold is
 * refused, like a broken lock, with problems naming the cluster, the intent and the field.
 * Clusters without facts are not checked. A problem the cluster already had before the
 * change (its reported facts moved under intents it holds: a zone gone, capacity lost) does
 * not refuse the change: reality cannot be refused, it is shown in `polity cluster status`.
 *
 * Renderings are kept by cluster, effective-set hash and facts, since most changes leave
 * most clusters' sets as they were; the same renderings give the hash of the manifests a
 * cluster's bundle names (`manifestsHash`), which its agent checks its own rendering against.
 */
import { canonicalJson } from "../canonical/index.js";
import type { Problem } from "../errors.js";
import { formatIntentProblem, renderCluster, type ClusterFacts } from "../intents/index.js";
import type { EffectivePolicySet } from "../layering/effective.js";

const MEMO_LIMIT = 20_000;
const memo = new Map<string, { readonly problems: readonly Problem[]; readonly hash: string }>();

function rendered(cluster: string, set: EffectivePolicySet, facts: ClusterFacts): { readonly problems: readonly Problem[]; readonly hash: string } {
  const key = `${cluster}\n${set.hash}\n${canonicalJson(facts)}`;
  let found = memo.get(key);
  if (found === undefined) {
    const rendering = renderCluster(cluster, set, facts);
    found = { problems: rendering.problems.map((p) => ({ message: formatIntentProblem(p), path: p.field })), hash: rendering.hash };
    if (memo.size >= MEMO_LIMIT) memo.clear();
    memo.set(key, found);
  }
  return found;
}

/** The hash of the manifests a cluster's intents make under these facts (what its bundle names). */
export function manifestsHash(cluster: string, set: EffectivePolicySet, facts: ClusterFacts): string {
  return rendered(cluster, set, facts).hash;
}

/** What a cluster's facts cannot hold of its set, as messages. */
export function intentProblems(cluster: string, set: EffectivePolicySet, facts: ClusterFacts): readonly Problem[] {
  return rendered(cluster, set, facts).problems;
}

/**
 * The problems a change brings: those of each affected cluster's set after it, less those
 * its set before the change already had under the same facts (`before`, when it has one).
 */
export function factsProblems(
  affected: readonly { readonly cluster: string; readonly after: EffectivePolicySet }[],
  factsOf: (cluster: string) => ClusterFacts | undefined,
  before: (cluster: string) => EffectivePolicySet | undefined = () => undefined,
): Problem[] {
  const problems: Problem[] = [];
  for (const { cluster, after } of affected) {
    const facts = factsOf(cluster);
    if (facts === undefined) continue;
    const found = rendered(cluster, after, facts).problems;
    if (found.length === 0) continue;
    const set = before(cluster);
    const had = new Set(set === undefined ? [] : rendered(cluster, set, facts).problems.map((p) => p.message));
    problems.push(...found.filter((p) => !had.has(p.message)));
  }
  return problems;
}
