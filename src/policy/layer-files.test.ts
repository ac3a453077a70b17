/**
 * Grouping files into layers, as `polity apply` and `polity policy lint` both do: one Layer
 * document makes one layer of everything, several make a layer of each file, none is
 * refused (apply) or taken as the global layer (lint); every problem at its file.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { PolityError, formatProblem } from "../errors.js";
import { filesAssumedGlobal, layersFromFiles, NO_LAYER_DOCUMENT, type LayerFile } from "./layer-files.js";
import { layerId } from "./layer.js";

const EXAMPLES = resolve(dirname(fileURLToPath(import.meta.url)), "../../examples/layers");

const layerDoc = (spec: string, name = "l") => `apiVersion: polity.dev/v1\nkind: Layer\nmetadata: { name: ${name} }\nspec: { ${spec}, owners: [team-a] }\n`;
const GLOBAL = layerDoc("tier: global", "global");
const REGION = layerDoc("tier: region, region: eu-west", "eu-west");
const CLUSTER = layerDoc("tier: cluster, region: eu-west, cluster: eu-west-1", "eu-west-1");
const policy = (name: string) =>
  `apiVersion: polity.dev/v1\nkind: Policy\nmetadata: { name: ${name}, owner: team-a }\nspec:\n  domain: workload-security\n  match: { kinds: [Pod] }\n  validations: [{ expression: "true" }]\n`;
const file = (name: string, ...docs: string[]): LayerFile => ({ name, content: docs.join("---\n") });

/** What grouping gives, in words: the layers and their files, or every problem. */
function grouped(files: readonly LayerFile[], assumeGlobal = false): string[] {
  try {
    return layersFromFiles(files, { assumeGlobal }).map(({ layer, files }) => `${layerId(layer)}: ${files.map((f) => f.name).join(", ")}`);
  } catch (error) {
    if (!(error instanceof PolityError)) throw error;
    return error.problems.map(formatProblem);
  }
}

describe("layersFromFiles", () => {
  it("makes one layer of all the files when exactly one Layer document is among them", () => {
    const files = [file("layer.yaml", REGION), file("a.yaml", policy("a")), file("b.yaml", policy("b"), policy("c"))];
    const [only, ...rest] = layersFromFiles(files);
    expect(rest).toEqual([]);
    expect(layerId(only!.layer)).toBe("region/eu-west");
    expect(only!.layer.policies.map((p) => p.document.metadata.name)).toEqual(["a", "b", "c"]);
    expect(only!.files.map((f) => f.name)).toEqual(["layer.yaml", "a.yaml", "b.yaml"]);
    expect(only!.documents).toBe(4);
  });

  it("makes a layer of each file when several Layer documents are among them", () => {
    const files = [file("global.yaml", GLOBAL, policy("a")), file("region.yaml", REGION, policy("b")), file("cluster.yaml", CLUSTER)];
    expect(grouped(files)).toEqual(["global: global.yaml", "region/eu-west: region.yaml", "cluster/eu-west-1: cluster.yaml"]);
  });

  it("refuses, among several layers, a file that does not say which layer it belongs to, at its first line", () => {
    const files = [file("global.yaml", GLOBAL), file("region.yaml", REGION), file("orphan.yaml", policy("a"))];
    expect(grouped(files)).toEqual([`orphan.yaml:1:1: ${NO_LAYER_DOCUMENT}`]);
    expect(NO_LAYER_DOCUMENT).toBe(
      "no Layer document says which layer this file belongs to (global, which region, which cluster); add one, or apply the file together with its layer's Layer document",
    );
  });

  it("refuses a layer described twice, naming the file that described it first", () => {
    const files = [file("a.yaml", REGION, policy("a")), file("b.yaml", REGION, policy("b"))];
    expect(grouped(files)).toEqual(["b.yaml:1:1: layer region/eu-west is described twice (also in a.yaml); one apply writes each layer once"]);
  });

  it("refuses a region layer that does not name its region", () => {
    const problems = grouped([file("region.yaml", layerDoc("tier: region"), policy("a"))]);
    expect(problems).toEqual([expect.stringMatching(/^region\.yaml:\d+:\d+: spec\.region: is required for a region layer$/)]);
  });

  it("reports every problem of every file at once", () => {
    const files = [
      file("global.yaml", GLOBAL, policy("Bad_Name")),
      file("region.yaml", REGION),
      file("again.yaml", REGION),
      file("orphan-1.yaml", policy("a")),
      file("orphan-2.yaml", policy("b")),
    ];
    const problems = grouped(files);
    expect(problems).toHaveLength(4);
    expect(problems).toEqual(
      expect.arrayContaining([
        `orphan-1.yaml:1:1: ${NO_LAYER_DOCUMENT}`,
        `orphan-2.yaml:1:1: ${NO_LAYER_DOCUMENT}`,
        "again.yaml:1:1: layer region/eu-west is described twice (also in region.yaml); one apply writes each layer once",
        expect.stringMatching(/^global\.yaml:\d+:\d+: metadata\.name: must be a lowercase RFC 1123 subdomain/),
      ]),
    );
  });

  it("reports the syntax errors of every file before grouping", () => {
    const problems = grouped([file("a.yaml", "a: [\n"), file("b.yaml", GLOBAL), file("c.yaml", "{ b: 1\n")]);
    expect(problems.map((p) => p.split(":")[0])).toEqual(["a.yaml", "c.yaml"]);
  });

  it("passes over a file that holds no document", () => {
    expect(grouped([file("global.yaml", GLOBAL), file("region.yaml", REGION), file("empty.yaml", "# nothing here\n")])).toEqual([
      "global: global.yaml",
      "region/eu-west: region.yaml",
    ]);
  });
});

describe("files without any Layer document", () => {
  const plain = [file("a.yaml", policy("a")), file("b.yaml", policy("b")), file("empty.yaml", "")];

  it("are refused one by one for apply, a file without documents aside", () => {
    expect(grouped(plain)).toEqual([`a.yaml:1:1: ${NO_LAYER_DOCUMENT}`, `b.yaml:1:1: ${NO_LAYER_DOCUMENT}`]);
  });

  it("are one global layer for lint (assumeGlobal), and filesAssumedGlobal names them", () => {
    expect(grouped(plain, true)).toEqual(["global: a.yaml, b.yaml, empty.yaml"]);
    expect(layersFromFiles(plain, { assumeGlobal: true })[0]!.layer.policies).toHaveLength(2);
    expect(filesAssumedGlobal(plain).map((f) => f.name)).toEqual(["a.yaml", "b.yaml", "empty.yaml"]);
  });

  it("make no layer at all when there are no files, for apply; an empty global layer for lint", () => {
    expect(grouped([])).toEqual([]);
    expect(grouped([], true)).toEqual(["global: "]);
    expect(filesAssumedGlobal([])).toEqual([]);
  });
});

describe("apply and lint group alike", () => {
  const folders: Record<string, LayerFile[]> = {
    "one layer across files": [file("layer.yaml", GLOBAL), file("a.yaml", policy("a"))],
    "a layer per file": [file("g.yaml", GLOBAL, policy("a")), file("r.yaml", REGION, policy("b"))],
    "a file without its Layer document": [file("g.yaml", GLOBAL), file("r.yaml", REGION), file("x.yaml", policy("x"))],
    "a layer twice": [file("r1.yaml", REGION), file("r2.yaml", REGION)],
    "a bad policy in a layer": [file("g.yaml", GLOBAL, policy("Bad"))],
    "a region layer without its region": [file("r.yaml", layerDoc("tier: region"))],
  };

  it.each(Object.keys(folders))("accept or refuse the same way when a Layer document is given: %s", (name) => {
    const files = folders[name]!;
    expect(grouped(files, true)).toEqual(grouped(files, false));
    expect(filesAssumedGlobal(files)).toEqual([]);
  });

  it("accept the example federation's layers as apply does: one layer per file", () => {
    const files = readdirSync(EXAMPLES)
      .sort()
      .map((name) => ({ name, content: readFileSync(join(EXAMPLES, name), "utf8") }));
    const expected = ["cluster/eu-west-1: cluster-eu-west-1.yaml", "global: global.yaml", "region/eu-west: region-eu-west.yaml", "region/us-east: region-us-east.yaml"];
    expect(grouped(files, false)).toEqual(expected);
    expect(grouped(files, true)).toEqual(expected);
  });
});
