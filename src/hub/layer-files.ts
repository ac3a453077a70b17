/**
 * Layer files → layers: each Layer document with the documents of its files. (The hub's
 * rules; `polity policy lint` is to share them.)
 */
import type { SourceFile } from "../api/fields.js";
import { PolityError, type Problem } from "../errors.js";
import { buildLayer, type Layer } from "../policy/layer.js";
import { parseDocuments, type SourceDocument } from "../source/parse.js";

export function layerId(layer: Pick<Layer, "tier" | "region" | "cluster">): string {
  if (layer.tier === "global") return "global";
  return layer.tier === "region" ? `region/${layer.region}` : `cluster/${layer.cluster}`;
}

function parseFiles(files: readonly SourceFile[]): SourceDocument[] {
  const problems: Problem[] = [];
  const docs: SourceDocument[] = [];
  for (const file of files) {
    try {
      docs.push(...parseDocuments(file.content, file.name));
    } catch (error) {
      if (!(error instanceof PolityError)) throw error;
      problems.push(...error.problems);
    }
  }
  if (problems.length > 0) throw new PolityError("invalid", problems);
  return docs;
}

/** Builds the layers that files describe: each Layer document with the documents of its files. */
export function layersFromFiles(files: readonly SourceFile[]): { layer: Layer; files: SourceFile[] }[] {
  const docs = parseFiles(files);
  const isLayer = (d: SourceDocument) => (d.value as { kind?: unknown } | null)?.kind === "Layer";
  const groups: { docs: SourceDocument[]; files: SourceFile[] }[] = [];
  const problems: Problem[] = [];
  if (docs.filter(isLayer).length === 1) {
    groups.push({ docs, files: [...files] });
  } else {
    for (const file of files) {
      const own = docs.filter((d) => d.file === file.name);
      if (own.length === 0) continue;
      if (!own.some(isLayer)) {
        problems.push({
          message: "no Layer document says which layer this file belongs to (global, which region, which cluster); add one, or apply the file together with its layer's Layer document",
          location: { file: file.name, line: 1, column: 1 },
        });
        continue;
      }
      groups.push({ docs: own, files: [file] });
    }
  }
  const out: { layer: Layer; files: SourceFile[] }[] = [];
  const seen = new Map<string, string>();
  for (const group of groups) {
    try {
      const layer = buildLayer(group.docs, { tier: "global", assumed: true });
      const id = layerId(layer);
      if (seen.has(id)) {
        problems.push({ message: `layer ${id} is described twice (also in ${seen.get(id)}); one apply writes each layer once`, location: { file: group.files[0]!.name, line: 1, column: 1 } });
        continue;
      }
      seen.set(id, group.files[0]!.name);
      if (layer.tier === "region" && layer.region === undefined) {
        problems.push({ message: "a region layer names its region (spec.region)", location: { file: group.files[0]!.name, line: 1, column: 1 } });
        continue;
      }
      out.push({ layer, files: group.files });
    } catch (error) {
      if (!(error instanceof PolityError)) throw error;
      problems.push(...error.problems);
    }
  }
  if (problems.length > 0) throw new PolityError("invalid", problems);
  return out;
}
