// Raw request fields → a validated request, as the engine decides it and as `pdp check` validates a test
// block's request. Pure; every refusal names its field and what was expected.
import type ipaddr from 'ipaddr.js';
import { quote } from '../diagnostics';
// The defining modules, not this directory's index.ts barrel: a re-exported binding is a getter call
// per use in CommonJS output, and this runs on every decision.
import { ANONYMOUS } from './identity-pattern';
import { ACTION_RANK, isAction, isValidName, normalizeIp, parseIp, parseResource, type Action, type Resource } from './request';

export interface RawRequest {
  identity?: string | undefined;
  action: string;
  resource: string;
  namespace?: string | undefined;
  sourceIp?: string | undefined;
}

export interface Request {
  /** Undefined when the subject is unauthenticated (the engine applies `settings.anonymous`). */
  identity: string | undefined;
  action: Action;
  /** As the caller wrote it, for reasons and the audit row. */
  resourceText: string;
  resource: Resource;
  /** The service a `service:` resource names (decided as the service even with `/INSTANCE`). */
  service: string | undefined;
  namespace: string;
  sourceIp: string | undefined;
  sourceAddress: ipaddr.IPv4 | ipaddr.IPv6 | undefined;
  /** ACTION_RANK[action]. */
  rank: number;
  /** The decision table's key for this resource, built once while parsing the request (see resourceKey). */
  resourceKey: string;
}

/**
 * The decision table's resource key. Unambiguous: names never contain NUL (they are A-Z a-z 0-9 . _ -)
 * and a service name is never empty, so `ns\0` (the namespace itself) differs from every `ns\0svc`.
 */
export const resourceKey = (namespace: string, service: string | undefined): string => `${namespace}\0${service ?? ''}`;

export interface RequestError {
  field: string;
  message: string;
}

export type PrepareResult = { ok: true; request: Request } | { ok: false; error: RequestError };

export const DEFAULT_NAMESPACE = 'default';

export function prepareRequest(raw: RawRequest): PrepareResult {
  const fail = (field: string, message: string): PrepareResult => ({ ok: false, error: { field, message } });
  if (!isAction(raw.action)) return fail('action', `unknown action ${quote(raw.action)}; expected \`read\`, \`write\` or \`admin\``);
  const parsed = parseResource(raw.resource);
  if (!parsed.ok) return fail('resource', parsed.message);
  const resource = parsed.resource;
  if (raw.namespace !== undefined && !isValidName(raw.namespace)) {
    return fail('namespace', `invalid namespace ${quote(raw.namespace)}; names are 1-253 characters of A-Z a-z 0-9 . _ -`);
  }
  let namespace = raw.namespace ?? DEFAULT_NAMESPACE;
  if (resource.kind === 'namespace') {
    if (raw.namespace !== undefined && raw.namespace !== resource.namespace) {
      return fail('namespace', `\`${raw.namespace}\` contradicts the resource \`${raw.resource}\`; omit \`namespace\` or make them equal`);
    }
    namespace = resource.namespace;
  }
  let sourceIp: string | undefined;
  let sourceAddress: Request['sourceAddress'];
  if (raw.sourceIp !== undefined) {
    sourceIp = normalizeIp(raw.sourceIp);
    if (sourceIp === undefined) return fail('source_ip', `invalid IP address ${quote(raw.sourceIp)}; expected IPv4 (10.0.1.50) or IPv6 (fd00::1)`);
    sourceAddress = parseIp(sourceIp);
  }
  if (raw.identity !== undefined && raw.identity.length === 0) return fail('identity', 'identity is empty; omit it for an anonymous request');
  const service = resource.kind === 'service' ? resource.service : undefined;
  return {
    ok: true,
    request: {
      identity: raw.identity,
      action: raw.action,
      resourceText: raw.resource,
      resource,
      service,
      namespace,
      sourceIp,
      sourceAddress,
      rank: ACTION_RANK[raw.action],
      resourceKey: resourceKey(namespace, service),
    },
  };
}

/** Why a request without an identity is refused by a policy set without `settings { anonymous = true }`. */
export const ANONYMOUS_REFUSED: RequestError = {
  field: 'identity',
  message: 'identity is required: this policy set does not allow anonymous requests (`settings { anonymous = true }`)',
};

/** Why a request that names `anonymous` itself is refused by such a policy set. */
export const ANONYMOUS_NAMED_REFUSED: RequestError = {
  field: 'identity',
  message: '`anonymous` is the identity of unauthenticated subjects, and this policy set does not allow anonymous requests; send the subject\'s own identity, or allow them with `settings { anonymous = true }`',
};

/**
 * The identity a request is decided for: its own, or `anonymous` when it has none and the policy set
 * allows anonymous requests; undefined when it is refused (`anonymousRefusal` says why). A request
 * that names `anonymous` itself is an anonymous request: with `anonymous = false` no rule naming
 * `anonymous` may grant to whoever asserts that name. The engine and the check of `test` blocks
 * both ask this, so a test `pdp check` accepts is one the engine can decide.
 */
export function subjectIdentity(identity: string | undefined, anonymousAllowed: boolean): string | undefined {
  if (identity !== undefined && identity !== ANONYMOUS) return identity;
  return anonymousAllowed ? ANONYMOUS : undefined;
}

/** Why `subjectIdentity` refused `identity`. */
export function anonymousRefusal(identity: string | undefined): RequestError {
  return identity === ANONYMOUS ? ANONYMOUS_NAMED_REFUSED : ANONYMOUS_REFUSED;
}
