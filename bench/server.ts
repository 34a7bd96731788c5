// HTTP benchmarks, side by side in one run: bare node:http and bare fastify baselines, then pdp's
// /v1/authorize (audit on with cache hits and with cache misses, audit off), /v1/authorize/batch with
// 100 checks per request, and pdp over mutual TLS next to the same server over plain HTTP.
//
//   node dist/bench/server.js [--quick] [--profile] [--only pdp-hit,fastify,…]   (--help: USAGE below)
//
// Every target runs in its own forked process (dist/bench/server-targets.js) on 127.0.0.1; the load
// generator is autocannon (programmatic API) in this process: the same connection count, warmup,
// duration and request body for every target. All targets are started and warmed up first, then
// measured in interleaved rounds (so a change in background load hits all of them). A full run writes bench/results/server-latest.md and
// bench/results/server-<date>.json (a --quick run: server-latest-quick.md, server-<date>-quick.json).
// --profile runs every target under `node --cpu-prof` and prints (and writes to
// bench/results/server-profile-latest.md) the top self-time functions of the measured rounds, by
// function and by package, and the inclusive time of pdp's own functions; it writes no benchmark results.
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { decideWith, Engine } from '../src/engine';
import { initCa, issueCertificate } from '../src/identity/ca';
import type { ChildMessage, ParentMessage, TargetConfig } from './server-targets';
import type { SuiteFile, SuiteOptions, SuiteResult, SuiteRunner } from './suite';
import { benchArgs, refuse } from './args';
import { benchTempDir } from './suite';
import { loadRuns, summarize as summarizeRuns, toMarkdown as runsMarkdown } from './server-runs';
import { ratios, TARGETS, type Ratio } from './server-ratios';

export { TARGETS, type Ratio };

// autocannon 8 ships no type declarations; this is the part of its programmatic API used here.
interface CannonRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  setupRequest?: (req: CannonRequest, context: Record<string, unknown>) => CannonRequest;
}
interface CannonOptions {
  url: string;
  method: string;
  headers: Record<string, string>;
  connections: number;
  pipelining: number;
  duration: number;
  timeout: number;
  requests: CannonRequest[];
  servername?: string;
  tlsOptions?: { cert: Buffer; key: Buffer; ca: Buffer; minVersion?: 'TLSv1.3' };
}
interface CannonHistogram { average: number; mean: number; stddev: number; min: number; max: number; p50: number; p90: number; p99: number; p99_9?: number; p999?: number; total: number }
interface CannonResult {
  duration: number;
  requests: CannonHistogram;
  latency: CannonHistogram;
  throughput: CannonHistogram;
  errors: number;
  timeouts: number;
  non2xx: number;
  resets?: number;
  mismatches?: number;
  statusCodeStats?: Record<string, { count: number }>;
  '1xx': number; '2xx': number; '3xx': number; '4xx': number; '5xx': number;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon = require('autocannon') as (opts: CannonOptions, cb: (err: Error | null, result: CannonResult) => void) => {
  stop(): void;
  on(event: 'response', listener: (client: unknown, statusCode: number, bytes: number, responseTimeMs: number) => void): void;
};

// ---- configuration -------------------------------------------------------------------------------

export interface ServerBenchConfig {
  connections: number;
  warmupSeconds: number;
  /** Measured seconds per target, split into `rounds` interleaved rounds. */
  durationSeconds: number;
  rounds: number;
  /**
   * Rounds for the transport group (plain twin, mTLS): fewer and longer, because every round opens
   * new connections, and a TLS connection's handshake and first-request certificate check would
   * otherwise weigh more than a long-lived PEP connection ever makes them weigh.
   */
  transportRounds: number;
  /** Generated services added to the example policies (2 rules each). */
  generatedServices: number;
  /** Distinct single-check requests the cache-miss targets rotate over (must exceed the cache). */
  missPool: number;
  cacheEntries: number;
  checksPerBatch: number;
}

export const FULL: ServerBenchConfig = { connections: 32, warmupSeconds: 2, durationSeconds: 10, rounds: 5, transportRounds: 2, generatedServices: 1000, missPool: 50_000, cacheEntries: 10_000, checksPerBatch: 100 };
// A smoke run: every target, shorter (the whole `npm run bench -- --quick` should take about a minute).
export const QUICK: ServerBenchConfig = { ...FULL, warmupSeconds: 0.5, durationSeconds: 1, rounds: 1, transportRounds: 1 };


/** The spec's example request (docs http-api.md): order discovers payment-service in prod → ALLOW. */
export const HIT_REQUEST = {
  identity: 'spiffe://cluster/ns/prod/sa/order',
  action: 'read',
  resource: 'service:payment-service',
  namespace: 'prod',
  context: { source_ip: '10.0.1.50', event_type: 'DISCOVERY', instance_id: 'payment-1' },
};

/** The PEP the mTLS client is: granted `api "authorize"` in policies/api.hcl. */
export const MTLS_CLIENT_ID = 'spiffe://cluster/ns/platform/sa/registry';

/**
 * `pdp serve` with client authentication rate-limits each caller to 1,000 requests/s (createSecurity's
 * default, no CLI flag). One load generator is one caller, so the mTLS target raises the limit far above
 * anything reachable: the rate-limit plugin still runs on every request, it just never refuses.
 */
export const MTLS_RATE_LIMIT = 1_000_000_000;

// ---- fixture: policies, pools, certificates ------------------------------------------------------

interface Fixture {
  dir: string;
  policyDir: string;
  ruleCount: number;
  policyVersion: string;
  hitBody: string;
  missBodies: string[];
  missMix: Record<string, number>;
  batchHitBody: string;
  batchMissBodies: string[];
  tls: { serverCert: string; serverKey: string; clientCert: string; clientKey: string; ca: string };
}

interface GenService { name: string; namespace: string; writer: string; reader: string }

function generatedServices(count: number): GenService[] {
  const out: GenService[] = [];
  for (let i = 0; i < count; i++) {
    const namespace = i % 5 === 4 ? 'staging' : 'prod';
    out.push({ name: `gen-svc-${i}`, namespace, writer: `spiffe://cluster/ns/${namespace}/sa/gen-svc-${i}`, reader: `spiffe://cluster/ns/${namespace}/sa/gen-client-${i}` });
  }
  return out;
}

function generatedHcl(services: GenService[]): string {
  const parts = ['# Generated by bench/server.ts: one writer and one reader per service.'];
  for (const ns of ['prod', 'staging']) {
    parts.push(`namespace "${ns}" {`);
    for (const s of services.filter((x) => x.namespace === ns)) {
      parts.push(`  service "${s.name}" {\n    policy   = "write"\n    identity = "${s.writer}"\n  }`);
      parts.push(`  service "${s.name}" {\n    policy   = "read"\n    identity = "${s.reader}"\n  }`);
    }
    parts.push('}\n');
  }
  return parts.join('\n');
}

/**
 * Distinct requests over the generated services: the owner registering an instance (ALLOW), its
 * reader discovering it (ALLOW), a neighbour trying to register it (DENY), an unknown workload
 * discovering it (DENY). The source address differs per request (it is part of the cache key because
 * the example policies use `cidrs`), so no two requests of the pool share a cache entry.
 */
function missPool(services: GenService[], size: number) {
  const pool: (typeof HIT_REQUEST)[] = [];
  for (let j = 0; j < size; j++) {
    const s = services[j % services.length]!;
    const variant = Math.floor(j / services.length);
    const si = j % services.length;
    const sourceIp = `10.${variant % 256}.${(si >> 8) & 255}.${si & 255}`;
    switch (variant % 4) {
      case 0:
        pool.push({ identity: s.writer, action: 'write', resource: `service:${s.name}/${s.name}-${variant}`, namespace: s.namespace, context: { source_ip: sourceIp, event_type: 'REGISTRATION', instance_id: `${s.name}-${variant}` } });
        break;
      case 1:
        pool.push({ identity: s.reader, action: 'read', resource: `service:${s.name}`, namespace: s.namespace, context: { source_ip: sourceIp, event_type: 'DISCOVERY', instance_id: `${s.name}-${variant}` } });
        break;
      case 2: {
        const other = services[(j + 1) % services.length]!;
        pool.push({ identity: other.writer, action: 'write', resource: `service:${s.name}/${s.name}-${variant}`, namespace: s.namespace, context: { source_ip: sourceIp, event_type: 'REGISTRATION', instance_id: `${s.name}-${variant}` } });
        break;
      }
      default:
        pool.push({ identity: `spiffe://cluster/ns/${s.namespace}/sa/unknown-${variant}`, action: 'read', resource: `service:${s.name}`, namespace: s.namespace, context: { source_ip: sourceIp, event_type: 'DISCOVERY', instance_id: `${s.name}-${variant}` } });
    }
  }
  return pool;
}

async function makeFixture(config: ServerBenchConfig): Promise<Fixture> {
  const dir = benchTempDir('pdp-bench-server-');
  const policyDir = path.join(dir, 'policies');
  fs.mkdirSync(policyDir);
  const examples = path.resolve(__dirname, '../../policies');
  for (const f of fs.readdirSync(examples)) if (f.endsWith('.hcl')) fs.copyFileSync(path.join(examples, f), path.join(policyDir, f));
  const services = generatedServices(config.generatedServices);
  fs.writeFileSync(path.join(policyDir, 'generated-services.hcl'), generatedHcl(services));

  const engine = new Engine(policyDir);
  const loaded = engine.reload();
  if (!loaded.ok) throw new Error(`the benchmark policy set does not load: ${loaded.error ?? loaded.diagnostics.map((d) => `${d.span.file}:${d.span.start.line}: ${d.message}`).join('; ')}`);
  const policy = loaded.policy;

  const pool = missPool(services, config.missPool);
  const missMix: Record<string, number> = {};
  const decide = (r: typeof HIT_REQUEST) => {
    const outcome = decideWith(policy, { identity: r.identity, action: r.action, resource: r.resource, namespace: r.namespace, sourceIp: r.context.source_ip });
    if (!outcome.ok) throw new Error(`pool request is invalid: ${JSON.stringify(r)}: ${outcome.error.message}`);
    return outcome.decision.result;
  };
  for (const r of pool) {
    const result = decide(r);
    missMix[result] = (missMix[result] ?? 0) + 1;
  }
  if (decide(HIT_REQUEST) !== 'ALLOW') throw new Error('the hit request is expected to be allowed by policies/prod.hcl');

  const batches: string[] = [];
  for (let start = 0; start + config.checksPerBatch <= pool.length; start += config.checksPerBatch) {
    batches.push(JSON.stringify({ checks: pool.slice(start, start + config.checksPerBatch) }));
  }

  const caDir = path.join(dir, 'ca');
  await initCa({ dir: caDir, trustDomain: 'cluster' });
  const server = await issueCertificate({ caDir, kind: 'server', name: 'server', dns: ['localhost'], ips: ['127.0.0.1'] });
  const client = await issueCertificate({ caDir, kind: 'workload', name: 'registry', spiffeId: MTLS_CLIENT_ID });

  return {
    dir, policyDir,
    ruleCount: policy.ruleCount,
    policyVersion: policy.version,
    hitBody: JSON.stringify(HIT_REQUEST),
    missBodies: pool.map((r) => JSON.stringify(r)),
    missMix,
    batchHitBody: batches[0]!,
    batchMissBodies: batches,
    tls: { serverCert: server.certPath, serverKey: server.keyPath, clientCert: client.certPath, clientKey: client.keyPath, ca: server.caCertPath },
  };
}

// ---- scenarios -----------------------------------------------------------------------------------

export const SCENARIO_IDS = [
  'node-http', 'fastify', 'pdp-hit', 'pdp-miss', 'pdp-audit-off', 'pdp-audit-off-miss',
  'pdp-batch-hit', 'pdp-batch-miss', 'pdp-hit-thread', 'pdp-batch-hit-thread', 'pdp-hit-no-checkpointer',
  'pdp-plain', 'pdp-mtls', 'fastify-plain', 'fastify-mtls',
] as const;
export type ScenarioId = (typeof SCENARIO_IDS)[number];

interface Scenario {
  id: ScenarioId;
  label: string;
  target: TargetConfig;
  path: string;
  bodies: string[];
  checksPerRequest: number;
  tls: boolean;
  /** Scrape /metrics after the run (cache hits/misses, audit rows). */
  scrape: boolean;
  /** 'transport': the plain/mTLS comparison, measured as its own group with transportRounds. */
  group?: 'transport';
}

function scenarios(f: Fixture, config: ServerBenchConfig): Scenario[] {
  const audit = (id: string) => path.join(f.dir, `audit-${id}.db`);
  const pdp = (id: string, extra: Partial<TargetConfig> = {}): TargetConfig => ({ kind: 'pdp', policyDir: f.policyDir, auditPath: audit(id), cacheEntries: config.cacheEntries, ...extra });
  const single = { path: '/v1/authorize', checksPerRequest: 1, tls: false };
  const batch = { path: '/v1/authorize/batch', checksPerRequest: config.checksPerBatch, tls: false, scrape: true };
  return [
    { id: 'node-http', label: 'bare node:http (JSON.parse, constant JSON)', target: { kind: 'node-http' }, bodies: [f.hitBody], scrape: false, ...single },
    { id: 'fastify', label: 'bare fastify (same body schema, constant JSON)', target: { kind: 'fastify' }, bodies: [f.hitBody], scrape: false, ...single },
    { id: 'pdp-hit', label: 'pdp /v1/authorize, audit on, cache hit', target: pdp('hit'), bodies: [f.hitBody], scrape: true, ...single },
    { id: 'pdp-miss', label: 'pdp /v1/authorize, audit on, cache miss', target: pdp('miss'), bodies: f.missBodies, scrape: true, ...single },
    { id: 'pdp-audit-off', label: 'pdp /v1/authorize, audit off (benchmark only), cache hit', target: pdp('off', { auditPath: undefined }), bodies: [f.hitBody], scrape: true, ...single },
    { id: 'pdp-audit-off-miss', label: 'pdp /v1/authorize, audit off (benchmark only), cache miss', target: pdp('off-miss', { auditPath: undefined }), bodies: f.missBodies, scrape: true, ...single },
    { id: 'pdp-batch-hit', label: `pdp /v1/authorize/batch ×${config.checksPerBatch}, audit on, cache hit`, target: pdp('batch-hit'), bodies: [f.batchHitBody], ...batch },
    { id: 'pdp-hit-thread', label: 'pdp /v1/authorize, audit on (writer thread), cache hit', target: pdp('hit-thread', { auditWriter: 'thread' }), bodies: [f.hitBody], scrape: true, ...single },
    { id: 'pdp-batch-hit-thread', label: `pdp /v1/authorize/batch ×${config.checksPerBatch}, audit on (writer thread), cache hit`, target: pdp('batch-hit-thread', { auditWriter: 'thread' }), bodies: [f.batchHitBody], ...batch },
    {
      id: 'pdp-hit-no-checkpointer', label: 'pdp /v1/authorize, audit on, cache hit, without the checkpointer thread (SQLite checkpoints in the commits)',
      target: pdp('hit-no-checkpointer', { checkpointer: false }), bodies: [f.hitBody], scrape: true, ...single,
    },
    { id: 'pdp-batch-miss', label: `pdp /v1/authorize/batch ×${config.checksPerBatch}, audit on, cache miss`, target: pdp('batch-miss'), bodies: f.batchMissBodies, ...batch },
    { id: 'pdp-plain', label: 'pdp /v1/authorize over plain HTTP, audit on, cache hit (twin of the mTLS run)', target: pdp('plain'), bodies: [f.hitBody], scrape: true, ...single, group: 'transport' },
    {
      id: 'pdp-mtls', label: 'pdp /v1/authorize over mTLS (TLS 1.3, keep-alive), audit on, cache hit',
      target: pdp('mtls', { tls: { cert: f.tls.serverCert, key: f.tls.serverKey, clientCa: f.tls.ca, rateLimitPerSecond: MTLS_RATE_LIMIT } }),
      bodies: [f.hitBody], scrape: false, ...single, tls: true, group: 'transport',
    },
    { id: 'fastify-plain', label: 'bare fastify over plain HTTP (twin of the next; reference for the transport)', target: { kind: 'fastify' }, bodies: [f.hitBody], scrape: false, ...single, group: 'transport' },
    {
      id: 'fastify-mtls', label: 'bare fastify over mTLS (same TLS 1.3 and client-certificate settings; reference)',
      target: { kind: 'fastify', tls: { cert: f.tls.serverCert, key: f.tls.serverKey, clientCa: f.tls.ca, rateLimitPerSecond: 0 } },
      bodies: [f.hitBody], scrape: false, ...single, tls: true, group: 'transport',
    },
  ];
}

// ---- target processes ----------------------------------------------------------------------------

interface TargetProcess {
  port: number;
  cpu(): Promise<{ usage: NodeJS.CpuUsage; monotonicUs: number; connections: number }>;
  stop(): Promise<void>;
}

async function startTarget(config: TargetConfig, execArgv: string[]): Promise<TargetProcess> {
  const script = path.join(__dirname, 'server-targets.js');
  const child: ChildProcess = fork(script, [], { execArgv, stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'json' });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  const waiters: ((m: ChildMessage) => void)[] = [];
  let exited = false;
  const exitPromise = new Promise<void>((resolve) => child.once('exit', () => { exited = true; resolve(); }));
  child.on('message', (m: ChildMessage) => waiters.shift()?.(m));
  const next = (timeoutMs: number) => new Promise<ChildMessage>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`target did not answer within ${timeoutMs} ms${stderr ? `: ${stderr}` : ''}`)), timeoutMs);
    waiters.push((m) => { clearTimeout(timer); resolve(m); });
    void exitPromise.then(() => { clearTimeout(timer); reject(new Error(`target exited${stderr ? `: ${stderr}` : ''}`)); });
  });
  const sendMsg = (m: ParentMessage) => child.send(m);
  const kill = async () => {
    if (exited) return;
    child.kill('SIGKILL');
    await exitPromise;
  };
  try {
    const ready = next(60_000);
    sendMsg({ type: 'start', config });
    const m = await ready;
    if (m.type !== 'ready') throw new Error(`target failed to start: ${m.type === 'error' ? m.message : m.type}`);
    return {
      port: m.port,
      async cpu() {
        const answer = next(10_000);
        sendMsg({ type: 'cpu' });
        const a = await answer;
        if (a.type !== 'cpu') throw new Error(`unexpected answer ${a.type}`);
        return { usage: a.usage, monotonicUs: a.monotonicUs, connections: a.connections };
      },
      async stop() {
        try {
          const answer = next(30_000).catch(() => undefined);
          sendMsg({ type: 'stop' });
          await answer;
          // A normal exit (the profile is written on exit); force it if it hangs. Unref'd: a pending
          // timer kept the whole bench process alive for up to 30 s after its last target stopped.
          await Promise.race([exitPromise, new Promise((r) => setTimeout(r, 30_000).unref())]);
        } finally {
          await kill();
        }
      },
    };
  } catch (e) {
    await kill();
    throw e;
  }
}

// ---- load ----------------------------------------------------------------------------------------

interface RoundOutcome {
  durationS: number;
  latenciesMs: number[];
  status: Record<string, number>;
  errors: number;
  timeouts: number;
}

/** One autocannon run; every response's status and latency (2xx only) are recorded here. */
function cannon(opts: CannonOptions): Promise<RoundOutcome> {
  return new Promise((resolve, reject) => {
    const latenciesMs: number[] = [];
    const status: Record<string, number> = {};
    const instance = autocannon(opts, (err, result) => (err ? reject(err) : resolve({ durationS: result.duration, latenciesMs, status, errors: result.errors, timeouts: result.timeouts })));
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTimeMs: number) => {
      status[statusCode] = (status[statusCode] ?? 0) + 1;
      if (statusCode >= 200 && statusCode < 300) latenciesMs.push(responseTimeMs);
    });
  });
}

function cannonOptions(s: Scenario, port: number, f: Fixture, config: ServerBenchConfig, duration: number, cursor: { i: number }): CannonOptions {
  // Every target is driven the same way: a setupRequest that takes the next body of a pre-serialised
  // pool (one body for the hit and baseline targets), so the load generator's work per request is the same.
  // The cursor carries over from the warmup through every round, so a miss pool is never replayed
  // while its decisions may still be cached.
  const bodies = s.bodies;
  const opts: CannonOptions = {
    url: `${s.tls ? 'https' : 'http'}://127.0.0.1:${port}${s.path}`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    connections: config.connections,
    pipelining: 1,
    duration,
    timeout: 30,
    requests: [{
      method: 'POST',
      path: s.path,
      setupRequest: (req) => {
        req.body = bodies[cursor.i++ % bodies.length]!;
        return req;
      },
    }],
  };
  if (s.tls) {
    opts.servername = 'localhost';
    opts.tlsOptions = { cert: fs.readFileSync(f.tls.clientCert), key: fs.readFileSync(f.tls.clientKey), ca: fs.readFileSync(f.tls.ca), minVersion: 'TLSv1.3' };
  }
  return opts;
}

/** One request, checked by hand before the load: 200, and for pdp the answer it should give. */
function probe(s: Scenario, port: number, f: Fixture): Promise<{ status: number; body: string; tlsProtocol?: string }> {
  const body = s.bodies[0]!;
  return new Promise((resolve, reject) => {
    const options: https.RequestOptions = {
      host: '127.0.0.1', port, path: s.path, method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    };
    const onResponse = (res: http.IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, tlsProtocol: (res.socket as import('node:tls').TLSSocket).getProtocol?.() ?? undefined }));
    };
    const req = s.tls
      ? https.request({ ...options, servername: 'localhost', cert: fs.readFileSync(f.tls.clientCert), key: fs.readFileSync(f.tls.clientKey), ca: fs.readFileSync(f.tls.ca), agent: false }, onResponse)
      : http.request({ ...options, agent: false }, onResponse);
    req.on('error', reject);
    req.end(body);
  });
}

function scrapeMetrics(port: number): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => {
        const out: Record<string, number> = {};
        for (const line of text.split('\n')) {
          const m = /^(pdp_cache_hits_total|pdp_cache_misses_total|pdp_audit_rows_total|pdp_audit_failures_total|pdp_decisions_total)(\{[^}]*\})? (\S+)$/.exec(line);
          if (m) out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[3]);
        }
        resolve(out);
      });
    }).on('error', reject);
  });
}

export interface ScenarioResult {
  id: ScenarioId;
  label: string;
  checksPerRequest: number;
  /** 2xx answers over the summed measured time of all rounds. */
  requestsPerSecond: number;
  decisionsPerSecond: number;
  /** requests/s of each round, in round order: the spread shows how steady the machine was. */
  roundRequestsPerSecond: number[];
  /** Over every 2xx answer of every round. */
  latencyMs: { p50: number; p90: number; p99: number; p999: number; mean: number; max: number };
  totalRequests: number;
  measuredSeconds: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  /** CPU time of the server process / wall time of the measured rounds (1.0 = one core busy). */
  serverCpuCores: number;
  /** 2xx answers per second of server CPU time: throughput with the machine's contention factored out. */
  requestsPerServerCpuSecond: number;
  /** CPU time of this process (the load generator) / wall time of the measured rounds. */
  loadgenCpuCores: number;
  /** TCP connections the server accepted during the measured rounds (keep-alive: one per autocannon connection per round). */
  connectionsAccepted: number;
  metrics?: Record<string, number>;
  /** The measured rounds on the target's monotonic clock (µs), to cut its CPU profile. */
  windows: { startUs: number; endUs: number }[];
  probe: { status: number; result?: string; tlsProtocol?: string };
}

interface Live {
  s: Scenario;
  target: TargetProcess;
  cursor: { i: number };
  probe: ScenarioResult['probe'];
  before?: Record<string, number>;
  rounds: { reqs: number; seconds: number; wallUs: number; serverCpuUs: number; loadgenCpuUs: number; connections: number; window: { startUs: number; endUs: number } }[];
  latencies: number[];
  status: Record<string, number>;
  errors: number;
  timeouts: number;
}

/**
 * Starts every target at once: an idle target takes no CPU, and starting them one after another
 * (a process, the 2,014-rule policy, the audit store: ~1.3 s each) took longer than a quick run's
 * measuring. If one fails, the others are stopped.
 */
async function startAll(list: Scenario[], execArgvFor: (s: Scenario) => string[]): Promise<TargetProcess[]> {
  const settled = await Promise.allSettled(list.map((s) => startTarget(s.target, execArgvFor(s))));
  const failure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) {
    await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    throw failure.reason;
  }
  return settled.map((r) => (r as PromiseFulfilledResult<TargetProcess>).value);
}

/** Checks a started target answers correctly, and warms it up (JIT, caches, audit store), alone. */
async function prepare(s: Scenario, target: TargetProcess, f: Fixture, config: ServerBenchConfig): Promise<Live> {
  const p = await probe(s, target.port, f);
  if (p.status !== 200) throw new Error(`${s.id}: the probe request answered ${p.status}: ${p.body.slice(0, 500)}`);
  let probeResult: string | undefined;
  if (s.target.kind === 'pdp') {
    const parsed = JSON.parse(p.body) as { result?: string; results?: { result: string }[] };
    probeResult = parsed.result ?? (parsed.results ? `${parsed.results.length} results` : undefined);
    if (s.checksPerRequest > 1 && parsed.results?.length !== s.checksPerRequest) throw new Error(`${s.id}: expected ${s.checksPerRequest} results, got ${parsed.results?.length}`);
  }
  const cursor = { i: 1 }; // the probe sent body 0
  if (config.warmupSeconds > 0) await cannon(cannonOptions(s, target.port, f, config, config.warmupSeconds, cursor));
  return {
    s, target, cursor,
    probe: { status: p.status, ...(probeResult ? { result: probeResult } : {}), ...(p.tlsProtocol ? { tlsProtocol: p.tlsProtocol } : {}) },
    rounds: [], latencies: [], status: {}, errors: 0, timeouts: 0,
  };
}

async function measureRound(live: Live, f: Fixture, config: ServerBenchConfig, seconds: number): Promise<void> {
  const cpu0 = await live.target.cpu();
  const self0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const r = await cannon(cannonOptions(live.s, live.target.port, f, config, seconds, live.cursor));
  const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
  const self1 = process.cpuUsage(self0);
  const cpu1 = await live.target.cpu();
  const ok = r.latenciesMs.length;
  live.rounds.push({
    reqs: ok, seconds: r.durationS, wallUs,
    serverCpuUs: cpu1.usage.user - cpu0.usage.user + cpu1.usage.system - cpu0.usage.system,
    loadgenCpuUs: self1.user + self1.system,
    connections: cpu1.connections - cpu0.connections,
    window: { startUs: cpu0.monotonicUs, endUs: cpu1.monotonicUs },
  });
  for (const l of r.latenciesMs) live.latencies.push(l);
  for (const [k, v] of Object.entries(r.status)) live.status[k] = (live.status[k] ?? 0) + v;
  live.errors += r.errors;
  live.timeouts += r.timeouts;
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function summarize(live: Live, metrics: Record<string, number> | undefined): ScenarioResult {
  const s = live.s;
  const reqs = live.rounds.reduce((a, r) => a + r.reqs, 0);
  const seconds = live.rounds.reduce((a, r) => a + r.seconds, 0);
  const wallUs = live.rounds.reduce((a, r) => a + r.wallUs, 0);
  const serverCpuUs = live.rounds.reduce((a, r) => a + r.serverCpuUs, 0);
  const loadgenCpuUs = live.rounds.reduce((a, r) => a + r.loadgenCpuUs, 0);
  const sorted = Float64Array.from(live.latencies).sort();
  const mean = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : NaN;
  const non2xx = Object.entries(live.status).filter(([k]) => !k.startsWith('2')).reduce((a, [, v]) => a + v, 0);
  const rps = seconds > 0 ? reqs / seconds : 0;
  return {
    id: s.id,
    label: s.label,
    checksPerRequest: s.checksPerRequest,
    requestsPerSecond: rps,
    decisionsPerSecond: rps * s.checksPerRequest,
    roundRequestsPerSecond: live.rounds.map((r) => (r.seconds > 0 ? r.reqs / r.seconds : 0)),
    latencyMs: { p50: percentile(sorted, 0.5), p90: percentile(sorted, 0.9), p99: percentile(sorted, 0.99), p999: percentile(sorted, 0.999), mean, max: sorted.length ? sorted[sorted.length - 1]! : NaN },
    totalRequests: reqs,
    measuredSeconds: seconds,
    errors: live.errors,
    timeouts: live.timeouts,
    non2xx,
    statusCodes: live.status,
    serverCpuCores: serverCpuUs / wallUs,
    requestsPerServerCpuSecond: serverCpuUs > 0 ? reqs / (serverCpuUs / 1e6) : 0,
    loadgenCpuCores: loadgenCpuUs / wallUs,
    connectionsAccepted: live.rounds.reduce((a, r) => a + r.connections, 0),
    ...(metrics ? { metrics } : {}),
    windows: live.rounds.map((r) => r.window),
    probe: live.probe,
  };
}

/**
 * All targets are started (and warmed up) first, then measured in interleaved rounds: round 1 runs
 * every target for roundSeconds, then round 2, … so that a change in the machine's background load
 * during the run hits every target alike instead of whichever happened to run at that moment.
 */
async function measureAll(list: Scenario[], f: Fixture, config: ServerBenchConfig, rounds: number, log: (l: string) => void, execArgvFor: (s: Scenario) => string[]): Promise<ScenarioResult[]> {
  if (list.length === 0) return [];
  const targets = await startAll(list, execArgvFor);
  const lives: Live[] = [];
  try {
    for (const [i, s] of list.entries()) {
      lives.push(await prepare(s, targets[i]!, f, config));
      log(`  started ${s.id} (probe ${lives[lives.length - 1]!.probe.status}${lives[lives.length - 1]!.probe.result ? `, ${lives[lives.length - 1]!.probe.result}` : ''}), warmed up ${config.warmupSeconds} s`);
    }
    for (const live of lives) if (live.s.scrape) live.before = await scrapeMetrics(live.target.port);
    const roundSeconds = config.durationSeconds / rounds;
    for (let round = 0; round < rounds; round++) {
      // Rotate the order each round so no target always runs first (or right after a heavy one).
      const order = lives.map((_, i) => lives[(i + round) % lives.length]!);
      for (const live of order) await measureRound(live, f, config, roundSeconds);
      log(`  round ${round + 1}/${rounds} done (load average ${os.loadavg()[0]!.toFixed(2)})`);
    }
    const results: ScenarioResult[] = [];
    for (const live of lives) {
      let metrics: Record<string, number> | undefined;
      if (live.before) {
        const after = await scrapeMetrics(live.target.port);
        metrics = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (live.before![k] ?? 0)]));
      }
      const r = summarize(live, metrics);
      results.push(r);
      log(`  ${r.id.padEnd(20)} ${fmtInt(r.requestsPerSecond).padStart(8)} req/s (rounds ${r.roundRequestsPerSecond.map(fmtInt).join(', ')})  p50 ${fmtMs(r.latencyMs.p50)} ms  p99 ${fmtMs(r.latencyMs.p99)} ms  errors ${r.errors + r.timeouts}  non-2xx ${r.non2xx}  server ${r.serverCpuCores.toFixed(2)} cores (${fmtInt(r.requestsPerServerCpuSecond)} req/CPU-s), loadgen ${r.loadgenCpuCores.toFixed(2)} cores, ${r.connectionsAccepted} connections`);
    }
    return results;
  } finally {
    for (const target of targets) await target.stop();
  }
}

// ---- ratios and report ---------------------------------------------------------------------------

export interface Machine {
  cpu: string; cores: number; totalMemoryGB: number; node: string; platform: string; date: string;
  commit: string | null; dirty: boolean | null; loadAverageAtStart: number[]; loadAverageAtEnd?: number[];
}

function machine(): Machine {
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
    commit,
    dirty: status === null ? null : status.length > 0,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    totalMemoryGB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    date: new Date().toISOString(),
    loadAverageAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');
const fmtMs = (n: number) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));

export interface ServerBenchData {
  machine: Machine;
  quick: boolean;
  config: ServerBenchConfig;
  policy: { rules: number; version: string; generatedServices: number; missPool: number; missMix: Record<string, number> };
  results: ScenarioResult[];
  ratios: Ratio[];
}

export function renderMarkdown(d: ServerBenchData): string {
  const out: string[] = [];
  const m = d.machine;
  out.push(`Machine: ${m.cpu}, ${m.cores} cores, ${m.totalMemoryGB} GB RAM, ${m.platform}; Node ${m.node}; ${m.date}; commit ${m.commit?.slice(0, 12) ?? 'unknown'}${m.dirty ? ' (with uncommitted changes)' : ''}; load average (1/5/15 min) at start ${m.loadAverageAtStart.join(' / ')}${m.loadAverageAtEnd ? `, at end ${m.loadAverageAtEnd.join(' / ')}` : ''}.`);
  out.push('');
  out.push(`autocannon ${d.config.connections} connections (keep-alive, no pipelining) from this process; every target in its own process on 127.0.0.1, started and warmed up (${d.config.warmupSeconds} s) first, then measured in ${d.config.rounds} interleaved rounds of ${d.config.durationSeconds / d.config.rounds} s (${d.config.durationSeconds} s per target; the plain/mTLS group separately, in ${d.config.transportRounds} rounds of ${d.config.durationSeconds / d.config.transportRounds} s, since each round opens new connections). Policy: the example \`policies/\` plus ${fmtInt(d.policy.generatedServices)} generated services = ${fmtInt(d.policy.rules)} rules. Cache-miss targets rotate over ${fmtInt(d.policy.missPool)} distinct requests (decision cache: ${fmtInt(d.config.cacheEntries)} entries), ${Object.entries(d.policy.missMix).map(([k, v]) => `${k} ${(100 * v / d.policy.missPool).toFixed(0)} %`).join(', ')}.`);
  out.push('');
  out.push('| target | req/s | decisions/s | rounds min–max req/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | non-2xx | server CPU (cores) | req per server CPU-s | loadgen CPU (cores) | connections | cache hits / misses |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const r of d.results) {
    const cache = r.metrics && (r.metrics.pdp_cache_hits_total !== undefined) ? `${fmtInt(r.metrics.pdp_cache_hits_total ?? 0)} / ${fmtInt(r.metrics.pdp_cache_misses_total ?? 0)}` : '–';
    const spread = r.roundRequestsPerSecond.length ? `${fmtInt(Math.min(...r.roundRequestsPerSecond))}–${fmtInt(Math.max(...r.roundRequestsPerSecond))}` : '–';
    out.push(`| ${r.label} | ${fmtInt(r.requestsPerSecond)} | ${fmtInt(r.decisionsPerSecond)} | ${spread} | ${fmtMs(r.latencyMs.p50)} | ${fmtMs(r.latencyMs.p99)} | ${fmtMs(r.latencyMs.p999)} | ${fmtMs(r.latencyMs.max)} | ${r.errors + r.timeouts} | ${r.non2xx} | ${r.serverCpuCores.toFixed(2)} | ${fmtInt(r.requestsPerServerCpuSecond)} | ${r.loadgenCpuCores.toFixed(2)} | ${r.connectionsAccepted} | ${cache} |`);
  }
  out.push('');
  const bad = d.results.filter((r) => r.errors + r.timeouts + r.non2xx > 0);
  out.push(bad.length ? `**Errors or non-2xx answers:** ${bad.map((r) => `${r.id}: ${r.errors} errors, ${r.timeouts} timeouts, ${r.non2xx} non-2xx (${JSON.stringify(r.statusCodes)})`).join('; ')}.` : 'Every request of every target answered 2xx; no errors, no timeouts.');
  out.push('');
  out.push('| ratio | measured | per server CPU-s | target | met (measured / per CPU) |');
  out.push('|---|---:|---:|---:|:---:|');
  for (const r of d.ratios) out.push(`| ${r.name} | ${r.value.toFixed(2)} | ${r.perCpu === undefined ? '–' : r.perCpu.toFixed(2)} | ${r.target} | ${r.met === undefined ? '–' : r.met ? 'yes' : '**no**'}${r.metPerCpu === undefined ? '' : ` / ${r.metPerCpu ? 'yes' : '**no**'}`} |`);
  out.push('');
  out.push(`The load generator and the servers share ${m.cores} cores (and, on a shared machine, whatever else runs), so absolute numbers are a floor for this machine; the ratios are comparable within one run. "req per server CPU-s" divides the answers by the CPU time the server process actually got, which factors out contention. \`pdp-hit\` and \`pdp-plain\` are the same configuration measured as two processes and show the noise. mTLS: TLS 1.3, keep-alive, client certificate for \`${MTLS_CLIENT_ID}\` (granted \`api "authorize"\`), server built with \`createSecurity\` as \`pdp serve --tls-cert --tls-key --client-ca\` does, with the per-caller rate limit raised so it never refuses (see docs/benchmarks-server.md).`);
  return out.join('\n');
}

// ---- profiles ------------------------------------------------------------------------------------

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const SOCKET_WRITES = new Set(['writev', 'writeBuffer', 'writeUtf8String', 'writeLatin1String', 'writeAsciiString']);

/** One target's profile, reduced: self time (µs) by function and by area, pdp's inclusive times. */
export interface ProfileTimes {
  /** Only the samples of the measured rounds (else the whole process). */
  inRange: boolean;
  /** µs sampled. */
  total: number;
  byFunction: Map<string, number>;
  byArea: Map<string, number>;
  inclusive: Map<string, number>;
}

/** Self time by function and by area (pdp source, each package, node internals), pdp's inclusive time. */
export function readProfile(file: string, windows?: { startUs: number; endUs: number }[]): ProfileTimes {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let total = 0;
  // Only the samples of the measured rounds (not start-up, policy compilation, warmup or the pauses
  // while other targets ran) when the windows are on the same monotonic clock as the profile.
  const inRange = windows !== undefined && windows.length > 0 && windows.every((w) => w.startUs >= profile.startTime && w.endUs <= profile.endTime);
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    if (inRange && !windows.some((w) => t >= w.startUs && t <= w.endUs)) continue;
    self.set(profile.samples[i]!, (self.get(profile.samples[i]!) ?? 0) + dt);
    total += dt;
  }
  const root = path.resolve(__dirname, '../..');
  const where = (url: string) => {
    const u = url.replace(/^file:\/\//, '');
    if (!u) return '';
    const nm = u.lastIndexOf('node_modules/');
    if (nm >= 0) return u.slice(nm + 13);
    if (u.startsWith(root)) return path.relative(root, u);
    return u;
  };
  const area = (fn: string, url: string) => {
    const w = where(url);
    // The socket writes apart: their time is mostly the kernel's (loopback TCP, waking the reader).
    if (!w && SOCKET_WRITES.has(fn)) return 'socket writes (native, kernel included)';
    if (!w) return fn.startsWith('(') ? fn : '(native / V8 builtins)';
    const u = url.replace(/^file:\/\//, '');
    const nm = u.lastIndexOf('node_modules/');
    if (nm >= 0) {
      const rest = u.slice(nm + 13).split('/');
      return `npm ${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
    }
    if (w.startsWith('node:')) return 'node internals';
    if (w.startsWith('dist/src/')) return `pdp ${w.split('/').slice(2, 3).join('/')}`;
    if (w.startsWith('dist/bench/')) return 'bench target';
    return w;
  };
  const fnTimes = new Map<string, number>();
  const areaTimes = new Map<string, number>();
  for (const [id, t] of self) {
    const n = byId.get(id)!;
    const { functionName, url, lineNumber } = n.callFrame;
    const key = `${functionName || '(anonymous)'} ${where(url) ? `${where(url)}:${lineNumber + 1}` : ''}`.trim();
    fnTimes.set(key, (fnTimes.get(key) ?? 0) + t);
    const a = area(functionName, url);
    areaTimes.set(a, (areaTimes.get(a) ?? 0) + t);
  }
  // Inclusive (self + callees) time of pdp's own functions: each sample counts once per function on its stack.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  for (const [id, t] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const { functionName, url, lineNumber } = byId.get(cur)!.callFrame;
      const w = where(url);
      if (!w.startsWith('dist/src/')) continue;
      const key = `${functionName || '(anonymous)'} ${w}:${lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + t);
    }
  }
  return { inRange, total, byFunction: fnTimes, byArea: areaTimes, inclusive };
}

/** Top self-time functions and self time by area, and the inclusive time of pdp's own functions. */
export function summarizeProfile(times: ProfileTimes, top = 25): string {
  const { inRange, total, byFunction: fnTimes, byArea: areaTimes, inclusive } = times;
  const pct = (t: number) => `${((100 * t) / total).toFixed(1)} %`;
  const out: string[] = [];
  out.push(`${inRange ? 'Measured rounds only' : 'Whole process (start-up and warmup included)'}: ${(total / 1e6).toFixed(2)} s sampled; \`(idle)\` is the event loop waiting for requests.`);
  out.push('');
  out.push('| self time | function |');
  out.push('|---:|---|');
  for (const [k, t] of [...fnTimes].sort((a, b) => b[1] - a[1]).slice(0, top)) out.push(`| ${pct(t)} | \`${k}\` |`);
  out.push('');
  out.push('| self time | area |');
  out.push('|---:|---|');
  for (const [k, t] of [...areaTimes].sort((a, b) => b[1] - a[1]).slice(0, 20)) out.push(`| ${pct(t)} | ${k} |`);
  out.push('');
  out.push('| inclusive time | pdp function (with everything it calls) |');
  out.push('|---:|---|');
  for (const [k, t] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, 15)) out.push(`| ${pct(t)} | \`${k}\` |`);
  return out.join('\n');
}

/**
 * CPU per answered request by area, side by side: what each target spends where, in µs of the main
 * thread's samples over the measured rounds divided by the 2xx answers in them (a batch target's
 * request carries its whole batch). `(idle)` is left out; worker threads (the audit writer, the
 * checkpointer) are not in a main-thread profile.
 */
export function perRequestTable(rows: readonly { id: string; requests: number; times: ProfileTimes }[]): string {
  const us = (row: (typeof rows)[number], area: string) => (row.times.byArea.get(area) ?? 0) / row.requests;
  const areas = [...new Set(rows.flatMap((r) => [...r.times.byArea.keys()]))].filter((a) => a !== '(idle)');
  // Largest first, by the most any target spends there; areas under 0.05 µs everywhere are summed.
  areas.sort((a, b) => Math.max(...rows.map((r) => us(r, b))) - Math.max(...rows.map((r) => us(r, a))));
  const shown = areas.filter((a) => rows.some((r) => us(r, a) >= 0.05));
  const rest = areas.filter((a) => !shown.includes(a));
  const fmt = (v: number) => (v >= 10 ? v.toFixed(1) : v.toFixed(2));
  const out = [
    '## CPU per answered request, by area (µs, measured rounds, main thread; idle left out)',
    '',
    `| area | ${rows.map((r) => `\`${r.id}\``).join(' | ')} |`,
    `|---|${rows.map(() => '---:').join('|')}|`,
  ];
  for (const a of shown) out.push(`| ${a} | ${rows.map((r) => fmt(us(r, a))).join(' | ')} |`);
  if (rest.length) out.push(`| ${rest.length} other area${rest.length === 1 ? '' : 's'} | ${rows.map((r) => fmt(rest.reduce((sum, a) => sum + us(r, a), 0))).join(' | ')} |`);
  out.push(`| **busy, in all** | ${rows.map((r) => `**${fmt(areas.reduce((sum, a) => sum + us(r, a), 0))}**`).join(' | ')} |`);
  return out.join('\n');
}

// ---- entry points --------------------------------------------------------------------------------

export interface ServerSuiteResult extends SuiteResult {
  /** The same as `data` (the shape bench/run.ts and standalone callers both read). */
  results: ServerBenchData;
}

function dateStamp(iso: string): string {
  return iso.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
}

export async function run(opts: SuiteOptions & { profile?: boolean; only?: ScenarioId[] }): Promise<ServerSuiteResult> {
  const started = Date.now();
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const config = opts.quick ? QUICK : FULL;
  const stamp = machine();
  log(`  server: ${stamp.cpu}, ${stamp.cores} cores, Node ${stamp.node}; ${config.connections} connections, ${config.warmupSeconds} s warmup, then ${config.rounds} interleaved rounds of ${config.durationSeconds / config.rounds} s per target (plain/mTLS group: ${config.transportRounds} of ${config.durationSeconds / config.transportRounds} s)${opts.profile ? ' (profiling)' : ''}`);
  const fixture = await makeFixture(config);
  const profileDir = path.join(fixture.dir, 'profiles');
  // benchTempDir also removes the fixture on Ctrl-C and SIGTERM.
  const cleanup = () => fs.rmSync(fixture.dir, { recursive: true, force: true });
  try {
    log(`  policy: ${fixture.ruleCount} rules; miss pool ${fixture.missBodies.length} requests (${JSON.stringify(fixture.missMix)})`);
    const list = scenarios(fixture, config).filter((s) => !opts.only || opts.only.includes(s.id));
    // The baselines are profiled too: their profile is what "the HTTP part" costs.
    const profiling = (_s: Scenario) => opts.profile === true;
    const execArgv = (s: Scenario) => (profiling(s) ? ['--cpu-prof', '--cpu-prof-dir', path.join(profileDir, s.id)] : []);
    const results = [
      ...await measureAll(list.filter((s) => s.group !== 'transport'), fixture, config, config.rounds, log, execArgv),
      ...await measureAll(list.filter((s) => s.group === 'transport'), fixture, config, config.transportRounds, log, execArgv),
    ];
    const profiles: string[] = [];
    const perRequest: { id: ScenarioId; requests: number; times: ProfileTimes }[] = [];
    for (const s of list.filter(profiling)) {
      const dir = path.join(profileDir, s.id);
      const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')) : [];
      const result = results.find((r) => r.id === s.id)!;
      if (files.length && process.env.PDP_BENCH_KEEP_PROFILES) {
        fs.mkdirSync(process.env.PDP_BENCH_KEEP_PROFILES, { recursive: true });
        fs.copyFileSync(path.join(dir, files[0]!), path.join(process.env.PDP_BENCH_KEEP_PROFILES, `${s.id}.cpuprofile`));
      }
      if (!files.length) {
        profiles.push(`### ${s.id}\n\nno profile was written\n`);
        continue;
      }
      const times = readProfile(path.join(dir, files[0]!), result.windows);
      if (times.inRange && result.totalRequests > 0) perRequest.push({ id: s.id, requests: result.totalRequests, times });
      profiles.push(`### ${s.label} (\`${s.id}\`)\n\n${summarizeProfile(times)}\n`);
    }
    stamp.loadAverageAtEnd = os.loadavg().map((l) => Math.round(l * 100) / 100);
    const data: ServerBenchData = {
      machine: stamp,
      quick: opts.quick,
      config,
      policy: { rules: fixture.ruleCount, version: fixture.policyVersion, generatedServices: config.generatedServices, missPool: fixture.missBodies.length, missMix: fixture.missMix },
      results,
      ratios: ratios(results),
    };
    let markdown = renderMarkdown(data);
    const files: SuiteFile[] = [];
    // A quick or partial (`--only`) run never replaces a full run's files: it gets names of its own.
    const suffix = `${opts.only ? '-partial' : ''}${opts.quick ? '-quick' : ''}`;
    if (opts.profile) {
      // A target whose rounds are not on the profile's clock would count start-up and warmup too: left out, and said.
      const outOfRange = list.filter(profiling).filter((s) => !perRequest.some((p) => p.id === s.id)).map((s) => `\`${s.id}\``);
      const costs = perRequest.length
        ? `\n\n${perRequestTable(perRequest)}${outOfRange.length ? `\n\nLeft out (no profile, or its samples could not be matched to the measured rounds): ${outOfRange.join(', ')}.` : ''}`
        : '';
      const profileMd = `# pdp server CPU profiles (\`node --cpu-prof\` on the target process)\n\n${markdown}${costs}\n\n## Profiles (self time)\n\n${profiles.join('\n')}`;
      files.push({ name: `server-profile-latest${suffix}.md`, content: profileMd });
      markdown = profileMd;
    } else {
      files.push({ name: `server-latest${suffix}.md`, content: `# pdp HTTP server benchmarks${opts.quick ? ' (quick smoke run)' : ''}\n\n${markdown}\n` });
      const jsonName = `server-${dateStamp(stamp.date)}${suffix}.json`;
      files.push({ name: jsonName, content: JSON.stringify(data, null, 2) + '\n' });
      // A full run also rewrites the summary of every full run, itself included (bench/server-runs.ts).
      if (suffix === '') {
        const runs = loadRuns(path.resolve(__dirname, '../../bench/results'), { file: jsonName, json: data });
        files.push({ name: 'server-runs.md', content: runsMarkdown(runs, summarizeRuns(runs)) });
      }
    }
    return { name: 'server', title: 'HTTP server (autocannon, side by side)', durationMs: Date.now() - started, markdown, data, results: data, files };
  } finally {
    cleanup();
  }
}

// bench/run.ts loads this module as a suite.
export const suiteRunner: SuiteRunner = run;

export const USAGE = `usage: node dist/bench/server.js [--quick] [--profile] [--only TARGET,…]

HTTP benchmarks side by side: bare node:http and fastify baselines, pdp's /v1/authorize (cache hits,
misses, audit off), /v1/authorize/batch, and pdp over mutual TLS next to plain HTTP; each target in
its own process, the load (autocannon) from this one. A full run takes 3-4 minutes and writes
bench/results/server-latest.md, server-<date>.json and server-runs.md (the ratios over every
committed full run, bench/server-runs.ts); the report also goes to stdout.

  --quick          a smoke run (about 40 s): writes server-latest-quick.md, server-<date>-quick.json
  --profile        every target under \`node --cpu-prof\`: writes server-profile-latest.md (the top
                   self-time functions) instead of benchmark results
  --only A,B       these targets only; the files are named …-partial. The targets:
                   ${SCENARIO_IDS.join(', ')}
  -h, --help       this text

Environment: PDP_BENCH_KEEP_PROFILES=DIR keeps each target's .cpuprofile in DIR (with --profile).
`;

async function main(argv: string[]): Promise<number> {
  const parsed = benchArgs('server.js', USAGE, argv, { quick: { type: 'boolean' }, profile: { type: 'boolean' }, only: { type: 'string' } });
  if ('exit' in parsed) return parsed.exit;
  const { values } = parsed;
  const only = values.only === undefined ? undefined : values.only.split(',').filter(Boolean) as ScenarioId[];
  const unknown = only?.filter((id) => !SCENARIO_IDS.includes(id));
  if (only !== undefined && (only.length === 0 || unknown!.length > 0)) {
    return refuse('server.js', `--only: ${only.length === 0 ? 'no target named' : `unknown target ${unknown!.map((id) => `\`${id}\``).join(', ')}`}; the targets are ${SCENARIO_IDS.join(', ')}`).exit;
  }
  let r: ServerSuiteResult;
  try {
    r = await run({ quick: values.quick === true, profile: values.profile === true, ...(only ? { only } : {}) });
  } catch (e) {
    process.stderr.write(`${(e as Error).stack ?? e}\n`);
    return 1;
  }
  const dir = path.resolve(__dirname, '../../bench/results');
  fs.mkdirSync(dir, { recursive: true });
  for (const f of r.files ?? []) fs.writeFileSync(path.join(dir, f.name), f.content);
  process.stdout.write(`${r.markdown}\n`);
  process.stderr.write(`wrote ${(r.files ?? []).map((f) => `bench/results/${f.name}`).join(', ')}\n`);
  return 0;
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
