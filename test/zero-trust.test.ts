// Zero trust end to end: the real `pdp ca` issues every certificate, the real `pdp serve` runs with
// TLS 1.3, mutual TLS and bearer tokens, and real clients (node:https, curl) call it. This file covers
// transport authentication, api grants, tokens (expiry, revocation, secrecy) and subject credentials.
// Limits (lockout, rate limit) are in zero-trust-limits.test.ts; rotation in zero-trust-rotation.test.ts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { issueCertificate } from '../src/identity/ca';
import {
  ID, auditRows, call, details, fileBytes, makePki, pdp, pdpOk, refused, startServe, tempDir, waitFor, writePolicies,
  type ClientIdentity, type Pki, type Serve,
} from './support/zero-trust';

const tmp = tempDir('pdp-zt-main-');
const root = tmp.dir;
let pki: Pki;
let server: Serve;
let url: string;
const auditPath = path.join(root, 'audit.db');
const tokensPath = path.join(root, 'tokens.db');
/** Every token secret a test created: none may ever appear in the audit store or the logs. */
const secrets: string[] = [];

const as = (name: string): ClientIdentity => ({ ca: pki.caCert, cert: pki.files[name]!.cert, key: pki.files[name]!.key });
const anonymous = (): ClientIdentity => ({ ca: pki.caCert });

before(async () => {
  pki = await makePki(root, [ID.registry, ID.ops, ID.nogrant, ID.payment, ID.order]);
  await Promise.all([
    // a second, unrelated CA with the same trust domain and a workload claiming the registry's ID
    pdpOk(['ca', 'init', '--trust-domain', 'cluster', '--dir', 'other-ca'], root)
      .then(() => pdpOk(['ca', 'issue', 'workload', '--dir', 'other-ca', '--spiffe-id', ID.registry, '--name', 'forged'], root)),
    // a certificate for TLS *server* authentication that carries the registry's SPIFFE ID
    pdpOk(['ca', 'issue', 'server', '--dir', 'ca', '--name', 'server-purpose', '--ip', '127.0.0.1', '--spiffe-id', ID.registry], root),
    // an expired workload certificate from the right CA (past validity, in-process: the CLI refuses it)
    issueCertificate({
      caDir: path.join(root, 'ca'), kind: 'workload', name: 'expired', outDir: path.join(root, 'ca-certs'), spiffeId: ID.registry,
      validFrom: new Date(Date.now() - 2 * 86_400_000), validTo: new Date(Date.now() - 86_400_000),
    }),
  ]);
  pki.files.forged = { cert: path.join(root, 'other-ca', 'forged.crt'), key: path.join(root, 'other-ca', 'forged.key') };
  pki.files['server-purpose'] = { cert: path.join(root, 'ca', 'server-purpose.crt'), key: path.join(root, 'ca', 'server-purpose.key') };
  pki.files.expired = { cert: path.join(root, 'ca-certs', 'expired.crt'), key: path.join(root, 'ca-certs', 'expired.key') };
  writePolicies(root);
  // A token store must exist before the server opens it; this token is never used.
  await pdpOk(['token', 'create', '--identity', 'team:unused', '--tokens', tokensPath], root);
  server = await startServe([
    '--policies', 'policies', '--audit', auditPath, '--no-watch', '--log-level', 'info',
    '--tls-cert', 'ca/pdp.crt', '--tls-key', 'ca/pdp.key', '--client-ca', 'ca/ca.crt', '--tokens', tokensPath,
    '--lockout', '3s',
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

const register = (identity: string, extra: Record<string, unknown> = {}) => ({
  identity, action: 'write', resource: 'service:payment', namespace: 'prod', context: { instance_id: 'payment-1' }, ...extra,
});

async function createToken(identity: string, ttl?: string): Promise<{ id: string; token: string }> {
  const out = await pdpOk(['token', 'create', '--identity', identity, '--tokens', tokensPath, '--format', 'json', ...(ttl ? ['--ttl', ttl] : [])], root);
  const created = JSON.parse(out) as { id: string; token: string };
  secrets.push(created.token, created.token.slice(`pdp_${created.id}_`.length));
  return created;
}

function lastAuthnFailure(): { reason: string | null; details: Record<string, unknown>; identity: string | null; source_ip: string | null } {
  const rows = auditRows(auditPath, "event_type = 'AUTHN_FAILURE'");
  const row = rows[rows.length - 1];
  assert.ok(row, 'an AUTHN_FAILURE row');
  return { reason: row.reason, details: details(row), identity: row.identity, source_ip: row.source_ip };
}

test('transport: TLS 1.3 only; a certificate from another CA, an expired one or a server-purpose one gets no HTTP answer; none at all is 401', async () => {
  // No client certificate: with tokens enabled the certificate is optional, so the request arrives
  // and is refused as unauthenticated, and audited.
  const before = auditRows(auditPath, "event_type = 'AUTHN_FAILURE'").length;
  const none = await call(`${url}/v1/authorize`, { ...anonymous(), body: register(ID.payment) });
  assert.equal(none.status, 401, none.text);
  assert.equal(none.json.error.code, 'unauthenticated');
  const row = lastAuthnFailure();
  assert.equal(auditRows(auditPath, "event_type = 'AUTHN_FAILURE'").length, before + 1);
  assert.equal(row.details.kind, 'missing');
  assert.equal(row.details.path, '/v1/authorize');
  assert.equal(row.source_ip, '127.0.0.1');

  // A certificate that is presented must verify; otherwise the connection ends before any request.
  const requests = auditRows(auditPath).length;
  for (const name of ['forged', 'expired', 'server-purpose']) {
    const err = await refused(`${url}/v1/authorize`, { ...as(name), body: register(ID.payment) });
    assert.ok(err.code || err.message, `${name}: ${String(err)}`);
  }
  // Sanity: the forged certificate really names the registry, and its CA is a different one.
  const forged = fs.readFileSync(pki.files.forged!.cert, 'utf8');
  assert.notEqual(forged, fs.readFileSync(pki.files.registry!.cert, 'utf8'));

  // TLS 1.2 (with a perfectly good certificate) fails the handshake itself.
  const old = await refused(`${url}/v1/health`, { ...as('registry'), maxVersion: 'TLSv1.2' });
  assert.match(`${old.code} ${old.message}`, /PROTOCOL_VERSION|protocol version|unsupported protocol/i);

  assert.equal(auditRows(auditPath).length, requests, 'a refused connection reaches no route, so writes no row');
  const ok = await call(`${url}/v1/health`, as('registry'));
  assert.equal(ok.status, 200, 'the server kept running');
});

test('a workload certificate: 200 on /v1/authorize, audited with its SPIFFE ID as details.caller; poisoning and cross-namespace discovery are denied', async () => {
  const r = await call(`${url}/v1/authorize`, { ...as('registry'), body: register(ID.payment) });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.allow, true);
  assert.equal(r.json.result, 'ALLOW');
  const [row] = auditRows(auditPath, 'decision_id = ?', r.json.decision_id);
  assert.ok(row, 'the decision is audited');
  assert.equal(row.identity, ID.payment, 'identity is the subject');
  assert.equal(details(row).caller, ID.registry, 'details.caller is the PEP, from its certificate');
  assert.equal(row.event_type, 'REGISTRATION');

  // Registry poisoning: another workload may not register payment, even through a trusted PEP.
  const poison = await call(`${url}/v1/authorize`, { ...as('registry'), body: register(ID.order) });
  assert.equal(poison.status, 200);
  assert.equal(poison.json.allow, false);
  assert.equal(poison.json.result, 'DENY');

  // Namespace isolation: order discovers payment in prod, not in staging.
  const discover = (namespace: string) => ({ identity: ID.order, action: 'read', resource: 'service:payment', namespace });
  assert.equal((await call(`${url}/v1/authorize`, { ...as('registry'), body: discover('prod') })).json.allow, true);
  assert.equal((await call(`${url}/v1/authorize`, { ...as('registry'), body: discover('staging') })).json.allow, false);
});

test('api grants: no grant is 403 forbidden with an API_DENIED row; admin endpoints need api "admin"', async () => {
  const denied = await call(`${url}/v1/authorize`, { ...as('nogrant'), body: register(ID.payment) });
  assert.equal(denied.status, 403, denied.text);
  assert.equal(denied.json.error.code, 'forbidden');
  assert.match(denied.json.error.message, /api "authorize"/);
  const rows = auditRows(auditPath, "event_type = 'API_DENIED' AND identity = ?", ID.nogrant);
  assert.equal(rows.length, 1);
  assert.equal(rows[0]!.resource, 'api:authorize');
  assert.equal(rows[0]!.result, 'DENY');
  assert.equal(auditRows(auditPath, "event_type = 'REGISTRATION' AND json_extract(details, '$.caller') = ?", ID.nogrant).length, 0, 'no decision was made for it');

  // The authorize-only PEP may not reload policies or read metrics or the policy summary.
  for (const [method, route] of [['POST', '/v1/policies/reload'], ['GET', '/metrics'], ['GET', '/v1/policies']] as const) {
    const r = await call(`${url}${route}`, { ...as('registry'), method });
    assert.equal(r.status, 403, `${method} ${route}: ${r.text}`);
    assert.equal(r.json.error.code, 'forbidden');
    assert.match(r.json.error.message, /api "admin"/);
  }
  assert.equal(auditRows(auditPath, "event_type = 'API_DENIED' AND identity = ? AND resource = 'api:admin'", ID.registry).length, 3);

  // The ops workload holds api "admin".
  const reload = await call(`${url}/v1/policies/reload`, { ...as('ops'), method: 'POST' });
  assert.equal(reload.status, 200, reload.text);
  assert.equal(reload.json.ok, true);
  const metrics = await call(`${url}/metrics`, as('ops'));
  assert.equal(metrics.status, 200);
  assert.match(metrics.text, /pdp_/);
  const policies = await call(`${url}/v1/policies`, as('ops'));
  assert.equal(policies.status, 200);
  // A bearer token for an identity with the grant works the same, without a client certificate.
  const opsToken = await createToken('team:ops');
  const viaToken = await call(`${url}/v1/policies`, { ...anonymous(), token: opsToken.token });
  assert.equal(viaToken.status, 200, viaToken.text);
  // Health and readiness stay open for probes.
  assert.equal((await call(`${url}/v1/ready`, anonymous())).status, 200);
});

test('tokens: a bearer token works until it expires, then 401; revoke is immediate; the secret is never stored or logged', async () => {
  const short = await createToken(ID.registry, '4s');
  const ok = await call(`${url}/v1/authorize`, { ...anonymous(), token: short.token, body: register(ID.payment) });
  assert.equal(ok.status, 200, `first use within the ttl: ${ok.text}`);
  const [row] = auditRows(auditPath, 'decision_id = ?', ok.json.decision_id);
  assert.equal(details(row).caller, ID.registry, 'the token stands for its identity');

  let expired: Awaited<ReturnType<typeof call>> | undefined;
  assert.ok(await waitFor(async () => {
    expired = await call(`${url}/v1/authorize`, { ...anonymous(), token: short.token, body: register(ID.payment) });
    return expired.status !== 200;
  }, 8_000, 250), 'the token stops working once its ttl has passed');
  assert.equal(expired!.status, 401, expired!.text);
  assert.equal(expired!.json.error.code, 'unauthenticated');
  assert.match(expired!.json.error.message, /expired/);
  const failure = lastAuthnFailure();
  assert.equal(failure.details.kind, 'token-expired');
  assert.ok(failure.reason!.includes(short.id), 'the row names the token by its id');

  const long = await createToken(ID.registry);
  assert.equal((await call(`${url}/v1/authorize`, { ...anonymous(), token: long.token, body: register(ID.payment) })).status, 200);
  const revoked = await pdp(['token', 'revoke', long.id, '--tokens', tokensPath], root);
  assert.equal(revoked.code, 0, revoked.stderr);
  const after = await call(`${url}/v1/authorize`, { ...anonymous(), token: long.token, body: register(ID.payment) });
  assert.equal(after.status, 401, 'the very next request after revoke');
  assert.match(after.json.error.message, /revoked/);
  assert.equal(lastAuthnFailure().details.kind, 'token-revoked');

  // A wrong secret for a real id, and a token in the wrong header shape.
  const wrong = `pdp_${long.id}_${'A'.repeat(43)}`;
  const bad = await call(`${url}/v1/authorize`, { ...anonymous(), token: wrong, body: register(ID.payment) });
  assert.equal(bad.status, 401);
  assert.ok(!bad.text.includes('A'.repeat(43)), 'the error does not echo what was sent');

  // A success in between keeps the source below the lockout threshold for the next tests.
  assert.equal((await call(`${url}/v1/health`, as('registry'))).status, 200);
  assert.equal((await call(`${url}/v1/authorize`, { ...as('registry'), body: register(ID.payment) })).status, 200);

  for (const secret of secrets) {
    for (const file of [auditPath, tokensPath]) assert.equal(fileBytes(file).includes(secret), false, `${path.basename(file)} must not hold a token secret`);
    assert.equal(server.stdout().includes(secret), false, 'stdout must not hold a token secret');
    assert.equal(server.stderr().includes(secret), false, 'stderr must not hold a token secret');
    for (const r of auditRows(auditPath)) assert.ok(!JSON.stringify(r).includes(secret));
  }
  assert.ok((server.stdout() + server.stderr()).includes('"url":"/v1/authorize"'), 'requests are logged (info level), just not their credentials');
});

test('subject credentials: the verified identity decides, not the body\'s; a bad one is 401 AUTHN_FAILURE and does not lock the PEP out', async () => {
  const order = fs.readFileSync(pki.files.order!.cert, 'utf8');
  // The body claims payment (which may register payment), the certificate says order (read only).
  const claimed = await call(`${url}/v1/authorize`, { ...as('registry'), body: register(ID.payment) });
  assert.equal(claimed.json.allow, true, 'the claimed identity alone would be allowed');
  const byCert = await call(`${url}/v1/authorize`, { ...as('registry'), body: register(ID.payment, { credentials: { certificate: order } }) });
  assert.equal(byCert.status, 200, byCert.text);
  assert.equal(byCert.json.identity, ID.order);
  assert.equal(byCert.json.allow, false);
  assert.match(byCert.json.reason, /sa\/order has read/);
  const [certRow] = auditRows(auditPath, 'decision_id = ?', byCert.json.decision_id);
  assert.equal(certRow!.identity, ID.order);
  assert.equal(details(certRow).authenticated_by, 'certificate');
  assert.equal(details(certRow).caller, ID.registry);

  // The body claims order, the token is payment's: allowed, as payment.
  const pay = await createToken(ID.payment);
  const byToken = await call(`${url}/v1/authorize`, { ...as('registry'), body: register(ID.order, { credentials: { token: pay.token } }) });
  assert.equal(byToken.status, 200, byToken.text);
  assert.equal(byToken.json.identity, ID.payment);
  assert.equal(byToken.json.allow, true);
  const [tokenRow] = auditRows(auditPath, 'decision_id = ?', byToken.json.decision_id);
  assert.equal(tokenRow!.identity, ID.payment);
  assert.equal(details(tokenRow).authenticated_by, 'token');

  // Bad subject credentials: forged certificate, expired certificate, wrong token secret, garbage.
  const bad = [
    { certificate: fs.readFileSync(pki.files.forged!.cert, 'utf8') },
    { certificate: fs.readFileSync(pki.files.expired!.cert, 'utf8') },
    { certificate: fs.readFileSync(pki.files['server-purpose']!.cert, 'utf8') },
    { token: `pdp_${pay.id}_${'B'.repeat(43)}` },
    { token: 'not-a-token' },
    { certificate: 'not a certificate' },
  ];
  const kinds: unknown[] = [];
  for (const credentials of bad) {
    const r = await call(`${url}/v1/authorize`, { ...as('registry'), body: register(ID.payment, { credentials }) });
    assert.equal(r.status, 401, `${JSON.stringify(credentials).slice(0, 60)}: ${r.text}`);
    assert.equal(r.json.error.code, 'unauthenticated');
    kinds.push(lastAuthnFailure().details.kind);
  }
  assert.deepEqual(kinds, ['subject-certificate-untrusted', 'subject-certificate-expired', 'subject-certificate-not-client', 'subject-token-mismatch', 'subject-token-malformed', 'subject-certificate-malformed']);
  // Six failures in a row (the lockout threshold is 5): the PEP itself is still served.
  const still = await call(`${url}/v1/authorize`, { ...as('registry'), body: register(ID.payment) });
  assert.equal(still.status, 200, `the PEP is not locked out by its subjects' bad credentials: ${still.text}`);
});

test('curl as a real client: --cert gets a 200 JSON decision; without --cert a 401', async () => {
  const body = JSON.stringify(register(ID.payment));
  const curl = (args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', '--cacert', pki.caCert, '-H', 'content-type: application/json', '-w', '\n%{http_code}', ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
  const ok = await curl(['--cert', pki.files.registry!.cert, '--key', pki.files.registry!.key, '-d', body, `${url}/v1/authorize`]);
  assert.equal(ok.code, 0, ok.stderr);
  const [json, status] = ok.stdout.trimEnd().split('\n');
  assert.equal(status, '200');
  const decision = JSON.parse(json!);
  assert.equal(decision.allow, true);
  assert.equal(decision.result, 'ALLOW');
  const none = await curl(['-d', body, `${url}/v1/authorize`]);
  const [noneJson, noneStatus] = none.stdout.trimEnd().split('\n');
  assert.equal(noneStatus, '401', none.stdout + none.stderr);
  assert.equal(JSON.parse(noneJson!).error.code, 'unauthenticated');
  // TLS 1.2 only: curl fails the handshake.
  const old = await curl(['--tlsv1.2', '--tls-max', '1.2', '--cert', pki.files.registry!.cert, '--key', pki.files.registry!.key, `${url}/v1/health`]);
  assert.notEqual(old.code, 0, 'a TLS 1.2 client cannot connect');
});
