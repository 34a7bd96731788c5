// Policy reloads for the server (HTTP, SIGHUP, file changes all come here): build to the side,
// audit the change, then swap. A set with errors, or a change that cannot be audited, never
// replaces the one serving.
import type { AuditEvent } from '../audit/event';
import type { AuditRecorder } from '../audit/recorder';
import { diagnosticToJson, type DiagnosticJson } from '../diagnostics';
import { diffPolicies, type Engine, type LoadedPolicy, type RuleChange } from '../engine';

export type ReloadOutcome =
  | { ok: true; changed: boolean; previous: string | undefined; version: string; added: RuleChange[]; removed: RuleChange[] }
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

export interface Reloader {
  reload(trigger: string): Promise<ReloadOutcome>;
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

export function createReloader(deps: ReloaderDeps): Reloader {
  const listeners: ((outcome: ReloadOutcome, trigger: string, attempt: ReloadAttempt) => void)[] = [];
  const now = deps.now ?? (() => new Date());
  const initialRetryMs = deps.retry === false ? 0 : deps.retry?.initialMs ?? 1000;
  const maxRetryMs = deps.retry === false ? 0 : deps.retry?.maxMs ?? 30_000;
  // Reloads run one at a time, in order.
  let queue: Promise<unknown> = Promise.resolve();
  // Every reload() call starts a new generation: a retry belongs to the generation that scheduled it
  // and is dropped once a newer reload was asked for (that one reads the directory afresh).
  let generation = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  let closed = false;

  function run(trigger: string, retry: number, gen: number): Promise<ReloadOutcome> {
    const attempt = queue.then(() => reloadNow(trigger, retry));
    queue = attempt.catch(() => undefined);
    return attempt.then((outcome) => {
      if (!outcome.ok && outcome.auditUnavailable && !closed && initialRetryMs > 0 && gen === generation) {
        // A change the audit store refused is not dropped: once the store recovers it is committed
        // and activated, so a grant removed during an outage does not stay in force until a SIGHUP.
        const delay = Math.min(maxRetryMs, initialRetryMs * 2 ** Math.min(retry, 30));
        outcome.retryInMs = delay;
        outcome.message += `; retrying in ${delay >= 1000 ? `${Math.round(delay / 1000)} s` : `${delay} ms`}`;
        clearTimeout(retryTimer);
        retryTimer = setTimeout(() => {
          retryTimer = undefined;
          if (!closed && gen === generation) void run(trigger, retry + 1, gen);
        }, delay);
        retryTimer.unref(); // the retry alone never keeps the process alive
      }
      for (const l of listeners) l(outcome, trigger, { retry });
      return outcome;
    });
  }

  async function reloadNow(trigger: string, retry: number): Promise<ReloadOutcome> {
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
      return { ok: true, changed: false, previous: previous.version, version: policy.version, added: [], removed: [] };
    }
    const diff = diffPolicies(previous?.compiled, policy.compiled);
    const event: AuditEvent = {
      timestamp: now().toISOString(), event_type: 'ACL_CHANGE', service_name: null, namespace: null, instance_id: null,
      identity: trigger, source_ip: null, action: 'reload', resource: `policies:${deps.engine.directory}`, result: null,
      reason: `${diff.added.length} rule(s) added, ${diff.removed.length} removed`, rule: null, decision_id: null,
      policy_version: policy.version,
      details: {
        old_version: previous?.version ?? null, new_version: policy.version, trigger, rules: policy.ruleCount, added: diff.added, removed: diff.removed,
        ...(retry > 0 ? { retry } : {}),
      },
      registry_node: deps.nodeName ?? 'pdp',
    };
    try {
      await deps.recorder.record(event);
    } catch {
      return { ok: false, message: 'the policy change could not be written to the audit store; still serving the previous version', diagnostics: [], serving: previous?.version, auditUnavailable: true };
    }
    deps.engine.activate(policy);
    deps.onActivated?.(policy);
    return { ok: true, changed: true, previous: previous?.version, version: policy.version, added: diff.added, removed: diff.removed };
  }

  return {
    reload(trigger) {
      generation++;
      clearTimeout(retryTimer);
      retryTimer = undefined;
      return run(trigger, 0, generation);
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
