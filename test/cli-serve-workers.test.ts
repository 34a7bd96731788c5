// `pdp serve --workers N` through the real subprocess: both workers answer and every answered
// decision is in the audit log; an API reload reaches every worker; a start-up failure exits 1
// promptly; a dead worker is replaced (and workers that keep dying stop it with exit 1); a worker
// whose primary was SIGKILLed drains before it exits; /metrics sums every worker.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import type { OtherWorkerReload } from '../src/server';
import { startServer, writePolicyFile } from './support/server';

const root = path.join(__dirname, '../..');

interface Cluster {
  child: ChildProcessByStdio<null, Readable, Readable>;
  url: string;
  port: number;
  stderr(): string;
  /** Resolves with the next stderr text matching `re` (searching from `from`, default: everything so far). */
  waitFor(re: RegExp, ms?: number): Promise<RegExpExecArray>;
  exited: Promise<number | null>;
  /** The pid each worker last reported ready with. */
  workerPid(worker: number): number;
}

function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pdp-workers-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Spawns `pdp serve --workers N …`; with `ready` (default) waits for the listening line. */
async function startCluster(t: TestContext, args: string[], workers: number, opts: { ready?: boolean; onSpawn?: (c: Cluster) => void } = {}): Promise<Cluster> {
  const child = spawn(process.execPath, ['bin/pdp.js', 'serve', '--listen', '127.0.0.1:0', ...args, '--workers', String(workers)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const watchers: (() => void)[] = [];
  child.stdout.on('data', (chunk) => { out += chunk; for (const w of [...watchers]) w(); });
  child.stderr.on('data', (chunk) => { err += chunk; for (const w of [...watchers]) w(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(() => {
    // Whatever a failed test left running: the primary and every worker it reported.
    for (const m of err.matchAll(/\(pid (\d+)\)/g)) {
      try { process.kill(Number(m[1]), 'SIGKILL'); } catch { /* gone */ }
    }
    child.kill('SIGKILL');
  });
  const waitFor = (re: RegExp, ms = 20_000, stream: () => string = () => err) => new Promise<RegExpExecArray>((resolve, reject) => {
    const check = () => {
      const m = re.exec(stream());
      if (!m) return false;
      watchers.splice(watchers.indexOf(check), 1);
      clearTimeout(timer);
      resolve(m);
      return true;
    };
    const timer = setTimeout(() => {
      watchers.splice(watchers.indexOf(check), 1);
      reject(new Error(`timed out waiting for ${re}; stdout: ${out}\nstderr: ${err}`));
    }, ms);
    watchers.push(check);
    check();
  });
  const cluster: Cluster = {
    child, url: '', port: 0, exited,
    stderr: () => err,
    waitFor: (re, ms) => waitFor(re, ms),
    workerPid(worker) {
      const all = [...err.matchAll(new RegExp(`worker ${worker} ready \\(pid (\\d+)\\)`, 'g'))];
      assert.ok(all.length > 0, `worker ${worker} never reported ready`);
      return Number(all[all.length - 1]![1]);
    },
  };
  opts.onSpawn?.(cluster);
  if (opts.ready === false) return cluster;
  const m = await Promise.race([
    waitFor(new RegExp(`listening on (http://\\S+):(\\d+) \\(${workers} workers\\)`), 20_000, () => out),
    exited.then((code) => { throw new Error(`exited ${code} before listening: ${err}`); }),
  ]);
  cluster.url = `${m[1]}:${m[2]}`;
  cluster.port = Number(m[2]);
  return cluster;
}

/** One HTTP request on its own connection by default (so node:cluster hands it to the next worker). */
function request(url: string, method: string, body?: unknown, agent: http.Agent | false = false): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(url, { method, agent, headers: data === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let parsed: unknown = text;
        try { parsed = JSON.parse(text); } catch { /* text */ }
        resolve({ status: res.statusCode!, body: parsed });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    // A request on a connection whose worker was just killed can get neither an answer nor a reset
    // (node:cluster may have been handing the connection over): a client's own timeout ends it, as a
    // PEP's would, and it counts as a failed request instead of hanging the test.
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
    req.end(data);
  });
}

const decide = (url: string, check: Record<string, unknown>, agent: http.Agent | false = false) => request(`${url}/v1/authorize`, 'POST', check, agent);

function auditRows(db: string, where = '1 = 1'): { decision_id: string | null; registry_node: string; event_type: string; identity: string | null; action: string | null }[] {
  const conn = new Database(db, { readonly: true });
  try {
    return conn.prepare(`SELECT decision_id, registry_node, event_type, identity, action FROM audit_log WHERE ${where}`).all() as never;
  } finally {
    conn.close();
  }
}

function assertAudited(db: string, ids: string[]): void {
  const stored = new Set(auditRows(db, 'decision_id IS NOT NULL').map((r) => r.decision_id));
  const missing = ids.filter((id) => !stored.has(id));
  assert.deepEqual(missing, [], `${missing.length} of ${ids.length} answered decisions are missing from audit_log`);
}

/** Resolves once `worker` has reported ready with a pid other than `oldPid`. */
async function waitForReplacement(c: Cluster, worker: number, oldPid: number): Promise<number> {
  const deadline = Date.now() + 20_000;
  while (c.workerPid(worker) === oldPid) {
    if (Date.now() > deadline) throw new Error(`worker ${worker} was not replaced: ${c.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return c.workerPid(worker);
}

/** Whether `pid` still runs after up to `ms` (an orphaned worker may take a moment to be reaped). */
async function stillAlive(pid: number, ms = 5_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const policy = (verb: 'read' | 'deny') => `namespace "prod" {\n  service "svc" {\n    policy   = "${verb}"\n    identity = "team:a"\n  }\n}\n`;
const check = { identity: 'team:a', action: 'read', resource: 'service:svc', namespace: 'prod' };

test('two workers share the port and lose no audit row', async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'audit.db');
  const c = await startCluster(t, ['--policies', 'policies', '--audit', db], 2);
  const ids: string[] = [];
  await Promise.all(Array.from({ length: 8 }, async () => {
    for (let i = 0; i < 25; i++) {
      const res = await fetch(`${c.url}/v1/authorize`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ identity: 'team:ops', action: 'admin', resource: `service:svc-${i}`, namespace: 'prod' }),
      });
      assert.equal(res.status, 200);
      const body = (await res.json()) as { decision_id: string; result: string };
      assert.equal(body.result, 'ALLOW');
      ids.push(body.decision_id);
    }
  }));
  c.child.kill('SIGTERM');
  assert.equal(await c.exited, 0);
  const rows = auditRows(db, "event_type = 'ADMIN'");
  assert.equal(ids.length, 200);
  assertAudited(db, ids);
  const nodes = new Set(rows.map((r) => r.registry_node.split('/').pop()));
  assert.deepEqual([...nodes].sort(), ['w1', 'w2'], 'both workers answered');
});

test('POST /v1/policies/reload reloads every worker before it answers', async (t) => {
  const dir = tempDir(t);
  const policies = path.join(dir, 'policies');
  fs.mkdirSync(policies);
  fs.writeFileSync(path.join(policies, 'p.hcl'), policy('read'));
  const db = path.join(dir, 'audit.db');
  // --no-watch: only the API may carry the change (no file watcher racing it). A SIGHUP sent as soon
  // as the first worker is ready reaches the others once they are ready, and kills none of them.
  const c = await startCluster(t, ['--policies', policies, '--audit', db, '--no-watch'], 3, {
    onSpawn: (cl) => void cl.waitFor(/worker \d ready/).then(() => cl.child.kill('SIGHUP'), () => undefined),
  });
  const before = await Promise.all(Array.from({ length: 30 }, () => decide(c.url, check)));
  for (const r of before) assert.equal(r.body.result, 'ALLOW');
  const v1 = before[0]!.body.policy_version as string;

  fs.writeFileSync(path.join(policies, 'p.hcl'), policy('deny'));
  const reload = await request(`${c.url}/v1/policies/reload`, 'POST');
  assert.equal(reload.status, 200, JSON.stringify(reload.body));
  assert.equal(reload.body.changed, true);
  assert.equal(reload.body.previous_version, v1);
  const v2 = reload.body.policy_version as string;
  assert.notEqual(v2, v1);

  // Every decision from now on, on whichever worker (one connection each, so spread over all three).
  const after: { status: number; body: any }[] = [];
  for (let round = 0; round < 10; round++) after.push(...await Promise.all(Array.from({ length: 30 }, () => decide(c.url, check))));
  for (const r of after) {
    assert.equal(r.status, 200);
    assert.deepEqual([r.body.result, r.body.policy_version], ['DENY', v2], 'a worker still answers with the old version');
  }
  const ids = new Set(after.map((r) => r.body.decision_id as string));
  const nodes = new Set(auditRows(db, 'decision_id IS NOT NULL').filter((r) => ids.has(r.decision_id!)).map((r) => r.registry_node.split('/').pop()));
  assert.deepEqual([...nodes].sort(), ['w1', 'w2', 'w3'], 'decisions were spread over every worker');
  // Each worker audited its own switch to the new version.
  const switched = auditRows(db, "event_type = 'ACL_CHANGE' AND action = 'reload'").filter((r) => r.identity === 'api:loopback');
  assert.deepEqual(switched.map((r) => r.registry_node.split('/').pop()).sort(), ['w1', 'w2', 'w3']);
  assert.doesNotMatch(c.stderr(), /failed to start|exited \(/);

  c.child.kill('SIGTERM');
  assert.equal(await c.exited, 0);
});

test('a start-up failure stops every worker and exits 1 promptly', async (t) => {
  const dir = tempDir(t);
  // The port is taken.
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => blocker.close());
  const port = (blocker.address() as net.AddressInfo).port;
  const started = Date.now();
  const taken = await startCluster(t, ['--policies', 'policies', '--audit', path.join(dir, 'a.db'), '--listen', `127.0.0.1:${port}`], 2, { ready: false });
  const code = await Promise.race([taken.exited, new Promise((resolve) => setTimeout(() => resolve('hung'), 15_000))]);
  assert.equal(code, 1, taken.stderr());
  assert.match(taken.stderr(), /cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/);
  // The primary asks for the port before forking: no worker starts, and no start-up row is written.
  assert.doesNotMatch(taken.stderr(), /worker \d ready/);
  assert.equal(fs.existsSync(path.join(dir, 'a.db')), false, 'no audit file, so no ACL_CHANGE row for a version that never served');
  assert.ok(Date.now() - started < 15_000);

  // The audit store cannot be opened.
  const noAudit = await startCluster(t, ['--policies', 'policies', '--audit', '/nonexistent/dir/a.db'], 2, { ready: false });
  const code2 = await Promise.race([noAudit.exited, new Promise((resolve) => setTimeout(() => resolve('hung'), 15_000))]);
  assert.equal(code2, 1, noAudit.stderr());
  assert.match(noAudit.stderr(), /nonexistent/);
  assert.match(noAudit.stderr(), /failed to start \(exit code 1\); stopping/);
});

test('a worker killed under load is replaced; every answered decision is audited', { timeout: 90_000 }, async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'audit.db');
  const c = await startCluster(t, ['--policies', 'policies', '--audit', db], 2);
  const victim = c.workerPid(1);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  t.after(() => agent.destroy());
  const ids: string[] = [];
  let errors = 0;
  let running = true;
  const clients = Array.from({ length: 4 }, async () => {
    while (running) {
      try {
        const r = await decide(c.url, { identity: 'team:ops', action: 'admin', resource: 'service:svc', namespace: 'prod' }, agent);
        if (r.status === 200) ids.push(r.body.decision_id);
        else errors++;
      } catch {
        errors++; // a connection the killed worker held
      }
    }
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  process.kill(victim, 'SIGKILL');
  await c.waitFor(new RegExp(`worker 1 \\(pid ${victim}\\) exited \\(signal SIGKILL\\); starting a replacement`));
  const replacement = await waitForReplacement(c, 1, victim);
  assert.notEqual(replacement, victim);
  const answeredBefore = ids.length;
  await new Promise((resolve) => setTimeout(resolve, 500));
  running = false;
  await Promise.all(clients);
  assert.ok(ids.length > answeredBefore, 'the service kept answering after the replacement');
  assert.ok(errors <= 20, `${errors} failed requests`);
  // Fresh connections reach the replacement as well.
  const spread = await Promise.all(Array.from({ length: 10 }, () => decide(c.url, { identity: 'team:ops', action: 'admin', resource: 'service:svc', namespace: 'prod' })));
  for (const r of spread) { assert.equal(r.status, 200); ids.push(r.body.decision_id); }
  c.child.kill('SIGTERM');
  assert.equal(await c.exited, 0);
  assertAudited(db, ids);
  assert.ok(!(await stillAlive(replacement)));
});

test('workers that keep dying stop the PDP with exit 1', async (t) => {
  const dir = tempDir(t);
  const c = await startCluster(t, ['--policies', 'policies', '--audit', path.join(dir, 'audit.db')], 2);
  // With 2 workers, a third death within a minute gives up.
  for (let i = 0; i < 3; i++) {
    const pid = c.workerPid(1);
    process.kill(pid, 'SIGKILL');
    if (i < 2) await waitForReplacement(c, 1, pid);
  }
  const code = await Promise.race([c.exited, new Promise((resolve) => setTimeout(() => resolve('hung'), 20_000))]);
  assert.equal(code, 1, c.stderr());
  assert.match(c.stderr(), /3 worker deaths within 60 s, giving up; stopping/);
});

test('workers whose primary is SIGKILLed drain in-flight requests, audit them, then exit', async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'audit.db');
  const c = await startCluster(t, ['--policies', 'policies', '--audit', db], 2);
  const workers = [c.workerPid(1), c.workerPid(2)];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 6 });
  t.after(() => agent.destroy());
  // Batches of 500 checks keep requests in flight (decided, then committed as one group).
  const batch = { checks: Array.from({ length: 500 }, (_, i) => ({ identity: 'team:ops', action: 'admin', resource: `service:svc-${i}`, namespace: 'prod' })) };
  const ids: string[] = [];
  let killedAt = 0;
  let answeredAfterKill = 0;
  const clients = Array.from({ length: 6 }, async () => {
    for (;;) {
      const sent = Date.now();
      try {
        const r = await request(`${c.url}/v1/authorize/batch`, 'POST', batch, agent);
        if (r.status === 200) {
          for (const d of r.body.results) ids.push(d.decision_id);
          if (killedAt && sent < killedAt) answeredAfterKill++;
        } else {
          assert.equal(r.body.error?.code, 'shutting_down', JSON.stringify(r.body));
        }
        if (killedAt) return;
      } catch {
        if (killedAt) return; // the workers are gone
        throw new Error('a request failed before the primary was killed');
      }
    }
  });
  await new Promise((resolve) => setTimeout(resolve, 400));
  killedAt = Date.now();
  c.child.kill('SIGKILL');
  await Promise.all(clients);
  // The workers share the primary's stderr: it ends once both have exited.
  const ended = new Promise<void>((resolve) => c.child.stderr.once('end', () => resolve()));
  await Promise.race([ended, new Promise((_, reject) => setTimeout(() => reject(new Error(`workers still running: ${c.stderr()}`)), 15_000))]);
  assert.equal(c.stderr().match(/primary gone: draining/g)?.length, 2, c.stderr());
  assert.equal(c.stderr().match(/pdp serve: stopped/g)?.length, 2, c.stderr());
  for (const pid of workers) assert.ok(!(await stillAlive(pid)), `worker ${pid} still running`);
  assert.ok(answeredAfterKill > 0, 'requests in flight at the kill were answered');
  assertAudited(db, ids);
});

test('/metrics sums every worker', async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'audit.db');
  const c = await startCluster(t, ['--policies', 'policies', '--audit', db], 3);
  const n = 90;
  const answers = await Promise.all(Array.from({ length: n }, () => decide(c.url, { identity: 'team:ops', action: 'admin', resource: 'service:svc', namespace: 'prod' })));
  for (const a of answers) assert.equal(a.status, 200);
  const nodes = new Set(auditRows(db, "event_type = 'ADMIN'").map((r) => r.registry_node));
  assert.ok(nodes.size >= 2, 'decisions were spread over workers');
  // Any worker answering the scrape gives the same totals.
  for (let i = 0; i < 3; i++) {
    const scrape = await request(`${c.url}/metrics`, 'GET');
    assert.equal(scrape.status, 200);
    const text = scrape.body as string;
    assert.match(text, new RegExp(`^pdp_decisions_total\\{result="ALLOW"\\} ${n}$`, 'm'));
    assert.match(text, new RegExp(`^pdp_decision_duration_seconds_count ${n}$`, 'm'));
    assert.match(text, new RegExp(`^pdp_decision_duration_seconds_bucket\\{le="\\+Inf"\\} ${n}$`, 'm'));
    assert.match(text, new RegExp(`^pdp_cache_hits_total ${n - 3}$`, 'm'), 'one miss per worker');
    // Gauges: writable is the minimum over workers, rules the maximum (every worker serves the same set).
    assert.match(text, /^pdp_audit_writable 1$/m);
    const rules = /^pdp_policy_rules (\d+)$/m.exec(text);
    assert.ok(rules && Number(rules[1]) > 0 && Number(rules[1]) < 100, `pdp_policy_rules: ${rules?.[1]}`);
    assert.equal(text.match(/^# TYPE pdp_decisions_total counter$/gm)?.length, 1);
  }
  c.child.kill('SIGTERM');
  assert.equal(await c.exited, 0);
});

test('a reload another worker does not confirm, and a scrape not every worker answers, are 503 workers_unavailable', async (t) => {
  // In-process, with a fake cluster: what the answering worker does with the others' answers.
  let others: OtherWorkerReload[] | Error = [];
  let metrics: string | Error = '';
  const server = await startServer({
    files: { 'p.hcl': policy('read') },
    cluster: {
      reloadOthers: async () => { if (others instanceof Error) throw others; return others; },
      metrics: async () => { if (metrics instanceof Error) throw metrics; return metrics; },
    },
  });
  t.after(() => server.close());
  const reload = () => request(`${server.url}/v1/policies/reload`, 'POST');

  writePolicyFile(server.policyDir, 'p.hcl', policy('deny'));
  const v2 = (await reload()).body.policy_version as string; // no other worker: plain success
  writePolicyFile(server.policyDir, 'p.hcl', policy('read'));
  others = [
    { worker: 2, outcome: { ok: false, message: 'the policy change could not be written to the audit store', serving: v2, auditUnavailable: true } },
    { worker: 3, error: 'timeout' },
  ];
  const refused = await reload();
  assert.equal(refused.status, 503);
  assert.equal(refused.body.error.code, 'workers_unavailable');
  assert.match(refused.body.error.message, /worker 2 could not write its ACL_CHANGE row and still serves sha256:\w+ \(it retries\); worker 3 did not answer in time; retry the reload/);
  assert.deepEqual(refused.body.error.workers, [{ worker: 2, policy_version: v2 }, { worker: 3, policy_version: null }]);

  others = new Error('the primary process is gone');
  const unreachable = await reload();
  assert.equal(unreachable.status, 503);
  assert.match(unreachable.body.error.message, /could not be reached \(the primary process is gone\)/);

  // Every other worker on the same version: success.
  const current = unreachable.body.error.policy_version as string;
  others = [{ worker: 2, outcome: { ok: true, version: current } }];
  const ok = await reload();
  assert.equal(ok.status, 200, JSON.stringify(ok.body));

  metrics = 'pdp_decisions_total{result="ALLOW"} 7\n';
  const scrape = await request(`${server.url}/metrics`, 'GET');
  assert.equal(scrape.body, metrics);
  metrics = new Error('worker 2 did not answer in time');
  const failed = await request(`${server.url}/metrics`, 'GET');
  assert.equal(failed.status, 503);
  assert.equal(failed.body.error.code, 'workers_unavailable');
});
