// Forward authentication (nginx `auth_request`, and the forward-auth of other proxies): the check
// arrives in X-PDP-* request headers and the decision leaves in the status and X-PDP-* answer headers.
// The route itself is in decisions.ts; it decides as /v1/authorize does. Here: reading the headers as
// the body fields they stand for, naming those headers in errors, and writing the answer.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from './errors';
import { FORWARD_HEADERS, type ForwardHeader } from './schemas';
import type { AuthorizeBody } from './deps';
import { inHeaderTerms } from './validation';

/** Forward authentication: the check in headers, the decision in the status (see the route). */
export const FORWARD_URL = '/v1/authorize/forward';
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Before a forward check's headers are validated: each at most once (Node would join repeated values
 * with a comma), and read as UTF-8. Node hands header values over as Latin-1, one character per
 * byte, so `X-PDP-Identity: user:josé` would be decided as `user:josÃ©`: missing a deny that names
 * `user:josé` while still matching `user:*`. Bytes that are not UTF-8 are refused.
 */
export function prepareForwardHeaders(request: FastifyRequest): void {
  const given = request.raw.headersDistinct;
  for (const header of Object.keys(FORWARD_HEADERS) as ForwardHeader[]) {
    const values = given[header];
    if (values === undefined) continue;
    if (values.length > 1) throw new ApiError('invalid_request', `\`${header}\` is given ${values.length} times; give it once`, { field: header });
    let text: string;
    try {
      text = STRICT_UTF8.decode(Buffer.from(values[0]!, 'latin1'));
    } catch {
      throw new ApiError('invalid_request', `\`${header}\` is not UTF-8 text`, { field: header });
    }
    request.headers[header] = text;
  }
}

/** A `/v1/authorize/forward` check (its headers prepared and validated) as the body it stands for. */
export function forwardBody(request: FastifyRequest): AuthorizeBody {
  const body: Record<string, unknown> = {};
  for (const [header, field] of Object.entries(FORWARD_HEADERS)) {
    let value = request.headers[header] as string | undefined;
    if (value === undefined) continue;
    if (header === 'x-pdp-subject-certificate') {
      try {
        value = decodeURIComponent(value);
      } catch {
        throw new ApiError('invalid_request', '`x-pdp-subject-certificate` must be a URL-encoded PEM certificate (nginx: `$ssl_client_escaped_cert`)', { field: header });
      }
    }
    const [first, second] = field.split('.') as [string, string | undefined];
    if (second === undefined) body[first] = value;
    else ((body[first] ??= {}) as Record<string, string>)[second] = value;
  }
  return body as unknown as AuthorizeBody;
}

/** An error about a body field of a forward check, reworded with the headers that carried the fields. */
export function forwardError(e: ApiError, body: AuthorizeBody): ApiError {
  const field = e.extra.field;
  if (typeof field !== 'string') return e;
  // A subject credential's refusal names `credentials`: the header is the one that was used.
  const credentialsHeader: ForwardHeader = body.credentials?.token !== undefined ? 'x-pdp-subject-token' : 'x-pdp-subject-certificate';
  const header = field === 'credentials' ? credentialsHeader : (Object.keys(FORWARD_HEADERS) as ForwardHeader[]).find((h) => FORWARD_HEADERS[h] === field);
  if (header === undefined) return e;
  return new ApiError(e.code, inHeaderTerms(e.message, credentialsHeader), { ...e.extra, field: header }, e.headers);
}

/** The answer of a forward check: the decision's id, result and policy version (and verified identity) as headers, 200 allow, 403 deny. */
export function answerForward(reply: FastifyReply, response: Record<string, unknown>): FastifyReply {
  reply.header('x-pdp-decision-id', response.decision_id).header('x-pdp-result', response.result).header('x-pdp-policy-version', response.policy_version);
  // A header carries visible ASCII only: the identity with `%` and anything else percent-encoded
  // (UTF-8), as `encodeURIComponent` would, so `user:日本` cannot fail the answer after its row is committed.
  if (typeof response.identity === 'string') reply.header('x-pdp-identity', response.identity.replace(/[^\x21-\x24\x26-\x7e]/gu, (c) => encodeURIComponent(c)));
  // Set as a property: the route's typed `code()` knows only the 200 of the response schema.
  reply.statusCode = response.allow === true ? 200 : 403;
  return reply.send(response);
}
