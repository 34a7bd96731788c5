// What a benchmark suite returns to bench/run.ts. A suite module exports
// `async function run(opts: SuiteOptions): Promise<SuiteResult>`.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface SuiteOptions {
  /** A ~1-minute smoke run: smaller N, shorter budgets. */
  quick: boolean;
  /** Progress lines (to stderr by default). */
  log?: (line: string) => void;
}

export interface SuiteFile {
  /** A file name inside bench/results/ (no directories). */
  name: string;
  content: string;
}

export interface SuiteResult {
  /** Short id, e.g. `engine`. */
  name: string;
  /** Heading for the Markdown report. */
  title: string;
  durationMs: number;
  /** The suite's section of latest.md (tables, notes); without its heading. */
  markdown: string;
  /** Everything measured, for results-<date>.json. */
  data: unknown;
  /** Extra files to write into bench/results/ (e.g. an SVG plot). */
  files?: SuiteFile[];
}

export type SuiteRunner = (opts: SuiteOptions) => Promise<SuiteResult>;

const liveTempDirs = new Set<string>();
let removedOnExit = false;

/**
 * A temporary directory for a benchmark's files. The suite removes it when it ends; this also
 * removes it when the process exits early, Ctrl-C and SIGTERM included (a code snapshot or a
 * database of a run that was stopped must not stay in /tmp).
 */
export function benchTempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  liveTempDirs.add(dir);
  if (!removedOnExit) {
    removedOnExit = true;
    process.on('exit', () => {
      for (const d of liveTempDirs) fs.rmSync(d, { recursive: true, force: true });
    });
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  }
  return dir;
}
