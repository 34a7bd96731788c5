// What a benchmark suite returns to bench/run.ts. A suite module exports
// `async function run(opts: SuiteOptions): Promise<SuiteResult>`.

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
