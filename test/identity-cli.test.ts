import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { run as ca, HELP as CA_HELP } from '../src/cli/ca';
import { run as token, HELP as TOKEN_HELP } from '../src/cli/token';
import { UsageError, type CliIo } from '../src/cli/io';
import { openTokenStore } from '../src/identity/tokens';
import { scratchDir } from './support/cli';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'pdp.js');
const cliBuilt = fs.existsSync(path.join(ROOT, 'dist', 'src', 'cli', 'main.js'));

function capture(cwd: string, env: NodeJS.ProcessEnv = {}): CliIo & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (s: string) => { out += s; return true; } },
    stderr: { write: (s: string) => { err += s; return true; } },
    env,
    cwd,
    out: () => out,
    err: () => err,
  };
}

/** A fresh directory, removed when the test (or hook) that made it ends. */
function tmpdir(): string {
  return scratchDir('pdp-cli-id-').dir;
}

test('pdp ca init and issue, in-process', async () => {
  const cwd = tmpdir();
  let io = capture(cwd);
  assert.equal(await ca(['init', '--trust-domain', 'cluster'], io), 0);
  assert.equal(io.out(), 'ca/ca.key\nca/ca.crt\n');
  assert.match(io.err(), /trust domain `cluster`/);
  assert.equal(fs.statSync(path.join(cwd, 'ca', 'ca.key')).mode & 0o777, 0o600);

  io = capture(cwd);
  assert.equal(await ca(['init', '--trust-domain', 'cluster'], io), 1, 'refuses to overwrite');
  assert.match(io.err(), /already exist.*--force/);
  assert.equal(io.out(), '');
  io = capture(cwd);
  assert.equal(await ca(['init', '--trust-domain', 'cluster', '--force', '--validity', '730d', '--format', 'json'], io), 0);
  const made = JSON.parse(io.out());
  const root = new X509Certificate(fs.readFileSync(path.join(cwd, 'ca', 'ca.crt')));
  assert.deepEqual(
    { serial: made.serial, not_before: made.not_before, not_after: made.not_after, fingerprint: made.fingerprint_sha256, trust_domain: made.trust_domain },
    { serial: root.serialNumber, not_before: new Date(root.validFrom).toISOString(), not_after: new Date(root.validTo).toISOString(), fingerprint: root.fingerprint256, trust_domain: 'cluster' },
    '--format json describes the certificate it wrote',
  );

  io = capture(cwd);
  assert.equal(await ca(['issue', 'server', '--name', 'pdp', '--dns', 'localhost', '--dns', 'pdp.internal', '--ip', '127.0.0.1'], io), 0);
  assert.equal(io.out(), 'ca/pdp.key\nca/pdp.crt\n');
  assert.equal(new X509Certificate(fs.readFileSync(path.join(cwd, 'ca', 'pdp.crt'))).subjectAltName, 'DNS:localhost, DNS:pdp.internal, IP Address:127.0.0.1');

  io = capture(cwd);
  assert.equal(await ca(['issue', 'workload', '--spiffe-id', 'spiffe://cluster/ns/prod/sa/registry', '--out', 'certs', '--format', 'json'], io), 0);
  const json = JSON.parse(io.out());
  assert.equal(json.spiffe_id, 'spiffe://cluster/ns/prod/sa/registry');
  assert.equal(json.certificate, path.join(cwd, 'certs', 'registry.crt'), 'name defaults to the last path segment');
  assert.equal(json.kind, 'workload');

  io = capture(cwd);
  assert.equal(await ca(['issue', 'user', '--spiffe-id', 'spiffe://cluster/user/alice', '--name', 'alice', '--validity', '8h'], io), 0);
  const alice = new X509Certificate(fs.readFileSync(path.join(cwd, 'ca', 'alice.crt')));
  assert.equal(Date.parse(alice.validTo) - Date.parse(alice.validFrom), 8 * 3_600_000 + 60_000);

  // PDP_CA_DIR mirrors --dir
  io = capture(cwd, { PDP_CA_DIR: 'ca' });
  assert.equal(await ca(['issue', 'user', '--spiffe-id', 'spiffe://cluster/user/bob', '--out', 'elsewhere'], io), 0);
  assert.ok(fs.existsSync(path.join(cwd, 'elsewhere', 'bob.crt')));

  // no CA there: a refusal, exit 1
  io = capture(tmpdir());
  assert.equal(await ca(['issue', 'user', '--spiffe-id', 'spiffe://cluster/user/carol'], io), 1);
  assert.match(io.err(), /pdp ca init/);
});

test('pdp ca usage errors', async () => {
  const cwd = tmpdir();
  assert.equal(await ca(['init', '--trust-domain', 'cluster'], capture(cwd)), 0);
  const usage: string[][] = [
    [],
    ['frobnicate'],
    ['init'],
    ['init', '--trust-domain', 'Not Valid', '--dir', 'x'],
    ['init', '--trust-domain', 'c', '--validity', 'forever', '--dir', 'y'],
    ['issue'],
    ['issue', 'robot'],
    ['issue', 'workload', '--name', 'x'],
    ['issue', 'workload', '--spiffe-id', 'spiffe://other/x'],
    ['issue', 'workload', '--spiffe-id', 'spiffe://cluster/x', '--dns', 'a'],
    ['issue', 'workload', '--spiffe-id', 'spiffe://cluster/x', '--validity', '365d'],
    ['issue', 'server', '--name', 'pdp'],
    ['issue', 'server', '--dns', 'localhost'],
    ['issue', 'server', '--name', 'pdp', '--ip', 'not-an-ip'],
    ['issue', 'user', '--spiffe-id', 'spiffe://cluster/u', '--bogus'],
    ['init', '--trust-domain', 'c', '--format', 'xml', '--dir', 'z'],
  ];
  for (const args of usage) {
    await assert.rejects(ca(args, capture(cwd)), UsageError, args.join(' '));
  }
  // The trust domain alone is not a workload ID: said as such whether or not `--name` is given.
  for (const name of [[], ['--name', 'x']]) {
    await assert.rejects(ca(['issue', 'workload', '--spiffe-id', 'spiffe://cluster', ...name], capture(cwd)), (e: unknown) => e instanceof UsageError && /names the trust domain itself/.test(e.message), name.join(' '));
  }
  assert.match(CA_HELP, /pdp ca init --trust-domain/);
  assert.match(CA_HELP, /pdp ca issue workload --spiffe-id/);
});

test('pdp token create, list, revoke, in-process; the secret is printed once and never listed', async () => {
  const cwd = tmpdir();
  let io = capture(cwd);
  assert.equal(await token(['create', '--identity', 'team:ops', '--ttl', '30m', '--description', 'deploy bot'], io), 0);
  const tok = io.out().trim();
  assert.match(tok, /^pdp_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
  assert.match(io.err(), /expires at/);
  assert.ok(!io.err().includes(tok.slice(17)), 'stderr never shows the secret');
  const id = tok.slice(4, 16);

  const store = openTokenStore(path.join(cwd, 'tokens.db'));
  const v = store.validate(tok, new Date());
  assert.ok(v.ok && v.identity === 'team:ops');
  store.close();

  io = capture(cwd);
  assert.equal(await token(['create', '--identity', 'spiffe://cluster/ns/prod/sa/order', '--format', 'json'], io), 0);
  const created = JSON.parse(io.out());
  assert.deepEqual(Object.keys(created).sort(), ['expires_at', 'id', 'identity', 'token']);
  assert.equal(created.identity, 'spiffe://cluster/ns/prod/sa/order');
  const expiresIn = Date.parse(created.expires_at) - Date.now();
  assert.ok(expiresIn > 59 * 60_000 && expiresIn <= 60 * 60_000, 'default ttl 1h');

  io = capture(cwd);
  assert.equal(await token(['list'], io), 0);
  assert.match(io.out(), /^ID\s+IDENTITY\s+STATUS\s+EXPIRES\s+DESCRIPTION\n/);
  assert.match(io.out(), new RegExp(`${id}\\s+team:ops\\s+active\\s+\\S+\\s+deploy bot`));
  assert.ok(!io.out().includes(tok.slice(17)) && !io.out().includes(created.token.slice(17)), 'list never shows secrets');

  io = capture(cwd);
  assert.equal(await token(['revoke', id], io), 0);
  assert.equal(io.out(), `revoked token \`${id}\`\n`);
  io = capture(cwd);
  assert.equal(await token(['list', '--format', 'json'], io), 0);
  const listed = JSON.parse(io.out()).tokens;
  assert.equal(listed.length, 2);
  assert.equal(listed.find((t: { id: string }) => t.id === id).status, 'revoked');
  assert.ok(!io.out().includes(tok.slice(17)));

  // pasting a whole token to revoke works by its id and never prints the secret
  io = capture(cwd);
  assert.equal(await token(['revoke', created.token], io), 0);
  assert.ok(!io.out().includes(created.token.slice(17)) && !io.err().includes(created.token.slice(17)));

  io = capture(cwd);
  assert.equal(await token(['revoke', 'AAAAAAAAAAAA'], io), 1);
  assert.match(io.err(), /no token with id `AAAAAAAAAAAA`/);
});

test('pdp token: --ttl over 1h, bad identity and other usage errors; PDP_TOKENS', async () => {
  const cwd = tmpdir();
  await assert.rejects(token(['create', '--identity', 'team:ops', '--ttl', '2h'], capture(cwd)), (e: unknown) => e instanceof UsageError && /maximum of `1h`/.test(e.message));
  await assert.rejects(token(['create', '--identity', 'team:ops', '--ttl', '61m'], capture(cwd)), UsageError);
  await assert.rejects(token(['create', '--identity', 'team:ops', '--ttl', 'soon'], capture(cwd)), UsageError);
  await assert.rejects(token(['create'], capture(cwd)), /--identity` is required/);
  await assert.rejects(token(['create', '--identity', ''], capture(cwd)), UsageError);
  await assert.rejects(token(['create', '--identity', 'spiffe://cluster/*'], capture(cwd)), UsageError);
  // An invisible format character (Unicode Cf) would make a token no rule can match, and prints unseen.
  for (const [c, name] of [['\u200b', 'U+200B (zero-width space)'], ['\u202e', 'U+202E (right-to-left override)'], ['\u00ad', 'U+00AD (soft hyphen)'], ['\u2064', 'U+2064 (format character)']]) {
    await assert.rejects(token(['create', '--identity', `team:ops${c}`], capture(cwd)), (e: unknown) => e instanceof UsageError && e.message.includes(`contains the invisible character ${name}`) && !e.message.includes(c!));
  }
  // A token pasted into either text argument is bad usage (exit 2), refused before anything is opened, and never echoed.
  const pasted = `pdp_AbCdEfGh1234_${'s'.repeat(43)}`;
  for (const args of [['--identity', pasted], ['--identity', 'team:ops', '--description', `rotated from ${pasted}`], ['--identity', 'team:ops', '--description', 'x'.repeat(1025)]]) {
    await assert.rejects(token(['create', ...args], capture(cwd)), (e: unknown) => e instanceof UsageError && !e.message.includes('s'.repeat(43)), args.join(' ').slice(0, 40));
  }
  await assert.rejects(token([], capture(cwd)), UsageError);
  await assert.rejects(token(['rotate'], capture(cwd)), UsageError);
  await assert.rejects(token(['revoke'], capture(cwd)), UsageError);
  await assert.rejects(token(['revoke', 'short'], capture(cwd)), UsageError);
  assert.equal(fs.existsSync(path.join(cwd, 'tokens.db')), false, 'usage errors create nothing');

  let io = capture(cwd);
  assert.equal(await token(['list'], io), 1, 'no store yet');
  assert.match(io.err(), /no token store/);
  assert.equal(fs.existsSync(path.join(cwd, 'tokens.db')), false);

  io = capture(cwd, { PDP_TOKENS: 'state/t.db' });
  assert.equal(await token(['create', '--identity', 'team:ops', '--ttl', '1h'], io), 0);
  assert.ok(fs.existsSync(path.join(cwd, 'state', 't.db')));
  io = capture(cwd);
  assert.equal(await token(['list', '--tokens', 'state/t.db'], io), 0);
  assert.match(io.out(), /team:ops/);
  assert.match(TOKEN_HELP, /pdp token create --identity/);
});

test('subprocess: node bin/pdp.js ca init / token create', { skip: !cliBuilt && 'cli not built' }, () => {
  const cwd = tmpdir();
  const pdp = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', env: { ...process.env, PDP_TOKENS: '', PDP_CA_DIR: '' } });
  let r = pdp('ca', 'init', '--trust-domain', 'cluster', '--dir', 'pki');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'pki/ca.key\npki/ca.crt\n');
  r = pdp('ca', 'init', '--trust-domain', 'cluster', '--dir', 'pki');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /already exist/);
  r = pdp('ca', 'init', '--trust-domain', 'BAD', '--dir', 'pki2');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /invalid trust domain `BAD`/);
  r = pdp('ca', 'issue', 'workload', '--dir', 'pki', '--spiffe-id', 'spiffe://cluster/ns/prod/sa/registry');
  assert.equal(r.status, 0, r.stderr);
  // Without --name, an invalid SPIFFE ID is reported as such, as it is with --name (not as a missing --name).
  for (const [kind, id] of [['workload', 'notspiffe'], ['user', 'spiffe://cluster/ns/a/sa/b/']]) {
    for (const name of [[], ['--name', 'x']]) {
      r = pdp('ca', 'issue', kind!, '--dir', 'pki', '--spiffe-id', id!, ...name);
      assert.equal(r.status, 2, r.stderr);
      assert.ok(r.stderr.startsWith(`pdp ca: \`${id}\` is not a valid SPIFFE ID; write \`spiffe://cluster/path\`\n`), r.stderr);
    }
  }
  // A last path segment too long for a file name: the name has to be given.
  r = pdp('ca', 'issue', 'workload', '--dir', 'pki', '--spiffe-id', `spiffe://cluster/ns/prod/sa/${'x'.repeat(70)}`);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /`--name` is required \(the SPIFFE ID has no usable last path segment\)/);
  r = pdp('ca', '--help');
  assert.equal(r.status, 0);
  assert.match(r.stdout, /usage: pdp ca init/);

  r = pdp('token', 'create', '--identity', 'team:ops', '--tokens', 'tokens.db', '--ttl', '15m');
  assert.equal(r.status, 0, r.stderr);
  const tok = r.stdout.trim();
  assert.match(tok, /^pdp_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
  assert.ok(!r.stderr.includes(tok.slice(17)));
  r = pdp('token', 'create', '--identity', 'team:ops', '--tokens', 'tokens.db', '--ttl', '2h');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /maximum of `1h`/);
  r = pdp('token', 'list', '--tokens', 'tokens.db', '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).tokens.length, 1);
  assert.ok(!r.stdout.includes(tok.slice(17)));
});
