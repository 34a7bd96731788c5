// The decision endpoints: POST /v1/authorize, /v1/authorize/forward (forward.ts) and
// /v1/authorize/batch. Each check is decided by decide.ts; its audit row is committed before the
// answer, and it is counted.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { DecisionResult } from '../syntax';
import type { CallerChecks } from './callers';
import type { ServerContext } from './context';
import { createDecider, type Decided } from './decide';
import type { AuthorizeBody } from './deps';
import { ApiError } from './errors';
import { answerForward, forwardBody, forwardError, FORWARD_URL, prepareForwardHeaders } from './forward';
import { authorizeRequest, authorizeResponse, batchRequest, batchResponse, forwardHeaders } from './schemas';

export function registerDecisionRoutes(api: FastifyInstance, ctx: ServerContext, { authenticated, checkExplainGrant }: CallerChecks): void {
  const { deps, now, nodeName, cache, metrics, recordOrFail, activePolicy } = ctx;
  const { decideOne, settle } = createDecider({ cache, nodeName, authenticator: deps.authenticator, authenticated });

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
}
