// `pdp audit`: in-process through the command function, and as the real binary once the CLI entry
// point (dist/src/cli/main.js) is built.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { HELP, run } from '../src/cli/audit';
import { UsageError, type CliIo } from '../src/cli/io';
import { openAuditStore, type AuditEvent } from '../src/audit';

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const MAIN_BUILT = fs.existsSync(path.join(REPO_ROOT, 'dist/src/cli/main.js'));
const tempDirs: string[] = [];
after(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pdp-audit-cli-'));
  tempDirs.push(dir);
  return dir;
}

function capture(cwd: string, env: NodeJS.ProcessEnv = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env, cwd };
  return { io, stdout: () => out.join(''), stderr: () => err.join('') };
}

function event(overrides: Partial<AuditEvent>): AuditEvent {
  return {
    timestamp: new Date().toISOString(),
    event_type: 'REGISTRATION',
    service_name: 'payment-service',
    namespace: 'prod',
    instance_id: null,
    identity: 'spiffe://cluster/ns/prod/sa/payment',
    source_ip: '10.0.1.50',
    action: 'write',
    resource: 'service:payment-service',
    result: 'ALLOW',
    reason: null,
    rule: null,
    decision_id: null,
    policy_version: null,
    details: null,
    registry_node: 'registry-1',
    ...overrides,
  };
}

/** A database with one finding per analysis in the last hour, plus old rows for pruning. */
function databaseWithFindings(dir: string, name = 'audit.db'): string {
  const file = path.join(dir, name);
  const store = openAuditStore(file);
  store.refreshAllowedServices([{ name: 'payment-service', namespace: 'prod' }]);
  const recent = () => new Date(Date.now() - 60_000).toISOString();
  const events: AuditEvent[] = [];
  for (let i = 0; i < 5; i++) events.push(event({ timestamp: recent() }));
  events.push(event({ service_name: 'rogue\u001b[31m-\u202eservice', timestamp: recent() }));
  for (let i = 0; i < 3; i++) events.push(event({ event_type: 'DISCOVERY', result: 'DENY', identity: 'spiffe://x/mallory', timestamp: recent() }));
  // Someone presenting a self-signed certificate that claims a real workload's SPIFFE ID, three times.
  for (let i = 0; i < 3; i++) {
    events.push(event({ event_type: 'AUTHN_FAILURE', result: 'DENY', identity: 'spiffe://x/registry', service_name: null, action: null, resource: null, timestamp: recent(), details: { identity_verified: false } }));
  }
  const longAgo = new Date(Date.now() - 400 * 86_400_000).toISOString();
  events.push(event({ event_type: 'DISCOVERY', timestamp: longAgo }), event({ event_type: 'ACL_CHANGE', timestamp: longAgo }));
  store.insertBatch(events);
  store.close();
  return file;
}

test('anomalies --format json reports each analysis and exits 1 on findings', async () => {
  const dir = tempDir();
  const file = databaseWithFindings(dir);
  const { io, stdout } = capture(dir);
  const code = await run(['anomalies', '--db', file, '--format', 'json', '--spike-threshold', '4', '--deny-threshold', '2'], io);
  assert.equal(code, 1);
  const report = JSON.parse(stdout());
  assert.equal(report.db, file);
  assert.deepEqual(report.thresholds, { spike: 4, deny: 2 });
  assert.deepEqual(report.registration_spikes, [{ service_name: 'payment-service', registrations: 5 }]);
  assert.deepEqual(report.unknown_services, [{ service_name: 'rogue\u001b[31m-\u202eservice', registrations: 1 }]);
  assert.deepEqual(report.authorization_failures, [
    { identity: 'spiffe://x/mallory', denials: 3, failed_authentications: 0 },
    { identity: 'spiffe://x/registry', denials: 3, failed_authentications: 3 },
  ]);
  assert.equal(report.findings, 4);
  assert.equal(report.allowed_services, 1);
});

test('anomalies exits 0 when the thresholds are not exceeded; the table escapes control characters', async () => {
  const dir = tempDir();
  databaseWithFindings(dir);
  // Default --db is ./audit.db against io.cwd.
  const quiet = capture(dir);
  // The unknown service is still found at any threshold, so check the table output here.
  assert.equal(await run(['anomalies'], quiet.io), 1);
  const text = quiet.stdout();
  assert.match(text, /registration spikes \(more than 100 registrations per service\)\n {2}none/);
  assert.match(text, /rogue\\u001b\[31m-\\u202eservice/, 'a right-to-left override is shown escaped too');
  assert.doesNotMatch(text, /[\u001b\u202e]/);
  assert.match(text, /1 finding\n$/);

  // Denials that were failed authentications are counted apart, with a note that they name a claim.
  const low = capture(dir);
  assert.equal(await run(['anomalies', '--deny-threshold', '2'], low.io), 1);
  assert.match(low.stdout(), /identity {13,}denials {2}of them failed authentications\n {2}spiffe:\/\/x\/mallory +3 +0\n {2}spiffe:\/\/x\/registry +3 +3\n/);
  assert.match(low.stdout(), /note: a failed authentication names the identity that was attempted, not one that was verified/);

  const empty = path.join(dir, 'empty.db');
  openAuditStore(empty).close();
  const none = capture(dir);
  assert.equal(await run(['anomalies', '--db', 'empty.db', '--since', '30m'], none.io), 0);
  assert.match(none.stdout(), /no findings/);
  assert.match(none.stdout(), /allowed_services is empty/);
});

test('PDP_AUDIT mirrors --db, and --db wins', async () => {
  const dir = tempDir();
  const file = databaseWithFindings(dir, 'from-env.db');
  const viaEnv = capture(dir, { PDP_AUDIT: 'from-env.db' });
  assert.equal(await run(['anomalies', '--format', 'json'], viaEnv.io), 1);
  assert.equal(JSON.parse(viaEnv.stdout()).db, file);
  const flagWins = capture(dir, { PDP_AUDIT: 'from-env.db' });
  await assert.rejects(run(['anomalies', '--db', 'other.db'], flagWins.io), /other\.db/);
});

test('bad usage and unreadable databases are usage errors (exit 2) in words', async () => {
  const dir = tempDir();
  const { io } = capture(dir);
  await assert.rejects(run(['anomalies', '--db', 'missing.db'], io), (e: Error) => e instanceof UsageError && /`.*missing\.db`: no such file/.test(e.message));
  assert.equal(fs.existsSync(path.join(dir, 'missing.db')), false, 'anomalies never creates the database');
  fs.writeFileSync(path.join(dir, 'text.db'), 'not a database '.repeat(100));
  await assert.rejects(run(['anomalies', '--db', 'text.db'], io), (e: Error) => e instanceof UsageError && /not an SQLite database/.test(e.message));
  await assert.rejects(run(['anomalies', '--since', 'soon'], io), (e: Error) => e instanceof UsageError && /--since expects a duration/.test(e.message));
  await assert.rejects(run(['anomalies', '--since', '0s'], io), /--since must be longer than zero/);
  await assert.rejects(run(['anomalies', '--spike-threshold=-1'], io), /--spike-threshold expects a whole number; got `-1`/);
  await assert.rejects(run(['anomalies', '--deny-threshold', 'ten'], io), /--deny-threshold expects a whole number; got `ten`/);
  await assert.rejects(run(['anomalies', '--format', 'xml'], io), /--format must be one of/);
  await assert.rejects(run(['anomalies', '--bogus'], io), UsageError);
  await assert.rejects(run(['anomalies', 'extra'], io), UsageError);
  await assert.rejects(run([], io), /needs a command/);
  await assert.rejects(run(['frobnicate'], io), /unknown audit command `frobnicate`/);
  await assert.rejects(run(['prune', '--db', 'missing.db'], io), /no such file/);
  assert.equal(fs.existsSync(path.join(dir, 'missing.db')), false, 'prune never creates the database');
});

test('--help prints the help and exits 0', async () => {
  for (const args of [['--help'], ['anomalies', '--help'], ['prune', '-h']]) {
    const { io, stdout } = capture(tempDir());
    assert.equal(await run(args, io), 0);
    assert.equal(stdout(), HELP);
  }
  assert.match(HELP, /pdp audit anomalies \[--db FILE\] \[--since 1h\]/);
});

test('prune --dry-run counts, prune removes the expired rows only', async () => {
  const dir = tempDir();
  const file = databaseWithFindings(dir);
  const dry = capture(dir);
  assert.equal(await run(['prune', '--dry-run', '--format', 'json'], dry.io), 0);
  const dryReport = JSON.parse(dry.stdout());
  assert.equal(dryReport.expired, 2);
  assert.equal(dryReport.deleted, 0);
  assert.equal(dryReport.dry_run, true);

  const real = capture(dir);
  assert.equal(await run(['prune', '--db', file], real.io), 0);
  assert.match(real.stdout(), /removed 2 expired rows from /);
  const db = new Database(file, { readonly: true });
  assert.equal(db.prepare('SELECT COUNT(*) FROM audit_log').pluck().get(), 12);
  db.close();
});

test('the real binary: pdp audit anomalies --help', { skip: !MAIN_BUILT && 'cli not built' }, () => {
  const result = spawnSync(process.execPath, ['bin/pdp.js', 'audit', 'anomalies', '--help'], { cwd: REPO_ROOT, encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /pdp audit anomalies/);
});

test('the real binary: anomalies exit codes 1 (findings) and 2 (missing database)', { skip: !MAIN_BUILT && 'cli not built' }, () => {
  const dir = tempDir();
  const file = databaseWithFindings(dir);
  const found = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin/pdp.js'), 'audit', 'anomalies', '--db', file, '--format', 'json'], { cwd: dir, encoding: 'utf8' });
  assert.equal(found.status, 1, found.stderr);
  assert.equal(JSON.parse(found.stdout).unknown_services.length, 1);
  const missing = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin/pdp.js'), 'audit', 'anomalies', '--db', 'nope.db'], { cwd: dir, encoding: 'utf8' });
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /nope\.db/);
  assert.doesNotMatch(missing.stderr, /\n\s+at /, 'no stack trace');
});

test('the real binary: unknown services without --since are what the seed\'s query finds (every kept row); with --since, those in the window', { skip: !MAIN_BUILT && 'cli not built' }, () => {
  const dir = tempDir();
  const file = path.join(dir, 'audit.db');
  const store = openAuditStore(file);
  store.refreshAllowedServices([{ name: 'payment-service', namespace: 'prod' }]);
  const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
  store.insertBatch([
    event({ timestamp: ago(60_000) }),
    event({ service_name: 'rogue-service', timestamp: ago(60_000) }),
    // Registered two days ago: outside `--since 1h`, still kept (90 days), still unknown.
    event({ service_name: 'old-rogue', timestamp: ago(2 * 86_400_000) }),
    event({ service_name: 'old-rogue', timestamp: ago(3 * 86_400_000) }),
  ]);
  store.close();

  // The seed's query as written (spec/audit.md), in another SQLite client.
  const plain = new Database(file, { readonly: true });
  const seed = plain.prepare(`SELECT DISTINCT service_name
FROM audit_logs
WHERE event_type = 'REGISTRATION'
  AND service_name NOT IN (SELECT name FROM allowed_services)`).pluck().all() as string[];
  plain.close();
  assert.deepEqual(seed.sort(), ['old-rogue', 'rogue-service']);

  const anomalies = (...args: string[]) => {
    const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin/pdp.js'), 'audit', 'anomalies', '--db', file, '--format', 'json', ...args], { cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    return JSON.parse(r.stdout);
  };
  const all = anomalies();
  assert.deepEqual(all.unknown_services, [
    { service_name: 'old-rogue', registrations: 2 },
    { service_name: 'rogue-service', registrations: 1 },
  ]);
  assert.deepEqual(all.unknown_services.map((u: { service_name: string }) => u.service_name).sort(), seed);
  assert.equal(all.unknown_services_since, null);
  // An explicit window bounds this analysis too: the two-day-old registrations are outside the hour.
  const hour = anomalies('--since', '1h');
  assert.deepEqual(hour.unknown_services, [{ service_name: 'rogue-service', registrations: 1 }]);
  assert.equal(hour.unknown_services_since, hour.since);
  const week = anomalies('--since', '7d');
  assert.deepEqual(week.unknown_services, all.unknown_services);
  const table = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin/pdp.js'), 'audit', 'anomalies', '--db', file], { cwd: dir, encoding: 'utf8' });
  assert.equal(table.status, 1, table.stderr);
  assert.match(table.stdout, /unknown services \(registered in any kept row[^\n]*\n {2}service_name +registrations\n {2}old-rogue +2\n {2}rogue-service +1\n/);
});
