// Property-based fuzzing of the decision endpoints against a real server (buildServer on an
// ephemeral loopback port, a real SQLite audit file in a temp directory): POST /v1/authorize,
// POST /v1/authorize/batch and /v1/authorize/forward get generated requests — valid checks drawn
// from the fixture policy set below (so ALLOW, ALLOW_DEFAULT and DENY all happen), each with at most
// one mutation whose outcome the generator knows (a wrong type, a missing or unknown field, a name at
// 253/254 characters, a bad IP form, a hostile or malformed string, a reserved or polluting key) —
// and raw bodies (not objects, not JSON, not UTF-8, other content types, too large). Every answer
// is checked against what the generator expects and against these invariants:
//
// - never a 5xx, a connection reset or a hang (each request times out after 10 s);
// - an error is `{"error": {"code", "message", "field"?}}` with a code of the registry
//   (src/server/errors.ts) and its status; a 400 names the field the mutation broke, in `field` and
//   in backticks in the message;
// - a 200 has exactly the spec's fields, `allow` agrees with `result`, and the decision is the engine's;
// - every decision answered has exactly one `audit_log` row with its decision_id, holding what was
//   asked verbatim (identity, action, resource, namespace, instance, normalised source_ip,
//   event_type, details) and what was answered; a batch's rows are in the order of its checks;
//   an error adds no row at all;
// - the same request asked again (a cache hit) gets the same decision with a new decision_id;
// - all of this still holds for up to 16 requests in flight at once (shared group commits).
//
// The seed is fixed so that a failure reproduces. To hunt, widen it:
//   PDP_FUZZ_SEED=123 PDP_FUZZ_RUNS=5000 node --test dist/test/server-fuzz.test.js
// PDP_FUZZ_RUNS is the run count of the single-check property (default 250, about 5 s for the
// file); forward runs half as often, batches, raw bodies and concurrent mixes a fifth as often.
// fast-check prints the seed and path of a failure.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type Database from 'better-sqlite3';
import { redactDetails } from '../src/audit/event';
import { decideWith } from '../src/engine';
import { ERRORS } from '../src/server/errors';
import { UUID_RE, assertNoLeak, openDb, request, startServer, type AuditLogRow, type HttpResult, type InProcessServer } from './support/server';

const SEED = Number(process.env.PDP_FUZZ_SEED || 20251124);
const RUNS = Number(process.env.PDP_FUZZ_RUNS || 250);
const fuzzOptions = (runs: number) => ({ seed: SEED, numRuns: Math.max(1, Math.round(runs)), includeErrorInReport: true });

const POLICY = `settings {
  default_policy = "allow"
}

role "auditors" {
  identities = ["team:audit", "user:josé", "spiffe://cluster/ns/audit/sa/*"]
}

namespace "prod" {
  policy   = "admin"
  identity = "team:ops"

  service "web" {
    policy     = "read"
    identities = ["team:web", "spiffe://cluster/ns/prod/sa/*"]
  }

  service "web" {
    policy   = "write"
    identity = "spiffe://cluster/ns/prod/sa/web"
  }

  service "db" {
    policy   = "write"
    identity = "team:db"
    cidrs    = ["10.0.1.0/24", "fd00::/8"]
  }

  service_prefix "api-" {
    policy   = "admin"
    identity = "spiffe://cluster/ns/prod/sa/{service}"
  }

  service_prefix "" {
    policy   = "deny"
    identity = "role:auditors"
  }
}

namespace_prefix "stag" {
  policy   = "read"
  identity = "*"
}

service "legacy" {
  policy   = "write"
  identity = "*"
}
`;

// ---------------------------------------------------------------------------------------------
// What a generated request is expected to get.

type Json = Record<string, unknown>;
type Failure = { ok: false; status: number; code: keyof typeof ERRORS; field?: string };
type Outcome = { ok: true } | Failure;
interface Case { body: Json; expect: Outcome }

const OK: Outcome = { ok: true };
const bad = (field: string): Failure => ({ ok: false, status: 400, code: 'invalid_request', field });

/** A number JSON.stringify cannot write (it parses as Infinity): put in as a marker, written raw. */
const HUGE_NUMBER = '@@1e400@@';
const serialize = (body: unknown) => JSON.stringify(body).split(`"${HUGE_NUMBER}"`).join('1e400');

/** An object with an own `key` even when the key is `__proto__` (an assignment would set the prototype). */
function withOwn(target: Json, key: string, value: unknown): Json {
  const copy: Json = { ...target };
  Object.defineProperty(copy, key, { value, enumerable: true, writable: true, configurable: true });
  return copy;
}

function without(target: Json, key: string): Json {
  const copy: Json = { ...target };
  delete copy[key];
  return copy;
}

/** How the server quotes a caller-chosen field name (validation.ts: the first 64 characters). */
const quotedName = (name: string) => (name.length <= 64 ? name : `${name.slice(0, 64)}…`);

// ---------------------------------------------------------------------------------------------
// Valid checks, drawn from the fixture so that every result happens.

/** `arb` in `present` of `present + absent` draws, else undefined. */
const maybe = <T>(arb: fc.Arbitrary<T>, present: number, absent: number): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: present, arbitrary: arb }, { weight: absent, arbitrary: fc.constant(undefined) });

const NAME_253 = `n${'a'.repeat(251)}z`;
const NAME_254 = `${NAME_253}x`;
const INSTANCE_253 = `i${'-'.repeat(251)}:`;

const HOSTILE = [
  '\'; DROP TABLE audit_log; --',
  'Robert"); DROP TABLE audit_log;--',
  'back\\slash \\" \\u0000',
  '<script>alert(1)</script>',
  '%00%0a%27',
  'user:josé',
  '用户:张三',
  '😀🔥',
  'e\u0301 combining',
  'ﷺ',
  ' leading and trailing spaces ',
  '"',
  '\'',
];

const identityArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(
    'team:ops', 'team:web', 'team:db', 'team:audit', 'user:josé', 'team:nobody',
    'spiffe://cluster/ns/prod/sa/web', 'spiffe://cluster/ns/prod/sa/api-pay', 'spiffe://cluster/ns/prod/sa/order',
    'spiffe://cluster/ns/audit/sa/reader',
  ) },
  { weight: 2, arbitrary: fc.constantFrom(...HOSTILE, 'a'.repeat(2048), '😀'.repeat(2048), `spiffe://cluster/ns/prod/sa/${'x'.repeat(2020)}`) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }).filter((s) => validIdentity(s)) },
);

function validIdentity(s: string): boolean {
  return s.length > 0 && s !== 'anonymous' && s.isWellFormed() && !/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(s) && !/pdp_/i.test(s);
}

const SERVICES = ['web', 'db', 'api-pay', 'api-', 'legacy', 'other', NAME_253, 'a', 'A.b_c-9'];
const NAMESPACES = ['prod', 'staging', 'stag', 'stage-2', 'default', 'dev', NAME_253];

/** A resource and the namespace field that goes with it (undefined: left out). */
const resourceArb: fc.Arbitrary<{ resource: string; namespace: string | undefined }> = fc.oneof(
  { weight: 5, arbitrary: fc.record({
    service: fc.constantFrom(...SERVICES),
    instance: maybe(fc.constantFrom('payment-1', '10.0.0.7:8080', '[fd00::7]:443', 'pod.abc', INSTANCE_253, '~!@#$%^&*()'), 1, 3),
    namespace: maybe(fc.constantFrom(...NAMESPACES), 3, 1),
  }).map(({ service, instance, namespace }) => ({ resource: `service:${service}${instance === undefined ? '' : `/${instance}`}`, namespace })) },
  { weight: 1, arbitrary: fc.record({ ns: fc.constantFrom(...NAMESPACES), given: fc.boolean() })
    .map(({ ns, given }) => ({ resource: `namespace:${ns}/*`, namespace: given ? ns : undefined })) },
);

/** Valid source addresses and the text the audit row stores for each. */
const SOURCE_IPS: Record<string, string> = {
  '10.0.1.50': '10.0.1.50',
  '10.0.2.1': '10.0.2.1',
  '::ffff:10.0.1.50': '10.0.1.50',
  '::FFFF:10.0.1.50': '10.0.1.50',
  '::ffff:a00:132': '10.0.1.50',
  '::10.0.1.50': '::a00:132',
  'FD00::1': 'fd00::1',
  'fd00:0:0:0:0:0:0:1': 'fd00::1',
  '0000:0000:0000:0000:0000:0000:0000:0001': '::1',
  '::': '::',
  '0.0.0.0': '0.0.0.0',
  '255.255.255.255': '255.255.255.255',
  'fe80::1': 'fe80::1',
  '64:ff9b::10.0.1.50': '64:ff9b::a00:132',
  'fd00::9': 'fd00::9',
};
const BAD_SOURCE_IPS = [
  '010.0.1.50', '10.0.1.050', '0x0a.0.0.1', '0xa000132', '167772466', 'fe80::1%eth0', 'fe80::1%25eth0', '10.0.1.50 ', ' 10.0.1.50',
  '10.1', '256.0.0.1', '::ffff:256.0.0.1', ':::1', '1::2::3', '10.0.1.50.', '[::1]', '1.2.3.4/32', 'localhost', '١٠.٠.١.٥٠',
];

const EVENT_OF_ACTION: Record<string, string[]> = { read: ['DISCOVERY'], write: ['REGISTRATION', 'DEREGISTRATION'], admin: ['ADMIN'] };
const DERIVED_EVENT: Record<string, string> = { read: 'DISCOVERY', write: 'REGISTRATION', admin: 'ADMIN' };

/** Extra context fields: names and scalar values a PEP might send, hostile ones included. */
const contextKeyArb = fc.oneof(
  fc.constantFrom(
    'host', 'port', 'canary', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'meta.version', 'a b', '"quoted"',
    '\'; DROP TABLE audit_log; --', 'emoji😀', 'rtl\u202eoverride', 'nul\u0000key', 'k'.repeat(128), 'password', 'session_id', 'x-auth',
  ),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }).filter((k) => k.isWellFormed() && !/pdp_/i.test(k)),
).filter((k) => !['source_ip', 'event_type', 'instance_id', 'caller', 'authenticated_by', 'asserted_identity', '__proto__'].includes(k));

const contextValueArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(...HOSTILE, '\u0000', 'rtl\u202e', 'zw\u200bsp', 'line\u2028sep', 'v'.repeat(1024), '', true, false, null, 0, -1, 8443, 1.5, 1e308, -1e-308, 2 ** 53 + 2),
  fc.string({ unit: 'binary', maxLength: 30 }).filter((s) => s.isWellFormed() && !/pdp_/i.test(s)),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
);

const baseCheckArb: fc.Arbitrary<Json> = fc.record({
  identity: identityArb,
  action: fc.constantFrom('read', 'write', 'admin'),
  target: resourceArb,
  sourceIp: maybe(fc.constantFrom(...Object.keys(SOURCE_IPS), '10.0.1.50', '10.0.1.50', 'fd00::9'), 1, 1),
  eventType: maybe(fc.constantFrom('own', 'HEALTH_CHECK', 'X'), 1, 1),
  instanceId: maybe(fc.constantFrom('payment-1', '10.0.0.7:8080', 'i'.repeat(253)), 1, 3),
  extra: maybe(fc.dictionary(contextKeyArb, contextValueArb, { minKeys: 1, maxKeys: 4 }), 2, 3),
  explain: maybe(fc.boolean(), 1, 9),
}).map(({ identity, action, target, sourceIp, eventType, instanceId, extra, explain }) => {
  const check: Json = { identity, action, resource: target.resource };
  if (target.namespace !== undefined) check.namespace = target.namespace;
  let context: Json | undefined;
  if (extra !== undefined) for (const [k, v] of Object.entries(extra)) context = withOwn(context ?? {}, k, v);
  if (sourceIp !== undefined) (context ??= {}).source_ip = sourceIp;
  if (eventType !== undefined) (context ??= {}).event_type = eventType === 'own' ? EVENT_OF_ACTION[action]![0] : eventType;
  // An instance in the context must be the resource's, if it names one.
  const resourceInstance = instanceOf(target.resource);
  if (instanceId !== undefined && (resourceInstance === undefined || resourceInstance === instanceId)) (context ??= {}).instance_id = instanceId;
  if (context !== undefined) check.context = context;
  if (explain !== undefined) check.explain = explain;
  return check;
});

function instanceOf(resource: string): string | undefined {
  if (!resource.startsWith('service:')) return undefined;
  const slash = resource.indexOf('/');
  return slash < 0 ? undefined : resource.slice(slash + 1);
}

// ---------------------------------------------------------------------------------------------
// Mutations: each takes a valid check and returns the request and what it must get.

type Mutation = (check: Json) => Case;

const setTo = (field: string, values: unknown[], expect: (value: unknown, check: Json) => Outcome): fc.Arbitrary<Mutation> =>
  fc.constantFrom(...values).map((value) => (check: Json) => ({ body: withOwn(check, field, value), expect: expect(value, check) }));

const inContext = (key: string, values: unknown[], expect: (value: unknown, check: Json) => Outcome): fc.Arbitrary<Mutation> =>
  fc.constantFrom(...values).map((value) => (check: Json) => {
    const context = withOwn((check.context as Json | undefined) ?? {}, key, value);
    return { body: { ...check, context }, expect: expect(value, check) };
  });

const NOT_STRINGS = [1, 0, -1, 1.5, true, false, null, [], ['x'], {}, { a: 1 }];

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  // identity
  setTo('identity', [...NOT_STRINGS, '', 'x'.repeat(2049), '😀'.repeat(2049), 'anonymous', 'team:ops\u0000-forged', 'team:\u202eops', 'team:\u200bops', 'team:ops\u2028', 'team:ops\u0085', 'team:ops\u007f',
    '\ufeffteam:ops', 'team:ops\t', 'team:ops\n', 'team:\ud800ops', 'team:ops\udfff'], () => bad('identity')),
  setTo('identity', ['a'.repeat(2048), '😀'.repeat(2048), ...HOSTILE], () => OK),
  fc.constant((check: Json) => ({ body: without(check, 'identity'), expect: bad('identity') })),
  // action
  setTo('action', [...NOT_STRINGS, '', 'READ', 'delete', 'deny', ' read', 'read\u0000'], () => bad('action')),
  fc.constant((check: Json) => ({ body: without(check, 'action'), expect: bad('action') })),
  // resource
  setTo('resource', [...NOT_STRINGS, '', 'service:', 'service:/x', 'service:a b', 'service:x/', 'service:x/a/b', 'service:x/ a', `service:${NAME_254}`, `service:web/${INSTANCE_253}x`,
    'SERVICE:web', 'svc:web', 'web', 'namespace:prod', 'namespace:/*', 'namespace:prod/x', `namespace:${NAME_254}/*`, 'service:wéb', 'service:web\u0000', 'service:\ud800',
    'r'.repeat(601), `service:${'s'.repeat(600)}`], () => bad('resource')),
  // (An instance in the resource replaces the context's, which could contradict it.)
  fc.constantFrom(`service:${NAME_253}`, `service:${NAME_253}/${INSTANCE_253}`, 'service:-', 'service:.', 'service:web/~').map((resource) => (check: Json) => {
    const body: Json = { ...check, resource };
    if (body.context !== undefined) body.context = without(body.context as Json, 'instance_id');
    return { body, expect: OK };
  }),
  fc.constant((check: Json) => ({ body: without(check, 'resource'), expect: bad('resource') })),
  // namespace
  setTo('namespace', [...NOT_STRINGS, '', NAME_254, 'pr od', 'prod/', 'prød', 'prod\u0000', '*'], () => bad('namespace')),
  fc.constant((check: Json) => ({ body: { ...check, resource: 'namespace:prod/*', namespace: 'staging' }, expect: bad('namespace') })),
  fc.constant((check: Json) => ({ body: { ...check, namespace: NAME_253 }, expect: check.resource && String(check.resource).startsWith('namespace:') && !String(check.resource).includes(NAME_253) ? bad('namespace') : OK })),
  // context itself
  setTo('context', ['ctx', 1, true, [], [{ a: 1 }]], () => bad('context')),
  setTo('context', [null], () => bad('context')),
  fc.constant((check: Json) => ({ body: { ...check, context: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, i])) }, expect: bad('context') })),
  fc.constant((check: Json) => ({ body: { ...check, context: Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`k${i}`, i])) }, expect: OK })),
  // context.source_ip
  inContext('source_ip', [...BAD_SOURCE_IPS, '', 'x'.repeat(65), ...NOT_STRINGS], () => bad('context.source_ip')),
  inContext('source_ip', Object.keys(SOURCE_IPS), () => OK),
  // context.event_type
  inContext('event_type', ['ACL_CHANGE', 'AUTHN_FAILURE', 'API_DENIED', 'registration', 'Registration', '', 'A'.repeat(65), '_X', 'X-Y', 'É', 1, null], () => bad('context.event_type')),
  fc.constant((check: Json) => {
    const wrong = Object.entries(EVENT_OF_ACTION).find(([action]) => action !== check.action)![1][0]!;
    return { body: { ...check, context: { ...without((check.context as Json | undefined) ?? {}, 'event_type'), event_type: wrong } }, expect: bad('context.event_type') };
  }),
  inContext('event_type', ['HEALTH_CHECK', 'A'.repeat(64), 'X'], () => OK),
  // context.instance_id
  inContext('instance_id', ['a/b', 'a b', '', 'é', 'i'.repeat(254), '\u0000', 7, null], () => bad('context.instance_id')),
  fc.constant((check: Json) => ({
    body: { ...check, resource: 'service:web/i-1', context: { ...((check.context as Json | undefined) ?? {}), instance_id: 'i-2' } },
    expect: bad('context.instance_id'),
  })),
  // other context fields
  fc.record({ key: fc.constantFrom('nested', 'meta', '123', 'a/b~c', 'ключ'), value: fc.constantFrom({ a: 1 }, [1, 2], [], {}, 'v'.repeat(1025), 'lone\ud800', HUGE_NUMBER) })
    .map(({ key, value }) => (check: Json) => ({ body: { ...check, context: withOwn((check.context as Json | undefined) ?? {}, key, value) }, expect: bad(`context.${key}`) })),
  fc.constantFrom('caller', 'authenticated_by', 'asserted_identity')
    .map((key) => (check: Json) => ({ body: { ...check, context: { ...((check.context as Json | undefined) ?? {}), [key]: 'x' } }, expect: bad(`context.${key}`) })),
  fc.constantFrom('k'.repeat(129), `${'é'.repeat(129)}`)
    .map((key) => (check: Json) => ({ body: { ...check, context: { [key]: 1 } }, expect: bad(`context.${quotedName(key)}`) })),
  fc.constant((check: Json) => ({ body: { ...check, context: withOwn({}, '__proto__', { polluted: true }) }, expect: bad('context.__proto__') })),
  fc.constant((check: Json) => ({ body: { ...check, context: { constructor: { prototype: { polluted: true } } } }, expect: bad('context.constructor') })),
  fc.constant((check: Json) => ({ body: { ...check, context: { 'lone\udc00': 1 } }, expect: bad('context') })),
  // credentials (this server verifies none)
  setTo('credentials', [{}], () => bad('credentials')),
  setTo('credentials', ['token', 1, null, []], () => bad('credentials')),
  setTo('credentials', [{ token: 'pdp_x' }, { token: 'x'.repeat(512) }], () => bad('credentials.token')),
  setTo('credentials', [{ token: 1 }, { token: '' }, { token: 'x'.repeat(513) }], () => bad('credentials.token')),
  setTo('credentials', [{ certificate: '-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----' }, { certificate: [] }], () => bad('credentials.certificate')),
  setTo('credentials', [{ jwt: 'eyJ' }], () => bad('credentials.jwt')),
  // explain
  setTo('explain', ['true', 1, null, {}], () => bad('explain')),
  // unknown and polluting top-level fields
  fc.constantFrom('extra', 'Identity', '0', '12', 'a/b', 'x~1', 'constructor', 'toString', '', ' ', 'f'.repeat(100))
    .map((key) => (check: Json) => ({ body: withOwn(check, key, 1), expect: bad(quotedName(key)) })),
  fc.constant((check: Json) => ({ body: withOwn(check, '__proto__', { polluted: true }), expect: bad('__proto__') })),
  fc.constant((check: Json) => ({ body: withOwn(check, 'constructor', { prototype: { polluted: true } }), expect: bad('constructor') })),
);

const caseArb: fc.Arbitrary<Case> = fc.tuple(baseCheckArb, maybe(mutationArb, 1, 1))
  .map(([check, mutation]) => (mutation === undefined ? { body: check, expect: OK } : mutation(check)));

// ---------------------------------------------------------------------------------------------
// Checking answers.

let server: InProcessServer;
let db: Database.Database;
const seen = { ALLOW: 0, ALLOW_DEFAULT: 0, DENY: 0, errors: 0, forwardAllow: 0, forwardDeny: 0, bigBatches: 0 };

before(async () => {
  server = await startServer({ files: { 'fixture.hcl': POLICY } });
  db = openDb(server.auditPath);
});
after(async () => {
  db?.close();
  await server?.close();
});

const countRows = () => db.prepare('SELECT COUNT(*) FROM audit_log').pluck().get() as number;
const rowsOf = (id: string) => db.prepare('SELECT * FROM audit_log WHERE decision_id = ?').all(id) as AuditLogRow[];

/** The error shape and registry; the field and message as the generator expects. */
function assertError(res: HttpResult, expect: Failure, where: string): void {
  assert.equal(res.status, expect.status, `${where}: expected ${expect.status} ${expect.code} (${expect.field ?? ''}), got ${res.status}: ${res.text.slice(0, 400)}`);
  assert.ok(res.json && typeof res.json === 'object', `${where}: error body is JSON: ${res.text.slice(0, 200)}`);
  assert.deepEqual(Object.keys(res.json), ['error'], where);
  const error = res.json.error as Json;
  assert.ok(Object.hasOwn(ERRORS, error.code as string), `${where}: code \`${String(error.code)}\` is in the registry`);
  assert.equal(ERRORS[error.code as keyof typeof ERRORS].status, res.status, `${where}: the code's status`);
  assert.equal(error.code, expect.code, `${where}: ${res.text.slice(0, 400)}`);
  assert.equal(typeof error.message, 'string');
  assert.ok((error.message as string).length > 0);
  if (expect.field !== undefined) {
    assert.equal(error.field, expect.field, `${where}: field of ${res.text.slice(0, 400)}`);
    if (expect.code === 'invalid_request') assert.ok((error.message as string).includes(`\`${expect.field}\``), `${where}: the message names \`${expect.field}\`: ${error.message as string}`);
  }
  assertNoLeak(res.text, [server.root]);
}

/** A decision answer's shape, and that it is the engine's decision for this check. */
function assertDecision(answer: Json, check: Json, where: string): void {
  const keys = ['decision_id', 'allow', 'result', 'reason', 'rule', 'policy_version', ...(check.explain === true ? ['considered'] : [])];
  assert.deepEqual(Object.keys(answer).sort(), keys.sort(), `${where}: fields of ${JSON.stringify(answer).slice(0, 300)}`);
  assert.match(answer.decision_id as string, UUID_RE, where);
  assert.ok(['ALLOW', 'ALLOW_DEFAULT', 'DENY'].includes(answer.result as string), where);
  assert.equal(answer.allow, answer.result !== 'DENY', `${where}: allow agrees with result`);
  assert.equal(typeof answer.reason, 'string');
  const policy = server.engine.current()!;
  assert.equal(answer.policy_version, policy.version, where);
  if (answer.rule !== null) {
    const rule = answer.rule as Json;
    assert.deepEqual(Object.keys(rule).sort(), ['file', 'line'], where);
    assert.ok(Number.isInteger(rule.line), where);
  }
  const context = (check.context as Json | undefined) ?? {};
  const expected = decideWith(policy, {
    identity: check.identity as string | undefined, action: check.action as string, resource: check.resource as string,
    namespace: check.namespace as string | undefined, sourceIp: context.source_ip as string | undefined,
  }, {});
  assert.ok(expected.ok, where);
  assert.deepEqual({ result: answer.result, rule: answer.rule, reason: answer.reason }, {
    result: expected.decision.result, rule: expected.decision.rule, reason: expected.decision.reason,
  }, `${where}: the engine's decision`);
  seen[answer.result as 'ALLOW']++;
}

/** The one row of a decision holds what was asked, verbatim, and what was answered. */
function assertRow(row: AuditLogRow, answer: Json, check: Json, where: string): void {
  const context = (check.context as Json | undefined) ?? {};
  const resource = check.resource as string;
  const namespaceResource = resource.startsWith('namespace:') ? resource.slice('namespace:'.length, -2) : undefined;
  const service = resource.startsWith('service:') ? resource.slice('service:'.length).split('/')[0] : null;
  const details: Json = {};
  for (const [k, v] of Object.entries(context)) if (!['source_ip', 'event_type', 'instance_id'].includes(k)) Object.defineProperty(details, k, { value: v, enumerable: true });
  const expected = {
    identity: check.identity,
    action: check.action,
    resource,
    namespace: namespaceResource ?? check.namespace ?? 'default',
    service_name: service,
    instance_id: instanceOf(resource) ?? context.instance_id ?? null,
    source_ip: context.source_ip === undefined ? '127.0.0.1' : SOURCE_IPS[context.source_ip as string],
    event_type: context.event_type ?? DERIVED_EVENT[check.action as string],
    result: answer.result,
    reason: answer.reason,
    rule: answer.rule === null ? null : `${(answer.rule as Json).file as string}:${(answer.rule as Json).line as number}`,
    policy_version: answer.policy_version,
    // JSON has one zero: a -0 sent is stored (and read back) as 0.
    details: Object.keys(details).length === 0 ? null : JSON.parse(JSON.stringify(redactDetails(details))),
  };
  const actual = {
    identity: row.identity, action: row.action, resource: row.resource, namespace: row.namespace, service_name: row.service_name,
    instance_id: row.instance_id, source_ip: row.source_ip, event_type: row.event_type, result: row.result, reason: row.reason,
    rule: row.rule, policy_version: row.policy_version, details: row.details === null ? null : JSON.parse(row.details),
  };
  assert.deepEqual(actual, expected, `${where}: the audit row`);
}

async function send(path: string, body: string | Buffer, contentType: string | null = 'application/json'): Promise<HttpResult> {
  try {
    return await request(`${server.url}${path}`, { method: 'POST', raw: body, contentType });
  } catch (e) {
    throw new Error(`POST ${path}: no answer (${(e as Error).message}; cause: ${String((e as { cause?: unknown }).cause)})`);
  }
}

/** One check to /v1/authorize: the answer, its rows, and (when `again`) the same request once more. */
async function checkSingle(c: Case, again: boolean): Promise<void> {
  const before = countRows();
  const res = await send('/v1/authorize', serialize(c.body));
  assert.ok(res.status < 500, `5xx: ${res.status} ${res.text.slice(0, 400)}`);
  if (!c.expect.ok) {
    assertError(res, c.expect, 'authorize');
    assert.equal(countRows(), before, 'an error writes no row');
    seen.errors++;
    if (again) assert.deepEqual(await send('/v1/authorize', serialize(c.body)).then((r) => [r.status, r.json]), [res.status, res.json], 'the same error again');
    return;
  }
  assert.equal(res.status, 200, `expected 200, got ${res.status}: ${res.text.slice(0, 400)}`);
  assertDecision(res.json, c.body, 'authorize');
  const rows = rowsOf(res.json.decision_id);
  assert.equal(rows.length, 1, 'exactly one row per decision');
  assertRow(rows[0]!, res.json, c.body, 'authorize');
  assert.equal(countRows(), before + 1, 'one decision, one row');
  if (!again) return;
  const second = await send('/v1/authorize', serialize(c.body));
  assert.equal(second.status, 200, second.text);
  assert.notEqual(second.json.decision_id, res.json.decision_id, 'a new decision_id');
  const pick = (a: Json) => ({ result: a.result, rule: a.rule, reason: a.reason, policy_version: a.policy_version });
  assert.deepEqual(pick(second.json), pick(res.json), 'the same decision again (cache)');
  const secondRows = rowsOf(second.json.decision_id);
  assert.equal(secondRows.length, 1);
  assertRow(secondRows[0]!, second.json, c.body, 'authorize, asked again');
}

test('POST /v1/authorize: generated checks get the expected answer and exactly their audit row', async () => {
  await fc.assert(fc.asyncProperty(caseArb, fc.boolean(), checkSingle), fuzzOptions(RUNS));
});

// ---------------------------------------------------------------------------------------------
// Batches: 1-6 generated checks with at most one mutated, or the sizes at the limits.

const validBody = JSON.stringify({ identity: 'team:web', action: 'read', resource: 'service:web', namespace: 'prod' });

interface BatchCase { body: unknown; expect: Outcome; checks: Json[] }

const batchArb: fc.Arbitrary<BatchCase> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.array(baseCheckArb, { minLength: 1, maxLength: 6 }), maybe(fc.tuple(mutationArb, fc.nat()), 1, 1)).map(([checks, mutation]) => {
    if (mutation === undefined) return { body: { checks }, expect: OK, checks };
    const [mutate, at] = mutation;
    const i = at % checks.length;
    const mutated = mutate(checks[i]!);
    const all = checks.map((c, j) => (j === i ? mutated.body : c));
    const expect: Outcome = mutated.expect.ok ? OK : { ...mutated.expect, ...(mutated.expect.field === undefined ? {} : { field: `checks[${i}].${mutated.expect.field}` }) };
    return { body: { checks: all }, expect, checks: all };
  }) },
  { weight: 1, arbitrary: fc.tuple(fc.array(baseCheckArb, { minLength: 1, maxLength: 5 }), fc.constantFrom(0, 1000, 1001)).map(([pool, size]) => {
    const checks = Array.from({ length: size }, (_, i) => pool[i % pool.length]!);
    const expect = size === 0 || size === 1001 ? bad('checks') : OK;
    return { body: { checks }, expect, checks };
  }) },
  { weight: 1, arbitrary: fc.constantFrom<[unknown, string]>(
    [{}, 'checks'], [{ checks: null }, 'checks'], [{ checks: {} }, 'checks'], [{ checks: 'x' }, 'checks'], [{ checks: [1] }, 'checks[0]'],
    [{ checks: [null] }, 'checks[0]'], [{ checks: [[]] }, 'checks[0]'], [{ checks: [JSON.parse(validBody)], extra: 1 }, 'extra'], [{ check: [] }, 'checks'], [{ checks: [JSON.parse(validBody)], 0: 1 }, '0'],
  ).map(([body, field]) => ({ body, expect: bad(field), checks: [] })) },
);

test('POST /v1/authorize/batch: answers in order, one row per check in the same order, nothing for a refused batch', async () => {
  await fc.assert(fc.asyncProperty(batchArb, async (c) => {
    const text = serialize(c.body);
    // Over the 1 MiB body limit (a thousand very long identities) the whole batch is refused first.
    const expect: Outcome = Buffer.byteLength(text) > 1024 * 1024 ? { ok: false, status: 413, code: 'body_too_large' } : c.expect;
    const before = countRows();
    const res = await send('/v1/authorize/batch', text);
    assert.ok(res.status < 500, `5xx: ${res.status} ${res.text.slice(0, 400)}`);
    if (!expect.ok) {
      assertError(res, expect, 'batch');
      assert.equal(countRows(), before, 'a refused batch writes no row');
      seen.errors++;
      return;
    }
    assert.equal(res.status, 200, `expected 200, got ${res.status}: ${res.text.slice(0, 400)}`);
    assert.deepEqual(Object.keys(res.json), ['results']);
    const results = res.json.results as Json[];
    assert.equal(results.length, c.checks.length);
    if (c.checks.length >= 1000) seen.bigBatches++;
    const ids = results.map((r) => r.decision_id as string);
    assert.equal(new Set(ids).size, ids.length, 'a decision_id per check');
    const rows = db.prepare('SELECT * FROM audit_log WHERE id > (SELECT COALESCE(MAX(id), 0) FROM audit_log) - ? ORDER BY id').all(c.checks.length) as AuditLogRow[];
    assert.deepEqual(rows.map((r) => r.decision_id), ids, 'the rows of the batch, in the order of its checks');
    assert.equal(countRows(), before + c.checks.length, 'one row per check, no more');
    // A thousand checks are a few patterns repeated: look at the first few closely.
    for (let i = 0; i < Math.min(results.length, 12); i++) {
      assertDecision(results[i]!, c.checks[i]!, `checks[${i}]`);
      assertRow(rows[i]!, results[i]!, c.checks[i]!, `checks[${i}]`);
    }
  }), fuzzOptions(RUNS / 5));
});

// ---------------------------------------------------------------------------------------------
// Bodies that are not a check at all: not JSON, not an object, not UTF-8, another content type.

const invalidJson = (): Failure => ({ ok: false, status: 400, code: 'invalid_json', field: 'body' });
const unsupported = (): Failure => ({ ok: false, status: 415, code: 'unsupported_media_type' });

const deeplyNested = (batch: boolean) => {
  const deep = `${'['.repeat(20000)}${']'.repeat(20000)}`;
  return batch ? `{"checks":[${validBody}],"x":${deep}}` : `${validBody.slice(0, -1)},"x":${deep}}`;
};
/** `"x": [[…{"__proto__": 1}…]]` nested `depth` arrays deep, and the field the server names: the path, its middle left out past 16 steps. */
function pollutedAt(depth: number): [(batch: boolean) => string, Failure] {
  const steps = ['x', ...Array.from({ length: depth }, () => '[0]'), '.__proto__'];
  const field = (steps.length <= 16 ? steps : [...steps.slice(0, 8), '…', ...steps.slice(-8)]).join('').replace('….', '…');
  const value = `${'['.repeat(depth)}{"__proto__":1}${']'.repeat(depth)}`;
  return [(batch) => (batch ? `{"checks":[${validBody}],"x":${value}}` : `${validBody.slice(0, -1)},"x":${value}}`), bad(field)];
}
const notUtf8 = (bytes: number[]) => Buffer.concat([Buffer.from('{"identity":"team:'), Buffer.from(bytes), Buffer.from('","action":"read","resource":"service:web"}')]);

const rawArb: fc.Arbitrary<{ raw: string | Buffer; contentType: string; expect: Outcome; batch: boolean }> = fc.tuple(
  fc.oneof(
    fc.constantFrom<[string | Buffer | ((batch: boolean) => string), Outcome]>(
      ['', invalidJson()], [' ', invalidJson()], ['{', invalidJson()], ['{"a":}', invalidJson()], ['{\'a\':1}', invalidJson()], ['nul', invalidJson()],
      [`${validBody}x`, invalidJson()], ['{"identity":"team:web",}', invalidJson()], ['\u0000', invalidJson()], ['{"a":"\\ud800"', invalidJson()],
      ['[]', bad('body')], ['1', bad('body')], ['"x"', bad('body')], ['null', bad('body')], ['true', bad('body')], ['[{"identity":"x"}]', bad('body')],
      // Bytes that are not UTF-8 (an invalid byte, a truncated sequence, an encoded surrogate).
      [notUtf8([0xff]), invalidJson()], [notUtf8([0xc3, 0x28]), invalidJson()], [notUtf8([0xed, 0xa0, 0x80]), invalidJson()], [notUtf8([0xe2, 0x82]), invalidJson()],
      [deeplyNested, bad('x')],
    ),
    fc.constantFrom(0, 1, 13, 14, 15, 1000, 100_000).map(pollutedAt),
    fc.string({ maxLength: 40 }).filter((s) => { try { JSON.parse(s); return false; } catch { return true; } }).map((s): [string, Outcome] => [s, invalidJson()]),
  ),
  fc.constantFrom('application/json', 'application/json; charset=utf-8', 'Application/JSON', 'application/json;charset="UTF-8"'),
  fc.boolean(),
).map(([[raw, expect], contentType, batch]) => ({ raw: typeof raw === 'function' ? raw(batch) : raw, contentType, expect, batch }));

const contentTypeArb = fc.tuple(
  fc.constantFrom<[string | null, Outcome]>(
    [null, unsupported()], ['text/plain', unsupported()], ['application/x-www-form-urlencoded', unsupported()], ['multipart/form-data; boundary=x', unsupported()],
    ['application/json; charset=utf-16', unsupported()], ['application/json; charset=latin1', unsupported()], ['application/vnd.api+json', unsupported()],
    ['text/json', unsupported()], ['application/json; charset=utf-8', OK], ['APPLICATION/JSON; CHARSET=UTF-8', OK],
  ),
  fc.boolean(),
);

test('bodies that are not a check: invalid JSON, not an object, not UTF-8, other content types', async () => {
  await fc.assert(fc.asyncProperty(rawArb, async ({ raw, contentType, expect, batch }) => {
    const before = countRows();
    const res = await send(batch ? '/v1/authorize/batch' : '/v1/authorize', raw, contentType);
    assert.ok(res.status < 500, `5xx: ${res.status} ${res.text.slice(0, 400)}`);
    assert.ok(!expect.ok);
    assertError(res, expect, batch ? 'batch' : 'authorize');
    assert.equal(countRows(), before);
    seen.errors++;
  }), fuzzOptions(RUNS / 5));
  await fc.assert(fc.asyncProperty(contentTypeArb, async ([[contentType, expect], batch]) => {
    const before = countRows();
    const body = batch ? JSON.stringify({ checks: [JSON.parse(validBody)] }) : validBody;
    const res = await send(batch ? '/v1/authorize/batch' : '/v1/authorize', body, contentType);
    if (expect.ok) {
      assert.equal(res.status, 200, `${String(contentType)}: ${res.text}`);
      assert.equal(countRows(), before + 1);
    } else {
      assertError(res, expect, String(contentType));
      assert.equal(countRows(), before);
    }
  }), fuzzOptions(40));
  // A body over the limit, and one with a content coding that is not decoded.
  const huge = JSON.stringify({ ...JSON.parse(validBody), context: { pad: 'p'.repeat(1000) } }).padEnd(1024 * 1024 + 1, ' ');
  assertError(await send('/v1/authorize', huge), { ok: false, status: 413, code: 'body_too_large' }, 'over the body limit');
  const gzip = await request(`${server.url}/v1/authorize`, { method: 'POST', raw: validBody, headers: { 'content-encoding': 'gzip' } });
  assertError(gzip, unsupported(), 'content-encoding gzip');
});

// ---------------------------------------------------------------------------------------------
// /v1/authorize/forward: the checks that headers can carry, as headers.

const FORWARD_HEADER_OF: Record<string, string> = {
  identity: 'x-pdp-identity', action: 'x-pdp-action', resource: 'x-pdp-resource', namespace: 'x-pdp-namespace',
  'context.source_ip': 'x-pdp-source-ip', 'context.event_type': 'x-pdp-event-type', 'context.instance_id': 'x-pdp-instance-id',
};

/** A check as X-PDP-* headers (UTF-8 bytes, as Node reads them back), or undefined when headers cannot carry it. */
function asHeaders(body: Json): Record<string, string> | undefined {
  const fields: [string, unknown][] = [];
  for (const [k, v] of Object.entries(body)) {
    if (k === 'context') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
      for (const [ck, cv] of Object.entries(v as Json)) fields.push([`context.${ck}`, cv]);
    } else {
      fields.push([k, v]);
    }
  }
  const headers: Record<string, string> = {};
  for (const [field, value] of fields) {
    const header = FORWARD_HEADER_OF[field];
    // A header value is text without controls, and HTTP trims the spaces around it.
    if (header === undefined || typeof value !== 'string' || !value.isWellFormed() || /[\u0000-\u001f\u007f]/.test(value) || value !== value.trim()) return undefined;
    headers[header] = Buffer.from(value, 'utf8').toString('latin1');
  }
  return headers;
}

test('/v1/authorize/forward: the same checks as headers, 200 allow, 403 deny, 400 naming the header', async () => {
  // A check's error names the header that carried the field.
  const asForward = (expect: Outcome): Outcome => (expect.ok || expect.field === undefined ? expect : { ...expect, field: FORWARD_HEADER_OF[expect.field] ?? `no header carries ${expect.field}` });
  // Mutations only headers can make, applied to a check that is otherwise valid.
  const headerMutationArb = fc.constantFrom<[string, string | undefined, Outcome]>(
    ['x-pdp-subject-token', 'pdp_abcdefghijkl_secret', bad('x-pdp-subject-token')],
    ['x-pdp-subject-certificate', '-----BEGIN%20CERTIFICATE-----%0Agarbage', bad('x-pdp-subject-certificate')],
    ['x-pdp-subject-certificate', '%zz', bad('x-pdp-subject-certificate')],
    ['x-pdp-identity', '\xff\xfe', bad('x-pdp-identity')], // bytes that are not UTF-8
    ['x-pdp-action', undefined, bad('x-pdp-action')],
    ['x-pdp-resource', undefined, bad('x-pdp-resource')],
    ['x-pdp-unknown', 'ignored', OK],
  );
  const forwardCaseArb = fc.tuple(caseArb, maybe(headerMutationArb, 1, 4)).map(([c, mutation]) => {
    const headers = asHeaders(c.body);
    if (headers === undefined || mutation === undefined || !c.expect.ok) return { body: c.body, headers, expect: asForward(c.expect) };
    const [header, value, expect] = mutation;
    if (value === undefined) delete headers[header];
    else headers[header] = value;
    return { body: c.body, headers, expect };
  }).filter((c) => c.headers !== undefined);
  await fc.assert(fc.asyncProperty(forwardCaseArb, fc.constantFrom('GET', 'POST', 'DELETE'), async (c, method) => {
    const before = countRows();
    let res: HttpResult;
    try {
      res = await request(`${server.url}/v1/authorize/forward`, { method, headers: c.headers! });
    } catch (e) {
      throw new Error(`forward: no answer (${(e as Error).message})`);
    }
    assert.ok(res.status < 500, `5xx: ${res.status} ${res.text.slice(0, 400)}`);
    const expect = c.expect;
    if (!expect.ok) {
      assertError(res, expect, 'forward');
      assert.equal(countRows(), before);
      return;
    }
    assert.ok(res.status === 200 || res.status === 403, `forward: ${res.status} ${res.text.slice(0, 400)}`);
    assertDecision(res.json, c.body, 'forward');
    assert.equal(res.status, res.json.allow ? 200 : 403, 'the status is the decision');
    assert.equal(res.headers.get('x-pdp-decision-id'), res.json.decision_id);
    assert.equal(res.headers.get('x-pdp-result'), res.json.result);
    seen[res.json.allow ? 'forwardAllow' : 'forwardDeny']++;
    const rows = rowsOf(res.json.decision_id);
    assert.equal(rows.length, 1);
    assertRow(rows[0]!, res.json, c.body, 'forward');
    assert.equal(countRows(), before + 1);
  }), fuzzOptions(RUNS / 2));
});

// ---------------------------------------------------------------------------------------------
// Many requests at once: good and refused singles and batches share group commits.

test('concurrent singles and batches: each decision has its one row, a refused request none', async () => {
  const mixArb = fc.array(fc.oneof(caseArb.map((c) => ({ batch: false as const, c })), batchArb.filter((b) => b.checks.length <= 6).map((c) => ({ batch: true as const, c }))), { minLength: 2, maxLength: 16 });
  await fc.assert(fc.asyncProperty(mixArb, async (mix) => {
    const before = countRows();
    const answers = await Promise.all(mix.map((m) => send(m.batch ? '/v1/authorize/batch' : '/v1/authorize', serialize(m.c.body))));
    let decisions = 0;
    for (let k = 0; k < mix.length; k++) {
      const { batch, c } = mix[k]!;
      const res = answers[k]!;
      const where = `${batch ? 'batch' : 'authorize'} #${k}`;
      if (!c.expect.ok) {
        assertError(res, c.expect, where);
        continue;
      }
      assert.equal(res.status, 200, `${where}: ${res.text.slice(0, 400)}`);
      const results = batch ? res.json.results as Json[] : [res.json];
      const checks = batch ? (c as BatchCase).checks : [c.body];
      for (let i = 0; i < results.length; i++) {
        assertDecision(results[i]!, checks[i]!, `${where}[${i}]`);
        const rows = rowsOf(results[i]!.decision_id as string);
        assert.equal(rows.length, 1, `${where}[${i}]: one row`);
        assertRow(rows[0]!, results[i]!, checks[i]!, `${where}[${i}]`);
      }
      if (batch && results.length > 1) {
        const ids = db.prepare(`SELECT decision_id FROM audit_log WHERE decision_id IN (${results.map(() => '?').join(',')}) ORDER BY id`).pluck().all(...results.map((r) => r.decision_id));
        assert.deepEqual(ids, results.map((r) => r.decision_id), `${where}: rows in the order of the checks`);
      }
      decisions += results.length;
    }
    assert.equal(countRows(), before + decisions, 'a row per decision answered, none for a refused request');
  }), fuzzOptions(RUNS / 5));
});

test('the generators reached every result, errors, both forward statuses and the thousand-check batches', () => {
  for (const key of Object.keys(seen) as (keyof typeof seen)[]) assert.ok(seen[key] > 0, `nothing reached ${key}: ${JSON.stringify(seen)}`);
});
