// The engine facade: reads a policy set, runs parse → check → compile, owns the active version,
// and answers decisions. The server and the CLI go through this door only.
import { createHash } from 'node:crypto';
import { ERROR_PASSES, PASSES, checkPolicySetAcknowledging, type Acknowledged } from '../check';
import type { ApiScope } from '../check/schema';
import { compilePolicySet, type CompiledPolicy, type Rule } from '../compile';
import { hasErrors, sortDiagnostics, type Diagnostic } from '../diagnostics';
import { buildDecisionTable, namespaceMixupNote, type Decision, type RawRequest, type Request, type RequestError } from '../eval';
// decideWith runs per decision: its callees come from their defining modules, not the barrels (a
// re-exported binding is a getter call per use in CommonJS output).
import { evaluate } from '../eval/evaluate';
import { anonymousRefusal, prepareRequest, subjectIdentity } from '../syntax/prepare-request';
import { parsePolicy, type PolicyFile } from '../syntax';
import { errnoText, readPolicyDir, type PolicySource } from './files';

export { ruleCoverage, type RuleCoverage } from './coverage';
export { decodePolicyBytes, errnoText, errnoWords, listPolicyFiles, readPolicyDir, readPolicyFile, type ListedFile, type PolicySource } from './files';


export interface LoadedPolicy {
  version: string;
  compiled: CompiledPolicy;
  files: { path: string; sha256: string; rules: number }[];
  ruleCount: number;
  loadedAt: Date;
  loadMs: number;
}

export interface BuildResult {
  diagnostics: Diagnostic[];
  /** Absent when any error was found: a broken set is never compiled. */
  policy?: LoadedPolicy;
  /** Parsed files (also for broken sets), for tools such as lint and fmt. */
  files: PolicyFile[];
  /** Lint warnings acknowledged by `# pdp:allow CODE -- why` comments (only with `lint: true`). */
  acknowledged?: Acknowledged[];
}

export function policyVersion(sources: readonly PolicySource[]): string {
  const hash = createHash('sha256');
  for (const s of sources) hash.update(`${s.path}\0${s.text}\0`);
  return `sha256:${hash.digest('hex')}`;
}

export interface BuildOptions {
  /** Run the lint pass too (warnings); `pdp check` does, serving does not need to. */
  lint?: boolean;
  /**
   * Keep the `test` blocks (default). The server and `pdp eval` pass false: the spec says test blocks
   * are "ignored by the server", so a mistake in a unit test (checked by `pdp check` and `pdp test`)
   * never keeps a policy set from serving. A syntax error anywhere still does: the file cannot be read.
   */
  tests?: boolean;
  now?: () => number;
}

const withoutTests = (file: PolicyFile): PolicyFile =>
  file.body.some((item) => item.kind === 'block' && item.type.name === 'test')
    ? { ...file, body: file.body.filter((item) => !(item.kind === 'block' && item.type.name === 'test')) }
    : file;

/** The compiled policy with eval's decision table over its index (docs/engine.md). */
function withDecisionTable(compiled: CompiledPolicy): CompiledPolicy {
  return { ...compiled, table: buildDecisionTable(compiled.index, compiled.settings) };
}

/** Parse, check and compile. Pure but for the clock readings passed in. */
export function buildPolicySet(sources: readonly PolicySource[], options: BuildOptions = {}): BuildResult {
  const now = options.now ?? Date.now;
  const started = now();
  const files: PolicyFile[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const source of sources) {
    // An unreadable or mis-encoded file refuses the set with its reason; its text is not parsed.
    if (source.problem) {
      diagnostics.push(source.problem);
      continue;
    }
    const parsed = parsePolicy(source.text, source.path);
    files.push(options.tests === false ? withoutTests(parsed.file) : parsed.file);
    for (const d of parsed.diagnostics) diagnostics.push(d);
  }
  const checked = checkPolicySetAcknowledging(files, options.lint ? PASSES : ERROR_PASSES);
  for (const d of checked.diagnostics) diagnostics.push(d);
  const sorted = sortDiagnostics(diagnostics);
  const acknowledged = checked.acknowledged.length > 0 ? { acknowledged: checked.acknowledged } : {};
  if (hasErrors(sorted)) return { diagnostics: sorted, files, ...acknowledged };
  const compiled = withDecisionTable(compilePolicySet(files));
  const perFile = new Map<string, number>();
  for (const rule of compiled.rules) perFile.set(rule.file, (perFile.get(rule.file) ?? 0) + 1);
  const finished = now();
  return {
    diagnostics: sorted,
    files,
    ...acknowledged,
    policy: {
      version: policyVersion(sources),
      compiled,
      files: sources.map((s) => ({ path: s.path, sha256: createHash('sha256').update(s.text).digest('hex'), rules: perFile.get(s.path) ?? 0 })),
      ruleCount: compiled.rules.length,
      loadedAt: new Date(finished),
      loadMs: finished - started,
    },
  };
}

export type DecideResult =
  | { ok: true; decision: Decision; identity: string; request: Request; version: string }
  | { ok: false; error: RequestError };

/** Applies `settings.anonymous` and evaluates. */
export function decideWith(policy: LoadedPolicy, raw: RawRequest, options: { explain?: boolean } = {}): DecideResult {
  const prepared = prepareRequest(raw);
  if (!prepared.ok) return prepared;
  const request = prepared.request;
  const identity = subjectIdentity(request.identity, policy.compiled.settings.anonymous);
  if (identity === undefined) return { ok: false, error: anonymousRefusal(request.identity) };
  return { ok: true, decision: evaluate(policy.compiled, request, identity, options), identity, request, version: policy.version };
}

/**
 * For a decision the default policy made: a note naming the rules written for the request's service
 * in other namespaces, if any (`pdp eval`, `pdp test`), since that is the usual reason.
 */
export function defaultDecisionNote(policy: LoadedPolicy, decided: { decision: Decision; request: Request }): string | undefined {
  return decided.decision.rule === null ? namespaceMixupNote(policy.compiled, decided.request) : undefined;
}

/** A rule's meaning without its position, so moving text around is not reported as a change. */
export function ruleFingerprint(rule: Rule): string {
  const scope = `${rule.namespace.kind}:${rule.namespace.value}/${rule.service ? `${rule.service.kind}:${rule.service.value}` : '*'}`;
  return `${scope} ${rule.level} [${rule.identities.map((i) => i.source).join(',')}]${rule.cidrTexts ? ` cidrs=[${rule.cidrTexts.join(',')}]` : ''}`;
}

/**
 * A rule in one line, as a reload's diff and `pdp test --coverage` list it: block and label, level,
 * identities as written (roles not expanded) and cidrs (`service "pay" read team:a from 10.0.0.0/8`).
 */
export function describeRule(rule: Rule): string {
  return `${rule.label} ${rule.level} ${rule.identities.map((i) => i.source).join(', ')}${rule.cidrTexts ? ` from ${rule.cidrTexts.join(', ')}` : ''}`;
}

export interface RuleChange {
  rule: string;
  at: string;
}

/** A role whose members changed (a new role: all `added`; a role gone: all `removed`). */
export interface RoleChange {
  role: string;
  added: string[];
  removed: string[];
}

/** An `api` grant whose identities changed (roles expanded, so a role's new member shows here too). */
export interface ApiGrantChange {
  api: ApiScope;
  added: string[];
  removed: string[];
}

/** A `settings` value that changed (`null`: not set). */
export interface SettingChange {
  setting: 'default_policy' | 'anonymous' | 'trust_domain';
  from: string | boolean | null;
  to: string | boolean | null;
}

/**
 * What a reload changes in who may do what: rules, but also role members, `api` grants and settings,
 * each of which can grant access without any rule line changing.
 */
export interface PolicyDiff {
  added: RuleChange[];
  removed: RuleChange[];
  roles: RoleChange[];
  api: ApiGrantChange[];
  settings: SettingChange[];
}

/** Members of `after` not in `before`, and the reverse, each in its own order. */
function listDiff(before: readonly string[], after: readonly string[]): { added: string[]; removed: string[] } {
  const old = new Set(before);
  const neu = new Set(after);
  return { added: after.filter((x) => !old.has(x)), removed: before.filter((x) => !neu.has(x)) };
}

export function diffPolicies(before: CompiledPolicy | undefined, after: CompiledPolicy): PolicyDiff {
  const count = (rules: Rule[]) => {
    const m = new Map<string, Rule[]>();
    for (const r of rules) {
      const key = ruleFingerprint(r);
      const list = m.get(key);
      if (list) list.push(r);
      else m.set(key, [r]);
    }
    return m;
  };
  const old = count(before?.rules ?? []);
  const neu = count(after.rules);
  const describe = (r: Rule): RuleChange => ({ rule: describeRule(r), at: `${r.file}:${r.line}` });
  const added: RuleChange[] = [];
  const removed: RuleChange[] = [];
  for (const [key, rules] of neu) for (const r of rules.slice(old.get(key)?.length ?? 0)) added.push(describe(r));
  for (const [key, rules] of old) for (const r of rules.slice(neu.get(key)?.length ?? 0)) removed.push(describe(r));

  const roles: RoleChange[] = [];
  const roleNames = [...new Set([...(before?.roles.keys() ?? []), ...after.roles.keys()])].sort();
  for (const role of roleNames) {
    const change = listDiff((before?.roles.get(role) ?? []).map((p) => p.source), (after.roles.get(role) ?? []).map((p) => p.source));
    if (change.added.length > 0 || change.removed.length > 0) roles.push({ role, ...change });
  }
  const api: ApiGrantChange[] = [];
  for (const scope of Object.keys(after.api).sort() as ApiScope[]) {
    const change = listDiff((before?.api[scope] ?? []).map((m) => m.source), after.api[scope].map((m) => m.source));
    if (change.added.length > 0 || change.removed.length > 0) api.push({ api: scope, ...change });
  }
  const settings: SettingChange[] = [];
  const setting = (name: SettingChange['setting'], from: string | boolean | undefined, to: string | boolean | undefined) => {
    if (from !== to) settings.push({ setting: name, from: from ?? null, to: to ?? null });
  };
  if (before) {
    setting('default_policy', before.settings.defaultPolicy, after.settings.defaultPolicy);
    setting('anonymous', before.settings.anonymous, after.settings.anonymous);
    setting('trust_domain', before.settings.trustDomain, after.settings.trustDomain);
  }
  return { added, removed, roles, api, settings };
}

export type ReloadResult =
  | { ok: true; changed: boolean; previous: string | undefined; policy: LoadedPolicy; diff: PolicyDiff; diagnostics: Diagnostic[] }
  | { ok: false; diagnostics: Diagnostic[]; previous: string | undefined; error?: string };

/**
 * Owns the active policy version. A reload builds the new set to the side and swaps it in with one
 * assignment; a set with errors never replaces a good one.
 */
export class Engine {
  private active: LoadedPolicy | undefined;
  private generation = 0;

  constructor(private readonly policyDir: string, private readonly now: () => number = Date.now) {}

  get directory(): string {
    return this.policyDir;
  }

  current(): LoadedPolicy | undefined {
    return this.active;
  }

  /** Bumped on every successful swap; lets caches key on something cheaper than the version string. */
  currentGeneration(): number {
    return this.generation;
  }

  /**
   * Reads and builds the directory to the side; the active version is untouched. `read` is the
   * directory's files when the caller has just read them (serve at start, which words a directory it
   * cannot read as every command does).
   */
  build(read?: PolicySource[]): { ok: true; policy: LoadedPolicy; diagnostics: Diagnostic[] } | { ok: false; diagnostics: Diagnostic[]; error?: string } {
    let sources: PolicySource[];
    try {
      sources = read ?? readPolicyDir(this.policyDir);
    } catch (e) {
      return { ok: false, diagnostics: [], error: `cannot read policy directory \`${this.policyDir}\`: ${errnoText(e)}` };
    }
    if (sources.length === 0) return { ok: false, diagnostics: [], error: `no \`*.hcl\` files in \`${this.policyDir}\`` };
    const built = buildPolicySet(sources, { now: this.now, tests: false });
    return built.policy ? { ok: true, policy: built.policy, diagnostics: built.diagnostics } : { ok: false, diagnostics: built.diagnostics };
  }

  /** Swaps in a built policy with one assignment. */
  activate(policy: LoadedPolicy): void {
    this.active = policy;
    this.generation++;
  }

  /** build() then activate() when it succeeded and changed something. */
  reload(): ReloadResult {
    const previous = this.active?.version;
    const built = this.build();
    if (!built.ok) return { ok: false, diagnostics: built.diagnostics, previous, ...(built.error ? { error: built.error } : {}) };
    if (previous === built.policy.version) return { ok: true, changed: false, previous, policy: this.active!, diff: { added: [], removed: [], roles: [], api: [], settings: [] }, diagnostics: built.diagnostics };
    const diff = diffPolicies(this.active?.compiled, built.policy.compiled);
    this.activate(built.policy);
    return { ok: true, changed: true, previous, policy: built.policy, diff, diagnostics: built.diagnostics };
  }

  decide(raw: RawRequest, options: { explain?: boolean } = {}): DecideResult | { ok: false; error: RequestError; unavailable: true } {
    const policy = this.active;
    if (!policy) return { ok: false, unavailable: true, error: { field: 'policy', message: 'no valid policy set is loaded' } };
    return decideWith(policy, raw, options);
  }
}
