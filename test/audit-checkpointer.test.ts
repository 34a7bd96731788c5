// The audit checkpointer thread (src/audit/checkpointer.ts) against real SQLite files. The writer's own
// checkpoints are turned off here (walAutocheckpointPages: 0), so whatever reaches the database file was
// copied there by the thread; a control file without the thread shows that nothing else would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import Database from 'better-sqlite3';
import { createRecorder, openAuditStore, startCheckpointer, type CheckpointPass } from '../src/audit';
import { countRows, event, readDatabaseFileAlone, tempDb } from './support/audit';
import { waitFor } from './support/server';

/** Rows in the database file on its own, as a copy without the WAL would see them. */
const rowsInDatabaseFileAlone = (file: string) => readDatabaseFileAlone(file, (db) => (db ? countRows(db) : 0));

/** Frames in the WAL now, probed from a connection of the test's own (its passive checkpoint copies nothing new to report). */
function walFrames(file: string): number {
  const db = new Database(file, { fileMustExist: true });
  try {
    return (db.pragma('wal_checkpoint(PASSIVE)') as { log: number }[])[0]!.log;
  } finally {
    db.close();
  }
}

/** Records `count` rows, a few per event-loop turn (a group commit each), through a new recorder. */
async function recordRows(file: string, count: number, prefix: string, onLockWait?: (seconds: number) => void) {
  const store = openAuditStore(file, { walAutocheckpointPages: 0 });
  const recorder = createRecorder(store);
  if (onLockWait) recorder.onLockWait?.(onLockWait);
  for (let i = 0; i < count; i += 5) {
    await Promise.all(Array.from({ length: Math.min(5, count - i) }, (_, k) => recorder.record(event({ decision_id: `${prefix}-${i + k}` }))));
  }
  return { store, recorder };
}

test('checkpointer: the committed rows reach the database file, and the next commit starts the WAL over', async (t) => {
  const withThread = tempDb();
  const control = tempDb();
  openAuditStore(withThread).close(); // the thread opens only a file that exists
  // The rows are committed before the thread starts: with its passes running during the commits, a
  // pass that found the WAL copied in full lets the next commit start it over, so how much the WAL
  // holds at the last pass (and whether a pass that "copied the whole WAL" saw every row) would depend
  // on how the commits and the passes interleave, which a loaded machine changes.
  const a = await recordRows(withThread, 500, 'a');
  const b = await recordRows(control, 500, 'b');
  const checkpointer = startCheckpointer(withThread, { intervalMs: 10 });
  t.after(() => checkpointer.close());
  await checkpointer.ready;
  const passes: CheckpointPass[] = [];
  checkpointer.onPass((pass) => passes.push(pass));

  assert.ok(await waitFor(() => passes.some((p) => p.walFrames > 0 && p.checkpointedFrames === p.walFrames), 5000), `a pass copied the whole WAL: ${JSON.stringify(passes.slice(-3))}`);
  await checkpointer.close();
  const framesBefore = passes.at(-1)!.walFrames;
  for (const pass of passes) assert.ok(pass.seconds >= 0 && pass.seconds < 5, `pass took ${pass.seconds} s`);

  assert.equal(rowsInDatabaseFileAlone(withThread), 500, 'every row is in the database file');
  assert.equal(rowsInDatabaseFileAlone(control), 0, 'without the thread (and with the writer\'s checkpoints off) they are only in the WAL');
  assert.ok(walFrames(control) >= framesBefore, 'the control\'s WAL holds every frame written');

  // The WAL was copied in full, so the writer's next commit writes it from its beginning again.
  await a.recorder.record(event({ decision_id: 'a-next' }));
  const framesAfter = walFrames(withThread);
  assert.ok(framesAfter < framesBefore / 4, `WAL frames after the next commit: ${framesAfter} (before: ${framesBefore})`);

  for (const { recorder, store } of [a, b]) {
    await recorder.close();
    store.close();
  }
  const db = new Database(withThread, { readonly: true });
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  assert.equal(db.prepare('SELECT COUNT(*) FROM audit_log').pluck().get(), 501);
  db.close();
});

test('checkpointer: a reader\'s snapshot holds the copy back, never the writers; it catches up when the reader ends', async (t) => {
  const file = tempDb();
  openAuditStore(file).close();
  const checkpointer = startCheckpointer(file, { intervalMs: 5 });
  t.after(() => checkpointer.close());
  await checkpointer.ready;
  const passes: CheckpointPass[] = [];
  checkpointer.onPass((pass) => passes.push(pass));

  const reader = new Database(file, { readonly: true });
  reader.prepare('BEGIN').run();
  const seen = reader.prepare('SELECT COUNT(*) FROM audit_log').pluck().get();
  assert.equal(seen, 0);
  const lockWaits: number[] = [];
  const { recorder, store } = await recordRows(file, 300, 'r', (seconds) => lockWaits.push(seconds));
  assert.ok(await waitFor(() => passes.some((p) => p.walFrames > 0 && p.checkpointedFrames < p.walFrames), 5000), 'a pass stopped at the reader\'s snapshot');
  assert.equal(reader.prepare('SELECT COUNT(*) FROM audit_log').pluck().get(), 0, 'the reader still sees its snapshot');
  reader.prepare('COMMIT').run();
  reader.close();

  await recorder.record(event({ decision_id: 'r-last' })); // a new commit, for the next pass to find
  // The last pass reported so far may be one from before that commit (it copied the 300 rows once the
  // reader ended), so also wait for the new row itself to be in the database file. (The file is read
  // while the thread may be writing it: a torn copy is simply not there yet.)
  const rowsCopied = () => {
    try {
      return rowsInDatabaseFileAlone(file);
    } catch {
      return -1;
    }
  };
  assert.ok(await waitFor(() => { const last = passes.at(-1)!; return last.walFrames > 0 && last.checkpointedFrames === last.walFrames && rowsCopied() === 301; }, 5000), `caught up: ${JSON.stringify(passes.at(-1))}, ${rowsCopied()} rows in the file`);
  assert.deepEqual(lockWaits, [], 'no commit waited for a lock');
  await checkpointer.close();
  assert.equal(rowsInDatabaseFileAlone(file), 301);
  await recorder.close();
  store.close();
});

test('checkpointer: close stops the passes; a file it cannot open is a fatal error, reported and rejected', async () => {
  const file = tempDb();
  openAuditStore(file).close();
  const checkpointer = startCheckpointer(file, { intervalMs: 5 });
  await checkpointer.ready;
  let passes = 0;
  checkpointer.onPass(() => passes++);
  const first = await recordRows(file, 10, 'c');
  assert.ok(await waitFor(() => passes > 0, 5000), 'a pass found the commits');
  await checkpointer.close();
  const afterClose = passes;
  await first.recorder.record(event({ decision_id: 'c-after' }));
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(passes, afterClose, 'no pass after close');
  await checkpointer.close(); // a second close is harmless
  await first.recorder.close();
  first.store.close();

  const errors: { message: string; fatal: boolean }[] = [];
  const missing = `${tempDb()}.missing`;
  const failed = startCheckpointer(missing, { onError: (e, fatal) => errors.push({ message: e.message, fatal }) });
  await assert.rejects(failed.ready, /audit checkpointer: unable to open database file/);
  assert.deepEqual(errors, [{ message: 'audit checkpointer: unable to open database file', fatal: true }]);
  await failed.close();
  assert.ok(!fs.existsSync(missing), 'it created no file');
});
