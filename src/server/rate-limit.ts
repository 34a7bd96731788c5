// The per-caller rate limit of `pdp serve` (--rate-limit; 1000 requests per second by default once
// callers authenticate): counted per caller identity, or per address for a request without one; a
// request over the limit is answered 429 `rate_limited` with Retry-After.
import type { FastifyInstance } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import { ApiError } from './errors';

/** Registers the limit on `app`; the caller awaits what this returns, as it would `app.register`. */
export function registerRateLimit(app: FastifyInstance, perSecond: number) {
  return app.register(rateLimit, {
    max: perSecond,
    timeWindow: 1000,
    keyGenerator: (req) => req.caller?.identity ?? req.ip,
    // No x-ratelimit-* headers on answers within the limit: a PEP does not read them, and
    // three headers on every decision are bytes and work on the hot path. A 429 still says
    // when to retry (Retry-After).
    addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false },
    errorResponseBuilder: (_req, ctx) => new ApiError('rate_limited', `rate limit of ${ctx.max} requests per second exceeded; retry in ${Math.ceil(ctx.ttl / 1000)} s`, {}, { 'retry-after': String(Math.ceil(ctx.ttl / 1000)) }),
  });
}
