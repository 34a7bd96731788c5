// fastify gives every request a child logger bound to its request id. Making a pino child costs a few
// microseconds (bindings serialised, prototype chain set up), and at the default `warn` level a normal
// request logs nothing, so the child is made only when a line at an enabled level is written.
import type { FastifyBaseLogger } from 'fastify';

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type Bindings = Record<string, unknown>;

interface ParentLogger extends FastifyBaseLogger {
  isLevelEnabled(level: string): boolean;
}

class LazyRequestLogger {
  private made: FastifyBaseLogger | undefined;

  constructor(
    private readonly parent: ParentLogger,
    private readonly bindings: Bindings,
    private readonly options: Bindings,
  ) {}

  private real(): FastifyBaseLogger {
    return (this.made ??= this.parent.child(this.bindings, this.options));
  }

  private write(level: Level, args: unknown[]): void {
    // A per-route level override lives on the child; without one the parent's level decides.
    if (this.made === undefined && this.options.level === undefined && !this.parent.isLevelEnabled(level)) return;
    (this.real()[level] as (...a: unknown[]) => void)(...args);
  }

  get level(): string {
    return this.made?.level ?? (this.options.level as string | undefined) ?? this.parent.level;
  }

  fatal(...args: unknown[]) { this.write('fatal', args); }
  error(...args: unknown[]) { this.write('error', args); }
  warn(...args: unknown[]) { this.write('warn', args); }
  info(...args: unknown[]) { this.write('info', args); }
  debug(...args: unknown[]) { this.write('debug', args); }
  trace(...args: unknown[]) { this.write('trace', args); }
  silent() {}
  child(bindings: Bindings, options?: Bindings): FastifyBaseLogger {
    return this.real().child(bindings, options);
  }
}

/** A fastify `childLoggerFactory` that defers the pino child until something is logged. */
export function lazyChildLoggerFactory(logger: FastifyBaseLogger, bindings: Bindings, options: Bindings): FastifyBaseLogger {
  const parent = logger as ParentLogger;
  if (typeof parent.isLevelEnabled !== 'function') return logger.child(bindings, options);
  return new LazyRequestLogger(parent, bindings, options) as unknown as FastifyBaseLogger;
}
