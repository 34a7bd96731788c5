// A small built-in certificate authority in the spirit of `flocker-ca`: one ECDSA P-256 root per
// SPIFFE trust domain, and short-lived leaf certificates for the PDP server (serverAuth, DNS/IP SANs)
// and for workloads and users (clientAuth, exactly one `spiffe://` URI SAN).
//
// Keys and certificates are made with @peculiar/x509 over Node's WebCrypto; private keys are written
// as PKCS#8 PEM with mode 0600 and never appear in any message.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import { webcrypto, X509Certificate as NodeX509, randomBytes, createPrivateKey, createPublicKey } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { isSpiffeId, spiffeTrustDomain } from '../syntax/identity-pattern';
import { certificateUris } from './certificates';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
const crypto = webcrypto;
const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

export const CA_KEY_FILE = 'ca.key';
export const CA_CERT_FILE = 'ca.crt';

/** Tolerated clock skew: every certificate starts this long before `now`. */
export const CLOCK_SKEW_MS = MINUTE;

export type CertificateKind = 'server' | 'workload' | 'user';

/** Default and maximum lifetimes of issued certificates, by kind. */
export const DEFAULT_VALIDITY_MS: Record<CertificateKind, number> = { server: 90 * DAY, workload: DAY, user: DAY };
export const MAX_VALIDITY_MS: Record<CertificateKind, number> = { server: 397 * DAY, workload: 30 * DAY, user: 30 * DAY };
export const DEFAULT_CA_VALIDITY_DAYS = 365;
export const MAX_CA_VALIDITY_DAYS = 20 * 365;

/** A refusal the caller can act on (file exists, bad input, CA unusable). Message is lowercase, no secrets. */
export class CaError extends Error {
  constructor(message: string, readonly code: 'exists' | 'invalid' | 'ca') {
    super(message);
    this.name = 'CaError';
  }
}

const TRUST_DOMAIN_RE = /^[a-z0-9._-]{1,255}$/;
const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
const DNS_RE = /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

export function validateTrustDomain(trustDomain: string): void {
  if (!TRUST_DOMAIN_RE.test(trustDomain) || trustDomain === '.' || trustDomain === '..') {
    throw new CaError(`invalid trust domain \`${trustDomain}\`: use lowercase letters, digits, \`.\`, \`_\` and \`-\` (for example \`cluster\` or \`example.org\`)`, 'invalid');
  }
}

// ---------------------------------------------------------------------------------------------
// files

function exists(file: string): boolean {
  try {
    fs.lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

/** Writes via a temporary file and a rename, so a reader never sees half a file; keys get mode 0600. */
function writeAtomic(file: string, data: string, mode: number): void {
  const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    fs.writeFileSync(tmp, data, { mode, flag: 'wx' });
    fs.chmodSync(tmp, mode);
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.unlinkSync(tmp); } catch { /* already gone */ }
    throw e;
  }
}

function refuseExisting(files: string[], force: boolean, flag = '--force'): void {
  if (force) return;
  const found = files.filter(exists);
  if (found.length > 0) {
    const list = found.map((f) => `\`${f}\``).join(' and ');
    throw new CaError(`${list} already ${found.length > 1 ? 'exist' : 'exists'}; refusing to overwrite (pass \`${flag}\` to replace ${found.length > 1 ? 'them' : 'it'})`, 'exists');
  }
}

function pemPrivateKey(pkcs8: ArrayBuffer): string {
  return createPrivateKey({ key: Buffer.from(pkcs8), format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** 16 random bytes, positive and minimally encoded (first byte in 0x40..0x7f). */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

/** Certificates carry whole seconds; round down so what we report is what the certificate says. */
function wholeSecond(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000);
}

function checkDate(d: Date, what: string): void {
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw new CaError(`${what} is not a valid date`, 'invalid');
}

// ---------------------------------------------------------------------------------------------
// CA

export interface InitCaOptions {
  dir: string;
  trustDomain: string;
  validityDays?: number;
  force?: boolean;
  now?: Date;
}

export interface InitCaResult {
  keyPath: string;
  certPath: string;
  trustDomain: string;
  notBefore: Date;
  notAfter: Date;
  /** The CA certificate's serial number (hex). */
  serialNumber: string;
  /** SHA-256 fingerprint of the CA certificate, colon-separated hex. */
  fingerprint: string;
}

export async function initCa(options: InitCaOptions): Promise<InitCaResult> {
  const { dir, trustDomain, force = false } = options;
  const validityDays = options.validityDays ?? DEFAULT_CA_VALIDITY_DAYS;
  const now = options.now ?? new Date();
  checkDate(now, '`now`');
  validateTrustDomain(trustDomain);
  if (!Number.isFinite(validityDays) || validityDays <= 0) throw new CaError(`CA validity must be a positive number of days; got \`${validityDays}\``, 'invalid');
  if (validityDays > MAX_CA_VALIDITY_DAYS) throw new CaError(`CA validity of ${validityDays} days is longer than the maximum of ${MAX_CA_VALIDITY_DAYS} days`, 'invalid');

  const keyPath = path.join(dir, CA_KEY_FILE);
  const certPath = path.join(dir, CA_CERT_FILE);
  refuseExisting([keyPath, certPath], force);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });

  const keys = (await crypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const notBefore = wholeSecond(now.getTime() - CLOCK_SKEW_MS);
  const notAfter = wholeSecond(now.getTime() + validityDays * DAY);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [`pdp root CA ${trustDomain}`] }],
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: EC_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }], false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
    ],
  }, crypto);

  const keyPem = pemPrivateKey(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  writeAtomic(keyPath, keyPem, 0o600);
  const certPem = cert.toString('pem') + '\n';
  writeAtomic(certPath, certPem, 0o644);
  const written = new NodeX509(certPem);
  return { keyPath, certPath, trustDomain, notBefore, notAfter, serialNumber: written.serialNumber, fingerprint: written.fingerprint256 };
}

export interface LoadedCa {
  certPem: string;
  cert: NodeX509;
  trustDomain: string;
  signingKey: CryptoKey;
  publicKey: CryptoKey;
  /** Things the operator should know (loose key permissions). */
  warnings: string[];
}

/** Reads `ca.key` and `ca.crt` from `caDir`, checks they belong together and the CA is usable at `now`. */
export async function loadCa(caDir: string, now: Date = new Date()): Promise<LoadedCa> {
  const keyPath = path.join(caDir, CA_KEY_FILE);
  const certPath = path.join(caDir, CA_CERT_FILE);
  const warnings: string[] = [];
  let keyText: string;
  let certPem: string;
  try {
    certPem = fs.readFileSync(certPath, 'utf8');
  } catch {
    throw new CaError(`cannot read the CA certificate \`${certPath}\`; create a CA with \`pdp ca init --trust-domain DOMAIN --dir ${caDir}\``, 'ca');
  }
  try {
    keyText = fs.readFileSync(keyPath, 'utf8');
    const mode = fs.statSync(keyPath).mode & 0o777;
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      warnings.push(`\`${keyPath}\` is readable by other users (mode ${mode.toString(8).padStart(4, '0')}); run \`chmod 600 ${keyPath}\``);
    }
  } catch {
    throw new CaError(`cannot read the CA key \`${keyPath}\``, 'ca');
  }
  let cert: NodeX509;
  try {
    cert = new NodeX509(certPem);
  } catch {
    throw new CaError(`\`${certPath}\` is not a PEM certificate`, 'ca');
  }
  if (!cert.ca) throw new CaError(`\`${certPath}\` is not a CA certificate`, 'ca');
  if (now.getTime() > Date.parse(cert.validTo)) throw new CaError(`the CA certificate \`${certPath}\` expired at ${new Date(cert.validTo).toISOString()}; create a new CA (see docs/identity.md, rotation)`, 'ca');

  let keyObject;
  try {
    keyObject = createPrivateKey(keyText);
  } catch {
    throw new CaError(`\`${keyPath}\` is not a PEM private key`, 'ca');
  }
  if (keyObject.asymmetricKeyType !== 'ec' || keyObject.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new CaError(`\`${keyPath}\` is not an ECDSA P-256 key`, 'ca');
  }
  const pubFromKey = createPublicKey(keyObject).export({ type: 'spki', format: 'der' });
  const pubFromCert = cert.publicKey.export({ type: 'spki', format: 'der' });
  if (!pubFromKey.equals(pubFromCert)) throw new CaError(`\`${keyPath}\` does not belong to \`${certPath}\``, 'ca');

  const pkcs8 = keyObject.export({ type: 'pkcs8', format: 'der' });
  const signingKey = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  const publicKey = await crypto.subtle.importKey('spki', pubFromCert, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']);

  const uris = certificateUris(certPem);
  const domains = uris.map(spiffeTrustDomain).filter((d): d is string => d !== undefined);
  if (domains.length !== 1) throw new CaError(`the CA certificate \`${certPath}\` does not name one SPIFFE trust domain (a URI SAN \`spiffe://DOMAIN\`)`, 'ca');
  return { certPem, cert, trustDomain: domains[0]!, signingKey, publicKey, warnings };
}

// ---------------------------------------------------------------------------------------------
// leaf certificates

export interface IssueOptions {
  /** Directory holding `ca.key` and `ca.crt`. */
  caDir: string;
  kind: CertificateKind;
  /**
   * File name stem: writes `<outDir>/<name>.key` and `<outDir>/<name>.crt`. Required for a server
   * certificate; a workload or user certificate defaults to its SPIFFE ID's last path segment.
   */
  name?: string;
  /** Output directory; default `caDir`. */
  outDir?: string;
  /** Server certificates: DNS names (at least one DNS name or IP is required). */
  dns?: string[];
  /** Server certificates: IP addresses. */
  ips?: string[];
  /** Workload and user certificates: the SPIFFE ID (required); optional on server certificates. */
  spiffeId?: string;
  /** Lifetime in milliseconds; defaults by kind (24 h workload/user, 90 days server), maximum by kind. */
  validityMs?: number;
  force?: boolean;
  now?: Date;
  /** Explicit validity window, for tests (e.g. an already expired certificate). Skips the maximum. */
  validFrom?: Date;
  validTo?: Date;
}

export interface IssueResult {
  keyPath: string;
  certPath: string;
  /** The CA certificate that issued it (what peers need as their trust bundle). */
  caCertPath: string;
  kind: CertificateKind;
  spiffeId?: string;
  dns: string[];
  ips: string[];
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  warnings: string[];
}

/** A workload or user certificate's default file name: its valid SPIFFE ID's last path segment, if that is a usable name. */
export function defaultCertificateName(spiffeId: string): string | undefined {
  if (!isSpiffeId(spiffeId)) return undefined;
  const segments = spiffeId.slice('spiffe://'.length).split('/');
  const last = segments[segments.length - 1]!;
  return segments.length > 1 && NAME_RE.test(last) ? last : undefined;
}

export async function issueCertificate(options: IssueOptions): Promise<IssueResult> {
  const { caDir, kind, force = false } = options;
  let name = options.name;
  const now = options.now ?? new Date();
  checkDate(now, '`now`');
  if (kind !== 'server' && kind !== 'workload' && kind !== 'user') throw new CaError(`unknown certificate kind \`${String(kind)}\`; use \`server\`, \`workload\` or \`user\``, 'invalid');
  if (name === undefined && kind === 'server') throw new CaError('a server certificate needs a name (the file name stem)', 'invalid');
  if (name !== undefined && !NAME_RE.test(name)) throw new CaError(`invalid name \`${name}\`: use 1-64 letters, digits, \`.\`, \`_\` and \`-\``, 'invalid');
  const dns = [...new Set(options.dns ?? [])];
  const ips = [...new Set(options.ips ?? [])];
  for (const d of dns) {
    if (!DNS_RE.test(d) || d.length > 253) throw new CaError(`invalid DNS name \`${d}\``, 'invalid');
  }
  for (const ip of ips) {
    if (net.isIP(ip) === 0) throw new CaError(`invalid IP address \`${ip}\``, 'invalid');
  }
  if (kind === 'server') {
    if (dns.length === 0 && ips.length === 0) throw new CaError('a server certificate needs at least one DNS name or IP address', 'invalid');
  } else {
    if (dns.length > 0 || ips.length > 0) throw new CaError(`a ${kind} certificate carries a SPIFFE ID, not DNS names or IP addresses`, 'invalid');
    if (!options.spiffeId) throw new CaError(`a ${kind} certificate needs a SPIFFE ID (for example \`spiffe://cluster/ns/prod/sa/registry\`)`, 'invalid');
  }

  const ca = await loadCa(caDir, now);
  const spiffeId = options.spiffeId;
  if (spiffeId !== undefined) {
    if (!isSpiffeId(spiffeId)) throw new CaError(`\`${spiffeId}\` is not a valid SPIFFE ID; write \`spiffe://${ca.trustDomain}/path\``, 'invalid');
    const td = spiffeTrustDomain(spiffeId);
    if (td !== ca.trustDomain) throw new CaError(`SPIFFE ID \`${spiffeId}\` is outside this CA's trust domain \`${ca.trustDomain}\``, 'invalid');
    if (spiffeId === `spiffe://${td}`) throw new CaError(`SPIFFE ID \`${spiffeId}\` names the trust domain itself; a ${kind} ID needs a path, e.g. \`spiffe://${td}/ns/prod/sa/${name ?? 'registry'}\``, 'invalid');
  }
  // Only now, with the SPIFFE ID known to be valid, is a missing name derived from it: an invalid
  // ID is reported as such, not as a missing name.
  if (name === undefined) {
    name = defaultCertificateName(spiffeId!);
    if (name === undefined) throw new CaError(`a name is required: the last path segment of \`${spiffeId}\` is not a usable file name (1-64 letters, digits, \`.\`, \`_\` and \`-\`)`, 'invalid');
  }

  let notBefore: Date;
  let notAfter: Date;
  if (options.validFrom !== undefined || options.validTo !== undefined) {
    notBefore = options.validFrom ?? wholeSecond(now.getTime() - CLOCK_SKEW_MS);
    notAfter = options.validTo ?? new Date(notBefore.getTime() + (options.validityMs ?? DEFAULT_VALIDITY_MS[kind]));
    checkDate(notBefore, '`validFrom`');
    checkDate(notAfter, '`validTo`');
    if (notAfter.getTime() <= notBefore.getTime()) throw new CaError('`validTo` must be after `validFrom`', 'invalid');
  } else {
    const validityMs = options.validityMs ?? DEFAULT_VALIDITY_MS[kind];
    if (!Number.isFinite(validityMs) || validityMs <= 0) throw new CaError('validity must be a positive duration', 'invalid');
    if (validityMs > MAX_VALIDITY_MS[kind]) {
      throw new CaError(`validity of ${formatDuration(validityMs)} is longer than the maximum for ${kind} certificates (${formatDuration(MAX_VALIDITY_MS[kind])})`, 'invalid');
    }
    notBefore = wholeSecond(now.getTime() - CLOCK_SKEW_MS);
    notAfter = wholeSecond(now.getTime() + validityMs);
    const caNotAfter = Date.parse(ca.cert.validTo);
    if (notAfter.getTime() > caNotAfter) {
      throw new CaError(`the certificate would outlive its CA (the CA expires at ${new Date(caNotAfter).toISOString()}); use a shorter validity or rotate the CA`, 'invalid');
    }
  }

  const outDir = options.outDir ?? caDir;
  const keyPath = path.join(outDir, `${name}.key`);
  const certPath = path.join(outDir, `${name}.crt`);
  if (path.resolve(keyPath) === path.resolve(caDir, CA_KEY_FILE) || path.resolve(certPath) === path.resolve(caDir, CA_CERT_FILE)) {
    throw new CaError(`name \`${name}\` would overwrite the CA's own files; choose another name`, 'invalid');
  }
  refuseExisting([keyPath, certPath], force);

  const sans: x509.JsonGeneralName[] = [];
  if (spiffeId !== undefined) sans.push({ type: 'url', value: spiffeId });
  for (const d of dns) sans.push({ type: 'dns', value: d });
  for (const ip of ips) sans.push({ type: 'ip', value: ip });

  const keys = (await crypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const serialNumber = randomSerial();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: [{ CN: [name] }],
    issuer: ca.cert.subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm: EC_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([kind === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth], false),
      new x509.SubjectAlternativeNameExtension(sans, false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      await x509.AuthorityKeyIdentifierExtension.create(ca.publicKey, false, crypto),
    ],
  }, crypto);

  fs.mkdirSync(outDir, { recursive: true, mode: 0o700 });
  writeAtomic(keyPath, pemPrivateKey(await crypto.subtle.exportKey('pkcs8', keys.privateKey)), 0o600);
  writeAtomic(certPath, cert.toString('pem') + '\n', 0o644);
  return {
    keyPath,
    certPath,
    caCertPath: path.join(caDir, CA_CERT_FILE),
    kind,
    spiffeId,
    dns,
    ips,
    serialNumber: serialNumber.toUpperCase(),
    notBefore,
    notAfter,
    warnings: ca.warnings,
  };
}

/** `90d`, `24h`, `30m`, `45s`: the largest unit that divides the duration. */
export function formatDuration(ms: number): string {
  if (ms % DAY === 0) return `${ms / DAY}d`;
  if (ms % HOUR === 0) return `${ms / HOUR}h`;
  if (ms % MINUTE === 0) return `${ms / MINUTE}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
