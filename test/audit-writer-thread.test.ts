// The audit writer thread (`pdp serve --audit-writer thread`) against real SQLite files: the same
// guarantees as the inline recorder (a row is committed before its promise resolves, nothing is
// lost on SIGKILL, fail closed and recover, drain on close), plus the ordering of pipelined groups.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { AuditUnavailableError, createSinkRecorder, openAuditStore, startWriterThread, terminateWriterThreadForTesting, type RowSink } from '../src/audit';
import { assertCommittedBeforeResolved, countRows, event, recordUntilKilled, tempDb } from './support/audit';

const waitUntil = async (condition: () => boolean, what: string, ms = 5000) => {
  const deadline = Date.now() + ms;
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(condition(), `timed out waiting until ${what}`);
};

const threadRecorder = async (file: string, options: Parameters<typeof createSinkRecorder>[1] = {}, busyTimeoutMs?: number) =>
  createSinkRecorder(await startWriterThread(file, busyTimeoutMs === undefined ? {} : { busyTimeoutMs }), options);

test('writer thread: a record resolves only once its row is visible from another connection', async () => {
  const file = tempDb();
  await assertCommittedBeforeResolved(file, await threadRecorder(file));
});

test('writer thread: every column of a row arrives in its own column, as the inline store writes it, across statement sizes', async () => {
  // The thread receives rows packed into one flat array; a value shifted by one column would still
  // be a string, so compare whole rows with the inline store's, for group sizes that use several
  // multi-row statements (64 + 16 + 4 + 1 + …).
  const events = Array.from({ length: 87 }, (_, i) => event({
    decision_id: `d-${i}`,
    identity: i % 2 ? `user:u${i}` : null,
    instance_id: i % 3 ? `payment-${i}` : null,
    result: i % 5 ? 'ALLOW' : 'DENY',
    details: i % 4 ? { host: `10.0.0.${i}`, port: i } : null,
  }));
  const inlineFile = tempDb();
  const inline = openAuditStore(inlineFile);
  inline.insertBatch(events);
  inline.close();
  const threadFile = tempDb();
  const recorder = await threadRecorder(threadFile);
  await recorder.recordAll(events);
  await recorder.close();
  const rows = (file: string) => {
    const db = new Database(file, { readonly: true });
    const all = db.prepare('SELECT * FROM audit_log ORDER BY id').all();
    db.close();
    return all;
  };
  const fromThread = rows(threadFile);
  assert.equal(fromThread.length, 87);
  assert.deepEqual(fromThread, rows(inlineFile));
  assert.deepEqual(fromThread[1], {
    id: 2, timestamp: '2025-01-20T10:30:00.000Z', event_type: 'REGISTRATION', service_name: 'payment-service', namespace: 'prod',
    instance_id: 'payment-1', identity: 'user:u1', source_ip: '10.0.1.50', action: 'write', resource: 'service:payment-service',
    result: 'ALLOW', reason: 'granted by rule', rule: 'services.hcl:7', decision_id: 'd-1', policy_version: 'sha256:abc',
    details: '{"host":"10.0.0.1","port":1}', registry_node: 'registry-1',
  });
});

test('writer thread: groups handed over while earlier ones are still committing keep their order', async () => {
  const file = tempDb();
  const flushed: number[] = [];
  const recorder = await threadRecorder(file, { onFlush: (rows) => flushed.push(rows) });
  const pending: Promise<void>[] = [];
  // 40 turns of 25 records each, without waiting for any of them: many groups in flight at once.
  for (let turn = 0; turn < 40; turn++) {
    for (let k = 0; k < 25; k++) pending.push(recorder.record(event({ decision_id: `d-${turn * 25 + k}` })));
    await new Promise((resolve) => setImmediate(resolve));
  }
  await Promise.all(pending);
  assert.equal(recorder.queueDepth(), 0);
  assert.equal(flushed.reduce((a, b) => a + b, 0), 1000, 'every row reported committed once');
  assert.ok(flushed.length >= 2, `the rows went over in several groups (${flushed.length})`);
  const db = new Database(file, { readonly: true });
  const ids = db.prepare('SELECT decision_id FROM audit_log ORDER BY id').pluck().all();
  db.close();
  assert.deepEqual(ids, Array.from({ length: 1000 }, (_, i) => `d-${i}`), 'ids follow the order of record()');
  await recorder.close();
});

test('writer thread: fail closed while the file is locked, then recover without a new record', async () => {
  const file = tempDb();
  openAuditStore(file).close();
  const errors: Error[] = [];
  const recorder = await threadRecorder(file, { probeIntervalMs: 20, onError: (e) => errors.push(e) }, 50);
  await recorder.record(event({ decision_id: 'before' }));
  const locker = new Database(file);
  locker.exec('BEGIN EXCLUSIVE');
  await assert.rejects(recorder.record(event({ decision_id: 'locked-1' })), AuditUnavailableError);
  assert.equal(recorder.writable(), false);
  assert.ok(errors.length >= 1 && /locked|busy/i.test(errors[0]!.message), errors[0]?.message);
  await assert.rejects(recorder.recordAll([event({ decision_id: 'locked-2' }), event({ decision_id: 'locked-3' })]), AuditUnavailableError);
  locker.exec('ROLLBACK');
  const deadline = Date.now() + 3000;
  while (!recorder.writable() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(recorder.writable(), true, 'the background probe restores writable()');
  await recorder.record(event({ decision_id: 'after' }));
  assert.deepEqual(locker.prepare('SELECT decision_id FROM audit_log ORDER BY id').pluck().all(), ['before', 'after']);
  locker.close();
  await recorder.close();
});

test('writer thread: a commit that does not finish (a stalled disk) makes the store unwritable and refuses new rows at once, until it finishes', async (t) => {
  const file = tempDb();
  openAuditStore(file).close();
  // The thread's connection waits up to 10 s for a lock another connection holds: its write is in
  // flight and does not settle, as a write(2) on a frozen disk would not.
  // Checked by waiting for the events themselves (the write in flight, readiness going false), not
  // by fixed sleeps: on a loaded machine a 50 ms sleep can last longer than the stall threshold.
  const stallMs = 1000;
  const recorder = await threadRecorder(file, { stallMs }, 10_000);
  await recorder.record(event({ decision_id: 'before' }));
  const locker = new Database(file);
  t.after(async () => {
    if (locker.inTransaction) locker.exec('ROLLBACK');
    if (locker.open) locker.close();
    await recorder.close();
  });
  locker.exec('BEGIN EXCLUSIVE');
  const recordedAt = performance.now();
  const stuck = recorder.record(event({ decision_id: 'stuck' }));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(recorder.queueDepth(), 1, 'the row is handed to the thread');
  if (performance.now() - recordedAt < stallMs) assert.equal(recorder.writable(), true, 'a commit in progress is not yet a stall');
  await waitUntil(() => !recorder.writable(), 'readiness goes false while the commit hangs');
  assert.ok(performance.now() - recordedAt >= stallMs, `not a stall before ${stallMs} ms (${Math.round(performance.now() - recordedAt)} ms)`);
  // Refused at once, not queued behind the stalled commit: rejected before the next turn of the event loop.
  let refusal: unknown;
  const refused = recorder.record(event({ decision_id: 'refused' })).then(() => undefined, (e: unknown) => { refusal = e; });
  await new Promise((resolve) => setImmediate(resolve));
  assert.ok(refusal instanceof AuditUnavailableError && /a commit has not finished for \d+\.\d s/.test(refusal.message), `refused at once: ${String(refusal)}`);
  await refused;
  locker.exec('ROLLBACK');
  await stuck;
  assert.equal(recorder.writable(), true);
  await recorder.record(event({ decision_id: 'after' }));
  assert.deepEqual(locker.prepare('SELECT decision_id FROM audit_log ORDER BY id').pluck().all(), ['before', 'stuck', 'after']);
});

test('writer thread: close() drains what is queued and in flight, then refuses', async () => {
  const file = tempDb();
  const recorder = await threadRecorder(file);
  const pending = [recorder.record(event()), recorder.recordAll([event(), event()])];
  await new Promise((resolve) => setImmediate(resolve));
  pending.push(recorder.record(event()));
  await recorder.close();
  await Promise.all(pending);
  await assert.rejects(recorder.record(event()), AuditUnavailableError);
  const reader = new Database(file, { readonly: true });
  assert.equal(countRows(reader), 4);
  reader.close();
});

test('writer thread: a thread that dies fails writes closed until the probe has started a replacement', async () => {
  const file = tempDb();
  const errors: Error[] = [];
  const restarts: Error[] = [];
  const sink: RowSink = await startWriterThread(file, { onRestart: (previous) => restarts.push(previous) });
  const recorder = createSinkRecorder(sink, { probeIntervalMs: 20, onError: (e) => errors.push(e) });
  await recorder.record(event({ decision_id: 'before' }));
  await terminateWriterThreadForTesting(sink);
  await assert.rejects(recorder.record(event({ decision_id: 'while-down' })), (e: Error) => e instanceof AuditUnavailableError && /writer thread exited/.test(e.message));
  assert.equal(recorder.writable(), false, 'not ready while no thread writes');
  await waitUntil(() => recorder.writable(), 'the probe brought a new thread up');
  assert.equal(restarts.length, 1, 'one replacement');
  assert.match(restarts[0]!.message, /writer thread exited/);
  assert.ok(errors.some((e) => /writer thread exited/.test(e.message)), 'the failure was reported');
  await recorder.record(event({ decision_id: 'after' }));
  await recorder.close();
  const db = new Database(file, { readonly: true });
  assert.deepEqual(db.prepare('SELECT decision_id FROM audit_log ORDER BY id').pluck().all(), ['before', 'after']);
  db.close();
});

test('writer thread: killed with writes in flight, it loses no acknowledged row and its replacement can write', async () => {
  const file = tempDb();
  const sink = await startWriterThread(file);
  const recorder = createSinkRecorder(sink, { probeIntervalMs: 20 });
  const acknowledged: string[] = [];
  const refused: string[] = [];
  const pending: Promise<void>[] = [];
  // Groups keep being handed over while the thread is terminated: some were committed, some were in
  // its transaction or its queue when it stopped, some arrive after.
  for (let turn = 0; turn < 30; turn++) {
    for (let k = 0; k < 20; k++) {
      const id = `t${turn}-${k}`;
      pending.push(recorder.record(event({ decision_id: id })).then(() => { acknowledged.push(id); }, () => { refused.push(id); }));
    }
    if (turn === 10) void terminateWriterThreadForTesting(sink);
    await new Promise((resolve) => setImmediate(resolve));
  }
  await Promise.all(pending);
  assert.equal(acknowledged.length + refused.length, 600, 'every record settled');
  assert.ok(refused.length > 0, 'the records after the crash were refused');
  await waitUntil(() => recorder.writable(), 'the replacement thread took over (the dead connection left no lock behind)');
  await recorder.record(event({ decision_id: 'after' }));
  await recorder.close();
  const db = new Database(file);
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  const stored = new Set(db.prepare('SELECT decision_id FROM audit_log').pluck().all() as string[]);
  db.close();
  assert.deepEqual(acknowledged.filter((id) => !stored.has(id)), [], 'every acknowledged row is stored');
  assert.ok(stored.has('after'));
});

test('writer thread: a file it cannot open fails the start in words', async () => {
  const dir = path.dirname(tempDb());
  const notADatabase = path.join(dir, 'text.db');
  fs.writeFileSync(notADatabase, 'this is not sqlite, and it is longer than a header would be ............................................');
  await assert.rejects(startWriterThread(notADatabase), /is not an SQLite database/);
  await assert.rejects(startWriterThread(path.join(dir, 'missing', 'audit.db')), /cannot open audit database/);
});

test('writer thread: SIGKILL loses no acknowledged row', async () => {
  const file = tempDb();
  const acknowledged = await recordUntilKilled(file, 'thread');
  assert.ok(acknowledged.length >= 2000, `the child acknowledged ${acknowledged.length} rows`);
  const db = new Database(file);
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  const stored = new Set(db.prepare('SELECT decision_id FROM audit_log').pluck().all() as string[]);
  db.close();
  assert.deepEqual(acknowledged.filter((id) => !stored.has(id)), [], 'every acknowledged row survived SIGKILL');
});
