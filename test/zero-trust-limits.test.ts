// Zero trust end to end, denial of service and brute force: per-caller rate limits (429 +
// Retry-After), lockout after repeated authentication failures (429 locked_out + Retry-After, then
// served again), the body limit, and a client certificate that expires while its keep-alive
// connection is still open; a flood from a locked-out address costs summary rows, not a row per
// request; refused TLS handshakes count towards the lockout. The real `pdp serve` with short limits
// (--rate-limit 5, --lockout 2s).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as https from 'node:https';
import * as path from 'node:path';
import { issueCertificate } from '../src/identity/ca';
import {
  ID, auditRows, call, details, makePki, metricValue, pdpOk, refused, sleep, startServe, tempDir, waitFor, writePolicies,
  type ClientIdentity, type Pki, type Reply, type Serve,
} from './support/zero-trust';

const tmp = tempDir('pdp-zt-limits-');
const root = tmp.dir;
let pki: Pki;
let server: Serve;
let url: string;
const auditPath = path.join(root, 'audit.db');
const tokensPath = path.join(root, 'tokens.db');
/** A valid token of an identity without any `api` grant: it authenticates, then gets 403. */
let unusedToken: string;

const as = (name: string): ClientIdentity => ({ ca: pki.caCert, cert: pki.files[name]!.cert, key: pki.files[name]!.key });
const register = { identity: ID.payment, action: 'write', resource: 'service:payment', namespace: 'prod' };

before(async () => {
  pki = await makePki(root, [ID.registry, ID.nogrant, ID.ops]);
  // Another CA of the same trust domain, and a workload claiming the registry's SPIFFE ID under it.
  const other = await makePki(root, [ID.registry], 'other-ca');
  pki.files.forged = other.files.registry!;
  writePolicies(root);
  unusedToken = /pdp_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}/.exec(await pdpOk(['token', 'create', '--identity', 'team:unused', '--tokens', tokensPath], root))![0];
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

test('lockout: 5 bad tokens from one address lock it out (429 locked_out + Retry-After), successes in between notwithstanding, even for a valid certificate; then it is served again', async () => {
  await sleep(1_100); // a fresh rate-limit window
  const statuses: number[] = [];
  let fifth: Reply | undefined;
  // One keep-alive connection, so the five failures land well inside the 2 s window even under load.
  // Two requests with a valid token come between them: a success from the address does not clear its
  // count, or whoever holds one valid credential could keep guessing others without end.
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 5; i++) {
      const r = await call(`${url}/v1/authorize`, { ca: pki.caCert, token: `pdp_AAAAAAAAAAA${i}_${'C'.repeat(43)}`, body: register, agent });
      statuses.push(r.status);
      fifth = r;
      if (i < 2) statuses.push((await call(`${url}/v1/authorize`, { ca: pki.caCert, token: unusedToken, body: register, agent })).status);
    }
  } finally {
    agent.destroy();
  }
  assert.deepEqual(statuses, [401, 403, 401, 403, 401, 401, 429], 'authenticated (then ungranted) requests in between; the fifth failure engages the lock and says so');
  assert.equal(fifth!.json.error.code, 'locked_out');
  retryAfter(fifth!);
  const rowsAtLock = auditRows(auditPath, "event_type = 'AUTHN_FAILURE'");
  assert.deepEqual(rowsAtLock.slice(-5).map((row) => details(row).kind), ['token-unknown', 'token-unknown', 'token-unknown', 'token-unknown', 'token-unknown']);
  assert.equal(details(rowsAtLock[rowsAtLock.length - 1]).lockout_started, true, 'the row of the failure that starts the lock says so');

  const locked = await call(`${url}/v1/authorize`, { ...as('registry'), body: register });
  assert.equal(locked.status, 429, `a valid certificate from the locked address: ${locked.text}`);
  assert.equal(locked.json.error.code, 'locked_out');
  const wait = retryAfter(locked);
  assert.ok(wait <= 2, `Retry-After within the --lockout of 2s: ${wait}`);
  // Health stays open while locked (probes do not authenticate).
  assert.equal((await call(`${url}/v1/health`, { ca: pki.caCert })).status, 200);

  await sleep(wait * 1000 + 200);
  const again = await call(`${url}/v1/authorize`, { ...as('registry'), body: register });
  assert.equal(again.status, 200, `served again after the lockout: ${again.text}`);
  // The refusal while locked is not a row of its own: it is counted in a summary row (next test).
  assert.ok(await waitFor(() => auditRows(auditPath, "json_extract(details, '$.kind') = 'locked-out-summary'").length > 0, 5_000), 'a summary row');
  const [summary] = auditRows(auditPath, "json_extract(details, '$.kind') = 'locked-out-summary'");
  assert.equal(details(summary).count, 1);
  assert.deepEqual(details(summary).kinds, { 'locked-out': 1 });
  assert.equal(summary!.source_ip, '127.0.0.1');
});

test('a flood from a locked-out address writes a bounded number of rows, and the summary rows count every refusal', async () => {
  const metricsText = async () => {
    const r = await call(`${url}/metrics`, as('ops'));
    assert.equal(r.status, 200, r.text);
    return r.text;
  };
  const before = await metricsText(); // also a success: the failure count starts over
  const firstNew = (auditRows(auditPath, '1 = 1').pop()?.id ?? 0) + 1;
  const flood = 600;
  const agent = new https.Agent({ keepAlive: true, maxSockets: 6 });
  const answers: Reply[] = [];
  try {
    for (let sent = 0; sent < flood;) {
      const n = Math.min(60, flood - sent);
      answers.push(...await Promise.all(Array.from({ length: n }, (_, i) => call(`${url}/v1/authorize`, { ca: pki.caCert, token: `pdp_BBBBBBBBB${String(sent + i).padStart(3, '0')}_${'C'.repeat(43)}`, body: register, agent }))));
      sent += n;
    }
  } finally {
    agent.destroy();
  }
  const floodEnded = Date.now();
  const codes = new Set(answers.map((r) => r.json?.error?.code));
  assert.deepEqual([...codes].sort(), ['locked_out', 'unauthenticated'], 'every request refused, as unauthenticated or locked out');
  assert.ok(answers.filter((r) => r.status === 429).length >= flood - 20, 'nearly all of them while locked');

  // Wait for the last summary (one per source per interval; the interval is the 2 s lockout here):
  // until every refusal is accounted for, not a fixed 2.5 s, which a loaded machine can outlast (the
  // server's interval timer fires late, then its row is committed).
  const floodRows = () => auditRows(auditPath, "event_type = 'AUTHN_FAILURE' AND id >= ?", firstNew);
  const accounted = () => floodRows().reduce((n, row) => n + (details(row).kind === 'locked-out-summary' ? details(row).count as number : 1), 0);
  assert.ok(await waitFor(() => accounted() >= flood, 15_000, 100), `every refusal written or summarised: ${accounted()} of ${flood}`);
  const rows = floodRows();
  const summaries = rows.filter((row) => details(row).kind === 'locked-out-summary');
  const individual = rows.filter((row) => details(row).kind !== 'locked-out-summary');
  assert.ok(rows.length <= 20, `${flood} refusals, ${rows.length} rows`);
  assert.ok(summaries.length >= 1);
  const summarised = summaries.reduce((n, row) => n + (details(row).count as number), 0);
  assert.equal(individual.length + summarised, flood, 'each refusal is a row of its own or counted in exactly one summary');
  for (const row of summaries) {
    const d = details(row);
    assert.equal(row.source_ip, '127.0.0.1');
    assert.equal(row.result, 'DENY');
    assert.ok(typeof d.first_at === 'string' && typeof d.last_at === 'string' && d.first_at <= d.last_at);
    assert.equal(Object.values(d.kinds as Record<string, number>).reduce((a, b) => a + b, 0), d.count);
    assert.match(row.reason!, /refused while this source was locked out/);
  }
  // Summary rows at most once per interval per source.
  const times = summaries.map((row) => Date.parse(row.timestamp));
  for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! >= 1_500, `summaries ${times[i]! - times[i - 1]!} ms apart`);

  // The metric counts every refusal, summarised or not (the lock has ended: it lasts 2 s, and began
  // before the flood ended).
  await sleep(Math.max(0, floodEnded + 2_100 - Date.now()));
  const after = await metricsText();
  const kinds = ['token-unknown', 'locked-out'];
  const delta = kinds.reduce((n, kind) => n + metricValue(after, 'pdp_authn_failures_total', `kind="${kind}"`) - metricValue(before, 'pdp_authn_failures_total', `kind="${kind}"`), 0);
  assert.equal(delta, flood);
});

test('client certificates refused at the TLS handshake count towards the lockout: the fifth locks the address out', async () => {
  await sleep(1_100);
  assert.equal((await call(`${url}/v1/authorize`, { ...as('registry'), body: register })).status, 200, 'not locked to begin with');
  const firstNew = (auditRows(auditPath, '1 = 1').pop()?.id ?? 0) + 1;
  for (let i = 0; i < 5; i++) await refused(`${url}/v1/authorize`, { ...as('forged'), body: register });
  assert.ok(await waitFor(() => auditRows(auditPath, "event_type = 'AUTHN_FAILURE' AND id >= ?", firstNew).length === 5, 5_000));
  const rows = auditRows(auditPath, "event_type = 'AUTHN_FAILURE' AND id >= ?", firstNew);
  assert.deepEqual(rows.map((row) => details(row).kind), Array(5).fill('certificate-untrusted'));
  assert.deepEqual(rows.map((row) => row.identity), Array(5).fill(ID.registry), 'the SPIFFE ID the forged certificate claims');
  assert.equal(details(rows[4]).lockout_started, true);

  const locked = await call(`${url}/v1/authorize`, { ...as('registry'), body: register });
  assert.equal(locked.status, 429, locked.text);
  assert.equal(locked.json.error.code, 'locked_out');
  // More forged connections while locked: refused, and counted into a summary, not a row each.
  for (let i = 0; i < 3; i++) await refused(`${url}/v1/authorize`, { ...as('forged'), body: register });
  await sleep(retryAfter(locked) * 1000 + 600);
  assert.ok(await waitFor(async () => (await call(`${url}/v1/authorize`, { ...as('registry'), body: register })).status === 200, 5_000), 'served again');
  const later = () => auditRows(auditPath, "event_type = 'AUTHN_FAILURE' AND id >= ?", firstNew).slice(5);
  const counted = () => later().reduce((n, row) => n + (details(row).count as number), 0);
  assert.ok(await waitFor(() => counted() >= 4, 5_000), `summarised: ${counted()}`);
  assert.ok(later().every((row) => details(row).kind === 'locked-out-summary'), JSON.stringify(later().map((row) => details(row).kind)));
  assert.equal(counted(), 4, 'the 429 and three refused handshakes');
  const kinds = later().reduce((all, row) => ({ ...all, ...(details(row).kinds as Record<string, number>) }), {} as Record<string, number>);
  assert.ok(kinds['locked-out']! >= 1, JSON.stringify(kinds));
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
