// What caller authentication, subject authentication and the watch on TLS handshakes share, made
// once by createSecurity: the clock, the token store, the TLS files (whose trust bundle a rotation
// replaces), and the lockout accounting: a caller's failed authentication counts towards its
// source's lockout, and a locked-out source is refused without being counted again.
// Not the '../identity' barrel, which loads SQLite: see auth.ts.
import { FailureTracker } from '../identity/lockout';
import type { TokenStore } from '../identity/tokens';
import { AuthnError } from './errors';
import type { TlsFiles } from './tls-files';

export interface AuthnContext {
  now: () => Date;
  /** The bearer-token store (--tokens); undefined: no bearer tokens. */
  tokens: TokenStore | undefined;
  tls: TlsFiles;
  /** How long a locked-out source is refused (ms). */
  lockoutMs: number;
  /** A caller's failed authentication: counts towards the source's lockout; the one that starts the lock says so. */
  failure(source: string, message: string, attempted: string | null, kind: string, details?: Record<string, unknown>): AuthnError;
  /** Throws `failure(...)`. */
  failed(source: string, message: string, attempted: string | null, kind: string, details?: Record<string, unknown>): never;
  /** A locked-out source's refusal: not counted again, and not audited one row each (see refusals.ts). */
  lockedOut(source: string): AuthnError | undefined;
  /** Throws `lockedOut(source)`, if there is one. */
  checkLock(source: string): void;
}

/** The lockout's limits are checked here (FailureTracker throws a RangeError). */
export function createAuthnContext(
  options: { tokens?: TokenStore; maxFailures?: number; lockoutMs?: number; windowMs?: number; now?: () => Date },
  tls: TlsFiles,
): AuthnContext {
  const now = options.now ?? (() => new Date());
  const failures = new FailureTracker({ maxFailures: options.maxFailures ?? 5, windowMs: options.windowMs ?? 15 * 60_000, lockoutMs: options.lockoutMs ?? 15 * 60_000 });

  function failure(source: string, message: string, attempted: string | null, kind: string, details: Record<string, unknown> = {}): AuthnError {
    const lock = failures.recordFailure(source, now());
    if (lock.locked) {
      const retry = Math.max(1, Math.ceil(((lock.until ?? now().getTime()) - now().getTime()) / 1000));
      return new AuthnError(`${message}; too many failures from this source, locked for ${retry} s`, attempted, kind, 'locked_out', { 'retry-after': String(retry) }, { details: { ...details, lockout_started: true } });
    }
    return new AuthnError(message, attempted, kind, 'unauthenticated', {}, { details });
  }

  function failed(source: string, message: string, attempted: string | null, kind: string, details?: Record<string, unknown>): never {
    throw failure(source, message, attempted, kind, details);
  }

  function lockedOut(source: string): AuthnError | undefined {
    const lock = failures.isLocked(source, now());
    if (!lock.locked) return undefined;
    return new AuthnError(`too many authentication failures from this source; retry in ${lock.retryAfterSeconds} s`, null, 'locked-out', 'locked_out', { 'retry-after': String(lock.retryAfterSeconds) }, { suppressed: true });
  }

  function checkLock(source: string): void {
    const locked = lockedOut(source);
    if (locked) throw locked;
  }

  return { now, tokens: options.tokens, tls, lockoutMs: failures.lockoutMs, failure, failed, lockedOut, checkLock };
}
