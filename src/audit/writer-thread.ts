// The audit writer thread's entry point (see writer.ts). It owns one connection to the audit file,
// written through the same inline sink the event loop uses without a thread, and answers each message
// with its `seq` once done (for a write: once the transaction committed), or with the error that stopped it.
import { parentPort, workerData } from 'node:worker_threads';
import { openAuditStore, type AuditStoreOptions } from './store';
import { storeSink, type RowSink } from './recorder';
import type { PackedAuditRows } from './event';
import type { WriterReply, WriterRequest } from './writer';

const port = parentPort;
if (port === null) throw new Error('writer-thread.js runs only as a worker thread');
const { path, options, degradedBusyTimeoutMs } = workerData as { path: string; options: AuditStoreOptions; degradedBusyTimeoutMs: number };

const errorReply = (seq: number, e: unknown): WriterReply => ({
  seq, error: { message: (e as Error).message ?? String(e), code: (e as { code?: string }).code, name: (e as Error).name },
});

let store: RowSink | undefined;
let insertPacked: ((packed: PackedAuditRows) => void) | undefined;
try {
  const auditStore = openAuditStore(path, options);
  store = storeSink(auditStore, { degradedBusyTimeoutMs });
  // Writes arrive packed (event.ts): inserted as they are, never rebuilt into row objects.
  insertPacked = auditStore.insertPackedRows;
  port.postMessage({ seq: 0 } satisfies WriterReply);
} catch (e) {
  port.postMessage(errorReply(0, e));
}

// Writes that arrive while a transaction runs are queued and committed together, in arrival order,
// on the next setImmediate: the thread's own group commit, one transaction for many of the main
// thread's groups. A failed transaction fails every group in it, and nothing of it is stored.
let writes: { seq: number; rows: PackedAuditRows }[] = [];
let commitScheduled = false;

function commitWrites() {
  commitScheduled = false;
  const group = writes;
  writes = [];
  if (insertPacked === undefined || group.length === 0) return;
  try {
    insertPacked(group.length === 1 ? group[0].rows : ([] as PackedAuditRows).concat(...group.map((w) => w.rows)));
  } catch (e) {
    for (const w of group) port!.postMessage(errorReply(w.seq, e));
    return;
  }
  for (const w of group) port!.postMessage({ seq: w.seq } satisfies WriterReply);
}

port.on('message', (request: WriterRequest) => {
  if (store === undefined) return;
  if (request.op === 'write') {
    writes.push(request);
    if (!commitScheduled) {
      commitScheduled = true;
      setImmediate(commitWrites);
    }
    return;
  }
  // Anything else waits for the writes before it, so `close` never drops a queued group.
  commitWrites();
  try {
    switch (request.op) {
      case 'probe':
        void store.probe();
        break;
      case 'degraded':
        store.degraded?.(request.on);
        break;
      case 'close':
        void store.close();
        store = undefined;
        insertPacked = undefined;
        break;
    }
    port.postMessage({ seq: request.seq } satisfies WriterReply);
  } catch (e) {
    port.postMessage(errorReply(request.seq, e));
  }
  if (store === undefined) port.close();
});
