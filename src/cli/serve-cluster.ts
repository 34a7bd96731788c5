// `pdp serve --workers N`: a node:cluster primary that forks N workers sharing the listening
// socket. Each worker runs the ordinary single-process server with its own engine and its own
// connection to the audit store (SQLite WAL serialises their group commits), so the
// nothing-lost guarantee holds per worker.
//
// The primary:
// - starts the workers and says `listening` once every one has reported ready; a worker that dies
//   before the cluster was ever ready (port in use, unopenable audit store) stops them all, exit 1;
// - replaces a worker that dies later, and gives up (stops all, exit 1) when more than N die within
//   a minute; whenever it stops because of a failure it exits 1;
// - forwards SIGHUP and policy file changes to the workers that reported ready (a worker still
//   starting gets it once it is ready), and SIGTERM/SIGINT (drain) to every worker;
// - relays what one worker needs from the others: `POST /v1/policies/reload` reloads every worker
//   (`reload-others`), and `/metrics` is the sum over every worker (`metrics`).
//
// IPC messages are plain objects with a `pdp` field (node:cluster's own travel as `internalMessage`).
import cluster, { type Worker } from 'node:cluster';
import path from 'node:path';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { EXIT_FINDING, EXIT_OK, type CliIo } from './io';
import { reloadOnSettledChanges, watchDirectories } from './watch';

export const WORKER_ENV = 'PDP_CLUSTER_WORKER';

export function isClusterWorker(env: NodeJS.ProcessEnv): boolean {
  return env[WORKER_ENV] === '1';
}

/** How long the primary waits for the other workers' reloads, and for their metrics. */
const RELOAD_WAIT_MS = 15_000;
const METRICS_WAIT_MS = 5_000;
/** A worker still running this long after SIGTERM (its drain is cut at 10 s) is killed. */
const STOP_KILL_MS = 15_000;

type Metrics = MetricObjectWithValues<MetricValue<string>>[];

/** What one worker answered to a reload the primary relayed (or why it did not). */
export interface WorkerReload {
  worker: number;
  /** The worker's ReloadOutcome (JSON). */
  outcome?: { ok: boolean; version?: string; serving?: string; message?: string; auditUnavailable?: true };
  /** `timeout`: no answer in time. */
  error?: string;
}

/** worker → primary */
type FromWorker =
  | { pdp: 'ready' }
  | { pdp: 'request'; id: number; kind: 'reload-others'; trigger: string; sourceIp?: string }
  | { pdp: 'request'; id: number; kind: 'metrics' }
  | { pdp: 'answer'; id: number; value?: unknown; error?: string };
/** primary → worker */
type FromPrimary =
  | { pdp: 'ask'; id: number; kind: 'reload'; trigger: string; sourceIp?: string }
  | { pdp: 'ask'; id: number; kind: 'metrics' }
  | { pdp: 'reply'; id: number; value?: unknown; error?: string };

interface Slot {
  id: number;
  worker: Worker | undefined;
  ready: boolean;
  /** A SIGHUP (or file change) arrived while this slot's worker was starting. */
  pendingHup: boolean;
  /** API reloads asked while this slot's worker was starting (their triggers). */
  pendingReloads: { trigger: string; sourceIp?: string }[];
}

export interface PrimaryOptions {
  /** Deaths (after start-up) tolerated within `deathWindowMs` before giving up; default: the worker count. */
  maxDeaths?: number;
  deathWindowMs?: number;
  /** The workers' `--shutdown-delay`: they wait this long before draining, so they are not killed for it. */
  shutdownDelayMs?: number;
}

/** Forks `count` workers running `pdp serve` with `workerArgs`; resolves with the exit code. */
export function runPrimary(count: number, workerArgs: string[], policyDir: string, watch: boolean, io: CliIo, options: PrimaryOptions = {}): Promise<number> {
  cluster.setupPrimary({ exec: path.join(__dirname, '../../../bin/pdp.js'), args: ['serve', ...workerArgs, '--no-watch'] });
  const maxDeaths = options.maxDeaths ?? count;
  const deathWindowMs = options.deathWindowMs ?? 60_000;
  const slots: Slot[] = Array.from({ length: count }, (_, i) => ({ id: i + 1, worker: undefined, ready: false, pendingHup: false, pendingReloads: [] }));
  const alive = new Set<Worker>();
  const deaths: number[] = [];
  let everReady = false;
  let stopping = false;
  let failed = false;
  let address: { address?: string; port: number } | undefined;
  let watcher: { close(): void } | undefined;
  let settledReloads: ReturnType<typeof reloadOnSettledChanges> | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  let finish: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => { finish = resolve; });

  // The primary's own requests to workers, each waiting for the answers of a set of workers.
  let nextAsk = 1;
  const asks = new Map<number, { waiting: Map<Worker, Slot>; answers: Map<number, { value?: unknown; error?: string }>; settle(): void }>();
  const send = (worker: Worker, message: FromPrimary) => {
    if (worker.isConnected()) worker.send(message, () => undefined);
  };

  /** Asks each of `targets` (ready slots); resolves with their answers by worker number, `timeout` for none in time; a worker that exits meanwhile is left out. */
  function ask(targets: Slot[], message: { kind: 'reload'; trigger: string; sourceIp?: string } | { kind: 'metrics' }, ms: number): Promise<Map<number, { value?: unknown; error?: string }>> {
    return new Promise((resolve) => {
      const id = nextAsk++;
      const entry = {
        waiting: new Map(targets.filter((s) => s.worker).map((s) => [s.worker!, s] as const)),
        answers: new Map<number, { value?: unknown; error?: string }>(),
        settle() {
          if (entry.waiting.size > 0) return;
          clearTimeout(timer);
          asks.delete(id);
          resolve(entry.answers);
        },
      };
      const timer = setTimeout(() => {
        for (const slot of entry.waiting.values()) entry.answers.set(slot.id, { error: 'timeout' });
        entry.waiting.clear();
        entry.settle();
      }, ms);
      asks.set(id, entry);
      for (const worker of entry.waiting.keys()) send(worker, { pdp: 'ask', id, ...message } as FromPrimary);
      entry.settle();
    });
  }

  const hupAll = () => {
    for (const slot of slots) {
      if (slot.worker && slot.ready) slot.worker.process.kill('SIGHUP');
      else slot.pendingHup = true;
    }
  };

  function stop(failure: boolean) {
    failed ||= failure;
    if (stopping) return;
    stopping = true;
    settledReloads?.cancel();
    watcher?.close();
    for (const worker of alive) worker.process.kill('SIGTERM');
    const killAfterMs = STOP_KILL_MS + (options.shutdownDelayMs ?? 0);
    killTimer = setTimeout(() => {
      for (const worker of alive) {
        io.stderr.write(`pdp serve: worker pid ${worker.process.pid} still running ${killAfterMs / 1000} s after SIGTERM; killing it\n`);
        worker.process.kill('SIGKILL');
      }
    }, killAfterMs);
    settleIfDone();
  }

  function settleIfDone() {
    if (!stopping || alive.size > 0) return;
    clearTimeout(killTimer);
    process.off('SIGHUP', hupAll);
    process.off('SIGTERM', onStopSignal);
    process.off('SIGINT', onStopSignal);
    finish(failed ? EXIT_FINDING : EXIT_OK);
  }

  function fork(slot: Slot) {
    const worker = cluster.fork({ [WORKER_ENV]: '1', PDP_WORKER_ID: String(slot.id) });
    const pid = worker.process.pid;
    slot.worker = worker;
    slot.ready = false;
    alive.add(worker);
    worker.on('listening', (where) => { address = where; });
    worker.on('message', (message: FromWorker) => {
      if (message === null || typeof message !== 'object' || !('pdp' in message)) return;
      if (message.pdp === 'ready') onReady(slot, worker);
      else if (message.pdp === 'answer') {
        const entry = asks.get(message.id);
        if (!entry || !entry.waiting.has(worker)) return;
        entry.waiting.delete(worker);
        entry.answers.set(slot.id, message.error !== undefined ? { error: message.error } : { value: message.value });
        entry.settle();
      } else if (message.pdp === 'request') {
        void answerRequest(slot, worker, message);
      }
    });
    // A worker that cannot start (or that errs on its channel) ends in `exit`; nothing else to do here.
    worker.on('error', () => undefined);
    worker.on('exit', (code, signal) => {
      alive.delete(worker);
      const wasReady = slot.ready;
      if (slot.worker === worker) {
        slot.worker = undefined;
        slot.ready = false;
      }
      for (const entry of asks.values()) {
        if (entry.waiting.delete(worker)) entry.settle();
      }
      if (stopping) {
        settleIfDone();
        return;
      }
      const how = signal ? `signal ${signal}` : `exit code ${code}`;
      if (!everReady) {
        // Start-up: the same cause (the port, the audit store, the files) would fail every worker.
        io.stderr.write(`pdp serve: worker ${slot.id} (pid ${pid}) failed to start (${how}); stopping\n`);
        stop(true);
        return;
      }
      const now = Date.now();
      deaths.push(now);
      while (deaths.length > 0 && deaths[0]! <= now - deathWindowMs) deaths.shift();
      if (deaths.length > maxDeaths) {
        io.stderr.write(`pdp serve: worker ${slot.id} (pid ${pid}) ${wasReady ? 'exited' : 'failed to start'} (${how}); ${deaths.length} worker deaths within ${Math.round(deathWindowMs / 1000)} s, giving up; stopping\n`);
        stop(true);
        return;
      }
      io.stderr.write(`pdp serve: worker ${slot.id} (pid ${pid}) ${wasReady ? 'exited' : 'failed to start'} (${how}); starting a replacement\n`);
      fork(slot);
    });
  }

  function onReady(slot: Slot, worker: Worker) {
    if (slot.worker !== worker) return;
    slot.ready = true;
    io.stderr.write(`pdp serve: worker ${slot.id} ready (pid ${worker.process.pid})\n`);
    // What happened while it was starting: it may have read the files before they changed.
    if (slot.pendingHup) {
      slot.pendingHup = false;
      worker.process.kill('SIGHUP');
    }
    for (const pending of slot.pendingReloads.splice(0)) send(worker, { pdp: 'ask', id: 0, kind: 'reload', ...pending });
    if (!everReady && slots.every((s) => s.ready)) {
      everReady = true;
      if (stopping) return;
      const host = address?.address ?? '127.0.0.1';
      const scheme = workerArgs.includes('--tls-cert') ? 'https' : 'http';
      io.stdout.write(`pdp serve: listening on ${scheme}://${host.includes(':') ? `[${host}]` : host}:${address?.port ?? '?'} (${count} workers)\n`);
    }
  }

  async function answerRequest(from: Slot, worker: Worker, request: Extract<FromWorker, { pdp: 'request' }>) {
    const reply = (value: { value?: unknown; error?: string }) => send(worker, { pdp: 'reply', id: request.id, ...value });
    if (request.kind === 'reload-others') {
      const targets: Slot[] = [];
      for (const slot of slots) {
        if (slot === from) continue;
        if (slot.worker && slot.ready) targets.push(slot);
        // Still starting: it reloads as soon as it is ready (it may have read the files before the change).
        else slot.pendingReloads.push({ trigger: request.trigger, sourceIp: request.sourceIp });
      }
      const answers = await ask(targets, { kind: 'reload', trigger: request.trigger, sourceIp: request.sourceIp }, RELOAD_WAIT_MS);
      const value: WorkerReload[] = [...answers].map(([id, a]) => (a.error !== undefined ? { worker: id, error: a.error } : { worker: id, outcome: a.value as WorkerReload['outcome'] }));
      reply({ value });
      return;
    }
    // Metrics: every ready worker's registry (the asking one's included), summed by prom-client's
    // aggregators. A worker that exited meanwhile is left out; one that does not answer fails the
    // scrape (a partial sum would look like a counter reset to Prometheus).
    const answers = await ask(slots.filter((s) => s.worker && s.ready), { kind: 'metrics' }, METRICS_WAIT_MS);
    const silent = [...answers].filter(([, a]) => a.error !== undefined).map(([id]) => id);
    if (silent.length > 0) {
      reply({ error: `worker${silent.length > 1 ? 's' : ''} ${silent.join(', ')} did not answer in time` });
      return;
    }
    try {
      const registry = AggregatorRegistry.aggregate([...answers.values()].map((a) => a.value as Metrics));
      reply({ value: await registry.metrics() });
    } catch (e) {
      reply({ error: (e as Error).message });
    }
  }

  const onStopSignal = () => stop(false);
  process.on('SIGHUP', hupAll);
  process.on('SIGTERM', onStopSignal);
  process.on('SIGINT', onStopSignal);
  if (watch) {
    try {
      settledReloads = reloadOnSettledChanges(policyDir, hupAll);
      watcher = watchDirectories(policyDir, settledReloads.changed);
    } catch {
      io.stderr.write('pdp serve: cannot watch the policy directory; reload with SIGHUP\n');
    }
  }
  for (const slot of slots) fork(slot);
  return done;
}

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
