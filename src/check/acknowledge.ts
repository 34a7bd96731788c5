// In-source acknowledgements of lint warnings: `# pdp:allow CODE[, CODE…] -- why`.
//
// `pdp check --strict` is the CI gate, and some warnings are meant (a federated partner's SPIFFE ID,
// an on-call team's admin on every namespace). An acknowledgement says so next to the rule, with the
// reason, so the gate stays on for everything else and the decision stays reviewable: acknowledged
// warnings are still reported (json `acknowledged`, SARIF `suppressions`), just not counted.
//
// Scope: a comment on a line of its own covers the next line with code on it; a comment after code
// covers its own line. When that line opens a block, the whole block is covered; when it starts an
// attribute, every line of the attribute. Only lint warnings can be acknowledged, never an error.
// An acknowledgement that names no lint code, gives no reason or covers nothing is itself a warning,
// so stale ones get cleaned up.
import { closest, warning, type Diagnostic, type Position } from '../diagnostics';
import type { Block, Comment, PolicyFile } from '../syntax';
import { LINT_CODES } from './passes/lint';

export const ACKNOWLEDGEMENT_CODES = {
  'invalid-acknowledgement': 'a `pdp:allow` comment without a known lint code or without a reason',
  'unused-acknowledgement': 'a `pdp:allow` comment that acknowledges no warning',
} as const;

const MARKER = /^(?:#|\/\/|\/\*)\s*pdp:allow\b(.*?)(?:\*\/)?\s*$/s;

export interface Acknowledged {
  diagnostic: Diagnostic;
  /** The text after `--` in the acknowledging comment. */
  reason: string;
}

interface Acknowledgement {
  comment: Comment;
  codes: string[];
  reason: string;
  file: string;
  fromLine: number;
  toLine: number;
  used: Set<string>;
}

const before = (a: Position, b: Position) => a.line < b.line || (a.line === b.line && a.column < b.column);

/** Where code starts on each line (block headers, attributes, list items, closing brackets), and which block or attribute starts there. */
function codeMap(file: PolicyFile): { starts: Position[]; extentFrom: Map<number, number> } {
  const starts: Position[] = [];
  // line → last line of the outermost block or attribute starting on it
  const extentFrom = new Map<number, number>();
  const visit = (items: PolicyFile['body']) => {
    for (const item of items) {
      const line = item.span.start.line;
      starts.push(item.span.start);
      if (!extentFrom.has(line)) extentFrom.set(line, item.span.end.line);
      if (item.kind === 'block') {
        starts.push(closingBrace(item));
        visit(item.body);
      } else if (item.value.kind === 'list') {
        // A list's items and its `]` are code too: a comment after one of them covers that line.
        for (const value of item.value.items) starts.push(value.span.start);
        starts.push({ ...item.value.span.end, column: Math.max(1, item.value.span.end.column - 1) });
      }
    }
  };
  visit(file.body);
  starts.sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0));
  return { starts, extentFrom };
}

/** The position of a block's closing `}` (its span ends just after it). */
function closingBrace(block: Block): Position {
  return { ...block.span.end, column: Math.max(1, block.span.end.column - 1) };
}

function acknowledgementsIn(file: PolicyFile, out: Diagnostic[]): Acknowledgement[] {
  const found: Acknowledgement[] = [];
  const { starts, extentFrom } = codeMap(file);
  for (const comment of file.comments) {
    const m = MARKER.exec(comment.text);
    if (!m) continue;
    const [codeText = '', ...why] = m[1]!.split(' -- ');
    const codes = codeText.split(/[\s,]+/).filter(Boolean);
    const reason = why.join(' -- ').trim();
    const problem = describeProblem(codes, reason);
    if (problem) {
      out.push(warning('invalid-acknowledgement', problem.message, comment.span, problem.hint));
      continue;
    }
    const at = comment.span.start;
    const trailing = starts.some((p) => p.line === at.line && p.column < at.column);
    const target = trailing ? at.line : starts.find((p) => p.line > comment.span.end.line)?.line;
    if (target === undefined) {
      out.push(warning('unused-acknowledgement', 'this `pdp:allow` comment is followed by no rule, so it acknowledges nothing', comment.span,
        'put it on the line above the block or attribute the warning is about, or after it on the same line'));
      continue;
    }
    found.push({ comment, codes, reason, file: file.path, fromLine: target, toLine: extentFrom.get(target) ?? target, used: new Set() });
  }
  return found;
}

function describeProblem(codes: string[], reason: string): { message: string; hint: string } | undefined {
  const known = Object.keys(LINT_CODES);
  if (codes.length === 0) {
    return { message: '`pdp:allow` names no lint code', hint: `write \`# pdp:allow CODE -- why\`, e.g. \`# pdp:allow foreign-trust-domain -- federated with partner.example\`` };
  }
  for (const code of codes) {
    if (known.includes(code)) continue;
    const near = closest(code, known);
    return {
      message: `\`${code}\` is not a lint code, so \`pdp:allow\` cannot acknowledge it`,
      hint: near ? `did you mean \`${near}\`? (errors cannot be acknowledged, only lint warnings)` : `the lint codes are listed by \`pdp check --help\`; errors cannot be acknowledged`,
    };
  }
  if (reason === '') return { message: '`pdp:allow` gives no reason', hint: `say why the warning is meant after \` -- \`: \`# pdp:allow ${codes.join(', ')} -- why\`` };
  return undefined;
}

/**
 * Splits `diagnostics` into those still reported and the warnings acknowledged in the files'
 * comments; adds a warning for every malformed or unused acknowledgement.
 */
export function applyAcknowledgements(files: readonly PolicyFile[], diagnostics: readonly Diagnostic[]): { diagnostics: Diagnostic[]; acknowledged: Acknowledged[] } {
  const problems: Diagnostic[] = [];
  const acknowledgements = files.flatMap((file) => acknowledgementsIn(file, problems));
  if (acknowledgements.length === 0) return { diagnostics: [...diagnostics, ...problems], acknowledged: [] };
  const kept: Diagnostic[] = [];
  const acknowledged: Acknowledged[] = [];
  for (const d of diagnostics) {
    const line = d.span.start.line;
    const by = d.severity === 'warning'
      ? acknowledgements.find((a) => a.file === d.span.file && a.codes.includes(d.code) && line >= a.fromLine && line <= a.toLine)
      : undefined;
    if (by === undefined) {
      kept.push(d);
      continue;
    }
    by.used.add(d.code);
    acknowledged.push({ diagnostic: d, reason: by.reason });
  }
  for (const a of acknowledgements) {
    const unused = a.codes.filter((c) => !a.used.has(c));
    if (unused.length === 0) continue;
    problems.push(warning('unused-acknowledgement',
      `\`pdp:allow ${unused.join(', ')}\` acknowledges no warning here`,
      a.comment.span,
      a.fromLine === a.toLine ? `it covers line ${a.fromLine} only; remove it if the warning is gone` : `it covers lines ${a.fromLine}-${a.toLine}; remove it if the warning is gone`));
  }
  return { diagnostics: [...kept, ...problems], acknowledged };
}
