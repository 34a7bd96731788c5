// Zero trust end to end, a mutual-TLS-only server (no tokens): a client certificate is required by
// the handshake itself; the server certificate is rotated on disk while the server runs (no restart,
// requests keep succeeding, a bad pair is refused and the old one kept); curl as a real client; and
// `pdp serve` refuses to listen beyond loopback without TLS and caller authentication.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import {
  ID, auditRows, call, makePki, pdp, pdpOk, peerCertificate, refused, startServe, tempDir, waitFor, writePolicies,
  type ClientIdentity, type Pki, type Serve,
} from './support/zero-trust';

const tmp = tempDir('pdp-zt-rotation-');
const root = tmp.dir;
let pki: Pki;
let server: Serve;
let url: string;
const auditPath = path.join(root, 'audit.db');
const tlsDir = path.join(root, 'tls');

const as = (name: string): ClientIdentity => ({ ca: pki.caCert, cert: pki.files[name]!.cert, key: pki.files[name]!.key });
const register = { identity: ID.payment, action: 'write', resource: 'service:payment', namespace: 'prod' };

/** Puts a file in place the way config management does: write next to it, then rename over it. */
function replaceFile(from: string, to: string): void {
  const aside = `${to}.incoming`;
  fs.copyFileSync(from, aside);
  fs.renameSync(aside, to);
}

before(async () => {
  pki = await makePki(root, [ID.registry]);
  writePolicies(root);
  fs.mkdirSync(tlsDir);
  replaceFile(pki.files.pdp!.cert, path.join(tlsDir, 'server.crt'));
  replaceFile(pki.files.pdp!.key, path.join(tlsDir, 'server.key'));
  replaceFile(pki.caCert, path.join(tlsDir, 'bundle.crt'));
  server = await startServe([
    '--policies', 'policies', '--audit', auditPath, '--no-watch',
    '--tls-cert', 'tls/server.crt', '--tls-key', 'tls/server.key', '--client-ca', 'tls/bundle.crt',
    // The rotation tests poll with certificates the server does not trust yet (or any more); each
    // refusal counts towards the lockout, which is not what these tests are about.
    '--max-failures', '1000',
  ], root);
  url = server.url;
});

after(async () => {
  try {
    await server?.stop();
  } finally {
    tmp.remove();
  }
});

function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', '--cacert', pki.caCert, '-H', 'content-type: application/json', ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

test('mutual TLS without tokens: probes without a client certificate are answered and leave no row; any other request without one is 401 and an AUTHN_FAILURE (node and curl); curl --cert gets a 200 JSON decision', async () => {
  // A kubelet's or load balancer's HTTPS probe presents no certificate. Refused at the handshake,
  // --client-ca alone could never become ready, and every probe counted towards the lockout of the
  // probing node's address, locking out the callers behind it too.
  const rowsBeforeProbes = auditRows(auditPath).length;
  for (let i = 0; i < 8; i++) {
    const probe = await curl([`${url}/v1/${i % 2 ? 'health' : 'ready'}`]);
    assert.equal(probe.code, 0, probe.stderr);
    assert.deepEqual(JSON.parse(probe.stdout), i % 2 ? { status: 'ok' } : { ready: true });
  }
  assert.equal(auditRows(auditPath).length, rowsBeforeProbes, 'probes cost the audit store nothing');

  const rowsBefore = auditRows(auditPath).length;
  const viaNode = await call(`${url}/v1/authorize`, { ca: pki.caCert, body: register });
  assert.equal(viaNode.status, 401, viaNode.text);
  assert.equal(viaNode.json.error.code, 'unauthenticated');
  assert.match(viaNode.json.error.message, /a client certificate is required/);
  const none = await curl(['-d', JSON.stringify(register), `${url}/v1/authorize`]);
  assert.equal(none.code, 0, none.stderr);
  assert.equal(JSON.parse(none.stdout).error.code, 'unauthenticated', none.stdout);
  // Each refusal is evidence: one AUTHN_FAILURE row, no decision.
  assert.ok(await waitFor(() => auditRows(auditPath).length === rowsBefore + 2, 5_000, 20), `two rows: ${auditRows(auditPath).length - rowsBefore}`);
  for (const row of auditRows(auditPath).slice(rowsBefore)) {
    assert.equal(row.event_type, 'AUTHN_FAILURE');
    assert.equal(row.identity, null, 'no certificate, no claimed identity');
    assert.equal(row.source_ip, '127.0.0.1');
    assert.equal(JSON.parse(row.details!).kind, 'certificate-missing');
    assert.match(row.reason!, /a client certificate is required/);
  }

  const ok = await curl(['--cert', pki.files.registry!.cert, '--key', pki.files.registry!.key, '-d', JSON.stringify(register), `${url}/v1/authorize`]);
  assert.equal(ok.code, 0, ok.stderr);
  const decision = JSON.parse(ok.stdout);
  assert.equal(decision.allow, true);
  assert.ok(auditRows(auditPath, 'decision_id = ?', decision.decision_id).length === 1, 'audited');

  // A subject token on a server without --tokens cannot be verified here: a request this server cannot
  // serve (400 naming the field), not a bad credential (422), and no AUTHN_FAILURE row.
  const rowsBeforeToken = auditRows(auditPath).length;
  const withToken = await curl(['--cert', pki.files.registry!.cert, '--key', pki.files.registry!.key, '-d', JSON.stringify({ ...register, credentials: { token: `pdp_AAAAAAAAAAAA_${'C'.repeat(43)}` } }), `${url}/v1/authorize`]);
  assert.equal(withToken.code, 0, withToken.stderr);
  const error = JSON.parse(withToken.stdout).error;
  assert.equal(error.code, 'invalid_request', withToken.stdout);
  assert.equal(error.field, 'credentials.token');
  assert.match(error.message, /bearer tokens are not enabled on this server/);
  assert.equal(auditRows(auditPath).length, rowsBeforeToken);
});

test('rotation: new server certificate files are picked up without a restart, requests keep succeeding, a mismatched pair is refused', async () => {
  const pid = server.child.pid;
  const first = await peerCertificate(server.port, as('registry'));
  assert.equal(first.fingerprint256, new (await import('node:crypto')).X509Certificate(fs.readFileSync(pki.files.pdp!.cert)).fingerprint256);

  // Requests keep flowing, on fresh connections, while the files change underneath.
  let running = true;
  const statuses: number[] = [];
  const failures: string[] = [];
  const traffic = (async () => {
    while (running) {
      try {
        statuses.push((await call(`${url}/v1/authorize`, { ...as('registry'), body: register })).status);
      } catch (e) {
        failures.push(String(e));
      }
    }
  })();
  try {
    await pdpOk(['ca', 'issue', 'server', '--dir', 'ca', '--name', 'next', '--out', 'staging', '--ip', '127.0.0.1', '--dns', 'localhost'], root);
    replaceFile(path.join(root, 'staging', 'next.key'), path.join(tlsDir, 'server.key'));
    replaceFile(path.join(root, 'staging', 'next.crt'), path.join(tlsDir, 'server.crt'));
    const nextFp = new (await import('node:crypto')).X509Certificate(fs.readFileSync(path.join(root, 'staging', 'next.crt'))).fingerprint256;
    let seen = first;
    assert.ok(await waitFor(async () => {
      seen = await peerCertificate(server.port, as('registry'));
      return seen.fingerprint256 === nextFp;
    }, 10_000, 200), 'a new connection sees the new certificate within seconds');
    assert.notEqual(seen.serialNumber, first.serialNumber);
    // The rotation is an operator event with a line of its own, naming the certificate now served.
    assert.ok(await waitFor(() => new RegExp(`TLS files reloaded from .*server\\.crt.*serving certificate serial ${seen.serialNumber}, valid until \\d{4}-`, 'i').test(server.stderr()), 5_000, 100), server.stderr().slice(-2000));

    // A certificate that does not match the key on disk: refused, the last good pair keeps serving.
    await pdpOk(['ca', 'issue', 'server', '--dir', 'ca', '--name', 'third', '--out', 'staging', '--ip', '127.0.0.1', '--dns', 'localhost'], root);
    replaceFile(path.join(root, 'staging', 'third.crt'), path.join(tlsDir, 'server.crt'));
    assert.ok(await waitFor(() => /certificate reload failed, keeping the previous ones \(.*server\.crt.*server\.key/.test(server.stdout() + server.stderr()), 10_000, 200), 'the failed reload is reported, naming the files');
    assert.equal((await peerCertificate(server.port, as('registry'))).fingerprint256, nextFp, 'still the last good certificate');
    // SIGHUP re-reads the files too; the same bad pair must not take the server down.
    server.child.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(server.child.exitCode, null, 'SIGHUP with a mismatched pair does not crash the server');
    assert.equal((await peerCertificate(server.port, as('registry'))).fingerprint256, nextFp);
    // ... until the matching key arrives.
    replaceFile(path.join(root, 'staging', 'third.key'), path.join(tlsDir, 'server.key'));
    const thirdFp = new (await import('node:crypto')).X509Certificate(fs.readFileSync(path.join(root, 'staging', 'third.crt'))).fingerprint256;
    assert.ok(await waitFor(async () => (await peerCertificate(server.port, as('registry'))).fingerprint256 === thirdFp, 10_000, 200), 'the completed pair is picked up');
  } finally {
    running = false;
    await traffic;
  }
  assert.deepEqual(failures, [], 'no request failed during the rotations');
  assert.ok(statuses.length >= 3, `traffic flowed during the rotation (${statuses.length} requests)`);
  assert.ok(statuses.every((s) => s === 200), statuses.join(','));
  assert.equal(server.child.pid, pid);
  assert.equal(server.child.exitCode, null, 'the same process, never restarted');
  assert.equal((await call(`${url}/v1/health`, as('registry'))).status, 200);
});

test('CA rotation: a new root added to the --client-ca bundle is trusted without a restart; a root removed is refused, on open connections too', async () => {
  await pdpOk(['ca', 'init', '--trust-domain', 'cluster', '--dir', 'ca-2'], root);
  await pdpOk(['ca', 'issue', 'workload', '--dir', 'ca-2', '--spiffe-id', ID.registry, '--name', 'registry-2'], root);
  const next: ClientIdentity = { ca: pki.caCert, cert: path.join(root, 'ca-2', 'registry-2.crt'), key: path.join(root, 'ca-2', 'registry-2.key') };
  const rowsBefore = auditRows(auditPath).length;
  await refused(`${url}/v1/authorize`, { ...next, body: register });
  // mTLS without tokens too: the refused certificate is evidence, under the SPIFFE ID it claims.
  assert.ok(await waitFor(() => auditRows(auditPath).length > rowsBefore, 5_000, 20), 'the refusal is audited');
  const refusal = auditRows(auditPath)[rowsBefore]!;
  assert.equal(refusal.event_type, 'AUTHN_FAILURE');
  assert.equal(refusal.identity, ID.registry);
  assert.equal(JSON.parse(refusal.details!).kind, 'certificate-untrusted');
  assert.equal(JSON.parse(refusal.details!).identity_verified, false);

  // Both roots while the workloads are reissued ...
  const both = path.join(root, 'both.crt');
  fs.writeFileSync(both, fs.readFileSync(pki.caCert, 'utf8') + fs.readFileSync(path.join(root, 'ca-2', 'ca.crt'), 'utf8'));
  replaceFile(both, path.join(tlsDir, 'bundle.crt'));
  assert.ok(await waitFor(async () => (await call(`${url}/v1/authorize`, { ...next, body: register }).catch(() => undefined))?.status === 200, 10_000, 200), 'the new root is trusted');
  assert.equal((await call(`${url}/v1/authorize`, { ...as('registry'), body: register })).status, 200, 'the old root still is');

  // ... then the old root is dropped: a connection opened under it is refused on its next request.
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    assert.equal((await call(`${url}/v1/authorize`, { ...as('registry'), body: register, agent })).status, 200);
    replaceFile(path.join(root, 'ca-2', 'ca.crt'), path.join(tlsDir, 'bundle.crt'));
    assert.ok(await waitFor(async () => (await call(`${url}/v1/authorize`, { ...as('registry'), body: register, agent }).catch(() => undefined))?.status === 401, 10_000, 200),
      'the old root is no longer trusted, even on a connection it was trusted for');
    await refused(`${url}/v1/authorize`, { ...as('registry'), body: register });
    assert.equal((await call(`${url}/v1/authorize`, { ...next, body: register })).status, 200);
  } finally {
    agent.destroy();
  }
  assert.equal(server.child.exitCode, null, 'no restart');
});

test('pdp serve refuses a non-loopback address without TLS, or with TLS but no caller authentication (exit 2)', async () => {
  const plain = await pdp(['serve', '--policies', 'policies', '--audit', 'refused.db', '--listen', '0.0.0.0:0'], root);
  assert.equal(plain.code, 2, plain.stderr);
  assert.match(plain.stderr, /loopback/);
  assert.doesNotMatch(plain.stdout, /listening/);

  const tlsOnly = await pdp(['serve', '--policies', 'policies', '--audit', 'refused.db', '--listen', '0.0.0.0:0', '--tls-cert', 'tls/server.crt', '--tls-key', 'tls/server.key'], root);
  assert.equal(tlsOnly.code, 2, tlsOnly.stderr);
  assert.match(tlsOnly.stderr, /caller authentication/);
  assert.match(tlsOnly.stderr, /--client-ca/);
  assert.doesNotMatch(tlsOnly.stdout, /listening/);
  assert.equal(fs.existsSync(path.join(root, 'refused.db')), false, 'nothing was opened');

  for (const bad of [['--rate-limit', '-1'], ['--rate-limit', 'many'], ['--max-failures', '0'], ['--lockout', '10ms'], ['--lockout', 'soon']]) {
    const r = await pdp(['serve', '--policies', 'policies', '--audit', 'refused.db', ...bad], root);
    assert.equal(r.code, 2, `${bad.join(' ')}: ${r.stderr}`);
  }
});
