// `pdp check --replay`: decisions recorded by the real server (in-process, wired as `pdp serve`
// wires it), replayed by the real CLI (a subprocess) under changed policy sets.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { createRecorder, openAuditStore } from '../src/audit';
import { buildPolicySet, Engine } from '../src/engine';
import { decisionRows, replay, type ReplayRow } from '../src/replay';
import { buildServer, createReloader } from '../src/server';

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const PDP = path.join(REPO_ROOT, 'bin', 'pdp.js');
const run = promisify(execFile);

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.PDP_POLICIES;
  delete env.PDP_AUDIT;
  return env;
}

async function pdp(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [PDP, ...args], { cwd: REPO_ROOT, maxBuffer: 64 * 1024 * 1024, env: childEnv() });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    if (typeof err.code !== 'number') throw e;
    return { code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

const OLD_POLICY = `namespace "prod" {
  service "payment-service" {
    policy   = "write"
    identity = "spiffe://cluster/ns/prod/sa/payment"
  }
  service "payment-service" {
    policy   = "read"
    identity = "spiffe://cluster/ns/prod/sa/order"
  }
  service_prefix "ledger-" {
    policy   = "write"
    identity = "spiffe://cluster/ns/prod/sa/payment"
    cidrs    = ["10.20.0.0/16"]
  }
  policy   = "admin"
  identity = "team:ops"
}

service "catalog" {
  policy     = "read"
  identities = ["*"]
}
`;

const PAYMENT = 'spiffe://cluster/ns/prod/sa/payment';
const ORDER = 'spiffe://cluster/ns/prod/sa/order';

interface Req {
  identity: string;
  action: string;
  resource: string;
  namespace?: string;
  context?: Record<string, string>;
}

/** [request, times, the result the old set gives]. 38 decisions in all, some through a batch. */
const TRAFFIC: [Req, number, string][] = [
  [{ identity: PAYMENT, action: 'write', resource: 'service:payment-service/payment-1', namespace: 'prod', context: { event_type: 'REGISTRATION' } }, 5, 'ALLOW'],
  [{ identity: ORDER, action: 'read', resource: 'service:payment-service', namespace: 'prod' }, 4, 'ALLOW'],
  [{ identity: ORDER, action: 'write', resource: 'service:payment-service', namespace: 'prod' }, 3, 'DENY'],
  [{ identity: 'team:ops', action: 'admin', resource: 'namespace:prod/*' }, 2, 'ALLOW'],
  [{ identity: 'team:ops', action: 'write', resource: 'service:payment-service', namespace: 'prod' }, 2, 'ALLOW'],
  [{ identity: 'spiffe://cluster/ns/prod/sa/attacker', action: 'write', resource: 'service:payment-service', namespace: 'prod' }, 3, 'DENY'],
  [{ identity: PAYMENT, action: 'write', resource: 'service:ledger-eu', namespace: 'prod', context: { source_ip: '10.20.1.1' } }, 3, 'ALLOW'],
  [{ identity: PAYMENT, action: 'write', resource: 'service:ledger-eu', namespace: 'prod', context: { source_ip: '10.99.0.1' } }, 2, 'DENY'],
  [{ identity: 'team:dev', action: 'read', resource: 'service:catalog' }, 4, 'ALLOW'],
  [{ identity: 'team:dev', action: 'write', resource: 'service:catalog' }, 1, 'DENY'],
];
const BATCH: [Req, string][] = [
  [{ identity: 'team:web', action: 'read', resource: 'service:catalog' }, 'ALLOW'],
  [{ identity: 'team:web', action: 'read', resource: 'service:catalog' }, 'ALLOW'],
  [{ identity: 'team:web', action: 'read', resource: 'service:orders' }, 'DENY'],
];
const DECISIONS = TRAFFIC.reduce((n, [, times]) => n + times, 0) + BATCH.length;

let root: string;
let auditDb: string;

function policyDir(name: string, text: string, file = 'policy.hcl'): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, file), text);
  return dir;
}

/** Runs the real server over the old policy set, sends the traffic, stops it: the audit db stays. */
async function record(): Promise<void> {
  const engine = new Engine(policyDir('old', OLD_POLICY));
  const first = engine.reload();
  assert.ok(first.ok, 'the old policy set loads');
  const store = openAuditStore(auditDb);
  const recorder = createRecorder(store);
  store.refreshAllowedServices(first.policy.compiled.declaredServices);
  const reloader = createReloader({ engine, recorder, nodeName: 'replay-test', onActivated: (p) => store.refreshAllowedServices(p.compiled.declaredServices) });
  const app = buildServer({ engine, recorder, reloader, nodeName: 'replay-test' });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    assert.ok(address && typeof address === 'object');
    const url = `http://127.0.0.1:${address.port}`;
    const post = async (p: string, body: unknown) => {
      const res = await fetch(`${url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(res.status, 200, await res.clone().text());
      return res.json() as Promise<Record<string, unknown>>;
    };
    for (const [req, times, expected] of TRAFFIC) {
      for (let i = 0; i < times; i++) {
        const answer = await post('/v1/authorize', req);
        assert.equal(answer.result, expected, `old decision for ${JSON.stringify(req)}`);
      }
    }
    const batch = await post('/v1/authorize/batch', { checks: BATCH.map(([r]) => r) }) as { results: { result: string }[] };
    assert.deepEqual(batch.results.map((x) => x.result), BATCH.map(([, e]) => e));
  } finally {
    await app.close();
    await recorder.close();
    store.close();
  }
}

interface ReplayJson {
  ok: boolean;
  rows: number;
  unchanged: number;
  allow_to_deny: number;
  deny_to_allow: number;
  skipped: number;
  policy_version: string;
  flips: {
    direction: string;
    identity: string;
    action: string;
    resource: string;
    namespace: string;
    count: number;
    old: { result: string; rule: string | null };
    new: { result: string; rule: string | null; reason: string };
  }[];
}

async function replayJson(dir: string, extra: string[] = []): Promise<{ code: number; report: ReplayJson; stderr: string }> {
  const { code, stdout, stderr } = await pdp(['check', '--replay', auditDb, '--policies', dir, '--format', 'json', ...extra]);
  return { code, report: JSON.parse(stdout) as ReplayJson, stderr };
}

describe('pdp check --replay over decisions recorded by the real server', () => {
  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'pdp-replay-test-'));
    auditDb = path.join(root, 'audit.db');
    await record();
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  test('an unchanged policy set: no flip, exit 0 even with --fail-on-change', async () => {
    const dir = policyDir('same', OLD_POLICY, 'renamed.hcl');
    const { code, report } = await replayJson(dir, ['--fail-on-change']);
    assert.equal(code, 0);
    assert.equal(report.ok, true);
    assert.equal(report.rows, DECISIONS);
    assert.equal(report.unchanged, DECISIONS);
    assert.equal(report.allow_to_deny, 0);
    assert.equal(report.deny_to_allow, 0);
    assert.equal(report.skipped, 0);
    assert.deepEqual(report.flips, []);
    const text = await pdp(['check', '--replay', auditDb, '--policies', dir, '--fail-on-change']);
    assert.equal(text.code, 0);
    assert.match(text.stdout, new RegExp(`replayed ${DECISIONS} decisions: 0 allow→deny, 0 deny→allow, ${DECISIONS} unchanged`));
  });

  test('removing a grant flips exactly its decisions allow→deny', async () => {
    const without = OLD_POLICY.replace(/  service "payment-service" \{\n    policy   = "read"\n    identity = "spiffe:\/\/cluster\/ns\/prod\/sa\/order"\n  \}\n/, '');
    assert.notEqual(without, OLD_POLICY);
    const dir = policyDir('removed', without);
    const { code, report } = await replayJson(dir);
    assert.equal(code, 0, 'flips without --fail-on-change still exit 0');
    assert.equal(report.allow_to_deny, 4);
    assert.equal(report.deny_to_allow, 0);
    assert.equal(report.unchanged, DECISIONS - 4);
    assert.equal(report.flips.length, 1);
    const [flip] = report.flips;
    assert.deepEqual({ ...flip!, new: { ...flip!.new, reason: '' } }, {
      direction: 'allow_to_deny', identity: ORDER, action: 'read', resource: 'service:payment-service', namespace: 'prod', count: 4,
      old: { result: 'ALLOW', rule: 'policy.hcl:6' },
      new: { result: 'DENY', rule: null, reason: '' },
    });
    assert.match(flip!.new.reason, /default policy is deny/);
    const failing = await pdp(['check', '--replay', auditDb, '--policies', dir, '--fail-on-change']);
    assert.equal(failing.code, 1);
    assert.match(failing.stdout, /allow → deny: 4 decisions/);
    assert.match(failing.stdout, /spiffe:\/\/cluster\/ns\/prod\/sa\/order on service:payment-service \(namespace prod\)/);
    assert.match(failing.stdout, /read ×4: was ALLOW \(policy\.hcl:6\), now DENY/);
  });

  test('adding a deny and a grant flips both ways, grouped by identity and resource', async () => {
    const dir = policyDir('changed', `${OLD_POLICY}
service "catalog" {
  policy   = "deny"
  identity = "team:dev"
}

namespace "prod" {
  service "payment-service" {
    policy   = "write"
    identity = "${ORDER}"
  }
}
`);
    const { code, report } = await replayJson(dir, ['--fail-on-change']);
    assert.equal(code, 1);
    assert.equal(report.ok, false);
    assert.equal(report.allow_to_deny, 4, 'team:dev read catalog ×4');
    // order write payment-service ×3 are allowed now; team:dev write catalog stays denied (deny overrides).
    assert.equal(report.deny_to_allow, 3);
    assert.equal(report.unchanged, DECISIONS - 7);
    const summary = report.flips.map((f) => `${f.direction} ${f.identity} ${f.action} ${f.resource} ×${f.count} ${f.old.result}→${f.new.result} ${f.new.rule}`);
    assert.deepEqual(summary.sort(), [
      `allow_to_deny team:dev read service:catalog ×4 ALLOW→DENY policy.hcl:${OLD_POLICY.split('\n').length + 1}`,
      `deny_to_allow ${ORDER} write service:payment-service ×3 DENY→ALLOW policy.hcl:${OLD_POLICY.split('\n').length + 7}`,
    ].sort());
  });

  test('the recorded source address is replayed against cidrs', async () => {
    const dir = policyDir('cidrs', OLD_POLICY.replace('10.20.0.0/16', '10.99.0.0/16'));
    const { report } = await replayJson(dir);
    assert.equal(report.allow_to_deny, 3);
    assert.equal(report.deny_to_allow, 2);
    for (const f of report.flips) assert.equal(f.resource, 'service:ledger-eu');
  });

  test('a new set with errors: diagnostics and exit 1, nothing replayed', async () => {
    const dir = policyDir('broken', 'service "x" {\n  policy = "reed"\n  identity = "team:a"\n}\n');
    const result = await pdp(['check', '--replay', auditDb, '--policies', dir]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /error\[invalid-level\]/);
    assert.match(result.stderr, /nothing replayed/);
  });

  test('bad usage exits 2', async () => {
    const missing = await pdp(['check', '--replay', path.join(root, 'nope.db'), '--policies', path.join(root, 'old')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no such file/);
    const sarif = await pdp(['check', '--replay', auditDb, '--policies', path.join(root, 'old'), '--format', 'sarif']);
    assert.equal(sarif.code, 2);
    const stray = await pdp(['check', '--fail-on-change', 'policies']);
    assert.equal(stray.code, 2);
    assert.match(stray.stderr, /--fail-on-change goes with --replay/);
  });

  test('the database is opened read-only: its bytes and mtime do not change', async () => {
    const before = fs.statSync(auditDb);
    const hash = createHash('sha256').update(fs.readFileSync(auditDb)).digest('hex');
    const { code } = await replayJson(path.join(root, 'old'));
    assert.equal(code, 0);
    const after = fs.statSync(auditDb);
    assert.equal(after.mtimeMs, before.mtimeMs);
    assert.equal(after.size, before.size);
    assert.equal(createHash('sha256').update(fs.readFileSync(auditDb)).digest('hex'), hash);
  });
});

describe('replay at scale', () => {
  let dir: string;
  let db: string;
  const ROWS = 200_000;
  const OLD = 1_000;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pdp-replay-big-'));
    db = path.join(dir, 'audit.db');
    openAuditStore(db).close(); // the real schema (migrations, triggers)
    const handle = new Database(db);
    try {
      const now = new Date().toISOString();
      const old = new Date(Date.now() - 3 * 86_400_000).toISOString();
      const insert = handle.prepare(
        `INSERT INTO audit_log (timestamp, event_type, namespace, identity, source_ip, action, resource, result, reason, rule, policy_version, registry_node)
         VALUES (?, ?, 'default', ?, '127.0.0.1', ?, ?, ?, 'recorded', 'old.hcl:1', 'sha256:old', 'n1')`,
      );
      handle.transaction(() => {
        // One statement generates the rows (a per-row insert from JS costs seconds on a busy machine).
        handle.prepare(
          `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < @rows - 1)
           INSERT INTO audit_log (timestamp, event_type, namespace, identity, source_ip, action, resource, result, reason, rule, policy_version, registry_node)
           SELECT CASE WHEN i < @old THEN @oldTs ELSE @now END, 'DISCOVERY', 'default', 'team:u' || (i % 50), '127.0.0.1', 'read',
                  'service:svc-' || (i % 100), 'ALLOW', 'recorded', 'old.hcl:1', 'sha256:old', 'n1'
           FROM n`,
        ).run({ rows: ROWS, old: OLD, oldTs: old, now });
        // Not decisions about resources: never replayed.
        for (let i = 0; i < 300; i++) {
          const kind = ['ACL_CHANGE', 'AUTHN_FAILURE', 'API_DENIED'][i % 3]!;
          insert.run(now, kind, 'x', kind === 'ACL_CHANGE' ? 'reload' : kind === 'API_DENIED' ? 'admin' : null,
            kind === 'API_DENIED' ? 'api:admin' : kind === 'ACL_CHANGE' ? 'policies:/p' : null, kind === 'ACL_CHANGE' ? null : 'DENY');
        }
      })();
    } finally {
      handle.close();
    }
    fs.mkdirSync(path.join(dir, 'new'));
    fs.writeFileSync(path.join(dir, 'new', 'p.hcl'), 'service_prefix "svc-" {\n  policy = "read"\n  identity = "team:*"\n}\n\nservice "svc-53" {\n  policy = "deny"\n  identity = "team:u3"\n}\n');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('200,000 rows replay through the CLI and are all counted', async () => {
    const { code, stdout } = await pdp(['check', '--replay', db, '--policies', path.join(dir, 'new'), '--format', 'json']);
    assert.equal(code, 0);
    const report = JSON.parse(stdout) as ReplayJson;
    assert.equal(report.rows, ROWS);
    // team:u3 on svc-53: every i with i % 100 == 53 (and so i % 50 == 3).
    assert.equal(report.allow_to_deny, ROWS / 100);
    assert.equal(report.unchanged, ROWS - ROWS / 100);
    assert.equal(report.flips.length, 1);
    assert.equal(report.flips[0]!.count, ROWS / 100);
  });

  test('--since leaves older decisions out', async () => {
    const r = await pdp(['check', '--replay', db, '--policies', path.join(dir, 'new'), '--format', 'json', '--since', '1d']);
    assert.equal(r.code, 0);
    const report = JSON.parse(r.stdout) as ReplayJson;
    assert.equal(report.rows, ROWS - OLD);
    assert.equal(report.allow_to_deny, (ROWS - OLD) / 100);
  });
});

describe('replay (the library)', () => {
  const policy = () => {
    const built = buildPolicySet([{ path: 'p.hcl', text: 'service "a" {\n  policy = "read"\n  identity = "team:x"\n  cidrs = ["10.0.0.0/8"]\n}\n' }]);
    assert.ok(built.policy);
    return built.policy;
  };
  const row = (over: Partial<ReplayRow>): ReplayRow => ({ identity: 'team:x', action: 'read', resource: 'service:a', namespace: 'default', source_ip: '10.1.1.1', result: 'ALLOW', rule: 'old.hcl:1', ...over });

  test('takes any iterable, memoises per distinct request, reports progress', () => {
    function* rows(): Generator<ReplayRow> {
      for (let i = 0; i < 10_000; i++) yield row({ source_ip: i % 2 ? '10.1.1.1' : '192.168.0.1', resource: i % 4 < 2 ? 'service:a' : 'service:a/inst-1' });
    }
    let progress = 0;
    const report = replay(rows(), policy(), { onProgress: () => progress++, progressEvery: 2_500 });
    assert.equal(progress, 4);
    assert.equal(report.rows, 10_000);
    assert.equal(report.distinctRequests, 4, 'two addresses × two resource texts');
    assert.equal(report.allowToDeny, 5_000, 'the rows from 192.168.0.1');
    assert.equal(report.flips.length, 2);
    assert.ok(report.flips.every((f) => f.new.reason.includes('192.168.0.1')));
  });

  test('ALLOW_DEFAULT counts as allow; rows that are not valid requests are skipped, not fatal', () => {
    const report = replay([
      row({ result: 'ALLOW_DEFAULT' }),
      row({ result: 'DENY', source_ip: null }),
      row({ identity: null }),
      row({ resource: 'bogus' }),
      row({ source_ip: 'not-an-ip' }), // replayed without a source address: the cidrs rule does not apply
    ], policy());
    assert.equal(report.rows, 3);
    assert.equal(report.unchanged, 2);
    assert.equal(report.allowToDeny, 1);
    assert.equal(report.skipped, 2);
  });

  test('decisionRows reads only decisions, oldest first', () => {
    const handle = new Database(':memory:');
    try {
      handle.exec(`CREATE TABLE audit_log (id INTEGER PRIMARY KEY, timestamp TEXT, event_type TEXT, identity TEXT, action TEXT, resource TEXT,
        namespace TEXT, source_ip TEXT, result TEXT, rule TEXT)`);
      const insert = handle.prepare('INSERT INTO audit_log (timestamp, event_type, identity, action, resource, result) VALUES (?, ?, ?, ?, ?, ?)');
      insert.run('2025-01-01T00:00:00.000Z', 'DISCOVERY', 'a', 'read', 'service:a', 'ALLOW');
      insert.run('2025-01-02T00:00:00.000Z', 'ACL_CHANGE', 'api', 'reload', 'policies:x', null);
      insert.run('2025-01-03T00:00:00.000Z', 'AUTHN_FAILURE', 'b', null, null, 'DENY');
      insert.run('2025-01-04T00:00:00.000Z', 'API_DENIED', 'c', 'admin', 'api:admin', 'DENY');
      insert.run('2025-01-05T00:00:00.000Z', 'REGISTRATION', 'd', 'write', 'service:d', 'DENY');
      assert.deepEqual([...decisionRows(handle)].map((r) => r.identity), ['a', 'd']);
      assert.deepEqual([...decisionRows(handle, { since: '2025-01-02T00:00:00.000Z' })].map((r) => r.identity), ['d']);
    } finally {
      handle.close();
    }
  });
});
