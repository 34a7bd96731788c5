// A policy path that cannot be used (missing, unreadable, a file where a directory is expected) is
// worded alike by every command that reads policies, with the path as the user typed it and the
// reason in words, and is bad usage (exit 2). Through the real CLI, in a subprocess.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, runPdp, scratchDir, unprivilegedOptions, type Run } from './support/cli';

const { dir: WORK, write } = scratchDir('pdp-cli-policy-paths-');
write('set/a.hcl', 'service "a" {\n  policy   = "read"\n  identity = "team:x"\n}\n');
fs.mkdirSync(path.join(WORK, 'empty'));

/** Each command that reads policies, given PATH as it takes a policy path. */
const COMMANDS: [string, (p: string) => string[]][] = [
  ['check', (p) => ['check', p]],
  ['test', (p) => ['test', p]],
  ['fmt', (p) => ['fmt', p]],
  ['eval', (p) => ['eval', '--policies', p, '--identity', 'team:x', '--action', 'read', '--resource', 'service:a']],
  ['serve', (p) => ['serve', '--policies', p, '--audit', 'audit.db', '--listen', '127.0.0.1:0']],
  // The primary checked the set before forking and called a missing directory "has errors" (exit 1).
  ['serve', (p) => ['serve', '--workers', '2', '--policies', p, '--audit', 'audit.db', '--listen', '127.0.0.1:0']],
];

const usage = (command: string, message: string) => `pdp ${command}: ${message}\nRun \`pdp ${command} --help\` for usage.\n`;

test('a missing policy path: every command says `cannot read `PATH`: no such file or directory`, as typed, exit 2', () => {
  for (const [command, args] of COMMANDS) {
    for (const p of ['nope', 'nope/deeper']) {
      const r = runPdp(args(p), { cwd: WORK });
      assert.equal(r.status, 2, `${command} ${p}: ${r.stderr}`);
      assert.equal(r.stderr, usage(command, `cannot read \`${p}\`: no such file or directory`), command);
    }
  }
  assert.equal(fs.existsSync(path.join(WORK, 'audit.db')), false, 'serve opened nothing');
});

test('a file where eval and serve expect a directory is worded the same way, and says what --policies takes', () => {
  for (const [command, args] of COMMANDS.filter(([c]) => c === 'eval' || c === 'serve')) {
    const r = runPdp(args('set/a.hcl'), { cwd: WORK });
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr, usage(command, 'cannot read `set/a.hcl`: not a directory; --policies names a directory of `*.hcl` files'));
    // An empty directory, too, is named as typed (serve named it by its absolute path).
    const empty = runPdp(args('empty'), { cwd: WORK });
    assert.equal(empty.status, 2, empty.stderr);
    assert.equal(empty.stderr, usage(command, 'no `*.hcl` files in `empty`'));
  }
  // check, test and fmt take a file: it is a set of its own.
  assert.equal(runPdp(['check', 'set/a.hcl'], { cwd: WORK }).status, 0);
});

test('a policy set with errors: serve (one process or workers) and eval name it as typed, with its diagnostics, exit 1', () => {
  write('broken/a.hcl', 'service "a" {\n  policy   = "reed"\n  identity = "team:x"\n}\n');
  const diagnostic = /^broken\/a\.hcl:2:14: error\[invalid-level\]: invalid policy level `reed`/m;
  for (const [command, args] of COMMANDS.filter(([c]) => c === 'eval' || c === 'serve')) {
    for (const p of ['broken', './broken/']) {
      const r = runPdp(args(p), { cwd: WORK });
      assert.equal(r.status, 1, `${args(p).join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, diagnostic, args(p).join(' '));
      const then = command === 'eval' ? `run \`pdp check ${p}\`` : 'not starting';
      assert.ok(r.stderr.endsWith(`\npdp ${command}: the policy set in \`${p}\` has errors; ${then}\n`), `${args(p).join(' ')}: ${r.stderr}`);
    }
  }
  assert.equal(fs.existsSync(path.join(WORK, 'audit.db')), false, 'serve opened nothing');
});

test('eval on a set with errors suggests a `pdp check` command that pastes into a shell, for a path with a space and a quote', () => {
  const p = "my team's set";
  write(`${p}/a.hcl`, 'service "a" {\n  policy   = "reed"\n  identity = "team:x"\n}\n');
  const r = runPdp(['eval', '--policies', p, '--identity', 'team:x', '--action', 'read', '--resource', 'service:a'], { cwd: WORK });
  assert.equal(r.status, 1, r.stderr);
  const suggested = /run `(pdp check .*)`\n$/.exec(r.stderr)?.[1];
  assert.equal(suggested, `pdp check 'my team'\\''s set'`);
  // The suggestion, run by a shell (with `pdp` standing for this build), checks that very directory.
  const viaShell = spawnSync('sh', ['-c', suggested!.replace(/^pdp /, `"${process.execPath}" "${BIN}" `)], { cwd: WORK, encoding: 'utf8' });
  assert.equal(viaShell.status, 1, viaShell.stderr);
  assert.match(viaShell.stderr, /^my team's set\/a\.hcl:2:14: error\[invalid-level\]/m);
});

test('a policy path that cannot be read: `permission denied`, from every command, exit 2', (t) => {
  const locked = path.join(WORK, 'locked');
  write('locked/a.hcl', 'service "a" {\n  policy   = "read"\n  identity = "team:x"\n}\n');
  fs.chmodSync(locked, 0o000);
  t.after(() => fs.chmodSync(locked, 0o755));
  // root reads any directory, so the test cannot fail as root: run the CLI as `nobody` then, where
  // this machine lets that user run it, and skip otherwise.
  const options = unprivilegedOptions(WORK);
  if (options === undefined) return t.skip('running as root, and `nobody` cannot run the CLI here: root would read the directory anyway');
  const run = (args: string[]): Run => {
    const env = { ...process.env };
    delete env.PDP_POLICIES;
    const r = spawnSync(process.execPath, [BIN, ...args], { ...options, cwd: WORK, env, encoding: 'utf8', timeout: 30_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  for (const [command, args] of COMMANDS) {
    const r = run(args('locked'));
    assert.equal(r.status, 2, `${command}: ${r.stderr}`);
    assert.equal(r.stderr, usage(command, 'cannot read `locked`: permission denied'));
  }
  // A file under it cannot even be looked at: it was called missing before.
  const r = run(['check', 'locked/a.hcl']);
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stderr, usage('check', 'cannot read `locked/a.hcl`: permission denied'));
});
