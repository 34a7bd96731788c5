// `pdp serve`'s audit side, opened in this order: the store, the recorder in front of it (inline or
// on a writer thread) with its outage log, the reloader with the start-up ACL_CHANGE row that
// activates the first policy version, and the WAL checkpointer thread. Also the read-only analyses
// behind GET /v1/audit/anomalies.
import path from 'node:path';
import {
  anomalyReportJson, createRecorder, createSinkRecorder, findAnomalies, openAuditStore, openAuditStoreReadOnly, startCheckpointer, startWriterThread,
  type AuditRecorder, type AuditStore, type Checkpointer, type RecorderOptions,
} from '../audit';
import type { Engine, LoadedPolicy } from '../engine';
import { createReloader, type AuditAnomalies, type Reloader } from '../server';
import { EXIT_FINDING } from './io';
import type { ServeLog } from './serve-log';
import type { ServeOptions } from './serve-options';
import type { ServeShutdown } from './serve-stop';

export interface ServeAudit {
  store: AuditStore;
  recorder: AuditRecorder;
  /** Activates a policy version once its ACL_CHANGE row is committed; the first one already is. */
  reloader: Reloader;
  /** Absent where this process does not run the checkpointer thread. */
  checkpointer: Checkpointer | undefined;
  /** The recorder (its queue drained), the checkpointer, the store: once the server has closed. */
  close(): Promise<void>;
}

/**
 * Opens the audit side and activates `first` once its start-up row is committed; when any of that
 * fails, says why and returns the exit code (having closed what the failure left open).
 */
export async function openServeAudit(options: ServeOptions, engine: Engine, first: LoadedPolicy, shutdown: ServeShutdown, log: ServeLog): Promise<ServeAudit | number> {
  const { auditPath } = options;
  let store;
  try {
    store = openAuditStore(auditPath, { synchronous: options.sync });
  } catch (e) {
    log.error((e as Error).message);
    return EXIT_FINDING;
  }
  const auditStore = store;
  const recorder = await openRecorder(auditStore, options, outageLog(auditPath, shutdown, log), log);
  if (!recorder) return EXIT_FINDING;
  const refreshAllowed = (services: { name: string; namespace: string }[]) => {
    try {
      auditStore.refreshAllowedServices(services);
    } catch (e) {
      // The decision path does not depend on it; the next load refreshes it again.
      log.warn(`could not refresh allowed_services: ${(e as Error).message}`);
    }
  };
  const reloader = createReloader({ engine, recorder, nodeName: options.nodeName, onActivated: (p) => refreshAllowed(p.compiled.declaredServices) });
  // The first activation is audited like a reload: an ACL_CHANGE row (trigger `startup`) from the
  // newest version the log records to this one. If it cannot be committed, nothing is served.
  let started;
  try {
    started = await reloader.start(first, auditStore.lastPolicyChange());
  } catch (e) {
    started = { ok: false as const, message: `cannot read the last recorded policy version: ${(e as Error).message}; not serving unaudited` };
  }
  if (!started.ok) {
    log.error(`audit store \`${auditPath}\`: ${started.message}`);
    // The inline recorder closes the store it writes through; a writer thread's recorder closes only
    // the thread's own connection, so the store is closed here as well (closing twice is harmless).
    await recorder.close();
    auditStore.close();
    return EXIT_FINDING;
  }
  const checkpointer = startServeCheckpointer(options, log);
  return {
    store: auditStore, recorder, reloader, checkpointer,
    async close() {
      await recorder.close();
      await checkpointer?.close();
      auditStore.close();
    },
  };
}

/**
 * Why the audit store refuses writes (locked, disk full, file deleted) is what an operator needs
 * when the PDP answers 503: said when the outage starts, again at most once a minute while it lasts
 * (SQLite words one lock two ways, so a per-wording limit would flap), and when it ends.
 */
function outageLog(auditPath: string, shutdown: ServeShutdown, log: ServeLog): RecorderOptions {
  let outageSince: number | undefined;
  let outageLoggedAt = 0;
  let outageErrors = 0;
  return {
    onError: (err) => {
      if (err.name === 'AuditFileReplacedError' && shutdown.stopWith) {
        // Unrecoverable in this process (a rotation moved the file away, someone deleted it): waiting
        // would answer 503 forever while /v1/health says ok, so no liveness probe would ever restart
        // it. Exit 1 instead; a supervisor starts pdp again on the path, which opens (or creates) the
        // file there and records its start-up ACL_CHANGE row.
        log.error(`${err.message}; exiting with status 1 so that a supervisor restarts pdp on \`${auditPath}\``);
        shutdown.stopWith('audit database replaced', EXIT_FINDING);
        return;
      }
      const at = Date.now();
      outageErrors++;
      if (outageSince === undefined) {
        outageSince = at;
        outageLoggedAt = at;
        log.error(`the audit store cannot be written (decisions are refused with 503 until it can): ${err.message}`);
      } else if (at - outageLoggedAt >= 60_000) {
        outageLoggedAt = at;
        log.error(`the audit store still cannot be written after ${Math.round((at - outageSince) / 1000)} s (${outageErrors} failed writes and probes): ${err.message}`);
      }
    },
    onRecovered: () => {
      if (outageSince === undefined) return;
      log.info(`the audit store can be written again after ${((Date.now() - outageSince) / 1000).toFixed(1)} s; decisions are answered again`);
      outageSince = undefined;
      outageErrors = 0;
    },
  };
}

/** --audit-writer: the recorder in front of `store`; undefined (the store closed, and said why) when the writer thread cannot start. */
async function openRecorder(store: AuditStore, options: ServeOptions, recorderOptions: RecorderOptions, log: ServeLog): Promise<AuditRecorder | undefined> {
  if (options.auditWriter === 'inline') return createRecorder(store, recorderOptions);
  // The thread has its own connection for the audit rows; the store's (migrated when it opened) keeps
  // the rare writes of a reload (allowed_services) and the start-up read of the last ACL_CHANGE.
  try {
    const onRestart = (previous: Error) => log.warn(`${previous.message}; a new audit writer thread took over`);
    return createSinkRecorder(await startWriterThread(options.auditPath, { synchronous: options.sync, onRestart }), recorderOptions);
  } catch (e) {
    store.close();
    log.error(`cannot start the audit writer thread: ${(e as Error).message}`);
    return undefined;
  }
}

/**
 * WAL checkpoints off the event loop (audit/checkpointer.ts): one thread per audit file, so with
 * --workers only worker 1 (and its replacement) runs it. Not required for serving: if its thread cannot
 * start or dies, SQLite's checkpoints in the commits do all the copying, as without it; that is logged.
 */
function startServeCheckpointer(options: ServeOptions, log: ServeLog): Checkpointer | undefined {
  if (options.auditCheckpoint !== 'thread' || (options.workerId !== undefined && options.workerId !== '1')) return undefined;
  let lastCheckpointError = '';
  return startCheckpointer(options.auditPath, {
    onError: (err, fatal) => {
      if (fatal || err.message !== lastCheckpointError) log.warn(err.message);
      lastCheckpointError = err.message;
    },
  });
}

/**
 * GET /v1/audit/anomalies: the server never opens SQLite itself; it is handed the analyses, which
 * run on a read-only connection of their own (WAL: they never block the writer, nor see half a commit).
 */
export function auditAnomaliesReader(auditPath: string): AuditAnomalies {
  return (options) => {
    const reader = openAuditStoreReadOnly(auditPath);
    try {
      return anomalyReportJson(findAnomalies(reader.db, options), path.basename(auditPath));
    } finally {
      reader.close();
    }
  };
}
