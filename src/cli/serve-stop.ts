// `pdp serve`'s way out once it listens: on SIGTERM or SIGINT (after the --shutdown-delay lame
// duck), when a --workers primary is gone, or when the audit file was replaced, it drains the
// in-flight requests and the audit queue, closes everything and resolves with the exit code.
import type { FastifyInstance } from 'fastify';
import { EXIT_OK } from './io';
import type { WorkerLink } from './serve-cluster';
import type { ServeLog } from './serve-log';

/** What the stop sequence shares with the parts opened before it runs. */
export interface ServeShutdown {
  /** True once a lame duck has begun: /v1/ready answers 503 while everything else is still served. */
  notReady: boolean;
  /** Set once the server runs: drains and stops with an exit code. */
  stopWith?: (reason: string, code: number) => void;
}

/** A server that listens, as the stop sequence needs it. */
export interface RunningServer {
  app: FastifyInstance;
  /** Says that it listens (and a --workers worker, that it is ready); called once the signal handlers are in place. */
  announce(): void;
  /** Closes everything that was opened, in order, the audit side last. */
  close(): Promise<void>;
}

/** Serves until stopped; resolves with the exit code once everything is closed. */
export function serveUntilStopped(running: RunningServer, shutdownDelayMs: number, shutdown: ServeShutdown, log: ServeLog, link: WorkerLink | undefined): Promise<number> {
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string, code: number = EXIT_OK, delayMs = 0) => {
      if (stopping) return;
      stopping = true;
      if (delayMs > 0) {
        // Lame duck: readiness fails first, so load balancers and kubelets stop sending here, while
        // requests still arriving (they notice within a probe period or two) are answered as usual.
        // A second signal ends the wait; a third has the default effect (the first handlers were `once`).
        shutdown.notReady = true;
        log.info(`${signal}: not ready; draining in ${delayMs / 1000} s`);
        await untilDelayOrSignal(delayMs);
      }
      log.info(`${signal}: draining`);
      // app.close() (see buildServer's preClose hook): the listener stops accepting, idle keep-alive
      // connections are closed, requests already read finish (and are audited) with `Connection:
      // close`, and a request that still arrives is answered 503 `shutting_down` with `Connection:
      // close`. After 10 s whatever is left is cut.
      const deadline = setTimeout(() => running.app.server.closeAllConnections(), 10_000);
      await running.close();
      clearTimeout(deadline);
      log.info('stopped', { exit_code: code });
      // (A cluster worker's IPC channel, which would keep it alive, is released by `run`.)
      resolve(code);
    };
    shutdown.stopWith = (reason, code) => void stop(reason, code);
    // A worker whose primary is gone (even SIGKILLed) drains and stops instead of lingering.
    link?.onPrimaryGone(() => void stop('primary gone'));
    process.once('SIGTERM', () => void stop('SIGTERM', EXIT_OK, shutdownDelayMs));
    process.once('SIGINT', () => void stop('SIGINT', EXIT_OK, shutdownDelayMs));

    // Said only now that the signal handlers are in place: a supervisor that sends SIGTERM as soon
    // as it reads this line must get a drain, not the default action (seen under load in a test).
    running.announce();
  });
}

/** The lame duck's wait: `delayMs`, or until a second SIGTERM or SIGINT. */
function untilDelayOrSignal(delayMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const skip = () => {
      clearTimeout(timer);
      process.off('SIGTERM', skip);
      process.off('SIGINT', skip);
      resolve();
    };
    const timer = setTimeout(skip, delayMs);
    process.once('SIGTERM', skip);
    process.once('SIGINT', skip);
  });
}
