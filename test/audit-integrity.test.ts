// The integrity of the audit log through real parts: the DELETE guard of migration 3 (real SQLite
// files, a plain second connection, `pdp audit prune` as a subprocess), the ACL_CHANGE row `pdp serve`
// writes when it activates its first policy set (the real binary, restarted), and the request
// fields that must never reach an audit column: lone surrogates and server-only event types (a
// real server on an ephemeral port).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import {
  APPEND_ONLY_MESSAGE, InvalidAuditEventError, MIGRATIONS, APPEND_ONLY_GUARD_CALL, SCHEMA_VERSION, SERVER_EVENT_TYPES,
  openAuditStore, toAuditRow, type AuditEvent,
} from '../src/audit';
import { policyVersion } from '../src/engine';
import { RULE_CHANGES_UNKNOWN } from '../src/server';
import {
  allRows, authorize, makePolicyDir, makeTempDir, removeTempDir, request, rowByDecision, runPdp, startServe, startServer,
  waitFor, withDb, writePolicyFile, type AuditLogRow,
} from './support/server';

const DAY_MS = 86_400_000;

function event(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    timestamp: new Date().toISOString(), event_type: 'REGISTRATION', service_name: 'payment-service', namespace: 'prod',
    instance_id: null, identity: 'spiffe://cluster/ns/prod/sa/payment', source_ip: '10.0.1.50', action: 'write',
    resource: 'service:payment-service', result: 'ALLOW', reason: 'granted', rule: 'services.hcl:7', decision_id: null,
    policy_version: 'sha256:abc', details: null, registry_node: 'n1', ...overrides,
  };
}

function tempDb(t: { after(fn: () => void): void }): string {
  const root = makeTempDir('pdp-audit-integrity-');
  t.after(() => removeTempDir(root));
  return path.join(root, 'audit.db');
}

const labels = (db: Database.Database) => (db.prepare('SELECT decision_id FROM audit_log ORDER BY id').pluck().all() as string[]);

describe('the insert guard (migration 4)', () => {
  test('an insert naming an id is refused, whatever the id; rows without one get increasing ids; a version-3 file is upgraded', (t) => {
    const file = tempDb(t);
    const v3 = new Database(file);
    v3.pragma('journal_mode = WAL');
    for (const m of MIGRATIONS.slice(0, 3)) v3.exec(m.sql);
    v3.pragma('user_version = 3');
    v3.prepare("INSERT INTO audit_log (timestamp, event_type, decision_id, registry_node) VALUES ('2025-01-01T00:00:00.000Z', 'ADMIN', 'v3-row', 'old')").run();
    v3.close();

    const store = openAuditStore(file);
    t.after(() => store.close());
    assert.equal(store.db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    const triggers = store.db.prepare("SELECT name FROM sqlite_schema WHERE type = 'trigger' ORDER BY name").pluck().all();
    assert.deepEqual(triggers, ['audit_log_append_only_delete', 'audit_log_append_only_insert_id', 'audit_log_append_only_update']);
    store.insertBatch([event({ decision_id: 'a' }), event({ decision_id: 'b' })]);
    assert.deepEqual(store.db.prepare('SELECT id, decision_id FROM audit_log ORDER BY id').all(), [
      { id: 1, decision_id: 'v3-row' }, { id: 2, decision_id: 'a' }, { id: 3, decision_id: 'b' },
    ]);
    const refused = (sql: string) => assert.throws(() => store.db.prepare(sql).run(), (e: Error) => {
      assert.ok(e.message.startsWith(APPEND_ONLY_MESSAGE), e.message);
      assert.match(e.message, /ids are assigned by the audit store/);
      return true;
    }, sql);
    const cols = "(id, timestamp, event_type, registry_node)";
    // Over an existing row (REPLACE deletes without firing DELETE triggers), below the assigned ids,
    // above them, zero: all refused, the rows unchanged.
    refused(`INSERT OR REPLACE INTO audit_log ${cols} VALUES (2, '2025-01-01T00:00:00.000Z', 'ADMIN', 'x')`);
    refused(`REPLACE INTO audit_log ${cols} VALUES (1, '2025-01-01T00:00:00.000Z', 'ADMIN', 'x')`);
    refused(`INSERT INTO audit_log ${cols} VALUES (1000, '2025-01-01T00:00:00.000Z', 'ADMIN', 'x')`);
    refused(`INSERT INTO audit_log ${cols} VALUES (0, '2025-01-01T00:00:00.000Z', 'ADMIN', 'x')`);
    refused(`INSERT INTO audit_log ${cols} SELECT id, timestamp, event_type, registry_node FROM audit_log`);
    // NULL asks SQLite to assign one, as leaving the column out does.
    store.db.prepare(`INSERT INTO audit_log ${cols} VALUES (NULL, '2025-01-02T00:00:00.000Z', 'ADMIN', 'shell')`).run();
    assert.deepEqual(store.db.prepare('SELECT id, decision_id, registry_node FROM audit_log ORDER BY id').all(), [
      { id: 1, decision_id: 'v3-row', registry_node: 'old' }, { id: 2, decision_id: 'a', registry_node: 'n1' },
      { id: 3, decision_id: 'b', registry_node: 'n1' }, { id: 4, decision_id: null, registry_node: 'shell' },
    ]);
  });
});

// What a client without pdp's function (the sqlite3 shell, Python) is told by a DELETE.
const GUARD_MISSING = `no such function: ${APPEND_ONLY_MESSAGE}; expired rows are removed only by pdp audit prune`;

describe('the DELETE guard speaks in its own words (migrations 5 and 7)', () => {

  test('a version-4 file is upgraded: another client is told `audit_log is append-only; …`, pdp still prunes exactly the expired rows', async (t) => {
    const file = tempDb(t);
    const v4 = new Database(file);
    v4.pragma('journal_mode = WAL');
    for (const m of MIGRATIONS.slice(0, 4)) v4.exec(m.sql);
    v4.pragma('user_version = 4');
    const old = new Date(Date.now() - 100 * DAY_MS).toISOString();
    const insert = v4.prepare('INSERT INTO audit_log (timestamp, event_type, result, decision_id, registry_node) VALUES (?, ?, ?, ?, ?)');
    insert.run(old, 'REGISTRATION', 'ALLOW', 'expired', 'n1');
    insert.run(new Date().toISOString(), 'REGISTRATION', 'ALLOW', 'recent', 'n1');
    // Before: the error names migration 3's function.
    assert.throws(() => v4.exec('DELETE FROM audit_log'), { message: 'no such function: pdp_audit_prune_may_delete' });
    v4.close();

    const store = openAuditStore(file);
    assert.equal(store.db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    const trigger = store.db.prepare("SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND name = 'audit_log_append_only_delete'").pluck().get() as string;
    assert.doesNotMatch(trigger, /pdp_audit_prune_may_delete/);
    assert.throws(() => store.db.prepare('DELETE FROM audit_log').run(), (e: Error) => e.message.startsWith(APPEND_ONLY_MESSAGE));
    store.close();

    const plain = new Database(file);
    t.after(() => plain.close());
    assert.throws(() => plain.exec('DELETE FROM audit_log'), { message: GUARD_MISSING });
    assert.throws(() => plain.prepare('DELETE FROM audit_log WHERE 0').run(), { message: GUARD_MISSING });
    const pruned = await runPdp(['audit', 'prune', '--db', file, '--format', 'json']);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.deepEqual(labels(plain), ['recent']);
  });
});

describe('the DELETE guard (migration 3)', () => {
  test('a version-2 file is upgraded in place: rows and ids kept, AUTOINCREMENT continues, the trigger asks the function', (t) => {
    const file = tempDb(t);
    const v2 = new Database(file);
    v2.pragma('journal_mode = WAL');
    v2.exec(MIGRATIONS[0]!.sql);
    v2.exec(MIGRATIONS[1]!.sql);
    v2.pragma('user_version = 2');
    const insert = v2.prepare("INSERT INTO audit_log (timestamp, event_type, result, decision_id, registry_node) VALUES (?, ?, 'ALLOW', ?, 'old-node')");
    insert.run('2020-01-01T00:00:00.000Z', 'REGISTRATION', 'r1');
    insert.run('2020-01-02T00:00:00.000Z', 'ACL_CHANGE', 'r2');
    insert.run('2020-01-03T00:00:00.000Z', 'DISCOVERY', 'r3');
    // Under migration 1's trigger the newest row could be pruned through audit_control (the hole):
    // id 3 is gone, and AUTOINCREMENT must never hand it out again.
    v2.exec("UPDATE audit_control SET prune_discovery_before = '9999-12-31T00:00:00.000Z'");
    v2.prepare("DELETE FROM audit_log WHERE decision_id = 'r3'").run();
    v2.exec("UPDATE audit_control SET prune_discovery_before = '2020-06-01T00:00:00.000Z'");
    v2.close();

    const store = openAuditStore(file);
    t.after(() => store.close());
    assert.equal(store.db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    assert.equal(SCHEMA_VERSION, 7);
    assert.deepEqual(store.db.prepare('SELECT id, decision_id, event_type FROM audit_log ORDER BY id').all(), [
      { id: 1, decision_id: 'r1', event_type: 'REGISTRATION' },
      { id: 2, decision_id: 'r2', event_type: 'ACL_CHANGE' },
    ]);
    store.insertBatch([event({ decision_id: 'new' })]);
    assert.deepEqual(store.db.prepare("SELECT id FROM audit_log WHERE decision_id = 'new'").pluck().get(), 4, 'id 3 is not reused');
    const trigger = store.db.prepare("SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND name = 'audit_log_append_only_delete'").pluck().get() as string;
    assert.ok(trigger.includes(`${APPEND_ONLY_GUARD_CALL}(OLD.timestamp, OLD.event_type, OLD.result) IS NOT 0`), trigger);
    assert.doesNotMatch(trigger, /audit_control/);
    assert.equal(store.db.prepare("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'trigger'").pluck().get(), 3);
    // audit_control stays (schema compatibility), reset and no longer read.
    assert.deepEqual(store.db.prepare('SELECT prune_discovery_before, prune_standard_before, prune_acl_change_before FROM audit_control').get(), {
      prune_discovery_before: null, prune_standard_before: null, prune_acl_change_before: null,
    });
    // The ACL_CHANGE rows have their own partial index; the start-up lookup uses it.
    const plan = store.db.prepare("EXPLAIN QUERY PLAN SELECT id FROM audit_log WHERE event_type = 'ACL_CHANGE' ORDER BY id DESC LIMIT 1").all() as { detail: string }[];
    assert.match(plan.map((p) => p.detail).join(' | '), /audit_log_acl_change/);
    assert.equal(store.lastPolicyChange()?.id, 2);
    // Even the old 2020 rows can no longer be deleted outside `pdp audit prune`.
    assert.throws(() => store.db.prepare('DELETE FROM audit_log WHERE id = 1').run(), (e: Error) => e.message.startsWith(APPEND_ONLY_MESSAGE));
  });

  test("the reviewer's statements through a plain connection delete nothing; `pdp audit prune` still removes exactly the expired rows", async (t) => {
    const file = tempDb(t);
    const now = Date.now();
    const ago = (days: number) => new Date(now - days * DAY_MS).toISOString();
    const rows: [string, Partial<AuditEvent>][] = [
      ['discovery-31-gone', { event_type: 'DISCOVERY', timestamp: ago(31) }],
      ['discovery-29-kept', { event_type: 'DISCOVERY', timestamp: ago(29) }],
      ['discovery-deny-31-kept', { event_type: 'DISCOVERY', result: 'DENY', timestamp: ago(31) }],
      ['registration-91-gone', { event_type: 'REGISTRATION', timestamp: ago(91) }],
      ['registration-89-kept', { event_type: 'REGISTRATION', timestamp: ago(89) }],
      ['acl-366-gone', { event_type: 'ACL_CHANGE', result: null, timestamp: ago(366) }],
      ['acl-364-kept', { event_type: 'ACL_CHANGE', result: null, timestamp: ago(364) }],
      ['recent-kept', { event_type: 'ADMIN', timestamp: ago(0) }],
    ];
    const store = openAuditStore(file);
    store.insertBatch(rows.map(([label, o]) => event({ ...o, decision_id: label })));
    store.close();

    // Another SQLite client (the `sqlite3` shell, Python, …): no pdp function registered.
    const plain = new Database(file);
    t.after(() => plain.close());
    plain.exec("UPDATE audit_control SET prune_standard_before = '9999-12-31T00:00:00.000Z', prune_discovery_before = '9999-12-31T00:00:00.000Z', prune_acl_change_before = '9999-12-31T00:00:00.000Z'");
    assert.throws(() => plain.exec('DELETE FROM audit_log'), { message: GUARD_MISSING });
    assert.throws(() => plain.prepare("DELETE FROM audit_log WHERE decision_id = 'acl-366-gone'").run(), { message: GUARD_MISSING });
    // The same two statements as one script, as pasted into the shell.
    assert.throws(() => plain.exec(
      "UPDATE audit_control SET prune_standard_before='9999-12-31T00:00:00.000Z', prune_discovery_before='9999-12-31T00:00:00.000Z', prune_acl_change_before='9999-12-31T00:00:00.000Z'; DELETE FROM audit_log;",
    ), /no such function/);
    assert.deepEqual(labels(plain), rows.map(([label]) => label), 'nothing deleted');

    // pdp's own connection, outside a prune: the function answers 0 whatever audit_control says.
    const own = openAuditStore(file);
    assert.throws(() => own.db.prepare('DELETE FROM audit_log').run(), (e: Error) => e.message.startsWith(APPEND_ONLY_MESSAGE));
    assert.throws(() => own.db.prepare("DELETE FROM audit_log WHERE decision_id = 'acl-366-gone'").run(), (e: Error) => e.message.startsWith(APPEND_ONLY_MESSAGE));
    own.close();
    assert.equal(labels(plain).length, rows.length);

    // The sanctioned path, with audit_control still holding the forged cutoffs: only the expired rows go.
    const pruned = await runPdp(['audit', 'prune', '--db', file, '--format', 'json']);
    assert.equal(pruned.code, 0, pruned.stderr);
    const report = JSON.parse(pruned.stdout);
    assert.equal(report.expired, 3);
    assert.equal(report.deleted, 3);
    assert.deepEqual(labels(plain), rows.map(([label]) => label).filter((label) => label.endsWith('kept')));
    // And afterwards the guard is closed again, for the plain connection and for pdp's own.
    assert.throws(() => plain.exec('DELETE FROM audit_log'), /no such function/);
    const again = openAuditStore(file);
    assert.throws(() => again.db.prepare("DELETE FROM audit_log WHERE decision_id = 'acl-364-kept'").run(), (e: Error) => e.message.startsWith(APPEND_ONLY_MESSAGE));
    again.close();
  });

  test('while a prune runs, the guard function lets only expired rows go; before and after, it protects every row', (t) => {
    const file = tempDb(t);
    const store = openAuditStore(file);
    t.after(() => store.close());
    const now = new Date('2025-06-01T00:00:00.000Z');
    const ago = (days: number) => new Date(now.getTime() - days * DAY_MS).toISOString();
    store.insertBatch([
      event({ event_type: 'REGISTRATION', timestamp: ago(91), decision_id: 'gone' }),
      event({ event_type: 'DEREGISTRATION', timestamp: ago(100), decision_id: 'gone-first' }),
      event({ event_type: 'REGISTRATION', timestamp: ago(89), decision_id: 'kept' }),
      event({ event_type: 'DISCOVERY', result: 'DENY', timestamp: ago(31), decision_id: 'kept-deny' }),
      event({ event_type: 'ACL_CHANGE', result: null, timestamp: ago(300), decision_id: 'kept-acl' }),
    ]);
    const ask = store.db.prepare(`SELECT decision_id, 1 - ${APPEND_ONLY_GUARD_CALL}(timestamp, event_type, result) AS may FROM audit_log ORDER BY id`);
    assert.deepEqual(ask.all().map((r) => (r as { may: number }).may), [0, 0, 0, 0, 0], 'no prune running: 0 for every row, even the expired ones');
    // A spy: after each delete of the prune, ask the function about every row still there, from
    // inside the prune's transaction (where the cutoffs are held).
    store.db.exec(`CREATE TABLE spy (decision_id TEXT, may INTEGER);
      CREATE TRIGGER spy_after_delete AFTER DELETE ON audit_log BEGIN
        INSERT INTO spy SELECT decision_id, 1 - ${APPEND_ONLY_GUARD_CALL}(timestamp, event_type, result) FROM audit_log;
      END;`);
    assert.equal(store.prune({ now }).deleted, 2);
    assert.deepEqual(labels(store.db), ['kept', 'kept-deny', 'kept-acl']);
    // `gone-first` (oldest) goes first; the spy then sees `gone`, still expired, allowed.
    assert.deepEqual(store.db.prepare('SELECT DISTINCT decision_id, may FROM spy ORDER BY decision_id').all(), [
      { decision_id: 'gone', may: 1 }, { decision_id: 'kept', may: 0 }, { decision_id: 'kept-acl', may: 0 }, { decision_id: 'kept-deny', may: 0 },
    ], 'inside the prune, only expired rows may go; rows within their retention are still refused');
    assert.deepEqual(ask.all().map((r) => (r as { may: number }).may), [0, 0, 0], 'the cutoffs are gone once the prune returned');
  });
});

const WEB_READ = 'service "web" {\n  policy   = "read"\n  identity = "team:web"\n}\n';
const WEB_WRITE = 'service "web" {\n  policy   = "write"\n  identity = "team:web"\n}\n';
const API_READ = 'namespace "prod" {\n  service "api" {\n    policy   = "read"\n    identity = "team:web"\n  }\n}\n';
const versionOf = (files: Record<string, string>) => policyVersion(Object.keys(files).sort().map((p) => ({ path: p, text: files[p]! })));
const sha = (text: string) => createHash('sha256').update(text).digest('hex');

const startupRows = (file: string): AuditLogRow[] => allRows(file).filter((r) => r.event_type === 'ACL_CHANGE' && r.action === 'startup');
const aclRows = (file: string): AuditLogRow[] => allRows(file).filter((r) => r.event_type === 'ACL_CHANGE');

describe('`pdp serve` audits the policy version it starts with', () => {
  test('fresh log, restart with changed files, restart unchanged, restart after a reload: each start is an ACL_CHANGE row from the last recorded version', async (t) => {
    const root = makeTempDir('pdp-startup-');
    t.after(() => removeTempDir(root));
    const files1 = { 'svc.hcl': WEB_READ, 'old.hcl': '# to be removed\n' };
    const policyDir = makePolicyDir(root, files1);
    const auditPath = path.join(root, 'audit.db');
    const args = ['--policies', policyDir, '--audit', auditPath, '--no-watch', '--node-name', 'boot-node'];
    const v1 = versionOf(files1);
    const webWrite = { identity: 'team:web', action: 'write', resource: 'service:web' };

    // 1. A fresh database: the first row of the log is the start-up ACL_CHANGE, before any decision.
    let serve = await startServe(args);
    const first = await authorize(serve.url, webWrite);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.json.policy_version, v1);
    await serve.stop();
    let rows = allRows(auditPath);
    assert.equal(rows[0]!.event_type, 'ACL_CHANGE', 'the start-up row precedes every decision');
    let boot = startupRows(auditPath);
    assert.equal(boot.length, 1);
    assert.equal(boot[0]!.identity, 'startup');
    assert.equal(boot[0]!.policy_version, v1);
    assert.equal(boot[0]!.registry_node, 'boot-node');
    assert.match(boot[0]!.reason!, /first policy set recorded/);
    let details = JSON.parse(boot[0]!.details!);
    assert.equal(details.old_version, null);
    assert.equal(details.new_version, v1);
    assert.equal(details.trigger, 'startup');
    assert.deepEqual(details.files, [
      { path: 'old.hcl', sha256: sha(files1['old.hcl']), rules: 0 },
      { path: 'svc.hcl', sha256: sha(WEB_READ), rules: 1 },
    ]);
    assert.deepEqual(details.files_added, ['old.hcl', 'svc.hcl']);
    // The decision's policy_version joins to an ACL_CHANGE row.
    const joined = (db: string, decisionId: string) => {
      const decision = rowByDecision(db, decisionId)!;
      return aclRows(db).filter((r) => r.policy_version === decision.policy_version).length;
    };
    assert.equal(joined(auditPath, first.json.decision_id), 1);

    // 2. Restart after the files changed while it was down: one changed, one added, one removed.
    writePolicyFile(policyDir, 'svc.hcl', WEB_WRITE);
    writePolicyFile(policyDir, 'api.hcl', API_READ);
    fs.rmSync(path.join(policyDir, 'old.hcl'));
    const files2 = { 'svc.hcl': WEB_WRITE, 'api.hcl': API_READ };
    const v2 = versionOf(files2);
    serve = await startServe(args);
    const second = await authorize(serve.url, webWrite);
    assert.equal(second.json.policy_version, v2);
    assert.equal(second.json.result, 'ALLOW');
    assert.equal(joined(auditPath, second.json.decision_id), 1);
    boot = startupRows(auditPath);
    assert.equal(boot.length, 2);
    details = JSON.parse(boot[1]!.details!);
    assert.equal(details.old_version, v1);
    assert.equal(details.new_version, v2);
    assert.equal(boot[1]!.policy_version, v2);
    assert.deepEqual(details.files_added, ['api.hcl']);
    assert.deepEqual(details.files_removed, ['old.hcl']);
    assert.deepEqual(details.files_changed, ['svc.hcl']);
    assert.equal(details.rule_changes, RULE_CHANGES_UNKNOWN);
    assert.match(boot[1]!.reason!, /1 file added, 1 removed, 1 changed; rule-level changes unknown across a restart/);

    // 3. A reload while running is the newest ACL_CHANGE; it lists files too.
    writePolicyFile(policyDir, 'svc.hcl', WEB_READ);
    const v3 = versionOf({ 'svc.hcl': WEB_READ, 'api.hcl': API_READ });
    serve.child.kill('SIGHUP');
    assert.ok(await waitFor(async () => (await authorize(serve.url, webWrite)).json.policy_version === v3, 5000), serve.stderr());
    await serve.stop();
    const reload = aclRows(auditPath).at(-1)!;
    assert.equal(reload.action, 'reload');
    assert.deepEqual(JSON.parse(reload.details!).files_changed, ['svc.hcl']);
    assert.equal(JSON.parse(reload.details!).files.length, 2);

    // 4. Restart with nothing changed since that reload: a row saying so, diffed against the reload's row.
    serve = await startServe(args);
    assert.equal((await authorize(serve.url, webWrite)).json.policy_version, v3);
    await serve.stop();
    boot = startupRows(auditPath);
    assert.equal(boot.length, 3);
    details = JSON.parse(boot[2]!.details!);
    assert.equal(details.old_version, v3);
    assert.equal(details.new_version, v3);
    assert.deepEqual([details.files_added, details.files_removed, details.files_changed], [[], [], []]);
    assert.match(boot[2]!.reason!, /unchanged since the last recorded version/);

    // Every version that answered a decision has an ACL_CHANGE row.
    const versions = new Set(aclRows(auditPath).map((r) => r.policy_version));
    for (const r of allRows(auditPath)) if (r.decision_id !== null) assert.ok(versions.has(r.policy_version), `${r.policy_version} has an ACL_CHANGE row`);
  });

  test('the previous row predates file lists: the start-up row says which files changed is unknown', async (t) => {
    const root = makeTempDir('pdp-startup-');
    t.after(() => removeTempDir(root));
    const policyDir = makePolicyDir(root, { 'svc.hcl': WEB_READ });
    const auditPath = path.join(root, 'audit.db');
    const store = openAuditStore(auditPath);
    // As an older pdp wrote it: versions and rule changes, no `files`.
    store.insertBatch([event({ event_type: 'ACL_CHANGE', action: 'reload', result: null, policy_version: 'sha256:older', details: { old_version: null, new_version: 'sha256:older', added: [], removed: [] } })]);
    store.close();
    const serve = await startServe(['--policies', policyDir, '--audit', auditPath, '--no-watch']);
    await serve.stop();
    const [row] = startupRows(auditPath);
    const details = JSON.parse(row!.details!);
    assert.equal(details.old_version, 'sha256:older');
    assert.equal(details.files_changed, null);
    assert.match(details.file_changes, /unknown/);
    assert.match(row!.reason!, /unknown/);
    assert.equal(details.files.length, 1);
  });

  test('a start-up row that cannot be written: exit 1 with a clear message, never listening, no decision', async (t) => {
    const root = makeTempDir('pdp-startup-');
    t.after(() => removeTempDir(root));
    const policyDir = makePolicyDir(root, { 'svc.hcl': WEB_READ });
    const auditPath = path.join(root, 'audit.db');
    const store = openAuditStore(auditPath);
    // The store opens and migrates fine, but refuses exactly the ACL_CHANGE insert (as a full disk
    // or a failing write would refuse it).
    store.db.exec("CREATE TRIGGER refuse_acl BEFORE INSERT ON audit_log WHEN NEW.event_type = 'ACL_CHANGE' BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END");
    store.close();
    const r = await runPdp(['serve', '--policies', policyDir, '--audit', auditPath, '--listen', '127.0.0.1:0', '--no-watch']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /start-up policy version could not be written to the audit store/);
    assert.match(r.stderr, /simulated write failure/);
    assert.match(r.stderr, /not serving unaudited/);
    assert.equal(r.stdout.includes('listening'), false);
    assert.equal(allRows(auditPath).length, 0);
  });

  test('the in-process test server is wired the same way: its first row is the start-up ACL_CHANGE', async (t) => {
    const server = await startServer({ files: { 'svc.hcl': WEB_READ } });
    t.after(() => server.close());
    const rows = allRows(server.auditPath);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.action, 'startup');
    assert.equal(rows[0]!.policy_version, versionOf({ 'svc.hcl': WEB_READ }));
  });
});

/** Every text column of every row decodes as strict UTF-8 (what Python's sqlite3 and others need). */
function assertAllUtf8(file: string): void {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const db = new Database(file, { readonly: true });
  try {
    const columns = ['timestamp', 'event_type', 'service_name', 'namespace', 'instance_id', 'identity', 'source_ip', 'action', 'resource', 'result', 'reason', 'rule', 'decision_id', 'policy_version', 'details', 'registry_node'];
    const rows = db.prepare(`SELECT id, ${columns.map((c) => `CAST(${c} AS BLOB) AS ${c}`).join(', ')} FROM audit_log`).all() as Record<string, Buffer | null | number>[];
    for (const row of rows) {
      for (const c of columns) {
        const value = row[c];
        if (value instanceof Buffer) assert.doesNotThrow(() => decoder.decode(value), `row ${row.id} column ${c} is not UTF-8: ${value.toString('hex')}`);
      }
    }
  } finally {
    db.close();
  }
}

describe('request strings that must not reach the audit log', () => {
  test('lone surrogates are refused with 400 naming the field; pairs (emoji) are stored as UTF-8', async (t) => {
    const server = await startServer();
    t.after(() => server.close());
    const base = { identity: 'spiffe://cluster/ns/prod/sa/order', action: 'read', resource: 'service:payment-service', namespace: 'prod' };
    const before = allRows(server.auditPath).length;
    const cases: [unknown, string][] = [
      [{ ...base, identity: '\ud800evil' }, 'identity'],
      [{ ...base, identity: 'evil\udfff' }, 'identity'],
      [{ ...base, resource: 'service:x\ud800' }, 'resource'],
      [{ ...base, context: { note: 'a\udc00b' } }, 'context.note'],
      [{ ...base, context: { ['k\ud800']: 'v' } }, 'context'],
      [{ ...base, context: { source_ip: '10.0.0.1\ud800' } }, 'context.source_ip'],
    ];
    for (const [body, field] of cases) {
      // JSON.stringify writes a lone surrogate as the escape `\ud800`: valid JSON, ill-formed text.
      const res = await request(`${server.url}/v1/authorize`, { raw: JSON.stringify(body), contentType: 'application/json' });
      assert.equal(res.status, 400, `${field}: ${res.text}`);
      assert.equal(res.json.error.code, 'invalid_request');
      assert.equal(res.json.error.field, field);
      assert.match(res.json.error.message, /not well-formed Unicode/);
    }
    // The schema's name pattern already refuses a namespace with one (same status, same field).
    const ns = await authorize(server.url, { ...base, namespace: 'prod\ud800' });
    assert.equal(ns.status, 400);
    assert.equal(ns.json.error.field, 'namespace');
    // In a batch, the whole batch is refused and the field names the check.
    const batch = await request(`${server.url}/v1/authorize/batch`, { body: { checks: [base, { ...base, identity: '\ud800evil' }] } });
    assert.equal(batch.status, 400, batch.text);
    assert.equal(batch.json.error.field, 'checks[1].identity');
    assert.equal(allRows(server.auditPath).length, before, 'no refused request left a row');

    const emoji = await authorize(server.url, { ...base, identity: 'spiffe://cluster/ns/prod/sa/😀', context: { note: 'ok 😀' } });
    assert.equal(emoji.status, 200, emoji.text);
    const hex = withDb(server.auditPath, (db) => db.prepare('SELECT hex(identity) FROM audit_log WHERE decision_id = ?').pluck().get(emoji.json.decision_id));
    assert.equal(hex, Buffer.from('spiffe://cluster/ns/prod/sa/😀', 'utf8').toString('hex').toUpperCase());
    assertAllUtf8(server.auditPath);
  });

  test('the audit event itself refuses ill-formed text; details (JSON) escapes it', () => {
    assert.throws(() => toAuditRow(event({ identity: '\ud800evil' })), (e: Error) => e instanceof InvalidAuditEventError && /`identity` is not well-formed Unicode/.test(e.message));
    assert.throws(() => toAuditRow(event({ reason: 'x\udfff' })), /`reason`/);
    assert.throws(() => toAuditRow(event({ event_type: 'X\ud800' })), InvalidAuditEventError);
    const row = toAuditRow(event({ details: { note: 'a\ud800b', ['k\udc00']: 1 } }));
    assert.equal(row.details, '{"note":"a\\ud800b","k\\udc00":1}');
    assert.ok(row.details!.isWellFormed());
  });

  test('server-only event types are refused in context.event_type; others still go to the row', async (t) => {
    const server = await startServer();
    t.after(() => server.close());
    const base = { identity: 'spiffe://cluster/ns/prod/sa/order', action: 'read', resource: 'service:payment-service', namespace: 'prod' };
    const before = allRows(server.auditPath).length;
    assert.deepEqual([...SERVER_EVENT_TYPES], ['ACL_CHANGE', 'AUTHN_FAILURE', 'API_DENIED']);
    for (const reserved of SERVER_EVENT_TYPES) {
      const res = await authorize(server.url, { ...base, context: { event_type: reserved } });
      assert.equal(res.status, 400, `${reserved}: ${res.text}`);
      assert.equal(res.json.error.code, 'invalid_request');
      assert.equal(res.json.error.field, 'context.event_type');
      assert.match(res.json.error.message, /only the server writes those/);
      assert.match(res.json.error.message, /`REGISTRATION`/);
    }
    const batch = await request(`${server.url}/v1/authorize/batch`, { body: { checks: [base, base, { ...base, context: { event_type: 'ACL_CHANGE' } }] } });
    assert.equal(batch.status, 400, batch.text);
    assert.equal(batch.json.error.field, 'checks[2].context.event_type');
    for (const bad of ['acl_change', 'ACL-CHANGE', '_X', 'A'.repeat(65), '']) {
      const res = await authorize(server.url, { ...base, context: { event_type: bad } });
      assert.equal(res.status, 400, `${bad}: ${res.text}`);
      assert.equal(res.json.error.field, 'context.event_type');
    }
    assert.equal(allRows(server.auditPath).length, before, 'no refused request left a row');
    assert.equal(aclRows(server.auditPath).length, 1, 'only the start-up row is an ACL_CHANGE');

    const ok = await authorize(server.url, { ...base, context: { event_type: 'HEARTBEAT_CHECK' } });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(rowByDecision(server.auditPath, ok.json.decision_id)!.event_type, 'HEARTBEAT_CHECK');
  });
});
