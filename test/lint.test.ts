// The lint pass (src/check/passes/lint.ts, docs/lint.md): a table of policies and the warnings they
// must (and must not) produce, the shipped example set staying clean, a soundness property for the
// semantic rules (removing every rule flagged dead or redundant changes no decision), and scale.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { LINT_CODES } from '../src/check';
import { compilePolicySet } from '../src/compile';
import type { Diagnostic } from '../src/diagnostics';
import { buildPolicySet, decideWith, readPolicyDir, type LoadedPolicy } from '../src/engine';
import type { Block, PolicyFile } from '../src/syntax';
import { renderPolicySet, policySetArb, requestArb } from './support/policy-gen';

const REPO_ROOT = path.resolve(__dirname, '..', '..');

interface Expected {
  code: string;
  line: number;
  column: number;
  file?: string;
}

/** Lints a set (one text is `p.hcl`); fails on any error so every case is a valid policy set. */
function lint(input: string | Record<string, string>): Diagnostic[] {
  const files = typeof input === 'string' ? { 'p.hcl': input } : input;
  const sources = Object.entries(files).sort(([a], [b]) => (a < b ? -1 : 1)).map(([p, text]) => ({ path: p, text }));
  const built = buildPolicySet(sources, { lint: true });
  const errors = built.diagnostics.filter((d) => d.severity === 'error');
  assert.deepEqual(errors.map((d) => `${d.span.file}:${d.span.start.line}: ${d.code}: ${d.message}`), [], 'the case must be a valid policy set');
  return built.diagnostics.filter((d) => d.severity === 'warning');
}

function positions(warnings: Diagnostic[], withFile = false): Expected[] {
  return warnings.map((d) => ({ code: d.code, line: d.span.start.line, column: d.span.start.column, ...(withFile ? { file: d.span.file } : {}) }));
}

interface Case {
  name: string;
  policy: string | Record<string, string>;
  expect: Expected[];
}

const r = (policy: string, identity: string, extra = '') => `{ policy = "${policy}" identity = "${identity}"${extra ? ` ${extra}` : ''} }`;

const CASES: Case[] = [
  // ---- prefix-not-at-delimiter
  { name: 'service prefix not at a delimiter', policy: `service_prefix "secure-foo" ${r('read', 'team:a')}`, expect: [{ code: 'prefix-not-at-delimiter', line: 1, column: 16 }] },
  { name: 'namespace prefix not at a delimiter', policy: `namespace_prefix "team" ${r('read', 'team:a')}`, expect: [{ code: 'prefix-not-at-delimiter', line: 1, column: 18 }] },
  { name: 'nested service prefix not at a delimiter', policy: `namespace "prod" {\n  service_prefix "pay" ${r('read', 'team:a')}\n}`, expect: [{ code: 'prefix-not-at-delimiter', line: 2, column: 18 }] },
  { name: 'prefix container block (no policy) not at a delimiter', policy: `namespace_prefix "prod" {\n  service "a" ${r('read', 'team:a')}\n}`, expect: [{ code: 'prefix-not-at-delimiter', line: 1, column: 18 }] },
  { name: 'prefixes ending at -, ., _', policy: `service_prefix "secure-foo-" ${r('read', 'team:a')}\nservice_prefix "a." ${r('read', 'team:a')}\nnamespace_prefix "b_" ${r('read', 'team:a')}`, expect: [] },
  { name: 'empty prefix is not a delimiter problem', policy: `service_prefix "" ${r('read', 'team:a')}`, expect: [] },
  { name: 'exact names are never prefixes', policy: `service "secure-foo" ${r('read', 'team:a')}\nnamespace "prod" ${r('read', 'team:b')}`, expect: [] },

  // ---- broad-prefix-grant
  { name: 'service_prefix "" write', policy: `service_prefix "" ${r('write', 'team:a')}`, expect: [{ code: 'broad-prefix-grant', line: 1, column: 16 }] },
  { name: 'namespace_prefix "" admin', policy: `namespace_prefix "" ${r('admin', 'team:a')}`, expect: [{ code: 'broad-prefix-grant', line: 1, column: 18 }] },
  { name: 'service_prefix "" admin inside a namespace, glob identity', policy: `namespace "prod" {\n  service_prefix "" ${r('admin', 'spiffe://c/ns/prod/sa/*')}\n}`, expect: [{ code: 'broad-prefix-grant', line: 2, column: 18 }] },
  { name: 'service_prefix "" read is fine', policy: `service_prefix "" ${r('read', 'team:a')}`, expect: [] },
  { name: 'service_prefix "" deny is fine', policy: `service_prefix "" ${r('deny', 'team:a')}`, expect: [] },
  { name: 'self-scoped with {service}', policy: `namespace "staging" {\n  service_prefix "" ${r('write', 'spiffe://c/ns/staging/sa/{service}')}\n}`, expect: [] },
  { name: 'self-scoped namespace_prefix "" with {namespace}', policy: `namespace_prefix "" ${r('admin', 'spiffe://c/ns/{namespace}/sa/ops')}`, expect: [] },
  { name: '{namespace} alone does not confine service_prefix ""', policy: `service_prefix "" ${r('write', 'spiffe://c/ns/{namespace}/sa/*')}`, expect: [{ code: 'broad-prefix-grant', line: 1, column: 16 }] },
  { name: 'a role of self-scoped members is self-scoped', policy: `role "self" { identities = ["spiffe://c/ns/a/sa/{service}", "spiffe://c/ns/b/sa/{service}"] }\nservice_prefix "" ${r('write', 'role:self')}`, expect: [] },
  { name: 'a role with one broad member is broad', policy: `role "mixed" { identities = ["spiffe://c/ns/a/sa/{service}", "team:ops"] }\nservice_prefix "" ${r('write', 'role:mixed')}`, expect: [{ code: 'broad-prefix-grant', line: 2, column: 16 }] },
  { name: 'a non-empty prefix is not broad', policy: `service_prefix "pay-" ${r('admin', 'team:a')}`, expect: [] },
  // Self-scoped only when the placeholder is a whole segment at a fixed position (docs/lint.md).
  { name: '{service}* lets a workload write services named by a prefix of its name', policy: `service_prefix "" ${r('write', 'spiffe://acme/ns/default/sa/{service}*')}`, expect: [{ code: 'broad-prefix-grant', line: 1, column: 16 }] },
  { name: '*{service} lets a workload write services named by a suffix of its name', policy: `service_prefix "" ${r('write', 'team:*{service}')}`, expect: [{ code: 'broad-prefix-grant', line: 1, column: 16 }] },
  { name: 'a ** before {service} lets the segment float', policy: `service_prefix "" ${r('admin', 'spiffe://acme/ns/x/sa/**/{service}')}`, expect: [{ code: 'broad-prefix-grant', line: 1, column: 16 }] },
  { name: 'a * before {service} in its own /-part floats over `:`', policy: `service_prefix "" ${r('write', 'team:*:{service}')}`, expect: [{ code: 'broad-prefix-grant', line: 1, column: 16 }] },
  { name: 'two placeholders in one segment', policy: `namespace_prefix "" ${r('admin', 'team:{namespace}{service}')}`, expect: [{ code: 'broad-prefix-grant', line: 1, column: 18 }] },
  { name: 'a ** before {namespace} lets the segment float', policy: `namespace_prefix "" ${r('admin', 'spiffe://c/**/ns/{namespace}/sa/ops')}`, expect: [{ code: 'broad-prefix-grant', line: 1, column: 18 }] },
  { name: 'a role whose member has {service}* is broad', policy: `role "r" { identities = ["spiffe://c/ns/a/sa/{service}", "spiffe://c/ns/b/sa/{service}-*"] }\nservice_prefix "" ${r('write', 'role:r')}`, expect: [{ code: 'broad-prefix-grant', line: 2, column: 16 }] },
  { name: 'self-scoped: {namespace} and {service} each a whole segment', policy: `service_prefix "" ${r('write', 'spiffe://acme/ns/{namespace}/sa/{service}')}`, expect: [] },
  { name: 'self-scoped: {service} after `:`, at the end', policy: `service_prefix "" ${r('write', 'team:{service}')}`, expect: [] },
  { name: 'self-scoped: a * in an earlier /-part does not move the segment', policy: `service_prefix "" ${r('write', 'spiffe://acme/ns/*/sa/{service}')}`, expect: [] },
  { name: 'self-scoped: wildcards after the segment do not move it', policy: `service_prefix "" ${r('write', 'spiffe://acme/ns/default/sa/{service}/**')}\nservice_prefix "" ${r('write', 'svc:{service}:*')}`, expect: [] },
  { name: 'self-scoped: one whole-segment occurrence is enough', policy: `service_prefix "" ${r('write', 'spiffe://acme/sa/{service}/v/{service}-*')}`, expect: [] },

  // `description` in role, api and test blocks: an extension (docs/policy-language.md), no error and no warning.
  {
    name: 'description is accepted in role, api and test blocks',
    policy: `role "r" {\n  description = "on-call"\n  identities = ["team:x"]\n}\napi "admin" {\n  description = "operators"\n  identity = "role:r"\n}\nservice "a" ${r('read', 'role:r')}\ntest "r reads a" {\n  description = "the role grants read"\n  identity = "team:x"\n  action = "read"\n  resource = "service:a"\n  expect = "ALLOW"\n}`,
    expect: [],
  },

  // ---- default-allow
  { name: 'default allow', policy: `settings {\n  default_policy = "allow"\n}`, expect: [{ code: 'default-allow', line: 2, column: 20 }] },
  { name: 'default deny', policy: `settings { default_policy = "deny" }`, expect: [] },
  { name: 'no settings', policy: `service "a" ${r('read', 'team:a')}`, expect: [] },

  // ---- dead-grant
  {
    name: 'a grant under a namespace deny for the same identity',
    policy: `namespace "prod" {\n  policy = "deny"\n  identity = "team:x"\n  service "a" ${r('read', 'team:x')}\n}`,
    expect: [{ code: 'dead-grant', line: 4, column: 11 }],
  },
  { name: 'a deny on every service covers an exact grant', policy: `service "a" ${r('write', 'team:x')}\nservice_prefix "" ${r('deny', 'team:x')}`, expect: [{ code: 'dead-grant', line: 1, column: 9 }] },
  { name: 'a deny for `*` covers a named identity', policy: `namespace_prefix "" ${r('deny', '*')}\nnamespace "prod" {\n  service "a" ${r('read', 'team:x')}\n}`, expect: [{ code: 'dead-grant', line: 3, column: 11 }] },
  { name: 'a deny in another file', policy: { 'a.hcl': `service "a" ${r('read', 'team:x')}\n`, 'b.hcl': `service_prefix "" ${r('deny', 'team:x')}\n` }, expect: [{ code: 'dead-grant', line: 1, column: 9 }] },
  { name: 'two identities, each denied by a different rule', policy: `service "a" { policy = "read" identities = ["team:x", "team:y"] }\nservice_prefix "" ${r('deny', 'team:x')}\nservice "a" ${r('deny', 'team:y')}`, expect: [{ code: 'dead-grant', line: 1, column: 9 }] },
  { name: 'a deny with cidrs does not always apply', policy: `service "a" ${r('read', 'team:x')}\nservice_prefix "" ${r('deny', 'team:x', 'cidrs = ["10.0.0.0/8"]')}`, expect: [] },
  { name: 'a narrower deny leaves the grant alive', policy: `service_prefix "a-" ${r('read', 'team:x')}\nservice "a-1" ${r('deny', 'team:x')}`, expect: [] },
  { name: 'a deny for another identity', policy: `service "a" ${r('read', 'team:x')}\nservice "a" ${r('deny', 'team:y')}`, expect: [] },
  { name: 'a deny in another namespace', policy: `namespace "prod" {\n  service "a" ${r('read', 'team:x')}\n}\nnamespace "staging" ${r('deny', 'team:x')}`, expect: [] },
  { name: 'one identity of two denied', policy: `service "a" { policy = "read" identities = ["team:x", "team:y"] }\nservice "a" ${r('deny', 'team:x')}`, expect: [] },
  { name: '`*` never matches anonymous', policy: `settings { anonymous = true }\nservice "a" ${r('read', 'anonymous')}\nservice "a" ${r('deny', '*')}`, expect: [] },
  { name: 'a service deny does not reach the namespace resource', policy: `namespace "prod" {\n  policy = "read"\n  identity = "team:x"\n  service_prefix "" ${r('deny', 'team:x')}\n}`, expect: [] },
  { name: 'a glob and its instance are different identity strings', policy: `service "a" ${r('read', 'spiffe://c/ns/prod/sa/x')}\nservice "a" ${r('deny', 'spiffe://c/ns/prod/sa/*')}`, expect: [] },

  // ---- redundant-rule
  {
    name: 'read on a service already granted write by its namespace',
    policy: `namespace "prod" {\n  policy = "write"\n  identity = "team:x"\n  service "a" ${r('read', 'team:x')}\n}`,
    expect: [{ code: 'redundant-rule', line: 4, column: 11 }],
  },
  { name: 'an exact service inside a prefix', policy: `service_prefix "pay-" ${r('read', 'team:x')}\nservice "pay-api" ${r('read', 'team:x')}`, expect: [{ code: 'redundant-rule', line: 2, column: 9 }] },
  { name: 'a namespace inside a namespace prefix', policy: `namespace_prefix "pr" ${r('admin', 'team:x')}\nnamespace "prod" {\n  service "a" ${r('write', 'team:x')}\n}`, expect: [{ code: 'prefix-not-at-delimiter', line: 1, column: 18 }, { code: 'redundant-rule', line: 3, column: 11 }] },
  { name: 'a top-level service is in namespace default', policy: `namespace "default" ${r('read', 'team:x')}\nservice "a" ${r('read', 'team:x')}`, expect: [{ code: 'redundant-rule', line: 2, column: 9 }] },
  { name: 'a grant with cidrs inside one without', policy: `service_prefix "" ${r('read', 'team:x')}\nservice "a" ${r('read', 'team:x', 'cidrs = ["10.0.0.0/8"]')}`, expect: [{ code: 'redundant-rule', line: 2, column: 9 }] },
  { name: 'equal cidrs', policy: `service_prefix "" ${r('write', 'team:x', 'cidrs = ["10.0.0.0/8", "fd00::/8"]')}\nservice "a" ${r('read', 'team:x', 'cidrs = ["fd00::/8", "10.0.0.0/8"]')}`, expect: [{ code: 'broad-prefix-grant', line: 1, column: 16 }, { code: 'redundant-rule', line: 2, column: 9 }] },
  { name: 'the same rule twice with different descriptions: only the second', policy: `service "a" ${r('read', 'team:x', 'description = "one"')}\nservice "a" ${r('read', 'team:x', 'description = "two"')}`, expect: [{ code: 'redundant-rule', line: 2, column: 9 }] },
  { name: 'a deny inside a broader deny', policy: `service_prefix "secrets-" ${r('deny', 'team:x')}\nservice "secrets-db" ${r('deny', 'team:x')}`, expect: [{ code: 'redundant-rule', line: 2, column: 9 }] },
  { name: 'the broader rule has cidrs the narrower lacks', policy: `service_prefix "" ${r('read', 'team:x', 'cidrs = ["10.0.0.0/8"]')}\nservice "a" ${r('read', 'team:x')}`, expect: [] },
  { name: 'different cidrs', policy: `service_prefix "" ${r('read', 'team:x', 'cidrs = ["10.0.0.0/8"]')}\nservice "a" ${r('read', 'team:x', 'cidrs = ["10.1.0.0/16"]')}`, expect: [] },
  { name: 'the narrower rule grants more', policy: `namespace "prod" {\n  policy = "write"\n  identity = "team:x"\n  service "a" ${r('admin', 'team:x')}\n}`, expect: [] },
  { name: 'a service prefix does not cover the namespace resource', policy: `namespace "prod" {\n  policy = "read"\n  identity = "team:x"\n  service_prefix "" ${r('admin', 'team:x')}\n}`, expect: [{ code: 'broad-prefix-grant', line: 4, column: 18 }] },
  { name: 'different namespaces', policy: `namespace "prod" ${r('write', 'team:x')}\nnamespace "staging" {\n  service "a" ${r('read', 'team:x')}\n}`, expect: [] },
  { name: 'a role and its member are different identity strings', policy: `role "ops" { identities = ["team:x"] }\nnamespace "prod" ${r('write', 'role:ops')}\nnamespace "prod" {\n  service "a" ${r('read', 'team:x')}\n}`, expect: [] },
  { name: 'one of two identities covered', policy: `service_prefix "" ${r('read', 'team:x')}\nservice "a" { policy = "read" identities = ["team:x", "team:y"] }`, expect: [] },
  { name: 'a deny is not covered by a grant', policy: `service_prefix "" ${r('read', 'team:x')}\nservice "a" ${r('deny', 'team:x')}`, expect: [] },

  // ---- deny-cidrs-blocks-default
  { name: 'a deny with cidrs under a default allow', policy: `settings { default_policy = "allow" }\nservice "a" ${r('deny', 'team:x', 'cidrs = ["10.0.0.0/8"]')}`, expect: [{ code: 'default-allow', line: 1, column: 29 }, { code: 'deny-cidrs-blocks-default', line: 2, column: 51 }] },
  { name: 'a deny with cidrs under the default deny', policy: `service "a" ${r('deny', 'team:x', 'cidrs = ["10.0.0.0/8"]')}`, expect: [] },
  { name: 'a deny without cidrs under a default allow', policy: `settings { default_policy = "allow" }\nservice "a" ${r('deny', 'team:x')}`, expect: [{ code: 'default-allow', line: 1, column: 29 }] },

  // ---- cidr-host-bits
  { name: 'an IPv4 CIDR with host bits set', policy: `service "a" ${r('read', 'team:x', 'cidrs = ["10.1.2.3/16"]')}`, expect: [{ code: 'cidr-host-bits', line: 1, column: 60 }] },
  { name: 'an IPv6 CIDR with host bits set, after a clean one', policy: `service "a" ${r('read', 'team:x', 'cidrs = ["fd00::/8", "fd00::1:2/64"]')}`, expect: [{ code: 'cidr-host-bits', line: 1, column: 72 }] },
  { name: 'networks and single hosts are clean', policy: `service "a" ${r('read', 'team:x', 'cidrs = ["10.1.0.0/16", "10.1.2.3/32", "0.0.0.0/0", "fd00::1/128", "2001:db8::/32", "::ffff:10.1.0.0/112"]')}`, expect: [] },
  { name: 'a deny with host bits set, nested in a namespace', policy: `namespace "prod" {\n  service "a" ${r('deny', 'team:x', 'cidrs = ["192.168.1.1/24"]')}\n}`, expect: [{ code: 'cidr-host-bits', line: 2, column: 62 }] },

  // ---- test-identity-space (decoded, so an escaped space counts; a control character is an error instead)
  {
    name: 'a space in a test\'s identity',
    policy: `service "a" ${r('read', '*')}\ntest "t" {\n  identity = "user:Jane Doe"\n  action   = "read"\n  resource = "service:a"\n  expect   = "ALLOW"\n}\ntest "u" {\n  identity = "user:Jane\\u00a0Doe"\n  action   = "read"\n  resource = "service:a"\n  expect   = "ALLOW"\n}\ntest "v" {\n  identity = "user:jane-doe"\n  action   = "read"\n  resource = "service:a"\n  expect   = "ALLOW"\n}`,
    expect: [{ code: 'test-identity-space', line: 3, column: 14 }, { code: 'test-identity-space', line: 9, column: 14 }],
  },

  // ---- bidi-control ("trojan source": raw in comments, descriptions and test names; escapes are visible)
  {
    name: 'a bidi override in a comment, a block comment\'s second line, a description and a test name',
    policy: `# deny \u202e } \u2066\n/* one\n   two \u2067 */\nservice "a" {\n  policy      = "read"\n  identity    = "team:x"\n  description = "x\u202ey"\n}\ntest "t\u202d" {\n  identity = "team:x"\n  action   = "read"\n  resource = "service:a"\n  expect   = "ALLOW"\n}`,
    expect: [{ code: 'bidi-control', line: 1, column: 8 }, { code: 'bidi-control', line: 3, column: 8 }, { code: 'bidi-control', line: 7, column: 19 }, { code: 'bidi-control', line: 9, column: 8 }],
  },
  { name: 'escaped bidi controls and direction marks are clean', policy: `# \u200f marks only\nservice "a" ${r('read', 'team:x', 'description = "x\\u202ey \u200f"')}`, expect: [] },

  // ---- duplicate-identity
  { name: 'an identity twice in a rule\'s identities', policy: `service "f" {\n  policy     = "read"\n  identities = ["team:f", "team:g", "team:f"]\n}`, expect: [{ code: 'duplicate-identity', line: 3, column: 37 }] },
  { name: 'an identity twice in a role and in an api block, the same string however escaped', policy: `role "r" { identities = ["team:a", "team:\\u0061"] }\napi "admin" { identities = ["role:r", "team:b", "role:r"] }\nservice "a" ${r('read', 'role:r')}`, expect: [{ code: 'duplicate-identity', line: 1, column: 36 }, { code: 'duplicate-identity', line: 2, column: 49 }] },
  { name: 'a third copy is reported too; different strings are not', policy: `service "a" { policy = "read" identities = ["team:x", "team:x", "team:x", "team:X", "team:*"] }`, expect: [{ code: 'duplicate-identity', line: 1, column: 55 }, { code: 'duplicate-identity', line: 1, column: 65 }] },
  { name: 'the same identity in two rules is not a duplicate identity', policy: `service "a" ${r('read', 'team:x')}\nservice "b" { policy = "read" identities = ["team:x"] }`, expect: [] },

  // ---- foreign-trust-domain
  {
    name: 'SPIFFE IDs of another trust domain in a rule, a role and an api block',
    policy: `settings { trust_domain = "cluster" }\nrole "r" { identities = ["spiffe://other/ns/a/sa/b"] }\napi "admin" { identity = "spiffe://evil.example/ns/ops/sa/x" }\nservice "a" ${r('read', 'spiffe://clusterx/ns/prod/sa/*')}`,
    expect: [{ code: 'foreign-trust-domain', line: 2, column: 26 }, { code: 'foreign-trust-domain', line: 3, column: 26 }, { code: 'foreign-trust-domain', line: 4, column: 42 }],
  },
  { name: 'the settings trust domain', policy: `settings { trust_domain = "cluster" }\nservice "a" ${r('read', 'spiffe://cluster/ns/prod/sa/x')}`, expect: [] },
  { name: 'no trust domain set', policy: `service "a" ${r('read', 'spiffe://anything/ns/prod/sa/x')}`, expect: [] },
  { name: 'identities that are not SPIFFE IDs', policy: `settings { trust_domain = "cluster" }\nservice "a" ${r('read', 'team:ops')}`, expect: [] },
  { name: 'test blocks may use foreign identities', policy: `settings { trust_domain = "cluster" }\nservice "a" ${r('read', 'team:ops')}\ntest "outsider" {\n  identity = "spiffe://other/ns/a/sa/b"\n  action = "read"\n  resource = "service:a"\n  expect = "DENY"\n}`, expect: [] },

  // ---- wildcard-namespace-grant
  { name: 'a namespace grants write to every workload of a namespace', policy: `namespace "prod" ${r('write', 'spiffe://cluster/ns/prod/sa/*')}`, expect: [{ code: 'wildcard-namespace-grant', line: 1, column: 11 }] },
  { name: 'a namespace prefix grants admin to a role with a wildcard member', policy: `role "bots" { identities = ["team:ops", "spiffe://c/ns/ops/sa/**"] }\nnamespace_prefix "prod-" ${r('admin', 'role:bots')}`, expect: [{ code: 'wildcard-namespace-grant', line: 2, column: 18 }] },
  { name: 'a namespace grants admin to a named team', policy: `namespace "prod" ${r('admin', 'team:ops')}`, expect: [] },
  { name: 'a namespace grants write to each workload for its own service', policy: `namespace "prod" ${r('write', 'spiffe://cluster/ns/prod/sa/{service}')}`, expect: [] },
  { name: 'a namespace grants read to every workload', policy: `namespace "prod" ${r('read', 'spiffe://cluster/ns/prod/sa/*')}`, expect: [] },
  { name: 'namespace_prefix "" is broad-prefix-grant alone', policy: `namespace_prefix "" ${r('write', 'spiffe://cluster/ns/prod/sa/*')}`, expect: [{ code: 'broad-prefix-grant', line: 1, column: 18 }] },

  // ---- anonymous-not-allowed
  { name: 'a rule naming anonymous without the setting', policy: `service "a" ${r('read', 'anonymous')}`, expect: [{ code: 'anonymous-not-allowed', line: 1, column: 42 }] },
  { name: 'a role member anonymous with anonymous = false', policy: `settings { anonymous = false }\nrole "guests" { identities = ["team:x", "anonymous"] }\nservice "a" ${r('read', 'role:guests')}`, expect: [{ code: 'anonymous-not-allowed', line: 2, column: 41 }] },
  { name: 'a rule naming anonymous with anonymous = true', policy: `settings { anonymous = true }\nservice "a" ${r('read', 'anonymous')}`, expect: [] },
  { name: 'an identity that only starts with anonymous', policy: `service "a" ${r('read', 'anonymous-looking')}`, expect: [] },

  // ---- duplicate-block
  { name: 'the same service block twice', policy: `service "a" {\n  policy = "read"\n  identity = "team:x"\n}\n\nservice "a" {\n  identity = "team:x"\n  policy = "read"\n}`, expect: [{ code: 'duplicate-block', line: 6, column: 9 }] },
  { name: 'duplicates across files', policy: { 'a.hcl': `service "a" ${r('read', 'team:x')}\n`, 'b.hcl': `# again\nservice "a" ${r('read', 'team:x')}\n` }, expect: [{ code: 'duplicate-block', line: 2, column: 9, file: 'b.hcl' }] },
  { name: 'the same api block twice', policy: `api "admin" { identity = "team:ops" }\napi "admin" { identity = "team:ops" }`, expect: [{ code: 'duplicate-block', line: 2, column: 5 }] },
  {
    name: 'a duplicated namespace block is reported once, not its children too',
    policy: `namespace "prod" {\n  service "a" ${r('read', 'team:x')}\n}\nnamespace "prod" {\n  service "a" ${r('read', 'team:x')}\n}`,
    expect: [{ code: 'duplicate-block', line: 4, column: 11 }],
  },
  {
    name: 'the same service twice inside different blocks of one namespace',
    policy: `namespace "prod" {\n  policy = "read"\n  identity = "team:y"\n  service "a" ${r('write', 'team:x')}\n}\nnamespace "prod" {\n  service "a" ${r('write', 'team:x')}\n}`,
    expect: [{ code: 'duplicate-block', line: 7, column: 11 }],
  },
  { name: 'the same service block in different namespaces', policy: `namespace "prod" {\n  service "a" ${r('read', 'team:x')}\n}\nnamespace "staging" {\n  service "a" ${r('read', 'team:x')}\n}`, expect: [] },
  {
    name: 'a duplicated dead grant: the first copy is dead, the second only a duplicate',
    policy: `service "a" ${r('deny', 'team:x')}\nservice "a" ${r('read', 'team:x')}\nservice "a" ${r('read', 'team:x')}`,
    expect: [{ code: 'dead-grant', line: 2, column: 9 }, { code: 'duplicate-block', line: 3, column: 9 }],
  },
  {
    name: 'a dead grant inside a duplicated namespace block is not reported in the copy',
    policy: `namespace_prefix "" ${r('deny', 'team:x')}\nnamespace "prod" {\n  service "a" ${r('read', 'team:x')}\n}\nnamespace "prod" {\n  service "a" ${r('read', 'team:x')}\n}`,
    expect: [{ code: 'dead-grant', line: 3, column: 11 }, { code: 'duplicate-block', line: 5, column: 11 }],
  },
  { name: 'different values are different blocks', policy: `service "a" ${r('read', 'team:x')}\nservice "a" ${r('read', 'team:y')}`, expect: [] },
];

describe('lint rules', () => {
  for (const c of CASES) {
    test(c.name, () => {
      const warnings = lint(c.policy);
      const withFile = c.expect.some((e) => e.file !== undefined);
      assert.deepEqual(positions(warnings, withFile), c.expect);
      for (const w of warnings) {
        assert.ok(w.hint && w.hint.length > 0, `${w.code} has a hint`);
        assert.match(w.message, /^[a-z`]/, `${w.code}'s message starts lowercase or with code: ${w.message}`);
      }
    });
  }

  test('every lint code has a case that fires it', () => {
    const fired = new Set(CASES.flatMap((c) => c.expect.map((e) => e.code)));
    for (const code of Object.keys(LINT_CODES)) assert.ok(fired.has(code), `no case fires ${code}`);
  });

  test('messages and hints name what matters', () => {
    const [dup] = lint({ 'a.hcl': `service "a" ${r('read', 'team:x')}\n`, 'b.hcl': `service "a" ${r('read', 'team:x')}\n` });
    assert.equal(dup!.code, 'duplicate-block');
    assert.match(dup!.hint!, /a\.hcl:1/);
    const [prefix] = lint(`service_prefix "secure-foo" ${r('read', 'team:a')}`);
    assert.match(prefix!.message, /`secure-foo`/);
    assert.match(prefix!.hint!, /"secure-foo-"/);
    assert.match(prefix!.hint!, /service "secure-foo"/);
    const [dead] = lint(`service "a" ${r('write', 'team:x')}\n\nservice_prefix "" ${r('deny', 'team:x')}`);
    assert.match(dead!.message, /`team:x`/);
    assert.match(dead!.hint!, /p\.hcl:3/);
    const [redundant] = lint(`namespace "prod" {\n  policy = "write"\n  identity = "team:x"\n  service "a" ${r('read', 'team:x')}\n}`);
    assert.match(redundant!.hint!, /namespace "prod"` at p\.hcl:1/);
    const [foreign] = lint(`settings { trust_domain = "cluster" }\nservice "a" ${r('read', 'spiffe://other/ns/a/sa/b')}`);
    assert.match(foreign!.message, /trust domain `other`, not `cluster`/);
    const [hostBits, hostBits6] = lint(`service "a" ${r('read', 'team:x', 'cidrs = ["10.1.2.3/16", "fd00::1:2/64"]')}`);
    assert.equal(hostBits!.message, '`10.1.2.3/16` has host bits set, so it is treated as the network `10.1.0.0/16`');
    assert.equal(hostBits!.hint, 'write `10.1.0.0/16` for the network, or `10.1.2.3/32` for the one address');
    assert.equal(hostBits!.span.end.column - hostBits!.span.start.column, '"10.1.2.3/16"'.length);
    assert.equal(hostBits6!.message, '`fd00::1:2/64` has host bits set, so it is treated as the network `fd00::/64`');
    assert.equal(hostBits6!.hint, 'write `fd00::/64` for the network, or `fd00::1:2/128` for the one address');
    // deny-cidrs-blocks-default underlines the whole `cidrs = [...]` attribute (docs/lint.md says so).
    const denyCidrs = lint(`settings { default_policy = "allow" }\nservice "a" ${r('deny', 'team:x', 'cidrs = ["10.0.0.0/8"]')}`).find((d) => d.code === 'deny-cidrs-blocks-default');
    assert.equal(denyCidrs!.span.end.column - denyCidrs!.span.start.column, 'cidrs = ["10.0.0.0/8"]'.length);
    // The networks are quoted as written, each in backticks, not as a bracketed comparison key.
    const denyTwo = lint(`settings { default_policy = "allow" }\nservice "a" ${r('deny', 'team:x', 'cidrs = ["192.168.0.0/16", "10.0.0.0/8"]')}`).find((d) => d.code === 'deny-cidrs-blocks-default');
    assert.match(denyTwo!.message, /^this deny applies only from `192\.168\.0\.0\/16`, `10\.0\.0\.0\/8`, but as it names its identities on `a` it also keeps/);
    const [dupIdentity] = lint(`service "f" {\n  policy     = "read"\n  identities = ["team:f", "team:g", "team:f"]\n}`);
    assert.equal(dupIdentity!.message, '`team:f` is already in this `identities` list');
    assert.equal(dupIdentity!.hint, 'the first is at line 3, column 17; remove this one, or name the identity that was meant');
    assert.equal(dupIdentity!.span.end.column - dupIdentity!.span.start.column, '"team:f"'.length);
    const [misplaced] = lint(`service_prefix "" ${r('write', 'spiffe://acme/ns/default/sa/{service}*')}`);
    assert.equal(misplaced!.message, '`service_prefix ""` grants `write` on every service in namespace `default` to `spiffe://acme/ns/default/sa/{service}*`');
    assert.match(misplaced!.hint!, /only as a whole segment at a fixed position, as in `…\/sa\/\{service\}`/);
    assert.match(misplaced!.hint!, /`sa\/payment-api` may write `payment`/);
    // The span covers the label, quotes included.
    assert.equal(prefix!.span.end.column - prefix!.span.start.column, '"secure-foo"'.length);
  });

  test('the shipped example policies/ lint clean', () => {
    const built = buildPolicySet(readPolicyDir(path.join(REPO_ROOT, 'policies')), { lint: true });
    assert.deepEqual(built.diagnostics.map((d) => `${d.span.file}:${d.span.start.line}: ${d.severity}[${d.code}] ${d.message}`), []);
  });

  test('a set that also has errors is linted without crashing', () => {
    const built = buildPolicySet([{ path: 'p.hcl', text: 'service "a" { policy = "reed" identity = "" }\nservice_prefix { policy = "write" }\nnamespace "x" { service "y" { service "z" {} } policy = "write" identities = [1, "team:x"] }\nsettings { default_policy = 3 trust_domain = "BAD" }\n' }]);
    assert.ok(built.diagnostics.some((d) => d.severity === 'error'));
  });
});

// ---- soundness: removing every rule flagged dead-grant or redundant-rule changes no decision ----

/** A copy of the parsed files without the `policy` attribute of the given blocks (their children stay). */
function withoutRules(files: PolicyFile[], drop: Set<string>): PolicyFile[] {
  const strip = (block: Block): Block => ({
    ...block,
    body: block.body
      .filter((i) => !(i.kind === 'attribute' && i.name.name === 'policy' && drop.has(`${block.span.file}:${block.label?.span.start.offset}`)))
      .map((i) => (i.kind === 'block' ? strip(i) : i)),
  });
  return files.map((f) => ({ ...f, body: f.body.map((i) => (i.kind === 'block' ? strip(i) : i)) }));
}

test('dead-grant and redundant-rule are sound: dropping the flagged rules changes no decision', () => {
  let flagged = 0;
  let sets = 0;
  fc.assert(
    fc.property(policySetArb, fc.array(requestArb, { minLength: 40, maxLength: 40 }), (set, requests) => {
      const sources = renderPolicySet(set);
      const built = buildPolicySet(sources, { lint: true });
      if (!built.policy) return; // the generator's sets are valid; the oracle test guards that
      const marks = built.diagnostics.filter((d) => d.code === 'dead-grant' || d.code === 'redundant-rule');
      if (marks.length === 0) return;
      sets++;
      flagged += marks.length;
      const reduced = withoutRules(built.files, new Set(marks.map((d) => `${d.span.file}:${d.span.start.offset}`)));
      const compiled = compilePolicySet(reduced);
      assert.equal(compiled.rules.length, built.policy.compiled.rules.length - marks.length);
      const after: LoadedPolicy = { ...built.policy, compiled };
      for (const req of requests) {
        const a = decideWith(built.policy, req);
        const b = decideWith(after, req);
        const show = () => `request ${JSON.stringify(req)}\nflagged ${marks.map((m) => `${m.span.file}:${m.span.start.line} ${m.code}`).join(', ')}\n${sources.map((s) => `--- ${s.path}\n${s.text}`).join('\n')}`;
        assert.equal(a.ok, b.ok, show());
        if (a.ok && b.ok) assert.equal(a.decision.result, b.decision.result, show());
      }
    }),
    { numRuns: Number(process.env.LINT_RUNS ?? 400), seed: Number(process.env.LINT_SEED ?? Date.now() % 2 ** 31) },
  );
  // Guards the property against vacuity: the generator's overlapping sets trip both rules often.
  assert.ok(sets >= 20, `only ${sets} sets had a flagged rule`);
  assert.ok(flagged >= 20, `only ${flagged} rules flagged`);
});

// ---- scale ----

test('10,000 rules lint without crashing (and quickly)', () => {
  const lines: string[] = ['settings { trust_domain = "cluster" }', 'role "ops" { identities = ["team:ops", "spiffe://cluster/ns/ops/sa/*"] }'];
  for (let n = 0; n < 100; n++) {
    lines.push(`namespace "ns-${n}" {`, '  policy = "write"', '  identity = "role:ops"');
    for (let s = 0; s < 99; s++) {
      // Many rules for one identity (the index's worst case), overlapping prefixes, cidrs.
      const identity = s % 3 === 0 ? 'role:ops' : `spiffe://cluster/ns/ns-${n}/sa/svc-${s % 7}`;
      const block = s % 5 === 0 ? `service_prefix "svc-${s % 10}"` : `service "svc-${s}"`;
      const level = ['read', 'write', 'admin', 'deny'][s % 4];
      const cidrs = s % 11 === 0 ? ' cidrs = ["10.0.0.0/8"]' : '';
      lines.push(`  ${block} { policy = "${level}" identity = "${identity}"${cidrs} }`);
    }
    lines.push('}');
  }
  const text = `${lines.join('\n')}\n`;
  const started = performance.now();
  const built = buildPolicySet([{ path: 'big.hcl', text }], { lint: true });
  const elapsed = performance.now() - started;
  assert.ok(built.policy, 'the generated set is valid');
  assert.equal(built.policy.ruleCount, 10_000);
  const warnings = built.diagnostics.filter((d) => d.severity === 'warning');
  assert.ok(warnings.some((d) => d.code === 'redundant-rule'));
  // Not a benchmark: a generous bound that only an accidental O(n²) would miss.
  assert.ok(elapsed < 20_000, `parse, check and compile took ${elapsed.toFixed(0)} ms`);
});

test('a rule whose label is an invalid name gets its invalid-name error and no lint warning (one mistake, one diagnostic)', () => {
  const built = buildPolicySet([{ path: 'p.hcl', text: [
    'service_prefix "" { policy = "read" identity = "a" }',
    'service_prefix "a b" { policy = "read" identity = "a" }', // would be redundant (and not at a delimiter)
    'namespace "x y" {\n  policy = "read"\n  identity = "a"\n  service "s" { policy = "read" identity = "a" }\n}',
    'service "c d" { policy = "admin" identity = "*" }', // would be a broad grant, and cover others
    'service "c" { policy = "read" identity = "b" }',
  ].join('\n') }], { lint: true });
  assert.deepEqual(built.diagnostics.map((d) => `${d.span.start.line}:${d.span.start.column} ${d.severity} ${d.code}`), [
    '2:16 error invalid-name',
    '3:11 error invalid-name',
    '8:9 error invalid-name',
  ]);
});

