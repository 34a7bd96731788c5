// Zero trust end to end, certificate chains that only some verifiers refuse: a partner CA bound by
// name constraints, an intermediate whose extended key usage is not for clients, a leaf with an
// unknown critical extension, a CA certificate presented as a leaf. Each must get the same verdict
// as the caller's own certificate at the mTLS handshake (OpenSSL, then pdp) and as
// `credentials.certificate` in a request body (pdp alone). The real `pdp serve` runs with a trust
// bundle of its own root and a partner root; the odd certificates are made here with @peculiar/x509.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import * as asn1X509 from '@peculiar/asn1-x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  ID, POLICY, auditRows, call, details, makePki, refused, startServe, tempDir, waitFor, writePolicies,
  type ClientIdentity, type Pki, type Serve,
} from './support/zero-trust';

const tmp = tempDir('pdp-zt-chains-');
const root = tmp.dir;
let pki: Pki;
let server: Serve;
let url: string;
const auditPath = path.join(root, 'audit.db');

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
/** A partner workload, granted `api "authorize"` below so that its own mTLS calls are answered 200. */
const PARTNER = 'spiffe://partner/ns/edge/sa/gateway';

interface Issued {
  pem: string;
  subject: string;
  privateKey: webcrypto.CryptoKey;
  /** Files for a TLS client: the certificate (with CHAIN after it) and its key. */
  files(chain?: Issued[]): { cert: string; key: string };
}

let serial = 0;
async function issue(o: {
  subject: string;
  issuer?: Issued;
  ca?: boolean;
  pathLength?: number;
  keyUsage?: x509.KeyUsageFlags;
  eku?: string[];
  sans?: x509.JsonGeneralName[];
  extra?: x509.Extension[];
}): Promise<Issued> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(o.ca ?? false, o.pathLength, true),
    new x509.KeyUsagesExtension(o.keyUsage ?? (o.ca ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign : x509.KeyUsageFlags.digitalSignature), true),
  ];
  const eku = o.eku ?? (o.ca ? undefined : [CLIENT_AUTH]);
  if (eku) extensions.push(new x509.ExtendedKeyUsageExtension(eku));
  if (o.sans?.length) extensions.push(new x509.SubjectAlternativeNameExtension(o.sans));
  extensions.push(...(o.extra ?? []));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: `01${randomBytes(8).toString('hex')}`,
    subject: o.subject,
    issuer: o.issuer?.subject ?? o.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    publicKey: keys.publicKey,
    signingKey: o.issuer?.privateKey ?? keys.privateKey,
    signingAlgorithm: ALG,
    extensions,
  }, webcrypto);
  const pem = `${cert.toString('pem')}\n`;
  const keyPem = createPrivateKey({ key: Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
  const stem = path.join(root, `odd-${++serial}`);
  return {
    pem,
    subject: o.subject,
    privateKey: keys.privateKey,
    files(chain = []) {
      fs.writeFileSync(`${stem}.crt`, pem + chain.map((c) => c.pem).join(''));
      fs.writeFileSync(`${stem}.key`, keyPem, { mode: 0o600 });
      return { cert: `${stem}.crt`, key: `${stem}.key` };
    },
  };
}

/** nameConstraints (critical) permitting and excluding the given names. */
function nameConstraints(permitted: asn1X509.GeneralName[], excluded: asn1X509.GeneralName[] = []): x509.Extension {
  const subtrees = (names: asn1X509.GeneralName[]) => new asn1X509.GeneralSubtrees(names.map((base) => new asn1X509.GeneralSubtree({ base })));
  const nc = new asn1X509.NameConstraints({
    ...(permitted.length > 0 ? { permittedSubtrees: subtrees(permitted) } : {}),
    ...(excluded.length > 0 ? { excludedSubtrees: subtrees(excluded) } : {}),
  });
  return new x509.Extension('2.5.29.30', true, AsnConvert.serialize(nc));
}

let pdpCa: Issued;
let partnerRoot: Issued;
/** The partner's issuing CA, constrained to URIs whose host is `partner`. */
let partnerIssuing: Issued;

const as = (name: string): ClientIdentity => ({ ca: pki.caCert, cert: pki.files[name]!.cert, key: pki.files[name]!.key });
const check = { action: 'read', resource: 'service:payment', namespace: 'prod' };

before(async () => {
  pki = await makePki(root, [ID.registry]);
  const caCertPem = fs.readFileSync(pki.caCert, 'utf8');
  const caKey = await webcrypto.subtle.importKey('pkcs8', createPrivateKey(fs.readFileSync(path.join(root, 'ca', 'ca.key'))).export({ type: 'pkcs8', format: 'der' }), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  pdpCa = { pem: caCertPem, subject: new x509.X509Certificate(caCertPem).subject, privateKey: caKey, files: () => { throw new Error('not a client'); } };
  // A partner root with no SPIFFE SAN (docs/identity.md: it vouches for any trust domain, so its
  // issuing CA is what binds its leaves: by name constraints).
  partnerRoot = await issue({ subject: 'CN=partner root', ca: true, pathLength: 1 });
  partnerIssuing = await issue({
    subject: 'CN=partner issuing CA', issuer: partnerRoot, ca: true, pathLength: 0,
    extra: [nameConstraints([new asn1X509.GeneralName({ uniformResourceIdentifier: 'partner' })])],
  });
  fs.writeFileSync(path.join(root, 'bundle.crt'), caCertPem + partnerRoot.pem);
  writePolicies(root, POLICY.replace(
    'identities = ["spiffe://cluster/ns/platform/sa/registry", "spiffe://cluster/ns/platform/sa/ops"]',
    `identities = ["spiffe://cluster/ns/platform/sa/registry", "spiffe://cluster/ns/platform/sa/ops", "${PARTNER}"]`,
  ));
  server = await startServe([
    '--policies', 'policies', '--audit', auditPath, '--no-watch',
    '--tls-cert', 'ca/pdp.crt', '--tls-key', 'ca/pdp.key', '--client-ca', 'bundle.crt',
    // Every refused caller certificate here counts towards the lockout, which is not what this file is about.
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

/** `credentials.certificate` forwarded by the registry (a trusted PEP). */
function asSubject(chain: Issued[]) {
  return call(`${url}/v1/authorize`, { ...as('registry'), body: { ...check, credentials: { certificate: chain.map((c) => c.pem).join('') } } });
}

function lastAuthnFailure() {
  const rows = auditRows(auditPath, "event_type = 'AUTHN_FAILURE'");
  const row = rows[rows.length - 1];
  assert.ok(row, 'an AUTHN_FAILURE row');
  return { ...row, d: details(row) };
}

/** The chain as `credentials.certificate`: 422 invalid_subject_credentials, audited with KIND. */
async function subjectRefused(chain: Issued[], kind: string, reason: RegExp): Promise<void> {
  const r = await asSubject(chain);
  assert.equal(r.status, 422, r.text);
  assert.equal(r.json.error.code, 'invalid_subject_credentials');
  assert.match(r.json.error.message, reason);
  const row = lastAuthnFailure();
  assert.equal(row.d.kind, `subject-${kind}`);
  assert.equal(row.d.identity_verified, false);
}

/** The chain as the caller's own certificate: the connection ends at the handshake, audited with KIND. */
async function handshakeRefused(leaf: Issued, chain: Issued[], kind: string, reason: RegExp): Promise<void> {
  const before = auditRows(auditPath, "event_type = 'AUTHN_FAILURE'").length;
  await refused(`${url}/v1/authorize`, { ca: pki.caCert, ...leaf.files(chain), body: { identity: ID.payment, ...check } });
  assert.ok(await waitFor(() => auditRows(auditPath, "event_type = 'AUTHN_FAILURE'").length > before, 5_000, 20), 'the refusal is audited');
  const row = lastAuthnFailure();
  assert.equal(row.d.transport, 'tls-handshake', 'refused by OpenSSL at the handshake');
  assert.equal(row.d.kind, kind);
  assert.match(row.reason!, reason);
}

test('a partner CA bound by name constraints (permitted URI host `partner`): its leaf inside them is accepted on both paths, one that claims our trust domain is refused on both', async () => {
  const inside = await issue({ subject: 'CN=gateway', issuer: partnerIssuing, sans: [{ type: 'url', value: PARTNER }] });
  const mtls = await call(`${url}/v1/authorize`, { ca: pki.caCert, ...inside.files([partnerIssuing]), body: { identity: PARTNER, ...check } });
  assert.equal(mtls.status, 200, mtls.text);
  const [row] = auditRows(auditPath, 'decision_id = ?', mtls.json.decision_id);
  assert.equal(details(row).caller, PARTNER, 'the caller authenticated with its own SPIFFE ID');
  const subject = await asSubject([inside, partnerIssuing]);
  assert.equal(subject.status, 200, subject.text);
  assert.equal(subject.json.identity, PARTNER);

  // The finding: a leaf for our own payment service under the partner's constrained CA.
  const outside = await issue({ subject: 'CN=payment', issuer: partnerIssuing, sans: [{ type: 'url', value: ID.payment }] });
  await subjectRefused([outside, partnerIssuing], 'certificate-name-constraints', /spiffe:\/\/cluster\/ns\/prod\/sa\/payment` is outside the permitted names of CA `CN=partner issuing CA`/);
  await handshakeRefused(outside, [partnerIssuing], 'certificate-name-constraints', /outside the permitted names/);

  // A subdomain of the permitted host is not the host (`.partner` would be needed for that).
  const below = await issue({ subject: 'CN=below', issuer: partnerIssuing, sans: [{ type: 'url', value: 'spiffe://eu.partner/ns/edge/sa/gateway' }] });
  await subjectRefused([below, partnerIssuing], 'certificate-name-constraints', /outside the permitted names/);
  await handshakeRefused(below, [partnerIssuing], 'certificate-name-constraints', /outside the permitted names/);
});

test('an intermediate whose extended key usage is serverAuth only, and a leaf with an unknown critical extension: refused at the handshake and as credentials.certificate', async () => {
  const serverOnly = await issue({ subject: 'CN=partner server CA', issuer: partnerRoot, ca: true, pathLength: 0, eku: [SERVER_AUTH] });
  const underServerOnly = await issue({ subject: 'CN=gateway', issuer: serverOnly, sans: [{ type: 'url', value: PARTNER }] });
  await subjectRefused([underServerOnly, serverOnly], 'certificate-not-client', /extended key usage of its issuing CA certificate `CN=partner server CA` lacks clientAuth/);
  await handshakeRefused(underServerOnly, [serverOnly], 'certificate-not-client', /lacks clientAuth/);

  const critical = await issue({
    subject: 'CN=payment', issuer: pdpCa, sans: [{ type: 'url', value: ID.payment }],
    extra: [new x509.Extension('1.2.3.4.5.6.7', true, new Uint8Array([5, 0]))],
  });
  await subjectRefused([critical], 'certificate-unhandled-extension', /critical extension pdp does not process \(1\.2\.3\.4\.5\.6\.7\)/);
  await handshakeRefused(critical, [], 'certificate-unhandled-extension', /critical extension pdp does not process/);
});

test('a CA:TRUE certificate without keyCertSign presented as a leaf: OpenSSL lets it through the handshake, pdp answers 401; as credentials.certificate 422', async () => {
  const caLeaf = await issue({ subject: 'CN=payment', issuer: pdpCa, ca: true, keyUsage: x509.KeyUsageFlags.digitalSignature, eku: [CLIENT_AUTH], sans: [{ type: 'url', value: ID.payment }] });
  await subjectRefused([caLeaf], 'certificate-not-client', /it is a CA certificate/);
  const r = await call(`${url}/v1/authorize`, { ca: pki.caCert, ...caLeaf.files(), body: { identity: ID.payment, ...check } });
  assert.equal(r.status, 401, r.text);
  assert.equal(r.json.error.code, 'unauthenticated');
  assert.match(r.json.error.message, /client certificate rejected: .*it is a CA certificate/);
  const row = lastAuthnFailure();
  assert.equal(row.d.kind, 'certificate-not-client');
  assert.equal(row.identity, ID.payment, 'the SPIFFE ID it claims');
  assert.equal(row.d.identity_verified, false);
});
