// Shared by the audit tests: scratch database files, a complete event to vary, a row count.
import { after } from 'node:test';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type Database from 'better-sqlite3';
import type { AuditEvent } from '../../src/audit';

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
