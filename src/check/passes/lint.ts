// Lint: warnings about policies that are valid but almost certainly not what their author meant.
// Warnings never stop a policy set from loading; `pdp check --strict` turns them into failures.
// See docs/lint.md for every code, with examples.
//
// The semantic rules (dead-grant, redundant-rule) are deliberately conservative: they compare only
// rules naming the same identity string (so roles, globs and placeholders behave identically on both
// sides), and they flag a rule only when removing it could not change any decision's allow/deny.
// They run over an index keyed by identity, then by scope, so a set of 10,000 rules lints in
// milliseconds rather than comparing every pair.
import ipaddr from 'ipaddr.js';
import { quote as q, warning, type Diagnostic, type Position } from '../../diagnostics';
import {
  isValidName, LEVELS, parseCidrText, parseIdentityPattern, spiffeTrustDomain,
  type Block, type IdentityPattern, type Level, type PatternPart, type PolicyFile, type StringLiteral, type Value,
} from '../../syntax';
import { describeCharacter, disguisingIdentityCharacter } from '../../syntax/characters';
import { isRuleBlock, type RuleBlockType } from '../schema';
import { anonymousAllowed, attribute, blocks, identityStrings, settingsBlock, stringValue } from '../walk';

/** Every code this pass emits, with a one-line description (SARIF `shortDescription`, docs). */
export const LINT_CODES = {
  'prefix-not-at-delimiter': 'a prefix that does not end at a delimiter also matches longer, unrelated names',
  'broad-prefix-grant': 'an empty prefix grants write or admin on everything in its scope',
  'default-allow': 'the default policy allows every request that no rule names',
  'dead-grant': 'a grant that an explicit deny always overrides',
  'redundant-rule': 'a rule already implied by a broader rule for the same identity',
  'foreign-trust-domain': 'a SPIFFE ID outside the trust domain named in settings',
  'duplicate-block': 'the same block written twice',
  'deny-cidrs-blocks-default': 'under a default allow, a deny with cidrs also denies its identities from every other address',
  'anonymous-not-allowed': 'a rule or role naming `anonymous` in a policy set that does not allow anonymous requests',
  'cidr-host-bits': 'a CIDR with bits set after its prefix length, silently widened to its network',
  'duplicate-identity': 'the same identity twice in one identities list, usually in place of another',
  'wildcard-namespace-grant': 'a namespace-level write or admin granted to a wildcard identity: every workload it matches may register any service there',
  'test-identity-space': 'a test whose identity holds a space, which no identity pattern can name: usually a typo',
  'bidi-control': 'a bidirectional control character in a comment or free text, which can make the policy shown differ from the policy read ("trojan source")',
} as const;

export type LintCode = keyof typeof LINT_CODES;

const DELIMITERS = new Set(['-', '.', '_', '/']);
const GRANT_RANK: Record<Exclude<Level, 'deny'>, number> = { read: 1, write: 2, admin: 3 };

interface NameMatch {
  kind: 'exact' | 'prefix';
  value: string;
}

interface LintRule {
  block: Block;
  /** Position in the set (files in order, then source order): ties between equal rules go to the first. */
  index: number;
  type: RuleBlockType;
  label: StringLiteral;
  namespace: NameMatch;
  /** null: a namespace-level rule (the namespace and every service in it). */
  service: NameMatch | null;
  level: Level;
  /** Identity strings as written (decoded), with their parsed patterns; unparsable ones are left out. */
  identities: { text: StringLiteral; pattern: IdentityPattern }[];
  /** `[` sorted CIDR texts `]` (never ''); null when the rule has no `cidrs`. */
  cidrKey: string | null;
}

const at = (b: Block) => `${b.span.file}:${b.type.span.start.line}`;

export function checkLint(files: readonly PolicyFile[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  const roles = collectRoles(files);
  const rules = collectRules(files);
  const duplicates = checkDuplicates(files, out);

  for (const { block, parent } of blocks(files)) checkPrefix(block, parent, out);
  for (const rule of rules) checkBroadGrant(rule, roles, out);
  for (const rule of rules) checkWildcardNamespaceGrant(rule, roles, out);
  checkSettingsAndTrustDomain(files, out);
  checkAnonymousNotAllowed(files, out);
  checkDenyCidrs(files, rules, out);
  checkCoverage(rules, roles, duplicates, out);
  checkCidrHostBits(rules, out);
  checkDuplicateIdentities(files, rules, out);
  checkTestIdentitySpaces(files, out);
  checkBidiControls(files, out);
  return out;
}

// ---- collecting rules from the AST (robust to a set that also has errors) -------------------

function collectRoles(files: readonly PolicyFile[]): Map<string, IdentityPattern[]> {
  const roles = new Map<string, IdentityPattern[]>();
  for (const file of files) {
    for (const item of file.body) {
      if (item.kind !== 'block' || item.type.name !== 'role' || !item.label || roles.has(item.label.value)) continue;
      const members: IdentityPattern[] = [];
      for (const s of identityStrings(item)) {
        const parsed = parseIdentityPattern(s.value);
        if (parsed.ok) members.push(parsed.pattern);
      }
      roles.set(item.label.value, members);
    }
  }
  return roles;
}

function collectRules(files: readonly PolicyFile[]): LintRule[] {
  const rules: LintRule[] = [];
  const add = (block: Block, type: RuleBlockType, enclosing: NameMatch | null) => {
    const label = block.label;
    if (!label) return;
    const isNamespace = type === 'namespace' || type === 'namespace_prefix';
    // A label that is not a valid name is already an `invalid-name` error, and such a rule never
    // compiles: a warning about it (or one citing it, or its nested rules) would be a second
    // diagnostic for one mistake. A prefix may be "" (everything).
    if (!isValidName(label.value) && !(label.value === '' && (type === 'service_prefix' || type === 'namespace_prefix'))) return;
    const namespace: NameMatch = isNamespace
      ? { kind: type === 'namespace' ? 'exact' : 'prefix', value: label.value }
      : enclosing ?? { kind: 'exact', value: 'default' };
    const service: NameMatch | null = isNamespace ? null : { kind: type === 'service' ? 'exact' : 'prefix', value: label.value };
    const policy = stringValue(block, 'policy');
    if (policy && (LEVELS as readonly string[]).includes(policy.value)) {
      const identities: LintRule['identities'] = [];
      for (const text of identityStrings(block)) {
        const parsed = parseIdentityPattern(text.value);
        if (parsed.ok) identities.push({ text, pattern: parsed.pattern });
      }
      const cidrs = attribute(block, 'cidrs')?.value;
      const cidrKey = cidrs === undefined ? null
        : cidrs.kind === 'list' ? `[${cidrs.items.map((i) => (i.kind === 'string' ? i.value.trim() : '?')).sort().join(',')}]` : '?';
      rules.push({ block, index: rules.length, type, label, namespace, service, level: policy.value as Level, identities, cidrKey });
    }
    if (isNamespace) {
      for (const child of block.body) {
        if (child.kind === 'block' && (child.type.name === 'service' || child.type.name === 'service_prefix')) add(child, child.type.name, namespace);
      }
    }
  };
  for (const file of files) {
    for (const item of file.body) if (item.kind === 'block' && isRuleBlock(item.type.name)) add(item, item.type.name, null);
  }
  return rules;
}

// ---- prefix-not-at-delimiter, broad-prefix-grant ---------------------------------------------

function checkPrefix(block: Block, parent: Block | null, out: Diagnostic[]): void {
  const type = block.type.name;
  // Where the block may stand: a namespace_prefix at the top level, a service_prefix at the top level
  // or in a namespace block (anything else is an error of the structure pass).
  const placed = type === 'namespace_prefix' ? !parent
    : type === 'service_prefix' ? !parent || parent.type.name === 'namespace' || parent.type.name === 'namespace_prefix' : false;
  const label = block.label;
  if (!placed || !label) return;
  const prefix = label.value;
  if (prefix === '' || DELIMITERS.has(prefix[prefix.length - 1]!) || label.raw.includes('${')) return;
  if (!isValidName(prefix)) return; // already an `invalid-name` error; a hint built on it would not be valid either
  const exact = type === 'service_prefix' ? 'service' : 'namespace';
  out.push(warning('prefix-not-at-delimiter',
    `prefix ${q(prefix)} does not end at a delimiter, so it also matches ${exact}s such as ${q(`${prefix}bar`)}`,
    label.span,
    `end the prefix at a delimiter (\`${type} "${prefix}-"\`), or use \`${exact} "${prefix}"\` for exactly that ${exact}`));
}

/** Whether a pattern confines an identity to the service (or namespace) it asks about. */
function selfScoped(pattern: IdentityPattern, roles: Map<string, IdentityPattern[]>, placeholders: readonly string[]): boolean {
  if (pattern.kind === 'role') {
    const members = roles.get(pattern.role) ?? [];
    return members.length > 0 && members.every((m) => selfScoped(m, roles, placeholders));
  }
  return pattern.kind === 'glob' && pattern.parts.some((p, i) => p.kind === 'placeholder' && placeholders.includes(p.name) && pinsSegment(pattern.parts, i));
}

/**
 * Whether the placeholder at `parts[i]` is a whole segment at a fixed position (docs/lint.md,
 * "Self-scoped"), so that one identity supplies exactly one name, its own.
 *
 * Segments are separated by `/` and `:`; a name (service or namespace) holds neither. Whole: the
 * placeholder's neighbours are the pattern's start or end or a literal `/` or `:`, never a `*`, a
 * `**`, another placeholder or more name characters (`{service}*` lets `sa/payment-api` write
 * `payment` and `pay`). Fixed: nothing before it matches a varying number of separators, i.e. no
 * `**` anywhere before it (`**` then `/{service}` lets `sa/x/y/pay` write `pay`), and no `*` before it
 * within its own `/`-separated part (`*` stops at `/` but runs over `:`, so `team:*:{service}` floats).
 */
function pinsSegment(parts: readonly PatternPart[], i: number): boolean {
  const before = parts[i - 1];
  const after = parts[i + 1];
  if (before !== undefined && !(before.kind === 'literal' && /[/:]$/.test(before.text))) return false;
  if (after !== undefined && !(after.kind === 'literal' && /^[/:]/.test(after.text))) return false;
  let samePart = true; // still in the placeholder's own `/`-separated part
  for (let j = i - 1; j >= 0; j--) {
    const part = parts[j]!;
    if (part.kind === 'doubleStar' || (part.kind === 'star' && samePart)) return false;
    if (part.kind === 'literal' && part.text.includes('/')) samePart = false;
  }
  return true;
}

function describeNamespace(ns: NameMatch): string {
  if (ns.kind === 'exact') return `namespace ${q(ns.value)}`;
  return ns.value === '' ? 'every namespace' : `every namespace starting with ${q(ns.value)}`;
}

function checkBroadGrant(rule: LintRule, roles: Map<string, IdentityPattern[]>, out: Diagnostic[]): void {
  if (rule.level !== 'write' && rule.level !== 'admin') return;
  let what: string;
  let placeholders: readonly string[];
  if (rule.type === 'service_prefix' && rule.label.value === '') {
    what = `every service in ${describeNamespace(rule.namespace)}`;
    placeholders = ['service'];
  } else if (rule.type === 'namespace_prefix' && rule.label.value === '') {
    what = 'every namespace and every service in it';
    placeholders = ['namespace', 'service'];
  } else return;
  const broad = rule.identities.filter((i) => !selfScoped(i.pattern, roles, placeholders));
  if (broad.length === 0) return;
  // An identity that has the placeholder, but not as a whole segment at a fixed position: say why it does not count.
  const misplaced = broad.some((i) => hasPlaceholder(i.pattern, roles, placeholders));
  out.push(warning('broad-prefix-grant',
    `\`${rule.type} ""\` grants ${q(rule.level)} on ${what} to ${broad.map((i) => q(i.text.value)).join(', ')}`,
    rule.label.span,
    misplaced
      ? placeholders.length === 1
        ? '`{service}` confines each workload to its own service only as a whole segment at a fixed position, as in `…/sa/{service}`; beside a `*` or after a `**`, a workload also gets services whose names are only part of its own (with `sa/{service}*`, `sa/payment-api` may write `payment`)'
        : '`{namespace}` or `{service}` confines each workload to its own namespace or service only as a whole segment at a fixed position, as in `…/ns/{namespace}/…`; beside a `*` or after a `**`, a workload also gets names that are only part of its own'
      : placeholders.length === 1
        ? 'name the services (an exact `service` block or a prefix such as `"payment-"`), or use `{service}` in the identity so each workload may write only its own service'
        : 'name the namespaces (an exact `namespace` block or a prefix), or use `{namespace}` in the identity so each workload is confined to its own namespace'));
}

function hasPlaceholder(pattern: IdentityPattern, roles: Map<string, IdentityPattern[]>, placeholders: readonly string[]): boolean {
  if (pattern.kind === 'role') return (roles.get(pattern.role) ?? []).some((m) => hasPlaceholder(m, roles, placeholders));
  return pattern.kind === 'glob' && pattern.parts.some((p) => p.kind === 'placeholder' && placeholders.includes(p.name));
}

// ---- wildcard-namespace-grant ------------------------------------------------------------------

/** A pattern many subjects can present: `*`, or a glob with `*`/`**` (for a role: any member). */
function isWildcard(pattern: IdentityPattern, roles: Map<string, IdentityPattern[]>): boolean {
  if (pattern.kind === 'role') return (roles.get(pattern.role) ?? []).some((m) => isWildcard(m, roles));
  return pattern.kind === 'anyAuthenticated' || (pattern.kind === 'glob' && pattern.parts.some((p) => p.kind === 'star' || p.kind === 'doubleStar'));
}

/**
 * A namespace's own `policy = "write"` (or admin) reaches every service in it, like
 * `service_prefix ""` inside it. Granted to a named team that is a deliberate operator grant and
 * not reported; granted to a wildcard (`…/ns/prod/sa/*`), every workload the pattern matches may
 * register or replace any service of the namespace: registry poisoning. `{service}` in the identity
 * confines each workload to its own service (self-scoped, as for broad-prefix-grant).
 * `namespace_prefix ""` is broad-prefix-grant's already.
 */
function checkWildcardNamespaceGrant(rule: LintRule, roles: Map<string, IdentityPattern[]>, out: Diagnostic[]): void {
  if (rule.service !== null || (rule.level !== 'write' && rule.level !== 'admin')) return;
  if (rule.type === 'namespace_prefix' && rule.label.value === '') return;
  const wide = rule.identities.filter((i) => isWildcard(i.pattern, roles) && !selfScoped(i.pattern, roles, ['service']));
  if (wide.length === 0) return;
  out.push(warning('wildcard-namespace-grant',
    `\`${rule.type} ${JSON.stringify(rule.label.value)}\` grants ${q(rule.level)} on every service in ${describeNamespace(rule.namespace)} to ${wide.map((i) => q(i.text.value)).join(', ')}, which any of the workloads it matches can present`,
    rule.label.span,
    'each of them may then register or replace any service there (registry poisoning); grant `write` per service, or use `{service}` in the identity so each workload writes only its own service'));
}

// ---- default-allow, foreign-trust-domain, deny-cidrs-blocks-default ---------------------------

/**
 * Step 3 of the decision: a rule naming the identity and resource keeps the default policy out even
 * when its condition fails. Under a default allow, "deny from 10.0.0.0/8" therefore denies from
 * every address, which is rarely what the author meant.
 */
function checkDenyCidrs(files: readonly PolicyFile[], rules: readonly LintRule[], out: Diagnostic[]): void {
  const settings = settingsBlock(files);
  if (!settings || stringValue(settings, 'default_policy')?.value !== 'allow') return;
  for (const rule of rules) {
    if (rule.level !== 'deny' || rule.cidrKey === null) continue;
    const cidrs = attribute(rule.block, 'cidrs');
    // The networks as written (cidrKey is a sorted comparison key, not for the reader).
    const networks = cidrs?.value.kind === 'list' ? cidrs.value.items.flatMap((i) => (i.kind === 'string' ? [q(i.value)] : [])) : [];
    const from = networks.length ? networks.join(', ') : 'its `cidrs`';
    out.push(warning('deny-cidrs-blocks-default',
      `this deny applies only from ${from}, but as it names its identities on ${q(rule.label.value)} it also keeps \`default_policy = "allow"\` out everywhere else: from any other address they get DENY`,
      cidrs?.span ?? rule.label.span,
      'to let other addresses keep access, grant it in a rule of its own (the deny still wins where it applies); to deny from everywhere, drop `cidrs`'));
  }
}

function checkSettingsAndTrustDomain(files: readonly PolicyFile[], out: Diagnostic[]): void {
  const settings = settingsBlock(files);
  if (!settings) return;
  const defaultPolicy = stringValue(settings, 'default_policy');
  if (defaultPolicy?.value === 'allow') {
    out.push(warning('default-allow', '`default_policy = "allow"` allows every request that no rule names', defaultPolicy.span,
      'an identity no rule mentions may then register or read any service no rule mentions; use `default_policy = "deny"` and grant access explicitly'));
  }
  const trustDomain = stringValue(settings, 'trust_domain')?.value;
  if (trustDomain === undefined || !/^[a-z0-9._-]+$/.test(trustDomain)) return;
  for (const { block, parent } of blocks(files)) {
    const type = block.type.name;
    const applies = isRuleBlock(type) || (!parent && (type === 'role' || type === 'api'));
    if (!applies) continue;
    for (const s of identityStrings(block)) {
      if (!s.value.startsWith('spiffe://') || !parseIdentityPattern(s.value).ok) continue;
      const domain = spiffeTrustDomain(s.value);
      if (domain === undefined || domain === trustDomain) continue;
      out.push(warning('foreign-trust-domain',
        `${q(s.value)} is in trust domain ${q(domain)}, not ${q(trustDomain)} (\`settings.trust_domain\`)`,
        s.span,
        `no workload of \`${trustDomain}\` can present this ID; write \`spiffe://${trustDomain}/…\`, or change \`trust_domain\` if \`${domain}\` is meant`));
    }
  }
}

// ---- anonymous-not-allowed -----------------------------------------------------------------------

/**
 * `anonymous` is the identity of unauthenticated subjects: without `settings { anonymous = true }`
 * a request naming it (or no identity) is refused before any rule is read, so a rule or role that
 * names it grants nothing. Usually the author meant to allow anonymous requests and forgot the setting.
 */
function checkAnonymousNotAllowed(files: readonly PolicyFile[], out: Diagnostic[]): void {
  if (anonymousAllowed(files)) return;
  for (const { block, parent } of blocks(files)) {
    const type = block.type.name;
    if (!isRuleBlock(type) && !(!parent && type === 'role')) continue;
    for (const s of identityStrings(block)) {
      if (s.value !== 'anonymous') continue;
      out.push(warning('anonymous-not-allowed',
        `\`anonymous\` never reaches this ${type === 'role' ? 'role' : 'rule'}: the policy set does not allow anonymous requests`,
        s.span,
        'requests with no identity, or naming `anonymous`, are refused (400); add `settings { anonymous = true }` if unauthenticated subjects are meant to get this access, or remove `anonymous`'));
    }
  }
}

// ---- duplicate-block -----------------------------------------------------------------------------

function valueKey(v: Value): string {
  switch (v.kind) {
    case 'string': return JSON.stringify(v.value);
    case 'number': return String(v.value);
    case 'boolean': return String(v.value);
    case 'list': return `[${v.items.map(valueKey).join(',')}]`;
  }
}

/**
 * Numbers blocks by contents: two blocks get the same number exactly when they have the same type,
 * label, attributes (in any order) and, recursively, the same children (in any order).
 *
 * Why numbers: a block's key names its children by their numbers, not by their whole keys, so each
 * block is serialised once, however deep it sits, and a large namespace block's key stays short.
 */
class ContentIds {
  private readonly ids = new Map<string, number>();
  private readonly memo = new Map<Block, number>();

  of(block: Block): number {
    let id = this.memo.get(block);
    if (id !== undefined) return id;
    const attrs: string[] = [];
    const children: number[] = [];
    for (const item of block.body) {
      if (item.kind === 'attribute') attrs.push(`${item.name.name}=${valueKey(item.value)}`);
      else children.push(this.of(item));
    }
    const key = `${block.type.name} ${block.label ? JSON.stringify(block.label.value) : '-'} {${attrs.sort().join(';')}|${children.sort((a, b) => a - b).join(';')}}`;
    id = this.ids.get(key);
    if (id === undefined) this.ids.set(key, (id = this.ids.size));
    this.memo.set(block, id);
    return id;
  }
}

/** Reports the second and later copies of a block; returns every block so reported (and their children). */
function checkDuplicates(files: readonly PolicyFile[], out: Diagnostic[]): Set<Block> {
  // Candidates first, by type, label and enclosing block: the full contents are compared only
  // between blocks that agree on those (in a large set, most blocks are alone in their group).
  const groups = new Map<string, Block[]>();
  const parents = new Map<Block, Block | null>();
  for (const { block, parent } of blocks(files)) {
    const type = block.type.name;
    // role, test and settings duplicates are errors of the structure pass already.
    if (!isRuleBlock(type) && type !== 'api') continue;
    parents.set(block, parent);
    const context = parent ? `${parent.type.name} ${JSON.stringify(parent.label?.value ?? null)} ` : '';
    const key = `${context}${type} ${JSON.stringify(block.label?.value ?? null)}`;
    const group = groups.get(key);
    if (group) group.push(block);
    else groups.set(key, [block]);
  }
  const reported = new Set<Block>();
  const found: { block: Block; original: Block }[] = [];
  const contentIds = new ContentIds();
  for (const group of groups.values()) {
    if (group.length < 2) continue;
    const first = new Map<number, Block>();
    for (const block of group) {
      const key = contentIds.of(block);
      const original = first.get(key);
      if (original) found.push({ block, original });
      else first.set(key, block);
    }
  }
  // In source order, so that a copy inside a block that is itself a copy is not reported again.
  found.sort((a, b) => cmpSpan(a.block, b.block));
  for (const { block, original } of found) {
    const parent = parents.get(block);
    if (parent && reported.has(parent)) {
      reported.add(block);
      continue;
    }
    reported.add(block);
    const type = block.type.name;
    const name = block.label ? `\`${type} "${block.label.value}"\`` : `\`${type}\``;
    out.push(warning('duplicate-block', `${name} is written twice with the same contents`, block.label?.span ?? block.type.span,
      `the first is at ${at(original)}; remove one`));
  }
  // Children of a reported block are part of the copy.
  for (const block of [...reported]) for (const child of block.body) if (child.kind === 'block') reported.add(child);
  return reported;
}

function cmpSpan(a: Block, b: Block): number {
  return a.span.file < b.span.file ? -1 : a.span.file > b.span.file ? 1 : a.span.start.offset - b.span.start.offset;
}

// ---- dead-grant, redundant-rule ------------------------------------------------------------------

/** Rules grouped by exact scope; each slot keeps, per cidr condition and level, the first rule. */
interface Slot {
  /** cidr key ('' = no cidrs) → level rank → the earliest rule at that level. */
  groups: Map<string, Map<number, LintRule>>;
}

interface Bucket {
  namespaceLevel: Slot | undefined;
  serviceExact: Map<string, Slot>;
  servicePrefix: Map<string, Slot>;
  servicePrefixLengths: Set<number>;
}

/** One identity's rules of one kind (grants or denies), indexed by scope for containment queries. */
class ScopeIndex {
  private readonly namespaceExact = new Map<string, Bucket>();
  private readonly namespacePrefix = new Map<string, Bucket>();
  private readonly namespacePrefixLengths = new Set<number>();

  add(rule: LintRule, rank: number): void {
    let bucket: Bucket | undefined;
    const ns = rule.namespace;
    const buckets = ns.kind === 'exact' ? this.namespaceExact : this.namespacePrefix;
    bucket = buckets.get(ns.value);
    if (!bucket) {
      bucket = { namespaceLevel: undefined, serviceExact: new Map(), servicePrefix: new Map(), servicePrefixLengths: new Set() };
      buckets.set(ns.value, bucket);
      if (ns.kind === 'prefix') this.namespacePrefixLengths.add(ns.value.length);
    }
    let slot: Slot | undefined;
    if (rule.service === null) slot = bucket.namespaceLevel ??= { groups: new Map() };
    else {
      const slots = rule.service.kind === 'exact' ? bucket.serviceExact : bucket.servicePrefix;
      slot = slots.get(rule.service.value);
      if (!slot) {
        slot = { groups: new Map() };
        slots.set(rule.service.value, slot);
        if (rule.service.kind === 'prefix') bucket.servicePrefixLengths.add(rule.service.value.length);
      }
    }
    const cidrKey = rule.cidrKey ?? '';
    let byLevel = slot.groups.get(cidrKey);
    if (!byLevel) slot.groups.set(cidrKey, (byLevel = new Map()));
    if (!byLevel.has(rank)) byLevel.set(rank, rule); // rules are added in index order: keep the first
  }

  /** Every slot whose scope contains `rule`'s scope, each with whether it is exactly that scope. */
  *containing(rule: LintRule): Generator<{ slot: Slot; same: boolean }> {
    const ns = rule.namespace;
    const buckets: { bucket: Bucket; same: boolean }[] = [];
    if (ns.kind === 'exact') {
      const b = this.namespaceExact.get(ns.value);
      if (b) buckets.push({ bucket: b, same: true });
    }
    for (const length of this.namespacePrefixLengths) {
      if (length > ns.value.length) continue;
      const b = this.namespacePrefix.get(ns.value.slice(0, length));
      if (b) buckets.push({ bucket: b, same: ns.kind === 'prefix' && length === ns.value.length });
    }
    for (const { bucket, same } of buckets) {
      if (bucket.namespaceLevel) yield { slot: bucket.namespaceLevel, same: same && rule.service === null };
      const svc = rule.service;
      if (svc === null) continue; // only namespace-level rules contain a namespace-level rule
      if (svc.kind === 'exact') {
        const s = bucket.serviceExact.get(svc.value);
        if (s) yield { slot: s, same };
      }
      for (const length of bucket.servicePrefixLengths) {
        if (length > svc.value.length) continue;
        const s = bucket.servicePrefix.get(svc.value.slice(0, length));
        if (s) yield { slot: s, same: same && svc.kind === 'prefix' && length === svc.value.length };
      }
    }
  }
}

/** Whether an identity pattern can never match the `anonymous` subject (so `*` covers it). */
function neverAnonymous(pattern: IdentityPattern, roles: Map<string, IdentityPattern[]>): boolean {
  switch (pattern.kind) {
    case 'exact': return pattern.value !== 'anonymous';
    case 'anyAuthenticated': return true;
    case 'role': {
      const members = roles.get(pattern.role) ?? [];
      return members.length > 0 && members.every((m) => m.kind !== 'role' && neverAnonymous(m, roles));
    }
    case 'glob': {
      const head = pattern.parts[0];
      return head?.kind === 'literal' && !'anonymous'.startsWith(head.text);
    }
  }
}

/**
 * One identity's rules of one kind, with the ScopeIndex over them built on the first query that
 * needs it. Why lazily: most identities (one per workload) have a single rule, and an index per
 * identity is several maps; building them all made this pass allocation-bound on large sets.
 */
class RulesByIdentity {
  private readonly rules = new Map<string, LintRule[]>();
  private readonly indexes = new Map<string, ScopeIndex>();

  /** Rules must come in index order (the index keeps the first rule per slot and level). */
  add(identity: string, rule: LintRule): void {
    const list = this.rules.get(identity);
    if (!list) this.rules.set(identity, [rule]);
    else if (list[list.length - 1] !== rule) list.push(rule); // an identity listed twice in one rule counts once
  }

  /** The index of `identity`'s rules; undefined when there is no rule but `asking`, which never answers for itself. */
  indexFor(identity: string, asking: LintRule): ScopeIndex | undefined {
    const list = this.rules.get(identity);
    if (!list || (list.length === 1 && list[0] === asking)) return undefined;
    let index = this.indexes.get(identity);
    if (!index) {
      index = new ScopeIndex();
      for (const rule of list) index.add(rule, rankOf(rule.level));
      this.indexes.set(identity, index);
    }
    return index;
  }
}

const rankOf = (level: Level): number => (level === 'deny' ? 0 : GRANT_RANK[level]);

function checkCoverage(rules: LintRule[], roles: Map<string, IdentityPattern[]>, duplicates: Set<Block>, out: Diagnostic[]): void {
  const grants = new RulesByIdentity();
  const denies = new RulesByIdentity();
  for (const rule of rules) {
    const byIdentity = rule.level === 'deny' ? denies : grants;
    for (const { text } of rule.identities) byIdentity.add(text.value, rule);
  }

  for (const rule of rules) {
    if (rule.identities.length === 0) continue;
    // A copy reported as duplicate-block gets no second warning: removing it is the one fix.
    if (duplicates.has(rule.block)) continue;

    // dead-grant: every identity of this grant meets a deny (no cidrs) whose scope contains this one.
    if (rule.level !== 'deny') {
      const killers = new Set<LintRule>();
      const dead = rule.identities.every(({ text, pattern }) => {
        const killer = firstDeny(denies.indexFor(text.value, rule), rule) ?? (neverAnonymous(pattern, roles) ? firstDeny(denies.indexFor('*', rule), rule) : undefined);
        if (killer) killers.add(killer);
        return killer !== undefined;
      });
      if (dead) {
        const by = [...killers].sort((a, b) => a.index - b.index);
        const who = rule.identities.map((i) => q(i.text.value)).join(', ');
        out.push(warning('dead-grant',
          `this ${q(rule.level)} grant to ${who} can never apply: ${by.length === 1 ? 'an explicit deny covers' : 'explicit denies cover'} its whole scope`,
          rule.label.span,
          `an explicit deny overrides every grant (see ${by.map((d) => at(d.block)).join(', ')}); remove this grant, or narrow the deny`));
        continue;
      }
    }

    // redundant-rule: every identity already gets at least this much from a broader (or earlier equal) rule.
    const byIdentity = rule.level === 'deny' ? denies : grants;
    const rank = rankOf(rule.level);
    const covers = new Set<LintRule>();
    const redundant = rule.identities.every(({ text }) => {
      const cover = firstCover(byIdentity.indexFor(text.value, rule), rule, rank);
      if (cover) covers.add(cover);
      return cover !== undefined;
    });
    if (!redundant) continue;
    const by = [...covers].sort((a, b) => a.index - b.index);
    const what = rule.level === 'deny' ? 'denied' : `granted ${q(rule.level)} or more`;
    const who = rule.identities.map((i) => q(i.text.value)).join(', ');
    out.push(warning('redundant-rule',
      `this rule is redundant: ${who} ${rule.identities.length === 1 ? 'is' : 'are'} already ${what} by a rule whose scope contains this one`,
      rule.label.span,
      `${by.map((b) => `\`${b.type} "${b.label.value}"\` at ${at(b.block)}`).join(' and ')} already ${rule.level === 'deny' ? (by.length === 1 ? 'denies' : 'deny') : (by.length === 1 ? 'grants' : 'grant')} it; remove this rule`));
  }
}

function firstDeny(index: ScopeIndex | undefined, rule: LintRule): LintRule | undefined {
  if (!index) return undefined;
  let best: LintRule | undefined;
  for (const { slot } of index.containing(rule)) {
    const d = slot.groups.get('')?.get(0);
    if (d && (!best || d.index < best.index)) best = d;
  }
  return best;
}

/**
 * A rule of the same kind that makes `rule` redundant: its scope contains this one, its level is at
 * least this one's, and its condition holds whenever this one's does (no cidrs, or the same cidrs).
 * Between two rules alike in scope, level and condition, the first covers the second, not both ways.
 */
function firstCover(index: ScopeIndex | undefined, rule: LintRule, rank: number): LintRule | undefined {
  if (!index) return undefined;
  let best: LintRule | undefined;
  const consider = (candidate: LintRule | undefined) => {
    if (candidate && candidate !== rule && (!best || candidate.index < best.index)) best = candidate;
  };
  for (const { slot, same } of index.containing(rule)) {
    const groups = rule.cidrKey === null ? [''] : ['', rule.cidrKey];
    for (const group of groups) {
      const byLevel = slot.groups.get(group);
      if (!byLevel) continue;
      const sameCondition = group === (rule.cidrKey ?? '');
      for (const [level, candidate] of byLevel) {
        if (level < rank) continue;
        // Alike in every way: only an earlier rule covers this one.
        if (same && sameCondition && level === rank && candidate.index >= rule.index) continue;
        consider(candidate);
      }
    }
  }
  return best;
}

// ---- cidr-host-bits ------------------------------------------------------------------------------

/**
 * `10.1.2.3/16` matches as `10.1.0.0/16` (the address bits after the prefix length are dropped);
 * its author meant either that network or the one host, and pdp should not pick the wider silently.
 * Invalid CIDRs are `invalid-cidr` errors of the values pass, not looked at here.
 */
function checkCidrHostBits(rules: readonly LintRule[], out: Diagnostic[]): void {
  for (const rule of rules) {
    const cidrs = attribute(rule.block, 'cidrs')?.value;
    if (cidrs?.kind !== 'list') continue;
    for (const item of cidrs.items) {
      if (item.kind !== 'string') continue;
      const parsed = parseCidrText(item.value);
      if (!parsed.ok) continue;
      const [address, bits] = parsed.cidr;
      const bytes = address.toByteArray();
      const network = bytes.map((byte, i) => byte & (0xff << Math.max(0, Math.min(8, 8 * (i + 1) - bits))) & 0xff);
      if (network.every((byte, i) => byte === bytes[i])) continue;
      const asNetwork = `${ipaddr.fromByteArray(network).toString()}/${bits}`;
      const asHost = `${address.toString()}/${bytes.length * 8}`;
      out.push(warning('cidr-host-bits',
        `${q(item.value)} has host bits set, so it is treated as the network ${q(asNetwork)}`,
        item.span,
        `write ${q(asNetwork)} for the network, or ${q(asHost)} for the one address`));
    }
  }
}

// ---- duplicate-identity --------------------------------------------------------------------------

/**
 * `identities = ["team:f", "team:g", "team:f"]`: harmless to decisions, but usually a copy-paste
 * that stands where another identity was meant. In rules (those linted at all), roles and `api`
 * blocks; identities that do not parse are errors of the values pass and are left out.
 */
function checkDuplicateIdentities(files: readonly PolicyFile[], rules: readonly LintRule[], out: Diagnostic[]): void {
  const holders: Block[] = rules.map((r) => r.block);
  for (const file of files) {
    for (const item of file.body) if (item.kind === 'block' && (item.type.name === 'role' || item.type.name === 'api')) holders.push(item);
  }
  for (const block of holders) {
    const list = attribute(block, 'identities')?.value;
    if (list?.kind !== 'list') continue;
    const first = new Map<string, StringLiteral>();
    for (const item of list.items) {
      if (item.kind !== 'string' || !parseIdentityPattern(item.value).ok) continue;
      const earlier = first.get(item.value);
      if (!earlier) {
        first.set(item.value, item);
        continue;
      }
      out.push(warning('duplicate-identity', `${q(item.value)} is already in this \`identities\` list`, item.span,
        `the first is at line ${earlier.span.start.line}, column ${earlier.span.start.column}; remove this one, or name the identity that was meant`));
    }
  }
}

// ---- test-identity-space -------------------------------------------------------------------------

/**
 * A test's `identity` may hold a space, as a request's may (the server decides `user:Jane Doe`), but
 * no rule, role or `api` block can name it (patterns hold no whitespace): only `*` and globs match
 * it. In a test that is far more often a slip (`"spiffe://cluster/ns/prod/sa/my app"` for `my-app`),
 * so it is said; `pdp test` still runs it. Other whitespace (a no-break or ideographic space) too;
 * controls and invisible characters are `invalid-test` errors of the values pass, left out here.
 */
function checkTestIdentitySpaces(files: readonly PolicyFile[], out: Diagnostic[]): void {
  for (const { block, parent } of blocks(files)) {
    if (parent || block.type.name !== 'test') continue;
    const identity = stringValue(block, 'identity');
    if (!identity || disguisingIdentityCharacter(identity.value)) continue;
    const space = /\s/u.exec(identity.value);
    if (!space) continue;
    out.push(warning('test-identity-space',
      `this test's \`identity\` holds ${describeCharacter(space[0])} at position ${space.index}: no identity pattern can name it, only \`*\` and globs match it`,
      identity.span,
      'probably a typo (identities are written without spaces); `pdp test` runs it as written. If a PEP does send such an identity, acknowledge this with `# pdp:allow test-identity-space -- why`'));
  }
}

/**
 * The embeddings, overrides and isolates of CVE-2021-42574 ("trojan source"): each reorders how the
 * text after it on its line is shown, so a comment or a description can make an editor or a review
 * show code that is not the code pdp reads. (Marks such as U+200F only set the direction of
 * neighbouring characters, and are left alone.) Everywhere else such a character is already an
 * error: in names, levels, identities, CIDRs and settings; only free text can hold one.
 */
const BIDI_CONTROL = /[\u202a-\u202e\u2066-\u2069]/g;

function checkBidiControls(files: readonly PolicyFile[], out: Diagnostic[]): void {
  // One warning per comment or string, at its first such character.
  const report = (text: string, start: Position, file: string, where: string) => {
    const all = [...text.matchAll(BIDI_CONTROL)];
    const m = all[0];
    if (!m) return;
    // A block comment spans lines: the character's own line and column, counted as the lexer does.
    const before = text.slice(0, m.index);
    const breaks = before.split(/\r\n|\r|\n/).length - 1;
    const column = breaks ? before.length - Math.max(before.lastIndexOf('\n'), before.lastIndexOf('\r')) : start.column + m.index;
    const at = { offset: start.offset + m.index, line: start.line + breaks, column };
    const escape = `\\u${m[0].charCodeAt(0).toString(16)}`;
    out.push(warning('bidi-control',
      `this ${where} holds ${describeCharacter(m[0])}${all.length > 1 ? ` and ${all.length - 1} more bidirectional control${all.length > 2 ? 's' : ''}` : ''}, which change${all.length > 1 ? '' : 's'} the order in which the rest of the line is displayed: the policy a review sees can differ from the one pdp reads`,
      { file, start: at, end: { ...at, offset: at.offset + 1, column: at.column + 1 } },
      `remove it; an editor lays out right-to-left text without it (in a string, the escape \`${escape}\` is shown as written)`));
  };
  for (const file of files) {
    for (const c of file.comments) report(c.text, c.span.start, c.span.file, 'comment');
  }
  for (const { block } of blocks(files)) {
    const inner = (s: StringLiteral) => ({ ...s.span.start, offset: s.span.start.offset + 1, column: s.span.start.column + 1 });
    if (block.type.name === 'test' && block.label) report(block.label.raw, inner(block.label), block.label.span.file, 'test name');
    const description = stringValue(block, 'description');
    if (description) report(description.raw, inner(description), description.span.file, 'description');
  }
}
