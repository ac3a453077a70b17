/**
 * The impact of a change over an agent's window of 100,000 recorded AdmissionReviews (the
 * window's bound): the time to decide every recorded request under the current and the
 * candidate sets and count the differences, reading and decrypting the window included, and
 * the memory it takes. In this process, as the agent's impact loop does it (without its
 * yields to the webhook).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AdmissionWindow } from "../src/agent/window.js";
import { ImpactCounter } from "../src/decision/impact.js";
import { effectivePolicySet } from "../src/layering/effective.js";
import { layersFromFiles } from "../src/policy/layer-files.js";

const EXAMPLES = fileURLToPath(new URL("../../examples/", import.meta.url));
const file = (path: string, name = path.split("/").pop()!) => ({ name, content: readFileSync(join(EXAMPLES, path), "utf8") });

export async function benchImpact(): Promise<Record<string, number>> {
  const N = Number(process.env.POLITY_BENCH_IMPACT_REQUESTS ?? "100000");
  const dir = mkdtempSync(join(tmpdir(), "polity-bench-impact-"));
  try {
    const cluster = { name: "eu-west-1", region: "eu-west", labels: { env: "prod", residency: "eu" } };
    const set = (global: { name: string; content: string }) =>
      effectivePolicySet(
        layersFromFiles([global, file("layers/region-eu-west.yaml"), file("layers/cluster-eu-west-1.yaml")]).map((l) => l.layer),
        cluster,
      );
    const current = set(file("layers/global.yaml"));
    const candidate = set(file("changes/deny-unowned-pods.yaml", "global.yaml"));
    const compliant = JSON.parse(readFileSync(join(EXAMPLES, "reviews/compliant-pod.json"), "utf8")) as { request: { uid: string; name: string; object: { metadata: { name: string } } } };
    const window = new AdmissionWindow(join(dir, "window"), { maxRequests: N, maxAgeMs: 24 * 3600 * 1000, maxReviewBytes: 256 * 1024 });
    const now = Date.now();
    let start = performance.now();
    for (let i = 0; i < N; i++) {
      compliant.request.uid = `00000000-0000-0000-0000-${String(i).padStart(12, "0")}`;
      compliant.request.name = compliant.request.object.metadata.name = `checkout-${i % 500}`;
      window.record(Buffer.from(JSON.stringify(compliant)), now - (N - i));
      if ((i + 1) % 10_000 === 0) window.flush(now);
    }
    window.flush(now);
    const recordMs = performance.now() - start;
    (globalThis as { gc?: () => void }).gc?.();
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const counter = new ImpactCounter(current, candidate, now);
    start = performance.now();
    let n = 0;
    for (const review of window.reviews(now)) {
      counter.add(review);
      if (++n % 5_000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
    }
    const impactMs = performance.now() - start;
    peak = Math.max(peak, process.memoryUsage().rss);
    const i = counter.impact;
    console.log(`\nImpact of a change over an agent's window (in this process; the candidate denies pods without an owner label)`);
    console.log(`  ${N} requests recorded and encrypted in ${(recordMs / 1000).toFixed(1)} s (${((recordMs * 1000) / N).toFixed(1)} µs each)`);
    console.log(`  impact over them: ${i.requests} decided twice, ${i.newlyDenied} newly denied, in ${(impactMs / 1000).toFixed(2)} s (target: < 5 s); RSS grew ${((peak - rssBefore) / 1048576).toFixed(0)} MiB at most`);
    return { impactSeconds: impactMs / 1000, impactRssGrowthMiB: (peak - rssBefore) / 1048576, recordMicros: (recordMs * 1000) / N };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
