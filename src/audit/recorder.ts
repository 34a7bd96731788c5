// The group-commit recorder the HTTP server is handed. Every record() made during one event-loop turn
// is queued and written by ONE transaction on the next setImmediate (the writer thread of writer.ts,
// or a wait for another connection's write lock, may fold several turns' groups into one
// transaction; a turn's rows are never split); each promise
// settles only after that transaction committed (resolve) or failed (reject). The server answers a
// decision only after its promise resolved, so no answered decision is ever unaudited, and a failed
// write becomes a 503 (fail closed) instead of a silently dropped row.
import { InvalidAuditEventError, toAuditRow, type AuditEvent, type AuditRow } from './event';
import type { AuditStore } from './store';

export interface AuditRecorder {
  /** Resolves only after the row is committed; rejects with AuditUnavailableError when it cannot be written. */
  record(event: AuditEvent): Promise<void>;
  /** Many rows (a batch request), same guarantee: all committed, or the promise rejects. */
  recordAll(events: AuditEvent[]): Promise<void>;
  /** False after a failed write, true again once a write (or the background probe) succeeds. */
  writable(): boolean;
  /** Rows queued and not yet committed. */
  queueDepth(): number;
  /** Drains the queue (one last flush), then closes the store. */
  close(): Promise<void>;
  /** Subscribes to committed group commits: rows written and seconds the transaction took (metrics). */
  onFlush?(listener: (rows: number, seconds: number) => void): void;
  /** Subscribes to waits for another connection's write lock: seconds from the first refused try to the commit or the failure (metrics). */
  onLockWait?(listener: (seconds: number) => void): void;
}

/** The rows could not be committed; nothing of them was stored. The server answers 503. */
export class AuditUnavailableError extends Error {
  override name = 'AuditUnavailableError';
}

/**
 * A sink's write found the write lock held by another connection (another `--workers` process,
 * `pdp audit prune`, a `sqlite3` shell) and wrote nothing. The recorder tries the rows again later,
 * for up to the sink's `lockWaitMs`, without blocking the event loop meanwhile.
 */
export class WriteLockHeldError extends Error {
  override name = 'WriteLockHeldError';
}

export interface RecorderOptions {
  /** After each committed flush: rows written and seconds the transaction took (metrics). */
  onFlush?(rows: number, seconds: number): void;
  /** After each failed flush or failed probe, with the underlying SQLite error (logs). */
  onError?(err: Error): void;
  /** When writing works again after a failure: the outage is over (logs). */
  onRecovered?(): void;
  /** How often the background probe tests writing while the store is unwritable. Default 1000 ms. */
  probeIntervalMs?: number;
  /**
   * Busy timeout while unwritable. Writes block the event loop while waiting for a lock, so once a
   * write failed the recorder fails fast (default 0 ms) until a write succeeds again, instead of
   * stalling every request for the full timeout during an outage.
   */
  degradedBusyTimeoutMs?: number;
  /**
   * An asynchronous sink (the writer thread) whose oldest write has not settled for this long is
   * stalled (a frozen or hung disk: write(2) blocks instead of failing): `writable()` is false and
   * new rows are refused at once (503) until it settles. Default 3000 ms. The inline sink cannot
   * be watched this way: its stalled write blocks the event loop, and probes fail by timing out.
   */
  stallMs?: number;
}

/** The part of the store the recorder needs (tests substitute failing stores). */
export type RecorderStore = Pick<AuditStore, 'insertRows' | 'probeWrite' | 'close'> &
  Partial<Pick<AuditStore, 'insertRowsIfUnlocked' | 'setBusyTimeout' | 'busyTimeoutMs'>>;

/**
 * Where a recorder commits its rows. `write` commits all of them in one transaction or none; it either
 * returns (committed) or throws, or, for a sink on another thread, returns a promise that settles the
 * same way. Unless the sink is `pipelined`, the recorder never starts a write before the previous one settled.
 */
export interface RowSink {
  write(rows: readonly AuditRow[]): void | Promise<void>;
  /** A trivial committed write, to learn whether writing works again after a failure. */
  probe(): void | Promise<void>;
  /** Entered after a failed write and left after a successful one (the inline store shortens its busy timeout). */
  degraded?(on: boolean): void;
  /**
   * True when the sink commits writes in the order it was given them even while earlier ones are
   * still running (the writer thread), so the recorder hands each group over at once instead of
   * holding it until the previous one settled.
   */
  readonly pipelined?: boolean;
  /**
   * A sink whose `write` throws WriteLockHeldError (instead of waiting inside SQLite) says here how
   * long the recorder keeps trying such a write before it fails it: milliseconds, while writable;
   * once a write failed, it fails at once until writing works again.
   */
  readonly lockWaitMs?: number;
  close(): void | Promise<void>;
}

interface Pending {
  rows: AuditRow[];
  resolve(): void;
  reject(err: Error): void;
}

const DEFAULT_PROBE_INTERVAL_MS = 1000;
const DEFAULT_STALL_MS = 3000;

/** The inline sink: the store's synchronous transaction, on the event loop's thread. */
export function storeSink(store: RecorderStore, options: Pick<RecorderOptions, 'degradedBusyTimeoutMs'> = {}): RowSink {
  const degradedBusyTimeoutMs = options.degradedBusyTimeoutMs ?? 0;
  const normalBusyTimeoutMs = store.busyTimeoutMs;
  return {
    write: (rows) => store.insertRows(rows),
    probe: () => store.probeWrite(),
    degraded(on) {
      if (on) store.setBusyTimeout?.(degradedBusyTimeoutMs);
      else if (normalBusyTimeoutMs !== undefined) store.setBusyTimeout?.(normalBusyTimeoutMs);
    },
    close: () => store.close(),
  };
}

/**
 * The inline sink without waits inside SQLite: a write that finds another connection holding the
 * write lock throws WriteLockHeldError at once, having written nothing, and the recorder retries it
 * (joined by what queued meanwhile) while the event loop keeps serving. SQLite's own busy handler
 * would sleep the thread (1, 2, 5, 10… ms at a time): with `--workers`, every worker's group commit
 * meets the others' locks, and measured with two workers each spent 9-11 % of its time asleep.
 */
export function eventLoopStoreSink(store: RecorderStore, options: Pick<RecorderOptions, 'degradedBusyTimeoutMs'> = {}): RowSink {
  const sink = storeSink(store, options);
  const tryInsert = store.insertRowsIfUnlocked;
  if (tryInsert === undefined) return sink;
  return {
    ...sink,
    write(rows) {
      if (!tryInsert.call(store, rows)) throw new WriteLockHeldError('the audit database is locked by another connection');
    },
    lockWaitMs: store.busyTimeoutMs ?? 0,
  };
}

/** A group-commit recorder over the store, committing on the event loop's thread. */
export function createRecorder(store: RecorderStore, options: RecorderOptions = {}): AuditRecorder {
  return createSinkRecorder(eventLoopStoreSink(store, options), options);
}

/** A group-commit recorder over any sink (the inline store, or the writer thread of writer.ts). */
export function createSinkRecorder(sink: RowSink, options: RecorderOptions = {}): AuditRecorder {
  const probeIntervalMs = options.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS;

  let queue: Pending[] = [];
  let queuedRows = 0;
  let flushHandle: NodeJS.Immediate | undefined;
  let probeTimer: NodeJS.Timeout | undefined;
  /** While a write waits for another connection's write lock: since when, the next try, and who waits for the end of it. */
  let lockWait: { since: number; retry?: { cancel(): void }; ended: Promise<void>; end(): void } | undefined;
  /** Writes of an asynchronous sink that have not settled yet, and how many rows they carry. */
  const inFlight = new Set<Promise<void>>();
  let inFlightRows = 0;
  /** When each in-flight write started (performance.now()), oldest first: a pipelined sink settles them in order. */
  const inFlightSince: number[] = [];
  const stallMs = options.stallMs ?? DEFAULT_STALL_MS;
  const stalledFor = () => (inFlightSince.length === 0 ? 0 : performance.now() - inFlightSince[0]!);
  const mustWait = () => inFlight.size > 0 && sink.pipelined !== true;
  let probing = false;
  let isWritable = true;
  let closed = false;

  const reportError = (err: Error) => {
    try {
      options.onError?.(err);
    } catch {
      // A failing logger must not turn into an unhandled exception inside the flush.
    }
  };

  const flushListeners: ((rows: number, seconds: number) => void)[] = [];
  if (options.onFlush) flushListeners.push(options.onFlush);

  const markWritable = () => {
    if (isWritable) return;
    isWritable = true;
    sink.degraded?.(false);
    if (probeTimer !== undefined) {
      clearInterval(probeTimer);
      probeTimer = undefined;
    }
    try {
      options.onRecovered?.();
    } catch {
      // as for onError
    }
  };

  const markUnwritable = () => {
    if (!isWritable) return;
    isWritable = false;
    sink.degraded?.(true);
    if (!closed && probeTimer === undefined) {
      probeTimer = setInterval(probe, probeIntervalMs);
      // The probe alone must not keep the process alive.
      probeTimer.unref();
    }
  };

  function probe() {
    if (closed || probing) return;
    let result: void | Promise<void>;
    try {
      result = sink.probe();
    } catch (e) {
      reportError(e as Error);
      return;
    }
    if (result === undefined) {
      markWritable();
      return;
    }
    probing = true;
    result.then(markWritable, reportError).finally(() => {
      probing = false;
    });
  }

  const lockWaitListeners: ((seconds: number) => void)[] = [];
  const endLockWait = () => {
    if (lockWait === undefined) return;
    const seconds = (performance.now() - lockWait.since) / 1000;
    lockWait.end();
    lockWait = undefined;
    for (const listener of lockWaitListeners) {
      try {
        listener(seconds);
      } catch {
        // Metrics must not affect what was already committed or refused.
      }
    }
  };

  /**
   * The write lock is held elsewhere and nothing was written: puts the rows back at the head of the
   * queue (order kept; the next try commits them with everything that queued meanwhile, in one
   * transaction) and schedules that try: on the next turn for the first millisecond, then every
   * millisecond. False when the wait is over (`lockWaitMs`, or none at all while unwritable): fail.
   */
  function waitForLock(batch: Pending[], rowCount: number): boolean {
    const now = performance.now();
    if (lockWait === undefined) {
      let end!: () => void;
      const ended = new Promise<void>((resolve) => { end = resolve; });
      lockWait = { since: now, ended, end };
    }
    const budget = isWritable ? sink.lockWaitMs ?? 0 : 0;
    if (now - lockWait.since >= budget) return false;
    queue = queue.length === 0 ? batch : batch.concat(queue);
    queuedRows += rowCount;
    if (now - lockWait.since < 1) {
      const immediate = setImmediate(flush);
      lockWait.retry = { cancel: () => clearImmediate(immediate) };
    } else {
      const timeout = setTimeout(flush, 1);
      lockWait.retry = { cancel: () => clearTimeout(timeout) };
    }
    return true;
  }

  const committed = (batch: Pending[], rowCount: number, started: bigint) => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    endLockWait();
    markWritable();
    for (const pending of batch) pending.resolve();
    for (const listener of flushListeners) {
      try {
        listener(rowCount, seconds);
      } catch {
        // Metrics must not affect what was already committed and acknowledged.
      }
    }
  };

  const failed = (batch: Pending[], e: unknown) => {
    const cause = e as Error;
    endLockWait();
    markUnwritable();
    reportError(cause);
    const unavailable = new AuditUnavailableError(`audit log unavailable: ${cause.message}`, { cause });
    for (const pending of batch) pending.reject(unavailable);
  };

  function flush() {
    flushHandle = undefined;
    if (lockWait !== undefined) lockWait.retry = undefined;
    // One write at a time (unless the sink is pipelined): what arrives meanwhile waits and goes in the next, larger, group.
    if (mustWait() || queue.length === 0) return;
    const batch = queue;
    const rowCount = queuedRows;
    queue = [];
    queuedRows = 0;
    const rows = batch.length === 1 ? batch[0].rows : batch.flatMap((pending) => pending.rows);
    const started = process.hrtime.bigint();
    let result: void | Promise<void>;
    try {
      result = sink.write(rows);
    } catch (e) {
      if (e instanceof WriteLockHeldError && waitForLock(batch, rowCount)) return;
      failed(batch, e);
      return;
    }
    if (result === undefined) {
      committed(batch, rowCount, started);
      return;
    }
    inFlightRows += rowCount;
    const since = performance.now();
    inFlightSince.push(since);
    // No longer a possible stall from the moment it settles, before anyone hears of it.
    const leaveInFlight = () => inFlightSince.splice(inFlightSince.indexOf(since), 1);
    const settled: Promise<void> = result.then(
      () => { leaveInFlight(); committed(batch, rowCount, started); },
      (e) => { leaveInFlight(); failed(batch, e); },
    ).finally(() => {
      inFlight.delete(settled);
      inFlightRows -= rowCount;
      if (queue.length > 0) flush();
    });
    inFlight.add(settled);
  }

  function enqueue(events: readonly AuditEvent[]): Promise<void> {
    if (closed) return Promise.reject(new AuditUnavailableError('audit log is closed'));
    let rows: AuditRow[];
    try {
      rows = events.map(toAuditRow);
    } catch (e) {
      // A malformed event is refused alone; it never fails the transaction carrying other rows.
      return Promise.reject(e instanceof InvalidAuditEventError ? e : new InvalidAuditEventError(String(e)));
    }
    if (rows.length === 0) return Promise.resolve();
    const stalled = stalledFor();
    if (stalled >= stallMs) {
      // Queued behind a write that does not finish, these rows would hang their requests instead of failing closed.
      return Promise.reject(new AuditUnavailableError(`audit log unavailable: a commit has not finished for ${(stalled / 1000).toFixed(1)} s (a stalled disk?)`));
    }
    return new Promise<void>((resolve, reject) => {
      queue.push({ rows, resolve, reject });
      queuedRows += rows.length;
      // While a write waits for the lock, its next try takes these rows along.
      if (!mustWait() && lockWait?.retry === undefined) flushHandle ??= setImmediate(flush);
    });
  }

  return {
    record: (event) => enqueue([event]),
    recordAll: (events) => enqueue(events),
    writable: () => isWritable && stalledFor() < stallMs,
    queueDepth: () => queuedRows + inFlightRows,
    onFlush: (listener) => {
      flushListeners.push(listener);
    },
    onLockWait: (listener) => {
      lockWaitListeners.push(listener);
    },
    async close() {
      if (closed) return;
      closed = true;
      if (flushHandle !== undefined) clearImmediate(flushHandle);
      // A try scheduled for later is made now instead.
      lockWait?.retry?.cancel();
      // Drain: the writes in flight, then what queued behind them (their `finally` flushes that),
      // and a write waiting for the lock until it commits or its wait is over.
      flush();
      while (inFlight.size > 0 || lockWait !== undefined) await Promise.all([...inFlight, lockWait?.ended]);
      if (probeTimer !== undefined) clearInterval(probeTimer);
      probeTimer = undefined;
      await sink.close();
    },
  };
}
