// The compile-time decision table (src/eval/table.ts) against the general path (index walk + decide):
// every decision, reason and cited rule must be byte-identical, on hand-written overlaps and on
// random policy sets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildPolicySet, type LoadedPolicy } from '../src/engine';
import { evaluate, evaluateGeneral, prepareRequest, type RawRequest } from '../src/eval';
import { ANONYMOUS } from '../src/syntax';
import { SOURCE_IPS as GEN_SOURCE_IPS, renderPolicySet, scenarioArb, type PolicySource } from './support/policy-gen';

function build(sources: PolicySource[]): LoadedPolicy {
  const built = buildPolicySet(sources);
  assert.ok(built.policy, built.diagnostics.map((d) => d.message).join('\n'));
  return built.policy;
}

type Path = 'triple' | 'resource' | 'general' | 'error';

/** Decides `raw` both ways, asserts they are identical, and says which path the table took. */
function compare(policy: LoadedPolicy, raw: RawRequest): Path {
  const prepared = prepareRequest(raw);
  if (!prepared.ok) return 'error';
  const request = prepared.request;
  const identity = request.identity ?? (policy.compiled.settings.anonymous ? ANONYMOUS : undefined);
  if (identity === undefined) return 'error';
  const fast = evaluate(policy.compiled, request, identity);
  const general = evaluateGeneral(policy.compiled, request, identity);
  assert.deepEqual(fast, general, `request ${JSON.stringify(raw)}`);
  // Explanations go through the general path; still, they must be what they were.
  assert.deepEqual(evaluate(policy.compiled, request, identity, { explain: true }), evaluateGeneral(policy.compiled, request, identity, { explain: true }));
  const { table } = policy.compiled;
  if (table.triples.has(request.resourceKey + identity)) return 'triple';
  return table.resources.has(request.resourceKey) ? 'resource' : 'general';
}

// One triple (prod / billing-keys / the billing workload) reached by an exact rule, a prefix rule, a
// `{service}` glob, a namespace-level rule through a role, a `*` rule and a deny with cidrs.
const OVERLAP = (opts: { cidrs: boolean; defaultPolicy: 'deny' | 'allow'; anonymous: boolean }) => `settings {
  default_policy = "${opts.defaultPolicy}"
  anonymous      = ${opts.anonymous}
}

role "ops" { identities = ["team:ops", "spiffe://c/ns/prod/sa/billing-keys"] }

namespace "prod" {
  policy   = "read"
  identity = "role:ops"

  service "billing-keys" {
    policy   = "write"
    identity = "spiffe://c/ns/prod/sa/billing-keys"
  }
  service "billing-keys" {
    policy   = "deny"
    identity = "spiffe://c/ns/prod/sa/billing-keys"${opts.cidrs ? '\n    cidrs    = ["10.0.0.0/8"]' : ''}
  }
  service_prefix "billing-" {
    policy   = "admin"
    identities = ["spiffe://c/ns/{namespace}/sa/{service}", "team:finance"]${opts.cidrs ? '\n    cidrs    = ["192.168.0.0/16", "fd00::/8"]' : ''}
  }
  service "billing-keys" {
    policy   = "read"
    identity = "*"
  }
  service "billing-keys" {
    policy   = "read"
    identity = "anonymous"
  }
  service "ledger" {
    policy   = "write"
    identity = "spiffe://c/ns/prod/sa/*"
  }
}

namespace_prefix "pro" {
  service "billing-keys" {
    policy   = "admin"
    identity = "team:finance"
  }
}
`;

const IDENTITIES = [
  'spiffe://c/ns/prod/sa/billing-keys', 'spiffe://c/ns/prod/sa/ledger', 'spiffe://c/ns/prod/sa/other',
  'team:ops', 'team:finance', 'team:nobody', 'anonymous', undefined,
];
const RESOURCES = [
  { resource: 'service:billing-keys', namespace: 'prod' },
  { resource: 'service:billing-keys/i-1', namespace: 'prod' },
  { resource: 'service:billing-eu', namespace: 'prod' },
  { resource: 'service:ledger', namespace: 'prod' },
  { resource: 'service:billing-keys', namespace: 'production' },
  { resource: 'service:billing-keys', namespace: 'staging' },
  { resource: 'service:billing-keys' },
  { resource: 'namespace:prod/*' },
  { resource: 'namespace:staging/*' },
];
const SOURCE_IPS = [undefined, '10.1.2.3', '192.168.1.1', 'fd00::1', '8.8.8.8'];

for (const cidrs of [false, true]) {
  for (const defaultPolicy of ['deny', 'allow'] as const) {
    for (const anonymous of [false, true]) {
      test(`decision table = general path on overlapping rules (cidrs ${cidrs}, default ${defaultPolicy}, anonymous ${anonymous})`, () => {
        const policy = build([{ path: 'overlap.hcl', text: OVERLAP({ cidrs, defaultPolicy, anonymous }) }]);
        const seen = new Set<Path>();
        for (const identity of IDENTITIES) {
          for (const r of RESOURCES) {
            for (const action of ['read', 'write', 'admin']) {
              for (const sourceIp of SOURCE_IPS) seen.add(compare(policy, { identity, action, ...r, sourceIp }));
            }
          }
        }
        for (const path of ['triple', 'resource', 'general'] as const) assert.ok(seen.has(path), `no request took the ${path} path`);
      });
    }
  }
}

test('the overlapping triple: its matched rules and decisions', () => {
  for (const cidrs of [false, true]) {
    const { compiled } = build([{ path: 'overlap.hcl', text: OVERLAP({ cidrs, defaultPolicy: 'deny', anonymous: true }) }]);
    const entry = compiled.table.triples.get('prod\0billing-keys\0spiffe://c/ns/prod/sa/billing-keys');
    assert.ok(entry);
    // Most specific first: the exact write, the deny and `*` (source order), the prefix glob, role:ops on the namespace.
    assert.deepEqual(entry.rules.map((r) => r.line), cidrs ? [12, 16, 26, 21, 8] : [12, 16, 24, 20, 8]);
    // With cidrs, the source address decides: no precomputed verdicts.
    assert.equal(entry.verdicts === undefined, cidrs);
    const decide = (sourceIp?: string) => {
      const p = prepareRequest({ identity: 'spiffe://c/ns/prod/sa/billing-keys', action: 'write', resource: 'service:billing-keys/i-1', namespace: 'prod', sourceIp });
      assert.ok(p.ok);
      return evaluate(compiled, p.request, p.request.identity!);
    };
    if (cidrs) {
      assert.equal(decide('10.9.9.9').result, 'DENY');
      assert.deepEqual(decide('192.168.3.3'), { result: 'ALLOW', allow: true, reason: 'spiffe://c/ns/prod/sa/billing-keys has write on service:billing-keys/i-1 (service "billing-keys" at overlap.hcl:12)', rule: { file: 'overlap.hcl', line: 12 } });
    } else {
      assert.deepEqual(decide(), { result: 'DENY', allow: false, reason: 'spiffe://c/ns/prod/sa/billing-keys is explicitly denied on service:billing-keys/i-1 by the rule at overlap.hcl:16', rule: { file: 'overlap.hcl', line: 16 } });
    }
  }
});

test('table decisions are fresh objects (callers may attach explanations)', () => {
  const { compiled } = build([{ path: 'overlap.hcl', text: OVERLAP({ cidrs: false, defaultPolicy: 'deny', anonymous: false }) }]);
  const p = prepareRequest({ identity: 'team:ops', action: 'read', resource: 'service:billing-keys', namespace: 'prod' });
  assert.ok(p.ok);
  const a = evaluate(compiled, p.request, 'team:ops');
  const b = evaluate(compiled, p.request, 'team:ops');
  assert.notEqual(a, b);
  assert.deepEqual(a, b);
});

test('decision table = general path on random policy sets and requests', () => {
  const paths = { triple: 0, resource: 0, general: 0, error: 0 };
  fc.assert(
    fc.property(scenarioArb.map(({ policy, requests }) => ({ sources: renderPolicySet(policy), requests })), ({ sources, requests }) => {
      const policy = build(sources);
      for (const req of requests) paths[compare(policy, req)]++;
      // Random requests rarely hit a triple the policy names; ask about some of those directly.
      let asked = 0;
      for (const key of policy.compiled.table.triples.keys()) {
        if (asked++ === 6) break;
        const [namespace, service, identity] = key.split('\0') as [string, string, string];
        const resource = service === '' ? `namespace:${namespace}/*` : `service:${service}`;
        for (const action of ['read', 'write', 'admin']) {
          for (const sourceIp of [undefined, GEN_SOURCE_IPS[asked % GEN_SOURCE_IPS.length]]) paths[compare(policy, { identity, action, resource, namespace, sourceIp })]++;
        }
      }
      // And about named resources with identities no exact pattern names (`*`, globs, placeholders).
      asked = 0;
      for (const key of policy.compiled.table.resources.keys()) {
        if (asked++ === 4) break;
        const [namespace, service] = key.split('\0') as [string, string];
        const resource = service === '' ? `namespace:${namespace}/*` : `service:${service}`;
        for (const identity of ['team:x/y', `spiffe://c/ns/${namespace}/sa/${service || 'pay'}`, undefined]) {
          for (const action of ['read', 'write', 'admin']) paths[compare(policy, { identity, action, resource, namespace, sourceIp: GEN_SOURCE_IPS[asked] })]++;
        }
      }
    }),
    { numRuns: 1500, seed: Number(process.env.ORACLE_SEED ?? Date.now() % 2 ** 31), includeErrorInReport: true },
  );
  // Guards the generator: every path must be exercised often.
  const total = paths.triple + paths.resource + paths.general;
  assert.ok(paths.triple >= total / 20 && paths.resource >= total / 20 && paths.general >= total / 50, JSON.stringify(paths));
});
