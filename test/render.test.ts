/**
 * `polity policy render`: what a cluster would receive, printed as kubectl would take it,
 * the policies that cannot be ValidatingAdmissionPolicies listed, and a cluster whose facts
 * cannot hold its intents refused with exit 1, naming the cluster, the intent and the field.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { main } from "../src/cli/main.js";
import type { Io } from "../src/cli/io.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const LAYERS = ["global", "region-eu-west", "cluster-eu-west-1"].flatMap((f, i) => ["--layer", `${["global", "region", "cluster"][i]}=${join(ROOT, `examples/layers/${f}.yaml`)}`]);
const EU_1 = [...LAYERS, "--labels", "env=prod", "--zones", "eu-west-1a,eu-west-1b", "--capacity", "cpu=96,memory=384Gi"];

async function polity(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io: Io = { out: (t) => void (out += t), err: (t) => void (err += t), tty: false, env: {} };
  return { code: await main(args, io), out, err };
}

describe("polity policy render", () => {
  it("prints the cluster's objects as YAML in apply order, and what cannot be a ValidatingAdmissionPolicy as comments", async () => {
    const run = await polity("policy", "render", ...EU_1);
    expect(run.err).toBe("");
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/^# cluster eu-west-1: \d+ objects, sha256:[0-9a-f]{64}\n/);
    expect(run.out).toContain("# not a ValidatingAdmissionPolicy: require-team-label: it has exceptions");
    const kinds = parseAllDocuments(run.out).map((d) => (d.toJSON() as { kind: string }).kind);
    expect(kinds[0]).toBe("CustomResourceDefinition");
    expect(kinds).toEqual(expect.arrayContaining(["NetworkPolicy", "ResourceQuota", "LimitRange", "ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "PolicyParams"]));
  });

  it("gives the same hash in JSON and in canonical bytes", async () => {
    const json = JSON.parse((await polity("policy", "render", ...EU_1, "-o", "json")).out) as { hash: string; problems: unknown[] };
    const yaml = await polity("policy", "render", ...EU_1);
    expect(yaml.out).toContain(json.hash);
    expect(json.problems).toEqual([]);
  });

  it("refuses, with exit 1, what the cluster's facts cannot hold: NetworkPolicy its plugin ignores, an old Kubernetes", async () => {
    const run = await polity("policy", "render", ...EU_1, "--network-policy", "ignored", "--kubernetes-version", "1.29");
    expect(run.code).toBe(1);
    expect(run.err.split("\n").filter((l) => l !== "")).toEqual([
      `polity: cluster "eu-west-1": intent "eu-residency": spec.generate.residency: its admission rule is a ValidatingAdmissionPolicy, which Kubernetes 1.29 does not serve (1.30 and later)`,
      `polity: cluster "eu-west-1": intent "payments-segmentation": spec.generate.network: the cluster's network plugin does not enforce NetworkPolicy: the segmentation would exist on paper only`,
    ]);
  });

  it("refuses facts that do not parse, with exit 2", async () => {
    const run = await polity("policy", "render", ...EU_1, "--kubernetes-version", "latest");
    expect(run.code).toBe(2);
    expect(run.err).toContain("kubernetesVersion: must be a Kubernetes version");
  });

  it("is listed by 'polity help', and its --help documents usage, examples and exit status", async () => {
    expect((await polity("help")).out).toMatch(/^ {2}policy render +\S/m);
    const run = await polity("policy", "render", "--help");
    expect(run.code).toBe(0);
    expect(run.out.startsWith("Usage: polity policy render")).toBe(true);
    expect(run.out).toContain("Examples:\n  polity ");
    expect(run.out).toContain("Exit status: 0 ");
  });
});
