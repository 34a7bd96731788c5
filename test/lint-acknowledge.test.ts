// `# pdp:allow CODE -- why`: a lint warning that is meant is acknowledged next to its rule, so
// `pdp check --strict` stays the CI gate for everything else. Through the real CLI: what is covered
// (the next block, or the line the comment ends), what is reported apart (text summary, json
// `acknowledged`, SARIF suppressions), and the acknowledgements that are themselves wrong.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
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

// Layouts where "which rule does this comment belong to" is not obvious. Each is checked before and
// after `pdp fmt`: what is acknowledged, and what is still reported, must not change.
const LAYOUTS: Record<string, { text: string; acknowledged: string[]; reported: string[] }> = {
  // A leading block comment before code on its line leads that code, not the next line.
  'block comment before code': {
    text: `settings { trust_domain = "cluster" }
/* pdp:allow foreign-trust-domain -- partner */ service "a" { policy = "read" identity = "spiffe://partner/x" }
service "b" {
  policy = "read"
  identity = "spiffe://evil/x"
}
`,
    acknowledged: ['spiffe://partner/x'], reported: ['spiffe://evil/x'],
  },
  // A block starting on the line where the acknowledged one ends is not covered by it.
  'a block opened on the closing line of another': {
    text: `namespace "prod" {
  # pdp:allow broad-prefix-grant -- on-call team administers every service (OPS-7)
  service_prefix "" {
    policy   = "admin"
    identity = "team:oncall"
  } service_prefix "" { policy = "write" identity = "spiffe://cluster/ns/prod/sa/*" }
}
`,
    acknowledged: ['team:oncall'], reported: ['spiffe://cluster/ns/prod/sa/*'],
  },
  // The last thing in a block belongs to no rule, least of all to the next block.
  'the last line of a block': {
    text: `settings { trust_domain = "cluster" }
service "a" {
  policy = "read"
  identity = "spiffe://cluster/x"
  # pdp:allow foreign-trust-domain -- meant for nothing in a
} service "b" {
  policy = "read"
  identity = "spiffe://evil/x"
}
`,
    acknowledged: [], reported: ['unused-acknowledgement', 'spiffe://evil/x'],
  },
  // After a list item: that item only; after the list's \`]\`: the whole attribute.
  'after a list item': {
    text: `settings { trust_domain = "cluster" }
service "a" {
  policy = "read"
  identities = [ "spiffe://partner/ok", # pdp:allow foreign-trust-domain -- partner
    "spiffe://evil/x",
  ]
}
`,
    acknowledged: ['spiffe://partner/ok'], reported: ['spiffe://evil/x'],
  },
  'after the closing bracket': {
    text: `settings { trust_domain = "cluster" }
service "b" {
  policy = "read"
  identities = [
    "spiffe://cluster/a",
    "spiffe://partner/x",
  ] # pdp:allow foreign-trust-domain -- both partners of this list
}
`,
    acknowledged: ['spiffe://partner/x'], reported: [],
  },
  // At the end of a line holding two blocks: the last one (where fmt keeps the comment).
  'two one-line blocks': {
    text: `settings { trust_domain = "cluster" }
service "a" { policy = "read" identity = "spiffe://evil/x" } service "b" { policy = "read" identity = "spiffe://partner/x" } # pdp:allow foreign-trust-domain -- partner b
`,
    acknowledged: ['spiffe://partner/x'], reported: ['spiffe://evil/x'],
  },
  // A block's acknowledgement and a list item's inside it: both used, the inner one's reason given.
  'nested acknowledgements': {
    text: `settings { trust_domain = "cluster" }
# pdp:allow foreign-trust-domain -- the whole namespace is federated (SEC-1)
namespace "shop" {
  service "orders" {
    policy     = "read"
    identities = [
      "spiffe://partner/x", # pdp:allow foreign-trust-domain -- until the 2027-01 cut-over (SEC-2)
      "spiffe://partner/y",
    ]
  }
}
`,
    acknowledged: ['spiffe://partner/x', 'spiffe://partner/y'], reported: [],
  },
};

test('what an acknowledgement covers follows the comment attachment of pdp fmt, so formatting never changes it', () => {
  const s = scratchDir('pdp-ack-fmt-');
  const outcome = (dir: string) => {
    const body = JSON.parse(runPdp(['check', '--format', 'json', dir], { cwd: s.dir }).stdout) as {
      diagnostics: { code: string; message: string }[]; acknowledged: { message: string; reason: string }[];
    };
    const identityIn = (message: string) => /`(spiffe:[^`]*|team:[^`]*)`/.exec(message)?.[1] ?? message;
    return {
      acknowledged: body.acknowledged.map((a) => identityIn(a.message)).sort(),
      reported: body.diagnostics.map((d) => (d.code === 'unused-acknowledgement' ? d.code : identityIn(d.message))).sort(),
      reasons: body.acknowledged.map((a) => a.reason),
    };
  };
  for (const [name, layout] of Object.entries(LAYOUTS)) {
    const dir = name.replace(/\W+/g, '-');
    s.write(`${dir}/p.hcl`, layout.text);
    const raw = outcome(dir);
    assert.deepEqual([raw.acknowledged, raw.reported], [[...layout.acknowledged].sort(), [...layout.reported].sort()], name);
    assert.equal(runPdp(['fmt', dir], { cwd: s.dir }).status, 0, name);
    assert.notEqual(fs.readFileSync(path.join(s.dir, dir, 'p.hcl'), 'utf8'), layout.text, `${name}: fmt changed the layout`);
    assert.deepEqual(outcome(dir), raw, `${name}: after pdp fmt`);
    if (name === 'nested acknowledgements') assert.deepEqual(raw.reasons, ['until the 2027-01 cut-over (SEC-2)', 'the whole namespace is federated (SEC-1)']);
  }
});

test('a reason must say something: none, dashes only, or `--` glued to it are invalid', () => {
  const s = scratchDir('pdp-ack-');
  s.write('p/a.hcl', `settings { default_policy = "allow" } # pdp:allow default-allow --
service "x" { policy = "read" identity = "team:a" } # pdp:allow default-allow -- --
service "y" { policy = "read" identity = "team:b" } # pdp:allow default-allow --x
`);
  const body = JSON.parse(runPdp(['check', '--format', 'json', 'p'], { cwd: s.dir }).stdout) as { diagnostics: { code: string; line: number; message: string }[] };
  const invalid = body.diagnostics.filter((d) => d.code === 'invalid-acknowledgement').map((d) => [d.line, d.message]);
  assert.deepEqual(invalid, [
    [1, '`pdp:allow` gives no reason'],
    [2, '`pdp:allow` gives no reason'],
    [3, '`--x` is not a lint code: the reason goes after ` -- `, with a space on each side'],
  ]);
});
