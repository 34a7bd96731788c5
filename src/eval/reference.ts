// A deliberately naive reference evaluator (the test oracle), written from the contract
// (shared/spec/policy-language.md and the documented choices in the project docs), NOT from the
// compiler or the optimised evaluator. It walks every rule block of every file on every call,
// builds a RegExp per identity pattern per call, and follows the four decision steps literally.
// It is slow on purpose: its only job is to be obviously right so the engine can be checked
// against it.
import ipaddr from 'ipaddr.js';
import type { Attribute, Block, PolicyFile, Value } from '../syntax/ast';

export interface ReferenceRequest {
  identity?: string | undefined;
  action: string;
  resource: string;
  namespace?: string | undefined;
  sourceIp?: string | undefined;
}

export type ReferenceResult = 'ALLOW' | 'ALLOW_DEFAULT' | 'DENY';

export interface ReferenceDecision {
  ok: true;
  result: ReferenceResult;
  rule: { file: string; line: number } | null;
}

export interface ReferenceRequestError {
  ok: false;
  error: { field: string; message: string };
}

export type ReferenceOutcome = ReferenceDecision | ReferenceRequestError;

const LEVEL_RANK: Record<string, number> = { read: 1, write: 2, admin: 3 };
const NAME = /^[A-Za-z0-9._-]{1,253}$/;

/** One rule as the spec describes it: a resource scope, a level, identity patterns, optional cidrs. */
interface RefRule {
  file: string;
  fileIndex: number;
  line: number;
  offset: number;
  namespaceScope: { exact: string } | { prefix: string };
  /** null: a namespace-level rule (the namespace itself and every service in it). */
  serviceScope: { exact: string } | { prefix: string } | null;
  level: string;
  patterns: string[];
  cidrs: string[] | null;
}

function attr(block: Block, name: string): Attribute | undefined {
  return block.body.find((i): i is Attribute => i.kind === 'attribute' && i.name.name === name);
}

function str(v: Value | undefined): string | undefined {
  return v && v.kind === 'string' ? v.value : undefined;
}

function strList(v: Value | undefined): string[] | undefined {
  if (!v || v.kind !== 'list') return undefined;
  return v.items.map((i) => (i.kind === 'string' ? i.value : String((i as { value?: unknown }).value)));
}

function identitiesOf(block: Block): string[] {
  const single = str(attr(block, 'identity')?.value);
  if (single !== undefined) return [single];
  return strList(attr(block, 'identities')?.value) ?? [];
}

function childBlocks(block: Block): Block[] {
  return block.body.filter((i): i is Block => i.kind === 'block');
}

/** Every rule, in source order: files sorted by path, then position in the file. */
function collectRules(files: PolicyFile[]): RefRule[] {
  const rules: RefRule[] = [];
  files.forEach((file, fileIndex) => {
    const ruleFrom = (block: Block, namespaceScope: RefRule['namespaceScope'], serviceScope: RefRule['serviceScope']) => {
      const level = str(attr(block, 'policy')?.value);
      if (level === undefined) return; // a namespace block that only holds nested blocks
      rules.push({
        file: file.path,
        fileIndex,
        line: block.span.start.line,
        offset: block.span.start.offset,
        namespaceScope,
        serviceScope,
        level,
        patterns: identitiesOf(block),
        cidrs: strList(attr(block, 'cidrs')?.value) ?? null,
      });
    };
    for (const item of file.body) {
      if (item.kind !== 'block') continue;
      const label = item.label?.value ?? '';
      switch (item.type.name) {
        case 'service':
          ruleFrom(item, { exact: 'default' }, { exact: label });
          break;
        case 'service_prefix':
          ruleFrom(item, { exact: 'default' }, { prefix: label });
          break;
        case 'namespace':
        case 'namespace_prefix': {
          const ns = item.type.name === 'namespace' ? { exact: label } : { prefix: label };
          ruleFrom(item, ns, null);
          for (const child of childBlocks(item)) {
            const childLabel = child.label?.value ?? '';
            if (child.type.name === 'service') ruleFrom(child, ns, { exact: childLabel });
            else if (child.type.name === 'service_prefix') ruleFrom(child, ns, { prefix: childLabel });
          }
          break;
        }
        default:
          break;
      }
    }
  });
  return rules;
}

function collectRoles(files: PolicyFile[]): Map<string, string[]> {
  const roles = new Map<string, string[]>();
  for (const file of files) {
    for (const item of file.body) {
      if (item.kind === 'block' && item.type.name === 'role' && item.label && !roles.has(item.label.value)) {
        roles.set(item.label.value, strList(attr(item, 'identities')?.value) ?? []);
      }
    }
  }
  return roles;
}

function collectSettings(files: PolicyFile[]): { defaultPolicy: string; anonymous: boolean } {
  for (const file of files) {
    for (const item of file.body) {
      if (item.kind === 'block' && item.type.name === 'settings') {
        const dp = str(attr(item, 'default_policy')?.value) ?? 'deny';
        const anon = attr(item, 'anonymous')?.value;
        return { defaultPolicy: dp, anonymous: anon?.kind === 'boolean' ? anon.value : false };
      }
    }
  }
  return { defaultPolicy: 'deny', anonymous: false };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

interface MatchContext {
  identity: string;
  service: string | undefined;
  namespace: string;
}

/** One identity pattern against the request, building its regex afresh. */
function patternMatches(pattern: string, ctx: MatchContext, roles: Map<string, string[]>, inRole: boolean): boolean {
  if (pattern === '*') return ctx.identity !== 'anonymous';
  if (pattern.startsWith('role:')) {
    if (inRole) return false; // roles cannot contain roles
    const members = roles.get(pattern.slice('role:'.length)) ?? [];
    return members.some((m) => patternMatches(m, ctx, roles, true));
  }
  const isGlob = pattern.includes('*') || pattern.includes('{service}') || pattern.includes('{namespace}');
  if (!isGlob) return pattern === ctx.identity;
  if (ctx.identity === 'anonymous') return false; // no wildcard ever matches `anonymous`
  let source = '';
  for (const piece of pattern.split(/(\*\*|\*|\{service\}|\{namespace\})/)) {
    if (piece === '**') source += '.*';
    else if (piece === '*') source += '[^/]*';
    else if (piece === '{service}') {
      if (ctx.service === undefined) return false; // the rule cannot supply it
      source += escapeRegExp(ctx.service);
    } else if (piece === '{namespace}') source += escapeRegExp(ctx.namespace);
    else source += escapeRegExp(piece);
  }
  return new RegExp(`^${source}$`, 's').test(ctx.identity);
}

function scopeMatches(scope: { exact: string } | { prefix: string }, value: string): boolean {
  return 'exact' in scope ? scope.exact === value : value.startsWith(scope.prefix);
}

type Address = ipaddr.IPv4 | ipaddr.IPv6;

function toAddress(text: string): Address {
  let a: Address = ipaddr.parse(text);
  if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address();
  return a;
}

function inCidr(address: Address, cidrText: string): boolean {
  let [net, bits] = ipaddr.parseCIDR(cidrText);
  if (net.kind() === 'ipv6' && (net as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
    net = (net as ipaddr.IPv6).toIPv4Address();
    bits -= 96;
  }
  if (net.kind() !== address.kind()) return false;
  // Compare the first `bits` bits by hand.
  const a = address.toByteArray();
  const b = net.toByteArray();
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3;
    const mask = 0x80 >> (i & 7);
    if ((a[byte]! & mask) !== (b[byte]! & mask)) return false;
  }
  return true;
}

function isIp(text: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(text) || ipaddr.IPv6.isValid(text);
}

/** Sort key: larger is more specific. */
function specificity(r: RefRule): number[] {
  const svc = r.serviceScope === null ? [0, 0] : 'exact' in r.serviceScope ? [2, 0] : [1, r.serviceScope.prefix.length];
  const ns = 'exact' in r.namespaceScope ? [1, 0] : [0, r.namespaceScope.prefix.length];
  return [...svc, ...ns];
}

/** The most specific rule, ties broken by source order (earliest first). */
function mostSpecific(rules: RefRule[]): RefRule | undefined {
  let best: RefRule | undefined;
  for (const r of rules) {
    if (!best) { best = r; continue; }
    const a = specificity(r);
    const b = specificity(best);
    let cmp = 0;
    for (let i = 0; i < a.length && cmp === 0; i++) cmp = a[i]! - b[i]!;
    if (cmp > 0) best = r;
    else if (cmp === 0 && (r.fileIndex < best.fileIndex || (r.fileIndex === best.fileIndex && r.offset < best.offset))) best = r;
  }
  return best;
}

const cite = (r: RefRule | undefined) => (r ? { file: r.file, line: r.line } : null);

export function referenceDecide(inputFiles: readonly PolicyFile[], request: ReferenceRequest): ReferenceOutcome {
  const fail = (field: string, message: string): ReferenceRequestError => ({ ok: false, error: { field, message } });
  const files = [...inputFiles].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const settings = collectSettings(files);
  const roles = collectRoles(files);

  // --- the request ---
  if (!(request.action in LEVEL_RANK)) return fail('action', 'unknown action');
  let service: string | undefined;
  let namespace = request.namespace ?? 'default';
  let m: RegExpExecArray | null;
  if ((m = /^service:([^/]*)(?:\/(.*))?$/s.exec(request.resource))) {
    if (!NAME.test(m[1]!)) return fail('resource', 'bad service name');
    if (m[2] !== undefined && !NAME.test(m[2])) return fail('resource', 'bad instance');
    service = m[1]!;
  } else if ((m = /^namespace:(.*)\/\*$/s.exec(request.resource))) {
    if (!NAME.test(m[1]!)) return fail('resource', 'bad namespace name');
  } else return fail('resource', 'unknown resource form');
  if (request.namespace !== undefined && !NAME.test(request.namespace)) return fail('namespace', 'bad namespace');
  if (m && service === undefined) {
    if (request.namespace !== undefined && request.namespace !== m[1]) return fail('namespace', 'contradicts the resource');
    namespace = m[1]!;
  }
  let address: Address | undefined;
  if (request.sourceIp !== undefined) {
    if (!isIp(request.sourceIp)) return fail('source_ip', 'not an IP address');
    address = toAddress(request.sourceIp);
  }
  if (request.identity === '') return fail('identity', 'empty identity');
  let identity = request.identity;
  // `anonymous` is the unauthenticated subject, whether the identity is left out or named.
  if (identity === undefined || identity === 'anonymous') {
    if (!settings.anonymous) return fail('identity', 'identity is required');
    identity = 'anonymous';
  }

  // --- M: every rule whose resource scope and identity both match ---
  const ctx: MatchContext = { identity, service, namespace };
  const M: RefRule[] = [];
  for (const rule of collectRules(files)) {
    if (!scopeMatches(rule.namespaceScope, namespace)) continue;
    if (service === undefined) {
      if (rule.serviceScope !== null) continue; // only namespace-level rules reach `namespace:NS/*`
    } else if (rule.serviceScope !== null && !scopeMatches(rule.serviceScope, service)) continue;
    if (!rule.patterns.some((p) => patternMatches(p, ctx, roles, false))) continue;
    M.push(rule);
  }
  const applies = (r: RefRule) => r.cidrs === null || (address !== undefined && r.cidrs.some((c) => inCidr(address!, c)));
  const need = LEVEL_RANK[request.action]!;

  // 1. explicit deny
  const denies = M.filter((r) => r.level === 'deny' && applies(r));
  if (denies.length) return { ok: true, result: 'DENY', rule: cite(mostSpecific(denies)) };
  // 2. a sufficient applying grant
  const grants = M.filter((r) => r.level !== 'deny' && applies(r) && LEVEL_RANK[r.level]! >= need);
  if (grants.length) return { ok: true, result: 'ALLOW', rule: cite(mostSpecific(grants)) };
  // 3. something names this identity and resource: it blocks the default
  if (M.length) {
    const heldBack = M.filter((r) => r.level !== 'deny' && !applies(r) && LEVEL_RANK[r.level]! >= need);
    if (heldBack.length) return { ok: true, result: 'DENY', rule: cite(mostSpecific(heldBack)) };
    const applying = M.filter((r) => applies(r) && r.level !== 'deny');
    if (applying.length) {
      const top = Math.max(...applying.map((r) => LEVEL_RANK[r.level]!));
      return { ok: true, result: 'DENY', rule: cite(mostSpecific(applying.filter((r) => LEVEL_RANK[r.level] === top))) };
    }
    return { ok: true, result: 'DENY', rule: cite(mostSpecific(M)) };
  }
  // 4. the default policy
  return { ok: true, result: settings.defaultPolicy === 'allow' ? 'ALLOW_DEFAULT' : 'DENY', rule: null };
}
