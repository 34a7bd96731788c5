// Audit store benchmark: insert throughput (batched, one row per transaction, group-commit recorder)
// and the time of the three anomaly analyses over 10^4..10^6 realistic rows spread over 24 hours.
//
//   node dist/bench/run.js --only audit [--quick]   the suite: tables + audit-insert-rate.svg, audit-analyses.svg
//   node dist/bench/audit.js [--quick]              stand-alone: a table and the JSON on stdout (--help)
// (quick: 10^4 and 10^5 rows)
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  auditTimestamp,
  createRecorder,
  openAuditStore,
  openAuditStoreReadOnly,
  prepareAnomalyQueries,
  toAuditRow,
  windowStart,
  type AuditEvent,
  type AuditResult,
  type AuditRow,
} from '../src/audit';
import { benchArgs } from './args';
import type { SuiteOptions, SuiteResult } from './suite';
import { benchTempDir } from './suite';
import { formatTick, lineChart, type Series } from './svg';

export interface AuditBenchOptions {
  rows: number[];
  dir: string;
}

interface SizeResult {
  rows: number;
  fill_seconds: number;
  insert_batched_rows_per_s: number;
  insert_single_rows_per_s: number;
  single_sample_rows: number;
  recorder_rows_per_s: number;
  recorder_sample_rows: number;
  db_bytes: number;
  analyses_ms: { registration_spikes: number; unknown_services: number; authorization_failures: number };
  findings: { registration_spikes: number; unknown_services: number; authorization_failures: number };
  /** Unknown services without `--since`: the seed's query over every kept row (reported, not a target). Absent in runs before it was measured. */
  unknown_services_all?: { ms: number; findings: number };
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const SERVICES = 400;
const IDENTITIES = 600;
const BATCH = 1000;
const RUNS = 5;

// A small deterministic PRNG so every run fills the same data.
function rng(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const serviceName = (i: number) => `svc-${i.toString().padStart(3, '0')}-${['api', 'worker', 'gateway', 'db'][i % 4]}`;
const identityName = (i: number) => `spiffe://cluster.local/ns/${['prod', 'staging', 'dev'][i % 3]}/sa/app-${i}`;

/** Row number `index` of `total`, timestamps evenly over the 24 hours ending at `end`. */
function makeRowFactory(total: number, end: number) {
  const random = rng(total);
  const start = end - DAY_MS;
  return (index: number): AuditRow => {
    const r = random();
    const timestamp = new Date(start + Math.floor((index / total) * DAY_MS)).toISOString();
    const lastHour = end - Date.parse(timestamp) <= HOUR_MS;
    let serviceIndex = Math.floor(random() * SERVICES);
    let identityIndex = Math.floor(random() * IDENTITIES);
    let eventType: string;
    let action: string;
    if (r < 0.6) [eventType, action] = ['DISCOVERY', 'read'];
    else if (r < 0.82) [eventType, action] = ['REGISTRATION', 'write'];
    else if (r < 0.94) [eventType, action] = ['DEREGISTRATION', 'write'];
    else if (r < 0.97) [eventType, action] = ['ADMIN', 'admin'];
    else if (r < 0.99) [eventType, action] = ['AUTHN_FAILURE', 'read'];
    else [eventType, action] = ['ACL_CHANGE', 'admin'];
    // In the last hour: a registration spike on one service and a burst of denials for one identity.
    if (lastHour && random() < 0.05) {
      serviceIndex = 7;
      eventType = 'REGISTRATION';
      action = 'write';
    }
    let result: AuditResult | null = random() < 0.1 ? 'DENY' : random() < 0.1 ? 'ALLOW_DEFAULT' : 'ALLOW';
    if (lastHour && random() < 0.02) {
      identityIndex = 13;
      result = 'DENY';
    }
    if (eventType === 'AUTHN_FAILURE') result = null;
    // About 1% of registrations are of services no policy declares.
    const service = eventType === 'REGISTRATION' && random() < 0.01 ? `unknown-${Math.floor(random() * 50)}` : serviceName(serviceIndex);
    const event: AuditEvent = {
      timestamp,
      event_type: eventType,
      service_name: service,
      namespace: ['prod', 'staging', 'dev'][serviceIndex % 3],
      instance_id: `${service}-${index % 8}`,
      identity: identityName(identityIndex),
      source_ip: `10.${identityIndex % 250}.${serviceIndex % 250}.${index % 250}`,
      action,
      resource: `service:${service}`,
      result,
      reason: result === 'DENY' ? `${identityName(identityIndex)} has no ${action} on service:${service}` : 'granted',
      rule: result === 'ALLOW_DEFAULT' ? null : `services.hcl:${(serviceIndex % 90) + 1}`,
      decision_id: `00000000-0000-4000-8000-${index.toString(16).padStart(12, '0')}`,
      policy_version: 'sha256:4f1c2d9e',
      details: eventType === 'REGISTRATION' ? { host: `10.1.${serviceIndex % 250}.${index % 250}`, port: 8080, metadata: { version: '2.1.0' } } : null,
      registry_node: `registry-${index % 3}`,
    };
    return toAuditRow(event);
  };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

function timeMs(fn: () => unknown): number {
  const started = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

async function benchSize(rows: number, dir: string): Promise<SizeResult> {
  const file = path.join(dir, `audit-${rows}.db`);
  const end = Date.parse('2025-01-20T12:00:00.000Z');
  const store = openAuditStore(file);
  store.refreshAllowedServices(Array.from({ length: SERVICES }, (_, i) => ({ name: serviceName(i), namespace: ['prod', 'staging', 'dev'][i % 3] })));

  // Batched fill: 1,000 rows per transaction (row construction is outside the timed part).
  const makeRow = makeRowFactory(rows, end);
  let fillNs = 0n;
  for (let offset = 0; offset < rows; offset += BATCH) {
    const batch: AuditRow[] = [];
    for (let i = offset; i < Math.min(rows, offset + BATCH); i++) batch.push(makeRow(i));
    const started = process.hrtime.bigint();
    store.insertRows(batch);
    fillNs += process.hrtime.bigint() - started;
  }
  const fillSeconds = Number(fillNs) / 1e9;
  store.close();
  const dbBytes = fs.statSync(file).size;

  // The analyses, read-only as the CLI runs them, window `since 1h` ending at the data's end.
  const reader = openAuditStoreReadOnly(file);
  const queries = prepareAnomalyQueries(reader.db);
  const since = windowStart(new Date(end), HOUR_MS);
  const spikes: number[] = [];
  const unknown: number[] = [];
  const denials: number[] = [];
  const unknownAll: number[] = [];
  let unknownAllFound = 0;
  let findings = { registration_spikes: 0, unknown_services: 0, authorization_failures: 0 };
  for (let run = 0; run < RUNS; run++) {
    let a: unknown[] = [];
    let b: unknown[] = [];
    let c: unknown[] = [];
    spikes.push(timeMs(() => (a = queries.registrationSpikes.all({ since, threshold: 100 }))));
    unknown.push(timeMs(() => (b = queries.unknownServicesWindowed.all({ since }))));
    denials.push(timeMs(() => (c = queries.authorizationFailures.all({ since, threshold: 10 }))));
    findings = { registration_spikes: a.length, unknown_services: b.length, authorization_failures: c.length };
    unknownAll.push(timeMs(() => (unknownAllFound = queries.unknownServices.all().length)));
  }
  reader.close();

  // One row per transaction, into the filled table (so the rate is the rate at this table size), after
  // the analyses so their window is untouched. The rows are dated in the day after the fill: like the
  // server's rows, they append to the end of the time indexes.
  const appendStore = openAuditStore(file);
  const singleSample = Math.min(5000, rows);
  const sampleRow = makeRowFactory(singleSample, end + DAY_MS);
  const sampleRows = Array.from({ length: singleSample }, (_, i) => sampleRow(i));
  const singleMs = timeMs(() => {
    for (const row of sampleRows) appendStore.insertRows([row]);
  });

  // The server's path: record() calls, 100 per event-loop turn, group-committed, into the same table.
  const recorder = createRecorder(appendStore);
  const recorderSample = Math.min(20_000, rows);
  const recorderStarted = process.hrtime.bigint();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < recorderSample; i++) {
    pending.push(recorder.record({ ...sampleEvent(i), timestamp: auditTimestamp() }));
    if (i % 100 === 99) await new Promise((resolve) => setImmediate(resolve));
  }
  await Promise.all(pending);
  const recorderSeconds = Number(process.hrtime.bigint() - recorderStarted) / 1e9;
  await recorder.close();
  appendStore.close();

  for (const suffix of ['', '-wal', '-shm']) fs.rmSync(file + suffix, { force: true });
  return {
    rows,
    fill_seconds: round(fillSeconds, 3),
    insert_batched_rows_per_s: Math.round(rows / fillSeconds),
    insert_single_rows_per_s: Math.round(singleSample / (singleMs / 1000)),
    single_sample_rows: singleSample,
    recorder_rows_per_s: Math.round(recorderSample / recorderSeconds),
    recorder_sample_rows: recorderSample,
    db_bytes: dbBytes,
    analyses_ms: { registration_spikes: round(median(spikes), 2), unknown_services: round(median(unknown), 2), authorization_failures: round(median(denials), 2) },
    unknown_services_all: { ms: round(median(unknownAll), 2), findings: unknownAllFound },
    findings,
  };
}

function sampleEvent(i: number): AuditEvent {
  return {
    timestamp: auditTimestamp(),
    event_type: 'DISCOVERY',
    service_name: serviceName(i % SERVICES),
    namespace: 'prod',
    instance_id: null,
    identity: identityName(i % IDENTITIES),
    source_ip: '10.0.0.1',
    action: 'read',
    resource: `service:${serviceName(i % SERVICES)}`,
    result: 'ALLOW',
    reason: 'granted',
    rule: 'services.hcl:1',
    decision_id: `recorder-${i}`,
    policy_version: 'sha256:4f1c2d9e',
    details: null,
    registry_node: 'registry-0',
  };
}

const round = (value: number, digits: number) => Math.round(value * 10 ** digits) / 10 ** digits;

export interface AuditData {
  quick?: boolean;
  machine: { cpus: number; cpu: string; node: string; platform: string };
  window: string;
  target_ms_per_analysis_at_1e6: number;
  results: SizeResult[];
}

export async function runAuditBench(opts: AuditBenchOptions & { log?: (line: string) => void }): Promise<AuditData> {
  fs.mkdirSync(opts.dir, { recursive: true });
  const results: SizeResult[] = [];
  for (const rows of opts.rows) {
    const r = await benchSize(rows, opts.dir);
    opts.log?.(`  ${rows.toLocaleString('en-US')} rows: batched ${fmtInt(r.insert_batched_rows_per_s)} rows/s, 1-row txn ${fmtInt(r.insert_single_rows_per_s)}, recorder ${fmtInt(r.recorder_rows_per_s)}; analyses ${ANALYSES.map((a) => `${r.analyses_ms[a.key]} ms`).join(' / ')}`);
    results.push(r);
  }
  return {
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version, platform: `${os.platform()} ${os.arch()}` },
    window: 'since 1h over 24 hours of data',
    target_ms_per_analysis_at_1e6: 100,
    results,
  };
}

// ---- the suite for bench/run.ts ----------------------------------------------------------------

/** Quick: two sizes, so even a smoke run draws a line. */
export const SIZES = { quick: [10_000, 100_000], full: [10_000, 100_000, 1_000_000] };

const INSERT_MODES = [
  { key: 'insert_batched_rows_per_s', label: 'batched, 1,000 rows per transaction', short: 'batched, 1,000 rows/txn', sample: (r: SizeResult) => r.rows, note: 'the fill, 0 → N rows (average)' },
  { key: 'insert_single_rows_per_s', label: 'one row per transaction', short: 'one row per transaction', sample: (r: SizeResult) => r.single_sample_rows, note: 'appended to the filled table' },
  { key: 'recorder_rows_per_s', label: 'group-commit recorder (the server\'s path)', short: 'group-commit recorder', sample: (r: SizeResult) => r.recorder_sample_rows, note: '`record()`, 100 per event-loop turn, appended to the filled table' },
] as const;

const ANALYSES = [
  { key: 'registration_spikes', label: 'registration spikes' },
  { key: 'unknown_services', label: 'unknown services' },
  { key: 'authorization_failures', label: 'authorization failures' },
] as const;

const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');
const fmtMs = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));

export async function run(opts: SuiteOptions): Promise<SuiteResult> {
  const started = Date.now();
  const dir = benchTempDir('pdp-audit-bench-');
  try {
    const data = await runAuditBench({ rows: opts.quick ? SIZES.quick : SIZES.full, dir, log: opts.log });
    return { ...render({ ...data, quick: opts.quick }), durationMs: Date.now() - started };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The suite's report from its data: after a run, and from a saved results file (`run.js --render`). */
export function render(data: AuditData): Omit<SuiteResult, 'durationMs'> {
  // A quick run gets its own file names, so it never overwrites a full run's plots.
  const suffix = data.quick ? '-quick' : '';
  const insertSvg = `audit-insert-rate${suffix}.svg`;
  const analysesSvg = `audit-analyses${suffix}.svg`;
  return {
    name: 'audit',
    title: 'Audit store: insert rate and anomaly analyses vs rows',
    markdown: renderMarkdown(data, insertSvg, analysesSvg),
    data,
    files: [
      { name: insertSvg, content: renderInsertSvg(data.results) },
      { name: analysesSvg, content: renderAnalysesSvg(data.results) },
    ],
  };
}

function renderMarkdown(data: AuditData, insertSvg: string, analysesSvg: string): string {
  const out: string[] = [];
  out.push(`Realistic audit rows (${SERVICES} services, ${IDENTITIES} identities; ~60% discoveries, ~22% registrations, ~10% denials, a registration spike and a burst of denials in the last hour) spread evenly over 24 hours, in a fresh store per size (WAL, \`synchronous=NORMAL\`, as \`pdp serve\` opens it). The analyses run read-only on the filled table as \`pdp audit anomalies\` does, window ${data.window}; each time is the median of ${RUNS} runs. The one-row and recorder samples are appended to the filled table afterwards, so each rate is the rate at that table size.`);
  out.push('');
  for (const r of data.results) {
    out.push(`### ${fmtInt(r.rows)} rows`);
    out.push('');
    out.push(`Fill: ${r.fill_seconds.toFixed(2)} s; database ${(r.db_bytes / 1e6).toFixed(1)} MB after the fill.`);
    out.push('');
    out.push('| insert mode | rows/s | rows timed | how |');
    out.push('|---|---:|---:|---|');
    for (const m of INSERT_MODES) out.push(`| ${m.label} | ${fmtInt(r[m.key])} | ${fmtInt(m.sample(r))} | ${m.note} |`);
    out.push('');
    out.push(`| analysis (\`since 1h\`) | ms (median of ${RUNS}) | findings |`);
    out.push('|---|---:|---:|');
    for (const a of ANALYSES) out.push(`| ${a.label} | ${fmtMs(r.analyses_ms[a.key])} | ${r.findings[a.key]} |`);
    if (r.unknown_services_all) out.push(`| unknown services without \`--since\` (the seed's query: every kept row; reported, not a target) | ${fmtMs(r.unknown_services_all.ms)} | ${r.unknown_services_all.findings} |`);
    out.push('');
  }
  const largest = data.results[data.results.length - 1];
  if (largest && largest.rows >= 1_000_000) {
    const worst = Math.max(...ANALYSES.map((a) => largest.analyses_ms[a.key]));
    out.push(`Target: at most ${data.target_ms_per_analysis_at_1e6} ms per analysis at 10^6 rows; slowest here ${fmtMs(worst)} ms (${worst <= data.target_ms_per_analysis_at_1e6 ? 'met' : '**not met**'}).`);
    out.push('');
  }
  out.push(`![audit insert rate vs rows](${insertSvg})`);
  out.push('');
  out.push(`![anomaly analysis time vs rows](${analysesSvg})`);
  return out.join('\n');
}

function renderInsertSvg(results: SizeResult[]): string {
  const series: Series[] = INSERT_MODES.map((m) => ({ label: m.short, points: results.map((r) => ({ x: r.rows, y: r[m.key] })) }));
  return lineChart(series, {
    title: 'Audit insert rate vs rows in the table',
    xLabel: 'rows in the audit table (log scale)',
    yLabel: 'rows inserted per second (log scale)',
    formatY: (v) => `${formatTick(v)}/s`,
    xUnit: 'rows',
    tight: true,
  });
}

function renderAnalysesSvg(results: SizeResult[]): string {
  const series: Series[] = ANALYSES.map((a) => ({ label: a.label, points: results.map((r) => ({ x: r.rows, y: r.analyses_ms[a.key] })) }));
  return lineChart(series, {
    title: 'Anomaly analysis time (since 1h) vs rows',
    xLabel: 'rows in the audit table (log scale)',
    yLabel: 'ms per analysis, median of 5 (log scale)',
    formatY: (v) => `${+v.toPrecision(3)} ms`,
    xUnit: 'rows',
    tight: true,
  });
}

function printTable(report: { results: SizeResult[] }): void {
  const header = ['rows', 'batched rows/s', '1-row-txn rows/s', 'recorder rows/s', 'spikes ms', 'unknown ms', 'denials ms', 'db MB'];
  const lines = report.results.map((r) => [
    r.rows.toLocaleString('en-US'),
    r.insert_batched_rows_per_s.toLocaleString('en-US'),
    r.insert_single_rows_per_s.toLocaleString('en-US'),
    r.recorder_rows_per_s.toLocaleString('en-US'),
    r.analyses_ms.registration_spikes.toFixed(2),
    r.analyses_ms.unknown_services.toFixed(2),
    r.analyses_ms.authorization_failures.toFixed(2),
    (r.db_bytes / 1e6).toFixed(1),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  for (const line of [header, ...lines]) console.log(line.map((cell, i) => cell.padStart(widths[i])).join('  '));
}

export const USAGE = `usage: node dist/bench/audit.js [--quick]

The audit store alone: insert throughput (batched, one row per transaction, the group-commit
recorder) and the time of the three anomaly analyses, over 10^4, 10^5 and 10^6 realistic rows in a
temporary store. Prints a table and the JSON on stdout; writes no file (the \`audit\` suite of
\`node dist/bench/run.js --only audit\` writes the report and its plots).

  --quick          10^4 and 10^5 rows only
  -h, --help       this text
`;

if (require.main === module) {
  const parsed = benchArgs('audit.js', USAGE, process.argv.slice(2), { quick: { type: 'boolean' } });
  if ('exit' in parsed) process.exitCode = parsed.exit;
  else {
    const quick = parsed.values.quick === true;
    const dir = benchTempDir('pdp-audit-bench-');
    runAuditBench({ rows: quick ? [10_000, 100_000] : [10_000, 100_000, 1_000_000], dir })
      .then((report) => {
        printTable(report);
        console.log(JSON.stringify(report, null, 2));
      })
      .finally(() => fs.rmSync(dir, { recursive: true, force: true }))
      .catch((e) => {
        console.error(`audit bench failed: ${(e as Error).message}`);
        process.exitCode = 1;
      });
  }
}
