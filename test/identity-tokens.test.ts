import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { openTokenStore, TokenError, MAX_TOKEN_TTL_MS, tokenId, checkTokenIdentity } from '../src/identity/tokens';
import { FailureTracker } from '../src/identity/lockout';
import { scratchDir } from './support/cli';

const MIN = 60_000;
const T0 = new Date('2030-01-01T00:00:00Z');
const at = (ms: number) => new Date(T0.getTime() + ms);

/** A database path in a fresh directory, removed when the test (or hook) that made it ends. */
function tmpfile(): string {
  return path.join(scratchDir('pdp-tokens-').dir, 'tokens.db');
}

test('create and validate a token; its text has the documented shape', () => {
  const store = openTokenStore(tmpfile());
  try {
    const c = store.create({ identity: 'team:ops', ttlMs: 30 * MIN, now: T0, description: 'ci job' });
    assert.match(c.token, /^pdp_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
    assert.equal(c.token.slice(4, 16), c.id);
    assert.equal(tokenId(c.token), c.id);
    assert.equal(c.expiresAt.getTime(), T0.getTime() + 30 * MIN);
    assert.deepEqual(store.validate(c.token, at(MIN)), { ok: true, identity: 'team:ops', id: c.id, expiresAt: c.expiresAt });
    const spiffe = store.create({ identity: 'spiffe://cluster/ns/prod/sa/order', now: T0 });
    assert.equal(spiffe.expiresAt.getTime() - T0.getTime(), 60 * MIN, 'default ttl 1h');
    const v = store.validate(spiffe.token, T0);
    assert.ok(v.ok && v.identity === 'spiffe://cluster/ns/prod/sa/order');
  } finally {
    store.close();
  }
});

test('wrong secret, unknown id, malformed, expired and revoked tokens all fail without echoing the token', () => {
  const store = openTokenStore(tmpfile());
  try {
    const c = store.create({ identity: 'team:ops', ttlMs: 10 * MIN, now: T0 });
    const secret = c.token.slice(17);
    const flipped = secret[0] === 'A' ? 'B' + secret.slice(1) : 'A' + secret.slice(1);
    const cases: Array<[string, Date, string]> = [
      [`pdp_${c.id}_${flipped}`, T0, 'mismatch'],
      [`pdp_ZZZZZZZZZZZZ_${secret}`, T0, 'unknown'],
      [c.token.slice(0, -1), T0, 'malformed'],
      [`${c.token}x`, T0, 'malformed'],
      ['Bearer ' + c.token, T0, 'malformed'],
      ['', T0, 'malformed'],
      [c.token, at(10 * MIN), 'expired'],
      [c.token, at(11 * MIN), 'expired'],
    ];
    for (const [token, now, code] of cases) {
      const r = store.validate(token, now);
      assert.ok(!r.ok, `${code} must fail`);
      assert.equal(r.code, code);
      assert.ok(!r.reason.includes(secret) && !r.reason.includes(flipped), 'no secret in the reason');
    }
    assert.match((store.validate(c.token, at(11 * MIN)) as { reason: string }).reason, /expired at 2030-01-01T00:10:00\.000Z/);
    assert.ok(!store.validate(undefined as unknown as string, T0).ok);

    assert.equal(store.revoke(c.id, at(MIN)), true);
    const r = store.validate(c.token, at(2 * MIN));
    assert.ok(!r.ok && r.code === 'revoked');
    assert.equal(store.revoke(c.id, at(3 * MIN)), false, 'second revoke is a no-op');
    assert.throws(() => store.revoke('AAAAAAAAAAAA', T0), (e: unknown) => e instanceof TokenError && e.code === 'not-found');
    assert.throws(() => store.revoke(c.token, T0), (e: unknown) => e instanceof TokenError && !e.message.includes(secret));
  } finally {
    store.close();
  }
});

test('ttl longer than 1h and bad identities are refused', () => {
  const store = openTokenStore(tmpfile());
  try {
    assert.throws(() => store.create({ identity: 'team:ops', ttlMs: MAX_TOKEN_TTL_MS + 1, now: T0 }), (e: unknown) => e instanceof TokenError && e.code === 'ttl' && /maximum of 1h/.test(e.message));
    assert.throws(() => store.create({ identity: 'team:ops', ttlMs: 0, now: T0 }), TokenError);
    store.create({ identity: 'team:ops', ttlMs: MAX_TOKEN_TTL_MS, now: T0 });
    for (const bad of ['', ' ', 'team ops', 'spiffe://cluster/ns/*/sa/x', 'spiffe://Cluster/x', 'role:admin', 'anonymous', '*', 'a\nb']) {
      assert.throws(() => store.create({ identity: bad, now: T0 }), (e: unknown) => e instanceof TokenError && e.code === 'invalid', JSON.stringify(bad));
      assert.ok(checkTokenIdentity(bad));
    }
    assert.equal(checkTokenIdentity('user:alice@example.com'), undefined);
  } finally {
    store.close();
  }
});

test('a token pasted into an identity or a description is refused, never stored or quoted', () => {
  const file = tmpfile();
  const store = openTokenStore(file);
  try {
    const live = store.create({ identity: 'team:ops', now: T0 });
    const secret = live.token.slice(`pdp_${live.id}_`.length);
    for (const identity of [live.token, `user:${live.token}`, `PDP_${live.token.slice(4)}`]) {
      assert.throws(() => store.create({ identity, now: T0 }), (e: unknown) => e instanceof TokenError && /holds a pdp token/.test(e.message) && !e.message.includes(secret), identity.slice(0, 20));
    }
    assert.throws(() => store.create({ identity: 'team:ci', description: `replaces ${live.token}`, now: T0 }), (e: unknown) => e instanceof TokenError && /refer to a token by its id/.test(e.message) && !e.message.includes(secret));
    assert.equal(store.list(T0).length, 1, 'nothing was stored');
  } finally {
    store.close();
  }
  const bytes = Buffer.concat(['', '-wal'].filter((x) => fs.existsSync(file + x)).map((x) => fs.readFileSync(file + x)));
  assert.ok(!bytes.includes(Buffer.from('replaces')), 'no trace of the refused description');
});

test('only the SHA-256 of the secret is stored', () => {
  const file = tmpfile();
  const store = openTokenStore(file);
  const c = store.create({ identity: 'team:ops', now: T0, description: 'stored?' });
  const secret = c.token.slice(17);
  store.close();
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);

  const bytes = Buffer.concat([file, `${file}-wal`].filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f)));
  assert.equal(bytes.indexOf(secret), -1, 'secret text absent');
  assert.equal(bytes.indexOf(c.token), -1, 'token text absent');
  assert.equal(bytes.indexOf(Buffer.from(secret, 'base64url')), -1, 'secret bytes absent');
  const hash = createHash('sha256').update(secret).digest();
  assert.notEqual(bytes.indexOf(hash), -1, 'the hash is there');

  const db = new Database(file, { readonly: true });
  try {
    const rows = db.prepare('SELECT * FROM tokens').all() as Array<Record<string, unknown>>;
    assert.equal(rows.length, 1);
    assert.deepEqual(Object.keys(rows[0]!).sort(), ['created_at', 'description', 'expires_at', 'id', 'identity', 'revoked_at', 'secret_sha256']);
    assert.deepEqual(rows[0]!.secret_sha256, hash);
    for (const value of Object.values(rows[0]!)) assert.ok(!String(value).includes(secret));
  } finally {
    db.close();
  }
  const again = openTokenStore(file);
  assert.ok(again.validate(c.token, T0).ok, 'a reopened store still validates');
  const listed = again.list(T0);
  assert.equal(listed.length, 1);
  assert.ok(!JSON.stringify(listed).includes(secret));
  assert.equal(listed[0]!.status, 'active');
  assert.equal(again.list(at(2 * 60 * MIN))[0]!.status, 'expired');
  again.close();
});

test('a second store on the same file sees creations and revocations at once', () => {
  const file = tmpfile();
  const a = openTokenStore(file);
  const b = openTokenStore(file);
  try {
    const unknown = `pdp_${'Q'.repeat(12)}_${'x'.repeat(43)}`;
    assert.ok(!b.validate(unknown, T0).ok);
    const c = a.create({ identity: 'team:ops', now: T0 });
    assert.ok(b.validate(c.token, T0).ok, 'created by A, valid in B');
    a.revoke(c.id, at(MIN));
    const r = b.validate(c.token, at(MIN));
    assert.ok(!r.ok && r.code === 'revoked', 'revoked by A, refused by B');
    assert.equal(b.list(at(MIN))[0]!.status, 'revoked');
    assert.equal(b.prune(at(2 * 60 * MIN)), 1);
    assert.equal(a.list(T0).length, 0);
  } finally {
    a.close();
    b.close();
  }
});

test('openTokenStore with create: false does not create a file', () => {
  const file = tmpfile();
  assert.throws(() => openTokenStore(file, { create: false }), /no token store/);
  assert.equal(fs.existsSync(file), false);
});

// ---------------------------------------------------------------------------------------------
// lockout

test('FailureTracker locks after 5 failures within the window and unlocks after the lockout', () => {
  const f = new FailureTracker();
  for (let i = 0; i < 4; i++) assert.deepEqual(f.recordFailure('10.0.0.1', at(i * MIN)), { locked: false });
  assert.deepEqual(f.isLocked('10.0.0.1', at(4 * MIN)), { locked: false, retryAfterSeconds: 0 });
  const fifth = f.recordFailure('10.0.0.1', at(4 * MIN));
  assert.deepEqual(fifth, { locked: true, until: T0.getTime() + 4 * MIN + 15 * MIN });
  assert.deepEqual(f.isLocked('10.0.0.1', at(4 * MIN)), { locked: true, retryAfterSeconds: 900 });
  assert.deepEqual(f.isLocked('10.0.0.1', at(18 * MIN + 30_500)), { locked: true, retryAfterSeconds: 30 });
  assert.equal(f.isLocked('10.0.0.2', at(5 * MIN)).locked, false, 'other sources unaffected');
  // failures during the lock do not extend it
  assert.equal(f.recordFailure('10.0.0.1', at(10 * MIN)).until, T0.getTime() + 19 * MIN);
  assert.equal(f.isLocked('10.0.0.1', at(19 * MIN)).locked, false, 'unlocked when the lockout ends');
  // after a lock the count starts again
  assert.equal(f.recordFailure('10.0.0.1', at(20 * MIN)).locked, false);
});

test('FailureTracker counts only failures inside the window', () => {
  const f = new FailureTracker({ maxFailures: 5, windowMs: 15 * MIN, lockoutMs: 15 * MIN });
  for (let i = 0; i < 20; i++) assert.equal(f.recordFailure('s', at(i * 4 * MIN)).locked, false, `spaced failure ${i}`);
});

test('FailureTracker memory is capped and a spray of sources cannot evict an active lock', () => {
  const f = new FailureTracker({ maxEntries: 100, maxLocked: 50 });
  for (let i = 0; i < 5; i++) f.recordFailure('attacker', at(i));
  assert.equal(f.isLocked('attacker', at(10)).locked, true);
  for (let i = 0; i < 20_000; i++) f.recordFailure(`198.51.${i >> 8}.${i & 255}`, at(100));
  assert.ok(f.size <= 150, `size ${f.size}`);
  assert.equal(f.isLocked('attacker', at(200)).locked, true);
  // locking many sources is bounded too
  for (let i = 0; i < 200; i++) for (let k = 0; k < 5; k++) f.recordFailure(`locked-${i}`, at(300));
  assert.ok(f.size <= 150, `size ${f.size}`);
  assert.throws(() => new FailureTracker({ maxFailures: 0 }), RangeError);
});
