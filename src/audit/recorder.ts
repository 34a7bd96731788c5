// The group-commit recorder the HTTP server is handed. Every record() made during one event-loop turn
// is queued and written by ONE transaction on the next setImmediate (the writer thread of writer.ts
// may fold several turns' groups into one transaction; a turn's rows are never split); each promise
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
}

/** The rows could not be committed; nothing of them was stored. The server answers 503. */
export class AuditUnavailableError extends Error {
  override name = 'AuditUnavailableError';
}

export interface RecorderOptions {
  /** After each committed flush: rows written and seconds the transaction took (metrics). */
  onFlush?(rows: number, seconds: number): void;
  /** After each failed flush or failed probe, with the underlying SQLite error (logs). */
  onError?(err: Error): void;
  /** How often the background probe tests writing while the store is unwritable. Default 1000 ms. */
  probeIntervalMs?: number;
  /**
   * Busy timeout while unwritable. Writes block the event loop while waiting for a lock, so once a
   * write failed the recorder fails fast (default 0 ms) until a write succeeds again, instead of
   * stalling every request for the full timeout during an outage.
   */
  degradedBusyTimeoutMs?: number;
}

/** The part of the store the recorder needs (tests substitute failing stores). */
export type RecorderStore = Pick<AuditStore, 'insertRows' | 'probeWrite' | 'close'> &
  Partial<Pick<AuditStore, 'setBusyTimeout' | 'busyTimeoutMs'>>;

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
  close(): void | Promise<void>;
}

interface Pending {
  rows: AuditRow[];
  resolve(): void;
  reject(err: Error): void;
}

const DEFAULT_PROBE_INTERVAL_MS = 1000;

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

/** A group-commit recorder over the store, committing on the event loop's thread. */
export function createRecorder(store: RecorderStore, options: RecorderOptions = {}): AuditRecorder {
  return createSinkRecorder(storeSink(store, options), options);
}

/** A group-commit recorder over any sink (the inline store, or the writer thread of writer.ts). */
export function createSinkRecorder(sink: RowSink, options: RecorderOptions = {}): AuditRecorder {
  const probeIntervalMs = options.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS;

  let queue: Pending[] = [];
  let queuedRows = 0;
  let flushHandle: NodeJS.Immediate | undefined;
  let probeTimer: NodeJS.Timeout | undefined;
  /** Writes of an asynchronous sink that have not settled yet, and how many rows they carry. */
  const inFlight = new Set<Promise<void>>();
  let inFlightRows = 0;
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

  const committed = (batch: Pending[], rowCount: number, started: bigint) => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
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
    markUnwritable();
    reportError(cause);
    const unavailable = new AuditUnavailableError(`audit log unavailable: ${cause.message}`, { cause });
    for (const pending of batch) pending.reject(unavailable);
  };

  function flush() {
    flushHandle = undefined;
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
      failed(batch, e);
      return;
    }
    if (result === undefined) {
      committed(batch, rowCount, started);
      return;
    }
    inFlightRows += rowCount;
    const settled: Promise<void> = result.then(
      () => committed(batch, rowCount, started),
      (e) => failed(batch, e),
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
    return new Promise<void>((resolve, reject) => {
      queue.push({ rows, resolve, reject });
      queuedRows += rows.length;
      if (!mustWait()) flushHandle ??= setImmediate(flush);
    });
  }

  return {
    record: (event) => enqueue([event]),
    recordAll: (events) => enqueue(events),
    writable: () => isWritable,
    queueDepth: () => queuedRows + inFlightRows,
    onFlush: (listener) => {
      flushListeners.push(listener);
    },
    async close() {
      if (closed) return;
      closed = true;
      if (flushHandle !== undefined) clearImmediate(flushHandle);
      // Drain: the writes in flight, then what queued behind them (their `finally` flushes that).
      flush();
      while (inFlight.size > 0) await Promise.all(inFlight);
      if (probeTimer !== undefined) clearInterval(probeTimer);
      probeTimer = undefined;
      await sink.close();
    },
  };
}
