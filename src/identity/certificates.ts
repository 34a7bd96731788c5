// Client certificate verification with SPIFFE IDs (X.509-SVIDs): chain to a trusted CA, validity at
// `now`, no critical extension pdp does not process, a non-CA leaf fit for client authentication
// under CAs whose extended key usage allows it, every CA's name constraints, exactly one URI SAN that
// is a SPIFFE ID (docs/identity.md, "How a client certificate is verified").
//
// Used two ways: for `credentials.certificate` in a request body (a PEM the caller forwards), and for
// the peer certificate of an mTLS connection (node:tls has already checked the chain; this module
// re-checks it with the same rules and extracts the identity).
import { X509Certificate as NodeX509 } from 'node:crypto';
import * as fs from 'node:fs';
import type * as tls from 'node:tls';
import { AsnConvert, BitString } from '@peculiar/asn1-schema';
import * as asn1X509 from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';
import ipaddr from 'ipaddr.js';
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
  | 'trust-domain'
  | 'unhandled-extension'
  | 'name-constraints';

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
  /**
   * basicConstraints `cA` as the certificate states it (undefined without the extension). Node's
   * `X509Certificate.ca` is not this: it is also false for `CA:TRUE` without keyCertSign.
   */
  basicCa: boolean | undefined;
  /** extendedKeyUsage OIDs; undefined when the extension is absent. */
  eku: string[] | undefined;
  /** The first byte of a Netscape certificate type extension (0x80: SSL client); undefined when absent. */
  nsCertType: number | undefined;
  /** OIDs of critical extensions pdp does not process (see PROCESSED_EXTENSIONS). */
  unhandledCritical: string[];
  /** The OID of an extension the certificate carries more than once (RFC 5280 forbids it). */
  repeatedExtension: string | undefined;
  /** Its nameConstraints (undefined without the extension). */
  nameConstraints: NameConstraintsFacts | undefined;
  /** Its names, as name constraints see them. */
  names: ConstrainedNames;
}

// OIDs of the extensions pdp reads.
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_KEY_USAGE = '2.5.29.15';
const OID_EXT_KEY_USAGE = '2.5.29.37';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_NAME_CONSTRAINTS = '2.5.29.30';
const OID_CERTIFICATE_POLICIES = '2.5.29.32';
const OID_NS_CERT_TYPE = '2.16.840.1.113730.1.1';
const OID_COMMON_NAME = '2.5.4.3';
const NS_SSL_CLIENT = 0x80;

/**
 * The extensions a certificate on a client chain (the leaf, every intermediate and the anchoring root)
 * may mark critical. RFC 5280 §4.2: a certificate with a critical extension the verifier does not
 * process is refused, and OpenSSL refuses one at the handshake ("unhandled critical extension"), so
 * `credentials.certificate` must refuse it too. pdp processes:
 *   - basicConstraints: `cA` (the leaf must not be a CA), pathLenConstraint;
 *   - keyUsage: digitalSignature on the leaf (keyCertSign on a CA, through node:crypto's `ca`);
 *   - extendedKeyUsage: clientAuth on the leaf and on every CA that carries one;
 *   - subjectAltName: the SPIFFE ID, and every name for name constraints;
 *   - nameConstraints: URI, DNS and IP subtrees (RFC 5280 §4.2.1.10); any other form is refused;
 *   - Netscape certificate type: a leaf that carries one must allow SSL client (as OpenSSL requires).
 * Accepted without acting on it: certificatePolicies. pdp asks for no particular policy (RFC 5280
 * §6.1 with any-policy and no explicit policy required), so a policy a certificate asserts never
 * makes a path fail, critical or not; OpenSSL accepts it too.
 * Everything else critical is refused, including what OpenSSL accepts but pdp does not act on:
 * policyConstraints, policyMappings and inhibitAnyPolicy (they can make RFC 5280 path validation fail,
 * which pdp does not compute), cRLDistributionPoints (pdp checks no revocation), RFC 3779 address
 * blocks, proxyCertInfo, OCSP no-check; and critical authority or subject key identifiers, which
 * OpenSSL refuses too.
 */
const PROCESSED_EXTENSIONS: ReadonlySet<string> = new Set([
  OID_BASIC_CONSTRAINTS, OID_KEY_USAGE, OID_EXT_KEY_USAGE, OID_SUBJECT_ALT_NAME, OID_NAME_CONSTRAINTS, OID_NS_CERT_TYPE, OID_CERTIFICATE_POLICIES,
]);

/** One permitted or excluded subtree of a form pdp checks. */
type Subtree = { form: 'dns' | 'uri'; base: string } | { form: 'ip'; base: Uint8Array };

interface NameConstraintsFacts {
  permitted: Subtree[];
  excluded: Subtree[];
  /** Why pdp cannot apply them (a form it does not check, minimum/maximum, an unreadable value): every chain through the CA is refused. */
  unsupported?: string;
}

/** The names of a certificate that name constraints apply to (the forms pdp checks; its URIs are `uris`). */
interface ConstrainedNames {
  dns: string[];
  /** IP address SANs as bytes; null for one that is not 4 or 16 bytes. */
  ips: Array<Uint8Array | null>;
  /** The subject's commonName values (OpenSSL checks a DNS-like one against DNS constraints when the leaf has no DNS SAN). */
  commonNames: string[];
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
    const bc = cert.getExtension(x509.BasicConstraintsExtension);
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
    const seen = new Set<string>();
    let repeatedExtension: string | undefined;
    const unhandledCritical: string[] = [];
    for (const ext of cert.extensions) {
      if (seen.has(ext.type)) repeatedExtension ??= ext.type;
      seen.add(ext.type);
      if (ext.critical && !PROCESSED_EXTENSIONS.has(ext.type)) unhandledCritical.push(ext.type);
    }
    const sanNames = san ? san.names.items : [];
    const nsCertType = cert.extensions.find((e) => e.type === OID_NS_CERT_TYPE);
    const nc = cert.extensions.find((e) => e.type === OID_NAME_CONSTRAINTS);
    facts = {
      digitalSignature: ku ? (ku.usages & x509.KeyUsageFlags.digitalSignature) !== 0 : undefined,
      pathLength: bc?.pathLength,
      uris: sanNames.filter((n) => n.type === 'url').map((n) => n.value),
      basicCa: bc ? bc.ca : undefined,
      eku: eku ? eku.usages.map(String) : undefined,
      nsCertType: nsCertType ? nsCertTypeBits(nsCertType.value) : undefined,
      unhandledCritical,
      repeatedExtension,
      nameConstraints: nc ? readNameConstraints(nc.value) : undefined,
      names: {
        dns: sanNames.filter((n) => n.type === 'dns').map((n) => n.value),
        ips: sanNames.filter((n) => n.type === 'ip').map((n) => ipBytes(n.value)),
        commonNames: cert.subjectName.getField(OID_COMMON_NAME),
      },
    };
    extensionFacts.set(pem, facts);
  }
  return facts;
}

function nsCertTypeBits(value: ArrayBuffer): number {
  const bits = new Uint8Array(AsnConvert.parse(value, BitString).value);
  return bits.length > 0 ? bits[0]! : 0;
}

/**
 * An IP address as @peculiar/asn1-x509 writes it (`10.1.2.3`, `::1`) as its 4 or 16 bytes; null for
 * anything else (a SAN IP of another length, which it writes as a CIDR or hex).
 */
function ipBytes(text: string): Uint8Array | null {
  if (!ipaddr.isValid(text)) return null;
  return Uint8Array.from(ipaddr.parse(text).toByteArray());
}

/** nameConstraints, read with @peculiar/asn1-x509; what pdp cannot apply exactly is marked `unsupported`. */
function readNameConstraints(value: ArrayBuffer): NameConstraintsFacts {
  const facts: NameConstraintsFacts = { permitted: [], excluded: [] };
  let nc: asn1X509.NameConstraints;
  try {
    nc = AsnConvert.parse(value, asn1X509.NameConstraints);
    // The parser turns an IP subtree into text (`10.0.0.0/8`): only when the text encodes back to the
    // very same bytes (a contiguous mask, an address and mask of 4 or 16 bytes each) is it exact.
    if (Buffer.compare(Buffer.from(AsnConvert.serialize(nc)), Buffer.from(value)) !== 0) {
      return { ...facts, unsupported: 'they are not in a form pdp can read exactly' };
    }
  } catch {
    return { ...facts, unsupported: 'they cannot be parsed' };
  }
  const read = (subtrees: asn1X509.GeneralSubtrees | undefined, into: Subtree[]): string | undefined => {
    for (const subtree of subtrees ?? []) {
      if ((subtree.minimum ?? 0) !== 0 || subtree.maximum !== undefined) return 'a subtree has a minimum or maximum';
      const base = subtree.base;
      if (base.dNSName !== undefined) into.push({ form: 'dns', base: base.dNSName });
      else if (base.uniformResourceIdentifier !== undefined) into.push({ form: 'uri', base: base.uniformResourceIdentifier });
      else if (base.iPAddress !== undefined) {
        // Exact (see the round trip above): the address as written, and a contiguous mask of that prefix.
        const cidr = /^(.+)\/(\d+)$/.exec(base.iPAddress);
        if (!cidr || !ipaddr.isValid(cidr[1]!)) return `the IP subtree \`${base.iPAddress}\` is not an address and mask`;
        const address = ipaddr.parse(cidr[1]!);
        const mask = address.kind() === 'ipv4' ? ipaddr.IPv4.subnetMaskFromPrefixLength(Number(cidr[2])) : ipaddr.IPv6.subnetMaskFromPrefixLength(Number(cidr[2]));
        into.push({ form: 'ip', base: Uint8Array.from([...address.toByteArray(), ...mask.toByteArray()]) });
      } else {
        const form = base.rfc822Name !== undefined ? 'email (rfc822Name)'
          : base.directoryName !== undefined ? 'directoryName'
          : base.otherName !== undefined ? 'otherName'
          : base.registeredID !== undefined ? 'registeredID'
          : base.x400Address !== undefined ? 'x400Address'
          : 'ediPartyName';
        return `they include a ${form} subtree, and pdp checks URI, DNS and IP subtrees only`;
      }
    }
    return undefined;
  };
  const unsupported = read(nc.permittedSubtrees, facts.permitted) ?? read(nc.excludedSubtrees, facts.excluded);
  return unsupported ? { permitted: [], excluded: [], unsupported } : facts;
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

/** A certificate of a verified path (leaf first, anchoring root last). */
interface PathEntry {
  facts: ExtensionFacts;
  /** Its subject on one line. */
  subject: string;
  /** How a reason names it: `certificate` for the leaf, else "issuing CA certificate" and its subject. */
  who: string;
}

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

  // 3. Extensions: none pdp does not process is critical (PROCESSED_EXTENSIONS), none appears twice,
  // on any certificate of the path, the anchoring root included (OpenSSL checks them all).
  const chain: PathEntry[] = [
    ...path.map((c, i) => ({ facts: i === 0 ? factsOf(leafPem) : factsOf(c.toString()), subject: oneLine(c.subject), who: i === 0 ? 'certificate' : `issuing CA certificate \`${oneLine(c.subject)}\`` })),
    { facts: factsOf(anchor.pem), subject: anchor.subject, who: `issuing CA certificate \`${anchor.subject}\`` },
  ];
  for (const { facts, who } of chain) {
    if (facts.repeatedExtension !== undefined) return fail('malformed', `${who} carries the extension ${facts.repeatedExtension} more than once`);
    if (facts.unhandledCritical.length > 0) {
      return fail('unhandled-extension', `${who} has a critical extension pdp does not process (${facts.unhandledCritical.join(', ')})`);
    }
  }

  // 4. The leaf is an end-entity certificate usable for client authentication. Not a CA by its
  // basicConstraints (node:crypto's `ca` alone is false for `CA:TRUE` without keyCertSign).
  const leafFacts = chain[0]!.facts;
  if (leaf.ca || leafFacts.basicCa === true) return fail('not-client', 'certificate is not valid for client authentication (it is a CA certificate)');
  // anyExtendedKeyUsage alone does not do: OpenSSL refuses it for client authentication at the
  // handshake, and a certificate must get the same verdict on both paths.
  if (leafFacts.eku !== undefined && !leafFacts.eku.includes(OID_CLIENT_AUTH)) {
    return fail('not-client', 'certificate is not valid for client authentication (its extended key usage lacks clientAuth)');
  }
  if (leafFacts.digitalSignature === false) {
    return fail('not-client', 'certificate is not valid for client authentication (its key usage lacks digitalSignature)');
  }
  if (leafFacts.nsCertType !== undefined && (leafFacts.nsCertType & NS_SSL_CLIENT) === 0) {
    return fail('not-client', 'certificate is not valid for client authentication (its Netscape certificate type lacks SSL client)');
  }
  // Every CA on the path that restricts its extended key usage allows clientAuth (OpenSSL's
  // "unsupported certificate purpose" otherwise; anyExtendedKeyUsage alone does not do for it either).
  for (const { facts, who } of chain.slice(1)) {
    if (facts.eku !== undefined && !facts.eku.includes(OID_CLIENT_AUTH)) {
      return fail('not-client', `certificate is not valid for client authentication (the extended key usage of its ${who} lacks clientAuth)`);
    }
  }

  // 5. Name constraints of every CA on the path (the root included) hold for every certificate below it.
  const constraintFailure = checkNameConstraints(chain);
  if (constraintFailure) return fail('name-constraints', constraintFailure);

  // 6. Exactly one URI SAN, a SPIFFE ID in the trust domain of the root, and of every intermediate
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

/**
 * RFC 5280 §4.2.1.10 name constraints over a path (leaf first, anchoring root last), as OpenSSL applies
 * them at the handshake: each CA's constraints bind every certificate below it, per name form; when a
 * CA permits subtrees of a form, each name of that form must lie in one of them, and no name may lie
 * in an excluded subtree. Forms: URI (the URI's host: `partner` is that host exactly, `.partner` any
 * host below it), DNS (`partner.example` is it and any name below it, `.partner.example` only names
 * below it), IP (address and mask; IPv4 and IPv6 never match each other). A leaf without a DNS SAN
 * has its DNS-like commonName checked against DNS constraints (OpenSSL does). Unlike OpenSSL, a
 * self-issued intermediate is not exempt (fail closed), and a constraint of another form (email,
 * directoryName, ...) or a URI whose host pdp and OpenSSL might read differently is refused.
 * Returns the reason for a refusal, undefined when the constraints hold.
 */
function checkNameConstraints(chain: PathEntry[]): string | undefined {
  for (let j = 1; j < chain.length; j++) {
    const nc = chain[j]!.facts.nameConstraints;
    if (nc === undefined) continue;
    const ca = `CA \`${chain[j]!.subject}\``;
    if (nc.unsupported) return `the name constraints of ${ca} cannot be checked: ${nc.unsupported}`;
    for (let i = 0; i < j; i++) {
      const { names, uris } = chain[i]!.facts;
      const { who } = chain[i]!;
      const dns = [...names.dns];
      if (i === 0 && names.dns.length === 0) {
        for (const cn of names.commonNames) {
          const id = commonNameAsDns(cn);
          if (id === null) return `${who}'s commonName cannot be checked against the name constraints of ${ca}`;
          if (id !== undefined) dns.push(id);
        }
      }
      for (const name of dns) {
        const verdict = subtreeVerdict(nc, 'dns', (base) => dnsWithin(name, base as string));
        if (verdict) return `${who}'s DNS name \`${name}\` ${verdict} of ${ca}`;
      }
      for (const uri of uris) {
        if (!nc.permitted.some((t) => t.form === 'uri') && !nc.excluded.some((t) => t.form === 'uri')) break;
        const host = uriHost(uri);
        if (host === undefined) return `${who}'s URI \`${uri.slice(0, 300)}\` has no host that the URI name constraints of ${ca} can be checked against`;
        const verdict = subtreeVerdict(nc, 'uri', (base) => uriHostWithin(host, base as string));
        if (verdict) return `${who}'s URI \`${uri.slice(0, 300)}\` ${verdict} of ${ca}`;
      }
      for (const ip of names.ips) {
        if (!nc.permitted.some((t) => t.form === 'ip') && !nc.excluded.some((t) => t.form === 'ip')) break;
        if (ip === null) return `${who} has an IP address SAN that is neither IPv4 nor IPv6, which the IP name constraints of ${ca} cannot check`;
        const verdict = subtreeVerdict(nc, 'ip', (base) => ipWithin(ip, base as Uint8Array));
        if (verdict) return `${who}'s IP address \`${ipaddr.fromByteArray([...ip]).toString()}\` ${verdict} of ${ca}`;
      }
    }
  }
  return undefined;
}

/** Why a name of FORM breaks the constraints ("is outside the permitted names", "is among the excluded names"), or undefined. */
function subtreeVerdict(nc: NameConstraintsFacts, form: Subtree['form'], within: (base: string | Uint8Array) => boolean): string | undefined {
  const permitted = nc.permitted.filter((t) => t.form === form);
  if (permitted.length > 0 && !permitted.some((t) => within(t.base))) return 'is outside the permitted names';
  if (nc.excluded.some((t) => t.form === form && within(t.base))) return 'is among the excluded names';
  return undefined;
}

/** ASCII case-insensitive equality, as OpenSSL compares IA5 names (no Unicode case folding). */
function asciiEqualIgnoringCase(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x >= 65 && x <= 90) x += 32;
    if (y >= 65 && y <= 90) y += 32;
    if (x !== y) return false;
  }
  return true;
}

/** DNS: an empty base matches everything; `a.b` matches `a.b` and `x.a.b`; `.a.b` matches `x.a.b` only. */
function dnsWithin(name: string, base: string): boolean {
  if (base.length === 0) return true;
  if (name.length < base.length) return false;
  const tail = name.slice(name.length - base.length);
  if (name.length > base.length && !base.startsWith('.') && name[name.length - base.length - 1] !== '.') return false;
  return asciiEqualIgnoringCase(tail, base);
}

/** URI host: `.a.b` matches any host below a.b (not a.b itself); any other base matches that host only. */
function uriHostWithin(host: string, base: string): boolean {
  if (base.startsWith('.')) return host.length > base.length && asciiEqualIgnoringCase(host.slice(host.length - base.length), base);
  return asciiEqualIgnoringCase(host, base);
}

/** IP: address and mask of the same family; the masked address bytes match. */
function ipWithin(ip: Uint8Array, base: Uint8Array): boolean {
  if (ip.length * 2 !== base.length) return false;
  for (let i = 0; i < ip.length; i++) if ((ip[i]! & base[ip.length + i]!) !== (base[i]! & base[ip.length + i]!)) return false;
  return true;
}

/**
 * The host of a URI for URI name constraints, or undefined when there is none pdp can vouch for.
 * OpenSSL takes what follows `scheme://` up to the first `:` after it, else the first `/`; RFC 3986
 * takes the authority (up to `/`, `?` or `#`) without userinfo or port. Only a host both read alike
 * is used (so a URI with userinfo, a port, a query right after the host or a `:` in its path is refused
 * rather than judged differently from the handshake). A valid SPIFFE ID always has one: its trust domain.
 */
function uriHost(uri: string): string | undefined {
  const colon = uri.indexOf(':');
  if (colon < 0 || uri[colon + 1] !== '/' || uri[colon + 2] !== '/') return undefined;
  const rest = uri.slice(colon + 3);
  let end = rest.indexOf(':');
  if (end < 0) end = rest.indexOf('/');
  const host = end < 0 ? rest : rest.slice(0, end);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  if (host.length === 0 || host !== authority || /[@\[\]\s\0]/.test(host)) return undefined;
  return host;
}

/**
 * A commonName as OpenSSL reads it for DNS name constraints (cn2dnsid): undefined when it does not look
 * like a DNS name with at least two labels (letters, digits, `_`, inner `-` and `.`), the name when it
 * does, null when it holds an embedded NUL (OpenSSL refuses the chain).
 */
function commonNameAsDns(cn: string): string | undefined | null {
  const value = cn.replace(/\0+$/, '');
  if (value.includes('\0')) return null;
  let dnsLike = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (/[A-Za-z0-9_]/.test(c)) continue;
    if (i > 0 && i < value.length - 1) {
      if (c === '-') continue;
      if (c === '.' && value[i + 1] !== '.' && value[i - 1] !== '-' && value[i + 1] !== '-') {
        dnsLike = true;
        continue;
      }
    }
    dnsLike = false;
    break;
  }
  return dnsLike ? value : undefined;
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
