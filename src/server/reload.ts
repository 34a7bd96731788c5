// Policy reloads for the server (HTTP, SIGHUP, file changes all come here): build to the side,
// audit the change, then swap. A set with errors, or a change that cannot be audited, never
// replaces the one serving.
import type { AuditEvent } from '../audit/event';
import type { AuditRecorder } from '../audit/recorder';
import { diagnosticToJson, type DiagnosticJson } from '../diagnostics';
import { diffPolicies, type Engine, type LoadedPolicy, type RuleChange } from '../engine';

export type ReloadOutcome =
  | { ok: true; changed: boolean; previous: string | undefined; version: string; added: RuleChange[]; removed: RuleChange[] }
  | { ok: false; message: string; diagnostics: DiagnosticJson[]; serving: string | undefined; auditUnavailable?: true };

export interface Reloader {
  reload(trigger: string): Promise<ReloadOutcome>;
  onOutcome(listener: (outcome: ReloadOutcome, trigger: string) => void): void;
}

export interface ReloaderDeps {
  engine: Engine;
  recorder: AuditRecorder;
  /** Called after a new version is active (e.g. to refresh `allowed_services`). */
  onActivated?: (policy: LoadedPolicy) => void;
  nodeName?: string;
  now?: () => Date;
}

export function createReloader(deps: ReloaderDeps): Reloader {
  const listeners: ((outcome: ReloadOutcome, trigger: string) => void)[] = [];
  const now = deps.now ?? (() => new Date());
  // Reloads run one at a time, in order.
  let queue: Promise<unknown> = Promise.resolve();

  async function reloadNow(trigger: string): Promise<ReloadOutcome> {
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
      details: { old_version: previous?.version ?? null, new_version: policy.version, trigger, rules: policy.ruleCount, added: diff.added, removed: diff.removed },
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
      const run = queue.then(() => reloadNow(trigger));
      queue = run.catch(() => undefined);
      return run.then((outcome) => {
        for (const l of listeners) l(outcome, trigger);
        return outcome;
      });
    },
    onOutcome(listener) {
      listeners.push(listener);
    },
  };
}
