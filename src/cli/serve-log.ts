// The lines `pdp serve` itself writes on stderr (start-up, reloads, audit outages, workers, shutdown),
// in the format --log-format asks for. `text` is for a person at a terminal: `pdp serve: …` lines,
// with a refused set's diagnostics on lines of their own. `json` is for a log shipper: one object per
// line with pino's keys (`level`, `time`, `pid`, `hostname`, `msg`), so that with the HTTP server's
// own pino lines every line on stderr parses the same way. These lines are never filtered by
// --log-level: what they say (a reload refused, the audit store down, a worker replaced) is always
// wanted. Usage errors (exit 2) are not written here: they stay text, for the person typing the command.
import os from 'node:os';
import type { CliIo } from './io';

export type LogFormat = 'text' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];

/** A diagnostic as a log line carries it: where, which check, what. */
export interface LoggedDiagnostic {
  file: string;
  line: number;
  column: number;
  code: string;
  message: string;
  severity?: string;
  hint?: string;
}

export interface LogFields {
  /** A refused policy set's diagnostics: continuation lines in text, an array in json. */
  diagnostics?: readonly LoggedDiagnostic[];
  /** Anything else a shipper may filter on (json only; text says it in the message). */
  [field: string]: unknown;
}

export interface ServeLog {
  readonly format: LogFormat;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** The `worker` key of a json line: the --workers slot (a number), none outside a worker. */
export function workerField(workerId: string | undefined): { worker?: number | string } {
  if (workerId === undefined) return {};
  return { worker: /^\d+$/.test(workerId) ? Number(workerId) : workerId };
}

/** pino's numeric levels, so one filter reads both kinds of line. */
const LEVELS = { info: 30, warn: 40, error: 50 } as const;

/**
 * The log of `pdp serve` on `io.stderr`. `worker` is the --workers slot of this process (json lines
 * carry it as `worker`; the primary's lines have none). `now` is injectable for tests.
 */
export function createServeLog(format: LogFormat, io: Pick<CliIo, 'stderr'>, worker?: string, now: () => number = Date.now): ServeLog {
  const hostname = os.hostname();
  const write = (level: keyof typeof LEVELS, message: string, fields: LogFields = {}) => {
    if (format === 'json') {
      const { diagnostics, ...rest } = fields;
      const line = {
        level: LEVELS[level], time: now(), pid: process.pid, hostname,
        ...workerField(worker),
        msg: message, ...rest,
        ...(diagnostics === undefined ? {} : { diagnostics }),
      };
      io.stderr.write(`${JSON.stringify(line)}\n`);
      return;
    }
    const continuation = (fields.diagnostics ?? []).map((d) => `  ${d.file}:${d.line}:${d.column}: ${d.code}: ${d.message}\n`).join('');
    io.stderr.write(`pdp serve: ${message}\n${continuation}`);
  };
  return {
    format,
    info: (message, fields) => write('info', message, fields),
    warn: (message, fields) => write('warn', message, fields),
    error: (message, fields) => write('error', message, fields),
  };
}
