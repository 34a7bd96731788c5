// `pdp serve --workers N`: a node:cluster primary that forks N workers sharing the listening
// socket. Each worker runs the ordinary single-process server with its own engine and its own
// connection to the audit store (SQLite WAL serialises their group commits), so the
// nothing-lost guarantee holds per worker. The primary watches the policy directory and
// forwards SIGHUP (reload) and SIGTERM/SIGINT (drain) to every worker.
import cluster, { type Worker } from 'node:cluster';
import path from 'node:path';
import { EXIT_FINDING, EXIT_OK, type CliIo } from './io';
import { watchDirectories } from './watch';

export const WORKER_ENV = 'PDP_CLUSTER_WORKER';

export function isClusterWorker(env: NodeJS.ProcessEnv): boolean {
  return env[WORKER_ENV] === '1';
}

/** Forks `count` workers running `pdp serve` with `workerArgs`; resolves with the exit code. */
export function runPrimary(count: number, workerArgs: string[], policyDir: string, watch: boolean, io: CliIo): Promise<number> {
  cluster.setupPrimary({ exec: path.join(__dirname, '../../../bin/pdp.js'), args: ['serve', ...workerArgs, '--no-watch'] });
  const workers = new Set<Worker>();
  let listening = 0;
  let stopping = false;
  return new Promise((resolve) => {
    const signalAll = (signal: NodeJS.Signals) => { for (const w of workers) w.process.kill(signal); };
    for (let i = 0; i < count; i++) {
      const worker = cluster.fork({ [WORKER_ENV]: '1', PDP_WORKER_ID: String(i + 1) });
      workers.add(worker);
      worker.on('listening', (address) => {
        if (++listening === count) {
          const host = address.address ?? '127.0.0.1';
          const scheme = workerArgs.includes('--tls-cert') ? 'https' : 'http';
          io.stdout.write(`pdp serve: listening on ${scheme}://${host.includes(':') ? `[${host}]` : host}:${address.port} (${count} workers)\n`);
        }
      });
      worker.on('exit', (code) => {
        workers.delete(worker);
        if (!stopping) {
          // A worker that dies on its own takes the cluster down: half a PDP is worse than none.
          io.stderr.write(`pdp serve: worker ${i + 1} exited (${code}); stopping\n`);
          stopping = true;
          signalAll('SIGTERM');
        }
        if (workers.size === 0) {
          watcher?.close();
          resolve(stopping && code !== 0 && listening < count ? EXIT_FINDING : EXIT_OK);
        }
      });
    }
    let watcher: { close(): void } | undefined;
    if (watch) {
      let timer: NodeJS.Timeout | undefined;
      try {
        watcher = watchDirectories(policyDir, () => {
          clearTimeout(timer);
          timer = setTimeout(() => signalAll('SIGHUP'), 250);
        });
      } catch {
        io.stderr.write('pdp serve: cannot watch the policy directory; reload with SIGHUP\n');
      }
    }
    process.on('SIGHUP', () => signalAll('SIGHUP'));
    const stop = () => {
      stopping = true;
      signalAll('SIGTERM');
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
