// `pdp serve --workers 2`: both workers answer and every answered decision is in the audit log.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';

const root = path.join(__dirname, '../..');

test('two workers share the port and lose no audit row', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pdp-workers-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const db = path.join(dir, 'audit.db');
  const child = spawn(process.execPath, ['bin/pdp.js', 'serve', '--policies', 'policies', '--audit', db, '--listen', '127.0.0.1:0', '--workers', '2'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no listening line: ${out}`)), 20_000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = /listening on (http:\/\/\S+) \(2 workers\)/.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]!); }
    });
    child.on('exit', (code) => reject(new Error(`exited ${code}`)));
  });
  const ids: string[] = [];
  await Promise.all(Array.from({ length: 8 }, async () => {
    for (let i = 0; i < 25; i++) {
      const res = await fetch(`${url}/v1/authorize`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ identity: 'team:ops', action: 'admin', resource: `service:svc-${i}`, namespace: 'prod' }),
      });
      assert.equal(res.status, 200);
      const body = (await res.json()) as { decision_id: string; result: string };
      assert.equal(body.result, 'ALLOW');
      ids.push(body.decision_id);
    }
  }));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  const conn = new Database(db, { readonly: true });
  try {
    const rows = conn.prepare("SELECT decision_id, registry_node FROM audit_log WHERE event_type = 'ADMIN'").all() as { decision_id: string; registry_node: string }[];
    const stored = new Set(rows.map((r) => r.decision_id));
    assert.equal(ids.length, 200);
    for (const id of ids) assert.ok(stored.has(id), `decision ${id} missing from audit_log`);
    const nodes = new Set(rows.map((r) => r.registry_node.split('/').pop()));
    assert.deepEqual([...nodes].sort(), ['w1', 'w2'], 'both workers answered');
  } finally {
    conn.close();
  }
});
