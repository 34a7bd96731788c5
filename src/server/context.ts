// What the parts of one server share, made once from its deps: the clock, the decision cache, the
// metrics (fed by the recorder, the checkpointer and the reloader), the last reload attempt, and the
// two things every decision fails closed without: an audit store that takes its rows, a policy set.
import type { AuditEvent } from '../audit/event';
import type { LoadedPolicy } from '../engine';
import { DecisionCache } from './cache';
import type { ServerDeps } from './deps';
import { ApiError } from './errors';
import { createMetrics, type LastReload, type Metrics } from './metrics';

export interface ServerContext {
  deps: ServerDeps;
  now: () => Date;
  /** `registry_node` of the audit rows. */
  nodeName: string;
  cache: DecisionCache;
  metrics: Metrics;
  /** The last reload attempt; the start-up load until there is one. */
  lastReloadAttempt(): LastReload | undefined;
  /** Commits audit rows before their answer is given; 503 `audit_unavailable` when the store cannot take them. */
  recordOrFail(events: AuditEvent[]): Promise<void>;
  /** The policy set being served; 503 `policy_unavailable` when none is loaded. */
  activePolicy(): LoadedPolicy;
}

export function createContext(deps: ServerDeps): ServerContext {
  const now = deps.now ?? (() => new Date());
  const cache = new DecisionCache(deps.cacheEntries ?? 10_000);
  // The last reload attempt (the start-up load until there is one): for operators, a refused reload
  // must stay visible while the broken files are on disk, not only in a log line.
  let lastReload: LastReload | undefined;
  const lastReloadAttempt = () => lastReload ?? startupLoad();
  const metrics: Metrics = createMetrics({
    queueDepth: () => deps.recorder.queueDepth(),
    cacheHits: () => cache.hits,
    cacheMisses: () => cache.misses,
    rules: () => deps.engine.current()?.ruleCount ?? 0,
    auditWritable: () => deps.recorder.writable(),
    version: () => deps.engine.current()?.version,
    lastReload: lastReloadAttempt,
  }, deps.defaultMetrics ?? true);
  // Rows and transaction time per group commit, as the recorder reports them.
  deps.recorder.onFlush?.((rows, seconds) => {
    metrics.auditRows.inc(rows);
    metrics.auditWriteSeconds.observe(seconds);
  });
  deps.recorder.onLockWait?.((seconds) => metrics.auditLockWaitSeconds.observe(seconds));
  deps.checkpointer?.onPass((pass) => {
    metrics.auditCheckpointSeconds.observe(pass.seconds);
    metrics.auditWalFrames.set(pass.walFrames);
  });
  deps.reloader.onOutcome((outcome, trigger) => {
    const kind = outcome.ok ? (outcome.changed ? 'changed' : 'unchanged') : outcome.auditUnavailable ? 'audit_unavailable' : 'refused';
    metrics.reloads.inc({ outcome: kind });
    lastReload = { at: now().getTime(), outcome: kind, trigger, ...(outcome.ok ? {} : { message: outcome.message }) };
  });
  function startupLoad(): LastReload | undefined {
    const policy = deps.engine.current();
    return policy === undefined ? undefined : { at: policy.loadedAt.getTime(), outcome: 'changed', trigger: 'start-up' };
  }

  async function recordOrFail(events: AuditEvent[]): Promise<void> {
    try {
      if (events.length === 1) await deps.recorder.record(events[0]!);
      else await deps.recorder.recordAll(events);
    } catch {
      metrics.auditFailures.inc();
      throw new ApiError('audit_unavailable', 'the audit store cannot be written, so no decision is given; retry shortly');
    }
  }

  function activePolicy(): LoadedPolicy {
    const policy = deps.engine.current();
    if (!policy) throw new ApiError('policy_unavailable', 'no valid policy set is loaded; fix the policy files and reload');
    return policy;
  }

  return { deps, now, nodeName: deps.nodeName ?? 'pdp', cache, metrics, lastReloadAttempt, recordOrFail, activePolicy };
}
