/**
 * The built-in Pod Security Standards give Pod Security Admission's verdict.
 *
 * The fixtures under test/fixtures/pod-security follow upstream's scheme (see the README
 * there): pods built from the minimal valid pod of a level and version, each changed in one
 * way, with the check expected to refuse it written in a `# expect:` header. The message
 * table below pins upstream's exact wording (k8s.io/pod-security-admission, policy/check_*.go).
 */
import { statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { evaluate, type Decision } from "../src/decision/evaluate.js";
import { requestForResource, type AdmissionRequest } from "../src/decision/request.js";
import { effectivePolicySet, type EffectivePolicySet } from "../src/layering/effective.js";
import { builtinPolicyDocument } from "../src/policy/library/index.js";
import { buildLayer } from "../src/policy/layer.js";
import { listDocumentFiles, readInput } from "../src/files/read.js";
import { parseDocuments } from "../src/source/parse.js";

type Level = "baseline" | "restricted";
const LEVELS: readonly Level[] = ["baseline", "restricted"];

/** Policy versions at which some check changes (upstream policy/check_*.go MinimumVersion), oldest first. */
const VERSION_DIRS = ["v1.0", "v1.8", "v1.19", "v1.22", "v1.23", "v1.25", "v1.27", "v1.29", "v1.31", "v1.32", "v1.34", "v1.35", "v1.37", "latest"] as const;
/** The newest policy version: what `latest` means (master / release-1.37). */
const NEWEST_MINOR = 37;

const FIXTURES = join(fileURLToPath(new URL(".", import.meta.url)), "fixtures", "pod-security");

// ---- deciding ------------------------------------------------------------------------------

const sets = new Map<string, EffectivePolicySet>();

/** The effective policy set holding only `pod-security/<level>` at a version (`latest`, `v1.N`). */
function policySet(level: Level, version: string): EffectivePolicySet {
  const reference = `builtin:pod-security/${level}${version === "latest" ? "" : `@${version}`}`;
  let set = sets.get(reference);
  if (set === undefined) {
    const doc = builtinPolicyDocument(reference);
    if (typeof doc === "string") throw new Error(doc);
    const layer = buildLayer([{ file: "builtin", index: 0, value: doc, locate: () => ({ file: "builtin", line: 0, column: 0 }) }], { tier: "global" });
    set = effectivePolicySet([layer], { name: "local", region: "local", labels: {} });
    sets.set(reference, set);
  }
  return set;
}

function decideRequest(level: Level, version: string, request: AdmissionRequest): Decision {
  return evaluate(policySet(level, version), request, { now: Date.UTC(2026, 0, 1) });
}

/** The decision on creating `object` in a namespace enforcing `level` at `version`. */
function decide(level: Level, version: string, object: unknown): Decision {
  return decideRequest(level, version, requestForResource(object));
}

const rules = (d: Decision) => d.violations.map((v) => v.rule);
const report = (d: Decision) => d.violations.map((v) => `${v.rule}: ${v.message}`);

// ---- fixtures ------------------------------------------------------------------------------

interface Fixture {
  readonly level: Level;
  readonly dir: (typeof VERSION_DIRS)[number];
  readonly outcome: "pass" | "fail";
  /** Path below test/fixtures/pod-security, for test names. */
  readonly path: string;
  readonly pods: readonly unknown[];
  /** `# expect:` the checks that refuse the pod, in upstream's order. */
  readonly expect: readonly string[];
  /** `# relaxed-at:` the minor version from which the expected checks no longer refuse the pod. */
  readonly relaxedAt: number | undefined;
  /** `# skip-cross-level:` why the comparison with the other level does not hold. */
  readonly skipCrossLevel: string | undefined;
}

const minorOf = (dir: string) => (dir === "latest" ? NEWEST_MINOR : Number(dir.slice("v1.".length)));

function header(text: string, key: string): string | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith("#")) break;
    const m = /^#\s*([a-z-]+):\s*(.*)$/.exec(line);
    if (m !== null && m[1] === key) return (m[2] ?? "").trim();
  }
  return undefined;
}

function loadFixtures(): Fixture[] {
  const out: Fixture[] = [];
  for (const level of LEVELS) {
    for (const dir of VERSION_DIRS) {
      for (const outcome of ["pass", "fail"] as const) {
        const folder = join(FIXTURES, level, dir, outcome);
        if (!statSync(folder, { throwIfNoEntry: false })?.isDirectory()) continue;
        for (const file of listDocumentFiles(folder)) {
          const text = readInput(file);
          const relaxed = header(text, "relaxed-at");
          out.push({
            level,
            dir,
            outcome,
            path: relative(FIXTURES, file),
            pods: parseDocuments(text, file).map((d) => d.value),
            expect: (header(text, "expect") ?? "").split(",").map((s) => s.trim()).filter((s) => s !== ""),
            relaxedAt: relaxed === undefined ? undefined : minorOf(relaxed),
            skipCrossLevel: header(text, "skip-cross-level"),
          });
        }
      }
    }
  }
  return out;
}

const fixtures = loadFixtures();

/** The policy versions a fixture directory stands for: every minor up to the next directory. */
function versionsOf(dir: string): string[] {
  if (dir === "latest") return ["latest", "v1.99"];
  const i = VERSION_DIRS.indexOf(dir as (typeof VERSION_DIRS)[number]);
  const next = VERSION_DIRS[i + 1];
  const end = next === undefined || next === "latest" ? NEWEST_MINOR + 1 : minorOf(next);
  const out: string[] = [];
  for (let m = minorOf(dir); m < end; m++) out.push(`v1.${m}`);
  return out;
}

/** Every minor version after a fixture directory's range, and `latest`. */
function laterVersions(dir: string): string[] {
  if (dir === "latest") return [];
  const own = versionsOf(dir);
  const out: string[] = [];
  for (let m = minorOf(own[own.length - 1] ?? dir) + 1; m <= NEWEST_MINOR; m++) out.push(`v1.${m}`);
  return [...out, "latest"];
}

/** Restricted checks that replace a baseline check, from a minor version on (upstream OverrideCheckIDs). */
const OVERRIDES: Readonly<Record<string, { by: string; from: number }>> = {
  hostPathVolumes: { by: "restrictedVolumes", from: 0 },
  seccompProfile_baseline: { by: "seccompProfile_restricted", from: 19 },
  capabilities_baseline: { by: "capabilities_restricted", from: 22 },
  procMount: { by: "procMount_restricted", from: 35 },
};

/** The check that reports a baseline check's finding at a level and version. */
function reportedAs(check: string, level: Level, minor: number): string {
  const o = OVERRIDES[check];
  return level === "restricted" && o !== undefined && minor >= o.from ? o.by : check;
}

describe("pod-security fixtures", () => {
  it("has pass and fail pods for every level at every version where a check changes", () => {
    for (const level of LEVELS) {
      for (const dir of VERSION_DIRS) {
        const here = fixtures.filter((f) => f.level === level && f.dir === dir);
        expect(here.some((f) => f.outcome === "pass"), `${level}/${dir}/pass`).toBe(true);
        expect(here.some((f) => f.outcome === "fail"), `${level}/${dir}/fail`).toBe(true);
      }
    }
    for (const f of fixtures) {
      if (f.outcome === "fail") expect(f.expect.length, `${f.path} needs an # expect: header`).toBeGreaterThan(0);
      else expect(f.expect, `${f.path} is a pass fixture`).toEqual([]);
      expect(f.pods.length, f.path).toBeGreaterThan(0);
    }
  });

  for (const level of LEVELS) {
    for (const dir of VERSION_DIRS) {
      describe(`${level} ${dir}`, () => {
        for (const f of fixtures.filter((x) => x.level === level && x.dir === dir)) {
          if (f.outcome === "pass") {
            it(`allows ${f.path}`, () => {
              for (const pod of f.pods) {
                for (const version of versionsOf(dir)) {
                  const d = decide(level, version, pod);
                  expect(report(d), `${level}@${version}`).toEqual([]);
                  expect(d.allowed).toBe(true);
                }
              }
            });
          } else {
            it(`refuses ${f.path} with ${f.expect.join(", ")}`, () => {
              for (const pod of f.pods) {
                for (const version of versionsOf(dir)) {
                  const d = decide(level, version, pod);
                  expect(rules(d), `${level}@${version}: ${report(d).join("; ")}`).toEqual(f.expect);
                  expect(d.allowed).toBe(false);
                }
              }
            });
            it(`${f.path}: later versions refuse it too${f.relaxedAt === undefined ? "" : `, until v1.${f.relaxedAt} relaxes the check`}`, () => {
              for (const pod of f.pods) {
                for (const version of laterVersions(dir)) {
                  const minor = minorOf(version);
                  const d = decide(level, version, pod);
                  if (f.relaxedAt !== undefined && minor >= f.relaxedAt) {
                    for (const check of f.expect) expect(rules(d), `${level}@${version}`).not.toContain(check);
                    if (level === "baseline") expect(d.allowed, `${level}@${version}`).toBe(true);
                  } else {
                    expect(d.allowed, `${level}@${version}`).toBe(false);
                    for (const check of f.expect) expect(rules(d), `${level}@${version}`).toContain(reportedAs(check, level, minor));
                  }
                }
              }
            });
          }
          if (f.skipCrossLevel === undefined && level === "baseline" && f.outcome === "fail") {
            it(`${f.path}: restricted refuses what baseline refuses`, () => {
              for (const pod of f.pods) {
                for (const version of versionsOf(dir)) {
                  const d = decide("restricted", version, pod);
                  expect(d.allowed, `restricted@${version}`).toBe(false);
                  for (const check of f.expect) expect(rules(d), `restricted@${version}`).toContain(reportedAs(check, "restricted", minorOf(version)));
                }
              }
            });
          }
          if (f.skipCrossLevel === undefined && level === "restricted" && f.outcome === "pass") {
            it(`${f.path}: baseline allows what restricted allows`, () => {
              for (const pod of f.pods) {
                for (const version of versionsOf(dir)) expect(report(decide("baseline", version, pod)), `baseline@${version}`).toEqual([]);
              }
            });
          }
        }
      });
    }
  }
});

// ---- exact messages ------------------------------------------------------------------------

type Obj = Record<string, unknown>;

/** A pod named `x` with the given spec and, optionally, annotations. */
function pod(spec: Obj, annotations?: Record<string, string>): Obj {
  return { apiVersion: "v1", kind: "Pod", metadata: { name: "x", ...(annotations === undefined ? {} : { annotations }) }, spec };
}
/** A container that meets every restricted requirement at the container level (v1.22+). */
function ok(name: string, securityContext: Obj = {}, extra: Obj = {}): Obj {
  return { name, image: "registry.k8s.io/pause", ...extra, securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, ...securityContext } };
}
/** A container with nothing set. */
function bare(name: string, extra: Obj = {}): Obj {
  return { name, image: "registry.k8s.io/pause", ...extra };
}
/** The pod security context restricted needs (v1.19+). */
const RESTRICTED_POD_SC: Obj = { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } };

interface MessageCase {
  readonly name: string;
  readonly level: Level;
  readonly version: string;
  readonly pod: Obj;
  /** `[check ID, message]`, in the order upstream reports them. */
  readonly violations: readonly (readonly [string, string])[];
  readonly bug?: string;
}

const AA = "container.apparmor.security.beta.kubernetes.io/";
const SC = "container.seccomp.security.alpha.kubernetes.io/";

const MESSAGES: readonly MessageCase[] = [
  {
    name: "hostNamespaces lists the namespaces in a fixed order",
    level: "baseline",
    version: "latest",
    pod: pod({ hostIPC: true, hostPID: true, hostNetwork: true, containers: [bare("a")] }),
    violations: [["hostNamespaces", "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)"]],
  },
  {
    name: "privileged names containers in visit order: init, regular, ephemeral",
    level: "baseline",
    version: "latest",
    pod: pod({
      initContainers: [bare("z", { securityContext: { privileged: true } })],
      containers: [bare("a", { securityContext: { privileged: true } }), bare("b", { securityContext: { privileged: false } })],
      ephemeralContainers: [bare("m", { securityContext: { privileged: true } })],
    }),
    violations: [["privileged", 'privileged (containers "z", "a", "m" must not set securityContext.privileged=true)']],
  },
  {
    name: "capabilities_baseline lists each container once and the capabilities as a sorted set",
    level: "baseline",
    version: "latest",
    pod: pod({
      containers: [
        bare("a", { securityContext: { capabilities: { add: ["FOO", "BAR", "CHOWN"] } } }),
        bare("b", { securityContext: { capabilities: { add: ["BAZ", "FOO"] } } }),
        bare("c", { securityContext: { capabilities: { add: ["CHOWN"], drop: ["ALL"] } } }),
      ],
    }),
    violations: [["capabilities_baseline", 'non-default capabilities (containers "a", "b" must not include "BAR", "BAZ", "FOO" in securityContext.capabilities.add)']],
  },
  {
    name: "hostPathVolumes names the volumes in spec order",
    level: "baseline",
    version: "latest",
    pod: pod({
      containers: [bare("a")],
      volumes: [
        { name: "b", hostPath: { path: "/b" } },
        { name: "e", emptyDir: {} },
        { name: "a", hostPath: { path: "/a" } },
      ],
    }),
    violations: [["hostPathVolumes", 'hostPath volumes (volumes "b", "a")']],
  },
  {
    name: "hostPathVolumes, one volume",
    level: "baseline",
    version: "v1.0",
    pod: pod({ containers: [bare("a")], volumes: [{ name: "a", hostPath: { path: "/a" } }] }),
    violations: [["hostPathVolumes", 'hostPath volumes (volume "a")']],
  },
  {
    name: "hostPorts, one container and one port",
    level: "baseline",
    version: "latest",
    pod: pod({ containers: [bare("a", { ports: [{ containerPort: 80, hostPort: 8080 }] })] }),
    violations: [["hostPorts", 'hostPort (container "a" uses hostPort 8080)']],
  },
  {
    name: "hostPorts sorts the ports as strings and drops duplicates",
    level: "baseline",
    version: "latest",
    pod: pod({
      initContainers: [bare("b", { ports: [{ containerPort: 80, hostPort: 8080 }] })],
      containers: [bare("a", { ports: [{ containerPort: 81, hostPort: 10000 }, { containerPort: 9090 }, { containerPort: 82, hostPort: 8080 }] })],
    }),
    violations: [["hostPorts", 'hostPort (containers "b", "a" use hostPorts 10000, 8080)']],
  },
  {
    name: "appArmorProfile, the pod field",
    level: "baseline",
    version: "latest",
    pod: pod({ securityContext: { appArmorProfile: { type: "Unconfined" } }, containers: [bare("a")] }),
    violations: [["appArmorProfile", 'forbidden AppArmor profile (pod must not set AppArmor profile type to "Unconfined")']],
  },
  {
    name: "appArmorProfile, a container field",
    level: "baseline",
    version: "v1.0",
    pod: pod({ containers: [bare("foo", { securityContext: { appArmorProfile: { type: "Unconfined" } } })] }),
    violations: [["appArmorProfile", 'forbidden AppArmor profile (container "foo" must not set AppArmor profile type to "Unconfined")']],
  },
  {
    name: "appArmorProfile quotes each annotation as key=%q inside the quoted list",
    level: "baseline",
    version: "latest",
    pod: pod({ containers: [bare("a")] }, { [`${AA}f`]: "unknown", [`${AA}e`]: "unconfined", [AA]: "bogus", [`${AA}g`]: "runtime/default", [`${AA}h`]: "localhost/" }),
    violations: [
      [
        "appArmorProfile",
        `forbidden AppArmor profiles (annotations must not set AppArmor profile type to "${AA}="bogus"", "${AA}e="unconfined"", "${AA}f="unknown"")`,
      ],
    ],
  },
  {
    name: "appArmorProfile joins pod, containers and annotations, field types first",
    level: "baseline",
    version: "latest",
    pod: pod(
      {
        securityContext: { appArmorProfile: { type: "Unconfined" } },
        containers: [bare("a", { securityContext: { appArmorProfile: { type: "Unconfined" } } }), bare("b", { securityContext: { appArmorProfile: { type: "Bogus" } } })],
      },
      { [`${AA}a`]: "unconfined" },
    ),
    violations: [
      ["appArmorProfile", `forbidden AppArmor profiles (pod and containers "a", "b" and annotation must not set AppArmor profile type to "Bogus", "Unconfined", "${AA}a="unconfined"")`],
    ],
  },
  {
    name: "appArmorProfile escapes annotation values as Go's %q does",
    level: "baseline",
    version: "latest",
    pod: pod({ containers: [bare("a")] }, { [`${AA}a`]: 'say "hi"\\' }),
    violations: [["appArmorProfile", `forbidden AppArmor profile (annotation must not set AppArmor profile type to "${AA}a="say \\"hi\\"\\\\"")`]],
  },
  {
    name: "appArmorProfile escapes non-printable characters as Go's %q does",
    level: "baseline",
    version: "latest",
    pod: pod({ containers: [bare("a")] }, { [`${AA}a`]: "un\u0001confined\u00a0" }),
    violations: [["appArmorProfile", `forbidden AppArmor profile (annotation must not set AppArmor profile type to "${AA}a="un\\x01confined\\u00a0"")`]],
    bug: "strings.quote (cel-go) leaves non-printable characters as they are; Go's %q writes \\x01 and \\u00a0",
  },
  {
    name: "appArmorProfile counts distinct values: the same type on pod and container is one profile",
    level: "baseline",
    version: "latest",
    pod: pod({ securityContext: { appArmorProfile: { type: "Unconfined" } }, containers: [bare("a", { securityContext: { appArmorProfile: { type: "Unconfined" } } })] }),
    violations: [["appArmorProfile", 'forbidden AppArmor profile (pod and container "a" must not set AppArmor profile type to "Unconfined")']],
  },
  {
    name: "seLinuxOptions reports types, user and role in one detail",
    level: "baseline",
    version: "latest",
    pod: pod({
      securityContext: { seLinuxOptions: { type: "foo" } },
      containers: [
        bare("e", { securityContext: { seLinuxOptions: { type: "bar" } } }),
        bare("f", { securityContext: { seLinuxOptions: { user: "u" } } }),
        bare("g", { securityContext: { seLinuxOptions: { role: "r", type: "foo" } } }),
        bare("h", { securityContext: { seLinuxOptions: { type: "container_t", level: "s0:c1" } } }),
      ],
    }),
    violations: [["seLinuxOptions", 'seLinuxOptions (pod and containers "e", "f", "g" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; user may not be set; role may not be set)']],
  },
  {
    name: "seLinuxOptions without a bad type still says what is wrong",
    level: "baseline",
    version: "v1.0",
    pod: pod({ securityContext: { seLinuxOptions: { user: "u" } }, containers: [bare("a")] }),
    violations: [["seLinuxOptions", "seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: user may not be set)"]],
  },
  {
    name: "seLinuxOptions before v1.31 refuses container_engine_t",
    level: "baseline",
    version: "v1.30",
    pod: pod({ containers: [bare("a", { securityContext: { seLinuxOptions: { type: "container_engine_t" } } })] }),
    violations: [["seLinuxOptions", 'seLinuxOptions (container "a" set forbidden securityContext.seLinuxOptions: type "container_engine_t")']],
  },
  {
    name: "capabilities_baseline sorts byte-wise, as Go does, not by UTF-16 code unit",
    level: "baseline",
    version: "latest",
    pod: pod({ containers: [bare("a", { securityContext: { capabilities: { add: ["\u{1F600}", "\uFF21"] } } })] }),
    violations: [["capabilities_baseline", 'non-default capabilities (container "a" must not include "\uFF21", "\u{1F600}" in securityContext.capabilities.add)']],
  },
  {
    name: "procMount lists the values as a sorted set",
    level: "baseline",
    version: "latest",
    pod: pod({
      containers: [
        bare("d", { securityContext: { procMount: "Unmasked" } }),
        bare("e", { securityContext: { procMount: "other" } }),
        bare("f", { securityContext: { procMount: "Default" } }),
      ],
    }),
    violations: [["procMount", 'procMount (containers "d", "e" must not set securityContext.procMount to "Unmasked", "other")']],
  },
  {
    name: "seccompProfile_baseline (v1.0) lists the forbidden annotations sorted, unquoted as a list",
    level: "baseline",
    version: "v1.18",
    pod: pod(
      { containers: [bare("a"), bare("b")] },
      {
        "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
        [`${SC}b`]: "unknown",
        [`${SC}a`]: "unconfined",
        [`${SC}c`]: "unconfined",
      },
    ),
    violations: [
      [
        "seccompProfile_baseline",
        `seccompProfile (forbidden annotations ${SC}a="unconfined", ${SC}b="unknown", seccomp.security.alpha.kubernetes.io/pod="unconfined")`,
      ],
    ],
  },
  {
    name: "seccompProfile_baseline (v1.0) escapes annotation values as Go's %q does",
    level: "baseline",
    version: "v1.0",
    pod: pod({ containers: [bare("a")] }, { "seccomp.security.alpha.kubernetes.io/pod": "bell\u0007del\u007f" }),
    violations: [["seccompProfile_baseline", 'seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="bell\\adel\\x7f")']],
    bug: "strings.quote (cel-go) leaves DEL (and every other non-printable character but the C escapes) as it is; Go's %q writes \\x7f",
  },
  {
    name: "restricted v1.18 still runs the annotation-based seccomp check",
    level: "restricted",
    version: "v1.18",
    pod: pod(
      { securityContext: { runAsNonRoot: true }, containers: [bare("a", { securityContext: { allowPrivilegeEscalation: false } })] },
      { "seccomp.security.alpha.kubernetes.io/pod": "unconfined" },
    ),
    violations: [["seccompProfile_baseline", 'seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined")']],
  },
  {
    name: "seccompProfile_baseline (v1.19) names pod and containers and sorts the types",
    level: "baseline",
    version: "v1.19",
    pod: pod({
      securityContext: { seccompProfile: { type: "Unconfined" } },
      containers: [bare("c", { securityContext: { seccompProfile: { type: "Unconfined" } } }), bare("d", { securityContext: { seccompProfile: { type: "Bogus" } } })],
    }),
    violations: [["seccompProfile_baseline", 'seccompProfile (pod and containers "c", "d" must not set securityContext.seccompProfile.type to "Bogus", "Unconfined")']],
  },
  {
    name: "sysctls keeps spec order and duplicates",
    level: "baseline",
    version: "latest",
    pod: pod({
      securityContext: { sysctls: [{ name: "a", value: "1" }, { name: "b", value: "1" }, { name: "kernel.shm_rmid_forced", value: "1" }, { name: "a", value: "2" }] },
      containers: [bare("a")],
    }),
    violations: [["sysctls", "forbidden sysctls (a, b, a)"]],
  },
  {
    name: "windowsHostProcess names the pod and the containers",
    level: "baseline",
    version: "latest",
    pod: pod({
      securityContext: { windowsOptions: { hostProcess: true } },
      containers: [bare("e", { securityContext: { windowsOptions: { hostProcess: true } } }), bare("f", { securityContext: { windowsOptions: { hostProcess: true } } })],
    }),
    violations: [["windowsHostProcess", 'hostProcess (pod and containers "e", "f" must not set securityContext.windowsOptions.hostProcess=true)']],
  },
  {
    name: "hostProbesAndHostLifecycle, one container and one host",
    level: "baseline",
    version: "v1.34",
    pod: pod({ containers: [bare("a", { livenessProbe: { httpGet: { host: "invalid.host", port: 80 } } })] }),
    violations: [["hostProbesAndHostLifecycle", 'probe or lifecycle host (container "a" uses probe or lifecycle host "invalid.host")']],
  },
  {
    name: "hostProbesAndHostLifecycle sorts the container names and the hosts",
    level: "baseline",
    version: "latest",
    pod: pod({
      initContainers: [bare("m", { restartPolicy: "Always", lifecycle: { preStop: { httpGet: { host: "localhost", port: 80 } } } })],
      containers: [
        bare("z", { livenessProbe: { httpGet: { host: "localhost", port: 80 } } }),
        bare("a", { readinessProbe: { tcpSocket: { host: "::1", port: 80 } }, lifecycle: { postStart: { httpGet: { host: "127.0.0.1", port: 80 } } } }),
      ],
    }),
    violations: [["hostProbesAndHostLifecycle", 'probe or lifecycle host (containers "a", "m", "z" use probe or lifecycle hosts "127.0.0.1", "::1", "localhost")']],
  },
  {
    name: "restrictedVolumes, one volume",
    level: "restricted",
    version: "latest",
    pod: pod({ securityContext: RESTRICTED_POD_SC, containers: [ok("a")], volumes: [{ name: "host-vol", hostPath: { path: "/" } }] }),
    violations: [["restrictedVolumes", 'restricted volume types (volume "host-vol" uses restricted volume type "hostPath")']],
  },
  {
    name: "restrictedVolumes, plural: names in spec order, types sorted",
    level: "restricted",
    version: "latest",
    pod: pod({
      securityContext: RESTRICTED_POD_SC,
      containers: [ok("a")],
      volumes: [
        { name: "b1", nfs: { server: "s", path: "/" } },
        { name: "a1", hostPath: { path: "/" } },
        { name: "ok", emptyDir: {} },
        { name: "c1", gitRepo: { repository: "r" } },
        { name: "d1", cephfs: { monitors: ["m"] } },
      ],
    }),
    violations: [["restrictedVolumes", 'restricted volume types (volumes "b1", "a1", "c1", "d1" use restricted volume types "cephfs", "gitRepo", "hostPath", "nfs")']],
  },
  {
    name: "restrictedVolumes pluralises the type on the number of distinct types",
    level: "restricted",
    version: "v1.0",
    pod: pod({ securityContext: { runAsNonRoot: true }, containers: [bare("a")], volumes: [{ name: "a", hostPath: { path: "/a" } }, { name: "b", hostPath: { path: "/b" } }] }),
    violations: [["restrictedVolumes", 'restricted volume types (volumes "a", "b" use restricted volume type "hostPath")']],
  },
  {
    name: "allowPrivilegeEscalation, one container",
    level: "restricted",
    version: "latest",
    pod: pod({ securityContext: RESTRICTED_POD_SC, containers: [bare("x", { securityContext: { capabilities: { drop: ["ALL"] } } })] }),
    violations: [["allowPrivilegeEscalation", 'allowPrivilegeEscalation != false (container "x" must set securityContext.allowPrivilegeEscalation=false)']],
  },
  {
    name: "allowPrivilegeEscalation, containers in visit order",
    level: "restricted",
    version: "v1.8",
    pod: pod({
      securityContext: { runAsNonRoot: true },
      initContainers: [bare("c", { securityContext: { allowPrivilegeEscalation: true } })],
      containers: [bare("b"), bare("ok", { securityContext: { allowPrivilegeEscalation: false } })],
      ephemeralContainers: [bare("a", { securityContext: {} })],
    }),
    violations: [["allowPrivilegeEscalation", 'allowPrivilegeEscalation != false (containers "c", "b", "a" must set securityContext.allowPrivilegeEscalation=false)']],
  },
  {
    name: "capabilities_restricted reports the missing drop and the forbidden adds in two parts",
    level: "restricted",
    version: "latest",
    pod: pod({
      securityContext: RESTRICTED_POD_SC,
      containers: [
        bare("a", { securityContext: { allowPrivilegeEscalation: false } }),
        bare("b", { securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [], add: ["FOO", "BAR"] } } }),
        ok("c", { capabilities: { drop: ["ALL"], add: ["BAZ", "CHOWN", "NET_BIND_SERVICE", "FOO"] } }),
      ],
    }),
    violations: [
      [
        "capabilities_restricted",
        'unrestricted capabilities (containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; containers "b", "c" must not include "BAR", "BAZ", "CHOWN", "FOO" in securityContext.capabilities.add)',
      ],
    ],
  },
  {
    name: "capabilities_restricted, only a forbidden add",
    level: "restricted",
    version: "v1.22",
    pod: pod({ securityContext: RESTRICTED_POD_SC, containers: [ok("c", { capabilities: { drop: ["ALL"], add: ["SYS_ADMIN"] } })] }),
    violations: [["capabilities_restricted", 'unrestricted capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add)']],
  },
  {
    name: "runAsNonRoot, explicit false on pod and container (implicit containers are not mentioned)",
    level: "restricted",
    version: "latest",
    pod: pod({
      securityContext: { runAsNonRoot: false, seccompProfile: { type: "RuntimeDefault" } },
      containers: [ok("a", { runAsNonRoot: false }), ok("b", { runAsNonRoot: true }), ok("c")],
    }),
    violations: [["runAsNonRoot", 'runAsNonRoot != true (pod and container "a" must not set securityContext.runAsNonRoot=false)']],
  },
  {
    name: "runAsNonRoot, explicit false on a container wins over the implicit form",
    level: "restricted",
    version: "latest",
    pod: pod({ securityContext: { seccompProfile: { type: "RuntimeDefault" } }, containers: [ok("a", { runAsNonRoot: false }), ok("b")] }),
    violations: [["runAsNonRoot", 'runAsNonRoot != true (container "a" must not set securityContext.runAsNonRoot=false)']],
  },
  {
    name: "runAsNonRoot, implicit: pod or containers must set it",
    level: "restricted",
    version: "latest",
    pod: pod({ securityContext: { seccompProfile: { type: "RuntimeDefault" } }, containers: [ok("a"), ok("b"), ok("c", { runAsNonRoot: true })] }),
    violations: [["runAsNonRoot", 'runAsNonRoot != true (pod or containers "a", "b" must set securityContext.runAsNonRoot=true)']],
  },
  {
    name: "runAsUser names the pod and the containers",
    level: "restricted",
    version: "latest",
    pod: pod({ securityContext: { ...RESTRICTED_POD_SC, runAsUser: 0 }, containers: [ok("a", { runAsUser: 0 }), ok("b", { runAsUser: 0 }), ok("c", { runAsUser: 1000 })] }),
    violations: [["runAsUser", 'runAsUser=0 (pod and containers "a", "b" must not set runAsUser=0)']],
  },
  {
    name: "seccompProfile_restricted, explicit: a pod-level Unconfined wins over the unset containers",
    level: "restricted",
    version: "latest",
    pod: pod({ securityContext: { runAsNonRoot: true, seccompProfile: { type: "Unconfined" } }, containers: [ok("a"), ok("b")] }),
    violations: [["seccompProfile_restricted", 'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")']],
  },
  {
    name: "seccompProfile_restricted, explicit on containers, types sorted",
    level: "restricted",
    version: "v1.19",
    pod: pod({
      securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
      containers: [bare("a", { securityContext: { allowPrivilegeEscalation: false, seccompProfile: { type: "Unconfined" } } }), bare("b", { securityContext: { allowPrivilegeEscalation: false, seccompProfile: { type: "Bogus" } } })],
    }),
    violations: [["seccompProfile_restricted", 'seccompProfile (containers "a", "b" must not set securityContext.seccompProfile.type to "Bogus", "Unconfined")']],
  },
  {
    name: "seccompProfile_restricted, implicit: pod or containers must set it",
    level: "restricted",
    version: "latest",
    pod: pod({ securityContext: { runAsNonRoot: true }, containers: [ok("a"), ok("b"), ok("c", { seccompProfile: { type: "RuntimeDefault" } })] }),
    violations: [["seccompProfile_restricted", 'seccompProfile (pod or containers "a", "b" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")']],
  },
  {
    name: "an unconstrained pod gets upstream's documented restricted message, in upstream's order",
    level: "restricted",
    version: "latest",
    pod: pod({ containers: [bare("x")] }),
    violations: [
      ["allowPrivilegeEscalation", 'allowPrivilegeEscalation != false (container "x" must set securityContext.allowPrivilegeEscalation=false)'],
      ["capabilities_restricted", 'unrestricted capabilities (container "x" must set securityContext.capabilities.drop=["ALL"])'],
      ["runAsNonRoot", 'runAsNonRoot != true (pod or container "x" must set securityContext.runAsNonRoot=true)'],
      ["seccompProfile_restricted", 'seccompProfile (pod or container "x" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'],
    ],
  },
];

/** A pod that fails every check; what each reports depends on level and version. */
const EVERYTHING_WRONG = pod(
  {
    hostNetwork: true,
    securityContext: { runAsNonRoot: false, runAsUser: 0, seccompProfile: { type: "Unconfined" }, seLinuxOptions: { user: "u" }, sysctls: [{ name: "other", value: "1" }], windowsOptions: { hostProcess: true } },
    volumes: [{ name: "h", hostPath: { path: "/" } }],
    containers: [
      bare("a", {
        ports: [{ containerPort: 80, hostPort: 80 }],
        livenessProbe: { httpGet: { host: "example.com", port: 80 } },
        securityContext: { privileged: true, procMount: "Unmasked", capabilities: { add: ["NET_RAW"] }, appArmorProfile: { type: "Unconfined" } },
      }),
    ],
  },
  { "seccomp.security.alpha.kubernetes.io/pod": "unconfined" },
);

const BASELINE_ORDER = [
  "appArmorProfile",
  "capabilities_baseline",
  "hostNamespaces",
  "hostPathVolumes",
  "hostPorts",
  "hostProbesAndHostLifecycle",
  "privileged",
  "procMount",
  "seLinuxOptions",
  "seccompProfile_baseline",
  "sysctls",
  "windowsHostProcess",
];

describe("pod-security messages", () => {
  for (const c of MESSAGES) {
    (c.bug === undefined ? it : it.fails)(`${c.level}@${c.version}: ${c.name}`, () => {
      const d = decide(c.level, c.version, c.pod);
      expect(d.violations.map((v) => [v.rule, v.message])).toEqual(c.violations);
    });
  }

  it("baseline runs its checks in upstream's byte-wise order of check IDs", () => {
    expect(rules(decide("baseline", "latest", EVERYTHING_WRONG))).toEqual(BASELINE_ORDER);
    expect(rules(decide("baseline", "v1.33", EVERYTHING_WRONG))).toEqual(BASELINE_ORDER.filter((id) => id !== "hostProbesAndHostLifecycle"));
  });

  it("restricted runs the baseline checks it does not override, then its own, each sorted", () => {
    expect(rules(decide("restricted", "latest", EVERYTHING_WRONG))).toEqual([
      "appArmorProfile",
      "hostNamespaces",
      "hostPorts",
      "hostProbesAndHostLifecycle",
      "privileged",
      "seLinuxOptions",
      "sysctls",
      "windowsHostProcess",
      "allowPrivilegeEscalation",
      "capabilities_restricted",
      "procMount_restricted",
      "restrictedVolumes",
      "runAsNonRoot",
      "runAsUser",
      "seccompProfile_restricted",
    ]);
    // v1.18: the seccomp annotation and the capabilities of baseline still run, and there is no runAsUser check yet.
    expect(rules(decide("restricted", "v1.18", EVERYTHING_WRONG))).toEqual([
      "appArmorProfile",
      "capabilities_baseline",
      "hostNamespaces",
      "hostPorts",
      "privileged",
      "procMount",
      "seLinuxOptions",
      "seccompProfile_baseline",
      "sysctls",
      "windowsHostProcess",
      "allowPrivilegeEscalation",
      "restrictedVolumes",
      "runAsNonRoot",
    ]);
  });

  it("refuses versions the enforce-version label would not accept", () => {
    for (const version of ["v1.05", "1.25", "v2.0", "v1.25.0"]) {
      expect(typeof builtinPolicyDocument(`builtin:pod-security/restricted@${version}`), version).toBe("string");
    }
  });
});

// ---- requests other than a pod CREATE --------------------------------------------------------

/** A restricted-compliant pod. */
function compliant(image = "registry.k8s.io/pause"): Obj {
  return pod({ securityContext: RESTRICTED_POD_SC, containers: [ok("a", {}, { image })] });
}
/** A pod restricted refuses (it shares the host's network). */
function hostNetworkPod(image = "registry.k8s.io/pause", labels: Record<string, string> = {}): Obj {
  const p = pod({ hostNetwork: true, securityContext: RESTRICTED_POD_SC, containers: [ok("a", {}, { image })] });
  return { ...p, metadata: { name: "x", labels } };
}

describe("pod-security beyond pod creation", () => {
  it("refuses a Deployment whose pod template violates restricted, naming the pod template", () => {
    const deployment = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web" },
      spec: { selector: { matchLabels: { app: "web" } }, template: { metadata: { labels: { app: "web" } }, spec: { containers: [bare("x")] } } },
    };
    const d = decide("restricted", "latest", deployment);
    expect(d.allowed).toBe(false);
    expect(d.violations.map((v) => [v.rule, v.target])).toEqual([
      ["allowPrivilegeEscalation", "pod template"],
      ["capabilities_restricted", "pod template"],
      ["runAsNonRoot", "pod template"],
      ["seccompProfile_restricted", "pod template"],
    ]);
    expect(d.violations[0]?.message).toBe('allowPrivilegeEscalation != false (container "x" must set securityContext.allowPrivilegeEscalation=false)');
  });

  it("allows a Deployment whose pod template meets restricted", () => {
    const template = compliant();
    const deployment = { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "web" }, spec: { template: { metadata: {}, spec: template.spec } } };
    expect(report(decide("restricted", "latest", deployment))).toEqual([]);
  });

  it("allows a label-only update of a non-compliant pod, as Pod Security Admission does", () => {
    const d = decideRequest("restricted", "latest", requestForResource(hostNetworkPod(undefined, { tier: "web" }), "UPDATE", hostNetworkPod()));
    expect(report(d)).toEqual([]);
  });

  it("judges an update that changes an image", () => {
    const d = decideRequest("restricted", "latest", requestForResource(hostNetworkPod("registry.k8s.io/pause:3.10"), "UPDATE", hostNetworkPod()));
    expect(rules(d)).toEqual(["hostNamespaces"]);
    expect(d.allowed).toBe(false);
  });

  it("judges an update that changes the pod's seccomp annotation", () => {
    const old = hostNetworkPod();
    const changed = { ...old, metadata: { name: "x", annotations: { "seccomp.security.alpha.kubernetes.io/pod": "runtime/default" } } };
    expect(rules(decideRequest("restricted", "latest", requestForResource(changed, "UPDATE", old)))).toEqual(["hostNamespaces"]);
  });

  it("judges an update that changes a container's seccomp annotation", () => {
    const old = hostNetworkPod();
    const changed = { ...old, metadata: { name: "x", annotations: { [`${SC}a`]: "runtime/default" } } };
    expect(rules(decideRequest("restricted", "latest", requestForResource(changed, "UPDATE", old)))).toEqual(["hostNamespaces"]);
  });

  it("judges an update that adds a container", () => {
    const old = compliant();
    const changed = { ...old, spec: { ...(old.spec as Obj), containers: [ok("a"), bare("b")] } };
    expect(rules(decideRequest("restricted", "latest", requestForResource(changed, "UPDATE", old)))).toEqual(["allowPrivilegeEscalation", "capabilities_restricted"]);
  });

  it("does not judge an update that only changes AppArmor annotations, as Pod Security Admission does not", () => {
    const old = compliant();
    const changed = { ...old, metadata: { name: "x", annotations: { [`${AA}a`]: "unconfined" } } };
    expect(report(decideRequest("restricted", "latest", requestForResource(changed, "UPDATE", old)))).toEqual([]);
    expect(rules(decide("restricted", "latest", changed))).toEqual(["appArmorProfile"]);
  });

  it("judges a pod that has no spec at all as a pod without containers", () => {
    expect(report(decide("restricted", "latest", { apiVersion: "v1", kind: "Pod", metadata: { name: "x" } }))).toEqual([]);
  });

  it("does not judge the status subresource", () => {
    const request: AdmissionRequest = { ...requestForResource(hostNetworkPod("registry.k8s.io/pause:3.10"), "UPDATE", hostNetworkPod()), subResource: "status" };
    expect(report(decideRequest("restricted", "latest", request))).toEqual([]);
  });

  it("does not judge a resize, which changes nothing significant", () => {
    const old = hostNetworkPod();
    const resized = { ...old, spec: { ...(old.spec as Obj), containers: [ok("a", {}, { resources: { limits: { cpu: "2" } } })] } };
    const request: AdmissionRequest = { ...requestForResource(resized, "UPDATE", old), subResource: "resize" };
    expect(report(decideRequest("restricted", "latest", request))).toEqual([]);
  });

  it("judges the ephemeralcontainers subresource: an added ephemeral container must comply", () => {
    const old = compliant();
    const withDebugger = { ...old, spec: { ...(old.spec as Obj), ephemeralContainers: [bare("debugger", { securityContext: { capabilities: { drop: ["ALL"] } } })] } };
    const request: AdmissionRequest = { ...requestForResource(withDebugger, "UPDATE", old), subResource: "ephemeralcontainers" };
    const d = decideRequest("restricted", "latest", request);
    expect(d.violations.map((v) => [v.rule, v.message])).toEqual([
      ["allowPrivilegeEscalation", 'allowPrivilegeEscalation != false (container "debugger" must set securityContext.allowPrivilegeEscalation=false)'],
    ]);
  });

  it("allows a compliant ephemeral container through the ephemeralcontainers subresource", () => {
    const old = compliant();
    const withDebugger = { ...old, spec: { ...(old.spec as Obj), ephemeralContainers: [ok("debugger")] } };
    const request: AdmissionRequest = { ...requestForResource(withDebugger, "UPDATE", old), subResource: "ephemeralcontainers" };
    expect(report(decideRequest("restricted", "latest", request))).toEqual([]);
  });
});
