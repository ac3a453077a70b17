/**
 * Files, folders and standard input → documents. The effectful half of source/: it reads
 * with a size limit, walks folders in a stable order, and hands the text to parse.ts.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { PolityError } from "../errors.js";
import { decodeText, MAX_INPUT_BYTES, parseDocuments, type SourceDocument } from "../source/parse.js";

const DOCUMENT_FILE = /\.(ya?ml|json)$/i;

/** Files under a path: the file itself, or every YAML/JSON file below a folder, sorted. */
export function listDocumentFiles(path: string): string[] {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    throw PolityError.of("not-found", `no such file or folder: ${path}`);
  }
  if (!stat.isDirectory()) return [path];
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (entry.name.startsWith(".")) continue;
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (DOCUMENT_FILE.test(entry.name)) out.push(full);
    }
  };
  walk(path);
  return out;
}

/** Reads a file with the input size limit. */
export function readInput(path: string): string {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw PolityError.of("not-found", `no such file: ${path}`);
  }
  if (size > MAX_INPUT_BYTES) {
    throw PolityError.of("too-large", `${size} bytes is over the limit of ${MAX_INPUT_BYTES} bytes (16 MiB)`, {
      location: { file: path, line: 0, column: 0 },
    });
  }
  return decodeText(readFileSync(path), path);
}

/**
 * Standard input, whole, with the input size limit: a pipe, a file, a terminal or a socket
 * (what Node's child_process gives a child) alike.
 */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of process.stdin) {
    const buffer = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
    total += buffer.length;
    if (total > MAX_INPUT_BYTES) {
      process.stdin.destroy();
      throw PolityError.of("too-large", `standard input is larger than ${MAX_INPUT_BYTES} bytes (16 MiB)`, {
        location: { file: STDIN, line: 0, column: 0 },
      });
    }
    chunks.push(buffer);
  }
  return decodeText(Buffer.concat(chunks), STDIN);
}

/** How standard input is named in messages. */
export const STDIN = "<stdin>";

/** Every document of every file under `path`, in a stable order. */
export function readDocuments(path: string): SourceDocument[] {
  return listDocumentFiles(path).flatMap((file) => parseDocuments(readInput(file), displayPath(file)));
}

/** Like readDocuments, but an input without a single document is an error: it is almost certainly a mistake. */
export function readSomeDocuments(path: string): SourceDocument[] {
  const docs = readDocuments(path);
  if (docs.length === 0) {
    throw PolityError.of("invalid", "holds no YAML or JSON documents", { location: { file: displayPath(path), line: 0, column: 0 } });
  }
  return docs;
}

/** Paths in messages are relative to the working directory when they are below it. */
export function displayPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel !== "" && !rel.startsWith("..") ? rel : file;
}
