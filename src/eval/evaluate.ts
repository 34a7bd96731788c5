// The decision procedure of policy-language.md over the compiled index. Pure: no I/O, no clock.
import type { CompiledPolicy, DecisionIndex, IdentityIndex, NamespaceBucket, NamespaceEntry, PrefixMap, ResourceEntry, Rule, Settings, TableEntry } from '../compile/model';
import type { DecisionResult, IdentityPattern, Level } from '../syntax';
// Direct module imports: the hot path should not go through re-export getters.
import { ANONYMOUS } from '../syntax/identity-pattern';
import { ACTION_RANK, ipInCidr } from '../syntax/request';
import type { Request } from '../syntax/prepare-request';

export interface RuleRef {
  file: string;
  line: number;
}

export type Outcome =
  | 'decided' // the rule the decision cites
  | 'granted' // applied and granted, but a more specific rule is cited
  | 'denied' // an explicit deny that applied (a more specific one is cited)
  | 'overridden' // a grant that applied but lost to an explicit deny
  | 'level-too-low'
  | 'cidr-mismatch'
  | 'identity-mismatch';

export interface ConsideredRule {
  rule: RuleRef & { column: number };
  block: string;
  policy: Level;
  outcome: Outcome;
  /** Why, in words. */
  why: string;
  description?: string;
}

export interface Decision {
  result: DecisionResult;
  allow: boolean;
  reason: string;
  rule: RuleRef | null;
  /** With `explain`: every rule whose resource scope reaches the request, and what it did. */
  considered?: ConsideredRule[];
}

export interface EvaluateOptions {
  explain?: boolean;
}

/** `identity` is the effective subject (`anonymous` already substituted by the engine). */
export function evaluate(policy: CompiledPolicy, request: Request, identity: string, options: EvaluateOptions = {}): Decision {
  if (options.explain) return evaluateGeneral(policy, request, identity, options);
  const table = policy.table;
  if (table === undefined) return evaluateGeneral(policy, request, identity);
  let resource = table.resources.get(request.resourceKey);
  if (resource === undefined && request.service !== undefined) {
    // A service the policy does not name: its class is the longest service_prefix it matches.
    const ns = table.namespaces.get(request.namespace);
    if (ns !== undefined) resource = serviceClass(ns, request.service);
  }
  if (resource === undefined) return decide(policy, request, identity, matchingRules(policy.index, request, identity));
  let entry = namedEntry(resource, identity);
  if (entry === undefined) {
    // No exact pattern in scope names the identity: only `*` and globs can match it.
    if (resource.globs !== undefined) {
      const out: Rule[] = [];
      collectIdentity(resource.globs, identity, request.service, request.namespace, out);
      return decide(policy, request, identity, unique(out));
    }
    entry = identity === ANONYMOUS ? table.none : resource.others;
  }
  const rank = request.rank;
  const v = rank === 1 ? entry.read : rank === 2 ? entry.write : entry.admin;
  if (v === undefined) return decide(policy, request, identity, entry.rules);
  return { result: v.result, allow: v.allow, reason: v.before + identity + v.middle + request.resourceText + v.after, rule: v.rule as RuleRef | null };
}

/** M of an identity the resource names (undefined: it names no such identity). Three fields, then a Map (ResourceEntry). */
export function namedEntry(resource: ResourceEntry, identity: string): TableEntry | undefined {
  return identity === resource.id0 ? resource.e0 : identity === resource.id1 ? resource.e1 : identity === resource.id2 ? resource.e2 : resource.more?.get(identity);
}

function serviceClass(ns: NamespaceEntry, service: string): ResourceEntry {
  const lengths = ns.lengths;
  for (let i = 0; i < lengths.length; i++) {
    const length = lengths[i]!;
    if (length > service.length) continue;
    const hit = ns.byPrefix.get(length === service.length ? service : service.slice(0, length));
    if (hit !== undefined) return hit;
  }
  return ns.rest;
}

/** The general path: the index walk and the decision procedure, without the decision table. */
export function evaluateGeneral(policy: CompiledPolicy, request: Request, identity: string, options: EvaluateOptions = {}): Decision {
  const matched = matchingRules(policy.index, request, identity);
  if (!options.explain) return decide(policy, request, identity, matched);
  const cited: { rule?: Rule } = {};
  const decision = decide(policy, request, identity, matched, cited);
  decision.considered = explain(policy.index, policy.roles, request, identity, matched, cited.rule);
  return decision;
}

// ---- step 0: the rules whose resource scope and identity both match (M) -------------------
// The hot path: plain loops, no generators, one output array.

export function collectIdentity(ids: IdentityIndex, identity: string, service: string | undefined, namespace: string, out: Rule[]): void {
  const exact = ids.exact.get(identity);
  if (exact !== undefined) for (let i = 0; i < exact.length; i++) out.push(exact[i]!);
  if (ids.anyAuthenticated.length !== 0 && identity !== 'anonymous') for (const r of ids.anyAuthenticated) out.push(r);
  if (ids.globs.size !== 0) {
    for (const glob of ids.globs.values()) if (glob.matcher.test(identity, service, namespace)) for (const r of glob.rules) out.push(r);
  }
}

function collectBucket(bucket: NamespaceBucket, identity: string, service: string | undefined, namespace: string, out: Rule[]): void {
  collectIdentity(bucket.namespaceRules, identity, service, namespace, out);
  if (service === undefined) return; // `namespace:NS/*` is reached only by namespace-level rules
  const exact = bucket.serviceExact.get(service);
  if (exact !== undefined) collectIdentity(exact, identity, service, namespace, out);
  const prefixes = bucket.servicePrefix;
  for (let i = 0; i < prefixes.lengths.length; i++) {
    const length = prefixes.lengths[i]!;
    if (length > service.length) continue;
    const hit = prefixes.byPrefix.get(length === service.length ? service : service.slice(0, length));
    if (hit !== undefined) collectIdentity(hit, identity, service, namespace, out);
  }
}

/** Every entry of a prefix map whose prefix `name` starts with, longest prefix first. */
export function forEachPrefix<T>(prefixes: PrefixMap<T>, name: string, visit: (value: T) => void): void {
  for (let i = 0; i < prefixes.lengths.length; i++) {
    const length = prefixes.lengths[i]!;
    if (length > name.length) continue;
    const hit = prefixes.byPrefix.get(length === name.length ? name : name.slice(0, length));
    if (hit !== undefined) visit(hit);
  }
}

function forEachBucket(index: DecisionIndex, namespace: string, visit: (bucket: NamespaceBucket) => void): void {
  const exact = index.namespaceExact.get(namespace);
  if (exact !== undefined) visit(exact);
  forEachPrefix(index.namespacePrefix, namespace, visit);
}

export function matchingRules(index: DecisionIndex, request: Pick<Request, 'service' | 'namespace'>, identity: string): Rule[] {
  const out: Rule[] = [];
  const { service, namespace } = request;
  const exact = index.namespaceExact.get(namespace);
  if (exact !== undefined) collectBucket(exact, identity, service, namespace, out);
  const prefixes = index.namespacePrefix;
  for (let i = 0; i < prefixes.lengths.length; i++) {
    const length = prefixes.lengths[i]!;
    if (length > namespace.length) continue;
    const hit = prefixes.byPrefix.get(length === namespace.length ? namespace : namespace.slice(0, length));
    if (hit !== undefined) collectBucket(hit, identity, service, namespace, out);
  }
  return unique(out);
}

/** M over a fixed scope: the identity indexes reaching one resource (see identityIndexesFor). */
export function matchScope(scope: IdentityIndex[], identity: string, service: string | undefined, namespace: string): Rule[] {
  const out: Rule[] = [];
  for (const ids of scope) collectIdentity(ids, identity, service, namespace, out);
  return unique(out);
}

/** A rule reached through several of its identities counts once (M is tiny: a quadratic scan beats a Set). */
function unique(rules: Rule[]): Rule[] {
  if (rules.length < 2) return rules;
  const out: Rule[] = [rules[0]!];
  for (let i = 1; i < rules.length; i++) if (!out.includes(rules[i]!)) out.push(rules[i]!);
  return out;
}

/** Every identity index whose resource scope reaches (namespace, service); service undefined: the namespace itself. */
export function identityIndexesFor(index: DecisionIndex, namespace: string, service: string | undefined): IdentityIndex[] {
  const out: IdentityIndex[] = [];
  forEachBucket(index, namespace, (bucket) => {
    out.push(bucket.namespaceRules);
    if (service === undefined) return;
    const exact = bucket.serviceExact.get(service);
    if (exact) out.push(exact);
    forEachPrefix(bucket.servicePrefix, service, (ids) => out.push(ids));
  });
  return out;
}

// ---- steps 1-4 ---------------------------------------------------------------------------------

/** Negative when `a` is cited before `b` (compile ranked every rule by specificity, then source order). */
export function moreSpecific(a: Rule, b: Rule): number {
  return a.order - b.order;
}

function sameSpecificity(a: Rule, b: Rule): boolean {
  return a.specificity.length === b.specificity.length && a.specificity.every((v, i) => v === b.specificity[i]);
}

export function cidrsHold(rule: Rule, request: Request): boolean {
  // Called for rules with cidrs; a rule without any always applies.
  if (rule.cidrs === null) return true;
  const address = request.sourceAddress;
  if (address === undefined) return false;
  for (const cidr of rule.cidrs) if (ipInCidr(address, cidr)) return true;
  return false;
}

const ref = (rule: Rule): RuleRef => rule.ref as RuleRef;
const where = (rule: Rule) => `${rule.file}:${rule.line}`;

function cite(rule: Rule, decision: Decision, cited: { rule?: Rule } | undefined): Decision {
  if (cited) cited.rule = rule;
  return decision;
}

/** `cited`, when given, receives the rule the decision cites (explanations need it; the hot path does not). */
export function decide(policy: { settings: Settings }, request: Request, identity: string, matched: Rule[], cited?: { rule?: Rule }): Decision {
  const resource = request.resourceText;
  const rank = request.rank;
  // One pass: the most specific applying deny, the most specific sufficient applying grant, and
  // what step 3 needs.
  let deny: Rule | undefined;
  let grant: Rule | undefined;
  let blocked: Rule | undefined; // a sufficient grant held back by its cidrs
  let closest: Rule | undefined; // the highest-level applying grant
  for (let i = 0; i < matched.length; i++) {
    const rule = matched[i]!;
    const applies = rule.cidrs === null || cidrsHold(rule, request);
    if (rule.level === 'deny') {
      if (applies && (deny === undefined || moreSpecific(rule, deny) < 0)) deny = rule;
      continue;
    }
    const level = rule.rank;
    if (!applies) {
      if (level >= rank && (blocked === undefined || moreSpecific(rule, blocked) < 0)) blocked = rule;
    } else if (level >= rank) {
      if (grant === undefined || moreSpecific(rule, grant) < 0) grant = rule;
    } else if (closest === undefined || level > closest.rank || (level === closest.rank && rule.order < closest.order)) {
      closest = rule;
    }
  }

  if (deny !== undefined) {
    return cite(deny, { result: 'DENY', allow: false, reason: `${identity} is explicitly denied on ${resource} by the rule at ${where(deny)}`, rule: ref(deny) }, cited);
  }
  if (grant !== undefined) {
    return cite(grant, { result: 'ALLOW', allow: true, reason: `${identity} has ${grant.level} on ${resource} (${grant.citation})`, rule: ref(grant) }, cited);
  }
  if (matched.length !== 0) {
    const cidrReason = (rule: Rule) => request.sourceIp === undefined
      ? `the rule at ${where(rule)} applies only from ${rule.cidrTexts!.join(', ')} and the request has no source_ip`
      : `source_ip ${request.sourceIp} is outside ${rule.cidrTexts!.join(', ')}, required by the rule at ${where(rule)}`;
    if (blocked !== undefined) return cite(blocked, { result: 'DENY', allow: false, reason: `${cidrReason(blocked)} (it grants ${blocked.level})`, rule: ref(blocked) }, cited);
    if (closest !== undefined) return cite(closest, { result: 'DENY', allow: false, reason: `${identity} has ${closest.level} on ${resource}; ${request.action} is required`, rule: ref(closest) }, cited);
    // Only rules whose cidrs failed (a deny, or grants below the action).
    let rule = matched[0]!;
    for (const r of matched) if (moreSpecific(r, rule) < 0) rule = r;
    if (rule.level === 'deny') {
      // Step 3: the deny does not apply from here, but naming this identity and resource it still
      // keeps the default policy out; say so rather than call the deny's cidrs a requirement.
      // Under the default deny there is no default to keep out: the reason is that nothing grants.
      const outside = request.sourceIp === undefined ? 'the request has no source_ip' : `source_ip ${request.sourceIp} is outside them`;
      const why = policy.settings.defaultPolicy === 'allow'
        ? `but a rule naming ${identity} on ${resource} keeps the default policy from applying`
        : `and no rule grants ${identity} ${request.action} on ${resource}`;
      return cite(rule, { result: 'DENY', allow: false, reason: `the deny at ${where(rule)} applies only from ${rule.cidrTexts!.join(', ')} and ${outside}, ${why}`, rule: ref(rule) }, cited);
    }
    return cite(rule, { result: 'DENY', allow: false, reason: cidrReason(rule), rule: ref(rule) }, cited);
  }

  return policy.settings.defaultPolicy === 'allow'
    ? { result: 'ALLOW_DEFAULT', allow: true, reason: `no rule names ${identity} for ${resource}; the default policy allows it`, rule: null }
    : { result: 'DENY', allow: false, reason: `no rule grants ${identity} access to ${resource}; the default policy is deny`, rule: null };
}

// ---- explanations ------------------------------------------------------------------------------

/**
 * For a request decided by the default policy: the rules written for its service in other
 * namespaces, the most common authoring mistake (a top-level block is in `default`, a test or a PEP
 * forgot `namespace`). Only for explanations and `pdp test`; it walks every rule.
 */
export function namespaceMixupNote(policy: CompiledPolicy, request: Request): string | undefined {
  const service = request.service;
  if (service === undefined) return undefined;
  // `service_prefix ""` names no service in particular: it would make every default decision noisy.
  const forService = policy.rules.filter((rule) => rule.service !== null && rule.service.value !== '' && nameMatches(rule.service, service));
  // Some reach this namespace: the namespace is right, the identity is not.
  if (forService.some((rule) => nameMatches(rule.namespace, request.namespace))) return undefined;
  const elsewhere = new Map<string, string[]>();
  for (const rule of forService) {
    const ns = rule.namespace.kind === 'exact' ? `namespace \`${rule.namespace.value}\`` : `namespaces starting with \`${rule.namespace.value}\``;
    const at = elsewhere.get(ns) ?? [];
    at.push(where(rule));
    elsewhere.set(ns, at);
  }
  if (elsewhere.size === 0) return undefined;
  const places = [...elsewhere].slice(0, 3).map(([ns, at]) => `${ns} (${at.slice(0, 3).join(', ')}${at.length > 3 ? ', …' : ''})`);
  const listed = places.length === 1 ? places[0]! : `${places.slice(0, -1).join(', ')}${elsewhere.size > 3 ? ', …' : ''} and ${places[places.length - 1]!}`;
  return `rules for service \`${service}\` exist in ${listed}, but this request is in namespace \`${request.namespace}\``;
}

function nameMatches(scope: { kind: 'exact' | 'prefix'; value: string }, name: string): boolean {
  return scope.kind === 'exact' ? scope.value === name : name.startsWith(scope.value);
}

/**
 * A pattern as an explanation quotes it: a placeholder pattern with what it became for this request
 * (or why it cannot be filled), a role with its members, so "does not match" can be checked by eye.
 */
function describePattern(pattern: IdentityPattern, request: Request, roles: ReadonlyMap<string, IdentityPattern[]>): string {
  const quoted = `\`${pattern.source}\``;
  if (pattern.kind === 'role') {
    const members = roles.get(pattern.role) ?? [];
    const shown = members.slice(0, 5).map((m) => `\`${m.source}\``).join(', ');
    return members.length === 0 ? `${quoted} (no members)` : `${quoted} (members ${shown}${members.length > 5 ? `, and ${members.length - 5} more` : ''})`;
  }
  if (pattern.kind !== 'glob' || !pattern.placeholders) return quoted;
  let text = '';
  for (const part of pattern.parts) {
    if (part.kind === 'literal') text += part.text;
    else if (part.kind === 'star') text += '*';
    else if (part.kind === 'doubleStar') text += '**';
    else if (part.name === 'service') {
      if (request.service === undefined) return `${quoted} (\`{service}\` cannot be filled for \`${request.resourceText}\`, so this pattern matches no one here)`;
      text += request.service;
    } else text += request.namespace;
  }
  return `${quoted} (here \`${text}\`)`;
}

function explain(index: DecisionIndex, roles: ReadonlyMap<string, IdentityPattern[]>, request: Request, identity: string, matched: Rule[], cited: Rule | undefined): ConsideredRule[] {
  const inScope = new Set<Rule>();
  for (const ids of identityIndexesFor(index, request.namespace, request.service)) {
    for (const rules of ids.exact.values()) for (const r of rules) inScope.add(r);
    for (const r of ids.anyAuthenticated) inScope.add(r);
    for (const { rules } of ids.globs.values()) for (const r of rules) inScope.add(r);
  }
  const matchedSet = new Set(matched);
  const anyDenyApplied = matched.some((r) => r.level === 'deny' && cidrsHold(r, request));
  const rank = ACTION_RANK[request.action];
  return [...inScope].sort((a, b) => a.index - b.index).map((rule) => {
    let outcome: Outcome;
    let why: string;
    const isCited = rule === cited;
    if (!matchedSet.has(rule)) {
      outcome = 'identity-mismatch';
      why = `${identity} does not match ${rule.identities.map((p) => describePattern(p, request, roles)).join(', ')}`;
    } else if (!cidrsHold(rule, request)) {
      outcome = 'cidr-mismatch';
      why = request.sourceIp === undefined ? `applies only from ${rule.cidrTexts!.join(', ')}; no source_ip` : `source_ip ${request.sourceIp} is outside ${rule.cidrTexts!.join(', ')}`;
    } else if (rule.level === 'deny') {
      outcome = isCited ? 'decided' : 'denied';
      why = 'explicit deny applies';
    } else if (ACTION_RANK[rule.level] < rank) {
      outcome = isCited ? 'decided' : 'level-too-low';
      why = `grants ${rule.level}; ${request.action} is required`;
    } else if (anyDenyApplied) {
      outcome = 'overridden';
      why = `grants ${rule.level}, overridden by an explicit deny`;
    } else {
      outcome = isCited ? 'decided' : 'granted';
      // The cited grant wins on specificity, or, as specific as this one, on file and source order.
      if (isCited) why = `grants ${rule.level}; the most specific matching grant`;
      else if (cited === undefined) why = `grants ${rule.level}; a more specific rule is cited`;
      else if (sameSpecificity(rule, cited)) why = `grants ${rule.level}; an equally specific, earlier rule is cited (${where(cited)})`;
      else why = `grants ${rule.level}; a more specific rule is cited (${where(cited)})`;
    }
    const entry: ConsideredRule = { rule: { file: rule.file, line: rule.line, column: rule.column }, block: rule.label, policy: rule.level, outcome, why };
    if (rule.description !== undefined) entry.description = rule.description;
    return entry;
  });
}
