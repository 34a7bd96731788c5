// The policy set as served: GET /v1/policies (what is loaded, and how the last reload ended) and
// POST /v1/policies/reload (with `--workers`, every worker reloads and the answer waits for all).
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { ServerContext } from './context';
import type { OtherWorkerReload } from './deps';
import { ApiError } from './errors';
import type { LastReload } from './metrics';
import { reloadRequest } from './schemas';

/** `last_reload` of `GET /v1/policies`: when, how it ended, what triggered it, and why it was refused. */
function lastReloadJson(last: LastReload | undefined) {
  if (last === undefined) return null;
  return { at: new Date(last.at).toISOString(), outcome: last.outcome, trigger: last.trigger, ...(last.message !== undefined ? { message: last.message } : {}) };
}

export function registerPolicyRoutes(api: FastifyInstance, { deps, cache, lastReloadAttempt, activePolicy }: ServerContext): void {
  api.get('/v1/policies', { config: { scope: 'admin' } }, async () => {
    const policy = activePolicy();
    return {
      version: policy.version,
      files: policy.files,
      rule_count: policy.ruleCount,
      loaded_at: policy.loadedAt.toISOString(),
      load_ms: policy.loadMs,
      settings: { default_policy: policy.compiled.settings.defaultPolicy, anonymous: policy.compiled.settings.anonymous },
      cache_entries: cache.size(policy),
      last_reload: lastReloadJson(lastReloadAttempt()),
    };
  });

  api.post('/v1/policies/reload', {
    schema: { body: reloadRequest },
    config: { scope: 'admin' },
    // No body at all is as good as `{}`; anything else is validated by the schema.
    preValidation: (request, _reply, done) => {
      if (request.body === undefined) request.body = {};
      done();
    },
  }, async (request) => {
    const trigger = `api:${request.caller?.identity ?? 'loopback'}`;
    // With --workers every worker reloads (each writes its own ACL_CHANGE row), and the answer
    // waits for all of them: success means every ready worker now serves the new version.
    const [outcome, others] = await Promise.all([
      deps.reloader.reload(trigger, request.ip),
      deps.cluster ? deps.cluster.reloadOthers(trigger, request.ip).catch((e: unknown) => e as Error) : [],
    ]);
    // The server's own paths stay in its log: an answer names the policy directory by its last segment.
    const directoryName = (text: string) => text.split(deps.engine.directory).join(path.basename(deps.engine.directory));
    if (!outcome.ok) {
      // The new set may be fine: it is the audit store that refused the ACL_CHANGE row (503, retry).
      if (outcome.auditUnavailable) throw new ApiError('audit_unavailable', outcome.message, { policy_version: outcome.serving ?? null });
      throw new ApiError('policy_invalid', directoryName(outcome.message), { diagnostics: outcome.diagnostics, policy_version: outcome.serving ?? null });
    }
    if (others instanceof Error) {
      throw new ApiError('workers_unavailable', `this worker now serves ${outcome.version}, but the other workers could not be reached (${others.message}); they may still serve the previous version: retry the reload`, { policy_version: outcome.version });
    }
    const behind = others.filter((o) => !(o.outcome?.ok && o.outcome.version === outcome.version));
    if (behind.length > 0) {
      const why = (o: OtherWorkerReload) => {
        if (!o.outcome) return `worker ${o.worker} did not answer in time`;
        if (o.outcome.ok) return `worker ${o.worker} loaded ${o.outcome.version} (the files changed during the reload)`;
        if (o.outcome.auditUnavailable) return `worker ${o.worker} could not write its ACL_CHANGE row and still serves ${o.outcome.serving ?? 'nothing'} (it retries)`;
        return `worker ${o.worker} refused the set and still serves ${o.outcome.serving ?? 'nothing'}: ${directoryName(o.outcome.message ?? '')}`;
      };
      throw new ApiError('workers_unavailable', `this worker now serves ${outcome.version}, but ${behind.map(why).join('; ')}; retry the reload`, {
        policy_version: outcome.version,
        workers: behind.map((o) => ({ worker: o.worker, policy_version: o.outcome ? (o.outcome.ok ? o.outcome.version : o.outcome.serving ?? null) : null })),
      });
    }
    return {
      ok: true, changed: outcome.changed, previous_version: outcome.previous ?? null, policy_version: outcome.version, added: outcome.added, removed: outcome.removed,
      roles_changed: outcome.roles, api_changed: outcome.api, settings_changed: outcome.settings,
    };
  });
}
