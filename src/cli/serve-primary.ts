// `pdp serve --workers N`: the node:cluster primary, which serves nothing itself (the IPC protocol
// and the worker's side, WorkerLink, are in serve-cluster.ts). The primary:
// - starts the workers and says `listening` once every one has reported ready; a worker that dies
//   before the cluster was ever ready (port in use, unopenable audit store) stops them all, exit 1;
// - replaces a worker that dies later, and gives up (stops all, exit 1) when more than N die within
//   a minute; whenever it stops because of a failure it exits 1;
// - forwards SIGHUP and policy file changes to the workers that reported ready (a worker still
//   starting gets it once it is ready), and SIGTERM/SIGINT (drain) to every worker;
// - relays what one worker needs from the others: `POST /v1/policies/reload` reloads every worker
//   (`reload-others`), and `/metrics` is the sum over every worker (`metrics`).
import cluster, { type Worker } from 'node:cluster';
import path from 'node:path';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { EXIT_FINDING, EXIT_OK, type CliIo } from './io';
import type { ServeLog } from './serve-log';
import { METRICS_WAIT_MS, RELOAD_WAIT_MS, WORKER_ENV, type FromPrimary, type FromWorker, type WorkerReload } from './serve-cluster';
import { reloadOnSettledChanges, watchDirectories } from './watch';

/** A worker still running this long after SIGTERM (its drain is cut at 10 s) is killed. */
const STOP_KILL_MS = 15_000;

type Metrics = MetricObjectWithValues<MetricValue<string>>[];

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
export function runPrimary(count: number, workerArgs: string[], policyDir: string, watch: boolean, io: CliIo, log: ServeLog, options: PrimaryOptions = {}): Promise<number> {
  cluster.setupPrimary({ exec: path.join(__dirname, '../../../bin/pdp.js'), args: ['serve', ...workerArgs, '--no-watch'] });
  let finish: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => { finish = resolve; });
  new Primary(count, workerArgs, io, log, options, finish).start(policyDir, watch);
  return done;
}

type Answer = { value?: unknown; error?: string };

const send = (worker: Worker, message: FromPrimary) => {
  if (worker.isConnected()) worker.send(message, () => undefined);
};

/** The primary's own requests to workers, each waiting for the answers of a set of workers. */
class Asks {
  private nextAsk = 1;
  private readonly pending = new Map<number, { waiting: Map<Worker, Slot>; answers: Map<number, Answer>; settle(): void }>();

  /** Asks each of `targets` (ready slots); resolves with their answers by worker number, `timeout` for none in time; a worker that exits meanwhile is left out. */
  ask(targets: Slot[], message: { kind: 'reload'; trigger: string; sourceIp?: string } | { kind: 'metrics' }, ms: number): Promise<Map<number, Answer>> {
    return new Promise((resolve) => {
      const id = this.nextAsk++;
      const entry = {
        waiting: new Map(targets.filter((s) => s.worker).map((s) => [s.worker!, s] as const)),
        answers: new Map<number, Answer>(),
        settle: () => {
          if (entry.waiting.size > 0) return;
          clearTimeout(timer);
          this.pending.delete(id);
          resolve(entry.answers);
        },
      };
      const timer = setTimeout(() => {
        for (const slot of entry.waiting.values()) entry.answers.set(slot.id, { error: 'timeout' });
        entry.waiting.clear();
        entry.settle();
      }, ms);
      this.pending.set(id, entry);
      for (const worker of entry.waiting.keys()) send(worker, { pdp: 'ask', id, ...message } as FromPrimary);
      entry.settle();
    });
  }

  /** A worker's answer to one of the asks it was waited for in. */
  answered(slot: Slot, worker: Worker, message: Extract<FromWorker, { pdp: 'answer' }>): void {
    const entry = this.pending.get(message.id);
    if (!entry || !entry.waiting.has(worker)) return;
    entry.waiting.delete(worker);
    entry.answers.set(slot.id, message.error !== undefined ? { error: message.error } : { value: message.value });
    entry.settle();
  }

  /** A worker that exited is waited for no longer. */
  exited(worker: Worker): void {
    for (const entry of this.pending.values()) {
      if (entry.waiting.delete(worker)) entry.settle();
    }
  }
}

/** The primary's workers, from the first fork until the last has exited. */
class Primary {
  private readonly slots: Slot[];
  private readonly alive = new Set<Worker>();
  private readonly deaths: number[] = [];
  private readonly asks = new Asks();
  private readonly maxDeaths: number;
  private readonly deathWindowMs: number;
  private everReady = false;
  private stopping = false;
  private failed = false;
  private address: { address?: string; port: number } | undefined;
  private watcher: { close(): void } | undefined;
  private settledReloads: ReturnType<typeof reloadOnSettledChanges> | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  // The signal handlers are fields, so that the functions given to process.on are those taken off.
  /** SIGHUP and policy file changes: to each ready worker; one still starting gets it once ready. */
  private readonly hupAll = () => {
    for (const slot of this.slots) {
      if (slot.worker && slot.ready) slot.worker.process.kill('SIGHUP');
      else slot.pendingHup = true;
    }
  };
  private readonly onStopSignal = () => this.stop(false);

  constructor(private readonly count: number, private readonly workerArgs: string[], private readonly io: CliIo, private readonly log: ServeLog, private readonly options: PrimaryOptions, private readonly finish: (code: number) => void) {
    this.maxDeaths = options.maxDeaths ?? count;
    this.deathWindowMs = options.deathWindowMs ?? 60_000;
    this.slots = Array.from({ length: count }, (_, i) => ({ id: i + 1, worker: undefined, ready: false, pendingHup: false, pendingReloads: [] }));
  }

  /** Installs the signal handlers and the policy watch, then forks every worker. */
  start(policyDir: string, watch: boolean): void {
    process.on('SIGHUP', this.hupAll);
    process.on('SIGTERM', this.onStopSignal);
    process.on('SIGINT', this.onStopSignal);
    if (watch) {
      try {
        this.settledReloads = reloadOnSettledChanges(policyDir, this.hupAll);
        this.watcher = watchDirectories(policyDir, this.settledReloads.changed);
      } catch {
        this.log.warn('cannot watch the policy directory; reload with SIGHUP');
      }
    }
    for (const slot of this.slots) this.fork(slot);
  }

  private stop(failure: boolean) {
    this.failed ||= failure;
    if (this.stopping) return;
    this.stopping = true;
    this.settledReloads?.cancel();
    this.watcher?.close();
    for (const worker of this.alive) worker.process.kill('SIGTERM');
    const killAfterMs = STOP_KILL_MS + (this.options.shutdownDelayMs ?? 0);
    this.killTimer = setTimeout(() => {
      for (const worker of this.alive) {
        this.log.warn(`worker pid ${worker.process.pid} still running ${killAfterMs / 1000} s after SIGTERM; killing it`);
        worker.process.kill('SIGKILL');
      }
    }, killAfterMs);
    this.settleIfDone();
  }

  private settleIfDone() {
    if (!this.stopping || this.alive.size > 0) return;
    clearTimeout(this.killTimer);
    process.off('SIGHUP', this.hupAll);
    process.off('SIGTERM', this.onStopSignal);
    process.off('SIGINT', this.onStopSignal);
    this.finish(this.failed ? EXIT_FINDING : EXIT_OK);
  }

  private fork(slot: Slot) {
    const worker = cluster.fork({ [WORKER_ENV]: '1', PDP_WORKER_ID: String(slot.id) });
    const pid = worker.process.pid;
    slot.worker = worker;
    slot.ready = false;
    this.alive.add(worker);
    worker.on('listening', (where) => { this.address = where; });
    worker.on('message', (message: FromWorker) => {
      if (message === null || typeof message !== 'object' || !('pdp' in message)) return;
      if (message.pdp === 'ready') this.onReady(slot, worker);
      else if (message.pdp === 'answer') this.asks.answered(slot, worker, message);
      else if (message.pdp === 'request') void this.answerRequest(slot, worker, message);
    });
    // A worker that cannot start (or that errs on its channel) ends in `exit`; nothing else to do here.
    worker.on('error', () => undefined);
    worker.on('exit', (code, signal) => this.onExit(slot, worker, pid, signal ? `signal ${signal}` : `exit code ${code}`));
  }

  /** A worker exited (`how`: its exit code or signal): the end of a stop, a failed start-up, or a death to replace. */
  private onExit(slot: Slot, worker: Worker, pid: number | undefined, how: string) {
    this.alive.delete(worker);
    const wasReady = slot.ready;
    if (slot.worker === worker) {
      slot.worker = undefined;
      slot.ready = false;
    }
    this.asks.exited(worker);
    if (this.stopping) {
      this.settleIfDone();
      return;
    }
    if (!this.everReady) {
      // Start-up: the same cause (the port, the audit store, the files) would fail every worker.
      this.log.error(`worker ${slot.id} (pid ${pid}) failed to start (${how}); stopping`);
      this.stop(true);
      return;
    }
    const now = Date.now();
    this.deaths.push(now);
    while (this.deaths.length > 0 && this.deaths[0]! <= now - this.deathWindowMs) this.deaths.shift();
    if (this.deaths.length > this.maxDeaths) {
      this.log.error(`worker ${slot.id} (pid ${pid}) ${wasReady ? 'exited' : 'failed to start'} (${how}); ${this.deaths.length} worker deaths within ${Math.round(this.deathWindowMs / 1000)} s, giving up; stopping`);
      this.stop(true);
      return;
    }
    this.log.warn(`worker ${slot.id} (pid ${pid}) ${wasReady ? 'exited' : 'failed to start'} (${how}); starting a replacement`);
    this.fork(slot);
  }

  private onReady(slot: Slot, worker: Worker) {
    if (slot.worker !== worker) return;
    slot.ready = true;
    this.log.info(`worker ${slot.id} ready (pid ${worker.process.pid})`);
    // What happened while it was starting: it may have read the files before they changed.
    if (slot.pendingHup) {
      slot.pendingHup = false;
      worker.process.kill('SIGHUP');
    }
    for (const pending of slot.pendingReloads.splice(0)) send(worker, { pdp: 'ask', id: 0, kind: 'reload', ...pending });
    if (!this.everReady && this.slots.every((s) => s.ready)) {
      this.everReady = true;
      if (this.stopping) return;
      const host = this.address?.address ?? '127.0.0.1';
      const scheme = this.workerArgs.includes('--tls-cert') ? 'https' : 'http';
      const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${this.address?.port ?? '?'}`;
      this.io.stdout.write(`pdp serve: listening on ${url} (${this.count} workers)\n`);
      if (this.log.format === 'json') this.log.info(`listening on ${url} (${this.count} workers)`, { url, workers: this.count });
    }
  }

  private async answerRequest(from: Slot, worker: Worker, request: Extract<FromWorker, { pdp: 'request' }>) {
    const reply = (value: Answer) => send(worker, { pdp: 'reply', id: request.id, ...value });
    if (request.kind === 'reload-others') {
      const targets: Slot[] = [];
      for (const slot of this.slots) {
        if (slot === from) continue;
        if (slot.worker && slot.ready) targets.push(slot);
        // Still starting: it reloads as soon as it is ready (it may have read the files before the change).
        else slot.pendingReloads.push({ trigger: request.trigger, sourceIp: request.sourceIp });
      }
      const answers = await this.asks.ask(targets, { kind: 'reload', trigger: request.trigger, sourceIp: request.sourceIp }, RELOAD_WAIT_MS);
      const value: WorkerReload[] = [...answers].map(([id, a]) => (a.error !== undefined ? { worker: id, error: a.error } : { worker: id, outcome: a.value as WorkerReload['outcome'] }));
      reply({ value });
      return;
    }
    // Metrics: every ready worker's registry (the asking one's included), summed by prom-client's
    // aggregators. A worker that exited meanwhile is left out; one that does not answer fails the
    // scrape (a partial sum would look like a counter reset to Prometheus).
    const answers = await this.asks.ask(this.slots.filter((s) => s.worker && s.ready), { kind: 'metrics' }, METRICS_WAIT_MS);
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
}
