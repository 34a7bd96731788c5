// `pdp test` through the real CLI (passing and failing suites), and explanations over HTTP.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authorize, makeTempDir, removeTempDir, runPdp, startServer } from './support/server';

const POLICY = `service "payment" {
  policy   = "write"
  identity = "spiffe://c/ns/prod/sa/payment"
}

service_prefix "pay" {
  policy   = "read"
  identity = "team:audit"
}

service "payment" {
  policy   = "deny"
  identity = "team:audit"
}
`;

function suite(dir: string, tests: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'rules.hcl'), POLICY);
  fs.writeFileSync(path.join(dir, 'tests.hcl'), tests);
}

test('pdp test --run REGEXP: only the matching tests run; matching none is a finding; a bad pattern is bad usage', async () => {
  const some = await runPdp(['test', 'policies', '--run', '^staging|cannot reach staging$', '--format', 'json']);
  assert.equal(some.code, 0, some.stderr);
  const body = JSON.parse(some.stdout) as { passed: number; tests: { name: string }[] };
  assert.ok(body.tests.length >= 2, `${body.tests.length} tests`);
  for (const t of body.tests) assert.match(t.name, /^staging|cannot reach staging$/);
  const all = JSON.parse((await runPdp(['test', 'policies', '--format', 'json'])).stdout) as { tests: unknown[] };
  assert.ok(all.tests.length > body.tests.length);
  const none = await runPdp(['test', 'policies', '--run', 'no such test']);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /^pdp test: no test name matches `no such test`$/m);
  const bad = await runPdp(['test', 'policies', '--run', '(']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--run: `\(` is not a regular expression/);
});

test('pdp test: the shipped policies pass, with a closing count line', async () => {
  const r = await runPdp(['test', 'policies']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^PASS {2}payment registers itself/m);
  assert.match(r.stdout, /^19 passed, 0 failed$/m);
});

test('pdp test: a failing test exits 1 and names the deciding rule', async (t) => {
  const root = makeTempDir('pdp-cli-test-');
  t.after(() => removeTempDir(root));
  const dir = path.join(root, 'p');
  suite(dir, `test "payment registers" {
  identity = "spiffe://c/ns/prod/sa/payment"
  action   = "write"
  resource = "service:payment"
  expect   = "ALLOW"
}

test "audit reads payment (wrong on purpose)" {
  identity = "team:audit"
  action   = "read"
  resource = "service:payment"
  expect   = "ALLOW"
}

test "audit reads payroll" {
  identity = "team:audit"
  action   = "read"
  resource = "service:payroll"
  expect   = "ALLOW"
}
`);
  const r = await runPdp(['test', dir]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^PASS {2}payment registers/m);
  assert.match(r.stdout, /^FAIL {2}audit reads payment \(wrong on purpose\) {2}\(.*tests\.hcl:8\)$/m);
  assert.match(r.stdout, /expected ALLOW, got DENY: team:audit is explicitly denied/);
  assert.match(r.stdout, /decided by .*rules\.hcl:11$/m);
  // The rule quoted in the reason is written as `decided by` writes it (openable from the cwd).
  assert.ok(r.stdout.includes(`denied on service:payment by the rule at ${path.join(dir, 'rules.hcl')}:11\n      decided by ${path.join(dir, 'rules.hcl')}:11\n`), r.stdout);
  assert.match(r.stdout, /^2 passed, 1 failed$/m);

  const json = await runPdp(['test', dir, '--format', 'json']);
  assert.equal(json.code, 1);
  const body = JSON.parse(json.stdout) as { passed: number; failed: number; tests: { name: string; passed: boolean; rule: { file: string; line: number } | null }[] };
  assert.deepEqual([body.passed, body.failed], [2, 1]);
  // The same shape as `pdp eval --format json` and the HTTP answer give.
  const failedRule = body.tests.find((x) => !x.passed)?.rule;
  assert.equal(failedRule?.file.endsWith('rules.hcl'), true);
  assert.equal(failedRule?.line, 11);
});

test('pdp test: a policy set with errors runs no tests and exits 1', async (t) => {
  const root = makeTempDir('pdp-cli-test-');
  t.after(() => removeTempDir(root));
  const dir = path.join(root, 'p');
  suite(dir, 'test "broken" {\n  action = "read"\n  resource = "service:payment"\n  expect = "ALOW"\n}\n');
  const r = await runPdp(['test', dir]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /tests\.hcl:4:12: error\[invalid-test\]/);
  assert.match(r.stderr, /did you mean `ALLOW`\?/);
  // No count that could be read as a result: the tests were not run.
  assert.doesNotMatch(r.stdout, /passed|failed/);
  assert.match(r.stdout, /^tests not run: `.*p` has errors$/m);
  assert.match(r.stderr, /its tests were not run/);

  const json = await runPdp(['test', dir, '--format', 'json']);
  assert.equal(json.code, 1);
  const body = JSON.parse(json.stdout) as { passed: number; failed: number; not_run: string[]; tests: unknown[] };
  assert.deepEqual([body.passed, body.failed, body.tests.length], [0, 0, 0]);
  assert.equal(body.not_run.length, 1);
  assert.ok(body.not_run[0]!.endsWith('p'));
});

test('pdp test: a set without any test block is a finding (exit 1), in text and json', async (t) => {
  const root = makeTempDir('pdp-cli-test-');
  t.after(() => removeTempDir(root));
  const tested = path.join(root, 'tested');
  const untested = path.join(root, 'untested');
  suite(tested, 'test "payment registers" {\n  identity = "spiffe://c/ns/prod/sa/payment"\n  action = "write"\n  resource = "service:payment"\n  expect = "ALLOW"\n}\n');
  fs.mkdirSync(untested, { recursive: true });
  fs.writeFileSync(path.join(untested, 'p.hcl'), 'service "a" {\n  policy = "read"\n  identity = "team:a"\n}\n');
  const alone = await runPdp(['test', untested]);
  assert.equal(alone.code, 1);
  assert.match(alone.stdout, /^0 passed, 0 failed; no `test` blocks in `.*untested`$/m);
  assert.match(alone.stderr, /^pdp test: `.*untested` has no `test` blocks; nothing in it was tested$/m);
  const both = await runPdp(['test', tested, untested, '--format', 'json']);
  assert.equal(both.code, 1, 'the tested set passing does not hide the untested one');
  const body = JSON.parse(both.stdout) as { passed: number; failed: number; no_tests: string[] };
  assert.deepEqual([body.passed, body.failed, body.no_tests.length], [1, 0, 1]);
  assert.ok(body.no_tests[0]!.endsWith('untested'));
  assert.equal((await runPdp(['test', tested])).code, 0);
});

test('pdp test and pdp eval: a default decision notes the rules for the service in other namespaces (a namespace mix-up)', async (t) => {
  const root = makeTempDir('pdp-cli-test-');
  t.after(() => removeTempDir(root));
  const dir = path.join(root, 'mix');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'p.hcl'), `service "inventory" {
  policy   = "read"
  identity = "spiffe://acme/ns/shop/sa/inventory"
}

namespace "staging" {
  service_prefix "" {
    policy   = "read"
    identity = "team:qa"
  }
}

test "inventory reads itself in shop" {
  identity  = "spiffe://acme/ns/shop/sa/inventory"
  action    = "read"
  resource  = "service:inventory"
  namespace = "shop"
  expect    = "ALLOW"
}

test "inventory reads itself" {
  identity = "spiffe://acme/ns/shop/sa/inventory"
  action   = "read"
  resource = "service:inventory"
  expect   = "ALLOW"
}
`);
  const note = /rules for service `inventory` exist in namespace `default` \(.*p\.hcl:1\), but this request is in namespace `shop`/;
  const text = await runPdp(['test', dir]);
  assert.equal(text.code, 1);
  assert.match(text.stdout, new RegExp(`FAIL  inventory reads itself in shop .*\\n.*\\n      decided by the default policy\\n      note: ${note.source}\\n`));
  assert.equal(text.stdout.match(/note:/g)?.length, 1, 'the catch-all prefix of staging names no service: no note for it');
  const json = JSON.parse((await runPdp(['test', dir, '--format', 'json'])).stdout) as { tests: { name: string; note?: string }[] };
  assert.match(json.tests.find((x) => x.name === 'inventory reads itself in shop')!.note!, note);
  assert.equal(json.tests.find((x) => x.name === 'inventory reads itself')!.note, undefined, 'a passing test has no note');
  const evalText = await runPdp(['eval', '--policies', dir, '--identity', 'spiffe://acme/ns/shop/sa/inventory', '--action', 'read', '--resource', 'service:inventory', '--namespace', 'shop']);
  assert.match(evalText.stdout, /^  note: {3}rules for service `inventory` exist in namespace `default` \(p\.hcl:1\), but this request is in namespace `shop`$/m);
  // When a rule for the service does reach the request's namespace, the namespace is right: no note.
  fs.appendFileSync(path.join(dir, 'p.hcl'), '\nnamespace "shop" {\n  service "inventory" {\n    policy   = "read"\n    identity = "team:shop-readers"\n  }\n}\n');
  assert.doesNotMatch((await runPdp(['test', dir])).stdout, /note:/);
});

test('pdp test: with one set broken and one fine, the count covers only the set that ran', async (t) => {
  const root = makeTempDir('pdp-cli-test-');
  t.after(() => removeTempDir(root));
  const good = path.join(root, 'good');
  const bad = path.join(root, 'bad');
  suite(good, 'test "payment registers" {\n  identity = "spiffe://c/ns/prod/sa/payment"\n  action = "write"\n  resource = "service:payment"\n  expect = "ALLOW"\n}\n');
  suite(bad, 'test "broken" {\n  action = "read"\n  resource = "service:payment"\n  expect = "ALOW"\n}\n');
  const r = await runPdp(['test', good, bad]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^PASS {2}payment registers/m);
  assert.doesNotMatch(r.stdout, /^\d+ passed, \d+ failed$/m);
  assert.match(r.stdout, /^tests not run: `.*bad` has errors \(of the others: 1 passed, 0 failed\)$/m);
});

test('pdp check and pdp test: a test block that could never pass is an error, not a run-time ERROR', async (t) => {
  const root = makeTempDir('pdp-cli-test-');
  t.after(() => removeTempDir(root));
  const dir = path.join(root, 'p');
  suite(dir, `test "anonymous, but the set does not allow it" {
  action   = "read"
  resource = "service:payment"
  expect   = "DENY"
}

test "namespace contradicts the resource" {
  identity  = "team:audit"
  action    = "read"
  resource  = "namespace:a/*"
  namespace = "b"
  expect    = "DENY"
}

test "anonymous named outright" {
  identity = "anonymous"
  action   = "read"
  resource = "service:payment"
  expect   = "DENY"
}
`);
  const check = await runPdp(['check', dir]);
  assert.equal(check.code, 1);
  assert.match(check.stderr, /tests\.hcl:1:6: error\[invalid-test\]: this test has no `identity`, and the policy set does not allow anonymous requests\n/);
  assert.match(check.stderr, /= hint: add `identity = "\.\.\."`, or allow anonymous requests with `settings \{ anonymous = true \}`/);
  assert.match(check.stderr, /tests\.hcl:11:15: error\[invalid-test\]: this test's request would be refused: `b` contradicts the resource `namespace:a\/\*`\n/);
  assert.match(check.stderr, /\n11 \|   namespace = "b"\n {3}\| {15}\^{3}\n {3}= hint: omit `namespace` or make them equal/);
  assert.match(check.stderr, /tests\.hcl:16:14: error\[invalid-test\]: this test's `identity` is `anonymous`, the identity of unauthenticated subjects, and the policy set does not allow anonymous requests\n/);

  const run = await runPdp(['test', dir]);
  assert.equal(run.code, 1);
  assert.doesNotMatch(run.stdout, /decided by|got ERROR|passed/);
  assert.match(run.stderr, /this test has no `identity`/);

  // With `anonymous = true` the first test is a real test again: it runs, and nothing errors.
  fs.writeFileSync(path.join(dir, 'settings.hcl'), 'settings { anonymous = true }\n');
  fs.writeFileSync(path.join(dir, 'tests.hcl'), 'test "anonymous" {\n  action = "read"\n  resource = "service:payment"\n  expect = "DENY"\n}\n');
  const ok = await runPdp(['test', dir]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /^PASS {2}anonymous/m);
  assert.match(ok.stdout, /^1 passed, 0 failed$/m);
});

test('POST /v1/authorize with explain lists every rule in scope and why', async (t) => {
  const server = await startServer({ files: { 'rules.hcl': POLICY } });
  t.after(() => server.close());
  const res = await authorize(server.url, { identity: 'team:audit', action: 'read', resource: 'service:payment', explain: true });
  assert.equal(res.status, 200);
  assert.equal(res.json.result, 'DENY');
  const considered = res.json.considered as { rule: { file: string; line: number; column: number }; outcome: string; why: string }[];
  assert.deepEqual(considered.map((c) => [c.rule.line, c.outcome]), [[1, 'identity-mismatch'], [6, 'overridden'], [11, 'decided']]);
  assert.equal(considered[0]!.rule.column, 1);
  assert.match(considered[0]!.why, /team:audit does not match `spiffe:\/\/c\/ns\/prod\/sa\/payment`/);
  // Without explain the answer carries no explanation.
  const plain = await authorize(server.url, { identity: 'team:audit', action: 'read', resource: 'service:payment' });
  assert.equal(plain.json.considered, undefined);
});

// A test states a request the server could be sent, so its identity follows the server's rule for a
// request's identity: a space is decided (only `*` and globs match it), with a lint warning since it
// is usually a typo; a control character is refused, for the reason the server gives.
const SPACED_RULES = `settings { default_policy = "deny" }

service "api" {
  policy   = "read"
  identity = "spiffe://cluster/ns/prod/sa/*"
}
`;

const spacedTest = (name: string, identity: string, action: string, expect: string) =>
  `test "${name}" {\n  identity = "${identity}"\n  action   = "${action}"\n  resource = "service:api"\n  expect   = "${expect}"\n}\n`;

/** A policy set of SPACED_RULES and the given tests, in a temporary directory removed after the test. */
function spacedSet(t: { after: (fn: () => void) => void }, name: string, tests: string): string {
  const root = makeTempDir('pdp-cli-test-');
  t.after(() => removeTempDir(root));
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'rules.hcl'), SPACED_RULES);
  fs.writeFileSync(path.join(dir, 'tests.hcl'), tests);
  return dir;
}

test('a test identity with a space runs and is decided as the server decides it, with a `test-identity-space` warning', async (t) => {
  const dir = spacedSet(t, 'spaced',
    spacedTest('spaced identity reads through the glob', 'spiffe://cluster/ns/prod/sa/my app', 'read', 'ALLOW') +
    spacedTest('spaced identity writes', 'spiffe://cluster/ns/prod/sa/my app', 'write', 'ALLOW'));

  const run = await runPdp(['test', dir]);
  assert.equal(run.code, 1, run.stdout + run.stderr);
  assert.match(run.stdout, /^PASS {2}spaced identity reads through the glob/m);
  assert.match(run.stdout, /^FAIL {2}spaced identity writes .*\n {6}expected ALLOW, got DENY: spiffe:\/\/cluster\/ns\/prod\/sa\/my app has read on service:api; write is required$/m);
  assert.match(run.stdout, /^1 passed, 1 failed$/m);

  const check = await runPdp(['check', dir]);
  assert.equal(check.code, 0, check.stderr);
  assert.match(check.stderr, /tests\.hcl:2:14: warning\[test-identity-space\]: this test's `identity` holds U\+0020 \(space character\) at position 30: no identity pattern can name it, only `\*` and globs match it\n/);
  assert.match(check.stderr, /= hint: probably a typo \(identities are written without spaces\); `pdp test` runs it as written/);
  assert.match(check.stdout, /^ok: 2 files, 1 rule: 0 errors, 2 warnings$/m);
  assert.equal((await runPdp(['check', '--strict', dir])).code, 1, '--strict fails on it');

  // The server decides the same requests the same way.
  const server = await startServer({ files: { 'rules.hcl': SPACED_RULES } });
  t.after(() => server.close());
  for (const [action, result] of [['read', 'ALLOW'], ['write', 'DENY']] as const) {
    const res = await authorize(server.url, { identity: 'spiffe://cluster/ns/prod/sa/my app', action, resource: 'service:api' });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.result, result);
  }
});

test('a test identity with a control character is still an invalid-test error, for the server\'s reason', async (t) => {
  const dir = spacedSet(t, 'control', spacedTest('tab', 'spiffe://cluster/ns/prod/sa/my\\u0009app', 'read', 'ALLOW'));
  const check = await runPdp(['check', dir]);
  assert.equal(check.code, 1);
  const line = /tests\.hcl:2:14: error\[invalid-test\]: this test's request would be refused: `identity` (.*)\n[^]*?= hint: (.*)\n/.exec(check.stderr);
  assert.ok(line, check.stderr);
  assert.equal(line[1], 'holds U+0009 (tab) at position 30');
  assert.doesNotMatch(check.stderr, /test-identity-space/, 'an error, not also a warning');
  assert.equal((await runPdp(['test', dir])).code, 1, 'pdp test does not run a set with errors');

  // The server's answer to that request gives the same reason.
  const server = await startServer({ files: { 'rules.hcl': SPACED_RULES } });
  t.after(() => server.close());
  const res = await authorize(server.url, { identity: 'spiffe://cluster/ns/prod/sa/my\tapp', action: 'read', resource: 'service:api' });
  assert.equal(res.status, 400, res.text);
  assert.equal(res.json.error.message, `\`identity\` ${line[1]}; ${line[2]}`);
});

test('an identity is at most 2048 characters, counted as the server counts them, in a request, `pdp eval` and a test block', async (t) => {
  const root = makeTempDir('pdp-cli-test-');
  t.after(() => removeTempDir(root));
  const prefix = 'spiffe://cluster/ns/prod/sa/';
  const sized = (length: number, char: string) => prefix + char.repeat(length - prefix.length);
  // 😀 is two UTF-16 code units: the server's schema counts code points, and so must eval and test.
  const fits = [sized(2048, 'x'), sized(2048, '😀')];
  const over = [sized(2049, 'x'), sized(2049, '😀')];
  const server = await startServer({ files: { 'rules.hcl': SPACED_RULES } });
  t.after(() => server.close());
  const dir = path.join(root, 'sized');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'rules.hcl'), SPACED_RULES);
  const evalAs = (identity: string) => runPdp(['eval', '--policies', dir, '--identity', identity, '--action', 'read', '--resource', 'service:api']);

  for (const identity of fits) {
    const res = await authorize(server.url, { identity, action: 'read', resource: 'service:api' });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.result, 'ALLOW');
    const ev = await evalAs(identity);
    assert.equal(ev.code, 0, ev.stderr);
    assert.match(ev.stdout, /^ALLOW$/m);
  }
  fs.writeFileSync(path.join(dir, 'tests.hcl'), fits.map((identity, i) => spacedTest(`fits ${i}`, identity, 'read', 'ALLOW')).join(''));
  const passing = await runPdp(['test', dir]);
  assert.equal(passing.code, 0, passing.stdout + passing.stderr);
  assert.match(passing.stdout, /^2 passed, 0 failed$/m);

  for (const identity of over) {
    const res = await authorize(server.url, { identity, action: 'read', resource: 'service:api' });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error.field, 'identity');
    const ev = await evalAs(identity);
    assert.equal(ev.code, 2, ev.stdout);
    assert.match(ev.stderr, /^pdp eval: --identity is 2049 characters long, more than the 2048 a request may hold$/m);
  }
  fs.writeFileSync(path.join(dir, 'tests.hcl'), over.map((identity, i) => spacedTest(`over ${i}`, identity, 'read', 'ALLOW')).join(''));
  const check = await runPdp(['check', dir, '--format', 'json']);
  assert.equal(check.code, 1, check.stdout);
  const found = (JSON.parse(check.stdout) as { diagnostics: { code: string; line: number; message: string }[] }).diagnostics;
  assert.deepEqual(found.map((d) => `${d.line} ${d.code} ${d.message}`), [2, 8].map((line) =>
    `${line} invalid-test this test's request would be refused: \`identity\` is 2049 characters long, more than the 2048 a request may hold`));
  assert.equal((await runPdp(['test', dir])).code, 1, 'pdp test does not run a set with errors');
});
