// `pdp serve`: wires the engine, the audit store and the HTTP server together and listens. Each
// step is a module of its own: the flags (serve-options), the security files (serve-security), the
// audit side (serve-audit), the HTTP server (serve-server) and the way out (serve-stop); with
// --workers, the primary that forks the workers (serve-primary) and their link to it (serve-cluster).
import { diagnosticToJson, quote, type Diagnostic } from '../diagnostics';
import { Engine } from '../engine';
import { EXIT_FINDING, UsageError, type CliIo, type Command } from './io';
import { probeListen } from './listen-probe';
import { printSetErrors, readPolicyDirectory, withDisplayPaths } from './policy-input';
import type { PolicySource } from '../engine';
import { openServeAudit } from './serve-audit';
import { isClusterWorker, WorkerLink } from './serve-cluster';
import { createServeLog, type ServeLog } from './serve-log';
import { parseServeOptions } from './serve-options';
import { runPrimary } from './serve-primary';
import { checkSecurityFiles } from './serve-security';
import { bindHint, startServer } from './serve-server';
import { serveUntilStopped, type ServeShutdown } from './serve-stop';
export { isLoopback, parseListen } from './serve-options';
export { checkSecurityFiles } from './serve-security';
export { watchDirectories } from './watch';

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
  --log-level LEVEL     fatal, error, warn (default), info, debug: the HTTP server's log lines
  --log-format FORMAT   text (default: \`pdp serve: …\` lines for a person) or json (every line
                        on stderr one JSON object with pino's keys, for a log shipper)
  --workers N           N worker processes sharing the port (node:cluster); default 1

Without TLS the server only binds to a loopback address, and on any other address it needs
caller authentication (--client-ca or --tokens). SIGHUP reloads the policies (and the TLS files);
SIGTERM and SIGINT drain in-flight requests and the audit queue, then exit.
`;

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
  const options = parseServeOptions(args, io);
  const { host, port, policiesGiven } = options;
  const log = createServeLog(options.logFormat, io, options.workerId);
  keepServingWhenLogsFail();
  // Operator files are checked before anything is opened: a wrong path or a key that does not match
  // its certificate is a usage error naming the flag, not an `internal error: ENOENT`.
  checkSecurityFiles(options.securityFiles, io.cwd);
  // Read here rather than by the engine: bad usage (exit 2) worded as every command words it, with the
  // path as the user typed it, and before the listen probe, as every other usage error is.
  const sources = readPolicyDirectory(policiesGiven, io);
  if (sources.length === 0) throw new UsageError(`no \`*.hcl\` files in ${quote(policiesGiven)}`);
  // A set with errors starts nothing, in one process or many: its diagnostics, and the set named as typed.
  const refuseBrokenSet = (built: { diagnostics: Diagnostic[]; error?: string }): number => {
    if (built.error) throw new UsageError(built.error); // not expected: the files were read above
    reportBrokenSet(policiesGiven, sources, built.diagnostics, log, io);
    return EXIT_FINDING;
  };
  if (!isClusterWorker(io.env) && await portTaken(host, port, log)) return EXIT_FINDING;
  if (options.workers > 1 && !isClusterWorker(io.env)) {
    // Validate the policy set once before forking, so a broken set fails fast with its diagnostics.
    const probe = new Engine(options.policyDir).build(sources);
    if (!probe.ok) return refuseBrokenSet(probe);
    const workerArgs = args.filter((a, i) => a !== '--workers' && args[i - 1] !== '--workers' && !a.startsWith('--workers='));
    return runPrimary(options.workers, workerArgs, options.policyDir, options.watch, io, log, { shutdownDelayMs: options.shutdownDelayMs });
  }

  const engine = new Engine(options.policyDir);
  // Built to the side: the set is activated only once its ACL_CHANGE row is committed (openServeAudit).
  const first = engine.build(sources);
  if (!first.ok) return refuseBrokenSet(first);
  const shutdown: ServeShutdown = { notReady: false };
  const audit = await openServeAudit(options, engine, first.policy, shutdown, log);
  if (typeof audit === 'number') return audit;
  const running = await startServer(options, engine, audit, shutdown, io, log, link);
  if (typeof running === 'number') return running;
  log.info(`${first.policy.ruleCount} rules (${first.policy.version}) from ${options.policyDir}`, { policy_version: first.policy.version, rules: first.policy.ruleCount, policies: options.policyDir });
  log.info(`audit store ${options.auditPath}`, { audit: options.auditPath });
  return serveUntilStopped(running, options.shutdownDelayMs, shutdown, log, link);
}

/**
 * Before the start-up row is written (and before workers fork): a port taken by another process
 * must not leave an ACL_CHANGE row for a version that never served. (Workers bind through the
 * primary, which asked here.) Another process can still take the port between this and listen;
 * then the row stays and the next start records the change back, as after a crash.
 */
async function portTaken(host: string, port: number, log: ServeLog): Promise<boolean> {
  const bindError = await probeListen(host, port);
  if (!bindError) return false;
  log.error(`cannot listen on ${host}:${port}: ${bindError.code ?? bindError.message}${bindHint(bindError.code, port)}`);
  return true;
}

/** A policy set with errors stops the start-up: in text with source excerpts, as `pdp check` shows them; in json as one line. */
function reportBrokenSet(given: string, sources: PolicySource[], diagnostics: Diagnostic[], log: ServeLog, io: CliIo): void {
  if (log.format === 'text') {
    printSetErrors('serve', given, sources, diagnostics, 'not starting', io);
    return;
  }
  const shown = withDisplayPaths({ label: given, base: given, sources }, diagnostics);
  log.error(`the policy set in ${quote(given)} has errors; not starting`, { diagnostics: shown.map(diagnosticToJson) });
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
