// Checked AST → CompiledPolicy. Pure: no I/O, no clock. Assumes checkPolicySet reported no errors.
import type { ApiScope, RuleBlockType } from '../check/schema';
import { API_SCOPES, isRuleBlock } from '../check/schema';
import { attribute, identityStrings, stringValue } from '../check/walk';
import { ACTION_RANK } from '../syntax/request';
import {
  parseCidrText, parseIdentityPattern,
  type Action, type Block, type DecisionResult, type IdentityPattern, type Level, type ParsedCidr, type PolicyFile,
} from '../syntax';
import { compileMatcher } from './identity';
import type { CompiledPolicy, DecisionIndex, IdentityIndex, IdentityMatcher, NameMatch, NamespaceBucket, PolicyTest, PrefixMap, Rule, Settings } from './model';

export * from './model';
export { compileMatcher } from './identity';

export function compilePolicySet(files: readonly PolicyFile[]): CompiledPolicy {
  const roles = collectRoles(files);
  const rules: Rule[] = [];
  const settings: Settings = { defaultPolicy: 'deny', anonymous: false };
  const api: Record<ApiScope, IdentityMatcher[]> = { authorize: [], admin: [], audit: [] };
  const tests: PolicyTest[] = [];

  for (const file of files) {
    for (const item of file.body) {
      if (item.kind !== 'block') continue;
      const type = item.type.name;
      if (isRuleBlock(type)) collectRules(item, type, null, rules);
      else if (type === 'settings') readSettings(item, settings);
      else if (type === 'api' && item.label && (API_SCOPES as readonly string[]).includes(item.label.value)) {
        const scope = item.label.value as ApiScope;
        for (const pattern of patternsOf(item)) for (const expanded of expand(pattern, roles)) api[scope].push(compileMatcher(expanded));
      } else if (type === 'test' && item.label) tests.push(readTest(item, file));
    }
  }

  const declared = new Map<string, { name: string; namespace: string }>();
  for (const rule of rules) {
    if (rule.service?.kind === 'exact' && rule.namespace.kind === 'exact') {
      declared.set(`${rule.namespace.value}\0${rule.service.value}`, { name: rule.service.value, namespace: rule.namespace.value });
    }
  }

  // One comparable number per rule: its rank in (specificity, source order).
  const sorted = [...rules].sort((a, b) => {
    for (let i = 0; i < a.specificity.length; i++) {
      const d = a.specificity[i]! - b.specificity[i]!;
      if (d !== 0) return d;
    }
    return a.index - b.index;
  });
  sorted.forEach((rule, position) => { rule.order = position; });

  const index = buildIndex(rules, roles);
  return {
    rules,
    index,
    settings,
    roles,
    api,
    tests,
    declaredServices: [...declared.values()],
    usesCidrs: rules.some((r) => r.cidrs !== null),
  };
}

function collectRoles(files: readonly PolicyFile[]): Map<string, IdentityPattern[]> {
  const roles = new Map<string, IdentityPattern[]>();
  for (const file of files) {
    for (const item of file.body) {
      if (item.kind === 'block' && item.type.name === 'role' && item.label && !roles.has(item.label.value)) {
        roles.set(item.label.value, patternsOf(item));
      }
    }
  }
  return roles;
}

function patternsOf(block: Block): IdentityPattern[] {
  const out: IdentityPattern[] = [];
  for (const s of identityStrings(block)) {
    const parsed = parseIdentityPattern(s.value);
    if (parsed.ok) out.push(parsed.pattern);
  }
  return out;
}

/** Replaces `role:NAME` by the role's member patterns (roles do not nest). */
function expand(pattern: IdentityPattern, roles: Map<string, IdentityPattern[]>): IdentityPattern[] {
  return pattern.kind === 'role' ? roles.get(pattern.role) ?? [] : [pattern];
}

function collectRules(block: Block, type: RuleBlockType, enclosing: NameMatch | null, out: Rule[]): void {
  const label = block.label?.value ?? '';
  const isNamespace = type === 'namespace' || type === 'namespace_prefix';
  const namespace: NameMatch = isNamespace
    ? { kind: type === 'namespace' ? 'exact' : 'prefix', value: label }
    : enclosing ?? { kind: 'exact', value: 'default' };
  const service: NameMatch | null = isNamespace ? null : { kind: type === 'service' ? 'exact' : 'prefix', value: label };

  const policy = stringValue(block, 'policy');
  if (policy) {
    const cidrList = attribute(block, 'cidrs')?.value;
    const cidrTexts = cidrList?.kind === 'list' ? cidrList.items.flatMap((i) => (i.kind === 'string' ? [i.value] : [])) : null;
    const cidrs = cidrTexts?.flatMap((text) => {
      const parsed = parseCidrText(text);
      return parsed.ok ? [parsed.cidr] : [];
    }) ?? null;
    const description = stringValue(block, 'description')?.value;
    out.push({
      index: out.length,
      file: block.span.file,
      line: block.type.span.start.line,
      column: block.type.span.start.column,
      span: block.span,
      blockType: type,
      label: `${type} "${label}"`,
      namespace,
      service,
      level: policy.value as Level,
      identities: patternsOf(block),
      cidrs: cidrs as ParsedCidr[] | null,
      cidrTexts,
      ...(description !== undefined ? { description } : {}),
      order: 0,
      rank: policy.value === 'deny' ? 0 : ACTION_RANK[policy.value as Action],
      ref: Object.freeze({ file: block.span.file, line: block.type.span.start.line }),
      citation: `${type} "${label}" at ${block.span.file}:${block.type.span.start.line}`,
      specificity: [
        service === null ? 2 : service.kind === 'exact' ? 0 : 1,
        service?.kind === 'prefix' ? -service.value.length : 0,
        namespace.kind === 'exact' ? 0 : 1,
        namespace.kind === 'prefix' ? -namespace.value.length : 0,
      ],
    });
  }
  if (isNamespace) {
    for (const child of block.body) {
      if (child.kind === 'block' && (child.type.name === 'service' || child.type.name === 'service_prefix')) {
        collectRules(child, child.type.name, namespace, out);
      }
    }
  }
}

function readSettings(block: Block, settings: Settings): void {
  const defaultPolicy = stringValue(block, 'default_policy')?.value;
  if (defaultPolicy === 'allow' || defaultPolicy === 'deny') settings.defaultPolicy = defaultPolicy;
  const anonymous = attribute(block, 'anonymous')?.value;
  if (anonymous?.kind === 'boolean') settings.anonymous = anonymous.value;
  const trustDomain = stringValue(block, 'trust_domain')?.value;
  if (trustDomain !== undefined) settings.trustDomain = trustDomain;
}

function readTest(block: Block, file: PolicyFile): PolicyTest {
  const get = (name: string) => stringValue(block, name)?.value;
  const test: PolicyTest = {
    name: block.label!.value,
    file: file.path,
    line: block.type.span.start.line,
    action: get('action') as Action,
    resource: get('resource') ?? '',
    expect: get('expect') as DecisionResult,
  };
  const identity = get('identity');
  if (identity !== undefined) test.identity = identity;
  const namespace = get('namespace');
  if (namespace !== undefined) test.namespace = namespace;
  const sourceIp = get('source_ip');
  if (sourceIp !== undefined) test.sourceIp = sourceIp;
  return test;
}

// ---- the decision index -------------------------------------------------------------------

function emptyIdentityIndex(): IdentityIndex {
  return { exact: new Map(), anyAuthenticated: [], globs: new Map() };
}

function emptyPrefixMap<T>(): PrefixMap<T> {
  return { lengths: [], byPrefix: new Map() };
}

function emptyBucket(): NamespaceBucket {
  return { namespaceRules: emptyIdentityIndex(), serviceExact: new Map(), servicePrefix: emptyPrefixMap() };
}

function getOrCreate<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = create();
    map.set(key, value);
  }
  return value;
}

function prefixSlot<T>(prefixes: PrefixMap<T>, prefix: string, create: () => T): T {
  if (!prefixes.byPrefix.has(prefix) && !prefixes.lengths.includes(prefix.length)) {
    prefixes.lengths.push(prefix.length);
    prefixes.lengths.sort((a, b) => b - a);
  }
  return getOrCreate(prefixes.byPrefix, prefix, create);
}

function addToIdentityIndex(index: IdentityIndex, rule: Rule, pattern: IdentityPattern, globCache: Map<string, IdentityMatcher>): void {
  if (pattern.kind === 'exact') getOrCreate(index.exact, pattern.value, () => []).push(rule);
  else if (pattern.kind === 'anyAuthenticated') index.anyAuthenticated.push(rule);
  else if (pattern.kind === 'glob') {
    const matcher = getOrCreate(globCache, pattern.source, () => compileMatcher(pattern));
    getOrCreate(index.globs, pattern.source, () => ({ matcher, rules: [] })).rules.push(rule);
  }
}

function buildIndex(rules: Rule[], roles: Map<string, IdentityPattern[]>): DecisionIndex {
  const index: DecisionIndex = { namespaceExact: new Map(), namespacePrefix: emptyPrefixMap() };
  const globCache = new Map<string, IdentityMatcher>();
  for (const rule of rules) {
    const bucket = rule.namespace.kind === 'exact'
      ? getOrCreate(index.namespaceExact, rule.namespace.value, emptyBucket)
      : prefixSlot(index.namespacePrefix, rule.namespace.value, emptyBucket);
    const identityIndex = rule.service === null
      ? bucket.namespaceRules
      : rule.service.kind === 'exact'
        ? getOrCreate(bucket.serviceExact, rule.service.value, emptyIdentityIndex)
        : prefixSlot(bucket.servicePrefix, rule.service.value, emptyIdentityIndex);
    // A rule listing the same identity twice (directly or through roles) is indexed once per key.
    const seen = new Set<string>();
    for (const written of rule.identities) {
      for (const pattern of expand(written, roles)) {
        if (seen.has(pattern.source)) continue;
        seen.add(pattern.source);
        addToIdentityIndex(identityIndex, rule, pattern, globCache);
      }
    }
  }
  return index;
}

