/**
 * The import graph of src/, for test/architecture.test.ts: which file imports which, and
 * which folder imports which, and the circles in each.
 *
 * Every form of import is an edge: `import`, `import type`, `export … from`, and `import()`
 * (TypeScript's own pre-processor finds them). A type-only import is still a dependency a
 * reader must follow, and a lazy import still a module that needs the other loaded.
 *
 * Tests (`*.test.ts`) are left out: nothing imports a test, so a test can never close a
 * circle between files; and a test may use the folder above the one it tests to show a
 * behaviour end to end (layering's tests decide requests with decision/), which is not a
 * dependency of the code it tests.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";

/** Files by their path from the repository root (`src/policy/layer.ts`), each with the files it imports, sorted. */
export type ImportGraph = ReadonlyMap<string, readonly string[]>;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts")) out.push(path);
  }
  return out;
}

/**
 * The graph of the non-test TypeScript files under `root/src`. Throws when a relative
 * import names no file: a graph with a hole in it would hide circles.
 */
export function importGraph(root: string): ImportGraph {
  const files = sourceFiles(join(root, "src")).map((file) => relative(root, file).split("\\").join("/"));
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const file of files.sort()) {
    const { importedFiles } = ts.preProcessFile(readFileSync(join(root, file), "utf8"), true, true);
    const targets = new Set<string>();
    for (const { fileName } of importedFiles) {
      if (!fileName.startsWith(".")) continue; // a package, not part of src/
      const target = relative(root, resolve(root, dirname(file), fileName)).split("\\").join("/").replace(/\.js$/, ".ts");
      if (!known.has(target)) throw new Error(`${file} imports ${fileName}, which is no TypeScript file under src/`);
      targets.add(target);
    }
    graph.set(file, [...targets].sort());
  }
  return graph;
}

/** `src/policy/library/index.ts` is in folder `policy`; `src/errors.ts` is a folder of its own. */
export function folderOf(file: string): string {
  return file.split("/")[1]!;
}

/** Folder → the other folders its files import. */
export function folderGraph(graph: ImportGraph): ImportGraph {
  const folders = new Map<string, Set<string>>();
  for (const [file, targets] of graph) {
    const from = folderOf(file);
    const set = folders.get(from) ?? new Set<string>();
    folders.set(from, set);
    for (const target of targets) if (folderOf(target) !== from) set.add(folderOf(target));
  }
  return new Map([...folders].map(([folder, set]) => [folder, [...set].sort()]));
}

export interface Circle {
  /** Every node of the circle (a strongly connected component), sorted. */
  readonly members: readonly string[];
  /** One shortest way round it, from its first member back to it: `a → b → a`. */
  readonly path: string;
}

/** Every circle in a graph: Tarjan's strongly connected components of more than one node, and nodes that import themselves. */
export function circles(graph: ImportGraph): Circle[] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (node: string): void => {
    index.set(node, next);
    low.set(node, next);
    next++;
    stack.push(node);
    onStack.add(node);
    for (const target of graph.get(node) ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(node, Math.min(low.get(node)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(node, Math.min(low.get(node)!, index.get(target)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || (graph.get(node) ?? []).includes(node)) components.push(component.sort());
    }
  };
  for (const node of [...graph.keys()].sort()) if (!index.has(node)) visit(node);
  return components
    .map((members) => ({ members, path: shortestWayRound(graph, members) }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Breadth-first from the first member, inside the component, back to it. */
function shortestWayRound(graph: ImportGraph, members: readonly string[]): string {
  const start = members[0]!;
  const inside = new Set(members);
  const previous = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const node = queue.shift()!;
    for (const target of graph.get(node) ?? []) {
      if (!inside.has(target)) continue;
      if (target === start) {
        const way = [node];
        while (way[0] !== start) way.unshift(previous.get(way[0]!)!);
        return [...way, start].join(" → ");
      }
      if (!previous.has(target)) {
        previous.set(target, node);
        queue.push(target);
      }
    }
  }
  return start;
}

/** A folder circle in words: its way round, and for each step one file import that makes it. */
export function explainFolderCircle(graph: ImportGraph, circle: Circle): string {
  const folders = circle.path.split(" → ");
  const steps = folders.slice(1).map((to, i) => {
    const from = folders[i]!;
    for (const [file, targets] of graph) {
      const target = folderOf(file) === from ? targets.find((t) => folderOf(t) === to) : undefined;
      if (target !== undefined) return `${file} imports ${target}`;
    }
    return `${from} imports ${to}`;
  });
  return `${circle.path} (${steps.join("; ")})`;
}
