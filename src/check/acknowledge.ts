// In-source acknowledgements of lint warnings: `# pdp:allow CODE[, CODE…] -- why`.
//
// `pdp check --strict` is the CI gate, and some warnings are meant (a federated partner's SPIFFE ID,
// an on-call team's admin on every namespace). An acknowledgement says so next to the rule, with the
// reason, so the gate stays on for everything else and the decision stays reviewable: acknowledged
// warnings are still reported (json `acknowledged`, SARIF `suppressions`), just not counted.
//
// Scope: an acknowledgement covers the one item its comment belongs to, by the attachment rule of
// `pdp fmt` (docs/fmt.md, "Comments"), so formatting never changes what it covers. A comment after
// code on its line trails the last item that ended (or opened: `{`, `[`) before it on that line; a
// comment on a line of its own, or a `/* */` followed by code, leads the next item. The item is a
// block (with everything nested in it), an attribute, or one item of a list, and coverage is by
// position, not by line: a block starting on the line where another ends is not covered by it. A
// comment that is the last thing in its block or list belongs to no item. Only lint warnings can be
// acknowledged, never an error. An acknowledgement that names no lint code, gives no reason or
// covers nothing is itself a warning, so stale ones get cleaned up; several acknowledgements of one
// warning (a block's and one of its list items') are all used, and the innermost gives the reason.
import { closest, warning, type Diagnostic, type Position, type Span } from '../diagnostics';
import type { Comment, PolicyFile } from '../syntax';
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
  /** The covered item's span: a warning starting inside it is covered. */
  from: Position;
  to: Position;
  used: Set<string>;
}

const before = (a: Position, b: Position) => a.line < b.line || (a.line === b.line && a.column < b.column);
const within = (p: Position, from: Position, to: Position) => !before(p, from) && before(p, to);

interface CodeEvent {
  at: Position;
  kind: 'start' | 'end';
  item: { span: Span };
}

/** Where every block, attribute and list item starts and ends, in source order (ends first on a tie). */
function codeEvents(file: PolicyFile): CodeEvent[] {
  const events: CodeEvent[] = [];
  const add = (item: { span: Span }) => {
    events.push({ at: item.span.start, kind: 'start', item }, { at: item.span.end, kind: 'end', item });
  };
  const visit = (items: PolicyFile['body']) => {
    for (const item of items) {
      add(item);
      if (item.kind === 'block') visit(item.body);
      else if (item.value.kind === 'list') for (const value of item.value.items) add(value);
    }
  };
  visit(file.body);
  return events.sort((x, y) => (before(x.at, y.at) ? -1 : before(y.at, x.at) ? 1 : x.kind === y.kind ? 0 : x.kind === 'end' ? -1 : 1));
}

/** The item a comment belongs to (docs/fmt.md's rule), or why it belongs to none. */
function attachedItem(comment: Comment, events: readonly CodeEvent[]): { span: Span } | 'nothing-follows' | 'end-of-body' {
  const at = comment.span.start;
  // Trailing: the last item that ended, or opened, before the comment on its line. Of several
  // ending at one place (`"a"]` ends an item, then its attribute), the later end is the outer item.
  let trailing: CodeEvent | undefined;
  for (const e of events) {
    if (!before(e.at, at)) break;
    if (e.at.line === at.line) trailing = e;
  }
  if (trailing !== undefined) return trailing.item;
  // Leading: the next item to start, unless its block or list ends first.
  const next = events.find((e) => !before(e.at, comment.span.end));
  if (next === undefined) return 'nothing-follows';
  return next.kind === 'start' ? next.item : 'end-of-body';
}

function acknowledgementsIn(file: PolicyFile, out: Diagnostic[]): Acknowledgement[] {
  const found: Acknowledgement[] = [];
  const events = codeEvents(file);
  for (const comment of file.comments) {
    const m = MARKER.exec(comment.text);
    if (!m) continue;
    const { codes, reason } = parseAcknowledgement(m[1]!);
    const problem = describeProblem(codes, reason);
    if (problem) {
      out.push(warning('invalid-acknowledgement', problem.message, comment.span, problem.hint));
      continue;
    }
    const item = attachedItem(comment, events);
    if (item === 'nothing-follows' || item === 'end-of-body') {
      out.push(warning('unused-acknowledgement',
        item === 'nothing-follows' ? 'this `pdp:allow` comment is followed by no rule, so it acknowledges nothing' : 'this `pdp:allow` comment is the last thing in its block or list, so it belongs to no rule and acknowledges nothing',
        comment.span,
        'put it on the line above the block or attribute the warning is about, or after it on the same line'));
      continue;
    }
    found.push({ comment, codes, reason, file: file.path, from: item.span.start, to: item.span.end, used: new Set() });
  }
  return found;
}

/** `CODE[, CODE…] -- why`: the codes, and the reason (empty when there is none). */
function parseAcknowledgement(text: string): { codes: string[]; reason: string } {
  const m = /^(.*?)(?:\s--(?:\s(.*)|$)|$)/s.exec(text)!;
  return { codes: m[1]!.split(/[\s,]+/).filter(Boolean), reason: (m[2] ?? '').trim() };
}

function describeProblem(codes: string[], reason: string): { message: string; hint: string } | undefined {
  const known = Object.keys(LINT_CODES);
  if (codes.length === 0) {
    return { message: '`pdp:allow` names no lint code', hint: `write \`# pdp:allow CODE -- why\`, e.g. \`# pdp:allow foreign-trust-domain -- federated with partner.example\`` };
  }
  for (const code of codes) {
    if (known.includes(code)) continue;
    if (code.startsWith('-')) {
      return { message: `\`${code}\` is not a lint code: the reason goes after \` -- \`, with a space on each side`, hint: `write \`# pdp:allow ${codes.filter((c) => !c.startsWith('-')).join(', ') || 'CODE'} -- why\`` };
    }
    const near = closest(code, known);
    return {
      message: `\`${code}\` is not a lint code, so \`pdp:allow\` cannot acknowledge it`,
      hint: near ? `did you mean \`${near}\`? (errors cannot be acknowledged, only lint warnings)` : `the lint codes are listed by \`pdp check --help\`; errors cannot be acknowledged`,
    };
  }
  if (!/[\p{L}\p{N}]/u.test(reason)) return { message: '`pdp:allow` gives no reason', hint: `say why the warning is meant after \` -- \`: \`# pdp:allow ${codes.join(', ')} -- why\`` };
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
    const by = d.severity === 'warning'
      ? acknowledgements.filter((a) => a.file === d.span.file && a.codes.includes(d.code) && within(d.span.start, a.from, a.to))
      : [];
    if (by.length === 0) {
      kept.push(d);
      continue;
    }
    for (const a of by) a.used.add(d.code);
    // The innermost (the latest to start) is the one written for this warning in particular.
    const innermost = by.reduce((x, y) => (before(x.from, y.from) ? y : x));
    acknowledged.push({ diagnostic: d, reason: innermost.reason });
  }
  for (const a of acknowledgements) {
    const unused = a.codes.filter((c) => !a.used.has(c));
    if (unused.length === 0) continue;
    problems.push(warning('unused-acknowledgement',
      `\`pdp:allow ${unused.join(', ')}\` acknowledges no warning here`,
      a.comment.span,
      `it covers the item at lines ${a.from.line}-${a.to.line} only (the one \`pdp fmt\` keeps it with); remove it if the warning is gone`));
  }
  return { diagnostics: [...kept, ...problems], acknowledged };
}
