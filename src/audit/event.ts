// The audit event: one row of `audit_log` before SQLite gives it an id. The shape is versioned;
// a change to it ships together with a numbered migration (see migrations.ts).
import { redactTokens } from '../identity/token-format';

/** Version of the `AuditEvent` shape. Bumped together with a migration that changes the columns. */
export const AUDIT_EVENT_VERSION = 1;

export type AuditResult = 'ALLOW' | 'ALLOW_DEFAULT' | 'DENY';
export const AUDIT_RESULTS: readonly AuditResult[] = ['ALLOW', 'ALLOW_DEFAULT', 'DENY'];

/** The event types the seed design names; `event_type` is open, these are the ones the analyses and retention know. */
export const KNOWN_EVENT_TYPES = [
  'REGISTRATION',
  'DEREGISTRATION',
  'DISCOVERY',
  'ADMIN',
  'ACL_CHANGE',
  'AUTHN_FAILURE',
  'API_DENIED',
] as const;

/**
 * Event types only the server writes: policy changes, failed authentications, refused API calls.
 * A request's `context.event_type` may not name them, or any caller could forge policy-change rows
 * (kept a year) or authentication failures.
 */
export const SERVER_EVENT_TYPES = ['ACL_CHANGE', 'AUTHN_FAILURE', 'API_DENIED'] as const;

export interface AuditEvent {
  /** ISO-8601 UTC with milliseconds and `Z`, e.g. `2025-01-20T10:30:00.000Z` (sorts as text). */
  timestamp: string;
  /** REGISTRATION | DEREGISTRATION | DISCOVERY | ADMIN | ACL_CHANGE | AUTHN_FAILURE | API_DENIED | ... */
  event_type: string;
  service_name: string | null;
  namespace: string | null;
  instance_id: string | null;
  identity: string | null;
  source_ip: string | null;
  action: string | null;
  resource: string | null;
  result: AuditResult | null;
  reason: string | null;
  /** The deciding rule as `file:line`. */
  rule: string | null;
  decision_id: string | null;
  policy_version: string | null;
  /** Remaining context (host, port, metadata). Stored as JSON text; never a credential. */
  details: Record<string, unknown> | null;
  registry_node: string;
}

/** An event as bound to the INSERT: every value a string or null, `details` already JSON text. */
export type AuditRow = Omit<AuditEvent, 'details'> & { details: string | null };

/** The columns of `audit_log` after `id`, in table order. */
export const AUDIT_ROW_COLUMNS = [
  'timestamp',
  'event_type',
  'service_name',
  'namespace',
  'instance_id',
  'identity',
  'source_ip',
  'action',
  'resource',
  'result',
  'reason',
  'rule',
  'decision_id',
  'policy_version',
  'details',
  'registry_node',
] as const satisfies readonly (keyof AuditRow)[];

/**
 * Rows as one flat array: each row's values in AUDIT_ROW_COLUMNS order, row after row. The store
 * binds its statements from this form, and the writer thread is handed it: a structured clone of
 * one array of strings costs the receiving thread about a third of what the same rows as objects
 * do (each object's keys are cloned and rebuilt too), measured 0.9 against 2.4 µs per row.
 */
export type PackedAuditRows = (string | null)[];

/** `rows` in the packed form. */
export function packAuditRows(rows: readonly AuditRow[]): PackedAuditRows {
  const into: PackedAuditRows = [];
  let v = 0;
  for (const r of rows) {
    into[v++] = r.timestamp; into[v++] = r.event_type; into[v++] = r.service_name; into[v++] = r.namespace;
    into[v++] = r.instance_id; into[v++] = r.identity; into[v++] = r.source_ip; into[v++] = r.action;
    into[v++] = r.resource; into[v++] = r.result; into[v++] = r.reason; into[v++] = r.rule;
    into[v++] = r.decision_id; into[v++] = r.policy_version; into[v++] = r.details; into[v++] = r.registry_node;
  }
  return into;
}

/** Thrown (or rejected with) when an event cannot become a row; the event is refused alone, never its batch. */
export class InvalidAuditEventError extends Error {
  override name = 'InvalidAuditEventError';
}

/** The event type of each action when the request's context names none (audit.md). */
const DERIVED_EVENT_TYPE: ReadonlyMap<string, string> = new Map([['read', 'DISCOVERY'], ['write', 'REGISTRATION'], ['admin', 'ADMIN']]);

/**
 * The action each of the spec's named event types belongs to: the derived ones, and
 * `DEREGISTRATION`, a write. Other names a PEP sends (`HEALTH_CHECK`) belong to no one action.
 */
export const EVENT_TYPE_ACTION: ReadonlyMap<string, string> = new Map([
  ...[...DERIVED_EVENT_TYPE].map(([action, type]) => [type, action] as const),
  ['DEREGISTRATION', 'write'],
]);

/** `event_type` derived from the action when the request's context names none (audit.md). */
export function deriveEventType(action: string, explicitEventType?: string | null): string {
  if (explicitEventType !== undefined && explicitEventType !== null && explicitEventType !== '') return explicitEventType;
  // The HTTP schema admits only the three actions; keep whatever else arrives recognisable.
  return DERIVED_EVENT_TYPE.get(action) ?? action.toUpperCase();
}

/** The audit timestamp format: `Date#toISOString` is already UTC with milliseconds and `Z`. */
export function auditTimestamp(date: Date = new Date()): string {
  return date.toISOString();
}

const TIMESTAMP_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

// Keys whose values are credentials or close to it. `details` is meant to carry host, port and
// metadata; this is a last line of defence against a caller copying a whole context object in.
// `auth` as a word of its own (`x-auth`, `auth_header`), not inside `author`.
const CREDENTIAL_KEY = /token|secret|password|passwd|passphrase|credential|authorization|(?:^|[^a-z])auth(?:$|[^a-z])|bearer|cookie|session|jwt|certificate|private[_-]?key|api[_-]?key|access[_-]?key|signature|oauth|saml/i;
export const REDACTED = '[redacted]';

/** `token_id` holding a pdp token id (12 letters and digits) names a token without being one: kept. */
function isTokenId(key: string, value: unknown): boolean {
  return key === 'token_id' && typeof value === 'string' && /^[A-Za-z0-9]{12}$/.test(value);
}

/** A copy of `details` with credential-looking keys (at any depth) replaced by `[redacted]`. */
export function redactDetails(details: Record<string, unknown>): Record<string, unknown> {
  const redactValue = (value: unknown, depth: number): unknown => {
    if (depth > 16 || value === null || typeof value !== 'object') return value;
    if (Array.isArray(value)) return value.map((item) => redactValue(item, depth + 1));
    const copy: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value as Record<string, unknown>)) {
      copy[key] = CREDENTIAL_KEY.test(key) && !isTokenId(key, inner) ? REDACTED : redactValue(inner, depth + 1);
    }
    return copy;
  };
  return redactValue(details, 0) as Record<string, unknown>;
}

function nullableText(event: AuditEvent, field: keyof AuditEvent): string | null {
  const value = event[field] as unknown;
  // `undefined` is accepted as null so a caller building events from optional fields need not spell every one.
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') throw new InvalidAuditEventError(`audit event field \`${field}\` must be a string or null; got ${typeof value}`);
  // A lone surrogate would be stored as invalid UTF-8 (ED A0 80 …), which other SQLite clients
  // cannot decode. The server refuses such input with 400 first; this is the last line of defence.
  // (O(1) for one-byte strings, which most values are.)
  if (!value.isWellFormed()) throw new InvalidAuditEventError(`audit event field \`${field}\` is not well-formed Unicode (it holds a lone surrogate)`);
  // A pdp token can arrive in any field a caller fills (identity, context.instance_id, a resource);
  // its secret is never stored, wherever it is. The token id stays: it says which token leaked.
  return redactTokens(value);
}

/**
 * Validates an event and turns it into the row that is bound to the INSERT. Done when an event is
 * recorded (not inside the group-commit transaction) so one malformed event is refused alone instead
 * of failing the transaction that carries everyone else's rows.
 */
export function toAuditRow(event: AuditEvent): AuditRow {
  if (event === null || typeof event !== 'object') throw new InvalidAuditEventError('audit event must be an object');
  if (typeof event.timestamp !== 'string' || !TIMESTAMP_PATTERN.test(event.timestamp)) {
    throw new InvalidAuditEventError(
      `audit event timestamp must be ISO-8601 UTC with milliseconds, like \`2025-01-20T10:30:00.000Z\`; got \`${String(event.timestamp)}\``,
    );
  }
  if (typeof event.event_type !== 'string' || event.event_type === '' || !event.event_type.isWellFormed()) {
    throw new InvalidAuditEventError('audit event needs a non-empty, well-formed `event_type`');
  }
  if (typeof event.registry_node !== 'string' || event.registry_node === '' || !event.registry_node.isWellFormed()) {
    throw new InvalidAuditEventError('audit event needs a non-empty, well-formed `registry_node`');
  }
  const result = event.result ?? null;
  if (result !== null && !AUDIT_RESULTS.includes(result)) {
    throw new InvalidAuditEventError(`audit event result must be \`ALLOW\`, \`ALLOW_DEFAULT\`, \`DENY\` or null; got \`${String(result)}\``);
  }
  let details: string | null = null;
  if (event.details !== undefined && event.details !== null) {
    if (typeof event.details !== 'object' || Array.isArray(event.details)) {
      throw new InvalidAuditEventError('audit event `details` must be an object or null');
    }
    try {
      // Keys by name, then any pdp token in any key or value (the JSON text is searched as a whole: a
      // token's characters need no escaping, so the replacement keeps it valid JSON).
      details = redactTokens(JSON.stringify(redactDetails(event.details)));
    } catch (e) {
      throw new InvalidAuditEventError(`audit event \`details\` cannot be stored as JSON: ${(e as Error).message}`);
    }
  }
  return {
    timestamp: event.timestamp,
    event_type: event.event_type,
    service_name: nullableText(event, 'service_name'),
    namespace: nullableText(event, 'namespace'),
    instance_id: nullableText(event, 'instance_id'),
    identity: nullableText(event, 'identity'),
    source_ip: nullableText(event, 'source_ip'),
    action: nullableText(event, 'action'),
    resource: nullableText(event, 'resource'),
    result,
    reason: nullableText(event, 'reason'),
    rule: nullableText(event, 'rule'),
    decision_id: nullableText(event, 'decision_id'),
    policy_version: nullableText(event, 'policy_version'),
    details,
    registry_node: event.registry_node,
  };
}
