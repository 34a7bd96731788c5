import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import * as https from 'node:https';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import * as x509 from '@peculiar/x509';
import { initCa, issueCertificate } from '../src/identity/ca';
import {
  loadTrustBundle,
  parseSubjectAltName,
  peerCertificateAllowsClientAuth,
  spiffeIdFromPeerCertificate,
  verifyClientCertificate,
  verifyPeerCertificate,
  TrustBundleError,
  type TrustBundle,
} from '../src/identity/certificates';

const NOW = new Date();
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const crypto = webcrypto;

let dir: string;
let bundle: TrustBundle;
let caPem: string;
const files: Record<string, { cert: string; key: string }> = {};

function read(kind: string) {
  return { cert: fs.readFileSync(files[kind]!.cert, 'utf8'), key: fs.readFileSync(files[kind]!.key, 'utf8') };
}

/** Signs an arbitrary certificate with a given issuer key: for shapes the CA deliberately never issues. */
async function custom(options: {
  issuerKeyPem?: string;
  issuerName?: string;
  subject: string;
  sans?: x509.JsonGeneralName[];
  eku?: string[];
  ca?: boolean;
  pathLength?: number;
  notBefore?: Date;
  notAfter?: Date;
}): Promise<{ pem: string; keyPem: string }> {
  const keys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const signingKey = options.issuerKeyPem
    ? await crypto.subtle.importKey('pkcs8', createPrivateKey(options.issuerKeyPem).export({ type: 'pkcs8', format: 'der' }), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign'])
    : keys.privateKey;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(options.ca ?? false, options.pathLength, true),
    new x509.KeyUsagesExtension(options.ca ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign : x509.KeyUsageFlags.digitalSignature, true),
  ];
  if (options.eku) extensions.push(new x509.ExtendedKeyUsageExtension(options.eku));
  if (options.sans?.length) extensions.push(new x509.SubjectAlternativeNameExtension(options.sans));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '01' + randomBytes(8).toString('hex'),
    subject: options.subject,
    issuer: options.issuerName ?? options.subject,
    notBefore: options.notBefore ?? new Date(NOW.getTime() - 60_000),
    notAfter: options.notAfter ?? new Date(NOW.getTime() + 3_600_000),
    publicKey: keys.publicKey,
    signingKey,
    signingAlgorithm: ALG,
    extensions,
  }, crypto);
  const keyPem = createPrivateKey({ key: Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey)), format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
  return { pem: cert.toString('pem') + '\n', keyPem };
}

after(() => fs.rmSync(dir, { recursive: true, force: true }));

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pdp-verify-'));
  const ca = await initCa({ dir: path.join(dir, 'ca'), trustDomain: 'cluster', now: NOW });
  await initCa({ dir: path.join(dir, 'other'), trustDomain: 'cluster', now: NOW });
  caPem = fs.readFileSync(ca.certPath, 'utf8');
  bundle = loadTrustBundle(caPem);
  const issue = async (key: string, o: Parameters<typeof issueCertificate>[0]) => {
    const r = await issueCertificate(o);
    files[key] = { cert: r.certPath, key: r.keyPath };
  };
  const caDir = path.join(dir, 'ca');
  await issue('workload', { caDir, kind: 'workload', name: 'registry', spiffeId: 'spiffe://cluster/ns/prod/sa/registry', now: NOW });
  await issue('user', { caDir, kind: 'user', name: 'alice', spiffeId: 'spiffe://cluster/user/alice', now: NOW });
  await issue('server', { caDir, kind: 'server', name: 'pdp', dns: ['localhost'], ips: ['127.0.0.1'], now: NOW });
  await issue('serverWithId', { caDir, kind: 'server', name: 'pdp-id', dns: ['localhost'], spiffeId: 'spiffe://cluster/pdp', now: NOW });
  await issue('expired', {
    caDir, kind: 'workload', name: 'old', spiffeId: 'spiffe://cluster/ns/prod/sa/old', now: NOW,
    validFrom: new Date(NOW.getTime() - 2 * 86_400_000), validTo: new Date(NOW.getTime() - 86_400_000),
  });
  await issue('foreign', { caDir: path.join(dir, 'other'), kind: 'workload', name: 'mallory', spiffeId: 'spiffe://cluster/ns/prod/sa/registry', now: NOW });
});

test('accepts a valid workload certificate and returns its SPIFFE ID', () => {
  const r = verifyClientCertificate(read('workload').cert, bundle, NOW);
  assert.equal(r.ok, true);
  assert.ok(r.ok);
  assert.equal(r.spiffeId, 'spiffe://cluster/ns/prod/sa/registry');
  assert.equal(r.trustDomain, 'cluster');
  assert.ok(r.notAfter.getTime() > NOW.getTime());
  const u = verifyClientCertificate(read('user').cert, bundle, NOW);
  assert.ok(u.ok && u.spiffeId === 'spiffe://cluster/user/alice');
});

test('rejects a certificate from another CA', () => {
  const r = verifyClientCertificate(read('foreign').cert, bundle, NOW);
  assert.deepEqual(r, { ok: false, code: 'untrusted', reason: 'certificate is not signed by a trusted CA' });
});

test('rejects an expired certificate, and one checked before it is valid', () => {
  const r = verifyClientCertificate(read('expired').cert, bundle, NOW);
  assert.equal(r.ok, false);
  assert.ok(!r.ok);
  assert.equal(r.code, 'expired');
  assert.match(r.reason, /^certificate expired at \d{4}-\d\d-\d\dT/);
  const early = verifyClientCertificate(read('workload').cert, bundle, new Date(NOW.getTime() - 3_600_000));
  assert.ok(!early.ok && early.code === 'not-yet-valid' && /is not valid until/.test(early.reason));
  // the same valid cert a day and more later has expired
  const late = verifyClientCertificate(read('workload').cert, bundle, new Date(NOW.getTime() + 25 * 3_600_000));
  assert.ok(!late.ok && late.code === 'expired');
});

test('rejects a server-only certificate (serverAuth EKU), even with a SPIFFE ID', () => {
  for (const kind of ['server', 'serverWithId']) {
    const r = verifyClientCertificate(read(kind).cert, bundle, NOW);
    assert.ok(!r.ok);
    assert.equal(r.code, 'not-client');
    assert.match(r.reason, /^certificate is not valid for client authentication/);
  }
});

test('rejects a certificate without a SPIFFE ID, with several URI SANs, or with a foreign trust domain', async () => {
  const keyPem = fs.readFileSync(path.join(dir, 'ca', 'ca.key'), 'utf8');
  const issuerName = 'CN=pdp root CA cluster';
  const noId = await custom({ issuerKeyPem: keyPem, issuerName, subject: 'CN=no-id', eku: ['1.3.6.1.5.5.7.3.2'], sans: [{ type: 'dns', value: 'x.example' }] });
  const r1 = verifyClientCertificate(noId.pem, bundle, NOW);
  assert.ok(!r1.ok);
  assert.equal(r1.code, 'no-spiffe-id');
  assert.match(r1.reason, /^certificate has no SPIFFE ID/);
  const noSan = await custom({ issuerKeyPem: keyPem, issuerName, subject: 'CN=no-san', eku: ['1.3.6.1.5.5.7.3.2'] });
  assert.ok(!verifyClientCertificate(noSan.pem, bundle, NOW).ok);

  const two = await custom({ issuerKeyPem: keyPem, issuerName, subject: 'CN=two', sans: [{ type: 'url', value: 'spiffe://cluster/a' }, { type: 'url', value: 'spiffe://cluster/b' }] });
  const r2 = verifyClientCertificate(two.pem, bundle, NOW);
  assert.ok(!r2.ok && r2.code === 'bad-spiffe-id' && /more than one URI SAN/.test(r2.reason));

  const foreignTd = await custom({ issuerKeyPem: keyPem, issuerName, subject: 'CN=td', sans: [{ type: 'url', value: 'spiffe://evil/ns/prod/sa/registry' }] });
  const r3 = verifyClientCertificate(foreignTd.pem, bundle, NOW);
  assert.ok(!r3.ok && r3.code === 'trust-domain');

  const malformed = await custom({ issuerKeyPem: keyPem, issuerName, subject: 'CN=bad', sans: [{ type: 'url', value: 'spiffe://cluster/a//b' }] });
  const r4 = verifyClientCertificate(malformed.pem, bundle, NOW);
  assert.ok(!r4.ok && r4.code === 'bad-spiffe-id');

  // no EKU at all is acceptable for a client (RFC 5280: unrestricted)
  const noEku = await custom({ issuerKeyPem: keyPem, issuerName, subject: 'CN=no-eku', sans: [{ type: 'url', value: 'spiffe://cluster/ok' }] });
  const r5 = verifyClientCertificate(noEku.pem, bundle, NOW);
  assert.ok(r5.ok && r5.spiffeId === 'spiffe://cluster/ok');

  // a CA certificate is not a client certificate
  const r6 = verifyClientCertificate(caPem, bundle, NOW);
  assert.ok(!r6.ok && r6.code === 'not-client');

  // anyExtendedKeyUsage alone is not clientAuth: OpenSSL refuses it at the mTLS handshake
  // (INVALID_PURPOSE), so `credentials.certificate` refuses it too
  const anyEku = await custom({ issuerKeyPem: keyPem, issuerName, subject: 'CN=any-eku', eku: ['2.5.29.37.0'], sans: [{ type: 'url', value: 'spiffe://cluster/ok' }] });
  const r7 = verifyClientCertificate(anyEku.pem, bundle, NOW);
  assert.ok(!r7.ok && r7.code === 'not-client' && /lacks clientAuth/.test(r7.reason), JSON.stringify(r7));
});

test('a refusal quotes the presenter\'s URI SAN and names with control, bidi and zero-width characters escaped (they are stored in audit rows)', async () => {
  const keyPem = fs.readFileSync(path.join(dir, 'ca', 'ca.key'), 'utf8');
  const issuerName = 'CN=pdp root CA cluster';
  // A URI SAN is an IA5String: ASCII only, so the threat is ASCII controls (escape sequences, newlines).
  const hostile = 'spiffe://cluster/ns/a/sa/\u001b[2J\u001b[1;31mALL CLEAR\u001b[0m\nforged line\u007f';
  const cert = await custom({ issuerKeyPem: keyPem, issuerName, subject: 'CN=esc', eku: ['1.3.6.1.5.5.7.3.2'], sans: [{ type: 'url', value: hostile }] });
  const r = verifyClientCertificate(cert.pem, bundle, NOW);
  assert.ok(!r.ok && r.code === 'bad-spiffe-id', JSON.stringify(r));
  assert.doesNotMatch(r.reason, /[\u0000-\u001f\u007f-\u009f\u202a-\u202e]/, 'the reason holds a raw control character');
  assert.match(r.reason, /certificate's URI SAN `spiffe:\/\/cluster\/ns\/a\/sa\/\\u\{1b\}\[2J.*\\u\{a\}forged line\\u\{7f\}` is not a valid SPIFFE ID/);
});

test('rejects garbage, empty and oversized input without throwing', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /^certificate is empty$/],
    ['hello', /not a PEM certificate/],
    ['-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', /cannot be parsed/],
    ['-----BEGIN CERTIFICATE-----\n' + 'A'.repeat(70_000) + '\n-----END CERTIFICATE-----\n', /larger than/],
  ];
  for (const [pem, reason] of cases) {
    const r = verifyClientCertificate(pem, bundle, NOW);
    assert.ok(!r.ok && r.code === 'malformed', pem.slice(0, 20));
    assert.match(r.reason, reason);
  }
  assert.ok(!verifyClientCertificate(undefined as unknown as string, bundle, NOW).ok);
  assert.ok(!verifyClientCertificate(read('workload').key, bundle, NOW).ok, 'a private key is not a certificate');
});

test('verifies a chain through an intermediate and honours path length', async () => {
  const root = await custom({ subject: 'CN=ext root', ca: true, pathLength: 1, sans: [{ type: 'url', value: 'spiffe://ext' }], notAfter: new Date(NOW.getTime() + 86_400_000) });
  const inter = await custom({ issuerKeyPem: root.keyPem, issuerName: 'CN=ext root', subject: 'CN=ext intermediate', ca: true, pathLength: 0 });
  const leaf = await custom({ issuerKeyPem: inter.keyPem, issuerName: 'CN=ext intermediate', subject: 'CN=leaf', eku: ['1.3.6.1.5.5.7.3.2'], sans: [{ type: 'url', value: 'spiffe://ext/svc' }] });
  const both = loadTrustBundle(caPem + root.pem);
  assert.equal(both.cas.length, 2);
  const ok = verifyClientCertificate(leaf.pem + inter.pem, both, NOW);
  assert.ok(ok.ok && ok.spiffeId === 'spiffe://ext/svc');
  // without the intermediate the chain does not reach a trusted CA
  const r = verifyClientCertificate(leaf.pem, both, NOW);
  assert.ok(!r.ok && r.code === 'untrusted');
  // our own root has pathlen 0: an intermediate under it is refused
  const ourKey = fs.readFileSync(path.join(dir, 'ca', 'ca.key'), 'utf8');
  const rogue = await custom({ issuerKeyPem: ourKey, issuerName: 'CN=pdp root CA cluster', subject: 'CN=rogue', ca: true });
  const rogueLeaf = await custom({ issuerKeyPem: rogue.keyPem, issuerName: 'CN=rogue', subject: 'CN=l', sans: [{ type: 'url', value: 'spiffe://cluster/x' }] });
  const r2 = verifyClientCertificate(rogueLeaf.pem + rogue.pem, bundle, NOW);
  assert.ok(!r2.ok && r2.code === 'untrusted');
  // a non-CA certificate cannot act as an intermediate
  const fakeInter = await custom({ issuerKeyPem: root.keyPem, issuerName: 'CN=ext root', subject: 'CN=not a ca' });
  const fakeLeaf = await custom({ issuerKeyPem: fakeInter.keyPem, issuerName: 'CN=not a ca', subject: 'CN=l2', sans: [{ type: 'url', value: 'spiffe://ext/y' }] });
  assert.ok(!verifyClientCertificate(fakeLeaf.pem + fakeInter.pem, both, NOW).ok);
});

test('an intermediate bundled beside its root completes chains but never anchors: the root\'s trust domain, and every CA\'s on the way, still binds the SPIFFE ID', async () => {
  // A partner CA: a root naming spiffe://partner, its issuing intermediate (naming none), leaves under it.
  const root = await custom({ subject: 'CN=partner root', ca: true, pathLength: 1, sans: [{ type: 'url', value: 'spiffe://partner' }] });
  const inter = await custom({ issuerKeyPem: root.keyPem, issuerName: 'CN=partner root', subject: 'CN=partner issuing CA', ca: true, pathLength: 0 });
  const leafFor = (id: string) => custom({ issuerKeyPem: inter.keyPem, issuerName: 'CN=partner issuing CA', subject: 'CN=leaf', eku: ['1.3.6.1.5.5.7.3.2'], sans: [{ type: 'url', value: id }] });
  // The bundle as CA files are often shipped: our root, the partner's root and its intermediate.
  const bundleWithIntermediate = loadTrustBundle(caPem + root.pem + inter.pem);
  const impostor = await leafFor('spiffe://cluster/ns/ops/sa/evil');
  for (const chain of [impostor.pem, impostor.pem + inter.pem]) {
    const r = verifyClientCertificate(chain, bundleWithIntermediate, NOW);
    assert.ok(!r.ok && r.code === 'trust-domain', `the partner's CA cannot mint our identities: ${JSON.stringify(r)}`);
  }
  const own = await leafFor('spiffe://partner/ns/a/sa/b');
  const ok = verifyClientCertificate(own.pem, bundleWithIntermediate, NOW);
  assert.ok(ok.ok && ok.spiffeId === 'spiffe://partner/ns/a/sa/b', 'the bundled intermediate completes a chain sent without it');

  // An intermediate that names a trust domain binds the leaves under it too, whatever its root names.
  const anyRoot = await custom({ subject: 'CN=any root', ca: true, pathLength: 1 });
  const teamInter = await custom({ issuerKeyPem: anyRoot.keyPem, issuerName: 'CN=any root', subject: 'CN=team CA', ca: true, pathLength: 0, sans: [{ type: 'url', value: 'spiffe://team' }] });
  const outside = await custom({ issuerKeyPem: teamInter.keyPem, issuerName: 'CN=team CA', subject: 'CN=l', eku: ['1.3.6.1.5.5.7.3.2'], sans: [{ type: 'url', value: 'spiffe://cluster/x' }] });
  const r = verifyClientCertificate(outside.pem + teamInter.pem, loadTrustBundle(anyRoot.pem), NOW);
  assert.ok(!r.ok && r.code === 'trust-domain', JSON.stringify(r));

  // An intermediate without its root anchors nothing, so a bundle holding one is refused when loaded
  // (OpenSSL would refuse every chain through it at the handshake, too).
  assert.throws(() => loadTrustBundle(caPem + inter.pem, 'the bundle'), /certificate 2 in the bundle \(`CN=partner issuing CA`\) is an intermediate CA whose root is not in the bundle/);
});

test('loadTrustBundle refuses non-CA certificates and empty text', () => {
  assert.throws(() => loadTrustBundle('nothing here'), TrustBundleError);
  assert.throws(() => loadTrustBundle(read('workload').cert), /is not a CA certificate/);
});

test('parseSubjectAltName and the peer-certificate helpers', () => {
  assert.deepEqual(parseSubjectAltName('DNS:a.example, URI:spiffe://cluster/x, IP Address:127.0.0.1'), [
    { type: 'DNS', value: 'a.example' }, { type: 'URI', value: 'spiffe://cluster/x' }, { type: 'IP Address', value: '127.0.0.1' },
  ]);
  assert.deepEqual(parseSubjectAltName('URI:"spiffe://cluster/a,b", DNS:x'), [{ type: 'URI', value: 'spiffe://cluster/a,b' }, { type: 'DNS', value: 'x' }]);
  const fake = (san: string | undefined, eku?: string[]) => ({ subjectaltname: san, ext_key_usage: eku } as unknown as tls.PeerCertificate);
  assert.equal(spiffeIdFromPeerCertificate(fake('URI:spiffe://cluster/ns/prod/sa/x')), 'spiffe://cluster/ns/prod/sa/x');
  assert.equal(spiffeIdFromPeerCertificate(fake('DNS:x')), undefined);
  assert.equal(spiffeIdFromPeerCertificate(fake('URI:spiffe://cluster/a, URI:spiffe://cluster/b')), undefined);
  assert.equal(spiffeIdFromPeerCertificate(fake('URI:spiffe://Cluster/a')), undefined);
  assert.equal(spiffeIdFromPeerCertificate(fake(undefined)), undefined);
  assert.equal(spiffeIdFromPeerCertificate(null), undefined);
  assert.equal(spiffeIdFromPeerCertificate({} as tls.PeerCertificate), undefined);
  assert.equal(peerCertificateAllowsClientAuth(fake('', ['1.3.6.1.5.5.7.3.2'])), true);
  assert.equal(peerCertificateAllowsClientAuth(fake('', ['1.3.6.1.5.5.7.3.1'])), false);
  assert.equal(peerCertificateAllowsClientAuth(fake('', ['2.5.29.37.0'])), false, 'anyExtendedKeyUsage is not clientAuth');
  assert.equal(peerCertificateAllowsClientAuth(fake('')), true);
  assert.equal(peerCertificateAllowsClientAuth(null), false);
});

// ---------------------------------------------------------------------------------------------
// real TLS 1.3 handshakes

interface Seen { spiffeId?: string; verified?: string; clientAuth?: boolean; authorized?: boolean }

async function mtlsServer(): Promise<{ port: number; seen: Seen[]; clientErrors: Error[]; close: () => Promise<void> }> {
  const srv = read('server');
  const seen: Seen[] = [];
  const clientErrors: Error[] = [];
  const server = tls.createServer({
    cert: srv.cert, key: srv.key, ca: bundle.pems, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3',
  }, (socket) => {
    const peer = socket.getPeerCertificate(true);
    const v = verifyPeerCertificate(peer, bundle, new Date());
    const s: Seen = { spiffeId: spiffeIdFromPeerCertificate(peer), verified: v.ok ? v.spiffeId : v.reason, clientAuth: peerCertificateAllowsClientAuth(peer), authorized: socket.authorized };
    seen.push(s);
    socket.end(`hello ${s.spiffeId}\n`);
  });
  server.on('tlsClientError', (e) => clientErrors.push(e));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return { port, seen, clientErrors, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

function connect(port: number, options: tls.ConnectionOptions): Promise<{ data: string; error?: Error; protocol?: string | null }> {
  return new Promise((resolve) => {
    let data = '';
    let error: Error | undefined;
    let protocol: string | null | undefined;
    const socket = tls.connect({ host: '127.0.0.1', port, ca: caPem, ...options }, () => { protocol = socket.getProtocol(); });
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => { data += d; });
    socket.on('error', (e) => { error = e; });
    socket.on('close', () => resolve({ data, error, protocol }));
  });
}

test('mTLS over TLS 1.3: a valid workload certificate connects and the server reads its SPIFFE ID', async () => {
  const s = await mtlsServer();
  try {
    const w = read('workload');
    const r = await connect(s.port, { cert: w.cert, key: w.key });
    assert.equal(r.error, undefined);
    assert.equal(r.protocol, 'TLSv1.3');
    assert.equal(r.data, 'hello spiffe://cluster/ns/prod/sa/registry\n');
    assert.deepEqual(s.seen, [{ spiffeId: 'spiffe://cluster/ns/prod/sa/registry', verified: 'spiffe://cluster/ns/prod/sa/registry', clientAuth: true, authorized: true }]);
  } finally {
    await s.close();
  }
});

test('mTLS: a certificate from another CA fails the handshake', async () => {
  const s = await mtlsServer();
  try {
    const f = read('foreign');
    const r = await connect(s.port, { cert: f.cert, key: f.key });
    // In TLS 1.3 the client finishes its side before the server checks the client certificate, so
    // the client may see an alert or just a closed connection; either way it gets no data.
    assert.equal(r.data, '');
    assert.equal(s.seen.length, 0, 'the server never accepted the connection');
    assert.ok(s.clientErrors.length >= 1, 'the server reported a failed handshake');
    // and with no certificate at all
    const none = await connect(s.port, {});
    assert.equal(none.data, '');
    assert.equal(s.seen.length, 0);
    assert.ok(s.clientErrors.length >= 2, `server saw ${s.clientErrors.length} handshake errors`);
  } finally {
    await s.close();
  }
});

test('mTLS: a TLS 1.2-only client fails', async () => {
  const s = await mtlsServer();
  try {
    const w = read('workload');
    const r = await connect(s.port, { cert: w.cert, key: w.key, maxVersion: 'TLSv1.2' });
    assert.ok(r.error);
    assert.equal(r.data, '');
    assert.equal(s.seen.length, 0);
  } finally {
    await s.close();
  }
});

const hasCurl = spawnSync('curl', ['--version']).status === 0;

test('curl as an independent mTLS client over HTTPS', { skip: !hasCurl && 'curl not installed' }, async () => {
  const srv = read('server');
  const server = https.createServer({ cert: srv.cert, key: srv.key, ca: bundle.pems, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (req, res) => {
    const peer = (req.socket as tls.TLSSocket).getPeerCertificate();
    res.end(spiffeIdFromPeerCertificate(peer) ?? 'none');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const run = promisify(execFile);
  try {
    const caFile = path.join(dir, 'ca', 'ca.crt');
    const ok = await run('curl', ['-sS', '--max-time', '10', '--cacert', caFile, '--cert', files.workload!.cert, '--key', files.workload!.key, `https://127.0.0.1:${port}/`]);
    assert.equal(ok.stdout, 'spiffe://cluster/ns/prod/sa/registry');
    await assert.rejects(run('curl', ['-sS', '--max-time', '10', '--cacert', caFile, '--cert', files.foreign!.cert, '--key', files.foreign!.key, `https://127.0.0.1:${port}/`]));
    await assert.rejects(run('curl', ['-sS', '--max-time', '10', '--cacert', caFile, '--tls-max', '1.2', '--cert', files.workload!.cert, '--key', files.workload!.key, `https://127.0.0.1:${port}/`]));
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
