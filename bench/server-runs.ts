// The server benchmark's ratios over every committed full run (`bench/results/server-<time>.json`,
// without `-quick` or `-partial`): for each ratio its range, per server CPU-second too, and in which
// runs it met its target. The README and docs/benchmarks-server.md quote these ranges, because one
// run on a shared 2-core machine is not a verdict; this script is how they were counted.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { benchArgs } from './args';
import { ratios as ratiosOf, type Ratio, type RatioInput } from './server-ratios';


interface Run {
  /** `HH:MM` UTC of the run, with the date when runs span several days. */
  label: string;
  file: string;
  commit: string;
  ratios: Ratio[];
}

export interface RatioSummary {
  name: string;
  target: string;
  runs: number;
  /** Labels of the runs that measured it. */
  labels: string[];
  min: number;
  max: number;
  /** The middle run's value (the mean of the two middle ones for an even count). */
  median: number;
  minPerCpu?: number;
  maxPerCpu?: number;
  /** Labels of the runs whose measured value met the target (targets only). */
  metIn?: string[];
  metPerCpuIn?: string[];
}

const FULL_RUN = /^server-(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-\d{2}Z\.json$/;

interface RunFile {
  quick?: boolean;
  machine?: { commit?: string | null };
  results?: RatioInput[];
  ratios?: Ratio[];
}

/**
 * A run's ratios: those it stored, and any ratio defined since (bench/server-ratios.ts) that its
 * stored results can give, so a ratio added later is counted over the earlier runs as well. A stored
 * value wins over a recomputed one (the run's own report said it).
 */
export function runRatios(json: RunFile): Ratio[] {
  const stored = new Map((json.ratios ?? []).map((r) => [r.name, r]));
  const derived = ratiosOf(json.results ?? []);
  const names = new Set(derived.map((r) => r.name));
  // In today's order of definition; a stored ratio no longer defined keeps its place at the end.
  // JSON writes NaN and Infinity as null: such a stored value gives way to the recomputed one.
  const kept = (r: Ratio) => { const s = stored.get(r.name); return s !== undefined && Number.isFinite(s.value) ? s : r; };
  return [...derived.map(kept), ...[...stored.values()].filter((r) => !names.has(r.name))];
}

/**
 * The full runs in `dir`, oldest first, plus `extra` (a run not yet written there, under the name it
 * will be written as) so a run can write the summary that includes itself.
 */
export function loadRuns(dir: string, extra?: { file: string; json: RunFile }): Run[] {
  const onDisk = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => FULL_RUN.test(f)) : [];
  const entries = onDisk.filter((f) => f !== extra?.file).map((file) => ({ file, json: JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as RunFile }));
  if (extra !== undefined && FULL_RUN.test(extra.file)) entries.push(extra);
  entries.sort((a, b) => a.file.localeCompare(b.file));
  const days = new Set(entries.map((e) => FULL_RUN.exec(e.file)![1]));
  return entries.map(({ file, json }) => {
    const [, day, hh, mm] = FULL_RUN.exec(file)!;
    if (json.quick) throw new Error(`\`${file}\` is a --quick run under a full run's name`);
    return { label: days.size > 1 ? `${day.slice(5)} ${hh}:${mm}` : `${hh}:${mm}`, file, commit: json.machine?.commit ?? '?', ratios: runRatios(json) };
  });
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Ratios in the order of their first appearance (later runs added some). */
export function summarize(runs: readonly Run[]): RatioSummary[] {
  const byName = new Map<string, { ratio: Ratio; run: Run }[]>();
  for (const run of runs) {
    for (const ratio of run.ratios) {
      if (!Number.isFinite(ratio.value)) continue;
      const list = byName.get(ratio.name) ?? [];
      list.push({ ratio, run });
      byName.set(ratio.name, list);
    }
  }
  return [...byName.entries()].map(([name, seen]) => {
    const values = seen.map((s) => s.ratio.value);
    const perCpu = seen.map((s) => s.ratio.perCpu).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
    const isTarget = seen.some((s) => typeof s.ratio.met === 'boolean');
    const summary: RatioSummary = { name, target: seen[seen.length - 1].ratio.target, runs: seen.length, labels: seen.map((x) => x.run.label), min: Math.min(...values), max: Math.max(...values), median: median(values) };
    if (perCpu.length > 0) {
      summary.minPerCpu = Math.min(...perCpu);
      summary.maxPerCpu = Math.max(...perCpu);
    }
    if (isTarget) {
      summary.metIn = seen.filter((s) => s.ratio.met === true).map((s) => s.run.label);
      if (perCpu.length > 0) summary.metPerCpuIn = seen.filter((s) => s.ratio.metPerCpu === true).map((s) => s.run.label);
    }
    return summary;
  });
}

const two = (v: number) => v.toFixed(2);

export function toMarkdown(runs: readonly Run[], summaries: readonly RatioSummary[]): string {
  const lines = [
    `# pdp server benchmark: ratios over ${runs.length} full runs`,
    '',
    `Runs (\`bench/results/server-*.json\` without \`-quick\`/\`-partial\`; UTC, commit): ${runs.map((r) => `${r.label} \`${r.commit.slice(0, 7)}\``).join(', ')}.`,
    'The serving code changed between most of them; each ratio compares targets measured side by side in one run.',
    '',
    '| ratio | runs | measured | median | per server CPU-s | target | met (measured) | met (per CPU) |',
    '|---|---:|---:|---:|---:|---:|---|---|',
  ];
  for (const s of summaries) {
    const perCpu = s.minPerCpu === undefined ? '–' : `${two(s.minPerCpu)}–${two(s.maxPerCpu!)}`;
    const met = (list: string[] | undefined) => {
      if (list === undefined) return '–';
      const count = `${list.length} of ${s.runs}`;
      if (list.length === 0 || list.length === s.runs) return count;
      // Name the fewer: the runs that met, or the runs that did not.
      if (list.length <= s.runs / 2) return `${count} (${list.join(', ')})`;
      const missed = runs.filter((r) => s.labels.includes(r.label) && !list.includes(r.label)).map((r) => r.label);
      return `${count} (not ${missed.join(', ')})`;
    };
    lines.push(`| ${s.name} | ${s.runs} | ${two(s.min)}–${two(s.max)} | ${two(s.median)} | ${perCpu} | ${s.target} | ${met(s.metIn)} | ${s.minPerCpu === undefined ? '–' : met(s.metPerCpuIn)} |`);
  }
  return `${lines.join('\n')}\n`;
}

const USAGE = `usage: node dist/bench/server-runs.js [--dir DIR] [--json] [--help]

Summarizes the ratios of every full server benchmark run in DIR (default bench/results):
range, median, range per server CPU-second, and the runs that met each target. A ratio
defined after a run was made (bench/server-ratios.ts) is recomputed from that run's stored
results. Prints Markdown, or JSON with --json. Runs nothing; reads the results files only.

  --dir DIR   the results folder to read (default bench/results/)
  --json      JSON instead of Markdown
  -h, --help  this text
`;

function main(argv: string[]): number {
  const parsed = benchArgs('server-runs.js', USAGE, argv, { dir: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
  if ('exit' in parsed) return parsed.exit;
  const { values } = parsed;
  const dir = values.dir ?? path.join(__dirname, '..', '..', 'bench', 'results');
  const runs = loadRuns(dir);
  if (runs.length === 0) {
    process.stderr.write(`server-runs: no full server runs in \`${dir}\` (run \`node dist/bench/server.js\` first)\n`);
    return 1;
  }
  const summaries = summarize(runs);
  process.stdout.write(values.json ? `${JSON.stringify({ runs: runs.map(({ label, file, commit }) => ({ label, file, commit })), ratios: summaries }, null, 2)}\n` : toMarkdown(runs, summaries));
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
