// Grammar-ambiguity guard: one file exercising every construct of the language must have exactly
// one parse (parsePolicy throws AmbiguousParseError on more than one), with no diagnostics and the
// right decoded values; and a 10,000-rule file parses (one Earley run per top-level block keeps
// memory and time bounded; no timing is asserted).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import nearley from 'nearley';
import grammar from '../src/syntax/grammar.generated';
import { lexer, TRIVIA } from '../src/syntax/lexer';
import { parsePolicy, type Attribute, type Block, type BodyItem, type ListLiteral, type StringLiteral } from '../src/syntax';
import { buildPolicySet } from '../src/engine';

const EVERYTHING = String.raw`# a hash comment
// a slash comment
/* a block comment
   over two lines */
settings { default_policy = "deny" anonymous = false }

role "readers" {
  identities = [
    "team:a", # trailing hash comment
    "team:b", // trailing slash comment
    /* inline */ "spiffe://c/ns/*/sa/**",
  ]
}

service "escapes" {
  policy      = "read"
  identity    = "team:\"q\"\\\u00e9"
  description = "tab\there, newline\nhere, quote \" and backslash \\ and \u00E9\u0041"
}

service "one-line" { policy = "read" identity = "team:a" }
service_prefix "" { policy = "write" identities = ["team:a",] }

namespace "prod" {
  policy = "admin"
  identity = "role:readers"
  service "a" { policy = "read" identity = "team:a" }
  service_prefix "pay-" {
    policy = "write"
    identities = [
      "spiffe://c/ns/{namespace}/sa/{service}",
      "team:b"
    ]
    cidrs = ["10.0.0.0/8", "fd00::/8",]
  }
}

namespace_prefix "" {}
namespace_prefix "st" { service "x" {} }

misc "values" {
  yes   = true
  no    = false
  n     = 42
  neg   = -7
  empty = []
  nested = [[1, 2,], [], ["x"], true,]
}
`;

function attr(block: Block, name: string): Attribute {
  const a = block.body.find((i): i is Attribute => i.kind === 'attribute' && i.name.name === name);
  assert.ok(a, `attribute ${name}`);
  return a;
}

function block(items: BodyItem[], type: string, label?: string): Block {
  const b = items.find((i): i is Block => i.kind === 'block' && i.type.name === type && (label === undefined || i.label?.value === label));
  assert.ok(b, `block ${type} ${label ?? ''}`);
  return b;
}

/** Feeds the whole file (not chunked) to one nearley parser and counts the parses. */
function countParses(text: string): number {
  const tokens: unknown[] = [];
  lexer.reset(text);
  for (const t of lexer as unknown as Iterable<{ type: string }>) if (!TRIVIA.has(t.type)) tokens.push(t);
  let index = 0;
  const parser = new nearley.Parser(nearley.Grammar.fromCompiled(grammar as unknown as nearley.CompiledRules));
  (parser as unknown as { lexer: unknown }).lexer = {
    reset() { index = 0; },
    next: () => tokens[index++],
    save: () => ({}),
    formatError: () => 'error',
    has: () => true,
  };
  parser.feed('');
  return parser.results.length;
}

test('every construct: exactly one parse, no diagnostics', () => {
  const { file, diagnostics } = parsePolicy(EVERYTHING, 'everything.hcl');
  assert.deepEqual(diagnostics, []);
  assert.equal(countParses(EVERYTHING), 1);
  assert.deepEqual(file.body.map((i) => (i.kind === 'block' ? `${i.type.name} ${i.label ? JSON.stringify(i.label.value) : ''}`.trim() : i.name.name)), [
    'settings', 'role "readers"', 'service "escapes"', 'service "one-line"', 'service_prefix ""', 'namespace "prod"',
    'namespace_prefix ""', 'namespace_prefix "st"', 'misc "values"',
  ]);
  assert.deepEqual(file.comments.map((c) => c.style), ['hash', 'slash', 'block', 'hash', 'slash', 'block']);
});

test('every construct: decoded values', () => {
  const { file } = parsePolicy(EVERYTHING, 'everything.hcl');
  const escapes = block(file.body, 'service', 'escapes');
  const identity = attr(escapes, 'identity').value as StringLiteral;
  assert.equal(identity.value, 'team:"q"\\é');
  assert.equal(identity.raw, String.raw`team:\"q\"\\\u00e9`);
  assert.equal((attr(escapes, 'description').value as StringLiteral).value, 'tab\there, newline\nhere, quote " and backslash \\ and éA');

  const settings = block(file.body, 'settings');
  assert.equal(settings.label, null);
  assert.deepEqual(attr(settings, 'anonymous').value.kind === 'boolean' && attr(settings, 'anonymous').value, { kind: 'boolean', value: false, span: attr(settings, 'anonymous').value.span });

  const readers = attr(block(file.body, 'role', 'readers'), 'identities').value as ListLiteral;
  assert.deepEqual(readers.items.map((i) => (i as StringLiteral).value), ['team:a', 'team:b', 'spiffe://c/ns/*/sa/**']);
  assert.deepEqual((attr(block(file.body, 'service_prefix', ''), 'identities').value as ListLiteral).items.map((i) => (i as StringLiteral).value), ['team:a']);

  const prod = block(file.body, 'namespace', 'prod');
  assert.equal(prod.body.filter((i) => i.kind === 'block').length, 2);
  const payPrefix = block(prod.body, 'service_prefix', 'pay-');
  assert.deepEqual((attr(payPrefix, 'identities').value as ListLiteral).items.map((i) => (i as StringLiteral).value), ['spiffe://c/ns/{namespace}/sa/{service}', 'team:b']);
  assert.deepEqual((attr(payPrefix, 'cidrs').value as ListLiteral).items.map((i) => (i as StringLiteral).value), ['10.0.0.0/8', 'fd00::/8']);

  assert.deepEqual(block(file.body, 'namespace_prefix', '').body, []);
  const st = block(file.body, 'namespace_prefix', 'st');
  assert.deepEqual(block(st.body, 'service', 'x').body, []);

  const values = block(file.body, 'misc', 'values');
  const plain = (v: unknown): unknown => {
    const x = v as { kind: string; value?: unknown; items?: unknown[] };
    return x.kind === 'list' ? x.items!.map(plain) : x.value;
  };
  assert.deepEqual(
    Object.fromEntries(['yes', 'no', 'n', 'neg', 'empty', 'nested'].map((n) => [n, plain(attr(values, n).value)])),
    { yes: true, no: false, n: 42, neg: -7, empty: [], nested: [[1, 2], [], ['x'], true] },
  );
});

test('every construct: the parts the checker knows are a valid policy set', () => {
  // Everything but the `misc` block (an unknown block type, there only to carry numbers).
  const text = EVERYTHING.slice(0, EVERYTHING.indexOf('misc "values"'));
  const built = buildPolicySet([{ path: 'everything.hcl', text }]);
  // Only the deliberately empty `service "x" {}` (a valid parse, but a rule needs policy and identity).
  assert.deepEqual(built.diagnostics.filter((d) => d.severity === 'error').map((d) => `${d.span.start.line}:${d.span.start.column} ${d.code}`), ['39:25 missing-identity', '39:25 missing-policy']);
});

test('a 10,000-rule file parses without diagnostics', () => {
  const parts: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    if (i % 100 === 0) parts.push(`namespace "ns-${i}" {\n  policy = "read"\n  identity = "team:ns-${i}"`);
    parts.push(i % 3 === 0
      ? `service "svc-${i}" { policy = "read" identity = "spiffe://c/ns/prod/sa/svc-${i}" }`
      : `service_prefix "p-${i}" {\n  policy = "write"\n  identities = ["team:${i}", "role:readers",]\n  cidrs = ["10.${i % 256}.0.0/16"]\n}`);
    if (i % 100 === 99) parts.push('}');
  }
  parts.push('role "readers" { identities = ["team:r"] }');
  const text = parts.join('\n');
  const { file, diagnostics } = parsePolicy(text, 'big.hcl');
  assert.deepEqual(diagnostics, []);
  assert.equal(file.body.length, 101);
  const built = buildPolicySet([{ path: 'big.hcl', text }]);
  assert.deepEqual(built.diagnostics.filter((d) => d.severity === 'error').slice(0, 3).map((d) => d.message), []);
  assert.equal(built.policy?.ruleCount, 10_000 + 100);
});

test('a 10,000-rule block (one namespace holding every rule) parses without diagnostics', () => {
  const parts = ['namespace "big" {'];
  for (let i = 0; i < 10_000; i++) parts.push(`  service "s-${i}" { policy = "read" identities = ["team:${i}",] }`);
  parts.push('}');
  const { file, diagnostics } = parsePolicy(parts.join('\n'), 'one-block.hcl');
  assert.deepEqual(diagnostics, []);
  assert.equal(file.body.length, 1);
  const big = file.body[0] as Block;
  assert.equal(big.body.length, 10_000);
  assert.equal((big.body[9_999] as Block).label?.value, 's-9999');
  assert.equal(big.span.end.line, 10_002);
});

test('the block types syntax errors know are the schema\'s (no drift)', async () => {
  const { BLOCK_TYPES, CONTAINER_BLOCK_TYPES } = await import('../src/syntax/parse');
  const { BLOCKS } = await import('../src/check/schema');
  assert.deepEqual([...BLOCK_TYPES].sort(), Object.keys(BLOCKS).sort());
  assert.deepEqual([...CONTAINER_BLOCK_TYPES].sort(), Object.keys(BLOCKS).filter((b) => BLOCKS[b]!.children.length > 0).sort());
});
