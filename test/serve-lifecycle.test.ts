// `pdp serve` lifecycle through the real binary: a policy change refused during an audit outage is
// retried until it lands, a failed bind exits instead of hanging, SIGTERM drains keep-alive clients
// without resetting them, and operator mistakes in flags are usage errors naming the flag.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import {
  allRows, authorize, makePolicyDir, makeTempDir, missingDecisions, removeTempDir, runPdp, startServe, waitFor,
} from './support/server';
import { makePki } from './support/zero-trust';

const WEB_READ = 'service "web" {\n  policy   = "read"\n  identity = "team:web"\n}\n';
const OPS_WRITE = 'service "web" {\n  policy   = "write"\n  identity = "team:ops"\n}\n';

function tempSet(t: { after(fn: () => void | Promise<void>): void }, files?: Record<string, string>) {
  const root = makeTempDir('pdp-serve-life-');
  t.after(() => removeTempDir(root));
  const policyDir = makePolicyDir(root, files);
  return { root, policyDir, auditPath: path.join(root, 'audit.db') };
}

test('a file change refused while the audit store is locked is retried and lands once it is released (no SIGHUP)', async (t) => {
  const { policyDir, auditPath } = tempSet(t, { 'web.hcl': WEB_READ, 'ops.hcl': OPS_WRITE });
  const serve = await startServe(['--policies', policyDir, '--audit', auditPath]);
  t.after(() => serve.stop());
  const opsWrite = { identity: 'team:ops', action: 'write', resource: 'service:web' };
  assert.equal((await authorize(serve.url, opsWrite)).json.result, 'ALLOW');

  // A second connection holds the write lock: the ACL_CHANGE row of the reload cannot be committed.
  const holder = new Database(auditPath);
  t.after(() => {
    if (holder.open && holder.inTransaction) holder.exec('ROLLBACK');
    if (holder.open) holder.close();
  });
  holder.exec('BEGIN IMMEDIATE');
  fs.unlinkSync(path.join(policyDir, 'ops.hcl'));
  assert.ok(await waitFor(() => /reload refused \(file-change\): the policy change could not be written to the audit store.*retrying in/.test(serve.stderr()), 15_000), serve.stderr());
  // The refused change is not in force, and it is retried while the lock is held (still refused).
  assert.ok(await waitFor(() => /reload refused \(file-change, retry 1\)/.test(serve.stderr()), 10_000), serve.stderr());
  holder.exec('ROLLBACK');
  holder.close();

  // Nothing else happens (no SIGHUP, no file change, no API call): the retry lands the change.
  assert.ok(await waitFor(async () => {
    const res = await authorize(serve.url, opsWrite);
    return res.status === 200 && res.json.result === 'DENY';
  }, 20_000, 200), `the removed grant is gone; stderr: ${serve.stderr()}`);
  assert.match(serve.stderr(), /reloaded \(file-change, retry \d+\)/);
  const changes = allRows(auditPath).filter((r) => r.event_type === 'ACL_CHANGE' && r.action === 'reload'); // the start-up row aside
  assert.equal(changes.length, 1, 'one ACL_CHANGE row, written by the retry that succeeded');
  assert.equal(changes[0]!.identity, 'file-change');
  const details = JSON.parse(changes[0]!.details!) as { retry?: number; removed: unknown[] };
  assert.ok((details.retry ?? 0) >= 1, changes[0]!.details!);
  assert.equal(details.removed.length, 1);
  assert.equal(serve.child.exitCode, null);
});

test('an audit outage is logged once when it starts and once when it ends, not once per refused request', async (t) => {
  const { policyDir, auditPath } = tempSet(t, { 'web.hcl': WEB_READ });
  const serve = await startServe(['--policies', policyDir, '--audit', auditPath, '--no-watch']);
  t.after(() => serve.stop());
  const read = { identity: 'team:web', action: 'read', resource: 'service:web' };
  assert.equal((await authorize(serve.url, read)).status, 200);
  const holder = new Database(auditPath);
  t.after(() => {
    if (holder.open && holder.inTransaction) holder.exec('ROLLBACK');
    if (holder.open) holder.close();
  });
  holder.exec('BEGIN IMMEDIATE');
  // Refused requests and background probes for a couple of seconds: SQLite words this one lock two
  // ways (the recorder's own check and SQLITE_BUSY), which used to alternate in the log.
  for (let i = 0; i < 10; i++) {
    assert.equal((await authorize(serve.url, read)).status, 503);
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(serve.stderr().match(/the audit store cannot be written/g)?.length, 1, serve.stderr());
  holder.exec('ROLLBACK');
  holder.close();
  assert.ok(await waitFor(async () => (await authorize(serve.url, read)).status === 200, 10_000, 200), serve.stderr());
  assert.match(serve.stderr(), /the audit store can be written again after \d+\.\d s; decisions are answered again/);
});

test('a port in use with the watcher and the token store on: exits 1 promptly, before writing anything', async (t) => {
  const { root, policyDir, auditPath } = tempSet(t);
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const port = (blocker.address() as net.AddressInfo).port;
  const started = Date.now();
  // Watching (the default) and --tokens: before the fix the process stayed up after the bind failed.
  const r = await runPdp(['serve', '--policies', policyDir, '--audit', auditPath, '--tokens', path.join(root, 'tokens.db'), '--listen', `127.0.0.1:${port}`], { timeoutMs: 10_000 });
  assert.equal(r.signal, null, `exited by itself, not killed after 10 s; stderr: ${r.stderr}`);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE \(another process is listening there\)/);
  assert.ok(Date.now() - started < 8000, `exited promptly (${Date.now() - started} ms)`);
  // The port is asked for before anything is written: no audit file, so no ACL_CHANGE row for a
  // version that never served (the next start would otherwise record a change back from it).
  assert.equal(fs.existsSync(auditPath), false, 'nothing half-created');
});

/** A raw HTTP/1.1 connection, so that exactly what goes over the wire (and when) is under control. */
class RawConnection {
  readonly socket: net.Socket;
  data = '';
  ended = false;
  error: (Error & { code?: string }) | undefined;
  readonly closed: Promise<void>;
  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.setEncoding('utf8');
    this.socket.on('data', (chunk: string) => { this.data += chunk; });
    this.socket.on('end', () => { this.ended = true; });
    this.socket.on('error', (e) => { this.error = e; });
    this.closed = new Promise((resolve) => this.socket.on('close', () => resolve()));
  }
  connected(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
  }
  write(text: string): void {
    this.socket.write(text);
  }
  /** The responses received so far, parsed (status, lower-case headers, body). */
  responses(): { status: number; headers: Record<string, string>; body: string }[] {
    const out = [];
    let rest = this.data;
    for (;;) {
      const end = rest.indexOf('\r\n\r\n');
      if (end < 0) break;
      const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const length = Number(headers['content-length'] ?? 0);
      if (rest.length < end + 4 + length) break;
      out.push({ status: Number(statusLine!.split(' ')[1]), headers, body: rest.slice(end + 4, end + 4 + length) });
      rest = rest.slice(end + 4 + length);
    }
    return out;
  }
}

const AUTHORIZE_BODY = JSON.stringify({ identity: 'team:web', action: 'read', resource: 'service:web' });
const authorizeHead = (bodyLength = Buffer.byteLength(AUTHORIZE_BODY)) =>
  `POST /v1/authorize HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: ${bodyLength}\r\n\r\n`;

test('SIGTERM drains keep-alive clients gracefully: idle connections closed cleanly, in-flight requests answered with Connection: close and audited, late requests 503 shutting_down', async (t) => {
  const { policyDir, auditPath } = tempSet(t, { 'web.hcl': WEB_READ });
  const serve = await startServe(['--policies', policyDir, '--audit', auditPath, '--no-watch']);
  t.after(() => serve.stop());
  const port = Number(new URL(serve.url).port);

  // 40 PEP connections, each with one answered request and now idle in keep-alive.
  const idle = Array.from({ length: 40 }, () => new RawConnection(port));
  await Promise.all(idle.map((c) => c.connected()));
  for (const c of idle) c.write(authorizeHead() + AUTHORIZE_BODY);
  assert.ok(await waitFor(() => idle.every((c) => c.responses().length === 1), 10_000), 'every idle connection got its first answer');
  for (const c of idle) assert.equal(c.responses()[0]!.headers.connection, 'keep-alive');

  // 5 requests in flight: headers and half of the body sent before SIGTERM, the rest after.
  const half = Math.floor(AUTHORIZE_BODY.length / 2);
  const inFlight = Array.from({ length: 5 }, () => new RawConnection(port));
  await Promise.all(inFlight.map((c) => c.connected()));
  for (const c of inFlight) c.write(authorizeHead() + AUTHORIZE_BODY.slice(0, half));
  // 3 requests that have only begun (part of the request line and headers) at SIGTERM.
  const late = Array.from({ length: 3 }, () => new RawConnection(port));
  await Promise.all(late.map((c) => c.connected()));
  for (const c of late) c.write('POST /v1/authorize HTTP/1.1\r\nHost: 127.0.0.1\r\n');
  // Before SIGTERM the server must have read those partial requests (a connection it has read
  // nothing from is idle, and is closed at SIGTERM): not a fixed sleep, which a loaded machine can
  // outlast, but a round trip on a connection opened after them, which the server reaches only
  // after the bytes already waiting on the earlier sockets.
  await new Promise((r) => setTimeout(r, 200));
  const barrier = new RawConnection(port);
  await barrier.connected();
  barrier.write('GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
  await barrier.closed;
  assert.equal(barrier.responses()[0]?.status, 200, barrier.data);

  serve.child.kill('SIGTERM');
  assert.ok(await waitFor(() => /SIGTERM: draining/.test(serve.stderr()), 5000), serve.stderr());

  // Idle keep-alive connections are closed cleanly (FIN), never reset.
  await Promise.all(idle.map((c) => c.closed));
  for (const c of idle) {
    assert.equal(c.error, undefined, `an idle connection was reset: ${c.error?.code}`);
    assert.ok(c.ended, 'an idle connection ended with a FIN');
  }

  // The in-flight requests complete: 200, audited, with Connection: close, then the connection ends.
  for (const c of inFlight) c.write(AUTHORIZE_BODY.slice(half));
  for (const c of late) c.write(`Connection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(AUTHORIZE_BODY)}\r\n\r\n${AUTHORIZE_BODY}`);
  await Promise.all([...inFlight, ...late].map((c) => c.closed));
  const decisionIds: string[] = [];
  for (const c of inFlight) {
    assert.equal(c.error, undefined, `an in-flight connection was reset: ${c.error?.code}`);
    const responses = c.responses();
    assert.equal(responses.length, 1, c.data);
    assert.equal(responses[0]!.status, 200, responses[0]!.body);
    assert.equal(responses[0]!.headers.connection, 'close');
    const body = JSON.parse(responses[0]!.body) as { decision_id: string; result: string };
    assert.equal(body.result, 'ALLOW');
    decisionIds.push(body.decision_id);
  }
  // Requests that arrive during the drain: a proper 503 in the API's error shape, then the connection closes.
  for (const c of late) {
    assert.equal(c.error, undefined, `a late connection was reset: ${c.error?.code}`);
    const responses = c.responses();
    assert.equal(responses.length, 1, c.data);
    assert.equal(responses[0]!.status, 503, responses[0]!.body);
    assert.equal(responses[0]!.headers.connection, 'close');
    assert.equal((JSON.parse(responses[0]!.body) as { error: { code: string } }).error.code, 'shutting_down');
  }

  const exit = await serve.exited;
  assert.equal(exit.code, 0, serve.stderr());
  assert.deepEqual(missingDecisions(auditPath, decisionIds), [], 'every answered in-flight decision is audited');
});

test('operator input: --tokens in a missing directory, an absurd --lockout, missing TLS files and a key that does not match are usage errors (exit 2) naming the flag', async (t) => {
  const { root, policyDir, auditPath } = tempSet(t);
  const base = ['serve', '--policies', policyDir, '--audit', auditPath, '--listen', '127.0.0.1:0', '--no-watch'];
  const pki = await makePki(root, ['spiffe://cluster/ns/prod/sa/a']);
  const a = pki.files.a!;
  const missingDir = path.join(root, 'nonexistdir');
  const cases: { args: string[]; expect: RegExp }[] = [
    { args: ['--tokens', path.join(missingDir, 't.db')], expect: /--tokens .*nonexistdir.*does not exist/ },
    { args: ['--lockout', '99999999999999d'], expect: /--lockout must be at most 30d/ },
    { args: ['--lockout', '31d'], expect: /--lockout must be at most 30d/ },
    { args: ['--tls-cert', path.join(root, 'nope.crt'), '--tls-key', pki.files.pdp!.key], expect: /--tls-cert `[^`]*nope\.crt` does not exist/ },
    { args: ['--tls-cert', pki.files.pdp!.cert, '--tls-key', path.join(root, 'nope.key')], expect: /--tls-key `[^`]*nope\.key` does not exist/ },
    { args: ['--tls-cert', pki.files.pdp!.cert, '--tls-key', pki.files.pdp!.key, '--client-ca', path.join(root, 'nope-ca.crt')], expect: /--client-ca `[^`]*nope-ca\.crt` does not exist/ },
    { args: ['--tls-cert', pki.files.pdp!.cert, '--tls-key', a.key], expect: /--tls-key `[^`]*a\.key` does not match the certificate in --tls-cert/ },
    { args: ['--tls-cert', pki.files.pdp!.cert, '--tls-key', pki.files.pdp!.key, '--client-ca', a.cert], expect: /--client-ca: .*not a CA certificate/ },
  ];
  const runs = await Promise.all(cases.map((c) => runPdp([...base, ...c.args])));
  for (const [i, r] of runs.entries()) {
    const label = cases[i]!.args.join(' ');
    assert.equal(r.code, 2, `${label}: ${r.stderr}`);
    assert.match(r.stderr, cases[i]!.expect, label);
    assert.doesNotMatch(r.stderr, /internal error|ENOENT/, label);
    assert.equal(r.stdout.includes('listening'), false, label);
  }
  assert.equal(fs.existsSync(missingDir), false, 'no directory is created for the token store');
  assert.equal(fs.existsSync(auditPath), false, 'a refused start opens no audit store');

  // A new store in an existing directory, and 30d, are fine.
  const serve = await startServe(['--policies', policyDir, '--audit', auditPath, '--no-watch', '--tokens', path.join(root, 'new-tokens.db'), '--lockout', '30d']);
  t.after(() => serve.stop());
  assert.ok(fs.existsSync(path.join(root, 'new-tokens.db')));
});

for (const writer of ['inline', 'thread']) {
  test(`an audit database moved away while serving (a log rotation) is noticed at the next write: 503, never rows nobody can read, then exit 1 for the supervisor to restart it on the path (--audit-writer ${writer})`, async (t) => {
    const { policyDir, auditPath } = tempSet(t, { 'web.hcl': WEB_READ });
    const serve = await startServe(['--policies', policyDir, '--audit', auditPath, '--audit-writer', writer]);
    t.after(() => serve.stop());
    const webRead = { identity: 'team:web', action: 'read', resource: 'service:web' };
    assert.equal((await authorize(serve.url, webRead)).status, 200);
    for (const suffix of ['', '-wal', '-shm']) fs.renameSync(`${auditPath}${suffix}`, `${auditPath}.1${suffix}`);
    const after = await authorize(serve.url, webRead);
    assert.equal(after.status, 503, JSON.stringify(after.json));
    assert.equal((after.json as { error: { code: string } }).error.code, 'audit_unavailable');
    // Waiting could not help (503 forever while /v1/health says ok): it drains and exits 1.
    assert.deepEqual(await serve.exited, { code: 1, signal: null });
    assert.match(serve.stderr(), /deleted or replaced while open; .*exiting with status 1 so that a supervisor restarts pdp/);
    assert.match(serve.stderr(), /pdp serve: stopped/);
    // The moved file holds exactly the rows of the answered decisions (and the start-up row); a
    // restart on the path creates a new file and serves again.
    const moved = new Database(`${auditPath}.1`, { readonly: true });
    t.after(() => moved.close());
    assert.equal(moved.prepare("SELECT COUNT(*) FROM audit_log WHERE event_type = 'DISCOVERY'").pluck().get(), 1);
    const restarted = await startServe(['--policies', policyDir, '--audit', auditPath, '--audit-writer', writer]);
    t.after(() => restarted.stop());
    assert.equal((await authorize(restarted.url, webRead)).status, 200);
  });
}

test('`pdp audit prune` while serving leaves the write lock free between chunks: no decision is refused', async (t) => {
  const { policyDir, auditPath } = tempSet(t, { 'web.hcl': WEB_READ });
  const serve = await startServe(['--policies', policyDir, '--audit', auditPath]);
  t.after(() => serve.stop());
  // 20,000 expired DISCOVERY rows (older than 30 days), written through a second connection.
  {
    const db = new Database(auditPath);
    const insert = db.prepare("INSERT INTO audit_log (timestamp, event_type, service_name, namespace, identity, action, resource, result, registry_node) VALUES (?, 'DISCOVERY', 'web', 'default', 'team:old', 'read', 'service:web', 'ALLOW', 'old')");
    db.transaction(() => { for (let i = 0; i < 20_000; i++) insert.run(new Date(Date.UTC(2020, 0, 1, 0, 0, 0, i)).toISOString()); })();
    db.close();
  }
  let stop = false;
  const statuses: number[] = [];
  const client = (async () => {
    while (!stop) statuses.push((await authorize(serve.url, { identity: 'team:web', action: 'read', resource: 'service:web' })).status);
  })();
  const pruned = await runPdp(['audit', 'prune', '--db', auditPath, '--format', 'json'], { timeoutMs: 60_000 });
  stop = true;
  await client;
  assert.equal(pruned.code, 0, pruned.stderr);
  assert.equal((JSON.parse(pruned.stdout) as { deleted: number }).deleted, 20_000);
  assert.ok(statuses.length > 10, `only ${statuses.length} decisions while pruning`);
  assert.deepEqual([...new Set(statuses)], [200], `statuses while pruning: ${JSON.stringify(statuses.filter((s) => s !== 200).slice(0, 5))}`);
});

test('a log sink that goes away (the shipper reading stderr is killed) does not take the PDP down: it keeps answering and exits 0 on SIGTERM', async (t) => {
  const { policyDir, auditPath } = tempSet(t, { 'web.hcl': WEB_READ });
  const serve = await startServe(['--policies', policyDir, '--audit', auditPath, '--log-level', 'info']);
  t.after(() => serve.stop());
  // Our end of the child's stderr pipe is the log shipper: close it, so the child's next log line meets EPIPE.
  serve.child.stderr!.destroy();
  // Lines to write: a refused reload (and, at info, the request lines of these calls).
  fs.writeFileSync(path.join(policyDir, 'broken.hcl'), 'service "x" { policy = "raed" }\n');
  for (let i = 0; i < 3; i++) {
    const reload = await fetch(`${serve.url}/v1/policies/reload`, { method: 'POST' });
    assert.equal(reload.status, 422, await reload.text());
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(serve.child.exitCode, null, 'pdp exited after its log sink failed');
  assert.equal((await authorize(serve.url, { identity: 'team:web', action: 'read', resource: 'service:web' })).json.result, 'ALLOW');
  assert.equal((await fetch(`${serve.url}/v1/health`)).status, 200);
  serve.child.kill('SIGTERM');
  assert.deepEqual(await serve.exited, { code: 0, signal: null });
});

test('a policy file rewritten in place more slowly than the debounce is not loaded while empty: a deny in it never stops denying; a file left empty is loaded after 2 s', async (t) => {
  const QUARANTINE = 'service "web" {\n  policy   = "deny"\n  identity = "team:ops"\n}\n';
  const { policyDir, auditPath } = tempSet(t, { 'ops.hcl': OPS_WRITE, 'quarantine.hcl': QUARANTINE });
  const serve = await startServe(['--policies', policyDir, '--audit', auditPath]);
  t.after(() => serve.stop());
  const opsWrite = { identity: 'team:ops', action: 'write', resource: 'service:web' };
  const answer = async () => (await authorize(serve.url, opsWrite)).json.result as string;
  assert.equal(await answer(), 'DENY');
  const file = path.join(policyDir, 'quarantine.hcl');
  const seen = new Set<string>();
  const watchAnswers = async (ms: number) => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      seen.add(await answer());
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
  };
  // `curl … > quarantine.hcl` over a slow link: truncated, then the bytes 0.7 s later. The bytes are
  // written by a timer, not after the answers watched meanwhile: on a loaded machine one answer can
  // take long enough to push the write past the 2 s after which an empty file is loaded.
  fs.writeFileSync(file, '');
  const rewritten = new Promise<void>((resolve) => setTimeout(() => { fs.writeFileSync(file, QUARANTINE); resolve(); }, 700));
  await watchAnswers(700);
  await rewritten;
  await watchAnswers(900);
  assert.deepEqual([...seen], ['DENY'], 'the deny stopped denying while its file was being rewritten');
  // Emptied on purpose (and left so): loaded once 2 s have passed.
  fs.writeFileSync(file, '');
  assert.ok(await waitFor(async () => (await answer()) === 'ALLOW', 6_000, 100), 'an emptied file was never loaded');
  assert.match(serve.stderr(), /reloaded \(file-change\): .*1 removed/);
});

test('--shutdown-delay: on SIGTERM /v1/ready fails at once while decisions are still answered for the delay, then it drains and exits 0; a second signal ends the wait', async (t) => {
  const { policyDir, auditPath } = tempSet(t, { 'web.hcl': WEB_READ });
  const webRead = { identity: 'team:web', action: 'read', resource: 'service:web' };
  // A 3 s delay: the checks below must all be answered inside it, even on a loaded machine.
  const serve = await startServe(['--policies', policyDir, '--audit', auditPath, '--shutdown-delay', '3s']);
  t.after(() => serve.stop());
  assert.equal((await fetch(`${serve.url}/v1/ready`)).status, 200);
  const signalledAt = Date.now();
  serve.child.kill('SIGTERM');
  // Once the signal is handled (its line on stderr), ready fails at once.
  assert.ok(await waitFor(() => /SIGTERM: not ready; draining in 3 s/.test(serve.stderr()), 5_000, 20), serve.stderr());
  assert.equal((await fetch(`${serve.url}/v1/ready`)).status, 503, 'ready did not fail');
  const ready = await fetch(`${serve.url}/v1/ready`);
  assert.equal(ready.status, 503);
  assert.deepEqual(await ready.json(), { ready: false, policy_loaded: true, policy_version: (await authorize(serve.url, webRead)).json.policy_version, audit_writable: true, shutting_down: true });
  // Still serving: a load balancer that has not noticed yet loses nothing.
  const during = await authorize(serve.url, webRead);
  assert.equal(during.status, 200);
  assert.equal(during.json.result, 'ALLOW');
  assert.deepEqual(await serve.exited, { code: 0, signal: null });
  assert.ok(Date.now() - signalledAt >= 2_900, `exited after ${Date.now() - signalledAt} ms, before the delay`);
  assert.match(serve.stderr(), /pdp serve: SIGTERM: not ready; draining in 3 s\npdp serve: SIGTERM: draining\n[\s\S]*pdp serve: stopped/);
  assert.deepEqual(missingDecisions(auditPath, [during.json.decision_id as string]), [], 'answered during the delay, so audited');

  // A second signal skips what is left of the wait.
  const again = await startServe(['--policies', policyDir, '--audit', auditPath, '--shutdown-delay', '5m']);
  t.after(() => again.stop());
  again.child.kill('SIGTERM');
  assert.ok(await waitFor(() => /not ready; draining in 300 s/.test(again.stderr()), 5_000, 20), `exit: ${again.child.exitCode} ${again.child.signalCode}; stdout: ${again.stdout()}; stderr: ${again.stderr()}`);
  const secondAt = Date.now();
  again.child.kill('SIGTERM');
  assert.deepEqual(await again.exited, { code: 0, signal: null });
  assert.ok(Date.now() - secondAt < 10_000);
});
