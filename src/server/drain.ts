// Graceful drain (app.close(), i.e. SIGTERM/SIGINT in `pdp serve`). The listener stops accepting and
// Node closes the idle keep-alive connections; every response sent from now on carries
// `Connection: close`, so a client never reuses a connection that is about to go away; a request
// that still arrives on an open connection is answered 503 `shutting_down`, also with
// `Connection: close`. Requests already handed to a route finish normally, audit included.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { ServerContext } from './context';
import { countedRawError } from './instance';

export function addGracefulDrain(app: FastifyInstance, { metrics }: ServerContext): void {
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
      const r = countedRawError(metrics, 'shutting_down', 'the server is shutting down; retry on another instance');
      res.writeHead(r.status, r.headers);
      res.end(r.body);
    });
    done();
  });
}
