// Deciding one check of /v1/authorize, /v1/authorize/batch or /v1/authorize/forward: the checks no
// schema can make (text that cannot be audited, an event type contradicting the action), a subject's
// credentials, the decision cache, the engine, the answer and its audit row. What a check decided is
// told to the cache only once the whole request is answered (`settle`). No I/O of its own: the audit
// row is returned, not written, and subject authentication comes in with its failure auditing.
import { randomUUID } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { deriveEventType, type AuditEvent } from '../audit/event';
import { decideWith, type LoadedPolicy } from '../engine';
import { mayHoldToken, redactTokens } from '../identity/token-format';
import { normalizeIp } from '../syntax/request'; // per decision: the defining module, not the barrel's getter
import { DecisionCache, type CachedDecision } from './cache';
import { ApiError, AuthnError } from './errors';
import type { Authenticator, AuthorizeBody } from './deps';
import { eventTypeContradiction, unauditableText } from './validation';

export interface Decided {
  response: Record<string, unknown>;
  event: AuditEvent;
  /**
   * What the decision cache is told once the whole request is known to be answered (`settle`): a
   * hit to count, or a computed decision to store. Deferred so that a batch refused for a bad check
   * leaves no trace of its good ones: no cache entries, no counts, no rows.
   */
  cacheOutcome: 'hit' | { key: string; value: CachedDecision } | undefined;
}

/** How a field of check `position` is named in errors: `checks[3].resource` in a batch, `resource` alone. */
const fieldPrefix = (position: number) => (position < 0 ? '' : `checks[${position}].`);

/** What an AUTHN_FAILURE row records of the check a failed subject authentication was for. */
export interface AuthnFailureContext {
  action?: string | null;
  resource?: string | null;
  namespace?: string | null;
  details?: Record<string, unknown>;
}

export interface DeciderDeps {
  cache: DecisionCache;
  /** `registry_node` of the rows. */
  nodeName: string;
  /** Absent: subject credentials cannot be verified (400). */
  authenticator?: Authenticator;
  /** Runs an authentication step; a failure is audited (an AUTHN_FAILURE row) and rethrown. */
  authenticated<T>(request: FastifyRequest, step: () => Promise<T> | T, context?: AuthnFailureContext): Promise<T>;
}

export interface CheckDecider {
  /** Decides one check; `position` is its index in a batch, -1 for a single check (errors name `checks[i].field`). */
  decideOne(body: AuthorizeBody, request: FastifyRequest, policy: LoadedPolicy, position: number, timestamp: string): Decided | Promise<Decided>;
  /** Tells the cache what a check found (a hit to count, a decision to store), once its request is answered. */
  settle(policy: LoadedPolicy, decided: Decided): void;
}

export function createDecider({ cache, nodeName, authenticator, authenticated }: DeciderDeps): CheckDecider {
  function settle(policy: LoadedPolicy, decided: Decided): void {
    const outcome = decided.cacheOutcome;
    if (outcome === undefined) return;
    if (outcome === 'hit') cache.hit();
    else cache.store(policy, outcome.key, outcome.value);
  }

  /**
   * Decides one check (cache first); throws ApiError for a bad field. `position`: its index in a batch, -1 for a single check.
   * Synchronous unless the check carries credentials to verify: no promise and no microtask hop per
   * check on the common path (a batch of 100 would otherwise pay 100 of each).
   */
  function decideOne(body: AuthorizeBody, request: FastifyRequest, policy: LoadedPolicy, position: number, timestamp: string): Decided | Promise<Decided> {
    const unauditable = unauditableText(body);
    if (unauditable !== undefined) {
      const field = `${fieldPrefix(position)}${unauditable.field}`;
      throw new ApiError('invalid_request', `\`${field}\` ${unauditable.message}`, { field });
    }
    const contradiction = eventTypeContradiction(body.action, body.context?.event_type);
    if (contradiction !== undefined) {
      const field = `${fieldPrefix(position)}context.event_type`;
      throw new ApiError('invalid_request', `\`${field}\` ${contradiction}`, { field });
    }
    if (!body.credentials) return decideAs(body, body.identity, request, policy, position, timestamp);
    const credentials = body.credentials;
    // The order of AuthenticateRequest: a token is used when there is one, else the certificate.
    const kind = credentials.token !== undefined ? 'token' : credentials.certificate !== undefined ? 'certificate' : undefined;
    if (!authenticator?.authenticateSubject) {
      const unverifiable = `${fieldPrefix(position)}credentials${kind === undefined ? '' : `.${kind}`}`;
      throw new ApiError('invalid_request', `\`${unverifiable}\` cannot be verified: this server has no trust bundle or token store configured (\`--client-ca\`, \`--tokens\`)`, { field: unverifiable });
    }
    if (kind !== undefined && authenticator.verifiesSubject?.[kind] === false) {
      const unverifiable = `${fieldPrefix(position)}credentials.${kind}`;
      const missing = kind === 'token' ? 'bearer tokens are not enabled on this server (`--tokens`)' : 'this server has no `--client-ca` trust bundle';
      throw new ApiError('invalid_request', `\`${unverifiable}\` cannot be verified: ${missing}`, { field: unverifiable });
    }
    const field = `${fieldPrefix(position)}credentials`;
    // A bad subject credential is the subject's failure, not the caller's: 422
    // invalid_subject_credentials naming the field (a 401 would read as the PEP's own login failing).
    // Its AUTHN_FAILURE row says what was asked, by which caller, for which check.
    return authenticated(request, () => authenticator!.authenticateSubject!(credentials, request), {
      action: body.action, resource: body.resource, namespace: body.namespace ?? null,
      details: {
        subject: true, field,
        ...(request.caller ? { caller: request.caller.identity } : {}),
        ...(body.identity !== undefined ? { asserted_identity: body.identity } : {}),
      },
    }).then(
      (identity) => decideAs(body, identity, request, policy, position, timestamp),
      (e: unknown) => {
        if (e instanceof AuthnError && e.code === 'invalid_subject_credentials') throw new ApiError('invalid_subject_credentials', `\`${field}\`: ${e.message}`, { field });
        throw e;
      },
    );
  }

  function decideAs(body: AuthorizeBody, identity: string | undefined, request: FastifyRequest, policy: LoadedPolicy, position: number, timestamp: string): Decided {
    const context = body.context ?? {};
    // Normalised once, before the cache: a hit must refuse a bad address just as a miss does (the key
    // leaves the address out when the policy has no cidrs) and must audit the same text a miss audits.
    const sourceIp = context.source_ip === undefined ? undefined : normalizeIp(context.source_ip);
    const explain = body.explain === true;
    const cacheable = cache.enabled && !explain && (context.source_ip === undefined || sourceIp !== undefined);
    const key = cacheable ? DecisionCache.key(policy, identity, body.action, body.resource, body.namespace, sourceIp) : undefined;
    let cached = key === undefined ? undefined : cache.peek(policy, key);
    let computed = false;
    if (!cached) {
      const outcome = decideWith(policy, { identity, action: body.action, resource: body.resource, namespace: body.namespace, sourceIp: context.source_ip }, { explain });
      if (!outcome.ok) {
        const prefix = fieldPrefix(position);
        const field = outcome.error.field === 'source_ip' ? `${prefix}context.source_ip` : `${prefix}${outcome.error.field}`;
        // The engine words the problem; the message starts with the field, as the schema's messages do.
        throw new ApiError('invalid_request', `\`${field}\`: ${outcome.error.message}`, { field });
      }
      const r = outcome.request.resource;
      cached = {
        decision: outcome.decision,
        identity: outcome.identity,
        service: r.kind === 'service' ? r.service : undefined,
        instance: r.kind === 'service' ? r.instance : undefined,
        namespace: outcome.request.namespace,
      };
      computed = true;
    }
    // One instance per check: the resource's and the context's must not disagree (as for namespaces).
    if (context.instance_id !== undefined && cached.instance !== undefined && context.instance_id !== cached.instance) {
      const field = `${fieldPrefix(position)}context.instance_id`;
      throw new ApiError('invalid_request', `\`${field}\` (\`${context.instance_id}\`) contradicts the instance \`${cached.instance}\` in \`resource\`; send one of them, or the same in both`, { field });
    }
    const d = cached.decision;
    const decisionId = randomUUID();
    // The reason quotes the identity and resource as sent: a pdp token there is not echoed.
    const reason = redactTokens(d.reason);
    const response: Record<string, unknown> = {
      decision_id: decisionId, allow: d.allow, result: d.result, reason, rule: d.rule, policy_version: policy.version,
    };
    if (body.credentials) response.identity = cached.identity;
    if (d.considered) response.considered = mayHoldToken(JSON.stringify(d.considered)) ? JSON.parse(redactTokens(JSON.stringify(d.considered))) : d.considered;
    // details: the caller's context minus the fields that have columns of their own.
    let details: Record<string, unknown> | null = null;
    for (const k in context) {
      if (k !== 'source_ip' && k !== 'event_type' && k !== 'instance_id') (details ??= {})[k] = context[k];
    }
    if (request.caller) (details ??= {}).caller = request.caller.identity;
    if (body.credentials) {
      (details ??= {}).authenticated_by = body.credentials.token ? 'token' : 'certificate';
      // The verified identity decides; an `identity` the PEP sent that says otherwise is kept, so the
      // log shows who was asserted as well as who was proven (a confused or lying PEP).
      if (body.identity !== undefined && body.identity !== cached.identity) {
        details.asserted_identity = redactTokens(body.identity);
      }
    }
    const event: AuditEvent = {
      timestamp,
      event_type: deriveEventType(body.action, context.event_type),
      service_name: cached.service ?? null,
      namespace: cached.namespace,
      instance_id: cached.instance ?? context.instance_id ?? null,
      identity: cached.identity,
      source_ip: sourceIp ?? request.ip,
      action: body.action,
      resource: body.resource,
      result: d.result,
      reason,
      rule: d.rule ? `${d.rule.file}:${d.rule.line}` : null,
      decision_id: decisionId,
      policy_version: policy.version,
      details,
      registry_node: nodeName,
    };
    return { response, event, cacheOutcome: key === undefined ? undefined : computed ? { key, value: cached } : 'hit' };
  }

  return { decideOne, settle };
}
