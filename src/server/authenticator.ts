// The Authenticator the server is handed (deps.ts) once callers authenticate (--client-ca, --tokens):
// the caller of each request (its Authorization header, bearer token, client certificate), the
// subject of a check (`credentials` in the body), and the connections refused at the TLS handshake.
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
// Not the '../identity' barrel, which loads SQLite: see auth.ts.
import { certificateClaims, verifyClientCertificate } from '../identity/certificates';
import type { AuthnContext } from './authn-context';
import { claimedDetails, createPeerVerifier, hasPeerCertificate, refuseAtHandshake } from './client-certificates';
import type { Authenticator, Caller } from './deps';
import { AuthnError, type AuthnAudit } from './errors';

export function createAuthenticator(ctx: AuthnContext): Authenticator {
  const { now, tokens, tls, checkLock } = ctx;
  // Declared with its type: a call to a `never` function narrows only then (not when destructured).
  const failed: AuthnContext['failed'] = ctx.failed;
  const verifiedPeerIdentity = createPeerVerifier(ctx);

  /** Caller credentials: a failure counts towards the source's lockout. */
  function validateToken(token: string, source: string): string {
    if (!tokens) failed(source, 'bearer tokens are not enabled on this server', null, 'token');
    const result = tokens.validate(token, now());
    // A token that names a real token (wrong secret, revoked, expired): the row's identity is the one
    // it was issued to, the identity that was attempted. The answer says only the token id.
    if (!result.ok) failed(source, `invalid token: ${result.reason}`, result.identity ?? null, `token-${result.code}`, result.id ? { token_id: result.id, identity_verified: false } : {});
    return result.identity;
  }

  // The seed's AuthenticateRequest order: token, then certificate, then (never, for callers) anonymous.
  return {
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
      const bundle = tls.trust;
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
    verifiesSubject: { token: tokens !== undefined, certificate: tls.trust !== undefined },
    authenticateSubject: createSubjectAuthentication(ctx),
    hasCredentials(request: FastifyRequest): boolean {
      if (request.headers.authorization !== undefined) return true;
      return tls.trust !== undefined && hasPeerCertificate(request.raw.socket as TLSSocket);
    },
    watchConnections(server, refused): void {
      refuseAtHandshake(ctx, server, refused);
    },
  };
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

/** The Authenticator's `authenticateSubject`: `credentials.token`, or `credentials.certificate`. */
function createSubjectAuthentication({ now, tokens, tls }: AuthnContext): NonNullable<Authenticator['authenticateSubject']> {
  /** Subject certificates that verified during one request (a batch): PEM → SPIFFE ID. Failures are not kept: each is refused and audited. */
  const verifiedInRequest = new WeakMap<FastifyRequest, Map<string, string>>();
  return function authenticateSubject(credentials, request): string {
    if (credentials.token !== undefined) {
      if (!tokens) refuseSubject('`credentials.token` cannot be verified: bearer tokens are not enabled on this server', 'subject-token');
      const result = tokens.validate(credentials.token, now());
      if (!result.ok) refuseSubject(`invalid subject token: ${result.reason}`, `subject-token-${result.code}`, result.identity ?? null, result.id ? { token_id: result.id, identity_verified: false } : {});
      return result.identity;
    }
    if (credentials.certificate !== undefined) {
      const bundle = tls.trust;
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
  };
}
