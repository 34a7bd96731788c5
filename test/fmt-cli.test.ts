// `pdp fmt` as a command: in-process through `run()` on temporary directories, and once through
// the real binary.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { HELP, run } from '../src/cli/fmt';
import { UsageError, type CliIo } from '../src/cli/io';
import { unprivilegedOptions } from './support/cli';

const MESSY = 'service "a" { policy = "read" identity = "team:ops" } # a\n';
const MESSY_FORMATTED = 'service "a" {\n  policy   = "read"\n  identity = "team:ops"\n} # a\n';
const CANONICAL = 'service "b" {\n  policy   = "write"\n  identity = "team:dev"\n}\n';
const BROKEN = 'service "c" {\n  policy = \n}\n';

interface Captured {
  io: CliIo;
  stdout: () => string;
  stderr: () => string;
}

function capture(cwd: string, env: NodeJS.ProcessEnv = {}): Captured {
  let out = '';
  let err = '';
  return {
    io: { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) }, env, cwd },
    stdout: () => out,
    stderr: () => err,
  };
}

let dir: string;

function write(rel: string, text: string): string {
  const file = path.join(dir, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

const read = (rel: string) => fs.readFileSync(path.join(dir, rel), 'utf8');

/** Sets a file's mtime well into the past, so a rewrite would show. */
function age(rel: string): number {
  const past = new Date(Date.now() - 3_600_000);
  fs.utimesSync(path.join(dir, rel), past, past);
  return fs.statSync(path.join(dir, rel)).mtimeMs;
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pdp-fmt-'));
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('pdp fmt (in-process)', () => {
  test('rewrites files that are not formatted, lists them, leaves formatted files alone', async () => {
    write('policies/a.hcl', MESSY);
    write('policies/b.hcl', CANONICAL);
    write('policies/nested/deeper/c.hcl', MESSY);
    write('policies/notes.txt', MESSY);
    const bTime = age('policies/b.hcl');
    const c = capture(dir);
    assert.equal(await run(['policies'], c.io), 0);
    assert.equal(c.stdout(), `${path.join('policies', 'a.hcl')}\n${path.join('policies', 'nested/deeper/c.hcl')}\n`);
    assert.equal(c.stderr(), '');
    assert.equal(read('policies/a.hcl'), MESSY_FORMATTED);
    assert.equal(read('policies/nested/deeper/c.hcl'), MESSY_FORMATTED);
    assert.equal(read('policies/b.hcl'), CANONICAL);
    assert.equal(fs.statSync(path.join(dir, 'policies/b.hcl')).mtimeMs, bTime, 'an unchanged file is not rewritten');
    assert.equal(read('policies/notes.txt'), MESSY, 'only *.hcl files are searched for');
    assert.deepEqual(fs.readdirSync(path.join(dir, 'policies')).sort(), ['a.hcl', 'b.hcl', 'nested', 'notes.txt'], 'no temporary files left');
  });

  test('a second run changes nothing and prints nothing', async () => {
    write('policies/a.hcl', MESSY);
    assert.equal(await run(['policies'], capture(dir).io), 0);
    const time = age('policies/a.hcl');
    const c = capture(dir);
    assert.equal(await run(['policies'], c.io), 0);
    assert.equal(c.stdout(), '');
    assert.equal(fs.statSync(path.join(dir, 'policies/a.hcl')).mtimeMs, time);
  });

  test('--check writes nothing, lists the files that would change and exits 1', async () => {
    write('p/a.hcl', MESSY);
    write('p/b.hcl', CANONICAL);
    const aTime = age('p/a.hcl');
    const c = capture(dir);
    assert.equal(await run(['--check', 'p'], c.io), 1);
    assert.equal(c.stdout(), `${path.join('p', 'a.hcl')}\n`);
    assert.equal(read('p/a.hcl'), MESSY);
    assert.equal(fs.statSync(path.join(dir, 'p/a.hcl')).mtimeMs, aTime);
  });

  test('--check exits 0 when everything is formatted', async () => {
    write('p/b.hcl', CANONICAL);
    const c = capture(dir);
    assert.equal(await run(['--check', 'p'], c.io), 0);
    assert.equal(c.stdout(), '');
    assert.equal(c.stderr(), '');
  });

  test('a file with a syntax error is reported, left untouched, and makes the exit code 1', async () => {
    write('p/a.hcl', MESSY);
    write('p/broken.hcl', BROKEN);
    const brokenTime = age('p/broken.hcl');
    const c = capture(dir);
    assert.equal(await run(['p'], c.io), 1);
    assert.equal(read('p/broken.hcl'), BROKEN);
    assert.equal(fs.statSync(path.join(dir, 'p/broken.hcl')).mtimeMs, brokenTime);
    assert.equal(read('p/a.hcl'), MESSY_FORMATTED, 'the other files are still formatted');
    assert.match(c.stderr(), new RegExp(`^${escapeRegExp(path.join('p', 'broken.hcl'))}:3:1: error\\[syntax-error\\]: `, 'm'));
    assert.match(c.stderr(), /^3 \| \}$/m, 'the source line is shown');
    assert.equal(c.stdout(), `${path.join('p', 'a.hcl')}\n`);
  });

  test('--check with a syntax error exits 1 even when nothing would change', async () => {
    write('p/broken.hcl', BROKEN);
    const c = capture(dir);
    assert.equal(await run(['--check', 'p'], c.io), 1);
    assert.match(c.stderr(), /error\[syntax-error\]/);
  });

  test('--format json --check prints the changed files and the errors', async () => {
    write('p/a.hcl', MESSY);
    write('p/b.hcl', CANONICAL);
    write('p/broken.hcl', BROKEN);
    const c = capture(dir);
    assert.equal(await run(['--check', '--format', 'json', 'p'], c.io), 1);
    const json = JSON.parse(c.stdout()) as { changed: string[]; errors: { file: string; line: number; code: string }[] };
    assert.deepEqual(json.changed, [path.join('p', 'a.hcl')]);
    assert.equal(json.errors.length, 1);
    assert.deepEqual({ file: json.errors[0]!.file, line: json.errors[0]!.line, code: json.errors[0]!.code }, { file: path.join('p', 'broken.hcl'), line: 3, code: 'syntax-error' });
    assert.equal(c.stderr(), '');
    assert.equal(read('p/a.hcl'), MESSY);
  });

  test('--diff prints a unified diff', async () => {
    write('p/a.hcl', MESSY);
    const c = capture(dir);
    assert.equal(await run(['--check', '--diff', 'p'], c.io), 1);
    const name = path.join('p', 'a.hcl');
    assert.equal(
      c.stdout(),
      [`--- a/${name}`, `+++ b/${name}`, '@@ -1,1 +1,4 @@', `-${MESSY.trimEnd()}`, ...MESSY_FORMATTED.trimEnd().split('\n').map((l) => `+${l}`), ''].join('\n'),
    );
    assert.equal(read('p/a.hcl'), MESSY);
  });

  test('files can be named directly, whatever their extension; each is formatted once', async () => {
    write('one.policy', MESSY);
    write('dir/two.hcl', MESSY);
    const c = capture(dir);
    assert.equal(await run(['one.policy', 'dir', 'dir/two.hcl'], c.io), 0);
    assert.equal(c.stdout(), `one.policy\n${path.join('dir', 'two.hcl')}\n`);
    assert.equal(read('one.policy'), MESSY_FORMATTED);
  });

  test('with no PATH: $PDP_POLICIES, else ./policies', async () => {
    write('policies/a.hcl', MESSY);
    write('elsewhere/b.hcl', MESSY);
    const c = capture(dir);
    assert.equal(await run(['--check'], c.io), 1);
    assert.equal(c.stdout(), `${path.join('policies', 'a.hcl')}\n`);
    const e = capture(dir, { PDP_POLICIES: 'elsewhere' });
    assert.equal(await run(['--check'], e.io), 1);
    assert.equal(e.stdout(), `${path.join('elsewhere', 'b.hcl')}\n`);
  });

  test('a missing path is a usage error (exit 2 from main)', async () => {
    await assert.rejects(run(['does-not-exist'], capture(dir).io), (e: unknown) => e instanceof UsageError && /cannot read `does-not-exist`: no such file or directory/.test(e.message));
  });

  test('bad options are usage errors', async () => {
    await assert.rejects(run(['--nope'], capture(dir).io), UsageError);
    await assert.rejects(run(['--format', 'yaml', dir], capture(dir).io), UsageError);
    await assert.rejects(run(['--diff', '--format', 'json', dir], capture(dir).io), UsageError);
  });

  test('CRLF files are rewritten with LF', async () => {
    write('p/a.hcl', CANONICAL.replace(/\n/g, '\r\n'));
    assert.equal(await run(['p'], capture(dir).io), 0);
    assert.equal(read('p/a.hcl'), CANONICAL);
  });

  test('a rewritten file keeps its permissions, and a symbolic link named directly is written through', { skip: process.platform === 'win32' && 'posix permissions' }, async () => {
    const file = write('p/a.hcl', MESSY);
    fs.chmodSync(file, 0o640);
    fs.symlinkSync(file, path.join(dir, 'link.hcl'));
    assert.equal(await run(['link.hcl'], capture(dir).io), 0);
    assert.ok(fs.lstatSync(path.join(dir, 'link.hcl')).isSymbolicLink(), 'the link is still a link');
    assert.equal(read('p/a.hcl'), MESSY_FORMATTED);
    assert.equal(fs.statSync(file).mode & 0o777, 0o640);
  });

  test('HELP names the default path and the flags', () => {
    assert.match(HELP, /^usage: pdp fmt/);
    for (const word of ['--check', '--diff', '--format', 'policies', 'PDP_POLICIES']) assert.ok(HELP.includes(word), word);
  });
});

const ROOT = path.join(__dirname, '../..');
const MAIN = path.join(__dirname, '../src/cli/main.js');

describe('pdp fmt (subprocess)', () => {
  test('node bin/pdp.js fmt --check DIR', { skip: !fs.existsSync(MAIN) && 'cli not built' }, () => {
    write('p/a.hcl', MESSY);
    write('p/b.hcl', CANONICAL);
    const bin = path.join(ROOT, 'bin/pdp.js');
    const check = spawnSync(process.execPath, [bin, 'fmt', '--check', path.join(dir, 'p')], { encoding: 'utf8' });
    assert.equal(check.status, 1, check.stderr);
    assert.equal(check.stdout, `${path.join(dir, 'p', 'a.hcl')}\n`);
    assert.equal(read('p/a.hcl'), MESSY);

    const fix = spawnSync(process.execPath, [bin, 'fmt', path.join(dir, 'p')], { encoding: 'utf8' });
    assert.equal(fix.status, 0, fix.stderr);
    const again = spawnSync(process.execPath, [bin, 'fmt', '--check', path.join(dir, 'p')], { encoding: 'utf8' });
    assert.equal(again.status, 0, again.stderr);
    assert.equal(again.stdout, '');

    const missing = spawnSync(process.execPath, [bin, 'fmt', path.join(dir, 'missing')], { encoding: 'utf8' });
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /no such file or directory/);
  });

  test('a read-only file is reported, not replaced through its writable directory; root keeps a file\'s owner', { skip: process.platform === 'win32' && 'posix permissions' }, () => {
    // As root, mode bits refuse nothing: the read-only case runs as `nobody` where it can.
    const bin = path.join(ROOT, 'bin/pdp.js');
    const file = write('ro/a.hcl', MESSY);
    fs.chmodSync(file, 0o444);
    fs.chmodSync(path.join(dir, 'ro'), 0o777);
    const asRoot = process.getuid?.() === 0;
    const options = unprivilegedOptions(dir);
    if (options) {
      const r = spawnSync(process.execPath, [bin, 'fmt', 'ro'], { ...options, cwd: dir, encoding: 'utf8' });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /^ro\/a\.hcl:1:1: error\[write-error\]: cannot write `ro\/a\.hcl`: EACCES \(permission denied\)$/m);
      assert.equal(read('ro/a.hcl'), MESSY, 'left as it was');
      assert.equal(fs.statSync(file).uid, process.getuid?.(), 'and still its owner\'s');
    }
    if (asRoot) {
      // Root formatting someone else's file (a container on a mounted checkout) leaves it theirs.
      const theirs = write('theirs/a.hcl', MESSY);
      fs.chownSync(theirs, 65534, 65534);
      const r = spawnSync(process.execPath, [bin, 'fmt', 'theirs'], { cwd: dir, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(read('theirs/a.hcl'), MESSY_FORMATTED);
      const st = fs.statSync(theirs);
      assert.deepEqual([st.uid, st.gid], [65534, 65534]);
    }
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
