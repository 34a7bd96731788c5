// Shared by the audit tests: scratch database files, a complete event to vary, a row count, and a
// recording child process to kill.
import { after } from 'node:test';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import type { AuditEvent, AuditRecorder } from '../../src/audit';

const tempDirs: string[] = [];
after(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** A path for a new database file in a directory removed when the test file ends. */
export function tempDb(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pdp-audit-'));
  tempDirs.push(dir);
  return path.join(dir, 'audit.db');
}

export function event(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    timestamp: '2025-01-20T10:30:00.000Z',
    event_type: 'REGISTRATION',
    service_name: 'payment-service',
    namespace: 'prod',
    instance_id: 'payment-1',
    identity: 'spiffe://cluster/ns/prod/sa/payment',
    source_ip: '10.0.1.50',
    action: 'write',
    resource: 'service:payment-service',
    result: 'ALLOW',
    reason: 'granted by rule',
    rule: 'services.hcl:7',
    decision_id: '0b7c6f1e-0000-4000-8000-000000000000',
    policy_version: 'sha256:abc',
    details: { host: '10.0.1.1', port: 8080, metadata: { version: '2.1.0' } },
    registry_node: 'registry-1',
    ...overrides,
  };
}

export const countRows = (db: Database.Database) => db.prepare('SELECT COUNT(*) FROM audit_log').pluck().get() as number;

/**
 * Reads the database file on its own, as a copy without its WAL sees it (what checkpoints have copied
 * there): `read` gets the copy, or undefined while even the schema is only in the WAL.
 */
export function readDatabaseFileAlone<T>(file: string, read: (db: Database.Database | undefined) => T): T {
  const copy = `${tempDb()}.alone`;
  fs.copyFileSync(file, copy);
  const db = new Database(copy);
  try {
    return read(db.prepare("SELECT 1 FROM sqlite_schema WHERE name = 'audit_log'").get() === undefined ? undefined : db);
  } finally {
    db.close();
  }
}

/**
 * Records one row through `recorder` (writing to `file`, empty so far) and checks from a second
 * connection that the row is not there while queued and is there once its promise resolved; then
 * closes the recorder.
 */
export async function assertCommittedBeforeResolved(file: string, recorder: AuditRecorder): Promise<void> {
  const reader = new Database(file, { readonly: true });
  try {
    const promise = recorder.record(event({ decision_id: 'visible-1' }));
    assert.equal(countRows(reader), 0, 'queued, not yet written');
    await promise;
    assert.equal(reader.prepare("SELECT COUNT(*) FROM audit_log WHERE decision_id = 'visible-1'").pluck().get(), 1);
  } finally {
    reader.close();
    await recorder.close();
  }
}

/**
 * A child process records rows as fast as it can (through the inline recorder, or the writer thread)
 * and prints each decision_id once its record() resolved; it is killed with SIGKILL after 2,000
 * acknowledgements. Returns the acknowledged ids, for the caller to look up in the file.
 */
export async function recordUntilKilled(file: string, writer: 'inline' | 'thread'): Promise<string[]> {
  const auditModule = path.join(__dirname, '..', '..', 'src', 'audit', 'index.js');
  const recorder = writer === 'thread'
    ? `audit.startWriterThread(${JSON.stringify(file)}).then((sink) => audit.createSinkRecorder(sink))`
    : `Promise.resolve(audit.createRecorder(audit.openAuditStore(${JSON.stringify(file)})))`;
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const audit = require(${JSON.stringify(auditModule)});
       ${recorder}.then((recorder) => {
         let next = 0;
         const burst = () => {
           for (let k = 0; k < 25; k++) {
             const id = 'kill-' + next++;
             recorder.record({ timestamp: new Date().toISOString(), event_type: 'DISCOVERY', service_name: 's', namespace: null,
               instance_id: null, identity: 'i', source_ip: null, action: 'read', resource: 'service:s', result: 'ALLOW', reason: null,
               rule: null, decision_id: id, policy_version: null, details: null, registry_node: 'n' })
               .then(() => process.stdout.write(id + '\\n'));
           }
           setImmediate(burst);
         };
         burst();
       });`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const acknowledged: string[] = [];
  let buffered = '';
  await new Promise<void>((resolve) => {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      acknowledged.push(...lines);
      if (acknowledged.length >= 2000 && child.exitCode === null && !child.killed) child.kill('SIGKILL');
    });
    child.on('exit', () => resolve());
  });
  return acknowledged;
}
