// What probes, operators and Prometheus read: liveness, readiness, the anomaly analyses of the audit
// store, and the metrics.
import type { FastifyInstance } from 'fastify';
import type { CallerChecks } from './callers';
import type { ServerContext } from './context';
import { ApiError } from './errors';
import { anomaliesQuery } from './schemas';

export function registerOperationRoutes(api: FastifyInstance, { deps, now, metrics }: ServerContext, { authenticated }: CallerChecks): void {
  // Liveness: open to every caller (probes do not authenticate), and it says nothing but `ok`.
  api.get('/v1/health', { config: { scope: 'open' } }, async () => ({ status: 'ok' }));

  // Readiness: open for probes, but with authentication on only a caller with `api "admin"` gets
  // the detail (policy version, audit store state); everyone else gets `{"ready": bool}` and the
  // same status code. A caller that sends credentials is authenticated as on any endpoint (a bad
  // one is 401 and an AUTHN_FAILURE row); one that sends none is not refused, and leaves no row.
  api.get('/v1/ready', { config: { scope: 'open' } }, async (request, reply) => {
    const policy = deps.engine.current();
    const auditWritable = deps.recorder.writable();
    const stopping = deps.stopping?.() === true;
    const ready = policy !== undefined && auditWritable && !stopping;
    reply.code(ready ? 200 : 503);
    const authenticator = deps.authenticator;
    if (authenticator) {
      let detail = false;
      if (authenticator.hasCredentials?.(request)) {
        const caller = await authenticated(request, () => authenticator.authenticateCaller(request));
        detail = (policy?.compiled.api.admin ?? []).some((m) => m.test(caller.identity, undefined, ''));
      }
      if (!detail) return reply.send({ ready });
    }
    return reply.send({ ready, policy_loaded: policy !== undefined, policy_version: policy?.version ?? null, audit_writable: auditWritable, ...(stopping ? { shutting_down: true } : {}) });
  });

  // The three anomaly analyses of `pdp audit anomalies`, as its `--format json` prints them.
  api.get<{ Querystring: { since?: string; spike_threshold?: string; deny_threshold?: string } }>('/v1/audit/anomalies', {
    schema: { querystring: anomaliesQuery },
    config: { scope: 'audit' },
  }, async (request) => {
    const analyse = deps.auditAnomalies;
    if (!analyse) throw new ApiError('not_found', 'audit analyses are not available on this server');
    const q = request.query;
    const sinceMs = parseWindow(q.since ?? '1h');
    if (sinceMs <= 0) throw new ApiError('invalid_request', '`since` must be longer than zero', { field: 'since' });
    // The CLI's bound (every duration is at most 100 years): beyond it the window has no date.
    if (!Number.isSafeInteger(sinceMs) || sinceMs > 100 * 365.25 * 86_400_000 || !Number.isFinite(now().getTime() - sinceMs)) {
      throw new ApiError('invalid_request', `\`since\` must be at most 100 years; got \`${q.since}\``, { field: 'since' });
    }
    try {
      return analyse({
        // As the CLI: unknown services over every kept row (the seed's query) unless a window is asked for.
        now: now(), sinceMs, windowUnknownServices: q.since !== undefined,
        ...(q.spike_threshold !== undefined ? { spikeThreshold: Number(q.spike_threshold) } : {}),
        ...(q.deny_threshold !== undefined ? { denyThreshold: Number(q.deny_threshold) } : {}),
      });
    } catch (e) {
      request.log.error({ err: e }, 'audit analyses failed');
      throw new ApiError('audit_unavailable', 'the audit store cannot be read for the analyses; retry shortly');
    }
  });

  api.get('/metrics', { config: { scope: 'admin' } }, async (request, reply) => {
    let text: string;
    if (deps.cluster) {
      // Every scrape sums every worker's counters: one worker's alone would look to Prometheus
      // like a counter going up and down as scrapes land on different workers.
      try {
        text = await deps.cluster.metrics();
      } catch (e) {
        request.log.warn({ err: e }, 'metrics of the other workers unavailable');
        throw new ApiError('workers_unavailable', `the metrics of every worker could not be gathered (${(e as Error).message}); retry`);
      }
    } else {
      text = await metrics.registry.metrics();
    }
    reply.header('content-type', metrics.registry.contentType);
    return text;
  });
}

/** `30m`, `1h`, `7d` (the schema has already checked the shape) in milliseconds. */
function parseWindow(text: string): number {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text)!;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
}
