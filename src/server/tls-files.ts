// The TLS files of `pdp serve` (--tls-cert, --tls-key, --client-ca): the HTTPS options they make,
// the trust bundle client certificates are verified against, and their rotation without a restart:
// re-read when a file changes or on SIGHUP, all or nothing, and swapped into the running server.
import { X509Certificate as NodeX509 } from 'node:crypto';
import fs from 'node:fs';
import type { ServerOptions } from 'node:https';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
// Not the '../identity' barrel, which loads SQLite: see auth.ts.
import { loadTrustBundle, type TrustBundle } from '../identity/certificates';

export interface TlsFiles {
  /** The client CA bundle in force (a rotation replaces it); undefined without --client-ca, then always. */
  trust: TrustBundle | undefined;
  /** Whether the server speaks HTTPS (--tls-cert). */
  readonly servesHttps: boolean;
  /** The server a rotation is swapped into and logged by; set by createSecurity's plugin. */
  app: FastifyInstance | undefined;
  /** The server's HTTPS options (TLS 1.3 only), the certificate and key read now; undefined without --tls-cert. */
  httpsOptions(): ServerOptions | undefined;
  /** Never throws (it runs from a file watcher and from SIGHUP): a failure is logged and the old files keep serving. */
  reload(): boolean;
  /** Starts watching the files: a change is reloaded once they have been still for 200 ms. */
  watchForRotation(): void;
  close(): void;
}

// With a trust bundle the server asks every client for a certificate, and one that is presented
// must verify. A client may connect without one: the liveness and readiness probes (a kubelet, a
// load balancer) present none, and the open routes answer them; every other route answers such a
// request 401 (or takes `Authorization: Bearer` with --tokens). Refusing certificate-less
// connections at the handshake made --client-ca alone unprobeable, and each probe an AUTHN_FAILURE
// that locked the probing node's address (and every caller behind it) out. OpenSSL is not
// left to refuse a bad certificate inside the handshake (`rejectUnauthorized: false`): a refusal
// there is invisible to the server (no identity, no address in any record), so service
// impersonation would leave no evidence. Instead the handshake completes and `watchConnections`
// (refuseAtHandshake in client-certificates.ts, the first `secureConnection` listener, before the
// HTTP parser is attached) destroys every connection whose certificate OpenSSL did not authorize,
// and reports it: an AUTHN_FAILURE row with the SPIFFE ID the certificate claims (marked
// unverified), the metric, and a count towards the source's lockout. No request on such a
// connection is ever parsed; `authenticateCaller` refuses an unauthorized peer again should one
// ever get that far.
function tlsMaterial(keyPath: string | undefined, certPath: string | undefined, trust: TrustBundle | undefined): ServerOptions {
  return {
    key: fs.readFileSync(keyPath!),
    cert: fs.readFileSync(certPath!),
    ...(trust ? { ca: trust.pems, requestCert: true, rejectUnauthorized: false } : {}),
  };
}

/** The files as given, resolved against `cwd`; the trust bundle is read (and must parse) here. */
export function openTlsFiles(options: { cwd: string; tlsCert?: string; tlsKey?: string; clientCa?: string }): TlsFiles {
  const resolve = (p: string) => path.resolve(options.cwd, p);
  const certPath = options.tlsCert && resolve(options.tlsCert);
  const keyPath = options.tlsKey && resolve(options.tlsKey);
  const caPath = options.clientCa && resolve(options.clientCa);
  const tlsFiles = [certPath, keyPath, caPath].filter((p): p is string => typeof p === 'string');
  const files: TlsFiles = {
    trust: caPath ? loadTrustBundle(fs.readFileSync(caPath, 'utf8'), caPath) : undefined,
    servesHttps: Boolean(certPath),
    app: undefined,
    httpsOptions: () => (certPath ? { ...tlsMaterial(keyPath, certPath, files.trust), minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } : undefined),
    reload,
    watchForRotation,
    close,
  };

  /**
   * Re-reads the certificate, key and trust bundle; all or nothing (a bad file keeps the old ones).
   * Returns the certificate now served (undefined without TLS).
   */
  function reloadNow(): NodeX509 | undefined {
    const next = caPath ? loadTrustBundle(fs.readFileSync(caPath, 'utf8'), caPath) : undefined;
    let served: NodeX509 | undefined;
    if (files.app && certPath) {
      const material = tlsMaterial(keyPath, certPath, next);
      // setSecureContext throws on a key that does not match the certificate: nothing changes then.
      (files.app.server as unknown as { setSecureContext(o: ServerOptions): void }).setSecureContext({ ...material, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as ServerOptions);
      served = new NodeX509(material.cert as Buffer);
    }
    if (next) files.trust = next;
    return served;
  }

  function reload(): boolean {
    try {
      const served = reloadNow();
      // Said at warn, the default level: a rotation is an operator event worth a line, and the
      // serial and expiry say which certificate now answers.
      if (served) files.app?.log.warn(`TLS files reloaded from ${tlsFiles.join(', ')}: serving certificate serial ${served.serialNumber}, valid until ${new Date(served.validTo).toISOString()}`);
      return true;
    } catch (e) {
      files.app?.log.error(`certificate reload failed, keeping the previous ones (${tlsFiles.join(', ')}): ${(e as Error).message}`);
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
  function watchForRotation(): void {
    for (const file of tlsFiles) fs.watchFile(file, { interval: 500, persistent: false }, onChange);
  }

  function close(): void {
    clearTimeout(pending);
    for (const file of tlsFiles) fs.unwatchFile(file, onChange);
  }

  return files;
}
