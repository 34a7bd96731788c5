// Builds the decision table (compile/model.ts DecisionTable) at compile time. Every entry is computed
// with the general matcher (matchingRules) and every verdict with the general decision procedure
// (decide), so a table hit decides exactly as the general path does; the table only moves that work
// from request time to load time. Pure: no I/O, no clock; the result is never mutated afterwards.
import type { DecisionIndex, DecisionTable, IdentityIndex, IdentityMatcher, NamespaceBucket, NamespaceEntry, ResourceEntry, Rule, Settings, TableEntry, Verdict } from '../compile/model';
import { ACTIONS, isValidName } from '../syntax/request';
import { decide, forEachPrefix, identityIndexesFor, matchScope } from './evaluate';
import { resourceKey, type Request } from '../syntax/prepare-request';

// Stand-ins for the two request texts a reason contains; NUL never occurs in the static parts
// (rule files, names, levels), so cutting a reason at them is unambiguous.
const IDENTITY_MARK = '\0identity\0';
const RESOURCE_MARK = '\0resource\0';

/** A resource entry: its named identities' entries inline, then the rest in a Map (see ResourceEntry). */
function resourceEntry(named: readonly (readonly [string, TableEntry])[], others: TableEntry, globs: IdentityIndex | undefined): ResourceEntry {
  return {
    id0: named[0]?.[0], e0: named[0]?.[1],
    id1: named[1]?.[0], e1: named[1]?.[1],
    id2: named[2]?.[0], e2: named[2]?.[1],
    more: named.length > 3 ? new Map(named.slice(3)) : undefined,
    others, globs,
  };
}

/** The identities a resource entry names, in table order (tests and tools; never on the decision path). */
export function namedIdentities(resource: ResourceEntry): string[] {
  const inline = [resource.id0, resource.id1, resource.id2].filter((id): id is string => id !== undefined);
  return [...inline, ...(resource.more?.keys() ?? [])];
}

export function buildDecisionTable(index: DecisionIndex, settings: Settings): DecisionTable {
  const builder = new TableBuilder(settings);
  const resources = new Map<string, ResourceEntry>();
  const namespaces = new Map<string, NamespaceEntry>();

  for (const [namespace, bucket] of index.namespaceExact) {
    // Requests only carry valid names; an invalid label can never be asked about (and could make
    // keys ambiguous), so it stays out of the table.
    if (!isValidName(namespace)) continue;
    resources.set(resourceKey(namespace, undefined), builder.resource(identityIndexesFor(index, namespace, undefined), namespace, undefined));
    for (const service of bucket.serviceExact.keys()) {
      if (isValidName(service)) resources.set(resourceKey(namespace, service), builder.resource(identityIndexesFor(index, namespace, service), namespace, service));
    }

    // Unnamed services: the namespace-level rules of every bucket reaching the namespace, plus the
    // service_prefix rules of this one; possible when no namespace_prefix bucket adds service rules.
    const others: NamespaceBucket[] = [];
    forEachPrefix(index.namespacePrefix, namespace, (b) => { others.push(b); });
    if (others.some((b) => b.serviceExact.size !== 0 || b.servicePrefix.byPrefix.size !== 0)) continue;
    const namespaceLevel = [bucket.namespaceRules, ...others.map((b) => b.namespaceRules)];
    const prefixes = bucket.servicePrefix;
    // The prefix rules a class reaches: its own prefix's prefixes, looked up by length (each of the
    // few lengths once) rather than by testing every prefix of the namespace, which made a namespace
    // of 20,000 `service_prefix` rules take 50 s to load. Kept in the namespace's order, as before.
    const order = new Map([...prefixes.byPrefix.keys()].map((p, i) => [p, i]));
    const classScope = (prefix: string) => {
      const reached: string[] = [];
      for (const length of prefixes.lengths) {
        if (length <= prefix.length && order.has(prefix.slice(0, length))) reached.push(prefix.slice(0, length));
      }
      reached.sort((a, b) => order.get(a)! - order.get(b)!);
      return [...namespaceLevel, ...reached.map((p) => prefixes.byPrefix.get(p)!)];
    };
    // A `{service}` glob makes an exact identity's M depend on the service name, not just the class.
    const scopes = [namespaceLevel, ...[...prefixes.byPrefix.keys()].map(classScope)];
    if (scopes.some((scope) => scope.some((ids) => [...ids.globs.values()].some((g) => g.matcher.usesService)))) continue;
    const byPrefix = new Map<string, ResourceEntry>();
    for (const prefix of prefixes.byPrefix.keys()) byPrefix.set(prefix, builder.resource(classScope(prefix), namespace, undefined));
    namespaces.set(namespace, { lengths: prefixes.lengths, byPrefix, rest: builder.resource(namespaceLevel, namespace, undefined) });
  }
  return packed({ resources, namespaces, none: builder.entry([]) });
}

/**
 * The table once more, every object and text a decision reads copied in the order a decision reads
 * them: a resource's key, its entry, the identity texts it names, their entries and verdicts and the
 * verdicts' texts end up next to each other in memory. Built as it is, the table's objects lie
 * scattered over a heap that holds the whole policy set (hundreds of MB at 100,000 rules), so each
 * decision touched a page of its own for every object and the CPU's address translation missed on
 * most of them; packed, evaluate at 100,000 rules measured ~30 % faster (docs/engine.md). Shared
 * objects stay shared (copied once, where first reached); the rule lists and glob indexes are not
 * copied (a table hit does not read them).
 */
function packed(table: DecisionTable): DecisionTable {
  // One Map per kind: a Map keyed by strings and objects together measured several times slower.
  const once = <T>(copies: Map<T, T>, value: T, copy: (v: T) => T): T => {
    let out = copies.get(value);
    if (out === undefined) copies.set(value, out = copy(value));
    return out;
  };
  const texts = new Map<string, string>();
  const verdicts = new Map<Verdict, Verdict>();
  const entries = new Map<TableEntry, TableEntry>();
  const resourceCopies = new Map<ResourceEntry, ResourceEntry>();
  // A fresh flat string, allocated here (the JSON round trip is exact for any string).
  const text = (t: string) => once(texts, t, (v) => JSON.parse(JSON.stringify(v)) as string);
  const maybeText = (t: string | undefined) => (t === undefined ? t : text(t));
  const verdict = (v: Verdict | undefined) => (v === undefined ? v : once(verdicts, v, (x) => ({
    result: x.result, allow: x.allow, rule: x.rule, before: text(x.before), middle: text(x.middle), after: text(x.after),
  })));
  const entry = (e: TableEntry) => once(entries, e, (x) => ({ rules: x.rules, read: verdict(x.read), write: verdict(x.write), admin: verdict(x.admin) }));
  const maybeEntry = (e: TableEntry | undefined) => (e === undefined ? e : entry(e));
  const resource = (r: ResourceEntry) => once(resourceCopies, r, (x) => ({
    id0: maybeText(x.id0), e0: maybeEntry(x.e0), id1: maybeText(x.id1), e1: maybeEntry(x.e1), id2: maybeText(x.id2), e2: maybeEntry(x.e2),
    more: x.more, others: entry(x.others), globs: x.globs,
  }));
  const resources = new Map<string, ResourceEntry>();
  for (const [key, r] of table.resources) resources.set(text(key), resource(r));
  const namespaces = new Map<string, NamespaceEntry>();
  for (const [key, ns] of table.namespaces) {
    namespaces.set(key, { lengths: ns.lengths, byPrefix: new Map([...ns.byPrefix].map(([p, r]) => [p, resource(r)])), rest: resource(ns.rest) });
  }
  return { resources, namespaces, none: entry(table.none) };
}

/** The `*` rules and globs of every identity index in a scope, merged (no exact patterns). */
function fallbackIndex(scope: IdentityIndex[]): IdentityIndex {
  const anyAuthenticated = new Set<Rule>();
  const globs = new Map<string, { matcher: IdentityMatcher; rules: Rule[] }>();
  for (const ids of scope) {
    for (const rule of ids.anyAuthenticated) anyAuthenticated.add(rule);
    for (const [source, glob] of ids.globs) {
      const merged = globs.get(source);
      if (merged === undefined) globs.set(source, { matcher: glob.matcher, rules: [...glob.rules] });
      else for (const rule of glob.rules) merged.rules.push(rule);
    }
  }
  return { exact: new Map(), anyAuthenticated: [...anyAuthenticated], globs };
}

/** Interns entries, verdicts and reason texts, so triples with the same M share one entry (memory). */
class TableBuilder {
  private readonly entries = new Map<string, TableEntry>();
  private readonly verdicts = new Map<string, Verdict>();
  private readonly texts = new Map<string, string>();
  private readonly shared = new Map<TableEntry, ResourceEntry>();

  constructor(private readonly settings: Settings) {}

  /** The entry of a resource (service undefined: the namespace itself, or a class of services without `{service}` globs). */
  resource(scope: IdentityIndex[], namespace: string, service: string | undefined): ResourceEntry {
    const identities = new Set<string>();
    for (const ids of scope) for (const identity of ids.exact.keys()) identities.add(identity);
    // The general matcher, one identity index at a time, as matchingRules does for a request.
    const named = [...identities].map((identity) => [identity, this.entry(matchScope(scope, identity, service, namespace))] as const);
    // Any other identity: no exact pattern in scope names it, so only `*` and globs can match it.
    const fallback = fallbackIndex(scope);
    if (fallback.globs.size !== 0) return resourceEntry(named, this.entry([]), fallback);
    const others = this.entry(fallback.anyAuthenticated);
    if (named.length !== 0) return resourceEntry(named, others, undefined);
    // Resources named only through globs-free, exact-free scopes share one entry per `*` set.
    let shared = this.shared.get(others);
    if (shared === undefined) this.shared.set(others, shared = resourceEntry([], others, undefined));
    return shared;
  }

  entry(matched: Rule[]): TableEntry {
    const rules = [...matched].sort((a, b) => a.order - b.order);
    const key = rules.map((r) => r.index).join(',');
    let entry = this.entries.get(key);
    if (entry === undefined) {
      // With cidrs the source address can change the decision: decided per request.
      const verdicts = rules.some((r) => r.cidrs !== null) ? undefined : this.verdictsFor(rules);
      this.entries.set(key, entry = { rules, read: verdicts?.[0], write: verdicts?.[1], admin: verdicts?.[2] });
    }
    return entry;
  }

  /** One verdict per action, cut from the general procedure's decision for a stand-in request. */
  private verdictsFor(rules: Rule[]): Verdict[] | undefined {
    const out = new Array<Verdict>(ACTIONS.length); // exact size: one per action (memory)
    for (const [i, action] of ACTIONS.entries()) {
      const probe = { action, rank: i + 1, resourceText: RESOURCE_MARK, sourceIp: undefined, sourceAddress: undefined } as Request;
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
      out[i] = verdict;
    }
    return out;
  }

  private text(t: string): string {
    const known = this.texts.get(t);
    if (known !== undefined) return known;
    // A fresh flat copy: a slice of the probe's reason would keep that whole string alive (memory).
    const own = JSON.parse(JSON.stringify(t)) as string;
    this.texts.set(own, own);
    return own;
  }
}
