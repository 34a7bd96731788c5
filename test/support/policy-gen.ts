// fast-check arbitraries for random VALID policy sets (1-3 files) and random requests, biased so
// that rules match requests often: small alphabets of services, namespaces, identities, prefixes
// and addresses that overlap on purpose.
import fc from 'fast-check';

export const SERVICES = ['pay', 'pay-api', 'payment', 'ord', 'order'] as const;
export const SERVICE_PREFIXES = ['', 'pay', 'pay-', 'payment', 'p', 'o', 'ord'] as const;
export const NAMESPACES = ['default', 'prod', 'prod-eu', 'staging'] as const;
export const NAMESPACE_PREFIXES = ['', 'prod', 'prod-', 'p', 'st', 'default'] as const;
export const LEVELS = ['read', 'write', 'admin', 'deny'] as const;
export const ACTIONS = ['read', 'write', 'admin'] as const;
export const ROLE_NAMES = ['ops', 'ci'] as const;

/** Identity patterns (without roles) rules and role members use. */
export const PATTERNS = [
  // exact
  'team:ops', 'team:dev', 'team:pay', 'anonymous',
  'spiffe://c/ns/prod/sa/pay', 'spiffe://c/ns/default/sa/pay', 'spiffe://c/ns/default/sa/ord',
  'spiffe://c/ns/staging/sa/pay-api', 'spiffe://c/ns/prod-eu/sa/payment',
  // globs
  '*', '**', 'team:*', 'team:.*', 'spiffe://c/ns/prod/sa/*', 'spiffe://c/ns/*/sa/pay', 'spiffe://c/**',
  'spiffe://c/ns/prod/**', 'spiffe://c/ns/*/sa/*', 'spiffe://c/ns/prod/sa/pay*', 'spiffe://c/ns/*',
  // placeholders
  'spiffe://c/ns/{namespace}/sa/{service}', 'spiffe://c/ns/{namespace}/sa/*', 'spiffe://c/ns/prod/sa/{service}',
  'team:{service}', 'spiffe://c/ns/{namespace}/**',
] as const;

/** Identities requests carry; `SELF` becomes `spiffe://c/ns/<namespace>/sa/<service>` of the request. */
export const SELF = '<self>';
export const REQUEST_IDENTITIES = [
  'team:ops', 'team:dev', 'team:pay', 'team:.ops', 'team:x/y', 'anonymous',
  'spiffe://c/ns/prod/sa/pay', 'spiffe://c/ns/prod/sa/pay-api', 'spiffe://c/ns/default/sa/pay',
  'spiffe://c/ns/default/sa/ord', 'spiffe://c/ns/staging/sa/pay-api', 'spiffe://c/ns/prod-eu/sa/payment',
  'spiffe://c/ns/prod/sa/a/b', 'spiffe://c/ns/prod', 'spiffe://c/ns/prod/sa/*',
] as const;

export const CIDRS = [
  '10.0.0.0/8', '10.0.0.5/32', '0.0.0.0/0', '192.168.1.0/24',
  'fd00::/8', '::/0', '2001:db8::5/128', '2001:db8::/32', '::ffff:10.0.0.0/104',
] as const;
export const SOURCE_IPS = [
  '10.0.0.5', '10.9.9.9', '192.168.1.7', '172.16.0.1', '0.0.0.0',
  'fd00::1', '2001:db8::5', '2001:db8::6', '::1', '::ffff:10.0.0.5', '::ffff:a09:909', '::ffff:192.168.1.7',
] as const;

export interface GenRule {
  policy: (typeof LEVELS)[number];
  identities: string[];
  asList: boolean;
  cidrs: string[] | null;
  description: boolean;
}

export type GenServiceBlock = { kind: 'service' | 'service_prefix'; label: string; rule: GenRule };
export type GenNamespaceBlock = { kind: 'namespace' | 'namespace_prefix'; label: string; rule: GenRule | null; children: GenServiceBlock[] };
export type GenRuleBlock = GenServiceBlock | GenNamespaceBlock;

export interface GenPolicySet {
  settings: { defaultPolicy: 'deny' | 'allow' | null; anonymous: boolean | null } | null;
  roles: Record<(typeof ROLE_NAMES)[number], string[]>;
  blocks: { block: GenRuleBlock; file: number; oneLine: boolean }[];
  fileCount: number;
  settingsFile: number;
  /** Blocks that must not change any decision: an `api` block and a `test` block. */
  extras: boolean;
}

export interface PolicySource {
  path: string;
  text: string;
}

export interface GenRequest {
  identity?: string;
  action: string;
  resource: string;
  namespace?: string;
  sourceIp?: string;
}

const patternArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...PATTERNS) },
  { weight: 1, arbitrary: fc.constantFrom(...ROLE_NAMES.map((r) => `role:${r}`)) },
);

const ruleArb: fc.Arbitrary<GenRule> = fc.record({
  policy: fc.constantFrom(...LEVELS),
  identities: fc.array(patternArb, { minLength: 1, maxLength: 3 }),
  asList: fc.boolean(),
  cidrs: fc.oneof(
    { weight: 3, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.uniqueArray(fc.constantFrom(...CIDRS), { minLength: 1, maxLength: 3 }) },
  ),
  description: fc.boolean(),
}).map((r) => (r.identities.length > 1 ? { ...r, asList: true } : r));

const serviceBlockArb: fc.Arbitrary<GenServiceBlock> = fc.oneof(
  fc.record({ kind: fc.constant('service' as const), label: fc.constantFrom<string>(...SERVICES), rule: ruleArb }),
  fc.record({ kind: fc.constant('service_prefix' as const), label: fc.constantFrom<string>(...SERVICE_PREFIXES), rule: ruleArb }),
);

const namespaceBlockArb: fc.Arbitrary<GenNamespaceBlock> = fc.oneof(
  fc.record({ kind: fc.constant('namespace' as const), label: fc.constantFrom<string>(...NAMESPACES), rule: fc.option(ruleArb, { freq: 4 }), children: fc.array(serviceBlockArb, { maxLength: 3 }) }),
  fc.record({ kind: fc.constant('namespace_prefix' as const), label: fc.constantFrom<string>(...NAMESPACE_PREFIXES), rule: fc.option(ruleArb, { freq: 4 }), children: fc.array(serviceBlockArb, { maxLength: 3 }) }),
);

export const policySetArb: fc.Arbitrary<GenPolicySet> = fc.record({
  settings: fc.option(fc.record({
    defaultPolicy: fc.option(fc.constantFrom('deny' as const, 'allow' as const)),
    anonymous: fc.option(fc.boolean()),
  }), { freq: 4 }),
  roles: fc.record({
    ops: fc.array(fc.constantFrom(...PATTERNS), { minLength: 1, maxLength: 3 }),
    ci: fc.array(fc.constantFrom(...PATTERNS), { minLength: 1, maxLength: 3 }),
  }),
  fileCount: fc.integer({ min: 1, max: 3 }),
  blocks: fc.array(fc.record({ block: fc.oneof(serviceBlockArb, namespaceBlockArb), file: fc.nat(2), oneLine: fc.boolean() }), { minLength: 1, maxLength: 8 }),
  settingsFile: fc.nat(2),
  extras: fc.boolean(),
});

const FILE_NAMES = ['a.hcl', 'b.hcl', 'sub/c.hcl'];

function q(s: string): string {
  return JSON.stringify(s);
}

function ruleAttributes(rule: GenRule): string[] {
  const out = [`policy = ${q(rule.policy)}`];
  out.push(rule.asList ? `identities = [${rule.identities.map(q).join(', ')}]` : `identity = ${q(rule.identities[0]!)}`);
  if (rule.cidrs) out.push(`cidrs = [${rule.cidrs.map(q).join(', ')}]`);
  if (rule.description) out.push(`description = "generated"`);
  return out;
}

function renderBlock(block: GenRuleBlock, oneLine: boolean, indent = ''): string {
  const head = `${block.kind} ${q(block.label)}`;
  const attrs = 'rule' in block && block.rule ? ruleAttributes(block.rule) : [];
  const children = 'children' in block ? block.children : [];
  if (oneLine && children.length === 0) return `${indent}${head} { ${attrs.join(' ')} }`;
  const lines = [`${indent}${head} {`];
  for (const a of attrs) lines.push(`${indent}  ${a}`);
  for (const c of children) lines.push(renderBlock(c, oneLine, `${indent}  `));
  lines.push(`${indent}}`);
  return lines.join('\n');
}

function referencedRoles(set: GenPolicySet): Set<string> {
  const used = new Set<string>();
  const visit = (rule: GenRule | null) => {
    for (const p of rule?.identities ?? []) if (p.startsWith('role:')) used.add(p.slice(5));
  };
  for (const { block } of set.blocks) {
    visit(block.rule);
    if ('children' in block) for (const c of block.children) visit(c.rule);
  }
  return used;
}

/** The policy set as files, in sorted path order (as `readPolicyDir` returns them). */
export function renderPolicySet(set: GenPolicySet): PolicySource[] {
  const files: string[][] = Array.from({ length: set.fileCount }, () => []);
  const fileOf = (n: number) => files[n % set.fileCount]!;
  if (set.settings) {
    const attrs: string[] = [];
    if (set.settings.defaultPolicy) attrs.push(`default_policy = ${q(set.settings.defaultPolicy)}`);
    if (set.settings.anonymous !== null) attrs.push(`anonymous = ${set.settings.anonymous}`);
    fileOf(set.settingsFile).push(`settings { ${attrs.join(' ')} }`);
  }
  const used = referencedRoles(set);
  ROLE_NAMES.forEach((name, i) => {
    if (used.has(name)) fileOf(i + set.settingsFile).push(`role ${q(name)} {\n  identities = [\n${set.roles[name].map((m) => `    ${q(m)},`).join('\n')}\n  ]\n}`);
  });
  set.blocks.forEach(({ block, file, oneLine }, i) => {
    const text = renderBlock(block, oneLine);
    fileOf(file).push(i % 4 === 0 ? `# block ${i}\n${text}` : i % 4 === 1 ? `/* block ${i} */ ${text}` : text);
  });
  if (set.extras) {
    fileOf(0).push('api "authorize" { identities = ["team:ops", "spiffe://c/ns/*/sa/pay"] }');
    fileOf(1).push('test "generated" {\n  identity = "team:ops"\n  action   = "read"\n  resource = "service:pay"\n  expect   = "DENY"\n}');
  }
  return files
    .map((blocks, i) => ({ path: FILE_NAMES[i]!, text: `${blocks.join('\n\n')}\n` }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export const requestArb: fc.Arbitrary<GenRequest> = fc
  .record({
    identity: fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom<string | undefined>(...REQUEST_IDENTITIES) },
      { weight: 2, arbitrary: fc.constant<string | undefined>(SELF) },
      { weight: 2, arbitrary: fc.constant<string | undefined>(undefined) },
    ),
    action: fc.constantFrom(...ACTIONS),
    resourceKind: fc.constantFrom('service', 'service', 'instance', 'namespace'),
    service: fc.constantFrom(...SERVICES, 'other'),
    resourceNamespace: fc.constantFrom(...NAMESPACES),
    namespace: fc.option(fc.constantFrom(...NAMESPACES), { freq: 2 }),
    namespaceMatchesResource: fc.nat(9),
    sourceIp: fc.option(fc.constantFrom(...SOURCE_IPS), { freq: 3 }),
  })
  .map((r) => {
    const req: GenRequest = { action: r.action, resource: '' };
    let namespace = r.namespace ?? undefined;
    if (r.resourceKind === 'namespace') {
      req.resource = `namespace:${r.resourceNamespace}/*`;
      // Mostly omitted or equal; now and then a contradiction (a request error).
      namespace = r.namespaceMatchesResource < 5 ? undefined : r.namespaceMatchesResource < 9 ? r.resourceNamespace : namespace;
    } else {
      req.resource = r.resourceKind === 'instance' ? `service:${r.service}/${r.service}-7` : `service:${r.service}`;
    }
    if (namespace !== undefined) req.namespace = namespace;
    if (r.identity === SELF) {
      const ns = r.resourceKind === 'namespace' ? r.resourceNamespace : namespace ?? 'default';
      req.identity = `spiffe://c/ns/${ns}/sa/${r.service}`;
    } else if (r.identity !== undefined) req.identity = r.identity;
    if (r.sourceIp !== null) req.sourceIp = r.sourceIp;
    return req;
  });

/** A policy set with several requests against it (each pair is one agreement check). */
export const scenarioArb = fc.record({ policy: policySetArb, requests: fc.array(requestArb, { minLength: 1, maxLength: 4 }) });
