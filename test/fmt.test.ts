// `pdp fmt`'s formatter: properties over generated policies, and snapshot tests whose expected
// outputs (test/fixtures/fmt/*.out.hcl) are the reference for the layout in docs/fmt.md.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { formatPolicy, MAX_WIDTH } from '../src/fmt/format';
import { lexer } from '../src/syntax/lexer';
import { parsePolicy } from '../src/syntax/parse';
import { normalizeCommentText, policySource, stripSpans } from './support/policy-arbitrary';

const FIXTURES = path.join(__dirname, '../../test/fixtures/fmt');
const RUNS = 500;

/** Plain policies and grammar-only oddities (nested lists, unknown blocks, top-level attributes). */
const anyPolicy = fc.oneof(policySource(), policySource({ exotic: true }));

/** Formatted text with the whitespace between tokens changed (see the property that uses it). */
function respace(text: string, choices: number[]): string {
  const pieces: { text: string; gap: boolean }[] = [];
  let comments = false;
  lexer.reset(text);
  for (const t of lexer as unknown as Iterable<{ type: string; text: string }>) {
    const gap = t.type === 'whitespace' || t.type === 'newline';
    if (t.type === 'comment' || t.type === 'blockComment') comments = true;
    const last = pieces[pieces.length - 1];
    if (gap && last?.gap) last.text += t.text;
    else pieces.push({ text: t.text, gap });
  }
  const inLine = [' ', '  ', '\t', ' \t '];
  const lineBreak = ['\n', '\n    ', '  \n\t', '\n\t\t'];
  let n = 0;
  const pick = (options: string[]) => options[choices[n++ % choices.length]! % options.length]!;
  return pieces
    .map((p) => {
      if (!p.gap) return p.text;
      const breaks = (p.text.match(/\n/g) ?? []).length;
      if (breaks >= 2) return `\n ${pick(['', '\t'])}\n${pick(inLine)}`;
      if (comments) return breaks === 1 ? pick(lineBreak) : pick(inLine);
      return pick([...inLine, ...lineBreak]);
    })
    .join('');
}

function fmt(text: string, file = 'p.hcl'): string {
  const result = formatPolicy(text, file);
  if (!result.ok) assert.fail(`unexpected diagnostics: ${result.diagnostics.map((d) => d.message).join('; ')}\n${text}`);
  return result.output;
}

describe('fmt properties', () => {
  test('generated policies parse without diagnostics (the arbitrary is sound)', () => {
    fc.assert(
      fc.property(anyPolicy, (text) => {
        assert.deepEqual(parsePolicy(text, 'p.hcl').diagnostics, []);
      }),
      { numRuns: RUNS },
    );
  });

  test('idempotent: fmt(fmt(x)) === fmt(x)', () => {
    fc.assert(
      fc.property(anyPolicy, (text) => {
        const once = fmt(text);
        assert.equal(fmt(once), once);
      }),
      { numRuns: RUNS },
    );
  });

  test('the output always parses without diagnostics', () => {
    fc.assert(
      fc.property(anyPolicy, (text) => {
        assert.deepEqual(parsePolicy(fmt(text), 'p.hcl').diagnostics, []);
      }),
      { numRuns: RUNS },
    );
  });

  test('meaning-preserving: same tree without spans, same comments', () => {
    fc.assert(
      fc.property(anyPolicy, (text) => {
        const before = parsePolicy(text, 'p.hcl').file;
        const after = parsePolicy(fmt(text), 'p.hcl').file;
        assert.deepEqual(stripSpans(after.body), stripSpans(before.body));
        const texts = (comments: { text: string }[]) => comments.map((c) => normalizeCommentText(c.text));
        // The brief asks for the same multiset; the formatter also keeps their order.
        assert.deepEqual([...texts(after.comments)].sort(), [...texts(before.comments)].sort());
        assert.deepEqual(texts(after.comments), texts(before.comments));
      }),
      { numRuns: RUNS },
    );
  });

  test('layout invariants: LF only, no trailing whitespace, one final newline, no leading blank line', () => {
    fc.assert(
      fc.property(anyPolicy, (text) => {
        const out = fmt(text);
        assert.ok(!out.includes('\r\n'), 'no CRLF');
        if (out === '') return;
        assert.ok(out.endsWith('\n') && !out.endsWith('\n\n'), 'exactly one final newline');
        assert.ok(!out.startsWith('\n'), 'no blank line at the start');
        for (const line of out.split('\n')) assert.doesNotMatch(line, /[ \t\r]$/, 'no trailing whitespace');
      }),
      { numRuns: RUNS },
    );
  });

  test('one-line lists fit in the width limit; comment-free policies use no tabs for indentation', () => {
    fc.assert(
      fc.property(fc.oneof(policySource({ comments: false }), policySource({ comments: false, exotic: true })), (text) => {
        const out = fmt(text);
        for (const line of out.split('\n')) {
          assert.doesNotMatch(line, /^ *\t/, 'indentation is spaces');
          assert.equal((line.match(/^ */)![0].length) % 2, 0, 'indentation is by 2 spaces');
          if (/= \[.*\]$/.test(line) && !line.includes('[]')) assert.ok([...line].length <= MAX_WIDTH, `too wide: ${line}`);
        }
      }),
      { numRuns: RUNS },
    );
  });

  test('the layout depends only on the tree, the comments and the blank lines', () => {
    // Re-space formatted text: every gap between tokens gets other spaces and tabs, and in files
    // without comments (where line breaks decide nothing) line breaks come and go too. Only blank
    // lines are kept where they were. Formatting the result must give the formatted text back.
    const respaced = fc
      .tuple(anyPolicy, fc.array(fc.nat(), { minLength: 1, maxLength: 64 }))
      .map(([text, choices]) => {
        const out = fmt(text);
        return { out, respaced: respace(out, choices) };
      });
    fc.assert(
      fc.property(respaced, ({ out, respaced }) => {
        assert.equal(fmt(respaced), out);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('fmt snapshots (test/fixtures/fmt)', () => {
  const names = fs
    .readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.in.hcl'))
    .map((f) => f.slice(0, -'.in.hcl'.length))
    .sort();

  test('there are fixtures', () => {
    assert.ok(names.length >= 5, `found ${names.join(', ')}`);
  });

  for (const name of names) {
    test(name, () => {
      const input = fs.readFileSync(path.join(FIXTURES, `${name}.in.hcl`), 'utf8');
      const expected = fs.readFileSync(path.join(FIXTURES, `${name}.out.hcl`), 'utf8');
      assert.equal(fmt(input, `${name}.in.hcl`), expected);
      assert.equal(fmt(expected, `${name}.out.hcl`), expected, 'the expected output is already formatted');
      assert.equal(fmt(input.replace(/\n/g, '\r\n')), expected, 'CRLF input gives the same output');
    });
  }
});

describe('fmt edge cases', () => {
  test('an empty or blank file stays empty', () => {
    assert.equal(fmt(''), '');
    assert.equal(fmt(' \n\t\r\n\n'), '');
  });

  test('a file of comments keeps them, one blank line at most between them', () => {
    assert.equal(fmt('\n\n# a\n\n\n\n// b\n/* c */  # d'), '# a\n\n// b\n/* c */\n# d\n');
  });

  test('a missing final newline is added', () => {
    assert.equal(fmt('settings {}'), 'settings {}\n');
  });

  test('strings are written exactly as they were between the quotes', () => {
    const raw = String.raw`a\"b\\c\nd\te\u00e9f\u00E9 é`;
    const out = fmt(`service "x" { description = "${raw}" }`);
    assert.ok(out.includes(`description = "${raw}"`), out);
  });

  test('a trailing comment after a line comment across a list comma moves to its own line', () => {
    const input = 'role "r" {\n  identities = [\n    "a" # x\n    , # y\n    "b"\n  ]\n}\n';
    const out = fmt(input);
    assert.equal(out, 'role "r" {\n  identities = [\n    "a", # x\n    # y\n    "b",\n  ]\n}\n');
    assert.equal(fmt(out), out);
  });

  test('a comment inside an attribute moves above it, keeping the blank line before', () => {
    const out = fmt('service "x" {\n  policy = "read"\n\n  identity # who\n  = "y"\n}\n');
    assert.equal(out, 'service "x" {\n  policy = "read"\n\n  # who\n  identity = "y"\n}\n');
  });
});

describe('fmt refuses files with syntax errors', () => {
  test('returns the diagnostics, with the file name and position, instead of output', () => {
    const text = 'service "x" {\n  policy = \n}\n';
    const result = formatPolicy(text, 'policies/bad.hcl');
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.ok(result.diagnostics.length > 0);
    const d = result.diagnostics[0]!;
    assert.equal(d.code, 'syntax-error');
    assert.equal(d.span.file, 'policies/bad.hcl');
    assert.equal(d.span.start.line, 3);
  });

  test('lexical errors count too (unterminated string, stray character)', () => {
    for (const text of ['service "x" { policy = "read }\n', 'service "x" { policy = "read"; }\n', '/* never closed\n']) {
      const result = formatPolicy(text, 'bad.hcl');
      assert.equal(result.ok, false, text);
    }
  });
});
