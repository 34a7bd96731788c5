// The audit checkpointer thread's entry point (see checkpointer.ts). It owns one plain connection to
// the audit file (no migrations, no statements of its own: it only checkpoints) and reports each pass
// that found new commits in the WAL.
import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import type { CheckpointerReply, CheckpointerRequest } from './checkpointer';

const port = parentPort;
if (port === null) throw new Error('checkpointer-thread.js runs only as a worker thread');
const { path, intervalMs } = workerData as { path: string; intervalMs: number };

type CheckpointResult = { log: number; checkpointed: number };

let db: Database.Database;
try {
  // Busy timeout 0: this thread never waits for a lock. A pass that finds the checkpoint lock held
  // (a commit's own checkpoint) copies nothing, and the next one catches up.
  db = new Database(path, { fileMustExist: true, timeout: 0 });
  port.postMessage({ type: 'ready' } satisfies CheckpointerReply);
} catch (e) {
  port.postMessage({ type: 'error', message: (e as Error).message, fatal: true } satisfies CheckpointerReply);
  process.exit(0);
}

let last = { log: -1, checkpointed: -1 };

function pass(): void {
  const started = performance.now();
  // PASSIVE copies the committed frames into the database file without taking the write lock, so the
  // writers never wait for this thread.
  const [result] = db.pragma('wal_checkpoint(PASSIVE)') as CheckpointResult[];
  if (result.log === last.log && result.checkpointed === last.checkpointed) return; // nothing committed since
  last = { log: result.log, checkpointed: result.checkpointed };
  port!.postMessage({
    type: 'pass', seconds: (performance.now() - started) / 1000, walFrames: result.log, checkpointedFrames: result.checkpointed,
  } satisfies CheckpointerReply);
}

const timer = setInterval(() => {
  try {
    pass();
  } catch (e) {
    port.postMessage({ type: 'error', message: (e as Error).message, fatal: false } satisfies CheckpointerReply);
  }
}, intervalMs);

port.on('message', (request: CheckpointerRequest) => {
  if (request.type !== 'close') return;
  clearInterval(timer);
  db.close();
  port.postMessage({ type: 'closed' } satisfies CheckpointerReply);
});
