// A recursive-descent recogniser for grammar/policy.ne that builds the AST with the same
// constructors as the grammar's postprocessors, used before nearley on every token run.
//
// Why: nearley's Earley chart costs tens of microseconds per rule, and almost every policy file is
// valid. The grammar is LL(2) (an item is `identifier =` or `identifier string? {`) and
// unambiguous, so for a token run in the language there is exactly one parse and this function
// builds it, node for node. For anything outside the language it returns null without reporting,
// and the caller runs nearley, which owns every syntax diagnostic and the ambiguity guard; the
// fast path never decides what an error looks like.
//
// scanTokens is the lexer's fast path in the same spirit: it produces the tokens moo would for
// text made only of the ordinary tokens, without allocating a token per space, newline or comment,
// and gives up (null) on anything a diagnostic might be about, so that moo handles it.
//
// test/fast-parse.test.ts compares both against moo + nearley on the corpus and on generated inputs.
import type { BodyItem, Comment, StringLiteral, Value } from './ast';
import { attribute, block, booleanLiteral, listLiteral, numberLiteral, stringLiteral, tokenSpan, type Token } from './build';

const PUNCTUATION: Record<string, string> = { '{': 'lbrace', '}': 'rbrace', '[': 'lbracket', ']': 'rbracket', '=': 'equals', ',': 'comma' };

const isDigit = (c: number) => c >= 48 && c <= 57;
const isIdentifierStart = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95; // A-Z a-z _
const isIdentifierPart = (c: number) => isIdentifierStart(c) || isDigit(c) || c === 45; // … 0-9 -

/**
 * The grammar's tokens of `text` (trivia dropped, comments pushed to `comments`), exactly as moo
 * makes them with src/syntax/lexer.ts; or null when the text holds anything that is not an ordinary
 * token: an unterminated string or comment, an invalid character, a number run into a name.
 */
export function scanTokens(text: string, path: string, comments: Comment[]): Token[] | null {
  const tokens: Token[] = [];
  let line = 1;
  let lineStart = 0; // offset of the first character of the current line: column = offset - lineStart + 1
  const token = (type: string, start: number, end: number, lineBreaks = 0): Token => {
    const t = text.slice(start, end);
    return { type, value: t, text: t, offset: start, lineBreaks, line, col: start - lineStart + 1 };
  };
  const comment = (style: Comment['style'], t: Token) => comments.push({ kind: 'comment', style, text: t.text, span: tokenSpan(t, path) });
  for (let i = 0; i < text.length; ) {
    const c = text.charCodeAt(i);
    const ch = text[i]!;
    if (ch === ' ' || ch === '\t') {
      i++;
    } else if (ch === '\n' || ch === '\r') {
      // LF, CRLF and a bare CR are each one line break (lexer.ts)
      if (ch === '\r' && text[i + 1] === '\n') i++;
      line++;
      lineStart = ++i;
    } else if (PUNCTUATION[ch] !== undefined) {
      tokens.push(token(PUNCTUATION[ch]!, i, i + 1));
      i++;
    } else if (ch === '"') {
      // "(?:\\[^\r\n]|[^"\\\r\n])*"
      let j = i + 1;
      for (;;) {
        const d = text[j];
        if (d === undefined || d === '\n' || d === '\r') return null; // unterminated
        if (d === '"') break;
        if (d === '\\') {
          if (text[j + 1] === undefined || text[j + 1] === '\n' || text[j + 1] === '\r') return null;
          j += 2;
        } else j++;
      }
      tokens.push(token('string', i, j + 1));
      i = j + 1;
    } else if (isIdentifierStart(c)) {
      let j = i + 1;
      while (j < text.length && isIdentifierPart(text.charCodeAt(j))) j++;
      const t = token('identifier', i, j);
      if (t.text === 'true') t.type = 'kwTrue';
      else if (t.text === 'false') t.type = 'kwFalse';
      tokens.push(t);
      i = j;
    } else if (isDigit(c) || (ch === '-' && isDigit(text.charCodeAt(i + 1)))) {
      // -?[0-9]+(?![A-Za-z_]): a digit run followed by a letter lexes oddly (moo backtracks); leave it to moo.
      let j = i + 1;
      while (isDigit(text.charCodeAt(j))) j++;
      if (isIdentifierStart(text.charCodeAt(j))) return null;
      tokens.push(token('number', i, j));
      i = j;
    } else if (ch === '#' || (ch === '/' && text[i + 1] === '/')) {
      let j = i + 1;
      while (j < text.length && text[j] !== '\n' && text[j] !== '\r') j++;
      comment(ch === '#' ? 'hash' : 'slash', token('comment', i, j));
      i = j;
    } else if (ch === '/' && text[i + 1] === '*') {
      const close = text.indexOf('*/', i + 2);
      if (close < 0) return null; // unterminated
      const end = close + 2;
      // Counted as moo counts them, by `\n` only: parsePolicy has turned every bare CR into one.
      let lineBreaks = 0;
      let lastBreak = -1;
      for (let k = text.indexOf('\n', i); k >= 0 && k < end; k = text.indexOf('\n', k + 1)) {
        lineBreaks++;
        lastBreak = k;
      }
      comment('block', token('blockComment', i, end, lineBreaks));
      if (lineBreaks) {
        line += lineBreaks;
        lineStart = lastBreak + 1;
      }
      i = end;
    } else {
      return null; // an invalid character
    }
  }
  return tokens;
}

/**
 * How deeply blocks and lists may nest (policy-language.md leaves it open; docs/policy-language.md).
 * Real policies use two or three levels; without a bound, a hostile file of a few thousand `{`
 * would exhaust the call stack of every recursive stage (parse, check, fmt). Deeper runs go to the
 * slow path, which reports `nesting-too-deep`.
 */
export const MAX_NESTING = 64;
const MAX_DEPTH = MAX_NESTING;

/**
 * Parses `tokens[from, to)` as the grammar's `body`. Returns the items, or null when the run is not
 * exactly one `body` (the caller then asks nearley, which reports why).
 */
export function fastParseBody(tokens: readonly Token[], from = 0, to = tokens.length): BodyItem[] | null {
  let pos = from;
  const typeAt = (i: number): string | undefined => (i < to ? tokens[i]!.type : undefined);

  // body -> item:*   (stops before a `}` or the end; the caller checks which is allowed)
  const body = (depth: number): BodyItem[] | null => {
    const items: BodyItem[] = [];
    while (typeAt(pos) === 'identifier') {
      const name = tokens[pos]!;
      const next = typeAt(pos + 1);
      if (next === 'equals') {
        // attribute -> %identifier %equals value
        pos += 2;
        const v = value(depth);
        if (!v) return null;
        items.push(attribute(name, v));
        continue;
      }
      // block -> %identifier label:? %lbrace body %rbrace
      if (depth >= MAX_DEPTH) return null;
      pos++;
      let label: StringLiteral | null = null;
      if (next === 'string') label = stringLiteral(tokens[pos++]!);
      if (typeAt(pos) !== 'lbrace') return null;
      pos++;
      const inner = body(depth + 1);
      if (!inner || typeAt(pos) !== 'rbrace') return null;
      items.push(block(name, label, inner, tokens[pos++]!));
    }
    return items;
  };

  // value -> %string | %number | %kwTrue | %kwFalse | list
  const value = (depth: number): Value | null => {
    const t = tokens[pos];
    switch (typeAt(pos)) {
      case 'string': pos++; return stringLiteral(t!);
      case 'number': pos++; return numberLiteral(t!);
      case 'kwTrue':
      case 'kwFalse': pos++; return booleanLiteral(t!);
      case 'lbracket': return depth >= MAX_DEPTH ? null : list(depth + 1);
      default: return null;
    }
  };

  // list -> %lbracket %rbracket | %lbracket values %comma:? %rbracket
  // values -> value | values %comma value
  const list = (depth: number): Value | null => {
    const open = tokens[pos++]!;
    const items: Value[] = [];
    while (typeAt(pos) !== 'rbracket') {
      const v = value(depth);
      if (!v) return null;
      items.push(v);
      if (typeAt(pos) === 'comma') pos++;
      else if (typeAt(pos) !== 'rbracket') return null;
    }
    // `[,]` is not a list: a comma needs a value before it, which the loop above guarantees.
    return listLiteral(open, items, tokens[pos++]!);
  };

  const items = body(0);
  return items && pos === to ? items : null;
}
