// Rule coverage of a policy set's tests (`pdp test --coverage`): which rules decided at least one
// test. Pure: the caller runs the tests and hands in the rule each decision cites.
import type { Rule } from '../compile';
import type { RuleRef } from '../eval';

export interface RuleCoverage {
  /** Rules that decided at least one of the decisions handed in. */
  covered: number;
  /** Every rule of the set: one per block with a `policy` (docs/policy-language.md). */
  total: number;
  /** The rules that decided none of them, in the order given (compile's: files sorted, then source order). */
  uncovered: Rule[];
}

/**
 * A rule is covered when some decision cites it (`decision.rule`): the grant that allowed, the deny
 * that denied, or the rule a denial names (a grant too low for the action, or one whose `cidrs` the
 * source address is outside). A decision of the default policy (`null`) cites no rule and covers none.
 */
export function ruleCoverage(rules: readonly Rule[], cited: Iterable<RuleRef | null>): RuleCoverage {
  // Matched by location, the form a decision cites (two blocks starting on one line are one location).
  const at = (ref: RuleRef) => `${ref.file}\0${ref.line}`;
  const hit = new Set<string>();
  for (const ref of cited) if (ref !== null) hit.add(at(ref));
  const uncovered = rules.filter((r) => !hit.has(at(r)));
  return { covered: rules.length - uncovered.length, total: rules.length, uncovered };
}
