// `pdp check` and `pdp eval` as the real binary: `node bin/pdp.js …` in a subprocess, cwd = the
// repository root (dist/ is built by `npm test` before the tests run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REPO_ROOT, runPdp, scratchDir, type Run } from './support/cli';
import fs from 'node:fs';
import path from 'node:path';

const { dir: WORK, write } = scratchDir('pdp-cli-check-eval-');

function pdp(...args: string[]): Run {
  return runPdp(args);
}

function noStackTrace(r: Run): void {
  assert.doesNotMatch(r.stderr, /^ {4}at /m, 'stderr holds a stack trace');
  assert.doesNotMatch(r.stdout, /^ {4}at /m, 'stdout holds a stack trace');
  assert.doesNotMatch(r.stderr, /internal error/);
}

// ---- fixtures ----

const GOOD = path.join(WORK, 'good');
write('good/main.hcl', `settings { default_policy = "deny" }

role "deployers" { identities = ["team:release", "spiffe://acme/ns/ci/sa/*"] }

service "inventory" {
  policy   = "write"
  identity = "spiffe://acme/ns/shop/sa/inventory"
  cidrs    = ["192.168.10.0/24"]
}
service "inventory" { policy = "read" identity = "spiffe://acme/ns/shop/sa/**" }
`);
write('good/shop/shop.hcl', `namespace "shop" {
  policy   = "admin"
  identity = "role:deployers"
  service "cart" { policy = "write" identity = "spiffe://acme/ns/shop/sa/cart" }
}
`);

const BAD = path.join(WORK, 'bad');
const BAD_A = `service "pay" {
  polcy = "read"
  identity = "role:deployer"
}
role "deployers" { identities = ["team:release"] }
`;
const BAD_B = `namespace "prod" {
  policy = "wirte"
  identity = "team:ops"
  cidrs = ["10.0.0.0/40"]
}
servce "x" { policy = "read" identity = "team:ops" }
`;
write('bad/a.hcl', BAD_A);
write('bad/b.hcl', BAD_B);
const LOOSE_1 = write('loose/one.hcl', 'service "a" { policy = "raed" identity = "team:a" }\n');
const LOOSE_2 = write('loose/two.hcl', 'service "b" {\n  policy = "read"\n  identity "team:b"\n}\n');
const SYNTAX = write('syntax/broken.hcl', 'service "a" {\n  policy = "read"\n  identity = "team:a" ;\n  description = "unterminated\n}\n');
const WARN = path.join(WORK, 'warn');
write('warn/main.hcl', 'settings { default_policy = "allow" }\nservice "a" { policy = "read" identity = "team:a" }\n');

// ---- pdp check ----

test('pdp check on a valid directory exits 0', () => {
  const r = pdp('check', GOOD);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /error\[/);
  assert.match(r.stdout, /ok/);
  noStackTrace(r);
});

test('pdp check on broken files exits 1 and shows file:line:col, the line, a caret, the code and hints', () => {
  const r = pdp('check', BAD);
  assert.equal(r.status, 1, r.stderr);
  noStackTrace(r);
  const a = path.join(BAD, 'a.hcl');
  const b = path.join(BAD, 'b.hcl');
  // The unknown attribute, with its source line, a caret under it and a did-you-mean.
  assert.ok(r.stderr.includes(`${a}:2:3: error[unknown-attribute]: unknown attribute \`polcy\``), r.stderr);
  assert.match(r.stderr, /\n2 \|   polcy = "read"\n {2}\| {3}\^{5}\n {2}= hint: did you mean `policy`\?/);
  assert.ok(r.stderr.includes(`${a}:3:14: error[undefined-role]`), r.stderr);
  assert.match(r.stderr, /did you mean `role:deployers`\?/);
  assert.ok(r.stderr.includes(`${b}:2:12: error[invalid-level]`), r.stderr);
  assert.match(r.stderr, /did you mean `write`\?/);
  assert.ok(r.stderr.includes(`${b}:4:12: error[invalid-cidr]`), r.stderr);
  assert.ok(r.stderr.includes(`${b}:6:1: error[unknown-block]`), r.stderr);
  assert.match(r.stderr, /did you mean `service`\?/);
  // Every error, in location order.
  const heads = [...r.stderr.matchAll(/^(\S+):(\d+):(\d+): error\[/gm)].map((m) => [m[1]!, Number(m[2]), Number(m[3])] as const);
  assert.equal(heads.length, 5, r.stderr);
  for (let i = 1; i < heads.length; i++) {
    const [f0, l0, c0] = heads[i - 1]!;
    const [f1, l1, c1] = heads[i]!;
    assert.ok(f0 < f1 || (f0 === f1 && (l0 < l1 || (l0 === l1 && c0 <= c1))), `out of order: ${heads[i - 1]} then ${heads[i]}`);
  }
});

test('pdp check: syntax and lexical errors are in words, with a caret, and all reported', () => {
  const r = pdp('check', SYNTAX);
  assert.equal(r.status, 1);
  noStackTrace(r);
  assert.match(r.stderr, /broken\.hcl:3:23: error\[invalid-character\]: unexpected character `;`/);
  assert.match(r.stderr, /= hint: attributes need no separator/);
  assert.match(r.stderr, /broken\.hcl:4:17: error\[unterminated-string\]/);
  assert.match(r.stderr, /\n4 \|   description = "unterminated\n {2}\| {17}\^/);
  assert.doesNotMatch(r.stderr, /Instead, I was expecting|Unexpected .* token|state/);
});

test('pdp check --format json lists diagnostics sorted by (file, line, column)', () => {
  const r = pdp('check', '--format', 'json', BAD);
  assert.equal(r.status, 1);
  noStackTrace(r);
  const out = JSON.parse(r.stdout) as { ok: boolean; errors: number; diagnostics: { code: string; severity: string; file: string; line: number; column: number; message: string; hint?: string }[] };
  assert.equal(out.ok, false);
  const errors = out.diagnostics.filter((d) => d.severity === 'error');
  assert.equal(out.errors, errors.length);
  assert.deepEqual(errors.map((d) => `${path.basename(d.file)}:${d.line}:${d.column} ${d.code}`), [
    'a.hcl:2:3 unknown-attribute', // no missing-policy as well: `polcy` is the missing `policy`
    'a.hcl:3:14 undefined-role',
    'b.hcl:2:12 invalid-level',
    'b.hcl:4:12 invalid-cidr',
    'b.hcl:6:1 unknown-block',
  ]);
  const keys = out.diagnostics.map((d) => [d.file, d.line, d.column] as const);
  for (let i = 1; i < keys.length; i++) {
    const [f0, l0, c0] = keys[i - 1]!;
    const [f1, l1, c1] = keys[i]!;
    assert.ok(f0 < f1 || (f0 === f1 && (l0 < l1 || (l0 === l1 && c0 <= c1))));
  }
  assert.equal(out.diagnostics.find((d) => d.code === 'unknown-attribute')?.hint, 'did you mean `policy`?');
});

test('pdp check: several files named together, errors in each, one run', () => {
  const r = pdp('check', '--format', 'json', LOOSE_2, LOOSE_1);
  assert.equal(r.status, 1);
  const out = JSON.parse(r.stdout) as { diagnostics: { file: string; line: number; column: number; code: string; severity: string }[] };
  const errors = out.diagnostics.filter((d) => d.severity === 'error').map((d) => `${path.basename(d.file)}:${d.line}:${d.column} ${d.code}`);
  assert.deepEqual(errors, ['one.hcl:1:24 invalid-level', 'two.hcl:3:12 syntax-error']);
  const text = pdp('check', LOOSE_1, LOOSE_2);
  assert.equal(text.status, 1);
  assert.ok(text.stderr.includes(`${LOOSE_1}:1:24: error[invalid-level]`), text.stderr);
  assert.ok(text.stderr.includes(`${LOOSE_2}:3:12: error[syntax-error]: expected "=" after attribute name \`identity\``), text.stderr);
  assert.match(text.stderr, /= hint: write `identity = "team:b"`/);
  noStackTrace(text);
});

test('pdp check and pdp test: files named together are read in sorted path order, whatever order they are named in', () => {
  // The contract: "Files are read in sorted path order". It decides which `settings` block is the
  // second one and which of two equally specific rules a decision cites.
  const a = write('named-order/a.hcl', 'settings { default_policy = "deny" }\nservice "x" { policy = "read" identity = "u" }\n');
  const b = write('named-order/b.hcl', 'settings { default_policy = "deny" }\nservice "x" { policy = "write" identity = "u" }\n');
  const r = pdp('check', '--format', 'json', b, a);
  assert.equal(r.status, 1);
  const out = JSON.parse(r.stdout) as { diagnostics: { file: string; line: number; code: string }[] };
  const second = out.diagnostics.find((d) => d.code === 'duplicate-settings');
  assert.equal(second && `${path.basename(second.file)}:${second.line}`, 'b.hcl:1', r.stdout);

  const a2 = write('named-order2/a.hcl', 'service "x" { policy = "read" identity = "u" }\n');
  const b2 = write('named-order2/b.hcl', 'service "x" { policy = "write" identity = "u" }\n');
  const t2 = write('named-order2/t.hcl', 'test "t" {\n  identity = "u"\n  action   = "read"\n  resource = "service:x"\n  expect   = "ALLOW"\n}\n');
  for (const order of [[b2, a2, t2], [t2, a2, b2]]) {
    const run = pdp('test', '--format', 'json', ...order);
    assert.equal(run.status, 0, run.stderr);
    const tests = (JSON.parse(run.stdout) as { tests: { rule: { file: string; line: number } | null }[] }).tests;
    assert.equal(tests[0]!.rule && path.basename(tests[0]!.rule.file), 'a.hcl', run.stdout);
  }
});

test('pdp check: a location quoted in a hint is written as the primary location is, so both open from the cwd', () => {
  write('hintpaths/a.hcl', 'settings { default_policy = "deny" }\nrole "r" { identities = ["team:a"] }\n');
  write('hintpaths/b.hcl', 'settings { default_policy = "deny" }\nrole "r" { identities = ["team:b"] }\n');
  write('hintpaths/B/a.hcl', 'service "dup" { policy = "write" identity = "team:d" }\n');
  write('hintpaths/sub/a.hcl', 'service "dup" { policy = "read" identity = "team:d" }\n');
  const rel = path.relative(REPO_ROOT, path.join(WORK, 'hintpaths'));
  const r = pdp('check', rel);
  assert.equal(r.status, 1);
  assert.ok(r.stderr.includes(`${rel}/b.hcl:1:1: error[duplicate-settings]`), r.stderr);
  assert.ok(r.stderr.includes(`= hint: the first is at ${rel}/a.hcl:1; merge them`), r.stderr);
  assert.ok(r.stderr.includes(`= hint: the first is at ${rel}/a.hcl:2\n`), r.stderr);
  assert.ok(r.stderr.includes(`${rel}/sub/a.hcl:1:9: warning[redundant-rule]`), r.stderr);
  assert.ok(r.stderr.includes(`at ${rel}/B/a.hcl:1 already grants it`), r.stderr);
  const json = JSON.parse(pdp('check', rel, '--format', 'json').stdout) as { diagnostics: { code: string; file: string; hint?: string }[] };
  const dup = json.diagnostics.find((d) => d.code === 'duplicate-role')!;
  assert.deepEqual([dup.file, dup.hint], [`${rel}/b.hcl`, `the first is at ${rel}/a.hcl:2`]);
});

test('pdp check --strict fails on warnings', (t) => {
  const json = pdp('check', '--format', 'json', WARN);
  const out = JSON.parse(json.stdout) as { errors: number; warnings: number };
  assert.equal(out.errors, 0);
  if (out.warnings === 0) {
    t.skip('the engine emits no warning for this policy set');
    return;
  }
  assert.equal(json.status, 0, 'warnings alone do not fail without --strict');
  const strict = pdp('check', '--strict', WARN);
  assert.equal(strict.status, 1);
  assert.match(strict.stderr, /warning\[/);
  noStackTrace(strict);
});

test('pdp check: bad usage exits 2', () => {
  for (const args of [['check', '--bogus', GOOD], ['check', '--format', 'xml', GOOD], ['check', path.join(WORK, 'no-such-dir')]]) {
    const r = pdp(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.notEqual(r.stderr.trim(), '');
    noStackTrace(r);
  }
  assert.match(pdp('check', '--bogus', GOOD).stderr, /--bogus/);
  assert.match(pdp('check', '--format', 'xml', GOOD).stderr, /--format/);
  // Argument errors quote in backticks, like every other message.
  assert.match(pdp('check', '--bogus', GOOD).stderr, /^pdp check: unknown option `--bogus`$/m);
  assert.match(pdp('check', GOOD, '--format').stderr, /^pdp check: option `--format` expects a value$/m);
  assert.match(pdp('check', '--strict=1', GOOD).stderr, /^pdp check: option `--strict` does not take an argument$/m);
  assert.match(pdp('eval', 'extra', '--action', 'read').stderr, /^pdp eval: unexpected argument `extra`; this command takes no positional arguments$/m);
});

// ---- pdp eval ----

interface EvalJson {
  result: string;
  allow: boolean;
  reason: string;
  rule: { file: string; line: number } | null;
  policy_version: string;
  considered?: { rule: { file: string; line: number }; outcome: string; why: string }[];
}

function evalJson(...args: string[]): { r: Run; out: EvalJson } {
  const r = pdp('eval', '--policies', GOOD, '--format', 'json', ...args);
  assert.equal(r.status, 0, r.stderr);
  noStackTrace(r);
  return { r, out: JSON.parse(r.stdout) as EvalJson };
}

test('pdp eval refuses an identity the server would refuse: a control, zero-width or bidi character (exit 2, the code point named)', () => {
  for (const [identity, named] of [['team:ops\u200b', /U\+200B \(zero-width space\) at position 8/], ['team:\u202espo', /U\+202E/], ['a\u0001b', /U\+0001/]] as const) {
    const r = pdp('eval', '--policies', path.join(REPO_ROOT, 'policies'), '--identity', identity, '--action', 'read', '--resource', 'service:payment-service');
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, named);
    assert.ok(!r.stderr.includes(identity), 'the invisible character is not printed back');
  }
});

test('pdp eval --format json: an ALLOW', () => {
  const { out } = evalJson('--identity', 'spiffe://acme/ns/shop/sa/inventory', '--action', 'write', '--resource', 'service:inventory', '--source-ip', '192.168.10.5');
  assert.equal(out.result, 'ALLOW');
  assert.equal(out.allow, true);
  assert.equal(typeof out.reason, 'string');
  assert.ok(out.reason.length > 0);
  assert.deepEqual(out.rule, { file: 'main.hcl', line: 5 });
  assert.match(out.policy_version, /^sha256:[0-9a-f]{64}$/);
});

test('pdp eval --format json: a DENY also exits 0', () => {
  const { out } = evalJson('--identity', 'spiffe://acme/ns/shop/sa/inventory', '--action', 'write', '--resource', 'service:inventory', '--source-ip', '192.168.99.5');
  assert.equal(out.result, 'DENY');
  assert.equal(out.allow, false);
  assert.deepEqual(out.rule, { file: 'main.hcl', line: 5 });
  assert.match(out.reason, /192\.168\.99\.5/);
  const byDefault = evalJson('--identity', 'team:nobody', '--action', 'read', '--resource', 'service:inventory').out;
  assert.equal(byDefault.result, 'DENY');
  assert.equal(byDefault.rule, null);
});

test('pdp eval: namespaces and instances', () => {
  const { out } = evalJson('--identity', 'spiffe://acme/ns/shop/sa/cart', '--action', 'write', '--resource', 'service:cart/cart-7', '--namespace', 'shop');
  assert.equal(out.result, 'ALLOW');
  assert.deepEqual(out.rule, { file: 'shop/shop.hcl', line: 4 });
  const ns = evalJson('--identity', 'spiffe://acme/ns/ci/sa/runner', '--action', 'admin', '--resource', 'namespace:shop/*').out;
  assert.equal(ns.result, 'ALLOW');
  assert.deepEqual(ns.rule, { file: 'shop/shop.hcl', line: 1 });
});

test('pdp eval --explain lists the rules considered', () => {
  const { out } = evalJson('--identity', 'spiffe://acme/ns/shop/sa/inventory', '--action', 'read', '--resource', 'service:inventory', '--explain');
  assert.equal(out.result, 'ALLOW');
  assert.ok(Array.isArray(out.considered));
  const lines = out.considered!.map((c) => `${c.rule.file}:${c.rule.line}`);
  assert.ok(lines.includes('main.hcl:5'), lines.join(', '));
  assert.ok(lines.includes('main.hcl:10'), lines.join(', '));
  assert.equal(out.considered!.find((c) => c.rule.line === 10)?.outcome, 'decided');

  const text = pdp('eval', '--policies', GOOD, '--identity', 'spiffe://acme/ns/shop/sa/inventory', '--action', 'read', '--resource', 'service:inventory', '--explain');
  assert.equal(text.status, 0);
  assert.match(text.stdout, /^ALLOW/);
  assert.match(text.stdout, /main\.hcl:10/);
  assert.match(text.stdout, /main\.hcl:5/);
  assert.match(text.stdout, /sha256:/);
});

test('pdp eval: text output without --explain', () => {
  const r = pdp('eval', '--policies', GOOD, '--identity', 'team:release', '--action', 'admin', '--resource', 'service:anything', '--namespace', 'shop');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^ALLOW\n/);
  assert.match(r.stdout, /shop\/shop\.hcl:1/);
});

test('pdp eval: bad --action, --resource, --source-ip, --namespace exit 2 naming the flag', () => {
  const base = ['eval', '--policies', GOOD, '--identity', 'team:a'];
  const cases: [string[], RegExp][] = [
    [[...base, '--action', 'delete', '--resource', 'service:a'], /--action/],
    [[...base, '--action', 'read', '--resource', 'svc:a'], /--resource/],
    [[...base, '--action', 'read', '--resource', 'service:a', '--source-ip', '10.0.0.300'], /--source-ip/],
    [[...base, '--action', 'read', '--resource', 'namespace:shop/*', '--namespace', 'prod'], /--namespace/],
    [[...base, '--resource', 'service:a'], /--action/],
    [[...base, '--action', 'read'], /--resource/],
    [[...base, '--action', 'read', '--resource', 'service:a', '--format', 'yaml'], /--format/],
    [[...base, '--action', 'read', '--resource', 'service:a', '--bogus'], /--bogus/],
    // An empty value is quoted so that it reads as empty, not as nothing.
    [[...base, '--action', '', '--resource', 'service:a'], /--action: unknown action `""`/],
    [[...base, '--action', 'read', '--resource', 'service:a', '--namespace', ''], /--namespace: invalid namespace `""`/],
    [[...base, '--action', 'read', '--resource', 'service:a', '--source-ip', ''], /--source-ip: invalid IP address `""`/],
    [[...base, '--action', 'read', '--resource', 'service:a/'], /--resource: invalid instance `""` in resource/],
  ];
  for (const [args, flag] of cases) {
    const r = pdp(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, flag, args.join(' '));
    noStackTrace(r);
  }
});

test('pdp eval: no identity without `anonymous = true` is bad usage naming --identity', () => {
  const r = pdp('eval', '--policies', GOOD, '--action', 'read', '--resource', 'service:inventory');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--identity/);
  noStackTrace(r);
});

test('pdp eval: --identity anonymous without `anonymous = true` is bad usage too, saying why', () => {
  const r = pdp('eval', '--policies', GOOD, '--identity', 'anonymous', '--action', 'read', '--resource', 'service:inventory');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /`anonymous` is the identity of unauthenticated subjects/);
  noStackTrace(r);
});

test('pdp eval: a missing policy directory exits 2', () => {
  const r = pdp('eval', '--policies', path.join(WORK, 'nope'), '--identity', 'team:a', '--action', 'read', '--resource', 'service:a');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /nope/);
  noStackTrace(r);
});

test('pdp eval: a broken policy set exits 1 with its diagnostics', () => {
  const r = pdp('eval', '--policies', BAD, '--identity', 'team:a', '--action', 'read', '--resource', 'service:a');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[unknown-attribute\]/);
  assert.match(r.stderr, /\n2 \|   polcy = "read"\n/);
  noStackTrace(r);
});

test('pdp check: the diagnostics corpus multi-error cases, as the CLI reports them in one run', () => {
  const dir = 'test/corpus/diagnostics';
  const looseCases = ['multi-error-1', 'multi-error-syntax', 'multi-error-lexical'];
  const dirCase = 'duplicate-settings';
  const r = pdp('check', '--format', 'json', ...looseCases.map((c) => `${dir}/${c}.hcl`), `${dir}/${dirCase}`);
  assert.equal(r.status, 1, r.stderr);
  noStackTrace(r);
  const out = JSON.parse(r.stdout) as { diagnostics: { file: string; line: number; column: number; code: string; severity: string; message: string }[] };
  const expected: string[] = [];
  const load = (c: string) => JSON.parse(fs.readFileSync(path.join(REPO_ROOT, dir, `${c}.json`), 'utf8')) as { file?: string; code: string; line: number; column: number }[];
  for (const c of looseCases) for (const e of load(c)) expected.push(`${dir}/${c}.hcl:${e.line}:${e.column} ${e.code}`);
  for (const e of load(dirCase)) expected.push(`${path.join(dir, dirCase, e.file!)}:${e.line}:${e.column} ${e.code}`);
  const actual = out.diagnostics.filter((d) => d.severity === 'error').map((d) => `${d.file}:${d.line}:${d.column} ${d.code}`);
  assert.deepEqual(actual, [...expected].sort((a, b) => {
    const [fa, la, ca] = a.split(' ')[0]!.split(':');
    const [fb, lb, cb] = b.split(' ')[0]!.split(':');
    return fa! < fb! ? -1 : fa! > fb! ? 1 : Number(la) - Number(lb) || Number(ca) - Number(cb);
  }));
});

test('pdp eval --explain: of two rules on one line, only the cited one is `decided`', () => {
  write('sameline/p.hcl', 'service "a" { policy = "read" identity = "team:a" } service "a" { policy = "write" identity = "team:a" }\n');
  const r = pdp('eval', '--policies', path.join(WORK, 'sameline'), '--format', 'json', '--identity', 'team:a', '--action', 'read', '--resource', 'service:a', '--explain');
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as EvalJson;
  assert.deepEqual(out.rule, { file: 'p.hcl', line: 1 });
  assert.deepEqual(out.considered!.map((c) => c.outcome), ['decided', 'granted']);
});

test('pdp eval --explain: a mismatch quotes a placeholder pattern as filled in (or why it cannot be), and a role with its members', () => {
  write('placeholders/a.hcl', `role "sre" { identities = ["team:sre", "spiffe://acme/ns/ops/sa/*"] }
namespace "shop" {
  policy   = "write"
  identity = "spiffe://acme/ns/shop/sa/{service}"
}
namespace "shop" {
  policy   = "admin"
  identity = "role:sre"
}
`);
  const why = (...resource: string[]) => {
    const r = pdp('eval', '--policies', path.join(WORK, 'placeholders'), '--format', 'json', '--identity', 'spiffe://acme/ns/shop/sa/cart', '--action', 'write', ...resource, '--explain');
    assert.equal(r.status, 0, r.stderr);
    return (JSON.parse(r.stdout) as EvalJson).considered!.map((c) => c.why);
  };
  assert.deepEqual(why('--resource', 'namespace:shop/*'), [
    'spiffe://acme/ns/shop/sa/cart does not match `spiffe://acme/ns/shop/sa/{service}` (`{service}` cannot be filled for `namespace:shop/*`, so this pattern matches no one here)',
    'spiffe://acme/ns/shop/sa/cart does not match `role:sre` (members `team:sre`, `spiffe://acme/ns/ops/sa/*`)',
  ]);
  assert.equal(why('--resource', 'service:checkout', '--namespace', 'shop')[0],
    'spiffe://acme/ns/shop/sa/cart does not match `spiffe://acme/ns/shop/sa/{service}` (here `spiffe://acme/ns/shop/sa/checkout`)');
});

test('pdp eval --explain: a grant that loses on file order is called equally specific, one that loses on scope more specific', () => {
  const rule = (type: string, label: string) => `${type} "${label}" {\n  policy   = "read"\n  identity = "team:x"\n}\n`;
  write('order/B.hcl', rule('service', 's'));
  write('order/a-b.hcl', rule('service', 's'));
  write('order/c.hcl', rule('service_prefix', 's'));
  const r = pdp('eval', '--policies', path.join(WORK, 'order'), '--format', 'json', '--identity', 'team:x', '--action', 'read', '--resource', 'service:s', '--explain');
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as EvalJson;
  assert.deepEqual(out.rule, { file: 'B.hcl', line: 1 });
  assert.deepEqual(out.considered!.map((c) => c.why), [
    'grants read; the most specific matching grant',
    'grants read; an equally specific, earlier rule is cited (B.hcl:1)',
    'grants read; a more specific rule is cited (B.hcl:1)',
  ]);
});
