// Builds the decision table (compile/model.ts DecisionTable) at compile time. Every entry is computed
// with the general matcher (matchingRules) and every verdict with the general decision procedure
// (decide), so a table hit decides exactly as the general path does; the table only moves that work
// from request time to load time. Pure: no I/O, no clock; the result is never mutated afterwards.
import type { DecisionIndex, DecisionTable, IdentityIndex, IdentityMatcher, ResourceEntry, Rule, Settings, TableEntry, Verdict } from '../compile/model';
import { ACTIONS, isValidName } from '../syntax/request';
import { decide, identityIndexesFor, matchingRules } from './evaluate';
import { resourceKey, tripleKey, type Request } from './request';

// Stand-ins for the two request texts a reason contains; NUL never occurs in the static parts
// (rule files, names, levels), so cutting a reason at them is unambiguous.
const IDENTITY_MARK = '\0identity\0';
const RESOURCE_MARK = '\0resource\0';

export function buildDecisionTable(index: DecisionIndex, settings: Settings): DecisionTable {
  const builder = new TableBuilder(settings);
  const none = builder.entry([]);
  const triples = new Map<string, TableEntry>();
  const resources = new Map<string, ResourceEntry>();
  const noGlobs = new Map<TableEntry, ResourceEntry>(); // resources without globs share their entry

  for (const [namespace, bucket] of index.namespaceExact) {
    // Requests can only name valid names; an invalid label can never be asked about (and could
    // make keys ambiguous), so it stays on the general path.
    if (!isValidName(namespace)) continue;
    const services: (string | undefined)[] = [undefined, ...[...bucket.serviceExact.keys()].filter(isValidName)];
    for (const service of services) {
      const scope = identityIndexesFor(index, namespace, service);
      const rKey = resourceKey(namespace, service);
      const identities = new Set<string>();
      for (const ids of scope) for (const identity of ids.exact.keys()) identities.add(identity);
      for (const identity of identities) {
        triples.set(tripleKey(rKey, identity), builder.entry(matchingRules(index, { namespace, service }, identity)));
      }
      // Any other identity: no exact pattern reaching the resource names it, so only `*` and globs can.
      const others = fallbackIndex(scope);
      if (others.globs.size !== 0) {
        resources.set(rKey, { authenticated: none, globs: others });
      } else {
        const authenticated = builder.entry(others.anyAuthenticated);
        let entry = noGlobs.get(authenticated);
        if (entry === undefined) noGlobs.set(authenticated, entry = { authenticated, globs: undefined });
        resources.set(rKey, entry);
      }
    }
  }
  return { triples, resources, none };
}

/** The `*` rules and globs of every identity index reaching a resource, merged (no exact patterns). */
function fallbackIndex(scope: IdentityIndex[]): IdentityIndex {
  const anyAuthenticated = new Set<Rule>();
  const globs = new Map<string, { matcher: IdentityMatcher; rules: Rule[] }>();
  for (const ids of scope) {
    for (const rule of ids.anyAuthenticated) anyAuthenticated.add(rule);
    for (const [source, glob] of ids.globs) {
      const merged = globs.get(source);
      if (merged === undefined) globs.set(source, { matcher: glob.matcher, rules: [...glob.rules] });
      else merged.rules.push(...glob.rules);
    }
  }
  return { exact: new Map(), anyAuthenticated: [...anyAuthenticated], globs };
}

/** Interns entries, verdicts and reason texts, so triples with the same M share one entry (memory). */
class TableBuilder {
  private readonly entries = new Map<string, TableEntry>();
  private readonly verdicts = new Map<string, Verdict>();
  private readonly texts = new Map<string, string>();

  constructor(private readonly settings: Settings) {}

  entry(matched: Rule[]): TableEntry {
    const rules = [...matched].sort((a, b) => a.order - b.order);
    const key = rules.map((r) => r.index).join(',');
    let entry = this.entries.get(key);
    if (entry === undefined) {
      // With cidrs the source address can change the decision: decided per request.
      const verdicts = rules.some((r) => r.cidrs !== null) ? undefined : this.verdictsFor(rules);
      this.entries.set(key, entry = { rules, verdicts });
    }
    return entry;
  }

  /** One verdict per action, cut from the general procedure's decision for a stand-in request. */
  private verdictsFor(rules: Rule[]): Verdict[] | undefined {
    const out: Verdict[] = [];
    for (const action of ACTIONS) {
      const probe = { action, rank: out.length + 1, resourceText: RESOURCE_MARK, sourceIp: undefined, sourceAddress: undefined } as Request;
      const cited: { rule?: Rule } = {};
      const decision = decide({ settings: this.settings }, probe, IDENTITY_MARK, rules, cited);
      const [before, rest, ...extra1] = decision.reason.split(IDENTITY_MARK);
      const [middle, after, ...extra2] = (rest ?? '').split(RESOURCE_MARK);
      // Every reason without cidrs names the identity, then the resource, once each; should one
      // ever not, the entry is simply decided per request.
      if (rest === undefined || after === undefined || extra1.length || extra2.length || before!.includes(RESOURCE_MARK)) return undefined;
      const parts = [before!, middle!, after].map((t) => this.text(t));
      const key = `${decision.result}\0${cited.rule?.index ?? -1}\0${parts.join('\0')}`;
      let verdict = this.verdicts.get(key);
      if (verdict === undefined) {
        verdict = { result: decision.result, allow: decision.allow, rule: decision.rule, before: parts[0]!, middle: parts[1]!, after: parts[2]! };
        this.verdicts.set(key, verdict);
      }
      out.push(verdict);
    }
    return out;
  }

  private text(t: string): string {
    const known = this.texts.get(t);
    if (known !== undefined) return known;
    this.texts.set(t, t);
    return t;
  }
}
