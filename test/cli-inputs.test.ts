// Hostile and unusual inputs through the real CLI (`node bin/pdp.js …` in a subprocess): how files
// are found and read (symbolic links, hidden names, unreadable files, encodings), nesting bombs, and
// addresses with more than one spelling. None of them may end in a stack trace or an internal error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { BIN, REPO_ROOT, runPdp, scratchDir, unprivilegedOptions, type Run } from './support/cli';
import fs from 'node:fs';
import path from 'node:path';

const { dir: WORK, write } = scratchDir('pdp-cli-inputs-');

function pdp(...args: string[]): Run {
  const run = runPdp(args, { cwd: WORK, timeoutMs: 60_000 });
  assert.doesNotMatch(run.stderr, /^ {4}at /m, `stderr holds a stack trace:\n${run.stderr.slice(0, 2000)}`);
  assert.doesNotMatch(run.stderr, /internal error|Maximum call stack/i, run.stderr.slice(0, 2000));
  return run;
}

const RULE = (service: string, identity = 'team:x') => `service "${service}" {\n  policy   = "read"\n  identity = "${identity}"\n}\n`;

function evalJson(dir: string, ...args: string[]): { result: string; reason: string } {
  const r = pdp('eval', '--policies', dir, '--format', 'json', ...args);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { result: string; reason: string };
}

// ---- which files make a policy set ----

test('symbolic links to files and directories inside the policy directory are followed; each file is read once', () => {
  write('links/real/a.hcl', RULE('a'));
  write('links/b.hcl', RULE('b'));
  fs.symlinkSync('real/a.hcl', path.join(WORK, 'links/a.hcl'));
  fs.symlinkSync('real', path.join(WORK, 'links/shared')); // a.hcl again, through a directory link
  fs.symlinkSync('.', path.join(WORK, 'links/real/loop'), 'dir'); // a cycle: real/loop -> real
  const r = pdp('check', 'links');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /ok: 2 files, 2 rules: 0 errors, 0 warnings/);
  assert.equal(evalJson('links', '--identity', 'team:x', '--action', 'read', '--resource', 'service:a').result, 'ALLOW');
  // The directory itself may be a link (an operator's /etc/pdp/policies -> /srv/policies).
  fs.symlinkSync('links', path.join(WORK, 'links-alias'));
  assert.match(pdp('check', 'links-alias').stdout, /ok: 2 files, 2 rules/);
});

test('a link out of the policy directory is refused, not read: a pull request cannot make `pdp check` print a secret', () => {
  // What a hostile pull request adds: a "policy file" that is a link to the CI job's environment or
  // a key file. Read, its text would be quoted by the parse errors (and in SARIF) into the build log.
  write('outside/secret.txt', 'ghs_FAKEsecretForTheTest123 = not a policy\n');
  write('pr/a.hcl', RULE('a'));
  fs.symlinkSync('../outside/secret.txt', path.join(WORK, 'pr/zz-env.hcl'));
  fs.symlinkSync('/proc/self/environ', path.join(WORK, 'pr/zz-proc.hcl'));
  fs.symlinkSync('../outside', path.join(WORK, 'pr/vendor'));
  for (const format of ['text', 'json', 'sarif']) {
    const r = pdp('check', '--strict', '--format', format, 'pr');
    assert.equal(r.status, 1, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /ghs_FAKE|PATH=|HOME=/, `${format} output quotes the link target's content`);
  }
  const text = pdp('check', 'pr');
  assert.match(text.stderr, /pr\/zz-env\.hcl:1:1: error\[read-error\]: cannot read policy file `zz-env\.hcl`: it is a symbolic link to `\.\.\/outside\/secret\.txt`, outside the policy directory/);
  assert.match(text.stderr, /pr\/zz-proc\.hcl:1:1: error\[read-error\]: cannot read policy file `zz-proc\.hcl`: it is a symbolic link to `\/proc\/self\/environ`, outside/);
  assert.match(text.stderr, /pr\/vendor:1:1: error\[read-error\]: cannot read directory `vendor`: it is a symbolic link to `\.\.\/outside`, outside/);
  assert.match(text.stderr, /hint: name a directory that holds every policy file/);
  // The server's load and reload read the set the same way: refused with the same diagnostics.
  const ev = pdp('eval', '--policies', 'pr', '--identity', 'team:x', '--action', 'read', '--resource', 'service:a');
  assert.equal(ev.status, 1, ev.stderr);
  assert.match(ev.stderr, /zz-env\.hcl.*outside the policy directory/);
});

test('a *.hcl name that is not a regular file (a FIFO) is refused at once instead of blocking the read', (t) => {
  write('fifo/a.hcl', RULE('a'));
  const made = spawnSync('mkfifo', [path.join(WORK, 'fifo/b.hcl')]);
  if (made.status !== 0) return t.skip('mkfifo is not available');
  const r = pdp('check', 'fifo');
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /fifo\/b\.hcl:1:1: error\[read-error\]: cannot read policy file `b\.hcl`: it is not a regular file/);
});

test('a FIFO or a device named on the command line is refused too: check, fmt and test never wait on it', (t) => {
  const fifo = path.join(WORK, 'named-fifo.hcl');
  const made = spawnSync('mkfifo', [fifo]);
  if (made.status !== 0) return t.skip('mkfifo is not available');
  // With no writer, reading the FIFO blocked for ever (the run would be killed by its timeout).
  for (const args of [['check', 'named-fifo.hcl'], ['fmt', 'named-fifo.hcl'], ['test', 'named-fifo.hcl'], ['check', '/dev/zero']]) {
    const r = runPdp(args, { cwd: WORK, timeoutMs: 15_000 });
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${args[1]}:1:1: error\\[read-error\\]: cannot read policy file \`${args[1]}\`: it is not a regular file`));
  }
});

test('a Kubernetes ConfigMap mount (visible links into a hidden ..data directory) loads each file once', () => {
  write('cm/..2026_11_23_00_00_00.1/a.hcl', RULE('a'));
  write('cm/..2026_11_23_00_00_00.1/b.hcl', RULE('b'));
  fs.symlinkSync('..2026_11_23_00_00_00.1', path.join(WORK, 'cm/..data'));
  fs.symlinkSync('..data/a.hcl', path.join(WORK, 'cm/a.hcl'));
  fs.symlinkSync('..data/b.hcl', path.join(WORK, 'cm/b.hcl'));
  write('cm/.#a.hcl', 'not a policy: an editor lock file'); // hidden names are skipped
  const r = pdp('check', 'cm');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /ok: 2 files, 2 rules: 0 errors, 0 warnings/);
});

test('a dangling *.hcl link refuses the set with a read-error naming it, in check, eval and test', () => {
  write('dangling/a.hcl', RULE('a'));
  fs.symlinkSync('missing.hcl', path.join(WORK, 'dangling/b.hcl'));
  const check = pdp('check', 'dangling');
  assert.equal(check.status, 1);
  assert.match(check.stderr, /dangling\/b\.hcl:1:1: error\[read-error\]: cannot read policy file `b\.hcl`: ENOENT/);
  const json = JSON.parse(pdp('check', 'dangling', '--format', 'json').stdout) as { diagnostics: { code: string; file: string }[] };
  assert.ok(json.diagnostics.some((d) => d.code === 'read-error' && d.file === 'dangling/b.hcl'), JSON.stringify(json));
  const ev = pdp('eval', '--policies', 'dangling', '--identity', 'team:x', '--action', 'read', '--resource', 'service:a');
  assert.equal(ev.status, 1);
  assert.match(ev.stderr, /read-error/);
  assert.equal(pdp('test', 'dangling').status, 1);
});

test('an unreadable file is a read-error naming it, not a crash', (t) => {
  write('locked/a.hcl', RULE('a'));
  const file = write('locked/b.hcl', RULE('b'));
  fs.chmodSync(file, 0o000);
  // root reads anything: run the CLI as `nobody` then, where this machine lets that user run it.
  const options = unprivilegedOptions(WORK);
  if (options === undefined) return t.skip('the repository is not readable by `nobody` here');
  const r = spawnSync(process.execPath, [BIN, 'check', 'locked'], { ...options, cwd: WORK, encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /locked\/b\.hcl:1:1: error\[read-error\]: cannot read policy file `b\.hcl`: EACCES \(permission denied\)/);
  assert.doesNotMatch(r.stderr, /internal error/);
});

test('a file named twice (overlapping globs) is read once: no duplicates of itself', () => {
  const file = write('twice/a.hcl', `settings { default_policy = "deny" }\nrole "ops" { identities = ["team:ops"] }\n${RULE('a')}`);
  const r = pdp('check', file, file, 'twice/a.hcl');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /ok: 1 file, 1 rule: 0 errors, 0 warnings/);
});

// ---- encodings ----

test('text that is not UTF-8 is an invalid-encoding error at the first bad byte; fmt leaves the bytes alone', () => {
  const bytes = Buffer.concat([Buffer.from('service "cafe" {\n  policy   = "read"\n  identity = "t'), Buffer.from([0xff, 0xfe]), Buffer.from('"\n}\n')]);
  const file = write('latin/a.hcl', bytes);
  const r = pdp('check', 'latin');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /latin\/a\.hcl:3:16: error\[invalid-encoding\]: not valid UTF-8: byte `0xFF`/);
  const fmt = pdp('fmt', 'latin');
  assert.equal(fmt.status, 1);
  assert.deepEqual(fs.readFileSync(file), bytes, 'fmt must not rewrite a file it cannot decode');
  // A truncated multi-byte sequence at the very end is caught too.
  write('latin2/a.hcl', Buffer.concat([Buffer.from(RULE('a')), Buffer.from('# caf'), Buffer.from([0xc3])]));
  assert.match(pdp('check', 'latin2').stderr, /latin2\/a\.hcl:5:6: error\[invalid-encoding\]: not valid UTF-8: byte `0xC3`/);
});

test('invalid-encoding at the first byte is at 1:1 (a UTF-16 file says so); a truncated sequence names the byte that fails to continue it', () => {
  // UTF-16 with its byte-order mark, as Windows Notepad and PowerShell `>` save it.
  write('utf16/a.hcl', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(RULE('a'), 'utf16le')]));
  const r = pdp('check', 'utf16');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^utf16\/a\.hcl:1:1: error\[invalid-encoding\]: not valid UTF-8: byte `0xFF` does not start or continue a character$/m);
  assert.match(r.stderr, /hint: the file looks like UTF-16/);
  assert.match(pdp('fmt', 'utf16').stderr, /^utf16\/a\.hcl:1:1: error\[invalid-encoding\]/m);
  // Without the byte-order mark (iconv, some editors) the bytes are valid UTF-8, ASCII and NULs: one
  // error, not an `unexpected character U+0000` for every character of the file.
  write('utf16-nobom/le.hcl', Buffer.from(RULE('a'), 'utf16le'));
  write('utf16-nobom/be.hcl', Buffer.from(RULE('b'), 'utf16le').swap16());
  const nobom = pdp('check', 'utf16-nobom');
  assert.equal(nobom.status, 1);
  assert.match(nobom.stderr, /^utf16-nobom\/be\.hcl:1:1: error\[invalid-encoding\]: not UTF-8: the file looks like UTF-16 \(big-endian\) without a byte-order mark; every other byte is `0x00`$/m);
  assert.match(nobom.stderr, /^utf16-nobom\/le\.hcl:1:1: error\[invalid-encoding\]: not UTF-8: the file looks like UTF-16 \(little-endian\)/m);
  assert.match(nobom.stderr, /check failed: 2 files, 0 rules: 2 errors, 0 warnings/);
  // A continuation byte first, with line breaks later in the file (the old code found the last one).
  write('lead/a.hcl', Buffer.from([0xa8, 0x61, 0x0a, 0x62, 0x0a, 0xff, 0x0a]));
  assert.match(pdp('check', 'lead').stderr, /^lead\/a\.hcl:1:1: error\[invalid-encoding\]: not valid UTF-8: byte `0xA8` does not start a character \(it can only continue one\)$/m);
  write('trunc/a.hcl', Buffer.from([0x61, 0xc3, 0x28, 0x0a]));
  assert.match(pdp('check', 'trunc').stderr, /^trunc\/a\.hcl:1:2: error\[invalid-encoding\]: not valid UTF-8: byte `0xC3` starts a 2-byte character but `0x28` does not continue it$/m);
  // Bare CRs and CRLFs before the bad byte are line breaks, as the lexer counts them.
  write('crenc/a.hcl', Buffer.concat([Buffer.from('# one\r# two\r\n# three\n  x'), Buffer.from([0xe2, 0x82]), Buffer.from('\n')]));
  assert.match(pdp('check', 'crenc').stderr, /^crenc\/a\.hcl:4:4: error\[invalid-encoding\]: not valid UTF-8: byte `0xE2` starts a 3-byte character but `0x0A` does not continue it$/m);
});

// ---- line endings ----

test('a bare CR is a line break: a `#` comment ends at it, the rule after it is loaded, and diagnostics count it', () => {
  // The review's case: a deny after a comment in a file with old-Mac (CR-only) line endings.
  write('cr/a.hcl', 'service "db" { policy = "read" identity = "*" }\n');
  write('cr/b.hcl', '# contractors must never read db\rservice "db" { policy = "deny" identity = "team:c" }\r');
  const check = pdp('check', 'cr');
  assert.equal(check.status, 0, check.stderr);
  assert.match(check.stdout, /ok: 2 files, 2 rules: 0 errors, 0 warnings/);
  assert.equal(evalJson('cr', '--identity', 'team:c', '--action', 'read', '--resource', 'service:db').result, 'DENY');
  // `//` too, and a CR-only file's diagnostics give the right line, with the line itself under them.
  write('cr2/a.hcl', 'service "x" {\r  policy = "read" // c\r  identity = "a"\r  polcy = 1\r}\r');
  const bad = pdp('check', 'cr2');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^cr2\/a\.hcl:4:3: error\[unknown-attribute\]: unknown attribute `polcy`/m);
  assert.match(bad.stderr, /^4 \|   polcy = 1$/m);
  assert.doesNotMatch(bad.stderr, /\r|\ufffd/);
  // A string may not run over a bare CR, as it may not over LF.
  write('cr3/a.hcl', 'service "x" {\r  policy = "read\r"\r  identity = "a"\r}\r');
  assert.match(pdp('check', 'cr3').stderr, /^cr3\/a\.hcl:2:12: error\[unterminated-string\]/m);
});

test('fmt turns bare CRs (and CRLFs) into LF and keeps the meaning', () => {
  const before = '# deny contractors\rservice "db" { policy = "deny" identity = "team:c" }\r/* a\rb */\rservice "db" {\r\n policy = "read"\r\n identity = "*" }';
  const file = write('crfmt/a.hcl', before);
  assert.equal(pdp('fmt', '--check', 'crfmt').status, 1);
  const r = pdp('fmt', 'crfmt');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(
    fs.readFileSync(file, 'utf8'),
    '# deny contractors\nservice "db" {\n  policy   = "deny"\n  identity = "team:c"\n}\n\n/* a\nb */\nservice "db" {\n  policy   = "read"\n  identity = "*"\n}\n',
  );
  assert.equal(pdp('fmt', '--check', 'crfmt').status, 0);
  assert.equal(evalJson('crfmt', '--identity', 'team:c', '--action', 'read', '--resource', 'service:db').result, 'DENY');
  assert.equal(evalJson('crfmt', '--identity', 'team:d', '--action', 'read', '--resource', 'service:db').result, 'ALLOW');
});

test('a leading UTF-8 byte-order mark is accepted; fmt drops it', () => {
  const file = write('bom/a.hcl', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(RULE('a'))]));
  const check = pdp('check', 'bom');
  assert.equal(check.status, 0, check.stderr);
  assert.equal(evalJson('bom', '--identity', 'team:x', '--action', 'read', '--resource', 'service:a').result, 'ALLOW');
  const listed = pdp('fmt', '--check', 'bom');
  assert.equal(listed.status, 1);
  assert.match(listed.stdout, /bom\/a\.hcl/);
  assert.equal(pdp('fmt', 'bom').status, 0);
  assert.equal(fs.readFileSync(file, 'utf8'), RULE('a'));
  assert.equal(pdp('fmt', '--check', 'bom').status, 0);
});

// ---- nesting bombs ----

test('nesting beyond 64 levels is a nesting-too-deep error with its position, in every command', () => {
  write('deep/blocks.hcl', `namespace "a" { ${'service "b" { '.repeat(5000)}${'}'.repeat(5001)}\n`);
  write('deep/lists.hcl', `service "a" {\n  policy = "read"\n  identity = ${'['.repeat(3000)}${']'.repeat(3000)}\n}\n`);
  const check = pdp('check', 'deep');
  assert.equal(check.status, 1);
  // (short messages: the input lines are long)
  assert.match(check.stderr, /deep\/blocks\.hcl:1:911: error\[nesting-too-deep\]: blocks and lists nest more than 64 levels deep here/, 'blocks.hcl');
  assert.match(check.stderr, /deep\/lists\.hcl:3:77: error\[nesting-too-deep\]/, 'lists.hcl: the block and 64 lists open before column 77');
  assert.equal(pdp('fmt', '--check', 'deep').status, 1);
  assert.equal(pdp('test', 'deep').status, 1);
  assert.equal(pdp('eval', '--policies', 'deep', '--identity', 'x', '--action', 'read', '--resource', 'service:a').status, 1);
});

test('64 levels still parse (the bound is on depth, not on the fast or slow parser)', () => {
  // A list nested 64 deep: not a valid identity list, but a parse, so the error is the type, not the depth.
  write('deep64/a.hcl', `service "a" {\n  policy = "read"\n  identity = ${'['.repeat(63)}"x"${']'.repeat(63)}\n}\n`);
  const r = pdp('check', 'deep64', '--format', 'json');
  const codes = (JSON.parse(r.stdout) as { diagnostics: { code: string }[] }).diagnostics.map((d) => d.code);
  assert.ok(!codes.includes('nesting-too-deep'), codes.join(','));
  assert.ok(codes.length > 0, 'a nested list is still not a valid identity');
});

test('a big block that is never closed is reported in bounded memory (the slow parser once copied its item list per item)', () => {
  // 8,000 services in a namespace whose `}` is missing: the fast path gives up, and nearley built the
  // body list with a copy per item (quadratic: 300 MB here, out of memory at 50,000 rules). With a
  // heap of 96 MB that crashed; now it is the one diagnostic.
  const services = Array.from({ length: 8000 }, (_, i) => `  service "s${i}" {\n    policy   = "read"\n    identity = "team:a${i}"\n  }\n`).join('');
  write('unclosed-big/a.hcl', `namespace "prod" {\n${services}`);
  const r = spawnSync(process.execPath, ['--max-old-space-size=96', BIN, 'check', 'unclosed-big'], { cwd: WORK, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 1, r.stderr.slice(-2000));
  assert.match(r.stderr, /unclosed-big\/a\.hcl:1:18: error\[unclosed-block\]: this `\{` is never closed/);
  assert.match(r.stderr, /check failed: 1 file, 0 rules: 1 error, 0 warnings/);
});

test('input-sized lists never go through spread arguments: a huge block, body or diagnostic list is a result, not a stack overflow', () => {
  // `push(...xs)` passes every element on the stack: with Node's default stack, 130,000 of them
  // (a 150,000-rule file, a namespace of 50,000 services in fmt, 130,000 errors) overflowed it and
  // the command died with "internal error: Maximum call stack size exceeded". A stack of 200 KB
  // brings that bound down to some 25,000, so 40,000 of each shows it cheaply.
  const n = 40_000;
  write('spread/errors/chars.hcl', `${'@ '.repeat(n)}\n`); // parse diagnostics (apart: a run is one)
  write('spread/errors/escapes.hcl', `service "x" {\n  description = "${'\\q'.repeat(n)}"\n}\n`); // one string's errors
  write('spread/errors/top.hcl', `@\n${'a = 1\n'.repeat(n)}`); // a file's top-level items, after a lexical error
  write('spread/block/a.hcl', `namespace "n" {\n${Array.from({ length: n / 4 }, (_, i) => `service "s${i}" { policy = "read" identity = "t" }\n`).join('')}}\n`);
  const run = (...args: string[]) => {
    const r = spawnSync(process.execPath, ['--stack-size=200', BIN, ...args], { cwd: WORK, encoding: 'utf8', timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
    assert.doesNotMatch(r.stderr, /internal error|Maximum call stack/, `${args.join(' ')}: ${r.stderr.slice(-500)}`);
    return r;
  };
  const check = run('check', 'spread/errors');
  assert.equal(check.status, 1);
  assert.match(check.stderr, /check failed: 3 files, 0 rules: 120003 errors, 0 warnings/);
  assert.equal(run('fmt', '--check', 'spread/block').status, 1, 'a block formatted to 40,000 lines');
  assert.equal(run('fmt', '--check', 'spread/errors').status, 1);
});

// ---- addresses ----

test('one IPv6 address, however it is spelled, gets one decision from a cidrs rule', () => {
  write('cidr/a.hcl', `service "v4" {\n  policy   = "read"\n  identity = "x"\n  cidrs    = ["10.0.0.0/8"]\n}\nservice "v6" {\n  policy   = "read"\n  identity = "x"\n  cidrs    = ["::a00:0/104"]\n}\n`);
  const decide = (service: string, ip: string) => evalJson('cidr', '--identity', 'x', '--action', 'read', '--resource', `service:${service}`, '--source-ip', ip).result;
  // `::10.0.0.1` is the IPv4-compatible form of ::a00:1, not the IPv4-mapped ::ffff:10.0.0.1.
  for (const spelling of ['::10.0.0.1', '::a00:1', '0:0:0:0:0:0:10.0.0.1', '0:0:0:0:0:0:a00:1']) {
    assert.equal(decide('v4', spelling), 'DENY', spelling);
    assert.equal(decide('v6', spelling), 'ALLOW', spelling);
  }
  // IPv4-mapped IPv6 is the IPv4 address, in every spelling.
  for (const spelling of ['::ffff:10.0.0.1', '::ffff:a00:1', '0:0:0:0:0:ffff:10.0.0.1']) assert.equal(decide('v4', spelling), 'ALLOW', spelling);
});

test('a deny whose cidrs do not hold still keeps the default policy out, and the reason says so', () => {
  write('denycidr/a.hcl', `settings { default_policy = "allow" }\nservice "d1" {\n  policy   = "deny"\n  identity = "team:d"\n  cidrs    = ["10.0.0.0/8"]\n}\n`);
  const out = evalJson('denycidr', '--identity', 'team:d', '--action', 'read', '--resource', 'service:d1', '--source-ip', '11.1.1.1');
  assert.equal(out.result, 'DENY');
  assert.match(out.reason, /the deny at a\.hcl:2 applies only from 10\.0\.0\.0\/8 and source_ip 11\.1\.1\.1 is outside them, but a rule naming team:d on service:d1 keeps the default policy from applying/);
  assert.equal(evalJson('denycidr', '--identity', 'team:d', '--action', 'read', '--resource', 'service:d1', '--source-ip', '10.1.1.1').result, 'DENY');
  assert.equal(evalJson('denycidr', '--identity', 'team:other', '--action', 'read', '--resource', 'service:d1', '--source-ip', '11.1.1.1').result, 'ALLOW_DEFAULT');
});

test('under the default deny, the same case says that nothing grants, not that a default is kept out', () => {
  write('denycidr-deny/a.hcl', `service "d1" {\n  policy   = "deny"\n  identity = "team:d"\n  cidrs    = ["10.0.0.0/8"]\n}\n`);
  const out = evalJson('denycidr-deny', '--identity', 'team:d', '--action', 'read', '--resource', 'service:d1');
  assert.equal(out.result, 'DENY');
  assert.equal(out.reason, 'the deny at a.hcl:1 applies only from 10.0.0.0/8 and the request has no source_ip, and no rule grants team:d read on service:d1');
});

// ---- the shipped examples ----

test('the example policies/ are in canonical format (the README tells users to run fmt --check in CI)', () => {
  const r = spawnSync(process.execPath, [BIN, 'fmt', '--check', 'policies'], { cwd: REPO_ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});

// ---- second review round ----

test('an api block reaching {service}/{namespace} through a role is an error (it would match with "" substituted)', () => {
  write('apirole/p.hcl', `role "owners" { identities = ["team:{namespace}-owners"] }\napi "admin" { identity = "role:owners" }\n`);
  const r = pdp('check', 'apirole');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /apirole\/p\.hcl:2:26: error\[invalid-identity\]: role `owners` has members with `\{service\}` or `\{namespace\}`, which have no meaning in an `api` block/);
});

test('test blocks are ignored when deciding (as by the server): a broken test fails check and test, not eval', () => {
  write('badtest/p.hcl', `${RULE('a')}test "typo" {\n  identity = "team:x"\n  action   = "read"\n  resource = "service:a"\n  expect   = "allow"\n}\n`);
  assert.equal(pdp('check', 'badtest').status, 1);
  assert.equal(pdp('test', 'badtest').status, 1);
  assert.equal(evalJson('badtest', '--identity', 'team:x', '--action', 'read', '--resource', 'service:a').result, 'ALLOW');
});

test('instance IDs may be host:port and bracketed IPv6, never spaces or a second /', () => {
  write('inst/p.hcl', RULE('cart'));
  for (const instance of ['10.0.0.1:8080', '[fd00::7]:443', 'pod-abc_1.x']) {
    assert.equal(evalJson('inst', '--identity', 'team:x', '--action', 'read', '--resource', `service:cart/${instance}`).result, 'ALLOW', instance);
  }
  for (const instance of ['a b', 'a/b']) {
    const r = pdp('eval', '--policies', 'inst', '--identity', 'team:x', '--action', 'read', '--resource', `service:cart/${instance}`);
    assert.equal(r.status, 2, instance);
    assert.match(r.stderr, /invalid instance/);
  }
});

test('cidrs: a zone or a prefix length with a leading zero is an error; a source_ip with a zone is refused', () => {
  write('zone/p.hcl', `service "a" {\n  policy   = "read"\n  identity = "x"\n  cidrs    = ["fe80::1%eth0/64", "10.0.0.0/08"]\n}\n`);
  const r = pdp('check', 'zone');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /zone\/p\.hcl:4:15: error\[invalid-cidr\]: invalid CIDR `fe80::1%eth0\/64`: a zone \(`%…`\) is not part of a network/);
  assert.match(r.stderr, /zone\/p\.hcl:4:34: error\[invalid-cidr\]: invalid CIDR `10\.0\.0\.0\/08`: the prefix length `08` has a leading zero/);
  write('zone2/p.hcl', RULE('a', 'x'));
  const ev = pdp('eval', '--policies', 'zone2', '--identity', 'x', '--action', 'read', '--resource', 'service:a', '--source-ip', 'fe80::2%eth1');
  assert.equal(ev.status, 2);
  assert.match(ev.stderr, /--source-ip/);
});

test('an identity pattern with whitespace or control characters is an error (it could never match)', () => {
  write('ws/p.hcl', `service "a" {\n  policy   = "read"\n  identity = "team:a\\n"\n}\nservice "b" {\n  policy   = "read"\n  identity = "team: ops"\n}\n`);
  const r = pdp('check', 'ws', '--format', 'json');
  const found = (JSON.parse(r.stdout) as { diagnostics: { code: string; line: number; message: string }[] }).diagnostics;
  assert.deepEqual(found.map((d) => `${d.line} ${d.code}`), ['3 invalid-identity', '7 invalid-identity']);
  assert.match(found[0]!.message, /whitespace or control characters/);
});

test('an identity with an invisible format character (Unicode Cf) is an error wherever identities are written', () => {
  // The review's case: a deny whose identity ends in a zero-width space would never match, and the
  // grant above it would then allow team:contractors. Raw characters and `\u` escapes alike.
  write('zw/p.hcl', 'service "db" { policy = "read" identity = "*" }\nservice "db" { policy = "deny" identity = "team:contractors\\u200b" }\n');
  const r = pdp('check', 'zw');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^zw\/p\.hcl:2:43: error\[invalid-identity\]: an identity pattern cannot contain the invisible character U\+200B \(zero-width space\)$/m);
  assert.equal(pdp('eval', '--policies', 'zw', '--identity', 'team:contractors', '--action', 'read', '--resource', 'service:db').status, 1, 'the set is refused');
  const cf = ['\u200b', '\u200c', '\u200d', '\u200e', '\u200f', '\u202a', '\u202e', '\u2060', '\u2064', '\u2066', '\u2069', '\u00ad', '\u180e', '\ufeff'];
  const hex = (c: string) => c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
  // In a rule, a role, an api block and a test's identity, each raw.
  const file = (c: string) => `settings { default_policy = "deny" }\nservice "a" {\n  policy   = "read"\n  identity = "team:a${c}"\n}\nrole "r" { identities = ["team:r${c}"] }\napi "admin" { identity = "team:api${c}" }\ntest "t" {\n  identity = "team:a${c}"\n  action   = "read"\n  resource = "service:a"\n  expect   = "DENY"\n}\n`;
  for (const c of cf) {
    write(`cf-${hex(c)}/p.hcl`, file(c));
    const json = JSON.parse(pdp('check', `cf-${hex(c)}`, '--format', 'json').stdout) as { diagnostics: { code: string; line: number; message: string }[] };
    assert.deepEqual(json.diagnostics.map((d) => `${d.line} ${d.code}`), ['4 invalid-identity', '6 invalid-identity', '7 invalid-identity', '9 invalid-test'], `U+${hex(c)}`);
    // Patterns name the character; a test's identity is refused as the server refuses the request.
    for (const d of json.diagnostics) assert.match(d.message, new RegExp(d.code === 'invalid-test' ? `request would be refused: \`identity\` holds U\\+${hex(c)} .* at position 6$` : `invisible character U\\+${hex(c)} `), `U+${hex(c)}: ${d.message}`);
  }
  // pdp test refuses to run such a set, rather than passing a test that tests nothing.
  assert.equal(pdp('test', `cf-${hex('\u200b')}`).status, 1);
});

test('an empty path argument or path flag is bad usage (exit 2), never the current directory or the default', () => {
  write('policies/a.hcl', RULE('a')); // what an empty PATH used to fall back to, or what it would find in the cwd
  for (const args of [['check', ''], ['check', 'policies', ''], ['test', ''], ['fmt', ''], ['fmt', '--check', '']]) {
    const r = pdp(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^pdp \w+: an empty path argument; name a file or directory \(is a variable unset\?\)$/m, args.join(' '));
  }
  const flags: [string[], string][] = [
    [['eval', '--policies', '', '--identity', 'team:x', '--action', 'read', '--resource', 'service:a'], 'policies'],
    [['check', '--replay', 'audit.db', '--policies', ''], 'policies'],
    [['ca', 'init', '--trust-domain', 'cluster', '--dir', ''], 'dir'],
    [['ca', 'issue', 'workload', '--spiffe-id', 'spiffe://cluster/a', '--out', ''], 'out'],
    [['token', 'list', '--tokens', ''], 'tokens'],
    // serve refuses before opening anything (it would otherwise serve ./policies, or write ./audit.db)
    [['serve', '--policies', '', '--listen', '127.0.0.1:0'], 'policies'],
    [['serve', '--policies', 'policies', '--audit', '', '--listen', '127.0.0.1:0'], 'audit'],
    [['serve', '--policies', 'policies', '--tokens', '', '--listen', '127.0.0.1:0'], 'tokens'],
  ];
  for (const [args, flag] of flags) {
    const r = pdp(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`\`--${flag}\` is empty; name a path`), args.join(' '));
  }
  assert.equal(fs.existsSync(path.join(WORK, 'tokens.db')), false);
  assert.equal(fs.existsSync(path.join(WORK, 'audit.db')), false);
  fs.rmSync(path.join(WORK, 'policies'), { recursive: true }); // the next test needs there to be none
});

test('fmt on a directory with no *.hcl files is bad usage, as check and test say', () => {
  fs.mkdirSync(path.join(WORK, 'nohcl'), { recursive: true });
  write('nohcl/readme.txt', 'not a policy\n');
  for (const cmd of [['fmt'], ['fmt', '--check'], ['fmt', '--format', 'json'], ['check'], ['test']]) {
    const r = pdp(...cmd, 'nohcl');
    assert.equal(r.status, 2, `${cmd.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^pdp \w+: no `\*\.hcl` files in `nohcl`$/m, cmd.join(' '));
  }
});

test('an empty PDP_POLICIES is treated as unset; check --help lists every lint rule', () => {
  const env = { ...process.env, PDP_POLICIES: '' };
  const r = spawnSync(process.execPath, [BIN, 'check'], { cwd: WORK, encoding: 'utf8', env });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /`policies`/);
  const help = pdp('check', '--help').stdout.replace(/\s+/g, ' ');
  for (const code of ['prefix-not-at-delimiter', 'broad-prefix-grant', 'default-allow', 'dead-grant', 'redundant-rule', 'foreign-trust-domain', 'duplicate-block', 'deny-cidrs-blocks-default', 'anonymous-not-allowed', 'cidr-host-bits', 'duplicate-identity']) {
    assert.ok(help.includes(code), code);
  }
});

test('pdp check --within DIR FILE…: the whole set is checked, only the named files are reported (pre-commit hooks)', () => {
  write('within/policies/roles.hcl', 'role "sre" { identities = ["team:sre"] }\n');
  write('within/policies/a.hcl', 'service "a" {\n  policy   = "read"\n  identity = "role:sre"\n}\nservice "b" {\n  polcy = "read"\n  identity = "team:x"\n}\n');
  write('within/policies/c.hcl', 'service "c" {\n  policy   = "raed"\n  identity = "team:x"\n}\n');
  write('within/elsewhere.hcl', 'service "d" {\n  policy   = "read"\n  identity = "team:x"\n}\n');
  const cwd = path.join(WORK, 'within');
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, 'check', ...args], { cwd, encoding: 'utf8' });
  // Alone, a.hcl cannot see the role it uses.
  assert.match(run('policies/a.hcl').stderr, /error\[undefined-role\]/);
  const within = run('--within', 'policies', 'policies/a.hcl', '--format', 'json');
  assert.equal(within.status, 1);
  const body = JSON.parse(within.stdout) as { files: number; diagnostics: { code: string; file: string; line: number }[] };
  assert.deepEqual(body.diagnostics.map((d) => [d.code, d.file, d.line]), [['unknown-attribute', 'policies/a.hcl', 6]], 'no undefined-role, and nothing of c.hcl');
  assert.equal(body.files, 1);
  assert.equal(run('--within', 'policies', 'policies/roles.hcl').status, 0, 'a clean file passes although another file of the set has errors');
  assert.match(run('--within', 'policies').stderr, /policies\/c\.hcl:2:14: error\[invalid-value\]|policies\/c\.hcl:2/, 'no file named: the whole set');
  const outside = run('--within', 'policies', 'elsewhere.hcl');
  assert.equal(outside.status, 2);
  assert.match(outside.stderr, /`elsewhere\.hcl` is not a policy file of the set in `policies`/);
  assert.equal(run('--within', 'policies/a.hcl').status, 2);
});

test('pdp help CMD prints that command\'s help; an unknown name is reported as by pdp NAME', () => {
  const viaHelp = pdp('help', 'check');
  assert.equal(viaHelp.status, 0);
  assert.equal(viaHelp.stdout, pdp('check', '--help').stdout);
  const unknown = pdp('help', 'chek');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /^pdp: unknown command `chek`; did you mean `check`\?/);
  assert.equal(pdp('help', 'check', 'fmt').status, 2);
  const nested = pdp('help', 'audit', 'prune');
  assert.equal(nested.status, 0);
  assert.equal(nested.stdout, pdp('audit', 'prune', '--help').stdout);
  assert.equal(pdp('help', 'audit', 'prune', 'now').status, 2);
  const plain = pdp('help');
  assert.equal(plain.status, 0);
  assert.match(plain.stdout, /`pdp help <command>`/);
});
