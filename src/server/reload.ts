// Policy activations for the server: the first one at start-up, and every reload (HTTP, SIGHUP, file
// changes). Build to the side, audit the change, then swap. A set with errors, or a change that
// cannot be audited, never replaces the one serving (and at start-up, nothing is served).
import type { AuditEvent } from '../audit/event';
import type { AuditRecorder } from '../audit/recorder';
import { diagnosticToJson, type DiagnosticJson } from '../diagnostics';
import { diffPolicies, type ApiGrantChange, type Engine, type LoadedPolicy, type PolicyDiff, type RoleChange, type RuleChange, type SettingChange } from '../engine';

export type ReloadOutcome =
  | {
    ok: true; changed: boolean; previous: string | undefined; version: string; added: RuleChange[]; removed: RuleChange[];
    /** Role members, `api` grants and settings that changed: access can change without any rule line changing. */
    roles: RoleChange[]; api: ApiGrantChange[]; settings: SettingChange[];
  }
  | {
    ok: false; message: string; diagnostics: DiagnosticJson[]; serving: string | undefined;
    /** The set was fine but its ACL_CHANGE row could not be committed (the audit store is unavailable). */
    auditUnavailable?: true;
    /** With auditUnavailable: the same reload is tried again after this many ms (unless a newer one supersedes it). */
    retryInMs?: number;
  };

/** Which attempt an outcome belongs to: 0 for the reload as triggered, 1, 2, … for its retries. */
export interface ReloadAttempt {
  retry: number;
}

/** One file of a policy set, as every ACL_CHANGE row's `details.files` lists it. */
export interface PolicyFileEntry {
  path: string;
  sha256: string;
  rules: number;
}

/**
 * The policy set the audit log last recorded as activated (its newest ACL_CHANGE row), handed in by
 * `pdp serve`: the server never reads SQLite. `files` is null when that row carries no file list.
 */
export interface RecordedPolicy {
  version: string | null;
  files: PolicyFileEntry[] | null;
}

/** Files added, removed and changed (same path, other sha256) between two file lists, by path. */
export interface FileChanges {
  added: string[];
  removed: string[];
  changed: string[];
}

export interface Reloader {
  /** `sourceIp`: the address of the caller that asked (an API reload), for the ACL_CHANGE row. */
  reload(trigger: string, sourceIp?: string): Promise<ReloadOutcome>;
  /**
   * The first activation (`pdp serve` start-up): writes an ACL_CHANGE row (trigger `startup`) from
   * `lastRecorded` (undefined on a fresh log) to `policy`, then activates it. `ok: false` with
   * `auditUnavailable` when the row could not be committed; then nothing was activated.
   */
  start(policy: LoadedPolicy, lastRecorded: RecordedPolicy | undefined): Promise<ReloadOutcome>;
  onOutcome(listener: (outcome: ReloadOutcome, trigger: string, attempt: ReloadAttempt) => void): void;
  /** Cancels a pending retry; later reloads still run but are no longer retried. */
  close(): void;
}

/** Backoff for a reload refused because the audit store was unavailable: 1 s, doubling, at most 30 s. */
export interface RetryOptions {
  initialMs?: number;
  maxMs?: number;
}

export interface ReloaderDeps {
  engine: Engine;
  recorder: AuditRecorder;
  /** Called after a new version is active (e.g. to refresh `allowed_services`). */
  onActivated?: (policy: LoadedPolicy) => void;
  nodeName?: string;
  now?: () => Date;
  /** Retry backoff for reloads the audit store refused; `false` disables retrying. */
  retry?: RetryOptions | false;
}

/** What `details.rule_changes` says on a start-up row: the old rules are not kept across a restart. */
export const RULE_CHANGES_UNKNOWN = 'unknown across a restart: the previous set\'s rules are not kept, only its files\' sha256; compare those';

export function diffFiles(before: readonly PolicyFileEntry[], after: readonly PolicyFileEntry[]): FileChanges {
  const old = new Map(before.map((f) => [f.path, f.sha256]));
  const neu = new Map(after.map((f) => [f.path, f.sha256]));
  return {
    added: after.filter((f) => !old.has(f.path)).map((f) => f.path),
    removed: before.filter((f) => !neu.has(f.path)).map((f) => f.path),
    changed: after.filter((f) => old.has(f.path) && old.get(f.path) !== f.sha256).map((f) => f.path),
  };
}

const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
const describeFiles = (c: FileChanges) => `${count(c.added.length, 'file')} added, ${c.removed.length} removed, ${c.changed.length} changed`;
/** Fresh empty lists each time: an outcome's lists are its own. */
const noChanges = (): Pick<PolicyDiff, 'added' | 'removed' | 'roles' | 'api' | 'settings'> => ({ added: [], removed: [], roles: [], api: [], settings: [] });

/** The ACL_CHANGE reason of a reload: rules, then whatever else changed who may do what. */
export function describePolicyDiff(diff: PolicyDiff): string {
  const members = (c: { added: string[]; removed: string[] }) => [...c.added.map((m) => `+${m}`), ...c.removed.map((m) => `-${m}`)].join(' ');
  const parts = [`${diff.added.length} rule(s) added, ${diff.removed.length} removed`];
  if (diff.roles.length > 0) parts.push(`role members changed: ${diff.roles.map((r) => `${r.role} (${members(r)})`).join(', ')}`);
  if (diff.api.length > 0) parts.push(`api grants changed: ${diff.api.map((a) => `${a.api} (${members(a)})`).join(', ')}`);
  if (diff.settings.length > 0) parts.push(`settings changed: ${diff.settings.map((c) => `${c.setting} ${String(c.from)} -> ${String(c.to)}`).join(', ')}`);
  return parts.join('; ');
}

export function createReloader(deps: ReloaderDeps): Reloader {
  const listeners: ((outcome: ReloadOutcome, trigger: string, attempt: ReloadAttempt) => void)[] = [];
  const now = deps.now ?? (() => new Date());
  const initialRetryMs = deps.retry === false ? 0 : deps.retry?.initialMs ?? 1000;
  const maxRetryMs = deps.retry === false ? 0 : deps.retry?.maxMs ?? 30_000;
  // Activations run one at a time, in order.
  let queue: Promise<unknown> = Promise.resolve();
  // Every reload() call starts a new generation: a retry belongs to the generation that scheduled it
  // and is dropped once a newer reload was asked for (that one reads the directory afresh).
  let generation = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  let closed = false;

  /** The one ACL_CHANGE row shape, for reloads and start-up alike. */
  function aclChangeEvent(trigger: string, action: 'reload' | 'startup', policy: LoadedPolicy, oldVersion: string | null, reason: string, details: Record<string, unknown>, sourceIp?: string): AuditEvent {
    return {
      timestamp: now().toISOString(), event_type: 'ACL_CHANGE', service_name: null, namespace: null, instance_id: null,
      identity: trigger, source_ip: sourceIp ?? null, action, resource: `policies:${deps.engine.directory}`, result: null,
      reason, rule: null, decision_id: null, policy_version: policy.version,
      details: {
        old_version: oldVersion, new_version: policy.version, trigger, rules: policy.ruleCount,
        // One entry per file (bounded by the set's size, not by its rules): what the next start-up diffs against.
        files: policy.files.map((f) => ({ path: f.path, sha256: f.sha256, rules: f.rules })),
        ...details,
      },
      registry_node: deps.nodeName ?? 'pdp',
    };
  }

  /** Commits the row, then activates; an unwritable store leaves the engine as it was. */
  async function auditThenActivate(event: AuditEvent, policy: LoadedPolicy): Promise<{ ok: true } | { ok: false; cause: string }> {
    try {
      await deps.recorder.record(event);
    } catch (e) {
      return { ok: false, cause: (e as Error).message };
    }
    deps.engine.activate(policy);
    deps.onActivated?.(policy);
    return { ok: true };
  }

  function run(trigger: string, sourceIp: string | undefined, retry: number, gen: number): Promise<ReloadOutcome> {
    return enqueue(() => reloadNow(trigger, sourceIp, retry)).then((outcome) => {
      if (!outcome.ok && outcome.auditUnavailable && !closed && initialRetryMs > 0 && gen === generation) {
        // A change the audit store refused is not dropped: once the store recovers it is committed
        // and activated, so a grant removed during an outage does not stay in force until a SIGHUP.
        const delay = Math.min(maxRetryMs, initialRetryMs * 2 ** Math.min(retry, 30));
        outcome.retryInMs = delay;
        outcome.message += `; retrying in ${delay >= 1000 ? `${Math.round(delay / 1000)} s` : `${delay} ms`}`;
        clearTimeout(retryTimer);
        retryTimer = setTimeout(() => {
          retryTimer = undefined;
          if (!closed && gen === generation) void run(trigger, sourceIp, retry + 1, gen);
        }, delay);
        retryTimer.unref(); // the retry alone never keeps the process alive
      }
      for (const l of listeners) l(outcome, trigger, { retry });
      return outcome;
    });
  }

  async function reloadNow(trigger: string, sourceIp: string | undefined, retry: number): Promise<ReloadOutcome> {
    const previous = deps.engine.current();
    const built = deps.engine.build();
    if (!built.ok) {
      const errors = built.diagnostics.filter((d) => d.severity === 'error');
      return {
        ok: false,
        message: built.error ?? `the policy set has ${errors.length} error${errors.length === 1 ? '' : 's'}; still serving ${previous?.version ?? 'nothing'}`,
        diagnostics: errors.map(diagnosticToJson),
        serving: previous?.version,
      };
    }
    const policy = built.policy;
    if (previous?.version === policy.version) {
      return { ok: true, changed: false, previous: previous.version, version: policy.version, ...noChanges() };
    }
    const diff = diffPolicies(previous?.compiled, policy.compiled);
    const files = diffFiles(previous?.files ?? [], policy.files);
    const event = aclChangeEvent(trigger, 'reload', policy, previous?.version ?? null, describePolicyDiff(diff), {
      files_added: files.added, files_removed: files.removed, files_changed: files.changed, added: diff.added, removed: diff.removed,
      roles_changed: diff.roles, api_changed: diff.api, settings_changed: diff.settings, ...(retry > 0 ? { retry } : {}),
    }, sourceIp);
    const done = await auditThenActivate(event, policy);
    if (!done.ok) {
      return { ok: false, message: 'the policy change could not be written to the audit store; still serving the previous version', diagnostics: [], serving: previous?.version, auditUnavailable: true };
    }
    return { ok: true, changed: true, previous: previous?.version, version: policy.version, ...diff };
  }

  async function startNow(policy: LoadedPolicy, lastRecorded: RecordedPolicy | undefined): Promise<ReloadOutcome> {
    const current = deps.engine.current();
    if (current !== undefined) {
      return { ok: false, message: `a policy set (${current.version}) is already active; start-up activates only the first`, diagnostics: [], serving: current.version };
    }
    const oldVersion = lastRecorded?.version ?? null;
    let reason: string;
    let details: Record<string, unknown>;
    if (lastRecorded === undefined) {
      reason = `startup: first policy set recorded in this audit log (${count(policy.files.length, 'file')}, ${count(policy.ruleCount, 'rule')})`;
      const files = diffFiles([], policy.files);
      details = { files_added: files.added, files_removed: [], files_changed: [], rule_changes: 'not listed: no earlier policy set is recorded' };
    } else if (oldVersion === policy.version) {
      reason = `startup: unchanged since the last recorded version ${policy.version}`;
      details = { files_added: [], files_removed: [], files_changed: [], rule_changes: 'none: same version' };
    } else if (lastRecorded.files === null) {
      // A row written before ACL_CHANGE rows listed their files.
      reason = `startup: changed since the last recorded version ${oldVersion ?? '(unknown)'}; which files and rules changed is unknown (that row lists no files)`;
      details = { files_added: null, files_removed: null, files_changed: null, file_changes: 'unknown: the previous ACL_CHANGE row lists no files', rule_changes: RULE_CHANGES_UNKNOWN };
    } else {
      // Rule-level changes need the previous set's rules, which a restart loses; its files' hashes are in the log.
      const files = diffFiles(lastRecorded.files, policy.files);
      reason = `startup: changed since the last recorded version ${oldVersion ?? '(unknown)'}: ${describeFiles(files)}; rule-level changes unknown across a restart`;
      details = { files_added: files.added, files_removed: files.removed, files_changed: files.changed, rule_changes: RULE_CHANGES_UNKNOWN };
    }
    const event = aclChangeEvent('startup', 'startup', policy, oldVersion, reason, details);
    const done = await auditThenActivate(event, policy);
    if (!done.ok) {
      return { ok: false, message: `the start-up policy version could not be written to the audit store (${done.cause}); not serving unaudited`, diagnostics: [], serving: undefined, auditUnavailable: true };
    }
    return { ok: true, changed: oldVersion !== policy.version, previous: oldVersion ?? undefined, version: policy.version, ...noChanges() };
  }

  function enqueue<T>(work: () => Promise<T>): Promise<T> {
    const run = queue.then(work);
    queue = run.catch(() => undefined);
    return run;
  }

  return {
    reload(trigger, sourceIp) {
      generation++;
      clearTimeout(retryTimer);
      retryTimer = undefined;
      return run(trigger, sourceIp, 0, generation);
    },
    start(policy, lastRecorded) {
      return enqueue(() => startNow(policy, lastRecorded));
    },
    onOutcome(listener) {
      listeners.push(listener);
    },
    close() {
      closed = true;
      clearTimeout(retryTimer);
      retryTimer = undefined;
    },
  };
}
