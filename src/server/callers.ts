// Who may call the PDP, and the audit of every refusal. Caller authentication and per-endpoint
// grants (`api` blocks) as hooks, and the grant `explain` needs; an AUTHN_FAILURE row per failed
// authentication (a locked-out source's refusals counted into one summary row per interval,
// refusals.ts), and an API_DENIED row per refused grant.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuditEvent } from '../audit/event';
import type { ApiScope } from '../check/schema';
import type { LoadedPolicy } from '../engine';
import { redactTokensAlsoEncoded } from '../identity/token-format';
import type { ServerContext } from './context';
import type { AuthnFailureContext } from './decide';
import type { Caller } from './deps';
import { ApiError, AuthnError } from './errors';
import { RefusalCounter } from './refusals';

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller;
  }
  interface FastifyContextConfig {
    scope?: ApiScope | 'open';
  }
}

/** What the routes use of the checks below: subject authentication (decide.ts) and readiness's caller, and the grant `explain` needs. */
export interface CallerChecks {
  authenticated<T>(request: FastifyRequest, step: () => Promise<T> | T, extra?: AuthnFailureContext): Promise<T>;
  checkExplainGrant(request: FastifyRequest, field: string): Promise<void>;
}

/** The path of a request, for audit rows: without the query, and without a pdp token's secret in any spelling. */
const auditedPath = (request: FastifyRequest) => redactTokensAlsoEncoded(request.url.split('?')[0]!);

export function addCallerChecks(app: FastifyInstance, { deps, now, nodeName, metrics, recordOrFail }: ServerContext): CallerChecks {
  // Caller authentication and per-endpoint grants (`api` blocks). Without an authenticator the
  // server runs in the loopback development mode: callers are local and may use every endpoint.
  // Authentication is an onRequest hook; the grant check waits for preParsing, so the per-caller
  // rate limit (a route-level onRequest hook, keyed by the authenticated identity) runs in between
  // and also bounds a caller that has no grant. The body is not read before the grant check.
  // Without an authenticator there is nothing to check, and no hook is registered at all (a hook is a
  // promise and a hop per request).
  if (deps.authenticator) {
    const authenticator = deps.authenticator;
    app.addHook('onRequest', async (request) => {
      const scope = request.routeOptions.config?.scope;
      if (scope === undefined || scope === 'open') return;
      request.caller = await authenticated(request, () => authenticator.authenticateCaller(request));
    });
    app.addHook('preParsing', async (request) => {
      const scope = request.routeOptions.config?.scope;
      if (scope === undefined || scope === 'open') return;
      await checkGrant(request, scope);
    });
  }

  /** Refuses (403, and an API_DENIED row) a caller without an `api "<scope>"` grant; `explainField`: the refusal is for that field, not the endpoint. */
  async function checkGrant(request: FastifyRequest, scope: ApiScope, explainField?: string): Promise<void> {
    const caller = request.caller;
    if (!caller) throw new ApiError('unauthenticated', 'the caller is not authenticated'); // fail closed
    const policy = deps.engine.current();
    const grants = policy?.compiled.api[scope] ?? [];
    if (!grants.some((m) => m.test(caller.identity, undefined, ''))) {
      await recordOrFail([apiDeniedEvent(request, caller, scope, policy)]);
      if (explainField !== undefined) {
        throw new ApiError('forbidden', `\`${explainField}\` shows the policy's rules, role members and addresses, as \`GET /v1/policies\` does: it needs an \`api "${scope}"\` grant, which \`${caller.identity}\` has not`, { field: explainField });
      }
      throw new ApiError('forbidden', `\`${caller.identity}\` has no \`api "${scope}"\` grant for this endpoint`);
    }
  }

  /**
   * `explain` answers with the rules in scope (identity patterns, role members, CIDRs, descriptions):
   * reading the policy set, which needs `api "admin"` like `GET /v1/policies`. Without an
   * authenticator (the loopback development mode) every caller has every grant.
   */
  async function checkExplainGrant(request: FastifyRequest, field: string): Promise<void> {
    if (deps.authenticator) await checkGrant(request, 'admin', field);
  }

  /** The row of one authentication failure: `identity` is the attempted identity (unverified), never a credential. */
  function authnFailureEvent(e: AuthnError, source: string, extra: AuthnFailureContext = {}): AuditEvent {
    return {
      timestamp: now().toISOString(), event_type: 'AUTHN_FAILURE', service_name: null, namespace: extra.namespace ?? null, instance_id: null,
      identity: e.attempted, source_ip: source, action: extra.action ?? null, resource: extra.resource ?? null, result: 'DENY', reason: e.message, rule: null,
      decision_id: randomUUID(), policy_version: deps.engine.current()?.version ?? null,
      details: { kind: e.kind, ...extra.details, ...e.audit.details }, registry_node: nodeName,
    };
  }

  // A locked-out source's refusals are counted, and written as one summary row per source per
  // interval (refusals.ts); pending counts are written at shutdown too.
  const refusals = new RefusalCounter();
  const summaryMs = Math.max(100, deps.refusalSummaryMs ?? 60_000);
  function summaryEvents(): AuditEvent[] {
    const policyVersion = deps.engine.current()?.version ?? null;
    return refusals.take().map((s) => ({
      timestamp: now().toISOString(), event_type: 'AUTHN_FAILURE', service_name: null, namespace: null, instance_id: null,
      identity: null, source_ip: s.source, action: null, resource: null, result: 'DENY',
      reason: `${s.count} authentication attempt${s.count === 1 ? '' : 's'} refused while ${s.source === null ? 'their sources were' : 'this source was'} locked out (counted, not audited one by one)`,
      rule: null, decision_id: randomUUID(), policy_version: policyVersion,
      details: { kind: 'locked-out-summary', count: s.count, first_at: s.first.toISOString(), last_at: s.last.toISOString(), kinds: s.kinds, interval_ms: summaryMs },
      registry_node: nodeName,
    }));
  }
  async function writeSummaries(): Promise<void> {
    const events = summaryEvents();
    if (events.length === 0) return;
    try {
      await deps.recorder.recordAll(events);
    } catch {
      // The store is failing (fail closed elsewhere); the counts are lost with the row, the metric keeps them.
      metrics.auditFailures.inc();
    }
  }
  const summaryTimer = setInterval(() => void writeSummaries(), summaryMs);
  summaryTimer.unref();
  app.addHook('onClose', async () => {
    clearInterval(summaryTimer);
    await writeSummaries();
  });

  /**
   * Accounts for one authentication failure: the metric always; then either an AUTHN_FAILURE row
   * (committed before the refusal is answered; 503 when it cannot be) or, for a locked-out source,
   * a count towards its next summary row.
   */
  async function auditAuthnFailure(e: AuthnError, source: string, extra?: AuthnFailureContext): Promise<void> {
    metrics.authnFailures.inc({ kind: e.kind });
    if (e.audit.suppressed) {
      refusals.add(source, e.kind, now());
      return;
    }
    await recordOrFail([authnFailureEvent(e, source, extra)]);
  }

  // Connections refused before any request (a client certificate refused at the TLS handshake).
  deps.authenticator?.watchConnections?.(app.server as unknown as import('node:tls').Server, (source, e) => {
    auditAuthnFailure(e, source, { details: { transport: 'tls-handshake' } }).catch(() => {
      // recordOrFail counted it; there is no answer to fail.
    });
  });

  /** Runs an authentication step; a failure is audited as AUTHN_FAILURE (never with the credential) and rethrown. */
  async function authenticated<T>(request: FastifyRequest, step: () => Promise<T> | T, extra?: AuthnFailureContext): Promise<T> {
    try {
      return await step();
    } catch (e) {
      if (!(e instanceof AuthnError)) throw e;
      await auditAuthnFailure(e, request.ip, { ...extra, details: { method: request.method, path: auditedPath(request), ...extra?.details } });
      throw e;
    }
  }

  function apiDeniedEvent(request: FastifyRequest, caller: Caller, scope: ApiScope, policy: LoadedPolicy | undefined): AuditEvent {
    return {
      timestamp: now().toISOString(), event_type: 'API_DENIED', service_name: null, namespace: null, instance_id: null,
      identity: caller.identity, source_ip: request.ip, action: scope, resource: `api:${scope}`, result: 'DENY',
      reason: `no api "${scope}" grant for ${caller.identity}`, rule: null, decision_id: randomUUID(),
      policy_version: policy?.version ?? null, details: { method: request.method, path: auditedPath(request) }, registry_node: nodeName,
    };
  }

  return { authenticated, checkExplainGrant };
}
