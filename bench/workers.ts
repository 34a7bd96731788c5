// `pdp serve --workers N` throughput from 1 to N workers, with the audit store still losing
// nothing: every 2xx the load generator received is counted against the rows in audit_log.
// Run: node dist/bench/workers.js [--max N] [--quick]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';

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
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pdp-bench-workers-'));
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
      };
    } catch (e) {
      await server.stop();
      throw e;
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(opts: { quick: boolean; maxWorkers?: number }) {
  const max = opts.maxWorkers ?? os.cpus().length;
  const counts = [...new Set([1, 2, 4, 8, 16].filter((n) => n <= max).concat(max))].sort((a, b) => a - b);
  const results: WorkerResult[] = [];
  for (const n of counts) results.push(await measure(n, opts.quick ? 3 : 10));
  const base = results[0]!.requestsPerSecond;
  const lines = [
    `| workers | req/s | scaling vs 1 | p50 ms | p99 ms | answered (2xx) | audit rows | lost |`,
    `|---:|---:|---:|---:|---:|---:|---:|---:|`,
    ...results.map((r) => `| ${r.workers} | ${r.requestsPerSecond.toLocaleString('en')} | ${(r.requestsPerSecond / base).toFixed(2)}× | ${r.p50} | ${r.p99} | ${r.answered.toLocaleString('en')} | ${r.auditRows.toLocaleString('en')} | ${r.lost} |`),
  ];
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, Node ${process.version}, ${new Date().toISOString()}`;
  const markdown = `## pdp serve --workers N (${machine})\n\nautocannon with 16 connections per worker on the same machine (it competes for the cores).\n\n${lines.join('\n')}\n`;
  return { name: 'workers', results, markdown };
}

if (require.main === module) {
  const maxFlag = process.argv.indexOf('--max');
  run({ quick: process.argv.includes('--quick'), maxWorkers: maxFlag > 0 ? Number(process.argv[maxFlag + 1]) : undefined })
    .then((r) => {
      process.stdout.write(r.markdown);
      fs.mkdirSync(path.join(root, 'bench/results'), { recursive: true });
      fs.writeFileSync(path.join(root, 'bench/results/workers-latest.md'), r.markdown);
      fs.writeFileSync(path.join(root, `bench/results/workers-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify(r.results, null, 2));
    })
    .catch((e) => { console.error(e); process.exitCode = 1; });
}
