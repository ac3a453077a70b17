/**
 * A full background scan of 10,000 pods and 1,000 Deployments across 200 namespaces,
 * against the example global layer (Pod Security restricted, team label, trusted images,
 * max replicas): (a) the pure part, judging every object and tallying bounded reports and
 * the compliance summary; (b) the agent's scanner against the test API server over HTTPS on
 * loopback (list in pages of 500, judge, write 200 PolicyReports by server-side apply).
 * Time (median of 3 runs for (a)) and memory: the heap the results hold, and the process's
 * peak resident size.
 */
import { readFileSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Scanner } from "../src/agent/scan/scanner.js";
import { reportObject } from "../src/decision/policy-report.js";
import { judgeExisting, ScanTally } from "../src/decision/scan.js";
import { loadKubeAccess, NamespaceCache } from "../src/kube/index.js";
import { effectivePolicySet } from "../src/layering/effective.js";
import { layersFromFiles } from "../src/policy/layer-files.js";
import { TestApiServer } from "../test/support/kube/api-server.js";
import { median } from "./fixtures.js";

const NAMESPACES = 200;
const PODS = 10_000;
const DEPLOYMENTS = 1_000;

const gc = () => (globalThis as { gc?: () => void }).gc?.();
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;

function exampleSet() {
  const file = fileURLToPath(new URL("../../examples/layers/global.yaml", import.meta.url));
  const [global] = layersFromFiles([{ name: "global.yaml", content: readFileSync(file, "utf8") }]);
  return effectivePolicySet([global!.layer], { name: "eu-west-1", region: "eu-west", labels: { env: "prod" } });
}

/** A pod as the API server lists it; one in five breaks the layer (root, latest image, no team label). */
function pod(i: number): Record<string, unknown> {
  const ns = `ns-${i % NAMESPACES}`;
  const bad = i % 5 === 0;
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: `pod-${i}`, namespace: ns, uid: `00000000-0000-0000-0000-${String(i).padStart(12, "0")}`, labels: bad ? { app: "x" } : { app: "x", team: "payments" }, resourceVersion: String(i + 10) },
    spec: {
      securityContext: bad ? {} : { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
      containers: [
        {
          name: "app",
          image: bad ? "docker.io/library/nginx:latest" : "registry.example.com/app:1.2.3",
          ports: [{ containerPort: 8080, protocol: "TCP" }],
          resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "256Mi" } },
          securityContext: bad ? { privileged: true } : { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
        },
      ],
    },
    status: { phase: "Running" },
  };
}

function deployment(i: number): Record<string, unknown> {
  const template = pod(i * 10);
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: `deploy-${i}`, namespace: `ns-${i % NAMESPACES}`, uid: `10000000-0000-0000-0000-${String(i).padStart(12, "0")}`, resourceVersion: String(i + 20_000) },
    spec: { replicas: i % 7 === 0 ? 80 : 3, selector: { matchLabels: { app: "x" } }, template: { metadata: template.metadata, spec: template.spec } },
  };
}

const namespaceObject = (n: number) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name: `ns-${n}`, labels: { "kubernetes.io/metadata.name": `ns-${n}` } } });

function pureScan(set: ReturnType<typeof exampleSet>): { ms: number; tally: ScanTally; reportBytes: number } {
  const start = process.hrtime.bigint();
  const now = Date.now();
  const namespaces = new Map(Array.from({ length: NAMESPACES }, (_, n) => [`ns-${n}`, namespaceObject(n)]));
  const tally = new ScanTally();
  for (let i = 0; i < PODS; i++) {
    const p = pod(i);
    tally.add(judgeExisting(set, p, { now, namespaceObject: namespaces.get((p.metadata as { namespace: string }).namespace) }));
  }
  for (let i = 0; i < DEPLOYMENTS; i++) {
    const d = deployment(i);
    tally.add(judgeExisting(set, d, { now, namespaceObject: namespaces.get((d.metadata as { namespace: string }).namespace) }));
  }
  let reportBytes = 0;
  for (const content of tally.reports()) reportBytes += JSON.stringify(reportObject(content, "wgpolicyk8s.io/v1alpha2", now, 1)).length;
  tally.summary(new Date(now).toISOString(), 1);
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, tally, reportBytes };
}

export async function benchScan(): Promise<void> {
  console.log(`\n== background scan: ${PODS} pods and ${DEPLOYMENTS} Deployments across ${NAMESPACES} namespaces, example global layer`);
  const set = exampleSet();
  // (a) the pure part.
  const times: number[] = [];
  let last: ReturnType<typeof pureScan> | undefined;
  for (let run = 0; run < 3; run++) {
    last = undefined;
    gc();
    const before = process.memoryUsage().heapUsed;
    last = pureScan(set);
    times.push(last.ms);
    if (run === 2) {
      gc();
      const held = process.memoryUsage().heapUsed - before;
      const reports = last.tally.reports();
      const results = reports.reduce((n, r) => n + r.results.length, 0);
      const counted = reports.reduce((n, r) => n + r.summary.pass + r.summary.fail + r.summary.warn + r.summary.skip, 0);
      console.log(`(a) judge + tally + reports, in process: median ${median(times).toFixed(0)} ms (runs: ${times.map((t) => t.toFixed(0)).join(", ")} ms), ${((PODS + DEPLOYMENTS) / (median(times) / 1000)).toFixed(0)} objects/s`);
      console.log(`    ${reports.length} reports, ${results} results kept of ${counted} counted, ${(last.reportBytes / 1024).toFixed(0)} KiB of report JSON in all (largest ${(Math.max(...reports.map((r) => JSON.stringify(reportObject(r, "wgpolicyk8s.io/v1alpha2", 0, 1)).length)) / 1024).toFixed(0)} KiB); heap held by the tally ${mib(held)}`);
    }
  }
  // (b) through the API: the scanner against the test API server, as the agent runs it.
  const api = await TestApiServer.start({ bookmarkIntervalMs: 5000 });
  const dir = mkdtempSync(join(tmpdir(), "polity-bench-scan-"));
  try {
    for (let n = 0; n < NAMESPACES; n++) api.put(namespaceObject(n));
    for (let i = 0; i < PODS; i++) api.put(pod(i));
    for (let i = 0; i < DEPLOYMENTS; i++) api.put(deployment(i));
    const access = loadKubeAccess({ kubeconfig: api.writeKubeconfig(join(dir, "kubeconfig")), env: {} })!;
    const quiet = { info: () => undefined, warn: () => undefined };
    const stop = new AbortController();
    const namespaces = new NamespaceCache(access, quiet);
    void namespaces.run(stop.signal);
    await namespaces.whenSynced(stop.signal);
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    let peakHeap = heapBefore;
    const sampler = setInterval(() => (peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed)), 20);
    const scanner = new Scanner({ kube: access, bundle: () => ({ set, version: 1 }), namespaces, now: () => new Date(), log: quiet, reportDelayMs: 50 });
    const start = Date.now();
    void scanner.run(stop.signal);
    while (scanner.health().objects < PODS + DEPLOYMENTS) await new Promise((resolve) => setTimeout(resolve, 20));
    const listed = Date.now() - start;
    while (scanner.summary() === undefined) await new Promise((resolve) => setTimeout(resolve, 20));
    const ms = Date.now() - start;
    clearInterval(sampler);
    const health = scanner.health();
    gc();
    const held = process.memoryUsage().heapUsed - heapBefore;
    stop.abort();
    const written = api.list("wgpolicyk8s.io/v1alpha2", "PolicyReport").length;
    console.log(`(b) scanner against the test API server (HTTPS, loopback, same process): ${ms} ms to list ${health.objects} objects of ${health.types.length} types, judge them and write ${written} PolicyReports (listed and judged after ${listed} ms; the rest is the reports' server-side apply, which the test API server parses as YAML)`);
    console.log(`    heap: peak ${mib(peakHeap - heapBefore)} above the start (API server's own work included), ${mib(held)} held afterwards; process peak RSS ${mib(process.resourceUsage().maxRSS * 1024)}`);
  } finally {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
