// buildServer(deps): the /v1 HTTP API on fastify. No listen() here: `pdp serve` listens, tests
// use an ephemeral port or inject(). The audit recorder and everything with I/O are handed in.
// Here only the wiring; each concern is a file of its own, and what they share is one ServerContext.
import type { FastifyInstance } from 'fastify';
import { addCallerChecks } from './callers';
import { createContext } from './context';
import { registerDecisionRoutes } from './decisions';
import type { ServerDeps } from './deps';
import { addGracefulDrain } from './drain';
import { createInstance } from './instance';
import { registerOperationRoutes } from './operations';
import { registerPolicyRoutes } from './policies';

export type { AuditAnomalies, Authenticator, AuthorizeBody, Caller, OtherWorkerReload, ServerDeps, WorkerCluster } from './deps';
export type { Metrics } from './metrics';
export { FORWARD_URL } from './forward';
export { DEFAULT_REQUEST_TIMEOUT_MS } from './instance';

export function buildServer(deps: ServerDeps): FastifyInstance {
  const ctx = createContext(deps);
  // In this order: fastify runs the hooks of each kind in the order they were added, and the 405
  // table (instance.ts) is filled by an onRoute hook, which sees only the routes added after it.
  const app = createInstance(ctx);
  addGracefulDrain(app, ctx);
  const callers = addCallerChecks(app, ctx);
  app.register(async (api) => {
    for (const plugin of deps.plugins ?? []) await plugin(api);
    registerDecisionRoutes(api, ctx, callers);
    registerOperationRoutes(api, ctx, callers);
    registerPolicyRoutes(api, ctx);
  });
  return app;
}
