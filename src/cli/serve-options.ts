// `pdp serve`'s flags, parsed and validated into one ServeOptions before anything is read or opened.
// The checks run in a fixed order, so that when several flags are wrong the same usage error wins.
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_REQUEST_TIMEOUT_MS } from '../server';
import { normalizeIp } from '../syntax/request';
import { parse, parseDuration, refuseEmptyPaths } from './args';
import { UsageError, type CliIo } from './io';
import { isClusterWorker } from './serve-cluster';
import { LOG_FORMATS, type LogFormat } from './serve-log';

/** The operator files, as typed, by flag name (so that checkSecurityFiles can name the flag). */
export type SecurityFiles = { 'tls-cert'?: string; 'tls-key'?: string; 'client-ca'?: string; tokens?: string };

export interface SecurityLimits {
  rateLimitPerSecond?: number;
  maxFailures?: number;
  lockoutMs?: number;
}

/** The flags of `pdp serve`, validated, with their defaults and environment variables applied. */
export interface ServeOptions {
  /** --workers: processes sharing the port (node:cluster); 1 serves in this process. */
  workers: number;
  /** The policy directory as the user typed it (messages name it so). */
  policiesGiven: string;
  policyDir: string;
  auditPath: string;
  host: string;
  port: number;
  cacheEntries: number;
  sync: 'normal' | 'full';
  auditWriter: 'inline' | 'thread';
  auditCheckpoint: 'inline' | 'thread';
  requestTimeoutMs: number;
  shutdownDelayMs: number;
  logLevel: string;
  /** --log-format: how the lines `pdp serve` itself writes on stderr look (serve-log.ts). */
  logFormat: LogFormat;
  /** PDP_WORKER_ID of a --workers worker (`?` if missing); undefined in a process serving alone or in the primary. */
  workerId: string | undefined;
  /** registry_node of the audit rows: --node-name or the host name, with `/wN` in a --workers worker. */
  nodeName: string;
  /** Reload when policy files change (false with --no-watch). */
  watch: boolean;
  /** HTTPS (--tls-cert and --tls-key, with or without --client-ca). */
  tls: boolean;
  /** --client-ca and/or --tokens. */
  callerAuthentication: boolean;
  securityFiles: SecurityFiles;
  limits: SecurityLimits;
}

/** --lockout (and the failure window that follows it) at most 30 days. */
const MAX_LOCKOUT_MS = 30 * 86_400_000;

/** Every flag checked, in this order; throws the first UsageError. */
export function parseServeOptions(args: string[], io: CliIo): ServeOptions {
  const { values } = parse(args, {
    policies: { type: 'string' }, audit: { type: 'string' }, listen: { type: 'string' },
    'cache-entries': { type: 'string' }, 'audit-sync': { type: 'string' }, 'node-name': { type: 'string' },
    'no-watch': { type: 'boolean' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' },
    'client-ca': { type: 'string' }, tokens: { type: 'string' }, 'log-level': { type: 'string' }, 'log-format': { type: 'string' },
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
  const logLevel = values['log-level'] ?? 'warn';
  if (!['fatal', 'error', 'warn', 'info', 'debug'].includes(logLevel)) throw new UsageError(`--log-level must be fatal, error, warn, info or debug; got \`${logLevel}\``);
  const logFormat = (values['log-format'] ?? 'text') as LogFormat;
  if (!LOG_FORMATS.includes(logFormat)) throw new UsageError(`--log-format must be \`text\` or \`json\`; got \`${values['log-format']}\``);
  const securityFiles: SecurityFiles = { 'tls-cert': values['tls-cert'], 'tls-key': values['tls-key'], 'client-ca': values['client-ca'], tokens: values.tokens };
  refuseEmptyPaths([], { policies: values.policies, audit: values.audit, ...securityFiles });
  const tls = values['tls-cert'] !== undefined || values['tls-key'] !== undefined || values['client-ca'] !== undefined;
  if (tls && (values['tls-cert'] === undefined || values['tls-key'] === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  if (!tls && !isLoopback(host)) {
    throw new UsageError(`refusing to serve without TLS on \`${host}\`: plain HTTP is allowed only on loopback; add --tls-cert/--tls-key (and --client-ca for mutual TLS)`);
  }
  // TLS alone encrypts but does not say who calls: without --client-ca or --tokens every caller
  // would have every endpoint (the loopback development mode), so that is allowed only on loopback.
  const callerAuthentication = values['client-ca'] !== undefined || values.tokens !== undefined;
  if (!isLoopback(host) && !callerAuthentication) {
    throw new UsageError(`refusing to serve on \`${host}\` without caller authentication: add --client-ca (mutual TLS) and/or --tokens; only loopback may run without it`);
  }
  const limits = securityLimits(values);
  const workerId = isClusterWorker(io.env) ? io.env.PDP_WORKER_ID ?? '?' : undefined;
  const nodeName = (values['node-name'] ?? os.hostname()) + (workerId === undefined ? '' : `/w${workerId}`);
  return {
    workers, policiesGiven, policyDir, auditPath, host, port, cacheEntries, sync, auditWriter, auditCheckpoint,
    requestTimeoutMs, shutdownDelayMs, logLevel, logFormat, workerId, nodeName, watch: !values['no-watch'], tls, callerAuthentication, securityFiles, limits,
  };
}

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
