// The text form of pdp's bearer tokens, and how to keep it out of everything pdp writes or answers.
// Dependency-free on purpose: the audit event module and the HTTP server use it, and neither may
// pull in the token store (SQLite).
//
// Token text: `pdp_<id>_<secret>`: id is 12 characters of [A-Za-z0-9] (not secret: it names the
// token in `pdp token list`, `revoke` and in audit rows), secret is 43 characters of base64url.

export const TOKEN_PREFIX = 'pdp_';
export const TOKEN_RE = /^pdp_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$/;
/**
 * A token anywhere in a text: the id, then everything that can belong to a secret. The secret part
 * is matched greedily (not just 43 characters) so that a token with extra characters glued on, or a
 * truncated one, leaves nothing of its secret behind.
 */
const TOKEN_ANYWHERE = /pdp_([A-Za-z0-9]{12})_[A-Za-z0-9_-]+/gi;
export const REDACTED_SECRET = '[redacted]';

/**
 * Whether `text` may hold a token, in any letter case (`PDP_…` is not a token pdp accepts, but its
 * secret part is a real secret all the same). One indexOf for a text without `_`, as most are.
 */
export function mayHoldToken(text: string): boolean {
  return text.indexOf(TOKEN_PREFIX) >= 0 || (text.indexOf('_') >= 0 && /pdp_/i.test(text));
}

/**
 * `text` with the secret of every pdp token in it (any letter case) replaced by `[redacted]`; the
 * token id is kept (it is not secret, and it says which token leaked). Cheap when there is none.
 */
export function redactTokens(text: string): string {
  if (!mayHoldToken(text)) return text;
  return text.replace(TOKEN_ANYWHERE, `${TOKEN_PREFIX}$1_${REDACTED_SECRET}`);
}

/** True when `text` holds something shaped like a pdp token (id and secret). */
export function containsToken(text: string): boolean {
  if (!mayHoldToken(text)) return false;
  TOKEN_ANYWHERE.lastIndex = 0;
  const found = TOKEN_ANYWHERE.test(text);
  TOKEN_ANYWHERE.lastIndex = 0;
  return found;
}

/**
 * `redactTokens`, also for a token written percent-encoded (`pdp%5F<id>%5F<secret>`, as in a URL path or
 * query): when the text decoded holds a token, the decoded text is returned, redacted; otherwise the
 * text as `redactTokens` returns it. The decoding is byte by byte and never fails (a malformed escape
 * elsewhere cannot hide a token): token characters are ASCII.
 */
export function redactTokensAlsoEncoded(text: string): string {
  const plain = redactTokens(text);
  if (text.indexOf('%') < 0) return plain;
  const decoded = text.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  return containsToken(decoded) ? redactTokens(decoded) : plain;
}
