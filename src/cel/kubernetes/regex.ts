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

/** The leftmost-first match at or after `from` (UTF-16 offsets), as [start, end]. */
function matchFrom(program: Program, text: string, from: number): [number, number] | undefined {
  const n = program.inst.length;
  let current: { pc: number; start: number }[] = [];
  let next: { pc: number; start: number }[] = [];
  // Which instructions the list being built holds already: the current one, then the next.
  let seen = new Uint8Array(n);
  let seenNext = new Uint8Array(n);
  let matched: [number, number] | undefined;

  const add = (list: { pc: number; start: number }[], marks: Uint8Array, pc: number, start: number, flags: number): void => {
    if (marks[pc] === 1) return;
    marks[pc] = 1;
    const inst = program.inst[pc]!;
    switch (inst.op) {
      case ALT:
      case ALT_MATCH:
        add(list, marks, inst.out, start, flags);
        add(list, marks, inst.arg, start, flags);
        return;
      case NOP:
      case CAPTURE:
        add(list, marks, inst.out, start, flags);
        return;
      case EMPTY_WIDTH:
        if ((inst.arg & ~flags) === 0) add(list, marks, inst.out, start, flags);
        return;
      default:
        list.push({ pc, start });
    }
  };

  let pos = from;
  let before = pos > 0 ? (text.codePointAt(pos - 1) ?? -1) : -1;
  if (pos > 0 && before >= 0xdc00 && before <= 0xdfff && pos > 1) before = text.codePointAt(pos - 2) ?? before;
  for (;;) {
    const rune = pos < text.length ? text.codePointAt(pos)! : -1;
    const width = rune > 0xffff ? 2 : 1;
    const flags = context(before, rune);
    if (matched === undefined) add(current, seen, program.start, pos, flags);
    const afterNext = pos + width < text.length ? text.codePointAt(pos + width)! : -1;
    const nextFlags = context(rune, afterNext);
    for (const thread of current) {
      const inst = program.inst[thread.pc]!;
      if (inst.op === MATCH) {
        matched = [thread.start, pos];
        break; // threads of lower priority lose to this match
      }
      if (rune < 0) continue;
      let ok = false;
      if (inst.op === RUNE || inst.op === RUNE1) ok = inst.matchRune(rune);
      else if (inst.op === RUNE_ANY) ok = true;
      else if (inst.op === RUNE_ANY_NOT_NL) ok = rune !== 10;
      if (ok) add(next, seenNext, inst.out, thread.start, nextFlags);
    }
    if (rune < 0 || (next.length === 0 && matched !== undefined)) return matched;
    [current, next] = [next, []];
    [seen, seenNext] = [seenNext, seen.fill(0)];
    before = rune;
    pos += width;
  }
}

/** Go's regexp FindString: the leftmost-first match, or "" when there is none. */
export function findFirst(text: string, pattern: string): string {
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
