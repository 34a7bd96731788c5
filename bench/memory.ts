// Server memory vs rule count: for each N, the benchmark policy family is written to a directory and
// the real server is started as users start it (`node bin/pdp.js serve …` as a subprocess), sent a few
// hundred /v1/authorize requests (so the decision cache, the audit path and the JIT are warm), and its
// resident set size is read from /proc/<pid>/status: VmRSS (now) and VmHWM (the peak, which includes
// the transient garbage of parsing and compiling the policy set). Then it is stopped with SIGTERM.
//
//   node dist/bench/run.js --only memory [--quick]   → table + bench/results/server-rss(-quick).svg
//
// Linux only (/proc); elsewhere the RSS columns are empty.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { hclSources, makeFamily, sampleRequests } from './policy-family';
import { machineStamp, type Machine } from './run';
import type { SuiteOptions, SuiteResult } from './suite';
import { benchTempDir } from './suite';
import { lineChart, type Series } from './svg';

export const SIZES = { quick: [10, 1_000, 10_000], full: [10, 1_000, 10_000, 100_000] };
/** Requests sent before reading the RSS. */
const REQUESTS = 400;
/** How long a server may take to start listening (100k rules load in a few seconds; a shared machine is slower). */
const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 15_000;

interface MemoryRow {
  n: number;
  ruleCount: number;
  files: number;
  /** Spawn → "listening on" printed. */
  startMs: number;
  /** The server's own figure for loading the policy set (`GET /v1/policies` → `load_ms`). */
  loadMs: number | null;
  /** VmRSS once listening, before any request. */
  rssListeningMB: number | null;
  /** VmRSS after the requests. */
  rssAfterRequestsMB: number | null;
  /** VmHWM: the peak RSS over the process's life so far. */
  peakRssMB: number | null;
  /** The V8 heap in use after the requests, from the server's /metrics (prom-client default metrics). */
  heapUsedMB: number | null;
  requests: number;
  non2xx: number;
}

export interface MemoryData {
  quick?: boolean;
  machine: Machine;
  requests: number;
  rows: MemoryRow[];
}

const repoRoot = path.resolve(__dirname, '../..');
const round1 = (x: number) => Math.round(x * 10) / 10;

/** VmRSS and VmHWM of `pid` in MB (kB in /proc), or nulls where /proc is not available. */
function readRss(pid: number): { rssMB: number | null; hwmMB: number | null } {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => {
      const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
      return m ? round1(Number(m[1]) / 1024) : null;
    };
    return { rssMB: kb('VmRSS'), hwmMB: kb('VmHWM') };
  } catch {
    return { rssMB: null, hwmMB: null };
  }
}

/** Starts `pdp serve` on an ephemeral loopback port; resolves with its base URL once it prints it. */
function startServer(policyDir: string, auditPath: string): Promise<{ child: ChildProcess; url: string; startMs: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, [
    path.join(repoRoot, 'bin/pdp.js'), 'serve',
    '--policies', policyDir, '--audit', auditPath, '--listen', '127.0.0.1:0',
    // No file watcher: nothing changes during the run, and watching 200 files is not what is measured.
    '--no-watch',
  ], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`pdp serve did not start listening within ${START_TIMEOUT_MS / 1000} s; stderr: ${stderr.slice(-2000)}`));
    }, START_TIMEOUT_MS);
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]!, startMs: Date.now() - started });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`pdp serve exited (${code}) before listening; stderr: ${stderr.slice(-2000)}`));
    });
  });
}

function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** `nodejs_heap_size_used_bytes` from /metrics, in MB (null if the server does not export it). */
async function heapUsedMB(url: string): Promise<number | null> {
  try {
    const text = await (await fetch(`${url}/metrics`)).text();
    const m = /^(?:pdp_process_)?nodejs_heap_size_used_bytes(?:\{[^}]*\})?\s+([\d.e+]+)/m.exec(text);
    return m ? round1(Number(m[1]) / 1024 ** 2) : null;
  } catch {
    return null;
  }
}

async function measure(n: number, root: string, log: (line: string) => void): Promise<MemoryRow> {
  const family = makeFamily(n);
  const policyDir = path.join(root, `policies-${n}`);
  fs.mkdirSync(policyDir, { recursive: true });
  const sources = hclSources(family);
  for (const s of sources) fs.writeFileSync(path.join(policyDir, s.path), s.text);
  const auditPath = path.join(root, `audit-${n}.db`);

  const { child, url, startMs } = await startServer(policyDir, auditPath);
  try {
    const listening = readRss(child.pid!);
    // The server's figure, and a check that it loaded the whole family.
    const info = (await (await fetch(`${url}/v1/policies`)).json()) as { rule_count?: number; load_ms?: number };
    if (info.rule_count !== family.ruleCount) log(`  N = ${n}: the server reports ${info.rule_count} rules, the family has ${family.ruleCount}`);

    // Sequential requests over one keep-alive connection: enough to warm the paths, not a load test.
    let non2xx = 0;
    for (const r of sampleRequests(family, REQUESTS)) {
      const res = await fetch(`${url}/v1/authorize`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ identity: r.identity, action: r.action, resource: `service:${r.service}`, namespace: r.namespace }),
      });
      await res.arrayBuffer();
      if (res.status < 200 || res.status >= 300) non2xx++;
    }
    const heap = await heapUsedMB(url);
    const after = readRss(child.pid!);
    return {
      n,
      ruleCount: family.ruleCount,
      files: sources.length,
      startMs,
      loadMs: typeof info.load_ms === 'number' ? round1(info.load_ms) : null,
      rssListeningMB: listening.rssMB,
      rssAfterRequestsMB: after.rssMB,
      peakRssMB: after.hwmMB,
      heapUsedMB: heap,
      requests: REQUESTS,
      non2xx,
    };
  } finally {
    await stopServer(child);
  }
}

export async function run(opts: SuiteOptions): Promise<SuiteResult> {
  const started = Date.now();
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const machine = machineStamp();
  const root = benchTempDir('pdp-memory-bench-');
  const rows: MemoryRow[] = [];
  try {
    for (const n of opts.quick ? SIZES.quick : SIZES.full) {
      const row = await measure(n, root, log);
      log(`  ${row.ruleCount.toLocaleString('en-US')} rules: RSS ${row.rssListeningMB} MB listening, ${row.rssAfterRequestsMB} MB after ${row.requests} requests, peak ${row.peakRssMB} MB; load ${row.loadMs} ms${row.non2xx ? `; ${row.non2xx} non-2xx` : ''}`);
      rows.push(row);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  return { ...render({ quick: opts.quick, machine, requests: REQUESTS, rows }), durationMs: Date.now() - started };
}

/** The suite's report from its data: after a run, and from a saved results file (`run.js --render`). */
export function render(data: MemoryData): Omit<SuiteResult, 'durationMs'> {
  const svgName = data.quick ? 'server-rss-quick.svg' : 'server-rss.svg';
  return { name: 'memory', title: 'Server memory (RSS) vs rule count', markdown: renderMarkdown(data, svgName), data, files: [{ name: svgName, content: renderSvg(data.rows) }] };
}

function renderMarkdown(data: MemoryData, svgName: string): string {
  const m = data.machine;
  const mb = (x: number | null) => (x === null ? '–' : `${x.toFixed(1)} MB`);
  const out: string[] = [];
  out.push(`\`pdp serve --policies DIR --audit FILE --listen 127.0.0.1:0 --no-watch\` started as a subprocess (\`node bin/pdp.js\`, defaults otherwise: decision cache 10,000 entries, audit on) on the benchmark family written as HCL (500 services per file), then ${data.requests} sequential \`POST /v1/authorize\` requests from the family's request sample (mostly distinct, so mostly cache misses, each audited). RSS from \`/proc/<pid>/status\`: VmRSS once listening and after the requests; VmHWM is the peak over the process's life, loading included. Heap: V8 heap in use after the requests (\`/metrics\`). Load: the server's own \`load_ms\` (\`GET /v1/policies\`); start: spawn until it prints \`listening on\`.`);
  out.push('');
  out.push(`Machine: ${m.cpu}, ${m.cores} cores, ${m.totalMemoryGB} GB RAM, Node ${m.node}, ${m.platform}; ${m.date}; commit ${m.commit?.slice(0, 12) ?? 'unknown'}${m.dirty ? ' (with uncommitted changes)' : ''}; load average at start ${m.loadAverageAtStart.join(' / ')}.`);
  out.push('');
  out.push('| N | rules | files | RSS listening | RSS after requests | peak RSS (VmHWM) | V8 heap used | load (server) | start | non-2xx |');
  out.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of data.rows) {
    out.push(`| ${r.n.toLocaleString('en-US')} | ${r.ruleCount.toLocaleString('en-US')} | ${r.files} | ${mb(r.rssListeningMB)} | ${mb(r.rssAfterRequestsMB)} | ${mb(r.peakRssMB)} | ${mb(r.heapUsedMB)} | ${r.loadMs === null ? '–' : `${r.loadMs.toLocaleString('en-US')} ms`} | ${r.startMs.toLocaleString('en-US')} ms | ${r.non2xx} |`);
  }
  const first = data.rows[0];
  const last = data.rows[data.rows.length - 1];
  if (first && last && last !== first && first.rssAfterRequestsMB !== null && last.rssAfterRequestsMB !== null) {
    const perRule = ((last.rssAfterRequestsMB - first.rssAfterRequestsMB) * 1024 * 1024) / (last.ruleCount - first.ruleCount);
    out.push('');
    out.push(`From ${first.ruleCount.toLocaleString('en-US')} to ${last.ruleCount.toLocaleString('en-US')} rules the RSS after requests grows by ${(last.rssAfterRequestsMB - first.rssAfterRequestsMB).toFixed(1)} MB, about ${Math.round(perRule).toLocaleString('en-US')} bytes per rule.`);
  }
  out.push('');
  out.push(`![server RSS vs rule count](${svgName})`);
  return out.join('\n');
}

function renderSvg(rows: MemoryRow[]): string {
  const line = (label: string, pick: (r: MemoryRow) => number | null, dashed = false): Series => ({
    label,
    dashed,
    points: rows.filter((r) => pick(r) !== null).map((r) => ({ x: r.ruleCount, y: pick(r)! })),
  });
  const series = [
    line('RSS after requests', (r) => r.rssAfterRequestsMB),
    line('peak RSS (VmHWM)', (r) => r.peakRssMB, true),
    line('RSS once listening', (r) => r.rssListeningMB),
    line('V8 heap used', (r) => r.heapUsedMB),
  ].filter((s) => s.points.length > 0);
  return lineChart(series, {
    title: 'pdp serve: memory vs rule count',
    xLabel: 'rules in the policy set (log scale)',
    yLabel: 'resident memory, MB (linear scale)',
    logY: false,
    formatY: (v) => `${+v.toPrecision(4)} MB`,
    tight: true,
  });
}
