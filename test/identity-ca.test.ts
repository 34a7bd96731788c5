import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { CaError, initCa, issueCertificate, loadCa } from '../src/identity/ca';
import { scratchDir } from './support/cli';

/** A fresh directory, removed when the test (or hook) that made it ends. */
function tmpdir(): string {
  return scratchDir('pdp-ca-').dir;
}

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
const NOW = new Date();

test('initCa writes a 0600 PKCS#8 ECDSA P-256 key and a self-signed CA certificate', async () => {
  const dir = path.join(tmpdir(), 'ca');
  const r = await initCa({ dir, trustDomain: 'cluster', now: NOW });
  assert.equal(r.keyPath, path.join(dir, 'ca.key'));
  assert.equal(fs.statSync(r.keyPath).mode & 0o777, 0o600);
  const keyPem = fs.readFileSync(r.keyPath, 'utf8');
  assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----/);
  const key = createPrivateKey(keyPem);
  assert.equal(key.asymmetricKeyType, 'ec');
  assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');

  const cert = new X509Certificate(fs.readFileSync(r.certPath));
  assert.equal(cert.ca, true);
  assert.equal(cert.subject, 'CN=pdp root CA cluster');
  assert.equal(cert.issuer, cert.subject);
  assert.ok(cert.verify(cert.publicKey), 'self-signed');
  assert.equal(cert.subjectAltName, 'URI:spiffe://cluster');
  assert.ok(Date.parse(cert.validFrom) <= NOW.getTime() - 59_000, 'notBefore tolerates skew');
  const days = (Date.parse(cert.validTo) - NOW.getTime()) / 86_400_000;
  assert.ok(days > 364.9 && days <= 365, `validity ${days}`);
  assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
});

test('initCa refuses to overwrite an existing CA unless forced', async () => {
  const dir = tmpdir();
  const first = await initCa({ dir, trustDomain: 'cluster', now: NOW });
  const before = fs.readFileSync(first.keyPath, 'utf8');
  await assert.rejects(initCa({ dir, trustDomain: 'cluster', now: NOW }), (e: unknown) => {
    assert.ok(e instanceof CaError);
    assert.equal(e.code, 'exists');
    assert.match(e.message, /ca\.key/);
    assert.match(e.message, /--force/);
    assert.doesNotMatch(e.message, /PRIVATE KEY/);
    return true;
  });
  assert.equal(fs.readFileSync(first.keyPath, 'utf8'), before, 'key untouched');
  // only one file present still refuses
  fs.unlinkSync(first.certPath);
  await assert.rejects(initCa({ dir, trustDomain: 'cluster', now: NOW }), /`.*ca\.key` already exists/);
  const forced = await initCa({ dir, trustDomain: 'cluster', now: NOW, force: true });
  assert.notEqual(fs.readFileSync(forced.keyPath, 'utf8'), before);
  assert.equal(fs.statSync(forced.keyPath).mode & 0o777, 0o600);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['ca.crt', 'ca.key'], 'no temporary files left');
});

test('initCa validates the trust domain', async () => {
  for (const bad of ['Cluster', 'a b', 'cluster:8080', '', 'spiffe://cluster', 'x/y']) {
    await assert.rejects(initCa({ dir: tmpdir(), trustDomain: bad, now: NOW }), (e: unknown) => e instanceof CaError && e.code === 'invalid', bad);
  }
  await initCa({ dir: tmpdir(), trustDomain: 'prod.example-1_x', now: NOW });
});

test('issued workload certificate carries the SPIFFE URI SAN and clientAuth, checked with Node and openssl', async (t) => {
  const dir = tmpdir();
  const ca = await initCa({ dir, trustDomain: 'cluster', now: NOW });
  const out = path.join(dir, 'out');
  const r = await issueCertificate({ caDir: dir, kind: 'workload', name: 'registry', outDir: out, spiffeId: 'spiffe://cluster/ns/prod/sa/registry', now: NOW });
  assert.equal(r.certPath, path.join(out, 'registry.crt'));
  assert.equal(fs.statSync(r.keyPath).mode & 0o777, 0o600);
  const leaf = new X509Certificate(fs.readFileSync(r.certPath));
  const root = new X509Certificate(fs.readFileSync(ca.certPath));
  assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster/ns/prod/sa/registry');
  assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.2']); // Node: extended key usage
  assert.equal(leaf.ca, false);
  assert.ok(leaf.checkIssued(root));
  assert.ok(leaf.verify(root.publicKey));
  assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.equal(leaf.serialNumber.length, 32, '16-byte serial');
  assert.equal(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom), 24 * 3_600_000 + 60_000, '24h plus the skew minute');
  // key matches certificate
  const key = createPrivateKey(fs.readFileSync(r.keyPath));
  assert.ok(leaf.checkPrivateKey(key));

  if (!hasOpenssl) {
    t.diagnostic('openssl not installed; skipped the independent check');
    return;
  }
  const verified = execFileSync('openssl', ['verify', '-CAfile', ca.certPath, '-purpose', 'sslclient', r.certPath], { encoding: 'utf8' });
  assert.match(verified, /: OK/);
  const text = execFileSync('openssl', ['x509', '-noout', '-text', '-in', r.certPath], { encoding: 'utf8' });
  assert.match(text, /URI:spiffe:\/\/cluster\/ns\/prod\/sa\/registry/);
  assert.match(text, /TLS Web Client Authentication/);
  assert.match(text, /CA:FALSE/);
  assert.match(text, /Digital Signature/);
  assert.match(text, /ecdsa-with-SHA256/);
  assert.match(text, /NIST CURVE: P-256/);
  const caText = execFileSync('openssl', ['x509', '-noout', '-text', '-in', ca.certPath], { encoding: 'utf8' });
  assert.match(caText, /Basic Constraints: critical\s+CA:TRUE/);
  assert.match(caText, /Certificate Sign, CRL Sign/);
  // a server certificate is not fit for client use, per openssl too
  const srv = await issueCertificate({ caDir: dir, kind: 'server', name: 'pdp', dns: ['localhost'], ips: ['127.0.0.1'], now: NOW });
  const srvText = execFileSync('openssl', ['x509', '-noout', '-text', '-in', srv.certPath], { encoding: 'utf8' });
  assert.match(srvText, /DNS:localhost, IP Address:127\.0\.0\.1/);
  assert.match(srvText, /TLS Web Server Authentication/);
  const asClient = spawnSync('openssl', ['verify', '-CAfile', ca.certPath, '-purpose', 'sslclient', srv.certPath], { encoding: 'utf8' });
  assert.notEqual(asClient.status, 0);
});

test('issueCertificate rejects bad input and foreign trust domains', async () => {
  const dir = tmpdir();
  await initCa({ dir, trustDomain: 'cluster', now: NOW });
  const base = { caDir: dir, now: NOW };
  const invalid = (e: unknown) => e instanceof CaError && e.code === 'invalid';
  await assert.rejects(issueCertificate({ ...base, kind: 'workload', name: 'x', spiffeId: 'spiffe://other/ns/prod/sa/x' }), /outside this CA's trust domain `cluster`/);
  await assert.rejects(issueCertificate({ ...base, kind: 'workload', name: 'x', spiffeId: 'spiffe://cluster/ns/*/sa/x' }), invalid);
  await assert.rejects(issueCertificate({ ...base, kind: 'workload', name: 'x', spiffeId: 'https://cluster/x' }), invalid);
  await assert.rejects(issueCertificate({ ...base, kind: 'workload', name: 'x', spiffeId: 'spiffe://cluster' }), /needs a path/);
  await assert.rejects(issueCertificate({ ...base, kind: 'user', name: 'alice' }), /needs a SPIFFE ID/);
  await assert.rejects(issueCertificate({ ...base, kind: 'server', name: 'pdp' }), /at least one DNS name or IP/);
  await assert.rejects(issueCertificate({ ...base, kind: 'server', name: 'pdp', ips: ['300.1.1.1'] }), /invalid IP address `300\.1\.1\.1`/);
  await assert.rejects(issueCertificate({ ...base, kind: 'server', name: 'pdp', dns: ['bad host'] }), /invalid DNS name/);
  await assert.rejects(issueCertificate({ ...base, kind: 'workload', name: '../escape', spiffeId: 'spiffe://cluster/x' }), /invalid name/);
  await assert.rejects(issueCertificate({ ...base, kind: 'workload', name: 'ca', spiffeId: 'spiffe://cluster/x' }), /CA's own files/);
  await assert.rejects(issueCertificate({ ...base, kind: 'workload', name: 'w', spiffeId: 'spiffe://cluster/x', validityMs: 31 * 86_400_000 }), /longer than the maximum for workload certificates \(30d\)/);
  await assert.rejects(issueCertificate({ ...base, kind: 'server', name: 's', dns: ['a'], validityMs: 366 * 86_400_000 }), /outlive its CA/);
  // the same name twice is refused unless forced
  await issueCertificate({ ...base, kind: 'user', name: 'alice', spiffeId: 'spiffe://cluster/user/alice' });
  await assert.rejects(issueCertificate({ ...base, kind: 'user', name: 'alice', spiffeId: 'spiffe://cluster/user/alice' }), (e: unknown) => e instanceof CaError && e.code === 'exists');
  await issueCertificate({ ...base, kind: 'user', name: 'alice', spiffeId: 'spiffe://cluster/user/alice', force: true });
});

test('issueCertificate refuses without a usable CA and warns about a loose key', async () => {
  const dir = tmpdir();
  await assert.rejects(issueCertificate({ caDir: dir, kind: 'workload', name: 'w', spiffeId: 'spiffe://cluster/x', now: NOW }), (e: unknown) => e instanceof CaError && e.code === 'ca' && /pdp ca init/.test(e.message));
  await initCa({ dir, trustDomain: 'cluster', now: NOW, validityDays: 1 });
  await assert.rejects(loadCa(dir, new Date(NOW.getTime() + 2 * 86_400_000)), /expired/);
  fs.chmodSync(path.join(dir, 'ca.key'), 0o644);
  const r = await issueCertificate({ caDir: dir, kind: 'workload', name: 'w', spiffeId: 'spiffe://cluster/x', validityMs: 3_600_000, now: NOW });
  assert.equal(r.warnings.length, 1);
  assert.match(r.warnings[0]!, /readable by other users/);
  // a key that does not belong to the certificate
  const other = tmpdir();
  await initCa({ dir: other, trustDomain: 'cluster', now: NOW });
  fs.copyFileSync(path.join(other, 'ca.key'), path.join(dir, 'ca.key'));
  await assert.rejects(loadCa(dir, NOW), /does not belong to/);
});

test('validFrom/validTo make an expired certificate for tests', async () => {
  const dir = tmpdir();
  await initCa({ dir, trustDomain: 'cluster', now: NOW });
  const r = await issueCertificate({
    caDir: dir, kind: 'workload', name: 'old', spiffeId: 'spiffe://cluster/old', now: NOW,
    validFrom: new Date(NOW.getTime() - 3 * 86_400_000), validTo: new Date(NOW.getTime() - 86_400_000),
  });
  const cert = new X509Certificate(fs.readFileSync(r.certPath));
  assert.ok(Date.parse(cert.validTo) < NOW.getTime());
});
