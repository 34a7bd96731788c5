// Client certificate verification with SPIFFE IDs (X.509-SVIDs): chain to a trusted CA, validity at
// `now`, a non-CA leaf fit for client authentication, exactly one URI SAN that is a SPIFFE ID.
//
// Used two ways: for `credentials.certificate` in a request body (a PEM the caller forwards), and for
// the peer certificate of an mTLS connection (node:tls has already checked the chain; this module
// re-checks it with the same rules and extracts the identity).
import { X509Certificate as NodeX509 } from 'node:crypto';
import * as fs from 'node:fs';
import type * as tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { LRUCache } from 'lru-cache';
import { escapeForTerminal } from '../diagnostics';
import { isSpiffeId, spiffeTrustDomain } from '../syntax/identity-pattern';

export const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
export const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

/** Limits on what a caller may hand us as a PEM chain. */
export const MAX_PEM_CHARS = 64 * 1024;
export const MAX_CHAIN_CERTS = 8;

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----/g;

export interface TrustedCa {
  cert: NodeX509;
  pem: string;
  subject: string;
  /** SPIFFE trust domains the CA names in its URI SANs (`spiffe://DOMAIN`); empty for a CA that names none. */
  trustDomains: string[];
  /** Its basicConstraints path length, when set. */
  pathLength?: number;
  /**
   * Self-signed: a root, the only kind of CA a chain may end at. A CA in the bundle that is not (an
   * intermediate, bundled beside its root as CA files often are) only completes chains: anchoring at
   * it would skip the trust domain its root names, and OpenSSL would refuse such a chain at the
   * handshake anyway (no partial chains), so both paths must refuse it.
   */
  root: boolean;
}

export interface TrustBundle {
  cas: TrustedCa[];
  /** The PEM texts, e.g. for `tls.createServer({ ca: bundle.pems })`. */
  pems: string[];
}

export type CertificateFailureCode =
  | 'malformed'
  | 'untrusted'
  | 'expired'
  | 'not-yet-valid'
  | 'not-client'
  | 'no-spiffe-id'
  | 'bad-spiffe-id'
  | 'trust-domain';

export type VerifyResult =
  | { ok: true; spiffeId: string; trustDomain: string; notAfter: Date; serialNumber: string; fingerprint256: string }
  | { ok: false; code: CertificateFailureCode; reason: string };

export class TrustBundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrustBundleError';
  }
}

function splitPem(text: string): string[] {
  const blocks: string[] = [];
  for (const m of text.matchAll(PEM_CERT_RE)) {
    const body = m[1]!.replace(/\s+/g, '');
    blocks.push(`-----BEGIN CERTIFICATE-----\n${body.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`);
  }
  return blocks;
}

/** What verification reads from a certificate's extensions; fixed for a given certificate. */
interface ExtensionFacts {
  /** undefined when the certificate has no keyUsage extension. */
  digitalSignature: boolean | undefined;
  pathLength: number | undefined;
  uris: string[];
}

// Decoding extensions with @peculiar/x509 costs milliseconds per certificate (measured 7 ms for a
// workload SVID on the benchmark machine), and every new mTLS connection of a PEP presents the same
// certificate again, so the decoded facts are kept per certificate text (bounded). Only the decoding
// is cached: chain, signatures, validity and identity are checked on every verification.
const extensionFacts = new LRUCache<string, ExtensionFacts>({ max: 1024 });

function factsOf(pem: string): ExtensionFacts {
  let facts = extensionFacts.get(pem);
  if (facts === undefined) {
    const cert = new x509.X509Certificate(pem);
    const ku = cert.getExtension(x509.KeyUsagesExtension);
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
    facts = {
      digitalSignature: ku ? (ku.usages & x509.KeyUsageFlags.digitalSignature) !== 0 : undefined,
      pathLength: cert.getExtension(x509.BasicConstraintsExtension)?.pathLength,
      uris: san ? san.names.items.filter((n) => n.type === 'url').map((n) => n.value) : [],
    };
    extensionFacts.set(pem, facts);
  }
  return facts;
}

/** The URI SANs of a PEM certificate (SPIFFE IDs among them). */
export function certificateUris(pem: string): string[] {
  return factsOf(pem).uris;
}

/** Parses one or more PEM CA certificates (a trust bundle: during a CA rotation, old and new roots). */
export function loadTrustBundle(pemText: string, source = 'trust bundle'): TrustBundle {
  const blocks = splitPem(pemText);
  if (blocks.length === 0) throw new TrustBundleError(`${source} holds no PEM certificate`);
  const cas: TrustedCa[] = [];
  blocks.forEach((pem, i) => {
    let cert: NodeX509;
    let facts: ExtensionFacts;
    try {
      cert = new NodeX509(pem);
      facts = factsOf(pem);
    } catch {
      throw new TrustBundleError(`certificate ${i + 1} in ${source} cannot be parsed`);
    }
    if (!cert.ca) throw new TrustBundleError(`certificate ${i + 1} in ${source} (\`${oneLine(cert.subject)}\`) is not a CA certificate`);
    cas.push({ cert, pem, subject: oneLine(cert.subject), trustDomains: trustDomainsIn(facts.uris), pathLength: facts.pathLength, root: signedBy(cert, cert) });
  });
  // An intermediate whose root is not in the bundle anchors nothing (see `root`): a bundle that holds
  // one is a mistake the operator should hear about at start-up, not at the first refused caller.
  cas.forEach((ca, i) => {
    if (ca.root) return;
    const reachesRoot = (cert: NodeX509, depth: number): boolean => depth <= MAX_CHAIN_CERTS
      && cas.some((issuer) => issuer.cert !== cert && signedBy(cert, issuer.cert) && (issuer.root || reachesRoot(issuer.cert, depth + 1)));
    if (!reachesRoot(ca.cert, 0)) {
      throw new TrustBundleError(`certificate ${i + 1} in ${source} (\`${ca.subject}\`) is an intermediate CA whose root is not in the bundle; add the root CA certificate (a chain is trusted only when it ends at a self-signed root in the bundle)`);
    }
  });
  return { cas, pems: cas.map((c) => c.pem) };
}

export function loadTrustBundleFile(file: string): TrustBundle {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new TrustBundleError(`cannot read the trust bundle \`${file}\``);
  }
  return loadTrustBundle(text, `\`${file}\``);
}

/** The SPIFFE trust domains a CA certificate names in its URI SANs (`spiffe://DOMAIN`). */
function trustDomainsIn(uris: string[]): string[] {
  return uris.map(spiffeTrustDomain).filter((d): d is string => d !== undefined);
}

/**
 * A distinguished name on one line, its control, bidi and zero-width characters escaped: certificate
 * text is the presenter's to choose, and it ends up in audit rows that people read in a terminal.
 */
function oneLine(dn: string): string {
  return escapeForTerminal(dn.split('\n').filter(Boolean).join(', '));
}

function signedBy(child: NodeX509, issuer: NodeX509): boolean {
  try {
    return child.checkIssued(issuer) && child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

const fail = (code: CertificateFailureCode, reason: string): VerifyResult => ({ ok: false, code, reason });

/**
 * Verifies a client certificate given as PEM: the leaf first, then any intermediates.
 * Never throws on bad input; returns a reason in words instead.
 */
export function verifyClientCertificate(pemChain: string, bundle: TrustBundle, now: Date = new Date()): VerifyResult {
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new TypeError('verifyClientCertificate: `now` must be a valid Date');
  if (typeof pemChain !== 'string' || pemChain.length === 0) return fail('malformed', 'certificate is empty');
  if (pemChain.length > MAX_PEM_CHARS) return fail('malformed', `certificate chain is larger than ${MAX_PEM_CHARS / 1024} KiB`);
  const blocks = splitPem(pemChain);
  if (blocks.length === 0) return fail('malformed', 'certificate is not a PEM certificate (expected `-----BEGIN CERTIFICATE-----`)');
  if (blocks.length > MAX_CHAIN_CERTS) return fail('malformed', `certificate chain has more than ${MAX_CHAIN_CERTS} certificates`);
  const certs: NodeX509[] = [];
  for (let i = 0; i < blocks.length; i++) {
    try {
      certs.push(new NodeX509(blocks[i]!));
    } catch {
      return fail('malformed', i === 0 ? 'certificate cannot be parsed' : `certificate ${i + 1} in the chain cannot be parsed`);
    }
  }
  try {
    return verifyParsedChain(certs, blocks, bundle, now);
  } catch {
    // An extension Node accepted but the ASN.1 parser cannot read: refuse rather than throw.
    return fail('malformed', 'certificate cannot be parsed');
  }
}

function verifyParsedChain(certs: NodeX509[], pems: string[], bundle: TrustBundle, now: Date): VerifyResult {
  const leaf = certs[0]!;
  const leafPem = pems[0]!;

  // 1. Chain: leaf -> intermediates (from the PEM, or bundled beside their root) -> a root in the
  // bundle, every signature checked. Only a self-signed root anchors (TrustedCa.root).
  const path: NodeX509[] = [leaf];
  const used = new Set<number>();
  const usedFromBundle = new Set<TrustedCa>();
  let anchor: TrustedCa | undefined;
  let current = leaf;
  for (let depth = 0; depth <= MAX_CHAIN_CERTS; depth++) {
    anchor = bundle.cas.find((ca) => ca.root && signedBy(current, ca.cert));
    if (anchor) break;
    const next = certs.findIndex((c, i) => i > 0 && !used.has(i) && c.ca && signedBy(current, c));
    if (next >= 0) {
      used.add(next);
      current = certs[next]!;
    } else {
      const bundled = bundle.cas.find((ca) => !ca.root && !usedFromBundle.has(ca) && signedBy(current, ca.cert));
      if (!bundled) break;
      usedFromBundle.add(bundled);
      current = bundled.cert;
    }
    path.push(current);
  }
  if (!anchor) return fail('untrusted', 'certificate is not signed by a trusted CA');
  // Path length: a CA with pathLength N may have at most N intermediate CAs below it.
  const intermediates = path.length - 1;
  if (anchor.pathLength !== undefined && intermediates > anchor.pathLength) {
    return fail('untrusted', 'certificate is not signed by a trusted CA (the chain is longer than the CA allows)');
  }
  for (let i = 1; i < path.length; i++) {
    const pathLength = factsOf(path[i]!.toString()).pathLength;
    if (pathLength !== undefined && i - 1 > pathLength) {
      return fail('untrusted', 'certificate is not signed by a trusted CA (the chain is longer than an intermediate allows)');
    }
  }

  // 2. Validity of every certificate in the path, the anchor included.
  const t = now.getTime();
  const all: Array<{ cert: NodeX509; leaf: boolean }> = [...path.map((c, i) => ({ cert: c, leaf: i === 0 })), { cert: anchor.cert, leaf: false }];
  for (const { cert, leaf: isLeaf } of all) {
    const from = Date.parse(cert.validFrom);
    const to = Date.parse(cert.validTo);
    const who = isLeaf ? 'certificate' : `issuing CA certificate \`${oneLine(cert.subject)}\``;
    if (t > to) return fail('expired', `${who} expired at ${new Date(to).toISOString()}`);
    if (t < from) return fail('not-yet-valid', `${who} is not valid until ${new Date(from).toISOString()}`);
  }

  // 3. The leaf is an end-entity certificate usable for client authentication.
  if (leaf.ca) return fail('not-client', 'certificate is not valid for client authentication (it is a CA certificate)');
  const eku = leaf.keyUsage; // Node: the extended key usage OIDs, undefined when the extension is absent
  // anyExtendedKeyUsage alone does not do: OpenSSL refuses it for client authentication at the
  // handshake, and a certificate must get the same verdict on both paths.
  if (eku !== undefined && !eku.includes(OID_CLIENT_AUTH)) {
    return fail('not-client', 'certificate is not valid for client authentication (its extended key usage lacks clientAuth)');
  }
  const leafFacts = factsOf(leafPem);
  if (leafFacts.digitalSignature === false) {
    return fail('not-client', 'certificate is not valid for client authentication (its key usage lacks digitalSignature)');
  }

  // 4. Exactly one URI SAN, a SPIFFE ID in the trust domain of the root, and of every intermediate
  // on the way that names one (the strictest CA on the chain wins).
  const identity = spiffeIdFromUris(leafFacts.uris);
  if (!identity.ok) return identity;
  const trustDomain = spiffeTrustDomain(identity.spiffeId)!;
  const issuers = [...path.slice(1).map((c) => trustDomainsIn(factsOf(c.toString()).uris)), anchor.trustDomains];
  for (const domains of issuers) {
    if (domains.length > 0 && !domains.includes(trustDomain)) {
      return fail('trust-domain', `certificate's SPIFFE ID \`${identity.spiffeId}\` is outside the trust domain of the CA that signed it (\`${domains.join('`, `')}\`)`);
    }
  }
  return {
    ok: true,
    spiffeId: identity.spiffeId,
    trustDomain,
    notAfter: new Date(Date.parse(leaf.validTo)),
    serialNumber: leaf.serialNumber,
    fingerprint256: leaf.fingerprint256,
  };
}

function spiffeIdFromUris(uris: string[]): { ok: true; spiffeId: string } | { ok: false; code: CertificateFailureCode; reason: string } {
  const spiffe = uris.filter((u) => /^spiffe:/i.test(u));
  if (spiffe.length === 0) return { ok: false, code: 'no-spiffe-id', reason: 'certificate has no SPIFFE ID (no `spiffe://` URI SAN)' };
  if (uris.length > 1) return { ok: false, code: 'bad-spiffe-id', reason: 'certificate has more than one URI SAN; a SPIFFE certificate has exactly one' };
  const id = spiffe[0]!;
  // Quoted escaped: the URI is the presenter's text, and the reason is stored in the audit log.
  if (!isSpiffeId(id)) return { ok: false, code: 'bad-spiffe-id', reason: `certificate's URI SAN \`${escapeForTerminal(id.slice(0, 300))}\` is not a valid SPIFFE ID` };
  if (id === `spiffe://${spiffeTrustDomain(id)}`) return { ok: false, code: 'bad-spiffe-id', reason: `certificate's SPIFFE ID \`${id}\` names a trust domain, not a workload` };
  return { ok: true, spiffeId: id };
}

// ---------------------------------------------------------------------------------------------
// node:tls peers

/**
 * Splits Node's `subjectaltname` string (`DNS:a, URI:spiffe://x/y, IP Address:1.2.3.4`) into
 * entries. Node quotes a value with JSON when it holds a `,` or a quote, so quotes are honoured.
 */
export function parseSubjectAltName(text: string): Array<{ type: string; value: string }> {
  const out: Array<{ type: string; value: string }> = [];
  let i = 0;
  while (i < text.length) {
    while (text[i] === ' ' || text[i] === ',') i++;
    if (i >= text.length) break;
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon).trim();
    let j = colon + 1;
    let value: string;
    if (text[j] === '"') {
      let k = j + 1;
      while (k < text.length && text[k] !== '"') k += text[k] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(j, k + 1)) as string;
      } catch {
        value = text.slice(j + 1, k);
      }
      j = k + 1;
    } else {
      const comma = text.indexOf(', ', j);
      const end = comma < 0 ? text.length : comma;
      value = text.slice(j, end);
      j = end;
    }
    out.push({ type, value });
    i = j;
  }
  return out;
}

/**
 * The SPIFFE ID of a TLS peer: the certificate's single URI SAN when it is a valid SPIFFE ID
 * (with a path), else undefined. Reads the DER (`raw`) when present, else `subjectaltname`.
 */
export function spiffeIdFromPeerCertificate(peer: tls.PeerCertificate | null | undefined): string | undefined {
  if (!peer || typeof peer !== 'object') return undefined;
  let uris: string[] | undefined;
  if (Buffer.isBuffer(peer.raw) && peer.raw.length > 0) {
    try {
      uris = factsOf(derToPem(peer.raw)).uris;
    } catch {
      uris = undefined;
    }
  }
  if (uris === undefined) {
    if (typeof peer.subjectaltname !== 'string') return undefined;
    uris = parseSubjectAltName(peer.subjectaltname).filter((e) => e.type === 'URI').map((e) => e.value);
  }
  const r = spiffeIdFromUris(uris);
  return r.ok ? r.spiffeId : undefined;
}

/** True when the peer certificate may be used for client authentication (no EKU, or EKU has clientAuth). */
export function peerCertificateAllowsClientAuth(peer: tls.PeerCertificate | null | undefined): boolean {
  if (!peer || typeof peer !== 'object') return false;
  const eku = (peer as tls.PeerCertificate & { ext_key_usage?: string[] }).ext_key_usage;
  if (eku === undefined) return true;
  return eku.includes(OID_CLIENT_AUTH);
}

/**
 * Full check of an mTLS peer with the same rules as `verifyClientCertificate`: pass
 * `socket.getPeerCertificate(true)` (the detailed form, with the issuer chain).
 */
export function verifyPeerCertificate(peer: tls.DetailedPeerCertificate | tls.PeerCertificate | null | undefined, bundle: TrustBundle, now: Date = new Date()): VerifyResult {
  if (!peer || typeof peer !== 'object' || !Buffer.isBuffer(peer.raw) || peer.raw.length === 0) {
    return fail('malformed', 'the client presented no certificate');
  }
  const pems: string[] = [];
  const seen = new Set<string>();
  let cur: tls.PeerCertificate | undefined = peer;
  while (cur && Buffer.isBuffer(cur.raw) && cur.raw.length > 0 && pems.length < MAX_CHAIN_CERTS) {
    const key = cur.raw.toString('base64');
    if (seen.has(key)) break;
    seen.add(key);
    pems.push(derToPem(cur.raw));
    cur = (cur as tls.DetailedPeerCertificate).issuerCertificate;
  }
  return verifyClientCertificate(pems.join(''), bundle, now);
}

export function derToPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

// ---------------------------------------------------------------------------------------------
// Evidence about a refused certificate: what it claims, for the audit row. None of this is verified.

/** What a presented certificate says about itself (for an audit row; unverified). Never throws. */
export interface CertificateClaims {
  /** The SPIFFE ID of its single URI SAN, when it carries one. */
  spiffeId?: string;
  subject?: string;
  issuer?: string;
  serial_number?: string;
  fingerprint256?: string;
  valid_from?: string;
  valid_to?: string;
}

function claimsOf(pem: string): CertificateClaims {
  const claims: CertificateClaims = {};
  try {
    const cert = new NodeX509(pem);
    claims.subject = oneLine(cert.subject).slice(0, 512);
    claims.issuer = oneLine(cert.issuer).slice(0, 512);
    claims.serial_number = cert.serialNumber;
    claims.fingerprint256 = cert.fingerprint256;
    const from = Date.parse(cert.validFrom);
    const to = Date.parse(cert.validTo);
    if (Number.isFinite(from)) claims.valid_from = new Date(from).toISOString();
    if (Number.isFinite(to)) claims.valid_to = new Date(to).toISOString();
    const id = spiffeIdFromUris(factsOf(pem).uris);
    if (id.ok) claims.spiffeId = id.spiffeId;
  } catch {
    // Unparseable: it claims nothing we can read.
  }
  return claims;
}

/** The claims of the first (leaf) certificate of a PEM chain, e.g. a refused `credentials.certificate`. */
export function certificateClaims(pemChain: string): CertificateClaims {
  if (typeof pemChain !== 'string' || pemChain.length > MAX_PEM_CHARS) return {};
  const leaf = splitPem(pemChain)[0];
  return leaf === undefined ? {} : claimsOf(leaf);
}

/** The claims of a TLS peer's certificate (`socket.getPeerCertificate()`), e.g. one refused at the handshake. */
export function peerCertificateClaims(peer: tls.PeerCertificate | null | undefined): CertificateClaims {
  if (!peer || typeof peer !== 'object' || !Buffer.isBuffer(peer.raw) || peer.raw.length === 0) return {};
  return claimsOf(derToPem(peer.raw));
}
