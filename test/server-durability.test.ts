// The audit guarantees under process death: the real `pdp serve` subprocess under concurrent load,
// killed with SIGKILL (no answered decision may be missing) or stopped with SIGTERM (drains, exits 0);
// and the append-only triggers seen from a second connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { authorize, makePolicyDir, makeTempDir, removeTempDir, request, startServe, startServer, type ServeProcess } from './support/server';

const CHECKS = [
  { identity: 'spiffe://cluster/ns/prod/sa/payment', action: 'write', resource: 'service:payment-service', namespace: 'prod' },
  { identity: 'spiffe://cluster/ns/prod/sa/order', action: 'write', resource: 'service:payment-service', namespace: 'prod' },
  { identity: 'spiffe://cluster/ns/prod/sa/order', action: 'read', resource: 'service:user-service', namespace: 'prod' },
  { identity: 'team:audit', action: 'read', resource: 'service:ledger-eu', namespace: 'prod' },
  { identity: 'spiffe://cluster/ns/staging/sa/cart', action: 'write', resource: 'service:cart', namespace: 'staging' },
];

interface LoadResult {
  ids: Set<string>;
  /** Responses other than 200 (503 while closing) and transport errors, after the stop. */
  refused: number;
  errors: number;
  /** Statuses that are neither 200 nor a refusal a stopping server may give. */
  unexpected: string[];
}

/**
 * `clients` concurrent loops of single and batch decisions until `until()` is true, each request
 * bounded in time; the decision_ids of every 200 answer are collected. Unique identities defeat the
 * cache for part of the load, so both paths are exercised.
 */
function newResult(): LoadResult {
  return { ids: new Set(), refused: 0, errors: 0, unexpected: [] };
}

async function load(url: string, clients: number, until: () => boolean, result: LoadResult, maxPerClient = 20_000): Promise<LoadResult> {
  const one = async (n: number) => {
    for (let i = 0; i < maxPerClient && !until(); i++) {
      const check = { ...CHECKS[(n + i) % CHECKS.length]!, context: { source_ip: `10.20.${n}.${i % 250}`, seq: i } };
      try {
        if (i % 5 === 4) {
          const res = await request(`${url}/v1/authorize/batch`, { body: { checks: [check, CHECKS[0], CHECKS[1]] }, timeoutMs: 5000 });
          if (res.status === 200) for (const r of res.json.results) result.ids.add(r.decision_id);
          else if (res.status === 503) result.refused++;
          else result.unexpected.push(`${res.status} ${res.text.slice(0, 200)}`);
        } else {
          const res = await authorize(url, check, 5000);
          if (res.status === 200) result.ids.add(res.json.decision_id);
          else if (res.status === 503) result.refused++;
          else result.unexpected.push(`${res.status} ${res.text.slice(0, 200)}`);
        }
      } catch {
        // The server went away (connection refused or reset): the loop ends.
        result.errors++;
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, n) => one(n)));
  return result;
}

function storedDecisionIds(file: string): Set<string> {
  // A read-write connection, as an operator's would be: it recovers the WAL the killed process left.
  const db = new Database(file, { fileMustExist: true });
  try {
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    return new Set(db.prepare('SELECT decision_id FROM audit_log WHERE decision_id IS NOT NULL').pluck().all() as string[]);
  } finally {
    db.close();
  }
}

async function serveOnTemp(extra: string[] = []): Promise<{ root: string; auditPath: string; serve: ServeProcess }> {
  const root = makeTempDir('pdp-durability-');
  const policyDir = makePolicyDir(root);
  const auditPath = path.join(root, 'audit.db');
  try {
    const serve = await startServe(['--policies', policyDir, '--audit', auditPath, ...extra]);
    return { root, auditPath, serve };
  } catch (e) {
    removeTempDir(root);
    throw e;
  }
}

for (const writer of ['inline', 'thread']) test(`SIGKILL under concurrent load (--audit-writer ${writer}): every answered decision is in audit_log and the file is intact`, async (t) => {
  const { root, auditPath, serve } = await serveOnTemp(['--no-watch', '--audit-writer', writer]);
  t.after(async () => {
    await serve.stop();
    removeTempDir(root);
  });
  const started = Date.now();
  const result = newResult();
  let killedAt = 0;
  // The kill lands mid-load: after ~1.5 s and 200 answers (a loaded machine may need longer; 6 s at most).
  const killer = setInterval(() => {
    const elapsed = Date.now() - started;
    if ((elapsed >= 1500 && result.ids.size >= 200) || elapsed >= 6000) {
      clearInterval(killer);
      killedAt = Date.now();
      serve.child.kill('SIGKILL');
    }
  }, 20);
  t.after(() => clearInterval(killer));
  await load(serve.url, 8, () => (killedAt > 0 && Date.now() - killedAt > 1000) || Date.now() - started > 9000, result);
  const exit = await serve.exited;
  t.diagnostic(`${result.ids.size} answered, ${result.refused} refused, ${result.errors} clients cut off by the kill`);
  assert.equal(exit.signal, 'SIGKILL');
  assert.ok(killedAt > 0, 'killed mid-load');
  assert.deepEqual(result.unexpected, []);
  assert.ok(result.ids.size >= 50, `enough answered decisions to mean something: ${result.ids.size}`);
  assert.ok(result.errors > 0, 'some clients saw the server die under them');

  const stored = storedDecisionIds(auditPath);
  const missing = [...result.ids].filter((id) => !stored.has(id));
  assert.deepEqual(missing, [], `${missing.length} of ${result.ids.size} answered decisions are missing from audit_log`);
});

test('SIGTERM drains: exit 0, every answered decision in audit_log', async (t) => {
  const { root, auditPath, serve } = await serveOnTemp();
  t.after(async () => {
    await serve.stop();
    removeTempDir(root);
  });
  const started = Date.now();
  const result = newResult();
  let termAt = 0;
  const term = setInterval(() => {
    const elapsed = Date.now() - started;
    if ((elapsed >= 800 && result.ids.size >= 100) || elapsed >= 5000) {
      clearInterval(term);
      termAt = Date.now();
      serve.child.kill('SIGTERM');
    }
  }, 20);
  t.after(() => clearInterval(term));
  await load(serve.url, 8, () => (termAt > 0 && Date.now() - termAt > 1000) || Date.now() - started > 9000, result);
  const exitTimer = setTimeout(() => serve.child.kill('SIGKILL'), 10_000);
  const exit = await serve.exited;
  clearTimeout(exitTimer);
  t.diagnostic(`${result.ids.size} answered, ${result.refused} refused while closing, ${result.errors} clients cut off`);
  assert.ok(termAt > 0);
  assert.deepEqual(exit, { code: 0, signal: null }, `exit after SIGTERM; stderr: ${serve.stderr()}`);
  assert.ok(Date.now() - termAt < 10_000, 'stopped promptly');
  assert.match(serve.stderr(), /SIGTERM: draining/);
  assert.match(serve.stderr(), /stopped/);
  assert.deepEqual(result.unexpected, []);
  assert.ok(result.ids.size >= 50, `answered decisions: ${result.ids.size}`);

  const stored = storedDecisionIds(auditPath);
  const missing = [...result.ids].filter((id) => !stored.has(id));
  assert.deepEqual(missing, [], `${missing.length} of ${result.ids.size} answered decisions are missing after a graceful stop`);
});

test('append-only: UPDATE and DELETE on audit_log through a second connection fail', async (t) => {
  const server = await startServer();
  t.after(() => server.close());
  const res = await authorize(server.url, CHECKS[0]);
  assert.equal(res.status, 200);
  const db = new Database(server.auditPath);
  t.after(() => db.close());
  const row = db.prepare('SELECT * FROM audit_log WHERE decision_id = ?').get(res.json.decision_id) as { id: number; result: string };
  assert.ok(row);
  assert.throws(() => db.prepare("UPDATE audit_log SET result = 'DENY' WHERE id = ?").run(row.id), /append-only/);
  assert.throws(() => db.prepare('UPDATE audit_log SET identity = NULL').run(), /append-only/);
  // The DELETE trigger calls a function only pdp's own connection registers (migrations 3 and 5),
  // so in any other connection a DELETE does not even prepare, and the error names the rule.
  assert.throws(() => db.prepare('DELETE FROM audit_log WHERE id = ?').run(row.id), /no such function: audit_log is append-only; expired rows are removed only by pdp audit prune/);
  assert.throws(() => db.exec('DELETE FROM audit_log'), /no such function: audit_log is append-only; expired rows are removed only by pdp audit prune/);
  assert.throws(
    () => db.prepare("INSERT OR REPLACE INTO audit_log (id, timestamp, event_type, registry_node) VALUES (?, '2025-01-01T00:00:00.000Z', 'X', 'n')").run(row.id),
    /append-only/,
  );
  const after = db.prepare('SELECT * FROM audit_log WHERE id = ?').get(row.id);
  assert.deepEqual(after, row, 'the row is unchanged');
  // The server keeps writing after the refused statements.
  const next = await authorize(server.url, CHECKS[1]);
  assert.equal(next.status, 200);
  assert.ok(db.prepare('SELECT 1 FROM audit_log WHERE decision_id = ?').get(next.json.decision_id));
});
