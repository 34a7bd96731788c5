// Input checks beyond the JSON schemas, and how a schema violation is worded: which field, and what
// was expected. Pure functions over parsed bodies and request headers; instance.ts (the error
// handler, the body parsers) and decide.ts (one check) call them.
import type { IncomingHttpHeaders } from 'node:http';
import { EVENT_TYPE_ACTION, SERVER_EVENT_TYPES } from '../audit/event';
import { codePointLength } from '../syntax/request';
import { FORWARD_HEADERS, SERVER_DETAILS_FIELDS, type ForwardHeader } from './schemas';
import { disguisedIdentityProblem } from '../syntax/characters';
import type { AuthorizeBody } from './deps';

/** How many characters of a field name the caller chose (an unknown key) an error quotes. */
const QUOTED_NAME_MAX = 64;

/** A caller-chosen name, cut short: an error answers what was wrong, it does not echo a megabyte back. */
function quotedName(name: string): string {
  return name.length <= QUOTED_NAME_MAX ? name : `${name.slice(0, QUOTED_NAME_MAX)}…`;
}

/**
 * ajv's instancePath (`/checks/3/resource`) → the field people write (`checks[3].resource`). `root` is
 * the validated value: a segment is an index only where it steps into an array, since an object's key
 * may be digits too (`context.123`, not `context[123]`).
 */
function fieldAt(instancePath: string, missing: string | undefined, root: unknown): string {
  // ajv escapes `~` and `/` in a key as `~0` and `~1` (JSON Pointer).
  const segments = instancePath === '' ? [] : instancePath.slice(1).split('/').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  let field = '';
  let at = root;
  for (const segment of segments) {
    field = Array.isArray(at) ? `${field}[${segment}]` : field ? `${field}.${quotedName(segment)}` : quotedName(segment);
    at = at !== null && typeof at === 'object' ? (at as Record<string, unknown>)[segment] : undefined;
  }
  if (missing !== undefined) field = field ? `${field}.${quotedName(missing)}` : quotedName(missing);
  return field === '' && missing === undefined ? 'body' : field;
}

export interface ValidationIssue {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
  /** Set when the issue is with a key's name (`propertyNames`), not its value. */
  propertyName?: string;
  /** The value that failed (ajv's `verbose` option), to tell apart failures the keyword alone cannot. */
  data?: unknown;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The query parameters of the API: a repeated one arrives as an array, which is worth saying in words. */
const QUERY_PARAMETERS = new Set(['since', 'spike_threshold', 'deny_threshold']);

/** A failed schema check in words, naming the field; `root` is the value that was validated (the body, the query). */
export function describeValidation(issue: ValidationIssue, root: unknown): { field: string; message: string } {
  const { keyword, params } = issue;
  const fieldName = (instancePath: string, missing?: string) => fieldAt(instancePath, missing, root);
  if (issue.propertyName !== undefined && keyword === 'maxLength') {
    const field = fieldName(issue.instancePath, issue.propertyName);
    return { field, message: `\`${field}\`: field names in \`${fieldName(issue.instancePath)}\` are at most ${String(params.limit)} characters; this one has ${codePointLength(issue.propertyName)}` };
  }
  if (keyword === 'required') {
    const field = fieldName(issue.instancePath, String(params.missingProperty));
    return { field, message: `\`${field}\` is required` };
  }
  if (keyword === 'additionalProperties') {
    const name = String(params.additionalProperty);
    const field = fieldName(issue.instancePath, name);
    return { field, message: `unknown field \`${field}\`${name === '' ? ' (a field with an empty name)' : ''}` };
  }
  const field = fieldName(issue.instancePath);
  switch (keyword) {
    case 'type': {
      // JSON has no limit on numbers, but JavaScript's is ±1.8e308: `1e400` parses as Infinity.
      if (typeof issue.data === 'number' && !Number.isFinite(issue.data)) return { field, message: `\`${field}\` is a number too large to represent (at most ±1.8e308)` };
      if (Array.isArray(issue.data) && QUERY_PARAMETERS.has(field)) return { field, message: `\`${field}\` is given more than once; give it once` };
      const article = (t: string) => (t === 'null' ? 'null' : t === 'array' || t === 'object' || t === 'integer' ? `an ${t}` : `a ${t}`);
      return { field, message: `\`${field}\` must be ${String(params.type).split(',').map(article).join(' or ')}` };
    }
    case 'enum': return { field, message: `\`${field}\` must be one of ${(params.allowedValues as unknown[]).map((v) => `\`${String(v)}\``).join(', ')}` };
    case 'pattern':
      if (field.endsWith('event_type')) return { field, message: `\`${field}\` must be upper-case letters and \`_\`, e.g. \`REGISTRATION\`` };
      if (field === 'since') {
        if (typeof issue.data === 'string' && /^\d{10,}(ms|s|m|h|d)$/.test(issue.data)) return { field, message: '`since` is too long a duration: at most 9 digits before the unit' };
        return { field, message: '`since` must be a duration like `30m`, `1h` or `7d`' };
      }
      if (field.endsWith('_threshold')) return { field, message: `\`${field}\` must be a whole number` };
      if (field.endsWith('instance_id')) return { field, message: `\`${field}\` must be 1-253 visible ASCII characters other than \`/\` (no spaces), as an instance in \`service:NAME/INSTANCE\`` };
      return { field, message: `\`${field}\` must be 1-253 characters of A-Z a-z 0-9 . _ -` };
    // What was found too, as ajv counts it (code points, so an emoji is one character).
    case 'maxLength': return { field, message: `\`${field}\` is longer than ${String(params.limit)} characters${typeof issue.data === 'string' ? `; it has ${codePointLength(issue.data)}` : ''}` };
    case 'minLength': return { field, message: `\`${field}\` must not be empty` };
    case 'minItems': return { field, message: `\`${field}\` must hold at least ${String(params.limit)} item(s)` };
    case 'maxItems': return { field, message: `\`${field}\` may hold at most ${String(params.limit)} items${Array.isArray(issue.data) ? `; it holds ${issue.data.length}` : ''}` };
    case 'maxProperties': return { field, message: `\`${field}\` may have at most ${String(params.limit)} fields${isPlainObject(issue.data) ? `; it has ${Object.keys(issue.data).length}` : ''}` };
    case 'minProperties': return { field, message: `\`${field}\` must not be empty` };
    case 'false schema':
      if (SERVER_DETAILS_FIELDS.some((name) => field.endsWith(`context.${name}`))) {
        return { field, message: `\`${field}\` is reserved: the server records ${SERVER_DETAILS_FIELDS.map((f) => `\`${f}\``).join(', ')} in the audit row's \`details\` itself (who called, how the subject was authenticated, what identity was asserted); send this value under another name` };
      }
      return { field, message: `\`${field}\` is not allowed` };
    case 'not':
      if (field.endsWith('event_type')) {
        return { field, message: `\`${field}\` may not be ${SERVER_EVENT_TYPES.map((t) => `\`${t}\``).join(', ')}: only the server writes those; use \`REGISTRATION\`, \`DEREGISTRATION\`, \`DISCOVERY\`, \`ADMIN\` or another upper-case name` };
      }
      return { field, message: `\`${field}\` is not allowed` };
    default: return { field, message: `\`${field}\` ${issue.message ?? 'is invalid'}` };
  }
}

/**
 * A failed header of `/v1/authorize/forward`, described as the body field it stands for would be,
 * then named by the header (`x-pdp-resource` must be …).
 */
export function describeForwardHeader(issue: ValidationIssue): { field: string; message: string } {
  const header = (issue.keyword === 'required' ? String(issue.params.missingProperty) : issue.instancePath.slice(1)) as ForwardHeader;
  const bodyField = FORWARD_HEADERS[header];
  if (bodyField === undefined) return describeValidation(issue, undefined);
  const asBody: ValidationIssue = issue.keyword === 'required'
    ? { ...issue, instancePath: '', params: { ...issue.params, missingProperty: bodyField } }
    : { ...issue, instancePath: `/${bodyField.replace('.', '/')}` };
  return { field: header, message: inHeaderTerms(describeValidation(asBody, undefined).message, 'x-pdp-subject-token') };
}

/**
 * A message about a forward check's body fields, with each field it quotes named by the header that
 * carries it (`resource` in an instance contradiction, `event_type` in a hint). `credentials` is
 * `credentialsHeader`, the credential header the check used.
 */
export function inHeaderTerms(message: string, credentialsHeader: ForwardHeader): string {
  let out = message.split('`credentials`').join(`\`${credentialsHeader}\``);
  for (const [header, field] of Object.entries(FORWARD_HEADERS)) {
    for (const name of new Set([field, field.slice(field.lastIndexOf('.') + 1)])) out = out.split(`\`${name}\``).join(`\`${header}\``);
  }
  return out;
}

/** How many steps of a deep path an error names: the first ones and the last ones, with `…` between. */
const PATH_STEPS_SHOWN = 16;

/** A path as people write it (`checks[2].__proto__`), its middle left out (`…`) when it is deeper than PATH_STEPS_SHOWN. */
function pathText(steps: (string | number)[]): string {
  const join = (part: (string | number)[]) => part.reduce<string>((acc, step) => (typeof step === 'number' ? `${acc}[${step}]` : acc ? `${acc}.${quotedName(step)}` : quotedName(step)), '');
  if (steps.length <= PATH_STEPS_SHOWN) return join(steps);
  return `${join(steps.slice(0, PATH_STEPS_SHOWN / 2))}…${join(steps.slice(-PATH_STEPS_SHOWN / 2))}`;
}

/**
 * Where a parsed JSON body holds a key that could pollute a prototype: an own `__proto__`, or a
 * `constructor` object with its own `prototype` (what secure-json-parse refuses). Returns the field
 * as people write it (`checks[2].__proto__`; the middle of a very deep path left out), or undefined.
 * The first such key in document order. A loop, not recursion: a body nested a hundred thousand
 * levels deep fits in the body limit and would overflow the stack.
 */
export function forbiddenKey(value: unknown): string | undefined {
  type Step = { parent: Step | undefined; key: string | number };
  const pathOf = (step: Step | undefined, last: string): string => {
    const steps: (string | number)[] = [last];
    for (let at = step; at !== undefined; at = at.parent) steps.push(at.key);
    return pathText(steps.reverse());
  };
  const own = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);
  // Pre-order, as the document reads: an object's own keys are looked at before what they hold.
  const pending: { value: unknown; at: Step | undefined }[] = [{ value, at: undefined }];
  while (pending.length > 0) {
    const { value: node, at } = pending.pop()!;
    if (node === null || typeof node !== 'object') continue;
    if (Array.isArray(node)) {
      for (let i = node.length - 1; i >= 0; i--) pending.push({ value: node[i], at: { parent: at, key: i } });
      continue;
    }
    if (own(node, '__proto__')) return pathOf(at, '__proto__');
    const ctor = (node as Record<string, unknown>).constructor;
    if (own(node, 'constructor') && ctor !== null && typeof ctor === 'object' && own(ctor, 'prototype')) return pathOf(at, 'constructor');
    const keys = Object.keys(node);
    for (let i = keys.length - 1; i >= 0; i--) pending.push({ value: (node as Record<string, unknown>)[keys[i]!], at: { parent: at, key: keys[i]! } });
  }
  return undefined;
}

/**
 * Why a check cannot be audited as sent, or undefined: `field` names the field (relative to the
 * check) and `message` says what is wrong with it, in words.
 * - A lone UTF-16 surrogate (JSON's `\ud800` escape) would reach SQLite as invalid UTF-8 and break
 *   other readers of the audit log. Every string that becomes an audit column or part of `details` is
 *   checked; `isWellFormed` returns at once for one-byte strings.
 * - The identity, a column security teams group and read by, must hold no character that would
 *   disguise it there (`disguisingIdentityCharacter`: controls, zero-width and bidi characters).
 *   (The other columns are names, addresses and enums their own patterns already restrict; `details`
 *   is JSON text, in which every control character is escaped.)
 */
export function unauditableText(body: AuthorizeBody): { field: string; message: string } | undefined {
  const surrogate = (field: string) => ({
    field,
    message: 'is not well-formed Unicode: it holds a lone surrogate (such as `\\ud800` without its pair); send UTF-8 text or complete surrogate pairs',
  });
  if (body.identity !== undefined) {
    if (!body.identity.isWellFormed()) return surrogate('identity');
    const disguised = disguisedIdentityProblem(body.identity);
    if (disguised) return { field: 'identity', message: disguised };
  }
  if (!body.resource.isWellFormed()) return surrogate('resource');
  if (body.namespace !== undefined && !body.namespace.isWellFormed()) return surrogate('namespace');
  const context = body.context;
  if (context !== undefined) {
    for (const key in context) {
      if (!key.isWellFormed()) return surrogate('context');
      const value = context[key];
      if (typeof value === 'string' && !value.isWellFormed()) return surrogate(`context.${key}`);
    }
  }
  return undefined;
}

/**
 * Why `context.event_type` contradicts the check's action, or undefined. The monitoring analyses
 * (registration spikes, unknown services) select `REGISTRATION` rows, and a discovery row is kept
 * 30 days instead of 90: a PEP that labelled a `write` `DISCOVERY` would hide registrations from
 * both. Other upper-case names (`HEALTH_CHECK`) go with any action.
 */
export function eventTypeContradiction(action: string, eventType: string | undefined): string | undefined {
  if (eventType === undefined) return undefined;
  const expected = EVENT_TYPE_ACTION.get(eventType);
  if (expected === undefined || expected === action) return undefined;
  const named = [...EVENT_TYPE_ACTION].filter(([, a]) => a === action).map(([t]) => `\`${t}\``);
  return `is \`${eventType}\`, the event of a \`${expected}\`, but the check asks \`${action}\`; a \`${action}\` is ${named.join(' or ')} (or leave \`event_type\` out and it is derived)`;
}

/**
 * Why a JSON body cannot be read as sent, or undefined: it is read as UTF-8 (RFC 8259) and not
 * decompressed, so another charset or a content coding would be misread rather than refused.
 */
export function unreadableBody(headers: IncomingHttpHeaders): string | undefined {
  const encoding = headers['content-encoding'];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
    return `the body must be sent without a content coding; got \`Content-Encoding: ${encoding}\``;
  }
  const type = headers['content-type']!;
  if (type.length > 16) {
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(type)?.[1];
    if (charset !== undefined && !/^utf-?8$/i.test(charset)) return `the body must be JSON in UTF-8; got charset \`${charset}\``;
  }
  return undefined;
}
