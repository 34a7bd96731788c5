// `pdp serve --workers N` throughput from 1 to N workers, with the audit store still losing
// nothing: every 2xx the load generator received is counted against the rows in audit_log.
// Run: node dist/bench/workers.js [--max N] [--quick]   (--help: USAGE below)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { SuiteOptions, SuiteResult } from './suite';
import { benchTempDir } from './suite';
import { benchArgs, refuse } from './args';
import { machineStamp } from './run';

const root = path.join(__dirname, '../..');

// autocannon 8 ships no type declarations: the slice of its promise API used here.
interface CannonResult {
  '2xx': number;
  requests: { average: number };
  latency: { p50: number; p99: number };
}
const autocannon = require('autocannon') as (opts: Record<string, unknown>) => Promise<CannonResult>;

interface WorkerResult {
  workers: number;
  requestsPerSecond: number;
  p50: number;
  p99: number;
  answered: number;
  auditRows: number;
  lost: number;
  /** Group commits (summed over the workers, from /metrics) and how many of them found the write lock held by another worker. */
  commits: number;
  lockWaits: number;
  /** Seconds those waits lasted in all (the event loop was free meanwhile). */
  lockWaitSeconds: number;
}

/** A sample's value in Prometheus text (0 when absent). */
function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} ([0-9.eE+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function startServe(workers: number, dir: string): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [
    'bin/pdp.js', 'serve', '--policies', 'policies', '--audit', path.join(dir, 'audit.db'), '--listen', '127.0.0.1:0',
    '--workers', String(workers), '--no-watch', '--log-level', 'error',
  ], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`pdp serve did not start: ${out}`)), 30_000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]!); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`pdp serve exited ${code}`)); });
  });
  return {
    url,
    stop: () => new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
    }),
  };
}

async function measure(workers: number, seconds: number): Promise<WorkerResult> {
  const dir = benchTempDir('pdp-bench-workers-');
  try {
    const server = await startServe(workers, dir);
    let answered = 0;
    try {
      const body = JSON.stringify({ identity: 'spiffe://cluster/ns/prod/sa/order', action: 'read', resource: 'service:payment-service', namespace: 'prod', context: { source_ip: '10.0.1.50' } });
      const result = await autocannon({
        url: `${server.url}/v1/authorize`, method: 'POST', headers: { 'content-type': 'application/json' }, body,
        connections: 16 * workers, duration: seconds,
      });
      answered = result['2xx'];
      // The primary sums every worker's metrics.
      const metricsText = await fetch(`${server.url}/metrics`).then((r) => r.text());
      const rows = await server.stop().then(() => {
        const db = new Database(path.join(dir, 'audit.db'), { readonly: true });
        try {
          return (db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE event_type = 'DISCOVERY'").get() as { n: number }).n;
        } finally {
          db.close();
        }
      });
      return {
        workers, requestsPerSecond: Math.round(result.requests.average), p50: result.latency.p50, p99: result.latency.p99,
        answered, auditRows: rows, lost: Math.max(0, answered - rows),
        commits: metric(metricsText, 'pdp_audit_write_seconds_count'),
        lockWaits: metric(metricsText, 'pdp_audit_lock_wait_seconds_count'),
        lockWaitSeconds: metric(metricsText, 'pdp_audit_lock_wait_seconds_sum'),
      };
    } catch (e) {
      await server.stop();
      throw e;
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(opts: SuiteOptions & { maxWorkers?: number }): Promise<SuiteResult> {
  const started = Date.now();
  const max = opts.maxWorkers ?? os.cpus().length;
  const counts = [...new Set([1, 2, 4, 8, 16].filter((n) => n <= max).concat(max))].sort((a, b) => a - b);
  const results: WorkerResult[] = [];
  for (const n of counts) {
    opts.log?.(`workers: ${n} worker(s)`);
    results.push(await measure(n, opts.quick ? 1.5 : 10));
  }
  const base = results[0]!.requestsPerSecond;
  const lines = [
    `| workers | req/s | scaling vs 1 | p50 ms | p99 ms | answered (2xx) | audit rows | lost | group commits | of them waited for another worker's lock | time waited (s, all workers) |`,
    `|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|`,
    ...results.map((r) => `| ${r.workers} | ${r.requestsPerSecond.toLocaleString('en')} | ${(r.requestsPerSecond / base).toFixed(2)}× | ${r.p50} | ${r.p99} | ${r.answered.toLocaleString('en')} | ${r.auditRows.toLocaleString('en')} | ${r.lost} | ${r.commits.toLocaleString('en')} | ${r.lockWaits.toLocaleString('en')} | ${r.lockWaitSeconds.toFixed(2)} |`),
  ];
  const stamp = machineStamp();
  const machine = `${stamp.cpu}, ${stamp.cores} cores, Node ${stamp.node}, ${stamp.date}, commit ${stamp.commit?.slice(0, 12) ?? 'unknown'}${stamp.dirty ? ' (with uncommitted changes)' : ''}`;
  const markdown = `${machine}. \`pdp serve --workers N\` (node:cluster, one SQLite connection per worker), the example \`policies/\`, one cache-hit request; autocannon with 16 connections per worker, in this process, on the same machine (it competes for the cores), ${opts.quick ? 1.5 : 10} s per count. "lost": answers without their audit row (must be 0). A worker whose group commit finds another worker holding the write lock retries it with its event loop free (docs/audit.md, Concurrency); the last columns say how often and for how long.\n\n${lines.join('\n')}\n`;
  return { name: 'workers', title: 'pdp serve --workers N', durationMs: Date.now() - started, markdown, data: { machine: stamp, quick: opts.quick, results } };
}

export const USAGE = `usage: node dist/bench/workers.js [--max N] [--quick]

\`pdp serve --workers N\` throughput for 1, 2, 4, 8, 16 … up to N workers (the example policies/,
one cache-hit request, 10 s per count), checking that every answered request has its audit row.
Prints the table and writes bench/results/workers-latest.md and workers-<date>.json.

  --max N          the most workers to try (default: the number of CPUs)
  --quick          1.5 s per count; the files are named …-quick (not committed)
  -h, --help       this text
`;

function main(argv: string[]): number | undefined {
  const parsed = benchArgs('workers.js', USAGE, argv, { max: { type: 'string' }, quick: { type: 'boolean' } });
  if ('exit' in parsed) return parsed.exit;
  const { max, quick = false } = parsed.values;
  // As \`pdp serve --workers\` bounds it.
  if (max !== undefined && !(/^\d{1,3}$/.test(max) && Number(max) >= 1 && Number(max) <= 256)) {
    return refuse('workers.js', `--max expects a whole number of workers from 1 to 256; got \`${max}\``).exit;
  }
  run({ quick, maxWorkers: max === undefined ? undefined : Number(max) })
    .then((r) => {
      const markdown = `## ${r.title}\n\n${r.markdown}`;
      process.stdout.write(markdown);
      fs.mkdirSync(path.join(root, 'bench/results'), { recursive: true });
      // A smoke run (1.5 s per count) does not replace the last full run's figures (bench/results/.gitignore keeps it out of git).
      const suffix = quick ? '-quick' : '';
      fs.writeFileSync(path.join(root, `bench/results/workers-latest${suffix}.md`), markdown);
      // Stamped like every results file: machine (CPU, cores, Node, date, commit), quick, the rows.
      fs.writeFileSync(path.join(root, `bench/results/workers-${new Date().toISOString().replace(/[:.]/g, '-')}${suffix}.json`), `${JSON.stringify(r.data, null, 2)}\n`);
    })
    .catch((e) => { console.error(e); process.exitCode = 1; });
  return undefined;
}

if (require.main === module) {
  const code = main(process.argv.slice(2));
  if (code !== undefined) process.exitCode = code;
}
