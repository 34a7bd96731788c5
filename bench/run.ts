// `npm run bench` → node dist/bench/run.js [--quick] [--only engine,audit,memory] [--skip audit] (--help: USAGE below)
//
// Runs the benchmark suites one after another and writes, under bench/results/:
//   results-<date>.json   everything measured, with the machine stamp
//   latest.md             the Markdown report (tables)
//   + each suite's files  (engine-latency.svg; audit-insert-rate.svg, audit-analyses.svg; server-rss.svg)
// A --quick smoke run (~1 minute for the engine suite) writes results-<date>-quick.json,
// latest-quick.md and the plots as …-quick.svg instead, so it never overwrites a full run.
//
// `node dist/bench/run.js --render bench/results/results-<date>.json` rewrites latest.md (and the
// suites' files) from a saved results file, for suites that export `render(data)`, without re-running.
//
// A suite is a module in dist/bench/ exporting `async function run(opts: SuiteOptions): Promise<SuiteResult>`;
// add it to SUITES (and `render(data)` to support --render).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchArgs, refuse } from './args';
import type { SuiteResult, SuiteRunner } from './suite';

/** Suite modules, run in this order; a missing module is skipped with a note. */
export const SUITES: readonly string[] = ['engine', 'server', 'audit', 'memory', 'workers'];

export interface Machine {
  cpu: string;
  cores: number;
  totalMemoryGB: number;
  node: string;
  platform: string;
  date: string;
  commit: string | null;
  dirty: boolean | null;
  loadAverageAtStart: number[];
}

export function machineStamp(): Machine {
  const git = (...args: string[]) => {
    try {
      return execFileSync('git', args, { cwd: path.resolve(__dirname, '../..'), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return null;
    }
  };
  const commit = git('rev-parse', 'HEAD');
  const status = commit ? git('status', '--porcelain', '--untracked-files=no') : null;
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    totalMemoryGB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    date: new Date().toISOString(),
    commit,
    dirty: status === null ? null : status.length > 0,
    loadAverageAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

/** The runner for a suite module, or why there is none. */
function loadSuite(name: string): { runner?: SuiteRunner; why?: string } {
  const file = path.join(__dirname, `${name}.js`);
  if (!fs.existsSync(file)) return { why: `dist/bench/${name}.js does not exist` };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(file) as Record<string, unknown>;
  if (typeof mod.run === 'function') return { runner: mod.run as SuiteRunner };
  return { why: `dist/bench/${name}.js exports no \`run\` function` };
}

export const USAGE = `usage: node dist/bench/run.js [--quick] [--only SUITE,…] [--skip SUITE,…]
       node dist/bench/run.js --render bench/results/results-<date>.json
       (npm run bench -- FLAGS runs the first form)

Runs the benchmark suites (${SUITES.join(', ')}) one after another and writes, under
bench/results/: results-<date>.json (everything measured, with the machine stamp), latest.md (the
report) and each suite's plots (*.svg); see docs/benchmarks.md.

  --quick          a smoke run (about 70 s): smaller sizes, shorter runs; it writes
                   results-<date>-quick.json, latest-quick.md, *-quick.svg, never a full run's files
  --only A,B       run only these suites
  --skip A,B       run all but these (with either, a partial run: its files are named …-partial)
  --render FILE    re-write latest.md and the suites' files from a saved results file; measures nothing
  -h, --help       this text
`;

/** The flags, or the exit code when nothing is to run (--help, a bad flag). */
function parseArgs(argv: string[]): { quick: boolean; only: string[] | null; skip: string[]; render: string | null } | { exit: number } {
  const parsed = benchArgs('run.js', USAGE, argv, { quick: { type: 'boolean' }, only: { type: 'string' }, skip: { type: 'string' }, render: { type: 'string' } });
  if ('exit' in parsed) return parsed;
  const { values } = parsed;
  const list = (value: string | undefined) => (value === undefined ? null : value.split(',').map((s) => s.trim()).filter(Boolean));
  return { quick: values.quick === true, only: list(values.only), skip: list(values.skip) ?? [], render: values.render ?? null };
}

export function renderReport(machine: Machine, quick: boolean, suites: SuiteResult[], skipped: { name: string; why: string }[]): string {
  const out: string[] = [];
  out.push(`# pdp benchmarks${quick ? ' (quick smoke run)' : ''}`);
  out.push('');
  out.push(`- date: ${machine.date}`);
  out.push(`- commit: ${machine.commit ?? 'unknown'}${machine.dirty ? ' (with uncommitted changes)' : ''}`);
  out.push(`- machine: ${machine.cpu}, ${machine.cores} cores, ${machine.totalMemoryGB} GB RAM, ${machine.platform}`);
  out.push(`- Node ${machine.node}; load average at start ${machine.loadAverageAtStart.join(' / ')} (a shared machine: other work was running)`);
  out.push('- reproduce: `npm run build && npm run bench` (or `node dist/bench/run.js --quick`); see docs/benchmarks.md');
  out.push('');
  for (const s of suites) {
    out.push(`## ${s.title}`);
    out.push('');
    out.push(`_suite \`${s.name}\`, ${(s.durationMs / 1000).toFixed(0)} s_`);
    out.push('');
    out.push(s.markdown);
    out.push('');
  }
  if (skipped.length) {
    out.push('## Suites not run');
    out.push('');
    for (const s of skipped) out.push(`- ${s.name}: ${s.why}`);
    out.push('');
  }
  return out.join('\n');
}

type SavedResults = { machine: Machine; quick: boolean; suites: SuiteResult[]; skipped: { name: string; why: string }[] };

/** Re-render latest(-quick).md and the suites' files from a saved results JSON. */
function rerender(file: string, resultsDir: string): number {
  const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as SavedResults;
  const suites = saved.suites.map((s) => {
    const modPath = path.join(__dirname, `${s.name}.js`);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = fs.existsSync(modPath) ? (require(modPath) as Record<string, unknown>) : {};
    if (typeof mod.render !== 'function') return s;
    const data = { quick: saved.quick, ...(s.data as object) };
    return { ...(mod.render as (d: unknown) => Omit<SuiteResult, 'durationMs'>)(data), durationMs: s.durationMs };
  });
  const suffix = saved.quick ? '-quick' : '';
  fs.writeFileSync(path.join(resultsDir, `latest${suffix}.md`), renderReport(saved.machine, saved.quick, suites, saved.skipped ?? []));
  for (const s of suites) for (const f of s.files ?? []) fs.writeFileSync(path.join(resultsDir, path.basename(f.name)), f.content);
  process.stderr.write(`re-rendered latest${suffix}.md from ${file}\n`);
  return 0;
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const args = parseArgs(argv);
  if ('exit' in args) return args.exit;
  if (args.render) return rerender(args.render, path.resolve(__dirname, '../../bench/results'));
  // A misspelt suite must not run nothing and report that as a result.
  const unknown = [...(args.only ?? []), ...args.skip].filter((name) => !SUITES.includes(name));
  if (unknown.length > 0 || (args.only !== null && args.only.length === 0)) {
    return refuse('run.js', `${unknown.length ? `unknown suite ${unknown.map((n) => `\`${n}\``).join(', ')}` : '--only names no suite'}; the suites are ${SUITES.join(', ')}`).exit;
  }
  // A partial run (--only, --skip) never replaces a full run's files: its names say `-partial`.
  const partial = args.only !== null || args.skip.length > 0;
  const machine = machineStamp();
  const resultsDir = path.resolve(__dirname, '../../bench/results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const log = (line: string) => process.stderr.write(`${line}\n`);
  log(`pdp bench${args.quick ? ' --quick' : ''}: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, commit ${machine.commit?.slice(0, 12) ?? 'unknown'}`);

  const results: SuiteResult[] = [];
  const skipped: { name: string; why: string }[] = [];
  const failed: { name: string; error: string }[] = [];
  for (const name of SUITES) {
    if (args.only && !args.only.includes(name)) continue;
    if (args.skip.includes(name)) {
      skipped.push({ name, why: 'skipped (--skip)' });
      continue;
    }
    const { runner, why } = loadSuite(name);
    if (!runner) {
      skipped.push({ name, why: why! });
      log(`- ${name}: not run (${why})`);
      continue;
    }
    log(`- ${name}:`);
    try {
      results.push(await runner({ quick: args.quick, log }));
    } catch (e) {
      const error = (e as Error).stack ?? String(e);
      failed.push({ name, error });
      skipped.push({ name, why: `failed: ${(e as Error).message}` });
      log(`  ${name} failed: ${error}`);
    }
  }

  const stamp = machine.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
  const suffix = `${partial ? '-partial' : ''}${args.quick ? '-quick' : ''}`;
  const jsonPath = path.join(resultsDir, `results-${stamp}${suffix}.json`);
  fs.writeFileSync(jsonPath, JSON.stringify({ machine, quick: args.quick, partial, suites: results.map(({ files: _f, ...rest }) => rest), skipped, failed }, null, 2) + '\n');
  const mdPath = path.join(resultsDir, `latest${suffix}.md`);
  fs.writeFileSync(mdPath, renderReport(machine, args.quick, results, skipped));
  // The suites name their files (`…-quick` for a quick run); a partial run adds `-partial` before the extension.
  const fileName = (name: string) => (partial ? path.basename(name).replace(/(-quick)?(\.[a-z]+)$/, '-partial$1$2') : path.basename(name));
  const written = results.flatMap((s) => s.files ?? []).map((f) => {
    fs.writeFileSync(path.join(resultsDir, fileName(f.name)), f.content);
    return fileName(f.name);
  });
  log(`wrote ${path.relative(process.cwd(), jsonPath)}, ${path.relative(process.cwd(), mdPath)}${written.map((n) => `, bench/results/${n}`).join('')}`);
  return failed.length ? 1 : 0;
}

if (require.main === module) {
  main().then((code) => {
    process.exitCode = code;
  }, (e) => {
    process.stderr.write(`${(e as Error).stack ?? e}\n`);
    process.exitCode = 1;
  });
}
