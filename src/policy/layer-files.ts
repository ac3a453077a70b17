/**
 * Which layers a set of files describes: the one grouping that `polity apply` (the hub) and
 * `polity policy lint` share, so that lint accepts a folder exactly when apply does.
 *
 * - When exactly one Layer document is among all the documents, all of them form that layer.
 * - When there are several, each file is its own layer and must hold its Layer document.
 * - When there is none, the files say nothing about where they belong: apply refuses each
 *   file; lint (`assumeGlobal`) checks them all as the global layer.
 * - One set of files describes each layer once, and a region layer names its region.
 *
 * Everything wrong is reported at once, as one PolityError, each problem at its file.
 */
import { PolityError, type Problem } from "../errors.js";
import { documentsOf, type SourceDocument } from "../source/parse.js";
import { complete, type Steps } from "../source/steps.js";
import { buildLayerSteps, layerId, type Layer } from "./layer.js";

export interface LayerFile {
  readonly name: string;
  readonly content: string;
}

export interface LayerFilesOptions {
  /**
   * With no Layer document among all the files, take them all as the global layer (what
   * `polity policy lint` does for a plain policy file) instead of refusing each file.
   */
  readonly assumeGlobal?: boolean;
}

export interface LayerOfFiles {
  readonly layer: Layer;
  readonly files: LayerFile[];
  /** How many documents its files hold. */
  readonly documents: number;
}

export const NO_LAYER_DOCUMENT =
  "no Layer document says which layer this file belongs to (global, which region, which cluster); add one, or apply the file together with its layer's Layer document";

function parseFiles(files: readonly LayerFile[]): SourceDocument[] {
  return complete(parseFilesSteps(files));
}

function* parseFilesSteps(files: readonly LayerFile[]): Steps<SourceDocument[]> {
  const problems: Problem[] = [];
  const docs: SourceDocument[] = [];
  for (const file of files) {
    try {
      for (const doc of documentsOf(file.content, file.name)) {
        docs.push(doc);
        yield;
      }
    } catch (error) {
      if (!(error instanceof PolityError)) throw error;
      problems.push(...error.problems);
    }
  }
  if (problems.length > 0) throw new PolityError("invalid", problems);
  return docs;
}

const isLayerDocument = (doc: SourceDocument) => (doc.value as { kind?: unknown } | null)?.kind === "Layer";
const startOf = (file: string) => ({ file, line: 1, column: 1 });

/**
 * The files `layersFromFiles(files, { assumeGlobal: true })` takes as the global layer for
 * want of any Layer document: all of them when none holds one, none otherwise. Known before
 * the layer is built, so a caller can say so whether or not the layer then has problems.
 * Files that do not parse are left to layersFromFiles to report.
 */
export function filesAssumedGlobal(files: readonly LayerFile[]): LayerFile[] {
  try {
    return parseFiles(files).some(isLayerDocument) ? [] : [...files];
  } catch (error) {
    if (error instanceof PolityError) return [];
    throw error;
  }
}

/** The layers the files describe, each with its files; throws a PolityError listing every problem. */
export function layersFromFiles(files: readonly LayerFile[], options: LayerFilesOptions = {}): LayerOfFiles[] {
  return complete(layersFromFilesSteps(files, options));
}

/** layersFromFiles, pausing between the documents it parses, validates and compiles. */
export function* layersFromFilesSteps(files: readonly LayerFile[], options: LayerFilesOptions = {}): Steps<LayerOfFiles[]> {
  const docs = yield* parseFilesSteps(files);
  const layerDocuments = docs.filter(isLayerDocument).length;
  const groups: { docs: SourceDocument[]; files: LayerFile[] }[] = [];
  const problems: Problem[] = [];
  if (layerDocuments === 1 || (layerDocuments === 0 && options.assumeGlobal === true)) {
    groups.push({ docs, files: [...files] });
  } else {
    for (const file of files) {
      const own = docs.filter((d) => d.file === file.name);
      if (own.length === 0) continue;
      if (!own.some(isLayerDocument)) {
        problems.push({ message: NO_LAYER_DOCUMENT, location: startOf(file.name) });
        continue;
      }
      groups.push({ docs: own, files: [file] });
    }
  }
  const out: LayerOfFiles[] = [];
  const seen = new Map<string, string>();
  for (const group of groups) {
    try {
      const layer = yield* buildLayerSteps(group.docs, { tier: "global", assumed: true });
      // A group always has a file: a Layer document came from one, or all the files are in it.
      const first = group.files[0]?.name ?? "";
      const id = layerId(layer);
      if (seen.has(id)) {
        problems.push({ message: `layer ${id} is described twice (also in ${seen.get(id)}); one apply writes each layer once`, location: startOf(first) });
        continue;
      }
      seen.set(id, first);
      if (layer.tier === "region" && layer.region === undefined) {
        problems.push({ message: "a region layer names its region (spec.region)", location: startOf(first) });
        continue;
      }
      out.push({ layer, files: group.files, documents: group.docs.length });
    } catch (error) {
      if (!(error instanceof PolityError)) throw error;
      problems.push(...error.problems);
    }
  }
  if (problems.length > 0) throw new PolityError("invalid", problems);
  return out;
}
