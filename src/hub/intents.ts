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
import { POLICY_LABEL } from "../intents/translate.js";
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

/**
 * Why reported facts must not be signed (README, "Applying"): each object the cluster's
 * manifests hold under its last good facts (`current`) that the reported ones (`candidate`)
 * would leave out, since the agent would then delete it (a residency rule, the
 * ValidatingAdmissionPolicies below Kubernetes 1.30), and each problem they bring that the
 * last good facts did not have. Empty: they may be signed. Any lost object counts, not only
 * those of deny or locked intents: facts cannot ask for less enforcement, an operator can.
 */
export function withheldProblems(cluster: string, set: EffectivePolicySet, current: ClusterFacts | undefined, candidate: ClusterFacts): string[] {
  const id = (m: { apiVersion: string; kind: string; metadata: { namespace?: string; name: string } }) => `${m.kind} ${m.metadata.namespace === undefined ? "" : `${m.metadata.namespace}/`}${m.metadata.name}`;
  const after = renderCluster(cluster, set, candidate);
  const had = new Set(current === undefined ? [] : rendered(cluster, set, current).problems.map((p) => p.message));
  const kept = new Set(after.document.manifests.map(id));
  const lost = current === undefined ? [] : renderCluster(cluster, set, current).document.manifests.filter((m) => !kept.has(id(m)));
  return [
    ...lost.map((m) => `reported facts not signed: ${id(m)} of intent ${JSON.stringify(m.metadata.labels[POLICY_LABEL] ?? "(polity)")} would be removed`),
    ...rendered(cluster, set, candidate).problems.filter((p) => !had.has(p.message)).map((p) => `reported facts not signed: ${p.message}`),
  ];
}
