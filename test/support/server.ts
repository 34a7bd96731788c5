// Helpers for the server's integration tests: temp policy sets, a real server in-process (the same
// wiring as `pdp serve`, on an ephemeral loopback port), the real `pdp serve` as a subprocess, and a
// second SQLite connection to read what was audited. Everything started here is cleaned up by
// `close()`/`stop()`, and, as a last resort, when the test process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import type { TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createRecorder, openAuditStore, type AuditRecorder, type AuditStore } from '../../src/audit';
import { Engine } from '../../src/engine';
import { buildServer, createReloader, type Reloader, type WorkerCluster } from '../../src/server';

/** The repository root (this file runs from dist/test/support/). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const EXAMPLE_POLICIES = path.join(REPO_ROOT, 'policies');
export const PDP_BIN = path.join(REPO_ROOT, 'bin', 'pdp.js');

const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
process.on('exit', () => {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of liveDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp directory, removed by `removeTempDir` or at process exit. */
export function makeTempDir(prefix = 'pdp-server-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  liveDirs.add(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

/**
 * Creates `<root>/policies` holding either a copy of the example `policies/` or the given files
 * (relative path → text). Returns the policy directory.
 */
export function makePolicyDir(root: string, files?: Record<string, string>): string {
  const dir = path.join(root, 'policies');
  fs.mkdirSync(dir, { recursive: true });
  if (files === undefined) {
    for (const name of fs.readdirSync(EXAMPLE_POLICIES)) fs.copyFileSync(path.join(EXAMPLE_POLICIES, name), path.join(dir, name));
  } else {
    for (const [name, text] of Object.entries(files)) writePolicyFile(dir, name, text);
  }
  return dir;
}

/** Replaces a policy file atomically (write aside, rename), so no reader ever sees it half-written. */
export function writePolicyFile(dir: string, name: string, text: string): void {
  const target = path.join(dir, name);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const aside = `${target}.${process.pid}.tmp`;
  fs.writeFileSync(aside, text);
  fs.renameSync(aside, target);
}

export interface InProcessOptions {
  /** Policy files to write; default: a copy of the example `policies/`. */
  files?: Record<string, string>;
  /** Decision cache entries per policy version (default 10000, as `pdp serve`). */
  cacheEntries?: number;
  /** The audit store's busy timeout (ms). */
  busyTimeoutMs?: number;
  /** The recorder's probe interval while the store is unwritable (ms). */
  probeIntervalMs?: number;
  nodeName?: string;
  /** As a `--workers` worker: the other workers (a fake, in-process). */
  cluster?: WorkerCluster;
}

export interface InProcessServer {
  url: string;
  root: string;
  policyDir: string;
  auditPath: string;
  app: FastifyInstance;
  engine: Engine;
  store: AuditStore;
  recorder: AuditRecorder;
  reloader: Reloader;
  close(): Promise<void>;
}

/** A real server, wired as `pdp serve` wires it (src/cli/serve-audit.ts, serve-server.ts), listening on 127.0.0.1:<ephemeral>. */
/**
 * `startServer`, and a second connection to its audit file that a test uses to hold the write lock
 * (as another process would); both closed when the test ends.
 */
export async function startServerWithLockHolder(t: TestContext, options: InProcessOptions): Promise<{ server: InProcessServer; holder: Database.Database }> {
  const server = await startServer(options);
  const holder = new Database(server.auditPath);
  t.after(async () => {
    if (holder.inTransaction) holder.exec('ROLLBACK');
    holder.close();
    await server.close();
  });
  return { server, holder };
}

export async function startServer(options: InProcessOptions = {}): Promise<InProcessServer> {
  const root = makeTempDir();
  let store: AuditStore | undefined;
  let recorder: AuditRecorder | undefined;
  let app: FastifyInstance | undefined;
  try {
    const policyDir = makePolicyDir(root, options.files);
    const auditPath = path.join(root, 'audit.db');
    const nodeName = options.nodeName ?? 'test-node';
    const engine = new Engine(policyDir);
    const first = engine.build();
    if (!first.ok) throw new Error(`test policy set does not load: ${first.error ?? first.diagnostics.map((d) => `${d.span.file}:${d.span.start.line}: ${d.message}`).join('; ')}`);
    const auditStore = openAuditStore(auditPath, options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs });
    store = auditStore;
    recorder = createRecorder(auditStore, options.probeIntervalMs === undefined ? {} : { probeIntervalMs: options.probeIntervalMs });
    const reloader = createReloader({ engine, recorder, nodeName, onActivated: (p) => auditStore.refreshAllowedServices(p.compiled.declaredServices) });
    // As `pdp serve`: the first set is activated only after its start-up ACL_CHANGE row is committed.
    const activated = await reloader.start(first.policy, auditStore.lastPolicyChange());
    if (!activated.ok) throw new Error(`test server could not start: ${activated.message}`);
    app = buildServer({ engine, recorder, reloader, cacheEntries: options.cacheEntries ?? 10_000, nodeName, ...(options.cluster ? { cluster: options.cluster } : {}) });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    if (!address || typeof address !== 'object') throw new Error('server has no address');
    const started = { app, recorder, store: auditStore };
    let closed = false;
    return {
      url: `http://127.0.0.1:${address.port}`,
      root, policyDir, auditPath, app, engine, store: auditStore, recorder, reloader,
      async close() {
        if (closed) return;
        closed = true;
        try {
          reloader.close();
          await started.app.close();
          await started.recorder.close();
        } finally {
          started.store.close();
          removeTempDir(root);
        }
      },
    };
  } catch (e) {
    await app?.close().catch(() => undefined);
    await recorder?.close().catch(() => undefined);
    store?.close();
    removeTempDir(root);
    throw e;
  }
}

export interface ServeProcess {
  url: string;
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code/signal once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILLs the process if it is still running and waits for it. */
  stop(): Promise<void>;
}

/** Environment for child processes: ours minus the PDP_* variables that would change the flags. */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.PDP_POLICIES;
  delete env.PDP_AUDIT;
  delete env.PDP_LISTEN;
  delete env.NODE_OPTIONS;
  // The test runner's own child-process marker must not make the child report as a test file.
  delete env.NODE_TEST_CONTEXT;
  return { ...env, ...extra };
}

/** Runs `node bin/pdp.js ARGS…`, tracked for cleanup. */
export function spawnPdp(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): {
  child: ChildProcess; stdout(): string; stderr(): string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
} {
  const child = spawn(process.execPath, [PDP_BIN, ...args], { cwd: options.cwd ?? REPO_ROOT, env: options.env ?? childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { out += chunk; });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { err += chunk; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => {
      liveChildren.delete(child);
      resolve({ code, signal });
    });
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Runs `pdp ARGS…` to completion (bounded by `timeoutMs`). */
export async function runPdp(args: string[], options: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const p = spawnPdp(args, { ...(options.cwd ? { cwd: options.cwd } : {}), env: childEnv(options.env) });
  const timer = setTimeout(() => p.child.kill('SIGKILL'), options.timeoutMs ?? 15_000);
  try {
    const { code, signal } = await p.exited;
    return { code, signal, stdout: p.stdout(), stderr: p.stderr() };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts `pdp serve --listen 127.0.0.1:0 ARGS…` and waits (at most `timeoutMs`) for its
 * `listening on http://HOST:PORT` line on stdout.
 */
export async function startServe(args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<ServeProcess> {
  const p = spawnPdp(['serve', '--listen', '127.0.0.1:0', ...args], options.cwd ? { cwd: options.cwd } : {});
  const stop = async () => {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await p.exited;
  };
  const timeoutMs = options.timeoutMs ?? 15_000;
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`pdp serve did not report listening within ${timeoutMs} ms\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`)), timeoutMs);
      const check = () => {
        const m = /listening on (https?:\/\/[^\s]+:\d+)/.exec(p.stdout());
        if (m) {
          clearTimeout(timer);
          p.child.stdout!.off('data', check);
          resolve(m[1]!);
        }
      };
      p.child.stdout!.on('data', check);
      void p.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`pdp serve exited (${code ?? signal}) before listening\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`));
      });
      check();
    });
    return { url, ...p, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

export interface HttpResult {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: any;
}

/** One HTTP request with global fetch; the body is JSON-encoded unless `raw` is given. */
export async function request(
  url: string,
  options: { method?: string; body?: unknown; raw?: string | Buffer; contentType?: string | null; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<HttpResult> {
  const headers: Record<string, string> = { ...options.headers };
  let body: string | Buffer | undefined;
  if (options.raw !== undefined) body = options.raw;
  else if (options.body !== undefined) body = JSON.stringify(options.body);
  const contentType = options.contentType === undefined ? (body === undefined ? null : 'application/json') : options.contentType;
  if (contentType !== null) headers['content-type'] = contentType;
  const res = await fetch(url, {
    method: options.method ?? (body === undefined ? 'GET' : 'POST'),
    headers,
    ...(body === undefined ? {} : { body }),
    signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

export const authorize = (base: string, body: unknown, timeoutMs?: number) =>
  request(`${base}/v1/authorize`, { body, ...(timeoutMs ? { timeoutMs } : {}) });

export interface AuditLogRow {
  id: number;
  timestamp: string;
  event_type: string;
  service_name: string | null;
  namespace: string | null;
  instance_id: string | null;
  identity: string | null;
  source_ip: string | null;
  action: string | null;
  resource: string | null;
  result: string | null;
  reason: string | null;
  rule: string | null;
  decision_id: string | null;
  policy_version: string | null;
  details: string | null;
  registry_node: string;
}

/** A second connection to an audit database (the server's own stays untouched). */
export function openDb(file: string, options: { readonly?: boolean } = {}): Database.Database {
  return new Database(file, { readonly: options.readonly ?? true, fileMustExist: true });
}

/** Runs `fn` with a fresh read-only connection and closes it. */
export function withDb<T>(file: string, fn: (db: Database.Database) => T): T {
  const db = openDb(file);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

export function rowByDecision(file: string, decisionId: string): AuditLogRow | undefined {
  return withDb(file, (db) => db.prepare('SELECT * FROM audit_log WHERE decision_id = ?').get(decisionId) as AuditLogRow | undefined);
}

export function allRows(file: string): AuditLogRow[] {
  return withDb(file, (db) => db.prepare('SELECT * FROM audit_log ORDER BY id').all() as AuditLogRow[]);
}

/** The decision_ids of `ids` that are NOT in `audit_log`. */
export function missingDecisions(file: string, ids: Iterable<string>): string[] {
  return withDb(file, (db) => {
    const stored = new Set((db.prepare('SELECT decision_id FROM audit_log WHERE decision_id IS NOT NULL').pluck().all() as string[]));
    return [...ids].filter((id) => !stored.has(id));
  });
}

/** Polls `probe` every `intervalMs` until it returns true or `timeoutMs` passes; returns the last answer. */
export async function waitFor(probe: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A response body must never carry a stack trace or a filesystem path of the server. */
export function assertNoLeak(text: string, paths: string[] = []): void {
  if (/\n\s*at .+\(.*:\d+:\d+\)|\bat (?:async )?[\w.<>]+ \(|node:internal|\.js:\d+:\d+/.test(text)) {
    throw new Error(`response body carries a stack trace: ${text.slice(0, 500)}`);
  }
  for (const p of [REPO_ROOT, os.tmpdir(), ...paths]) {
    if (p && text.includes(p)) throw new Error(`response body carries the server path \`${p}\`: ${text.slice(0, 500)}`);
  }
  if (/\/(?:home|usr|tmp|work|var|root)\/[\w.-]+\//.test(text)) throw new Error(`response body carries a filesystem path: ${text.slice(0, 500)}`);
}
