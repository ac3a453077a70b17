/**
 * Bad input never gets a stack trace: every kind of it gets one clear line on stderr that
 * starts with "error:", and exit code 2 (bad usage or bad input); an expression that runs
 * away is stopped by its cost limit. Most cases run in-process through main(); standard
 * input and inputs deep enough to exhaust the stack run the real binary, in its own process.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { main } from "../src/cli/main.js";
import type { Io } from "../src/cli/io.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "bin/polity.js");
const POD = join(ROOT, "examples/resources/root-pod.yaml");
const BASELINE = ["-p", "builtin:pod-security/baseline"];
const MiB = 1024 * 1024;

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

/**
 * How the binary's standard input is connected: an OS pipe from another process
 * (`kubectl get -o yaml | polity eval -`), a redirected file (`< file`), or the socket
 * pair Node's child_process gives a child by default. Without one, it is /dev/null.
 */
interface Stdin {
  readonly via: "pipe" | "file" | "socket";
  readonly content: string | Buffer;
}

let stdinFiles = 0;
const SIGNAL_EXIT: Readonly<Record<string, number>> = { SIGABRT: 134, SIGKILL: 137, SIGSEGV: 139, SIGTERM: 143 };

/**
 * Runs the built binary in its own process, so that an input which exhausts the stack or
 * aborts V8 cannot take the test worker with it. A process killed by a signal reports
 * 128 + its number, as a shell does.
 */
function spawnPolity(args: readonly string[], stdin?: Stdin): Promise<Run> {
  const env = { ...process.env, NO_COLOR: "1", POLITY_DEBUG: "" };
  let child: ChildProcess;
  let fd: number | undefined;
  if (stdin?.via === "pipe") {
    const path = scratchFile(`stdin-${++stdinFiles}`, stdin.content);
    child = spawn("/bin/sh", ["-c", 'input="$1"; shift; cat "$input" | "$@"', "sh", path, process.execPath, BIN, ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  } else if (stdin?.via === "file") {
    fd = openSync(scratchFile(`stdin-${++stdinFiles}`, stdin.content), "r");
    child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: [fd, "pipe", "pipe"] });
  } else {
    child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: [stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    child.stdin?.on("error", () => {});
    child.stdin?.end(stdin?.content);
  }
  if (fd !== undefined) closeSync(fd);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on("data", (chunk: Buffer) => out.push(chunk));
  child.stderr?.on("data", (chunk: Buffer) => err.push(chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (status, signal) => {
      clearTimeout(timer);
      const code = status ?? (signal === null ? -1 : (SIGNAL_EXIT[signal] ?? 128));
      resolve({ code, out: Buffer.concat(out).toString("utf8"), err: Buffer.concat(err).toString("utf8") });
    });
  });
}

const piped = (content: string | Buffer): Stdin => ({ via: "pipe", content });

/** Exit 2 and exactly one "error:" line on stderr, first, matching `message`; no stack trace, no internal error. */
function expectOneError(run: Run, message: RegExp): void {
  const seen = `exit ${run.code}, stdout ${JSON.stringify(run.out.slice(0, 200))}, stderr ${JSON.stringify(run.err.slice(0, 400))}`;
  expect(run.err, "no stack trace").not.toMatch(/^ {4}at /m);
  expect(run.err).not.toContain("internal error");
  expect(run.err).not.toMatch(/RangeError|TypeError|Maximum call stack/);
  expect(run.err.startsWith("error: "), seen).toBe(true);
  expect(run.err.split("\n").filter((line) => line.startsWith("error:")), seen).toHaveLength(1);
  expect(run.err.split("\n")[0]).toMatch(message);
  expect(run.code, seen).toBe(2);
}

let scratch: string;
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "polity-bad-input-"));
});
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

/** Writes a file in the test's temporary folder and returns its path. */
function scratchFile(name: string, content: string | Buffer): string {
  const path = join(scratch, name);
  writeFileSync(path, content);
  return path;
}

const policyFile = (name: string, spec: string): string =>
  scratchFile(name, `apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: p, owner: team-a }\nspec:\n  domain: workload-security\n${spec}`);

/** Bytes that are not UTF-8 (0xFF never is), from a fixed seed so that failures reproduce. */
function garbage(length: number): Buffer {
  const bytes = Buffer.alloc(length);
  let state = 42;
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    bytes[i] = state >>> 24;
  }
  bytes[0] = 0xff;
  return bytes;
}

const nestedArraysJson = (depth: number): string => `${"[".repeat(depth)}${"]".repeat(depth)}\n`;
const nestedBlockSequenceYaml = (depth: number): string => `${"- ".repeat(depth)}x\n`;

const ADMISSION_POD = {
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: "web", namespace: "shop" },
  spec: { containers: [{ name: "web", image: "nginx:1.27", securityContext: { privileged: true } }] },
};

function admissionReview(overrides: Record<string, unknown> = {}, request: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "6f1c4a8e-2b7d-4e55-9b1a-0c3d2e4f5a6b",
      kind: { group: "", version: "v1", kind: "Pod" },
      resource: { group: "", version: "v1", resource: "pods" },
      name: "web",
      namespace: "shop",
      operation: "CREATE",
      userInfo: { username: "alice" },
      object: ADMISSION_POD,
      oldObject: null,
      ...request,
    },
    ...overrides,
  });
}

describe("bad resource files given to polity eval", () => {
  it("malformed YAML: where it breaks and why", async () => {
    const file = scratchFile("broken.yaml", "apiVersion: v1\nkind: Pod\nmetadata: [name: web\n  namespace: shop\n");
    expectOneError(await polity("eval", ...BASELINE, file), /^error: .*broken\.yaml:\d+:\d+: not valid YAML or JSON: \S/);
  });

  it("malformed JSON: where it breaks and why", async () => {
    const file = scratchFile("broken.json", '{"apiVersion": "v1", "kind": "Pod",, "metadata": {}}');
    expectOneError(await polity("eval", ...BASELINE, file), /^error: .*broken\.json:1:\d+: not valid YAML or JSON: \S/);
  });

  it("duplicate keys, which would make the document ambiguous", async () => {
    const file = scratchFile("duplicate.yaml", "apiVersion: v1\nkind: Pod\nkind: Deployment\nmetadata: { name: web }\n");
    expectOneError(await polity("eval", ...BASELINE, file), /^error: .*duplicate\.yaml:3:1: not valid YAML or JSON: Map keys must be unique/);
  });

  it("a YAML alias bomb, refused before it expands", async () => {
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (const [name, previous] of [["b", "a"], ["c", "b"], ["d", "c"], ["e", "d"], ["f", "e"], ["g", "f"], ["h", "g"]] as const) {
      lines.push(`${name}: &${name} [${Array(9).fill(`*${previous}`).join(",")}]`);
    }
    const file = scratchFile("bomb.yaml", `${lines.join("\n")}\n`);
    expectOneError(await polity("eval", ...BASELINE, file), /^error: .*bomb\.yaml:1:1: not valid YAML or JSON: Excessive alias count/);
  });

  it("a file larger than 16 MiB: the size and the limit", async () => {
    const file = scratchFile("large.json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"x":"${"a".repeat(16 * MiB)}"}}`);
    expectOneError(await polity("eval", ...BASELINE, file), /^error: .*large\.json: \d+ bytes is over the limit of 16777216 bytes \(16 MiB\)$/);
  });

  it("nesting deeper than 100 levels that does not exhaust the stack: the nesting limit", async () => {
    const file = scratchFile("nested-150.json", nestedArraysJson(150));
    expectOneError(await polity("eval", ...BASELINE, file), /^error: .*nested-150\.json:1:1: input is nested more than 100 levels deep$/);
  });

  it("binary garbage in a file: not text", async () => {
    const file = scratchFile("garbage.yaml", garbage(4096));
    expectOneError(await polity("eval", ...BASELINE, file), /^error: .*garbage\.yaml: input is not UTF-8 text \(binary data\?\)$/);
  });

  it("a NUL byte in otherwise valid text: binary data", async () => {
    const file = scratchFile("nul.yaml", "apiVersion: v1\nkind: Pod\u0000\n");
    expectOneError(await polity("eval", ...BASELINE, file), /^error: .*nul\.yaml: input contains a NUL character/);
  });

  it("an empty file: nothing to decide", async () => {
    const file = scratchFile("empty.yaml", "");
    expectOneError(await polity("eval", ...BASELINE, file), /^error: .*empty\.yaml: /);
  });

  it("a file of only comments and separators: nothing to decide", async () => {
    const file = scratchFile("comments.yaml", "# nothing here\n---\n---\n");
    expectOneError(await polity("eval", ...BASELINE, file), /^error: .*comments\.yaml: /);
  });

  it.each([
    ["a list", "list.yaml", "- apiVersion: v1\n  kind: Pod\n"],
    ["a string", "string.yaml", "just some text\n"],
    ["a number", "number.json", "42\n"],
  ])("a document that is %s, not a map", async (_what, name, text) => {
    const file = scratchFile(name, text);
    expectOneError(await polity("eval", ...BASELINE, file), new RegExp(`^error: .*${name.replace(".", "\\.")}\\[0\\]: a resource must be a map with apiVersion, kind and metadata$`));
  });

  it("a map without apiVersion and kind", async () => {
    const file = scratchFile("no-kind.yaml", "metadata: { name: web }\n");
    expectOneError(await polity("eval", ...BASELINE, file), /^error: .*no-kind\.yaml\[0\]: a resource needs apiVersion and kind$/);
  });

  it("a file that does not exist", async () => {
    expectOneError(await polity("eval", ...BASELINE, join(scratch, "missing.yaml")), /^error: .*no such file or folder: .*missing\.yaml$/);
  });
});

describe("bad AdmissionReviews given to polity eval", () => {
  it("a well-formed review is decided (the baseline of the cases below)", async () => {
    const run = await polity("eval", ...BASELINE, "-o", "json", scratchFile("review.json", admissionReview()));
    expect(run.err).toBe("");
    expect(run.code).toBe(1);
  });

  it.each([
    ["the wrong apiVersion", admissionReview({ apiVersion: "admission.k8s.io/v1beta1" }), /apiVersion must be "admission\.k8s\.io\/v1", got "admission\.k8s\.io\/v1beta1" \(register the webhook with admissionReviewVersions: \["v1"\]\)$/],
    ["no apiVersion", admissionReview({ apiVersion: undefined }), /apiVersion must be "admission\.k8s\.io\/v1", got undefined/],
    ["a missing uid", admissionReview({}, { uid: undefined }), /request\.uid: must be a non-empty string$/],
    ["an empty uid", admissionReview({}, { uid: "" }), /request\.uid: must be a non-empty string$/],
    ["no request", admissionReview({ request: undefined }), /request: is required \(an AdmissionRequest object\)$/],
    ["a null request", admissionReview({ request: null }), /request: is required/],
    ["an unknown operation", admissionReview({}, { operation: "PATCH" }), /request\.operation: must be one of CREATE, UPDATE, DELETE, CONNECT, got "PATCH"$/],
    ["a CREATE without its object", admissionReview({}, { object: null }), /request\.object: a CREATE request carries the object$/],
    ["an object that is a string", admissionReview({}, { object: "pod" }), /request\.object: must be an object or null$/],
    ["a kind that is a string", admissionReview({}, { kind: "Pod" }), /request\.kind: must be \{group, version, kind\} strings$/],
  ])("%s", async (_what, text, message) => {
    const file = scratchFile("bad-review.json", text);
    expectOneError(await polity("eval", ...BASELINE, file), new RegExp(`^error: .*bad-review\\.json\\[0\\]: ${message.source}`));
  });
});

describe("bad policies", () => {
  it("malformed YAML in a policy file", async () => {
    const file = scratchFile("broken-policy.yaml", "apiVersion: polity.dev/v1\nkind: Policy\nspec: { match: [\n");
    expectOneError(await polity("eval", "-p", file, POD), /^error: .*broken-policy\.yaml:\d+:\d+: not valid YAML or JSON: \S/);
  });

  it("a wrong type: the field path, what was expected and what was found", async () => {
    const file = policyFile("wrong-type.yaml", "  match: { kinds: [Pod] }\n  locked: \"yes\"\n  validations: [{ expression: \"true\" }]\n");
    expectOneError(await polity("eval", "-p", file, POD), /^error: .*wrong-type\.yaml:7:11: spec\.locked: expected true or false, got the string "yes"$/);
  });

  it("an unknown field: its path", async () => {
    const file = policyFile("unknown-field.yaml", "  match: { kinds: [Pod] }\n  validations: [{ expression: \"true\", severity: high }]\n");
    expectOneError(await polity("eval", "-p", file, POD), /^error: .*unknown-field\.yaml:7:\d+: spec\.validations\[0\]\.severity: unknown field$/);
  });

  it("a list where a map belongs", async () => {
    const file = policyFile("list-for-map.yaml", "  match: [Pod]\n  validations: [{ expression: \"true\" }]\n");
    expectOneError(await polity("eval", "-p", file, POD), /^error: .*list-for-map\.yaml:6:\d+: spec\.match: /);
  });

  it("a policy document that is not a map", async () => {
    const file = scratchFile("list-policy.yaml", "- kind: Policy\n");
    expectOneError(await polity("eval", "-p", file, POD), /^error: .*list-policy\.yaml:1:1: expected a document \(a map with apiVersion and kind\), got a list$/);
  });

  it("invalid CEL: the policy, the rule and the position in the expression, then the expression itself", async () => {
    const file = policyFile("bad-cel.yaml", "  match: { kinds: [Pod] }\n  validations:\n    - name: r\n      expression: \"object.spec.containers.all(c, c.image ==)\"\n");
    const run = await polity("eval", "-p", file, POD);
    expectOneError(run, /^error: .*bad-cel\.yaml:9:19: spec\.validations\[0\]\.expression: policy "p", rule "r": syntax error at 1:41: /);
    expect(run.err.split("\n").slice(1, 3)).toEqual(["  | object.spec.containers.all(c, c.image ==)", `  | ${" ".repeat(40)}^`]);
  });

  it("a rule that is not a bool", async () => {
    const file = policyFile("not-bool.yaml", "  match: { kinds: [Pod] }\n  validations:\n    - name: r\n      expression: \"1 + 2\"\n");
    expectOneError(await polity("eval", "-p", file, POD), /^error: .*not-bool\.yaml:9:19: spec\.validations\[0\]\.expression: policy "p", rule "r": must evaluate to a bool, but evaluates to int$/);
  });

  it("a rule whose type is known only when it runs: a violation saying it is not a bool, not a crash", async () => {
    const file = policyFile("dyn-not-bool.yaml", "  match: { kinds: [Pod] }\n  validations: [{ name: r, expression: \"object.metadata.name\" }]\n");
    const run = await polity("eval", "-p", file, "-o", "json", POD);
    expect(run.err).toBe("");
    expect(run.code).toBe(1);
    expect(JSON.parse(run.out)).toMatchObject({ violations: [{ rule: "r", message: 'rule must evaluate to a bool, but evaluated to "debug"' }] });
  });

  it("a file of Policy given where resources are expected is judged as a resource, not crashed on", async () => {
    const run = await polity("eval", ...BASELINE, policyFile("policy-as-input.yaml", "  match: { kinds: [Pod] }\n"));
    expect(run.err).toBe("");
    expect(run.code).toBe(0);
  });
});

describe("a runaway expression", () => {
  // A quadratic comprehension passes the estimate (lists from the request are taken to hold
  // 100 items), but over 2,000 items it is 4e6 steps: only the cost limit ends it.
  const runaway = (enforcement: string, failurePolicy = "Fail", expression = "object.data.items.all(a, object.data.items.all(b, a + b != 'zzz'))") =>
    policyFile(
      `runaway-${enforcement}-${failurePolicy}.yaml`,
      [
        "  match: { kinds: [ConfigMap] }",
        `  failurePolicy: ${failurePolicy}`,
        "  validations:",
        "    - name: pairs",
        `      expression: "${expression}"`,
        `  enforcement: ${enforcement}`,
        "",
      ].join("\n"),
    );
  const input = (): string =>
    scratchFile(
      "many-items.json",
      JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "many", namespace: "shop" }, data: { items: Array.from({ length: 2000 }, (_, i) => `item-${i}`) } }),
    );

  it("is stopped by the cost limit and, for a deny policy, denies with the reason", { timeout: 15_000 }, async () => {
    const started = Date.now();
    const run = await polity("eval", "-p", runaway("deny"), "-o", "json", input());
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(run.err).toBe("");
    expect(run.code).toBe(1);
    const line: unknown = JSON.parse(run.out);
    expect(line).toMatchObject({
      allowed: false,
      violations: [{ policy: "p", rule: "pairs", enforcement: "deny", message: expect.stringMatching(/^rule could not be evaluated: evaluation exceeded its cost limit of \d+$/) }],
    });
  });

  it("is refused before it runs when it is built to be slow: a cubic comprehension over the request", async () => {
    const cubic = runaway("deny", "Fail", "object.data.items.all(a, object.data.items.all(b, object.data.items.all(c, a + b + c != 'zzz')))");
    const run = await polity("eval", "-p", cubic, "-o", "json", input());
    expect(run.code).toBe(2);
    expect(run.err).toMatch(/rule "pairs": too costly at 1:1: its estimated cost, \d+, is over the limit of 1000000 for one evaluation/);
  });

  it("with failurePolicy Ignore, is skipped and the request allowed", { timeout: 15_000 }, async () => {
    const run = await polity("eval", "-p", runaway("deny", "Ignore"), "-o", "json", input());
    expect(run.code).toBe(0);
    expect(JSON.parse(run.out)).toMatchObject({ allowed: true, violations: [] });
  });
});

// Each case is a process of its own; they run side by side.
describe.concurrent("the real binary, reading standard input and inputs that exhaust the stack", () => {
  beforeAll(() => {
    const buildError = inject("distBuildError");
    if (buildError !== null) throw new Error(buildError);
  });

  it("reads resources piped to standard input with -", async () => {
    const run = await spawnPolity(["eval", ...BASELINE, "-q", "-"], piped(readFileSync(POD)));
    expect(run.err).toBe("");
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/^<stdin>\[0\] Pod shop\/debug: DENIED\n/);
    expect(run.out).toMatch(/1 document: 0 allowed, 1 denied\n$/);
  });

  it("reads standard input redirected from a file", async () => {
    const run = await spawnPolity(["eval", ...BASELINE, "-q", "-"], { via: "file", content: readFileSync(POD) });
    expect(run.err).toBe("");
    expect(run.code).toBe(1);
  });

  it("reads standard input when it is a socket, as Node's child_process gives it", async () => {
    const run = await spawnPolity(["eval", ...BASELINE, "-q", "-"], { via: "socket", content: readFileSync(POD) });
    expect(run.err).toBe("");
    expect(run.code).toBe(1);
  });

  it("decides a piped AdmissionReview and prints its response", async () => {
    const run = await spawnPolity(["eval", ...BASELINE, "-o", "json", "-"], piped(admissionReview()));
    expect(run.err).toBe("");
    expect(run.code).toBe(1);
    const line: unknown = JSON.parse(run.out);
    expect(line).toMatchObject({
      source: "<stdin>",
      kind: "Pod",
      namespace: "shop",
      name: "web",
      allowed: false,
      review: {
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: { uid: "6f1c4a8e-2b7d-4e55-9b1a-0c3d2e4f5a6b", allowed: false, status: { code: 403, reason: "Forbidden" } },
      },
    });
  });

  it("refuses binary garbage on standard input", async () => {
    expectOneError(await spawnPolity(["eval", ...BASELINE, "-"], piped(garbage(64 * 1024))), /^error: <stdin>: input is not UTF-8 text \(binary data\?\)$/);
  });

  it("refuses more than 16 MiB on standard input", async () => {
    expectOneError(await spawnPolity(["eval", ...BASELINE, "-"], piped("a".repeat(16 * MiB + 1))), /^error: .*standard input is larger than 16777216 bytes \(16 MiB\)$/);
  });

  it("refuses empty standard input", async () => {
    expectOneError(await spawnPolity(["eval", ...BASELINE, "-"], piped("")), /^error: <stdin>: /);
  });

  const DEEP: [string, string, string][] = [
    ["10,000 nested JSON arrays", "deep.json", nestedArraysJson(10_000)],
    ["10,000 nested YAML flow sequences", "deep-flow.yaml", nestedArraysJson(10_000)],
    ["10,000 nested YAML block sequences", "deep-block.yaml", nestedBlockSequenceYaml(10_000)],
  ];
  /** One process per input, shared by the tests that look at its outcome. */
  const deepRuns = new Map<string, Promise<Run>>();
  const deepRun = (name: string, text: string): Promise<Run> => {
    let run = deepRuns.get(name);
    if (run === undefined) deepRuns.set(name, (run = spawnPolity(["eval", ...BASELINE, scratchFile(name, text)])));
    return run;
  };

  it.each(DEEP)("%s: exit 2 and one error line, no stack overflow, no crash", async (_what, name, text) => {
    const run = await deepRun(name, text);
    expect(run.code, run.err).toBe(2);
    expect(run.err.startsWith("error: "), run.err).toBe(true);
    expect(run.err.trimEnd().split("\n"), run.err).toHaveLength(1);
    expect(run.err).not.toMatch(/^ {4}at /m);
    expect(run.err).not.toContain("internal error");
  });

  it.each(DEEP)("%s: the message names the nesting limit", async (_what, name, text) => {
    expectOneError(await deepRun(name, text), /nested/);
  });

  it("deep JSON then deep YAML in one run: two error lines", async () => {
    const json = scratchFile("deep-first.json", nestedArraysJson(10_000));
    const yaml = scratchFile("deep-second.yaml", nestedBlockSequenceYaml(10_000));
    const run = await spawnPolity(["eval", ...BASELINE, json, yaml]);
    expect(run.err).not.toContain("FATAL ERROR");
    expect(run.code).toBe(2);
    expect(run.err.split("\n").filter((line) => line.startsWith("error:"))).toHaveLength(2);
  });
});
