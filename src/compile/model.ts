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
