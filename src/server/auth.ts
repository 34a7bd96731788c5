// Zero-trust transport and identity for `pdp serve`: TLS 1.3, mutual TLS with SPIFFE IDs, bearer
// tokens, lockout after repeated failures, per-caller rate limits, and certificate rotation
// without a restart. The server sees only the Authenticator and the fastify options built here.
// Here only the wiring; each concern is a file of its own: tls-files.ts (the TLS material and its
// rotation), authn-context.ts (what authentication shares, the lockout accounting among it),
// authenticator.ts (callers and subjects), client-certificates.ts (mutual TLS per connection and
// at the handshake), rate-limit.ts.
// These files import the defining modules, not the '../identity' barrel: it re-exports tokens.ts,
// whose token store is SQLite, and the server never loads SQLite (its stores are handed in;
// test/architecture.test.ts).
import type { TokenStore } from '../identity/tokens';
import { createAuthnContext } from './authn-context';
import { createAuthenticator } from './authenticator';
import type { ServerDeps } from './deps';
import { registerRateLimit } from './rate-limit';
import { openTlsFiles } from './tls-files';


export interface SecurityOptions {
  cwd: string;
  tlsCert?: string;
  tlsKey?: string;
  clientCa?: string;
  /**
   * The bearer-token store (`pdp serve --tokens`), opened by the caller, which also closes it, after
   * `close()` here and once the last in-flight request is answered. Absent: no bearer tokens.
   */
  tokens?: TokenStore;
  /** Requests per second per caller; 0 disables (default 1000 when callers are authenticated). */
  rateLimitPerSecond?: number;
  maxFailures?: number;
  lockoutMs?: number;
  windowMs?: number;
  now?: () => Date;
}

export function createSecurity(options: SecurityOptions) {
  // In this order, the order the checks have always run in: the trust bundle is read (and must
  // parse), the lockout's limits are checked, then the certificate and key are read.
  const tls = openTlsFiles(options);
  const ctx = createAuthnContext(options, tls);
  const https = tls.httpsOptions();
  const authenticator = tls.trust || ctx.tokens ? createAuthenticator(ctx) : undefined;
  tls.watchForRotation();

  const perSecond = options.rateLimitPerSecond ?? (authenticator ? 1000 : 0);
  const serverOptions: Partial<ServerDeps> = {
    ...(https ? { https } : {}),
    ...(authenticator ? { authenticator } : {}),
    // A locked-out source's refusals become one summary row per interval: at most a minute, and no
    // longer than the lockout itself, so a short lock is summarised before it ends.
    refusalSummaryMs: Math.min(60_000, ctx.lockoutMs),
    plugins: [
      async (instance) => {
        tls.app = instance; // every encapsulated instance shares the one TLS server
        if (perSecond > 0) await registerRateLimit(instance, perSecond);
      },
    ],
  };

  return { serverOptions, reload: tls.reload, close: tls.close };
}
