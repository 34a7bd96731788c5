// How diagnostics and explanations look on a terminal, through the real binary: hostile policy text
// (control characters, "trojan source" bidi overrides, megabyte lines) cannot act on the terminal
// of whoever runs `pdp check` and is shown in bounded width; syntax and check messages say what the
// author most likely meant; `pdp eval --explain` shows rule descriptions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runPdp, scratchDir, type Run } from './support/cli';
import path from 'node:path';
import { MAX_SNIPPET_WIDTH, escapeForTerminal, renderDiagnostic, snippet, type Diagnostic } from '../src/diagnostics';

const { dir: WORK, write } = scratchDir('pdp-cli-render-');

function pdp(...args: string[]): Run {
  return runPdp(args);
}

// C0 but tab and newline, DEL, C1, the bidi controls and the zero-width characters: none may reach the terminal.
const UNSAFE_OUTPUT = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060\u2066-\u2069\ufeff]/;

/** The `N | source` and caret lines of the first rendered diagnostic in `stderr`. */
function sourceAndCaret(stderr: string): { source: string; caret: string } {
  const lines = stderr.split('\n');
  const at = lines.findIndex((l) => /^\d+ \| /.test(l));
  assert.ok(at > 0, stderr);
  return { source: lines[at]!, caret: lines[at + 1]! };
}

// ---- A: terminal safety and bounded width ---------------------------------------------------

test('pdp check: control characters in the source line and the message are shown harmlessly', () => {
  const hostile = '\x1b]0;PWNED\x07\x1b[2J';
  const file = write('ctrl/a.hcl', `service "a" { polcy = "${hostile}" identity = "team:${hostile}" }\nservice_prefix "\x1b[31m" { policy = "read" identity = "x" }\n`);
  const r = pdp('check', file);
  assert.equal(r.status, 1);
  assert.doesNotMatch(r.stderr, UNSAFE_OUTPUT, JSON.stringify(r.stderr));
  assert.doesNotMatch(r.stdout, UNSAFE_OUTPUT);
  // The snippet: one U+FFFD per control character, so the caret stays under `polcy`.
  const { source, caret } = sourceAndCaret(r.stderr.slice(r.stderr.indexOf('error[unknown-attribute]')));
  assert.equal(source, '1 | service "a" { polcy = "\ufffd]0;PWNED\ufffd\ufffd[2J" identity = "team:\ufffd]0;PWNED\ufffd\ufffd[2J" }');
  assert.equal(caret, `  | ${' '.repeat('service "a" { '.length)}^^^^^`);
  // The message: the characters written as escapes (the label is user input in the message).
  assert.ok(r.stderr.includes('error[invalid-name]: invalid service prefix `\\u{1b}[31m`'), r.stderr);

  // JSON keeps the raw text (JSON escapes it).
  const json = pdp('check', '--format', 'json', file);
  const out = JSON.parse(json.stdout) as { diagnostics: { code: string; message: string }[] };
  assert.equal(out.diagnostics.find((d) => d.code === 'invalid-name')?.message, 'invalid service prefix `\x1b[31m`');
  assert.doesNotMatch(json.stdout, UNSAFE_OUTPUT);
});

test('pdp check: bidi overrides and zero-width characters ("trojan source") are shown, not obeyed', () => {
  const file = write('bidi/a.hcl', 'service "a" { policy = "read" identity = "team:\u202eops\u2066x\u2069\u200b" polcy = "x" }\n');
  const r = pdp('check', file);
  assert.equal(r.status, 1);
  assert.doesNotMatch(r.stderr, UNSAFE_OUTPUT, JSON.stringify(r.stderr));
  // Such an identity could never match: it is an error, naming the first invisible character.
  assert.ok(r.stderr.includes('error[invalid-identity]: an identity pattern cannot contain the invisible character U+202E (right-to-left override)'), r.stderr);
  const { source, caret } = sourceAndCaret(r.stderr.slice(r.stderr.indexOf('error[unknown-attribute]')));
  assert.equal(source, '1 | service "a" { policy = "read" identity = "team:\ufffdops\ufffdx\ufffd\ufffd" polcy = "x" }');
  assert.equal(caret.indexOf('^'), source.indexOf('polcy'));
});

test('pdp check: a stray invisible character is named by code point, not shown between backticks', () => {
  const file = write('invisible/a.hcl', 'service "a" { policy = "read" identity = "x" }\u200b\nservice "b" { policy\u00a0= "read" identity = "x" } \u202e\n');
  const r = pdp('check', file);
  assert.equal(r.status, 1);
  assert.ok(r.stderr.includes('a.hcl:1:47: error[invalid-character]: unexpected character U+200B (zero-width space)\n'), r.stderr);
  assert.ok(r.stderr.includes('a.hcl:2:21: error[invalid-character]: unexpected character U+00A0 (no-break space)\n'), r.stderr);
  assert.ok(r.stderr.includes('a.hcl:2:48: error[invalid-character]: unexpected character U+202E (right-to-left override)\n'), r.stderr);
  assert.match(r.stderr, /= hint: replace it with an ordinary space/);
  assert.doesNotMatch(r.stderr, UNSAFE_OUTPUT);

  const bom = write('invisible/bom.hcl', 'service "a" { policy = "read" identity = "x" \ufeff}\n');
  const b = pdp('check', bom);
  assert.ok(b.stderr.includes('bom.hcl:1:46: error[invalid-character]: unexpected character U+FEFF (byte-order mark)\n'), b.stderr);
});

test('pdp check: a 1 MB line is shown as a bounded window around the caret, cut ends marked with …', () => {
  const filler = 'x'.repeat(1_000_000);
  const file = write('long/a.hcl', `service "a" { policy = "read" identity = "team:${filler}" polcy = "x" }\n`);
  const r = pdp('check', file);
  assert.equal(r.status, 1);
  assert.ok(r.stderr.length < 4000, `stderr is ${r.stderr.length} characters`);
  const { source, caret } = sourceAndCaret(r.stderr);
  const shown = source.slice('1 | '.length);
  assert.ok(shown.length <= MAX_SNIPPET_WIDTH, `${shown.length} columns`);
  assert.ok(shown.startsWith('\u2026x'), shown);
  assert.ok(shown.endsWith('" polcy = "x" }'), shown);
  // The caret is under `polcy`, as wide as it.
  assert.equal(caret.indexOf('^'), source.indexOf('polcy'));
  assert.match(caret, /^ {2}\| +\^{5}$/);

  // The caret near the start: the line is cut at the end only.
  const early = write('long/b.hcl', `service "a" { polcy = "read" identity = "team:${filler}" }\n`);
  const e = pdp('check', early);
  const first = sourceAndCaret(e.stderr.slice(e.stderr.indexOf('error[unknown-attribute]')));
  assert.ok(first.source.endsWith('x\u2026'), first.source);
  assert.ok(first.source.length - '1 | '.length <= MAX_SNIPPET_WIDTH);
  assert.equal(first.caret.indexOf('^'), first.source.indexOf('polcy'));
  // A message quoting a huge value quotes its two ends only.
  const quoted = write('long/c.hcl', `service "a" { policy = "read" identity = "team:{x}${filler}" }\n`);
  const q = pdp('check', quoted);
  assert.equal(q.status, 1);
  assert.ok(q.stderr.length < 4000, `stderr is ${q.stderr.length} characters`);
  assert.match(q.stderr, /unknown placeholder `\{x\}` in identity pattern `team:\{x\}x+…x+`/);
});

test('snippet: the window, the caret and surrogate pairs at the cut', () => {
  const line = `${'a'.repeat(300)}BAD${'b'.repeat(300)}`;
  const s = snippet(line, 300, 303);
  assert.ok(s.text.length <= MAX_SNIPPET_WIDTH);
  assert.equal(s.text.slice(s.caretAt, s.caretAt + s.caretWidth), 'BAD');
  assert.ok(s.text.startsWith('\u2026') && s.text.endsWith('\u2026'));
  // A caret wider than the window is cut with it.
  const wide = snippet('z'.repeat(1000), 10, 900);
  assert.ok(wide.text.length <= MAX_SNIPPET_WIDTH);
  assert.equal(wide.caretAt + wide.caretWidth, wide.text.length - 1);
  // A caret just after the end of the line.
  const end = snippet('q'.repeat(500), 500, 501);
  assert.equal(end.caretAt, end.text.length);
  // Never half a surrogate pair.
  const emoji = '\u{1F600}'.repeat(400);
  for (const start of [200, 201, 400, 401]) {
    const e = snippet(emoji, start - (start % 2), start - (start % 2) + 2);
    assert.doesNotMatch(e.text, /^\u2026?[\udc00-\udfff]|[\ud800-\udbff]\u2026?$/);
  }
  assert.equal(escapeForTerminal('a\u0007b\u009bc\td\ne'), 'a\\u{7}b\\u{9b}c\td\\u{a}e');
  // Tabs and unsafe characters are made visible in the window of a long line, one for one.
  const mixed = snippet(`${'\u202e'.repeat(300)}\tX\u0007${'y'.repeat(300)}`, 301, 302);
  assert.equal(mixed.text.slice(mixed.caretAt - 1, mixed.caretAt + 2), ' X\ufffd');
  assert.doesNotMatch(mixed.text, UNSAFE_OUTPUT);
});

test('pdp check: the caret is placed in terminal cells, under the text after wide characters and combining marks', () => {
  // 日本 and ｘ take two cells each, 😀 two (and two UTF-16 columns), the combining acute none.
  const file = write('wide/a.hcl', 'service "a" { description = "日本😀ｘe\u0301" polcy = "read" identity = "a" }\n');
  const r = pdp('check', file);
  assert.equal(r.status, 1);
  // The column counts UTF-16 units (docs/policy-language.md): 29 + 日 本 😀(2) ｘ e ◌́ = 36, `"` and a space, so 39.
  assert.ok(r.stderr.includes('a.hcl:1:39: error[unknown-attribute]'), r.stderr);
  const { source, caret } = sourceAndCaret(r.stderr);
  const cells = (text: string) => [...text].reduce((n, ch) => n + (/[\u3000-\u9fff\uff00-\uff60]|\p{Emoji_Presentation}/u.test(ch) ? 2 : /\p{Mn}/u.test(ch) ? 0 : 1), 0);
  assert.equal(caret.indexOf('^'), cells(source.slice(0, source.indexOf('polcy'))), `${source}\n${caret}`);
  assert.match(caret, /\^{5}$/);
  // A caret under a wide label is as wide as the label.
  const label = write('wide/b.hcl', 'service "日本" { policy = "read" identity = "a" }\n');
  const l = sourceAndCaret(pdp('check', label).stderr);
  assert.equal(l.caret, `  | ${' '.repeat('service '.length)}${'^'.repeat(6)}`);
});

test('renderDiagnostic: the file name is escaped too', () => {
  const span = { file: 'evil\x1b[2J.hcl', start: { offset: 0, line: 1, column: 1 }, end: { offset: 1, line: 1, column: 2 } };
  const d: Diagnostic = { code: 'x', severity: 'error', message: 'm', span, hint: 'h\u202e' };
  const text = renderDiagnostic(d, () => 'x\n');
  assert.doesNotMatch(text, UNSAFE_OUTPUT);
  assert.ok(text.startsWith('evil\\u{1b}[2J.hcl:1:1: error[x]: m'));
  assert.ok(text.endsWith('= hint: h\\u{202e}'));
});

test('renderDiagnostic: the source line is found after LF, CRLF and bare-CR breaks, in files rendered in turn', () => {
  // Lines are looked up in an index of the file rendered last (one pass per file, not per diagnostic).
  const at = (line: number, file = 'a.hcl'): Diagnostic => ({
    code: 'x', severity: 'error', message: 'm', span: { file, start: { offset: 0, line, column: 1 }, end: { offset: 0, line, column: 2 } },
  });
  const texts: Record<string, string> = { 'a.hcl': 'one\r\ntwo\rthree\nfour\r\n\r\nsix', 'b.hcl': 'other\n' };
  const shown = (d: Diagnostic) => renderDiagnostic(d, (f) => texts[f]).split('\n')[2];
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => shown(at(n))), ['1 | one', '2 | two', '3 | three', '4 | four', '5 | ', '6 | six']);
  assert.equal(shown(at(1, 'b.hcl')), '1 | other');
  assert.equal(shown(at(3)), '3 | three', 'back to the first file');
  assert.equal(renderDiagnostic(at(7), (f) => texts[f]), 'a.hcl:7:1: error[x]: m', 'past the end: no source line');
});

// ---- B: wording ---------------------------------------------------------------------------

test('pdp check: a name followed by a string is read as an attribute missing its `=`', () => {
  const file = write('wording/eq.hcl', 'service "y" { policy "read" identity = "x" }\nnamespace "n" {\n  service "s" policy = "read"\n}\n');
  const r = pdp('check', file);
  assert.equal(r.status, 1);
  // The contract's own example of an error in words: `expected "=" after attribute name`.
  assert.ok(r.stderr.includes('eq.hcl:1:22: error[syntax-error]: expected "=" after attribute name `policy`, found string "read"\n'), r.stderr);
  assert.match(r.stderr, /\n1 \| service "y" \{ policy "read" identity = "x" \}\n {2}\| {22}\^{6}\n {2}= hint: write `policy = "read"`\n/);
  // A block type where a block may stand is still a block header missing its `{`.
  assert.ok(r.stderr.includes('eq.hcl:3:15: error[syntax-error]: expected `{` after the block label, found name `policy`'), r.stderr);
});

test('pdp check: a second block label says a block takes one label', () => {
  const file = write('wording/labels.hcl', 'service "two" "labels" { policy = "read" identity = "x" }\n');
  const r = pdp('check', file);
  assert.equal(r.status, 1);
  assert.ok(r.stderr.includes('labels.hcl:1:15: error[syntax-error]: expected `{` after the block label, found a second label "labels"\n'), r.stderr);
  assert.match(r.stderr, /= hint: a block takes one label: `service "two" \{ \.\.\. \}`/);
  assert.doesNotMatch(r.stderr, /write `service = /);
});

test('pdp check: CIDR, list-element, placeholder and surrogate-escape messages', () => {
  const file = write('wording/values.hcl', [
    'service "a" { policy = "read" identity = "x" cidrs = ["not-a-cidr", "10.0.0.1", "10.0.0.0/8", 5] }',
    'role "r" { identities = ["team:a", true] }',
    'service "b" { policy = "read" identity = "spiffe://c/ns/{servce}" }',
    'service "c" { policy = "read" identity = "team:{servce}" }',
    'service "d" { policy = "read" identity = "\\ud800" }',
    '',
  ].join('\n'));
  const r = pdp('check', file);
  assert.equal(r.status, 1);
  const has = (s: string) => assert.ok(r.stderr.includes(s), `missing: ${s}\n${r.stderr}`);
  has('values.hcl:1:55: error[invalid-cidr]: invalid CIDR `not-a-cidr`: not an IPv4 or IPv6 CIDR\n');
  has('values.hcl:1:69: error[invalid-cidr]: invalid CIDR `10.0.0.1`: a prefix length is required\n');
  has('= hint: for one address write `10.0.0.1/32`');
  has('values.hcl:1:95: error[invalid-type]: element 4 of `cidrs` must be a string, found a number\n');
  has('values.hcl:2:36: error[invalid-type]: element 2 of `identities` must be a string, found a boolean\n');
  has('values.hcl:3:42: error[invalid-identity]: unknown placeholder `{servce}` in identity pattern `spiffe://c/ns/{servce}`\n');
  has('values.hcl:4:42: error[invalid-identity]: unknown placeholder `{servce}` in identity pattern `team:{servce}`\n');
  assert.equal(r.stderr.match(/= hint: did you mean `\{service\}`\?/g)?.length, 2, r.stderr);
  has('values.hcl:5:43: error[invalid-escape]: invalid escape `\\ud800`: U+D800 is a surrogate, not a Unicode scalar value\n');
  assert.match(r.stderr, /\n5 \| service "d" \{ policy = "read" identity = "\\ud800" \}\n {2}\| {43}\^{6}\n/);
  assert.doesNotMatch(r.stderr, /must be a list of strings, found a list|may only hold letters/);

  // A surrogate pair written as two escapes is one character, and fine.
  const pair = write('wording/pair.hcl', 'service "a" { policy = "read" identity = "team:\\ud83d\\ude00" }\n');
  assert.equal(pdp('check', pair).status, 0);
});

// ---- C: descriptions in explanations -----------------------------------------------------

test('pdp eval --explain: the text output shows each rule\'s description', () => {
  const dir = path.join(WORK, 'explain');
  write('explain/p.hcl', [
    'service "inventory" {',
    '  policy      = "read"',
    '  identity    = "team:shop"',
    '  description = "shop staff look up stock \x1b[2J"',
    '}',
    'service "inventory" { policy = "write" identity = "team:ops" }',
    '',
  ].join('\n'));
  const r = pdp('eval', '--policies', dir, '--identity', 'team:shop', '--action', 'read', '--resource', 'service:inventory', '--explain');
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n');
  const rule = lines.findIndex((l) => /^ {2}p\.hcl:1:1 /.test(l));
  assert.ok(rule > 0, r.stdout);
  assert.match(lines[rule]!, /decided/);
  assert.equal(lines[rule + 1], `  ${' '.repeat(24)} description: shop staff look up stock \\u{1b}[2J`);
  // A rule without a description gets no such line.
  const other = lines.findIndex((l) => /^ {2}p\.hcl:6:1 /.test(l));
  assert.ok(other > rule, r.stdout);
  assert.doesNotMatch(lines[other + 1] ?? '', /description:/);
  assert.doesNotMatch(r.stdout, UNSAFE_OUTPUT);

  const json = pdp('eval', '--policies', dir, '--identity', 'team:shop', '--action', 'read', '--resource', 'service:inventory', '--explain', '--format', 'json');
  const out = JSON.parse(json.stdout) as { considered: { description?: string }[] };
  assert.equal(out.considered[0]!.description, 'shop staff look up stock \x1b[2J');
});

test('pdp test: test names from the policy are escaped in the text output', () => {
  const dir = path.join(WORK, 'testnames');
  write('testnames/a.hcl', 'service "a" { policy = "read" identity = "x" }\ntest "evil \\u001b[2J name\\nline" { identity = "x" action = "write" resource = "service:a" expect = "ALLOW" }\n');
  const r = pdp('test', dir);
  assert.equal(r.status, 1);
  assert.match(r.stdout, /^FAIL {2}evil \\u\{1b\}\[2J name\\u\{a\}line {2}\(/m);
  assert.doesNotMatch(r.stdout, UNSAFE_OUTPUT);
});
