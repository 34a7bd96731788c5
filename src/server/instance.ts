// The fastify instance of one server, before its hooks and routes: options (limits, timeouts, strict
// validation), the `Host` check in front of fastify, the content-type parsers, 404 and 405, and the
// error handler. Every error answer, whether fastify writes it or it is written raw, has the API's
// shape (errors.ts) and is counted.
import { isUtf8 } from 'node:buffer';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { mayHoldToken, redactTokensAlsoEncoded } from '../identity/token-format';
import type { ServerContext } from './context';
import { ApiError, ERRORS, errorBody, type ErrorCode } from './errors';
import { FORWARD_URL } from './forward';
import { lazyChildLoggerFactory } from './logging';
import type { Metrics } from './metrics';
import { describeForwardHeader, describeValidation, forbiddenKey, unreadableBody, type ValidationIssue } from './validation';

/** How long a client has to send a whole request: a 1 MiB batch at 35 KB/s. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

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

/** A whole HTTP/1.1 error response for a raw socket or a raw response: the API's error shape, then close. */
function rawErrorResponse(code: ErrorCode, message: string, extra: Record<string, unknown> = {}): { status: number; headers: Record<string, string>; body: string } {
  const body = JSON.stringify(errorBody(code, message, extra));
  return { status: ERRORS[code].status, headers: { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), connection: 'close' }, body };
}

/** An error answer written outside fastify (before routing, while closing), counted like those `fail` writes. */
export function countedRawError(metrics: Metrics, ...args: Parameters<typeof rawErrorResponse>) {
  const r = rawErrorResponse(...args);
  metrics.countError(args[0], r.status);
  return r;
}

export function createInstance({ deps, metrics }: ServerContext): FastifyInstance {
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
    // Draining is ours (the preClose hook in drain.ts): fastify's own 503 has another body shape.
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
        const r = countedRawError(metrics, code, message);
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
      const r = countedRawError(metrics, 'invalid_request', 'the request has no `Host` header; HTTP/1.1 requires one', { field: 'Host' });
      res.writeHead(r.status, r.headers);
      res.end(r.body);
      return;
    }
    fastifyListener(req, res);
  });

  app.decorate('pdpMetrics', metrics);

  app.setErrorHandler((err: Error & { validation?: ValidationIssue[]; validationContext?: string; code?: string; statusCode?: number }, request, reply) => {
    if (err instanceof ApiError) {
      for (const [k, v] of Object.entries(err.headers)) reply.header(k, v);
      return fail(reply, err.code, err.message, err.extra);
    }
    if (err.validation?.length) {
      const validated = err.validationContext === 'querystring' ? request.query : request.body;
      const { field, message } = err.validationContext === 'headers' ? describeForwardHeader(err.validation[0]!) : describeValidation(err.validation[0]!, validated);
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
  const bodyIgnored = (request: FastifyRequest, empty: boolean) =>
    request.routeOptions.url === FORWARD_URL || (empty && request.routeOptions.url === '/v1/policies/reload');
  // Any other content type is 415, unless the body is ignored.
  app.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    if (bodyIgnored(request, body === '')) done(null, undefined);
    else done(new ApiError('unsupported_media_type', 'the body must be `application/json`'), undefined);
  });
  // fastify's JSON parser (secure-json-parse) refuses `__proto__` and `constructor.prototype` keys,
  // but reports them as "not valid JSON". Its refusals are looked at again (only on that error path):
  // JSON that parses is valid, so the answer is 400 invalid_request naming the key.
  // The body is read as bytes: decoded as a string, bytes that are not UTF-8 would silently become
  // U+FFFD, and a check would be decided and audited for an identity nobody sent.
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, bytes: Buffer, done) => {
    if (bodyIgnored(request, bytes.length === 0)) {
      done(null, undefined);
      return;
    }
    const refusal = unreadableBody(request.headers);
    if (refusal !== undefined) {
      done(new ApiError('unsupported_media_type', refusal), undefined);
      return;
    }
    if (!isUtf8(bytes)) {
      done(new ApiError('invalid_json', 'the body is not UTF-8 text: JSON must be sent as UTF-8 (RFC 8259), and these bytes are not', { field: 'body' }), undefined);
      return;
    }
    const body = bytes.toString('utf8');
    defaultJson(request, body, (err: Error | null, value: unknown) => {
      if (err && (err as { code?: string }).code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
        let parsed: unknown;
        let valid = true;
        try {
          parsed = JSON.parse(body); // own properties only: no prototype is touched
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

  return app;
}
