// Client certificates on the connection (mutual TLS): a caller's certificate is verified once per
// connection and trust bundle (later requests on it only check that it has not expired), and one
// that OpenSSL did not authorize is refused at the TLS handshake, before any request on it is parsed.
import type { DetailedPeerCertificate, PeerCertificate, Server as TlsServer, TLSSocket } from 'node:tls';
// Not the '../identity' barrel, which loads SQLite: see auth.ts.
import { peerCertificateClaims, verifyPeerCertificate, type CertificateClaims, type TrustBundle } from '../identity/certificates';
import type { AuthnContext } from './authn-context';
import type { AuthnError } from './errors';

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
export function claimedDetails(claims: CertificateClaims): Record<string, unknown> {
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

export function hasPeerCertificate(socket: TLSSocket): boolean {
  return typeof socket.getPeerCertificate === 'function' && presented(socket.getPeerCertificate());
}

/**
 * `verifiedPeerIdentity(socket, trust, source)`: the SPIFFE ID of the connection's client
 * certificate, undefined when it presented none; throws (a counted, audited failure) when the one it
 * presented does not verify. A connection's certificate cannot change, so the full verification (or
 * "none presented") is done once per connection and trust bundle; later requests on it only check
 * that it has not expired.
 */
export function createPeerVerifier(ctx: AuthnContext): (socket: TLSSocket, trust: TrustBundle, source: string) => string | undefined {
  const now = ctx.now;
  // Declared with its type: a call to a `never` function narrows only then (not when destructured).
  const failed: AuthnContext['failed'] = ctx.failed;
  const verifiedConnections = new WeakMap<TLSSocket, { bundle: TrustBundle; spiffeId: string | undefined; notAfter: number }>();
  return function verifiedPeerIdentity(socket: TLSSocket, trust: TrustBundle, source: string): string | undefined {
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
  };
}

/**
 * The Authenticator's `watchConnections`: with a trust bundle, destroys every connection whose
 * client certificate OpenSSL did not authorize and reports it (why: tls-files.ts, `tlsMaterial`).
 */
export function refuseAtHandshake({ now, tls, failure, lockedOut }: AuthnContext, server: TlsServer, refused: (source: string, error: AuthnError) => void): void {
  if (!tls.trust || !tls.servesHttps) return;
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
    const result = verifyPeerCertificate(peer, tls.trust!, now());
    const claims = peerCertificateClaims(peer);
    const reason = result.ok ? authorizationError : result.reason;
    const kind = result.ok ? 'certificate-untrusted' : `certificate-${result.code}`;
    refused(source, failure(source, `client certificate rejected at the TLS handshake: ${reason}`, claims.spiffeId ?? null, kind, { transport: 'tls-handshake', tls_error: authorizationError, ...claimedDetails(claims) }));
  });
}
