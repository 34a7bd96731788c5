// The in-process engine suite: our engine vs a Map.get floor vs CASL, casbin and Cedar-wasm, on the
// same policy family (bench/policy-family.ts) at N ≈ 10 … 100,000 rules. Each (engine, N) runs in its
// own forked process (bench/engine-worker.ts) under a load budget and a run budget; a peer must agree
// with our engine on every request of the agreement sample before it is timed.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { hashTree } from './code-hash';
import type { PairedResult, PairedTask } from './engine-paired';
import { PEERS, type PeerId, type WorkerResult, type WorkerTask } from './engine-worker';
import { makeFamily, serviceCountFor } from './policy-family';
import type { SuiteOptions, SuiteResult } from './suite';
import { benchTempDir } from './suite';
import { formatNs, lineChart, type Series } from './svg';

export const LABELS: Record<PeerId, string> = {
  'ours-decide': 'pdp decideWith (incl. request parsing)',
  'ours-evaluate': 'pdp evaluate (prepared request)',
  'map-prebuilt': 'Map.get floor (prebuilt key)',
  'map-key': 'Map.get floor (key built per call)',
  'casl-identity': 'CASL 6, one Ability per identity',
  'casl-global': 'CASL 6, one global rules array',
  casbin: 'casbin 5 enforceSync',
  'cedar-sliced': 'Cedar-wasm 4.13, sliced per service',
  'cedar-whole': 'Cedar-wasm 4.13, whole policy set',
};

export interface EngineConfig {
  ns: number[];
  sampleSize: number;
  agreeCount: number;
  warmupMs: number;
  runMs: number;
  minDecisions: number;
  runCapMs: number;
  loadBudgetMs: number;
  agreeBudgetMs: number;
  /** Peers (not ours, not the floor) are measured up to this N. */
  peerMaxN: number;
  peers: readonly PeerId[];
  /** The paired same-process runs behind the ratio targets. */
  paired: { rounds: number; roundMs: number; warmupMs: number };
}

export const FULL: EngineConfig = {
  ns: [10, 1_000, 10_000, 100_000],
  sampleSize: 1024,
  agreeCount: 240,
  warmupMs: 1000,
  runMs: 3000,
  minDecisions: 200,
  runCapMs: 10_000,
  loadBudgetMs: 60_000,
  agreeBudgetMs: 60_000,
  peerMaxN: 100_000,
  peers: PEERS,
  paired: { rounds: 5, roundMs: 400, warmupMs: 400 },
};

export const QUICK: EngineConfig = {
  ns: [10, 1_000, 10_000],
  sampleSize: 1024,
  agreeCount: 240,
  warmupMs: 80,
  runMs: 150,
  minDecisions: 200,
  runCapMs: 1500,
  loadBudgetMs: 8_000,
  agreeBudgetMs: 8_000,
  peerMaxN: 10,
  peers: PEERS,
  paired: { rounds: 2, roundMs: 80, warmupMs: 80 },
};

export type Status = 'ok' | 'disagrees' | 'load-timeout' | 'agree-timeout' | 'run-timeout' | 'crashed' | 'error' | 'skipped';

export interface Cell {
  peer: PeerId;
  n: number;
  ruleCount: number;
  status: Status;
  /** Why it is not `ok`, in words. */
  message?: string;
  result?: WorkerResult;
  wallMs: number;
  attempts: number;
}

interface Outcome {
  status: Status;
  result?: WorkerResult;
  message?: string;
  loadMs?: number;
}

const isOurs = (p: PeerId) => p === 'ours-decide' || p === 'ours-evaluate';
const isFloor = (p: PeerId) => p === 'map-prebuilt' || p === 'map-key';

// ---- a frozen copy of the compiled code --------------------------------------------------------------
// Others rebuild dist/ while a 10-minute run is going; every worker of one run loads the same code from
// a snapshot of dist/src + dist/bench taken at the start (node_modules found through NODE_PATH).

interface CodeSnapshot {
  dir: string;
  hash: string;
  env: NodeJS.ProcessEnv;
}

let snapshot: CodeSnapshot | undefined;

function takeSnapshot(): CodeSnapshot {
  const dist = path.resolve(__dirname, '..');
  const repo = path.resolve(dist, '..');
  const dir = benchTempDir('pdp-bench-code-');
  const copy = () => {
    for (const sub of ['src', 'bench']) {
      fs.rmSync(path.join(dir, sub), { recursive: true, force: true });
      fs.cpSync(path.join(dist, sub), path.join(dir, sub), { recursive: true, filter: (f) => !f.endsWith('.map') });
    }
  };
  let hash = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    copy();
    hash = hashTree(path.join(dir, 'src'));
    if (hash === hashTree(path.join(dist, 'src'))) break; // not caught in the middle of a rebuild
  }
  const nodePath = [path.join(repo, 'node_modules'), process.env.NODE_PATH].filter(Boolean).join(path.delimiter);
  return { dir, hash, env: { ...process.env, NODE_PATH: nodePath } };
}

function script(name: string): { file: string; env?: NodeJS.ProcessEnv } {
  return snapshot ? { file: path.join(snapshot.dir, 'bench', name), env: snapshot.env } : { file: path.join(__dirname, name) };
}

function runWorker(task: WorkerTask, cfg: EngineConfig): Promise<Outcome> {
  const { file: scriptFile, env } = script('engine-worker.js');
  const execArgv = ['--expose-gc', '--max-old-space-size=8192'];
  if (task.peer.startsWith('cedar')) execArgv.push('--no-turbo-inlining');
  return new Promise((resolve) => {
    const child = fork(scriptFile, [], { execArgv, stdio: ['ignore', 'ignore', 'pipe', 'ipc'], ...(env ? { env } : {}) });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    let settled = false;
    let loadMs: number | undefined;
    let progress: { checked: number; disagreements: number } | undefined;
    let timer: NodeJS.Timeout | undefined;
    const finish = (o: Outcome) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      resolve(o);
    };
    const arm = (ms: number, status: Status, message: string) => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        const soFar = status === 'agree-timeout' && progress
          ? ` (it had checked ${progress.checked}: ${progress.disagreements ? `${progress.disagreements} disagreed` : 'all agreed'})`
          : '';
        finish({ status, message: message + soFar, ...(loadMs !== undefined ? { loadMs } : {}) });
      }, ms);
    };
    arm(cfg.loadBudgetMs, 'load-timeout', `did not load within the ${cfg.loadBudgetMs / 1000} s budget`);
    child.on('message', (m: { type: string; loadMs?: number; result?: WorkerResult; message?: string }) => {
      if (m.type === 'loaded') {
        loadMs = m.loadMs;
        arm(cfg.agreeBudgetMs, 'agree-timeout', `loaded in ${((m.loadMs ?? 0) / 1000).toFixed(1)} s but did not finish ${task.agreeCount} agreement decisions within ${cfg.agreeBudgetMs / 1000} s`);
      } else if (m.type === 'progress') {
        progress = m as unknown as { checked: number; disagreements: number };
      } else if (m.type === 'agreed') {
        // warmup + measurement (capped inside the worker) + the untimed phase split + slack
        arm(cfg.warmupMs + cfg.runCapMs * 2 + (task.phases ? cfg.loadBudgetMs : 0) + 30_000, 'run-timeout', 'did not finish its timed run within budget');
      } else if (m.type === 'result' && m.result) {
        const r = m.result;
        const offIntent = r.intentMismatches?.length ?? 0;
        const disagrees = r.agreement.disagreements.length > 0 || r.agreement.errors > 0 || offIntent > 0;
        const why = offIntent > 0
          ? `differs from the family's hand-derived intent on ${offIntent} of ${r.agreement.checked} requests; not timed`
          : `disagrees with the family's intent on ${r.agreement.disagreements.length} of ${r.agreement.checked} requests (${r.agreement.errors} errors); not timed`;
        finish({ status: disagrees ? 'disagrees' : 'ok', result: r, loadMs: r.loadMs, ...(disagrees ? { message: why } : {}) });
      } else if (m.type === 'error') {
        finish({ status: 'error', message: (m.message ?? 'unknown error').split('\n').slice(0, 3).join(' | ') });
      }
    });
    child.on('exit', (code, signal) => {
      if (settled) return;
      const fatal = /Fatal|FATAL|Check failed|Aborted/.exec(stderr);
      finish({
        status: 'crashed',
        message: `worker exited (${signal ?? `code ${code}`})${fatal ? `: ${stderr.slice(Math.max(0, fatal.index - 40), fatal.index + 160).replace(/\s+/g, ' ')}` : stderr ? `: ${stderr.slice(-200).replace(/\s+/g, ' ')}` : ''}`,
        ...(loadMs !== undefined ? { loadMs } : {}),
      });
    });
    child.send(task);
  });
}

function runPairedWorker(task: PairedTask, cfg: EngineConfig): Promise<{ result?: PairedResult; message?: string }> {
  const { file: scriptFile, env } = script('engine-paired.js');
  const budget = cfg.loadBudgetMs * 2 + 6 * (task.warmupMs + task.rounds * task.roundMs) * 2 + 30_000;
  return new Promise((resolve) => {
    const child = fork(scriptFile, [], { execArgv: ['--expose-gc', '--max-old-space-size=8192'], stdio: ['ignore', 'ignore', 'pipe', 'ipc'], ...(env ? { env } : {}) });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    let done = false;
    const finish = (r: { result?: PairedResult; message?: string }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      resolve(r);
    };
    const timer = setTimeout(() => finish({ message: `the paired run did not finish within ${Math.round(budget / 1000)} s` }), budget);
    child.on('message', (m: { type: string; result?: PairedResult; message?: string }) => {
      if (m.type === 'result' && m.result) finish({ result: m.result });
      else finish({ message: (m.message ?? 'error').split('\n').slice(0, 3).join(' | ') });
    });
    child.on('exit', (code, signal) => finish({ message: `paired worker exited (${signal ?? `code ${code}`}) ${stderr.slice(-200)}` }));
    child.send(task);
  });
}

const fmtMs = (ms: number | undefined) => (ms === undefined || !Number.isFinite(ms) ? '–' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : ms >= 10 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(2)} ms`);
const fmtRate = (r: number) => (!Number.isFinite(r) ? '–' : r >= 1e6 ? `${(r / 1e6).toFixed(2)} M/s` : r >= 1e3 ? `${(r / 1e3).toFixed(1)} k/s` : `${r.toFixed(1)} /s`);
const fmtRatio = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '–' : `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)}×`);

export async function run(opts: SuiteOptions): Promise<SuiteResult> {
  const cfg = opts.quick ? QUICK : FULL;
  return runEngineSuite(cfg, opts);
}

export async function runEngineSuite(cfg: EngineConfig, opts: SuiteOptions): Promise<SuiteResult> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  snapshot = takeSnapshot();
  log(`  engine code: dist/src ${snapshot.hash}, frozen for this run in ${snapshot.dir}`);
  try {
    return await runEngineSuiteWith(cfg, opts, log, snapshot.hash);
  } finally {
    fs.rmSync(snapshot.dir, { recursive: true, force: true });
    snapshot = undefined;
  }
}

async function runEngineSuiteWith(cfg: EngineConfig, opts: SuiteOptions, log: (line: string) => void, codeHash: string): Promise<SuiteResult> {
  const started = Date.now();
  const cells: Cell[] = [];
  /** Per peer: why larger N are not attempted. */
  const stopped = new Map<PeerId, string>();
  const lastLoad = new Map<PeerId, { n: number; ms: number }>();

  for (const n of cfg.ns) {
    const ruleCount = makeFamily(n).ruleCount;
    let expected: boolean[] | undefined;
    for (const peer of cfg.peers) {
      const cellBase = { peer, n, ruleCount };
      if (!isOurs(peer) && !isFloor(peer) && n > cfg.peerMaxN) {
        cells.push({ ...cellBase, status: 'skipped', message: `not attempted: this run measures peers up to N = ${cfg.peerMaxN.toLocaleString('en-US')}`, wallMs: 0, attempts: 0 });
        continue;
      }
      const stop = stopped.get(peer);
      if (stop) {
        cells.push({ ...cellBase, status: 'skipped', message: stop, wallMs: 0, attempts: 0 });
        continue;
      }
      const prev = lastLoad.get(peer);
      if (prev) {
        const projected = (prev.ms * n) / prev.n;
        if (projected > cfg.loadBudgetMs * 2) {
          const why = `not attempted: load took ${fmtMs(prev.ms)} at N = ${prev.n.toLocaleString('en-US')}, so N = ${n.toLocaleString('en-US')} projects to ~${fmtMs(projected)}, over the ${cfg.loadBudgetMs / 1000} s load budget`;
          stopped.set(peer, why);
          cells.push({ ...cellBase, status: 'skipped', message: why, wallMs: 0, attempts: 0 });
          continue;
        }
      }
      if (!isOurs(peer) && !expected) {
        cells.push({ ...cellBase, status: 'skipped', message: 'not attempted: no run of pdp at this N carried the reference (the family\'s intent)', wallMs: 0, attempts: 0 });
        continue;
      }
      const task: WorkerTask = {
        peer,
        n,
        sampleSize: cfg.sampleSize,
        agreeCount: cfg.agreeCount,
        warmupMs: cfg.warmupMs,
        runMs: cfg.runMs,
        minDecisions: cfg.minDecisions,
        runCapMs: cfg.runCapMs,
        ...(isOurs(peer) ? {} : { expected }),
        ...(peer === 'ours-decide' ? { phases: true } : {}),
      };
      let attempts = 0;
      let outcome: Outcome;
      const t0 = Date.now();
      const crashes: string[] = [];
      for (;;) {
        attempts++;
        outcome = await runWorker(task, cfg);
        if (outcome.status === 'crashed' && attempts < 3) {
          crashes.push(outcome.message ?? 'crashed');
          log(`  ${peer} N=${n}: crashed (${outcome.message}); retrying`);
          continue;
        }
        break;
      }
      const cell: Cell = { ...cellBase, status: outcome.status, wallMs: Date.now() - t0, attempts };
      if (outcome.result) cell.result = outcome.result;
      const messages = [outcome.message, crashes.length ? `crashed ${crashes.length}× before this attempt (${crashes[0]})` : undefined].filter(Boolean);
      if (messages.length) cell.message = messages.join('; ');
      cells.push(cell);
      if (outcome.loadMs !== undefined) lastLoad.set(peer, { n, ms: outcome.loadMs });

      // Peers are checked against the family's intent (which pdp's run carries), not against pdp's
      // answers: a wrong pdp must not make the right peers look wrong.
      if (isOurs(peer) && !expected && outcome.result?.intents) expected = outcome.result.intents;
      if (outcome.status === 'load-timeout' || outcome.status === 'agree-timeout' || outcome.status === 'crashed' || outcome.status === 'run-timeout') {
        stopped.set(peer, `not attempted: ${outcome.status === 'load-timeout' ? 'did not load within budget' : outcome.status === 'crashed' ? 'crashed' : 'ran out of budget'} at N = ${n.toLocaleString('en-US')}`);
      }
      const r = outcome.result;
      log(`  ${LABELS[peer].padEnd(42)} N=${String(n).padStart(6)} ${outcome.status.padEnd(13)} load ${fmtMs(outcome.loadMs).padStart(8)}` +
        (r && outcome.status === 'ok' ? `  p50 ${formatNs(r.p50Ns).padStart(9)}  p99 ${formatNs(r.p99Ns).padStart(9)}  ${fmtRate(r.opsPerCpuSec).padStart(10)} per CPU-s` : `  ${outcome.message ?? ''}`));
    }
  }

  const paired: PairedResult[] = [];
  const pairedProblems: string[] = [];
  for (const n of cfg.ns) {
    const outcome = await runPairedWorker({ n, sampleSize: cfg.sampleSize, ...cfg.paired }, cfg);
    if (outcome.result) {
      paired.push(outcome.result);
      const r = outcome.result.ratios;
      log(`  paired N=${String(n).padStart(6)}: evaluate/Map.get ${fmtRatio(r['evaluate@N / map-prebuilt@N']!.median)}, decideWith/Map.get(key built) ${fmtRatio(r['decide@N / map-key@N']!.median)}, evaluate N/10 ${fmtRatio(r['evaluate@N / evaluate@10']!.median)}, decideWith N/10 ${fmtRatio(r['decide@N / decide@10']!.median)}`);
    } else {
      pairedProblems.push(`N = ${n}: ${outcome.message}`);
      log(`  paired N=${n}: ${outcome.message}`);
    }
  }

  const data: EngineData = { config: cfg, quick: opts.quick, codeHash, labels: LABELS, cells: cells.map(stripDecisions), paired, pairedProblems };
  return { ...render(data), durationMs: Date.now() - started };
}

export interface EngineData {
  config: EngineConfig;
  quick: boolean;
  /** Hash of the dist/src/*.js snapshot every worker loaded. */
  codeHash?: string;
  labels: Record<PeerId, string>;
  cells: Cell[];
  paired: PairedResult[];
  pairedProblems: string[];
  summary?: Summary;
}

/** The suite's report from its data: used after a run, and by `run.js --render FILE` on a saved results file. */
export function render(data: EngineData): Omit<SuiteResult, 'durationMs'> {
  const { config: cfg, cells, paired } = data;
  const problems = [...(data.pairedProblems ?? [])];
  const hashes = new Set([...cells.map((c) => c.result?.engineHash), ...paired.map((p) => p.engineHash)].filter((h): h is string => !!h));
  if (hashes.size > 1 && !problems.some((p) => p.includes('changed during this run'))) {
    problems.push(`**dist/src/ changed during this run** (${hashes.size} different builds of the engine were loaded: ${[...hashes].join(', ')}); numbers for pdp at different N may come from different code`);
  }
  const summary = summarize(cells, cfg, paired, problems);
  const svgName = data.quick ? 'engine-latency-quick.svg' : 'engine-latency.svg';
  return {
    name: 'engine',
    title: 'In-process engine: decisions per rule count, vs the Map.get floor and the peers',
    markdown: agreementLine(cells) + (data.codeHash ? `Engine code: the compiled \`dist/src\` (hash ${data.codeHash}), copied once at the start so every process of the run loads the same build.\n\n` : '') + renderMarkdown(cells, cfg, summary, svgName, paired, data.quick),
    data: { ...data, pairedProblems: problems, summary },
    files: [{ name: svgName, content: renderSvg(cells, cfg) }],
  };
}

function stripDecisions(c: Cell): Cell {
  if (!c.result?.decisions) return c;
  const { decisions: _omit, ...rest } = c.result;
  return { ...c, result: rest as WorkerResult };
}

// ---- summary: the ratios the targets are about (all from this one run) ----------------------------

export interface Summary {
  /** Separate-process p50 ratios (each engine in its own process, minutes apart). */
  floorRatios: { n: number; ruleCount: number; evaluateVsPrebuilt?: number; decideVsKeyBuilt?: number; evaluateVsKeyBuilt?: number; decideVsPrebuilt?: number }[];
  /** The same ratios from the paired same-process runs (median of per-round ratios): what the targets use. */
  pairedRatios: { n: number; evaluateVsPrebuilt?: number; decideVsKeyBuilt?: number; evaluateVsKeyBuilt?: number; evaluateVs10?: number; decideVs10?: number; evaluateP50?: number; decideP50?: number; prebuiltP50?: number; keyBuiltP50?: number }[];
  pairedProblems: string[];
  scale?: { fromN: number; toN: number; evaluate?: number; decide?: number; pairedEvaluate?: number; pairedDecide?: number };
  peersAt?: { n: number; rows: { peer: PeerId; p50Ns?: number; vsEvaluate?: number; vsDecide?: number; status: Status; message?: string }[] };
  loadAt: { n: number; ruleCount: number; buildMs?: number; buildCpuMs?: number; phases?: WorkerResult['phasesMs']; rssAfterMB?: number; rssDeltaMB?: number; heapAfterMB?: number }[];
  /** met: both the paired and the separate-process ratio meet it; 'mixed': one does, one does not. */
  targets: { name: string; target: string; measured: string; met: boolean | null | 'mixed' | 'warm only' }[];
  intentMismatches: number;
}

function verdict(paired: number | undefined, separate: number | undefined, limit: number): boolean | null | 'mixed' {
  if (paired === undefined && separate === undefined) return null;
  const votes = [paired, separate].filter((v): v is number => v !== undefined).map((v) => v <= limit);
  return votes.every((v) => v) ? true : votes.every((v) => !v) ? false : 'mixed';
}

function summarize(cells: Cell[], cfg: EngineConfig, paired: PairedResult[], pairedProblems: string[]): Summary {
  const get = (peer: PeerId, n: number) => cells.find((c) => c.peer === peer && c.n === n);
  const p50 = (peer: PeerId, n: number) => {
    const c = get(peer, n);
    return c?.status === 'ok' ? c.result?.p50Ns : undefined;
  };
  const div = (a?: number, b?: number) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
  const floorRatios = cfg.ns.map((n) => ({
    n,
    ruleCount: makeFamily(n).ruleCount,
    evaluateVsPrebuilt: div(p50('ours-evaluate', n), p50('map-prebuilt', n)),
    decideVsKeyBuilt: div(p50('ours-decide', n), p50('map-key', n)),
    evaluateVsKeyBuilt: div(p50('ours-evaluate', n), p50('map-key', n)),
    decideVsPrebuilt: div(p50('ours-decide', n), p50('map-prebuilt', n)),
  }));
  const pairedRatios = cfg.ns.map((n) => {
    const p = paired.find((x) => x.n === n);
    if (!p) return { n };
    return {
      n,
      evaluateVsPrebuilt: p.ratios['evaluate@N / map-prebuilt@N']?.median,
      decideVsKeyBuilt: p.ratios['decide@N / map-key@N']?.median,
      evaluateVsKeyBuilt: p.ratios['evaluate@N / map-key@N']?.median,
      evaluateVs10: p.ratios['evaluate@N / evaluate@10']?.median,
      decideVs10: p.ratios['decide@N / decide@10']?.median,
      evaluateP50: p.p50['evaluate@N']?.median,
      decideP50: p.p50['decide@N']?.median,
      prebuiltP50: p.p50['map-prebuilt@N']?.median,
      keyBuiltP50: p.p50['map-key@N']?.median,
    };
  });
  const lo = cfg.ns[0]!;
  const hi = cfg.ns[cfg.ns.length - 1]!;
  const pairedHi = pairedRatios.find((r) => r.n === hi);
  const scale = {
    fromN: lo,
    toN: hi,
    evaluate: div(p50('ours-evaluate', hi), p50('ours-evaluate', lo)),
    decide: div(p50('ours-decide', hi), p50('ours-decide', lo)),
    pairedEvaluate: pairedHi?.evaluateVs10,
    pairedDecide: pairedHi?.decideVs10,
  };
  const peerN = cfg.ns.includes(10_000) && cfg.peerMaxN >= 10_000 ? 10_000 : Math.min(cfg.peerMaxN, hi);
  const peersAt = {
    n: peerN,
    rows: cfg.peers.filter((p) => !isOurs(p)).map((peer) => {
      const c = get(peer, peerN);
      const row: NonNullable<Summary['peersAt']>['rows'][number] = { peer, status: c?.status ?? 'skipped' };
      const v = p50(peer, peerN);
      if (v !== undefined) {
        row.p50Ns = v;
        const e = div(v, p50('ours-evaluate', peerN));
        const d = div(v, p50('ours-decide', peerN));
        if (e !== undefined) row.vsEvaluate = e;
        if (d !== undefined) row.vsDecide = d;
      }
      if (c?.message) row.message = c.message;
      return row;
    }),
  };
  const loadAt = cfg.ns.map((n) => {
    const r = get('ours-decide', n)?.result;
    return {
      n,
      ruleCount: makeFamily(n).ruleCount,
      ...(r ? { buildMs: r.loadMs, ...(r.loadCpuMs !== undefined ? { buildCpuMs: r.loadCpuMs } : {}), rssAfterMB: r.rssAfterMB, rssDeltaMB: Math.round((r.rssAfterMB - r.rssBeforeMB) * 10) / 10, heapAfterMB: r.heapAfterMB } : {}),
      ...(r?.phasesMs ? { phases: r.phasesMs } : {}),
    };
  });

  const targets: Summary['targets'] = [];
  const load10k = loadAt.find((l) => l.n === 10_000);
  const warm10k = load10k?.phases?.total;
  const cold = load10k?.buildMs;
  const coldCpu = load10k?.buildCpuMs;
  const warmCpu = load10k?.phases?.totalCpu;
  const under = (...xs: (number | undefined)[]) => xs.some((x) => x !== undefined && x < 1000);
  targets.push({
    name: 'load (parse + check + compile) of ~10,000 rules',
    target: '< 1 s',
    measured: cold !== undefined
      ? `cold ${fmtMs(cold)} wall / ${fmtMs(coldCpu)} CPU (first buildPolicySet in a fresh process, ${load10k!.ruleCount.toLocaleString('en-US')} rules)` +
        (warm10k !== undefined ? `; warm ${fmtMs(warm10k)} wall / ${fmtMs(warmCpu)} CPU (a second build, as on a reload)` : '')
      : 'not measured',
    met: cold === undefined ? null : under(cold, coldCpu) ? true : under(warm10k, warmCpu) ? 'warm only' : false,
  });
  for (const [mode, v, sep] of [['evaluate', scale.pairedEvaluate, scale.evaluate], ['decideWith', scale.pairedDecide, scale.decide]] as const) {
    targets.push({
      name: `${mode}: p50 at N = ${hi.toLocaleString('en-US')} ÷ p50 at N = 10`,
      target: '≤ 2×',
      measured: `${fmtRatio(v)} paired (separate processes: ${fmtRatio(sep)})`,
      met: verdict(v, sep, 2),
    });
  }
  for (const f of pairedRatios) {
    const sep = floorRatios.find((x) => x.n === f.n);
    targets.push({
      name: `evaluate ÷ Map.get (prebuilt key), N = ${f.n.toLocaleString('en-US')}`,
      target: '≤ 3×',
      measured: `${fmtRatio(f.evaluateVsPrebuilt)} paired (separate: ${fmtRatio(sep?.evaluateVsPrebuilt)})`,
      met: verdict(f.evaluateVsPrebuilt, sep?.evaluateVsPrebuilt, 3),
    });
    targets.push({
      name: `decideWith ÷ Map.get (key built per call), N = ${f.n.toLocaleString('en-US')}`,
      target: '≤ 3×',
      measured: `${fmtRatio(f.decideVsKeyBuilt)} paired (separate: ${fmtRatio(sep?.decideVsKeyBuilt)})`,
      met: verdict(f.decideVsKeyBuilt, sep?.decideVsKeyBuilt, 3),
    });
  }
  const intentMismatches = cells.reduce((sum, c) => sum + (c.result?.intentMismatches?.length ?? 0), 0);
  return { floorRatios, pairedRatios, pairedProblems, scale, peersAt, loadAt, targets, intentMismatches };
}

// ---- rendering ------------------------------------------------------------------------------------

function cellText(c: Cell | undefined, what: 'latency' | 'rate' | 'load'): string {
  if (!c) return '–';
  if (what === 'load') {
    const loaded = c.result?.loadMs;
    if (c.status === 'load-timeout') return 'did not load within budget';
    if (c.status === 'skipped') return 'not attempted';
    return loaded !== undefined ? fmtMs(loaded) : c.status;
  }
  if (c.status === 'ok' && c.result) {
    const r = c.result;
    const capped = r.cappedByTime ? ` (${r.decisionsMeasured} decisions, time cap)` : '';
    return what === 'latency' ? `${formatNs(r.p50Ns)} / ${formatNs(r.p99Ns)}${capped}` : `${fmtRate(r.opsPerCpuSec)} (${fmtRate(r.opsPerSec)} wall, ${Math.round(r.cpuShare * 100)}% CPU)${capped}`;
  }
  switch (c.status) {
    case 'disagrees': return '**disagrees** (not timed)';
    case 'load-timeout': return 'did not load within budget';
    case 'agree-timeout': return 'too slow for the agreement check';
    case 'run-timeout': return 'ran past budget';
    case 'crashed': return 'crashed';
    case 'error': return 'error';
    case 'skipped': return 'not attempted';
    default: return c.status;
  }
}

/** The first line of the report: whether every engine decided the agreement sample as intended. */
function agreementLine(cells: Cell[]): string {
  const failed = cells.filter((c) => c.result && (c.result.agreement.disagreements.length > 0 || c.result.agreement.errors > 0 || (c.result.intentMismatches?.length ?? 0) > 0));
  return failed.length === 0
    ? '**Agreement: OK**: every engine that loaded decided the agreement sample as the policy family intends (see "Agreement").\n\n'
    : `**Agreement: FAILED** for ${failed.map((c) => `${LABELS[c.peer]} at N = ${c.n}`).join(', ')}: not timed (see "Agreement").\n\n`;
}

function renderMarkdown(cells: Cell[], cfg: EngineConfig, s: Summary, svgName: string, paired: PairedResult[], quick = false): string {
  const out: string[] = [];
  const ns = cfg.ns;
  const get = (peer: PeerId, n: number) => cells.find((c) => c.peer === peer && c.n === n);
  const header = (first: string) => {
    out.push(`| ${first} | ${ns.map((n) => `N = ${n.toLocaleString('en-US')} (${makeFamily(n).ruleCount.toLocaleString('en-US')} rules)`).join(' | ')} |`);
    out.push(`|---|${ns.map(() => '---:').join('|')}|`);
  };

  out.push(`Policy family: for N, ${'`'}N/2${'`'} services (every 5th in \`staging\`), a writer and a reader rule each, plus ops admin on \`prod\` (through a role), one \`service_prefix "billing-"\` read and one explicit deny: **N + 3 rules**. ` +
    `Sample: ${cfg.sampleSize} requests cycling through 12 kinds of hit and miss; the first ${cfg.agreeCount} are the agreement check. ` +
    `Warmup ${cfg.warmupMs} ms, then timed blocks (≈ 20 µs each, ≤ 100 decisions) for ≥ ${cfg.runMs / 1000} s and ≥ ${cfg.minDecisions} decisions, capped at ${cfg.runCapMs / 1000} s; ` +
    `load budget ${cfg.loadBudgetMs / 1000} s, agreement budget ${cfg.agreeBudgetMs / 1000} s. Every (engine, N) runs in its own process.`);
  out.push('');
  out.push('### Per-decision latency, p50 / p99');
  out.push('');
  header('engine');
  for (const peer of cfg.peers) out.push(`| ${LABELS[peer]} | ${ns.map((n) => cellText(get(peer, n), 'latency')).join(' | ')} |`);
  out.push('');
  out.push('### Throughput: decisions per CPU-second (and per wall-clock second, with the share of CPU the process got)');
  out.push('');
  header('engine');
  for (const peer of cfg.peers) out.push(`| ${LABELS[peer]} | ${ns.map((n) => cellText(get(peer, n), 'rate')).join(' | ')} |`);
  out.push('');
  out.push('### Load / compile time (from the native policy form to ready-to-decide)');
  out.push('');
  header('engine');
  for (const peer of cfg.peers.filter((p) => p !== 'ours-evaluate')) {
    out.push(`| ${peer === 'ours-decide' ? 'pdp buildPolicySet (parse + check + compile)' : LABELS[peer]} | ${ns.map((n) => cellText(get(peer, n), 'load')).join(' | ')} |`);
  }
  out.push('');
  out.push('### pdp: load phases and memory');
  out.push('');
  out.push('| N | rules | files | buildPolicySet, cold: wall / CPU | second build: parse | check | compile | total wall / CPU | JS heap after load (after GC) | RSS after load | RSS growth over load |');
  out.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const l of s.loadAt) {
    const p = l.phases;
    out.push(`| ${l.n.toLocaleString('en-US')} | ${l.ruleCount.toLocaleString('en-US')} | ${p?.files ?? '–'} | ${fmtMs(l.buildMs)} / ${fmtMs(l.buildCpuMs)} | ${fmtMs(p?.parse)} | ${fmtMs(p?.check)} | ${fmtMs(p?.compile)} | ${fmtMs(p?.total)} / ${fmtMs(p?.totalCpu)} | ${l.heapAfterMB ?? '–'} MB | ${l.rssAfterMB ?? '–'} MB | ${l.rssDeltaMB ?? '–'} MB |`);
  }
  out.push('');
  out.push('### Targets');
  out.push('');
  out.push(`Ratios are of p50 latencies from this run. "Paired" means measured in one process in ${cfg.paired.rounds} alternating rounds of ${cfg.paired.roundMs} ms per subject (median of the per-round ratios), which cancels the drift of a shared machine; "separate" divides the per-process numbers in the tables above (each engine alone in its process, as in production, but measured minutes apart). A target counts as met when both are within it. The load target counts as met when the wall time or the CPU time is under 1 s: the CPU time includes V8's collector threads running beside the load, so it can exceed the wall time.`);
  out.push('');
  out.push('| what | target | measured | met |');
  out.push('|---|---|---|---|');
  // A smoke run's rounds are too short and its N too small to judge a target: it says so.
  const verdict = (t: Summary['targets'][number]) => quick ? 'n/a (smoke run)' : t.met === null ? 'not measured' : t.met === 'mixed' ? 'unclear: paired and separate runs disagree' : t.met === 'warm only' ? 'warm (reload) only; **not** from a cold start' : t.met ? 'yes' : '**no**';
  for (const t of s.targets) out.push(`| ${t.name} | ${t.target} | ${t.measured} | ${verdict(t)} |`);
  out.push('');
  out.push('### pdp vs the Map.get floor and vs itself at N = 10 (paired, same process)');
  out.push('');
  out.push('| N | evaluate p50 (range over rounds) | decideWith p50 | Map.get p50 (prebuilt key) | Map.get p50 (key built) | evaluate ÷ Map.get (prebuilt) | decideWith ÷ Map.get (key built) | evaluate ÷ Map.get (key built) | evaluate ÷ evaluate at N = 10 | decideWith ÷ decideWith at N = 10 |');
  out.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const range = (n: number) => {
    const r = paired.find((p) => p.n === n)?.p50['evaluate@N']?.rounds;
    return r && r.length ? ` (${formatNs(Math.min(...r))} – ${formatNs(Math.max(...r))})` : '';
  };
  const ns1 = (v?: number) => (v === undefined ? '–' : formatNs(v));
  for (const f of s.pairedRatios) {
    out.push(`| ${f.n.toLocaleString('en-US')} | ${ns1(f.evaluateP50)}${range(f.n)} | ${ns1(f.decideP50)} | ${ns1(f.prebuiltP50)} | ${ns1(f.keyBuiltP50)} | ${fmtRatio(f.evaluateVsPrebuilt)} | ${fmtRatio(f.decideVsKeyBuilt)} | ${fmtRatio(f.evaluateVsKeyBuilt)} | ${fmtRatio(f.evaluateVs10)} | ${fmtRatio(f.decideVs10)} |`);
  }
  for (const p of s.pairedProblems) out.push(`\nNote: ${p}`);
  out.push('');
  if (s.peersAt) {
    out.push(`### Peers at N = ${s.peersAt.n.toLocaleString('en-US')} (p50 ÷ pdp's p50; > 1 means pdp is faster)`);
    out.push('');
    out.push('| engine | p50 | ÷ pdp evaluate | ÷ pdp decideWith | status |');
    out.push('|---|---:|---:|---:|---|');
    for (const r of s.peersAt.rows) {
      out.push(`| ${LABELS[r.peer]} | ${r.p50Ns !== undefined ? formatNs(r.p50Ns) : '–'} | ${fmtRatio(r.vsEvaluate)} | ${fmtRatio(r.vsDecide)} | ${r.status}${r.message ? `: ${r.message}` : ''} |`);
    }
    out.push('');
  }
  out.push('### Agreement (allow/deny vs the family\'s hand-derived intent, before timing)');
  out.push('');
  const agreeRows: string[] = [];
  for (const c of cells) {
    if (!c.result) continue;
    const a = c.result.agreement;
    if (isOurs(c.peer)) {
      const mism = c.result.intentMismatches ?? [];
      if (mism.length) agreeRows.push(`- ${LABELS[c.peer]}, N = ${c.n}: **${mism.length} decisions differ from the family's intent**, e.g. ${mism.slice(0, 3).map((d) => `\`${d.request}\` (${d.kind}) expected ${d.expected}, got ${d.got}`).join('; ')}`);
      continue;
    }
    if (a.disagreements.length || a.errors) {
      agreeRows.push(`- ${LABELS[c.peer]}, N = ${c.n}: **disagrees on ${a.disagreements.length} of ${a.checked}**, e.g. ${a.disagreements.slice(0, 3).map((d) => `\`${d.request}\` (${d.kind}) intended ${d.expected}, got ${d.got}`).join('; ')}`);
    }
  }
  const checked = cells.filter((c) => c.result && !isOurs(c.peer)).length;
  out.push(agreeRows.length ? agreeRows.join('\n') : `Every peer run that loaded (${checked} runs) decided all ${cfg.agreeCount} requests of the agreement sample as the family intends, and so did pdp: the engines agree.`);
  out.push('');
  const problems = cells.filter((c) => c.status !== 'ok' && c.message);
  if (problems.length) {
    out.push('### Not measured, and why');
    out.push('');
    for (const c of problems) out.push(`- ${LABELS[c.peer]}, N = ${c.n.toLocaleString('en-US')}: ${c.message}`);
    out.push('');
  }
  const largest = new Map<PeerId, number>();
  for (const c of cells) if (c.status === 'ok') largest.set(c.peer, Math.max(largest.get(c.peer) ?? 0, c.n));
  out.push('Largest N measured: ' + cfg.peers.map((p) => `${LABELS[p]} ${largest.has(p) ? largest.get(p)!.toLocaleString('en-US') : 'none'}`).join('; ') + '.');
  out.push('');
  const notes = new Map<string, string>();
  for (const c of cells) if (c.result?.notes?.length) notes.set(c.peer, `${c.result.notes.join('; ')} (at N = ${c.n.toLocaleString('en-US')})`);
  if (notes.size) {
    out.push('Setup notes: ' + [...notes].map(([p, n]) => `${LABELS[p as PeerId]}: ${n}`).join('. ') + '.');
    out.push('');
  }
  out.push(`![decision latency vs rule count](${svgName})`);
  return out.join('\n');
}

function renderSvg(cells: Cell[], cfg: EngineConfig): string {
  const series: Series[] = cfg.peers.map((peer) => ({
    label: LABELS[peer],
    dashed: isFloor(peer),
    points: cells.filter((c) => c.peer === peer && c.status === 'ok' && c.result).map((c) => ({ x: c.ruleCount, y: c.result!.p50Ns })),
  })).filter((s) => s.points.length > 0);
  return lineChart(series, { title: 'Decision latency (p50) vs rule count', xLabel: 'rules in the policy set (log scale)', yLabel: 'p50 latency per decision (log scale)' });
}

export { serviceCountFor };
