// The compiled form of a policy set: rules with resolved scope, the decision index, and the
// non-rule blocks (settings, api grants, tests). Pure data; built by compile, read by eval.
import type { Span } from '../diagnostics';
import type { ApiScope, RuleBlockType } from '../check/schema';
import type { Action, DecisionResult, IdentityPattern, Level, ParsedCidr } from '../syntax';

export interface NameMatch {
  kind: 'exact' | 'prefix';
  value: string;
}

export interface Rule {
  /** Position in the policy set (files in sorted order, then source order): the last tie-breaker. */
  index: number;
  file: string;
  line: number;
  column: number;
  span: Span;
  blockType: RuleBlockType;
  /** `service "x"` etc., for explanations. */
  label: string;
  namespace: NameMatch;
  /** null: a namespace-level rule (grants on the namespace and every service in it). */
  service: NameMatch | null;
  level: Level;
  /** As written (roles not expanded). */
  identities: IdentityPattern[];
  cidrs: ParsedCidr[] | null;
  cidrTexts: string[] | null;
  description?: string;
  /** Lower is more specific: exact service > longest service_prefix > exact namespace > longest namespace_prefix. */
  specificity: number[];
  /** The position of this rule when all rules are sorted by specificity, then source order: one number to compare. */
  order: number;
  /** 0 for deny, else read 1 < write 2 < admin 3. */
  rank: number;
  /** `{file, line}` as decisions cite it; shared, never mutated. */
  ref: Readonly<{ file: string; line: number }>;
  /** `service "x" at file:line`, for reasons. */
  citation: string;
}

/** Matches one identity pattern (roles already expanded) against a request identity. */
export interface IdentityMatcher {
  source: string;
  /** Whether the pattern has a `{service}` placeholder (its match then depends on the requested service). */
  usesService: boolean;
  /** Substitutions for `{service}` / `{namespace}`; `service` is undefined for namespace resources. */
  test(identity: string, service: string | undefined, namespace: string): boolean;
}

export interface IdentityIndex {
  exact: Map<string, Rule[]>;
  /** Rules with `*` alone: every authenticated identity. */
  anyAuthenticated: Rule[];
  /** Keyed by pattern source, so rules sharing a pattern share one match. */
  globs: Map<string, { matcher: IdentityMatcher; rules: Rule[] }>;
}

export interface PrefixMap<T> {
  /** Distinct prefix lengths, longest first. */
  lengths: number[];
  byPrefix: Map<string, T>;
}

export interface NamespaceBucket {
  namespaceRules: IdentityIndex;
  serviceExact: Map<string, IdentityIndex>;
  servicePrefix: PrefixMap<IdentityIndex>;
}

export interface DecisionIndex {
  namespaceExact: Map<string, NamespaceBucket>;
  namespacePrefix: PrefixMap<NamespaceBucket>;
}

/**
 * A decision prepared at compile time for one action on one table entry: everything but the two
 * request texts. The reason is `before + identity + middle + resourceText + after`, byte-identical
 * to what the general decision procedure writes (it is cut from that procedure's own output).
 */
export interface Verdict {
  result: DecisionResult;
  allow: boolean;
  /** The rule the decision cites (shared, frozen), or null for the default policy. */
  rule: Readonly<{ file: string; line: number }> | null;
  before: string;
  middle: string;
  after: string;
}

/** The matched-rule set M of one (resource, identity) pair, computed at compile time. */
export interface TableEntry {
  /** M, most specific first. */
  rules: Rule[];
  /**
   * The verdict per action; all three undefined when a rule in M has cidrs (the source address
   * decides). Fields, not an array: one dependent load less per decision, which counts when the
   * table no longer fits the CPU caches (100,000 rules).
   */
  read: Verdict | undefined;
  write: Verdict | undefined;
  admin: Verdict | undefined;
}

/** A resource (or a class of resources) whose scope, the rules reaching it, is fixed. */
export interface ResourceEntry {
  /**
   * Every identity an exact pattern in scope names → its M. The first three pairs are fields of the
   * entry and only the rest are in `more`: most resources name one to three identities, and a Map is
   * two more objects to reach, which at 100,000 rules (a table far larger than the CPU caches) costs
   * two more cache misses per decision (evaluate measured ~250 → ~150 ns there; docs/engine.md).
   */
  id0: string | undefined;
  e0: TableEntry | undefined;
  id1: string | undefined;
  e1: TableEntry | undefined;
  id2: string | undefined;
  e2: TableEntry | undefined;
  more: ReadonlyMap<string, TableEntry> | undefined;
  /** M for every other authenticated identity when no glob is in scope: the `*` rules (maybe none). */
  others: TableEntry;
  /** When a glob is in scope: the `*` rules and globs (exact map empty), matched per request. */
  globs: IdentityIndex | undefined;
}

/**
 * The services of an exact namespace that the policy does not name exactly: which rules reach one
 * depends only on the longest `service_prefix` it matches. Only built where that holds with the
 * identity alone (no `namespace_prefix` block adds service rules, no `{service}` glob is in scope).
 */
export interface NamespaceEntry {
  /** Distinct `service_prefix` lengths in the namespace, longest first. */
  lengths: number[];
  byPrefix: Map<string, ResourceEntry>;
  /** Matching no prefix: the namespace-level rules only. */
  rest: ResourceEntry;
}

/**
 * M depends only on (namespace, service, identity). For every resource the policy names exactly
 * (an exact service in an exact namespace, or an exact namespace itself), and for every class of
 * unnamed services in an exact namespace, M is computed once per identity named by an exact pattern
 * reaching it (with the general matcher), together with its decisions; a request is then two Map.gets
 * with short keys. Anything else takes the general path over `index`.
 */
export interface DecisionTable {
  /** Keyed by `resourceKey` (syntax/prepare-request.ts). */
  resources: Map<string, ResourceEntry>;
  namespaces: Map<string, NamespaceEntry>;
  /** M = ∅: the default policy's decisions. */
  none: TableEntry;
}

export interface Settings {
  defaultPolicy: 'deny' | 'allow';
  anonymous: boolean;
  trustDomain?: string;
}

export interface PolicyTest {
  name: string;
  file: string;
  line: number;
  identity?: string;
  action: Action;
  resource: string;
  namespace?: string;
  sourceIp?: string;
  expect: DecisionResult;
}

export interface CompiledPolicy {
  rules: Rule[];
  index: DecisionIndex;
  /**
   * The precomputed fast path over `index` (same decisions). Built from the compiled index by
   * eval's `buildDecisionTable` (it runs the decision procedure), which the engine adds; without it
   * `evaluate` walks the index.
   */
  table?: DecisionTable;
  settings: Settings;
  /** Role name → member patterns. */
  roles: Map<string, IdentityPattern[]>;
  /** Who may call each part of the PDP's own API (roles expanded). */
  api: Record<ApiScope, IdentityMatcher[]>;
  tests: PolicyTest[];
  /** Exact service names declared with an exact namespace (for the audit store's `allowed_services`). */
  declaredServices: { name: string; namespace: string }[];
  /** Whether any rule has `cidrs`, i.e. whether the source address can change a decision. */
  usesCidrs: boolean;
}
