// The audit checkpointer: a worker thread that copies the WAL's committed pages into the database file,
// so that the connection writing the rows (on the event loop) has little left to copy.
//
// SQLite's automatic checkpoint runs inside the commit that crosses `wal_autocheckpoint` pages (10,000
// here, ~40 MiB): on the event loop, copying every page written since the last one into the database
// file and fsyncing both files while every request waits. Measured on the benchmark machine
// (docs/audit.md): a 40-80 ms stall every couple of seconds under full load, so 0.1 % of answers took
// over 40 ms. This thread runs a PASSIVE checkpoint every `intervalMs`: it takes no write lock, so no
// commit ever waits for it, and when the commit's own checkpoint comes due it finds all but the last
// interval's pages already copied (measured under full load: p99.9 of /v1/authorize 57 -> 17 ms, for
// ~1.2 µs of this thread's CPU per decision and a p99 about a millisecond higher; docs/audit.md).
// That commit still does the final copy and lets the next commit restart the WAL from its beginning, so
// the WAL stays bounded as before, and if this thread is not running nothing changes but the stall.
//
// A RESTART checkpoint from this thread would also move that last step off the event loop, but it holds
// the write lock while it copies and fsyncs: measured, ~3.7 ms lock waits that raised p99 by ~1.5 ms.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

export type CheckpointerRequest = { type: 'close' };
export type CheckpointerReply =
  | { type: 'ready' }
  | { type: 'closed' }
  | { type: 'error'; message: string; fatal: boolean }
  | ({ type: 'pass' } & CheckpointPass);

/** One checkpoint pass that found new commits in the WAL. */
export interface CheckpointPass {
  seconds: number;
  /** Frames in the WAL when the pass began, and how many of them are now in the database file. */
  walFrames: number;
  checkpointedFrames: number;
}

export interface CheckpointerOptions {
  /** How often the thread checkpoints when there are new commits. Default 250 ms. */
  intervalMs?: number;
  /** A pass failed (it is tried again), or the thread could not open the file or died (`fatal`). */
  onError?(error: Error, fatal: boolean): void;
}

export interface Checkpointer {
  /** Resolves once the thread has opened the file; rejects when it cannot. */
  readonly ready: Promise<void>;
  /** Subscribes to the passes that found new commits (metrics). */
  onPass(listener: (pass: CheckpointPass) => void): void;
  /** Stops the thread after its current pass. */
  close(): Promise<void>;
}

/**
 * Starts the checkpointer thread for an audit file that already exists (opened and migrated by
 * `openAuditStore`). It writes no row and changes no setting of the file.
 */
export function startCheckpointer(file: string, options: CheckpointerOptions = {}): Checkpointer {
  const worker = new Worker(path.join(__dirname, 'checkpointer-thread.js'), {
    workerData: { path: file, intervalMs: options.intervalMs ?? 250 },
  });
  const passListeners: ((pass: CheckpointPass) => void)[] = [];
  let exited = false;
  let closing = false;
  let failed = false;
  let resolveClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => { resolveClosed = resolve; });
  const ready = new Promise<void>((resolve, reject) => {
    worker.on('message', (reply: CheckpointerReply) => {
      switch (reply.type) {
        case 'ready':
          resolve();
          return;
        case 'pass':
          for (const listener of passListeners) listener(reply);
          return;
        case 'error': {
          const error = new Error(`audit checkpointer: ${reply.message}`);
          if (reply.fatal) {
            failed = true;
            reject(error);
          }
          options.onError?.(error, reply.fatal);
          return;
        }
        case 'closed':
          void worker.terminate();
      }
    });
    worker.on('error', (e) => {
      failed = true;
      reject(e);
      options.onError?.(new Error(`audit checkpointer thread failed: ${e.message}`), true);
    });
    worker.on('exit', (code) => {
      exited = true;
      const error = new Error(`audit checkpointer thread exited (code ${code}); SQLite's own checkpoints in the commits take over`);
      if (!closing && !failed) options.onError?.(error, true); // a fatal error was reported already
      reject(error);
      resolveClosed();
    });
  });
  // Once running it never keeps the process alive (the server's own handles do); while it starts or
  // closes it does, so that awaiting `ready` or `close()` cannot end with the event loop. A failed start
  // is reported through onError (and `ready`); the second handler keeps it from being an unhandled rejection.
  ready.then(() => { if (!closing) worker.unref(); }, () => undefined);
  return {
    ready,
    onPass: (listener) => {
      passListeners.push(listener);
    },
    close() {
      closing = true;
      if (!exited) {
        worker.ref();
        worker.postMessage({ type: 'close' } satisfies CheckpointerRequest);
      }
      return closed;
    },
  };
}
