// `pdp test --coverage` through the real CLI: which rules decided a test, in text and json, the
// threshold's exit codes, bad usage, and the example set.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REPO_ROOT, runPdp, scratchDir } from './support/cli';

interface Coverage {
  set: string;
  covered: number;
  total: number;
  percent: number;
  uncovered: { file: string; line: number; rule: string }[];
}

// Seven rules in two files (a.hcl sorts first). Line numbers matter: the assertions name them.
const A_HCL = `service "payment" {
  policy   = "write"
  identity = "spiffe://c/ns/prod/sa/payment"
}

service "payment" {
  policy   = "deny"
  identity = "team:audit"
}

service "ledger" {
  policy   = "read"
  identity = "team:finance"
}
`;

const B_HCL = `service_prefix "pay" {
  policy   = "read"
  identity = "team:audit"
}

namespace "shop" {
  policy   = "read"
  identity = "team:shop"

  service "cart" {
    policy     = "write"
    identities = ["spiffe://c/ns/shop/sa/cart", "spiffe://c/ns/shop/sa/checkout"]
  }

  service_prefix "tmp-" {
    policy   = "read"
    identity = "role:qa"
  }
}

role "qa" {
  identities = ["team:qa"]
}
`;

const request = (name: string, fields: Record<string, string>) =>
  `test "${name}" {\n${Object.entries(fields).map(([k, v]) => `  ${k} = "${v}"`).join('\n')}\n}\n`;

const TESTS = [
  // an allow through a.hcl:1
  request('payment registers', { identity: 'spiffe://c/ns/prod/sa/payment', action: 'write', resource: 'service:payment', expect: 'ALLOW' }),
  // an allow through the prefix at b.hcl:1
  request('audit reads payroll', { identity: 'team:audit', action: 'read', resource: 'service:payroll', expect: 'ALLOW' }),
  // a deny citing a grant too low for the action (a.hcl:11): that rule is covered too
  request('finance cannot write the ledger', { identity: 'team:finance', action: 'write', resource: 'service:ledger', expect: 'DENY' }),
  // one identity of the two-identity block at b.hcl:10 covers the block (one rule, one location)
  request('checkout registers cart', { identity: 'spiffe://c/ns/shop/sa/checkout', action: 'write', resource: 'service:cart', namespace: 'shop', expect: 'ALLOW' }),
  // the default policy decides: no rule covered
  request('a stranger gets nothing', { identity: 'team:nobody', action: 'read', resource: 'service:payment', expect: 'DENY' }),
].join('\n');

function policySet(): string {
  const s = scratchDir('pdp-coverage-');
  s.write('p/a.hcl', A_HCL);
  s.write('p/b.hcl', B_HCL);
  s.write('p/tests.hcl', TESTS);
  return s.dir;
}

const NOT_COVERED = [
  { file: 'p/a.hcl', line: 6, rule: 'service "payment" deny team:audit' },
  { file: 'p/b.hcl', line: 6, rule: 'namespace "shop" read team:shop' },
  { file: 'p/b.hcl', line: 15, rule: 'service_prefix "tmp-" read role:qa' },
];

test('pdp test --coverage: covered / total per set, and every uncovered rule at its file:line with its description', () => {
  const cwd = policySet();
  const r = runPdp(['test', 'p', '--coverage'], { cwd });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.endsWith(`5 passed, 0 failed
coverage of \`p\`: 4/7 rules decided a test (57.1%); not covered:
  p/a.hcl:6   service "payment" deny team:audit
  p/b.hcl:6   namespace "shop" read team:shop
  p/b.hcl:15  service_prefix "tmp-" read role:qa
`), r.stdout);

  const json = runPdp(['test', 'p', '--coverage', '--format', 'json'], { cwd });
  assert.equal(json.status, 0, json.stderr);
  const body = JSON.parse(json.stdout) as { passed: number; coverage: Coverage[] };
  assert.equal(body.passed, 5);
  assert.deepEqual(body.coverage, [{ set: 'p', covered: 4, total: 7, percent: 57.1, uncovered: NOT_COVERED }]);

  // Without the flag the output is as before: no coverage line, no `coverage` key.
  const plain = runPdp(['test', 'p'], { cwd });
  assert.doesNotMatch(plain.stdout, /coverage/);
  const plainJson = JSON.parse(runPdp(['test', 'p', '--format', 'json'], { cwd }).stdout) as Record<string, unknown>;
  assert.equal('coverage' in plainJson, false);
});

test('pdp test --coverage --run: only the tests that ran count, and the report says so', () => {
  const cwd = policySet();
  const r = runPdp(['test', 'p', '--coverage', '--run', '^payment registers$'], { cwd });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^coverage of `p` \(the tests --run selected\): 1\/7 rules decided a test \(14\.2%\); not covered:$/m);
  const body = JSON.parse(runPdp(['test', 'p', '--coverage', '--run', '^payment registers$', '--format', 'json'], { cwd }).stdout) as { coverage: Coverage[] };
  assert.deepEqual(body.coverage[0]!.uncovered.map((u) => `${u.file}:${u.line}`), ['p/a.hcl:6', 'p/a.hcl:11', 'p/b.hcl:1', 'p/b.hcl:6', 'p/b.hcl:10', 'p/b.hcl:15']);
});

test('pdp test --coverage: a failing test covers the rule that decided it; a default decision covers none', () => {
  const s = scratchDir('pdp-coverage-');
  s.write('p/a.hcl', A_HCL);
  s.write('p/tests.hcl', [
    request('audit writes payment (wrong on purpose)', { identity: 'team:audit', action: 'write', resource: 'service:payment', expect: 'ALLOW' }),
    request('a stranger reads the ledger (wrong on purpose)', { identity: 'team:nobody', action: 'read', resource: 'service:ledger', expect: 'ALLOW' }),
  ].join('\n'));
  const r = runPdp(['test', 'p', '--coverage', '--format', 'json'], { cwd: s.dir });
  assert.equal(r.status, 1, 'the failures fail the run');
  const body = JSON.parse(r.stdout) as { failed: number; coverage: Coverage[] };
  assert.equal(body.failed, 2);
  assert.deepEqual(body.coverage[0]!.uncovered.map((u) => u.line), [1, 11], 'the deny at a.hcl:6 decided the first; the default policy the second');
});

test('pdp test --coverage-threshold: below it exits 1 naming the set; at or above it passes; it implies --coverage', () => {
  const cwd = policySet();
  const below = runPdp(['test', 'p', '--coverage-threshold', '60'], { cwd });
  assert.equal(below.status, 1);
  assert.match(below.stdout, /^5 passed, 0 failed$/m);
  assert.match(below.stdout, /^coverage of `p`: 4\/7 rules/m, 'the threshold prints the report too');
  assert.equal(below.stderr, 'pdp test: rule coverage of `p` is 57.1% (4/7), below --coverage-threshold 60%\n');
  // 4 of 7 is 57.142…%: compared exactly, so 57.1 passes and 57.15 does not.
  assert.equal(runPdp(['test', 'p', '--coverage', '--coverage-threshold', '57.1'], { cwd }).status, 0);
  assert.equal(runPdp(['test', 'p', '--coverage', '--coverage-threshold', '57.15'], { cwd }).status, 1);
  assert.equal(runPdp(['test', 'p', '--coverage-threshold', '0'], { cwd }).status, 0);
  // Only the set below the threshold is named.
  const full = scratchDir('pdp-coverage-');
  full.write('q/a.hcl', 'service "a" {\n  policy   = "read"\n  identity = "team:a"\n}\n');
  full.write('q/tests.hcl', request('a reads a', { identity: 'team:a', action: 'read', resource: 'service:a', expect: 'ALLOW' }));
  const both = runPdp(['test', 'q', path.join(cwd, 'p'), '--coverage-threshold', '100', '--format', 'json'], { cwd: full.dir });
  assert.equal(both.status, 1);
  assert.deepEqual((JSON.parse(both.stdout) as { coverage: Coverage[] }).coverage.map((c) => [c.covered, c.total, c.percent]), [[1, 1, 100], [4, 7, 57.1]]);
  assert.match(both.stderr, /^pdp test: rule coverage of `.*p` is 57\.1% \(4\/7\), below --coverage-threshold 100%$/m);
  assert.doesNotMatch(both.stderr, /`q`/);
  assert.equal(runPdp(['test', 'q', '--coverage-threshold', '100'], { cwd: full.dir }).status, 0);
});

test('pdp test --coverage-threshold: a value that is not a percentage from 0 to 100 is bad usage; the help names both flags', () => {
  const cwd = policySet();
  for (const bad of ['abc', '101', '100.5', '-5', '', '1e2', '50%']) {
    const r = runPdp(['test', 'p', `--coverage-threshold=${bad}`], { cwd });
    assert.equal(r.status, 2, `${bad}: ${r.stderr}`);
    assert.equal(r.stderr.split('\n')[0], `pdp test: --coverage-threshold expects a percentage from 0 to 100; got \`${bad}\``);
    assert.equal(r.stdout, '', 'nothing was run');
  }
  const missing = runPdp(['test', 'p', '--coverage-threshold'], { cwd });
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /--coverage-threshold/);
  const help = runPdp(['test', '--help']);
  assert.equal(help.status, 0);
  for (const said of ['--coverage ', '--coverage-threshold PCT', 'implies --coverage', 'with --run, only the tests that\n                 ran count']) {
    assert.ok(help.stdout.includes(said), `help says ${said}:\n${help.stdout}`);
  }
});

test('pdp test --coverage: a set without rules reads 0/0, 100%; a set with errors gets no coverage', () => {
  const s = scratchDir('pdp-coverage-');
  s.write('none/settings.hcl', 'settings {\n  default_policy = "allow"\n}\n');
  s.write('none/tests.hcl', request('anything goes', { identity: 'team:a', action: 'read', resource: 'service:a', expect: 'ALLOW_DEFAULT' }));
  s.write('broken/a.hcl', 'service "a" {\n  polcy = "read"\n}\n');
  const r = runPdp(['test', 'none', '--coverage-threshold', '100'], { cwd: s.dir });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^coverage of `none`: 0\/0 rules decided a test \(100\.0%\)$/m);
  const broken = runPdp(['test', 'none', 'broken', '--coverage', '--format', 'json'], { cwd: s.dir });
  assert.equal(broken.status, 1);
  const body = JSON.parse(broken.stdout) as { not_run: string[]; coverage: Coverage[] };
  assert.deepEqual([body.not_run, body.coverage.map((c) => c.set)], [['broken'], ['none']]);
});

test('pdp test --coverage on the example policies: every rule block is counted, and the shipped tests cover each one', () => {
  const r = runPdp(['test', 'policies', '--coverage', '--format', 'json']);
  assert.equal(r.status, 0, r.stderr);
  const [c, ...rest] = (JSON.parse(r.stdout) as { coverage: Coverage[] }).coverage;
  assert.equal(rest.length, 0);
  assert.equal(c!.set, 'policies');
  // Every block with a `policy` attribute is a rule: count them in the files themselves.
  const blocks = fs.readdirSync(path.join(REPO_ROOT, 'policies')).filter((f) => f.endsWith('.hcl')).flatMap((f) => {
    const lines = fs.readFileSync(path.join(REPO_ROOT, 'policies', f), 'utf8').split('\n');
    return lines.flatMap((l, i) => (/^\s*(service|service_prefix|namespace|namespace_prefix) "/.test(l) ? [{ file: f, line: i + 1 }] : []));
  });
  assert.equal(c!.total, blocks.length, 'every block of the example set has a policy');
  // The example set is what users copy: a rule added to it without a test fails here.
  assert.deepEqual([c!.covered, c!.uncovered, c!.percent], [c!.total, [], 100], JSON.stringify(c!.uncovered));
  const text = runPdp(['test', 'policies', '--coverage-threshold', '100']);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`^coverage of \`policies\`: ${c!.total}/${c!.total} rules decided a test \\(100\\.0%\\)$`, 'm'));
});
