// `pdp serve --workers N`: a node:cluster primary that forks N workers sharing the listening
// socket. Each worker runs the ordinary single-process server with its own engine and its own
// connection to the audit store (SQLite WAL serialises their group commits), so the
// nothing-lost guarantee holds per worker.
//
// Here: the IPC between the primary and its workers, and the worker's side of it (WorkerLink). The
// primary (starting, replacing and stopping the workers, relaying between them) is serve-primary.ts.
//
// IPC messages are plain objects with a `pdp` field (node:cluster's own travel as `internalMessage`).
import cluster from 'node:cluster';

export const WORKER_ENV = 'PDP_CLUSTER_WORKER';

export function isClusterWorker(env: NodeJS.ProcessEnv): boolean {
  return env[WORKER_ENV] === '1';
}

/** How long the primary waits for the other workers' reloads, and for their metrics. */
export const RELOAD_WAIT_MS = 15_000;
export const METRICS_WAIT_MS = 5_000;

/** What one worker answered to a reload the primary relayed (or why it did not). */
export interface WorkerReload {
  worker: number;
  /** The worker's ReloadOutcome (JSON). */
  outcome?: { ok: boolean; version?: string; serving?: string; message?: string; auditUnavailable?: true };
  /** `timeout`: no answer in time. */
  error?: string;
}

/** worker → primary */
export type FromWorker =
  | { pdp: 'ready' }
  | { pdp: 'request'; id: number; kind: 'reload-others'; trigger: string; sourceIp?: string }
  | { pdp: 'request'; id: number; kind: 'metrics' }
  | { pdp: 'answer'; id: number; value?: unknown; error?: string };
/** primary → worker */
export type FromPrimary =
  | { pdp: 'ask'; id: number; kind: 'reload'; trigger: string; sourceIp?: string }
  | { pdp: 'ask'; id: number; kind: 'metrics' }
  | { pdp: 'reply'; id: number; value?: unknown; error?: string };

/**
 * A worker's side of the IPC above. Created first thing in a worker's `pdp serve`:
 *
 * - It takes over the `disconnect` event. node:cluster's worker set-up (lib/internal/cluster/child.js,
 *   `_setupWorker`) registers `process.once('disconnect', …)` which calls `process.exit(0)` when the
 *   primary goes away without having asked the worker to disconnect (the primary was SIGKILLed, or
 *   crashed): in-flight requests would be cut and their audit rows lost. That listener is the only
 *   `disconnect` listener a worker has before its own code runs, and Node documents no option to
 *   turn it off, so it is removed here (all it does besides exiting is emit `disconnect` on
 *   `cluster.worker`, which pdp does not use) and replaced by `onPrimaryGone`, which drains and
 *   stops like SIGTERM. test/cli-serve-workers.test.ts kills a primary with SIGKILL to hold this.
 * - It installs a SIGHUP handler at once, so a SIGHUP that arrives before the server is ready (a
 *   signal to the whole process group, say) is remembered instead of killing the worker.
 * - `release()` disconnects from the primary at the end, so a worker whose start-up failed exits
 *   with its exit code instead of being held alive by the IPC channel.
 */
export class WorkerLink {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  private readonly handlers: { reload?: (trigger: string, sourceIp?: string) => Promise<unknown>; metrics?: () => Promise<unknown> } = {};
  private readonly goneListeners: (() => void)[] = [];
  private hup: () => void;
  private hupEarly = false;
  gone = false;

  constructor() {
    for (const listener of process.listeners('disconnect')) process.off('disconnect', listener as () => void);
    process.on('disconnect', () => {
      this.gone = true;
      for (const [id, p] of this.pending) {
        clearTimeout(p.timer);
        this.pending.delete(id);
        p.reject(new Error('the primary process is gone'));
      }
      for (const listener of this.goneListeners.splice(0)) listener();
    });
    process.on('message', (message: FromPrimary) => this.onMessage(message));
    // node:cluster answers the primary about every connection it hands over; once the primary is
    // gone that answer fails with EPIPE, emitted as 'error' on `cluster.worker`, and with no
    // listener the worker died mid-drain instead of finishing its in-flight requests (seen in CI).
    cluster.worker?.on('error', () => undefined);
    this.hup = () => { this.hupEarly = true; };
    process.on('SIGHUP', this.hup);
  }

  /** Replaces the early SIGHUP handler with the server's; runs it at once if a SIGHUP came before. */
  installHup(handler: () => void): void {
    process.off('SIGHUP', this.hup);
    this.hup = handler;
    process.on('SIGHUP', handler);
    if (this.hupEarly) {
      this.hupEarly = false;
      handler();
    }
  }

  /** Called (once) when the primary disconnects; at once if it already has. */
  onPrimaryGone(listener: () => void): void {
    if (this.gone) queueMicrotask(listener);
    else this.goneListeners.push(listener);
  }

  /** Answers the primary's requests of this kind. */
  serve(kind: 'reload', handler: (trigger: string, sourceIp?: string) => Promise<unknown>): void;
  serve(kind: 'metrics', handler: () => Promise<unknown>): void;
  serve(kind: 'reload' | 'metrics', handler: ((trigger: string, sourceIp?: string) => Promise<unknown>) | (() => Promise<unknown>)): void {
    (this.handlers as Record<string, unknown>)[kind] = handler;
  }

  /** Tells the primary this worker is listening (with its handlers installed). */
  ready(): void {
    this.send({ pdp: 'ready' });
  }

  /** Asks the primary to reload every other worker; resolves with their answers. */
  reloadOthers(trigger: string, sourceIp?: string): Promise<WorkerReload[]> {
    return this.request({ kind: 'reload-others', trigger, sourceIp }, RELOAD_WAIT_MS + 5_000) as Promise<WorkerReload[]>;
  }

  /** Asks the primary for the metrics of every worker, aggregated (Prometheus text). */
  clusterMetrics(): Promise<string> {
    return this.request({ kind: 'metrics' }, METRICS_WAIT_MS + 5_000) as Promise<string>;
  }

  /** The end: stops answering, disconnects from the primary so the process can exit with its code. */
  release(): void {
    process.off('SIGHUP', this.hup);
    if (process.connected) process.disconnect();
    // Whatever might still hold the loop open (it should be nothing) does not keep an orphan alive.
    setTimeout(() => process.exit(), 5_000).unref();
  }

  private send(message: FromWorker): boolean {
    if (!process.connected || !process.send) return false;
    process.send(message, undefined, undefined, () => undefined);
    return true;
  }

  private request(message: { kind: 'reload-others'; trigger: string; sourceIp?: string } | { kind: 'metrics' }, ms: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      if (!this.send({ pdp: 'request', id, ...message } as FromWorker)) {
        reject(new Error('the primary process is gone'));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error('the primary did not answer in time'));
      }, ms);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  private onMessage(message: FromPrimary): void {
    if (message === null || typeof message !== 'object' || !('pdp' in message)) return;
    if (message.pdp === 'reply') {
      const p = this.pending.get(message.id);
      if (!p) return;
      this.pending.delete(message.id);
      clearTimeout(p.timer);
      if (message.error !== undefined) p.reject(new Error(message.error));
      else p.resolve(message.value);
      return;
    }
    if (message.pdp === 'ask') {
      const answer = (value: { value?: unknown; error?: string }) => this.send({ pdp: 'answer', id: message.id, ...value });
      const handler = message.kind === 'reload' ? this.handlers.reload && (() => this.handlers.reload!(message.trigger, message.sourceIp)) : this.handlers.metrics;
      if (!handler) {
        answer({ error: 'not ready' });
        return;
      }
      handler().then((value) => answer({ value }), (e: unknown) => answer({ error: (e as Error).message }));
    }
  }
}
