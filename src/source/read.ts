/**
 * Files, folders and standard input → documents. The effectful half of source/: it reads
 * with a size limit, walks folders in a stable order, and hands the text to parse.ts.
 */
import { readdirSync, readFileSync, statSync, openSync, readSync, closeSync } from "node:fs";
import { join, relative } from "node:path";
import { PolityError } from "../errors.js";
import { decodeText, MAX_INPUT_BYTES, parseDocuments, type SourceDocument } from "./parse.js";

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

/** Reads a file (or `-` for standard input) with the input size limit. */
export function readInput(path: string): string {
  if (path === "-") return decodeText(readStdin(), "<stdin>");
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw PolityError.of("not-found", `no such file: ${path}`);
  }
  if (size > MAX_INPUT_BYTES) {
    throw PolityError.of("too-large", `${path} is ${size} bytes; the limit is ${MAX_INPUT_BYTES} bytes (16 MiB)`);
  }
  return decodeText(readFileSync(path), path);
}

function readStdin(): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  const fd = openSync("/dev/stdin", "r");
  try {
    const buffer = Buffer.alloc(1 << 16);
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buffer, 0, buffer.length, null);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "EAGAIN") continue;
        if ((error as NodeJS.ErrnoException).code === "EOF") break;
        throw error;
      }
      if (n === 0) break;
      total += n;
      if (total > MAX_INPUT_BYTES) {
        throw PolityError.of("too-large", `standard input is larger than ${MAX_INPUT_BYTES} bytes (16 MiB)`);
      }
      chunks.push(Buffer.from(buffer.subarray(0, n)));
    }
  } finally {
    closeSync(fd);
  }
  return Buffer.concat(chunks);
}

/** Every document of every file under `path`, in a stable order. */
export function readDocuments(path: string): SourceDocument[] {
  if (path === "-") return parseDocuments(readInput("-"), "<stdin>");
  return listDocumentFiles(path).flatMap((file) => parseDocuments(readInput(file), displayPath(file)));
}

/** Paths in messages are relative to the working directory when they are below it. */
export function displayPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel !== "" && !rel.startsWith("..") ? rel : file;
}
