// The decision procedure of policy-language.md over the compiled index. Pure: no I/O, no clock.
import type { CompiledPolicy, DecisionIndex, IdentityIndex, NamespaceBucket, PrefixMap, Rule } from '../compile';
import { ACTION_RANK, ipInCidr, type DecisionResult, type Level } from '../syntax';
import type { Request } from './request';

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
  const matched = matchingRules(policy.index, request, identity);
  const decision = decide(policy, request, identity, matched);
  if (options.explain) decision.considered = explain(policy.index, request, identity, matched, decision);
  return decision;
}

// ---- step 0: the rules whose resource scope and identity both match (M) -------------------

function* bucketsFor(index: DecisionIndex, namespace: string): Generator<NamespaceBucket> {
  const exact = index.namespaceExact.get(namespace);
  if (exact) yield exact;
  yield* prefixHits(index.namespacePrefix, namespace);
}

function* prefixHits<T>(prefixes: PrefixMap<T>, name: string): Generator<T> {
  for (const length of prefixes.lengths) {
    if (length > name.length) continue;
    const hit = prefixes.byPrefix.get(name.slice(0, length));
    if (hit) yield hit;
  }
}

function* identityIndexesFor(bucket: NamespaceBucket, service: string | undefined): Generator<IdentityIndex> {
  yield bucket.namespaceRules;
  if (service === undefined) return; // `namespace:NS/*` is reached only by namespace-level rules
  const exact = bucket.serviceExact.get(service);
  if (exact) yield exact;
  yield* prefixHits(bucket.servicePrefix, service);
}

function matchingRules(index: DecisionIndex, request: Request, identity: string): Rule[] {
  const out: Rule[] = [];
  for (const bucket of bucketsFor(index, request.namespace)) {
    for (const ids of identityIndexesFor(bucket, request.service)) {
      const exact = ids.exact.get(identity);
      if (exact) out.push(...exact);
      if (ids.anyAuthenticated.length && identity !== 'anonymous') out.push(...ids.anyAuthenticated);
      for (const { matcher, rules } of ids.globs.values()) {
        if (matcher.test(identity, request.service, request.namespace)) out.push(...rules);
      }
    }
  }
  // A rule reached through several of its identities counts once.
  return out.length > 1 ? [...new Set(out)] : out;
}

// ---- steps 1-4 ---------------------------------------------------------------------------------

export function moreSpecific(a: Rule, b: Rule): number {
  for (let i = 0; i < a.specificity.length; i++) {
    const d = a.specificity[i]! - b.specificity[i]!;
    if (d !== 0) return d;
  }
  return a.index - b.index;
}

function mostSpecific(rules: Rule[]): Rule {
  let best = rules[0]!;
  for (let i = 1; i < rules.length; i++) if (moreSpecific(rules[i]!, best) < 0) best = rules[i]!;
  return best;
}

export function cidrsHold(rule: Rule, request: Request): boolean {
  if (rule.cidrs === null) return true;
  const address = request.sourceAddress;
  if (address === undefined) return false;
  for (const cidr of rule.cidrs) if (ipInCidr(address, cidr)) return true;
  return false;
}

const ref = (rule: Rule): RuleRef => ({ file: rule.file, line: rule.line });
const where = (rule: Rule) => `${rule.file}:${rule.line}`;

function decide(policy: CompiledPolicy, request: Request, identity: string, matched: Rule[]): Decision {
  const resource = request.resourceText;
  const applying = matched.filter((r) => cidrsHold(r, request));

  const denies = applying.filter((r) => r.level === 'deny');
  if (denies.length) {
    const rule = mostSpecific(denies);
    return { result: 'DENY', allow: false, reason: `${identity} is explicitly denied on ${resource} by the rule at ${where(rule)}`, rule: ref(rule) };
  }

  const rank = ACTION_RANK[request.action];
  const grants = applying.filter((r) => r.level !== 'deny' && ACTION_RANK[r.level as keyof typeof ACTION_RANK] >= rank);
  if (grants.length) {
    const rule = mostSpecific(grants);
    return { result: 'ALLOW', allow: true, reason: `${identity} has ${rule.level} on ${resource} (${rule.label} at ${where(rule)})`, rule: ref(rule) };
  }

  if (matched.length) {
    const cidrReason = (rule: Rule) => request.sourceIp === undefined
      ? `the rule at ${where(rule)} applies only from ${rule.cidrTexts!.join(', ')} and the request has no source_ip`
      : `source_ip ${request.sourceIp} is outside ${rule.cidrTexts!.join(', ')}, required by the rule at ${where(rule)}`;
    // Cite what came closest: a sufficient grant held back by its cidrs, else the highest level that
    // applied, else any rule whose cidrs failed.
    const blocked = matched.filter((r) => r.level !== 'deny' && ACTION_RANK[r.level as keyof typeof ACTION_RANK] >= rank && !applying.includes(r));
    if (blocked.length) {
      const rule = mostSpecific(blocked);
      return { result: 'DENY', allow: false, reason: `${cidrReason(rule)} (it grants ${rule.level})`, rule: ref(rule) };
    }
    if (applying.length) {
      const top = Math.max(...applying.map((r) => ACTION_RANK[r.level as keyof typeof ACTION_RANK]));
      const rule = mostSpecific(applying.filter((r) => ACTION_RANK[r.level as keyof typeof ACTION_RANK] === top));
      return { result: 'DENY', allow: false, reason: `${identity} has ${rule.level} on ${resource}; ${request.action} is required`, rule: ref(rule) };
    }
    const rule = mostSpecific(matched);
    return { result: 'DENY', allow: false, reason: cidrReason(rule), rule: ref(rule) };
  }

  return policy.settings.defaultPolicy === 'allow'
    ? { result: 'ALLOW_DEFAULT', allow: true, reason: `no rule names ${identity} for ${resource}; the default policy allows it`, rule: null }
    : { result: 'DENY', allow: false, reason: `no rule grants ${identity} access to ${resource}; the default policy is deny`, rule: null };
}

// ---- explanations ------------------------------------------------------------------------------

function explain(index: DecisionIndex, request: Request, identity: string, matched: Rule[], decision: Decision): ConsideredRule[] {
  const inScope = new Set<Rule>();
  for (const bucket of bucketsFor(index, request.namespace)) {
    for (const ids of identityIndexesFor(bucket, request.service)) {
      for (const rules of ids.exact.values()) for (const r of rules) inScope.add(r);
      for (const r of ids.anyAuthenticated) inScope.add(r);
      for (const { rules } of ids.globs.values()) for (const r of rules) inScope.add(r);
    }
  }
  const matchedSet = new Set(matched);
  const anyDenyApplied = matched.some((r) => r.level === 'deny' && cidrsHold(r, request));
  const rank = ACTION_RANK[request.action];
  return [...inScope].sort((a, b) => a.index - b.index).map((rule) => {
    let outcome: Outcome;
    let why: string;
    const isCited = decision.rule !== null && decision.rule.file === rule.file && decision.rule.line === rule.line;
    if (!matchedSet.has(rule)) {
      outcome = 'identity-mismatch';
      why = `${identity} does not match ${rule.identities.map((p) => `\`${p.source}\``).join(', ')}`;
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
      why = isCited ? `grants ${rule.level}; the most specific matching grant` : `grants ${rule.level}; a more specific rule is cited`;
    }
    const entry: ConsideredRule = { rule: { file: rule.file, line: rule.line, column: rule.column }, block: rule.label, policy: rule.level, outcome, why };
    if (rule.description !== undefined) entry.description = rule.description;
    return entry;
  });
}
