// Source text → PolicyFile + diagnostics. Wraps the generated nearley parser with:
// - lexical errors reported as diagnostics (the bad token is dropped so parsing can go on);
// - one parser run per top-level block, so one syntax error does not hide the next, and the Earley
//   chart never grows with the size of the file;
// - expected-token sets turned into words, never a parser state dump;
// - an ambiguous parse treated as a bug (it throws);
// - a recursive-descent fast path (fast-parse.ts) tried first on every token run: it accepts exactly
//   the runs in the language and builds the same AST, so nearley only runs where there is an error.
import nearley from 'nearley';
import { error, type Diagnostic, type Span } from '../diagnostics';
import type { BodyItem, Comment, PolicyFile } from './ast';
import { endOf, setCurrentFile, startOf, tokenSpan, type Token } from './build';
import { fastParseBody, MAX_NESTING, scanTokens } from './fast-parse';
import grammar from './grammar.generated';
import { describeCharacter } from './characters';
import { lexer, normalizeLineBreaks, TOKEN_WORDS, TRIVIA } from './lexer';

const compiledGrammar = nearley.Grammar.fromCompiled(grammar as unknown as nearley.CompiledRules);

export interface ParseResult {
  file: PolicyFile;
  diagnostics: Diagnostic[];
}

export class AmbiguousParseError extends Error {
  constructor(span: Span, count: number) {
    super(`internal error: the grammar is ambiguous (${count} parses) at ${span.file}:${span.start.line}:${span.start.column}`);
  }
}

/** Off only in tests that check the fast path against nearley (see parsePolicyWithNearley). */
let fastPath = true;

export function parsePolicy(source: string, path: string): ParseResult {
  setCurrentFile(path);
  // A bare CR is a line break (lexer.ts); made LF here, which moves no offset or column.
  const text = normalizeLineBreaks(source);
  if (fastPath) {
    // A file without a lexical or syntax error: scanned and parsed in one go, no nearley.
    const comments: Comment[] = [];
    const tokens = scanTokens(text, path, comments);
    const body = tokens && fastParseBody(tokens);
    if (body) return { file: policyFile(text, path, body, comments), diagnostics: [] };
  }
  const diagnostics: Diagnostic[] = [];
  const comments: Comment[] = [];
  const tokens = lex(text, path, diagnostics, comments);
  const tooDeep = firstTooDeep(tokens);
  if (tooDeep !== undefined) {
    // Nothing of it is parsed: the stages after the parser all recurse over the tree.
    diagnostics.push(error('nesting-too-deep', `blocks and lists nest more than ${MAX_NESTING} levels deep here`, tokenSpan(tooDeep, path), 'flatten the policy: namespace and service blocks need a few levels at most'));
    return { file: policyFile(text, path, [], comments), diagnostics };
  }
  // A file with lexical errors only is still one `body`; otherwise chunk it so every error is reported.
  const body = (fastPath ? fastParseBody(tokens) : null) ?? parseItems(topLevelChunks(tokens), path, diagnostics);
  // An unterminated `/*` runs to the end of the file, so whatever it swallowed (the `}` of the block
  // it is in, the rest of a list) is missing too: that is one mistake, reported once, as the comment.
  const cutByComment = diagnostics.some((d) => d.code === 'unterminated-comment');
  const reported = cutByComment ? diagnostics.filter((d) => !AT_END_OF_FILE.has(d)) : diagnostics;
  const invalidEnds = new Set(reported.filter((d) => d.code === 'invalid-character').map((d) => d.span.end.offset));
  return { file: policyFile(text, path, body, comments), diagnostics: reported.filter((d) => !followsInvalidCharacter(d, invalidEnds, text)) };
}

/**
 * A syntax error at the token right after an unexpected character (only spaces between them) is the
 * same mistake seen twice: `policy: "read"` is an unexpected `:` and then a string where `=` was
 * expected; `1.5` is an unexpected `.` and then a stray `5`. The character's error, with its hint,
 * is the one kept. `invalidEnds` holds where each invalid character ends: looking them up from the
 * error back over the spaces keeps this linear (comparing every pair took 90 s for 100,000 `}`).
 */
function followsInvalidCharacter(d: Diagnostic, invalidEnds: ReadonlySet<number>, text: string): boolean {
  if (d.code !== 'syntax-error') return false;
  for (let at = d.span.start.offset; ; at--) {
    if (invalidEnds.has(at)) return true;
    if (at === 0 || (text[at - 1] !== ' ' && text[at - 1] !== '\t')) return false;
  }
}

/** The diagnostics unexpectedEnd made: the file ended inside a block or list. */
const AT_END_OF_FILE = new WeakSet<Diagnostic>();

function policyFile(text: string, path: string, body: BodyItem[], comments: Comment[]): PolicyFile {
  return { kind: 'file', path, body, comments, span: { file: path, start: { offset: 0, line: 1, column: 1 }, end: endPosition(text) } };
}

/** The same as the old parser: nearley everywhere. For tests that compare the two paths. */
export function parsePolicyWithNearley(text: string, path: string): ParseResult {
  fastPath = false;
  try {
    return parsePolicy(text, path);
  } finally {
    fastPath = true;
  }
}

function endPosition(text: string): Span['end'] {
  // Counted in place: splitting a large file into lines only to count them is a lot of garbage.
  let lines = 1;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) lines++;
  return { offset: text.length, line: lines, column: text.length - text.lastIndexOf('\n') };
}

function lex(text: string, path: string, diagnostics: Diagnostic[], comments: Comment[]): Token[] {
  const tokens: Token[] = [];
  // The run of unexpected characters being reported: one diagnostic for characters that follow one
  // another, so a file of junk (a NUL-filled file after a crash, pasted binary) is one error, not one
  // per byte (a megabyte of them made a reload answer 160 MB of diagnostics).
  let run: { diagnostic: Diagnostic; first: string; count: number } | undefined;
  lexer.reset(text);
  for (const t of lexer as unknown as Iterable<Token>) {
    const type = t.type!;
    if (type === 'comment' || type === 'blockComment') {
      comments.push({ kind: 'comment', style: type === 'blockComment' ? 'block' : t.text.startsWith('#') ? 'hash' : 'slash', text: t.text, span: tokenSpan(t, path) });
      continue;
    }
    if (TRIVIA.has(type)) continue;
    switch (type) {
      case 'unterminatedComment':
        diagnostics.push(error('unterminated-comment', 'unterminated `/*` comment', tokenSpan({ ...t, text: '/*', lineBreaks: 0 }, path), 'close it with `*/`; until then, the rest of the file is part of the comment'));
        continue;
      case 'unterminatedString': {
        diagnostics.push(error('unterminated-string', 'unterminated string', tokenSpan(t, path), 'strings end with `"` on the same line; write a newline as `\\n`'));
        // Stand in a closed string so the rest of the file still parses.
        tokens.push({ ...t, type: 'string', text: `${t.text}"` });
        continue;
      }
      case 'invalid': {
        const span = tokenSpan(t, path);
        if (run && run.diagnostic.span.end.offset === t.offset) {
          run.count++;
          run.diagnostic.span = { ...run.diagnostic.span, end: span.end };
          run.diagnostic.message = runMessage(text.slice(run.diagnostic.span.start.offset, run.diagnostic.span.end.offset), run.first, run.count);
          if (run.diagnostic.hint === INVISIBLE_HINT) run.diagnostic.hint = 'remove them (they may be invisible in your editor)';
          continue;
        }
        const d = error('invalid-character', `unexpected character ${describeCharacter(t.text)}`, span, invalidCharacterHint(t.text, t.offset, text));
        diagnostics.push(d);
        run = { diagnostic: d, first: t.text, count: 1 };
        continue;
      }
      default:
        tokens.push(t);
    }
  }
  return tokens;
}

/** The first `{` or `[` that opens a level beyond MAX_NESTING, if any. */
function firstTooDeep(tokens: Token[]): Token | undefined {
  let depth = 0;
  for (const t of tokens) {
    if (t.type === 'lbrace' || t.type === 'lbracket') {
      if (++depth > MAX_NESTING) return t;
    } else if (t.type === 'rbrace' || t.type === 'rbracket') {
      depth = Math.max(0, depth - 1);
    }
  }
  return undefined;
}

/** A run of unexpected characters: quoted when short and every one is visible, else the first named and the rest counted. */
function runMessage(chars: string, first: string, count: number): string {
  const visible = chars.length <= 40 && [...chars].every((c) => c !== '`' && describeCharacter(c).startsWith('`'));
  return visible ? `unexpected characters \`${chars}\`` : `unexpected character ${describeCharacter(first)}, and ${count - 1} more after it`;
}

const INVISIBLE_HINT = 'remove it (it may be invisible in your editor)';

function invalidCharacterHint(ch: string, offset: number, text: string): string | undefined {
  const cp = ch.codePointAt(0)!;
  if (cp === 0xfeff && offset === 0) return 'save the file as UTF-8 without a byte-order mark';
  if (cp === 0xa0 || cp === 0x202f || cp === 0x3000 || (cp >= 0x2000 && cp <= 0x200a)) return 'replace it with an ordinary space';
  if (describeCharacter(ch).startsWith('U+')) return INVISIBLE_HINT;
  if (ch === ';') return 'attributes need no separator; remove the `;`';
  if (ch === ':') {
    // `identity: "team:ops"` → `write identity = "team:ops"`, the fix itself when both sides are there.
    const name = /([A-Za-z_][A-Za-z0-9_-]*)[ \t]*$/.exec(text.slice(Math.max(0, offset - 64), offset))?.[1];
    const value = /^[ \t]*("[^"\n]*"|[^\s]+)/.exec(text.slice(offset + 1, offset + 200))?.[1];
    return name && value ? `attributes are written \`name = value\`: write \`${name} = ${value}\`` : 'attributes are written `name = value`';
  }
  if (ch === '.' && /[0-9]/.test(text[offset - 1] ?? '') && /[0-9]/.test(text[offset + 1] ?? '')) return 'numbers are whole numbers here; a version or a decimal is written as a string (`"1.5"`)';
  if (ch === "'") return 'strings use double quotes';
  if (cp > 0x7f && /^[\p{L}\p{N}]$/u.test(ch)) {
    // `ѕervice` with a Cyrillic dze, `pоlicy` with a Cyrillic o: a look-alike pasted from a chat or a PDF.
    return `\`${ch}\` is U+${cp.toString(16).toUpperCase().padStart(4, '0')}, not an ASCII letter or digit (a look-alike, if it looks like one): names and keywords are ASCII`;
  }
  if (/[-0-9]/.test(ch)) {
    // `0x10`, `5abc`, `1e3`: digits run into a name (the lexer's number may not be followed by one).
    const word = /^-?[0-9]+[A-Za-z_][A-Za-z0-9_-]*/.exec(text.slice(offset, offset + 120))?.[0];
    if (word) return `\`${word}\` is neither a number nor a name: numbers are decimal digits only, and text is quoted (\`"${word}"\`)`;
  }
  if (ch === '*' && text[offset + 1] === '/') return 'block comments do not nest: the comment before this `*/` ended at its first `*/`';
  if (ch === '<' && text[offset + 1] === '<') return 'heredocs (`<<EOT`) are not supported: write the text as one string, with `\\n` for a line break';
  return undefined;
}

/** Splits at every `}` that closes a top-level block; a stray `}` at the top is a chunk of its own. */
function* topLevelChunks(tokens: Token[]): Generator<Token[]> {
  let chunk: Token[] = [];
  let depth = 0;
  for (const t of tokens) {
    chunk.push(t);
    if (t.type === 'lbrace') depth++;
    else if (t.type === 'rbrace') {
      depth--;
      if (depth <= 0) {
        depth = 0;
        yield chunk;
        chunk = [];
      }
    }
  }
  if (chunk.length) yield chunk;
}

/** A moo-shaped lexer over tokens we already have, so nearley can take a chunk of them. */
function tokenStream(tokens: Token[]) {
  let index = 0;
  return {
    reset() { index = 0; },
    next: () => tokens[index++],
    save: () => ({}),
    formatError: (t: Token) => `unexpected ${describeToken(t)}`,
    has: () => true,
  };
}

/** A loop, not `push(...more)`: a spread passes every element on the stack (150,000 overflow it). */
function append<T>(to: T[], more: readonly T[]): void {
  for (const x of more) to.push(x);
}

/** Blocks longer than this are parsed item by item, so the Earley chart stays small. */
const SPLIT_THRESHOLD = 256;

function parseChunk(chunk: Token[], path: string, diagnostics: Diagnostic[]): BodyItem[] | null {
  if (chunk.length > SPLIT_THRESHOLD) {
    const split = splitBlock(chunk);
    if (split) {
      // The block's shell (`type "label" { }`) and each item of its body go through the grammar
      // separately; the results are stitched back into one Block.
      const shell = parseTokens([...split.header, split.close], path, diagnostics);
      if (!shell || shell.length !== 1 || shell[0]!.kind !== 'block') return shell;
      const body = parseItems(split.items, path, diagnostics);
      return [{ ...shell[0]!, body }];
    }
  }
  return parseTokens(chunk, path, diagnostics);
}

/**
 * Parses a run of items. Consecutive small items share one Earley run (a parser per item costs
 * more than the items); a run that fails is parsed again item by item so every error is reported.
 */
function parseItems(items: Iterable<Token[]>, path: string, diagnostics: Diagnostic[]): BodyItem[] {
  const body: BodyItem[] = [];
  let batch: Token[] = [];
  let batchItems: Token[][] = [];
  const flush = () => {
    if (!batchItems.length) return;
    const scratch: Diagnostic[] = [];
    const parsed = batchItems.length === 1 ? parseChunk(batchItems[0]!, path, scratch) : parseTokens(batch, path, scratch);
    if (parsed && !scratch.length) append(body, parsed);
    else if (batchItems.length === 1) append(diagnostics, scratch);
    else for (const item of batchItems) append(body, parseChunk(item, path, diagnostics) ?? []);
    batch = [];
    batchItems = [];
  };
  for (const item of items) {
    if (batch.length + item.length > SPLIT_THRESHOLD) flush();
    if (item.length > SPLIT_THRESHOLD) {
      append(body, parseChunk(item, path, diagnostics) ?? []);
      continue;
    }
    for (const t of item) batch.push(t);
    batchItems.push(item);
  }
  flush();
  return body;
}

/**
 * Splits `type "label" { item item … }` into its header (through `{`), closing `}` and the token
 * runs of its items. Returns null when the shape is anything else, so the grammar reports it.
 */
function splitBlock(chunk: Token[]): { header: Token[]; close: Token; items: Token[][] } | null {
  let open = 1;
  if (chunk[0]?.type !== 'identifier') return null;
  if (chunk[open]?.type === 'string') open++;
  if (chunk[open]?.type !== 'lbrace' || chunk[chunk.length - 1]!.type !== 'rbrace') return null;
  const items: Token[][] = [];
  const end = chunk.length - 1;
  const matching = (from: number, openType: string, closeType: string): number => {
    let depth = 0;
    for (let k = from; k < end; k++) {
      const type = chunk[k]!.type;
      if (type === openType) depth++;
      else if (type === closeType && --depth === 0) return k;
    }
    return -1;
  };
  for (let j = open + 1; j < end; ) {
    if (chunk[j]!.type !== 'identifier') return null;
    const next = chunk[j + 1];
    if (next?.type === 'equals') {
      const value = chunk[j + 2];
      if (!value || j + 2 >= end) return null;
      const last = value.type === 'lbracket' ? matching(j + 2, 'lbracket', 'rbracket') : j + 2;
      if (last < 0) return null;
      items.push(chunk.slice(j, last + 1));
      j = last + 1;
    } else {
      let k = j + 1;
      if (chunk[k]?.type === 'string') k++;
      if (chunk[k]?.type !== 'lbrace') return null;
      const last = matching(k, 'lbrace', 'rbrace');
      if (last < 0) return null;
      items.push(chunk.slice(j, last + 1));
      j = last + 1;
    }
  }
  return { header: chunk.slice(0, open + 1), close: chunk[end]!, items };
}

function parseTokens(chunk: Token[], path: string, diagnostics: Diagnostic[]): BodyItem[] | null {
  const fast = fastPath ? fastParseBody(chunk) : null;
  if (fast) return fast;
  const parser = new nearley.Parser(compiledGrammar);
  (parser as unknown as { lexer: unknown }).lexer = tokenStream(chunk);
  try {
    parser.feed('');
  } catch (e) {
    const offending = (e as { token?: Token }).token;
    if (!offending) throw e;
    const index = chunk.indexOf(offending);
    diagnostics.push(syntaxError(offending, chunk[index - 1], chunk[index - 2], expectedTypes(parser), path, enclosingBlockType(chunk, index - 2), enclosingBlockType(chunk, index - 1)));
    return null;
  }
  const results = parser.results as BodyItem[][];
  if (results.length === 0) {
    const atEnd = unexpectedEnd(chunk, expectedTypes(parser), path);
    AT_END_OF_FILE.add(atEnd);
    diagnostics.push(atEnd);
    return null;
  }
  if (results.length > 1) throw new AmbiguousParseError(tokenSpan(chunk[0]!, path), results.length);
  return results[0]!;
}

/** The terminal types the parser could have accepted next (what nearley's own report lists). */
function expectedTypes(parser: nearley.Parser): string[] {
  const table = (parser as unknown as { table: { states: { rule: { symbols: unknown[] }; dot: number }[] }[] }).table;
  // After a failed feed nearley has pushed an empty column; the live one is before it.
  const column = table[table.length - 1]!.states.length ? table[table.length - 1]! : table[table.length - 2]!;
  const types = new Set<string>();
  for (const state of column.states) {
    const symbol = state.rule.symbols[state.dot] as { type?: string } | string | undefined;
    if (symbol && typeof symbol === 'object' && symbol.type) types.add(symbol.type);
  }
  return [...types];
}

function describeToken(t: Token): string {
  switch (t.type) {
    case 'string': return `string ${t.text.length > 40 ? `${t.text.slice(0, 37)}..."` : t.text}`;
    case 'identifier': return `name \`${t.text}\``;
    case 'number': return `number \`${t.text}\``;
    default: return `\`${t.text}\``;
  }
}

function listWords(types: string[]): string {
  const words = [...new Set(types.map((t) => TOKEN_WORDS[t] ?? t))];
  if (words.length <= 1) return words[0] ?? 'nothing more';
  return `${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}`;
}

/**
 * The block types of the language (check/schema.ts BLOCKS, which owns them; a test keeps the two
 * equal) and those that may hold other blocks. Syntax errors use them to tell a block header with
 * something missing from an attribute with something missing.
 */
export const BLOCK_TYPES: ReadonlySet<string> = new Set(['service', 'service_prefix', 'namespace', 'namespace_prefix', 'role', 'settings', 'api', 'test']);
export const CONTAINER_BLOCK_TYPES: ReadonlySet<string> = new Set(['namespace', 'namespace_prefix']);

/** The type of the innermost block still open before `chunk[before]`; null at the top level. */
function enclosingBlockType(chunk: Token[], before: number): string | null {
  let depth = 0;
  for (let k = before - 1; k >= 0; k--) {
    const type = chunk[k]!.type;
    if (type === 'rbrace') depth++;
    else if (type === 'lbrace' && depth-- === 0) {
      const head = chunk[k - 1]?.type === 'string' ? chunk[k - 2] : chunk[k - 1];
      return head?.type === 'identifier' ? head.text : '';
    }
  }
  return null;
}

/**
 * `NAME "text"` followed by something other than `{`: a block header whose `{` is missing, or an
 * attribute whose `=` is. It is a block header when NAME is a block type where blocks may stand (the
 * top level, or inside a `namespace`/`namespace_prefix`); otherwise an attribute.
 */
function looksLikeAttribute(name: string, enclosing: string | null): boolean {
  if (!BLOCK_TYPES.has(name)) return true;
  return enclosing !== null && !CONTAINER_BLOCK_TYPES.has(enclosing);
}

function syntaxError(token: Token, previous: Token | undefined, beforePrevious: Token | undefined, expected: string[], path: string, enclosing: string | null, enclosingPrevious: string | null): Diagnostic {
  const span = tokenSpan(token, path);
  const got = describeToken(token);
  const exp = new Set(expected);
  if (previous?.type === 'identifier' && exp.has('string') && !looksLikeAttribute(previous.text, enclosingPrevious)
    && (token.type === 'identifier' || token.type === 'number' || token.type === 'kwTrue' || token.type === 'kwFalse')) {
    // `service web {`: a block type where a block may stand, then an unquoted label.
    if (previous.text === 'settings') {
      return error('syntax-error', `expected \`{\` after \`settings\`, found ${got}`, span, 'a `settings` block takes no label: write `settings { ... }`');
    }
    return error('syntax-error', `expected a quoted label or \`{\` after \`${previous.text}\`, found ${got}`, span,
      `labels are strings: write \`${previous.text} "${token.text}" { ... }\``);
  }
  if (previous?.type === 'identifier' && exp.has('equals')) {
    return error('syntax-error', `expected "=" after attribute name \`${previous.text}\`, found ${got}`, span,
      `write \`${previous.text} = <value>\`; a block would be \`${previous.text} "label" { ... }\``);
  }
  if (previous?.type === 'equals') {
    return error('syntax-error', `expected a value after \`=\`, found ${got}`, span,
      token.type === 'identifier' ? `strings are quoted: \`"${token.text}"\`` : 'a value is a string, a number, `true`, `false` or a list `[...]`');
  }
  if (previous?.type === 'string' && exp.has('lbrace') && exp.size === 1) {
    if (token.type === 'string') {
      // `service "two" "labels" {`: a second label.
      return error('syntax-error', `expected \`{\` after the block label, found a second label ${got.replace(/^string /, '')}`, span,
        beforePrevious?.type === 'identifier' ? `a block takes one label: \`${beforePrevious.text} ${previous.text} { ... }\`` : 'a block takes one label');
    }
    if (beforePrevious?.type === 'identifier' && looksLikeAttribute(beforePrevious.text, enclosing)) {
      // `policy "read" identity = …`: the author most likely left out the `=`.
      return error('syntax-error', `expected "=" after attribute name \`${beforePrevious.text}\`, found ${describeToken(previous)}`, tokenSpan(previous, path),
        `write \`${beforePrevious.text} = ${previous.text}\``);
    }
    // Only a block type where a block may stand gets here (looksLikeAttribute took the rest): its `{` is missing.
    return error('syntax-error', `expected \`{\` after the block label, found ${got}`, span,
      beforePrevious?.type === 'identifier' ? `write \`${beforePrevious.text} ${previous.text} { ... }\`` : undefined);
  }
  if (exp.has('comma') && exp.has('rbracket')) {
    // A value where a `,` was missing; a `}` or a name (the next attribute): the list was never closed.
    const listEnded = token.type === 'rbrace' || token.type === 'identifier';
    const isValue = ['string', 'number', 'kwTrue', 'kwFalse', 'lbracket'].includes(token.type!);
    return error('syntax-error', `expected \`,\` or \`]\` in a list, found ${got}`, span,
      listEnded ? 'close the list with `]` after its last item' : isValue ? 'separate list items with commas' : undefined);
  }
  if (token.type === 'comma' && exp.has('identifier') && !exp.has('rbracket')) {
    // `policy = "read", identity = …`: HCL separates attributes by nothing (or a newline).
    return error('syntax-error', `unexpected \`,\` between attributes; expected ${listWords(expected)}`, span, 'attributes need no separator; remove the `,`');
  }
  if (token.type === 'comma' && exp.has('rbracket')) {
    return error('syntax-error', `unexpected \`,\` in a list; expected ${listWords(expected)}`, span, previous?.type === 'comma' ? 'remove the extra `,`' : 'a list starts with its first item: `["a", "b"]`');
  }
  if (token.type === 'rbrace' && exp.has('identifier') && !exp.has('rbrace')) {
    return error('syntax-error', 'unexpected `}` with no block open', span, 'remove it, or check the braces above');
  }
  return error('syntax-error', `unexpected ${got}; expected ${listWords(expected)}`, span);
}

function unexpectedEnd(chunk: Token[], expected: string[], path: string): Diagnostic {
  // Point at the innermost `{` or `[` that was never closed, which is where the author must look.
  const open: Token[] = [];
  for (const t of chunk) {
    if (t.type === 'lbrace' || t.type === 'lbracket') open.push(t);
    else if (t.type === 'rbrace' || t.type === 'rbracket') open.pop();
  }
  const unclosed = open[open.length - 1];
  if (unclosed?.type === 'lbracket') {
    return error('unclosed-list', 'this `[` is never closed', tokenSpan(unclosed, path), 'add the matching `]` after the last item');
  }
  if (unclosed) {
    return error('unclosed-block', 'this `{` is never closed', tokenSpan(unclosed, path), 'add the matching `}`');
  }
  const last = chunk[chunk.length - 1]!;
  const end = endOf(last);
  return error('syntax-error', `unexpected end of file after ${describeToken(last)}; expected ${listWords(expected)}`,
    { file: path, start: startOf(last), end });
}
