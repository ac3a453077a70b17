/**
 * The PolicyTest runner behind `polity policy test`, in the spirit of `kyverno test` and
 * `opa test`: each case is decided exactly as the webhook would decide it, and compared
 * with what the test expects; the report reads like a test runner's.
 */
import { dirname, isAbsolute, join } from "node:path";
import { evaluate, type Decision } from "../decision/evaluate.js";
import { decidedResource, looksLikeAdmissionReview, parseAdmissionReview, requestForResource } from "../decision/request.js";
import { PolityError, formatProblem } from "../errors.js";
import { effectivePolicySet } from "../layering/effective.js";
import { buildLayer, type Layer } from "../policy/layer.js";
import type { PolicyTestDocument, Tier } from "../policy/schema.js";
import { validateDocument } from "../policy/validate.js";
import type { SourceDocument } from "../source/parse.js";
import { readDocuments } from "../files/read.js";
import { colors, EXIT, type Io } from "./io.js";
import { policySources } from "./layers.js";

interface Found {
  readonly test: PolicyTestDocument;
  readonly file: string;
}

function relativeTo(file: string, path: string): string {
  return path.startsWith("builtin:") || isAbsolute(path) ? path : join(dirname(file), path);
}

function findTests(paths: readonly string[]): Found[] {
  const found: Found[] = [];
  const problems = [];
  for (const path of paths) {
    for (const doc of readDocuments(path)) {
      if ((doc.value as { kind?: unknown })?.kind !== "PolicyTest") continue;
      const validated = validateDocument(doc);
      if (!validated.ok) problems.push(...validated.problems);
      else found.push({ test: validated.document as PolicyTestDocument, file: doc.file });
    }
  }
  if (problems.length > 0) throw new PolityError("invalid", problems);
  return found;
}

function layersFor(found: Found): Layer[] {
  const spec = found.test.spec;
  const layers: Layer[] = [];
  const globalDocs: SourceDocument[] = (spec.policies ?? []).flatMap((p) => policySources(relativeTo(found.file, p)));
  const byTier: [Tier, string | undefined][] = [
    ["global", spec.layers?.global],
    ["region", spec.layers?.region],
    ["cluster", spec.layers?.cluster],
  ];
  for (const [tier, path] of byTier) {
    const docs = [...(tier === "global" ? globalDocs : []), ...(path === undefined ? [] : policySources(relativeTo(found.file, path)))];
    if (docs.length === 0) continue;
    const layer = buildLayer(docs, { tier, region: spec.cluster?.region ?? "local", cluster: spec.cluster?.name ?? "local", name: tier });
    layers.push(layer);
  }
  return layers;
}

function mismatch(expect: PolicyTestDocument["spec"]["cases"][number]["expect"], decision: Decision): string[] {
  const out: string[] = [];
  if (decision.allowed !== expect.allowed) out.push(`expected ${expect.allowed ? "allowed" : "denied"}, got ${decision.allowed ? "allowed" : "denied"}`);
  const matches = (wanted: string, v: { policy: string; rule: string }) => wanted === v.policy || wanted === `${v.policy}/${v.rule}`;
  const check = (wanted: readonly string[] | undefined, got: readonly { policy: string; rule: string }[], what: string) => {
    for (const w of wanted ?? []) {
      if (!got.some((g) => matches(w, g))) out.push(`expected ${what} ${w}, got ${got.length === 0 ? "none" : got.map((g) => `${g.policy}/${g.rule}`).join(", ")}`);
    }
  };
  check(expect.violations, decision.violations.filter((v) => v.enforcement === "deny"), "violation");
  check(expect.warnings, decision.violations.filter((v) => v.enforcement === "warn"), "warning");
  return out;
}

export function runPolicyTests(paths: readonly string[], options: { pattern?: string; verbose: boolean }, io: Io): number {
  const c = colors(io);
  const tests = findTests(paths);
  if (tests.length === 0) {
    io.err(`error: no PolicyTest documents under ${paths.join(", ")}\n`);
    return EXIT.usage;
  }
  let passed = 0;
  let failed = 0;
  let broken = false;
  for (const found of tests) {
    const spec = found.test.spec;
    const title = `${found.file}: ${found.test.metadata.name}`;
    let layers: Layer[];
    let set;
    try {
      layers = layersFor(found);
      const cluster = { name: spec.cluster?.name ?? "local", region: spec.cluster?.region ?? "local", labels: spec.cluster?.labels ?? {} };
      set = effectivePolicySet(layers, cluster);
    } catch (error) {
      if (!(error instanceof PolityError)) throw error;
      io.out(`${c.red("✗")} ${title}: cannot load its policies\n`);
      for (const problem of error.problems) io.out(`    ${formatProblem(problem)}\n`);
      broken = true;
      continue;
    }
    const now = spec.now === undefined ? Date.now() : Date.parse(spec.now);
    const lines: string[] = [];
    for (const testCase of spec.cases) {
      const name = `${found.test.metadata.name}/${testCase.name}`;
      if (options.pattern !== undefined && !name.includes(options.pattern)) continue;
      let problems: string[];
      try {
        let value: unknown = testCase.object;
        if (testCase.file !== undefined) {
          const docs = readDocuments(relativeTo(found.file, testCase.file));
          if (docs.length !== 1) throw PolityError.of("invalid", `${testCase.file} must hold exactly one document, it holds ${docs.length}`);
          value = docs[0]!.value;
        }
        if (value === undefined) throw PolityError.of("invalid", "a case needs object or file");
        const request = looksLikeAdmissionReview(value)
          ? parseAdmissionReview(value).request
          : requestForResource(decidedResource(value), testCase.operation ?? "CREATE");
        const namespaceObject =
          testCase.namespaceLabels === undefined ? undefined : { apiVersion: "v1", kind: "Namespace", metadata: { name: request.namespace, labels: testCase.namespaceLabels } };
        problems = mismatch(testCase.expect, evaluate(set, request, { now, namespaceObject }));
      } catch (error) {
        if (!(error instanceof PolityError)) throw error;
        problems = error.problems.map(formatProblem);
      }
      if (problems.length === 0) {
        passed++;
        if (options.verbose) lines.push(`  ${c.green("✓")} ${testCase.name}`);
      } else {
        failed++;
        lines.push(`  ${c.red("✗")} ${testCase.name}`, ...problems.map((p) => `      ${p}`));
      }
    }
    if (lines.length > 0 || options.verbose) io.out(`${title}\n${lines.join("\n")}${lines.length > 0 ? "\n" : ""}`);
  }
  const summary = `${passed} passed, ${failed} failed`;
  io.out(failed > 0 || broken ? `${c.red(summary)}\n` : `${c.green(summary)}\n`);
  if (broken) return EXIT.usage;
  return failed > 0 ? EXIT.failed : EXIT.ok;
}
