// buildServer(deps): the /v1 HTTP API on fastify. No listen() here: `pdp serve` listens, tests
// use an ephemeral port or inject(). The audit recorder and everything with I/O are handed in.
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import path from 'node:path';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { AnomalyReportJson } from '../audit/anomalies';
import type { AuditEvent } from '../audit/event';
import type { AuditRecorder } from '../audit/recorder';
import type { Checkpointer } from '../audit/checkpointer';
import type { ApiScope } from '../check/schema';
import type { Engine, LoadedPolicy } from '../engine';
import { mayHoldToken, redactTokensAlsoEncoded } from '../identity/token-format';
import type { DecisionResult } from '../syntax';
import { DecisionCache } from './cache';
import { ApiError, AuthnError, ERRORS, errorBody, type ErrorCode } from './errors';
import { lazyChildLoggerFactory } from './logging';
import { createMetrics, type LastReload, type Metrics } from './metrics';
import { RefusalCounter } from './refusals';
import type { Reloader } from './reload';
import { describeForwardHeader, describeValidation, forbiddenKey, unreadableBody, type ValidationIssue } from './validation';
import { anomaliesQuery, authorizeRequest, authorizeResponse, batchRequest, batchResponse, forwardHeaders, reloadRequest } from './schemas';
import { createDecider, type AuthnFailureContext, type Decided } from './decide';
import { answerForward, forwardBody, forwardError, FORWARD_URL, prepareForwardHeaders } from './forward';

export { FORWARD_URL } from './forward';

export interface AuthorizeBody {
  identity?: string;
  action: string;
  resource: string;
  namespace?: string;
  context?: Record<string, string | number | boolean | null> & { source_ip?: string; event_type?: string; instance_id?: string };
  credentials?: { token?: string; certificate?: string };
  explain?: boolean;
}

/** Who is calling the PDP (a PEP), established by TLS client certificates or bearer tokens. */
export interface Caller {
  identity: string;
  via: 'mtls' | 'token' | 'loopback';
}

/** Authentication of callers and subjects, supplied by `pdp serve` when TLS or tokens are on. */
export interface Authenticator {
  /** Establishes the caller; throws ApiError(401/429) when it cannot. */
  authenticateCaller(request: FastifyRequest): Promise<Caller> | Caller;
  /** Turns `credentials` into a verified subject identity; throws AuthnError (`invalid_subject_credentials`) when they do not verify. */
  authenticateSubject?(credentials: NonNullable<AuthorizeBody['credentials']>, request: FastifyRequest): Promise<string> | string;
  /**
   * Which kinds of subject credentials this server can verify (tokens need --tokens, certificates
   * --client-ca). A kind it cannot is a request it cannot serve (400), not a bad credential (422).
   */
  verifiesSubject?: { token: boolean; certificate: boolean };
  /** Whether the request carries caller credentials at all (a bearer token, a client certificate). */
  hasCredentials?(request: FastifyRequest): boolean;
  /**
   * Watches the TLS server's connections and reports the ones refused before any request (a client
   * certificate refused at the handshake): the server audits, counts or summarises each report.
   */
  watchConnections?(server: import('node:tls').Server, refused: (source: string, error: AuthnError) => void): void;
}

/** The anomaly analyses of the audit store (`pdp audit anomalies`), handed in by `pdp serve`: the server never opens SQLite. */
export type AuditAnomalies = (options: { now: Date; sinceMs: number; windowUnknownServices?: boolean; spikeThreshold?: number; denyThreshold?: number }) => AnomalyReportJson;

export interface ServerDeps {
  engine: Engine;
  recorder: AuditRecorder;
  reloader: Reloader;
  /** Entries in the decision cache per policy version; 0 disables it. */
  cacheEntries?: number;
  nodeName?: string;
  bodyLimit?: number;
  /**
   * Milliseconds a client has to send a whole request (headers and body); then 408 and the
   * connection is closed. Default 30 s. Without a bound, a client trickling a body a byte at a time
   * holds its connection (and file descriptor) forever without ever failing authentication.
   */
  requestTimeoutMs?: number;
  /** True once a shutdown has begun (`--shutdown-delay`): `/v1/ready` answers 503 while everything else is still served. */
  stopping?: () => boolean;
  /** Absent: the loopback development default (every local caller may use authorize and operations). */
  authenticator?: Authenticator;
  logger?: FastifyServerOptions['logger'];
  https?: import('node:https').ServerOptions;
  /** Extra fastify plugins to register first (e.g. rate limiting), given the instance. */
  plugins?: ((app: FastifyInstance) => Promise<void>)[];
  /** At most one summary row per locked-out source per this many ms (default 60 s); see refusals.ts. */
  refusalSummaryMs?: number;
  /** `GET /v1/audit/anomalies`; absent: that endpoint answers 404. */
  auditAnomalies?: AuditAnomalies;
  now?: () => Date;
  defaultMetrics?: boolean;
  /** `pdp serve --workers N`: the other workers of the cluster, reached through the primary. */
  cluster?: WorkerCluster;
  /** The audit checkpointer thread beside the recorder (audit/checkpointer.ts), for its metric. */
  checkpointer?: Pick<Checkpointer, 'onPass'>;
}

/** What one other worker answered to a reload relayed to it, or `error` (e.g. `timeout`). */
export interface OtherWorkerReload {
  worker: number;
  outcome?: { ok: boolean; version?: string; serving?: string; message?: string; auditUnavailable?: true };
  error?: string;
}

/**
 * This worker's view of the others (`pdp serve --workers N`). A reload through the API must reach
 * every worker (a grant turned into a deny must not keep being allowed by the others), and a
 * metrics scrape must be the sum over every worker (each has its own counters).
 */
export interface WorkerCluster {
  /** Reloads every other ready worker with `trigger`; resolves once each has answered (or timed out). */
  reloadOthers(trigger: string, sourceIp?: string): Promise<OtherWorkerReload[]>;
  /** Prometheus text: every ready worker's metrics (this one's included), aggregated. */
  metrics(): Promise<string>;
}

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller;
  }
  interface FastifyContextConfig {
    scope?: ApiScope | 'open';
  }
}

/**
 * Every error answer goes through here. A message or field name may quote what the caller sent (an
 * unknown field's name, a bad address, a path): a pdp token in it keeps its id and loses its secret.
 */
function fail(reply: FastifyReply, code: ErrorCode, message: string, extra: Record<string, unknown> = {}) {
  (reply.server as FastifyInstance & { pdpMetrics?: Metrics }).pdpMetrics?.countError(code, ERRORS[code].status);
  const field = extra.field;
  const safeExtra = typeof field === 'string' && (mayHoldToken(field) || field.includes('%')) ? { ...extra, field: redactTokensAlsoEncoded(field) } : extra;
  return reply.code(ERRORS[code].status).send(errorBody(code, redactTokensAlsoEncoded(message), safeExtra));
}

/** The path of a request, for audit rows: without the query, and without a pdp token's secret in any spelling. */
const auditedPath = (request: FastifyRequest) => redactTokensAlsoEncoded(request.url.split('?')[0]!);

/** A whole HTTP/1.1 error response for a raw socket or a raw response: the API's error shape, then close. */
function rawErrorResponse(code: ErrorCode, message: string, extra: Record<string, unknown> = {}): { status: number; headers: Record<string, string>; body: string } {
  const body = JSON.stringify(errorBody(code, message, extra));
  return { status: ERRORS[code].status, headers: { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), connection: 'close' }, body };
}

/** How long a client has to send a whole request: a 1 MiB batch at 35 KB/s. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export function buildServer(deps: ServerDeps): FastifyInstance {
  const now = deps.now ?? (() => new Date());
  const nodeName = deps.nodeName ?? 'pdp';
  const cache = new DecisionCache(deps.cacheEntries ?? 10_000);
  const requestTimeout = deps.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  // Given to Node's server itself: fastify sets `requestTimeout` after the server exists, which
  // skips Node's rule that headersTimeout (60 s by default) be at most requestTimeout, and with a
  // longer headersTimeout Node never times out a body trickled a byte at a time (measured). Node
  // looks for overdue requests every `connectionsCheckingInterval` (30 s by default, as long as the
  // default timeout itself): a tenth of the timeout keeps the bound close to what was asked.
  const timeouts = {
    requestTimeout,
    headersTimeout: Math.min(60_000, requestTimeout),
    connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.round(requestTimeout / 10))),
  };
  const app = Fastify({
    logger: deps.logger ?? false,
    bodyLimit: deps.bodyLimit ?? 1024 * 1024,
    requestTimeout,
    // Node's own answer to an HTTP/1.1 request without `Host` is an empty 400; ours names the header
    // (see the request listener below), so Node is told not to check.
    http: { requireHostHeader: false, ...timeouts },
    ...(deps.https ? { https: { ...deps.https, requireHostHeader: false, ...timeouts } } : {}),
    // Strict validation: no silent type coercion, no silently dropped unknown fields.
    // `verbose`: an error carries the value that failed (describeValidation words a few cases by it).
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false, allowUnionTypes: true, verbose: true } },
    // Draining is ours (see the preClose hook): fastify's own 503 has another body shape.
    return503OnClosing: false,
    // Errors before any route (header too large, malformed HTTP, timeouts) in the API's error shape.
    clientErrorHandler(err: NodeJS.ErrnoException, socket: Duplex) {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const [code, message]: [ErrorCode, string] = err.code === 'HPE_HEADER_OVERFLOW'
        ? ['headers_too_large', 'the request headers are larger than the limit (16 KiB in all)']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? ['request_timeout', 'the request was not received in time']
          : ['invalid_request', 'the request is not valid HTTP/1.1'];
      if (socket.writable) {
        const r = countedRawError(code, message);
        socket.write(`HTTP/1.1 ${r.status} ${STATUS_CODES[r.status]}\r\n${Object.entries(r.headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${r.body}`);
      }
      socket.destroy(err);
    },
    ...(deps.logger ? { childLoggerFactory: lazyChildLoggerFactory } : {}),
    // Errors fastify's router raises before any route or error handler (a `%` escape that does not
    // decode): without this, fastify writes its own body, which quotes the raw path, token and all.
    frameworkErrors(err: Error & { code?: string }, _request: FastifyRequest, reply: FastifyReply) {
      const message = err.code === 'FST_ERR_BAD_URL'
        ? 'the request path holds a malformed percent-escape: `%` must be followed by two hexadecimal digits'
        : 'the request URL is not valid';
      return fail(reply, 'invalid_request', message, { field: 'path' });
    },
  } as FastifyServerOptions) as unknown as FastifyInstance;

  // HTTP/1.1 requires `Host` (RFC 9112, 3.2); HTTP/1.0 does not. Checked in front of fastify's request
  // listener, at the Node level, so that serving pays no hook for it.
  const fastifyListener = app.server.listeners('request')[0] as (req: IncomingMessage, res: ServerResponse) => void;
  app.server.removeAllListeners('request');
  app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
      const r = countedRawError('invalid_request', 'the request has no `Host` header; HTTP/1.1 requires one', { field: 'Host' });
      res.writeHead(r.status, r.headers);
      res.end(r.body);
      return;
    }
    fastifyListener(req, res);
  });

  /** An error answer written outside fastify (before routing, while closing), counted like those `fail` writes. */
  const countedRawError = (...args: Parameters<typeof rawErrorResponse>) => {
    const r = rawErrorResponse(...args);
    metrics.countError(args[0], r.status);
    return r;
  };
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
  app.decorate('pdpMetrics', metrics);
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

  app.setErrorHandler((err: Error & { validation?: ValidationIssue[]; validationContext?: string; code?: string; statusCode?: number }, request, reply) => {
    if (err instanceof ApiError) {
      for (const [k, v] of Object.entries(err.headers)) reply.header(k, v);
      return fail(reply, err.code, err.message, err.extra);
    }
    if (err.validation?.length) {
      const { field, message } = err.validationContext === 'headers' ? describeForwardHeader(err.validation[0]!) : describeValidation(err.validation[0]!);
      return fail(reply, 'invalid_request', message, { field });
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return fail(reply, 'body_too_large', `the body is larger than ${deps.bodyLimit ?? 1024 * 1024} bytes`);
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return fail(reply, 'unsupported_media_type', 'the body must be `application/json`');
    if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return fail(reply, 'invalid_json', 'the body is empty; expected a JSON object', { field: 'body' });
    if (err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY') return fail(reply, 'invalid_json', 'the body is not valid JSON', { field: 'body' });
    if (err.statusCode === 429) return fail(reply, 'rate_limited', err.message);
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return fail(reply, 'invalid_request', err.message);
    request.log.error({ err }, 'unhandled error');
    return fail(reply, 'internal', 'internal error');
  });
  // JSON in and out: without this, fastify's built-in text/plain parser hands the schema a string and
  // a JSON object sent as text/plain is refused as "`body` must be an object" instead of 415.
  app.removeContentTypeParser('text/plain');
  // A forward check's body is the proxied request's, if the proxy sent one: not ours to read. A reload
  // takes no body; an empty one, however labelled (`curl -X POST -d ''`, or `-H 'content-type:
  // application/json'` without data), is none.
  const bodyIgnored = (request: FastifyRequest, body: unknown) =>
    request.routeOptions.url === FORWARD_URL || (body === '' && request.routeOptions.url === '/v1/policies/reload');
  // Any other content type is 415, unless the body is ignored.
  app.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    if (bodyIgnored(request, body)) done(null, undefined);
    else done(new ApiError('unsupported_media_type', 'the body must be `application/json`'), undefined);
  });
  // fastify's JSON parser (secure-json-parse) refuses `__proto__` and `constructor.prototype` keys,
  // but reports them as "not valid JSON". Its refusals are looked at again (only on that error path):
  // JSON that parses is valid, so the answer is 400 invalid_request naming the key.
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (bodyIgnored(request, body)) {
      done(null, undefined);
      return;
    }
    const refusal = unreadableBody(request.headers);
    if (refusal !== undefined) {
      done(new ApiError('unsupported_media_type', refusal), undefined);
      return;
    }
    defaultJson(request, body as string, (err: Error | null, value: unknown) => {
      if (err && (err as { code?: string }).code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
        let parsed: unknown;
        let valid = true;
        try {
          parsed = JSON.parse(body as string); // own properties only: no prototype is touched
        } catch {
          valid = false;
        }
        const field = valid ? forbiddenKey(parsed) : undefined;
        if (field) {
          const key = field.endsWith('__proto__') ? '`__proto__`' : '`constructor` holding `prototype`';
          done(new ApiError('invalid_request', `\`${field}\`: a key named ${key} is not accepted`, { field }), undefined);
          return;
        }
      }
      done(err, value);
    });
  });

  // Which methods each known path answers: a known path with another method is 405 with `Allow`,
  // an unknown path 404. (HEAD comes with every GET route, as fastify exposes it.)
  const methodsByPath = new Map<string, Set<string>>();
  app.addHook('onRoute', (route) => {
    const set = methodsByPath.get(route.url) ?? new Set<string>();
    for (const m of Array.isArray(route.method) ? route.method : [route.method]) set.add(m.toUpperCase());
    methodsByPath.set(route.url, set);
  });
  app.setNotFoundHandler((request, reply) => {
    const url = request.url.split('?')[0]!;
    const methods = methodsByPath.get(url);
    if (methods) {
      const allow = [...methods].sort().join(', ');
      reply.header('allow', allow);
      return fail(reply, 'method_not_allowed', `\`${url}\` does not answer \`${request.method}\`; it answers ${[...methods].sort().map((m) => `\`${m}\``).join(', ')}`);
    }
    return fail(reply, 'not_found', `no endpoint \`${request.method} ${url}\``);
  });

  // Graceful drain (app.close(), i.e. SIGTERM/SIGINT in `pdp serve`). The listener stops accepting and
  // Node closes the idle keep-alive connections; every response sent from now on carries
  // `Connection: close`, so a client never reuses a connection that is about to go away; a request
  // that still arrives on an open connection is answered 503 `shutting_down`, also with
  // `Connection: close`. Requests already handed to a route finish normally, audit included.
  let draining = false;
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (draining) reply.header('connection', 'close');
    done(null, payload);
  });
  app.addHook('preClose', (done) => {
    draining = true;
    const server = app.server;
    // Swapped in at the Node level, so that no per-request hook is paid while serving.
    server.removeAllListeners('request');
    server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
      const r = countedRawError('shutting_down', 'the server is shutting down; retry on another instance');
      res.writeHead(r.status, r.headers);
      res.end(r.body);
    });
    done();
  });

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

  async function recordOrFail(events: AuditEvent[]): Promise<void> {
    try {
      if (events.length === 1) await deps.recorder.record(events[0]!);
      else await deps.recorder.recordAll(events);
    } catch {
      metrics.auditFailures.inc();
      throw new ApiError('audit_unavailable', 'the audit store cannot be written, so no decision is given; retry shortly');
    }
  }

  const { decideOne, settle } = createDecider({ cache, nodeName, authenticator: deps.authenticator, authenticated });

  /** `last_reload` of `GET /v1/policies`: when, how it ended, what triggered it, and why it was refused. */
  function lastReloadJson(last: LastReload | undefined) {
    if (last === undefined) return null;
    return { at: new Date(last.at).toISOString(), outcome: last.outcome, trigger: last.trigger, ...(last.message !== undefined ? { message: last.message } : {}) };
  }

  function activePolicy(): LoadedPolicy {
    const policy = deps.engine.current();
    if (!policy) throw new ApiError('policy_unavailable', 'no valid policy set is loaded; fix the policy files and reload');
    return policy;
  }

  app.register(async (api) => {
    for (const plugin of deps.plugins ?? []) await plugin(api);

    /** One check, decided, recorded (its row committed) and counted: `/v1/authorize` and `/v1/authorize/forward`. */
    async function authorizeOne(body: AuthorizeBody, request: FastifyRequest): Promise<Record<string, unknown>> {
      const started = performance.now();
      if (body.explain === true) await checkExplainGrant(request, 'explain');
      const policy = activePolicy();
      const decided = decideOne(body, request, policy, -1, now().toISOString());
      const one = decided instanceof Promise ? await decided : decided;
      settle(policy, one);
      const { response, event } = one;
      await recordOrFail([event]);
      metrics.decisionCounts[event.result as DecisionResult]++;
      metrics.decisionSeconds.observe((performance.now() - started) / 1000);
      return response;
    }

    api.post<{ Body: AuthorizeBody }>('/v1/authorize', {
      schema: { body: authorizeRequest, response: { 200: authorizeResponse } },
      config: { scope: 'authorize' },
    }, async (request) => authorizeOne(request.body, request));

    // Forward authentication (nginx `auth_request`, and the forward-auth of other proxies): the check
    // in request headers, the answer in the status, 200 allow and 403 deny, which is all such a PEP
    // reads. nginx asks with GET; the other methods are for proxies that forward the client's. A body
    // is ignored. The same decision, cache, audit row and caller grant (`api "authorize"`) as /v1/authorize.
    api.route({
      method: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
      url: FORWARD_URL,
      // No response schema for 403: a deny shares the status with the `forbidden` error, whose body differs.
      schema: { headers: forwardHeaders, response: { 200: authorizeResponse } },
      config: { scope: 'authorize' },
      preValidation: async (request) => prepareForwardHeaders(request),
      handler: async (request, reply) => {
        const body = forwardBody(request);
        let response: Record<string, unknown>;
        try {
          response = await authorizeOne(body, request);
        } catch (e) {
          throw e instanceof ApiError ? forwardError(e, body) : e;
        }
        return answerForward(reply, response);
      },
    });

    api.post<{ Body: { checks: AuthorizeBody[] } }>('/v1/authorize/batch', {
      schema: { body: batchRequest, response: { 200: batchResponse } },
      config: { scope: 'authorize' },
    }, async (request) => {
      const started = performance.now();
      const checks = request.body.checks;
      for (let i = 0; i < checks.length; i++) {
        if (checks[i]!.explain === true) {
          await checkExplainGrant(request, `checks[${i}].explain`);
          break;
        }
      }
      const policy = activePolicy();
      const decided: Decided[] = [];
      // One request, one moment: every check of a batch is stamped with the same time.
      const timestamp = now().toISOString();
      for (let i = 0; i < request.body.checks.length; i++) {
        const one = decideOne(request.body.checks[i]!, request, policy, i, timestamp);
        decided.push(one instanceof Promise ? await one : one);
      }
      for (const d of decided) settle(policy, d);
      await recordOrFail(decided.map((d) => d.event));
      for (const d of decided) metrics.decisionCounts[d.event.result as DecisionResult]++;
      metrics.decisionSeconds.observe((performance.now() - started) / 1000);
      return { results: decided.map((d) => d.response) };
    });

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
      if (!outcome.ok) {
        // The new set may be fine: it is the audit store that refused the ACL_CHANGE row (503, retry).
        if (outcome.auditUnavailable) throw new ApiError('audit_unavailable', outcome.message, { policy_version: outcome.serving ?? null });
        // The server's own paths stay in its log: the answer names the policy directory by its last segment.
        const message = outcome.message.split(deps.engine.directory).join(path.basename(deps.engine.directory));
        throw new ApiError('policy_invalid', message, { diagnostics: outcome.diagnostics, policy_version: outcome.serving ?? null });
      }
      const directoryName = (text: string) => text.split(deps.engine.directory).join(path.basename(deps.engine.directory));
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
  });

  return app;
}

/** `30m`, `1h`, `7d` (the schema has already checked the shape) in milliseconds. */
function parseWindow(text: string): number {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text)!;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
}

export type { Metrics };
