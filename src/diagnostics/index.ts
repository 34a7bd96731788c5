// Spans and coded diagnostics. This module imports nothing else of ours: every stage
// (syntax, check, compile, CLI, server) speaks in these types.

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
 * Renders one diagnostic the way rustc and Cedar do:
 *
 *     policies/a.hcl:3:5: error[unknown-attribute]: unknown attribute `polcy` in a `service` block
 *       |
 *     3 |     polcy = "read"
 *       |     ^^^^^
 *       = hint: did you mean `policy`?
 */
export function renderDiagnostic(d: Diagnostic, sources: SourceLookup): string {
  const head = `${spanLabel(d.span)}: ${d.severity}[${d.code}]: ${d.message}`;
  const lines = [head];
  const text = sources(d.span.file);
  if (text !== undefined) {
    const sourceLines = text.split(/\r?\n/);
    const lineText = sourceLines[d.span.start.line - 1];
    if (lineText !== undefined) {
      const gutter = String(d.span.start.line);
      const pad = ' '.repeat(gutter.length);
      const startCol = d.span.start.column;
      const endCol =
        d.span.end.line === d.span.start.line ? Math.max(d.span.end.column, startCol + 1) : lineText.length + 1;
      const caretWidth = Math.max(1, Math.min(endCol, lineText.length + 2) - startCol);
      const visible = lineText.replace(/\t/g, ' ');
      lines.push(`${pad} |`, `${gutter} | ${visible}`, `${pad} | ${' '.repeat(startCol - 1)}${'^'.repeat(caretWidth)}`);
      if (d.hint) lines.push(`${pad} = hint: ${d.hint}`);
      return lines.join('\n');
    }
  }
  if (d.hint) lines.push(`  = hint: ${d.hint}`);
  return lines.join('\n');
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
