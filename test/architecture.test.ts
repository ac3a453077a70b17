/**
 * The architecture the folder names promise (README "Architecture"), held by checks:
 * - the core is pure: `npm run lint` refuses a core file that imports the shell or Node's
 *   I/O (eslint.config.js); shown here through ESLint's own API on files that would break it;
 * - nothing under src/ imports in a circle, neither file to file nor folder to folder.
 */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ESLint } from "eslint";
import { beforeAll, describe, expect, it } from "vitest";
import { circles, explainFolderCircle, folderGraph, importGraph, type ImportGraph } from "./support/import-graph.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const CORE = ["cel", "policy", "layering", "decision", "governance", "bundle", "canonical", "audit", "source", "intents", "trust"];
const SHELL = ["hub", "agent", "store", "client", "cli", "files", "identity", "kube"];

describe("the core is pure, and npm run lint says so", () => {
  const eslint = new ESLint({ cwd: ROOT });
  /** The problems ESLint finds in `text` as if it were the file at `filePath`. */
  const lint = async (filePath: string, text: string): Promise<string[]> => {
    const [result] = await eslint.lintText(text, { filePath });
    return (result?.messages ?? []).map((m) => `${m.ruleId ?? "parser"}: ${m.message}`);
  };

  it("refuses a core file that imports the hub", async () => {
    const problems = await lint("src/policy/x.ts", 'import { startHub } from "../hub/index.js";\nexport const start = startHub;\n');
    expect(problems).toEqual([expect.stringMatching(/^no-restricted-imports: '\.\.\/hub\/index\.js' import is restricted .*the core is pure/)]);
  });

  it("accepts a core file that imports another core folder", async () => {
    expect(await lint("src/policy/x.ts", 'import { canonicalJson } from "../canonical/index.js";\nexport const encode = canonicalJson;\n')).toEqual([]);
  });

  it("refuses every shell folder from every core folder, type-only imports and re-exports too", async () => {
    for (const core of CORE) {
      for (const shell of SHELL) {
        const file = `src/${core}/x.ts`;
        expect(await lint(file, `import type { A } from "../${shell}/index.js";\nexport type B = A;\n`), `${core} → ${shell}`).toHaveLength(1);
        expect(await lint(file, `export { a } from "../${shell}/a.js";\n`), `${core} → ${shell}`).toHaveLength(1);
      }
    }
    expect(await lint("src/errors.ts", 'import { a } from "./cli/main.js";\nexport const b = a;\n')).toHaveLength(1);
  });

  it("counts the folders up to src/, so a core file deep in its folder is held too, and a core subfolder is not the shell", async () => {
    expect(await lint("src/policy/library/pod-security/x.ts", 'import { a } from "../../../files/read.js";\nexport const b = a;\n')).toHaveLength(1);
    expect(await lint("src/policy/library/x.ts", 'import { a } from "../files/x.js";\nexport const b = a;\n')).toEqual([]);
  });

  it("refuses Node's files, network and processes in the core, with or without node:", async () => {
    for (const module of ["node:fs", "fs", "node:fs/promises", "node:net", "node:http", "node:https", "node:child_process", "node:os", "node:timers"]) {
      expect(await lint("src/bundle/x.ts", `import * as io from "${module}";\nexport const b = io;\n`), module).toEqual([
        expect.stringMatching(/^no-restricted-imports: .*the core is pure: no files, network, processes or host/),
      ]);
    }
  });

  it("keeps node:crypto's hashing and signatures in the core, but not its random generators", async () => {
    expect(await lint("src/bundle/x.ts", 'import { createHash, sign, verify } from "node:crypto";\nexport const b = [createHash, sign, verify];\n')).toEqual([]);
    expect(await lint("src/bundle/x.ts", 'import { randomBytes, generateKeyPairSync } from "node:crypto";\nexport const b = [randomBytes, generateKeyPairSync];\n')).toHaveLength(2);
  });

  it("refuses the clock and the process in the core: time is passed in", async () => {
    expect(await lint("src/decision/x.ts", "export const now = () => [Date.now(), new Date(), Math.random(), process.env];\n")).toHaveLength(4);
    expect(await lint("src/decision/x.ts", "export const at = (ms: number) => new Date(ms);\n")).toEqual([]);
  });

  it("lets tests beside the core read fixtures, but not reach into the shell", async () => {
    expect(await lint("src/audit/x.test.ts", 'import { readFileSync } from "node:fs";\nexport const b = [readFileSync, Date.now()];\n')).toEqual([]);
    expect(await lint("src/audit/x.test.ts", 'import { a } from "../hub/audit.js";\nexport const b = a;\n')).toHaveLength(1);
  });

  it("leaves the shell free to do I/O and to use the core", async () => {
    expect(await lint("src/hub/x.ts", 'import { readFileSync } from "node:fs";\nimport { canonicalJson } from "../canonical/index.js";\nexport const b = [readFileSync, canonicalJson, Date.now()];\n')).toEqual([]);
  });
});


describe("nothing under src/ imports in a circle", () => {
  let graph: ImportGraph;
  beforeAll(() => {
    graph = importGraph(ROOT);
  });

  it("finds and names a circle, by a shortest way round it", () => {
    const sample = new Map([
      ["a", ["b"]],
      ["b", ["c", "d"]],
      ["c", ["a"]],
      ["d", ["d"]],
      ["e", ["a"]],
    ]);
    expect(circles(sample)).toEqual([
      { members: ["a", "b", "c"], path: "a → b → c → a" },
      { members: ["d"], path: "d → d" },
    ]);
  });

  it("sees every kind of import: static, type-only, re-exports and lazy ones", () => {
    expect(graph.get("src/store/database.ts")).toEqual(expect.arrayContaining(["src/store/engine.ts", "src/store/pglite.ts", "src/store/postgres.ts"]));
    expect(graph.get("src/policy/layer.ts")).toEqual(expect.arrayContaining(["src/policy/library/index.ts", "src/policy/schema.ts"]));
  });

  it("has no circle between files", () => {
    expect(circles(graph).map((c) => c.path)).toEqual([]);
  });

  it("has no circle between folders", () => {
    expect(circles(folderGraph(graph)).map((c) => explainFolderCircle(graph, c))).toEqual([]);
  });

  it("keeps the core's imports inside the core (and src/errors.ts)", () => {
    const folders = folderGraph(graph);
    for (const core of CORE) {
      expect(folders.get(core)?.filter((folder) => !CORE.includes(folder) && folder !== "errors.ts"), core).toEqual([]);
    }
  });
});
