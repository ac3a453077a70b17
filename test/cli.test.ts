/**
 * The `polity` command line, run in-process through main() with captured output: what
 * people type, what they read back, and the exit codes scripts rely on.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli/main.js";
import type { Io } from "../src/cli/io.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const at = (path: string): string => join(ROOT, path);

interface Run {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** Runs `polity <args>` in-process; an exception escaping main() is reported as bin/polity.js would (exit 70). */
async function polity(...args: string[]): Promise<Run> {
  let out = "";
  let err = "";
  const io: Io = {
    out: (text) => {
      out += text;
    },
    err: (text) => {
      err += text;
    },
    tty: false,
    env: {},
  };
  try {
    return { code: await main(args, io), out, err };
  } catch (error) {
    return { code: 70, out, err: `${err}polity: internal error: ${error instanceof Error ? error.stack : String(error)}` };
  }
}

const LAYERS = [
  "--layer",
  `global=${at("examples/layers/global.yaml")}`,
  "--layer",
  `region=${at("examples/layers/region-eu-west.yaml")}`,
  "--layer",
  `cluster=${at("examples/layers/cluster-eu-west-1.yaml")}`,
  "--labels",
  "env=prod",
];
/** Before the legacy-billing exception expires (2027-03-31). */
const NOW = ["--now", "2026-12-01T00:00:00Z"];

interface JsonViolation {
  readonly policy: string;
  readonly rule: string;
  readonly message: string;
  readonly enforcement: "deny" | "warn" | "audit";
  readonly target?: string;
}

interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly status?: { readonly code: number; readonly reason: string; readonly message: string };
  readonly warnings?: readonly string[];
  readonly auditAnnotations?: Readonly<Record<string, string>>;
}

interface JsonLine {
  readonly source: string;
  readonly index: number;
  readonly kind: string;
  readonly namespace: string | null;
  readonly name: string | null;
  readonly allowed: boolean;
  readonly violations: readonly JsonViolation[];
  readonly warnings: readonly string[];
  readonly review?: { readonly apiVersion: string; readonly kind: string; readonly response: AdmissionResponse };
}

const DOCUMENTED_KEYS = ["source", "index", "kind", "namespace", "name", "allowed", "violations", "warnings", "exemptions", "review"];
const DOCUMENTED_VIOLATION_KEYS = ["policy", "rule", "message", "enforcement", "target"];
const REQUIRED_VIOLATION_KEYS = ["policy", "rule", "message", "enforcement"];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Every output line is one JSON object with the documented fields and types. */
function jsonLines(out: string): JsonLine[] {
  expect(out.endsWith("\n")).toBe(true);
  return out
    .slice(0, -1)
    .split("\n")
    .map((line) => {
      const value: unknown = JSON.parse(line);
      if (!isRecord(value)) throw new Error(`not a JSON object: ${line}`);
      expect(typeof value.source).toBe("string");
      expect(Number.isInteger(value.index)).toBe(true);
      expect(typeof value.kind).toBe("string");
      expect(value.namespace === null || typeof value.namespace === "string").toBe(true);
      expect(value.name === null || typeof value.name === "string").toBe(true);
      expect(typeof value.allowed).toBe("boolean");
      expect(Array.isArray(value.violations)).toBe(true);
      expect(Array.isArray(value.warnings)).toBe(true);
      for (const v of value.violations as unknown[]) {
        if (!isRecord(v)) throw new Error(`a violation is not an object: ${line}`);
        for (const key of REQUIRED_VIOLATION_KEYS) expect(typeof v[key], key).toBe("string");
        expect(["deny", "warn", "audit"]).toContain(v.enforcement);
      }
      for (const w of value.warnings as unknown[]) expect(typeof w).toBe("string");
      return value as unknown as JsonLine;
    });
}

const ruleIds = (line: JsonLine, enforcement: JsonViolation["enforcement"]): string[] =>
  line.violations.filter((v) => v.enforcement === enforcement).map((v) => `${v.policy}/${v.rule}`);

let scratch: string;
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "polity-cli-"));
});
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

/** Writes a file in the test's temporary folder and returns its path. */
function scratchFile(name: string, text: string): string {
  const path = join(scratch, name);
  writeFileSync(path, text);
  return path;
}

describe("polity eval on the examples", () => {
  it("prints one line per document with its verdict and each violation, then a summary, and exits 1 when one is denied", async () => {
    const run = await polity("eval", ...LAYERS, ...NOW, at("examples/resources"));
    expect(run.err).toBe("");
    expect(run.code).toBe(1);
    const lines = run.out.split("\n");
    expect(lines).toContainEqual(expect.stringMatching(/good-deployment\.yaml\[0\] Deployment shop\/checkout: allowed$/));
    expect(lines).toContainEqual(expect.stringMatching(/legacy-billing\.yaml\[0\] Job billing\/legacy-billing: allowed$/));
    expect(lines).toContainEqual(expect.stringMatching(/root-pod\.yaml\[0\] Pod shop\/debug: DENIED$/));
    expect(lines).toContainEqual(expect.stringMatching(/scaled-deployment\.yaml\[0\] Deployment jobs\/batch-workers: DENIED$/));
    expect(lines).toContain("  ✗ pod-security/privileged [deny]: privileged (container \"shell\" must not set securityContext.privileged=true)");
    expect(lines).toContain("  ✗ trusted-images/no-latest [deny]: images must be pinned to a tag other than latest");
    expect(lines).toContain("  ✗ max-replicas/replicas [deny]: replicas 60 exceeds the limit of 20");
    expect(lines).toContain("  ! data-residency/residency-label [warn]: production pods in eu-west must be labelled residency=eu");
    expect(lines).toContain(
      "  ! data-residency/residency-label [warn] (pod template): production pods in eu-west must be labelled residency=eu",
    );
    expect(lines).toContain("  ⊘ require-team-label/team-label: exempted by exception legacy-billing-root until 2027-03-31T00:00:00Z");
    expect(lines.at(-2)).toBe("4 documents: 2 allowed, 2 denied");
    expect(lines.at(-1)).toBe("");
  });

  it("exits 0 when every input is allowed", async () => {
    const run = await polity("eval", ...LAYERS, ...NOW, at("examples/resources/good-deployment.yaml"));
    expect(run).toMatchObject({ code: 0, err: "" });
    expect(run.out).toMatch(/good-deployment\.yaml\[0\] Deployment shop\/checkout: allowed\n1 document: 1 allowed, 0 denied\n$/);
  });

  it("prints one JSON object per document and line, with the documented fields", async () => {
    const run = await polity("eval", ...LAYERS, ...NOW, "-o", "json", at("examples/resources"));
    expect(run.err).toBe("");
    expect(run.code).toBe(1);
    const lines = jsonLines(run.out);
    expect(lines.map((l) => [l.kind, l.namespace, l.name, l.allowed, l.index])).toEqual([
      ["Deployment", "shop", "checkout", true, 0],
      ["Job", "billing", "legacy-billing", true, 0],
      ["Pod", "shop", "debug", false, 0],
      ["Deployment", "jobs", "batch-workers", false, 0],
    ]);
    const [good, legacy, root, scaled] = lines as [JsonLine, JsonLine, JsonLine, JsonLine];
    expect(good.source).toMatch(/examples\/resources\/good-deployment\.yaml$/);
    expect(good.violations).toEqual([]);
    expect(good.warnings).toEqual([]);
    expect(good).not.toHaveProperty("review");
    expect(ruleIds(legacy, "deny")).toEqual([]);
    expect(legacy.warnings).toEqual(["data-residency (pod template): production pods in eu-west must be labelled residency=eu"]);
    // The root pod breaks restricted Pod Security in six ways (hostNetwork, privileged, no
    // allowPrivilegeEscalation=false, NET_ADMIN without drop ALL, no runAsNonRoot, no
    // seccomp profile) and uses :latest; it carries no residency label.
    expect(ruleIds(root, "deny").sort()).toEqual(
      [
        "pod-security/allowPrivilegeEscalation",
        "pod-security/capabilities_restricted",
        "pod-security/hostNamespaces",
        "pod-security/privileged",
        "pod-security/runAsNonRoot",
        "pod-security/seccompProfile_restricted",
        "trusted-images/no-latest",
      ].sort(),
    );
    expect(ruleIds(root, "warn")).toEqual(["data-residency/residency-label"]);
    expect(root.warnings).toEqual(["data-residency: production pods in eu-west must be labelled residency=eu"]);
    expect(ruleIds(scaled, "deny")).toEqual(["max-replicas/replicas"]);
  });

  it("-o json prints only the fields eval --help documents", async () => {
    const run = await polity("eval", ...LAYERS, ...NOW, "-o", "json", at("examples/resources/legacy-billing.yaml"));
    const value: unknown = JSON.parse(run.out);
    if (!isRecord(value)) throw new Error("not an object");
    for (const key of Object.keys(value)) expect(DOCUMENTED_KEYS).toContain(key);
    for (const v of value.violations as Record<string, unknown>[]) {
      for (const key of Object.keys(v)) expect(DOCUMENTED_VIOLATION_KEYS).toContain(key);
    }
  });

  it("--quiet leaves out documents that are plainly allowed, and keeps the summary", async () => {
    const run = await polity("eval", ...LAYERS, ...NOW, "--quiet", at("examples/resources"));
    expect(run.code).toBe(1);
    expect(run.out).not.toContain("good-deployment");
    expect(run.out).toContain("legacy-billing.yaml[0]");
    expect(run.out).toContain("root-pod.yaml[0]");
    expect(run.out).toContain("scaled-deployment.yaml[0]");
    expect(run.out).toMatch(/4 documents: 2 allowed, 2 denied\n$/);
  });

  it("-q prints only the summary when everything is plainly allowed", async () => {
    const run = await polity("eval", ...LAYERS, ...NOW, "-q", at("examples/resources/good-deployment.yaml"));
    expect(run).toEqual({ code: 0, out: "1 document: 1 allowed, 0 denied\n", err: "" });
  });

  it("judges the legacy job once its exception has expired", async () => {
    const run = await polity("eval", ...LAYERS, "--now", "2027-04-01T00:00:00Z", "-o", "json", at("examples/resources/legacy-billing.yaml"));
    expect(run.code).toBe(1);
    expect(ruleIds(jsonLines(run.out)[0]!, "deny")).toEqual(["require-team-label/team-label"]);
  });

  it("colours its output only on a terminal without NO_COLOR", async () => {
    const capture = async (tty: boolean, env: Record<string, string>) => {
      let out = "";
      await main(["eval", ...LAYERS, ...NOW, at("examples/resources/root-pod.yaml")], { out: (t) => void (out += t), err: () => {}, tty, env });
      return out;
    };
    expect(await capture(true, {})).toContain("\u001b[31mDENIED\u001b[0m");
    expect(await capture(true, { NO_COLOR: "1" })).not.toContain("\u001b[");
    expect(await capture(false, {})).not.toContain("\u001b[");
  });

  it("exits 2 for bad usage: no inputs, an unknown output format, a bad operation or time", async () => {
    const cases: [string[], RegExp][] = [
      [["eval", ...LAYERS], /^error: no inputs: give files, folders or - for standard input\n$/],
      [["eval", ...LAYERS, "-o", "yaml", at("examples/resources")], /^error: --output must be one of text, json, got "yaml"\n$/],
      [["eval", ...LAYERS, "--operation", "PATCH", at("examples/resources")], /^error: --operation must be CREATE, UPDATE or DELETE, got "PATCH"\n$/],
      [["eval", ...LAYERS, "--now", "tomorrow", at("examples/resources")], /^error: --now must be an RFC 3339 time/],
      [["eval", at("examples/resources")], /^error: no policies: give --policy/],
      [["eval", "-p", "builtin:pod-security/privileged", at("examples/resources")], /^error: --policy builtin:pod-security\/privileged: unknown Pod Security level/],
      [["eval", ...LAYERS, at("examples/no-such-folder")], /^error: .*no such file or folder: .*no-such-folder\n$/],
    ];
    for (const [args, stderr] of cases) {
      const run = await polity(...args);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.err, args.join(" ")).toMatch(stderr);
    }
  });

  it("judges a resource as a DELETE with --operation DELETE, which the example policies do not match", async () => {
    const run = await polity("eval", ...LAYERS, ...NOW, "--operation", "delete", at("examples/resources/root-pod.yaml"));
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/root-pod\.yaml\[0\] Pod shop\/debug: allowed\n/);
  });
});

// Real AdmissionReviews captured from API servers (see its README.md); never copied into the repo.
const VECTORS = resolve(ROOT, "../shared/vectors/admission");
const HAVE_VECTORS = existsSync(VECTORS);
if (!HAVE_VECTORS) console.warn(`skipping the AdmissionReview vector tests: ${VECTORS} does not exist (no /work/shared)`);

const vector = (name: string): string => join(VECTORS, name);

function readVector(name: string): Record<string, unknown> {
  const value: unknown = JSON.parse(readFileSync(vector(name), "utf8"));
  if (!isRecord(value) || !isRecord(value.request)) throw new Error(`${name} is not an AdmissionReview`);
  return value;
}

/** The pod a CREATE vector carries: the facts its expected decision rests on. */
function podOf(name: string): { spec: Record<string, unknown>; containers: Record<string, unknown>[] } {
  const request = readVector(name).request as Record<string, unknown>;
  const pod = request.object;
  if (!isRecord(pod) || !isRecord(pod.spec) || !Array.isArray(pod.spec.containers)) throw new Error(`${name} carries no pod`);
  return { spec: pod.spec, containers: pod.spec.containers as Record<string, unknown>[] };
}

async function review(policies: string[], file: string): Promise<{ run: Run; line: JsonLine; response: AdmissionResponse }> {
  const run = await polity("eval", ...policies.flatMap((p) => ["-p", p]), "-o", "json", file);
  expect(run.err).toBe("");
  const lines = jsonLines(run.out);
  expect(lines).toHaveLength(1);
  const line = lines[0]!;
  expect(line.review).toBeDefined();
  expect(Object.keys(line.review!).sort()).toEqual(["apiVersion", "kind", "response"]);
  expect(line.review!.apiVersion).toBe("admission.k8s.io/v1");
  expect(line.review!.kind).toBe("AdmissionReview");
  expect(line.review!.response.allowed).toBe(line.allowed);
  return { run, line, response: line.review!.response };
}

const RESTRICTED = "builtin:pod-security/restricted";
const BASELINE = "builtin:pod-security/baseline";
/** What restricted asks of every container that the captured pods leave unset. */
const RESTRICTED_UNSET = ["allowPrivilegeEscalation", "capabilities_restricted", "runAsNonRoot", "seccompProfile_restricted"];

const CREATES = [
  { file: "pod-create-gke.kube-rs.json", uid: "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4", namespace: "colin-coder", name: "echo-pod", container: "echo-server" },
  { file: "pod-create-kind.kyverno.json", uid: "9c284cdb-b0de-42aa-adf5-649a44bc861b", namespace: "default", name: "hello-world", container: "hello-world" },
] as const;

describe.skipIf(!HAVE_VECTORS)(`polity eval on captured AdmissionReviews${HAVE_VECTORS ? "" : " (skipped: ../shared/vectors/admission is absent)"}`, () => {
  describe.each(CREATES)("the CREATE in $file", ({ file, uid, namespace, name, container }) => {
    it("carries a pod with no security settings at all, no host namespaces, host paths or host ports", () => {
      const { spec, containers } = podOf(file);
      expect(spec.securityContext).toEqual({});
      expect(spec.hostNetwork ?? false).toBe(false);
      expect(spec.hostPID ?? false).toBe(false);
      expect(spec.hostIPC ?? false).toBe(false);
      for (const volume of spec.volumes as Record<string, unknown>[]) expect(Object.keys(volume).sort()).toEqual(["name", "secret"]);
      expect(containers).toHaveLength(1);
      expect(containers[0]!.name).toBe(container);
      expect(containers[0]!.securityContext).toBeUndefined();
      for (const port of containers[0]!.ports as Record<string, unknown>[]) expect(port.hostPort).toBeUndefined();
    });

    it("is denied by restricted: 403 Forbidden naming the four settings the container lacks", async () => {
      const { run, line, response } = await review([RESTRICTED], vector(file));
      expect(run.code).toBe(1);
      expect([line.kind, line.namespace, line.name, line.allowed]).toEqual(["Pod", namespace, name, false]);
      expect(ruleIds(line, "deny")).toEqual(RESTRICTED_UNSET.map((r) => `pod-security-restricted/${r}`));
      expect(Object.keys(response).sort()).toEqual(["allowed", "status", "uid"]);
      expect(response.uid).toBe(uid);
      expect(response.allowed).toBe(false);
      expect(Object.keys(response.status!).sort()).toEqual(["code", "message", "reason"]);
      expect(response.status!.code).toBe(403);
      expect(response.status!.reason).toBe("Forbidden");
      expect(response.status!.message).toMatch(/^denied by Polity: pod-security-restricted: /);
      for (const setting of ["allowPrivilegeEscalation=false", 'capabilities.drop=["ALL"]', "runAsNonRoot=true", "seccompProfile.type"]) {
        expect(response.status!.message).toContain(`container "${container}" must set securityContext.${setting}`);
      }
    });

    it("is allowed by baseline, with nothing but uid and allowed in the response", async () => {
      const { run, line, response } = await review([BASELINE], vector(file));
      expect(run.code).toBe(0);
      expect(line.violations).toEqual([]);
      expect(response).toEqual({ uid, allowed: true });
    });

    it("is allowed by baseline with warnings when restricted is enforced as warn", async () => {
      const advice = scratchFile(
        "restricted-advice.yaml",
        "apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: restricted-advice, owner: platform-security }\nspec:\n  builtin: pod-security/restricted\n  enforcement: warn\n",
      );
      const { run, response } = await review([BASELINE, advice], vector(file));
      expect(run.code).toBe(0);
      expect(Object.keys(response).sort()).toEqual(["allowed", "uid", "warnings"]);
      expect(response.uid).toBe(uid);
      expect(response.allowed).toBe(true);
      expect(response.warnings).toHaveLength(RESTRICTED_UNSET.length);
      for (const warning of response.warnings!) {
        expect(warning).toMatch(/^restricted-advice: /);
        expect(warning.length).toBeLessThanOrEqual(256);
      }
    });
  });

  describe.each([RESTRICTED, BASELINE])("with %s", (policy) => {
    it("allows the DELETE (object null): Pod Security judges only CREATE and UPDATE", async () => {
      expect((readVector("pod-delete-kind.kyverno.json").request as Record<string, unknown>).object).toBeNull();
      const { run, line, response } = await review([policy], vector("pod-delete-kind.kyverno.json"));
      expect(run.code).toBe(0);
      expect([line.kind, line.namespace, line.name]).toEqual(["Pod", "default", "hello-world"]);
      expect(response).toEqual({ uid: "b553344a-172a-4257-8ec4-a8f379f8b844", allowed: true });
    });

    it("allows the node's status update: the status subresource is not judged", async () => {
      const { run, response } = await review([policy], vector("pod-status-update-by-node.kyverno.json"));
      expect(run.code).toBe(0);
      expect(response).toEqual({ uid: "7b0600b7-0258-4ecb-9666-c2839bd19612", allowed: true });
    });

    it("allows the label-only UPDATE: as in Pod Security Admission, it is not a significant pod update", async () => {
      const { run, response } = await review([policy], vector("pod-update-labels-kind.kyverno.json"));
      expect(run.code).toBe(0);
      expect(response).toEqual({ uid: "11d46f83-a31b-444e-8209-c43b24f1af8a", allowed: true });
    });
  });

  it("judges an UPDATE that changes a container image, and restricted denies it", async () => {
    const changed = readVector("pod-update-labels-kind.kyverno.json");
    const request = changed.request as { object: { spec: { containers: { image: string }[] } } };
    request.object.spec.containers[0]!.image = "hello-world:linux";
    const file = scratchFile("pod-update-image.json", JSON.stringify(changed));
    const restricted = await review([RESTRICTED], file);
    expect(restricted.run.code).toBe(1);
    expect(restricted.response.uid).toBe("11d46f83-a31b-444e-8209-c43b24f1af8a");
    expect(restricted.response.status).toMatchObject({ code: 403, reason: "Forbidden" });
    const baseline = await review([BASELINE], file);
    expect(baseline.response).toEqual({ uid: "11d46f83-a31b-444e-8209-c43b24f1af8a", allowed: true });
  });

  it("decides a folder of reviews in file order, one JSON line each, and exits 1 when one is denied", async () => {
    const run = await polity("eval", "-p", RESTRICTED, "-o", "json", VECTORS);
    expect(run.code).toBe(1);
    const files = readdirSync(VECTORS).filter((f) => f.endsWith(".json")).sort();
    const lines = jsonLines(run.out);
    expect(lines.map((l) => l.source.split("/").at(-1))).toEqual(files);
    expect(lines.map((l) => l.review?.response.allowed)).toEqual(lines.map((l) => l.allowed));
    expect(lines.filter((l) => !l.allowed).map((l) => l.source.split("/").at(-1))).toEqual([
      "pod-create-gke.kube-rs.json",
      "pod-create-kind.kyverno.json",
    ]);
  });

  it("prints reviews in text as it prints resources", async () => {
    const run = await polity("eval", "-p", RESTRICTED, vector("pod-create-kind.kyverno.json"));
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/pod-create-kind\.kyverno\.json\[0\] Pod default\/hello-world: DENIED\n/);
    expect(run.out).toContain("  ✗ pod-security-restricted/runAsNonRoot [deny]: ");
  });
});

describe("polity policy effective", () => {
  const GLOBAL = ["--layer", `global=${at("examples/layers/global.yaml")}`];

  it("prints canonical bytes whose sha256 is the hash that -o json and -o text report", async () => {
    const canonical = await polity("policy", "effective", ...LAYERS, "-o", "canonical");
    expect(canonical.code).toBe(0);
    expect(canonical.err).toBe("");
    const digest = `sha256:${createHash("sha256").update(canonical.out, "utf8").digest("hex")}`;
    const json = await polity("policy", "effective", ...LAYERS, "-o", "json");
    expect(json.code).toBe(0);
    const parsed: unknown = JSON.parse(json.out);
    if (!isRecord(parsed)) throw new Error("-o json is not an object");
    expect(Object.keys(parsed).sort()).toEqual(["effectivePolicySet", "hash"]);
    expect(parsed.hash).toBe(digest);
    // The canonical bytes are the effective policy set itself, with sorted keys.
    expect(JSON.parse(canonical.out)).toEqual(parsed.effectivePolicySet);
    const text = await polity("policy", "effective", ...LAYERS);
    expect(text.out).toContain(`hash    ${digest}\n`);
  });

  it("gives the same bytes for the same inputs, however the flags are ordered", async () => {
    const first = await polity("policy", "effective", ...LAYERS, "-o", "canonical");
    const again = await polity("policy", "effective", ...LAYERS, "-o", "canonical");
    expect(again.out).toBe(first.out);
    const reordered = await polity(
      "policy",
      "effective",
      "--labels",
      "env=prod",
      "--layer",
      `cluster=${at("examples/layers/cluster-eu-west-1.yaml")}`,
      "--layer",
      `region=${at("examples/layers/region-eu-west.yaml")}`,
      "--layer",
      `global=${at("examples/layers/global.yaml")}`,
      "-o",
      "canonical",
    );
    expect(reordered.out).toBe(first.out);
  });

  it("summarises each policy, who refined it and its params in text", async () => {
    const run = await polity("policy", "effective", ...LAYERS);
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/^cluster eu-west-1 \(region eu-west, labels env=prod\)\n/);
    expect(run.out).toContain("pod-security  deny locked at global  domain workload-security, owner platform-security (global)");
    expect(run.out).toContain("  params maxReplicas=20\n");
    expect(run.out).toContain("data-residency  warn");
    expect(run.out).toMatch(/exception legacy-billing-root relaxes require-team-label \(team-label\) until 2027-03-31T00:00:00Z, approved by platform-team\n/);
  });

  it("refuses a region layer that weakens a locked policy: exit 2, naming both policies, both owners and the rule", async () => {
    const weakening = scratchFile(
      "weakening-region.yaml",
      [
        "apiVersion: polity.dev/v1",
        "kind: Layer",
        "metadata: { name: eu-west }",
        "spec: { tier: region, region: eu-west, owners: [eu-platform] }",
        "---",
        "apiVersion: polity.dev/v1",
        "kind: Policy",
        "metadata: { name: pod-security, owner: eu-platform }",
        "spec:",
        "  enforcement: warn",
        "",
      ].join("\n"),
    );
    const run = await polity("policy", "effective", ...GLOBAL, "--layer", `region=${weakening}`);
    expect(run.code).toBe(2);
    expect(run.out).toBe("");
    const lines = run.err.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    const [line] = lines as [string];
    expect(line).toMatch(/^error: .*weakening-region\.yaml:10:16: spec\.enforcement: /);
    expect(line).toContain('policy "pod-security" of layer "eu-west" (tier region, owner "eu-platform")');
    expect(line).toContain('policy "pod-security" of layer "global" (tier global, owner "platform-security")');
    expect(line).toMatch(/enforcement deny → warn \[rule: locked-enforcement\]$/);
  });
});

describe("polity policy lint", () => {
  const lint = (text: string, name: string) => polity("policy", "lint", scratchFile(name, text));
  const policy = (spec: string) => `apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: p, owner: team-a }\nspec:\n  domain: workload-security\n  match: { kinds: [Pod] }\n${spec}`;

  it("finds nothing wrong with the global example layer", async () => {
    const run = await polity("policy", "lint", at("examples/layers/global.yaml"));
    expect(run).toEqual({ code: 0, out: "9 documents in 1 layer: no problems\n", err: "" });
  });

  it("finds nothing wrong with examples/layers, the example its --help gives", async () => {
    const run = await polity("policy", "lint", at("examples/layers"));
    expect(run.out).toMatch(/no problems\n$/);
    expect(run.code).toBe(0);
  });

  it("lints a region layer file on its own, taking the tier from its Layer document", async () => {
    const run = await polity("policy", "lint", at("examples/layers/region-eu-west.yaml"));
    expect(run.out).toBe("6 documents in 1 layer: no problems\n");
    expect(run.code).toBe(0);
  });

  it("reports an unknown field with file:line:column and its field path, and exits 1", async () => {
    const run = await lint(policy("  validations:\n    - name: r\n      expression: \"true\"\n      severity: high\n"), "unknown-field.yaml");
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/^✗ .*unknown-field\.yaml:10:\d+: spec\.validations\[0\]\.severity: unknown field\n1 problem\n$/);
  });

  it("locates an unknown field at its key", async () => {
    const run = await lint(policy("  validations:\n    - expression: \"true\"\n  severityLevels:\n    high: 1\n"), "unknown-block.yaml");
    expect(run.out).toMatch(/^✗ .*unknown-block\.yaml:9:3: spec\.severityLevels: unknown field\n/);
  });

  it("reports a wrong type with the type it expected and the value it got", async () => {
    const run = await lint(policy("  locked: \"yes\"\n  validations:\n    - expression: \"true\"\n"), "wrong-type.yaml");
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/^✗ .*wrong-type\.yaml:7:11: spec\.locked: expected true or false, got the string "yes"\n/);
  });

  it("reports a missing required field at the object that lacks it", async () => {
    const run = await lint(policy("  validations:\n    - name: r\n      message: no expression here\n"), "missing-field.yaml");
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/^✗ .*missing-field\.yaml:8:7: spec\.validations\[0\]\.expression: is required/);
  });

  it("reports invalid CEL with the policy, the rule and the position inside the expression", async () => {
    const run = await lint(
      policy("  validations:\n    - name: r\n      expression: \"object.metadata.name == )\"\n    - name: s\n      expression: |-\n        has(object.spec) &&\n          object.spec.foo(1,\n"),
      "bad-cel.yaml",
    );
    expect(run.code).toBe(1);
    const lines = run.out.split("\n");
    expect(lines[0]).toMatch(/^✗ .*bad-cel\.yaml:9:19: spec\.validations\[0\]\.expression: policy "p", rule "r": syntax error at 1:25: /);
    expect(lines[1]).toBe("  | object.metadata.name == )");
    expect(lines[2]).toBe(`  | ${" ".repeat(24)}^`);
    // A multi-line expression: line 2 of the expression, column 21.
    expect(lines[3]).toMatch(/^✗ .*bad-cel\.yaml:11:19: spec\.validations\[1\]\.expression: policy "p", rule "s": syntax error at 2:21: /);
    expect(run.out).toMatch(/2 problems\n$/);
  });

  it("reports a CEL type error at the operator", async () => {
    const run = await lint(policy("  validations:\n    - name: r\n      expression: \"object.spec.replicas + 'x' > 1\"\n"), "cel-type.yaml");
    expect(run.code).toBe(1);
    expect(run.out).toContain("type error at 1:28: found no matching overload for '>' applied to '(string, int)'");
  });

  it("reports an expression whose estimated cost is over the limit, as apply refuses it", async () => {
    const run = await lint(policy('  validations:\n    - name: cubed\n      expression: "object.a.all(x, object.b.all(y, object.c.all(z, x == y && y == z)))"\n'), "costly.yaml");
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/^✗ .*costly\.yaml:9:19: spec\.validations\[0\]\.expression: policy "p", rule "cubed": too costly at 1:1: its estimated cost, \d+, is over the limit of 1000000/);
  });

  it("exits 2 without paths or for a path that does not exist", async () => {
    expect(await polity("policy", "lint")).toMatchObject({ code: 2, err: "error: give one or more files or folders to lint\n" });
    const missing = await polity("policy", "lint", join(scratch, "nowhere"));
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/^error: no such file or folder: .*nowhere\n$/);
  });

  it("notes on standard error that files without a Layer document were checked as the global layer, which apply would refuse", async () => {
    const run = await lint(policy("  validations:\n    - expression: \"true\"\n"), "plain.yaml");
    expect(run).toMatchObject({ code: 0, out: "1 document in 1 layer: no problems\n" });
    expect(run.err).toMatch(/^note: \S*plain\.yaml hold no Layer document: checked as the global layer; 'polity apply' refuses files without one\n$/);
    const withLayer = await polity("policy", "lint", at("examples/layers/global.yaml"));
    expect(withLayer.err).toBe("");
  });

  it("groups the files of all its paths into layers as 'polity apply' does", async () => {
    const extra = scratchFile("eu-extra.yaml", policy("  validations:\n    - expression: \"true\"\n").replace("team-a", "eu-platform"));
    // One Layer document among all the files: the extra policy joins the region layer.
    const one = await polity("policy", "lint", at("examples/layers/region-eu-west.yaml"), extra);
    expect(one).toEqual({ code: 0, out: "7 documents in 1 layer: no problems\n", err: "" });
    // Two: each file is its own layer, and the extra file does not say which it belongs to.
    const two = await polity("policy", "lint", at("examples/layers/global.yaml"), at("examples/layers/region-eu-west.yaml"), extra);
    expect(two.code).toBe(1);
    expect(two.out).toMatch(/^✗ \S*eu-extra\.yaml:1:1: no Layer document says which layer this file belongs to \(global, which region, which cluster\)/);
    expect(two.out).toMatch(/\n1 problem\n$/);
  });
  it("checks teams as 'polity apply' does: owners declared, and each team name declared once", async () => {
    const region = (name: string, extra: string) =>
      `apiVersion: polity.dev/v1\nkind: Layer\nmetadata: { name: ${name} }\nspec: { tier: region, region: ${name}, owners: [${name}-team, ghosts] }\n---\n` +
      `apiVersion: polity.dev/v1\nkind: Team\nmetadata: { name: ${name}-team }\nspec: { members: [a@example.com] }\n${extra}`;
    const orphan = scratchFile("orphan-region.yaml", region("north", `---\n${policy("  validations:\n    - expression: \"true\"\n").replace("team-a", "ghosts")}`));
    const run = await polity("policy", "lint", at("examples/layers/global.yaml"), orphan);
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/owner "ghosts" of layer "north" is not a declared team/);
    expect(run.out).toMatch(/owner "ghosts" of policy "p" is not a declared team/);
    // Without the global layer, owners may be declared there: not reported.
    expect((await polity("policy", "lint", orphan)).out).not.toMatch(/ghosts/);
    const twice = scratchFile("twice-region.yaml", region("south", "---\napiVersion: polity.dev/v1\nkind: Team\nmetadata: { name: eu-platform }\nspec: { members: [b@example.com] }\n"));
    const clash = await polity("policy", "lint", at("examples/layers/region-eu-west.yaml"), twice);
    expect(clash.code).toBe(1);
    expect(clash.out).toMatch(/team "eu-platform" is declared by layer "(eu-west|south)" already; layer "(south|eu-west)" may not declare it again: team names are unique in the federation/);
  });
});

describe("polity policy test", () => {
  it("passes the example tests and exits 0", async () => {
    const run = await polity("policy", "test", at("examples/tests"));
    expect(run).toEqual({ code: 0, out: "14 passed, 0 failed\n", err: "" });
  });

  it("lists every case with -v, and only matching cases with --run", async () => {
    const verbose = await polity("policy", "test", "-v", at("examples/tests"));
    expect(verbose.out).toContain("  ✓ a quota above the cluster's own limit is refused\n");
    expect(verbose.out.match(/ {2}✓ /g)).toHaveLength(14);
    const only = await polity("policy", "test", "--run", "quota", at("examples/tests"));
    expect(only).toMatchObject({ code: 0, out: "1 passed, 0 failed\n" });
  });

  it("exits 1 for a failing case and says what it expected and what it got", async () => {
    const test = scratchFile(
      "failing.test.yaml",
      [
        "apiVersion: polity.dev/v1",
        "kind: PolicyTest",
        "metadata: { name: wrong-expectations }",
        "spec:",
        "  policies: [builtin:pod-security/baseline]",
        "  cases:",
        "    - name: a privileged pod is wrongly expected to pass",
        `      file: ${at("examples/resources/root-pod.yaml")}`,
        "      expect: { allowed: true }",
        "    - name: a missing violation",
        "      object: { apiVersion: v1, kind: Pod, metadata: { name: ok }, spec: { containers: [{ name: c, image: x:1 }] } }",
        "      expect: { allowed: false, violations: [pod-security-baseline/privileged] }",
        "    - name: a correct expectation",
        "      object: { apiVersion: v1, kind: Pod, metadata: { name: ok }, spec: { containers: [{ name: c, image: x:1 }] } }",
        "      expect: { allowed: true }",
        "",
      ].join("\n"),
    );
    const run = await polity("policy", "test", test);
    expect(run.code).toBe(1);
    expect(run.err).toBe("");
    expect(run.out).toContain(": wrong-expectations\n");
    expect(run.out).toContain("  ✗ a privileged pod is wrongly expected to pass\n      expected allowed, got denied\n");
    expect(run.out).toContain("  ✗ a missing violation\n      expected denied, got allowed\n      expected violation pod-security-baseline/privileged, got none\n");
    expect(run.out).not.toContain("a correct expectation");
    expect(run.out).toMatch(/1 passed, 2 failed\n$/);
  });

  it("exits 2 when there is no PolicyTest to run", async () => {
    const run = await polity("policy", "test", at("examples/layers/global.yaml"));
    expect(run.code).toBe(2);
    expect(run.err).toMatch(/^error: no PolicyTest documents under .*global\.yaml\n$/);
  });
});

describe("polity import", () => {
  const POLICY = [
    "apiVersion: admissionregistration.k8s.io/v1",
    "kind: ValidatingAdmissionPolicy",
    "metadata: { name: replica-limit }",
    "spec:",
    "  paramKind: { apiVersion: v1, kind: ConfigMap }",
    "  matchConstraints:",
    "    resourceRules: [{ apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments] }]",
    "  validations:",
    "    - expression: object.spec.replicas <= int(params.data.maxReplicas)",
    "      messageExpression: \"'replicas must be no greater than ' + params.data.maxReplicas\"",
    "---",
    "apiVersion: admissionregistration.k8s.io/v1",
    "kind: ValidatingAdmissionPolicyBinding",
    "metadata: { name: replica-limit-prod }",
    "spec: { policyName: replica-limit, validationActions: [Deny], paramRef: { name: replica-limits, namespace: default } }",
    "---",
    "apiVersion: v1",
    "kind: ConfigMap",
    "metadata: { name: replica-limits, namespace: default }",
    'data: { maxReplicas: "5" }',
    "",
  ].join("\n");

  it("prints Polity policies that lint cleanly and decide as the bound policy, and exits 0", async () => {
    const run = await polity("import", "--owner", "platform-team", scratchFile("vap.yaml", POLICY));
    expect(run.code).toBe(0);
    expect(run.err).toBe("1 policy imported, 0 refusals\n");
    expect(run.out).toMatch(/^# from .*vap\.yaml\[0\]: ValidatingAdmissionPolicy replica-limit, binding replica-limit-prod\napiVersion: polity\.dev\/v1\nkind: Policy\n/);
    const imported = scratchFile("imported.yaml", run.out);
    expect((await polity("policy", "lint", imported)).out).toMatch(/no problems/);
    const big = scratchFile("big.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web, namespace: shop }\nspec: { replicas: 9 }\n");
    const decided = await polity("eval", "-p", imported, big);
    expect(decided.code).toBe(1);
    expect(decided.out).toContain("replicas must be no greater than 5");
  });

  it("refuses what it cannot express on standard error, prints the rest, and exits 1", async () => {
    const authz = [
      "apiVersion: admissionregistration.k8s.io/v1",
      "kind: ValidatingAdmissionPolicy",
      "metadata: { name: authz }",
      "spec:",
      "  matchConstraints: { resourceRules: [{ apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [pods] }] }",
      "  validations: [{ expression: \"authorizer.group('').resource('pods').check('create').allowed()\" }]",
      "",
    ].join("\n");
    const run = await polity("import", scratchFile("vap.yaml", POLICY), scratchFile("authz.yaml", authz));
    expect(run.code).toBe(1);
    expect(run.out).toContain("name: replica-limit-prod");
    expect(run.err).toMatch(/^not imported: .*authz\.yaml\[0\]: ValidatingAdmissionPolicy authz: spec\.validations\[0\]\.expression: type error at 1:1: the Kubernetes authorizer library is not available/m);
    expect(run.err).toMatch(/1 policy imported, 1 refusal\n$/);
  });
});

describe("help and usage", () => {
  const COMMANDS = ["eval", "import", "policy effective", "policy lint", "policy test"];

  it.each(["help", "--help", "-h"])("'polity %s' lists every command and exits 0", async (word) => {
    const run = await polity(word);
    expect(run.code).toBe(0);
    expect(run.err).toBe("");
    expect(run.out).toContain("Usage: polity <command> [flags]");
    for (const command of [...COMMANDS, "version"]) expect(run.out).toMatch(new RegExp(`^  ${command} +\\S`, "m"));
    expect(run.out).toContain("Exit status: 0 success, 1 a decision denied or a check failed, 2 bad usage or bad input.");
  });

  it.each(COMMANDS)("'polity %s --help' documents its usage, examples and exit status", async (command) => {
    for (const flag of ["--help", "-h"]) {
      const run = await polity(...command.split(" "), flag);
      expect(run.code).toBe(0);
      expect(run.err).toBe("");
      expect(run.out.startsWith(`Usage: polity ${command}`)).toBe(true);
      expect(run.out).toContain("Examples:\n  polity ");
      expect(run.out).toContain("Exit status: 0 ");
    }
  });

  it.each(COMMANDS)("'polity help %s' prints what '--help' prints", async (command) => {
    const viaHelp = await polity("help", ...command.split(" "));
    const viaFlag = await polity(...command.split(" "), "--help");
    expect(viaHelp.out).toBe(viaFlag.out);
  });

  it("'polity policy --help' lists the policy commands", async () => {
    const run = await polity("policy", "--help");
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/^Usage: polity policy <effective\|lint\|test\|render> \[flags\]\n/);
  });

  it("'polity audit --help' lists the audit commands in aligned columns and says how to learn more", async () => {
    const run = await polity("audit", "--help");
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/^Usage: polity audit <head\|verify\|proof\|check-proof\|search> \[flags\]\n\n/);
    const columns = run.out.split("\n").filter((line) => line.startsWith("  audit ")).map((line) => /^ {2}audit \S+ +/.exec(line)![0].length);
    expect(columns).toHaveLength(5);
    expect(new Set(columns).size).toBe(1);
    expect(run.out).toContain("'polity audit <subcommand> --help' shows its flags and examples.");
  });

  it("'polity audit search' refuses a bad time or kind before asking any hub", async () => {
    const time = await polity("audit", "search", "--since", "yesterday");
    expect(time).toMatchObject({ code: 2, out: "" });
    expect(time.err).toMatch(/^error: --since must be an RFC 3339 time \(2026-11-25T06:00:00Z\) or a date \(2026-11-25\), not "yesterday"\n/);
    const kind = await polity("audit", "search", "--kind", "layer.chnged");
    expect(kind).toMatchObject({ code: 2, out: "" });
    expect(kind.err).toMatch(/^error: kind "layer\.chnged" is not one of: layer\.changed, /);
  });

  it("'polity version' prints the package version", async () => {
    const pkg: unknown = JSON.parse(readFileSync(at("package.json"), "utf8"));
    const version = isRecord(pkg) ? pkg.version : undefined;
    expect(await polity("version")).toEqual({ code: 0, out: `polity ${String(version)}\n`, err: "" });
    expect((await polity("--version")).out).toBe(`polity ${String(version)}\n`);
  });

  it("an unknown command exits 2 and says how to get usage", async () => {
    for (const args of [["nope"], ["policy", "nope"], ["--bogus"]]) {
      const run = await polity(...args);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.out).toBe("");
      expect(run.err).toMatch(new RegExp(`^error: unknown command "${args.join(" ")}"\n`));
      expect(run.err).toContain("Run 'polity <command> --help' for a command's flags and examples.");
    }
  });

  it.each(COMMANDS)("an unknown flag of '%s' exits 2 and says how to get its usage", async (command) => {
    const run = await polity(...command.split(" "), "--bogus");
    expect(run.code).toBe(2);
    expect(run.out).toBe("");
    expect(run.err).toBe(`error: Unknown option '--bogus'\nrun 'polity ${command} --help' for usage\n`);
  });

  it("an unknown flag of 'version' is refused too", async () => {
    const run = await polity("version", "--bogus");
    expect(run.code).toBe(2);
    expect(run.err).toMatch(/^error: /);
  });

  it("a flag missing its value exits 2", async () => {
    const run = await polity("eval", "-o");
    expect(run.code).toBe(2);
    expect(run.err).toMatch(/^error: Option '-o, --output <value>' argument missing\nrun 'polity eval --help' for usage\n$/);
  });

  it("a missing command is a usage error on stderr", async () => {
    for (const args of [[], ["policy"]]) {
      const run = await polity(...args);
      expect(run.code).toBe(2);
      expect(run.out).toBe("");
      expect(run.err).toMatch(/^error: /);
    }
  });
});

describe("polity eval on the Pod Security fixtures", () => {
  const root = at("test/fixtures/pod-security");
  const cases = ["baseline", "restricted"].flatMap((level) =>
    readdirSync(join(root, level)).map((version) => ({ level, version, dir: join(root, level, version) })),
  );

  it.each(cases)("$level $version: allows every pass fixture and denies every fail fixture", async ({ level, version, dir }) => {
    const policy = `builtin:pod-security/${level}${version === "latest" ? "" : `@${version}`}`;
    const pass = await polity("eval", "-p", policy, "-o", "json", join(dir, "pass"));
    expect(pass.err).toBe("");
    expect(pass.code).toBe(0);
    const fail = await polity("eval", "-p", policy, "-o", "json", join(dir, "fail"));
    expect(fail.err).toBe("");
    expect(fail.code).toBe(1);
    const lines = fail.out.trim().split("\n").map((line) => JSON.parse(line) as { allowed: boolean; source: string });
    expect(lines.filter((line) => line.allowed).map((line) => line.source)).toEqual([]);
  });
});
