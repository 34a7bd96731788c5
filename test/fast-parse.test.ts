// The recursive-descent fast path (src/syntax/fast-parse.ts) against nearley: for every input the
// parse result (AST, spans, comments, diagnostics) and any thrown error must be the same as with
// nearley alone. Inputs: every .hcl file of the repository's tests and example policies, the
// benchmark family, deep nesting, and generated texts (valid ones, mutated ones, token soup).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { parsePolicy, type Comment } from '../src/syntax';
import type { Token } from '../src/syntax/build';
import { fastParseBody, scanTokens } from '../src/syntax/fast-parse';
import { lexer, normalizeLineBreaks, TRIVIA } from '../src/syntax/lexer';
import { parsePolicyWithNearley } from '../src/syntax/parse';
import { hclSources, makeFamily } from '../bench/policy-family';
import { policySource } from './support/policy-arbitrary';

const ROOT = path.resolve(__dirname, '..', '..');

function outcome(parse: () => unknown): unknown {
  try {
    return { ok: parse() };
  } catch (e) {
    return { threw: String(e) };
  }
}

function assertSameAsNearley(text: string, file = 'input.hcl'): void {
  assert.deepStrictEqual(outcome(() => parsePolicy(text, file)), outcome(() => parsePolicyWithNearley(text, file)), `differs on:\n${text}`);
}

function hclFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...hclFiles(full));
    else if (entry.name.endsWith('.hcl')) out.push(full);
  }
  return out;
}

test('fast path = nearley on every .hcl file of the tests and the example policies', () => {
  const files = [...hclFiles(path.join(ROOT, 'test')), ...hclFiles(path.join(ROOT, 'policies'))];
  assert.ok(files.length >= 50, `found only ${files.length} files`);
  for (const file of files) assertSameAsNearley(fs.readFileSync(file, 'utf8'), path.relative(ROOT, file));
});

test('fast path = nearley on the benchmark family (large blocks, batching)', () => {
  for (const source of hclSources(makeFamily(600), 200)) assertSameAsNearley(source.text, source.path);
});

test('fast path = nearley on deep nesting, past the fast path\'s depth limit', () => {
  for (const depth of [5, 199, 200, 201, 400]) {
    assertSameAsNearley(`${'a {'.repeat(depth)} x = 1 ${'}'.repeat(depth)}`);
    assertSameAsNearley(`x = ${'['.repeat(depth)}1${']'.repeat(depth)}`);
    assertSameAsNearley(`${'a {'.repeat(depth)} x = 1 ${'}'.repeat(depth - 1)}`);
  }
});

test('the fast path declines whatever is not exactly one body', () => {
  for (const text of ['}', 'a', 'a =', 'a = [,]', 'a = [1 2]', 'a = [1,,]', 'a "x"', 'a "x" {', 'a { } }', 'a = b', '"x" { }', 'a "x" "y" { }']) {
    assert.equal(fastParseBody(grammarTokens(text)), null, text);
  }
  assert.deepEqual(fastParseBody(grammarTokens('')), []);
});

/** The grammar's tokens for a text, trivia dropped, as the parser sees them. */
function grammarTokens(text: string): Token[] {
  const out: Token[] = [];
  lexer.reset(text);
  for (const t of lexer as unknown as Iterable<Token>) if (!TRIVIA.has(t.type!)) out.push(t);
  return out;
}

// ---- generated inputs ------------------------------------------------------------------------

const nameArb = fc.constantFrom('service', 'namespace', 'policy', 'identity', 'identities', 'cidrs', 'x', 'role', 'settings');
const stringArb = fc.constantFrom('"a"', '""', '"svc-1"', '"team:\\"q\\""', '"\\u00e9\\n"', '"${x}"', '"bad \\q"', '"spiffe://c/ns/{namespace}/sa/*"');
const valueArb: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    stringArb,
    fc.constantFrom('1', '-7', 'true', 'false', '0'),
    fc.tuple(fc.array(tie('value'), { maxLength: 4 }), fc.boolean()).map(([items, trailing]) => `[${items.join(', ')}${trailing && items.length ? ',' : ''}]`),
  ),
})).value;
const bodyArb: fc.Arbitrary<string> = fc.letrec<{ body: string; item: string }>((tie) => ({
  item: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.tuple(nameArb, valueArb).map(([n, v]) => `${n} = ${v}`),
    fc.tuple(nameArb, fc.option(stringArb), tie('body')).map(([n, l, b]) => `${n} ${l ?? ''} {\n${b}\n}`),
  ),
  body: fc.array(tie('item'), { maxLength: 5 }).map((items) => items.join('\n')),
})).body;
const separatorArb = fc.constantFrom(' ', '\n', '  ', ' # c\n', ' /* c */ ', '\t');

/** Splits a text into rough tokens (keeping strings whole) so a mutation removes, repeats or inserts one. */
function pieces(text: string): string[] {
  return text.match(/"(?:\\.|[^"\\\n])*"|[{}[\]=,]|[^\s{}[\]=,"]+/g) ?? [];
}

const mutationArb = fc.record({
  at: fc.nat(),
  kind: fc.constantFrom('drop', 'repeat', 'insert'),
  insert: fc.constantFrom('{', '}', '[', ']', '=', ',', '"s"', 'name', '1', ';', ':', "'", '"open', '/* open', 'true'),
});

test('fast path = nearley on generated valid bodies', () => {
  fc.assert(fc.property(bodyArb, (text) => assertSameAsNearley(text)), { numRuns: 400 });
});

test('fast path = nearley on generated policy files (every layout, comment kind and CRLF)', () => {
  fc.assert(fc.property(policySource({ exotic: true }), (text) => assertSameAsNearley(text)), { numRuns: 300 });
});

test('fast path = nearley on generated bodies with one or two tokens dropped, repeated or inserted', () => {
  fc.assert(fc.property(bodyArb, fc.array(mutationArb, { minLength: 1, maxLength: 2 }), separatorArb, (text, mutations, sep) => {
    const parts = pieces(text);
    for (const m of mutations) {
      const at = parts.length ? m.at % (parts.length + 1) : 0;
      if (m.kind === 'insert' || !parts.length) parts.splice(at, 0, m.insert);
      else if (m.kind === 'drop') parts.splice(Math.min(at, parts.length - 1), 1);
      else parts.splice(at, 0, parts[Math.min(at, parts.length - 1)]!);
    }
    assertSameAsNearley(parts.join(sep));
  }), { numRuns: 600 });
});

test('fast path = nearley on token soup', () => {
  const token = fc.constantFrom('a', 'service', '"x"', '{', '}', '[', ']', '=', ',', '1', 'true', ';', '"open', '# c');
  fc.assert(fc.property(fc.array(token, { maxLength: 30 }), separatorArb, (tokens, sep) => assertSameAsNearley(tokens.join(sep === '\t' ? '\n' : sep))), { numRuns: 600 });
});

// ---- the scanner against moo ---------------------------------------------------------------------

/** moo's view of a text: grammar tokens and comments, or null where a diagnostic would be reported. */
function mooScan(text: string): { tokens: object[]; comments: Comment[] } | null {
  const { parsePolicyWithNearley } = require('../src/syntax/parse') as typeof import('../src/syntax/parse');
  const parsed = parsePolicyWithNearley(text, 'x.hcl');
  const tokens: object[] = [];
  lexer.reset(text);
  for (const t of lexer as unknown as Iterable<Token>) {
    if (['unterminatedComment', 'unterminatedString', 'invalid'].includes(t.type!)) return null;
    if (!TRIVIA.has(t.type!)) tokens.push(plain(t));
  }
  return { tokens, comments: parsed.file.comments };
}

const plain = (t: Token) => ({ type: t.type, value: t.value, text: t.text, offset: t.offset, lineBreaks: t.lineBreaks, line: t.line, col: t.col });

function assertScansLikeMoo(raw: string): void {
  // Both see the text as parsePolicy passes it on: every bare CR already a LF (src/syntax/lexer.ts).
  const text = normalizeLineBreaks(raw);
  const comments: Comment[] = [];
  const fast = scanTokens(text, 'x.hcl', comments);
  const moo = mooScan(text);
  if (fast === null) return; // declining is always allowed; moo then does the work
  assert.ok(moo, `the scanner accepted what moo reports:\n${JSON.stringify(text)}`);
  assert.deepStrictEqual({ tokens: fast.map(plain), comments }, moo, `differs on:\n${JSON.stringify(text)}`);
}

test('the scanner makes the tokens, positions and comments moo makes', () => {
  for (const file of [...hclFiles(path.join(ROOT, 'test')), ...hclFiles(path.join(ROOT, 'policies'))]) assertScansLikeMoo(fs.readFileSync(file, 'utf8'));
  for (const text of ['', 'a', '-1', '12ab', '1-2', 'a-b-1', '"a\\"', '"a\\\nb"', '/*\n\n*/ x', '/* a */\n  /*\nb */ y = 1', 'x // y\r\n z', '#', '/*/ */', 'true false truex']) assertScansLikeMoo(text);
  const char = fc.constantFrom(' ', '\n', '\r', '\t', '#', '/', '*', '"', '\\', '-', '0', '7', 'a', 'Z', '_', 'true', 'false', '{', '}', '[', ']', '=', ',', ';', 'é', "'", 'n', 'u');
  fc.assert(fc.property(fc.array(char, { maxLength: 40 }), (chars) => assertScansLikeMoo(chars.join(''))), { numRuns: 3000 });
  fc.assert(fc.property(policySource({ exotic: true }), (text) => {
    assert.ok(scanTokens(text, 'x.hcl', []), 'a generated valid file is scanned');
    assertScansLikeMoo(text);
  }), { numRuns: 200 });
});
