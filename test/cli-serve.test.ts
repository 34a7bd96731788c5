// `pdp serve` as a binary: the refusals that happen before it listens, and --help.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { readDatabaseFileAlone } from './support/audit';
import { authorize, makePolicyDir, makeTempDir, missingDecisions, removeTempDir, request, runPdp, startServe, waitFor } from './support/server';

function tempSet(t: { after(fn: () => void): void }, files?: Record<string, string>) {
  const root = makeTempDir('pdp-cli-serve-');
  t.after(() => removeTempDir(root));
  const policyDir = makePolicyDir(root, files);
  return { root, policyDir, auditPath: path.join(root, 'audit.db') };
}

test('--listen 0.0.0.0:0 without TLS is refused: exit 2, says loopback and TLS, opens nothing', async (t) => {
  const { policyDir, auditPath } = tempSet(t);
  // Legacy IPv4 spellings of 127.0.0.1 are not read as loopback (nor as addresses at all).
  const listens = ['0.0.0.0:0', '[::]:0', '10.1.2.3:0', '127.1:0', '0x7f000001:0', '[::ffff:10.0.0.1]:0'];
  const runs = await Promise.all(listens.map((listen) => runPdp(['serve', '--policies', policyDir, '--audit', auditPath, '--listen', listen])));
  for (const [i, r] of runs.entries()) {
    assert.equal(r.code, 2, `${listens[i]}: ${r.stderr}`);
    assert.match(r.stderr, /loopback/);
    assert.match(r.stderr, /TLS|--tls-cert/);
    assert.equal(r.stdout.includes('listening'), false);
  }
  assert.equal(fs.existsSync(auditPath), false, 'no audit store is created by a refused start');
});

test('every canonical loopback spelling may serve plain HTTP: [0:0:0:0:0:0:0:1], [::ffff:127.0.0.1]', async (t) => {
  const { policyDir, auditPath } = tempSet(t);
  for (const listen of ['[0:0:0:0:0:0:0:1]:0', '[::ffff:127.0.0.1]:0']) {
    const serve = await startServe(['--policies', policyDir, '--audit', auditPath, '--no-watch', '--listen', listen]);
    assert.match(serve.stderr(), /serving plain HTTP on loopback/, listen);
    await serve.stop();
  }
});

test('PDP_LISTEN mirrors --listen, so a public address from the environment is refused too', async (t) => {
  const { policyDir, auditPath } = tempSet(t);
  const r = await runPdp(['serve', '--policies', policyDir, '--audit', auditPath], { env: { PDP_LISTEN: '0.0.0.0:0' } });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /loopback/);
});

test('a broken policy directory refuses to start: exit 1 with file:line:col on stderr', async (t) => {
  const { policyDir, auditPath } = tempSet(t, {
    'good.hcl': 'service "web" {\n  policy   = "read"\n  identity = "team:web"\n}\n',
    'sub/broken.hcl': 'service "api" {\n  policy = "raed"\n  identity = "team:web"\n}\n',
  });
  const r = await runPdp(['serve', '--policies', policyDir, '--audit', auditPath, '--listen', '127.0.0.1:0']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /broken\.hcl:2:\d+/);
  assert.match(r.stderr, /not starting/);
  assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+\)?\n/, 'no stack trace');
  assert.equal(r.stdout.includes('listening'), false);
  assert.equal(fs.existsSync(auditPath), false);
});

test('a policy directory without *.hcl files, or missing, is bad usage (exit 2, as for check and eval), worded alike', async (t) => {
  const { root, auditPath } = tempSet(t, {});
  const empty = path.join(root, 'policies');
  const [r, missing] = await Promise.all([
    runPdp(['serve', '--policies', empty, '--audit', auditPath, '--listen', '127.0.0.1:0']),
    runPdp(['serve', '--policies', path.join(root, 'nope'), '--audit', auditPath, '--listen', '127.0.0.1:0']),
  ]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /\*\.hcl/);
  assert.equal(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /cannot read `[^`]*nope`: no such file or directory/);
  const evalMissing = await runPdp(['eval', '--policies', path.join(root, 'nope'), '--identity', 'x', '--action', 'read', '--resource', 'service:a']);
  assert.equal(evalMissing.code, 2, evalMissing.stderr);
  assert.match(evalMissing.stderr, /cannot read `[^`]*nope`: no such file or directory/);
});

test('bad usage exits 2: a malformed --listen, a bad --cache-entries, --audit-writer or --audit-checkpoint, an unknown flag', async (t) => {
  const { policyDir, auditPath } = tempSet(t);
  const cases = [['--listen', 'localhost'], ['--listen', '127.0.0.1:99999'], ['--cache-entries', '-1'], ['--audit-writer', 'async'], ['--bogus'], ['--cache-entries', ''], ['--cache-entries', '1e3'], ['--audit-checkpoint', 'sometimes']];
  const runs = await Promise.all(cases.map((args) => runPdp(['serve', '--policies', policyDir, '--audit', auditPath, ...args])));
  for (const [i, r] of runs.entries()) {
    assert.equal(r.code, 2, `${cases[i]!.join(' ')}: ${r.stderr}`);
    assert.ok(r.stderr.length > 0);
  }
  assert.match(runs[3]!.stderr, /--audit-writer must be `inline` or `thread`; got `async`/);
  assert.match(runs[5]!.stderr, /--cache-entries expects a whole number ≥ 0; got ``/, 'an empty value does not turn the cache off silently');
  assert.match(runs[7]!.stderr, /--audit-checkpoint must be `thread` or `inline`; got `sometimes`/);
  assert.equal(fs.existsSync(auditPath), false);
});

test('a port in use: exit 1 saying it cannot listen', async (t) => {
  const { policyDir, auditPath } = tempSet(t);
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => blocker.close());
  const port = (blocker.address() as net.AddressInfo).port;
  const r = await runPdp(['serve', '--policies', policyDir, '--audit', auditPath, '--listen', `127.0.0.1:${port}`, '--no-watch']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /cannot listen/);
});

test('--help exits 0 and documents the flags', async () => {
  const r = await runPdp(['serve', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /usage: pdp serve/);
  for (const flag of ['--policies', '--audit', '--listen', '--no-watch', '--tls-cert']) assert.ok(r.stdout.includes(flag), flag);
  // Every endpoint of docs/server.md's table is named, the forward-auth one included.
  const endpoints = ['/v1/authorize', '/v1/authorize/batch', '/v1/authorize/forward', '/v1/health', '/v1/ready', '/metrics', '/v1/policies', '/v1/policies/reload', '/v1/audit/anomalies'];
  for (const endpoint of endpoints) assert.match(r.stdout, new RegExp(`${endpoint.replace(/\//g, '\\/')}[ ,.]`), endpoint);
});

test('starts on 127.0.0.1:0, reports its URL on stdout and answers', async (t) => {
  const { policyDir, auditPath } = tempSet(t);
  const serve = await startServe(['--policies', policyDir, '--audit', auditPath, '--no-watch']);
  t.after(() => serve.stop());
  assert.match(serve.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const health = await request(`${serve.url}/v1/health`);
  assert.equal(health.status, 200);
  assert.match(serve.stderr(), /rules \(sha256:[0-9a-f]{64}\)/);
  assert.ok(fs.existsSync(auditPath));
  // The loopback development mode: the operations endpoints are open, the audit analyses and the
  // readiness detail included.
  const ready = await request(`${serve.url}/v1/ready`);
  assert.match(ready.json.policy_version, /^sha256:/);
  const anomalies = await request(`${serve.url}/v1/audit/anomalies?since=30m`);
  assert.equal(anomalies.status, 200, anomalies.text);
  assert.equal(anomalies.json.db, path.basename(auditPath));
  assert.equal(anomalies.json.findings, 0);
  assert.equal(Date.parse(anomalies.json.now) - Date.parse(anomalies.json.since), 30 * 60_000);
  assert.match(serve.stderr(), /serving plain HTTP on loopback: TLS and caller authentication are off/);
});

test('pdp serve with --tokens on plain loopback warns that TLS is off, not that authentication is', async (t) => {
  const { policyDir, auditPath } = tempSet(t);
  const serve = await startServe(['--policies', policyDir, '--audit', auditPath, '--no-watch', '--tokens', path.join(path.dirname(auditPath), 'tokens.db')]);
  t.after(() => serve.stop());
  assert.equal((await request(`${serve.url}/v1/authorize`, { body: { identity: 'team:x', action: 'read', resource: 'service:x' } })).status, 401, 'caller authentication is on');
  assert.match(serve.stderr(), /TLS is off, so bearer tokens cross the connection in clear text/);
  assert.doesNotMatch(serve.stderr(), /caller authentication are off/);
});

/** Decides 20 times; returns the decision ids. */
async function decideTwenty(url: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    const answer = await authorize(url, { identity: 'spiffe://cluster/ns/prod/sa/payment', action: 'read', resource: `service:svc-${i}`, namespace: 'prod' });
    assert.equal(answer.status, 200, answer.text);
    ids.push(answer.json.decision_id);
  }
  return ids;
}

/** The ids of `ids` missing from the database file on its own (a copy without its WAL). */
function missingFromDatabaseFileAlone(auditPath: string, ids: string[]): string[] {
  return readDatabaseFileAlone(auditPath, (db) => {
    if (!db) return ids; // the schema itself may still be only in the WAL
    const stored = new Set(db.prepare('SELECT decision_id FROM audit_log').pluck().all() as string[]);
    return ids.filter((id) => !stored.has(id));
  });
}

test('the audit checkpointer thread runs beside the server: decided rows reach the database file itself, and /metrics shows its passes', async (t) => {
  const { policyDir, auditPath } = tempSet(t);
  const serve = await startServe(['--policies', policyDir, '--audit', auditPath, '--no-watch']);
  t.after(() => serve.stop());
  const ids = await decideTwenty(serve.url);
  // SQLite's own checkpoint would wait for ~40 MiB of WAL; 20 rows reach the file only through the thread.
  const scrape = async () => (await request(`${serve.url}/metrics`)).text;
  assert.ok(await waitFor(async () => /^pdp_audit_checkpoint_seconds_count [1-9]\d*$/m.test(await scrape()), 5000), 'a checkpoint pass was counted');
  assert.match(await scrape(), /^pdp_audit_wal_frames [1-9]\d*$/m);
  assert.ok(await waitFor(() => missingFromDatabaseFileAlone(auditPath, ids).length === 0, 5000), 'every decision row is in the database file without its WAL');
});

test('--audit-checkpoint inline runs no checkpointer thread: the rows stay in the WAL until SQLite checkpoints', async (t) => {
  const { policyDir, auditPath } = tempSet(t);
  const serve = await startServe(['--policies', policyDir, '--audit', auditPath, '--no-watch', '--audit-checkpoint', 'inline']);
  t.after(() => serve.stop());
  const ids = await decideTwenty(serve.url);
  await new Promise((resolve) => setTimeout(resolve, 600)); // more than two passes' time of the thread
  assert.match((await request(`${serve.url}/metrics`)).text, /^pdp_audit_checkpoint_seconds_count 0$/m);
  assert.equal(missingFromDatabaseFileAlone(auditPath, ids).length, ids.length, 'none is in the database file yet');
  // Every answered decision is still in audit_log through the WAL.
  assert.deepEqual(missingDecisions(auditPath, ids), []);
});
