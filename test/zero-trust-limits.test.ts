// Zero trust end to end, denial of service and brute force: per-caller rate limits (429 +
// Retry-After), lockout after repeated authentication failures (429 locked_out + Retry-After, then
// served again), the body limit, and a client certificate that expires while its keep-alive
// connection is still open. The real `pdp serve` with short limits (--rate-limit 5, --lockout 2s).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as https from 'node:https';
import * as path from 'node:path';
import { issueCertificate } from '../src/identity/ca';
import {
  ID, auditRows, call, details, makePki, pdpOk, sleep, startServe, tempDir, writePolicies,
  type ClientIdentity, type Pki, type Reply, type Serve,
} from './support/zero-trust';

const tmp = tempDir('pdp-zt-limits-');
const root = tmp.dir;
let pki: Pki;
let server: Serve;
let url: string;
const auditPath = path.join(root, 'audit.db');
const tokensPath = path.join(root, 'tokens.db');

const as = (name: string): ClientIdentity => ({ ca: pki.caCert, cert: pki.files[name]!.cert, key: pki.files[name]!.key });
const register = { identity: ID.payment, action: 'write', resource: 'service:payment', namespace: 'prod' };

before(async () => {
  pki = await makePki(root, [ID.registry, ID.nogrant]);
  writePolicies(root);
  await pdpOk(['token', 'create', '--identity', 'team:unused', '--tokens', tokensPath], root);
  server = await startServe([
    '--policies', 'policies', '--audit', auditPath, '--no-watch',
    '--tls-cert', 'ca/pdp.crt', '--tls-key', 'ca/pdp.key', '--client-ca', 'ca/ca.crt', '--tokens', tokensPath,
    '--rate-limit', '5', '--lockout', '2s',
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

function retryAfter(r: Reply): number {
  const v = r.headers['retry-after'];
  assert.equal(typeof v, 'string', `Retry-After on ${r.status}: ${JSON.stringify(r.headers)}`);
  const n = Number(v);
  assert.ok(Number.isInteger(n) && n >= 1, `Retry-After is whole seconds ≥ 1: ${String(v)}`);
  return n;
}

test('rate limit: a burst over --rate-limit gets 429 rate_limited with Retry-After, per caller, ungranted callers included', async () => {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 8 });
  try {
    let started = Date.now();
    const burst = await Promise.all(Array.from({ length: 30 }, () => call(`${url}/v1/authorize`, { ...as('registry'), body: register, agent })));
    let windows = Math.ceil((Date.now() - started) / 1000) + 1; // 1 s windows the burst can have touched
    const ok = burst.filter((r) => r.status === 200);
    const limited = burst.filter((r) => r.status === 429);
    assert.equal(ok.length + limited.length, 30, burst.map((r) => r.status).join(','));
    assert.ok(limited.length >= 1, 'the burst is refused beyond the limit');
    assert.ok(ok.length >= 5 && ok.length <= 5 * windows, `at most 5 per second are served (${ok.length} in ${windows} windows)`);
    for (const r of limited) {
      assert.equal(r.json.error.code, 'rate_limited');
      assert.ok(retryAfter(r) <= 2);
    }
    for (const r of ok) assert.equal(r.headers['x-ratelimit-remaining'], undefined, 'answers within the limit carry no x-ratelimit-* headers');
    // Only answered decisions are audited.
    assert.equal(auditRows(auditPath, "event_type = 'REGISTRATION'").length, ok.length);

    // Another caller has its own budget (the limit is keyed by the authenticated identity): a caller
    // with no api grant is limited too, so it cannot flood the audit store with API_DENIED rows.
    started = Date.now();
    const ungranted = await Promise.all(Array.from({ length: 20 }, () => call(`${url}/v1/authorize`, { ...as('nogrant'), body: register, agent })));
    windows = Math.ceil((Date.now() - started) / 1000) + 1;
    const forbidden = ungranted.filter((r) => r.status === 403).length;
    const ungrantedLimited = ungranted.filter((r) => r.status === 429).length;
    assert.equal(forbidden + ungrantedLimited, 20);
    assert.ok(forbidden >= 1 && forbidden <= 5 * windows && ungrantedLimited >= 1, `403 then 429 (${forbidden} forbidden, ${ungrantedLimited} limited)`);
    assert.equal(auditRows(auditPath, "event_type = 'API_DENIED'").length, forbidden, 'one API_DENIED row per 403, none per 429');

    // The window passes: served again.
    await sleep(1_100);
    const later = await call(`${url}/v1/authorize`, { ...as('registry'), body: register, agent });
    assert.equal(later.status, 200, later.text);
  } finally {
    agent.destroy();
  }
});

test('body limit: a body over 1 MiB is 413 body_too_large; a caller without a grant gets its 403 before the body is read', async () => {
  const huge = { ...register, context: { note: 'x'.repeat(1000) }, pad: 'y'.repeat(1_100_000) };
  const r = await call(`${url}/v1/authorize`, { ...as('registry'), body: huge });
  assert.equal(r.status, 413, r.text.slice(0, 200));
  assert.equal(r.json.error.code, 'body_too_large');
  await sleep(1_100); // out of the rate-limit window of the previous test
  const denied = await call(`${url}/v1/authorize`, { ...as('nogrant'), body: huge });
  assert.equal(denied.status, 403, denied.text.slice(0, 200));
});

test('lockout: 5 bad tokens from one address lock it out (429 locked_out + Retry-After), even for a valid certificate; then it is served again', async () => {
  await sleep(1_100); // a fresh rate-limit window
  const statuses: number[] = [];
  let fifth: Reply | undefined;
  // One keep-alive connection, so the five failures land well inside the 2 s window even under load.
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 5; i++) {
      const r = await call(`${url}/v1/authorize`, { ca: pki.caCert, token: `pdp_AAAAAAAAAAA${i}_${'C'.repeat(43)}`, body: register, agent });
      statuses.push(r.status);
      fifth = r;
    }
  } finally {
    agent.destroy();
  }
  assert.deepEqual(statuses, [401, 401, 401, 401, 429], 'the fifth failure engages the lock and says so');
  assert.equal(fifth!.json.error.code, 'locked_out');
  retryAfter(fifth!);

  const locked = await call(`${url}/v1/authorize`, { ...as('registry'), body: register });
  assert.equal(locked.status, 429, `a valid certificate from the locked address: ${locked.text}`);
  assert.equal(locked.json.error.code, 'locked_out');
  const wait = retryAfter(locked);
  assert.ok(wait <= 2, `Retry-After within the --lockout of 2s: ${wait}`);
  const rows = auditRows(auditPath, "event_type = 'AUTHN_FAILURE'");
  assert.deepEqual(rows.slice(-6).map((row) => details(row).kind), ['token-unknown', 'token-unknown', 'token-unknown', 'token-unknown', 'token-unknown', 'locked-out']);
  // Health stays open while locked (probes do not authenticate).
  assert.equal((await call(`${url}/v1/health`, { ca: pki.caCert })).status, 200);

  await sleep(wait * 1000 + 200);
  const again = await call(`${url}/v1/authorize`, { ...as('registry'), body: register });
  assert.equal(again.status, 200, `served again after the lockout: ${again.text}`);
});

test('a client certificate that expires while its keep-alive connection is open is refused on the next request (401)', async () => {
  const validTo = new Date(Math.ceil((Date.now() + 4_000) / 1000) * 1000);
  await issueCertificate({
    caDir: path.join(root, 'ca'), kind: 'workload', name: 'brief', outDir: path.join(root, 'ca-certs'), spiffeId: ID.registry,
    validFrom: new Date(Date.now() - 60_000), validTo,
  });
  const brief: ClientIdentity = { ca: pki.caCert, cert: path.join(root, 'ca-certs', 'brief.crt'), key: path.join(root, 'ca-certs', 'brief.key') };
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const first = await call(`${url}/v1/authorize`, { ...brief, body: register, agent });
    assert.equal(first.status, 200, first.text);
    await sleep(Math.max(0, validTo.getTime() - Date.now()) + 1_200);
    const second = await call(`${url}/v1/authorize`, { ...brief, body: register, agent });
    assert.equal(second.status, 401, `same connection, certificate now expired: ${second.text}`);
    assert.match(second.json.error.message, /expired/);
    const rows = auditRows(auditPath, "event_type = 'AUTHN_FAILURE'");
    assert.equal(details(rows[rows.length - 1]).kind, 'certificate-expired');
  } finally {
    agent.destroy();
  }
});
