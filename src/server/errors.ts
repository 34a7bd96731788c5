// The one registry of error codes the HTTP API answers with. Each 4xx names the field and what
// was expected; no error echoes a secret or a stack trace (pdp tokens in a message are redacted as
// the answer is written, see `fail` in instance.ts).
export const ERRORS = {
  invalid_json: { status: 400, summary: 'the body is not valid JSON' },
  invalid_request: { status: 400, summary: 'the body does not match the schema' },
  unsupported_media_type: { status: 415, summary: 'the body must be application/json' },
  unauthenticated: { status: 401, summary: 'the caller could not be authenticated' },
  forbidden: { status: 403, summary: 'the caller has no `api` grant for this endpoint' },
  not_found: { status: 404, summary: 'no such endpoint' },
  method_not_allowed: { status: 405, summary: 'the endpoint exists but not with this method (see `Allow`)' },
  request_timeout: { status: 408, summary: 'the request was not received in time' },
  body_too_large: { status: 413, summary: 'the body is larger than the limit' },
  policy_invalid: { status: 422, summary: 'the new policy set has errors; the last good one keeps serving' },
  invalid_subject_credentials: { status: 422, summary: 'the subject credentials in the body (`credentials`) do not verify' },
  rate_limited: { status: 429, summary: 'too many requests' },
  headers_too_large: { status: 431, summary: 'the request headers are larger than the limit' },
  locked_out: { status: 429, summary: 'too many authentication failures from this source' },
  internal: { status: 500, summary: 'internal error' },
  policy_unavailable: { status: 503, summary: 'no valid policy set is loaded' },
  audit_unavailable: { status: 503, summary: 'the audit store cannot be written; failing closed' },
  workers_unavailable: { status: 503, summary: 'with `--workers N`: not every worker confirmed the reload, or answered the metrics scrape; retry' },
  shutting_down: { status: 503, summary: 'the server is shutting down; retry on another instance (sent with `Connection: close`)' },
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class ApiError extends Error {
  readonly status: number;
  constructor(readonly code: ErrorCode, message: string, readonly extra: Record<string, unknown> = {}, readonly headers: Record<string, string> = {}) {
    super(message);
    this.status = ERRORS[code].status;
  }
}

export function errorBody(code: ErrorCode, message: string, extra: Record<string, unknown> = {}) {
  return { error: { code, message, ...extra } };
}

/** How an authentication failure is audited, besides its message and kind. */
export interface AuthnAudit {
  /** Extra `details` for the AUTHN_FAILURE row (e.g. the token id, what a refused certificate claims). */
  details?: Record<string, unknown>;
  /**
   * The source is locked out: the refusal is counted (metric, and a periodic summary row with the
   * count) instead of being audited one row each, so a locked-out source cannot flood the audit store.
   */
  suppressed?: boolean;
}

/**
 * An authentication failure: answered 401 (429 when locked out; 422 `invalid_subject_credentials`
 * for a subject's credentials) and audited as AUTHN_FAILURE. `attempted` is the identity that was
 * attempted (a known token's identity, the SPIFFE ID a refused certificate claims), unverified.
 */
export class AuthnError extends ApiError {
  constructor(
    message: string,
    readonly attempted: string | null,
    readonly kind: string,
    code: 'unauthenticated' | 'locked_out' | 'invalid_subject_credentials' = 'unauthenticated',
    headers: Record<string, string> = {},
    readonly audit: AuthnAudit = {},
  ) {
    super(code, message, {}, headers);
  }
}
