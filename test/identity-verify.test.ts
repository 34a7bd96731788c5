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
import * as asn1X509 from '@peculiar/asn1-x509';
import { AsnConvert, BitString } from '@peculiar/asn1-schema';
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
  /** keyUsage flags instead of the usual ones (keyCertSign and cRLSign for a CA, else digitalSignature). */
  keyUsage?: x509.KeyUsageFlags;
  /** More extensions, after the others. */
  extensions?: x509.Extension[];
}): Promise<{ pem: string; keyPem: string }> {
  const keys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const signingKey = options.issuerKeyPem
    ? await crypto.subtle.importKey('pkcs8', createPrivateKey(options.issuerKeyPem).export({ type: 'pkcs8', format: 'der' }), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign'])
    : keys.privateKey;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(options.ca ?? false, options.pathLength, true),
    new x509.KeyUsagesExtension(options.keyUsage ?? (options.ca ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign : x509.KeyUsageFlags.digitalSignature), true),
  ];
  if (options.eku) extensions.push(new x509.ExtendedKeyUsageExtension(options.eku));
  if (options.sans?.length) extensions.push(new x509.SubjectAlternativeNameExtension(options.sans));
  extensions.push(...(options.extensions ?? []));
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

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** A critical nameConstraints extension. */
function nameConstraints(permitted: asn1X509.GeneralName[], excluded: asn1X509.GeneralName[] = []): x509.Extension {
  const subtrees = (names: asn1X509.GeneralName[]) => new asn1X509.GeneralSubtrees(names.map((base) => new asn1X509.GeneralSubtree({ base })));
  return new x509.Extension('2.5.29.30', true, AsnConvert.serialize(new asn1X509.NameConstraints({
    ...(permitted.length > 0 ? { permittedSubtrees: subtrees(permitted) } : {}),
    ...(excluded.length > 0 ? { excludedSubtrees: subtrees(excluded) } : {}),
  })));
}
const uri = (value: string) => new asn1X509.GeneralName({ uniformResourceIdentifier: value });
const dns = (value: string) => new asn1X509.GeneralName({ dNSName: value });

/** `openssl verify -purpose sslclient` (what the mTLS handshake applies): true when it accepts. */
function opensslAccepts(name: string, leaf: string, intermediates: string[], roots: string[]): { ok: boolean; output: string } {
  const base = path.join(dir, 'openssl', name);
  fs.mkdirSync(path.dirname(base), { recursive: true });
  fs.writeFileSync(`${base}-leaf.pem`, leaf);
  fs.writeFileSync(`${base}-roots.pem`, roots.join(''));
  const args = ['verify', '-CAfile', `${base}-roots.pem`, '-purpose', 'sslclient'];
  if (intermediates.length > 0) {
    fs.writeFileSync(`${base}-untrusted.pem`, intermediates.join(''));
    args.push('-untrusted', `${base}-untrusted.pem`);
  }
  const r = spawnSync('openssl', [...args, `${base}-leaf.pem`], { encoding: 'utf8' });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}`.trim() };
}

test('name constraints, the extended key usage of every CA, critical extensions and a CA certificate as leaf: the same verdict as openssl verify -purpose sslclient, or a documented stricter one', async () => {
  // A partner root with no SPIFFE SAN (it vouches for any trust domain), and CAs under it.
  const partner = await custom({ subject: 'CN=partner root', ca: true, pathLength: 1 });
  const under = (subject: string, extra: { eku?: string[]; extensions?: x509.Extension[] } = {}) =>
    custom({ issuerKeyPem: partner.keyPem, issuerName: 'CN=partner root', subject, ca: true, pathLength: 0, ...extra });
  const root = (subject: string, extra: { eku?: string[]; extensions?: x509.Extension[] }) => custom({ subject, ca: true, pathLength: 1, ...extra });
  const leafOf = (issuer: { keyPem: string }, issuerName: string, sans: x509.JsonGeneralName[], extra: { subject?: string; extensions?: x509.Extension[] } = {}) =>
    custom({ issuerKeyPem: issuer.keyPem, issuerName, subject: extra.subject ?? 'CN=leaf', eku: [CLIENT_AUTH], sans, ...(extra.extensions ? { extensions: extra.extensions } : {}) });
  const id = (value: string): x509.JsonGeneralName => ({ type: 'url', value });

  const cas = {
    uri: await under('CN=uri', { extensions: [nameConstraints([uri('partner')])] }),
    uriDot: await under('CN=uri-dot', { extensions: [nameConstraints([uri('.partner')])] }),
    excluded: await under('CN=excluded', { extensions: [nameConstraints([], [uri('cluster')])] }),
    dns: await under('CN=dns', { extensions: [nameConstraints([dns('partner.example')])] }),
    dnsDot: await under('CN=dns-dot', { extensions: [nameConstraints([dns('.partner.example')])] }),
    ip: await under('CN=ip', { extensions: [nameConstraints([new asn1X509.GeneralName({ iPAddress: '10.0.0.0/8' })])] }),
    email: await under('CN=email', { extensions: [nameConstraints([new asn1X509.GeneralName({ rfc822Name: 'partner.example' })])] }),
    ekuServer: await under('CN=eku-server', { eku: ['1.3.6.1.5.5.7.3.1'] }),
    ekuAny: await under('CN=eku-any', { eku: ['2.5.29.37.0'] }),
    ekuClient: await under('CN=eku-client', { eku: ['1.3.6.1.5.5.7.3.1', CLIENT_AUTH] }),
    critical: await under('CN=critical', { extensions: [new x509.Extension('1.2.3.4.5.6.7', true, new Uint8Array([5, 0]))] }),
    policies: await under('CN=policies', { extensions: [new x509.CertificatePolicyExtension(['1.3.6.1.4.1.99999.1'], true)] }),
    policyConstraints: await under('CN=policy-constraints', {
      extensions: [new x509.Extension('2.5.29.36', true, AsnConvert.serialize(new asn1X509.PolicyConstraints({ requireExplicitPolicy: new Uint8Array([0]).buffer })))],
    }),
  };
  const constrainedRoot = await root('CN=constrained root', { extensions: [nameConstraints([uri('partner')])] });
  const serverRoot = await root('CN=server root', { eku: ['1.3.6.1.5.5.7.3.1'] });
  const ourKey = fs.readFileSync(path.join(dir, 'ca', 'ca.key'), 'utf8');
  const ours = { keyPem: ourKey };
  const ourName = 'CN=pdp root CA cluster';
  const roots = [caPem, partner.pem, constrainedRoot.pem, serverRoot.pem];
  const trust = loadTrustBundle(roots.join(''));

  // [name, leaf, intermediates, pdp's verdict (a failure code or 'ok'), what openssl says when it differs]
  type Case = [string, { pem: string }, Array<{ pem: string }>, string, ('accepts' | undefined)?];
  const cases: Case[] = [
    ['URI host permitted', await leafOf(cas.uri, 'CN=uri', [id('spiffe://partner/ns/a/sa/b')]), [cas.uri], 'ok'],
    ['URI host not permitted', await leafOf(cas.uri, 'CN=uri', [id('spiffe://cluster/ns/prod/sa/payment')]), [cas.uri], 'name-constraints'],
    ['URI host below a permitted host', await leafOf(cas.uri, 'CN=uri', [id('spiffe://eu.partner/ns/a/sa/b')]), [cas.uri], 'name-constraints'],
    ['URI host below a permitted `.partner`', await leafOf(cas.uriDot, 'CN=uri-dot', [id('spiffe://eu.partner/ns/a/sa/b')]), [cas.uriDot], 'ok'],
    ['URI host `partner` is not below `.partner`', await leafOf(cas.uriDot, 'CN=uri-dot', [id('spiffe://partner/ns/a/sa/b')]), [cas.uriDot], 'name-constraints'],
    ['URI host excluded', await leafOf(cas.excluded, 'CN=excluded', [id('spiffe://cluster/ns/prod/sa/payment')]), [cas.excluded], 'name-constraints'],
    ['URI host not excluded', await leafOf(cas.excluded, 'CN=excluded', [id('spiffe://partner/ns/a/sa/b')]), [cas.excluded], 'ok'],
    ['URI constraint on the root itself', await leafOf(constrainedRoot, 'CN=constrained root', [id('spiffe://cluster/ns/prod/sa/payment')]), [], 'name-constraints'],
    ['URI constraint on the root, leaf inside', await leafOf(constrainedRoot, 'CN=constrained root', [id('spiffe://partner/ns/a/sa/b')]), [], 'ok'],
    ['DNS name below a permitted domain', await leafOf(cas.dns, 'CN=dns', [id('spiffe://partner/a'), { type: 'dns', value: 'api.partner.example' }]), [cas.dns], 'ok'],
    ['DNS name outside', await leafOf(cas.dns, 'CN=dns', [id('spiffe://partner/a'), { type: 'dns', value: 'evil.example' }]), [cas.dns], 'name-constraints'],
    ['DNS-like commonName outside (no DNS SAN)', await leafOf(cas.dns, 'CN=dns', [id('spiffe://partner/a')], { subject: 'CN=evil.example' }), [cas.dns], 'name-constraints'],
    ['single-label commonName (not DNS-like)', await leafOf(cas.dns, 'CN=dns', [id('spiffe://partner/a')], { subject: 'CN=gateway' }), [cas.dns], 'ok'],
    ['DNS `.partner.example` excludes the domain itself', await leafOf(cas.dnsDot, 'CN=dns-dot', [id('spiffe://partner/a'), { type: 'dns', value: 'partner.example' }]), [cas.dnsDot], 'name-constraints'],
    ['IP inside', await leafOf(cas.ip, 'CN=ip', [id('spiffe://partner/a'), { type: 'ip', value: '10.1.2.3' }]), [cas.ip], 'ok'],
    ['IP outside', await leafOf(cas.ip, 'CN=ip', [id('spiffe://partner/a'), { type: 'ip', value: '192.168.1.1' }]), [cas.ip], 'name-constraints'],
    ['IPv6 under an IPv4 constraint', await leafOf(cas.ip, 'CN=ip', [id('spiffe://partner/a'), { type: 'ip', value: '::1' }]), [cas.ip], 'name-constraints'],
    // pdp checks URI, DNS and IP constraints only: a CA with any other form is refused (fail closed).
    ['email constraint (a form pdp does not check)', await leafOf(cas.email, 'CN=email', [id('spiffe://partner/a')]), [cas.email], 'name-constraints', 'accepts'],
    ['intermediate EKU serverAuth only', await leafOf(cas.ekuServer, 'CN=eku-server', [id('spiffe://partner/a')]), [cas.ekuServer], 'not-client'],
    ['intermediate EKU anyExtendedKeyUsage only', await leafOf(cas.ekuAny, 'CN=eku-any', [id('spiffe://partner/a')]), [cas.ekuAny], 'not-client'],
    ['intermediate EKU with clientAuth', await leafOf(cas.ekuClient, 'CN=eku-client', [id('spiffe://partner/a')]), [cas.ekuClient], 'ok'],
    ['root EKU serverAuth only', await leafOf(serverRoot, 'CN=server root', [id('spiffe://partner/a')]), [], 'not-client'],
    ['intermediate with an unknown critical extension', await leafOf(cas.critical, 'CN=critical', [id('spiffe://partner/a')]), [cas.critical], 'unhandled-extension'],
    ['leaf with an unknown critical extension', await leafOf(ours, ourName, [id('spiffe://cluster/a')], { extensions: [new x509.Extension('1.2.3.4.5.6.7', true, new Uint8Array([5, 0]))] }), [], 'unhandled-extension'],
    ['leaf with a critical subjectKeyIdentifier', await leafOf(ours, ourName, [id('spiffe://cluster/a')], { extensions: [new x509.SubjectKeyIdentifierExtension('0102030405', true)] }), [], 'unhandled-extension'],
    ['critical certificatePolicies (accepted: pdp requires no policy)', await leafOf(cas.policies, 'CN=policies', [id('spiffe://partner/a')]), [cas.policies], 'ok'],
    // OpenSSL does no policy processing at the handshake; pdp does none either, so it refuses a CA that demands it.
    ['critical policyConstraints', await leafOf(cas.policyConstraints, 'CN=policy-constraints', [id('spiffe://partner/a')]), [cas.policyConstraints], 'unhandled-extension', 'accepts'],
    ['leaf Netscape certificate type without SSL client', await leafOf(ours, ourName, [id('spiffe://cluster/a')], {
      extensions: [new x509.Extension('2.16.840.1.113730.1.1', false, AsnConvert.serialize(new BitString(new Uint8Array([0x40]), 6)))],
    }), [], 'not-client'],
    // Finding: CA:TRUE without keyCertSign is no CA to node:crypto, but it is one by its basicConstraints.
    // OpenSSL accepts it as a leaf at the handshake, and pdp answers 401 right after (docs/identity.md).
    ['leaf with CA:TRUE and keyUsage digitalSignature', await custom({
      issuerKeyPem: ourKey, issuerName: ourName, subject: 'CN=ca-leaf', ca: true, keyUsage: x509.KeyUsageFlags.digitalSignature, eku: [CLIENT_AUTH], sans: [id('spiffe://cluster/a')],
    }), [], 'not-client', 'accepts'],
  ];
  for (const [name, leaf, intermediates, expected, openssl] of cases) {
    const chain = leaf.pem + intermediates.map((c) => c.pem).join('');
    const r = verifyClientCertificate(chain, trust, new Date());
    assert.equal(r.ok ? 'ok' : r.code, expected, `${name}: ${JSON.stringify(r)}`);
    // What the mTLS handshake (OpenSSL, purpose sslclient) says about the same chain.
    if (hasOpenssl) {
      const o = opensslAccepts(name.replace(/\W+/g, '-'), leaf.pem, intermediates.map((c) => c.pem), roots);
      assert.equal(o.ok, openssl === 'accepts' || expected === 'ok', `${name}: openssl verify says ${o.output}`);
    }
  }
});

test('name constraints pdp cannot apply exactly are refused, never skipped', async () => {
  const partner = await custom({ subject: 'CN=partner root', ca: true, pathLength: 1 });
  const trust = loadTrustBundle(caPem + partner.pem);
  const withConstraint = async (ext: x509.Extension) => {
    const inter = await custom({ issuerKeyPem: partner.keyPem, issuerName: 'CN=partner root', subject: 'CN=i', ca: true, pathLength: 0, extensions: [ext] });
    const leaf = await custom({ issuerKeyPem: inter.keyPem, issuerName: 'CN=i', subject: 'CN=l', eku: [CLIENT_AUTH], sans: [{ type: 'url', value: 'spiffe://partner/a' }] });
    return verifyClientCertificate(leaf.pem + inter.pem, trust, new Date());
  };
  // A directoryName constraint (OpenSSL compares canonical DN encodings; pdp does not).
  const dirName = await withConstraint(nameConstraints([new asn1X509.GeneralName({ directoryName: new asn1X509.Name([new asn1X509.RelativeDistinguishedName([new asn1X509.AttributeTypeAndValue({ type: '2.5.4.10', value: new asn1X509.AttributeValue({ utf8String: 'Partner' }) })])]) })]));
  assert.ok(!dirName.ok && dirName.code === 'name-constraints' && /directoryName/.test(dirName.reason), JSON.stringify(dirName));
  // A subtree with a maximum (RFC 5280: never used for these forms; OpenSSL refuses one).
  const maxed = new asn1X509.NameConstraints({ permittedSubtrees: new asn1X509.GeneralSubtrees([new asn1X509.GeneralSubtree({ base: uri('partner'), maximum: 2 })]) });
  const withMax = await withConstraint(new x509.Extension('2.5.29.30', true, AsnConvert.serialize(maxed)));
  assert.ok(!withMax.ok && withMax.code === 'name-constraints' && /minimum or maximum/.test(withMax.reason), JSON.stringify(withMax));
  // An IP subtree whose mask is not contiguous cannot be read exactly: refused.
  const ipNc = AsnConvert.serialize(new asn1X509.NameConstraints({ permittedSubtrees: new asn1X509.GeneralSubtrees([new asn1X509.GeneralSubtree({ base: new asn1X509.GeneralName({ iPAddress: '10.0.0.0/16' }) })]) }));
  const odd = new Uint8Array(ipNc);
  const maskAt = Buffer.from(odd).indexOf(Buffer.from([255, 255, 0, 0]));
  odd.set([255, 0, 255, 0], maskAt);
  const nonContiguous = await withConstraint(new x509.Extension('2.5.29.30', true, odd));
  assert.ok(!nonContiguous.ok && nonContiguous.code === 'name-constraints', JSON.stringify(nonContiguous));
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
