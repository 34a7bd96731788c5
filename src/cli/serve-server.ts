// `pdp serve`'s HTTP side, once the audit side is open: the security (TLS, tokens), buildServer, the
// start-up log lines, reload logging, SIGHUP and the policy file watcher, then listen.
import os from 'node:os';
import type { FastifyInstance } from 'fastify';
import type { Checkpointer } from '../audit';
import type { Engine } from '../engine';
import { redactTokensAlsoEncoded } from '../identity/token-format';
import { buildServer, describePolicyDiff, type Metrics, type Reloader } from '../server';
import { EXIT_FINDING, type CliIo } from './io';
import { auditAnomaliesReader, type ServeAudit } from './serve-audit';
import type { WorkerLink } from './serve-cluster';
import { workerField, type ServeLog } from './serve-log';
import type { ServeOptions } from './serve-options';
import { loadSecurity, type ServeSecurity } from './serve-security';
import type { RunningServer, ServeShutdown } from './serve-stop';
import { reloadOnSettledChanges, watchDirectories } from './watch';

/**
 * Builds the server on `audit` and listens. When that fails, says why, closes everything (the audit
 * side included) and returns the exit code.
 */
export async function startServer(options: ServeOptions, engine: Engine, audit: ServeAudit, shutdown: ServeShutdown, io: CliIo, log: ServeLog, link: WorkerLink | undefined): Promise<RunningServer | number> {
  const { host, port } = options;
  const { reloader } = audit;
  // Everything opened from here on is closed by `closeAll`, on every path out (a failed start included),
  // so a start that fails exits instead of being held open by a watcher or a timer.
  let security: ServeSecurity | undefined;
  let watcher: { close(): void } | undefined;
  let onHup: (() => void) | undefined;
  let app: FastifyInstance | undefined;
  const closeAll = async () => {
    watcher?.close();
    watcher = undefined;
    if (onHup && !link) process.off('SIGHUP', onHup);
    reloader.close();
    // The token store stays open until the last in-flight request has been answered.
    await app?.close().catch(() => undefined);
    security?.close();
    await audit.close();
  };
  const fail = async (message: string) => {
    log.error(message);
    await closeAll();
    return EXIT_FINDING;
  };

  if (options.tls || options.securityFiles.tokens !== undefined) {
    try {
      security = await loadSecurity(options.securityFiles, options.limits, io);
    } catch (e) {
      return fail((e as Error).message);
    }
  }
  // buildServer throws only on options the checks above should have refused (fastify creating the
  // TLS context, say); the stores opened so far are closed all the same.
  try {
    app = buildServer({
      engine, recorder: audit.recorder, reloader, cacheEntries: options.cacheEntries, nodeName: options.nodeName,
      auditAnomalies: auditAnomaliesReader(options.auditPath), requestTimeoutMs: options.requestTimeoutMs, stopping: () => shutdown.notReady,
      ...(audit.checkpointer ? { checkpointer: audit.checkpointer } : {}),
      // With --workers: the API reload reaches every worker, and /metrics sums every worker's.
      ...(link ? { cluster: { reloadOthers: (trigger: string, sourceIp?: string) => link.reloadOthers(trigger, sourceIp), metrics: () => link.clusterMetrics() } } : {}),
      logger: serverLogger(options.logLevel, options.workerId),
      ...(security?.serverOptions ?? {}),
    });
  } catch (e) {
    return fail(`cannot start the server: ${(e as Error).message}`);
  }
  const server = app;
  logServingMode(server, options, audit.checkpointer);
  logReloads(reloader, log);

  onHup = () => {
    void reloader.reload('signal:SIGHUP');
    security?.reload();
  };
  if (link) link.installHup(onHup);
  else process.on('SIGHUP', onHup);
  if (options.watch) watcher = watchPolicies(options.policyDir, reloader, server);

  try {
    await server.listen({ host, port });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(`cannot listen on ${host}:${port}: ${code ?? (e as Error).message}${bindHint(code, port)}`);
  }
  const address = server.server.address();
  const shownPort = typeof address === 'object' && address ? address.port : port;
  const url = `${options.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${shownPort}`;
  return { app: server, close: closeAll, announce: () => announceListening(url, server, reloader, io, log, link) };
}

/** `listening on URL` on stdout; a --workers worker instead answers what the primary relays, then tells it it is ready. */
function announceListening(url: string, server: FastifyInstance, reloader: Reloader, io: CliIo, log: ServeLog, link: WorkerLink | undefined): void {
  if (!link) io.stdout.write(`pdp serve: listening on ${url}\n`);
  // stdout's line is what scripts wait for, in either format; a log shipper reads stderr.
  if (log.format === 'json') log.info(`listening on ${url}`, { url });
  if (link) {
    // What the primary relays from the other workers: their API reloads, and metrics scrapes.
    link.serve('reload', (trigger, sourceIp) => reloader.reload(trigger, sourceIp));
    const registry = (server as unknown as { pdpMetrics: Metrics }).pdpMetrics.registry;
    link.serve('metrics', () => registry.getMetricsAsJSON());
    link.ready();
  }
}

/** What to do about a failed bind, when there is something to say. */
export function bindHint(code: string | undefined, port: number): string {
  if (code === 'EACCES' && port > 0 && port < 1024) return ' (ports below 1024 need root or the CAP_NET_BIND_SERVICE capability, e.g. systemd\'s AmbientCapabilities=CAP_NET_BIND_SERVICE; or listen on a port of 1024 or more)';
  if (code === 'EADDRINUSE') return ' (another process is listening there)';
  if (code === 'EADDRNOTAVAIL') return ' (no interface of this machine has that address)';
  return '';
}

function serverLogger(level: string, workerId: string | undefined) {
  return {
    level, stream: process.stderr, redact: ['req.headers.authorization'],
    // pino's own keys, plus the --workers slot, as the lines of serve-log.ts carry it.
    base: { pid: process.pid, hostname: os.hostname(), ...workerField(workerId) },
    // The request line is logged at info: a pdp token pasted into a URL keeps its id, not its secret.
    serializers: {
      req: (req: { method: string; url: string; host?: string; ip?: string; socket?: { remotePort?: number } }) => ({
        method: req.method, url: redactTokensAlsoEncoded(req.url), host: req.host === undefined ? undefined : redactTokensAlsoEncoded(req.host), remoteAddress: req.ip, remotePort: req.socket?.remotePort,
      }),
    },
  };
}

/** Where the audit work runs, and a warning for each protection that is off. */
function logServingMode(server: FastifyInstance, options: ServeOptions, checkpointer: Checkpointer | undefined): void {
  const { auditWriter, auditCheckpoint, tls, callerAuthentication } = options;
  server.log.info({ auditWriter, auditCheckpoint }, `audit transactions run ${auditWriter === 'thread' ? 'on a writer thread' : 'on the event loop'}; WAL checkpoints ${checkpointer ? 'on the checkpointer thread' : auditCheckpoint === 'thread' ? 'on worker 1\'s checkpointer thread' : 'inside the commits'}`);
  if (!tls && !callerAuthentication) server.log.warn('serving plain HTTP on loopback: TLS and caller authentication are off (development mode)');
  else if (!tls) server.log.warn('serving plain HTTP on loopback: TLS is off, so bearer tokens cross the connection in clear text (development mode; add --tls-cert and --tls-key)');
  else if (!callerAuthentication) server.log.warn('serving TLS on loopback without caller authentication: every local caller may use every endpoint (add --client-ca and/or --tokens)');
}

/** Each reload that changed something, and each refused one with its diagnostics, on stderr. */
function logReloads(reloader: Reloader, log: ServeLog): void {
  reloader.onOutcome((outcome, trigger, { retry }) => {
    const label = retry > 0 ? `${trigger}, retry ${retry}` : trigger;
    if (outcome.ok && outcome.changed) log.info(`reloaded (${label}): ${outcome.version}, ${describePolicyDiff(outcome)}`, { trigger, retry, policy_version: outcome.version });
    else if (!outcome.ok) log.warn(`reload refused (${label}): ${outcome.message}`, { trigger, retry, diagnostics: outcome.diagnostics });
  });
}

/** Reloads once changes under the policy directory settle; undefined, with a warning, when it cannot be watched. */
function watchPolicies(policyDir: string, reloader: Reloader, server: FastifyInstance): { close(): void } | undefined {
  try {
    const reloads = reloadOnSettledChanges(policyDir, () => void reloader.reload('file-change'));
    const watching = watchDirectories(policyDir, reloads.changed);
    return { close: () => { reloads.cancel(); watching.close(); } };
  } catch {
    server.log.warn('cannot watch the policy directory; reload with SIGHUP or the API');
    return undefined;
  }
}
