// One HTTP benchmark target, run in its own process (forked by bench/server.ts) so that the load
// generator (autocannon, in the parent) and the server never share a V8 isolate or an event loop.
//
// Protocol (IPC, JSON): the parent sends {type:'start', config}; the target listens on 127.0.0.1:0
// and answers {type:'ready', port}. {type:'cpu'} is answered with {type:'cpu', usage} (the target's
// process.cpuUsage(), to show how busy the server was, and its monotonic clock). {type:'stop'} closes the server (and the
// audit store), answers {type:'stopped'} and exits normally, so that `--cpu-prof` can write its profile.
import fs from 'node:fs';
import http from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import { createRecorder, createSinkRecorder, openAuditStore, startCheckpointer, startWriterThread, type AuditRecorder, type AuditStore, type Checkpointer } from '../src/audit';
import { Engine } from '../src/engine';
import { buildServer, createReloader } from '../src/server';
import { createSecurity } from '../src/server/auth';
import { authorizeRequest, authorizeResponse } from '../src/server/schemas';
import { forkedOnly } from './args';

export type TargetKind = 'node-http' | 'fastify' | 'pdp';

export interface TargetConfig {
  kind: TargetKind;
  /** pdp: the policy directory. */
  policyDir?: string;
  /** pdp: the SQLite audit file; absent means audit off (no-op recorder, benchmark only). */
  auditPath?: string;
  /** pdp: decision cache entries (10,000 is the `pdp serve` default). */
  cacheEntries?: number;
  /**
   * pdp: serve HTTPS (TLS 1.3) with client certificates, built with createSecurity like `pdp serve
   * --tls-cert --tls-key --client-ca`. fastify: the same TLS settings on the bare route.
   */
  tls?: { cert: string; key: string; clientCa: string; rateLimitPerSecond: number };
  /** pdp: commit audit rows on the event loop (`inline`, the default) or on a writer thread, as `pdp serve --audit-writer`. */
  auditWriter?: 'inline' | 'thread';
  /** pdp with audit: run the audit checkpointer thread as `pdp serve` does (default true). */
  checkpointer?: boolean;
}

export type ParentMessage = { type: 'start'; config: TargetConfig } | { type: 'cpu' } | { type: 'stop' };
export type ChildMessage =
  | { type: 'ready'; port: number }
  | { type: 'cpu'; usage: NodeJS.CpuUsage; monotonicUs: number; connections: number }
  | { type: 'stopped' }
  | { type: 'error'; message: string };

/** The constant answer of the bare baselines: the shape and size of a pdp ALLOW answer. */
export const CONSTANT_RESPONSE = {
  decision_id: '0b7c6f1e-8a0e-4c55-9d0a-3f3e2a4b5c6d',
  allow: true,
  result: 'ALLOW',
  reason: 'spiffe://cluster/ns/prod/sa/order has read on service:payment-service',
  rule: { file: 'prod.hcl', line: 14 },
  policy_version: 'sha256:0000000000000000000000000000000000000000000000000000000000000000',
};

/**
 * AUDIT OFF (BENCHMARK ONLY). The AuditRecorder interface of src/audit/recorder.ts, but every
 * record() resolves immediately without writing anything. It exists only to measure what the audit
 * write costs; the product never runs without its recorder.
 */
export function createNoopRecorderForBenchmarkOnly(): AuditRecorder {
  return {
    record: () => Promise.resolve(),
    recordAll: () => Promise.resolve(),
    writable: () => true,
    queueDepth: () => 0,
    close: async () => undefined,
  };
}

interface Running {
  port: number;
  /** TCP connections accepted so far (keep-alive check). */
  connections(): number;
  close(): Promise<void>;
}

async function startNodeHttp(): Promise<Running> {
  const answer = CONSTANT_RESPONSE;
  const server = http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/authorize') {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":{"code":"invalid_json"}}');
        return;
      }
      if (typeof body !== 'object' || body === null) {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":{"code":"invalid_request"}}');
        return;
      }
      const text = JSON.stringify(answer);
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) }).end(text);
    });
  });
  // Same keep-alive behaviour as fastify's defaults.
  server.keepAliveTimeout = 72_000;
  let connections = 0;
  server.on('connection', () => { connections++; });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    connections: () => connections,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

async function startFastify(config: TargetConfig): Promise<Running> {
  // The same body schema and ajv options as pdp's /v1/authorize, the same response schema, a constant answer.
  // With `tls`: the same TLS 1.3 and client-certificate settings as createSecurity gives `pdp serve`
  // (the transport's own cost, without pdp's authenticator or rate limit).
  const https = config.tls
    ? { key: fs.readFileSync(config.tls.key), cert: fs.readFileSync(config.tls.cert), ca: fs.readFileSync(config.tls.clientCa), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' as const, maxVersion: 'TLSv1.3' as const }
    : undefined;
  const app = Fastify({
    ...(https ? { https } : {}),
    logger: false,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false, allowUnionTypes: true } },
  });
  app.post('/v1/authorize', { schema: { body: authorizeRequest, response: { 200: authorizeResponse } } }, async () => CONSTANT_RESPONSE);
  let connections = 0;
  app.server.on('connection', () => { connections++; });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  return { port, connections: () => connections, close: () => app.close() };
}

async function startPdp(config: TargetConfig): Promise<Running> {
  if (!config.policyDir) throw new Error('pdp target needs policyDir');
  const engine = new Engine(config.policyDir);
  const first = engine.reload();
  if (!first.ok) throw new Error(`policy set in ${config.policyDir} does not load: ${first.error ?? first.diagnostics.map((d) => d.message).join('; ')}`);
  let store: AuditStore | undefined;
  let checkpointer: Checkpointer | undefined;
  let recorder: AuditRecorder;
  if (config.auditPath) {
    // Exactly what `pdp serve` does (src/cli/serve-audit.ts), with the default `--audit-sync normal`.
    store = openAuditStore(config.auditPath, { synchronous: 'normal' });
    recorder = config.auditWriter === 'thread'
      ? createSinkRecorder(await startWriterThread(config.auditPath, { synchronous: 'normal' }))
      : createRecorder(store);
    store.refreshAllowedServices(first.policy.compiled.declaredServices);
    if (config.checkpointer !== false) checkpointer = startCheckpointer(config.auditPath);
  } else {
    recorder = createNoopRecorderForBenchmarkOnly();
  }
  const auditStore = store;
  const reloader = createReloader({ engine, recorder, nodeName: 'bench', onActivated: (p) => auditStore?.refreshAllowedServices(p.compiled.declaredServices) });
  const security = config.tls
    ? createSecurity({ cwd: process.cwd(), tlsCert: config.tls.cert, tlsKey: config.tls.key, clientCa: config.tls.clientCa, rateLimitPerSecond: config.tls.rateLimitPerSecond })
    : undefined;
  const app: FastifyInstance = buildServer({
    engine, recorder, reloader, nodeName: 'bench', ...(checkpointer ? { checkpointer } : {}),
    cacheEntries: config.cacheEntries ?? 10_000,
    // The logger `pdp serve` runs with (default --log-level warn), writing to this process's stdout.
    logger: { level: 'warn', redact: ['req.headers.authorization'] },
    ...(security?.serverOptions ?? {}),
  });
  let connections = 0;
  app.server.on('connection', () => { connections++; });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  return {
    port,
    connections: () => connections,
    async close() {
      security?.close();
      await app.close();
      await recorder.close();
      await checkpointer?.close();
      auditStore?.close();
    },
  };
}

function start(config: TargetConfig): Promise<Running> {
  switch (config.kind) {
    case 'node-http': return startNodeHttp();
    case 'fastify': return startFastify(config);
    case 'pdp': return startPdp(config);
  }
}

function send(message: ChildMessage): void {
  process.send?.(message);
}

if (require.main === module) {
  const unforked = forkedOnly('server-targets.js', 'bench/server.ts', 'node dist/bench/server.js');
  if (unforked) process.exit(unforked.exit);
  let running: Running | undefined;
  // The parent went away: do not linger.
  process.on('disconnect', () => process.exit(1));
  process.on('message', (message: ParentMessage) => {
    void (async () => {
      try {
        if (message.type === 'start') {
          running = await start(message.config);
          send({ type: 'ready', port: running.port });
        } else if (message.type === 'cpu') {
          // monotonicUs is on the clock of --cpu-prof's timestamps (lets the parent cut a profile to the measured window).
          send({ type: 'cpu', usage: process.cpuUsage(), monotonicUs: Number(process.hrtime.bigint() / 1000n), connections: running?.connections() ?? 0 });
        } else if (message.type === 'stop') {
          await running?.close();
          // Exit normally once the parent has the message (a normal exit lets --cpu-prof write its file).
          process.send!({ type: 'stopped' } satisfies ChildMessage, () => process.exit(0));
        }
      } catch (e) {
        send({ type: 'error', message: (e as Error).stack ?? String(e) });
        process.exitCode = 1;
      }
    })();
  });
}
