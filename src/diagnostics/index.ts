// Spans and coded diagnostics. This module imports nothing else of ours: every stage
// (syntax, check, compile, CLI, server) speaks in these types.
import stringWidth from 'string-width'; // terminal cells of a text (wide CJK and emoji 2, combining marks 0)

/** A position in a source file. `line` and `column` are 1-based; `offset` is a 0-based UTF-16 index. */
export interface Position {
  offset: number;
  line: number;
  column: number;
}

/** A half-open range [start, end) in one file. */
export interface Span {
  file: string;
  start: Position;
  end: Position;
}

export type Severity = 'error' | 'warning';

export interface Diagnostic {
  /** Stable, machine-readable code, e.g. `unknown-attribute`. Never reworded once shipped. */
  code: string;
  severity: Severity;
  /** Lowercase sentence; user input in backticks. */
  message: string;
  span: Span;
  /** A separate suggestion, e.g. "did you mean `policy`?". */
  hint?: string;
}

export function diagnostic(code: string, severity: Severity, message: string, span: Span, hint?: string): Diagnostic {
  return hint === undefined ? { code, severity, message, span } : { code, severity, message, span, hint };
}

export const error = (code: string, message: string, span: Span, hint?: string): Diagnostic =>
  diagnostic(code, 'error', message, span, hint);
export const warning = (code: string, message: string, span: Span, hint?: string): Diagnostic =>
  diagnostic(code, 'warning', message, span, hint);

/**
 * User input as a message quotes it: in backticks, and an empty value as `""`, so the reader sees
 * that it is empty (a bare pair of backticks reads as nothing at all, or as a Markdown code fence).
 */
export function quote(value: string): string {
  return value === '' ? '`""`' : `\`${value}\``;
}

export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === 'error');
}

/** Sorted by file, then position, then code, so output is stable whatever order the passes ran in. */
export function sortDiagnostics(diagnostics: readonly Diagnostic[]): Diagnostic[] {
  return [...diagnostics].sort(
    (a, b) =>
      cmp(a.span.file, b.span.file) ||
      a.span.start.offset - b.span.start.offset ||
      cmp(a.code, b.code) ||
      cmp(a.message, b.message),
  );
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function spanLabel(span: Span): string {
  return `${span.file}:${span.start.line}:${span.start.column}`;
}

/** Looks up the text of a file for rendering source lines; returns undefined when unknown. */
export type SourceLookup = (file: string) => string | undefined;

/**
 * Characters a terminal may act on or that hide what the text says: C0 controls but tab, DEL, C1
 * controls, the bidirectional controls of "trojan source" (U+061C, U+200E, U+200F, U+202A–U+202E,
 * U+2066–U+2069), zero-width characters (U+200B–U+200D, U+2060, U+FEFF) and the line and paragraph
 * separators. Every one of them is a single UTF-16 unit.
 */
const UNSAFE = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060\u2066-\u2069\ufeff]/g;

/** The one-column stand-in for an unsafe character in a source line (keeps the caret aligned). */
export const PLACEHOLDER = '\ufffd';

/** Text for a terminal: every unsafe character written as a `\u{1b}`-style escape. */
export function escapeForTerminal(text: string): string {
  return text.replace(UNSAFE, (c) => `\\u{${c.charCodeAt(0).toString(16)}}`);
}

const ELLIPSIS = '\u2026';
const isLowSurrogate = (c: number) => c >= 0xdc00 && c <= 0xdfff;

/** A quoted value (`…`) in a rendered message longer than this is shown by its two ends. */
export const MAX_QUOTED_WIDTH = 120;

/** Shortens each long backticked value of a message to its start and end around a `…`. */
function shortenQuoted(text: string): string {
  return text.replace(/`([^`]+)`/g, (whole, inner: string) => {
    if (inner.length <= MAX_QUOTED_WIDTH) return whole;
    const half = MAX_QUOTED_WIDTH / 2;
    let head = half;
    let tail = inner.length - half + 1;
    if (isLowSurrogate(inner.charCodeAt(head))) head--;
    if (isLowSurrogate(inner.charCodeAt(tail))) tail++;
    return `\`${inner.slice(0, head)}${ELLIPSIS}${inner.slice(tail)}\``;
  });
}

/** The widest source line shown under a diagnostic, in columns; longer lines are cut around the caret. */
export const MAX_SNIPPET_WIDTH = 160;

/**
 * The part of a source line to show and where the caret goes in it. `start` and `end` are 0-based
 * UTF-16 indexes into `line` (end may be one past the line, for a caret after the last character).
 * Tabs become spaces and unsafe characters the placeholder, one for one, so indexes stay columns.
 */
export function snippet(line: string, start: number, end: number, width = MAX_SNIPPET_WIDTH): { text: string; caretAt: number; caretWidth: number } {
  // Only the part shown is made visible: replacing in the whole line cost a pass over it per
  // diagnostic (minutes for 100,000 errors on one 100,000-character line).
  const visible = (text: string) => text.replace(/\t/g, ' ').replace(UNSAFE, PLACEHOLDER);
  if (line.length <= width) return { text: visible(line), caretAt: start, caretWidth: end - start };
  // Room for the text between the two `…` marks; the caret gets as much of it as it needs, and the
  // rest is shared out on both sides.
  const room = width - 2;
  let from = Math.max(0, start - Math.max(0, Math.floor((room - (end - start)) / 2)));
  let to = Math.min(line.length, from + room);
  from = Math.max(0, Math.min(from, to - room));
  // Never cut a surrogate pair in half.
  if (from > 0 && isLowSurrogate(line.charCodeAt(from))) from++;
  if (to < line.length && isLowSurrogate(line.charCodeAt(to))) to--;
  const head = from > 0 ? ELLIPSIS : '';
  const tail = to < line.length ? ELLIPSIS : '';
  const caretEnd = Math.min(end, to === line.length ? to + 1 : to);
  return { text: `${head}${visible(line.slice(from, to))}${tail}`, caretAt: head.length + start - from, caretWidth: Math.max(1, caretEnd - start) };
}

/**
 * Renders one diagnostic the way rustc and Cedar do:
 *
 *     policies/a.hcl:3:5: error[unknown-attribute]: unknown attribute `polcy` in a `service` block
 *       |
 *     3 |     polcy = "read"
 *       |     ^^^^^
 *       = hint: did you mean `policy`?
 *
 * The text is safe to print on a terminal whoever wrote the policy: control, bidirectional and
 * zero-width characters are escaped in the message and hint (`\u{1b}`) and shown as U+FFFD (`\ufffd`) in the
 * source line, and a line longer than MAX_SNIPPET_WIDTH columns is cut around the caret, with `…`
 * where it was cut. (`diagnosticToJson` keeps the raw text: JSON escapes it.)
 */
export function renderDiagnostic(d: Diagnostic, sources: SourceLookup): string {
  const head = escapeForTerminal(`${spanLabel(d.span)}: ${d.severity}[${d.code}]: ${shortenQuoted(d.message)}`);
  const lines = [head];
  const hint = d.hint === undefined ? undefined : escapeForTerminal(shortenQuoted(d.hint));
  const text = sources(d.span.file);
  const lineText = text === undefined ? undefined : sourceLine(text, d.span.start.line);
  if (lineText !== undefined) {
    const gutter = String(d.span.start.line);
    const pad = ' '.repeat(gutter.length);
    const startCol = d.span.start.column;
    const endCol =
      d.span.end.line === d.span.start.line ? Math.max(d.span.end.column, startCol + 1) : lineText.length + 1;
    const caretEnd = Math.max(startCol + 1, Math.min(endCol, lineText.length + 2));
    const shown = snippet(lineText, startCol - 1, caretEnd - 1);
    // Columns count UTF-16 units, but a terminal gives a wide character (日本, 😀) two cells and a
    // combining mark none: the caret is placed and sized in cells, so it stays under the text.
    const before = stringWidth(shown.text.slice(0, shown.caretAt));
    const under = shown.text.slice(shown.caretAt, shown.caretAt + shown.caretWidth);
    const caret = Math.max(1, stringWidth(under) + Math.max(0, shown.caretAt + shown.caretWidth - shown.text.length));
    lines.push(`${pad} |`, `${gutter} | ${shown.text}`, `${pad} | ${' '.repeat(before)}${'^'.repeat(caret)}`);
    if (hint) lines.push(`${pad} = hint: ${hint}`);
    return lines.join('\n');
  }
  if (hint) lines.push(`  = hint: ${hint}`);
  return lines.join('\n');
}

/**
 * Line `n` (1-based) of `text`, without its line break. A line break is LF, CRLF or a bare CR, as the
 * lexer counts them (src/syntax/lexer.ts).
 */
function sourceLine(text: string, n: number): string | undefined {
  const starts = lineStarts(text);
  if (n < 1 || n > starts.length) return undefined;
  const start = starts[n - 1]!;
  let end = n < starts.length ? starts[n]! - 1 : text.length;
  if (n < starts.length && text.charCodeAt(end) === 10 && text.charCodeAt(end - 1) === 13 && end - 1 >= start) end--;
  return text.slice(start, end);
}

// The offsets where each line of the last file rendered starts. Diagnostics come sorted by file, so
// one file's are rendered together. Finding a line by scanning from the top, with a search for the
// next CR that ran to the end of a file without one at every line, took 20 s for a single error on
// the last line of a 9 MB file.
let indexedText: string | undefined;
let indexedStarts: number[] = [];

function lineStarts(text: string): number[] {
  if (text === indexedText) return indexedStarts;
  const starts = [0];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 10 || (c === 13 && text.charCodeAt(i + 1) !== 10)) starts.push(i + 1);
  }
  indexedText = text;
  indexedStarts = starts;
  return starts;
}

export interface DiagnosticJson {
  code: string;
  severity: Severity;
  message: string;
  hint?: string;
  file: string;
  line: number;
  column: number;
  end_line: number;
  end_column: number;
}

export function diagnosticToJson(d: Diagnostic): DiagnosticJson {
  const out: DiagnosticJson = {
    code: d.code,
    severity: d.severity,
    message: d.message,
    file: d.span.file,
    line: d.span.start.line,
    column: d.span.start.column,
    end_line: d.span.end.line,
    end_column: d.span.end.column,
  };
  if (d.hint) out.hint = d.hint;
  return out;
}

/** Levenshtein distance, for did-you-mean hints. */
export function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diagonal = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = prev[j]!;
      prev[j] = Math.min(above + 1, prev[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return prev[b.length]!;
}

/** The closest candidate within a distance proportional to the word's length, if any. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  const limit = Math.max(1, Math.floor(word.length / 3) + 1);
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance && d <= limit) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  const match = closest(word, candidates);
  return match === undefined ? undefined : `did you mean \`${match}\`?`;
}
