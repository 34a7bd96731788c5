// `# pdp:allow CODE -- why`: a lint warning that is meant is acknowledged next to its rule, so
// `pdp check --strict` stays the CI gate for everything else. Through the real CLI: what is covered
// (the next block, or the line the comment ends), what is reported apart (text summary, json
// `acknowledged`, SARIF suppressions), and the acknowledgements that are themselves wrong.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runPdp, scratchDir } from './support/cli';

const FEDERATED = `settings { trust_domain = "acme" }

# pdp:allow foreign-trust-domain -- federated with partner.example (SEC-42)
service "billing" {
  policy   = "read"
  identity = "spiffe://partner.example/ns/billing/sa/reader"
}

service "orders" {
  policy   = "read"
  identity = "spiffe://other.example/ns/x/sa/y" # pdp:allow foreign-trust-domain -- migrating until 2027-01
}
`;

test('acknowledged warnings do not fail --strict and are reported apart, with their reasons', () => {
  const s = scratchDir('pdp-ack-');
  s.write('p/a.hcl', FEDERATED);
  const text = runPdp(['check', '--strict', 'p'], { cwd: s.dir });
  assert.equal(text.status, 0, text.stderr);
  assert.equal(text.stderr, '');
  assert.equal(text.stdout, 'ok: 1 file, 2 rules: 0 errors, 0 warnings (2 more acknowledged by `pdp:allow`)\n');

  const json = runPdp(['check', '--format', 'json', 'p'], { cwd: s.dir });
  const body = JSON.parse(json.stdout) as { ok: boolean; warnings: number; acknowledged: { code: string; line: number; column: number; reason: string }[] };
  assert.equal(body.ok, true);
  assert.equal(body.warnings, 0);
  assert.deepEqual(body.acknowledged.map((a) => [a.code, a.line, a.column, a.reason]), [
    ['foreign-trust-domain', 6, 14, 'federated with partner.example (SEC-42)'],
    ['foreign-trust-domain', 11, 14, 'migrating until 2027-01'],
  ]);

  const sarif = JSON.parse(runPdp(['check', '--format', 'sarif', 'p'], { cwd: s.dir }).stdout) as { runs: { results: { ruleId: string; suppressions?: { kind: string; justification: string }[] }[] }[] };
  const results = sarif.runs[0]!.results;
  assert.equal(results.length, 2);
  assert.deepEqual(results.map((r) => r.suppressions), [
    [{ kind: 'inSource', justification: 'federated with partner.example (SEC-42)' }],
    [{ kind: 'inSource', justification: 'migrating until 2027-01' }],
  ]);
});

test('an acknowledgement covers its own block or line only, and only the codes it names', () => {
  const s = scratchDir('pdp-ack-');
  s.write('p/a.hcl', `settings { trust_domain = "acme" }

# pdp:allow foreign-trust-domain -- federated
service "billing" {
  policy   = "read"
  identity = "spiffe://partner.example/ns/billing/sa/reader"
}

service "ledger" {
  policy   = "read"
  identity = "spiffe://evil.example/ns/x/sa/y"
}

service "payments" {
  policy = "read"
  identities = [
    "spiffe://acme/ns/pay/sa/api",
    "spiffe://evil.example/ns/pay/sa/api", # pdp:allow foreign-trust-domain -- one line only
  ]
}

# pdp:allow foreign-trust-domain -- wrong code for this block
service_prefix "" {
  policy   = "write"
  identity = "team:ops"
}
`);
  const r = runPdp(['check', '--strict', '--format', 'json', 'p'], { cwd: s.dir });
  assert.equal(r.status, 1);
  const body = JSON.parse(r.stdout) as { diagnostics: { code: string; line: number }[]; acknowledged: { line: number }[] };
  assert.deepEqual(body.acknowledged.map((a) => a.line), [6, 18]);
  assert.deepEqual(body.diagnostics.map((d) => [d.code, d.line]), [
    ['foreign-trust-domain', 11], // the next block is not covered
    ['unused-acknowledgement', 22], // names a code this block does not have…
    ['broad-prefix-grant', 23], // …so the block's own warning stays
  ]);
});

test('acknowledgements that are wrong are warnings themselves: no reason, unknown code, an error code, nothing after them', () => {
  const s = scratchDir('pdp-ack-');
  s.write('p/a.hcl', `settings { trust_domain = "acme" }

// pdp:allow foreign-trust-domain
service "a" {
  policy   = "read"
  identity = "spiffe://x.example/ns/x/sa/y"
}

# pdp:allow foriegn-trust-domain -- typo
service "b" {
  policy   = "read"
  identity = "spiffe://acme/ns/x/sa/b"
}

# pdp:allow unknown-attribute -- errors cannot be waved through
service "c" {
  policy   = "read"
  identity = "spiffe://acme/ns/x/sa/c"
  polcy    = "write"
}

# pdp:allow dead-grant -- trailing, nothing follows
`);
  const r = runPdp(['check', '--format', 'json', 'p'], { cwd: s.dir });
  assert.equal(r.status, 1, 'the unknown attribute is still an error');
  const body = JSON.parse(r.stdout) as { diagnostics: { code: string; line: number; message: string; hint?: string }[]; acknowledged: unknown[] };
  assert.deepEqual(body.acknowledged, []);
  const byLine = new Map(body.diagnostics.map((d) => [`${d.line} ${d.code}`, d]));
  assert.match(byLine.get('3 invalid-acknowledgement')!.message, /gives no reason/);
  assert.ok(byLine.has('6 foreign-trust-domain'), 'a malformed acknowledgement acknowledges nothing');
  assert.match(byLine.get('9 invalid-acknowledgement')!.hint!, /did you mean `foreign-trust-domain`\?/);
  assert.match(byLine.get('15 invalid-acknowledgement')!.message, /`unknown-attribute` is not a lint code/);
  assert.ok(byLine.has('19 unknown-attribute'));
  assert.match(byLine.get('22 unused-acknowledgement')!.message, /followed by no rule/);
});
