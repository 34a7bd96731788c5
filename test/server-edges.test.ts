// Edges a second review round found, through the real `pdp serve`: more than one Authorization
// header, an anomaly window beyond what a date can hold, and a request without `Host`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { makePolicyDir, makeTempDir, removeTempDir, runPdp, startServe } from './support/server';

const API = 'api "authorize" {\n  identity = "team:pep"\n}\n';
const WEB = 'service "web" {\n  policy   = "read"\n  identity = "team:web"\n}\n';

test('two Authorization headers are refused (401), whichever comes first; one good header is served', async (t) => {
  const root = makeTempDir('pdp-edges-');
  t.after(() => removeTempDir(root));
  const policyDir = makePolicyDir(root, { 'api.hcl': API, 'web.hcl': WEB });
  const tokens = path.join(root, 'tokens.db');
  const created = await runPdp(['token', 'create', '--identity', 'team:pep', '--tokens', tokens]);
  assert.equal(created.code, 0, created.stderr);
  const token = /pdp_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}/.exec(created.stdout)![0];
  const serve = await startServe(['--policies', policyDir, '--audit', path.join(root, 'audit.db'), '--tokens', tokens]);
  t.after(() => serve.stop());
  const body = JSON.stringify({ identity: 'team:web', action: 'read', resource: 'service:web' });
  // A raw request: fetch would fold two headers of one name into one, comma-joined.
  const post = (tokensSent: string[]) => new Promise<{ status: number; text: string }>((resolve, reject) => {
    const { port } = new URL(serve.url);
    const socket = net.connect(Number(port), '127.0.0.1', () => {
      const auth = tokensSent.map((v) => `Authorization: Bearer ${v}\r\n`).join('');
      socket.write(`POST /v1/authorize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n${auth}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
    let raw = '';
    socket.setEncoding('utf8').on('data', (c: string) => { raw += c; }).on('end', () => resolve({ status: Number(raw.split(' ')[1]), text: raw })).on('error', reject);
  });
  assert.equal((await post([token])).status, 200);
  for (const order of [[token, 'x'], ['x', token]]) {
    const r = await post(order);
    assert.equal(r.status, 401, `order ${order.map((v) => (v === token ? 'good' : 'bad')).join(',')}`);
    assert.match(r.text, /more than one `Authorization` header/);
  }
});

test('GET /v1/audit/anomalies: a since beyond 100 years is a 400 naming `since`, not a 503', async (t) => {
  const root = makeTempDir('pdp-edges-');
  t.after(() => removeTempDir(root));
  const serve = await startServe(['--policies', makePolicyDir(root, { 'web.hcl': WEB }), '--audit', path.join(root, 'audit.db')]);
  t.after(() => serve.stop());
  for (const since of ['999999999d', '36600d']) {
    const r = await fetch(`${serve.url}/v1/audit/anomalies?since=${since}`);
    assert.equal(r.status, 400, since);
    const json = (await r.json()) as { error: { code: string; field: string } };
    assert.equal(json.error.code, 'invalid_request');
    assert.equal(json.error.field, 'since');
  }
  // Said in words: a duration with too many digits, a parameter given twice.
  for (const [query, message] of [['since=99999999999d', /too long a duration/], ['since=1h&since=2h', /`since` is given more than once/], ['deny_threshold=1&deny_threshold=2', /given more than once/]] as const) {
    const r = await fetch(`${serve.url}/v1/audit/anomalies?${query}`);
    assert.equal(r.status, 400, query);
    const json = (await r.json()) as { error: { code: string; field: string; message: string } };
    assert.equal(json.error.code, 'invalid_request', query);
    assert.match(json.error.message, message, query);
  }
  assert.equal((await fetch(`${serve.url}/v1/audit/anomalies?since=1h`)).status, 200);
});

test('an HTTP/1.1 request without `Host` is a 400 naming the header; HTTP/1.0 needs none', async (t) => {
  const root = makeTempDir('pdp-edges-');
  t.after(() => removeTempDir(root));
  const serve = await startServe(['--policies', makePolicyDir(root, { 'web.hcl': WEB }), '--audit', path.join(root, 'audit.db'), '--no-watch']);
  t.after(() => serve.stop());
  const body = JSON.stringify({ identity: 'team:web', action: 'read', resource: 'service:web' });
  const raw = (head: string) => new Promise<{ status: number; body: string }>((resolve, reject) => {
    const socket = net.connect(Number(new URL(serve.url).port), '127.0.0.1', () => {
      socket.write(`${head}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
    let text = '';
    socket.setEncoding('utf8').on('data', (c: string) => { text += c; }).on('error', reject)
      .on('end', () => resolve({ status: Number(text.split(' ')[1]), body: text.slice(text.indexOf('\r\n\r\n') + 4) }));
  });
  const missing = await raw('POST /v1/authorize HTTP/1.1');
  assert.equal(missing.status, 400);
  assert.deepEqual(JSON.parse(missing.body), {
    error: { code: 'invalid_request', message: 'the request has no `Host` header; HTTP/1.1 requires one', field: 'Host' },
  });
  const http10 = await raw('POST /v1/authorize HTTP/1.0');
  assert.equal(http10.status, 200, http10.body);
  assert.equal(JSON.parse(http10.body).result, 'ALLOW');
  const withHost = await raw('POST /v1/authorize HTTP/1.1\r\nHost: 127.0.0.1');
  assert.equal(withHost.status, 200, withHost.body);
});

test('a client trickling its request a byte at a time is answered 408 and disconnected after --request-timeout', async (t) => {
  const root = makeTempDir('pdp-edges-');
  t.after(() => removeTempDir(root));
  const serve = await startServe(['--policies', makePolicyDir(root, { 'web.hcl': WEB }), '--audit', path.join(root, 'audit.db'), '--request-timeout', '1s']);
  t.after(() => serve.stop());
  // Slowloris: the headers promise a body that never finishes arriving. Without a bound the
  // connection (and its file descriptor) is held forever and no authentication ever fails.
  const slow = (head: string) => new Promise<{ ms: number; text: string }>((resolve, reject) => {
    const started = Date.now();
    let text = '';
    const socket = net.connect(Number(new URL(serve.url).port), '127.0.0.1', () => {
      socket.write(`${head}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
    });
    const drip = setInterval(() => { if (!socket.destroyed) socket.write(' '); }, 100);
    const giveUp = setTimeout(() => { socket.destroy(); reject(new Error(`still open after 10 s: ${text}`)); }, 10_000);
    socket.setEncoding('utf8').on('data', (c: string) => { text += c; }).on('error', () => undefined)
      .on('close', () => { clearInterval(drip); clearTimeout(giveUp); resolve({ ms: Date.now() - started, text }); });
  });
  for (const head of ['POST /v1/authorize HTTP/1.1', 'GET /v1/ready HTTP/1.1']) {
    const r = await slow(head);
    assert.ok(r.ms < 8_000, `${head}: closed after ${r.ms} ms`);
    assert.match(r.text, /HTTP\/1\.1 408 Request Timeout[\s\S]*"code":"request_timeout"/, head);
  }
  // The server still answers everyone else.
  const ok = await fetch(`${serve.url}/v1/authorize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ identity: 'team:web', action: 'read', resource: 'service:web' }) });
  assert.equal(ok.status, 200);
  // A bound under a second is refused: legitimate slow links need time.
  const tooShort = await runPdp(['serve', '--policies', root, '--request-timeout', '500ms']);
  assert.equal(tooShort.code, 2);
  assert.match(tooShort.stderr, /--request-timeout must be at least 1s; got `500ms`/);
});

test('a context.event_type that contradicts the action is refused (a write labelled DISCOVERY would hide from the registration analyses and be kept 30 days, not 90)', async (t) => {
  const root = makeTempDir('pdp-edges-');
  t.after(() => removeTempDir(root));
  const OWN = 'service "web" {\n  policy   = "write"\n  identity = "team:web"\n}\n';
  const serve = await startServe(['--policies', makePolicyDir(root, { 'web.hcl': OWN }), '--audit', path.join(root, 'audit.db')]);
  t.after(() => serve.stop());
  const post = (route: string, body: unknown) => fetch(`${serve.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const check = (action: string, event_type?: string) => ({ identity: 'team:web', action, resource: 'service:web', ...(event_type ? { context: { event_type } } : {}) });
  for (const [action, eventType] of [['write', 'DISCOVERY'], ['read', 'REGISTRATION'], ['read', 'DEREGISTRATION'], ['write', 'ADMIN']] as const) {
    const r = await post('/v1/authorize', check(action, eventType));
    assert.equal(r.status, 400, `${action} + ${eventType}`);
    const error = ((await r.json()) as { error: { code: string; field: string; message: string } }).error;
    assert.equal(error.code, 'invalid_request');
    assert.equal(error.field, 'context.event_type');
    assert.match(error.message, new RegExp(`\`context\\.event_type\` is \`${eventType}\`, the event of a \`\\w+\`, but the check asks \`${action}\``));
  }
  const batch = await post('/v1/authorize/batch', { checks: [check('write', 'REGISTRATION'), check('write', 'DISCOVERY')] });
  assert.equal(batch.status, 400);
  assert.equal(((await batch.json()) as { error: { field: string } }).error.field, 'checks[1].context.event_type');
  // The matching labels, a name of the PEP's own, and none at all are answered as before.
  for (const [action, eventType] of [['write', 'REGISTRATION'], ['write', 'DEREGISTRATION'], ['read', 'DISCOVERY'], ['write', 'HEALTH_CHECK'], ['write', undefined]] as const) {
    const r = await post('/v1/authorize', check(action, eventType));
    assert.equal(r.status, 200, `${action} + ${eventType}: ${await r.text()}`);
  }
  // Nothing refused was audited: 5 answered decisions, 1 start-up ACL_CHANGE row.
  const db = new Database(path.join(root, 'audit.db'), { readonly: true });
  t.after(() => db.close());
  assert.deepEqual(db.prepare("SELECT event_type, COUNT(*) AS n FROM audit_log GROUP BY event_type ORDER BY event_type").all(), [
    { event_type: 'ACL_CHANGE', n: 1 }, { event_type: 'DEREGISTRATION', n: 1 }, { event_type: 'DISCOVERY', n: 1 }, { event_type: 'HEALTH_CHECK', n: 1 }, { event_type: 'REGISTRATION', n: 2 },
  ]);
});
