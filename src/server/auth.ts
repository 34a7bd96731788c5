// Zero-trust transport and identity for `pdp serve`: TLS 1.3, mutual TLS with SPIFFE IDs, bearer
// tokens, lockout after repeated failures, per-caller rate limits, and certificate rotation
// without a restart. The server sees only the Authenticator and the fastify options built here.
import { X509Certificate as NodeX509 } from 'node:crypto';
import fs from 'node:fs';
import type { ServerOptions } from 'node:https';
import path from 'node:path';
import type { DetailedPeerCertificate, PeerCertificate, Server as TlsServer, TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import rateLimit from '@fastify/rate-limit';
// The defining modules, not the '../identity' barrel: it re-exports tokens.ts, whose token store is
// SQLite, and the server never loads SQLite (its stores are handed in; test/architecture.test.ts).
import {
  certificateClaims, loadTrustBundle, peerCertificateClaims, verifyClientCertificate, verifyPeerCertificate,
  type CertificateClaims, type TrustBundle,
} from '../identity/certificates';
import { FailureTracker } from '../identity/lockout';
import type { TokenStore } from '../identity/tokens';
import { ApiError, AuthnError, type AuthnAudit } from './errors';
import type { Authenticator, Caller, ServerDeps } from './deps';


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

/** The earliest `valid_to` along a peer's presented chain. */
function chainNotAfter(peer: DetailedPeerCertificate): number {
  let earliest = Infinity;
  const seen = new Set<DetailedPeerCertificate>();
  for (let cert: DetailedPeerCertificate | undefined = peer; cert && !seen.has(cert); cert = cert.issuerCertificate) {
    seen.add(cert);
    const t = Date.parse(cert.valid_to);
    if (Number.isFinite(t)) earliest = Math.min(earliest, t);
  }
  return earliest;
}

/** A refused certificate's claims as audit `details`: marked unverified, never the certificate itself. */
function claimedDetails(claims: CertificateClaims): Record<string, unknown> {
  const { spiffeId, ...rest } = claims;
  return {
    identity_verified: false,
    ...(spiffeId !== undefined ? { claimed_identity: spiffeId } : {}),
    ...(Object.keys(rest).length > 0 ? { presented: rest } : {}),
  };
}

/** node:tls answers `{}` (not null) for a connection without a client certificate. */
function presented<T extends PeerCertificate>(peer: T | null | undefined): peer is T {
  return peer !== null && typeof peer === 'object' && Object.keys(peer).length > 0;
}

function hasPeerCertificate(socket: TLSSocket): boolean {
  return typeof socket.getPeerCertificate === 'function' && presented(socket.getPeerCertificate());
}

export function createSecurity(options: SecurityOptions) {
  const now = options.now ?? (() => new Date());
  const resolve = (p: string) => path.resolve(options.cwd, p);
  const certPath = options.tlsCert && resolve(options.tlsCert);
  const keyPath = options.tlsKey && resolve(options.tlsKey);
  const caPath = options.clientCa && resolve(options.clientCa);
  const verifiedConnections = new WeakMap<TLSSocket, { bundle: TrustBundle; spiffeId: string | undefined; notAfter: number }>();
  /** Subject certificates that verified during one request (a batch): PEM → SPIFFE ID. Failures are not kept: each is refused and audited. */
  const verifiedInRequest = new WeakMap<FastifyRequest, Map<string, string>>();
  let bundle: TrustBundle | undefined = caPath ? loadTrustBundle(fs.readFileSync(caPath, 'utf8'), caPath) : undefined;
  const tokens: TokenStore | undefined = options.tokens;
  const failures = new FailureTracker({ maxFailures: options.maxFailures ?? 5, windowMs: options.windowMs ?? 15 * 60_000, lockoutMs: options.lockoutMs ?? 15 * 60_000 });

  // With a trust bundle the server asks every client for a certificate, and one that is presented
  // must verify. A client may connect without one: the liveness and readiness probes (a kubelet, a
  // load balancer) present none, and the open routes answer them; every other route answers such a
  // request 401 (or takes `Authorization: Bearer` with --tokens). Refusing certificate-less
  // connections at the handshake made --client-ca alone unprobeable, and each probe an AUTHN_FAILURE
  // that locked the probing node's address (and every caller behind it) out. OpenSSL is not
  // left to refuse a bad certificate inside the handshake (`rejectUnauthorized: false`): a refusal
  // there is invisible to the server (no identity, no address in any record), so service
  // impersonation would leave no evidence. Instead the handshake completes and `watchConnections`
  // (below, the first `secureConnection` listener, before the HTTP parser is attached) destroys every
  // connection whose certificate OpenSSL did not authorize, and reports it: an AUTHN_FAILURE row with
  // the SPIFFE ID the certificate claims (marked unverified), the metric, and a count towards the
  // source's lockout. No request on such a connection is ever
  // parsed; `authenticateCaller` refuses an unauthorized peer again should one ever get that far.
  const tlsMaterial = (trust: TrustBundle | undefined = bundle): ServerOptions => ({
    key: fs.readFileSync(keyPath!),
    cert: fs.readFileSync(certPath!),
    ...(trust ? { ca: trust.pems, requestCert: true, rejectUnauthorized: false } : {}),
  });
  const https: ServerOptions | undefined = certPath ? { ...tlsMaterial(), minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } : undefined;

  /** A caller's failed authentication: counts towards the source's lockout; the one that starts the lock says so. */
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

  /** A locked-out source's refusal: not counted again, and not audited one row each (see refusals.ts). */
  function lockedOut(source: string): AuthnError | undefined {
    const lock = failures.isLocked(source, now());
    if (!lock.locked) return undefined;
    return new AuthnError(`too many authentication failures from this source; retry in ${lock.retryAfterSeconds} s`, null, 'locked-out', 'locked_out', { 'retry-after': String(lock.retryAfterSeconds) }, { suppressed: true });
  }

  function checkLock(source: string): void {
    const locked = lockedOut(source);
    if (locked) throw locked;
  }

  /** Caller credentials: a failure counts towards the source's lockout. */
  function validateToken(token: string, source: string): string {
    if (!tokens) failed(source, 'bearer tokens are not enabled on this server', null, 'token');
    const result = tokens.validate(token, now());
    // A token that names a real token (wrong secret, revoked, expired): the row's identity is the one
    // it was issued to, the identity that was attempted. The answer says only the token id.
    if (!result.ok) failed(source, `invalid token: ${result.reason}`, result.identity ?? null, `token-${result.code}`, result.id ? { token_id: result.id, identity_verified: false } : {});
    return result.identity;
  }

  /**
   * Subject credentials (`credentials` in the body) arrive through a caller that has already
   * authenticated and holds `api "authorize"`. Their failures are audited (AUTHN_FAILURE) but do not
   * count towards the caller's lockout: one end user with a bad token must not lock the PEP that
   * forwards it, and every other workload behind that PEP, out of the PDP.
   */
  function refuseSubject(message: string, kind: string, attempted: string | null = null, details: AuthnAudit['details'] = {}): never {
    throw new AuthnError(message, attempted, kind, 'invalid_subject_credentials', {}, { details });
  }

  /**
   * The SPIFFE ID of the connection's client certificate, undefined when it presented none; throws
   * (a counted, audited failure) when the one it presented does not verify. A connection's
   * certificate cannot change, so the full verification (or "none presented") is done once per
   * connection and trust bundle; later requests on it only check that it has not expired.
   */
  function verifiedPeerIdentity(socket: TLSSocket, trust: TrustBundle, source: string): string | undefined {
    if (typeof socket.getPeerCertificate !== 'function') return undefined;
    const known = verifiedConnections.get(socket);
    if (known && known.bundle === trust && now().getTime() < known.notAfter) return known.spiffeId;
    const peer = socket.getPeerCertificate(true);
    if (!presented(peer)) {
      verifiedConnections.set(socket, { bundle: trust, spiffeId: undefined, notAfter: Infinity });
      return undefined;
    }
    // Normally dropped at `secureConnection`; refused here too, should one ever get this far.
    if (!socket.authorized) {
      const claims = peerCertificateClaims(peer);
      failed(source, `client certificate rejected: ${String(socket.authorizationError ?? 'it does not verify')}`, claims.spiffeId ?? null, 'certificate-untrusted', claimedDetails(claims));
    }
    // The handshake checked the chain once; a keep-alive connection can outlive the certificate, so
    // validity, purpose and SPIFFE ID are checked again once the cached verdict expires.
    const result = verifyPeerCertificate(peer, trust, now());
    if (!result.ok) {
      const claims = peerCertificateClaims(peer);
      failed(source, `client certificate rejected: ${result.reason}`, claims.spiffeId ?? null, `certificate-${result.code}`, claimedDetails(claims));
    }
    verifiedConnections.set(socket, { bundle: trust, spiffeId: result.spiffeId, notAfter: Math.min(result.notAfter.getTime(), chainNotAfter(peer)) });
    return result.spiffeId;
  }

  // The seed's AuthenticateRequest order: token, then certificate, then (never, for callers) anonymous.
  const authenticator: Authenticator | undefined = bundle || tokens ? {
    authenticateCaller(request: FastifyRequest): Caller {
      const source = request.ip;
      checkLock(source);
      // Node keeps the first of several Authorization headers; a proxy that appends its own would make
      // which credential counts depend on header order, so more than one is refused outright.
      let authorizationHeaders = 0;
      const raw = request.raw.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 13 && raw[i]!.toLowerCase() === 'authorization') authorizationHeaders++;
      if (authorizationHeaders > 1) failed(source, 'more than one `Authorization` header; send exactly one', null, 'token-malformed');
      // A certificate that is presented must verify, even when a token comes with it (the token then
      // names the caller, but a bad certificate is still refused and audited, as docs/identity.md says).
      const peerIdentity = bundle ? verifiedPeerIdentity(request.raw.socket as TLSSocket, bundle, source) : undefined;
      const header = request.headers.authorization;
      if (header !== undefined) {
        const m = /^Bearer\s+(\S+)$/i.exec(header);
        if (!m) failed(source, 'the Authorization header must be `Bearer <token>`', null, 'token-malformed');
        const identity = validateToken(m[1]!, source);
        return { identity, via: 'token' };
      }
      if (peerIdentity !== undefined) return { identity: peerIdentity, via: 'mtls' };
      if (bundle && !tokens) failed(source, 'a client certificate is required', null, 'certificate-missing');
      failed(source, bundle ? 'a client certificate or a bearer token is required' : 'a bearer token is required', null, 'missing');
    },
    verifiesSubject: { token: tokens !== undefined, certificate: bundle !== undefined },
    authenticateSubject(credentials, request): string {
      if (credentials.token !== undefined) {
        if (!tokens) refuseSubject('`credentials.token` cannot be verified: bearer tokens are not enabled on this server', 'subject-token');
        const result = tokens.validate(credentials.token, now());
        if (!result.ok) refuseSubject(`invalid subject token: ${result.reason}`, `subject-token-${result.code}`, result.identity ?? null, result.id ? { token_id: result.id, identity_verified: false } : {});
        return result.identity;
      }
      if (credentials.certificate !== undefined) {
        if (!bundle) refuseSubject('`credentials.certificate` cannot be verified: no --client-ca trust bundle is configured', 'subject-certificate');
        // A batch is one moment (every check is stamped with one time), and a PEP's batch often
        // carries the same workload's certificate many times: each PEM is verified once per request
        // (signature checks cost ~0.6 ms a certificate; 1000 of them held the event loop for 0.6 s).
        let verified = verifiedInRequest.get(request);
        const known = verified?.get(credentials.certificate);
        if (known !== undefined) return known;
        const result = verifyClientCertificate(credentials.certificate, bundle, now());
        if (!result.ok) {
          const claims = certificateClaims(credentials.certificate);
          refuseSubject(`invalid subject certificate: ${result.reason}`, `subject-certificate-${result.code}`, claims.spiffeId ?? null, claimedDetails(claims));
        }
        if (verified === undefined) verifiedInRequest.set(request, (verified = new Map()));
        verified.set(credentials.certificate, result.spiffeId);
        return result.spiffeId;
      }
      refuseSubject('`credentials` must hold `token` or `certificate`', 'subject-missing');
    },
    hasCredentials(request: FastifyRequest): boolean {
      if (request.headers.authorization !== undefined) return true;
      return bundle !== undefined && hasPeerCertificate(request.raw.socket as TLSSocket);
    },
    watchConnections(server: TlsServer, refused: (source: string, error: AuthnError) => void): void {
      if (!bundle || !https) return;
      // Prepended: it must run before the HTTP server's own listener attaches its parser, or a
      // request sent along with the handshake (TLS 1.3) would still be parsed and routed.
      server.prependListener('secureConnection', (socket: TLSSocket) => {
        if (socket.authorized) return; // chain verified by OpenSSL; purpose, validity and SPIFFE ID per request
        if (!hasPeerCertificate(socket)) return; // a probe, or a bearer token may follow: decided per request
        const source = socket.remoteAddress ?? 'unknown';
        const peer = socket.getPeerCertificate(true);
        const authorizationError = String(socket.authorizationError ?? 'it does not verify');
        socket.destroy();
        const locked = lockedOut(source);
        if (locked) return refused(source, locked);
        // OpenSSL's verdict stands; our own verification only names the reason in pdp's words.
        const result = verifyPeerCertificate(peer, bundle!, now());
        const claims = peerCertificateClaims(peer);
        const reason = result.ok ? authorizationError : result.reason;
        const kind = result.ok ? 'certificate-untrusted' : `certificate-${result.code}`;
        refused(source, failure(source, `client certificate rejected at the TLS handshake: ${reason}`, claims.spiffeId ?? null, kind, { transport: 'tls-handshake', tls_error: authorizationError, ...claimedDetails(claims) }));
      });
    },
  } : undefined;

  let app: FastifyInstance | undefined;
  const tlsFiles = [certPath, keyPath, caPath].filter((p): p is string => typeof p === 'string');
  /**
   * Re-reads the certificate, key and trust bundle; all or nothing (a bad file keeps the old ones).
   * Returns the certificate now served (undefined without TLS).
   */
  function reloadNow(): NodeX509 | undefined {
    const next = caPath ? loadTrustBundle(fs.readFileSync(caPath, 'utf8'), caPath) : undefined;
    let served: NodeX509 | undefined;
    if (app && certPath) {
      const material = tlsMaterial(next);
      // setSecureContext throws on a key that does not match the certificate: nothing changes then.
      (app.server as unknown as { setSecureContext(o: ServerOptions): void }).setSecureContext({ ...material, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as ServerOptions);
      served = new NodeX509(material.cert as Buffer);
    }
    if (next) bundle = next;
    return served;
  }
  /** Never throws (it runs from a file watcher and from SIGHUP): a failure is logged and the old files keep serving. */
  function reload(): boolean {
    try {
      const served = reloadNow();
      // Said at warn, the default level: a rotation is an operator event worth a line, and the
      // serial and expiry say which certificate now answers.
      if (served) app?.log.warn(`TLS files reloaded from ${tlsFiles.join(', ')}: serving certificate serial ${served.serialNumber}, valid until ${new Date(served.validTo).toISOString()}`);
      return true;
    } catch (e) {
      app?.log.error(`certificate reload failed, keeping the previous ones (${tlsFiles.join(', ')}): ${(e as Error).message}`);
      return false;
    }
  }
  // Rotation without downtime: poll the files (robust to rename-into-place), swap the context.
  let pending: NodeJS.Timeout | undefined;
  const onChange = () => {
    clearTimeout(pending);
    pending = setTimeout(() => {
      reload();
    }, 200);
  };
  for (const file of tlsFiles) fs.watchFile(file, { interval: 500, persistent: false }, onChange);

  const perSecond = options.rateLimitPerSecond ?? (authenticator ? 1000 : 0);
  const serverOptions: Partial<ServerDeps> = {
    ...(https ? { https } : {}),
    ...(authenticator ? { authenticator } : {}),
    // A locked-out source's refusals become one summary row per interval: at most a minute, and no
    // longer than the lockout itself, so a short lock is summarised before it ends.
    refusalSummaryMs: Math.min(60_000, failures.lockoutMs),
    plugins: [
      async (instance) => {
        app = instance; // every encapsulated instance shares the one TLS server
        if (perSecond > 0) {
          await instance.register(rateLimit, {
            max: perSecond,
            timeWindow: 1000,
            keyGenerator: (req) => req.caller?.identity ?? req.ip,
            // No x-ratelimit-* headers on answers within the limit: a PEP does not read them, and
            // three headers on every decision are bytes and work on the hot path. A 429 still says
            // when to retry (Retry-After).
            addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false },
            errorResponseBuilder: (_req, ctx) => new ApiError('rate_limited', `rate limit of ${ctx.max} requests per second exceeded; retry in ${Math.ceil(ctx.ttl / 1000)} s`, {}, { 'retry-after': String(Math.ceil(ctx.ttl / 1000)) }),
          });
        }
      },
    ],
  };

  return {
    serverOptions,
    reload,
    close(): void {
      clearTimeout(pending);
      for (const file of tlsFiles) fs.unwatchFile(file, onChange);
    },
  };
}
