// The benchmark scripts run by hand (dist/bench/*.js) answer `--help` and refuse what they do not
// know before any work starts: a misspelt flag used to be ignored and a run of minutes began. Each
// script runs as a subprocess; none may measure anything here, so each run is given a few seconds
// (it takes a fraction of one: loading the module), and a run that starts working times out.
// The scripts other scripts fork (FORKED) say so when run by hand, and what to run instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT, type Run } from './support/cli';

function bench(script: string, ...args: string[]): Run {
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'dist', 'bench', script), ...args], {
    cwd: REPO_ROOT, encoding: 'utf8', timeout: 5_000, killSignal: 'SIGKILL',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Each script, the words its usage must name (its flags, or modes), and a bad value it must refuse. */
const SCRIPTS: { script: string; names: string[]; bad?: { args: string[]; message: RegExp } }[] = [
  { script: 'run.js', names: ['--quick', '--only', '--skip', '--render', 'bench/results/'], bad: { args: ['--quick', '--only', 'engnie'], message: /unknown suite `engnie`; the suites are engine, server/ } },
  { script: 'server.js', names: ['--quick', '--profile', '--only', 'pdp-hit', 'PDP_BENCH_KEEP_PROFILES', 'bench/results/'], bad: { args: ['--quick', '--profile', '--only', 'pdp-hti'], message: /--only: unknown target `pdp-hti`/ } },
  { script: 'audit.js', names: ['--quick', 'stdout'] },
  { script: 'audit-row-cost.js', names: ['--quick', 'bench/results/'] },
  { script: 'workers.js', names: ['--max', '--quick', 'bench/results/'], bad: { args: ['--quick', '--max', '0'], message: /--max expects a whole number of workers from 1 to 256; got `0`/ } },
  { script: 'server-runs.js', names: ['--dir', '--json', 'bench/results/'] },
  { script: 'profile-engine.js', names: ['load', 'evaluate', 'decide', 'summarize'], bad: { args: ['evalute', '1000'], message: /unknown mode `evalute`/ } },
];

test('every bench script prints its usage on --help and -h, naming its flags, and exits 0 without running', () => {
  for (const { script, names } of SCRIPTS) {
    for (const flag of ['--help', '-h']) {
      const r = bench(script, flag);
      assert.equal(r.status, 0, `${script} ${flag}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^usage: node dist/bench/${script.replace('.', '\\.')}`), script);
      for (const name of names) assert.ok(r.stdout.includes(name), `${script} --help names ${name}:\n${r.stdout}`);
      assert.equal(r.stderr, '', `${script} ${flag} started nothing`);
    }
  }
});

test('every bench script refuses an unknown flag with exit 2 and a pointer to --help, before any work', () => {
  for (const { script } of SCRIPTS) {
    const r = bench(script, '--bogus');
    assert.equal(r.status, 2, `${script}: ${r.stderr}`);
    assert.equal(r.stderr, `${script}: unknown option \`--bogus\`\nRun \`node dist/bench/${script} --help\` for usage.\n`);
    assert.equal(r.stdout, '');
  }
});

test('a known flag with a bad value is refused the same way (the known flags before it are accepted)', () => {
  for (const { script, bad } of SCRIPTS) {
    if (!bad) continue;
    const r = bench(script, ...bad.args);
    assert.equal(r.status, 2, `${script} ${bad.args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, bad.message, script);
    assert.match(r.stderr, new RegExp(`Run \`node dist/bench/${script.replace('.', '\\.')} --help\` for usage\\.\\n$`), script);
  }
});

/** The scripts another one forks, which take their task over IPC: the forking script's source, and what to run by hand. */
const FORKED: { script: string; forkedBy: string; instead: string }[] = [
  { script: 'engine-worker.js', forkedBy: 'bench/engine.ts', instead: 'node dist/bench/run.js --only engine' },
  { script: 'engine-paired.js', forkedBy: 'bench/engine.ts', instead: 'node dist/bench/run.js --only engine' },
  { script: 'server-targets.js', forkedBy: 'bench/server.ts', instead: 'node dist/bench/server.js' },
];

test('a script that is only forked, run by hand (no IPC channel), names what forks it and what to run instead, exit 2', () => {
  for (const { script, forkedBy, instead } of FORKED) {
    for (const args of [[], ['--help']]) {
      const r = bench(script, ...args);
      assert.equal(r.status, 2, `${script} ${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr, `${script} is forked by ${forkedBy} (it needs an IPC channel); run \`${instead}\` instead\n`);
      assert.equal(r.stdout, '');
    }
  }
});
