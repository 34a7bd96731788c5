// /v1 HTTP API through real parts: buildServer on an ephemeral loopback port, a real SQLite audit
// store with the group-commit recorder, the engine on a temp copy of `policies/`. Every decision
// that is answered is looked up in `audit_log` through a second connection.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { policyVersion, readPolicyDir } from '../src/engine';
import {
  EXAMPLE_POLICIES, UUID_RE, allRows, assertNoLeak, authorize, missingDecisions, request, rowByDecision, startServer, startServerWithLockHolder, waitFor,
  type AuditLogRow, type InProcessServer,
} from './support/server';

const PAYMENT = 'spiffe://cluster/ns/prod/sa/payment';
const ORDER = 'spiffe://cluster/ns/prod/sa/order';
const EXAMPLE_VERSION = policyVersion(readPolicyDir(EXAMPLE_POLICIES));

function metricValue(text: string, name: string): number {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `metric \`${name}\` not found in:\n${text.slice(0, 2000)}`);
  return Number(m[1]);
}

function details(row: AuditLogRow): Record<string, unknown> | null {
  return row.details === null ? null : JSON.parse(row.details) as Record<string, unknown>;
}

describe('POST /v1/authorize and the audit row', () => {
  let server: InProcessServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.close();
  });

  test('payment writes payment-service in prod: ALLOW, audited with everything the row needs', async () => {
    const res = await authorize(server.url, {
      identity: PAYMENT, action: 'write', resource: 'service:payment-service/payment-1', namespace: 'prod',
      context: { source_ip: '10.0.1.50', host: 'payment-1.prod.svc', port: 8443, canary: true },
    });
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    const body = res.json;
    assert.equal(body.allow, true);
    assert.equal(body.result, 'ALLOW');
    assert.deepEqual(body.rule, { file: 'prod.hcl', line: 8 });
    assert.equal(body.policy_version, EXAMPLE_VERSION);
    assert.match(body.policy_version, /^sha256:[0-9a-f]{64}$/);
    assert.match(body.decision_id, UUID_RE);
    assert.equal(typeof body.reason, 'string');

    const row = rowByDecision(server.auditPath, body.decision_id);
    assert.ok(row, 'the answered decision is in audit_log');
    assert.equal(row.event_type, 'REGISTRATION');
    assert.equal(row.service_name, 'payment-service');
    assert.equal(row.instance_id, 'payment-1');
    assert.equal(row.namespace, 'prod');
    assert.equal(row.identity, PAYMENT);
    assert.equal(row.source_ip, '10.0.1.50');
    assert.equal(row.action, 'write');
    assert.equal(row.resource, 'service:payment-service/payment-1');
    assert.equal(row.result, 'ALLOW');
    assert.equal(row.reason, body.reason);
    assert.equal(row.rule, 'prod.hcl:8');
    assert.equal(row.policy_version, EXAMPLE_VERSION);
    assert.equal(row.registry_node, 'test-node');
    assert.match(row.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Math.abs(Date.parse(row.timestamp) - Date.now()) < 60_000);
    assert.deepEqual(details(row), { host: 'payment-1.prod.svc', port: 8443, canary: true });
  });

  test('order writing payment-service: DENY with a reason in words; event_type from the context; source_ip from the caller', async () => {
    const res = await authorize(server.url, {
      identity: ORDER, action: 'write', resource: 'service:payment-service', namespace: 'prod',
      context: { event_type: 'DEREGISTRATION', instance_id: 'payment-7' },
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.allow, false);
    assert.equal(res.json.result, 'DENY');
    assert.deepEqual(res.json.rule, { file: 'prod.hcl', line: 14 });
    assert.match(res.json.reason, /order/);
    assert.match(res.json.reason, /write is required/);
    assert.match(res.json.decision_id, UUID_RE);

    const row = rowByDecision(server.auditPath, res.json.decision_id);
    assert.ok(row);
    assert.equal(row.event_type, 'DEREGISTRATION');
    assert.equal(row.result, 'DENY');
    assert.equal(row.reason, res.json.reason);
    assert.equal(row.rule, 'prod.hcl:14');
    assert.equal(row.source_ip, '127.0.0.1', 'no context.source_ip: the caller address');
    assert.equal(row.instance_id, 'payment-7', 'instance_id from the context when the resource names none');
    assert.equal(row.details, null);

    // The context's instance takes the forms a resource's instance takes (an address and port), and
    // may repeat the resource's.
    for (const [resource, instance] of [['service:payment-service', '10.0.1.7:8080'], ['service:payment-service/[fd00::7]:443', '[fd00::7]:443']] as const) {
      const again = await authorize(server.url, { identity: ORDER, action: 'write', resource, namespace: 'prod', context: { instance_id: instance } });
      assert.equal(again.status, 200, again.text);
      assert.equal(rowByDecision(server.auditPath, again.json.decision_id)?.instance_id, instance);
    }
  });

  test('unknown identity: DENY under the default policy, rule null; read → DISCOVERY, admin → ADMIN', async () => {
    const unknown = await authorize(server.url, { identity: 'spiffe://cluster/ns/prod/sa/attacker', action: 'write', resource: 'service:payment-service', namespace: 'prod' });
    assert.equal(unknown.status, 200);
    assert.equal(unknown.json.allow, false);
    assert.equal(unknown.json.result, 'DENY');
    assert.equal(unknown.json.rule, null);
    assert.match(unknown.json.reason, /default policy is deny/);
    assert.equal(rowByDecision(server.auditPath, unknown.json.decision_id)?.event_type, 'REGISTRATION');

    const read = await authorize(server.url, { identity: ORDER, action: 'read', resource: 'service:payment-service', namespace: 'prod' });
    assert.equal(read.json.result, 'ALLOW');
    assert.deepEqual(read.json.rule, { file: 'prod.hcl', line: 14 });
    const readRow = rowByDecision(server.auditPath, read.json.decision_id);
    assert.equal(readRow?.event_type, 'DISCOVERY');
    assert.equal(readRow?.instance_id, null);

    const admin = await authorize(server.url, { identity: 'team:ops', action: 'admin', resource: 'namespace:prod/*' });
    assert.equal(admin.json.result, 'ALLOW');
    const adminRow = rowByDecision(server.auditPath, admin.json.decision_id);
    assert.equal(adminRow?.event_type, 'ADMIN');
    assert.equal(adminRow?.namespace, 'prod', 'namespace taken from the namespace:NS/* resource');
    assert.equal(adminRow?.service_name, null);
  });

  test('batch: results in order, one audit row per check', async () => {
    const checks = [
      { identity: PAYMENT, action: 'write', resource: 'service:payment-service', namespace: 'prod' },
      { identity: ORDER, action: 'write', resource: 'service:payment-service', namespace: 'prod' },
      { identity: 'team:audit', action: 'read', resource: 'service:ledger-payments', namespace: 'prod', context: { source_ip: '10.9.9.9' } },
    ];
    const res = await request(`${server.url}/v1/authorize/batch`, { body: { checks } });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.results.length, 3);
    assert.deepEqual(res.json.results.map((r: { result: string }) => r.result), ['ALLOW', 'DENY', 'ALLOW']);
    const ids = res.json.results.map((r: { decision_id: string }) => r.decision_id);
    assert.equal(new Set(ids).size, 3);
    for (const [i, id] of ids.entries()) {
      assert.match(id, UUID_RE);
      const row = rowByDecision(server.auditPath, id);
      assert.ok(row, `check ${i} is audited`);
      assert.equal(row.identity, checks[i]!.identity);
      assert.equal(row.result, res.json.results[i].result);
    }
    assert.equal(rowByDecision(server.auditPath, ids[2])?.source_ip, '10.9.9.9');
  });

  test('batch: 1001 checks → 400; an invalid item → 400 naming checks[1].resource; nothing audited', async () => {
    const before = allRows(server.auditPath).length;
    const one = { identity: PAYMENT, action: 'read', resource: 'service:payment-service' };
    const big = await request(`${server.url}/v1/authorize/batch`, { body: { checks: Array.from({ length: 1001 }, () => one) } });
    assert.equal(big.status, 400);
    assert.equal(big.json.error.code, 'invalid_request');
    assert.equal(big.json.error.field, 'checks');
    assert.equal(big.json.error.message, '`checks` may hold at most 1000 items; it holds 1001');

    const empty = await request(`${server.url}/v1/authorize/batch`, { body: { checks: [] } });
    assert.equal(empty.status, 400);
    assert.equal(empty.json.error.field, 'checks');

    const bad = await request(`${server.url}/v1/authorize/batch`, { body: { checks: [one, { ...one, resource: 'svc:x' }, one] } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'invalid_request');
    assert.equal(bad.json.error.field, 'checks[1].resource');
    assert.match(bad.json.error.message, /^`checks\[1\]\.resource`: /, 'the message names the check, as the field does');

    const badSchema = await request(`${server.url}/v1/authorize/batch`, { body: { checks: [one, { ...one, action: 'delete' }] } });
    assert.equal(badSchema.status, 400);
    assert.equal(badSchema.json.error.field, 'checks[1].action');

    // An index where the value is an array, a key where it is an object, digits or not.
    const digitKey = await request(`${server.url}/v1/authorize/batch`, { body: { checks: [one, { ...one, context: { 7: [] } }] } });
    assert.equal(digitKey.status, 400);
    assert.equal(digitKey.json.error.field, 'checks[1].context.7');
    assert.match(digitKey.json.error.message, /^`checks\[1\]\.context\.7` must be/);
    assert.equal(allRows(server.auditPath).length, before, 'a refused batch leaves no row');
  });

  test('a refused batch leaves no trace of its good checks: no cache entry, no hit or miss counted, no row', async () => {
    const counters = async () => {
      const text = (await request(`${server.url}/metrics`)).text;
      const read = (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1]);
      const policies = (await request(`${server.url}/v1/policies`)).json;
      return { hits: read('pdp_cache_hits_total'), misses: read('pdp_cache_misses_total'), entries: policies.cache_entries as number };
    };
    // A check that is a hit (asked once before) and new ones that would be misses, then a bad one.
    const known = { identity: ORDER, action: 'read', resource: 'service:payment-service', namespace: 'prod' };
    assert.equal((await authorize(server.url, known)).status, 200);
    const before = await counters();
    const rows = allRows(server.auditPath).length;
    const fresh = (i: number) => ({ identity: `team:refused-batch-${i}`, action: 'read', resource: 'service:payment-service' });
    for (const bad of [{ ...fresh(9), context: { source_ip: 'nope' } }, { ...fresh(9), resource: 'svc:x' }, { ...fresh(9), identity: 'a\u0000b' }]) {
      const res = await request(`${server.url}/v1/authorize/batch`, { body: { checks: [known, fresh(1), fresh(2), bad] } });
      assert.equal(res.status, 400, res.text);
      assert.match(res.json.error.field, /^checks\[3\]\./);
    }
    assert.deepEqual(await counters(), before, 'hits, misses and cache entries unchanged');
    assert.equal(allRows(server.auditPath).length, rows, 'no row');
    // The same checks without the bad one are answered, and counted: one hit, two misses.
    const ok = await request(`${server.url}/v1/authorize/batch`, { body: { checks: [known, fresh(1), fresh(2)] } });
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(await counters(), { hits: before.hits + 1, misses: before.misses + 2, entries: before.entries + 2 });
  });

  test('a path whose `%` escape does not decode: 400 in the API error shape, the path not echoed', async () => {
    const raw = (path: string) => new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
      let text = '';
      socket.on('data', (d) => (text += d));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
      socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    });
    for (const path of ['/v1/%zz', '/v1/pdp_Y0yNFzKzBHHn_SSKnvmrE2K0LUOzGlc9oq6PtpwUk50%zz']) {
      const text = await raw(path);
      assert.match(text, /^HTTP\/1\.1 400 /, text);
      assert.match(text, /content-type: application\/json; charset=utf-8/i, text);
      const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
      assert.equal(body.error.code, 'invalid_request', text);
      assert.equal(body.error.field, 'path');
      assert.match(body.error.message, /percent-escape/);
      assert.ok(!text.includes('SSKnvmrE2K0'), 'no token secret echoed');
      assert.ok(!text.includes('FST_ERR'), "not fastify's own body");
    }
  });

  test('bad input: each answered with its status, code and the field named; no stack traces, no paths', async () => {
    const valid = { identity: PAYMENT, action: 'write', resource: 'service:payment-service', namespace: 'prod' };
    type Case = { name: string; raw?: string | Buffer; body?: unknown; contentType?: string | null; headers?: Record<string, string>; status: number; code: string; field?: string; message?: RegExp };
    const cases: Case[] = [
      { name: 'malformed JSON', raw: '{"identity": "x", "action": ', status: 400, code: 'invalid_json', field: 'body', message: /JSON/ },
      { name: 'trailing garbage', raw: '{"action":"read"} x', status: 400, code: 'invalid_json', field: 'body' },
      { name: 'empty body, JSON content-type', raw: '', status: 400, code: 'invalid_json', field: 'body', message: /empty/ },
      // Decoded as text, the byte 0xFF would have become U+FFFD: decided and audited as `team:\ufffd`, which nobody sent.
      { name: 'bytes that are not UTF-8', raw: Buffer.concat([Buffer.from('{"identity":"team:'), Buffer.from([0xff]), Buffer.from('","action":"read","resource":"service:payment-service"}')]), status: 400, code: 'invalid_json', field: 'body', message: /not UTF-8/ },
      { name: 'a surrogate encoded in UTF-8 bytes', raw: Buffer.concat([Buffer.from('{"identity":"team:'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('","action":"read","resource":"service:payment-service"}')]), status: 400, code: 'invalid_json', field: 'body', message: /not UTF-8/ },
      { name: 'no body at all', contentType: null, status: 400, code: 'invalid_request', field: 'body' },
      { name: 'JSON array', raw: '[]', status: 400, code: 'invalid_request', field: 'body' },
      { name: 'JSON null', raw: 'null', status: 400, code: 'invalid_request', field: 'body' },
      { name: 'text/plain', raw: JSON.stringify(valid), contentType: 'text/plain', status: 415, code: 'unsupported_media_type', message: /application\/json/ },
      { name: 'form-encoded', raw: 'action=read', contentType: 'application/x-www-form-urlencoded', status: 415, code: 'unsupported_media_type' },
      { name: 'JSON in UTF-16', raw: JSON.stringify(valid), contentType: 'application/json; charset=utf-16', status: 415, code: 'unsupported_media_type', message: /UTF-8.*`utf-16`/ },
      { name: 'a content coding the server does not decode', raw: JSON.stringify(valid), headers: { 'content-encoding': 'gzip' }, status: 415, code: 'unsupported_media_type', message: /`Content-Encoding: gzip`/ },
      { name: 'action: 5', body: { ...valid, action: 5 }, status: 400, code: 'invalid_request', field: 'action', message: /`action` must be (a )?string/ },
      { name: 'identity: []', body: { ...valid, identity: [] }, status: 400, code: 'invalid_request', field: 'identity', message: /`identity` must be (a )?string/ },
      { name: 'resource: null', body: { ...valid, resource: null }, status: 400, code: 'invalid_request', field: 'resource' },
      { name: 'context: "x"', body: { ...valid, context: 'x' }, status: 400, code: 'invalid_request', field: 'context' },
      { name: 'context value an object', body: { ...valid, context: { meta: { a: 1 } } }, status: 400, code: 'invalid_request', field: 'context.meta' },
      { name: 'missing action', body: { identity: PAYMENT, resource: 'service:payment-service' }, status: 400, code: 'invalid_request', field: 'action', message: /`action` is required/ },
      { name: 'missing resource', body: { identity: PAYMENT, action: 'read' }, status: 400, code: 'invalid_request', field: 'resource', message: /required/ },
      { name: 'unknown action', body: { ...valid, action: 'delete' }, status: 400, code: 'invalid_request', field: 'action', message: /read.*write.*admin/ },
      { name: 'unknown top-level field', body: { ...valid, sudo: true }, status: 400, code: 'invalid_request', field: 'sudo', message: /unknown field `sudo`/ },
      // Keys made of digits are keys, not array indexes: `0`, not `[0]`; `context.123`, not `context[123]`.
      { name: 'unknown field named `0`', body: { ...valid, 0: true }, status: 400, code: 'invalid_request', field: '0', message: /^unknown field `0`$/ },
      { name: 'context field named `123` holding an object', body: { ...valid, context: { 123: { a: 1 } } }, status: 400, code: 'invalid_request', field: 'context.123', message: /^`context\.123` must be a string/ },
      { name: 'svc:x', body: { ...valid, resource: 'svc:x' }, status: 400, code: 'invalid_request', field: 'resource', message: /resource/ },
      { name: 'service:', body: { ...valid, resource: 'service:' }, status: 400, code: 'invalid_request', field: 'resource', message: /service name/ },
      { name: 'namespace:prod without /*', body: { identity: 'team:ops', action: 'admin', resource: 'namespace:prod' }, status: 400, code: 'invalid_request', field: 'resource', message: /\/\*/ },
      { name: 'service name with a space', body: { ...valid, resource: 'service:payment service' }, status: 400, code: 'invalid_request', field: 'resource', message: /1-253 characters/ },
      { name: 'service name of 300 characters', body: { ...valid, resource: `service:${'a'.repeat(300)}` }, status: 400, code: 'invalid_request', field: 'resource', message: /1-253 characters/ },
      { name: 'instance with a slash', body: { ...valid, resource: 'service:payment-service/a/b' }, status: 400, code: 'invalid_request', field: 'resource' },
      { name: 'namespace with a space', body: { ...valid, namespace: 'pr od' }, status: 400, code: 'invalid_request', field: 'namespace' },
      { name: 'namespace of 300 characters', body: { ...valid, namespace: 'n'.repeat(300) }, status: 400, code: 'invalid_request', field: 'namespace' },
      { name: 'bad IPv4 in context.source_ip', body: { ...valid, context: { source_ip: '10.0.0.300' } }, status: 400, code: 'invalid_request', field: 'context.source_ip', message: /^`context\.source_ip`: invalid IP address/ },
      { name: 'not an IP in context.source_ip', body: { ...valid, context: { source_ip: 'localhost' } }, status: 400, code: 'invalid_request', field: 'context.source_ip' },
      { name: 'legacy IPv4 form', body: { ...valid, context: { source_ip: '10.1' } }, status: 400, code: 'invalid_request', field: 'context.source_ip' },
      { name: 'source_ip a number', body: { ...valid, context: { source_ip: 167772161 } }, status: 400, code: 'invalid_request', field: 'context.source_ip' },
      { name: 'event_type lower case', body: { ...valid, context: { event_type: 'registration' } }, status: 400, code: 'invalid_request', field: 'context.event_type' },
      { name: 'namespace contradicting namespace:NS/*', body: { identity: 'team:ops', action: 'admin', resource: 'namespace:prod/*', namespace: 'staging' }, status: 400, code: 'invalid_request', field: 'namespace', message: /contradicts/ },
      { name: 'identity of 2049 characters', body: { ...valid, identity: 'x'.repeat(2049) }, status: 400, code: 'invalid_request', field: 'identity', message: /^`identity` is longer than 2048 characters; it has 2049$/ },
      // Counted in code points, as the limit is: 2,049 emoji are 4,098 UTF-16 units.
      { name: 'identity of 2049 emoji', body: { ...valid, identity: '😀'.repeat(2049) }, status: 400, code: 'invalid_request', field: 'identity', message: /^`identity` is longer than 2048 characters; it has 2049$/ },
      { name: 'context with 33 fields', body: { ...valid, context: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, i])) }, status: 400, code: 'invalid_request', field: 'context', message: /^`context` may have at most 32 fields; it has 33$/ },
      { name: 'empty identity', body: { ...valid, identity: '' }, status: 400, code: 'invalid_request', field: 'identity' },
      { name: 'no identity, anonymous off', body: { action: 'read', resource: 'service:payment-service' }, status: 400, code: 'invalid_request', field: 'identity', message: /anonymous/ },
      // `anonymous` named outright is the unauthenticated subject too: no rule naming it may grant to whoever asserts it.
      { name: 'identity `anonymous`, anonymous off', body: { ...valid, identity: 'anonymous' }, status: 400, code: 'invalid_request', field: 'identity', message: /`anonymous` is the identity of unauthenticated subjects/ },
      { name: 'emoji in a service name', body: { ...valid, resource: 'service:pay😀' }, status: 400, code: 'invalid_request', field: 'resource' },
      { name: 'credentials without a trust store', body: { ...valid, credentials: { token: 'secret-token-value' } }, status: 400, code: 'invalid_request', field: 'credentials.token', message: /`credentials\.token` cannot be verified/ },
      { name: 'a certificate without a trust store', body: { ...valid, credentials: { certificate: 'not-a-pem' } }, status: 400, code: 'invalid_request', field: 'credentials.certificate', message: /--client-ca/ },
      // Text that would disguise the audit row: the sqlite3 shell stops printing at a NUL, and
      // zero-width and bidi characters make two identities look alike.
      { name: 'NUL in identity', body: { ...valid, identity: 'team:ops\u0000-forged' }, status: 400, code: 'invalid_request', field: 'identity', message: /U\+0000 \(null\) at position 8/ },
      { name: 'ESC in identity', body: { ...valid, identity: 'team:\u001b[2Jops' }, status: 400, code: 'invalid_request', field: 'identity', message: /U\+001B/ },
      { name: 'zero-width space in identity', body: { ...valid, identity: 'team:ops\u200b' }, status: 400, code: 'invalid_request', field: 'identity', message: /U\+200B/ },
      { name: 'bidi override in identity', body: { ...valid, identity: 'team:\u202espo' }, status: 400, code: 'invalid_request', field: 'identity', message: /U\+202E/ },
      { name: 'a number beyond JavaScript\'s range', raw: `{"identity":"${PAYMENT}","action":"read","resource":"service:payment-service","context":{"port":1e400}}`, status: 400, code: 'invalid_request', field: 'context.port', message: /too large to represent/ },
      // Caller-chosen names: a context key is stored in `details`, so it is bounded like a value; an
      // unknown key is quoted in the error only in part.
      { name: 'context.instance_id contradicting the resource', body: { ...valid, resource: 'service:payment-service/p-1', context: { instance_id: 'p-2' } }, status: 400, code: 'invalid_request', field: 'context.instance_id', message: /contradicts the instance `p-1`/ },
      // The names under which the server records who called and how the subject was authenticated:
      // a PEP's value there would read as the server's own record.
      { name: 'context.authenticated_by', body: { ...valid, context: { authenticated_by: 'certificate' } }, status: 400, code: 'invalid_request', field: 'context.authenticated_by', message: /is reserved: the server records/ },
      { name: 'context.asserted_identity', body: { ...valid, context: { asserted_identity: 'team:ops' } }, status: 400, code: 'invalid_request', field: 'context.asserted_identity', message: /is reserved/ },
      { name: 'context.caller', body: { ...valid, context: { caller: 'spiffe://cluster/ns/ops/sa/pep' } }, status: 400, code: 'invalid_request', field: 'context.caller', message: /is reserved/ },
      { name: 'context.instance_id with a space', body: { ...valid, context: { instance_id: 'p 1' } }, status: 400, code: 'invalid_request', field: 'context.instance_id', message: /visible ASCII/ },
      { name: 'context key of 129 characters', body: { ...valid, context: { ['k'.repeat(129)]: 1 } }, status: 400, code: 'invalid_request', field: `context.${'k'.repeat(64)}…`, message: /field names in `context` are at most 128 characters; this one has 129/ },
      { name: 'unknown field with a 100,000-character name', body: { ...valid, ['u'.repeat(100_000)]: 1 }, status: 400, code: 'invalid_request', field: `${'u'.repeat(64)}…`, message: /unknown field `u{64}…`/ },
    ];
    const before = allRows(server.auditPath).length;
    for (const c of cases) {
      const res = await request(`${server.url}/v1/authorize`, {
        method: 'POST',
        ...(c.raw !== undefined ? { raw: c.raw } : c.body !== undefined ? { body: c.body } : {}),
        ...(c.contentType !== undefined ? { contentType: c.contentType } : {}),
        ...(c.headers !== undefined ? { headers: c.headers } : {}),
      });
      const where = `${c.name}: ${res.status} ${res.text}`;
      assert.equal(res.status, c.status, where);
      assert.ok(res.json && typeof res.json.error === 'object', `${where}: JSON error body`);
      assert.equal(res.json.error.code, c.code, where);
      assert.equal(typeof res.json.error.message, 'string', where);
      if (c.field !== undefined) assert.equal(res.json.error.field, c.field, where);
      if (c.message) assert.match(res.json.error.message, c.message, where);
      if (c.field !== undefined && c.field !== 'body') {
        const last = c.field.split('.').pop()!;
        const named = last === 'source_ip' ? /IP address|source_ip/.test(res.json.error.message) : res.json.error.message.includes(last);
        assert.ok(named, `${where}: the message names the field`);
      }
      assertNoLeak(res.text, [server.root]);
      assert.ok(!res.text.includes('secret-token-value'), `${where}: no secret echoed`);
      assert.ok(res.text.length < 2048, `${where}: an error answer is short (${res.text.length} characters)`);
    }
    assert.equal(allRows(server.auditPath).length, before, 'no refused request leaves an audit row');
  });

  test('oversize body (> 1 MiB) → 413 body_too_large', async () => {
    const huge = JSON.stringify({ identity: PAYMENT, action: 'read', resource: 'service:payment-service', context: { pad: 'x'.repeat(1024 * 1024 + 10) } });
    const res = await request(`${server.url}/v1/authorize`, { raw: huge });
    assert.equal(res.status, 413, res.text);
    assert.equal(res.json.error.code, 'body_too_large');
    assertNoLeak(res.text, [server.root]);
    // The server is fine afterwards.
    const ok = await authorize(server.url, { identity: PAYMENT, action: 'read', resource: 'service:payment-service', namespace: 'prod' });
    assert.equal(ok.status, 200);
  });

  test('hostile strings that are valid are answered and stored verbatim', async () => {
    const hostile = [
      "x'); DROP TABLE audit_log; --",
      "' OR '1'='1",
      'nul\u0000inside',
      'emoji 😀🔥 and ünïcödé',
      'line\nbreak\r\ttab',
      '"quoted" \\backslash\\',
      '<script>alert(1)</script>',
      'y'.repeat(2048),
      // U+FFFD sent as its UTF-8 bytes is text like any other (only bytes that are not UTF-8 are refused).
      'replacement \ufffd character',
    ];
    // Control characters are refused in an identity (the bad-input table) but are fine in context
    // values, which are stored as JSON text with every control escaped.
    const hasControl = (text: string) => /\p{Cc}/u.test(text);
    for (const text of hostile) {
      const identity = hasControl(text) ? 'team:hostile' : text;
      const context = { note: text.slice(0, 1024), source_ip: 'fd00:20::1' };
      const res = await authorize(server.url, { identity, action: 'write', resource: 'service:payment-service', namespace: 'prod', context });
      assert.equal(res.status, 200, `${JSON.stringify(text.slice(0, 40))}: ${res.text.slice(0, 300)}`);
      assert.equal(res.json.result, 'DENY');
      assertNoLeak(res.text, [server.root]);
      const row = rowByDecision(server.auditPath, res.json.decision_id);
      assert.ok(row, 'audited');
      assert.equal(row.identity, identity, 'identity stored verbatim');
      assert.equal(row.resource, 'service:payment-service');
      assert.deepEqual(details(row), { note: text.slice(0, 1024) }, 'context stored verbatim');
    }
    // The table is still there and still append-only.
    const count = allRows(server.auditPath).length;
    assert.ok(count >= hostile.length);
  });

  test('GET /v1/health, /v1/ready, /v1/policies', async () => {
    const health = await request(`${server.url}/v1/health`);
    assert.equal(health.status, 200);
    assert.equal(health.json.status, 'ok');

    const ready = await request(`${server.url}/v1/ready`);
    assert.equal(ready.status, 200);
    assert.equal(ready.json.ready, true);
    assert.equal(ready.json.audit_writable, true);
    assert.equal(ready.json.policy_version, EXAMPLE_VERSION);

    const policies = await request(`${server.url}/v1/policies`);
    assert.equal(policies.status, 200);
    assert.equal(policies.json.version, EXAMPLE_VERSION);
    const files = policies.json.files.map((f: { path: string }) => f.path);
    assert.deepEqual(files, ['api.hcl', 'prod.hcl', 'roles.hcl', 'settings.hcl', 'staging.hcl', 'tests.hcl']);
    const prod = policies.json.files.find((f: { path: string }) => f.path === 'prod.hcl');
    assert.ok(prod.rules > 5);
    assert.match(prod.sha256, /^[0-9a-f]{64}$/);
    assert.equal(typeof policies.json.rule_count, 'number');
    assert.equal(policies.json.rule_count, policies.json.files.reduce((n: number, f: { rules: number }) => n + f.rules, 0));
    assert.ok(!Number.isNaN(Date.parse(policies.json.loaded_at)));
  });

  test('GET /metrics: Prometheus text with decisions, cache, queue, reloads and a latency histogram', async () => {
    await authorize(server.url, { identity: PAYMENT, action: 'write', resource: 'service:payment-service', namespace: 'prod' });
    const res = await request(`${server.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    assert.ok(metricValue(res.text, 'pdp_decisions_total{result="ALLOW"}') >= 1);
    assert.ok(metricValue(res.text, 'pdp_decisions_total{result="DENY"}') >= 1);
    assert.ok(metricValue(res.text, 'pdp_cache_hits_total') >= 0);
    assert.ok(metricValue(res.text, 'pdp_cache_misses_total') >= 1);
    assert.equal(metricValue(res.text, 'pdp_audit_queue_depth'), 0);
    assert.match(res.text, /^# TYPE pdp_policy_reloads_total counter$/m);
    assert.match(res.text, /^# TYPE pdp_decision_duration_seconds histogram$/m);
    assert.ok(metricValue(res.text, 'pdp_decision_duration_seconds_bucket{le="+Inf"}') >= 1);
    assert.ok(metricValue(res.text, 'pdp_decision_duration_seconds_count') >= 1);
    // Buckets are cumulative and end at the count; every decision answered is counted by result.
    const count = metricValue(res.text, 'pdp_decision_duration_seconds_count');
    assert.equal(metricValue(res.text, 'pdp_decision_duration_seconds_bucket{le="+Inf"}'), count);
    assert.ok(metricValue(res.text, 'pdp_decision_duration_seconds_bucket{le="0.0001"}') <= metricValue(res.text, 'pdp_decision_duration_seconds_bucket{le="0.25"}'));
    assert.ok(metricValue(res.text, 'pdp_decision_duration_seconds_bucket{le="0.25"}') <= count);
    const byResult = ['ALLOW', 'ALLOW_DEFAULT', 'DENY'].reduce((sum, r) => sum + (res.text.includes(`pdp_decisions_total{result="${r}"}`) ? metricValue(res.text, `pdp_decisions_total{result="${r}"}`) : 0), 0);
    assert.ok(byResult >= count, 'a request observes one duration; a batch counts each of its decisions');
    assert.match(res.text, /^pdp_audit_write_seconds_bucket/m);
    assert.ok(metricValue(res.text, 'pdp_audit_rows_total') >= 1);
  });

  test('GET /metrics counts every error answer by code and status (pdp_http_errors_total), the ones written before routing included', async () => {
    const errors = async () => {
      const text = (await request(`${server.url}/metrics`)).text;
      const value = (series: string) => (text.includes(series) ? metricValue(text, series) : 0);
      return {
        invalid: value('pdp_http_errors_total{code="invalid_request",status="400"}'),
        notFound: value('pdp_http_errors_total{code="not_found",status="404"}'),
        media: value('pdp_http_errors_total{code="unsupported_media_type",status="415"}'),
      };
    };
    const before = await errors();
    const answers: number[] = [];
    for (let i = 0; i < 3; i++) answers.push((await request(`${server.url}/v1/authorize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"identity":' })).status);
    answers.push((await request(`${server.url}/v1/nope`)).status);
    answers.push((await fetch(`${server.url}/v1/authorize`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' })).status);
    assert.deepEqual(answers, [400, 400, 400, 404, 415]);
    // A request without Host is answered before fastify routes it.
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1', () => socket.write('GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n'));
      socket.on('data', () => undefined).on('end', () => resolve()).on('error', reject);
    });
    const after = await errors();
    assert.deepEqual({ invalid: after.invalid - before.invalid, notFound: after.notFound - before.notFound, media: after.media - before.media }, { invalid: 4, notFound: 1, media: 1 });
  });

  test('unknown route → 404 JSON; a known path with the wrong method → 405 with Allow; HEAD on a GET route still answers', async () => {
    const res = await request(`${server.url}/v1/nope?x=1`);
    assert.equal(res.status, 404);
    assert.equal(res.json.error.code, 'not_found');
    assert.match(res.json.error.message, /\/v1\/nope/);
    const wrongMethod = await request(`${server.url}/v1/authorize`);
    assert.equal(wrongMethod.status, 405, wrongMethod.text);
    assert.equal(wrongMethod.headers.get('allow'), 'POST');
    assert.equal(wrongMethod.json.error.code, 'method_not_allowed');
    assert.match(wrongMethod.json.error.message, /`\/v1\/authorize` does not answer `GET`/);
    assertNoLeak(wrongMethod.text, [server.root]);
    for (const [method, url, allow] of [['DELETE', '/v1/health', 'GET, HEAD'], ['POST', '/metrics?x=1', 'GET, HEAD'], ['PUT', '/v1/policies/reload', 'POST'], ['GET', '/v1/authorize/batch', 'POST']] as const) {
      const r = await request(`${server.url}${url}`, { method });
      assert.equal(r.status, 405, `${method} ${url}: ${r.text}`);
      assert.equal(r.headers.get('allow'), allow, `${method} ${url}`);
      assert.equal(r.json.error.code, 'method_not_allowed');
    }
    const head = await request(`${server.url}/v1/health`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal((await request(`${server.url}/v1/nope`, { method: 'DELETE' })).status, 404, 'an unknown path stays 404 whatever the method');
  });

  test('`__proto__` and `constructor.prototype` keys: 400 invalid_request naming the key (valid JSON, not "invalid JSON"); nothing audited', async () => {
    const before = allRows(server.auditPath).length;
    const cases: { path: string; raw: string; field: string }[] = [
      { path: '/v1/authorize', raw: '{"__proto__":{"allow":true},"action":"read","resource":"service:web"}', field: '__proto__' },
      { path: '/v1/authorize', raw: '{"action":"read","resource":"service:web","context":{"__proto__":{"x":1}}}', field: 'context.__proto__' },
      { path: '/v1/authorize', raw: '{"constructor":{"prototype":{"allow":true}},"action":"read","resource":"service:web"}', field: 'constructor' },
      { path: '/v1/authorize/batch', raw: '{"checks":[{"action":"read","resource":"service:web"},{"__proto__":{},"action":"read","resource":"service:web"}]}', field: 'checks[1].__proto__' },
      { path: '/v1/authorize/batch', raw: '{"checks":[{"action":"read","resource":"service:web"},{"action":"read","resource":"service:web"},{"constructor":{"prototype":1},"action":"read","resource":"service:web"}]}', field: 'checks[2].constructor' },
      // Nested a hundred thousand levels deep (well within the body limit): found without recursion
      // (before, the search overflowed the stack: 500), and named without quoting every level.
      { path: '/v1/authorize', raw: `{"action":"read","resource":"service:web","x":${'['.repeat(100_000)}{"__proto__":1}${']'.repeat(100_000)}}`, field: `x${'[0]'.repeat(7)}…${'[0]'.repeat(7)}.__proto__` },
      { path: '/v1/authorize', raw: `{"x":${'{"a":'.repeat(100_000)}{"constructor":{"prototype":1}}${'}'.repeat(100_000)}}`, field: `x${'.a'.repeat(7)}…${'a.'.repeat(7)}constructor` },
    ];
    for (const c of cases) {
      const res = await request(`${server.url}${c.path}`, { raw: c.raw });
      assert.equal(res.status, 400, `${c.raw}: ${res.text}`);
      assert.equal(res.json.error.code, 'invalid_request', res.text);
      assert.equal(res.json.error.field, c.field, res.text);
      assert.match(res.json.error.message, /is not accepted/);
      assert.ok(res.json.error.message.includes(`\`${c.field}\``), res.text);
      assert.ok(res.text.length < 512, `an error answer is short: ${res.text.length} characters`);
    }
    // A `constructor` that is a plain value is just an unknown field; broken JSON is still invalid_json.
    const plain = await request(`${server.url}/v1/authorize`, { raw: '{"constructor":"x","action":"read","resource":"service:web"}' });
    assert.equal(plain.status, 400);
    assert.equal(plain.json.error.field, 'constructor');
    assert.match(plain.json.error.message, /unknown field/);
    const broken = await request(`${server.url}/v1/authorize`, { raw: '{"__proto__":' });
    assert.equal(broken.json.error.code, 'invalid_json');
    assert.equal(allRows(server.auditPath).length, before);
    assert.equal(({} as Record<string, unknown>).allow, undefined, 'no prototype was touched');
  });

  test('headers over the limit: 431 in the API error shape (not fastify\'s), connection closed', async () => {
    const { port } = new URL(server.url);
    const text = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1', () => {
        socket.write(`GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${'a'.repeat(20_000)}\r\n\r\n`);
      });
      let data = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => { data += chunk; });
      socket.on('close', () => resolve(data));
      socket.on('error', reject);
    });
    const [head, body] = text.split('\r\n\r\n');
    assert.match(head!, /^HTTP\/1\.1 431 /);
    assert.match(head!, /\r\nconnection: close/i);
    const json = JSON.parse(body!) as { error: { code: string; message: string } };
    assert.equal(json.error.code, 'headers_too_large');
    assert.match(json.error.message, /headers are larger than the limit/);
    assert.ok(!text.includes('aaaa'), 'the header is not echoed');
    // Malformed HTTP gets the same shape.
    const bad = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1', () => socket.write('NONSENSE\r\n\r\n'));
      let data = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => { data += chunk; });
      socket.on('close', () => resolve(data));
      socket.on('error', reject);
    });
    assert.match(bad, /^HTTP\/1\.1 400 /);
    assert.equal((JSON.parse(bad.split('\r\n\r\n')[1]!) as { error: { code: string } }).error.code, 'invalid_request');
  });

  test('cache: the same request twice is a hit, both audited with distinct ids and identical rows', async () => {
    const metrics = async () => {
      const text = (await request(`${server.url}/metrics`)).text;
      return { hits: metricValue(text, 'pdp_cache_hits_total'), misses: metricValue(text, 'pdp_cache_misses_total') };
    };
    const body = {
      identity: 'spiffe://cluster/ns/prod/sa/user', action: 'read', resource: 'service:order-service/order-3', namespace: 'prod',
      context: { source_ip: 'FD00:0:0::7', zone: 'eu-1' },
    };
    const m0 = await metrics();
    const first = await authorize(server.url, body);
    const m1 = await metrics();
    const second = await authorize(server.url, body);
    const m2 = await metrics();
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.deepEqual({ hits: m1.hits - m0.hits, misses: m1.misses - m0.misses }, { hits: 0, misses: 1 }, 'first: a miss');
    assert.deepEqual({ hits: m2.hits - m1.hits, misses: m2.misses - m1.misses }, { hits: 1, misses: 0 }, 'second: a hit');
    // Refused requests are no cache traffic: a namespace that contradicts the resource's is a 400.
    const refused = await authorize(server.url, { ...body, resource: 'namespace:staging/*' });
    assert.equal(refused.status, 400, JSON.stringify(refused.json));
    const m3 = await metrics();
    assert.deepEqual({ hits: m3.hits - m2.hits, misses: m3.misses - m2.misses }, { hits: 0, misses: 0 }, 'a refused request counts neither');
    assert.notEqual(first.json.decision_id, second.json.decision_id);
    const { decision_id: _a, ...restFirst } = first.json;
    const { decision_id: _b, ...restSecond } = second.json;
    assert.deepEqual(restSecond, restFirst, 'the hit answers what the miss answered');

    const rowA = rowByDecision(server.auditPath, first.json.decision_id);
    const rowB = rowByDecision(server.auditPath, second.json.decision_id);
    assert.ok(rowA && rowB, 'both decisions audited');
    const strip = ({ id: _id, timestamp: _t, decision_id: _d, ...rest }: AuditLogRow) => rest;
    assert.deepEqual(strip(rowB), strip(rowA), 'a cache hit writes the same audit row as a miss');
    assert.equal(rowA.instance_id, 'order-3');
    assert.deepEqual(details(rowA), { zone: 'eu-1' });
  });

  test('cache: a request differing only in source_ip under a policy with cidrs is decided separately', async () => {
    const base = { identity: PAYMENT, action: 'write', resource: 'service:ledger-payments', namespace: 'prod' };
    const inside = await authorize(server.url, { ...base, context: { source_ip: '10.20.3.4' } });
    const outside = await authorize(server.url, { ...base, context: { source_ip: '192.0.2.7' } });
    const insideAgain = await authorize(server.url, { ...base, context: { source_ip: '10.20.3.4' } });
    const none = await authorize(server.url, base);
    assert.equal(inside.json.result, 'ALLOW');
    assert.equal(outside.json.result, 'DENY');
    assert.match(outside.json.reason, /source|cidr|192\.0\.2\.7/i);
    assert.equal(insideAgain.json.result, 'ALLOW');
    assert.equal(none.json.result, 'DENY', 'no source_ip: the cidrs rule does not apply');
    assert.equal(rowByDecision(server.auditPath, outside.json.decision_id)?.source_ip, '192.0.2.7');
  });

  test('cache: a request differing from a cached one only in namespace, action, resource or identity is decided afresh', async () => {
    // Each pair: the first answer is cached (ALLOW), the second differs in one field of the key and
    // must get its own decision (DENY) and its own row, not the cached answer.
    const pairs: Array<[string, Record<string, unknown>, Record<string, unknown>]> = [
      ['namespace', { identity: PAYMENT, action: 'write', resource: 'service:payment-service', namespace: 'prod' }, { namespace: 'staging' }],
      ['action', { identity: ORDER, action: 'read', resource: 'service:payment-service', namespace: 'prod' }, { action: 'write' }],
      ['resource', { identity: ORDER, action: 'write', resource: 'service:order-service', namespace: 'prod' }, { resource: 'service:user-service' }],
      ['identity', { identity: PAYMENT, action: 'write', resource: 'service:payment-service/p-1', namespace: 'prod' }, { identity: ORDER }],
    ];
    for (const [field, cached, change] of pairs) {
      const first = await authorize(server.url, cached);
      const again = await authorize(server.url, cached);
      assert.equal(first.json.result, 'ALLOW', `${field}: ${first.text}`);
      assert.equal(again.json.result, 'ALLOW', `${field}: the cached answer`);
      const other = await authorize(server.url, { ...cached, ...change });
      assert.equal(other.status, 200, other.text);
      assert.equal(other.json.result, 'DENY', `${field} differs: decided afresh, not served the cached ALLOW: ${other.text}`);
      assert.equal(rowByDecision(server.auditPath, other.json.decision_id)?.result, 'DENY', `${field}: the row says what was answered`);
    }
  });
});

describe('cache under a policy without cidrs', () => {
  let server: InProcessServer;
  before(async () => {
    server = await startServer({ files: { 'p.hcl': 'service "web" {\n  policy = "read"\n  identity = "team:web"\n}\n' } });
  });
  after(async () => {
    await server?.close();
  });

  test('a cache hit still refuses a bad source_ip and stores the address the miss path stores', async () => {
    const base = { identity: 'team:web', action: 'read', resource: 'service:web' };
    const ok = await authorize(server.url, { ...base, context: { source_ip: '10.0.0.1' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.result, 'ALLOW');
    const bad = await authorize(server.url, { ...base, context: { source_ip: 'not-an-ip' } });
    assert.equal(bad.status, 400, `a bad IP is refused even when the answer is cached: ${bad.text}`);
    assert.equal(bad.json.error.field, 'context.source_ip');
    // A different address (cache hit, since the policy has no cidrs) is audited with its own address.
    const other = await authorize(server.url, { ...base, context: { source_ip: '10.0.0.2' } });
    assert.equal(other.status, 200);
    assert.equal(rowByDecision(server.auditPath, other.json.decision_id)?.source_ip, '10.0.0.2');
    const mapped = await authorize(server.url, { ...base, context: { source_ip: '::ffff:10.0.0.9' } });
    const mappedAgain = await authorize(server.url, { ...base, context: { source_ip: '::ffff:10.0.0.9' } });
    assert.equal(mapped.status, 200);
    assert.equal(rowByDecision(server.auditPath, mappedAgain.json.decision_id)?.source_ip, rowByDecision(server.auditPath, mapped.json.decision_id)?.source_ip);
  });
});

describe('fail closed when the audit store cannot be written', () => {
  test('a write lock held for less than the busy timeout delays the answer, never refuses it, and the server keeps answering meanwhile', async (t) => {
    const { server, holder } = await startServerWithLockHolder(t, { busyTimeoutMs: 5000 });
    const body = { identity: PAYMENT, action: 'write', resource: 'service:payment-service', namespace: 'prod' };
    assert.equal((await authorize(server.url, body)).status, 200);

    // Another connection (as another `--workers` process or `pdp audit prune` would) takes the lock.
    holder.exec('BEGIN IMMEDIATE');
    const heldFrom = performance.now();
    let answeredAt: number | undefined;
    const waiting = authorize(server.url, body).then((r) => { answeredAt = performance.now(); return r; });
    // The decision has reached the server and its row waits for the lock (not a fixed sleep: under load
    // the request may take a while to arrive).
    assert.ok(await waitFor(() => server.recorder.queueDepth() > 0, 5000, 5), 'the decision waits for the lock');
    // The decision's commit waits for the lock without putting the event loop to sleep: other requests are answered
    // while it waits (SQLite's own busy handler would block this event loop, and so the health check, for the
    // whole 5 s busy timeout, since the lock is released by this same event loop).
    const probeStarted = performance.now();
    const health = await request(`${server.url}/v1/health`);
    assert.equal(health.status, 200);
    assert.equal(answeredAt, undefined, 'health was answered while the decision still waited for the lock');
    assert.ok(performance.now() - probeStarted < 2500, `health answered in ${Math.round(performance.now() - probeStarted)} ms while the lock was held`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    holder.exec('COMMIT');
    const heldMs = performance.now() - heldFrom;

    const answer = await waiting;
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual(missingDecisions(server.auditPath, [answer.json.decision_id]), []);
    const metricsText = (await request(`${server.url}/metrics`)).text;
    assert.equal(metricValue(metricsText, 'pdp_audit_lock_wait_seconds_count'), 1);
    const waited = metricValue(metricsText, 'pdp_audit_lock_wait_seconds_sum');
    // At least the 300 ms the lock was held after the row queued; committed soon after the release
    // (within 1 s, not the 5 s busy timeout: a 100 ms margin is at risk when a loaded machine runs
    // the retry timer late).
    assert.ok(waited >= 0.3 && waited <= heldMs / 1000 + 1, `waited ${waited} s of the ${Math.round(heldMs)} ms the lock was held`);
    assert.equal(metricValue(metricsText, 'pdp_audit_failures_total'), 0);
    assert.equal(metricValue(metricsText, 'pdp_audit_writable'), 1);
  });

  test('a held write lock → 503 audit_unavailable and not ready; released → ready again, nothing answered is unaudited', async (t) => {
    const { server, holder } = await startServerWithLockHolder(t, { busyTimeoutMs: 100, probeIntervalMs: 100 });
    const body = { identity: PAYMENT, action: 'write', resource: 'service:payment-service', namespace: 'prod' };
    const answered: string[] = [];
    const warm = await authorize(server.url, body);
    assert.equal(warm.status, 200);
    answered.push(warm.json.decision_id);

    holder.exec('BEGIN EXCLUSIVE');
    const denied = await authorize(server.url, body);
    assert.equal(denied.status, 503, denied.text);
    assert.equal(denied.json.error.code, 'audit_unavailable');
    assert.equal(denied.json.decision_id, undefined);
    assertNoLeak(denied.text, [server.root]);
    const ready = await request(`${server.url}/v1/ready`);
    assert.equal(ready.status, 503);
    assert.equal(ready.json.ready, false);
    assert.equal(ready.json.audit_writable, false);

    // While locked, concurrent decisions (cache hits included) and batches are all refused.
    const during = await Promise.all([
      ...Array.from({ length: 6 }, () => authorize(server.url, body)),
      request(`${server.url}/v1/authorize/batch`, { body: { checks: [body, body] } }),
    ]);
    for (const r of during) {
      assert.equal(r.status, 503, r.text);
      assert.equal(r.json.error.code, 'audit_unavailable');
    }
    const metricsText = (await request(`${server.url}/metrics`)).text;
    assert.ok(metricValue(metricsText, 'pdp_audit_failures_total') >= 1);
    assert.equal(metricValue(metricsText, 'pdp_audit_writable'), 0);

    holder.exec('COMMIT');
    const recovered = await waitFor(async () => (await request(`${server.url}/v1/ready`)).status === 200, 5000, 50);
    assert.ok(recovered, '/v1/ready is 200 again within 5 s of the lock being released');
    const results = await Promise.all(Array.from({ length: 5 }, () => authorize(server.url, body)));
    for (const r of results) {
      assert.equal(r.status, 200, r.text);
      answered.push(r.json.decision_id);
    }
    assert.deepEqual(missingDecisions(server.auditPath, answered), []);
    assert.equal(allRows(server.auditPath).filter((r) => r.decision_id !== null).length, answered.length, 'refused decisions left no row');
  });
});
