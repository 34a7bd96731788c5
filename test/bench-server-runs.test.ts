// The summary the README's server ranges are counted with (bench/server-runs.ts): ranges, per-CPU
// ranges and met counts over full runs only, from real files in a temporary results folder.
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { loadRuns, summarize, toMarkdown } from '../bench/server-runs';

const SCRIPT = path.join(__dirname, '..', 'bench', 'server-runs.js');

function ratio(name: string, value: number, perCpu: number | undefined, target: string, threshold?: number) {
  const met = threshold === undefined ? {} : { met: value >= threshold, ...(perCpu === undefined ? {} : { metPerCpu: perCpu >= threshold }) };
  return { name, value, ...(perCpu === undefined ? {} : { perCpu }), target, ...met };
}

function writeRun(dir: string, file: string, commit: string, hit: [number, number], transport: number, quick = false) {
  const ratios = [
    ratio('hit / fastify', hit[0], hit[1], '≥ 0.75', 0.75),
    ratio('fastify mTLS / plain', transport, transport, 'reference'),
  ];
  fs.writeFileSync(path.join(dir, file), JSON.stringify({ quick, machine: { commit }, ratios }));
}

const made: string[] = [];
after(() => made.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pdp-server-runs-'));
  made.push(dir);
  return dir;
}

function resultsDir(): string {
  const dir = tempDir();
  writeRun(dir, 'server-2026-11-23T01-58-12Z.json', 'aaaaaaa1111', [0.55, 0.5], 0.7);
  writeRun(dir, 'server-2026-11-23T22-09-23Z.json', 'bbbbbbb2222', [0.83, 0.76], 0.78);
  writeRun(dir, 'server-2026-11-24T02-40-16Z.json', 'ccccccc3333', [0.77, 0.71], 0.69);
  // Neither a quick nor a partial run counts.
  writeRun(dir, 'server-2026-11-24T02-51-50Z-quick.json', 'ddddddd', [0.99, 0.99], 0.99, true);
  writeRun(dir, 'server-2026-11-24T00-39-18Z-partial.json', 'eeeeeee', [0.1, 0.1], 0.1);
  return dir;
}

test('server runs: ranges, per-CPU ranges and met counts over full runs only, oldest first', () => {
  const dir = resultsDir();
  const runs = loadRuns(dir);
  assert.deepEqual(runs.map((r) => r.label), ['11-23 01:58', '11-23 22:09', '11-24 02:40']);
  const [hit, transport] = summarize(runs);
  assert.deepEqual(hit, {
    name: 'hit / fastify', target: '≥ 0.75', runs: 3, labels: ['11-23 01:58', '11-23 22:09', '11-24 02:40'],
    min: 0.55, max: 0.83, median: 0.77, minPerCpu: 0.5, maxPerCpu: 0.76, metIn: ['11-23 22:09', '11-24 02:40'], metPerCpuIn: ['11-23 22:09'],
  });
  // A reference ratio has no target to meet.
  assert.equal(transport.metIn, undefined);
  assert.equal(transport.min, 0.69);
  const md = toMarkdown(runs, summarize(runs));
  assert.match(md, /ratios over 3 full runs/);
  // Two of three met: the row names the run that did not; per CPU one of three: it names that one.
  assert.match(md, /\| hit \/ fastify \| 3 \| 0\.55–0\.83 \| 0\.77 \| 0\.50–0\.76 \| ≥ 0\.75 \| 2 of 3 \(not 11-23 01:58\) \| 1 of 3 \(11-23 22:09\) \|/);
});

test('server runs: a run not yet on disk is counted under its own name (a full run summarizing itself)', () => {
  const dir = resultsDir();
  const extra = { file: 'server-2026-11-24T05-00-00Z.json', json: { machine: { commit: 'fffffff' }, ratios: [ratio('hit / fastify', 0.9, 0.8, '≥ 0.75', 0.75)] } };
  const [hit] = summarize(loadRuns(dir, extra));
  assert.equal(hit.runs, 4);
  assert.equal(hit.max, 0.9);
  assert.deepEqual(hit.metIn, ['11-23 22:09', '11-24 02:40', '11-24 05:00']);
  // An even count: the median is the mean of the middle two (0.77 and 0.83).
  assert.equal(hit.median.toFixed(2), '0.80');
});

test('server runs: a ratio defined after a run was stored is recomputed from its results; a stored value wins', () => {
  const dir = tempDir();
  const result = (id: string, rps: number, perCpu: number) => ({ id, requestsPerSecond: rps, decisionsPerSecond: rps, requestsPerServerCpuSecond: perCpu, checksPerRequest: 1, latencyMs: { p99: 2 } });
  const results = [result('fastify', 30_000, 32_000), result('pdp-hit', 21_000, 22_000), result('pdp-audit-off', 24_000, 24_000)];
  // An old run stored only the hit ratio, with a value its own report printed (kept as stored).
  fs.writeFileSync(path.join(dir, 'server-2026-11-23T01-58-12Z.json'), JSON.stringify({
    machine: { commit: 'aaaaaaa' }, results,
    ratios: [
      ratio('pdp audit on, cache hit / bare fastify (req/s)', 0.71, 0.69, '≥ 0.75', 0.75),
      // A NaN the run computed was written as null: the recomputed value takes its place.
      { name: 'audit on / audit off, cache hit (req/s)', value: null, target: '≥ 0.85', met: false },
    ],
  }));
  const [run] = loadRuns(dir);
  const byName = new Map(run.ratios.map((r) => [r.name, r]));
  assert.equal(byName.get('pdp audit on, cache hit / bare fastify (req/s)')!.value, 0.71);
  const off = byName.get('pdp audit off, cache hit / bare fastify (req/s): the gap without the audit log');
  assert.ok(off, `derived ratio missing; got ${[...byName.keys()].join(' | ')}`);
  assert.equal(off.value, 0.8);
  assert.equal(off.perCpu, 0.75);
  assert.equal(off.target, 'reference');
  assert.equal(byName.get('audit on / audit off, cache hit (req/s)')!.value, 21_000 / 24_000);
  // Targets whose results the run lacks give no ratio at all, rather than a NaN.
  assert.equal(byName.has('pdp audit on, cache miss / bare fastify (req/s)'), false);
  // In today's order of definition: the stored hit ratio first, the derived ones after it.
  assert.deepEqual(run.ratios.slice(0, 2).map((r) => r.name), ['pdp audit on, cache hit / bare fastify (req/s)', 'pdp audit off, cache hit / bare fastify (req/s): the gap without the audit log']);
});

test('server runs: the script prints Markdown or JSON, refuses an unknown option and says when there is nothing to read', () => {
  const dir = resultsDir();
  assert.match(execFileSync(process.execPath, [SCRIPT, '--dir', dir], { encoding: 'utf8' }), /\| hit \/ fastify \| 3 \|/);
  const json = JSON.parse(execFileSync(process.execPath, [SCRIPT, '--dir', dir, '--json'], { encoding: 'utf8' }));
  assert.equal(json.runs.length, 3);
  const bogus = spawnSync(process.execPath, [SCRIPT, '--bogus'], { encoding: 'utf8' });
  assert.equal(bogus.status, 2);
  assert.match(bogus.stderr, /unknown option `--bogus`/);
  const empty = spawnSync(process.execPath, [SCRIPT, '--dir', tempDir()], { encoding: 'utf8' });
  assert.equal(empty.status, 1);
  assert.match(empty.stderr, /no full server runs/);
});
