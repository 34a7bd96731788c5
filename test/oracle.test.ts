// The engine against an independent, naive reference evaluator (src/eval/reference.ts), on random
// valid policy sets and requests; and the worked examples of shared/spec/examples.md for both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildPolicySet, decideWith, type LoadedPolicy } from '../src/engine';
import { referenceDecide } from '../src/eval/reference';
import type { PolicyFile } from '../src/syntax';
import { renderPolicySet, scenarioArb, type GenRequest, type PolicySource } from './support/policy-gen';

type Outcome = { error: string } | { result: string; rule: string | null };

function engineOutcome(policy: LoadedPolicy, req: GenRequest): Outcome {
  const d = decideWith(policy, req);
  if (!d.ok) return { error: d.error.field };
  return { result: d.decision.result, rule: d.decision.rule ? `${d.decision.rule.file}:${d.decision.rule.line}` : null };
}

function oracleOutcome(files: PolicyFile[], req: GenRequest): Outcome {
  const d = referenceDecide(files, req);
  if (!d.ok) return { error: d.error.field };
  return { result: d.result, rule: d.rule ? `${d.rule.file}:${d.rule.line}` : null };
}

function build(sources: PolicySource[]) {
  const built = buildPolicySet(sources);
  if (!built.policy) {
    throw new Error(`generator produced an invalid policy set:\n${built.diagnostics.map((d) => `${d.span.file}:${d.span.start.line}:${d.span.start.column} ${d.code} ${d.message}`).join('\n')}\n${sources.map((s) => `--- ${s.path}\n${s.text}`).join('\n')}`);
  }
  return { policy: built.policy, files: built.files };
}

test('the engine agrees with the reference evaluator on random policy sets and requests', () => {
  const stats = { pairs: 0, ALLOW: 0, ALLOW_DEFAULT: 0, DENY_rule: 0, DENY_default: 0, error: 0 };
  fc.assert(
    // Mapped to the rendered files, so a shrunk counterexample prints as policy text.
    fc.property(scenarioArb.map(({ policy, requests }) => ({ sources: renderPolicySet(policy), requests })), ({ sources, requests }) => {
      const { policy, files } = build(sources);
      for (const req of requests) {
        const engine = engineOutcome(policy, req);
        const oracle = oracleOutcome(files, req);
        assert.deepEqual(engine, oracle, `request ${JSON.stringify(req)}\n${sources.map((s) => `--- ${s.path}\n${s.text}`).join('\n')}`);
        stats.pairs++;
        if ('error' in oracle) stats.error++;
        else if (oracle.result === 'DENY') stats[oracle.rule ? 'DENY_rule' : 'DENY_default']++;
        else stats[oracle.result as 'ALLOW' | 'ALLOW_DEFAULT']++;
      }
    }),
    { numRuns: 3000, seed: Number(process.env.ORACLE_SEED ?? Date.now() % 2 ** 31), includeErrorInReport: true },
  );
  // Guards the generator: it must produce every kind of outcome, matches included, often.
  assert.ok(stats.pairs >= 3000, `only ${stats.pairs} pairs`);
  for (const k of ['ALLOW', 'ALLOW_DEFAULT', 'DENY_rule', 'DENY_default', 'error'] as const) {
    assert.ok(stats[k] >= stats.pairs / 100, `too few ${k}: ${JSON.stringify(stats)}`);
  }
});

// ---- shared/spec/examples.md ----

export const EXAMPLES_POLICY = (defaultPolicy: 'deny' | 'allow') => `settings { default_policy = "${defaultPolicy}" }

role "deployers" { identities = ["team:release", "spiffe://acme/ns/ci/sa/*"] }

service "inventory" {
  policy   = "write"
  identity = "spiffe://acme/ns/shop/sa/inventory"
  cidrs    = ["192.168.10.0/24"]
}
service "inventory" { policy = "read" identity = "spiffe://acme/ns/shop/sa/**" }
service_prefix "billing-" { policy = "read" identity = "team:finance" }
service "billing-keys" { policy = "deny" identity = "team:finance" }

namespace "shop" {
  policy   = "admin"
  identity = "role:deployers"
  service "cart" { policy = "write" identity = "spiffe://acme/ns/shop/sa/cart" }
}
namespace_prefix "sandbox-" {
  service_prefix "" { policy = "write" identity = "spiffe://acme/ns/{namespace}/sa/{service}" }
}
`;

interface ExampleRow {
  n: number;
  identity: string;
  action: string;
  resource: string;
  namespace?: string;
  sourceIp?: string;
  deny: string;
  allow: string;
  /** The line of the rule cited, or null for the default policy. */
  line: number | null;
}

// `deny`: the table's result; `allow`: the result with `default_policy = "allow"` (the paragraph
// under the table). Lines refer to EXAMPLES_POLICY above.
export const EXAMPLE_ROWS: ExampleRow[] = [
  { n: 1, identity: 'spiffe://acme/ns/shop/sa/inventory', action: 'write', resource: 'service:inventory', sourceIp: '192.168.10.5', deny: 'ALLOW', allow: 'ALLOW', line: 5 },
  { n: 2, identity: 'spiffe://acme/ns/shop/sa/inventory', action: 'write', resource: 'service:inventory', sourceIp: '192.168.99.5', deny: 'DENY', allow: 'DENY', line: 5 },
  { n: 3, identity: 'spiffe://acme/ns/shop/sa/inventory', action: 'read', resource: 'service:inventory', deny: 'ALLOW', allow: 'ALLOW', line: 10 },
  { n: 4, identity: 'spiffe://acme/ns/shop/sa/a/b', action: 'read', resource: 'service:inventory', deny: 'ALLOW', allow: 'ALLOW', line: 10 },
  { n: 5, identity: 'spiffe://acme/ns/shop/sa/inventory', action: 'admin', resource: 'service:inventory', sourceIp: '192.168.10.5', deny: 'DENY', allow: 'DENY', line: 5 },
  { n: 6, identity: 'team:finance', action: 'read', resource: 'service:billing-eu', deny: 'ALLOW', allow: 'ALLOW', line: 11 },
  { n: 7, identity: 'team:finance', action: 'read', resource: 'service:billing-keys', deny: 'DENY', allow: 'DENY', line: 12 },
  { n: 8, identity: 'team:finance', action: 'read', resource: 'service:billingx', deny: 'DENY', allow: 'ALLOW_DEFAULT', line: null },
  { n: 9, identity: 'team:release', action: 'admin', resource: 'service:anything', namespace: 'shop', deny: 'ALLOW', allow: 'ALLOW', line: 14 },
  { n: 10, identity: 'spiffe://acme/ns/ci/sa/runner', action: 'admin', resource: 'namespace:shop/*', namespace: 'shop', deny: 'ALLOW', allow: 'ALLOW', line: 14 },
  { n: 11, identity: 'spiffe://acme/ns/ci/sa/runner', action: 'read', resource: 'service:inventory', deny: 'DENY', allow: 'ALLOW_DEFAULT', line: null },
  { n: 12, identity: 'spiffe://acme/ns/shop/sa/inventory', action: 'read', resource: 'service:inventory', namespace: 'shop', deny: 'DENY', allow: 'ALLOW_DEFAULT', line: null },
  { n: 13, identity: 'spiffe://acme/ns/shop/sa/cart', action: 'write', resource: 'service:cart/cart-7', namespace: 'shop', deny: 'ALLOW', allow: 'ALLOW', line: 17 },
  { n: 14, identity: 'spiffe://acme/ns/sandbox-1/sa/demo', action: 'write', resource: 'service:demo', namespace: 'sandbox-1', deny: 'ALLOW', allow: 'ALLOW', line: 20 },
  { n: 15, identity: 'spiffe://acme/ns/sandbox-1/sa/demo', action: 'write', resource: 'service:other', namespace: 'sandbox-1', deny: 'DENY', allow: 'ALLOW_DEFAULT', line: null },
  { n: 16, identity: 'anonymous-looking', action: 'read', resource: 'service:inventory', deny: 'DENY', allow: 'ALLOW_DEFAULT', line: null },
];

for (const defaultPolicy of ['deny', 'allow'] as const) {
  const sources = [{ path: 'examples.hcl', text: EXAMPLES_POLICY(defaultPolicy) }];
  const { policy, files } = build(sources);
  for (const row of EXAMPLE_ROWS) {
    const req: GenRequest = { identity: row.identity, action: row.action, resource: row.resource };
    if (row.namespace) req.namespace = row.namespace;
    if (row.sourceIp) req.sourceIp = row.sourceIp;
    const expected = { result: row[defaultPolicy], rule: row.line === null ? null : `examples.hcl:${row.line}` };
    test(`examples.md row ${row.n} (default_policy = "${defaultPolicy}"): engine`, () => {
      assert.deepEqual(engineOutcome(policy, req), expected);
    });
    test(`examples.md row ${row.n} (default_policy = "${defaultPolicy}"): reference evaluator`, () => {
      assert.deepEqual(oracleOutcome(files, req), expected);
    });
  }
}
