/**
 * `find` and `findAll` of the Kubernetes regex CEL library (Go's FindString and
 * FindAllString: leftmost-first matches, empty matches right after a match skipped).
 *
 * @bufbuild/re2 answers only whether a pattern matches, so the match positions come from a
 * Pike VM over its compiled program here: a set of threads in priority order stepped over
 * the input once, which is linear in the input whatever the pattern (RE2's guarantee).
 */
import { compileRegex } from "../runtime.js";

/** The instructions of @bufbuild/re2's compiled program (its Inst class, read structurally). */
interface Instruction {
  readonly op: number;
  readonly out: number;
  readonly arg: number;
  matchRune(rune: number): boolean;
}

interface Program {
  readonly inst: readonly Instruction[];
  readonly start: number;
}

const ALT = 1;
const ALT_MATCH = 2;
const CAPTURE = 3;
const EMPTY_WIDTH = 4;
const MATCH = 6;
const NOP = 7;
const RUNE = 8;
const RUNE1 = 9;
const RUNE_ANY = 10;
const RUNE_ANY_NOT_NL = 11;

const BEGIN_LINE = 1;
const END_LINE = 2;
const BEGIN_TEXT = 4;
const END_TEXT = 8;
const WORD_BOUNDARY = 16;
const NO_WORD_BOUNDARY = 32;

function isWordRune(r: number): boolean {
  return (r >= 0x30 && r <= 0x39) || (r >= 0x41 && r <= 0x5a) || (r >= 0x61 && r <= 0x7a) || r === 0x5f;
}

/** What zero-width assertions hold between rune `before` and rune `after` (-1 at the ends). */
function context(before: number, after: number): number {
  let flags = 0;
  if (before < 0) flags |= BEGIN_TEXT | BEGIN_LINE;
  if (before === 10) flags |= BEGIN_LINE;
  if (after < 0) flags |= END_TEXT | END_LINE;
  if (after === 10) flags |= END_LINE;
  flags |= isWordRune(before) !== isWordRune(after) ? WORD_BOUNDARY : NO_WORD_BOUNDARY;
  return flags;
}

function programOf(pattern: string): Program {
  return (compileRegex(pattern) as unknown as { re2Input: { prog: Program } }).re2Input.prog;
}

/**
 * Thread lists of the Pike VM: program counters and match starts in priority order, with a
 * sparse set telling in O(1) whether a counter is in the list (no clearing between steps).
 */
class Threads {
  readonly pcs: Int32Array;
  readonly starts: Int32Array;
  private readonly dense: Int32Array;
  private readonly sparse: Int32Array;
  length = 0;

  constructor(size: number) {
    this.pcs = new Int32Array(size);
    this.starts = new Int32Array(size);
    this.dense = new Int32Array(size);
    this.sparse = new Int32Array(size);
  }

  /** Marks `pc` as in the list; false when it was already. */
  mark(pc: number): boolean {
    const i = this.sparse[pc]!;
    if (i < this.marked && this.dense[i] === pc) return false;
    this.sparse[pc] = this.marked;
    this.dense[this.marked++] = pc;
    return true;
  }

  private marked = 0;

  push(pc: number, start: number): void {
    this.pcs[this.length] = pc;
    this.starts[this.length++] = start;
  }

  clear(): void {
    this.length = 0;
    this.marked = 0;
  }
}

/** The leftmost-first match at or after `from` (UTF-16 offsets), as [start, end]. */
function matchFrom(program: Program, text: string, from: number): [number, number] | undefined {
  const n = program.inst.length;
  let current = new Threads(n);
  let next = new Threads(n);
  let matched: [number, number] | undefined;

  const add = (list: Threads, pc: number, start: number, flags: number): void => {
    if (!list.mark(pc)) return;
    const inst = program.inst[pc]!;
    switch (inst.op) {
      case ALT:
      case ALT_MATCH:
        add(list, inst.out, start, flags);
        add(list, inst.arg, start, flags);
        return;
      case NOP:
      case CAPTURE:
        add(list, inst.out, start, flags);
        return;
      case EMPTY_WIDTH:
        if ((inst.arg & ~flags) === 0) add(list, inst.out, start, flags);
        return;
      default:
        list.push(pc, start);
    }
  };

  let pos = from;
  let before = -1;
  if (pos > 0) {
    before = text.charCodeAt(pos - 1);
    if (before >= 0xdc00 && before <= 0xdfff && pos > 1) before = text.codePointAt(pos - 2) ?? before;
  }
  for (;;) {
    const rune = pos < text.length ? text.codePointAt(pos)! : -1;
    const width = rune > 0xffff ? 2 : 1;
    if (matched === undefined) add(current, program.start, pos, context(before, rune));
    const nextFlags = context(rune, pos + width < text.length ? text.codePointAt(pos + width)! : -1);
    for (let t = 0; t < current.length; t++) {
      const inst = program.inst[current.pcs[t]!]!;
      if (inst.op === MATCH) {
        matched = [current.starts[t]!, pos];
        break; // threads of lower priority lose to this match
      }
      if (rune < 0) continue;
      let ok = false;
      if (inst.op === RUNE || inst.op === RUNE1) ok = inst.matchRune(rune);
      else if (inst.op === RUNE_ANY) ok = true;
      else if (inst.op === RUNE_ANY_NOT_NL) ok = rune !== 10;
      if (ok) add(next, inst.out, current.starts[t]!, nextFlags);
    }
    if (rune < 0 || (next.length === 0 && matched !== undefined)) return matched;
    const done = current;
    current = next;
    next = done;
    next.clear();
    before = rune;
    pos += width;
  }
}

/** Go's regexp FindString: the leftmost-first match, or "" when there is none. */
export function findFirst(text: string, pattern: string): string {
  // The linear-time test is cheaper than the VM: most calls on admission data do not match.
  if (!compileRegex(pattern).test(text)) return "";
  const match = matchFrom(programOf(pattern), text, 0);
  return match === undefined ? "" : text.slice(match[0], match[1]);
}

/** Go's regexp FindAllString(text, limit): at most `limit` matches (all when negative). */
export function findAll(text: string, pattern: string, limit = -1): string[] {
  const program = programOf(pattern);
  const out: string[] = [];
  let pos = 0;
  let previousEnd = -1;
  while (pos <= text.length && (limit < 0 || out.length < limit)) {
    const match = matchFrom(program, text, pos);
    if (match === undefined) break;
    const [start, end] = match;
    if (start === end && start === previousEnd) {
      // An empty match right after the previous match is not reported.
      pos = start < text.length ? start + ((text.codePointAt(start) ?? 0) > 0xffff ? 2 : 1) : start + 1;
      continue;
    }
    out.push(text.slice(start, end));
    previousEnd = end;
    pos = end > start ? end : end < text.length ? end + ((text.codePointAt(end) ?? 0) > 0xffff ? 2 : 1) : end + 1;
  }
  return out;
}
