// Policy reloads through real parts: the HTTP endpoint (in-process server), SIGHUP and file changes
// (the real `pdp serve` subprocess), and a race between reloads and cached decisions that must
// never produce an answer its own policy_version would not give.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { policyVersion, readPolicyDir } from '../src/engine';
import {
  allRows, assertNoLeak, authorize, makePolicyDir, makeTempDir, removeTempDir, request, rowByDecision, startServe, startServer, startServerWithLockHolder,
  waitFor, withDb, writePolicyFile, type AuditLogRow,
} from './support/server';

const WEB_READ = 'service "web" {\n  policy   = "read"\n  identity = "team:web"\n}\n';
const WEB_WRITE_AND_API = 'service "web" {\n  policy   = "write"\n  identity = "team:web"\n}\n\nnamespace "prod" {\n  service "api" {\n    policy   = "read"\n    identity = "team:web"\n  }\n}\n';
const BROKEN = 'service "web" {\n  policy   = "write"\n  identty  = "team:web"\n}\n';

// The ACL_CHANGE rows of reloads (the start-up row of each server is tested on its own below).
const aclChanges = (file: string): AuditLogRow[] => allRows(file).filter((r) => r.event_type === 'ACL_CHANGE' && r.action === 'reload');
const allowedServices = (file: string) => withDb(file, (db) => db.prepare('SELECT name, namespace FROM allowed_services ORDER BY namespace, name').all());
const versionOf = (files: Record<string, string>) => policyVersion(Object.keys(files).sort().map((p) => ({ path: p, text: files[p]! })));

describe('POST /v1/policies/reload', () => {
  test('a change that grants access without changing a rule line (a role member, an api grant, a setting) is reported and audited', async (t) => {
    const roles = (members: string) => `role "ops" {\n  identities = [${members}]\n}\n`;
    const grant = 'namespace "prod" {\n  policy   = "admin"\n  identity = "role:ops"\n}\n';
    const api = (who: string) => `api "admin" {\n  identity = "${who}"\n}\n`;
    const settings = (defaultPolicy: string) => `settings {\n  default_policy = "${defaultPolicy}"\n}\n`;
    const server = await startServer({ files: { 'roles.hcl': roles('"team:ops"'), 'grants.hcl': grant, 'api.hcl': api('team:ops'), 'settings.hcl': settings('deny') } });
    t.after(() => server.close());
    const evil = { identity: 'team:evil', action: 'admin', resource: 'service:ledger', namespace: 'prod' };
    assert.equal((await authorize(server.url, evil)).json.result, 'DENY');

    writePolicyFile(server.policyDir, 'roles.hcl', roles('"team:ops", "team:evil"'));
    writePolicyFile(server.policyDir, 'api.hcl', api('role:ops'));
    writePolicyFile(server.policyDir, 'settings.hcl', settings('allow'));
    const res = await request(`${server.url}/v1/policies/reload`, { method: 'POST' });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual([res.json.added, res.json.removed], [[], []], 'no rule line changed');
    assert.deepEqual(res.json.roles_changed, [{ role: 'ops', added: ['team:evil'], removed: [] }]);
    assert.deepEqual(res.json.api_changed, [{ api: 'admin', added: ['team:evil'], removed: [] }], 'api grants are compared with roles expanded');
    assert.deepEqual(res.json.settings_changed, [{ setting: 'default_policy', from: 'deny', to: 'allow' }]);
    assert.equal((await authorize(server.url, evil)).json.result, 'ALLOW');

    const [change] = aclChanges(server.auditPath);
    assert.ok(change);
    assert.equal(change.reason, '0 rule(s) added, 0 removed; role members changed: ops (+team:evil); api grants changed: admin (+team:evil); settings changed: default_policy deny -> allow');
    const details = JSON.parse(change.details!);
    assert.deepEqual(details.roles_changed, res.json.roles_changed);
    assert.deepEqual(details.api_changed, res.json.api_changed);
    assert.deepEqual(details.settings_changed, res.json.settings_changed);
  });

  test('a changed file: new version, added/removed rules, ACL_CHANGE row, allowed_services refreshed; a broken file is refused and the old version keeps answering', async (t) => {
    const server = await startServer({ files: { 'svc.hcl': WEB_READ } });
    t.after(() => server.close());
    const v1 = versionOf({ 'svc.hcl': WEB_READ });
    const v2 = versionOf({ 'svc.hcl': WEB_WRITE_AND_API });
    const webWrite = { identity: 'team:web', action: 'write', resource: 'service:web' };

    const before = await authorize(server.url, webWrite);
    assert.equal(before.json.policy_version, v1);
    assert.equal(before.json.result, 'DENY');
    // Before any reload: the start-up load is the last one, every outcome series exists at 0.
    const startMetrics = (await request(`${server.url}/metrics`)).text;
    for (const outcome of ['changed', 'unchanged', 'refused', 'audit_unavailable']) assert.match(startMetrics, new RegExp(`^pdp_policy_reloads_total\\{outcome="${outcome}"\\} 0$`, 'm'));
    assert.match(startMetrics, /^pdp_policy_last_reload_success 1$/m);
    assert.match(startMetrics, new RegExp(`^pdp_policy_info\\{version="${v1}"\\} 1$`, 'm'));
    assert.deepEqual((({ outcome, trigger }) => ({ outcome, trigger }))((await request(`${server.url}/v1/policies`)).json.last_reload), { outcome: 'changed', trigger: 'start-up' });
    assert.deepEqual(allowedServices(server.auditPath), [{ name: 'web', namespace: 'default' }]);

    // Unchanged: nothing to do, nothing audited.
    const same = await request(`${server.url}/v1/policies/reload`, { method: 'POST' });
    assert.equal(same.status, 200, same.text);
    assert.equal(same.json.changed, false);
    assert.equal(same.json.policy_version, v1);
    assert.equal(aclChanges(server.auditPath).length, 0);

    writePolicyFile(server.policyDir, 'svc.hcl', WEB_WRITE_AND_API);
    const res = await request(`${server.url}/v1/policies/reload`, { method: 'POST' });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.ok, true);
    assert.equal(res.json.changed, true);
    assert.equal(res.json.previous_version, v1);
    assert.equal(res.json.policy_version, v2);
    assert.equal(res.json.added.length, 2, JSON.stringify(res.json.added));
    assert.equal(res.json.removed.length, 1, JSON.stringify(res.json.removed));
    assert.deepEqual(res.json.added.map((c: { at: string }) => c.at).sort(), ['svc.hcl:1', 'svc.hcl:7']);
    assert.equal(res.json.removed[0].at, 'svc.hcl:1');
    assert.match(res.json.removed[0].rule, /read/);

    const changes = aclChanges(server.auditPath);
    assert.equal(changes.length, 1);
    const change = changes[0]!;
    assert.equal(change.policy_version, v2);
    const details = JSON.parse(change.details!);
    assert.equal(details.old_version, v1);
    assert.equal(details.new_version, v2);
    assert.equal(details.added.length, 2);
    assert.equal(details.removed.length, 1);
    assert.equal(change.identity, 'api:loopback');
    assert.equal(change.source_ip, '127.0.0.1', 'the caller that asked for the reload');
    assert.deepEqual(details.roles_changed, []);
    assert.deepEqual(details.settings_changed, []);
    assert.deepEqual(allowedServices(server.auditPath), [{ name: 'web', namespace: 'default' }, { name: 'api', namespace: 'prod' }]);

    const after = await authorize(server.url, webWrite);
    assert.equal(after.json.policy_version, v2);
    assert.equal(after.json.result, 'ALLOW', 'the decision cache did not keep the old answer');
    assert.equal((await request(`${server.url}/v1/policies`)).json.version, v2);

    // A broken file: 422 with diagnostics; v2 keeps answering.
    writePolicyFile(server.policyDir, 'svc.hcl', BROKEN);
    const refused = await request(`${server.url}/v1/policies/reload`, { method: 'POST' });
    assert.equal(refused.status, 422, refused.text);
    assert.equal(refused.json.error.code, 'policy_invalid');
    assert.equal(refused.json.error.policy_version, v2);
    assert.ok(refused.json.error.diagnostics.length >= 1);
    const d = refused.json.error.diagnostics.find((x: { code: string }) => x.code === 'unknown-attribute');
    assert.ok(d, JSON.stringify(refused.json.error.diagnostics));
    assert.equal(d.file, 'svc.hcl');
    assert.equal(d.line, 3);
    assert.equal(d.column, 3);
    assert.equal(typeof d.code, 'string');
    assert.match(d.message, /identty/);
    assertNoLeak(refused.text, [server.root]);
    const still = await authorize(server.url, webWrite);
    assert.equal(still.status, 200);
    assert.equal(still.json.policy_version, v2);
    assert.equal(still.json.result, 'ALLOW');
    assert.equal((await request(`${server.url}/v1/ready`)).status, 200);
    assert.equal(aclChanges(server.auditPath).length, 1, 'a refused reload is not an ACL change');
    // The refusal stays visible while the broken file is on disk: a gauge at 0, and /v1/policies says when and why.
    const refusedMetrics = (await request(`${server.url}/metrics`)).text;
    assert.match(refusedMetrics, /^pdp_policy_last_reload_success 0$/m);
    assert.match(refusedMetrics, new RegExp(`^pdp_policy_info\\{version="${v2}"\\} 1$`, 'm'));
    assert.doesNotMatch(refusedMetrics, new RegExp(`pdp_policy_info\\{version="${v1}"`), 'one version series at a time');
    const lastStamp = Number(/^pdp_policy_last_reload_timestamp_seconds (\S+)$/m.exec(refusedMetrics)?.[1]);
    assert.ok(Math.abs(lastStamp - Date.now() / 1000) < 60, String(lastStamp));
    const lastReload = (await request(`${server.url}/v1/policies`)).json.last_reload;
    assert.equal(lastReload.outcome, 'refused');
    assert.equal(lastReload.trigger, 'api:loopback');
    assert.match(lastReload.message, /policy set has errors|error/i);
    assert.ok(Math.abs(Date.parse(lastReload.at) - Date.now()) < 60_000, lastReload.at);

    // Fixed: reloading works again.
    writePolicyFile(server.policyDir, 'svc.hcl', WEB_READ);
    const fixed = await request(`${server.url}/v1/policies/reload`, { method: 'POST' });
    assert.equal(fixed.status, 200, fixed.text);
    assert.equal(fixed.json.policy_version, v1);
    assert.equal(fixed.json.previous_version, v2);
    assert.equal((await authorize(server.url, webWrite)).json.result, 'DENY');
    assert.deepEqual(allowedServices(server.auditPath), [{ name: 'web', namespace: 'default' }]);
    assert.equal(aclChanges(server.auditPath).length, 2);

    const metrics = (await request(`${server.url}/metrics`)).text;
    assert.match(metrics, /^pdp_policy_reloads_total\{outcome="changed"\} 2$/m);
    assert.match(metrics, /^pdp_policy_reloads_total\{outcome="refused"\} 1$/m);
    assert.match(metrics, /^pdp_policy_reloads_total\{outcome="unchanged"\} 1$/m);
    assert.match(metrics, /^pdp_policy_last_reload_success 1$/m);
    assert.equal((await request(`${server.url}/v1/policies`)).json.last_reload.outcome, 'changed');
  });

  test('a policy directory emptied of *.hcl files is refused without echoing the server path; the old version keeps serving', async (t) => {
    const server = await startServer({ files: { 'svc.hcl': WEB_READ } });
    t.after(() => server.close());
    const v1 = versionOf({ 'svc.hcl': WEB_READ });
    fs.renameSync(path.join(server.policyDir, 'svc.hcl'), path.join(server.policyDir, 'svc.hcl.disabled'));
    const res = await request(`${server.url}/v1/policies/reload`, { method: 'POST' });
    assert.equal(res.status, 422, res.text);
    assert.equal(res.json.error.code, 'policy_invalid');
    assert.match(res.json.error.message, /\*\.hcl/);
    assert.equal(res.json.error.policy_version, v1);
    assertNoLeak(res.text, [server.root, server.policyDir]);
    const still = await authorize(server.url, { identity: 'team:web', action: 'read', resource: 'service:web' });
    assert.equal(still.json.policy_version, v1);
    assert.equal(still.json.result, 'ALLOW');
  });

  test('the body is validated by a schema: none or `{}` reloads; anything else is 400 naming the field', async (t) => {
    const server = await startServer({ files: { 'svc.hcl': WEB_READ } });
    t.after(() => server.close());
    const url = `${server.url}/v1/policies/reload`;
    const none = await request(url, { method: 'POST' });
    assert.equal(none.status, 200, none.text);
    // `curl -X POST -H 'content-type: application/json'` with no data: still no body.
    const noneAsJson = await request(url, { method: 'POST', raw: '', contentType: 'application/json' });
    assert.equal(noneAsJson.status, 200, noneAsJson.text);
    // `curl -X POST -d ''`: an empty body labelled as a form is no body either; a form with content is 415.
    const noneAsForm = await request(url, { method: 'POST', raw: '', contentType: 'application/x-www-form-urlencoded' });
    assert.equal(noneAsForm.status, 200, noneAsForm.text);
    const form = await request(url, { method: 'POST', raw: 'x=1', contentType: 'application/x-www-form-urlencoded' });
    assert.equal(form.status, 415, form.text);
    assert.equal(form.json.error.code, 'unsupported_media_type');
    const empty = await request(url, { body: {} });
    assert.equal(empty.status, 200, empty.text);
    for (const [body, field, message] of [[{ x: 1 }, 'x', /unknown field `x`/], [[], 'body', /must be an object/], ['now', 'body', /must be an object/]] as const) {
      const res = await request(url, { body });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json.error.code, 'invalid_request');
      assert.equal(res.json.error.field, field);
      assert.match(res.json.error.message, message);
    }
  });

  test('a reload refused by the audit store is retried with backoff until it lands; a newer reload supersedes the retry', async (t) => {
    const { server, holder } = await startServerWithLockHolder(t, { files: { 'svc.hcl': WEB_READ }, busyTimeoutMs: 50, probeIntervalMs: 50 });
    const seen: { ok: boolean; retry: number; retryInMs?: number }[] = [];
    server.reloader.onOutcome((outcome, _trigger, { retry }) => seen.push({ ok: outcome.ok, retry, ...(!outcome.ok && outcome.retryInMs !== undefined ? { retryInMs: outcome.retryInMs } : {}) }));
    const v2 = versionOf({ 'svc.hcl': WEB_WRITE_AND_API });
    writePolicyFile(server.policyDir, 'svc.hcl', WEB_WRITE_AND_API);
    holder.exec('BEGIN IMMEDIATE');
    const refused = await request(`${server.url}/v1/policies/reload`, { method: 'POST' });
    assert.equal(refused.status, 503, refused.text);
    assert.match(refused.json.error.message, /retrying in 1 s/);
    // Still locked: the first retry (after 1 s) is refused too and the next waits 2 s.
    assert.ok(await waitFor(() => seen.some((s) => s.retry === 1), 5000), JSON.stringify(seen));
    assert.deepEqual(seen.slice(0, 2).map((s) => s.retryInMs), [1000, 2000]);
    holder.exec('ROLLBACK');
    assert.ok(await waitFor(() => server.engine.current()?.version === v2, 8000), JSON.stringify(seen));
    assert.deepEqual(seen.at(-1), { ok: true, retry: 2 });
    assert.equal(aclChanges(server.auditPath).length, 1);

    // Superseded: a refused reload schedules a retry, then a newer reload (which lands) cancels it.
    writePolicyFile(server.policyDir, 'svc.hcl', WEB_READ);
    holder.exec('BEGIN IMMEDIATE');
    assert.equal((await request(`${server.url}/v1/policies/reload`, { method: 'POST' })).status, 503);
    holder.exec('ROLLBACK');
    assert.ok(await waitFor(async () => (await request(`${server.url}/v1/ready`)).status === 200, 5000));
    const count = seen.length;
    assert.equal((await request(`${server.url}/v1/policies/reload`, { method: 'POST' })).status, 200);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(seen.length, count + 1, `no retry ran after the newer reload: ${JSON.stringify(seen.slice(count))}`);
    assert.equal(aclChanges(server.auditPath).length, 2);
  });

  test('a reload that cannot be audited is refused as audit_unavailable and the old version keeps serving', async (t) => {
    const { server, holder } = await startServerWithLockHolder(t, { files: { 'svc.hcl': WEB_READ }, busyTimeoutMs: 50, probeIntervalMs: 50 });
    const v1 = versionOf({ 'svc.hcl': WEB_READ });
    writePolicyFile(server.policyDir, 'svc.hcl', WEB_WRITE_AND_API);
    holder.exec('BEGIN EXCLUSIVE');
    const res = await request(`${server.url}/v1/policies/reload`, { method: 'POST' });
    holder.exec('COMMIT');
    assert.equal(res.status, 503, res.text);
    assert.equal(res.json.error.code, 'audit_unavailable');
    assert.equal(server.engine.current()?.version, v1, 'an unaudited change is never activated');
    assert.ok(await waitFor(async () => (await request(`${server.url}/v1/ready`)).status === 200, 5000));
    const answered = await authorize(server.url, { identity: 'team:web', action: 'write', resource: 'service:web' });
    assert.equal(answered.json.policy_version, v1);
    assert.equal(aclChanges(server.auditPath).length, 0);
  });

  test('no stale answers: every response matches what its own policy_version decides, across ≥ 30 reloads under load', async (t) => {
    const ALLOWS = 'service "flip" {\n  policy   = "write"\n  identity = "team:flip"\n}\n';
    const DENIES = 'service "flip" {\n  policy   = "read"\n  identity = "team:flip"\n}\n\nservice "other" {\n  policy   = "read"\n  identity = "team:flip"\n}\n';
    const server = await startServer({ files: { 'flip.hcl': DENIES }, cacheEntries: 1000 });
    t.after(() => server.close());
    const expected = new Map<string, boolean>([
      [versionOf({ 'flip.hcl': ALLOWS }), true],
      [versionOf({ 'flip.hcl': DENIES }), false],
    ]);
    const body = { identity: 'team:flip', action: 'write', resource: 'service:flip' };
    const RELOADS = 36;
    let flipping = true;
    let reloads = 0;
    const seen = new Map<string, number>();
    const answered: { id: string; version: string; result: string }[] = [];
    const problems: string[] = [];
    const deadline = Date.now() + 20_000;

    const check = (r: { decision_id: string; allow: boolean; result: string; policy_version: string }, where: string) => {
      const want = expected.get(r.policy_version);
      if (want === undefined) problems.push(`${where}: unknown policy_version ${r.policy_version}`);
      else if (r.allow !== want) problems.push(`${where}: stale answer allow=${r.allow} under ${r.policy_version}`);
      seen.set(r.policy_version, (seen.get(r.policy_version) ?? 0) + 1);
      answered.push({ id: r.decision_id, version: r.policy_version, result: r.result });
    };

    const client = async (n: number) => {
      let i = 0;
      while (flipping && Date.now() < deadline && i < 5000) {
        i++;
        if (i % 7 === 0) {
          const res = await request(`${server.url}/v1/authorize/batch`, { body: { checks: [body, body, { ...body, action: 'read' }] } });
          if (res.status !== 200) { problems.push(`client ${n}: batch ${res.status} ${res.text}`); continue; }
          const [a, b, c] = res.json.results;
          check(a, `client ${n} batch[0]`);
          check(b, `client ${n} batch[1]`);
          if (a.policy_version !== b.policy_version || a.policy_version !== c.policy_version) problems.push(`client ${n}: one batch answered under two versions`);
          if (c.allow !== true) problems.push(`client ${n}: read denied`);
        } else {
          const res = await authorize(server.url, body);
          if (res.status !== 200) { problems.push(`client ${n}: ${res.status} ${res.text}`); continue; }
          check(res.json, `client ${n}`);
        }
      }
    };

    const flipper = async () => {
      try {
        for (let i = 0; i < RELOADS && Date.now() < deadline; i++) {
          const text = i % 2 === 0 ? ALLOWS : DENIES;
          writePolicyFile(server.policyDir, 'flip.hcl', text);
          const res = await request(`${server.url}/v1/policies/reload`, { method: 'POST' });
          if (res.status !== 200 || res.json.changed !== true || res.json.policy_version !== versionOf({ 'flip.hcl': text })) {
            problems.push(`reload ${i}: ${res.status} ${res.text}`);
          }
          reloads++;
          // Let the clients get some requests in under this version.
          await new Promise((r) => setTimeout(r, 5));
        }
      } finally {
        flipping = false;
      }
    };

    await Promise.all([flipper(), ...Array.from({ length: 4 }, (_, n) => client(n))]);
    assert.deepEqual(problems.slice(0, 10), []);
    assert.ok(reloads >= 30, `reloads done: ${reloads}`);
    assert.equal(aclChanges(server.auditPath).length, reloads, 'every reload audited');
    t.diagnostic(`${reloads} reloads, ${answered.length} answers: ${[...seen.values()].join(' / ')} per version`);
    for (const [version] of expected) assert.ok((seen.get(version) ?? 0) > 10, `answers seen under ${version}: ${seen.get(version) ?? 0}`);
    const metrics = (await request(`${server.url}/metrics`)).text;
    assert.ok(Number(/^pdp_cache_hits_total (\d+)/m.exec(metrics)?.[1]) > 0, 'the cache was in play');
    // Every answer's audit row carries the same version and result.
    withDb(server.auditPath, (db) => {
      const stmt = db.prepare('SELECT policy_version, result FROM audit_log WHERE decision_id = ?');
      for (const a of answered) {
        const row = stmt.get(a.id) as { policy_version: string; result: string } | undefined;
        assert.ok(row, `decision ${a.id} audited`);
        assert.equal(row.policy_version, a.version);
        assert.equal(row.result, a.result);
      }
    });
  });
});

describe('reload through `pdp serve`', () => {
  /** `pdp serve` on a new policy directory holding `files` and a new audit file; stopped and removed when the test ends. */
  async function serveFiles(t: TestContext, files: Record<string, string>, ...flags: string[]) {
    const root = makeTempDir();
    const policyDir = makePolicyDir(root, files);
    const auditPath = path.join(root, 'audit.db');
    const serve = await startServe(['--policies', policyDir, '--audit', auditPath, ...flags]);
    t.after(async () => {
      await serve.stop();
      removeTempDir(root);
    });
    return { serve, policyDir, auditPath };
  }

  test('SIGHUP reloads (and nothing else does with --no-watch)', { skip: process.platform === 'win32' }, async (t) => {
    const { serve, policyDir, auditPath } = await serveFiles(t, { 'svc.hcl': WEB_READ }, '--no-watch', '--node-name', 'hup-node');
    const v1 = versionOf({ 'svc.hcl': WEB_READ });
    const v2 = versionOf({ 'svc.hcl': WEB_WRITE_AND_API });
    const webWrite = { identity: 'team:web', action: 'write', resource: 'service:web' };
    assert.equal((await authorize(serve.url, webWrite)).json.policy_version, v1);

    writePolicyFile(policyDir, 'svc.hcl', WEB_WRITE_AND_API);
    await new Promise((r) => setTimeout(r, 600));
    const unchanged = await authorize(serve.url, webWrite);
    assert.equal(unchanged.json.policy_version, v1, '--no-watch: a file change alone does not reload');

    serve.child.kill('SIGHUP');
    assert.ok(await waitFor(async () => (await authorize(serve.url, webWrite)).json.policy_version === v2, 5000), `SIGHUP reloaded; stderr: ${serve.stderr()}`);
    const now = await authorize(serve.url, webWrite);
    assert.equal(now.json.result, 'ALLOW');
    assert.match(serve.stderr(), /reloaded \(signal:SIGHUP\)/);
    const changes = aclChanges(auditPath);
    assert.equal(changes.length, 1);
    assert.equal(changes[0]!.identity, 'signal:SIGHUP');
    assert.equal(changes[0]!.registry_node, 'hup-node');
    assert.deepEqual(JSON.parse(changes[0]!.details!).old_version, v1);
    assert.ok(rowByDecision(auditPath, now.json.decision_id));

    // A broken file and SIGHUP: refused, still serving v2, still alive.
    writePolicyFile(policyDir, 'svc.hcl', BROKEN);
    serve.child.kill('SIGHUP');
    assert.ok(await waitFor(() => /reload refused \(signal:SIGHUP\)/.test(serve.stderr()), 5000), serve.stderr());
    assert.match(serve.stderr(), /svc\.hcl:3:3/);
    const stillV2 = await authorize(serve.url, webWrite);
    assert.equal(stillV2.status, 200);
    assert.equal(stillV2.json.policy_version, v2);
    assert.equal(serve.child.exitCode, null);
  });

  test('a file change reloads, debounced; a broken change is refused and the old version keeps serving', async (t) => {
    const { serve, policyDir, auditPath } = await serveFiles(t, { 'svc.hcl': WEB_READ, 'nested/extra.hcl': '# nothing yet\n' });
    const webWrite = { identity: 'team:web', action: 'write', resource: 'service:web' };
    const final = { 'nested/extra.hcl': '# nothing yet\n', 'svc.hcl': WEB_WRITE_AND_API };
    const vFinal = versionOf(final);
    const intermediate = new Set<string>();
    // A burst of writes (as an editor or a config-management run makes): only the last is loaded.
    for (let i = 0; i < 5; i++) {
      const text = `${WEB_READ}# edit ${i}\n`;
      intermediate.add(versionOf({ ...final, 'svc.hcl': text }));
      writePolicyFile(policyDir, 'svc.hcl', text);
    }
    writePolicyFile(policyDir, 'svc.hcl', WEB_WRITE_AND_API);
    assert.ok(await waitFor(async () => (await authorize(serve.url, webWrite)).json.policy_version === vFinal, 8000), `file change reloaded; stderr: ${serve.stderr()}`);
    await new Promise((r) => setTimeout(r, 400));
    const fileChanges = aclChanges(auditPath).filter((r) => r.identity === 'file-change');
    assert.ok(fileChanges.length >= 1 && fileChanges.length <= 2, `debounced: ${fileChanges.length} reloads for 6 writes`);
    assert.equal(fileChanges.at(-1)!.policy_version, vFinal);
    assert.equal(fileChanges.filter((r) => intermediate.has(r.policy_version!)).length <= 1, true);

    // A change in a nested directory is seen too.
    const nestedText = 'namespace "prod" {\n  service "nested" {\n    policy   = "read"\n    identity = "team:web"\n  }\n}\n';
    writePolicyFile(policyDir, 'nested/extra.hcl', nestedText);
    const vNested = versionOf({ 'nested/extra.hcl': nestedText, 'svc.hcl': WEB_WRITE_AND_API });
    const nestedRead = { identity: 'team:web', action: 'read', resource: 'service:nested', namespace: 'prod' };
    assert.ok(await waitFor(async () => (await authorize(serve.url, nestedRead)).json.policy_version === vNested, 8000), `nested change reloaded; stderr: ${serve.stderr()}`);
    assert.equal((await authorize(serve.url, nestedRead)).json.result, 'ALLOW');

    // A broken change: refused (stderr names file:line:col), vNested keeps answering.
    writePolicyFile(policyDir, 'svc.hcl', BROKEN);
    assert.ok(await waitFor(() => /reload refused \(file-change\)/.test(serve.stderr()), 8000), serve.stderr());
    assert.match(serve.stderr(), /svc\.hcl:3:3/);
    const still = await authorize(serve.url, webWrite);
    assert.equal(still.status, 200);
    assert.equal(still.json.policy_version, vNested);
    assert.equal(still.json.result, 'ALLOW');

    // Fixed (replaced by rename again, then edited in place): each change is picked up.
    writePolicyFile(policyDir, 'svc.hcl', WEB_READ);
    const vFixed = versionOf({ 'nested/extra.hcl': nestedText, 'svc.hcl': WEB_READ });
    assert.ok(await waitFor(async () => (await authorize(serve.url, webWrite)).json.policy_version === vFixed, 8000), `fixed file reloaded; stderr: ${serve.stderr()}`);
    assert.equal((await authorize(serve.url, webWrite)).json.result, 'DENY');
    fs.appendFileSync(path.join(policyDir, 'svc.hcl'), '# edited in place\n');
    const vEdited = versionOf({ 'nested/extra.hcl': nestedText, 'svc.hcl': `${WEB_READ}# edited in place\n` });
    assert.ok(await waitFor(async () => (await authorize(serve.url, webWrite)).json.policy_version === vEdited, 8000), `in-place edit reloaded; stderr: ${serve.stderr()}`);
  });

  test('changes spread over time are loaded once they settle (250 ms without a change), not every 250 ms while they go on', async (t) => {
    const { serve, policyDir, auditPath } = await serveFiles(t, { 'svc.hcl': WEB_READ });
    const webWrite = { identity: 'team:web', action: 'write', resource: 'service:web' };
    // A config-management run that rewrites the file every ~100 ms for 1.5 s: each write restarts the
    // quiet period, so only the last version is loaded. (A burst written in one go, as in the test
    // above, cannot tell a debounce from a plain delay: every delayed reload would read the last version.)
    const writes = 15;
    let last = performance.now();
    let longGaps = 0; // a gap of 250 ms or more (a stalled test process) lets a debounced reload in legitimately
    for (let i = 0; i < writes; i++) {
      writePolicyFile(policyDir, 'svc.hcl', `${WEB_READ}# edit ${i}\n`);
      await new Promise((r) => setTimeout(r, 100));
      const now = performance.now();
      if (now - last >= 250) longGaps++;
      last = now;
    }
    writePolicyFile(policyDir, 'svc.hcl', WEB_WRITE_AND_API);
    const vFinal = versionOf({ 'svc.hcl': WEB_WRITE_AND_API });
    assert.ok(await waitFor(async () => (await authorize(serve.url, webWrite)).json.policy_version === vFinal, 8000), `the last version is loaded; stderr: ${serve.stderr()}`);
    await new Promise((r) => setTimeout(r, 500));
    const fileChanges = aclChanges(auditPath).filter((r) => r.identity === 'file-change');
    assert.equal(fileChanges.at(-1)!.policy_version, vFinal);
    // One reload; each long gap in the writes may add one, and one more is allowed for a server whose
    // event loop ran a timer late. Without the debounce each write is reloaded on its own 250 ms later:
    // more than a dozen here.
    assert.ok(fileChanges.length <= 2 + longGaps, `${fileChanges.length} reloads for ${writes + 1} writes ~100 ms apart (${longGaps} gaps of 250 ms or more): the reload waits for the changes to settle`);
  });

  test('the policy directory deleted while serving: the server stays up on the last good set, and picks up the directory when it comes back', async (t) => {
    const root = makeTempDir();
    const policyDir = makePolicyDir(root, { 'svc.hcl': WEB_READ });
    const serve = await startServe(['--policies', policyDir, '--audit', path.join(root, 'audit.db')]);
    t.after(async () => {
      await serve.stop();
      removeTempDir(root);
    });
    const webWrite = { identity: 'team:web', action: 'write', resource: 'service:web' };
    const v1 = versionOf({ 'svc.hcl': WEB_READ });
    fs.rmSync(policyDir, { recursive: true });
    assert.ok(await waitFor(() => /reload refused \(file-change\)/.test(serve.stderr()), 8000), serve.stderr());
    const still = await authorize(serve.url, webWrite);
    assert.equal(still.status, 200, 'still serving');
    assert.equal(still.json.policy_version, v1);
    // The deploy that deleted it writes the new set in its place (`rm -rf policies && cp -r new policies`).
    fs.mkdirSync(`${policyDir}.new`);
    writePolicyFile(`${policyDir}.new`, 'svc.hcl', WEB_WRITE_AND_API);
    fs.renameSync(`${policyDir}.new`, policyDir);
    const v2 = versionOf({ 'svc.hcl': WEB_WRITE_AND_API });
    assert.ok(await waitFor(async () => (await authorize(serve.url, webWrite)).json.policy_version === v2, 8000), `recreated directory reloaded; stderr: ${serve.stderr()}`);
    // And it is watched again: an edit inside the new directory is seen.
    writePolicyFile(policyDir, 'svc.hcl', WEB_READ);
    assert.ok(await waitFor(async () => (await authorize(serve.url, webWrite)).json.policy_version === v1, 8000), `edit in the recreated directory reloaded; stderr: ${serve.stderr()}`);
  });

  test('a symlinked policy directory re-pointed atomically (current -> releases/v2) reloads, and later edits in the new target are seen', async (t) => {
    const root = makeTempDir();
    const releases = path.join(root, 'releases');
    for (const [name, text] of [['v1', WEB_READ], ['v2', WEB_WRITE_AND_API]] as const) {
      fs.mkdirSync(path.join(releases, name), { recursive: true });
      writePolicyFile(path.join(releases, name), 'svc.hcl', text);
    }
    const current = path.join(root, 'current');
    fs.symlinkSync(path.join(releases, 'v1'), current);
    const serve = await startServe(['--policies', current, '--audit', path.join(root, 'audit.db')]);
    t.after(async () => {
      await serve.stop();
      removeTempDir(root);
    });
    const webWrite = { identity: 'team:web', action: 'write', resource: 'service:web' };
    assert.equal((await authorize(serve.url, webWrite)).json.policy_version, versionOf({ 'svc.hcl': WEB_READ }));
    // The swap as deploy tools make it: a new link beside the old one, renamed over it.
    fs.symlinkSync(path.join(releases, 'v2'), `${current}.tmp`);
    fs.renameSync(`${current}.tmp`, current);
    const v2 = versionOf({ 'svc.hcl': WEB_WRITE_AND_API });
    assert.ok(await waitFor(async () => (await authorize(serve.url, webWrite)).json.policy_version === v2, 8000), `re-pointed link reloaded; stderr: ${serve.stderr()}`);
    const edited = `${WEB_WRITE_AND_API}# edited in the new release\n`;
    writePolicyFile(path.join(releases, 'v2'), 'svc.hcl', edited);
    assert.ok(await waitFor(async () => (await authorize(serve.url, webWrite)).json.policy_version === versionOf({ 'svc.hcl': edited }), 8000), `edit in the new target reloaded; stderr: ${serve.stderr()}`);
    // The old target is no longer watched: editing it changes nothing.
    writePolicyFile(path.join(releases, 'v1'), 'svc.hcl', WEB_WRITE_AND_API);
    await new Promise((r) => setTimeout(r, 800));
    assert.equal((await authorize(serve.url, webWrite)).json.policy_version, versionOf({ 'svc.hcl': edited }));
  });

  test('a symlinked policy directory whose target is deleted and recreated: refused while gone, loaded when it is back, watched again', async (t) => {
    const root = makeTempDir();
    const target = path.join(root, 'releases', 'live');
    fs.mkdirSync(target, { recursive: true });
    writePolicyFile(target, 'svc.hcl', WEB_READ);
    const current = path.join(root, 'current');
    fs.symlinkSync(target, current);
    const serve = await startServe(['--policies', current, '--audit', path.join(root, 'audit.db')]);
    t.after(async () => {
      await serve.stop();
      removeTempDir(root);
    });
    const webWrite = { identity: 'team:web', action: 'write', resource: 'service:web' };
    const v1 = versionOf({ 'svc.hcl': WEB_READ });
    assert.equal((await authorize(serve.url, webWrite)).json.policy_version, v1);
    fs.rmSync(target, { recursive: true });
    assert.ok(await waitFor(() => /reload refused \(file-change\)/.test(serve.stderr()), 8000), serve.stderr());
    assert.equal((await authorize(serve.url, webWrite)).json.policy_version, v1, 'the last good set keeps serving');
    // The deploy writes the new release where the old one was (`rm -rf live && cp -r new live`).
    fs.mkdirSync(`${target}.new`);
    writePolicyFile(`${target}.new`, 'svc.hcl', WEB_WRITE_AND_API);
    fs.renameSync(`${target}.new`, target);
    const v2 = versionOf({ 'svc.hcl': WEB_WRITE_AND_API });
    assert.ok(await waitFor(async () => (await authorize(serve.url, webWrite)).json.policy_version === v2, 8000), `recreated target reloaded; stderr: ${serve.stderr()}`);
    writePolicyFile(target, 'svc.hcl', WEB_READ);
    assert.ok(await waitFor(async () => (await authorize(serve.url, webWrite)).json.policy_version === v1, 8000), `edit in the recreated target reloaded; stderr: ${serve.stderr()}`);
  });
});

// Sanity for the version arithmetic the tests rely on: the server's version is policyVersion of the directory.
test('the versions the tests compute are the versions the engine computes', () => {
  const root = makeTempDir();
  try {
    const dir = makePolicyDir(root, { 'b.hcl': WEB_READ, 'a/c.hcl': '# c\n' });
    assert.equal(policyVersion(readPolicyDir(dir)), versionOf({ 'b.hcl': WEB_READ, 'a/c.hcl': '# c\n' }));
  } finally {
    removeTempDir(root);
  }
});
