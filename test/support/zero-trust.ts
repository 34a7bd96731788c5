// Helpers for the zero-trust end-to-end tests (test/zero-trust*.test.ts): a CA made with the real
// `pdp ca`, the real `pdp serve` over TLS as a subprocess, an HTTPS client that can present any
// certificate (or none, or speak TLS 1.2 only), and read-only access to the audit store.
// Everything started here is stopped by `close()`/`stop()` and, as a last resort, at process exit.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import Database from 'better-sqlite3';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const PDP_BIN = path.join(REPO_ROOT, 'bin', 'pdp.js');

const live = new Set<ChildProcess>();
const dirs = new Set<string>();
process.on('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // gone
    }
  }
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

export function tempDir(prefix = 'pdp-zt-'): { dir: string; remove(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.add(dir);
  return {
    dir,
    remove() {
      fs.rmSync(dir, { recursive: true, force: true });
      dirs.delete(dir);
    },
  };
}

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('PDP_')) delete env[k];
  delete env.NODE_OPTIONS;
  delete env.NODE_TEST_CONTEXT;
  return env;
}

export interface PdpResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `node bin/pdp.js ARGS…` in `cwd`, to completion (at most 20 s). */
export function pdp(args: string[], cwd: string): Promise<PdpResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PDP_BIN, ...args], { cwd, env: childEnv(), timeout: 20_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Like `pdp` but fails the test on a non-zero exit. */
export async function pdpOk(args: string[], cwd: string): Promise<string> {
  const r = await pdp(args, cwd);
  if (r.code !== 0) throw new Error(`pdp ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

export interface Pki {
  dir: string;
  caCert: string;
  /** name → { cert, key } file paths */
  files: Record<string, { cert: string; key: string }>;
}

/**
 * `pdp ca init --trust-domain cluster` in DIR/ca, a server certificate for 127.0.0.1, and one
 * workload certificate per SPIFFE ID (named by its last segment), all through the real CLI.
 */
export async function makePki(dir: string, workloads: string[], caDir = 'ca'): Promise<Pki> {
  await pdpOk(['ca', 'init', '--trust-domain', 'cluster', '--dir', caDir], dir);
  const files: Pki['files'] = {};
  const jobs: Promise<string>[] = [
    pdpOk(['ca', 'issue', 'server', '--dir', caDir, '--name', 'pdp', '--ip', '127.0.0.1', '--dns', 'localhost'], dir),
  ];
  files.pdp = { cert: path.join(dir, caDir, 'pdp.crt'), key: path.join(dir, caDir, 'pdp.key') };
  for (const id of workloads) {
    const name = id.split('/').pop()!;
    jobs.push(pdpOk(['ca', 'issue', 'workload', '--dir', caDir, '--spiffe-id', id, '--out', `${caDir}-certs`], dir));
    files[name] = { cert: path.join(dir, `${caDir}-certs`, `${name}.crt`), key: path.join(dir, `${caDir}-certs`, `${name}.key`) };
  }
  await Promise.all(jobs);
  return { dir, caCert: path.join(dir, caDir, 'ca.crt'), files };
}

export interface Serve {
  url: string;
  port: number;
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** The real `pdp serve --listen 127.0.0.1:0 ARGS…` in `cwd`; resolves on its `listening on` line. */
export async function startServe(args: string[], cwd: string, timeoutMs = 20_000): Promise<Serve> {
  const child = spawn(process.execPath, [PDP_BIN, 'serve', '--listen', '127.0.0.1:0', ...args], { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => { out += c; });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => { err += c; });
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => { live.delete(child); resolve(code); }));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`pdp serve did not listen within ${timeoutMs} ms\n${out}\n${err}`)), timeoutMs);
      const check = () => {
        const m = /listening on (https?:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      };
      child.stdout!.on('data', check);
      void exited.then((code) => { clearTimeout(timer); reject(new Error(`pdp serve exited ${code} before listening\n${out}\n${err}`)); });
    });
    return { url, port: Number(new URL(url).port), child, stdout: () => out, stderr: () => err, exited, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

export interface ClientIdentity {
  /** PEM file paths; omit for no client certificate. */
  cert?: string;
  key?: string;
  /** Trust anchor for the server certificate (the CA file path). */
  ca: string;
  maxVersion?: tls.SecureVersion;
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

export interface CallOptions extends ClientIdentity {
  method?: string;
  body?: unknown;
  token?: string;
  /** A keep-alive agent to reuse one connection; default: a fresh connection per call. */
  agent?: https.Agent;
  timeoutMs?: number;
  /** Extra request headers (e.g. a hostile `Host`). */
  headers?: Record<string, string>;
  /** The request target sent as written, instead of the URL's (which parsing reduces: a `#fragment` is dropped). */
  path?: string;
}

export function tlsOptions(id: ClientIdentity): tls.ConnectionOptions {
  return {
    ca: fs.readFileSync(id.ca),
    ...(id.cert ? { cert: fs.readFileSync(id.cert), key: fs.readFileSync(id.key!) } : {}),
    ...(id.maxVersion ? { maxVersion: id.maxVersion } : {}),
    servername: 'localhost',
  };
}

/** One HTTPS request. Rejects when no HTTP answer comes back (a TLS failure, a dropped connection). */
export function call(url: string, options: CallOptions): Promise<Reply> {
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  const headers: Record<string, string> = { ...options.headers };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  return new Promise((resolve, reject) => {
    const req = https.request(url, {
      method: options.method ?? (body === undefined ? 'GET' : 'POST'),
      headers,
      ...tlsOptions(options),
      agent: options.agent ?? false,
      timeout: options.timeoutMs ?? 10_000,
      ...(options.path !== undefined ? { path: options.path } : {}),
    }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => { text += c; });
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/** Resolves with the error when the call gets no HTTP answer; fails when it does get one. */
export async function refused(url: string, options: CallOptions): Promise<Error & { code?: string }> {
  try {
    const r = await call(url, options);
    throw Object.assign(new Error(`expected the connection to be refused, got HTTP ${r.status}: ${r.text}`), { unexpected: true });
  } catch (e) {
    if ((e as { unexpected?: boolean }).unexpected) throw e;
    return e as Error & { code?: string };
  }
}

/** The server certificate a fresh TLS connection sees (serial and SHA-256 fingerprint). */
export function peerCertificate(port: number, id: ClientIdentity): Promise<{ serialNumber: string; fingerprint256: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...tlsOptions(id) }, () => {
      const peer = socket.getPeerCertificate();
      socket.end();
      resolve({ serialNumber: peer.serialNumber, fingerprint256: peer.fingerprint256 });
    });
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('tls.connect timed out')));
  });
}

export interface AuditRow {
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
  decision_id: string | null;
  details: string | null;
}

export function auditRows(file: string, where = '1 = 1', ...params: unknown[]): AuditRow[] {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(`SELECT * FROM audit_log WHERE ${where} ORDER BY id`).all(...params) as AuditRow[];
  } finally {
    db.close();
  }
}

export function details(row: AuditRow | undefined): Record<string, unknown> {
  return row?.details ? (JSON.parse(row.details) as Record<string, unknown>) : {};
}

/** Every byte of FILE and its SQLite side files (-wal, -shm, -journal) that exist. */
export function fileBytes(file: string): Buffer {
  return Buffer.concat(['', '-wal', '-shm', '-journal'].map((s) => `${file}${s}`).filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f)));
}

/** The value of one Prometheus sample (`name{labels}`), 0 when it is absent. */
export function metricValue(text: string, name: string, labels = ''): number {
  const sample = labels === '' ? name : `${name}{${labels}}`;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
  }
  return 0;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(probe: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

/** The policy set the zero-trust tests share: api grants, self-registration, one read grant. */
export const POLICY = `# Who may call the PDP itself.
api "authorize" {
  identities = ["spiffe://cluster/ns/platform/sa/registry", "spiffe://cluster/ns/platform/sa/ops"]
}

api "admin" {
  identities = ["spiffe://cluster/ns/platform/sa/ops", "team:ops"]
}

api "audit" {
  identities = ["team:auditor"]
}

# Every workload registers only itself (registry poisoning defence).
namespace_prefix "" {
  service_prefix "" {
    policy   = "write"
    identity = "spiffe://cluster/ns/{namespace}/sa/{service}"
  }
}

namespace "prod" {
  service "payment" {
    policy   = "read"
    identity = "spiffe://cluster/ns/prod/sa/order"
  }
}
`;

export const ID = {
  registry: 'spiffe://cluster/ns/platform/sa/registry',
  ops: 'spiffe://cluster/ns/platform/sa/ops',
  nogrant: 'spiffe://cluster/ns/platform/sa/nogrant',
  payment: 'spiffe://cluster/ns/prod/sa/payment',
  order: 'spiffe://cluster/ns/prod/sa/order',
} as const;

export function writePolicies(dir: string, text = POLICY): string {
  const policies = path.join(dir, 'policies');
  fs.mkdirSync(policies, { recursive: true });
  fs.writeFileSync(path.join(policies, 'zero-trust.hcl'), text);
  return policies;
}
