// JSON schemas for every route: ajv validates requests before any policy code runs, and the
// response schemas let fastify serialize without JSON.stringify's reflection.
import { SERVER_EVENT_TYPES } from '../audit/event';
import { NAME_RE } from '../syntax/identity-pattern';
import { ACTIONS, IDENTITY_MAX_LENGTH, INSTANCE_RE } from '../syntax/request';

const scalar = { type: ['string', 'number', 'boolean', 'null'], maxLength: 1024 } as const;

/**
 * The names under which the server itself records, in a decision row's `details`, who called, how the
 * subject was authenticated and what identity was asserted. A context field of the same name would
 * be stored as if the server had written it (a PEP claiming `authenticated_by: "certificate"`), so
 * it is refused rather than mixed in.
 */
export const SERVER_DETAILS_FIELDS = ['caller', 'authenticated_by', 'asserted_identity'] as const;

// Limits and patterns are the request vocabulary's own (src/syntax/request.ts), which `pdp eval` and
// `test` blocks validate by too: neither decides a request this schema refuses.
export const authorizeRequest = {
  type: 'object',
  additionalProperties: false,
  required: ['action', 'resource'],
  properties: {
    identity: { type: 'string', minLength: 1, maxLength: IDENTITY_MAX_LENGTH },
    action: { type: 'string', enum: ACTIONS },
    // A cap that keeps huge strings from the parser; parseResource itself takes at most 515
    // characters (`service:` + 253 + `/` + 253), so it refuses nothing eval would decide.
    resource: { type: 'string', minLength: 1, maxLength: 600 },
    namespace: { type: 'string', pattern: NAME_RE.source },
    context: {
      type: 'object',
      maxProperties: 32,
      // Names as small as the values: each one is stored in the audit row's `details`.
      propertyNames: { maxLength: 128 },
      properties: {
        // As for `resource`: the longest address normalizeIp accepts is 45 characters.
        source_ip: { type: 'string', minLength: 1, maxLength: 64 },
        // Upper-case letters and `_`; never one of the types only the server writes (SERVER_EVENT_TYPES).
        event_type: { type: 'string', pattern: '^[A-Z][A-Z_]{0,63}$', not: { enum: SERVER_EVENT_TYPES } },
        // As in `service:NAME/INSTANCE`: visible ASCII but `/`, e.g. `10.0.0.7:8080`.
        instance_id: { type: 'string', pattern: INSTANCE_RE.source },
        ...Object.fromEntries(SERVER_DETAILS_FIELDS.map((name) => [name, false])),
      },
      additionalProperties: scalar,
    },
    credentials: {
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      properties: {
        token: { type: 'string', minLength: 1, maxLength: 512 },
        certificate: { type: 'string', minLength: 1, maxLength: 32768 },
      },
    },
    explain: { type: 'boolean' },
  },
} as const;

/**
 * `/v1/authorize/forward` (nginx `auth_request` and other forward-auth PEPs): a check in request
 * headers instead of a body, each header validated as the body field it stands for.
 */
export const FORWARD_HEADERS = {
  'x-pdp-identity': 'identity',
  'x-pdp-action': 'action',
  'x-pdp-resource': 'resource',
  'x-pdp-namespace': 'namespace',
  'x-pdp-source-ip': 'context.source_ip',
  'x-pdp-event-type': 'context.event_type',
  'x-pdp-instance-id': 'context.instance_id',
  'x-pdp-subject-token': 'credentials.token',
  // URL-encoded PEM (nginx's `$ssl_client_escaped_cert`): a header cannot hold the PEM's line breaks.
  'x-pdp-subject-certificate': 'credentials.certificate',
} as const;

export type ForwardHeader = keyof typeof FORWARD_HEADERS;

const bodyFieldSchema = (field: string): object => {
  if (field === 'credentials.certificate') return { type: 'string', minLength: 1, maxLength: 3 * 32768 };
  const [first, second] = field.split('.') as [string, string | undefined];
  const properties = authorizeRequest.properties as Record<string, { properties?: Record<string, object> }>;
  return second === undefined ? properties[first]! : properties[first]!.properties![second]!;
};

export const forwardHeaders = {
  type: 'object',
  required: ['x-pdp-action', 'x-pdp-resource'],
  properties: Object.fromEntries(Object.entries(FORWARD_HEADERS).map(([header, field]) => [header, bodyFieldSchema(field)])),
} as const;

export const batchRequest = {
  type: 'object',
  additionalProperties: false,
  required: ['checks'],
  properties: { checks: { type: 'array', minItems: 1, maxItems: 1000, items: authorizeRequest } },
} as const;

/** `POST /v1/policies/reload` takes no parameters: no body, or an empty object. */
export const reloadRequest = {
  type: 'object',
  additionalProperties: false,
  properties: {},
} as const;

const ruleRef = { type: ['object', 'null'], properties: { file: { type: 'string' }, line: { type: 'integer' } } } as const;

const considered = {
  type: 'array',
  items: {
    type: 'object',
    properties: {
      rule: { type: 'object', properties: { file: { type: 'string' }, line: { type: 'integer' }, column: { type: 'integer' } } },
      block: { type: 'string' },
      policy: { type: 'string' },
      outcome: { type: 'string' },
      why: { type: 'string' },
      description: { type: 'string' },
    },
  },
} as const;

/**
 * A string pdp itself makes and that never needs JSON escaping: fast-json-stringify writes it as is
 * (`format: 'unsafe'`) instead of scanning it, ~0.2-0.4 µs less per check of a batch. Only for
 * `randomUUID()` ids, `sha256:<hex>` versions and the result enum; never for text a caller sent.
 */
const ownText = { type: 'string', format: 'unsafe' } as const;

export const authorizeResponse = {
  type: 'object',
  required: ['decision_id', 'allow', 'result', 'reason', 'rule', 'policy_version'],
  properties: {
    decision_id: ownText,
    allow: { type: 'boolean' },
    result: ownText,
    reason: { type: 'string' },
    rule: ruleRef,
    policy_version: ownText,
    identity: { type: 'string' },
    considered,
  },
} as const;

export const batchResponse = {
  type: 'object',
  properties: { results: { type: 'array', items: authorizeResponse } },
} as const;

/** `GET /v1/audit/anomalies`: query values are text (no coercion); the shapes `pdp audit anomalies` accepts. */
export const anomaliesQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    since: { type: 'string', pattern: '^\\d{1,9}(ms|s|m|h|d)$' },
    spike_threshold: { type: 'string', pattern: '^\\d{1,9}$' },
    deny_threshold: { type: 'string', pattern: '^\\d{1,9}$' },
  },
} as const;
