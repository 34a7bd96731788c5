// `pdp serve`: wires the engine, the audit store and the HTTP server together and listens.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { anomalyReportJson, createRecorder, createSinkRecorder, findAnomalies, openAuditStore, openAuditStoreReadOnly, startCheckpointer, startWriterThread, type AuditRecorder, type RecorderOptions } from '../audit';
import { quote, type Diagnostic } from '../diagnostics';
import { redactTokensAlsoEncoded } from '../identity/token-format';
import { Engine } from '../engine';
import { loadTrustBundle, openTokenStore } from '../identity';
import { buildServer, createReloader, DEFAULT_REQUEST_TIMEOUT_MS, describePolicyDiff, type AuditAnomalies } from '../server';
import { parse, parseDuration, refuseEmptyPaths } from './args';
import { EXIT_FINDING, EXIT_OK, UsageError, type CliIo, type Command } from './io';
import { printSetErrors, readPolicyDirectory } from './policy-input';
import { isClusterWorker, runPrimary, WorkerLink } from './serve-cluster';
import { probeListen } from './listen-probe';
import { reloadOnSettledChanges, watchDirectories } from './watch';
import { normalizeIp } from '../syntax/request';
export { watchDirectories };

export const HELP = `usage: pdp serve [--policies DIR] [--audit FILE] [--listen HOST:PORT] [options]

Runs the PDP: POST /v1/authorize, /v1/authorize/batch, /v1/authorize/forward (nginx auth_request),
/v1/health, /v1/ready, /metrics, /v1/policies, /v1/policies/reload and /v1/audit/anomalies. Every
decision is committed to the audit store before it is answered, and so is every policy version
before it serves (an ACL_CHANGE row at start-up and on each reload; if the start-up row cannot be
written, it exits 1 without listening).

  --policies DIR        policy directory (default $PDP_POLICIES or ./policies)
  --audit FILE          SQLite audit store (default $PDP_AUDIT or ./audit.db)
  --listen HOST:PORT    address (default $PDP_LISTEN or 127.0.0.1:8181)
  --cache-entries N     decision cache entries per policy version (default 10000; 0 disables)
  --audit-sync MODE     normal (default: survives a killed process) or full (survives power loss)
  --audit-writer MODE   where audit transactions run: inline (default; on the event loop) or
                        thread (a writer thread with its own connection: uses a second core;
                        pays off for batch-heavy callers on a machine with cores to spare)
  --audit-checkpoint MODE  who copies the audit WAL into the database file: thread (default; a
                        thread does most of it every 250 ms: far shorter latency spikes, ~5-10 %
                        more CPU per decision) or inline (SQLite, inside a commit every ~40 MiB)
  --node-name NAME      registry_node written to audit rows (default: the host name)
  --no-watch            do not reload when policy files change (SIGHUP and the API still reload)
  --tls-cert FILE       server certificate (PEM); enables HTTPS with TLS 1.3 only
  --tls-key FILE        server private key (PEM)
  --client-ca FILE      CA bundle; clients must present a certificate it signed (mutual TLS)
  --tokens FILE         token store (from \`pdp token\`); enables bearer-token callers and subjects
  --rate-limit N        requests per second per authenticated caller (default 1000; 0 disables)
  --max-failures N      failed authentications from one address before it is locked out (default 5)
  --lockout DUR         how long a locked-out address is refused, and the window in which its
                        failures count (default 15m; e.g. 30s, 15m, 1h; at most 30d)
  --request-timeout DUR how long a client has to send a whole request before it is answered 408
                        and disconnected (default 30s; at most 10m)
  --shutdown-delay DUR  on SIGTERM/SIGINT, first answer /v1/ready with 503 for DUR while still
                        serving everything else (load balancers stop sending), then drain
                        (default 0s: drain at once; at most 5m; a second signal skips the wait)
  --log-level LEVEL     fatal, error, warn (default), info, debug
  --workers N           N worker processes sharing the port (node:cluster); default 1

Without TLS the server only binds to a loopback address, and on any other address it needs
caller authentication (--client-ca or --tokens). SIGHUP reloads the policies (and the TLS files);
SIGTERM and SIGINT drain in-flight requests and the audit queue, then exit.
`;

export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  if (!m) throw new UsageError(`--listen expects HOST:PORT (e.g. 127.0.0.1:8181 or [::1]:8181); got \`${text}\``);
  const port = Number(m[3]);
  if (port > 65535) throw new UsageError(`--listen port \`${port}\` is out of range`);
  return { host: (m[1] ?? m[2])!, port };
}

/**
 * A loopback address in any canonical spelling (`127.x.y.z`, `::1`, `0:0:0:0:0:0:0:1`,
 * `::ffff:127.0.0.1`), or `localhost`. Legacy IPv4 forms (`127.1`, `0x7f000001`) are not addresses
 * pdp reads (normalizeIp), so they are not loopback either: plain HTTP stays refused for them.
 */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const address = normalizeIp(host);
  return address !== undefined && (address === '::1' || /^127\.\d+\.\d+\.\d+$/.test(address));
}

export const run: Command = async (args, io) => {
  if (!isClusterWorker(io.env) || typeof process.send !== 'function') return serve(args, io, undefined);
  // A `--workers` worker: its link to the primary is set up before anything else (see WorkerLink),
  // and released on every way out, so a worker whose start-up fails exits with its code.
  const link = new WorkerLink();
  try {
    return await serve(args, io, link);
  } finally {
    link.release();
  }
};

async function serve(args: string[], io: CliIo, link: WorkerLink | undefined): Promise<number> {
  const { values } = parse(args, {
    policies: { type: 'string' }, audit: { type: 'string' }, listen: { type: 'string' },
    'cache-entries': { type: 'string' }, 'audit-sync': { type: 'string' }, 'node-name': { type: 'string' },
    'no-watch': { type: 'boolean' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' },
    'client-ca': { type: 'string' }, tokens: { type: 'string' }, 'log-level': { type: 'string' },
    'rate-limit': { type: 'string' }, 'max-failures': { type: 'string' }, lockout: { type: 'string' },
    workers: { type: 'string' }, 'audit-writer': { type: 'string' }, 'audit-checkpoint': { type: 'string' },
    'request-timeout': { type: 'string' }, 'shutdown-delay': { type: 'string' },
  }, false);
  const workers = values.workers === undefined ? 1 : Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 256) throw new UsageError(`--workers expects a whole number from 1 to 256; got \`${values.workers}\``);
  const policiesGiven = (values.policies ?? io.env.PDP_POLICIES) || 'policies';
  const policyDir = path.resolve(io.cwd, policiesGiven);
  const auditPath = path.resolve(io.cwd, (values.audit ?? io.env.PDP_AUDIT) || 'audit.db');
  const { host, port } = parseListen((values.listen ?? io.env.PDP_LISTEN) || '127.0.0.1:8181');
  const cacheEntriesText = values['cache-entries'];
  // Digits only: Number() would read `""` as 0 (the cache silently off) and ` 5`, `1e3`, `0x10` as numbers.
  const cacheEntries = cacheEntriesText === undefined ? 10_000 : /^\d{1,9}$/.test(cacheEntriesText) ? Number(cacheEntriesText) : NaN;
  if (!Number.isInteger(cacheEntries) || cacheEntries < 0) throw new UsageError(`--cache-entries expects a whole number ≥ 0; got \`${values['cache-entries']}\``);
  const sync = values['audit-sync'] ?? 'normal';
  if (sync !== 'normal' && sync !== 'full') throw new UsageError(`--audit-sync must be \`normal\` or \`full\`; got \`${sync}\``);
  const auditWriter = values['audit-writer'] ?? 'inline';
  if (auditWriter !== 'inline' && auditWriter !== 'thread') {
    throw new UsageError(`--audit-writer must be \`inline\` or \`thread\`; got \`${auditWriter}\``);
  }
  const auditCheckpoint = values['audit-checkpoint'] ?? 'thread';
  if (auditCheckpoint !== 'inline' && auditCheckpoint !== 'thread') {
    throw new UsageError(`--audit-checkpoint must be \`thread\` or \`inline\`; got \`${auditCheckpoint}\``);
  }
  const requestTimeoutText = values['request-timeout'];
  const requestTimeoutMs = requestTimeoutText === undefined ? DEFAULT_REQUEST_TIMEOUT_MS : parseDuration(requestTimeoutText, '--request-timeout', { ms: 600_000, text: '10m' });
  if (requestTimeoutMs < 1000) throw new UsageError(`--request-timeout must be at least 1s; got \`${requestTimeoutText}\``);
  const shutdownDelayMs = values['shutdown-delay'] === undefined ? 0 : parseDuration(values['shutdown-delay'], '--shutdown-delay', { ms: 300_000, text: '5m' });
  let notReadyForShutdown = false;
  const logLevel = values['log-level'] ?? 'warn';
  if (!['fatal', 'error', 'warn', 'info', 'debug'].includes(logLevel)) throw new UsageError(`--log-level must be fatal, error, warn, info or debug; got \`${logLevel}\``);
  refuseEmptyPaths([], { policies: values.policies, audit: values.audit, 'tls-cert': values['tls-cert'], 'tls-key': values['tls-key'], 'client-ca': values['client-ca'], tokens: values.tokens });
  const tls = values['tls-cert'] !== undefined || values['tls-key'] !== undefined || values['client-ca'] !== undefined;
  if (tls && (values['tls-cert'] === undefined || values['tls-key'] === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  if (!tls && !isLoopback(host)) {
    throw new UsageError(`refusing to serve without TLS on \`${host}\`: plain HTTP is allowed only on loopback; add --tls-cert/--tls-key (and --client-ca for mutual TLS)`);
  }
  // TLS alone encrypts but does not say who calls: without --client-ca or --tokens every caller
  // would have every endpoint (the loopback development mode), so that is allowed only on loopback.
  if (!isLoopback(host) && values['client-ca'] === undefined && values.tokens === undefined) {
    throw new UsageError(`refusing to serve on \`${host}\` without caller authentication: add --client-ca (mutual TLS) and/or --tokens; only loopback may run without it`);
  }
  const limits = securityLimits(values);
  keepServingWhenLogsFail();
  // Operator files are checked before anything is opened: a wrong path or a key that does not match
  // its certificate is a usage error naming the flag, not an `internal error: ENOENT`.
  checkSecurityFiles(values, io.cwd);
  // Read here rather than by the engine: bad usage (exit 2) worded as every command words it, with the
  // path as the user typed it, and before the listen probe, as every other usage error is.
  const sources = readPolicyDirectory(policiesGiven, io);
  if (sources.length === 0) throw new UsageError(`no \`*.hcl\` files in ${quote(policiesGiven)}`);
  // A set with errors starts nothing, in one process or many: its diagnostics, and the set named as typed.
  const refuseBrokenSet = (built: { diagnostics: Diagnostic[]; error?: string }): number => {
    if (built.error) throw new UsageError(built.error); // not expected: the files were read above
    printSetErrors('serve', policiesGiven, sources, built.diagnostics, 'not starting', io);
    return EXIT_FINDING;
  };
  if (!isClusterWorker(io.env)) {
    // Before the start-up row is written (and before workers fork): a port taken by another process
    // must not leave an ACL_CHANGE row for a version that never served. (Workers bind through the
    // primary, which asked here.) Another process can still take the port between this and listen;
    // then the row stays and the next start records the change back, as after a crash.
    const bindError = await probeListen(host, port);
    if (bindError) {
      io.stderr.write(`pdp serve: cannot listen on ${host}:${port}: ${bindError.code ?? bindError.message}${bindHint(bindError.code, port)}\n`);
      return EXIT_FINDING;
    }
  }
  const nodeName = (values['node-name'] ?? os.hostname()) + (isClusterWorker(io.env) ? `/w${io.env.PDP_WORKER_ID ?? '?'}` : '');
  if (workers > 1 && !isClusterWorker(io.env)) {
    // Validate the policy set once before forking, so a broken set fails fast with its diagnostics.
    const probe = new Engine(policyDir).build(sources);
    if (!probe.ok) return refuseBrokenSet(probe);
    const workerArgs = args.filter((a, i) => a !== '--workers' && args[i - 1] !== '--workers' && !a.startsWith('--workers='));
    return runPrimary(workers, workerArgs, policyDir, !values['no-watch'], io, { shutdownDelayMs });
  }

  const engine = new Engine(policyDir);
  // Built to the side: the set is activated only once its ACL_CHANGE row is committed (below).
  const first = engine.build(sources);
  if (!first.ok) return refuseBrokenSet(first);

  let store;
  try {
    store = openAuditStore(auditPath, { synchronous: sync });
  } catch (e) {
    io.stderr.write(`pdp serve: ${(e as Error).message}\n`);
    return EXIT_FINDING;
  }
  const auditStore = store;
  // Why the audit store refuses writes (locked, disk full, file deleted) is what an operator needs
  // when the PDP answers 503: said when the outage starts, again at most once a minute while it lasts
  // (SQLite words one lock two ways, so a per-wording limit would flap), and when it ends.
  let outageSince: number | undefined;
  let outageLoggedAt = 0;
  let outageErrors = 0;
  // Set once the server runs: drains and stops with an exit code (see the end of serve).
  let stopWith: ((reason: string, code: number) => void) | undefined;
  const recorderOptions: RecorderOptions = {
    onError: (err) => {
      if (err.name === 'AuditFileReplacedError' && stopWith) {
        // Unrecoverable in this process (a rotation moved the file away, someone deleted it): waiting
        // would answer 503 forever while /v1/health says ok, so no liveness probe would ever restart
        // it. Exit 1 instead; a supervisor starts pdp again on the path, which opens (or creates) the
        // file there and records its start-up ACL_CHANGE row.
        io.stderr.write(`pdp serve: ${err.message}; exiting with status 1 so that a supervisor restarts pdp on \`${auditPath}\`\n`);
        stopWith('audit database replaced', EXIT_FINDING);
        return;
      }
      const at = Date.now();
      outageErrors++;
      if (outageSince === undefined) {
        outageSince = at;
        outageLoggedAt = at;
        io.stderr.write(`pdp serve: the audit store cannot be written (decisions are refused with 503 until it can): ${err.message}\n`);
      } else if (at - outageLoggedAt >= 60_000) {
        outageLoggedAt = at;
        io.stderr.write(`pdp serve: the audit store still cannot be written after ${Math.round((at - outageSince) / 1000)} s (${outageErrors} failed writes and probes): ${err.message}\n`);
      }
    },
    onRecovered: () => {
      if (outageSince === undefined) return;
      io.stderr.write(`pdp serve: the audit store can be written again after ${((Date.now() - outageSince) / 1000).toFixed(1)} s; decisions are answered again\n`);
      outageSince = undefined;
      outageErrors = 0;
    },
  };
  let recorder: AuditRecorder;
  if (auditWriter === 'thread') {
    // The thread has its own connection for the audit rows; this one (migrated above) keeps the
    // rare writes of a reload (allowed_services) and the start-up read of the last ACL_CHANGE.
    try {
      const onRestart = (previous: Error) => io.stderr.write(`pdp serve: ${previous.message}; a new audit writer thread took over\n`);
      recorder = createSinkRecorder(await startWriterThread(auditPath, { synchronous: sync, onRestart }), recorderOptions);
    } catch (e) {
      auditStore.close();
      io.stderr.write(`pdp serve: cannot start the audit writer thread: ${(e as Error).message}\n`);
      return EXIT_FINDING;
    }
  } else {
    recorder = createRecorder(auditStore, recorderOptions);
  }
  const refreshAllowed = (services: { name: string; namespace: string }[]) => {
    try {
      auditStore.refreshAllowedServices(services);
    } catch (e) {
      // The decision path does not depend on it; the next load refreshes it again.
      io.stderr.write(`pdp serve: could not refresh allowed_services: ${(e as Error).message}\n`);
    }
  };
  const reloader = createReloader({ engine, recorder, nodeName, onActivated: (p) => refreshAllowed(p.compiled.declaredServices) });
  // The first activation is audited like a reload: an ACL_CHANGE row (trigger `startup`) from the
  // newest version the log records to this one. If it cannot be committed, nothing is served.
  let started;
  try {
    started = await reloader.start(first.policy, auditStore.lastPolicyChange());
  } catch (e) {
    started = { ok: false as const, message: `cannot read the last recorded policy version: ${(e as Error).message}; not serving unaudited` };
  }
  if (!started.ok) {
    io.stderr.write(`pdp serve: audit store \`${auditPath}\`: ${started.message}\n`);
    await recorder.close();
    return EXIT_FINDING;
  }

  // WAL checkpoints off the event loop (audit/checkpointer.ts): one thread per audit file, so with
  // --workers only worker 1 (and its replacement) runs it. Not required for serving: if its thread cannot
  // start or dies, SQLite's checkpoints in the commits do all the copying, as without it; that is logged.
  let lastCheckpointError = '';
  const checkpointer = auditCheckpoint === 'thread' && (!isClusterWorker(io.env) || io.env.PDP_WORKER_ID === '1')
    ? startCheckpointer(auditPath, {
      onError: (err, fatal) => {
        if (fatal || err.message !== lastCheckpointError) io.stderr.write(`pdp serve: ${err.message}\n`);
        lastCheckpointError = err.message;
      },
    })
    : undefined;

  // Everything opened from here on is closed by `closeAll`, on every path out (a failed start included),
  // so a start that fails exits instead of being held open by a watcher or a timer.
  let security: Awaited<ReturnType<typeof loadSecurity>> | undefined;
  let watcher: { close(): void } | undefined;
  let onHup: (() => void) | undefined;
  let app: ReturnType<typeof buildServer> | undefined;
  const closeAll = async () => {
    watcher?.close();
    watcher = undefined;
    if (onHup && !link) process.off('SIGHUP', onHup);
    reloader.close();
    // The token store stays open until the last in-flight request has been answered.
    await app?.close().catch(() => undefined);
    security?.close();
    await recorder.close();
    await checkpointer?.close();
    auditStore.close();
  };

  if (tls || values.tokens !== undefined) {
    try {
      security = await loadSecurity(values, limits, io);
    } catch (e) {
      io.stderr.write(`pdp serve: ${(e as Error).message}\n`);
      await closeAll();
      return EXIT_FINDING;
    }
  }
  // GET /v1/audit/anomalies: the server never opens SQLite itself; it is handed the analyses, which
  // run on a read-only connection of their own (WAL: they never block the writer, nor see half a commit).
  const auditAnomalies: AuditAnomalies = (options) => {
    const reader = openAuditStoreReadOnly(auditPath);
    try {
      return anomalyReportJson(findAnomalies(reader.db, options), path.basename(auditPath));
    } finally {
      reader.close();
    }
  };
  // buildServer throws only on options the checks above should have refused (fastify creating the
  // TLS context, say); the stores opened so far are closed all the same.
  try {
    app = buildServer({
      engine, recorder, reloader, cacheEntries, nodeName, auditAnomalies, requestTimeoutMs, stopping: () => notReadyForShutdown, ...(checkpointer ? { checkpointer } : {}),
      // With --workers: the API reload reaches every worker, and /metrics sums every worker's.
      ...(link ? { cluster: { reloadOthers: (trigger: string, sourceIp?: string) => link.reloadOthers(trigger, sourceIp), metrics: () => link.clusterMetrics() } } : {}),
      logger: {
        level: logLevel, stream: process.stderr, redact: ['req.headers.authorization'],
        // The request line is logged at info: a pdp token pasted into a URL keeps its id, not its secret.
        serializers: {
          req: (req: { method: string; url: string; host?: string; ip?: string; socket?: { remotePort?: number } }) => ({
            method: req.method, url: redactTokensAlsoEncoded(req.url), host: req.host === undefined ? undefined : redactTokensAlsoEncoded(req.host), remoteAddress: req.ip, remotePort: req.socket?.remotePort,
          }),
        },
      },
      ...(security?.serverOptions ?? {}),
    });
  } catch (e) {
    io.stderr.write(`pdp serve: cannot start the server: ${(e as Error).message}\n`);
    await closeAll();
    return EXIT_FINDING;
  }
  const server = app;
  server.log.info({ auditWriter, auditCheckpoint }, `audit transactions run ${auditWriter === 'thread' ? 'on a writer thread' : 'on the event loop'}; WAL checkpoints ${checkpointer ? 'on the checkpointer thread' : auditCheckpoint === 'thread' ? 'on worker 1\'s checkpointer thread' : 'inside the commits'}`);
  const callerAuthentication = values['client-ca'] !== undefined || values.tokens !== undefined;
  if (!tls && !callerAuthentication) server.log.warn('serving plain HTTP on loopback: TLS and caller authentication are off (development mode)');
  else if (!tls) server.log.warn('serving plain HTTP on loopback: TLS is off, so bearer tokens cross the connection in clear text (development mode; add --tls-cert and --tls-key)');
  else if (!callerAuthentication) server.log.warn('serving TLS on loopback without caller authentication: every local caller may use every endpoint (add --client-ca and/or --tokens)');

  reloader.onOutcome((outcome, trigger, { retry }) => {
    const label = retry > 0 ? `${trigger}, retry ${retry}` : trigger;
    if (outcome.ok && outcome.changed) io.stderr.write(`pdp serve: reloaded (${label}): ${outcome.version}, ${describePolicyDiff(outcome)}\n`);
    else if (!outcome.ok) io.stderr.write(`pdp serve: reload refused (${label}): ${outcome.message}\n${outcome.diagnostics.map((d) => `  ${d.file}:${d.line}:${d.column}: ${d.code}: ${d.message}\n`).join('')}`);
  });

  onHup = () => {
    void reloader.reload('signal:SIGHUP');
    security?.reload();
  };
  if (link) link.installHup(onHup);
  else process.on('SIGHUP', onHup);
  if (!values['no-watch']) {
    try {
      const reloads = reloadOnSettledChanges(policyDir, () => void reloader.reload('file-change'));
      const watching = watchDirectories(policyDir, reloads.changed);
      watcher = { close: () => { reloads.cancel(); watching.close(); } };
    } catch {
      server.log.warn('cannot watch the policy directory; reload with SIGHUP or the API');
    }
  }

  try {
    await server.listen({ host, port });
  } catch (e) {
    io.stderr.write(`pdp serve: cannot listen on ${host}:${port}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}${bindHint((e as NodeJS.ErrnoException).code, port)}\n`);
    await closeAll();
    return EXIT_FINDING;
  }
  const address = server.server.address();
  const shownPort = typeof address === 'object' && address ? address.port : port;
  io.stderr.write(`pdp serve: ${first.policy.ruleCount} rules (${first.policy.version}) from ${policyDir}\n`);
  io.stderr.write(`pdp serve: audit store ${auditPath}\n`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string, code: number = EXIT_OK, delayMs = 0) => {
      if (stopping) return;
      stopping = true;
      if (delayMs > 0) {
        // Lame duck: readiness fails first, so load balancers and kubelets stop sending here, while
        // requests still arriving (they notice within a probe period or two) are answered as usual.
        // A second signal ends the wait; a third has the default effect (the first handlers were `once`).
        notReadyForShutdown = true;
        io.stderr.write(`pdp serve: ${signal}: not ready; draining in ${delayMs / 1000} s\n`);
        await new Promise<void>((resolve) => {
          const skip = () => {
            clearTimeout(timer);
            process.off('SIGTERM', skip);
            process.off('SIGINT', skip);
            resolve();
          };
          const timer = setTimeout(skip, delayMs);
          process.once('SIGTERM', skip);
          process.once('SIGINT', skip);
        });
      }
      io.stderr.write(`pdp serve: ${signal}: draining\n`);
      // app.close() (see buildServer's preClose hook): the listener stops accepting, idle keep-alive
      // connections are closed, requests already read finish (and are audited) with `Connection:
      // close`, and a request that still arrives is answered 503 `shutting_down` with `Connection:
      // close`. After 10 s whatever is left is cut.
      const deadline = setTimeout(() => server.server.closeAllConnections(), 10_000);
      await closeAll();
      clearTimeout(deadline);
      io.stderr.write('pdp serve: stopped\n');
      // (A cluster worker's IPC channel, which would keep it alive, is released by `run`.)
      resolve(code);
    };
    stopWith = (reason, code) => void stop(reason, code);
    // A worker whose primary is gone (even SIGKILLed) drains and stops instead of lingering.
    link?.onPrimaryGone(() => void stop('primary gone'));
    process.once('SIGTERM', () => void stop('SIGTERM', EXIT_OK, shutdownDelayMs));
    process.once('SIGINT', () => void stop('SIGINT', EXIT_OK, shutdownDelayMs));

    // Said only now that the signal handlers are in place: a supervisor that sends SIGTERM as soon
    // as it reads this line must get a drain, not the default action (seen under load in a test).
    if (!link) io.stdout.write(`pdp serve: listening on ${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${shownPort}\n`);
    if (link) {
      // What the primary relays from the other workers: their API reloads, and metrics scrapes.
      link.serve('reload', (trigger, sourceIp) => reloader.reload(trigger, sourceIp));
      const registry = (server as unknown as { pdpMetrics: import('../server').Metrics }).pdpMetrics.registry;
      link.serve('metrics', () => registry.getMetricsAsJSON());
      link.ready();
    }
  });
}

/** What to do about a failed bind, when there is something to say. */
function bindHint(code: string | undefined, port: number): string {
  if (code === 'EACCES' && port > 0 && port < 1024) return ' (ports below 1024 need root or the CAP_NET_BIND_SERVICE capability, e.g. systemd\'s AmbientCapabilities=CAP_NET_BIND_SERVICE; or listen on a port of 1024 or more)';
  if (code === 'EADDRINUSE') return ' (another process is listening there)';
  if (code === 'EADDRNOTAVAIL') return ' (no interface of this machine has that address)';
  return '';
}

/** --lockout (and the failure window that follows it) at most 30 days. */
const MAX_LOCKOUT_MS = 30 * 86_400_000;

/**
 * The files named by --tls-cert, --tls-key, --client-ca and --tokens, checked before anything is
 * opened: each must be readable (a new token store needs an existing directory), the key must match
 * the certificate, and the CA bundle must hold CA certificates. Throws a UsageError naming the flag.
 */
export function checkSecurityFiles(values: Record<string, string | boolean | undefined>, cwd: string): void {
  const read = (flag: string): Buffer | undefined => {
    const given = values[flag] as string | undefined;
    if (given === undefined) return undefined;
    const file = path.resolve(cwd, given);
    try {
      if (fs.statSync(file).isDirectory()) throw new UsageError(`--${flag} \`${given}\` is a directory; expected a PEM file`);
      return fs.readFileSync(file);
    } catch (e) {
      if (e instanceof UsageError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      throw new UsageError(`--${flag} \`${given}\` ${code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'cannot be read (permission denied)' : `cannot be read (${code ?? (e as Error).message})`}`);
    }
  };
  const cert = read('tls-cert');
  const key = read('tls-key');
  const ca = read('client-ca');
  if (cert && key) {
    try {
      tls.createSecureContext({ cert, key });
    } catch (e) {
      const reason = (e as Error).message;
      if (/key values mismatch/i.test(reason)) throw new UsageError(`--tls-key \`${String(values['tls-key'])}\` does not match the certificate in --tls-cert \`${String(values['tls-cert'])}\``);
      throw new UsageError(`--tls-cert \`${String(values['tls-cert'])}\` and --tls-key \`${String(values['tls-key'])}\` are not a usable PEM certificate and private key (${reason.replace(/^error:[0-9A-F]+:/i, '')})`);
    }
  }
  if (ca) {
    try {
      loadTrustBundle(ca.toString('utf8'), `\`${String(values['client-ca'])}\``);
    } catch (e) {
      throw new UsageError(`--client-ca: ${(e as Error).message}`);
    }
  }
  const tokens = values.tokens as string | undefined;
  if (tokens !== undefined) {
    const file = path.resolve(cwd, tokens);
    let stat: fs.Stats | undefined;
    try {
      stat = fs.statSync(file);
    } catch {
      stat = undefined;
    }
    if (stat?.isDirectory()) throw new UsageError(`--tokens \`${tokens}\` is a directory; expected a token store file (from \`pdp token create\`)`);
    if (!stat) {
      const dir = path.dirname(file);
      let dirOk = false;
      try {
        dirOk = fs.statSync(dir).isDirectory();
      } catch {
        dirOk = false;
      }
      if (!dirOk) throw new UsageError(`--tokens \`${tokens}\`: the directory \`${path.dirname(tokens)}\` does not exist; create the store with \`pdp token create --tokens ${tokens}\` (which creates it) or fix the path`);
    }
  }
}

interface SecurityLimits {
  rateLimitPerSecond?: number;
  maxFailures?: number;
  lockoutMs?: number;
}

/**
 * A log sink that fails (the log shipper reading stderr was killed: EPIPE; the disk holding the log
 * file is full: ENOSPC) must not take the PDP down with it: the decisions are in the audit store,
 * which fails closed on its own. Without a listener the stream's 'error' event is unhandled and
 * Node exits. Lines that cannot be written are dropped; the stream stays unusable once it failed.
 */
function keepServingWhenLogsFail(): void {
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.listenerCount('error') === 0) stream.on('error', () => undefined);
  }
}

/** --rate-limit, --max-failures, --lockout (validated before anything is opened). */
function securityLimits(values: Record<string, string | boolean | undefined>): SecurityLimits {
  const limits: SecurityLimits = {};
  const rate = values['rate-limit'] as string | undefined;
  if (rate !== undefined) {
    if (!/^\d{1,9}$/.test(rate)) throw new UsageError(`--rate-limit expects a whole number of requests per second ≥ 0; got \`${rate}\``);
    limits.rateLimitPerSecond = Number(rate);
  }
  const max = values['max-failures'] as string | undefined;
  if (max !== undefined) {
    if (!/^\d{1,6}$/.test(max) || Number(max) < 1) throw new UsageError(`--max-failures expects a whole number ≥ 1; got \`${max}\``);
    limits.maxFailures = Number(max);
  }
  const lockout = values.lockout as string | undefined;
  if (lockout !== undefined) {
    const ms = parseDuration(lockout, '--lockout', { ms: MAX_LOCKOUT_MS, text: '30d' });
    if (ms < 1000) throw new UsageError(`--lockout must be at least 1s; got \`${lockout}\``);
    limits.lockoutMs = ms;
  }
  return limits;
}

/**
 * TLS, client certificates and tokens: see src/server/auth.ts. The token store (SQLite) is opened
 * here, not by the server, and closed by the returned `close()` after the server's own part.
 */
async function loadSecurity(values: Record<string, string | boolean | undefined>, limits: SecurityLimits, io: CliIo) {
  const { createSecurity } = await import('../server/auth');
  const tokensFile = values.tokens as string | undefined;
  const tokens = tokensFile ? openTokenStore(path.resolve(io.cwd, tokensFile)) : undefined;
  let security: ReturnType<typeof createSecurity>;
  try {
    security = createSecurity({
      cwd: io.cwd,
      tlsCert: values['tls-cert'] as string | undefined,
      tlsKey: values['tls-key'] as string | undefined,
      clientCa: values['client-ca'] as string | undefined,
      ...(tokens ? { tokens } : {}),
      ...limits,
      // The window in which failures count follows the lockout, as in the design (15m and 15m).
      ...(limits.lockoutMs !== undefined ? { windowMs: limits.lockoutMs } : {}),
    });
  } catch (e) {
    tokens?.close();
    throw e;
  }
  return {
    ...security,
    close(): void {
      security.close();
      tokens?.close();
    },
  };
}
