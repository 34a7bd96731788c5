// The compile-time decision table (src/eval/table.ts) against the general path (index walk + decide):
// every decision, reason and cited rule must be byte-identical, on hand-written overlaps and on
// random policy sets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildPolicySet, type LoadedPolicy } from '../src/engine';
import { evaluate, evaluateGeneral, namedEntry, prepareRequest, type RawRequest } from '../src/eval';
import { namedIdentities } from '../src/eval/table';
import { ANONYMOUS } from '../src/syntax';
import { SOURCE_IPS as GEN_SOURCE_IPS, renderPolicySet, scenarioArb, type PolicySource } from './support/policy-gen';

function build(sources: PolicySource[]): LoadedPolicy {
  const built = buildPolicySet(sources);
  assert.ok(built.policy, built.diagnostics.map((d) => d.message).join('\n'));
  return built.policy;
}

type Path = 'named identity' | 'other identity' | 'service class' | 'general' | 'error';

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
  const table = policy.compiled.table!;
  const named = table.resources.get(request.resourceKey);
  if (named) return namedIdentities(named).includes(identity) ? 'named identity' : 'other identity';
  return request.service !== undefined && table.namespaces.has(request.namespace) ? 'service class' : 'general';
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

# Unnamed services of staging are decided by service class (no {service} glob in scope).
namespace "staging" {
  policy   = "write"
  identity = "team:ops"
  service_prefix "billing" {
    policy   = "deny"
    identity = "team:finance"
  }
  service_prefix "bill" {
    policy   = "admin"
    identities = ["spiffe://c/ns/{namespace}/sa/*", "team:finance"]${opts.cidrs ? '\n    cidrs    = ["10.0.0.0/8"]' : ''}
  }
  service "ledger" {
    policy   = "read"
    identity = "*"
  }
}
`;

const IDENTITIES = [
  'spiffe://c/ns/prod/sa/billing-keys', 'spiffe://c/ns/prod/sa/ledger', 'spiffe://c/ns/prod/sa/other',
  'spiffe://c/ns/staging/sa/x', 'team:ops', 'team:finance', 'team:nobody', 'anonymous', undefined,
];
const RESOURCES = [
  { resource: 'service:billing-keys', namespace: 'prod' },
  { resource: 'service:billing-keys/i-1', namespace: 'prod' },
  { resource: 'service:billing-eu', namespace: 'prod' },
  { resource: 'service:ledger', namespace: 'prod' },
  { resource: 'service:billing-keys', namespace: 'production' },
  { resource: 'service:billing-keys', namespace: 'staging' },
  { resource: 'service:bill', namespace: 'staging' },
  { resource: 'service:other', namespace: 'staging' },
  { resource: 'service:ledger', namespace: 'staging' },
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
        for (const path of ['named identity', 'other identity', 'service class', 'general'] as const) assert.ok(seen.has(path), `no request took the ${path} path`);
      });
    }
  }
}

test('the overlapping triple: its matched rules and decisions', () => {
  for (const cidrs of [false, true]) {
    const { compiled } = build([{ path: 'overlap.hcl', text: OVERLAP({ cidrs, defaultPolicy: 'deny', anonymous: true }) }]);
    const entry = namedEntry(compiled.table!.resources.get('prod\0billing-keys')!, 'spiffe://c/ns/prod/sa/billing-keys');
    assert.ok(entry);
    // Most specific first: the exact write, the deny and `*` (source order), the prefix glob, role:ops on the namespace.
    assert.deepEqual(entry.rules.map((r) => r.line), cidrs ? [12, 16, 26, 21, 8] : [12, 16, 24, 20, 8]);
    // With cidrs, the source address decides: no precomputed verdicts.
    assert.equal(entry.read === undefined && entry.write === undefined && entry.admin === undefined, cidrs);
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

test('a resource naming more identities than its entry holds inline: every one keeps its own decision', () => {
  // Six identities on one service: three are fields of the resource entry, three are in its Map.
  const writers = ['a', 'b', 'c', 'd', 'e', 'f'].map((x) => `spiffe://c/ns/prod/sa/${x}`);
  const text = writers.map((id, i) => `service "pay" {\n  policy   = "${i % 2 === 0 ? 'write' : 'read'}"\n  identity = "${id}"\n}\n`).join('');
  const policy = build([{ path: 'six.hcl', text }]);
  const resource = policy.compiled.table!.resources.get('default\0pay');
  assert.ok(resource);
  assert.deepEqual(namedIdentities(resource).sort(), [...writers].sort());
  assert.ok(resource.more !== undefined && resource.more.size === 3);
  writers.forEach((identity, i) => {
    const entry = namedEntry(resource, identity);
    assert.ok(entry, identity);
    assert.deepEqual(entry.rules.map((r) => r.line), [1 + 4 * i]);
    const p = prepareRequest({ identity, action: 'write', resource: 'service:pay', namespace: 'default' });
    assert.ok(p.ok);
    assert.equal(evaluate(policy.compiled, p.request, identity).allow, i % 2 === 0, identity);
    assert.equal(compare(policy, { identity, action: 'write', resource: 'service:pay' }), 'named identity');
  });
  assert.equal(namedEntry(resource, 'spiffe://c/ns/prod/sa/g'), undefined);
  assert.equal(compare(policy, { identity: 'spiffe://c/ns/prod/sa/g', action: 'read', resource: 'service:pay' }), 'other identity');
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

test('service classes of nested and unrelated prefixes each reach exactly their own prefixes\' rules', () => {
  // The class of `pay-api-` reaches the rules of `pay-`, `pay-api-` and `p`, not those of `pay-web-`
  // or `q`; declared out of length order so that the order of the rules in a class is not the order
  // of their lengths. The classes are found by length lookup (src/eval/table.ts), not by testing
  // every prefix of the namespace against every other.
  const rule = (prefix: string, level: string, identity: string) => `  service_prefix "${prefix}" {\n    policy   = "${level}"\n    identity = "${identity}"\n  }\n`;
  const policy = build([{ path: 'p.hcl', text: `namespace "prod" {\n${rule('pay-api-', 'write', 'team:a')}${rule('p', 'read', 'team:b')}${rule('pay-', 'deny', 'team:c')}${rule('pay-web-', 'admin', 'team:a')}${rule('q', 'read', 'team:a')}${rule('pay-', 'read', 'team:a')}}\n` }]);
  assert.ok(policy.compiled.table!.namespaces.get('prod')!.byPrefix.size === 5);
  for (const service of ['pay-api-1', 'pay-web-1', 'pay-x', 'px', 'q1', 'zzz', 'pay-api-', 'pay-']) {
    for (const identity of ['team:a', 'team:b', 'team:c', 'team:d']) {
      for (const action of ['read', 'write', 'admin']) {
        assert.equal(compare(policy, { identity, action, resource: `service:${service}`, namespace: 'prod' }), 'service class', `${identity} ${action} ${service}`);
      }
    }
  }
});

test('decision table = general path on random policy sets and requests', () => {
  const paths: Record<Path, number> = { 'named identity': 0, 'other identity': 0, 'service class': 0, general: 0, error: 0 };
  fc.assert(
    fc.property(scenarioArb.map(({ policy, requests }) => ({ sources: renderPolicySet(policy), requests })), ({ sources, requests }) => {
      const policy = build(sources);
      for (const req of requests) paths[compare(policy, req)]++;
      // Random requests rarely name what the policy names; ask about some of that directly.
      let asked = 0;
      for (const [key, resource] of policy.compiled.table!.resources) {
        if (asked++ === 6) break;
        const [namespace, service] = key.split('\0') as [string, string];
        const target = service === '' ? `namespace:${namespace}/*` : `service:${service}`;
        // Identities the table names, then ones only `*`, globs or placeholders can match.
        const named = namedIdentities(resource);
        // The first three are fields of the entry, the rest in its Map: ask about both kinds.
        const identities = [...named.slice(0, 3), ...named.slice(3).slice(-1), 'team:x/y', `spiffe://c/ns/${namespace}/sa/${service || 'pay'}`, undefined];
        for (const identity of identities) {
          for (const action of ['read', 'write', 'admin']) {
            for (const sourceIp of [undefined, GEN_SOURCE_IPS[asked % GEN_SOURCE_IPS.length]]) paths[compare(policy, { identity, action, resource: target, namespace, sourceIp })]++;
          }
        }
      }
      // And about services the policy does not name, in namespaces that have service classes.
      for (const [namespace, classes] of policy.compiled.table!.namespaces) {
        for (const service of ['pay', 'payment', 'ord', 'other']) {
          const identities = [...namedIdentities(classes.rest).slice(0, 2), 'team:pay', `spiffe://c/ns/${namespace}/sa/${service}`, undefined];
          for (const identity of identities) {
            for (const action of ['read', 'admin']) paths[compare(policy, { identity, action, resource: `service:${service}/i`, namespace, sourceIp: GEN_SOURCE_IPS[service.length] })]++;
          }
        }
      }
    }),
    { numRuns: 800, seed: Number(process.env.ORACLE_SEED ?? Date.now() % 2 ** 31), includeErrorInReport: true },
  );
  // Guards the generator: every path must be exercised often.
  const total = Object.values(paths).reduce((a, b) => a + b, 0) - paths.error;
  for (const path of ['named identity', 'other identity', 'service class'] as const) assert.ok(paths[path] >= total / 50, JSON.stringify(paths));
  assert.ok(paths.general >= total / 500, JSON.stringify(paths)); // the oracle test covers it at length
});

test('declared services (allowed_services) are the exact names in exact namespaces; prefixes declare none', () => {
  const text = [
    'service "web" {\n  policy   = "read"\n  identity = "team:web"\n}',
    'service_prefix "pay" {\n  policy   = "read"\n  identity = "team:pay"\n}',
    'namespace "prod" {\n  service "ledger" {\n    policy   = "read"\n    identity = "team:ledger"\n  }\n  service_prefix "" {\n    policy   = "read"\n    identity = "team:ops"\n  }\n}',
    'namespace_prefix "team-" {\n  service "cart" {\n    policy   = "read"\n    identity = "team:cart"\n  }\n}',
  ].join('\n');
  const policy = build([{ path: 'mixed.hcl', text }]);
  const declared = policy.compiled.declaredServices.map((d) => `${d.namespace}/${d.name}`).sort();
  assert.deepEqual(declared, ['default/web', 'prod/ledger']);
});
