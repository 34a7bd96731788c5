// Table-driven corpus: test/corpus/decisions/NAME.{hcl|dir} + NAME.json (requests and expected
// decisions), test/corpus/diagnostics/NAME.{hcl|dir} + NAME.json (broken policies and the
// diagnostics they must produce, in order). One test per row / per broken policy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { renderDiagnostic, type Diagnostic } from '../src/diagnostics';
import { buildPolicySet, decideWith, readPolicyDir, type PolicySource } from '../src/engine';
import { referenceDecide } from '../src/eval/reference';

const CORPUS = path.resolve(__dirname, '..', '..', 'test', 'corpus');

interface DecisionRow {
  identity?: string;
  action: string;
  resource: string;
  namespace?: string;
  source_ip?: string;
  expect: 'ALLOW' | 'ALLOW_DEFAULT' | 'DENY' | 'ERROR';
  /** `file:line` of the cited rule, `null` for the default policy; not checked when absent. */
  rule?: string | null;
  /** With `expect: "ERROR"`: the request field named by the error. */
  field?: string;
  why: string;
  todo?: string;
}

interface ExpectedDiagnostic {
  /** Needed only for directory cases: the path relative to the directory. */
  file?: string;
  /** Default `error`. Warnings are compared only in cases that list at least one. */
  severity?: 'error' | 'warning';
  code: string;
  line: number;
  column: number;
  message_contains: string;
  hint_contains?: string;
}

/** NAME.hcl (one file, named NAME.hcl) or NAME/ (a directory, paths relative to it). */
function sourcesFor(dir: string, name: string): PolicySource[] {
  const file = path.join(dir, `${name}.hcl`);
  if (fs.existsSync(file)) return [{ path: `${name}.hcl`, text: fs.readFileSync(file, 'utf8') }];
  const sub = path.join(dir, name);
  if (fs.existsSync(sub) && fs.statSync(sub).isDirectory()) return readPolicyDir(sub);
  throw new Error(`corpus case ${name} has no ${name}.hcl and no ${name}/ directory`);
}

function cases(kind: 'decisions' | 'diagnostics'): string[] {
  return fs.readdirSync(path.join(CORPUS, kind)).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
}

const where = (d: Diagnostic) => `${d.span.file}:${d.span.start.line}:${d.span.start.column} ${d.code}: ${d.message}${d.hint ? ` (hint: ${d.hint})` : ''}`;

// ---- decisions ----------------------------------------------------------------------------

const decisionCases = cases('decisions');

test('the decision corpus has at least 8 policy sets', () => {
  assert.ok(decisionCases.length >= 8, `${decisionCases.length} sets`);
});

for (const name of decisionCases) {
  const dir = path.join(CORPUS, 'decisions');
  const rows = JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8')) as DecisionRow[];
  const sources = sourcesFor(dir, name);
  const built = buildPolicySet(sources);

  test(`decisions/${name}: the policy set is valid`, () => {
    assert.deepEqual(built.diagnostics.filter((d) => d.severity === 'error').map(where), []);
    assert.ok(built.policy);
  });

  rows.forEach((row, i) => {
    const title = `decisions/${name}.json #${i + 1}: ${row.identity ?? '(no identity)'} ${row.action} ${row.resource}${row.namespace ? ` ns=${row.namespace}` : ''}${row.source_ip ? ` from ${row.source_ip}` : ''} → ${row.expect} (${row.why})`;
    test(title, row.todo ? { todo: row.todo } : {}, () => {
      assert.ok(built.policy, 'policy set did not build');
      const request = { identity: row.identity, action: row.action, resource: row.resource, namespace: row.namespace, sourceIp: row.source_ip };
      const engine = decideWith(built.policy, request);
      const oracle = referenceDecide(built.files, request);
      if (row.expect === 'ERROR') {
        assert.equal(engine.ok, false, `engine decided ${engine.ok ? engine.decision.result : ''}`);
        if (!engine.ok) assert.equal(engine.error.field, row.field, engine.error.message);
        assert.equal(oracle.ok, false, 'the reference evaluator accepted the request');
        if (!oracle.ok) assert.equal(oracle.error.field, row.field);
        return;
      }
      assert.ok(engine.ok, `engine refused the request: ${!engine.ok ? `${engine.error.field}: ${engine.error.message}` : ''}`);
      const d = engine.decision;
      const cited = d.rule ? `${d.rule.file}:${d.rule.line}` : null;
      assert.equal(d.result, row.expect, `reason: ${d.reason}; rule ${cited}`);
      assert.equal(d.allow, row.expect !== 'DENY');
      if (row.rule !== undefined) assert.equal(cited, row.rule, `reason: ${d.reason}`);
      assert.ok(oracle.ok);
      if (oracle.ok) {
        assert.deepEqual({ result: oracle.result, rule: oracle.rule ? `${oracle.rule.file}:${oracle.rule.line}` : null }, { result: d.result, rule: cited }, 'the reference evaluator disagrees');
      }
    });
  });
}

// ---- diagnostics --------------------------------------------------------------------------

const ALL_CODES = [
  'syntax-error', 'unclosed-block', 'unclosed-list', 'unterminated-string', 'unterminated-comment', 'invalid-character', 'invalid-escape',
  'interpolation', 'unknown-block', 'misplaced-block', 'misplaced-attribute', 'missing-label', 'unexpected-label',
  'unknown-attribute', 'duplicate-attribute', 'invalid-type', 'conflicting-attributes', 'missing-policy', 'missing-identity',
  'duplicate-settings', 'duplicate-role', 'duplicate-test', 'invalid-name', 'invalid-level', 'invalid-identity',
  'invalid-spiffe-id', 'nested-role', 'empty-cidrs', 'invalid-cidr', 'undefined-role', 'unknown-api', 'invalid-setting',
  'invalid-test',
];

const diagnosticCases = cases('diagnostics');
const seenCodes = new Set<string>();

for (const name of diagnosticCases) {
  const dir = path.join(CORPUS, 'diagnostics');
  const raw = JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8')) as ExpectedDiagnostic[] | { todo?: string; diagnostics: ExpectedDiagnostic[] };
  const expected = Array.isArray(raw) ? raw : raw.diagnostics;
  const todo = Array.isArray(raw) ? undefined : raw.todo;
  if (!todo) for (const e of expected) seenCodes.add(e.code);
  const sources = sourcesFor(dir, name);

  test(`diagnostics/${name}`, todo ? { todo } : {}, () => {
    const built = buildPolicySet(sources, { lint: true });
    const withWarnings = expected.some((e) => e.severity === 'warning');
    const actual = withWarnings ? built.diagnostics : built.diagnostics.filter((d) => d.severity === 'error');
    assert.equal(actual.length, expected.length, `expected ${expected.length} diagnostics, got:\n${actual.map(where).join('\n')}`);
    assert.equal(built.policy, undefined, 'a broken set must not compile');
    expected.forEach((e, i) => {
      const d = actual[i]!;
      const label = `#${i + 1} ${where(d)}`;
      assert.equal(d.code, e.code, label);
      assert.equal(d.severity, e.severity ?? 'error', label);
      if (e.file !== undefined) assert.equal(d.span.file, e.file, label);
      assert.equal(d.span.start.line, e.line, label);
      assert.equal(d.span.start.column, e.column, label);
      assert.ok(d.message.includes(e.message_contains), `${label}\n  message should contain: ${e.message_contains}`);
      if (e.hint_contains !== undefined) assert.ok(d.hint?.includes(e.hint_contains), `${label}\n  hint should contain: ${e.hint_contains}`);
      // Words, never a parser state dump.
      assert.doesNotMatch(d.message, /Instead, I was expecting|A (string|name) based on|state \d|\bnull\b|undefined|\[object/);
    });
    // Sorted by location.
    const keys = actual.map((d) => [d.span.file, d.span.start.line, d.span.start.column] as const);
    for (let i = 1; i < keys.length; i++) {
      const [f0, l0, c0] = keys[i - 1]!;
      const [f1, l1, c1] = keys[i]!;
      assert.ok(f0 < f1 || (f0 === f1 && (l0 < l1 || (l0 === l1 && c0 <= c1))), `not sorted: ${where(actual[i - 1]!)} before ${where(actual[i]!)}`);
    }
    // The CLI-visible form: `file:line:col: error[code]: message`, the source line, a caret under the column.
    const texts = new Map(sources.map((s) => [s.path, s.text]));
    for (const d of actual) {
      const lines = renderDiagnostic(d, (f) => texts.get(f)).split('\n');
      assert.equal(lines[0], `${d.span.file}:${d.span.start.line}:${d.span.start.column}: ${d.severity}[${d.code}]: ${d.message}`);
      const gutter = String(d.span.start.line);
      const sourceLine = texts.get(d.span.file)!.split(/\r?\n/)[d.span.start.line - 1]!;
      // Tabs shown as spaces, invisible characters (zero-width, BOM) as U+FFFD, one column each.
      assert.equal(lines[2], `${gutter} | ${sourceLine.replace(/\t/g, ' ').replace(/[\u200b\ufeff]/g, '\ufffd')}`);
      assert.match(lines[3]!, new RegExp(`^${' '.repeat(gutter.length)} \\| ${' '.repeat(d.span.start.column - 1)}\\^+$`));
      if (d.hint) assert.equal(lines[4], `${' '.repeat(gutter.length)} = hint: ${d.hint}`);
    }
  });
}

test('the diagnostics corpus covers every diagnostic code', () => {
  assert.deepEqual(ALL_CODES.filter((c) => !seenCodes.has(c)), []);
});

test('the diagnostics corpus has several multi-error files', () => {
  const multi = diagnosticCases.filter((name) => {
    const raw = JSON.parse(fs.readFileSync(path.join(CORPUS, 'diagnostics', `${name}.json`), 'utf8'));
    const list = Array.isArray(raw) ? raw : raw.diagnostics;
    return new Set(list.map((d: ExpectedDiagnostic) => d.line)).size >= 3;
  });
  assert.ok(multi.length >= 3, multi.join(', '));
});
