// The audit writer thread, main-thread side: a RowSink whose transactions run on a worker thread with
// its own connection to the audit file. A group commit then costs the event loop a message instead of
// the SQLite work (inserts, index pages, the WAL write), so on a machine with a core to spare the
// server answers while the previous group is being committed. The guarantees do not change: a row's
// promise resolves only after the writer thread's transaction committed. Groups are handed over as
// they form and committed in that order; the thread folds those that arrive during one transaction
// into the next. On 2 cores shared with the load generator the thread measured no faster for single
// decisions (docs/audit.md), hence `--audit-writer` with `inline` as the default.
//
// If the thread dies (a crash, an out-of-memory kill of the worker), every write fails until a new
// thread is running: the recorder fails closed and probes, and the probe starts the replacement, so
// the server recovers by itself as it does from a locked or full disk.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { packAuditRows, type PackedAuditRows } from './event';
import type { RowSink } from './recorder';
import type { AuditStoreOptions } from './store';

export type WriterRequest =
  | { seq: number; op: 'write'; rows: PackedAuditRows }
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
type Request = WriterRequest extends infer R ? (R extends unknown ? Omit<R, 'seq'> : never) : never;

const toError = (reply: NonNullable<WriterReply['error']>): Error =>
  Object.assign(new Error(reply.message), { code: reply.code, name: reply.name ?? 'Error' });

export interface WriterSinkOptions extends AuditStoreOptions {
  /** Busy timeout while degraded (after a failed write), as the inline sink does. Default 0 ms. */
  degradedBusyTimeoutMs?: number;
  /** After a replacement thread took over from one that died (logs). */
  onRestart?(previous: Error): void;
}

/** One running writer thread: its requests, and why it stopped once it has. */
interface WriterThread {
  send(request: Request): Promise<void>;
  /** Set once the thread has stopped; every later send rejects with it. */
  gone(): Error | undefined;
  terminate(): Promise<unknown>;
}

/** Starts one thread; resolves once it has opened (and migrated) the file, rejects with its own error when it cannot. */
function spawnThread(workerData: unknown): Promise<WriterThread> {
  const worker = new Worker(path.join(__dirname, 'writer-thread.js'), { workerData });
  const outstanding = new Map<number, Outstanding>();
  let nextSeq = 1;
  let gone: Error | undefined;

  const stop = (err: Error) => {
    gone ??= err;
    for (const pending of outstanding.values()) pending.reject(gone);
    outstanding.clear();
  };

  const thread: WriterThread = {
    send(request) {
      if (gone !== undefined) return Promise.reject(gone);
      const seq = nextSeq++;
      return new Promise<void>((resolve, reject) => {
        outstanding.set(seq, { resolve, reject });
        worker.postMessage({ ...request, seq });
      });
    },
    gone: () => gone,
    terminate: () => worker.terminate(),
  };
  liveWorkers.set(thread, worker);

  return new Promise<WriterThread>((resolveStart, rejectStart) => {
    let started = false;
    worker.on('message', (reply: WriterReply) => {
      if (reply.seq === 0) {
        if (reply.error) {
          void worker.terminate();
          rejectStart(toError(reply.error));
          return;
        }
        started = true;
        resolveStart(thread);
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
  });
}

/** The Worker behind each thread, for terminateWriterThreadForTesting only. */
const liveWorkers = new WeakMap<WriterThread, Worker>();
const currentThread = new WeakMap<RowSink, () => WriterThread>();

/**
 * Starts the writer thread and resolves once it has opened (and migrated) the audit file; rejects
 * with the thread's own error when it cannot. Once running, a thread that dies is replaced by the
 * next probe (see the header).
 */
export async function startWriterThread(file: string, options: WriterSinkOptions = {}): Promise<RowSink> {
  const { degradedBusyTimeoutMs = 0, onRestart, ...storeOptions } = options;
  const workerData = { path: file, options: storeOptions, degradedBusyTimeoutMs };
  let thread = await spawnThread(workerData);
  let closed = false;
  let degraded = false;
  let replacing: Promise<WriterThread> | undefined;

  /** The running thread, or a new one in place of a thread that died (one start at a time). */
  const running = (): Promise<WriterThread> => {
    const died = thread.gone();
    if (died === undefined) return Promise.resolve(thread);
    if (closed) return Promise.reject(died);
    replacing ??= spawnThread(workerData).then(
      (fresh) => {
        thread = fresh;
        replacing = undefined;
        // A replacement comes up after a failure: it waits no longer for a lock than its predecessor did.
        if (degraded) fresh.send({ op: 'degraded', on: true }).catch(() => undefined);
        try {
          onRestart?.(died);
        } catch {
          // Logging must not decide whether the replacement is used.
        }
        return fresh;
      },
      (e: unknown) => {
        replacing = undefined;
        throw new WriterThreadGone(`${died.message}; starting a new one failed: ${(e as Error).message}`);
      },
    );
    return replacing;
  };

  const sink: RowSink = {
    pipelined: true,
    // A write never starts a thread: while none runs it fails at once (fail closed), and the
    // recorder's probe, not the request path, brings the replacement up.
    write: (rows) => thread.send({ op: 'write', rows: packAuditRows(rows) }),
    probe: () => running().then((t) => t.send({ op: 'probe' })),
    degraded(on) {
      degraded = on;
      thread.send({ op: 'degraded', on }).catch(() => undefined);
    },
    async close() {
      closed = true;
      const last = replacing ? await replacing.catch(() => thread) : thread;
      if (last.gone() === undefined) await last.send({ op: 'close' }).catch(() => undefined);
      await last.terminate();
    },
  };
  currentThread.set(sink, () => thread);
  return sink;
}

/**
 * Tests only: stops the sink's current thread as a crash would (no close, no drain), so that the
 * replacement can be observed. Resolves once the thread has exited.
 */
export async function terminateWriterThreadForTesting(sink: RowSink): Promise<void> {
  const thread = currentThread.get(sink)?.();
  const worker = thread && liveWorkers.get(thread);
  if (!worker) throw new Error('not a writer-thread sink');
  await worker.terminate();
}
