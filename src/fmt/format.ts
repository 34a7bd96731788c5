// `pdp fmt`: one canonical layout for policy files (see docs/fmt.md for the rules).
//
// The formatter never works on text: it parses the file (a file with syntax errors is never
// rewritten), attaches every comment to a place in the tree, and prints the tree. Layout decisions
// depend only on the tree, the comments and where the author left blank lines, never on the input's
// spacing, so formatting twice gives the same text as formatting once.
//
// Comment attachment, in source order:
// - a comment that starts on the line where the previous token (or a comment trailing it) ended is
//   a *trailing* comment of the item that token ends, and stays on that item's last line;
// - any other comment is a *leading* comment of the next item, on its own line(s) above it; when no
//   item follows before the enclosing `}` / `]` / end of file, it is an *end* comment of that body;
// - comments inside an attribute or block header (`name /* here */ = value`, `service # here
//   "x" {`) cannot stay there in the canonical layout and become leading comments of the item.
import { hasErrors, type Diagnostic } from '../diagnostics';
import type { Attribute, Block, BodyItem, ListLiteral, Value } from '../syntax/ast';
import { lexer } from '../syntax/lexer';
import { parsePolicy } from '../syntax/parse';

/** Lists longer than this (in characters, indentation included) are written one item per line. */
export const MAX_WIDTH = 100;
/** One level of nesting. */
export const INDENT = '  ';

export type FormatResult = { ok: true; output: string } | { ok: false; diagnostics: Diagnostic[] };

/**
 * Formats one policy file. `path` is only used to name the file in diagnostics. A file with syntax
 * errors is not formatted: its diagnostics are returned instead.
 */
export function formatPolicy(text: string, path: string): FormatResult {
  // Line endings become LF: CRLF and a bare CR are each one line break (src/syntax/lexer.ts).
  const source = text.replace(/\r\n?/g, '\n');
  const { file, diagnostics } = parsePolicy(source, path);
  if (hasErrors(diagnostics)) return { ok: false, diagnostics };
  const scan = scanTrivia(source);
  const attach = new Attacher(source, scan);
  const top = attach.body(file.body, Infinity);
  const end = attach.take(Infinity);
  if (!attach.done()) throw new Error('internal error: the formatter lost a comment');
  const lines = renderBody(top, end, 0, true);
  return { ok: true, output: lines.length ? `${lines.join('\n')}\n` : '' };
}

// ---------------------------------------------------------------------------------------------
// Trivia: where comments and blank lines are.

interface CommentInfo {
  offset: number;
  end: number;
  /** Normalised text: trailing whitespace removed from every line. */
  text: string;
  /** `#` and `//` comments run to the end of the line: nothing may follow them on it. */
  endsLine: boolean;
  /** Starts on the line where the previous token (or a comment trailing it) ended. */
  trailing: boolean;
  /** At least one empty line between it and whatever came before. */
  blankBefore: boolean;
}

interface Trivia {
  comments: CommentInfo[];
  /** For the offset of each significant token: at least one empty line before it. */
  tokenBlankBefore: Map<number, boolean>;
}

interface LexToken {
  type?: string;
  text: string;
  offset: number;
  line: number;
  lineBreaks: number;
}

function scanTrivia(source: string): Trivia {
  const comments: CommentInfo[] = [];
  const tokenBlankBefore = new Map<number, boolean>();
  let previousEndLine = 0;
  let chainLine = -1;
  let sawToken = false;
  lexer.reset(source);
  for (const t of lexer as unknown as Iterable<LexToken>) {
    if (t.type === 'whitespace' || t.type === 'newline') continue;
    const startLine = t.line;
    const endLine = t.line + t.lineBreaks;
    const blankBefore = previousEndLine > 0 && startLine - previousEndLine >= 2;
    if (t.type === 'comment' || t.type === 'blockComment') {
      const trailing = sawToken && startLine === chainLine;
      chainLine = trailing ? endLine : -1;
      const isBlock = t.type === 'blockComment';
      comments.push({
        offset: t.offset,
        end: t.offset + t.text.length,
        text: isBlock ? t.text.replace(/[ \t\r]+(?=\n)/g, '') : t.text.replace(/[ \t\r]+$/, ''),
        endsLine: !isBlock,
        trailing,
        blankBefore,
      });
    } else {
      tokenBlankBefore.set(t.offset, blankBefore);
      chainLine = endLine;
      sawToken = true;
    }
    previousEndLine = endLine;
  }
  return { comments, tokenBlankBefore };
}

// ---------------------------------------------------------------------------------------------
// The tree to print: the AST's shape with comments attached.

interface CommentRef {
  text: string;
  endsLine: boolean;
  blankBefore: boolean;
}

interface ItemBase {
  leading: CommentRef[];
  trailing: CommentRef[];
  blankBefore: boolean;
}

interface FAttribute extends ItemBase {
  kind: 'attribute';
  name: string;
  value: FValue;
}

interface FBlock extends ItemBase {
  kind: 'block';
  header: string;
  /** Comments after `{` on its line. */
  openTrailing: CommentRef[];
  body: FItem[];
  /** Comments after the last item, before `}`. */
  end: CommentRef[];
}

type FItem = FAttribute | FBlock;

interface FScalar {
  kind: 'scalar';
  text: string;
}

interface FListItem {
  leading: CommentRef[];
  value: FValue;
  trailing: CommentRef[];
}

interface FList {
  kind: 'list';
  openTrailing: CommentRef[];
  items: FListItem[];
  end: CommentRef[];
  /** A comment anywhere inside, nested lists included. */
  hasComments: boolean;
}

type FValue = FScalar | FList;

class Attacher {
  private next = 0;

  constructor(private readonly source: string, private readonly trivia: Trivia) {}

  done(): boolean {
    return this.next === this.trivia.comments.length;
  }

  /** Every comment not yet placed that starts before `offset`. */
  take(offset: number): CommentRef[] {
    const out: CommentRef[] = [];
    const comments = this.trivia.comments;
    while (this.next < comments.length && comments[this.next]!.offset < offset) out.push(ref(comments[this.next++]!));
    return out;
  }

  /** The trailing comments (see `CommentInfo.trailing`) not yet placed that start before `offset`. */
  takeTrailing(offset: number): CommentRef[] {
    const out: CommentRef[] = [];
    const comments = this.trivia.comments;
    while (this.next < comments.length && comments[this.next]!.offset < offset && comments[this.next]!.trailing) {
      out.push(ref(comments[this.next++]!));
    }
    return out;
  }

  private blankBefore(offset: number): boolean {
    return this.trivia.tokenBlankBefore.get(offset) ?? false;
  }

  body(items: BodyItem[], closeOffset: number): FItem[] {
    const out: FItem[] = [];
    items.forEach((item, index) => {
      const start = item.span.start.offset;
      const leading = this.take(start);
      const blankBefore = this.blankBefore(start);
      const built = item.kind === 'attribute' ? this.attribute(item, leading, blankBefore) : this.block(item, leading, blankBefore);
      const boundary = index + 1 < items.length ? items[index + 1]!.span.start.offset : closeOffset;
      built.trailing = this.takeTrailing(boundary);
      out.push(built);
    });
    return out;
  }

  /** Comments inside a header move above the item; the blank line before the item moves with them. */
  private hoist(leading: CommentRef[], hoisted: CommentRef[], blankBefore: boolean): { leading: CommentRef[]; blankBefore: boolean } {
    if (hoisted.length === 0) return { leading, blankBefore };
    hoisted.forEach((c, i) => (c.blankBefore = i === 0 ? blankBefore : false));
    return { leading: [...leading, ...hoisted], blankBefore: false };
  }

  private attribute(attr: Attribute, leading: CommentRef[], blankBefore: boolean): FAttribute {
    const moved = this.hoist(leading, this.take(attr.value.span.start.offset), blankBefore);
    const value = this.value(attr.value);
    return { kind: 'attribute', name: attr.name.name, value, leading: moved.leading, blankBefore: moved.blankBefore, trailing: [] };
  }

  private block(block: Block, leading: CommentRef[], blankBefore: boolean): FBlock {
    const open = this.openBrace(block);
    const close = block.span.end.offset - 1;
    const moved = this.hoist(leading, this.take(open), blankBefore);
    const openTrailing = this.takeTrailing(block.body.length ? block.body[0]!.span.start.offset : close);
    const body = this.body(block.body, close);
    const end = this.take(close);
    const header = block.label ? `${block.type.name} "${block.label.raw}"` : block.type.name;
    return { kind: 'block', header, openTrailing, body, end, leading: moved.leading, blankBefore: moved.blankBefore, trailing: [] };
  }

  /** The offset of a block's `{`: the first character after its header that is not blank or comment. */
  private openBrace(block: Block): number {
    let i = (block.label ?? block.type).span.end.offset;
    const comments = this.trivia.comments;
    let c = this.next;
    for (;;) {
      while (c < comments.length && comments[c]!.offset < i) c++;
      const ch = this.source[i];
      if (ch === undefined) throw new Error('internal error: block without `{`');
      if (c < comments.length && comments[c]!.offset === i) {
        i = comments[c]!.end;
        continue;
      }
      if (ch === '{') return i;
      i++;
    }
  }

  private value(value: Value): FValue {
    if (value.kind !== 'list') return { kind: 'scalar', text: scalarText(value) };
    return this.list(value);
  }

  private list(list: ListLiteral): FList {
    const close = list.span.end.offset - 1;
    const openTrailing = this.takeTrailing(list.items.length ? list.items[0]!.span.start.offset : close);
    const items: FListItem[] = list.items.map((item, index) => {
      const leading = this.take(item.span.start.offset);
      const value = this.value(item);
      const trailing = this.takeTrailing(index + 1 < list.items.length ? list.items[index + 1]!.span.start.offset : close);
      return { leading, value, trailing };
    });
    const end = this.take(close);
    const hasComments =
      openTrailing.length > 0 ||
      end.length > 0 ||
      items.some((i) => i.leading.length > 0 || i.trailing.length > 0 || (i.value.kind === 'list' && i.value.hasComments));
    return { kind: 'list', openTrailing, items, end, hasComments };
  }
}

function ref(c: CommentInfo): CommentRef {
  return { text: c.text, endsLine: c.endsLine, blankBefore: c.blankBefore };
}

function scalarText(value: Exclude<Value, ListLiteral>): string {
  switch (value.kind) {
    case 'string':
      return `"${value.raw}"`;
    case 'number':
      return value.raw;
    case 'boolean':
      return value.value ? 'true' : 'false';
  }
}

// ---------------------------------------------------------------------------------------------
// Printing. Every function returns physical lines without their newline.

function indent(depth: number): string {
  return INDENT.repeat(depth);
}

/** Width in characters (code points), so a non-ASCII letter counts as one column. */
function width(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** Own-line comments at an indentation. A block comment's later lines are kept as written. */
function ownLine(comment: CommentRef, ind: string): string[] {
  const [first, ...rest] = comment.text.split('\n');
  return [ind + first, ...rest];
}

/**
 * Appends trailing comments to the last line. After a `#` or `//` comment nothing more fits on the
 * line, so the comments after it go on their own lines at `overflowIndent` (where they would land
 * as leading comments of whatever comes next, which is what they are when the output is parsed again).
 */
function appendTrailing(lines: string[], trailing: CommentRef[], overflowIndent: string): void {
  let ownLines = false;
  for (const c of trailing) {
    if (ownLines) {
      append(lines, ownLine(c, overflowIndent));
    } else {
      const [first, ...rest] = c.text.split('\n');
      lines[lines.length - 1] += ` ${first}`;
      append(lines, rest);
    }
    if (c.endsLine) ownLines = true;
  }
}

// Loops, not spread arguments: a spread passes every element on the stack, and a block of 150,000
// lines (or a run of that many attributes) overflowed it.
function append(lines: string[], more: readonly string[]): void {
  for (const line of more) lines.push(line);
}

function longestName(run: readonly FAttribute[]): number {
  let longest = 0;
  for (const a of run) longest = Math.max(longest, a.name.length);
  return longest;
}

function oneLine(value: FValue): string {
  if (value.kind === 'scalar') return value.text;
  return `[${value.items.map((i) => oneLine(i.value)).join(', ')}]`;
}

/**
 * A value whose first line starts with `prefix`. A list stays on that line when it has no comments
 * and fits, measured as if the prefix were `fitPrefixWidth` wide (see `renderBody`); otherwise it is
 * written one item per line, each followed by a comma.
 */
function renderValue(value: FValue, prefix: string, fitPrefixWidth: number, suffix: string, depth: number): string[] {
  if (value.kind === 'scalar') return [prefix + value.text + suffix];
  if (!value.hasComments) {
    const flat = oneLine(value);
    if (value.items.length === 0 || fitPrefixWidth + width(flat) + width(suffix) <= MAX_WIDTH) return [prefix + flat + suffix];
  }
  const inner = indent(depth + 1);
  const lines = [`${prefix}[`];
  appendTrailing(lines, value.openTrailing, inner);
  for (const item of value.items) {
    for (const c of item.leading) append(lines, ownLine(c, inner));
    append(lines, renderValue(item.value, inner, width(inner), ',', depth + 1));
    appendTrailing(lines, item.trailing, inner);
  }
  for (const c of value.end) append(lines, ownLine(c, inner));
  lines.push(`${indent(depth)}]${suffix}`);
  return lines;
}

function renderAttribute(attr: FAttribute, depth: number, pad: number, fitPad: number): string[] {
  const ind = indent(depth);
  const prefix = `${ind}${attr.name.padEnd(pad)} = `;
  const lines = renderValue(attr.value, prefix, width(ind) + Math.max(fitPad, attr.name.length) + 3, '', depth);
  appendTrailing(lines, attr.trailing, ind);
  return lines;
}

function renderBlock(block: FBlock, depth: number): string[] {
  const ind = indent(depth);
  let lines: string[];
  if (block.body.length === 0 && block.openTrailing.length === 0 && block.end.length === 0) {
    lines = [`${ind}${block.header} {}`];
  } else {
    lines = [`${ind}${block.header} {`];
    appendTrailing(lines, block.openTrailing, indent(depth + 1));
    append(lines, renderBody(block.body, block.end, depth + 1, false));
    lines.push(`${ind}}`);
  }
  appendTrailing(lines, block.trailing, ind);
  return lines;
}

/**
 * Alignment of `=`: consecutive attributes of one body form a group when nothing separates them (no
 * blank line, no comment line, no block, and the previous attribute took one line); a group's names
 * are padded to its longest. Whether a list fits on one line is decided first, with the padding of
 * the widest possible group (the run of attributes with no blank or comment line between them), so
 * the decision does not depend on itself and padding can never push a one-line list past the limit.
 */
function alignment(items: FItem[], depth: number, top: boolean): { pad: number; fitPad: number }[] {
  const result = items.map((item) => ({ pad: item.kind === 'attribute' ? item.name.length : 0, fitPad: 0 }));
  if (top) return result;
  let i = 0;
  while (i < items.length) {
    if (items[i]!.kind !== 'attribute') {
      i++;
      continue;
    }
    let j = i + 1;
    while (j < items.length && items[j]!.kind === 'attribute' && items[j]!.leading.length === 0 && !items[j]!.blankBefore) j++;
    const run = items.slice(i, j) as FAttribute[];
    const fitPad = longestName(run);
    let groupStart = 0;
    run.forEach((attr, k) => {
      result[i + k]!.fitPad = fitPad;
      const last = k === run.length - 1 || renderAttribute(attr, depth, fitPad, fitPad).length > 1;
      if (last) {
        const group = run.slice(groupStart, k + 1);
        const pad = longestName(group);
        for (let g = groupStart; g <= k; g++) result[i + g]!.pad = pad;
        groupStart = k + 1;
      }
    });
    i = j;
  }
  return result;
}

/**
 * A body: inside a block, blank lines the author left between items and comments are kept (at
 * most one in a row), never right after `{`; at the top level, exactly one blank line goes before
 * each item together with its leading comments, and before the comments that end the file.
 */
function renderBody(items: FItem[], end: CommentRef[], depth: number, top: boolean): string[] {
  const ind = indent(depth);
  const lines: string[] = [];
  const pads = alignment(items, depth, top);
  let first = true;
  const separate = (blankBefore: boolean, startsGroup: boolean) => {
    if (!first && ((top && startsGroup) || blankBefore)) lines.push('');
    first = false;
  };
  items.forEach((item, index) => {
    item.leading.forEach((c, k) => {
      separate(c.blankBefore, k === 0);
      append(lines, ownLine(c, ind));
    });
    separate(item.blankBefore, item.leading.length === 0);
    if (item.kind === 'attribute') append(lines, renderAttribute(item, depth, pads[index]!.pad, pads[index]!.fitPad));
    else append(lines, renderBlock(item, depth));
  });
  end.forEach((c, k) => {
    separate(c.blankBefore, k === 0);
    append(lines, ownLine(c, ind));
  });
  return lines;
}
