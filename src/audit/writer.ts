// The audit writer thread, main-thread side: a RowSink whose transactions run on a worker thread with
// its own connection to the audit file. A group commit then costs the event loop a message instead of
// the SQLite work (inserts, index pages, the WAL write), so on a machine with a core to spare the
// server answers while the previous group is being committed. The guarantees do not change: a row's
// promise resolves only after the writer thread's transaction committed. Groups are handed over as
// they form and committed in that order; the thread folds those that arrive during one transaction
// into the next. On 2 cores shared with the load generator the thread measured no faster for single
// decisions (docs/audit.md), hence `--audit-writer` with `inline` as the default.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { AuditRow } from './event';
import type { RowSink } from './recorder';
import type { AuditStoreOptions } from './store';

export type WriterRequest =
  | { seq: number; op: 'write'; rows: readonly AuditRow[] }
  | { seq: number; op: 'probe' }
  | { seq: number; op: 'degraded'; on: boolean }
  | { seq: number; op: 'close' };

export interface WriterReply {
  seq: number;
  error?: { message: string; code?: string; name?: string };
}

/** The writer thread stopped (crashed, or was terminated); nothing more can be written through it. */
export class WriterThreadGone extends Error {
  override name = 'WriterThreadGone';
}

type Outstanding = { resolve(): void; reject(err: Error): void };

const toError = (reply: NonNullable<WriterReply['error']>): Error =>
  Object.assign(new Error(reply.message), { code: reply.code, name: reply.name ?? 'Error' });

export interface WriterSinkOptions extends AuditStoreOptions {
  /** Busy timeout while degraded (after a failed write), as the inline sink does. Default 0 ms. */
  degradedBusyTimeoutMs?: number;
}

/**
 * Starts the writer thread and resolves once it has opened (and migrated) the audit file; rejects
 * with the thread's own error when it cannot.
 */
export function startWriterThread(file: string, options: WriterSinkOptions = {}): Promise<RowSink> {
  const { degradedBusyTimeoutMs = 0, ...storeOptions } = options;
  const worker = new Worker(path.join(__dirname, 'writer-thread.js'), { workerData: { path: file, options: storeOptions, degradedBusyTimeoutMs } });
  const outstanding = new Map<number, Outstanding>();
  let nextSeq = 1;
  let gone: Error | undefined;

  const send = (request: WriterRequest extends infer R ? (R extends unknown ? Omit<R, 'seq'> : never) : never): Promise<void> => {
    if (gone !== undefined) return Promise.reject(gone);
    const seq = nextSeq++;
    return new Promise<void>((resolve, reject) => {
      outstanding.set(seq, { resolve, reject });
      worker.postMessage({ ...request, seq });
    });
  };

  const stop = (err: Error) => {
    gone ??= err;
    for (const pending of outstanding.values()) pending.reject(gone);
    outstanding.clear();
  };

  return new Promise<RowSink>((resolveStart, rejectStart) => {
    let started = false;
    worker.on('message', (reply: WriterReply) => {
      if (reply.seq === 0) {
        if (reply.error) {
          void worker.terminate();
          rejectStart(toError(reply.error));
          return;
        }
        started = true;
        resolveStart(sink);
        return;
      }
      const pending = outstanding.get(reply.seq);
      if (pending === undefined) return;
      outstanding.delete(reply.seq);
      if (reply.error) pending.reject(toError(reply.error));
      else pending.resolve();
    });
    worker.on('error', (e) => {
      stop(new WriterThreadGone(`the audit writer thread failed: ${e.message}`));
      if (!started) rejectStart(e);
    });
    worker.on('exit', (code) => {
      stop(new WriterThreadGone(`the audit writer thread exited (code ${code})`));
      if (!started) rejectStart(new WriterThreadGone(`the audit writer thread exited (code ${code}) before opening the audit file`));
    });

    const sink: RowSink = {
      pipelined: true,
      write: (rows) => send({ op: 'write', rows }),
      probe: () => send({ op: 'probe' }),
      degraded(on) {
        send({ op: 'degraded', on }).catch(() => undefined);
      },
      async close() {
        if (gone === undefined) await send({ op: 'close' }).catch(() => undefined);
        await worker.terminate();
      },
    };
  });
}
